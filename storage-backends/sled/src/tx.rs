//! One transaction over every tree, with the index upkeep every job change needs.

use std::cell::RefCell;

use durable_jobs_store::{transition, Checkpoint, Claim, JobId, JobRecord, JobStatus, StoreError};
use sled::transaction::{ConflictableTransactionError, Transactional, TransactionalTree};
use sled::IVec;

use crate::error::transaction_error;
use crate::finished::Pending;
use crate::limits::{counted, RunningLog};
use crate::store::SledStore;
use crate::{codec, keys};

/// The meta-tree key of the highest job id ever inserted.
pub(crate) const MAX_ID_KEY: &[u8] = b"max_id";
/// The meta-tree key naming the layout of the other trees.
pub(crate) const FORMAT_KEY: &[u8] = b"format";
/// The meta-tree key of the highest signal id ever assigned (absent before the first signal).
pub(crate) const MAX_SIGNAL_KEY: &[u8] = b"max_signal";
/// The layout this version reads and writes: format 3 with `cancel_requested` and
/// `concurrency_key` in job records, the finished index, and the trees of paused queues, leads,
/// schedules, limits and limit windows.
pub(crate) const FORMAT: &[u8] = b"durable-jobs-sled/4";
/// The layout before operator control (shorter job records, no finished index), upgraded on
/// open.
pub(crate) const FORMAT_3: &[u8] = b"durable-jobs-sled/3";
/// The layout before signals and children (no `signals` or `children` trees, shorter job
/// records), upgraded on open.
pub(crate) const FORMAT_2: &[u8] = b"durable-jobs-sled/2";
/// The first layout (one claim index per queue; no claim tokens), upgraded on open.
pub(crate) const FORMAT_1: &[u8] = b"durable-jobs-sled/1";

/// A layout this version reads, by its format marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// [`FORMAT_1`], upgraded on open.
    V1,
    /// [`FORMAT_2`], upgraded on open.
    V2,
    /// [`FORMAT_3`], upgraded on open.
    V3,
    /// [`FORMAT`].
    Current,
}

impl Format {
    /// The format a meta tree's marker names, if this version reads it.
    pub(crate) fn of(marker: &[u8]) -> Option<Format> {
        match marker {
            m if m == FORMAT => Some(Format::Current),
            m if m == FORMAT_3 => Some(Format::V3),
            m if m == FORMAT_2 => Some(Format::V2),
            m if m == FORMAT_1 => Some(Format::V1),
            _ => None,
        }
    }
}

/// An error inside a transaction closure.
pub(crate) type TxError = ConflictableTransactionError<StoreError>;

/// The trees of one database, inside one transaction.
pub(crate) struct Tx<'a> {
    pub(crate) jobs: &'a TransactionalTree,
    /// Pending jobs by queue, name and claim order.
    pub(crate) ready: &'a TransactionalTree,
    /// Scheduled jobs by queue and `run_at`.
    pub(crate) due: &'a TransactionalTree,
    /// Running jobs by lease expiry.
    pub(crate) lease: &'a TransactionalTree,
    /// Waiting jobs with a wake time, by queue and `wake_at`.
    pub(crate) wake: &'a TransactionalTree,
    /// Unique key → the live job holding it.
    pub(crate) unique: &'a TransactionalTree,
    /// Every job with a unique key, by key and id → its creation time (for unique windows).
    pub(crate) keys: &'a TransactionalTree,
    pub(crate) checkpoints: &'a TransactionalTree,
    /// Child jobs by parent, the parent's step index and id (see [`keys::child`]).
    pub(crate) children: &'a TransactionalTree,
    /// Pending signals by job and signal id.
    pub(crate) signals: &'a TransactionalTree,
    /// Finished jobs by status and `finished_at` (see `finished.rs`).
    pub(crate) finished: &'a TransactionalTree,
    /// The finished-index entries changed so far, written when the closure is done.
    pub(crate) finished_pending: RefCell<Pending>,
    pub(crate) meta: &'a TransactionalTree,
    /// Schedules by name.
    pub(crate) schedules: &'a TransactionalTree,
    /// Limit window counts by scope and key (see [`keys::window`]).
    pub(crate) windows: &'a TransactionalTree,
    /// Where jobs moved into or out of `Running` are logged, while limits count them.
    pub(crate) running: Option<&'a RunningLog>,
}

