//! Telling a dead process from a slow one on this machine, so that its jobs are recovered at
//! once instead of after their leases run out.
//!
//! Every worker holds an exclusive `flock` on a file named after it, in a directory shared by
//! the workers of one store on this machine, for as long as it lives. The operating system
//! drops the lock when the process dies, however it dies (`kill -9` included), so a lock that
//! can be taken means a dead holder. A stopped (`SIGSTOP`) or stalled process keeps its lock:
//! only its lease can tell, and fencing keeps its late writes out.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// A worker's lock file, held for its life; removed when it stops.
#[derive(Debug)]
pub(crate) struct Liveness {
    dir: PathBuf,
    own: PathBuf,
    /// Holds the lock; closing it releases the lock.
    _file: File,
}

const SUFFIX: &str = ".lock";

impl Liveness {
    /// Takes the lock file of `worker` in the directory of the store named `identity`.
    pub(crate) fn acquire(identity: &str, worker: &str) -> std::io::Result<Liveness> {
        let dir = directory(identity);
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        // Locked under a temporary name, then renamed: no other worker ever sees the file
        // unlocked (which would read as dead).
        let own = dir.join(format!("{worker}{SUFFIX}"));
        let tmp = dir.join(format!(".{worker}.new"));
        let mut tries = 0;
        let file = loop {
            builder.create(&dir)?;
            match private_file(&tmp) {
                // The last worker to stop removed the empty directory in between.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 3 => tries += 1,
                opened => break opened?,
            }
        };
        file.try_lock().map_err(std::io::Error::other)?;
        std::fs::rename(&tmp, &own)?;
        Ok(Liveness { dir, own, _file: file })
    }

    /// The workers of this store on this machine that died without stopping.
    pub(crate) fn dead_workers(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut dead = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(worker) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(SUFFIX)) else {
                continue;
            };
            if path == self.own {
                continue;
            }
            if File::open(&path).is_ok_and(|f| f.try_lock().is_ok()) {
                dead.push(worker.to_owned());
            }
        }
        dead
    }

    /// Forgets dead workers whose jobs were recovered.
    pub(crate) fn bury(&self, workers: &[String]) {
        for worker in workers {
            let _ = std::fs::remove_file(self.dir.join(format!("{worker}{SUFFIX}")));
        }
    }
}

impl Drop for Liveness {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.own);
        // The last one out removes the directory, so short-lived stores leave nothing behind;
        // it is not empty while another worker, or a dead one's file, is in it.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn private_file(path: &Path) -> std::io::Result<File> {
    let mut open = OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    open.open(path)
}

/// The directory of one store's workers on this machine: in the temporary directory (local
/// to the machine, unlike a database that may sit on a network share), named by a hash of
/// the store's identity.
fn directory(identity: &str) -> PathBuf {
    std::env::temp_dir().join(format!("durable-jobs-workers-{:016x}", fnv1a(identity.as_bytes())))
}

/// FNV-1a: a stable hash (the standard library's may change between Rust versions, and
/// processes built by different versions must agree on the directory).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_lock_reads_as_dead_and_a_held_one_as_alive() {
        let identity = format!("test-{}", fastrand::u64(..));
        let me = Liveness::acquire(&identity, "me").unwrap();
        let alive = Liveness::acquire(&identity, "alive").unwrap();
        // What a killed worker leaves: its file, without a lock.
        std::fs::write(me.dir.join(format!("dead{SUFFIX}")), b"").unwrap();
        assert_eq!(me.dead_workers(), vec!["dead".to_owned()], "a lock held in this process is held");
        me.bury(&["dead".to_owned()]);
        assert!(me.dead_workers().is_empty());
        drop(alive);
        assert!(me.dead_workers().is_empty(), "a worker that stopped removed its file");
        assert!(me.dir.exists(), "the directory stays while a worker is in it");
        let dir = me.dir.clone();
        drop(me);
        assert!(!dir.exists(), "the last worker to stop removes the directory");
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
    }
}
