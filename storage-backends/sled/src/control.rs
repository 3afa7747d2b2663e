//! Operator control: requeueing, pausing jobs and queues, deleting finished jobs, leads.
//!
//! Paused queues and leads live in small trees of their own, written alone under the write
//! lock: nothing else needs to change with them atomically, and the transactions of the other
//! calls do not grow by two trees. Paused queues are also kept in memory (one process opens a
//! database), so that a claim leaves them out without reading a tree.
//!
//! `purge` reads the finished index (`finished.rs`) instead of decoding every record (the
//! engine's retention purges three statuses every minute, every second while it catches up).
//! The index lists the jobs that finish together in one entry, which makes it nearly free; see
//! `finished.rs` for what one entry per job cost.

use std::collections::{BTreeSet, HashMap};

use durable_jobs_store::transition;
use durable_jobs_store::{
    DeleteOutcome, JobId, JobRecord, PauseOutcome, PurgeRequest, RequeueOutcome, ResumeOutcome, Store, StoreError,
    StoreErrorKind, Timestamp,
};
use sled::IVec;

use crate::error::store_error;
use crate::store::SledStore;
use crate::tx::{abort, Tx, TxError};
use crate::{codec, keys};

/// The keys of what a job owns besides its record, read under the write lock before a
/// transaction deletes them (a transaction cannot scan).
struct Owned {
    checkpoints: Vec<IVec>,
    signals: Vec<IVec>,
}

impl SledStore {
    /// Requeues each of `jobs` in turn, in one transaction.
    pub(crate) fn requeue_jobs(&self, jobs: &[JobId], now: Timestamp) -> Result<Vec<RequeueOutcome>, StoreError> {
        self.write("requeue", |tx| jobs.iter().map(|&job| tx.requeue(job, now)).collect())
    }

    pub(crate) fn pause_job(&self, job: JobId, now: Timestamp) -> Result<PauseOutcome, StoreError> {
        self.write("pause", |tx| {
            let Some(old) = tx.job(job)? else { return Ok(PauseOutcome::NotFound) };
            let outcome = transition::pause_outcome(old.status);
            if outcome == PauseOutcome::Paused {
                let mut record = old.clone();
                transition::pause(&mut record, now);
                tx.save(Some(&old), &record)?;
            }
            Ok(outcome)
        })
    }

    /// Resumes a paused job; whether a signal it waits for arrived is read under the write lock
    /// just before.
    pub(crate) fn resume_job(&self, job: JobId, now: Timestamp) -> Result<ResumeOutcome, StoreError> {
        self.locked(|s| {
            let pending = match s.get(job)?.and_then(|j| j.wait_signal) {
                Some(name) => s.signals_of(job)?.iter().any(|signal| signal.name == name),
                None => false,
            };
            s.transact("resume", |tx| {
                let Some(old) = tx.job(job)? else { return Ok(ResumeOutcome::NotFound) };
                let mut record = old.clone();
                let outcome = transition::resume(&mut record, now, pending);
                if record != old {
                    tx.save(Some(&old), &record)?;
                }
                Ok(outcome)
            })
        })
    }

    /// Pauses or resumes `queue` in the `paused` tree and in memory.
    pub(crate) fn set_queue_paused(&self, queue: &str, paused: bool, now: Timestamp) -> Result<(), StoreError> {
        self.locked(|s| {
            let mut set = s.paused.lock();
            if set.contains(queue) == paused {
                return Ok(());
            }
            let tree = &s.trees().paused;
            let written = if paused {
                tree.insert(queue.as_bytes(), &keys::time_value(now))
            } else {
                tree.remove(queue.as_bytes())
            };
            written.map_err(|e| store_error("write paused queues", e))?;
            if paused {
                set.insert(queue.to_owned());
            } else {
                set.remove(queue);
            }
            Ok(())
        })
    }

    /// The paused queues as stored, for the copy in memory.
    pub(crate) fn read_paused(&self) -> Result<BTreeSet<String>, StoreError> {
        let mut out = BTreeSet::new();
        for entry in &self.trees().paused {
            let (queue, _) = entry.map_err(|e| store_error("read paused queues", e))?;
            let queue = String::from_utf8(queue.to_vec())
                .map_err(|_| StoreError::new(StoreErrorKind::Corrupt, "sled: a paused queue's name is not UTF-8"))?;
            out.insert(queue);
        }
        Ok(out)
    }

