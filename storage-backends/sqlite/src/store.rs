//! `SqliteStore`: one writer connection, a few readers, every write in `BEGIN IMMEDIATE`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use durable_jobs_store::{
    CancelOutcome, Capabilities, Checkpoint, Claim, ClaimRequest, Claimed, DeleteOutcome, Enqueued, FireOutcome,
    JobFilter, JobId, JobRecord, Limit, LimitScope, NewJob, PauseOutcome, PurgeRequest, ReclaimRequest, Reclaimed,
    Renewal, RequeueOutcome, ResumeOutcome, ScheduleRecord, Signal, SignalOutcome, StatusCount, Store, StoreError,
    StoreErrorKind, Timestamp, Write, WriteOutcome,
};
use parking_lot::Mutex;
use rusqlite::Connection;

use crate::connection::{adding_work, enable_wal, open_connection, page_limits, quick_check, PageLimits};
use crate::error::Context;
use crate::group::GroupWriter;
use crate::preflight::{self, OpenHere};
use crate::{claim, control, jobs, schedules, schema, throttle, waits, writes, SqliteOptions};

/// A [`Store`] in one SQLite file.
///
/// The file is in WAL mode; writes go through one writer connection in `BEGIN IMMEDIATE`
/// transactions (SQLite serializes writers anyway, and one writer per process keeps WAL
/// checkpoints running); reads use a small pool of reader connections and never wait for writes.
/// Several processes on one machine may open the same file: writers wait for each other up to the
/// busy timeout. A new file is created with mode 0600.
///
/// ```
/// use durable_jobs_sqlite::SqliteStore;
/// use durable_jobs_store::{JobFilter, Store};
///
/// let dir = tempfile::tempdir()?;
/// let store = SqliteStore::open(dir.path().join("jobs.db"))?;
/// assert!(store.list(&JobFilter::default())?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SqliteStore {
    path: PathBuf,
    /// The canonical path: the same for every process here that opens this file.
    identity: String,
    writer: GroupWriter,
    /// The writer's page limits, if the file has a maximum size.
    limits: Option<PageLimits>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// Set by an enqueue here of a job ready at once: the next claim (almost surely) has work and
    /// skips its read-only probe, which would re-read pages the enqueue just changed.
    enqueued_here: AtomicBool,
    /// Keeps other stores of this process from reading the file outside SQLite. Declared last:
    /// dropped after the connections.
    _open_here: OpenHere,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("readers", &self.readers.len())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default [`SqliteOptions`].
    ///
    /// # Errors
    ///
    /// A [`StoreError`] if the file cannot be created or opened, is not a SQLite database
    /// ([`Corrupt`](durable_jobs_store::StoreErrorKind::Corrupt)), or has a schema newer than this
    /// library or tables named like ours that it did not create
    /// ([`IncompatibleSchema`](durable_jobs_store::StoreErrorKind::IncompatibleSchema); the file
    /// is then left unchanged). A database of an older schema is upgraded in place.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// Opens (creating if needed) the database at `path` with `options`.
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`].
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let open_here = preflight::check_and_register(&path)?;
        if options.check_on_open && path.exists() {
            quick_check(&path, &options)?;
        }
        let mut writer = open_connection(&path, &options, true)?;
        let limits = page_limits(&writer, &options)?;
        // Refuse colliding tables or a newer schema before the first change to the file.
        schema::inspect(&writer)?;
        enable_wal(&writer, &path)?;
        schema::migrate(&mut writer, Timestamp::now().0)?;
        let writer = GroupWriter::new(writer);
        let readers = (0..options.readers)
            .map(|_| open_connection(&path, &options, false).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        let identity = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone()).to_string_lossy().into_owned();
        Ok(SqliteStore {
            path,
            identity,
            writer,
            limits,
            readers,
            next_reader: AtomicUsize::new(0),
            enqueued_here: AtomicBool::new(false),
            _open_here: open_here,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs SQLite's full `integrity_check` (reads the whole file; for operations and tests).
    ///
    /// # Errors
    ///
    /// [`Corrupt`](durable_jobs_store::StoreErrorKind::Corrupt) with SQLite's findings, or the
    /// error that stopped the check.
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let verdict: String =
            self.read("integrity check", |c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))?;
        if verdict == "ok" {
            Ok(())
        } else {
            Err(StoreError::new(StoreErrorKind::Corrupt, format!("sqlite: integrity check: {verdict}")))
        }
    }

    /// Runs `f` on a reader connection (each statement sees the latest committed state).
    fn read<T>(&self, what: &str, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let n = self.readers.len();
        let conn = (0..n)
            .find_map(|i| self.readers[(start + i) % n].try_lock())
            .unwrap_or_else(|| self.readers[start % n].lock());
        f(&conn).context(what)
    }
}

impl Store for SqliteStore {
    // Writes go through the group writer, which may run them on another thread's transaction:
    // their inputs are owned copies.

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().multi_process(true).durable(true)
    }

    fn local_identity(&self) -> Option<String> {
        Some(self.identity.clone())
    }

    fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError> {
        let ready_now = jobs.iter().any(|j| j.run_at <= j.created_at);
        let jobs = jobs.to_vec();
        let limits = self.limits;
        let enqueued = self.writer.write("enqueue", move |c| adding_work(c, limits, |c| jobs::enqueue(c, &jobs)))?;
        if ready_now {
            self.enqueued_here.store(true, Ordering::Release);
        }
        Ok(enqueued)
    }

    fn claim(&self, req: &ClaimRequest) -> Result<Claimed, StoreError> {
        // An idle worker's claims only read, unless a job was just enqueued here.
        let enqueued_here = req.limit > 0 && self.enqueued_here.swap(false, Ordering::AcqRel);
        if !enqueued_here {
            if let Some(idle) = self.read("look for work", |c| claim::idle(c, req))? {
                return Ok(idle);
            }
        }
        let req = req.clone();
        self.writer.write("claim", move |c| claim::claim(c, &req))
    }

    fn commit(&self, worker: &str, now: Timestamp, writes: &[Write]) -> Result<Vec<WriteOutcome>, StoreError> {
        let (worker, writes) = (worker.to_owned(), writes.to_vec());
        self.writer.write("commit", move |c| writes::commit(c, &worker, now, &writes))
    }

    fn renew(&self, worker: &str, claims: &[Claim], lease_until: Timestamp) -> Result<Renewal, StoreError> {
        let (worker, claims) = (worker.to_owned(), claims.to_vec());
        self.writer.write("renew", move |c| writes::renew(c, &worker, &claims, lease_until))
    }

    fn release(&self, worker: &str, claims: &[Claim], now: Timestamp) -> Result<usize, StoreError> {
        let (worker, claims) = (worker.to_owned(), claims.to_vec());
        self.writer.write("release", move |c| writes::release(c, &worker, &claims, now))
    }

    fn reclaim(&self, req: &ReclaimRequest) -> Result<Reclaimed, StoreError> {
        if !self.read("look for lost runs", |c| writes::any_lost(c, req))? {
            return Ok(Reclaimed::default());
        }
        let req = req.clone();
        self.writer.write("reclaim lost runs", move |c| writes::reclaim(c, &req))
    }

    fn cancel(&self, job: JobId, now: Timestamp) -> Result<CancelOutcome, StoreError> {
        self.writer.write("cancel", move |c| writes::cancel(c, job, now))
    }

    fn cancel_many(&self, jobs: &[JobId], now: Timestamp) -> Result<Vec<CancelOutcome>, StoreError> {
        let jobs = jobs.to_vec();
        self.writer.write("cancel jobs", move |c| jobs.iter().map(|job| writes::cancel(c, *job, now)).collect())
    }

    fn requeue(&self, job: JobId, now: Timestamp) -> Result<RequeueOutcome, StoreError> {
        self.writer.write("requeue", move |c| writes::requeue(c, job, now))
    }

    fn requeue_many(&self, jobs: &[JobId], now: Timestamp) -> Result<Vec<RequeueOutcome>, StoreError> {
        let jobs = jobs.to_vec();
        self.writer.write("requeue jobs", move |c| jobs.iter().map(|job| writes::requeue(c, *job, now)).collect())
    }

    fn pause(&self, job: JobId, now: Timestamp) -> Result<PauseOutcome, StoreError> {
        self.writer.write("pause", move |c| control::pause(c, job, now))
    }

    fn resume(&self, job: JobId, now: Timestamp) -> Result<ResumeOutcome, StoreError> {
        self.writer.write("resume", move |c| control::resume(c, job, now))
    }

    fn pause_queue(&self, queue: &str, paused: bool, now: Timestamp) -> Result<(), StoreError> {
        let queue = queue.to_owned();
        self.writer.write("pause queue", move |c| control::pause_queue(c, &queue, paused, now))
    }

    fn paused_queues(&self) -> Result<Vec<String>, StoreError> {
        self.read("read paused queues", control::paused_queues)
    }

    fn purge(&self, req: &PurgeRequest) -> Result<usize, StoreError> {
        if req.status.is_live() {
            let message = format!("sqlite: cannot purge {} jobs, only finished ones", req.status);
            return Err(StoreError::new(StoreErrorKind::InvalidInput, message));
        }
        let req = *req;
        self.writer.write("purge", move |c| control::purge(c, &req))
    }

    fn delete(&self, jobs: &[JobId]) -> Result<Vec<DeleteOutcome>, StoreError> {
        let jobs = jobs.to_vec();
        self.writer.write("delete jobs", move |c| control::delete(c, &jobs))
    }

    fn lead(&self, role: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool, StoreError> {
        let (role, holder) = (role.to_owned(), holder.to_owned());
        self.writer.write("lead", move |c| control::lead(c, &role, &holder, now, until))
    }

    fn set_limit(&self, limit: &Limit) -> Result<(), StoreError> {
        throttle::stored(&limit.scope)?;
        let limit = limit.clone();
        self.writer.write("set limit", move |c| throttle::set_limit(c, &limit))
    }

    fn remove_limit(&self, scope: &LimitScope) -> Result<bool, StoreError> {
        throttle::stored(scope)?;
        let scope = scope.clone();
        self.writer.write("remove limit", move |c| throttle::remove_limit(c, &scope))
    }

    fn limits(&self) -> Result<Vec<Limit>, StoreError> {
        self.read("read limits", throttle::limits)
    }

    fn put_schedule(&self, schedule: &ScheduleRecord) -> Result<(), StoreError> {
        let schedule = schedule.clone();
        self.writer.write("put schedule", move |c| schedules::put(c, &schedule))
    }

    fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.read("read schedules", schedules::all)
    }

    fn remove_schedule(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.writer.write("remove schedule", move |c| schedules::remove(c, &name))
    }

    fn fire(
        &self,
        name: &str,
        due: Timestamp,
        next: Timestamp,
        job: &NewJob,
        now: Timestamp,
    ) -> Result<FireOutcome, StoreError> {
        let (name, job) = (name.to_owned(), job.clone());
        let limits = self.limits;
        self.writer.write("fire schedule", move |c| {
            adding_work(c, limits, |c| schedules::fire(c, &name, due, next, &job, now))
        })
    }

    fn signal(&self, job: JobId, name: &str, payload: &[u8], now: Timestamp) -> Result<SignalOutcome, StoreError> {
        let (name, payload) = (name.to_owned(), payload.to_vec());
        let limits = self.limits;
        self.writer.write("signal", move |c| adding_work(c, limits, |c| waits::signal(c, job, &name, &payload, now)))
    }

    fn signals(&self, job: JobId) -> Result<Vec<Signal>, StoreError> {
        self.read("read signals", |c| waits::signals(c, job))
    }

    fn checkpoints(&self, job: JobId, from: u32, limit: usize) -> Result<Vec<Checkpoint>, StoreError> {
        self.read("read checkpoints", |c| jobs::checkpoints(c, job, from, limit))
    }

    fn get(&self, job: JobId) -> Result<Option<JobRecord>, StoreError> {
        self.read("get job", |c| jobs::get(c, job))
    }

    fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        self.read("list jobs", |c| jobs::list(c, filter))
    }

    fn counts(&self, now: Timestamp) -> Result<Vec<StatusCount>, StoreError> {
        self.read("count jobs", |c| jobs::counts(c, now))
    }
}
