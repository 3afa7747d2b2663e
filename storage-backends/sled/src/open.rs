//! Opening a sled directory without ever damaging one that is not healthy.
//!
//! sled 0.34 writes to its files as soon as it opens them, and on some damaged files it opens
//! "successfully" with the data gone, panics, or hangs. So an existing database is first
//! checked from the outside (a directory with sled's files, not locked by another process),
//! then opened as a throwaway copy, on a thread with a time limit; only if the copy opens and
//! carries this crate's format marker is the real directory opened.

use std::path::Path;
use std::time::{Duration, Instant};

use durable_jobs_store::{StoreError, StoreErrorKind};

use crate::error::store_error;
use crate::tx::{Format, FORMAT, FORMAT_KEY, MAX_ID_KEY};
use crate::{keys, SledOptions};

/// Beside the database: the highest job id at the last clean close (8 bytes, big-endian).
pub(crate) const MARK_FILE: &str = "durable-jobs.mark";
const MARK_TMP: &str = "durable-jobs.mark.tmp";

/// Records `max_id` (as stored in the meta tree) in the mark file; best effort, atomic rename.
pub(crate) fn write_mark(path: &Path, max_id: &[u8]) {
    let tmp = path.join(MARK_TMP);
    if std::fs::write(&tmp, max_id).is_ok() {
        let _ = std::fs::rename(&tmp, path.join(MARK_FILE));
    }
}

/// Fails if `db` holds fewer jobs than it had at its last clean close: sled 0.34 recovers a
/// truncated or damaged log as if it were a crash-torn tail, silently dropping what followed.
fn check_mark(path: &Path, db: &sled::Db) -> Result<(), StoreError> {
    let Ok(mark) = std::fs::read(path.join(MARK_FILE)) else { return Ok(()) };
    let Some(recorded) = keys::id_from(&mark) else { return Ok(()) };
    let stored = db.open_tree("meta").and_then(|m| m.get(MAX_ID_KEY)).map_err(|e| store_error("read meta", e))?;
    let stored = stored.and_then(|v| keys::id_from(&v));
    if stored.is_none_or(|s| s < recorded) {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!(
                "sled: {} lost data: its highest job id is {} but was {recorded} when it was last closed",
                path.display(),
                stored.map_or_else(|| "missing".to_owned(), |s| s.to_string())
            ),
        ));
    }
    Ok(())
}

/// What the directory holds before opening.
enum Found {
    /// Nothing yet (missing, empty, or sled files from a creation that never finished).
    Nothing,
    /// A sled database.
    Database,
}

/// Opens (creating if needed) the database in `path` and checks its format marker: the format
/// it is in ([`Format::Current`] for a new one).
pub(crate) fn open(path: &Path, options: &SledOptions) -> Result<(sled::Db, Format), StoreError> {
    let found = inspect(path)?;
    if matches!(found, Found::Nothing) {
        create_private_dir(path)?;
    }
    if matches!(found, Found::Database) {
        refuse_if_locked(path)?;
        remove_unfinished_snapshots(path)?;
        if options.verify_on_open {
            verify_copy(path, options)?;
        }
    }
    let db = open_guarded(path, options)?;
    if !options.verify_on_open {
        // (Already checked on the copy otherwise.)
        check_mark(path, &db)?;
    }
    match db.open_tree("meta").and_then(|m| m.get(FORMAT_KEY)).map_err(|e| store_error("read format marker", e))? {
        Some(v) => match Format::of(&v) {
            Some(format) => Ok((db, format)),
            None => Err(StoreError::new(
                StoreErrorKind::IncompatibleSchema,
                format!(
                    "sled: {} has format {:?}; this version reads {:?} and older",
                    path.display(),
                    String::from_utf8_lossy(&v),
                    String::from_utf8_lossy(FORMAT)
                ),
            )),
        },
        None if matches!(found, Found::Nothing) => {
            let meta = db.open_tree("meta").map_err(|e| store_error("create meta tree", e))?;
            meta.insert(FORMAT_KEY, FORMAT).map_err(|e| store_error("write format marker", e))?;
            db.flush().map_err(|e| store_error("flush", e))?;
            Ok((db, Format::Current))
        }
        None => Err(not_ours(path)),
    }
}

/// Removes snapshots sled did not finish writing (`snap.*.generating`), which a crash while it
/// wrote one leaves behind: sled 0.34 would read such a file first (it sorts after the last
/// complete snapshot) and refuse the database as corrupt on every open. sled renames a snapshot
/// when it is complete, so these files hold nothing it needs; nobody holds the database now.
fn remove_unfinished_snapshots(path: &Path) -> Result<(), StoreError> {
    let io = |e: std::io::Error| {
        StoreError::with_source(StoreErrorKind::Io, format!("sled: cannot read {}: {e}", path.display()), e)
    };
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path()).map_err(io)?;
        }
    }
    Ok(())
}

/// Creates the database directory readable by its owner only (job payloads are private).
pub(crate) fn create_private_dir(path: &Path) -> Result<(), StoreError> {
    if path.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(|e| {
        StoreError::with_source(StoreErrorKind::Io, format!("sled: cannot create {}: {e}", path.display()), e)
    })
}

fn not_ours(path: &Path) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!("sled: {} holds no durable-jobs data (another program's database, or unreadable)", path.display()),
    )
}

