//! `MemoryStore`: the reference implementation of the [`Store`] contract.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{
    Checkpoint, ClaimRequest, ClaimedJob, Enqueued, JobFilter, JobId, JobRecord, JobStatus, NewJob, Reclaimed,
    StatusCount, Store, StoreError, Timestamp, Write, WriteOutcome,
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

    /// The job if `worker` holds its lease.
    fn fenced(&mut self, job: JobId, worker: &str) -> Option<&mut JobRecord> {
        self.jobs.get_mut(&job).filter(|j| j.status == JobStatus::Running && j.locked_by.as_deref() == Some(worker))
    }
}

fn end_run(job: &mut JobRecord, status: JobStatus, now: Timestamp) {
    job.status = status;
    job.locked_by = None;
    job.lease_until = None;
    job.updated_at = now;
    if status.is_terminal() {
        job.finished_at = Some(now);
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
            st.jobs.insert(
                id,
                JobRecord {
                    id,
                    queue: new.queue.clone(),
                    name: new.name.clone(),
                    args: new.args.clone(),
                    status: JobStatus::Pending,
                    priority: new.priority,
                    run_at: new.run_at,
                    attempt: 0,
                    max_attempts: new.max_attempts,
                    unique_key: new.unique_key.clone(),
                    timeout: new.timeout,
                    retry_policy: new.retry_policy,
                    locked_by: None,
                    lease_until: None,
                    wake_at: None,
                    last_error: None,
                    result: None,
                    created_at: new.created_at,
                    started_at: None,
                    finished_at: None,
                    updated_at: new.created_at,
                },
            );
            out.push(Enqueued::New(id));
        }
        Ok(out)
    }

    fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        let mut st = self.state.lock();
        let mut ready: Vec<&JobRecord> = st
            .jobs
            .values()
            .filter(|j| {
                j.status == JobStatus::Pending
                    && j.run_at <= req.now
                    && req.queues.contains(&j.queue)
                    && req.names.contains(&j.name)
            })
            .collect();
        ready.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.run_at, j.id));
        let ids: Vec<JobId> = ready.iter().take(req.limit).map(|j| j.id).collect();
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(j) = st.jobs.get_mut(&id) else { continue };
            j.status = JobStatus::Running;
            j.attempt += 1;
            j.locked_by = Some(req.worker.clone());
            j.lease_until = Some(req.lease_until);
            j.started_at = Some(req.now);
            j.updated_at = req.now;
            claimed.push(ClaimedJob {
                id,
                queue: j.queue.clone(),
                name: j.name.clone(),
                args: j.args.clone(),
                attempt: j.attempt,
                max_attempts: j.max_attempts,
                priority: j.priority,
                timeout: j.timeout,
                retry_policy: j.retry_policy,
            });
        }
        Ok(claimed)
    }

    fn commit(&self, worker: &str, now: Timestamp, writes: &[Write]) -> Result<Vec<WriteOutcome>, StoreError> {
        let mut st = self.state.lock();
        let mut out = Vec::with_capacity(writes.len());
        for write in writes {
            let Some(job) = st.fenced(write.job(), worker) else {
                out.push(WriteOutcome::LeaseLost);
                continue;
            };
            match write {
                Write::Checkpoint { job: id, checkpoint } => {
                    job.updated_at = now;
                    st.checkpoints.insert((*id, checkpoint.index), checkpoint.clone());
                }
                Write::Complete { result, .. } => {
                    job.result = Some(result.clone());
                    end_run(job, JobStatus::Completed, now);
                }
                Write::Retry { error, run_at, .. } => {
                    job.last_error = Some(error.clone());
                    job.run_at = *run_at;
                    end_run(job, JobStatus::Pending, now);
                }
                Write::Fail { error, .. } => {
                    job.last_error = Some(error.clone());
                    end_run(job, JobStatus::Failed, now);
                }
                Write::Suspend { wake_at, .. } => {
                    job.wake_at = *wake_at;
                    end_run(job, JobStatus::Waiting, now);
                }
            }
            out.push(WriteOutcome::Applied);
        }
        Ok(out)
    }

    fn renew(&self, worker: &str, jobs: &[JobId], lease_until: Timestamp) -> Result<Vec<JobId>, StoreError> {
        let mut st = self.state.lock();
        let mut lost = Vec::new();
        for &id in jobs {
            match st.fenced(id, worker) {
                Some(job) => job.lease_until = Some(lease_until),
                None => lost.push(id),
            }
        }
        Ok(lost)
    }

    fn release(&self, worker: &str, jobs: &[JobId], now: Timestamp) -> Result<usize, StoreError> {
        let mut st = self.state.lock();
        let mut released = 0;
        for &id in jobs {
            if let Some(job) = st.fenced(id, worker) {
                job.attempt = job.attempt.saturating_sub(1);
                end_run(job, JobStatus::Pending, now);
                released += 1;
            }
        }
        Ok(released)
    }

    fn reclaim_expired(&self, now: Timestamp) -> Result<Reclaimed, StoreError> {
        let mut st = self.state.lock();
        let mut out = Reclaimed::default();
        for job in st.jobs.values_mut() {
            if job.status != JobStatus::Running || job.lease_until.is_none_or(|l| l >= now) {
                continue;
            }
            job.last_error = Some(lease_expired_message(job.attempt));
            if job.attempt >= job.max_attempts {
                end_run(job, JobStatus::Failed, now);
                out.failed.push(job.id);
            } else {
                job.run_at = now;
                end_run(job, JobStatus::Pending, now);
                out.requeued.push(job.id);
            }
        }
        Ok(out)
    }

    fn wake_due(&self, now: Timestamp) -> Result<usize, StoreError> {
        let mut st = self.state.lock();
        let mut woken = 0;
        for job in st.jobs.values_mut() {
            if job.status == JobStatus::Waiting && job.wake_at.is_some_and(|w| w <= now) {
                job.status = JobStatus::Pending;
                job.run_at = now;
                job.wake_at = None;
                job.updated_at = now;
                woken += 1;
            }
        }
        Ok(woken)
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
        let mut counts: BTreeMap<(String, JobStatus), u64> = BTreeMap::new();
        for job in st.jobs.values() {
            *counts.entry((job.queue.clone(), job.status)).or_default() += 1;
        }
        Ok(counts.into_iter().map(|((queue, status), count)| StatusCount { queue, status, count }).collect())
    }
}

/// The `last_error` a reclaimed job gets. Shared so every backend words it the same.
pub fn lease_expired_message(attempt: u32) -> String {
    format!("attempt {attempt} lost its lease (the worker stopped or stalled)")
}
