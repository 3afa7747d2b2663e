//! Signals and child jobs: the commit of receives and suspensions, the count of finished
//! children, the cancel of descendants, and sending and reading signals.
//!
//! sled transactions cannot scan a tree, and may run their closure more than once. So what a
//! transaction needs from a scan (the children of a step, the descendants of a job, a job's
//! signals) or must draw once (job ids) is read or drawn under the write lock just before it,
//! and the transaction adds what it changes itself.

use std::collections::{HashSet, VecDeque};

use durable_jobs_store::transition::{self, WaitState};
use durable_jobs_store::{
    CancelOutcome, ChildOf, ChildrenWait, JobFilter, JobId, JobRecord, JobStatus, Signal, SignalId, SignalOutcome,
    Store, StoreError, StoreErrorKind, Timestamp, Write, WriteOp, WriteOutcome,
};

use crate::error::store_error;
use crate::store::SledStore;
use crate::tx::{abort, Tx, TxError, MAX_SIGNAL_KEY};
use crate::{codec, keys};

/// What a commit's transaction needs besides its writes: for each write, if it is a suspension
/// that will be applied, what it inserts and what its wait finds stored before the commit.
pub(crate) struct CommitPlan {
    suspensions: Vec<Option<Suspension>>,
}

/// A suspension's ids and reads, made under the write lock before its commit.
struct Suspension {
    /// Ids for its children, in order.
    ids: Vec<JobId>,
    /// The job's pending signals of the name it waits for.
    signals: Vec<SignalId>,
    /// The children of its fan-in's step.
    children: Vec<JobId>,
}

impl SledStore {
    /// The plan of a commit of `writes` by `worker`, as it will run (the caller holds the write
    /// lock until the commit is done). A write applies if its run holds the lease and no
    /// earlier write of the batch ended that run; nothing else in a commit changes whether a
    /// run holds its lease (counting a child only wakes a waiting parent) or was asked to
    /// cancel. Ids are drawn only for the children of suspensions that apply and do not end
    /// cancelled, so that ids follow insertion order.
    pub(crate) fn plan_commit(&self, worker: &str, writes: &[Write]) -> Result<CommitPlan, StoreError> {
        let mut suspensions = Vec::with_capacity(writes.len());
        if !writes.iter().any(|w| matches!(w.op, WriteOp::Suspend { .. })) {
            // The usual batch (starts, checkpoints, run ends) needs nothing.
            suspensions.resize_with(writes.len(), || None);
            return Ok(CommitPlan { suspensions });
        }
        let mut ended = HashSet::new();
        for write in writes {
            let job = write.claim.job;
            let holder = if ended.contains(&job) { None } else { self.get(job)? };
            let holder = holder.filter(|j| transition::holds(j, worker, write.claim));
            if holder.is_some() && write.ends_run() {
                ended.insert(job);
            }
            // A suspension of a run asked to cancel ends it cancelled: nothing to insert or read.
            let waits = holder.is_some_and(|j| !transition::ends_cancelled(&j, &write.op));
            let planned = match &write.op {
                WriteOp::Suspend { signal, fan_in, children, .. } if waits => {
                    Some(self.plan_suspension(job, signal.as_deref(), fan_in.map(|f| f.index), children.len())?)
                }
                _ => None,
            };
            suspensions.push(planned);
        }
        Ok(CommitPlan { suspensions })
    }

    /// Draws `count` ids for the children of a suspension of `job`, and reads its pending
    /// signals named `signal` and the children of its fan-in's step `index`.
    fn plan_suspension(
        &self,
        job: JobId,
        signal: Option<&str>,
        index: Option<u32>,
        count: usize,
    ) -> Result<Suspension, StoreError> {
        let ids = (0..count).map(|_| self.new_id()).collect::<Result<_, _>>()?;
        let signals = match signal {
            Some(name) => self.signals_of(job)?.into_iter().filter(|s| s.name == name).map(|s| s.id).collect(),
            None => Vec::new(),
        };
        let children = match index {
            Some(index) => self.children(&keys::children_prefix(ChildOf { parent: job, index }))?,
            None => Vec::new(),
        };
        Ok(Suspension { ids, signals, children })
    }

    /// The ids in the children index under `prefix`: a parent id (every child of the job) or
    /// [`keys::children_prefix`] (the children of one step).
    fn children(&self, prefix: &[u8]) -> Result<Vec<JobId>, StoreError> {
        let mut ids = Vec::new();
        for entry in self.trees().children.scan_prefix(prefix) {
            let (k, _) = entry.map_err(|e| store_error("scan children", e))?;
            ids.extend(keys::id_from(&k));
        }
        Ok(ids)
    }

