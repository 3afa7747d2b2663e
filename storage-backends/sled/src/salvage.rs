//! The way out for a database that [`SledStore::open`](crate::SledStore::open) refuses:
//! copy what sled can still read into a new store.
//!
//! The damaged directory is only read. Each attempt works on a fresh copy: first the log as it
//! is (sled's own recovery); then, if a scan of the log found damage before its end, with each
//! damaged stretch skipped, with the log cut at the first damaged message, and cut at the
//! first missing segment too (see `salvage/log.rs`). Each attempt that sled opens is read to
//! the end into a staging store; the one that read cleanly and recovered the most jobs (the
//! earliest of equals) becomes the new store.

mod log;
mod read;
mod write;

use std::fmt;
use std::path::{Path, PathBuf};

use durable_jobs_store::{JobId, SignalId, StoreError, StoreErrorKind};

use self::log::Repair;
use self::read::{Event, Tree};
use self::write::Writer;
use crate::tx::Format;
use crate::{keys, open, SledOptions};

/// What [`salvage`] recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SalvageReport {
    /// Job records written to the new store, exactly as they were stored.
    pub jobs: usize,
    /// Checkpoints written to the new store.
    pub checkpoints: usize,
    /// Pending signals written to the new store.
    pub signals: usize,
    /// Entries sled returned that did not decode as a job, checkpoint or signal (left out).
    pub unreadable: usize,
    /// Trees (of jobs, checkpoints and signals) that sled could read only up to a damaged part; what
    /// followed in them is lost.
    pub broken_trees: usize,
    /// The highest job id recovered.
    pub max_job_id: Option<JobId>,
    /// The highest job id when the damaged store was last closed cleanly, if it recorded
    /// one. Jobs above [`max_job_id`](Self::max_job_id) up to it were lost.
    pub max_job_id_at_last_close: Option<JobId>,
    /// sled could not use the files as they were: the writes its log could not read were
    /// dropped (with the log cut at the first of them, or each damaged stretch skipped), or a
    /// damaged snapshot or `conf` file was left out.
    pub repaired: bool,
}

impl fmt::Display for SalvageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "salvaged {} jobs, {} checkpoints and {} signals", self.jobs, self.checkpoints, self.signals)?;
        if let Some(id) = self.max_job_id {
            write!(f, " (highest job id {id})")?;
        }
        write!(f, "; {} unreadable entries, {} damaged trees", self.unreadable, self.broken_trees)?;
        if self.repaired {
            f.write_str("; the unreadable part of the log was dropped")?;
        }
        Ok(())
    }
}

/// Copies every job, checkpoint and pending signal sled can still read from the sled directory
/// `damaged` into a new store at `into`, with default [`SledOptions`].
///
/// For a directory that [`SledStore::open`](crate::SledStore::open) refuses as
/// [`Corrupt`](StoreErrorKind::Corrupt), typically after a power loss (see the crate docs).
/// `damaged` is never written to: sled runs on copies made beside `into`. Records are
/// written as they were, with every index rebuilt (child jobs stay linked to their parents): a
/// job that was running keeps its lease and is recovered by the reaper like after any crash.
/// The new store hands out job and signal ids above every id the damaged one recorded, so an
/// id is never reused. Paused queues stay paused, schedules and limits are kept; leads and the
/// window counts of limits are not copied (leases are taken again within one; a window's claims
/// may be let through twice). A database in an older format comes out in the current one.
///
/// # Errors
///
/// [`InvalidInput`](StoreErrorKind::InvalidInput) if `damaged` holds no sled database, or
/// `into` exists and is not an empty directory, or lies inside `damaged`;
/// [`AlreadyOpen`](StoreErrorKind::AlreadyOpen) if `damaged` is open;
/// [`Corrupt`](StoreErrorKind::Corrupt) if sled cannot open it even repaired, or it holds no
/// durable-jobs data; [`Io`](StoreErrorKind::Io) or [`Full`](StoreErrorKind::Full) for file
/// system errors.
///
/// # Examples
///
/// ```
/// use durable_jobs_sled::{salvage, SledStore};
/// use durable_jobs_store::{JobFilter, Store};
///
/// let dir = tempfile::tempdir()?;
/// # drop(SledStore::open(dir.path().join("jobs"))?);
/// // After `SledStore::open(dir.path().join("jobs"))` failed with `Corrupt`:
/// let report = salvage(dir.path().join("jobs"), dir.path().join("jobs-salvaged"))?;
/// println!("{report}");
/// let store = SledStore::open(dir.path().join("jobs-salvaged"))?;
/// assert_eq!(store.list(&JobFilter::new())?.len(), report.jobs);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn salvage(damaged: impl AsRef<Path>, into: impl AsRef<Path>) -> Result<SalvageReport, StoreError> {
    salvage_with(damaged, into, &SledOptions::default())
}

