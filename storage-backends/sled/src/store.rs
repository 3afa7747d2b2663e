//! `SledStore`: jobs, indexes, checkpoints and signals as sled trees, written in multi-tree
//! transactions and acknowledged after a shared flush.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use durable_jobs_store::transition::{self, Recovery};
use durable_jobs_store::{
    CancelOutcome, Capabilities, Checkpoint, Claim, ClaimRequest, Claimed, DeleteOutcome, Enqueued, FireOutcome,
    JobFilter, JobId, JobRecord, Limit, LimitScope, NewJob, PauseOutcome, PurgeRequest, ReclaimRequest, Reclaimed,
    Renewal, RequeueOutcome, ResumeOutcome, ScheduleRecord, Signal, SignalOutcome, StatusCount, StatusCounter, Store,
    StoreError, Timestamp, Write, WriteOutcome,
};
use parking_lot::Mutex;
use sled::Tree;

use crate::error::store_error;
use crate::flush::GroupFlush;
use crate::limits::Limits;
use crate::tx::{Tx, TxError, MAX_ID_KEY};
use crate::{codec, keys, open, upgrade, SledOptions};

/// A [`Store`] in a sled 0.34 directory.
///
/// One process at a time may open a directory. Writes are serialized by one lock (like
/// SQLite's single writer), applied as one transaction over all trees, and acknowledged after
/// `flush()`; writers that commit during a flush share the next one (group commit). See the
/// crate docs for what survives a crash.
///
/// ```
/// use durable_jobs_sled::SledStore;
/// use durable_jobs_store::{JobFilter, Store};
///
/// let dir = tempfile::tempdir()?;
/// let store = SledStore::open(dir.path().join("jobs"))?;
/// assert!(store.list(&JobFilter::default())?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SledStore {
    path: PathBuf,
    /// The canonical path of the directory.
    identity: String,
    db: sled::Db,
    trees: Trees,
    write_lock: Mutex<()>,
    flush: GroupFlush,
    /// The `paused` tree, read at open and changed with it under the write lock, so that a
    /// claim does not read a tree to leave paused queues out.
    pub(crate) paused: Mutex<BTreeSet<String>>,
    /// The `limits` tree and what the limits count, kept as `paused` is (see `limits.rs`).
    pub(crate) limits: Mutex<Limits>,
}

