//! Looking at jobs: one job, lists, counts, checkpoints, results, waiting for them.

use std::time::{Duration, SystemTime};

use durable_jobs_store::{Checkpoint, ChildrenWait, JobFilter, JobId, JobRecord, JobStatus, Timestamp};
use serde::de::DeserializeOwned;

use crate::{Counts, Error, Queue};

/// Checkpoints read per store call.
const CHECKPOINT_PAGE: usize = 256;

/// A snapshot of one job, from [`Queue::job`](crate::Queue::job), [`Queue::list`](crate::Queue::list)
/// or [`Queue::wait`](crate::Queue::wait).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobInfo {
    /// The job.
    pub id: JobId,
    /// Its handler name.
    pub name: String,
    /// Its queue.
    pub queue: String,
    /// Its status.
    pub status: JobStatus,
    /// Attempts charged so far, counting a running one (0 before the first; a run released at
    /// shutdown, suspended, or lost before it started is not charged).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Its priority.
    pub priority: i32,
    /// Its unique key, if any.
    pub unique_key: Option<String>,
    /// The arguments as JSON text, as enqueued (kept after failures).
    pub args: String,
    /// The result as JSON text, once completed.
    pub result: Option<String>,
    /// The last failure, with its causes.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: SystemTime,
    /// When it is (or was) due to run.
    pub run_at: SystemTime,
    /// When its latest attempt started.
    pub started_at: Option<SystemTime>,
    /// When it finished.
    pub finished_at: Option<SystemTime>,
    /// For a `waiting` job, when it wakes: the deadline of its durable sleep or signal wait.
    pub wake_at: Option<SystemTime>,
    /// For a `waiting` job, the signal name it waits for.
    pub wait_signal: Option<String>,
    /// For a `waiting` job, the children it waits for: how many there are and how many have
    /// completed or failed so far.
    pub wait_children: Option<ChildrenWait>,
    /// For a child job, the workflow that started it.
    pub parent: Option<JobId>,
}

impl From<JobRecord> for JobInfo {
    fn from(r: JobRecord) -> Self {
        let text = |bytes: Vec<u8>| {
            String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        };
        JobInfo {
            id: r.id,
            name: r.name,
            queue: r.queue,
            status: r.status,
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            priority: r.priority,
            unique_key: r.unique_key,
            args: text(r.args),
            result: r.result.map(text),
            last_error: r.last_error,
            created_at: r.created_at.to_system_time(),
            run_at: r.run_at.to_system_time(),
            started_at: r.started_at.map(Timestamp::to_system_time),
            finished_at: r.finished_at.map(Timestamp::to_system_time),
            wake_at: r.wake_at.filter(|_| r.status == JobStatus::Waiting).map(Timestamp::to_system_time),
            wait_signal: r.wait_signal.filter(|_| r.status == JobStatus::Waiting),
            wait_children: r.wait_children.filter(|_| r.status == JobStatus::Waiting),
            parent: r.parent.map(|p| p.parent),
        }
    }
}

impl Queue {
    /// One job, or `None` if no job has this id.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store fails.
    pub fn job(&self, id: JobId) -> Result<Option<JobInfo>, Error> {
        Ok(self.inner.store.get(id)?.map(JobInfo::from))
    }

    /// The jobs matching `filter`, in id order. Page through many with
    /// [`JobFilter::after`] set to the last id of the previous page.
    ///
    /// ```
    /// use durable_jobs::{JobFilter, JobStatus, MemoryStore, Queue};
    /// let queue = Queue::new(MemoryStore::new());
    /// let failed = queue.list(&JobFilter::new().status(JobStatus::Failed).limit(20))?;
    /// assert!(failed.is_empty());
    /// # Ok::<(), durable_jobs::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store fails.
    pub fn list(&self, filter: &JobFilter) -> Result<Vec<JobInfo>, Error> {
        Ok(self.inner.store.list(filter)?.into_iter().map(JobInfo::from).collect())
    }

    /// How many jobs are in each state, per queue and handler name ([`Counts`]).
    ///
    /// Counting reads every kept job: on SQLite about half a second and some megabytes of
    /// sort memory per million rows (finished jobs included) on a small machine. Call it for
    /// a progress display or a check, not in a tight loop over a large table.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store fails.
    pub fn counts(&self) -> Result<Counts, Error> {
        Ok(Counts::from_store(&self.inner.store.counts(self.inner.now())?))
    }

