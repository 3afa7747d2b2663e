//! Looking at a database file before SQLite opens it: refuse what is not a database, or is
//! truncated beyond what its WAL covers, without touching it.
//!
//! A raw read of the file must not happen while this process has it open through SQLite: closing
//! any descriptor of a file drops every POSIX lock the process holds on it, SQLite's included
//! (<https://www.sqlite.org/howtocorrupt.html>, section 2.2), and another process could then
//! checkpoint and delete a WAL still in use. Stores of this process register the files they have
//! open, and a file open here is not read raw (it is healthy: it is open).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use durable_jobs_store::{StoreError, StoreErrorKind};
use parking_lot::Mutex;

use crate::connection::create_private_file;

/// The database files stores of this process have open, by canonical path, with how many
/// stores have each. Process-wide like the POSIX locks it protects.
static OPEN_HERE: Mutex<BTreeMap<PathBuf, usize>> = Mutex::new(BTreeMap::new());

/// Raw reads made, for the test that none happens on a file open here.
#[cfg(test)]
pub(crate) static RAW_READS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A store's registration of the file it has open; dropping it unregisters.
#[derive(Debug)]
pub(crate) struct OpenHere(Option<PathBuf>);

impl Drop for OpenHere {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let mut open = OPEN_HERE.lock();
            if let Some(n) = open.get_mut(&path) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&path);
                }
            }
        }
    }
}

/// Checks the file at `path` (unless this process has it open already), creates it (private)
/// if it does not exist, and registers it as open here for as long as the guard lives.
pub(crate) fn check_and_register(path: &Path) -> Result<OpenHere, StoreError> {
    let mut open = OPEN_HERE.lock();
    let known = std::fs::canonicalize(path).ok().filter(|k| open.contains_key(k));
    if known.is_none() {
        check_header(path)?;
        create_private_file(path)?;
    }
    let key = known.or_else(|| std::fs::canonicalize(path).ok());
    if let Some(key) = &key {
        *open.entry(key.clone()).or_insert(0) += 1;
    }
    Ok(OpenHere(key))
}

/// Refuses, without letting SQLite touch it, a file that is not a SQLite database or lacks pages
/// that neither it nor its WAL holds (truncated).
///
/// A checkpoint writes page 1, whose header already counts the grown database, before the pages
/// that extend the file: a crash in between leaves the file shorter than its header says, with
/// every missing page in the WAL. SQLite reads them from there, so that file is sound.
fn check_header(path: &Path) -> Result<(), StoreError> {
    // Another process's checkpoint may change both files while they are read (finish, then
    // reset the WAL): a refusal stands only if a second look agrees.
    check_files(path).or_else(|_| check_files(path))
}

/// One look at the database file and, if it is short of its header, its WAL.
fn check_files(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let corrupt = |why: String| StoreError::new(StoreErrorKind::Corrupt, format!("sqlite: {}: {why}", path.display()));
    let io = |e: std::io::Error| {
        StoreError::with_source(StoreErrorKind::Io, format!("sqlite: cannot read {}: {e}", path.display()), e)
    };
    #[cfg(test)]
    RAW_READS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        return Ok(()); // a new database
    }
    let mut header = [0u8; 100];
    if len < 100 {
        return Err(corrupt(format!("{len} bytes is too short for a database")));
    }
    file.read_exact(&mut header).map_err(io)?;
    if &header[..16] != b"SQLite format 3\0" {
        return Err(corrupt("not a SQLite database (bad header)".into()));
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    if page_size < 512 || !page_size.is_power_of_two() {
        return Err(corrupt(format!("invalid page size {page_size}")));
    }
    // The in-header page count is valid when the change counter matches version-valid-for.
    let pages = u64::from(be32(&header, 28));
    if pages == 0 || be32(&header, 24) != be32(&header, 92) || len >= pages * page_size {
        return Ok(());
    }
    let wal_path = {
        let mut name = path.as_os_str().to_owned();
        name.push("-wal");
        std::path::PathBuf::from(name)
    };
    let wal = wal_commits(&wal_path, page_size).map_err(|e| {
        StoreError::with_source(StoreErrorKind::Io, format!("sqlite: cannot read {}: {e}", wal_path.display()), e)
    })?;
    let on_disk = len / page_size;
    // With a commit in the WAL, SQLite takes the database's size from it, not from the file.
    let size = wal.as_ref().map_or(pages, |w| w.db_pages);
    let lock_page = PENDING_BYTE / page_size + 1;
    let wanted = size.saturating_sub(on_disk) - u64::from((on_disk + 1..=size).contains(&lock_page));
    let held = wal.as_ref().map_or(0, |w| {
        w.pages.iter().map(|&p| u64::from(p)).filter(|&p| p > on_disk && p <= size && p != lock_page).count() as u64
    });
    if held < wanted {
        let wal = match wal {
            Some(_) => format!("its WAL holds {held} of the {wanted} missing pages"),
            None => "no WAL commit holds the missing pages".into(),
        };
        return Err(corrupt(format!(
            "truncated: the header says {pages} pages of {page_size} bytes, the file has {len} bytes and {wal}"
        )));
    }
    Ok(())
}

