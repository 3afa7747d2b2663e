//! `MemoryStore`: the reference implementation of the [`Store`] contract.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{
    transition, Checkpoint, ClaimRequest, ClaimedJob, Enqueued, JobFilter, JobId, JobRecord, JobStatus, NewJob,
    Reclaimed, StatusCount, Store, StoreError, Timestamp, Write, WriteOutcome,
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
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }
}

impl State {
    fn live_holder(&self, key: &str) -> Option<JobId> {
        self.jobs.values().find(|j| j.status.is_live() && j.unique_key.as_deref() == Some(key)).map(|j| j.id)
    }
}

impl Store for MemoryStore {
    fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError> {
        let mut st = self.state.lock();
        let mut out = Vec::with_capacity(jobs.len());
        for new in jobs {
            if let Some(holder) = new.unique_key.as_deref().and_then(|k| st.live_holder(k)) {
                out.push(Enqueued::Duplicate(holder));
                continue;
            }
            st.last_id += 1;
            let id = JobId(st.last_id);
            st.jobs.insert(id, transition::new_record(id, new));
            out.push(Enqueued::New(id));
        }
        Ok(out)
    }

    fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        let mut st = self.state.lock();
        let mut ready: Vec<&JobRecord> = st.jobs.values().filter(|j| transition::is_ready(j, req)).collect();
        ready.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.run_at, j.id));
        let ids: Vec<JobId> = ready.iter().take(req.limit).map(|j| j.id).collect();
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let resumed = st.checkpoints.range((id, 0)..=(id, u32::MAX)).next().is_some();
            if let Some(job) = st.jobs.get_mut(&id) {
                claimed.push(transition::claim(job, req, resumed));
            }
        }
        Ok(claimed)
    }

    fn commit(&self, worker: &str, now: Timestamp, writes: &[Write]) -> Result<Vec<WriteOutcome>, StoreError> {
        let mut st = self.state.lock();
        let mut out = Vec::with_capacity(writes.len());
        for write in writes {
            let Some(job) = st.jobs.get_mut(&write.job()).filter(|j| transition::is_held_by(j, worker)) else {
                out.push(WriteOutcome::LeaseLost);
                continue;
            };
            transition::apply(job, write, now);
            if let Write::Checkpoint { job, checkpoint } = write {
                st.checkpoints.insert((*job, checkpoint.index), checkpoint.clone());
            }
            out.push(WriteOutcome::Applied);
        }
        Ok(out)
    }

    fn renew(&self, worker: &str, jobs: &[JobId], lease_until: Timestamp) -> Result<Vec<JobId>, StoreError> {
        let mut st = self.state.lock();
        let mut lost = Vec::new();
        for &id in jobs {
            match st.jobs.get_mut(&id).filter(|j| transition::is_held_by(j, worker)) {
                Some(job) => job.lease_until = Some(lease_until),
                None => lost.push(id),
            }
        }
        Ok(lost)
    }

    fn release(&self, worker: &str, jobs: &[JobId], now: Timestamp) -> Result<usize, StoreError> {
        let mut st = self.state.lock();
        let mut released = 0;
        for id in jobs {
            if let Some(job) = st.jobs.get_mut(id).filter(|j| transition::is_held_by(j, worker)) {
                transition::release(job, now);
                released += 1;
            }
        }
        Ok(released)
    }

    fn reclaim_expired(&self, now: Timestamp) -> Result<Reclaimed, StoreError> {
        let mut st = self.state.lock();
        let mut out = Reclaimed::default();
        for job in st.jobs.values_mut().filter(|j| transition::is_expired(j, now)) {
            if transition::reclaim(job, now) {
                out.failed.push(job.id);
            } else {
                out.requeued.push(job.id);
            }
        }
        Ok(out)
    }

    fn wake_due(&self, now: Timestamp) -> Result<usize, StoreError> {
        let mut st = self.state.lock();
        let mut woken = 0;
        for job in st.jobs.values_mut().filter(|j| transition::is_due(j, now)) {
            transition::wake(job, now);
            woken += 1;
        }
        Ok(woken)
    }

    fn cancel(&self, job: JobId, now: Timestamp) -> Result<bool, StoreError> {
        let mut st = self.state.lock();
        let Some(job) = st.jobs.get_mut(&job).filter(|j| transition::is_cancellable(j)) else { return Ok(false) };
        transition::cancel(job, now);
        Ok(true)
    }

    fn requeue(&self, job: JobId, now: Timestamp) -> Result<bool, StoreError> {
        let mut st = self.state.lock();
        let Some(record) = st.jobs.get(&job).filter(|j| transition::is_requeueable(j)) else { return Ok(false) };
        if record.unique_key.as_deref().and_then(|k| st.live_holder(k)).is_some() {
            return Ok(false);
        }
        if let Some(record) = st.jobs.get_mut(&job) {
            transition::requeue(record, now);
        }
        Ok(true)
    }

    fn checkpoints(&self, job: JobId) -> Result<Vec<Checkpoint>, StoreError> {
        let st = self.state.lock();
        Ok(st.checkpoints.range((job, 0)..=(job, u32::MAX)).map(|(_, c)| c.clone()).collect())
    }

    fn get(&self, job: JobId) -> Result<Option<JobRecord>, StoreError> {
        Ok(self.state.lock().jobs.get(&job).cloned())
    }

    fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let st = self.state.lock();
        Ok(st.jobs.values().filter(|j| filter.matches(j)).skip(filter.offset).take(filter.limit).cloned().collect())
    }

    fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        let st = self.state.lock();
        let mut counter = StatusCounter::default();
        st.jobs.values().for_each(|j| counter.add(j));
        Ok(counter.finish())
    }
}

/// Counts jobs per queue and status, one record at a time, for [`Store::counts`].
#[derive(Debug, Default)]
pub struct StatusCounter(BTreeMap<(String, JobStatus), u64>);

impl StatusCounter {
    /// Counts `job`.
    pub fn add(&mut self, job: &JobRecord) {
        match self.0.get_mut(&(job.queue.clone(), job.status)) {
            Some(n) => *n += 1,
            None => {
                self.0.insert((job.queue.clone(), job.status), 1);
            }
        }
    }

    /// The counts, sorted as [`Store::counts`] returns them.
    pub fn finish(self) -> Vec<StatusCount> {
        self.0.into_iter().map(|((queue, status), count)| StatusCount { queue, status, count }).collect()
    }
}

/// The `last_error` a reclaimed job gets. Shared so every backend words it the same.
pub fn lease_expired_message(attempt: u32) -> String {
    format!("attempt {attempt} lost its lease (the worker stopped or stalled)")
}