    /// The checkpoints a job has recorded, in step order (read a page at a time).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store fails.
    pub fn checkpoints(&self, id: JobId) -> Result<Vec<Checkpoint>, Error> {
        let mut all = Vec::new();
        loop {
            let from = all.last().map_or(0, |c: &Checkpoint| c.index.saturating_add(1));
            let page = self.inner.store.checkpoints(id, from, CHECKPOINT_PAGE)?;
            let done = page.len() < CHECKPOINT_PAGE;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    /// Waits until the job is completed, failed or cancelled, for at most `timeout` (of the
    /// queue's clock).
    ///
    /// Woken at once by commits of workers in this process; jobs run by other processes are
    /// seen within 100 ms.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown id, [`Error::WaitTimeout`] if it did not finish in
    /// time, [`Error::Store`] if the store fails.
    pub fn wait(&self, id: JobId, timeout: Duration) -> Result<JobInfo, Error> {
        let mut status = JobStatus::Pending;
        let info = self.poll_until(timeout, || {
            let info = self.job(id)?.ok_or(Error::NotFound { job: id })?;
            status = info.status;
            Ok(info.status.is_terminal().then_some(info))
        })?;
        info.map_err(|waited| Error::WaitTimeout { job: id, status, waited })
    }

    /// Waits until no job is ready, prefetched or running (scheduled and waiting jobs do not
    /// count), for at most `timeout`: for command-line programs and tests that enqueue work,
    /// start a worker and want to stop when it is done. Returns the counts it saw last.
    ///
    /// It counts (see [`counts`](Queue::counts)) after each commit of this process and every
    /// 100 ms; over a table of millions of kept jobs, waiting for the last job's id with
    /// [`wait`](Queue::wait) costs far less.
    ///
    /// ```
    /// use std::time::Duration;
    /// use durable_jobs::{JobContext, JobOptions, MemoryStore, Queue};
    ///
    /// let queue = Queue::new(MemoryStore::new());
    /// queue.register("resize", |_: &JobContext, n: u32| Ok::<_, std::io::Error>(n))?;
    /// queue.enqueue_batch("resize", &(0..50).collect::<Vec<u32>>(), JobOptions::new())?;
    /// let worker = queue.worker().concurrency(2).start()?;
    /// let counts = queue.wait_idle(Duration::from_secs(30))?;
    /// assert_eq!(counts.total().completed, 50);
    /// worker.shutdown();
    /// # Ok::<(), durable_jobs::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::IdleTimeout`] with the number of busy jobs if work is left after `timeout`
    /// (for example ready jobs of a name no worker has registered; ready jobs of a paused
    /// queue do not count), [`Error::Store`].
    pub fn wait_idle(&self, timeout: Duration) -> Result<Counts, Error> {
        let (mut last, mut busy) = (Counts::default(), 0);
        let outcome = self.poll_until(timeout, || {
            last = self.counts()?;
            // Jobs of a paused queue wait for its resume, not for a worker.
            let paused = self.paused_queues()?;
            busy =
                last.rows().filter(|(queue, _, _)| !paused.iter().any(|p| p == queue)).map(|(_, _, c)| c.busy()).sum();
            Ok((busy == 0).then(|| last.clone()))
        })?;
        outcome.map_err(|waited| Error::IdleTimeout { busy, waited })
    }

    /// Calls `check` until it returns something, waking at each commit of this process and
    /// every 100 ms; `Err(waited)` when `timeout` passes first.
    fn poll_until<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut() -> Result<Option<T>, Error>,
    ) -> Result<Result<T, Duration>, Error> {
        let clock = &*self.inner.clock;
        let start = clock.monotonic();
        let deadline = start.saturating_add(timeout);
        loop {
            let seen = *self.inner.commits.lock();
            if let Some(found) = check()? {
                return Ok(Ok(found));
            }
            let now = clock.monotonic();
            if now >= deadline {
                return Ok(Err(now.saturating_sub(start)));
            }
            let slice = deadline.min(now.saturating_add(Duration::from_millis(100)));
            let mut commits = self.inner.commits.lock();
            self.inner.commits.wait_until(clock, &mut commits, Some(slice), |n| *n != seen);
        }
    }

    /// The result of a completed job, decoded as `T`.
    ///
    /// # Errors
    ///
    /// [`Error::NoResult`] if the job has not completed, [`Error::NotFound`], or
    /// [`Error::Decode`] if the result does not decode as `T`.
    pub fn result<T: DeserializeOwned>(&self, id: JobId) -> Result<T, Error> {
        let record = self.inner.store.get(id)?.ok_or(Error::NotFound { job: id })?;
        match record.result {
            Some(bytes) if record.status == JobStatus::Completed => serde_json::from_slice(&bytes)
                .map_err(|source| Error::Decode { job: id, name: record.name, what: "result", source }),
            _ => Err(Error::NoResult { job: id, status: record.status, error: record.last_error }),
        }
    }
}