/// The trees of one database (see [`Tx`] for what each holds).
pub(crate) struct Trees {
    pub(crate) jobs: Tree,
    pub(crate) ready: Tree,
    pub(crate) due: Tree,
    pub(crate) lease: Tree,
    pub(crate) wake: Tree,
    pub(crate) unique: Tree,
    pub(crate) keys: Tree,
    pub(crate) checkpoints: Tree,
    pub(crate) children: Tree,
    pub(crate) signals: Tree,
    pub(crate) finished: Tree,
    pub(crate) meta: Tree,
    pub(crate) schedules: Tree,
    pub(crate) windows: Tree,
    /// Paused queues → when they were paused. Not in the transactions of other calls: it is
    /// written alone, under the write lock.
    pub(crate) paused: Tree,
    /// Role → its holder and lease end ([`codec::encode_lead`]); written alone, as `paused`.
    pub(crate) leads: Tree,
    /// Scope → limit ([`codec::encode_limit`]); written alone, as `paused`.
    pub(crate) limits: Tree,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (creating if needed) the database directory `path` with default [`SledOptions`].
    ///
    /// # Errors
    ///
    /// [`AlreadyOpen`](durable_jobs_store::StoreErrorKind::AlreadyOpen) if another process (or
    /// another `SledStore`) has it open; [`Corrupt`](durable_jobs_store::StoreErrorKind::Corrupt)
    /// if it is not a durable-jobs sled database or is damaged (it is then left untouched);
    /// [`IncompatibleSchema`](durable_jobs_store::StoreErrorKind::IncompatibleSchema) if it was
    /// written in a newer format; [`Io`](durable_jobs_store::StoreErrorKind::Io) if it cannot be
    /// read or created. A database in an older format is upgraded in place.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        SledStore::open_with(path, SledOptions::default())
    }

    /// Opens (creating if needed) the database directory `path` with `options`.
    ///
    /// # Errors
    ///
    /// As [`SledStore::open`].
    pub fn open_with(path: impl AsRef<Path>, options: SledOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let (db, format) = open::open(&path, &options)?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| store_error("open tree", e));
        let trees = Trees {
            jobs: tree("jobs")?,
            ready: tree("ready")?,
            due: tree("due")?,
            lease: tree("lease")?,
            wake: tree("wake")?,
            unique: tree("unique")?,
            keys: tree("keys")?,
            checkpoints: tree("checkpoints")?,
            children: tree("children")?,
            signals: tree("signals")?,
            finished: tree("finished")?,
            meta: tree("meta")?,
            schedules: tree("schedules")?,
            windows: tree("windows")?,
            paused: tree("paused")?,
            leads: tree("leads")?,
            limits: tree("limits")?,
        };
        let identity = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone()).to_string_lossy().into_owned();
        let store = SledStore {
            path,
            identity,
            db,
            trees,
            write_lock: Mutex::new(()),
            flush: GroupFlush::default(),
            paused: Mutex::new(BTreeSet::new()),
            limits: Mutex::new(Limits::default()),
        };
        upgrade::upgrade(&store, format, Timestamp::now())?;
        *store.paused.lock() = store.read_paused()?;
        *store.limits.lock() = store.read_limits()?;
        Ok(store)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn trees(&self) -> &Trees {
        &self.trees
    }

    /// Runs `f` as one transaction over every tree while holding the write lock, then waits
    /// until a flush has made it durable. `f` may run more than once (sled retries conflicts).
    pub(crate) fn write<T>(&self, what: &str, f: impl Fn(&Tx<'_>) -> Result<T, TxError>) -> Result<T, StoreError> {
        self.locked(|s| s.transact(what, f))
    }

    /// Runs `f` (reads, then transactions) holding the write lock, so that nothing changes
    /// between what `f` reads outside its transactions and what they write; then waits until a
    /// flush has made the writes durable.
    pub(crate) fn locked<T>(&self, f: impl FnOnce(&Self) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let (out, seq) = {
            let _writer = self.write_lock.lock();
            (f(self)?, self.flush.committed())
        };
        self.flush.wait_durable(&self.db, seq)?;
        Ok(out)
    }

    /// A new job id (from sled's id counter, which never hands out an id twice); the caller
    /// holds the write lock and inserts the job, so that ids follow insertion order.
    pub(crate) fn new_id(&self) -> Result<JobId, StoreError> {
        let id = self.db.generate_id().map_err(|e| store_error("generate id", e))?;
        Ok(JobId(id.cast_signed().saturating_add(1)))
    }

    /// The runs `req` recovers, in lease order.
    fn lost_runs(&self, req: &ReclaimRequest) -> Result<Vec<JobId>, StoreError> {
        let mut lost = Vec::new();
        for entry in &self.trees.lease {
            if lost.len() == req.limit {
                break;
            }
            let (k, _) = entry.map_err(|e| store_error("scan leases", e))?;
            let (Some(id), Some(until)) = (keys::id_from(&k), keys::timed_at(&k)) else { continue };
            if until < req.now {
                lost.push(id);
            } else if req.dead_workers.is_empty() {
                break;
            } else if self.get(id)?.is_some_and(|j| transition::is_reclaimable(&j, req)) {
                lost.push(id);
            }
        }
        Ok(lost)
    }
}