impl SledStore {
    /// One transaction over every tree (but those written alone); the caller holds the write
    /// lock. While limits count running jobs, the jobs it moves into or out of `Running` are
    /// counted once it has committed.
    pub(crate) fn transact<T>(&self, what: &str, f: impl Fn(&Tx<'_>) -> Result<T, TxError>) -> Result<T, StoreError> {
        let t = self.trees();
        let all = (
            &t.jobs,
            &t.ready,
            &t.due,
            &t.lease,
            &t.wake,
            &t.unique,
            &t.keys,
            &t.checkpoints,
            &t.children,
            &t.signals,
            &t.finished,
            &t.meta,
            &t.schedules,
            &t.windows,
        );
        let log = self.limits.lock().counts_running().then(RunningLog::default);
        let out = all
            .transaction(
                |(
                    jobs,
                    ready,
                    due,
                    lease,
                    wake,
                    unique,
                    keys,
                    checkpoints,
                    children,
                    signals,
                    finished,
                    meta,
                    schedules,
                    windows,
                )| {
                    if let Some(log) = &log {
                        log.borrow_mut().clear();
                    }
                    let running = log.as_ref();
                    let tx = Tx {
                        jobs,
                        ready,
                        due,
                        lease,
                        wake,
                        unique,
                        keys,
                        checkpoints,
                        children,
                        signals,
                        finished,
                        meta,
                        schedules,
                        windows,
                        running,
                        finished_pending: RefCell::default(),
                    };
                    let out = f(&tx)?;
                    tx.write_finished()?;
                    Ok(out)
                },
            )
            .map_err(|e| transaction_error(what, e))?;
        if let Some(log) = log {
            self.limits.lock().log_running(log.into_inner());
        }
        Ok(out)
    }
}

pub(crate) fn abort(e: StoreError) -> TxError {
    ConflictableTransactionError::Abort(e)
}

impl Tx<'_> {
    pub(crate) fn job(&self, id: JobId) -> Result<Option<JobRecord>, TxError> {
        match self.jobs.get(keys::id(id))? {
            Some(bytes) => codec::decode_job(&bytes).map(Some).map_err(abort),
            None => Ok(None),
        }
    }

    /// The job if run `claim` of `worker` holds its lease.
    pub(crate) fn fenced(&self, claim: Claim, worker: &str) -> Result<Option<JobRecord>, TxError> {
        Ok(self.job(claim.job)?.filter(|j| transition::holds(j, worker, claim)))
    }

    /// The live job holding unique key `key`.
    pub(crate) fn live_holder(&self, key: &str) -> Result<Option<JobId>, TxError> {
        Ok(self.unique.get(key.as_bytes())?.and_then(|v| keys::id_from(&v)))
    }

    /// Writes `new`, moving its index entries from where `old` had them.
    pub(crate) fn save(&self, old: Option<&JobRecord>, new: &JobRecord) -> Result<(), TxError> {
        match old {
            Some(old) => self.unindex(old)?,
            None => {
                if let Some(key) = &new.unique_key {
                    self.keys.insert(keys::unique_key(key, new.id), &keys::time_value(new.created_at))?;
                }
            }
        }
        // A job's parent is set when it is inserted and never changes.
        let old_parent = old.and_then(|o| o.parent);
        if old_parent != new.parent {
            if let Some(link) = old_parent {
                self.children.remove(&keys::child(link, new.id))?;
            }
            if let Some(link) = new.parent {
                self.children.insert(&keys::child(link, new.id), &[])?;
            }
        }
        self.index(new)?;
        self.jobs.insert(&keys::id(new.id), codec::encode_job(new).map_err(abort)?)?;
        if let Some(log) = self.running {
            let (was, is) = (old.is_some_and(|o| o.status == JobStatus::Running), new.status == JobStatus::Running);
            if was != is {
                log.borrow_mut().push((counted(new), if is { 1 } else { -1 }));
            }
        }
        Ok(())
    }

