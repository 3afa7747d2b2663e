//! The worker pool: a dispatcher claims batches, worker threads run jobs, a committer
//! group-commits their outcomes, a heartbeat renews leases, and a maintenance thread recovers
//! jobs of dead workers and gives up on handlers that overran their timeout. See `README.md`
//! beside this file for the wake-up protocol, the held-set invariants and fencing.

mod builder;
mod committer;
mod dispatcher;
mod executor;
mod heartbeat;
mod held;
mod liveness;
mod maintenance;
mod pace;
mod retention;
mod scheduler;
mod supervise;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use durable_jobs_store::{Claim, ClaimedJob};
use parking_lot::Mutex;

use crate::doorbell::Doorbell;
use crate::queue::QueueInner;
use crate::retry::{with_patience, Patience};
use crate::signal::JobSignal;
use crate::wait::Waitable;
use crate::{Clock, Error};

pub use builder::WorkerBuilder;
pub(crate) use committer::Commit;
use held::{Held, ThreadSlot};
use liveness::Liveness;
pub use retention::Retention;
use supervise::Health;

/// The most worker threads one pool may have.
pub const MAX_CONCURRENCY: usize = 1024;

/// How long internal threads get to end at shutdown, after the handlers' time.
const INTERNAL_STOP: Duration = Duration::from_secs(2);

/// A claimed job on its way to a worker thread.
pub(crate) type Dispatched = (ClaimedJob, Arc<JobSignal>);

/// What every thread of one worker pool shares.
#[derive(Debug)]
pub(crate) struct WorkerShared {
    pub(crate) queue: Arc<QueueInner>,
    /// This incarnation's lease holder name: unique per started worker.
    pub(crate) worker_id: Arc<str>,
    committer: Sender<Commit>,
    held: Held,
    doorbell: Arc<Doorbell>,
    queues: Vec<String>,
    lease: Duration,
    poll_interval: Duration,
    /// How long after its timeout a handler that has not returned is abandoned.
    timeout_grace: Duration,
    retention: Retention,
    /// How often the maintenance thread reports the queue depth, if it does.
    queue_depth_every: Option<Duration>,
    /// How many jobs to hold: running plus prefetched.
    pace: pace::Pace,
    /// Set at shutdown or failure: claim nothing more, start nothing more.
    stopping: AtomicBool,
    /// Set at shutdown: the heartbeat and maintenance threads end.
    internal_stop: Arc<Waitable<bool>>,
    /// Set while the store has a limit on running jobs: every run that ends may let a held
    /// job go, so it wakes the dispatcher (the committer lets go of a batch at a time, so this
    /// is a ring per commit, not per job).
    capped: AtomicBool,
    /// Bumped when schedules change in this process, and at shutdown: wakes the scheduler.
    schedule_bell: Arc<Waitable<u64>>,
    health: Health,
    pool: Pool,
    liveness: Option<Liveness>,
}

/// A worker thread: its name, its slot, its handle.
type PoolThread = (String, Arc<ThreadSlot>, JoinHandle<()>);

/// The worker threads, which the watchdog may add to.
#[derive(Debug)]
struct Pool {
    concurrency: usize,
    jobs: Receiver<Dispatched>,
    threads: Mutex<Vec<PoolThread>>,
    next: AtomicUsize,
    /// Threads started to replace ones stuck in a handler.
    replacements: AtomicUsize,
}

impl WorkerShared {
    fn clock(&self) -> &dyn Clock {
        &*self.queue.clock
    }

    /// Wakes the scheduler: schedules changed (or the pool stops).
    pub(crate) fn schedules_changed(&self) {
        self.schedule_bell.update(|n| *n += 1);
    }

    /// Reads whether the store has a limit on running jobs.
    pub(crate) fn refresh_limits(&self) {
        match self.queue.store.limits() {
            Ok(limits) => self.capped.store(limits.iter().any(|l| l.max_running.is_some()), Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "reading the limits failed"),
        }
    }

