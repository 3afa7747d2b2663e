//! `WorkerBuilder`: a pool's settings, and starting it.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::held::Held;
use super::liveness::Liveness;
use super::supervise::{self, Health};
use super::{
    committer, dispatcher, heartbeat, maintenance, pace, scheduler, Pool, Retention, Worker, WorkerShared,
    MAX_CONCURRENCY,
};
use crate::doorbell::Doorbell;
use crate::wait::Waitable;
use crate::{names, Error, Queue};

/// Settings for a worker pool; [`start`](WorkerBuilder::start) runs it.
///
/// ```
/// use std::time::Duration;
/// use durable_jobs::{JobContext, MemoryStore, Queue};
///
/// let queue = Queue::new(MemoryStore::new());
/// queue.register("noop", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(()))?;
/// let worker = queue
///     .worker()
///     .concurrency(4)
///     .queues(["default", "mail"])
///     .lease(Duration::from_secs(30))
///     .poll_interval(Duration::from_millis(200))
///     .shutdown_timeout(Duration::from_secs(5))
///     .start()?;
/// worker.shutdown();
/// # Ok::<(), durable_jobs::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a worker builder does nothing until `start` is called"]
pub struct WorkerBuilder {
    queue: Queue,
    concurrency: usize,
    prefetch: Option<usize>,
    queues: Vec<String>,
    lease: Duration,
    poll_interval: Duration,
    shutdown_timeout: Duration,
    timeout_grace: Duration,
    detect_dead_workers: bool,
    retention: Retention,
    queue_depth_every: Option<Duration>,
}

impl WorkerBuilder {
    pub(crate) fn new(queue: Queue) -> Self {
        WorkerBuilder {
            queue,
            concurrency: std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            prefetch: None,
            queues: vec![crate::options::DEFAULT_QUEUE.to_owned()],
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            shutdown_timeout: Duration::from_secs(10),
            timeout_grace: Duration::from_secs(1),
            detect_dead_workers: true,
            retention: Retention::default(),
            queue_depth_every: Some(Duration::from_secs(10)),
        }
    }

    /// How many jobs run at once, each on its own thread (1 to 1024). Default: the number of
    /// CPUs.
    pub fn concurrency(mut self, threads: usize) -> Self {
        self.concurrency = threads;
        self
    }

    /// How many jobs may be claimed ahead of free threads, so threads never wait for a claim.
    /// Default: adaptive, about two claims' worth of work (one job per thread for slow
    /// handlers, up to 1024 for very fast ones). Prefetched jobs are leased to this worker;
    /// a crash or a stop does not charge them an attempt.
    pub fn prefetch(mut self, jobs: usize) -> Self {
        self.prefetch = Some(jobs);
        self
    }

    /// The queues to claim from (default `["default"]`). Across queues, jobs are taken by
    /// priority, then run time.
    pub fn queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// How long a claim lasts without renewal (default 30 s, at least 100 ms). Renewed every
    /// third of it while the job runs. The jobs of a worker that stopped or stalled are
    /// reclaimed after it; those of a worker process on this machine that died are reclaimed
    /// at once.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often to look for jobs enqueued by other processes (default 500 ms; jobs enqueued
    /// through a clone of this queue, and jobs coming due, wake the worker at once).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long [`Worker::shutdown`] lets running jobs finish before releasing them (default
    /// 10 s). Handlers are told at once (`is_cancelled()`).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long after its [timeout](crate::JobOptions::timeout) a handler that has not
    /// returned is given up on (default 1 s): its attempt is failed as timed out (retried per
    /// its policy), its lease is no longer renewed, its late writes are refused, and its thread
    /// is replaced so the pool keeps its capacity (at most as many replacements as threads).
    pub fn timeout_grace(mut self, grace: Duration) -> Self {
        self.timeout_grace = grace;
        self
    }

    /// Whether to recover at once the jobs of worker processes on this machine that died
    /// (default on, for stores that several processes share): each worker holds a lock file
    /// for its life in the temporary directory, and a lock that can be taken means its holder
    /// is dead. Off: such jobs wait for their leases to expire.
    pub fn detect_dead_workers(mut self, detect: bool) -> Self {
        self.detect_dead_workers = detect;
        self
    }

    /// How long finished jobs are kept (default: completed 7 days, failed and cancelled 30
    /// days; see [`Retention`]). One worker of those sharing the store deletes at a time.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How often this worker sets the `durable_jobs_queue_depth` gauges (see
    /// [`observability`](crate::observability#metrics)) from [`Store::counts`](crate::Store::counts):
    /// default every 10 s, `None` never. Each time reads every job row of the store, finished
    /// ones too: on a large table choose a long interval, or let one worker of a fleet report.
    pub fn queue_depth_interval(mut self, interval: Option<Duration>) -> Self {
        self.queue_depth_every = interval;
        self
    }