    /// The index entry a job has in its status, as (tree, key).
    fn entry<'t>(&'t self, j: &JobRecord) -> Option<(&'t TransactionalTree, Vec<u8>)> {
        match (j.status, j.lease_until, j.wake_at, j.finished_at) {
            (JobStatus::Pending, ..) => Some((self.ready, keys::ready(&j.queue, &j.name, j.priority, j.run_at, j.id))),
            (JobStatus::Scheduled, ..) => Some((self.due, keys::queue_timed(&j.queue, j.run_at, j.id))),
            (JobStatus::Running, Some(until), ..) => Some((self.lease, keys::timed(until, j.id).to_vec())),
            (JobStatus::Waiting, _, Some(at), _) => Some((self.wake, keys::queue_timed(&j.queue, at, j.id))),
            _ => None,
        }
    }

    fn index(&self, j: &JobRecord) -> Result<(), TxError> {
        if let Some((tree, key)) = self.entry(j) {
            tree.insert(key, &[])?;
        }
        if let (true, Some(at)) = (j.status.is_terminal(), j.finished_at) {
            self.finish(j.status, at, j.id)?;
        }
        if let (true, Some(key)) = (j.status.is_live(), &j.unique_key) {
            self.unique.insert(key.as_bytes(), &keys::id(j.id))?;
        }
        Ok(())
    }

    fn unindex(&self, j: &JobRecord) -> Result<(), TxError> {
        if let Some((tree, key)) = self.entry(j) {
            tree.remove(key)?;
        }
        if let (true, Some(at)) = (j.status.is_terminal(), j.finished_at) {
            self.unfinish(j.status, at, j.id)?;
        }
        if let (true, Some(key)) = (j.status.is_live(), &j.unique_key) {
            self.unique.remove(key.as_bytes())?;
        }
        Ok(())
    }

    /// Deletes `job` with its index entries, its checkpoints and its signals (their keys, read
    /// under the write lock before the transaction). Its children keep theirs: a child's
    /// entry in the children index is its own.
    pub(crate) fn remove(&self, job: &JobRecord, checkpoints: &[IVec], signals: &[IVec]) -> Result<(), TxError> {
        self.unindex(job)?;
        if let (Some(log), JobStatus::Running) = (self.running, job.status) {
            log.borrow_mut().push((counted(job), -1));
        }
        if let Some(key) = &job.unique_key {
            self.keys.remove(keys::unique_key(key, job.id))?;
        }
        if let Some(link) = job.parent {
            self.children.remove(&keys::child(link, job.id))?;
        }
        self.jobs.remove(&keys::id(job.id))?;
        for key in checkpoints {
            self.checkpoints.remove(key)?;
        }
        for key in signals {
            self.signals.remove(key)?;
        }
        Ok(())
    }

    /// Raises the stored highest job id to `id` (it never goes down, whatever is deleted).
    pub(crate) fn raise_max_id(&self, id: JobId) -> Result<(), TxError> {
        let current = self.meta.get(MAX_ID_KEY)?.and_then(|v| keys::id_from(&v));
        if current.is_none_or(|c| c < id) {
            self.meta.insert(MAX_ID_KEY, &keys::id(id))?;
        }
        Ok(())
    }

    pub(crate) fn put_checkpoint(&self, job: JobId, c: &Checkpoint) -> Result<(), TxError> {
        self.checkpoints.insert(&keys::checkpoint(job, c.index), codec::encode_checkpoint(c).map_err(abort)?)?;
        Ok(())
    }

    /// Marks the database as being in the current format.
    pub(crate) fn set_format(&self) -> Result<(), sled::transaction::UnabortableTransactionError> {
        self.meta.insert(FORMAT_KEY, FORMAT)?;
        Ok(())
    }
}