    /// Renews the held leases now, which also tells runs whose job was cancelled to stop.
    pub(crate) fn renew_now(&self) {
        heartbeat::renew(self);
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Lets go of runs that ended (their outcome committed, or nothing to write): their slots
    /// are free. The dispatcher is woken when half the slots are, not after every run.
    fn let_go(&self, claims: impl IntoIterator<Item = Claim>) {
        for claim in claims {
            self.held.remove(claim);
        }
        if self.capped.load(Ordering::Relaxed) || self.held.len() <= self.pace.capacity() / 2 {
            self.doorbell.ring();
        }
    }

    /// Stops claiming and starting jobs, and tells every held run.
    fn stop_claiming(&self) {
        self.stopping.store(true, Ordering::Release);
        self.held.cancel_all();
        self.doorbell.ring();
    }

    /// Waits until `deadline` (the clock's monotonic time) or until the pool stops; `true` if
    /// it stopped.
    fn wait_stop(&self, deadline: Duration) -> bool {
        let mut stop = self.internal_stop.lock();
        self.internal_stop.wait_until(self.clock(), &mut stop, Some(deadline), |stop| *stop)
    }

    /// Starts one more worker thread.
    fn spawn_executor(self: &Arc<Self>) -> Result<(), Error> {
        let index = self.pool.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("dj-worker-{index}");
        let slot = Arc::new(ThreadSlot::default());
        let (jobs, s) = (self.pool.jobs.clone(), slot.clone());
        let handle = supervise::spawn(name.clone(), self, move |shared| executor::run(shared, &jobs, &s))?;
        self.pool.threads.lock().push((name, slot, handle));
        Ok(())
    }

    /// Replaces a thread stuck in a handler, up to as many replacements as threads.
    fn replace_stuck_thread(self: &Arc<Self>) {
        let n = self.pool.replacements.fetch_add(1, Ordering::Relaxed);
        if n >= self.pool.concurrency {
            tracing::error!(stuck = n + 1, "too many threads stuck in handlers; the pool runs with fewer threads");
        } else if let Err(e) = self.spawn_executor() {
            tracing::error!(error = %e, "could not replace a thread stuck in a handler");
        }
    }
}

/// A running worker pool. Dropping it shuts it down like [`Worker::shutdown`].
#[derive(Debug)]
#[must_use = "dropping a worker shuts it down at once: bind it (`let worker = ...`) and call `shutdown`"]
pub struct Worker {
    shared: Arc<WorkerShared>,
    /// The dispatcher, committer, heartbeat and maintenance threads.
    internal: Vec<(String, JoinHandle<()>)>,
    shutdown_timeout: Duration,
    started: Duration,
    stopped: bool,
}

/// What a shutdown did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Jobs handed back to the queue unfinished, without consuming an attempt.
    pub released: usize,
    /// Handlers still running when the shutdown timeout passed; they were told to stop
    /// (`is_cancelled()`), their jobs released, and their threads left to end on their own.
    pub abandoned: usize,
    /// Threads abandoned earlier by the timeout watchdog (a handler that overran its timeout
    /// and did not return), over the worker's life.
    pub stuck: usize,
    /// Why the pool failed, if an internal thread failed (see [`Worker::health`]).
    pub failure: Option<String>,
}

impl Worker {
    /// This worker's lease-holder name, as stored in `locked_by`.
    pub fn id(&self) -> &str {
        &self.shared.worker_id
    }

    /// `Ok` while every thread of the pool works. After a panic in one of its internal threads
    /// (the dispatcher, the committer, the heartbeat, the maintenance thread: a bug in the
    /// engine or a store), the pool stops claiming and hands back the jobs it had not started,
    /// and this returns [`Error::WorkerFailed`]; shut it down and start another.
    ///
    /// # Errors
    ///
    /// [`Error::WorkerFailed`] naming the thread and the panic.
    pub fn health(&self) -> Result<(), Error> {
        self.shared.health.failure().map_or(Ok(()), Err)
    }