/// [`salvage`] with `options`: the cache size, and the time limit
/// ([`SledOptions::open_timeout`]) after which sled, stuck on a damaged copy, is given up on
/// (its thread may keep running until the process exits).
///
/// # Errors
///
/// As [`salvage`].
pub fn salvage_with(
    damaged: impl AsRef<Path>,
    into: impl AsRef<Path>,
    options: &SledOptions,
) -> Result<SalvageReport, StoreError> {
    let (damaged, into) = (damaged.as_ref(), into.as_ref());
    let work = check_paths(damaged, into)?;
    open::refuse_if_locked(damaged)?;
    let scan = log::scan(damaged).map_err(|e| io_error(&format!("read {}", damaged.display()), e))?;
    let damaged_log = scan.cut_at_damage.is_some();
    let mut repairs: Vec<Option<Repair>> = vec![None];
    for repair in [scan.skip_damage, scan.cut_at_damage, scan.cut_at_gap].into_iter().flatten() {
        if !repairs.contains(&Some(repair.clone())) {
            repairs.push(Some(repair));
        }
    }
    let fixes = Fixes { snapshots: scan.bad_snapshots, conf: scan.bad_conf };
    open::create_private_dir(&work)?;
    let mut best: Option<Attempt> = None;
    let mut failures = Vec::new();
    for repair in &repairs {
        match attempt(damaged, &work, &fixes, repair.as_ref(), options) {
            Ok(a) if best.as_ref().is_none_or(|b| a.score() > b.score()) => best = Some(a),
            Ok(_) => {}
            // Writing the new store failed: no other attempt would fare better.
            Err(e) if e.kind() != StoreErrorKind::Corrupt => return Err(e),
            Err(e) => {
                let how = if repair.is_some() { "repaired" } else { "as it is" };
                failures.push(format!("{how}: {}", e.message()));
            }
        }
        // Missing segments alone are normal: sled frees and reuses them.
        if !damaged_log && best.as_ref().is_some_and(Attempt::clean) {
            break;
        }
    }
    let Some(best) = best else {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!("sled: cannot salvage {}: {}", damaged.display(), failures.join("; ")),
        ));
    };
    let w = &best.writer;
    if !best.ours && w.written_jobs + w.written_checkpoints + w.written_signals == 0 {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!("sled: {} holds no durable-jobs data that sled can read", damaged.display()),
        ));
    }
    let mark = std::fs::read(damaged.join(open::MARK_FILE)).ok().and_then(|b| keys::id_from(&b));
    let report = SalvageReport {
        jobs: w.written_jobs,
        checkpoints: w.written_checkpoints,
        signals: w.written_signals,
        unreadable: w.unreadable,
        broken_trees: best.broken,
        max_job_id: w.max_id,
        max_job_id_at_last_close: mark,
        repaired: best.repaired || fixes.any(),
    };
    // Ids handed out before the damage stay taken, whether or not their jobs survived.
    let floor = w.max_id.max(best.stored_max_id).max(mark);
    let signal_floor = w.max_signal.max(best.stored_max_signal);
    let Attempt { staging, writer, .. } = best;
    let sealed = writer.seal(floor, signal_floor, options)?;
    if into.exists() {
        std::fs::remove_dir(into).map_err(|e| io_error(&format!("replace empty {}", into.display()), e))?;
    }
    std::fs::rename(&sealed, into).map_err(|e| io_error(&format!("move the new store to {}", into.display()), e))?;
    drop(staging);
    Ok(report)
}

/// Files a copy must lose for sled to open it.
struct Fixes {
    snapshots: Vec<String>,
    conf: bool,
}

impl Fixes {
    fn any(&self) -> bool {
        self.conf || !self.snapshots.is_empty()
    }

    fn apply(&self, copy: &Path) -> std::io::Result<()> {
        for name in &self.snapshots {
            std::fs::remove_file(copy.join(name))?;
        }
        if self.conf {
            std::fs::remove_file(copy.join("conf"))?;
        }
        Ok(())
    }
}

/// One way of opening the damaged database, read into a staging store.
struct Attempt {
    /// Declared before `staging`, so that it is closed before its directory is removed.
    writer: Writer,
    staging: tempfile::TempDir,
    repaired: bool,
    /// The meta tree has this crate's format marker.
    ours: bool,
    /// The highest id the meta tree recorded.
    stored_max_id: Option<JobId>,
    /// The highest signal id the meta tree recorded.
    stored_max_signal: Option<SignalId>,
    broken: usize,
    /// Every tree was read to its end.
    complete: bool,
}

