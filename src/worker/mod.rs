//! The worker pool: a dispatcher claims batches, worker threads run jobs, a committer
//! group-commits their outcomes, and a maintenance thread renews leases and reclaims dead ones.
//!
//! ```text
//!   store ──claim──▶ dispatcher ──jobs (bounded)──▶ worker threads ──outcomes──▶ committer ──▶ store
//!     ▲                  ▲ doorbell: enqueue, freed slots, retry time   │
//!     │                                                                 └── checkpoints (`call`) ──▶ store
//!     └── renew / reclaim / wake ── maintenance
//! ```
//!
//! Outcomes do not hold up a worker thread; checkpoints do (`call` is durable on return) and
//! are written by the worker thread itself: the store's group commit merges the checkpoints of
//! concurrent threads into one transaction.

mod committer;
mod dispatcher;
mod executor;
mod held;
mod maintenance;
mod pace;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::doorbell::Doorbell;
use crate::queue::QueueInner;
use crate::retry::{with_patience, Patience};
use crate::{names, Error, Queue};

pub(crate) use committer::Commit;
use held::Held;
pub(crate) use held::JobSignal;

/// The most worker threads one pool may have.
pub const MAX_CONCURRENCY: usize = 1024;

/// What every thread of one worker pool shares.
#[derive(Debug)]
pub(crate) struct WorkerShared {
    pub(crate) queue: Arc<QueueInner>,
    /// This incarnation's lease holder name: unique per started worker.
    pub(crate) worker_id: String,
    pub(crate) committer: Sender<Commit>,
    held: Held,
    doorbell: Arc<Doorbell>,
    queues: Vec<String>,
    lease: Duration,
    poll_interval: Duration,
    /// How many jobs to hold: running plus prefetched.
    pace: pace::Pace,
    /// Set at shutdown: claim nothing more, start nothing more.
    stopping: AtomicBool,
}

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
    /// handlers, up to 1024 for very fast ones). Prefetched jobs are leased to this worker.
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
    /// third of it while the job runs; a job whose worker died is reclaimed after it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often to look for jobs enqueued by other processes (default 500 ms; jobs enqueued
    /// through a clone of this queue wake the worker at once).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long [`Worker::shutdown`] lets running jobs finish before releasing them (default
    /// 10 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
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
        Ok(())
    }

    /// Starts the pool: one dispatcher, `concurrency` worker threads, a committer and a
    /// maintenance thread.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] / [`Error::InvalidName`] for bad settings, [`Error::Spawn`] if a
    /// thread cannot be started.
    pub fn start(self) -> Result<Worker, Error> {
        self.validate()?;
        let (commit_tx, commit_rx) = crossbeam_channel::unbounded();
        let pace = pace::Pace::new(self.concurrency, self.prefetch);
        let channel_size = pace.max_capacity();
        let shared = Arc::new(WorkerShared {
            queue: self.queue.inner.clone(),
            worker_id: format!("{}-{:016x}", std::process::id(), fastrand::u64(..)),
            committer: commit_tx,
            held: Held::default(),
            doorbell: Arc::new(Doorbell::default()),
            queues: self.queues,
            lease: self.lease,
            poll_interval: self.poll_interval,
            pace,
            stopping: AtomicBool::new(false),
        });
        shared.queue.add_doorbell(&shared.doorbell);
        let (maintenance_stop, maintenance_rx) = crossbeam_channel::bounded(1);
        let (exit_tx, exit_rx) = crossbeam_channel::unbounded();
        let mut worker = Worker {
            shared: shared.clone(),
            committer: None,
            maintenance: None,
            dispatcher: None,
            threads: Vec::new(),
            exits: exit_rx,
            maintenance_stop,
            shutdown_timeout: self.shutdown_timeout,
            stopped: false,
        };
        // On an error below, dropping `worker` shuts down what did start.
        let s = shared.clone();
        worker.committer = Some(spawn("dj-committer", move || committer::run(&s, &commit_rx))?);
        let s = shared.clone();
        worker.maintenance = Some(spawn("dj-maintenance", move || maintenance::run(&s, &maintenance_rx))?);
        let (job_tx, job_rx) = crossbeam_channel::bounded(channel_size);
        for i in 0..self.concurrency {
            let (s, jobs, exit) = (shared.clone(), job_rx.clone(), exit_tx.clone());
            let thread = spawn(&format!("dj-worker-{i}"), move || executor::run(&s, &jobs, (exit, i)))?;
            worker.threads.push(thread);
        }
        let s = shared;
        worker.dispatcher = Some(spawn("dj-dispatcher", move || dispatcher::run(&s, &job_tx))?);
        Ok(worker)
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, Error> {
    std::thread::Builder::new().name(name.to_owned()).spawn(f).map_err(Error::Spawn)
}

/// A running worker pool. Dropping it shuts it down like [`Worker::shutdown`].
#[derive(Debug)]
#[must_use = "dropping a worker shuts it down at once"]
pub struct Worker {
    shared: Arc<WorkerShared>,
    committer: Option<JoinHandle<()>>,
    maintenance: Option<JoinHandle<()>>,
    dispatcher: Option<JoinHandle<()>>,
    threads: Vec<JoinHandle<()>>,
    /// Worker threads send their index here as they end.
    exits: Receiver<usize>,
    maintenance_stop: Sender<()>,
    shutdown_timeout: Duration,
    stopped: bool,
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Jobs handed back to the queue unfinished, without consuming an attempt.
    pub released: usize,
    /// Handlers still running when the shutdown timeout passed; they were told to stop
    /// (`is_cancelled()`), their jobs released, and their threads left to end on their own.
    pub abandoned: usize,
}

impl Worker {
    /// This worker's lease-holder name, as stored in `locked_by`.
    pub fn id(&self) -> &str {
        &self.shared.worker_id
    }

    /// Stops gracefully: claims nothing more, lets running jobs finish within the shutdown
    /// timeout, releases the jobs it still holds (without consuming an attempt), commits
    /// everything queued, and joins its threads.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.stop()
    }

    fn stop(&mut self) -> ShutdownReport {
        if self.stopped {
            return ShutdownReport { released: 0, abandoned: 0 };
        }
        self.stopped = true;
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::Release);
        shared.doorbell.ring();
        if let Some(d) = self.dispatcher.take() {
            let _ = d.join();
        }
        // Running handlers get until the deadline; queued jobs are not started.
        let deadline = Instant::now() + self.shutdown_timeout;
        let mut exited = vec![false; self.threads.len()];
        while exited.contains(&false) {
            match self.exits.recv_deadline(deadline) {
                Ok(i) => exited[i] = true,
                Err(_) => break,
            }
        }
        // Threads that said they exited are joined (they are ending); the others are stuck in a
        // handler and left to end on their own.
        let mut abandoned = 0;
        for (t, done) in self.threads.drain(..).zip(exited) {
            if done {
                let _ = t.join();
            } else {
                abandoned += 1;
            }
        }
        shared.held.cancel_all();
        // Outcomes still queued in the committer belong to jobs no longer held: the release
        // leaves them alone, and the committer writes them before it stops.
        let released = release_held(shared);
        let _ = self.maintenance_stop.send(());
        if let Some(m) = self.maintenance.take() {
            let _ = m.join();
        }
        let _ = shared.committer.send(Commit::Stop);
        if let Some(c) = self.committer.take() {
            let _ = c.join();
        }
        ShutdownReport { released, abandoned }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Hands every held job back to the queue. Returns how many the store released.
fn release_held(shared: &WorkerShared) -> usize {
    let ids = shared.held.ids();
    if ids.is_empty() {
        return 0;
    }
    let patience = Patience { budget: Duration::from_secs(1), max_pause: Duration::from_millis(200) };
    let release = || shared.queue.store.release(&shared.worker_id, &ids, shared.queue.now());
    with_patience("release", &patience, || true, release).unwrap_or_else(|e| {
        // Not released: their leases expire and the reaper of any worker reclaims them.
        tracing::warn!(error = %e, jobs = ids.len(), "releasing held jobs failed");
        0
    })
}