    /// Stops gracefully: claims nothing more, tells running handlers at once
    /// (`is_cancelled()` turns true), lets them finish within the shutdown timeout, hands back
    /// the jobs it still holds (without charging an attempt), commits every outcome, and joins
    /// its threads. Bounded: the shutdown timeout plus a few seconds, even if a store call
    /// hangs (threads stuck in one are left behind).
    pub fn shutdown(mut self) -> ShutdownReport {
        self.stop()
    }

    fn stop(&mut self) -> ShutdownReport {
        let shared = self.shared.clone();
        let report = |released, abandoned| ShutdownReport {
            released,
            abandoned,
            stuck: shared.pool.replacements.load(Ordering::Relaxed),
            failure: shared.health.failure().map(|e| e.to_string()),
        };
        if self.stopped {
            return report(0, 0);
        }
        self.stopped = true;
        shared.stop_claiming();
        let clock = shared.clock();
        let deadline = clock.monotonic().saturating_add(self.shutdown_timeout);
        // Handlers get until the deadline; threads stuck since the watchdog gave up on them
        // are not waited for.
        let mut waiting_for: Vec<String> = vec!["dj-dispatcher".to_owned()];
        waiting_for
            .extend(shared.pool.threads.lock().iter().filter(|(_, s, _)| !s.is_retired()).map(|(n, ..)| n.clone()));
        let still_running = shared.health.wait_exits(clock, &waiting_for, deadline);
        let abandoned = still_running.iter().filter(|n| n.starts_with("dj-worker-")).count();
        // A job released while its handler still runs must not start again in this process
        // before that handler returns.
        let running = shared.held.running();
        for claim in &running {
            shared.queue.quarantine(claim.job);
        }
        let still = shared.held.running();
        for claim in running.iter().filter(|c| !still.contains(c)) {
            // Returned meanwhile (and may have told the queue before the quarantine).
            shared.queue.handler_returned(claim.job);
        }
        let released = release(&shared, &shared.held.releasable());
        shared.internal_stop.update(|stop| *stop = true);
        shared.schedules_changed();
        let _ = shared.committer.send(Commit::Stop);
        let internal: Vec<String> = self.internal.iter().map(|(n, _)| n.clone()).collect();
        let internal_deadline = clock.monotonic().saturating_add(INTERNAL_STOP);
        let stuck = shared.health.wait_exits(clock, &internal, internal_deadline);
        let mut threads: Vec<(String, JoinHandle<()>)> = std::mem::take(&mut self.internal);
        threads.extend(shared.pool.threads.lock().drain(..).map(|(n, _, h)| (n, h)));
        for (name, handle) in threads {
            // Threads that ended are joined (so nothing of the pool outlives the shutdown); the
            // others are stuck in a handler or a store call and left behind.
            if shared.health.has_exited(&name) {
                let _ = handle.join();
            }
        }
        if !stuck.is_empty() {
            tracing::warn!(?stuck, "worker threads still in a store call were left behind at shutdown");
        }
        report(released, abandoned)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if !self.stopped && self.shared.clock().monotonic().saturating_sub(self.started) < Duration::from_millis(100) {
            tracing::warn!(
                worker = %self.shared.worker_id,
                "a worker was dropped right after it started (did you write `let _ = queue.worker().start()`? \
                 bind it to a name instead)"
            );
        }
        self.stop();
    }
}

/// Hands `claims` back to the queue without charging them. Returns how many the store
/// released.
fn release(shared: &WorkerShared, claims: &[Claim]) -> usize {
    if claims.is_empty() {
        return 0;
    }
    let patience = Patience { budget: Duration::from_secs(1), max_pause: Duration::from_millis(200) };
    let queue = &shared.queue;
    let release = || queue.store.release(&shared.worker_id, claims, queue.now());
    let released = with_patience(shared.clock(), "release", &patience, || true, release).unwrap_or_else(|e| {
        // Not released: their leases expire and the reaper of any worker reclaims them.
        tracing::warn!(error = %e, jobs = claims.len(), "releasing held jobs failed");
        0
    });
    for &claim in claims {
        shared.held.remove(claim);
    }
    queue.notify_committed();
    released
}