impl Attempt {
    /// Opened as a durable-jobs store and read to the end without damage. (An entry that
    /// does not decode, after a repair, is a sign of a tree put together wrong.)
    fn clean(&self) -> bool {
        self.complete && self.broken == 0 && self.ours && self.writer.unreadable == 0
    }

    /// Clean reads first, then the most records.
    fn score(&self) -> (bool, usize, usize, usize) {
        let w = &self.writer;
        (self.clean(), w.written_jobs, w.written_checkpoints, w.written_signals)
    }
}

/// Copies `damaged` into `work`, applies `fixes` and `repair`, and reads the copy into a new
/// staging store. `Err` if sled cannot open the copy.
fn attempt(
    damaged: &Path,
    work: &Path,
    fixes: &Fixes,
    repair: Option<&Repair>,
    options: &SledOptions,
) -> Result<Attempt, StoreError> {
    let temp = |what: &str| {
        tempfile::Builder::new()
            .prefix(&format!(".durable-jobs-salvage-{what}-"))
            .tempdir_in(work)
            .map_err(|e| io_error(&format!("create a {what} directory in {}", work.display()), e))
    };
    let copy = temp("copy")?;
    let prepare = || -> std::io::Result<()> {
        open::copy_dir(damaged, copy.path())?;
        fixes.apply(copy.path())?;
        repair.map_or(Ok(()), |r| r.apply(copy.path()))
    };
    prepare().map_err(|e| io_error(&format!("copy {}", damaged.display()), e))?;
    let staging = temp("new")?;
    let writer = Writer::create(&staging.path().join("jobs"), options)?;
    let mut a = Attempt {
        staging,
        writer,
        repaired: repair.is_some(),
        ours: false,
        stored_max_id: None,
        stored_max_signal: None,
        broken: 0,
        complete: false,
    };
    let reader = read::spawn(copy.path().to_path_buf(), options)?;
    let mut opened = false;
    loop {
        match reader.next() {
            Event::Opened { format, max_id, max_signal } => {
                (opened, a.ours, a.stored_max_id, a.stored_max_signal) = (true, format.is_some(), max_id, max_signal);
                a.writer.format = format.unwrap_or(Format::Current);
            }
            Event::Entry(Tree::Jobs, key, value) => a.writer.job(&key, &value)?,
            Event::Entry(Tree::Checkpoints, key, value) => a.writer.checkpoint(&key, &value)?,
            Event::Entry(Tree::Signals, key, value) => a.writer.signal(&key, &value)?,
            Event::Entry(Tree::Paused, key, value) => a.writer.paused(&key, &value)?,
            Event::Entry(Tree::Schedules, key, value) => a.writer.schedule(&key, &value)?,
            Event::Entry(Tree::Limits, key, value) => a.writer.limit(&key, &value)?,
            Event::Broken => a.broken += 1,
            Event::Done => {
                a.complete = true;
                break;
            }
            // What was read before sled stopped or stalled counts; the tree it was in is cut short.
            Event::Failed(_) if opened => {
                a.broken += 1;
                break;
            }
            Event::Failed(why) => return Err(StoreError::new(StoreErrorKind::Corrupt, why)),
        }
    }
    a.writer.flush()?;
    Ok(a)
}

/// Checks the arguments; returns the directory to work in (beside `into`).
fn check_paths(damaged: &Path, into: &Path) -> Result<PathBuf, StoreError> {
    let invalid = |why: String| StoreError::new(StoreErrorKind::InvalidInput, format!("sled: cannot salvage: {why}"));
    if !damaged.join("db").is_file() {
        return Err(invalid(format!("{} holds no sled database", damaged.display())));
    }
    if let Ok(mut entries) = std::fs::read_dir(into) {
        if entries.next().is_some() {
            return Err(invalid(format!("{} is not empty (salvage writes a new store only)", into.display())));
        }
    } else if into.exists() {
        return Err(invalid(format!("{} exists and is not a directory", into.display())));
    }
    let work = into.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    // Nothing may be created inside the damaged directory.
    let damaged_abs = damaged.canonicalize().map_err(|e| io_error(&format!("read {}", damaged.display()), e))?;
    let existing = work.ancestors().find_map(|a| a.canonicalize().ok()).or_else(|| std::env::current_dir().ok());
    if existing.is_some_and(|a| a.starts_with(&damaged_abs)) {
        return Err(invalid(format!("{} lies inside {}", into.display(), damaged.display())));
    }
    Ok(work)
}

fn io_error(what: &str, e: std::io::Error) -> StoreError {
    let kind = if e.kind() == std::io::ErrorKind::StorageFull { StoreErrorKind::Full } else { StoreErrorKind::Io };
    StoreError::with_source(kind, format!("sled: cannot {what}: {e}"), e)
}
