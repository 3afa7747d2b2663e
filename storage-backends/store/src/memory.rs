//! `MemoryStore`: the reference implementation of the [`Store`] contract.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::transition::{self, Recovery, WaitState};
use crate::{
    CancelOutcome, Capabilities, Checkpoint, ChildOf, ChildrenWait, Claim, ClaimRequest, Claimed, DeleteOutcome,
    Enqueued, FireOutcome, JobFilter, JobId, JobRecord, JobStatus, Limit, LimitScope, NewJob, PauseOutcome,
    PurgeRequest, ReclaimRequest, Reclaimed, Renewal, RequeueOutcome, ResumeOutcome, ScheduleRecord, Signal, SignalId,
    SignalOutcome, StatusCount, Store, StoreError, StoreErrorKind, Timestamp, Write, WriteOp, WriteOutcome,
};

/// A store in memory: the executable specification of [`Store`], and a store for tests and
/// doctests. Nothing survives the process.
///
/// Clones share the same jobs, as if they had opened the same database.
///
/// ```
/// use durable_jobs_store::{MemoryStore, Store, JobFilter};
///
/// let store = MemoryStore::new();
/// assert!(store.list(&JobFilter::default())?.is_empty());
/// # Ok::<(), durable_jobs_store::StoreError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    last_id: i64,
    jobs: BTreeMap<JobId, JobRecord>,
    checkpoints: BTreeMap<(JobId, u32), Checkpoint>,
    last_signal: i64,
    signals: BTreeMap<SignalId, Signal>,
    paused_queues: BTreeSet<String>,
    /// Role → (holder, lease end).
    leads: BTreeMap<String, (String, Timestamp)>,
    schedules: BTreeMap<String, ScheduleRecord>,
    limits: BTreeMap<LimitScope, Limit>,
    /// (Scope, key) → (window, claims counted in it).
    windows: BTreeMap<(LimitScope, String), (i64, u32)>,
}

/// Why a limit holds a ready job back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// Its scope runs as many jobs as it may.
    Running,
    /// Its scope's window is full: it may be claimed in the next one.
    Rate,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }
}

impl State {
    /// The job holding `new`'s unique key: a live one first, else the newest in its window.
    fn key_holder(&self, new: &NewJob) -> Option<JobId> {
        let key = new.unique_key.as_deref()?;
        let live = self.jobs.values().find(|j| transition::holds_key(j, key, None));
        let start = transition::window_start(new);
        live.or_else(|| self.jobs.values().rev().find(|j| transition::holds_key(j, key, start))).map(|j| j.id)
    }

    fn has_checkpoints(&self, job: JobId) -> bool {
        self.checkpoints.range((job, 0)..=(job, u32::MAX)).next().is_some()
    }

    fn insert(&mut self, new: &NewJob) -> JobId {
        self.last_id += 1;
        let id = JobId(self.last_id);
        self.jobs.insert(id, transition::new_record(id, new));
        id
    }

    /// Inserts a suspension's children and reads what its wait finds.
    fn prepare_wait(&mut self, job: JobId, op: &WriteOp) -> WaitState {
        let WriteOp::Suspend { signal, fan_in, children, .. } = op else { return WaitState::default() };
        if self.jobs.get(&job).is_some_and(|j| transition::ends_cancelled(j, op)) {
            return WaitState::default();
        }
        for child in children {
            let mut child = child.clone();
            child.parent = fan_in.map(|f| ChildOf { parent: job, index: f.index }).or(child.parent);
            (child.unique_key, child.unique_window) = (None, None);
            self.insert(&child);
        }
        let signal_pending =
            signal.as_ref().is_some_and(|name| self.signals.values().any(|s| s.job == job && s.name == *name));
        let children = fan_in.map(|rule| {
            let link = Some(ChildOf { parent: job, index: rule.index });
            let mine = self.jobs.values().filter(|j| j.parent == link);
            let (mut total, mut succeeded, mut failed) = (0, 0, 0);
            for child in mine {
                total += 1;
                match child.status {
                    JobStatus::Completed => succeeded += 1,
                    s if s.is_terminal() => failed += 1,
                    _ => {}
                }
            }
            ChildrenWait::new(rule, total, succeeded, failed)
        });
        WaitState { signal_pending, children }
    }

    /// After `job` changed status: if it is a child that just finished, its parent counts it.
    fn count_if_child(&mut self, job: JobId, now: Timestamp) {
        let Some((link, completed)) = self.jobs.get(&job).and_then(transition::finished_child) else { return };
        if let Some(parent) = self.jobs.get_mut(&link.parent) {
            transition::child_finished(parent, link.index, completed, now);
        }
    }