impl Store for SledStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new().durable(true)
    }

    fn local_identity(&self) -> Option<String> {
        Some(self.identity.clone())
    }

    fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError> {
        self.locked(|s| {
            let planned = s.plan_enqueue(jobs)?;
            s.transact("enqueue", |tx| tx.insert(jobs, &planned))?;
            Ok(planned)
        })
    }

    fn claim(&self, req: &ClaimRequest) -> Result<Claimed, StoreError> {
        self.claim_jobs(req)
    }

    fn commit(&self, worker: &str, now: Timestamp, writes: &[Write]) -> Result<Vec<WriteOutcome>, StoreError> {
        self.locked(|s| {
            let plan = s.plan_commit(worker, writes)?;
            s.transact("commit", |tx| tx.commit(worker, now, writes, &plan))
        })
    }

    fn renew(&self, worker: &str, claims: &[Claim], lease_until: Timestamp) -> Result<Renewal, StoreError> {
        self.write("renew", |tx| {
            let (mut lost, mut cancelled) = (Vec::new(), Vec::new());
            for &claim in claims {
                match tx.fenced(claim, worker)? {
                    Some(old) => {
                        let mut job = old.clone();
                        job.lease_until = Some(lease_until);
                        tx.save(Some(&old), &job)?;
                        if job.cancel_requested {
                            cancelled.push(claim);
                        }
                    }
                    None => lost.push(claim),
                }
            }
            Ok(Renewal::new(lost, cancelled))
        })
    }

    fn release(&self, worker: &str, claims: &[Claim], now: Timestamp) -> Result<usize, StoreError> {
        self.write("release", |tx| {
            let mut released = 0;
            for &claim in claims {
                if let Some(old) = tx.fenced(claim, worker)? {
                    let mut job = old.clone();
                    transition::release(&mut job, now);
                    tx.save(Some(&old), &job)?;
                    tx.count_if_child(&job, now)?;
                    released += 1;
                }
            }
            Ok(released)
        })
    }

    fn reclaim(&self, req: &ReclaimRequest) -> Result<Reclaimed, StoreError> {
        let lost = self.lost_runs(req)?;
        if lost.is_empty() {
            return Ok(Reclaimed::default());
        }
        self.locked(|s| {
            let lost = s.lost_runs(req)?;
            s.transact("reclaim lost runs", |tx| {
                let mut out = Reclaimed::default();
                for &id in &lost {
                    let Some(old) = tx.job(id)?.filter(|j| transition::is_reclaimable(j, req)) else { continue };
                    let mut job = old.clone();
                    let outcome = match transition::reclaim(&mut job, req) {
                        Recovery::Requeued => &mut out.requeued,
                        Recovery::Failed => &mut out.failed,
                        Recovery::Released => &mut out.released,
                        Recovery::Cancelled => &mut out.cancelled,
                    };
                    outcome.push(id);
                    tx.save(Some(&old), &job)?;
                    tx.count_if_child(&job, req.now)?;
                }
                Ok(out)
            })
        })
    }

    fn cancel(&self, job: JobId, now: Timestamp) -> Result<CancelOutcome, StoreError> {
        self.locked(|s| {
            let descendants = s.descendants_to_cancel(job)?;
            s.transact("cancel", |tx| tx.cancel(job, &descendants, now))
        })
    }

    /// One transaction per job, under one hold of the write lock.
    fn cancel_many(&self, jobs: &[JobId], now: Timestamp) -> Result<Vec<CancelOutcome>, StoreError> {
        self.locked(|s| {
            jobs.iter()
                .map(|&job| {
                    let descendants = s.descendants_to_cancel(job)?;
                    s.transact("cancel", |tx| tx.cancel(job, &descendants, now))
                })
                .collect()
        })
    }

    fn requeue(&self, job: JobId, now: Timestamp) -> Result<RequeueOutcome, StoreError> {
        Ok(self.requeue_jobs(&[job], now)?.pop().unwrap_or(RequeueOutcome::NotFound))
    }

    fn requeue_many(&self, jobs: &[JobId], now: Timestamp) -> Result<Vec<RequeueOutcome>, StoreError> {
        self.requeue_jobs(jobs, now)
    }

    fn pause(&self, job: JobId, now: Timestamp) -> Result<PauseOutcome, StoreError> {
        self.pause_job(job, now)
    }

    fn resume(&self, job: JobId, now: Timestamp) -> Result<ResumeOutcome, StoreError> {
        self.resume_job(job, now)
    }

    fn pause_queue(&self, queue: &str, paused: bool, now: Timestamp) -> Result<(), StoreError> {
        self.set_queue_paused(queue, paused, now)
    }

    fn paused_queues(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.paused.lock().iter().cloned().collect())
    }

    fn purge(&self, req: &PurgeRequest) -> Result<usize, StoreError> {
        self.purge_finished(req)
    }

    fn delete(&self, jobs: &[JobId]) -> Result<Vec<DeleteOutcome>, StoreError> {
        self.delete_jobs(jobs)
    }

    fn lead(&self, role: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool, StoreError> {
        self.take_lead(role, holder, now, until)
    }

    fn set_limit(&self, limit: &Limit) -> Result<(), StoreError> {
        self.set_limit_of(limit)
    }

    fn remove_limit(&self, scope: &LimitScope) -> Result<bool, StoreError> {
        self.remove_limit_of(scope)
    }

    fn limits(&self) -> Result<Vec<Limit>, StoreError> {
        Ok(self.all_limits())
    }

    fn put_schedule(&self, schedule: &ScheduleRecord) -> Result<(), StoreError> {
        self.put_schedule_record(schedule)
    }

    fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.all_schedules()
    }

    fn remove_schedule(&self, name: &str) -> Result<bool, StoreError> {
        self.remove_schedule_named(name)
    }

    fn fire(
        &self,
        name: &str,
        due: Timestamp,
        next: Timestamp,
        job: &NewJob,
        now: Timestamp,
    ) -> Result<FireOutcome, StoreError> {
        self.fire_schedule(name, due, next, job, now)
    }

    fn signal(&self, job: JobId, name: &str, payload: &[u8], now: Timestamp) -> Result<SignalOutcome, StoreError> {
        self.write("signal", |tx| tx.signal(job, name, payload, now))
    }

    fn signals(&self, job: JobId) -> Result<Vec<Signal>, StoreError> {
        self.signals_of(job)
    }

    fn checkpoints(&self, job: JobId, from: u32, limit: usize) -> Result<Vec<Checkpoint>, StoreError> {
        self.trees
            .checkpoints
            .range(keys::checkpoint(job, from)..=keys::checkpoint(job, u32::MAX))
            .take(limit)
            .map(|entry| {
                let (key, value) = entry.map_err(|e| store_error("read checkpoints", e))?;
                let index = key.get(8..12).and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes);
                codec::decode_checkpoint(index, &value)
            })
            .collect()
    }

    fn get(&self, job: JobId) -> Result<Option<JobRecord>, StoreError> {
        match self.trees.jobs.get(keys::id(job)).map_err(|e| store_error("get job", e))? {
            Some(bytes) => codec::decode_job(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        if let Some(parent) = filter.parent {
            return self.list_children(parent, filter);
        }
        let from = filter.after.map_or(0, |a| a.0.saturating_add(1)).max(0);
        let mut out = Vec::new();
        let mut skipped = 0;
        for job in decode_all(self.trees.jobs.range(keys::id(JobId(from))..)) {
            if out.len() == filter.limit {
                break;
            }
            let job = job?;
            if !filter.matches(&job) {
                continue;
            }
            if skipped < filter.offset {
                skipped += 1;
                continue;
            }
            out.push(job);
        }
        Ok(out)
    }

    fn counts(&self, now: Timestamp) -> Result<Vec<StatusCount>, StoreError> {
        // Streamed: one record decoded at a time, whatever the table's size.
        let mut counter = StatusCounter::new(now);
        for job in decode_all(self.trees.jobs.iter()) {
            counter.add(&job?);
        }
        Ok(counter.finish())
    }
}

impl Drop for SledStore {
    /// Flushes, and records the highest job id beside the database so that a later open can
    /// tell a database that lost acknowledged data from a healthy one.
    fn drop(&mut self) {
        let _writer = self.write_lock.lock();
        if self.db.flush().is_ok() {
            if let Ok(Some(max)) = self.trees.meta.get(MAX_ID_KEY) {
                open::write_mark(&self.path, &max);
            }
        }
    }
}

fn decode_all(
    iter: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
) -> impl Iterator<Item = Result<JobRecord, StoreError>> {
    iter.map(|entry| entry.map_err(|e| store_error("scan jobs", e)).and_then(|(_, v)| codec::decode_job(&v)))
}