    /// Deletes the oldest jobs of `req`, found by the finished index. A first look without the
    /// write lock spares a flush when there is nothing to delete (retention polls).
    pub(crate) fn purge_finished(&self, req: &PurgeRequest) -> Result<usize, StoreError> {
        if req.status.is_live() {
            let message = format!("cannot purge {} jobs", req.status);
            return Err(StoreError::new(StoreErrorKind::InvalidInput, message));
        }
        if self.purgeable(req, 1)?.is_empty() {
            return Ok(0);
        }
        self.locked(|s| {
            let mut victims = Vec::new();
            for id in s.purgeable(req, req.limit)? {
                victims.push((id, s.owned(id)?));
            }
            s.transact("purge", |tx| {
                let mut deleted = 0;
                for (id, owned) in &victims {
                    if let Some(job) = tx.job(*id)? {
                        tx.remove(&job, &owned.checkpoints, &owned.signals)?;
                        deleted += 1;
                    }
                }
                Ok(deleted)
            })
        })
    }

    /// Up to `limit` jobs `req` deletes, oldest first: the finished index in order, without
    /// the children of live parents.
    fn purgeable(&self, req: &PurgeRequest, limit: usize) -> Result<Vec<JobId>, StoreError> {
        self.finished_before(req, limit, |id| {
            let Some(job) = self.get(id)? else { return Ok(false) };
            let finished = job.status == req.status && job.finished_at.is_some_and(|f| f < req.finished_before);
            Ok(finished && transition::delete_outcome(&job, self.parent_live(&job)?) == DeleteOutcome::Deleted)
        })
    }

    /// Deletes each of `jobs` that may be, in one transaction.
    pub(crate) fn delete_jobs(&self, jobs: &[JobId]) -> Result<Vec<DeleteOutcome>, StoreError> {
        self.locked(|s| {
            let mut owned = HashMap::new();
            for &id in jobs {
                if !owned.contains_key(&id) && s.get(id)?.is_some() {
                    owned.insert(id, s.owned(id)?);
                }
            }
            s.transact("delete", |tx| {
                let mut out = Vec::with_capacity(jobs.len());
                for &id in jobs {
                    let Some(job) = tx.job(id)? else {
                        out.push(DeleteOutcome::NotFound);
                        continue;
                    };
                    let parent = job.parent.map(|link| tx.job(link.parent)).transpose()?.flatten();
                    let outcome = transition::delete_outcome(&job, parent.is_some_and(|p| p.status.is_live()));
                    if outcome == DeleteOutcome::Deleted {
                        let Some(o) = owned.get(&id) else {
                            let message = format!("sled: delete: job {id} was not read before its transaction");
                            return Err(abort(StoreError::new(StoreErrorKind::Other, message)));
                        };
                        tx.remove(&job, &o.checkpoints, &o.signals)?;
                    }
                    out.push(outcome);
                }
                Ok(out)
            })
        })
    }

    /// Grants `role` to `holder` if nobody holds it, `holder` does, or its lease ended.
    pub(crate) fn take_lead(
        &self,
        role: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        self.locked(|s| {
            let tree = &s.trees().leads;
            let current = tree.get(role.as_bytes()).map_err(|e| store_error("read leads", e))?;
            let current = current.map(|v| codec::decode_lead(&v)).transpose()?;
            let free = current.is_none_or(|(h, end)| h == holder || end < now);
            if free {
                tree.insert(role.as_bytes(), codec::encode_lead(holder, until)?)
                    .map_err(|e| store_error("write leads", e))?;
            }
            Ok(free)
        })
    }

    /// Whether `job`'s parent exists and has not finished.
    fn parent_live(&self, job: &JobRecord) -> Result<bool, StoreError> {
        let parent = job.parent.map(|link| self.get(link.parent)).transpose()?.flatten();
        Ok(parent.is_some_and(|p| p.status.is_live()))
    }

    /// The keys of `job`'s checkpoints and signals.
    fn owned(&self, job: JobId) -> Result<Owned, StoreError> {
        let scan = |tree: &sled::Tree, what: &str| -> Result<Vec<IVec>, StoreError> {
            tree.scan_prefix(keys::id(job)).keys().map(|k| k.map_err(|e| store_error(what, e))).collect()
        };
        Ok(Owned {
            checkpoints: scan(&self.trees().checkpoints, "scan checkpoints")?,
            signals: scan(&self.trees().signals, "scan signals")?,
        })
    }
}

impl Tx<'_> {
    /// Requeues `job` if it ended without success and no other live job holds its key.
    fn requeue(&self, job: JobId, now: Timestamp) -> Result<RequeueOutcome, TxError> {
        let Some(old) = self.job(job)? else { return Ok(RequeueOutcome::NotFound) };
        if let Some(refusal) = transition::requeue_refusal(old.status) {
            return Ok(refusal);
        }
        if let Some(key) = &old.unique_key {
            if let Some(holder) = self.live_holder(key)?.filter(|holder| *holder != job) {
                return Ok(RequeueOutcome::KeyTaken(holder));
            }
        }
        let mut record = old.clone();
        transition::requeue(&mut record, now);
        self.save(Some(&old), &record)?;
        Ok(RequeueOutcome::Requeued)
    }
}
