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
    if writer {
        if let Some(limits) = page_limits(&conn, options)? {
            set_max_pages(&conn, limits.all).context("set max size")?;
        }
    }
    plan_once(&conn).context("set the planner stability guarantee")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The page limits of a database with a [`max_size`](SqliteOptions::max_size): all its pages
/// for work on the jobs it holds, a reserve less for writes that add work (jobs, signals).
///
/// Rewriting a row with an overflow page, as a claim or a completion of a large job does,
/// briefly needs a free page; without the reserve, a database filled by enqueues to its very
/// last page could neither run nor finish the jobs it holds (PERFORMANCE.md, fact 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageLimits {
    /// The most pages the file may have.
    pub(crate) all: u64,
    /// The most pages a write adding work may grow the file to.
    pub(crate) growth: u64,
}

/// The page limits `options` set on this database, if any.
pub(crate) fn page_limits(conn: &Connection, options: &SqliteOptions) -> Result<Option<PageLimits>, StoreError> {
    let Some(bytes) = options.max_size else { return Ok(None) };
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).context("read page size")?;
    let all = (bytes / page_size.unsigned_abs().max(1)).max(1);
    let reserve = (all / 64).clamp(8, 4096).min(all / 2);
    Ok(Some(PageLimits { all, growth: all - reserve }))
}

fn set_max_pages(conn: &Connection, pages: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!("PRAGMA max_page_count = {pages}"))?.query_row([], |_| Ok(()))
}

/// Runs `op`, a write that adds work, on the writer inside its transaction with the file's
/// growth held to `limits.growth` (free pages are used still; SQLite never lowers the limit
/// below the current size). The limit is restored afterwards, even if `op` panics.
pub(crate) fn adding_work<T>(
    conn: &Connection,
    limits: Option<PageLimits>,
    op: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    /// Restores the full limit if `op` unwinds.
    struct Restore<'a>(&'a Connection, u64);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = set_max_pages(self.0, self.1);
        }
    }
    let Some(limits) = limits else { return op(conn) };
    set_max_pages(conn, limits.growth)?;
    let restore = Restore(conn, limits.all);
    let out = op(conn);
    let restored = set_max_pages(conn, limits.all);
    // Restored (or failing to) already: the guard was for unwinding.
    std::mem::forget(restore);
    let out = out?;
    restored.map(|()| out)
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