    /// The descendants of `root` (children, their children…, through any status), parents
    /// before their children, if `root` is live (cancelled, or asked to cancel if it runs);
    /// else none. Read under the write lock before the cancel's transaction. A job met twice
    /// (a cycle of parent links, which only a job enqueued with a later job as its parent can
    /// make) is listed once.
    pub(crate) fn descendants_to_cancel(&self, root: JobId) -> Result<Vec<JobId>, StoreError> {
        if !self.get(root)?.is_some_and(|j| j.status.is_live()) {
            return Ok(Vec::new());
        }
        let mut seen = HashSet::from([root]);
        let mut out = Vec::new();
        let mut parents = VecDeque::from([root]);
        while let Some(parent) = parents.pop_front() {
            for child in self.children(&keys::id(parent))? {
                if seen.insert(child) {
                    out.push(child);
                    parents.push_back(child);
                }
            }
        }
        Ok(out)
    }

    /// The pending signals of `job`, oldest first.
    pub(crate) fn signals_of(&self, job: JobId) -> Result<Vec<Signal>, StoreError> {
        self.trees()
            .signals
            .scan_prefix(keys::id(job))
            .map(|entry| {
                let (k, v) = entry.map_err(|e| store_error("read signals", e))?;
                codec::decode_signal(&k, &v)
            })
            .collect()
    }

    /// [`Store::list`](durable_jobs_store::Store::list) with a parent: its children in id order
    /// (found by the children index, not a scan of every job), filtered.
    pub(crate) fn list_children(&self, parent: JobId, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let mut ids = self.children(&keys::id(parent))?;
        ids.sort_unstable();
        let mut out = Vec::new();
        let mut skipped = 0;
        for id in ids.into_iter().filter(|id| filter.after.is_none_or(|a| *id > a)) {
            if out.len() == filter.limit {
                break;
            }
            let Some(job) = self.get(id)?.filter(|j| filter.matches(j)) else { continue };
            if skipped < filter.offset {
                skipped += 1;
                continue;
            }
            out.push(job);
        }
        Ok(out)
    }
}