    /// Whether a limit holds ready job `id` back at `now`.
    fn held_back(&self, id: JobId, now: Timestamp) -> Option<Held> {
        let job = self.jobs.get(&id)?;
        let window = crate::window_of(now);
        let mut held = None;
        for limit in self.limits.values().filter(|l| l.scope.covers(job)) {
            let key = limit.key_of(job);
            if let Some(max) = limit.max_running {
                let running = self
                    .jobs
                    .values()
                    .filter(|j| j.status == JobStatus::Running && limit.scope.covers(j) && limit.key_of(j) == key)
                    .count();
                if running >= max as usize {
                    held = held.or(Some(Held::Running));
                }
            }
            if let Some(per_second) = limit.per_second {
                let counted = match self.windows.get(&(limit.scope.clone(), key.to_owned())) {
                    Some(&(w, n)) if w == window => n,
                    _ => 0,
                };
                if counted >= per_second {
                    held = Some(Held::Rate);
                }
            }
        }
        held
    }

    /// Counts a claim of `id` in the window of every per-second limit covering it.
    fn count_start(&mut self, id: JobId, now: Timestamp) {
        let Some(job) = self.jobs.get(&id) else { return };
        let window = crate::window_of(now);
        let keys: Vec<(LimitScope, String)> = self
            .limits
            .values()
            .filter(|l| l.per_second.is_some() && l.scope.covers(job))
            .map(|l| (l.scope.clone(), l.key_of(job).to_owned()))
            .collect();
        for key in keys {
            let entry = self.windows.entry(key).or_insert((window, 0));
            if entry.0 != window {
                *entry = (window, 0);
            }
            entry.1 += 1;
        }
    }

    fn enqueue(&mut self, new: &NewJob) -> Enqueued {
        match self.key_holder(new) {
            Some(holder) => Enqueued::Duplicate(holder),
            None => Enqueued::New(self.insert(new)),
        }
    }

    fn requeue(&mut self, job: JobId, now: Timestamp) -> RequeueOutcome {
        let Some(record) = self.jobs.get(&job) else { return RequeueOutcome::NotFound };
        if let Some(refusal) = transition::requeue_refusal(record.status) {
            return refusal;
        }
        if let Some(key) = record.unique_key.as_deref() {
            if let Some(holder) = self.jobs.values().find(|j| j.id != job && transition::holds_key(j, key, None)) {
                return RequeueOutcome::KeyTaken(holder.id);
            }
        }
        if let Some(record) = self.jobs.get_mut(&job) {
            transition::requeue(record, now);
        }
        RequeueOutcome::Requeued
    }

    /// Whether `job`'s parent exists and has not finished.
    fn parent_live(&self, job: &JobRecord) -> bool {
        job.parent.and_then(|p| self.jobs.get(&p.parent)).is_some_and(|p| p.status.is_live())
    }

    /// Deletes a job with its checkpoints and signals.
    fn remove(&mut self, job: JobId) {
        self.jobs.remove(&job);
        let steps: Vec<(JobId, u32)> = self.checkpoints.range((job, 0)..=(job, u32::MAX)).map(|(k, _)| *k).collect();
        for step in steps {
            self.checkpoints.remove(&step);
        }
        self.signals.retain(|_, s| s.job != job);
    }

    /// Cancels `job` (and its descendants) if it has not finished.
    fn cancel(&mut self, job: JobId, now: Timestamp) -> CancelOutcome {
        let Some(record) = self.jobs.get_mut(&job) else { return CancelOutcome::NotFound };
        let outcome = transition::cancel_outcome(record.status);
        if matches!(outcome, CancelOutcome::Cancelled | CancelOutcome::Requested) {
            transition::cancel(record, now);
            self.count_if_child(job, now);
            self.cancel_descendants(job, now);
        }
        outcome
    }

    /// Cancels every descendant of `root` that has not finished (running ones are asked to
    /// stop), parents before their children.
    fn cancel_descendants(&mut self, root: JobId, now: Timestamp) {
        let mut parents = vec![root];
        // Parent links come from callers: a loop must not make this endless.
        let mut seen = std::collections::BTreeSet::from([root]);
        while let Some(parent) = parents.pop() {
            let children: Vec<JobId> =
                self.jobs.values().filter(|j| j.parent.is_some_and(|c| c.parent == parent)).map(|j| j.id).collect();
            for child in children {
                if let Some(job) = self.jobs.get_mut(&child).filter(|j| j.status.is_live()) {
                    transition::cancel(job, now);
                    self.count_if_child(child, now);
                }
                if seen.insert(child) {
                    parents.push(child);
                }
            }
        }
    }
}

