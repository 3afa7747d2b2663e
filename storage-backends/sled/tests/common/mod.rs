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