impl Tx<'_> {
    /// Applies `writes` of `worker` as planned by [`SledStore::plan_commit`].
    pub(crate) fn commit(
        &self,
        worker: &str,
        now: Timestamp,
        writes: &[Write],
        plan: &CommitPlan,
    ) -> Result<Vec<WriteOutcome>, TxError> {
        let mut out = Vec::with_capacity(writes.len());
        // Children inserted so far by this transaction (the plan's reads predate them).
        let mut inserted = Vec::new();
        for (write, planned) in writes.iter().zip(&plan.suspensions) {
            let id = write.claim.job;
            let Some(old) = self.fenced(write.claim, worker)? else {
                out.push(WriteOutcome::LeaseLost);
                continue;
            };
            let wait = if transition::ends_cancelled(&old, &write.op) {
                WaitState::default()
            } else {
                self.prepare_wait(id, &write.op, planned.as_ref(), &mut inserted)?
            };
            let mut job = old.clone();
            transition::apply(&mut job, &write.op, now, wait);
            self.save(Some(&old), &job)?;
            if let WriteOp::Receive { signal, .. } = &write.op {
                // The key names the job: another job's signal is not found, so not consumed.
                self.signals.remove(&keys::signal(id, *signal))?;
            }
            if let Some(checkpoint) = write.checkpoint_written() {
                self.put_checkpoint(id, checkpoint)?;
            }
            self.count_if_child(&job, now)?;
            out.push(WriteOutcome::Applied);
        }
        Ok(out)
    }

    /// For a suspension of `job`: inserts its children, then reads what its wait finds.
    fn prepare_wait(
        &self,
        job: JobId,
        op: &WriteOp,
        planned: Option<&Suspension>,
        inserted: &mut Vec<(ChildOf, JobId)>,
    ) -> Result<WaitState, TxError> {
        let WriteOp::Suspend { signal, fan_in, children, .. } = op else { return Ok(WaitState::default()) };
        let Some(planned) = planned.filter(|p| p.ids.len() == children.len()) else {
            return Err(abort(StoreError::new(
                StoreErrorKind::Other,
                format!("sled: commit: the suspension of job {job} was not planned (the store changed under the write lock)"),
            )));
        };
        for (child, &id) in children.iter().zip(&planned.ids) {
            let mut child = child.clone();
            child.parent = fan_in.map(|f| ChildOf { parent: job, index: f.index }).or(child.parent);
            (child.unique_key, child.unique_window) = (None, None);
            self.save(None, &transition::new_record(id, &child))?;
            self.raise_max_id(id)?;
            inserted.extend(child.parent.map(|link| (link, id)));
        }
        let mut signal_pending = false;
        if signal.is_some() {
            // Signals are never added by a commit, but an earlier receive may have consumed one.
            for &s in &planned.signals {
                if self.signals.get(keys::signal(job, s))?.is_some() {
                    signal_pending = true;
                    break;
                }
            }
        }
        let children = match fan_in {
            Some(rule) => {
                let link = ChildOf { parent: job, index: rule.index };
                let new = inserted.iter().filter(|(l, _)| *l == link).map(|(_, id)| id);
                let (mut total, mut succeeded, mut failed) = (0, 0, 0);
                for &id in planned.children.iter().chain(new) {
                    let Some(child) = self.job(id)? else { continue };
                    total += 1;
                    match child.status {
                        JobStatus::Completed => succeeded += 1,
                        s if s.is_terminal() => failed += 1,
                        _ => {}
                    }
                }
                Some(ChildrenWait::new(*rule, total, succeeded, failed))
            }
            None => None,
        };
        Ok(WaitState { signal_pending, children })
    }

    /// After `job` changed: if it is a child that has just finished, its parent counts it (and
    /// may wake). The parent is read after `job` was saved.
    pub(crate) fn count_if_child(&self, job: &JobRecord, now: Timestamp) -> Result<(), TxError> {
        let Some((link, completed)) = transition::finished_child(job) else { return Ok(()) };
        let Some(old) = self.job(link.parent)? else { return Ok(()) };
        let mut parent = old.clone();
        transition::child_finished(&mut parent, link.index, completed, now);
        if parent != old {
            self.save(Some(&old), &parent)?;
        }
        Ok(())
    }

    /// Cancels `root` if it is live (a running job is asked to stop), then each of its live
    /// `descendants` (from [`SledStore::descendants_to_cancel`]); each cancelled child is
    /// counted by its parent.
    pub(crate) fn cancel(&self, root: JobId, descendants: &[JobId], now: Timestamp) -> Result<CancelOutcome, TxError> {
        let Some(old) = self.job(root)? else { return Ok(CancelOutcome::NotFound) };
        let outcome = transition::cancel_outcome(old.status);
        if !old.status.is_live() {
            return Ok(outcome);
        }
        for &id in std::iter::once(&root).chain(descendants) {
            let Some(old) = self.job(id)?.filter(|j| j.status.is_live()) else { continue };
            let mut job = old.clone();
            transition::cancel(&mut job, now);
            if job != old {
                self.save(Some(&old), &job)?;
                self.count_if_child(&job, now)?;
            }
        }
        Ok(outcome)
    }

    /// Stores signal `name` for `job` under the next signal id, and wakes the job if it waits
    /// for that name.
    pub(crate) fn signal(
        &self,
        job: JobId,
        name: &str,
        payload: &[u8],
        now: Timestamp,
    ) -> Result<SignalOutcome, TxError> {
        let Some(old) = self.job(job)? else { return Ok(SignalOutcome::NotFound) };
        if let Some(refusal) = transition::signal_refusal(old.status) {
            return Ok(refusal);
        }
        let last = self.meta.get(MAX_SIGNAL_KEY)?.and_then(|v| keys::counter_from(&v)).unwrap_or(0);
        let Some(id) = last.checked_add(1).map(SignalId) else {
            return Err(abort(StoreError::new(StoreErrorKind::Full, "sled: signal ids are used up")));
        };
        self.put_signal(&Signal::new(id, job, name, payload.to_vec(), now))?;
        let mut record = old.clone();
        let woke = transition::signal_arrives(&mut record, name, now);
        if woke {
            self.save(Some(&old), &record)?;
        }
        Ok(SignalOutcome::Sent { id, woke })
    }

    /// Stores `signal` and raises the stored highest signal id to its id.
    pub(crate) fn put_signal(&self, signal: &Signal) -> Result<(), TxError> {
        self.signals.insert(&keys::signal(signal.job, signal.id), codec::encode_signal(signal).map_err(abort)?)?;
        self.raise_max_signal(signal.id)
    }

    /// Raises the stored highest signal id to `id` (it never goes down: ids are not reused).
    pub(crate) fn raise_max_signal(&self, id: SignalId) -> Result<(), TxError> {
        let current = self.meta.get(MAX_SIGNAL_KEY)?.and_then(|v| keys::counter_from(&v));
        if current.is_none_or(|c| c < id.0) {
            self.meta.insert(MAX_SIGNAL_KEY, &id.0.to_be_bytes())?;
        }
        Ok(())
    }
}
