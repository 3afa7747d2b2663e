//! Helpers shared by the sled test binaries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file under a directory with its bytes, by path relative to it.
pub(crate) type Files = BTreeMap<PathBuf, Vec<u8>>;

/// Every file under `dir` with its bytes: two snapshots compare equal only if nothing changed.
pub(crate) fn snapshot(dir: &Path) -> Files {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// A copy of the fixture directory `name` (see `tests/fixtures/README.md`) as `dir/jobs`, with
/// the empty `blobs/` that git does not keep.
#[allow(dead_code)] // not every test binary opens fixtures
pub(crate) fn fixture_copy(name: &str, dir: &Path) -> PathBuf {
    let path = dir.join("jobs");
    std::fs::create_dir_all(path.join("blobs")).unwrap();
    for file in ["db", "conf", "durable-jobs.mark"] {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).join(file);
        std::fs::copy(fixture, path.join(file)).unwrap();
    }
    path
}