/// The byte whose page SQLite never writes (its lock page): a hole in the file, never in the WAL.
const PENDING_BYTE: u64 = 0x4000_0000;

/// A WAL header's magic number, less its low bit (which says the checksums' byte order).
const WAL_MAGIC: u32 = 0x377f_0682;
/// The one WAL format version.
const WAL_VERSION: u32 = 3_007_000;

/// What SQLite recovers from a WAL.
struct WalCommits {
    /// The database's size in pages after the last valid commit.
    db_pages: u64,
    /// The pages that commit and those before it wrote, each once.
    pages: Vec<u32>,
}

/// Reads a WAL as SQLite's recovery does (<https://www.sqlite.org/fileformat2.html#walformat>):
/// frames count up to the first whose salt or running checksum is wrong, and only up to the last
/// commit frame before it. `None` if there is no WAL, it belongs to a database of another page
/// size, or it holds no valid commit.
fn wal_commits(path: &Path, page_size: u64) -> std::io::Result<Option<WalCommits>> {
    let mut wal = match std::fs::File::open(path) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut header = [0u8; 32];
    if !read_full(&mut wal, &mut header)? {
        return Ok(None);
    }
    let magic = be32(&header, 0);
    if magic & !1 != WAL_MAGIC || be32(&header, 4) != WAL_VERSION || u64::from(be32(&header, 8)) != page_size {
        return Ok(None);
    }
    let big_endian = magic & 1 == 1;
    let mut sum = wal_checksum(big_endian, (0, 0), &header[..24]);
    if sum != (be32(&header, 24), be32(&header, 28)) {
        return Ok(None);
    }
    let mut frame = vec![0u8; 24 + page_size as usize];
    let (mut pages, mut committed, mut db_pages) = (Vec::new(), 0, 0);
    while read_full(&mut wal, &mut frame)? {
        let page = be32(&frame, 0);
        if page == 0 || frame[8..16] != header[16..24] {
            break;
        }
        sum = wal_checksum(big_endian, sum, &frame[..8]);
        sum = wal_checksum(big_endian, sum, &frame[24..]);
        if sum != (be32(&frame, 16), be32(&frame, 20)) {
            break;
        }
        pages.push(page);
        if be32(&frame, 4) != 0 {
            (committed, db_pages) = (pages.len(), u64::from(be32(&frame, 4)));
        }
    }
    if committed == 0 {
        return Ok(None);
    }
    pages.truncate(committed);
    pages.sort_unstable();
    pages.dedup();
    Ok(Some(WalCommits { db_pages, pages }))
}

/// SQLite's WAL checksum of `bytes` (a multiple of 8 long), continuing from `sum`.
fn wal_checksum(big_endian: bool, (mut s0, mut s1): (u32, u32), bytes: &[u8]) -> (u32, u32) {
    let word = |b: &[u8]| {
        let b = [b[0], b[1], b[2], b[3]];
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    for pair in bytes.chunks_exact(8) {
        s0 = s0.wrapping_add(word(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(word(&pair[4..])).wrapping_add(s0);
    }
    (s0, s1)
}

/// Fills `buf`, or returns false at the end of the file (a partial frame is no frame to SQLite).
fn read_full(file: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<bool> {
    match file.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// The big-endian `u32` at `at`.
fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// A second store on a file this process has open does not read the file outside SQLite
    /// (closing that descriptor would drop the first store's locks); once every store is
    /// closed, a new open checks the file again.
    #[test]
    fn a_file_open_here_is_not_read_raw() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        let first = crate::SqliteStore::open(&path).unwrap();
        let before = RAW_READS.load(Ordering::SeqCst);
        let second = crate::SqliteStore::open(&path).unwrap();
        assert_eq!(RAW_READS.load(Ordering::SeqCst), before, "the open file was read raw");
        drop((first, second));
        let third = crate::SqliteStore::open(&path).unwrap();
        assert!(RAW_READS.load(Ordering::SeqCst) > before, "a closed file is checked again");
        drop(third);
    }
}
