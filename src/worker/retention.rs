//! Retention: deleting finished jobs after an age, in small batches, from one worker of the
//! fleet at a time.

use std::time::Duration;

use durable_jobs_store::{JobStatus, PurgeRequest};

use super::WorkerShared;

/// The role a worker leads ([`Store::lead`](durable_jobs_store::Store::lead)) while it deletes.
const ROLE: &str = "retention";

/// How long finished jobs are kept before a worker deletes them, with their checkpoints and
/// signals; set with [`WorkerBuilder::retention`](crate::WorkerBuilder::retention).
///
/// On by default, as in Oban and River: completed jobs are kept 7 days, failed and cancelled
/// ones (the dead letters, for inspection and requeue) 30 days. One worker of all those sharing
/// the store deletes at a time, every minute, in batches of 1,000 per transaction; a child is
/// kept while its parent has not finished.
///
/// ```
/// use std::time::Duration;
/// use durable_jobs::{MemoryStore, Queue, Retention};
///
/// let queue = Queue::new(MemoryStore::new());
/// let retention = Retention::default().completed(Duration::from_secs(3600)).keep_failed_forever();
/// let worker = queue.worker().retention(retention).start()?;
/// worker.shutdown();
/// # Ok::<(), durable_jobs::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    completed: Option<Duration>,
    failed: Option<Duration>,
    cancelled: Option<Duration>,
    every: Duration,
    batch: usize,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl Default for Retention {
    fn default() -> Self {
        Retention {
            completed: Some(7 * DAY),
            failed: Some(30 * DAY),
            cancelled: Some(30 * DAY),
            every: Duration::from_secs(60),
            batch: 1000,
        }
    }
}

impl Retention {
    /// Keeps every finished job: no worker deletes anything.
    pub fn keep_forever() -> Self {
        Retention { completed: None, failed: None, cancelled: None, ..Retention::default() }
    }

    /// Deletes completed jobs that finished more than `age` ago (default 7 days).
    pub fn completed(mut self, age: Duration) -> Self {
        self.completed = Some(age);
        self
    }

    /// Deletes failed jobs (dead letters) that finished more than `age` ago (default 30 days).
    pub fn failed(mut self, age: Duration) -> Self {
        self.failed = Some(age);
        self
    }

    /// Deletes cancelled jobs that finished more than `age` ago (default 30 days).
    pub fn cancelled(mut self, age: Duration) -> Self {
        self.cancelled = Some(age);
        self
    }

    /// Keeps failed jobs until an operator deletes them ([`Queue::purge`](crate::Queue::purge)).
    pub fn keep_failed_forever(mut self) -> Self {
        self.failed = None;
        self
    }

    /// How often a worker looks for jobs to delete (default 1 minute; sooner while a round
    /// leaves more behind).
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval;
        self
    }

    /// Jobs deleted per transaction (default 1,000): small batches keep each write short.
    pub fn batch(mut self, jobs: usize) -> Self {
        self.batch = jobs;
        self
    }

    /// The settings a worker checks before it starts.
    pub(super) fn validate(&self) -> Result<(), &'static str> {
        if self.every.is_zero() || self.every > DAY {
            return Err("retention interval must be greater than zero and at most a day");
        }
        if !(1..=100_000).contains(&self.batch) {
            return Err("retention batch must be between 1 and 100,000");
        }
        Ok(())
    }

    /// The interval between rounds.
    pub(super) fn interval(&self) -> Duration {
        self.every
    }

    fn ages(&self) -> impl Iterator<Item = (JobStatus, Duration)> {
        [
            (JobStatus::Completed, self.completed),
            (JobStatus::Failed, self.failed),
            (JobStatus::Cancelled, self.cancelled),
        ]
        .into_iter()
        .filter_map(|(status, age)| Some((status, age?)))
    }
}

/// Batches deleted per status in one round, so a backlog cannot hold the maintenance thread.
const BATCHES_PER_ROUND: usize = 20;

/// One round, if this worker leads retention: deletes what is past its age. Returns whether
/// more may be left (the next round should come soon).
pub(super) fn round(shared: &WorkerShared, retention: &Retention) -> bool {
    if retention.ages().next().is_none() {
        return false;
    }
    let store = &shared.queue.store;
    let now = shared.queue.now();
    let lead_until = now.saturating_add(retention.every.saturating_mul(3).max(Duration::from_secs(10)));
    match store.lead(ROLE, &shared.worker_id, now, lead_until) {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            tracing::warn!(error = %e, "retention: could not take the lead");
            return false;
        }
    }
    let mut more = false;
    for (status, age) in retention.ages() {
        let req = PurgeRequest::new(status, now.saturating_sub(age), retention.batch);
        let (mut deleted, mut full) = (0, false);
        for _ in 0..BATCHES_PER_ROUND {
            match store.purge(&req) {
                Ok(n) => (deleted, full) = (deleted + n, n == retention.batch),
                Err(e) => {
                    tracing::warn!(error = %e, %status, "retention: deleting old jobs failed");
                    return false;
                }
            }
            if !full || shared.stopping() {
                break;
            }
        }
        more |= full;
        if deleted > 0 {
            tracing::debug!(%status, deleted, "retention: deleted old finished jobs");
        }
    }
    more
}