    fn validate(&self) -> Result<(), Error> {
        let invalid = |option, reason: &str| Err(Error::InvalidOption { option, reason: reason.to_owned() });
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return invalid("concurrency", "must be between 1 and 1024");
        }
        if self.prefetch.is_some_and(|p| p > MAX_CONCURRENCY * 4) {
            return invalid("prefetch", "must be at most 4096");
        }
        if self.queues.is_empty() {
            return invalid("queues", "a worker needs at least one queue");
        }
        for q in &self.queues {
            names::validate("queue", q)?;
        }
        if self.lease < Duration::from_millis(100) || self.lease > Duration::from_secs(24 * 3600) {
            return invalid("lease", "must be between 100 ms and 24 h");
        }
        if self.poll_interval.is_zero() || self.poll_interval > Duration::from_secs(3600) {
            return invalid("poll_interval", "must be greater than zero and at most 1 h");
        }
        if self.shutdown_timeout > Duration::from_secs(24 * 3600) {
            return invalid("shutdown_timeout", "must be at most 24 h");
        }
        if self.timeout_grace > Duration::from_secs(3600) {
            return invalid("timeout_grace", "must be at most 1 h");
        }
        if let Err(reason) = self.retention.validate() {
            return invalid("retention", reason);
        }
        if self.queue_depth_every.is_some_and(|d| d < Duration::from_millis(10) || d > Duration::from_secs(24 * 3600)) {
            return invalid("queue_depth_interval", "must be between 10 ms and 24 h");
        }
        Ok(())
    }

    /// Starts the pool: a dispatcher, `concurrency` worker threads, a committer, a heartbeat
    /// and a maintenance thread.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] / [`Error::InvalidName`] for bad settings, [`Error::Spawn`] if a
    /// thread cannot be started.
    pub fn start(self) -> Result<Worker, Error> {
        self.validate()?;
        let inner = self.queue.inner.clone();
        let worker_id: Arc<str> = format!("{}-{:016x}", std::process::id(), fastrand::u64(..)).into();
        let (commit_tx, commit_rx) = crossbeam_channel::unbounded();
        let pace = pace::Pace::new(self.concurrency, self.prefetch);
        let (job_tx, job_rx) = crossbeam_channel::bounded(pace.max_capacity());
        let liveness = self.liveness(&worker_id);
        let clock = inner.clock.clone();
        let shared = Arc::new(WorkerShared {
            worker_id,
            committer: commit_tx,
            held: Held::default(),
            doorbell: Arc::new(Doorbell::new(clock.clone())),
            queues: self.queues,
            lease: self.lease,
            poll_interval: self.poll_interval,
            timeout_grace: self.timeout_grace,
            retention: self.retention,
            queue_depth_every: self.queue_depth_every,
            pace,
            stopping: AtomicBool::new(false),
            internal_stop: Waitable::new(&*clock, false),
            capped: AtomicBool::new(false),
            schedule_bell: Waitable::new(&*clock, 0),
            health: Health::new(&*clock),
            pool: Pool {
                concurrency: self.concurrency,
                jobs: job_rx,
                threads: Mutex::new(Vec::new()),
                next: AtomicUsize::new(0),
                replacements: AtomicUsize::new(0),
            },
            liveness,
            queue: inner,
        });
        shared.queue.add_doorbell(&shared.doorbell);
        shared.queue.add_worker(&shared);
        shared.refresh_limits();
        let mut worker = Worker {
            shared: shared.clone(),
            internal: Vec::new(),
            shutdown_timeout: self.shutdown_timeout,
            started: clock.monotonic(),
            stopped: false,
        };
        // On an error below, dropping `worker` shuts down what did start.
        let handle = supervise::spawn("dj-committer".to_owned(), &shared, move |s| committer::run(s, &commit_rx))?;
        worker.internal.push(("dj-committer".to_owned(), handle));
        for (name, f) in [
            ("dj-heartbeat", heartbeat::run as fn(&Arc<WorkerShared>)),
            ("dj-maintenance", maintenance::run),
            ("dj-scheduler", scheduler::run),
        ] {
            let handle = supervise::spawn(name.to_owned(), &shared, f)?;
            worker.internal.push((name.to_owned(), handle));
        }
        for _ in 0..self.concurrency {
            shared.spawn_executor()?;
        }
        let handle = supervise::spawn("dj-dispatcher".to_owned(), &shared, move |s| dispatcher::run(s, &job_tx))?;
        worker.internal.push(("dj-dispatcher".to_owned(), handle));
        Ok(worker)
    }

    /// The worker's lock file, if dead workers are to be detected: the store must outlive a
    /// process (a store in memory dies with its workers) and say what it is on this machine.
    fn liveness(&self, worker_id: &str) -> Option<Liveness> {
        let store = &self.queue.inner.store;
        if !self.detect_dead_workers || !store.capabilities().durable {
            return None;
        }
        let identity = store.local_identity()?;
        match Liveness::acquire(&identity, worker_id) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "cannot take a worker lock file; dead workers are found by their leases only");
                None
            }
        }
    }
}
