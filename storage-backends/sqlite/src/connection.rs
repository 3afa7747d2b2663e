//! Opening connections: the file, its mode, and the pragmas every connection needs.

use std::path::Path;

use durable_jobs_store::{StoreError, StoreErrorKind};
use rusqlite::config::DbConfig;
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
    plan_once(&conn).context("set the planner stability guarantee")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Sets the query planner stability guarantee. Without it, a statement whose bound parameter
/// is compared, while planning, with the partial index's `WHERE status = 'pending'` is
/// recompiled at every execution (PERFORMANCE.md, fact 7).
pub(crate) fn plan_once(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map(drop)
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