impl Store for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
    }

    fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError> {
        let mut st = self.state.lock();
        Ok(jobs.iter().map(|new| st.enqueue(new)).collect())
    }

    fn claim(&self, req: &ClaimRequest) -> Result<Claimed, StoreError> {
        if req.limit == 0 {
            return Ok(Claimed::default());
        }
        let mut st = self.state.lock();
        let req = &transition::unpaused(req, &st.paused_queues);
        for job in st.jobs.values_mut() {
            transition::promote(job, req);
        }
        let mut ready: Vec<&JobRecord> = st.jobs.values().filter(|j| transition::is_ready(j, req)).collect();
        ready.sort_by_key(|j| transition::claim_order(j));
        let ids: Vec<JobId> = ready.iter().map(|j| j.id).collect();
        let (mut jobs, mut rate_held) = (Vec::new(), false);
        for id in ids {
            if jobs.len() == req.limit {
                break;
            }
            match st.held_back(id, req.now) {
                Some(Held::Rate) => rate_held = true,
                Some(Held::Running) => {}
                None => {
                    st.count_start(id, req.now);
                    let resumed = st.has_checkpoints(id);
                    if let Some(job) = st.jobs.get_mut(&id) {
                        jobs.push(transition::claim(job, req, resumed));
                    }
                }
            }
        }
        let next_due = if jobs.len() < req.limit {
            let window_end = rate_held.then(|| crate::window_end(crate::window_of(req.now)));
            st.jobs.values().filter_map(|j| transition::due_time(j, req)).chain(window_end).min()
        } else {
            None
        };
        Ok(Claimed::new(jobs, next_due))
    }

    fn commit(&self, worker: &str, now: Timestamp, writes: &[Write]) -> Result<Vec<WriteOutcome>, StoreError> {
        let mut st = self.state.lock();
        let mut out = Vec::with_capacity(writes.len());
        for write in writes {
            let id = write.claim.job;
            if !st.jobs.get(&id).is_some_and(|j| transition::holds(j, worker, write.claim)) {
                out.push(WriteOutcome::LeaseLost);
                continue;
            }
            let wait = st.prepare_wait(id, &write.op);
            if let Some(job) = st.jobs.get_mut(&id) {
                transition::apply(job, &write.op, now, wait);
            }
            if let WriteOp::Receive { signal, .. } = &write.op {
                if st.signals.get(signal).is_some_and(|s| s.job == id) {
                    st.signals.remove(signal);
                }
            }
            if let Some(checkpoint) = write.checkpoint_written() {
                st.checkpoints.insert((id, checkpoint.index), checkpoint.clone());
            }
            st.count_if_child(id, now);
            out.push(WriteOutcome::Applied);
        }
        Ok(out)
    }

    fn renew(&self, worker: &str, claims: &[Claim], lease_until: Timestamp) -> Result<Renewal, StoreError> {
        let mut st = self.state.lock();
        let mut out = Renewal::default();
        for &claim in claims {
            match st.jobs.get_mut(&claim.job).filter(|j| transition::holds(j, worker, claim)) {
                Some(job) => {
                    job.lease_until = Some(lease_until);
                    if job.cancel_requested {
                        out.cancelled.push(claim);
                    }
                }
                None => out.lost.push(claim),
            }
        }
        Ok(out)
    }

    fn release(&self, worker: &str, claims: &[Claim], now: Timestamp) -> Result<usize, StoreError> {
        let mut st = self.state.lock();
        let mut released = 0;
        for &claim in claims {
            if let Some(job) = st.jobs.get_mut(&claim.job).filter(|j| transition::holds(j, worker, claim)) {
                transition::release(job, now);
                released += 1;
                st.count_if_child(claim.job, now);
            }
        }
        Ok(released)
    }

    fn reclaim(&self, req: &ReclaimRequest) -> Result<Reclaimed, StoreError> {
        let mut st = self.state.lock();
        let mut lost: Vec<&mut JobRecord> =
            st.jobs.values_mut().filter(|j| transition::is_reclaimable(j, req)).collect();
        lost.sort_by_key(|j| transition::reclaim_order(j));
        let mut out = Reclaimed::default();
        for job in lost.into_iter().take(req.limit) {
            let outcome = match transition::reclaim(job, req) {
                Recovery::Requeued => &mut out.requeued,
                Recovery::Failed => &mut out.failed,
                Recovery::Released => &mut out.released,
                Recovery::Cancelled => &mut out.cancelled,
            };
            outcome.push(job.id);
        }
        for &failed in out.failed.iter().chain(&out.cancelled) {
            st.count_if_child(failed, req.now);
        }
        Ok(out)
    }

    fn cancel(&self, job: JobId, now: Timestamp) -> Result<CancelOutcome, StoreError> {
        Ok(self.state.lock().cancel(job, now))
    }

    fn cancel_many(&self, jobs: &[JobId], now: Timestamp) -> Result<Vec<CancelOutcome>, StoreError> {
        let mut st = self.state.lock();
        Ok(jobs.iter().map(|job| st.cancel(*job, now)).collect())
    }

    fn requeue(&self, job: JobId, now: Timestamp) -> Result<RequeueOutcome, StoreError> {
        Ok(self.state.lock().requeue(job, now))
    }

    fn requeue_many(&self, jobs: &[JobId], now: Timestamp) -> Result<Vec<RequeueOutcome>, StoreError> {
        let mut st = self.state.lock();
        Ok(jobs.iter().map(|job| st.requeue(*job, now)).collect())
    }

    fn pause(&self, job: JobId, now: Timestamp) -> Result<PauseOutcome, StoreError> {
        let mut st = self.state.lock();
        let Some(record) = st.jobs.get_mut(&job) else { return Ok(PauseOutcome::NotFound) };
        let outcome = transition::pause_outcome(record.status);
        if outcome == PauseOutcome::Paused {
            transition::pause(record, now);
        }
        Ok(outcome)
    }

    fn resume(&self, job: JobId, now: Timestamp) -> Result<ResumeOutcome, StoreError> {
        let mut st = self.state.lock();
        let Some(record) = st.jobs.get(&job) else { return Ok(ResumeOutcome::NotFound) };
        let waits_for = record.wait_signal.clone();
        let pending = waits_for.is_some_and(|name| st.signals.values().any(|s| s.job == job && s.name == name));
        Ok(st.jobs.get_mut(&job).map_or(ResumeOutcome::NotFound, |j| transition::resume(j, now, pending)))
    }

    fn pause_queue(&self, queue: &str, paused: bool, _now: Timestamp) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        if paused {
            st.paused_queues.insert(queue.to_owned());
        } else {
            st.paused_queues.remove(queue);
        }
        Ok(())
    }

    fn paused_queues(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.state.lock().paused_queues.iter().cloned().collect())
    }

    fn purge(&self, req: &PurgeRequest) -> Result<usize, StoreError> {
        if req.status.is_live() {
            return Err(StoreError::new(StoreErrorKind::InvalidInput, format!("cannot purge {} jobs", req.status)));
        }
        let mut st = self.state.lock();
        let mut old: Vec<(Timestamp, JobId)> = st
            .jobs
            .values()
            .filter(|j| j.status == req.status && j.finished_at.is_some_and(|f| f < req.finished_before))
            .filter(|j| transition::delete_outcome(j, st.parent_live(j)) == DeleteOutcome::Deleted)
            .filter_map(|j| Some((j.finished_at?, j.id)))
            .collect();
        old.sort_unstable();
        old.truncate(req.limit);
        for (_, id) in &old {
            st.remove(*id);
        }
        Ok(old.len())
    }

    fn delete(&self, jobs: &[JobId]) -> Result<Vec<DeleteOutcome>, StoreError> {
        let mut st = self.state.lock();
        let mut out = Vec::with_capacity(jobs.len());
        for id in jobs {
            let outcome =
                st.jobs.get(id).map_or(DeleteOutcome::NotFound, |j| transition::delete_outcome(j, st.parent_live(j)));
            if outcome == DeleteOutcome::Deleted {
                st.remove(*id);
            }
            out.push(outcome);
        }
        Ok(out)
    }

    fn lead(&self, role: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool, StoreError> {
        let mut st = self.state.lock();
        let free = st.leads.get(role).is_none_or(|(h, end)| h == holder || *end < now);
        if free {
            st.leads.insert(role.to_owned(), (holder.to_owned(), until));
        }
        Ok(free)
    }

    fn set_limit(&self, limit: &Limit) -> Result<(), StoreError> {
        self.state.lock().limits.insert(limit.scope.clone(), limit.clone());
        Ok(())
    }

    fn remove_limit(&self, scope: &LimitScope) -> Result<bool, StoreError> {
        Ok(self.state.lock().limits.remove(scope).is_some())
    }

    fn limits(&self) -> Result<Vec<Limit>, StoreError> {
        Ok(self.state.lock().limits.values().cloned().collect())
    }

    fn put_schedule(&self, schedule: &ScheduleRecord) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        let mut new = schedule.clone();
        if let Some(old) = st.schedules.get(&schedule.name) {
            (new.created_at, new.last_fire, new.last_job) = (old.created_at, old.last_fire, old.last_job);
        }
        st.schedules.insert(new.name.clone(), new);
        Ok(())
    }

    fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        Ok(self.state.lock().schedules.values().cloned().collect())
    }

    fn remove_schedule(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.state.lock().schedules.remove(name).is_some())
    }

    fn fire(
        &self,
        name: &str,
        due: Timestamp,
        next: Timestamp,
        job: &NewJob,
        now: Timestamp,
    ) -> Result<FireOutcome, StoreError> {
        let mut st = self.state.lock();
        match st.schedules.get(name) {
            None => return Ok(FireOutcome::NotFound),
            Some(s) if s.next_fire != due => return Ok(FireOutcome::Moved),
            Some(_) => {}
        }
        let enqueued = st.enqueue(job);
        if let Some(s) = st.schedules.get_mut(name) {
            s.last_fire = Some(due);
            s.last_job = match enqueued {
                Enqueued::New(id) => Some(id),
                _ => None,
            };
            s.next_fire = next;
            s.updated_at = now;
        }
        Ok(FireOutcome::Fired(enqueued))
    }

    fn signal(&self, job: JobId, name: &str, payload: &[u8], now: Timestamp) -> Result<SignalOutcome, StoreError> {
        let mut st = self.state.lock();
        let Some(record) = st.jobs.get(&job) else { return Ok(SignalOutcome::NotFound) };
        if let Some(refusal) = transition::signal_refusal(record.status) {
            return Ok(refusal);
        }
        st.last_signal += 1;
        let id = SignalId(st.last_signal);
        st.signals.insert(id, Signal::new(id, job, name, payload.to_vec(), now));
        let woke = st.jobs.get_mut(&job).is_some_and(|j| transition::signal_arrives(j, name, now));
        Ok(SignalOutcome::Sent { id, woke })
    }

    fn signals(&self, job: JobId) -> Result<Vec<Signal>, StoreError> {
        Ok(self.state.lock().signals.values().filter(|s| s.job == job).cloned().collect())
    }

    fn checkpoints(&self, job: JobId, from: u32, limit: usize) -> Result<Vec<Checkpoint>, StoreError> {
        let st = self.state.lock();
        Ok(st.checkpoints.range((job, from)..=(job, u32::MAX)).take(limit).map(|(_, c)| c.clone()).collect())
    }

    fn get(&self, job: JobId) -> Result<Option<JobRecord>, StoreError> {
        Ok(self.state.lock().jobs.get(&job).cloned())
    }

    fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let st = self.state.lock();
        Ok(st.jobs.values().filter(|j| filter.matches(j)).skip(filter.offset).take(filter.limit).cloned().collect())
    }

    fn counts(&self, now: Timestamp) -> Result<Vec<StatusCount>, StoreError> {
        let st = self.state.lock();
        let mut counter = StatusCounter::new(now);
        st.jobs.values().for_each(|j| counter.add(j));
        Ok(counter.finish())
    }
}

/// Counts jobs per queue, name and status, one record at a time, for [`Store::counts`].
#[derive(Debug)]
pub struct StatusCounter {
    now: Timestamp,
    counts: BTreeMap<(String, String, JobStatus), (u64, u64)>,
}

impl StatusCounter {
    /// A counter of statuses as seen at `now`.
    pub fn new(now: Timestamp) -> Self {
        StatusCounter { now, counts: BTreeMap::new() }
    }

    /// Counts `job`.
    pub fn add(&mut self, job: &JobRecord) {
        let status = transition::counted_status(job, self.now);
        let started = u64::from(status == JobStatus::Running && job.run_started);
        let key = (job.queue.clone(), job.name.clone(), status);
        let entry = self.counts.entry(key).or_default();
        entry.0 += 1;
        entry.1 += started;
    }

    /// The counts, sorted as [`Store::counts`] returns them.
    pub fn finish(self) -> Vec<StatusCount> {
        self.counts
            .into_iter()
            .map(|((queue, name, status), (count, started))| StatusCount::new(queue, name, status, count, started))
            .collect()
    }
}