fn inspect(path: &Path) -> Result<Found, StoreError> {
    let io = |e: std::io::Error| {
        StoreError::with_source(StoreErrorKind::Io, format!("sled: cannot read {}: {e}", path.display()), e)
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) => return Err(io(e)),
        Ok(m) if !m.is_dir() => {
            return Err(StoreError::new(
                StoreErrorKind::Corrupt,
                format!("sled: {} is not a directory", path.display()),
            ));
        }
        Ok(_) => {}
    }
    let mut has_db = false;
    for entry in std::fs::read_dir(path).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let name = name.to_string_lossy();
        match &*name {
            "db" => has_db = true,
            "conf" | "blobs" | MARK_FILE | MARK_TMP => {}
            n if n.starts_with("snap.") => {}
            _ => {
                return Err(StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!("sled: {} is not a sled database directory (it holds {name:?})", path.display()),
                ));
            }
        }
    }
    Ok(if has_db { Found::Database } else { Found::Nothing })
}

/// sled takes an exclusive lock on its `db` file; another holder means another process (or
/// another `SledStore` in this one) has the database open.
///
/// A store dropped a moment ago may still be closing (sled's I/O threads release the file
/// after `drop` returns), so a held lock is retried for up to 2 s before it counts.
pub(crate) fn refuse_if_locked(path: &Path) -> Result<(), StoreError> {
    let file = std::fs::File::open(path.join("db")).map_err(|e| {
        StoreError::with_source(StoreErrorKind::Io, format!("sled: cannot read {}: {e}", path.display()), e)
    })?;
    let give_up = Instant::now() + Duration::from_secs(2);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() >= give_up => return Err(already_open(path)),
            Err(std::fs::TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(10)),
            Err(std::fs::TryLockError::Error(e)) => {
                let message = format!("sled: cannot lock {}: {e}", path.display());
                return Err(StoreError::with_source(StoreErrorKind::Io, message, e));
            }
        }
    }
}

fn already_open(path: &Path) -> StoreError {
    StoreError::new(
        StoreErrorKind::AlreadyOpen,
        format!("sled: {} is already open (one process at a time may open a sled database)", path.display()),
    )
}

pub(crate) fn config(path: &Path, options: &SledOptions) -> sled::Config {
    sled::Config::new().path(path).cache_capacity(options.cache_capacity)
}

/// `sled::open`, with a panic turned into an error.
fn open_guarded(path: &Path, options: &SledOptions) -> Result<sled::Db, StoreError> {
    let config = config(path, options);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open())) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => {
            let e = store_error("open", e);
            Err(if e.kind() == StoreErrorKind::AlreadyOpen { already_open(path) } else { e })
        }
        Err(_) => Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!("sled: {} is damaged (sled panicked opening it)", path.display()),
        )),
    }
}

/// Opens a copy of the database, on its own thread and with a time limit, and checks it.
fn verify_copy(path: &Path, options: &SledOptions) -> Result<(), StoreError> {
    let io =
        |what: &str, e: std::io::Error| StoreError::with_source(StoreErrorKind::Io, format!("sled: {what}: {e}"), e);
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let copy = tempfile::Builder::new()
        .prefix(".durable-jobs-verify-")
        .tempdir_in(parent)
        .map_err(|e| io("create verify copy", e))?;
    copy_dir(path, copy.path()).map_err(|e| io("copy for verification", e))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let (copy_path, opts, original) = (copy.path().to_path_buf(), options.clone(), path.to_path_buf());
    let copy_dir_path = copy_path.clone();
    std::thread::Builder::new()
        .name("dj-sled-verify".into())
        .spawn(move || {
            let verdict = open_guarded(&copy_path, &opts).and_then(|db| {
                let marker =
                    db.open_tree("meta").and_then(|m| m.get(FORMAT_KEY)).map_err(|e| store_error("read copy", e))?;
                if marker.is_some() {
                    // The mark file was copied too; the message names the original.
                    check_mark(&copy_path, &db).map_err(|e| {
                        let message = e.message().replace(&*copy_path.to_string_lossy(), &original.to_string_lossy());
                        StoreError::new(e.kind(), message)
                    })?;
                }
                Ok(marker.is_some())
            });
            // Deleted here, before the verdict, so that the copy goes however late the check
            // ends, and is gone when the caller hears back.
            drop(copy);
            let _ = tx.send(verdict);
        })
        .map_err(|e| io("start verification thread", e))?;
    match rx.recv_timeout(options.open_timeout) {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(not_ours(path)),
        Ok(Err(e)) => Err(StoreError::new(
            e.kind(),
            format!("{} (found on a copy; {} was not touched)", e.message(), path.display()),
        )),
        Err(_) => {
            // The check may never end: delete the copy now (files still open in the hung
            // thread stay readable to it until it ends).
            let _ = std::fs::remove_dir_all(&copy_dir_path);
            Err(StoreError::new(
                StoreErrorKind::Corrupt,
                format!(
                    "sled: a copy of {} did not open within {:?}; the database looks damaged and was not touched",
                    path.display(),
                    options.open_timeout
                ),
            ))
        }
    }
}

pub(crate) fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// How long opening a database (or its verification copy) may take before it counts as hung.
pub(crate) const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(60);
