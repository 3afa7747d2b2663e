//! Time: the clock every stored time, timer and wait of the engine goes through.

use std::fmt::Debug;
use std::sync::{Arc, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

/// The source of time for everything the engine does: stored times (run times, leases,
/// timestamps) come from [`now`](Clock::now); timers, deadlines and waits are measured with
/// [`monotonic`](Clock::monotonic) and block through [`real_wait`](Clock::real_wait).
///
/// Replace it to test clock jumps (override `now` only) or to drive the engine with virtual
/// time ([`ManualClock`]).
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;

    /// Time elapsed since a fixed origin; never goes back. Default: the operating system's
    /// monotonic clock.
    fn monotonic(&self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }

    /// How long to block, in real time, to let `remaining` of this clock's time pass; `None`
    /// blocks until a waker given to [`subscribe`](Clock::subscribe) is woken. Default:
    /// `remaining` (the clock runs in real time).
    fn real_wait(&self, remaining: Duration) -> Option<Duration> {
        Some(remaining)
    }

    /// Registers a waker to wake whenever this clock's time jumps (a virtual clock moved by
    /// hand). Default: nothing (real time needs no wake-ups).
    fn subscribe(&self, waker: Waker) {
        drop(waker);
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to: tests run hours of delays, leases and timeouts in
/// milliseconds. Waits of the engine block until [`advance`](ManualClock::advance) moves the
/// time past them. Clones share one time.
///
/// ```
/// use std::time::Duration;
/// use durable_jobs::{Clock, JobContext, JobOptions, JobStatus, ManualClock, MemoryStore, Queue};
///
/// let clock = ManualClock::new();
/// let queue = Queue::builder(MemoryStore::new()).clock(clock.clone()).build();
/// queue.register("report", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(()))?;
/// let id = queue.enqueue("report", &(), JobOptions::new().delay(Duration::from_secs(3600)))?;
/// assert_eq!(queue.run_one("default")?, None, "not due yet");
/// clock.advance(Duration::from_secs(3600));
/// assert_eq!(queue.run_one("default")?, Some(id));
/// assert_eq!(queue.job(id)?.unwrap().status, JobStatus::Completed);
/// # Ok::<(), durable_jobs::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<Manual>>,
}

#[derive(Debug)]
struct Manual {
    wall: SystemTime,
    elapsed: Duration,
    wakers: Vec<Waker>,
}

impl ManualClock {
    /// A clock at the current system time, standing still.
    pub fn new() -> Self {
        ManualClock::starting_at(SystemTime::now())
    }

    /// A clock at `at`, standing still.
    pub fn starting_at(at: SystemTime) -> Self {
        ManualClock { inner: Arc::new(Mutex::new(Manual { wall: at, elapsed: Duration::ZERO, wakers: Vec::new() })) }
    }

    /// Moves time forward by `by` and wakes every wait of the engine to look at it.
    pub fn advance(&self, by: Duration) {
        let wakers = {
            let mut m = self.inner.lock();
            m.wall += by;
            m.elapsed += by;
            m.wakers.clone()
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.inner.lock().wall
    }

    fn monotonic(&self) -> Duration {
        self.inner.lock().elapsed
    }

    fn real_wait(&self, _remaining: Duration) -> Option<Duration> {
        None
    }

    fn subscribe(&self, waker: Waker) {
        let mut m = self.inner.lock();
        if !m.wakers.iter().any(|w| w.will_wake(&waker)) {
            m.wakers.push(waker);
        }
    }
}
