//! Opening connections: the file, its mode, and the pragmas every connection needs.

use std::path::Path;

use durable_jobs_store::{StoreError, StoreErrorKind};
use rusqlite::{Connection, OpenFlags};

use crate::error::Context;
use crate::SqliteOptions;

/// Creates the database file with owner-only permissions if it does not exist yet, so that job
/// payloads are never readable by other users. SQLite gives its `-wal` and `-shm` files the
/// same mode as the database file.
pub(crate) fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::with_source(
            StoreErrorKind::Io,
            format!("sqlite: cannot create database file {}: {e}", path.display()),
            e,
        )),
    }
}

/// Switches the file to WAL mode (persistent: the first change the store makes to a file).
pub(crate) fn enable_wal(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).context("enable WAL")?;
    if mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(StoreError::new(
            StoreErrorKind::Other,
            format!("sqlite: {} refused WAL mode (journal_mode is {mode})", path.display()),
        ))
    }
}

/// Opens one connection with the store's pragmas (changing nothing in the file).
pub(crate) fn open_connection(path: &Path, options: &SqliteOptions, writer: bool) -> Result<Connection, StoreError> {
    // No SQLITE_OPEN_URI: a path is always a file name, never parsed as a URI with options.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).context("open")?;
    conn.busy_timeout(options.busy_timeout).context("set busy timeout")?;
    conn.pragma_update(None, "synchronous", options.durability.pragma()).context("set synchronous")?;
    if let (true, Some(bytes)) = (writer, options.max_size) {
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).context("read page size")?;
        let pages = (bytes / page_size.unsigned_abs().max(1)).max(1);
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(())).context("set max size")?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Refuses, without letting SQLite touch it, a file that is not a SQLite database or lacks pages
/// that neither it nor its WAL holds (truncated).
///
/// A checkpoint writes page 1, whose header already counts the grown database, before the pages
/// that extend the file: a crash in between leaves the file shorter than its header says, with
/// every missing page in the WAL. SQLite reads them from there, so that file is sound.
pub(crate) fn check_header(path: &Path) -> Result<(), StoreError> {
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

/// Runs `PRAGMA quick_check` on a read-only connection (which never writes the file).
pub(crate) fn quick_check(path: &Path, options: &SqliteOptions) -> Result<(), StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).context("open for checking")?;
    conn.busy_timeout(options.busy_timeout).context("set busy timeout")?;
    let verdict: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).context("quick_check")?;
    if verdict == "ok" {
        Ok(())
    } else {
        Err(StoreError::new(StoreErrorKind::Corrupt, format!("sqlite: {} failed its check: {verdict}", path.display())))
    }
}
