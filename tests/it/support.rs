//! What the engine tests share: backends, a side-effect ledger, store wrappers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_jobs::store::{
    Checkpoint, ClaimRequest, ClaimedJob, Enqueued, JobFilter, JobId, JobRecord, NewJob, Reclaimed, StatusCount, Store,
    StoreError, Timestamp, Write, WriteOutcome,
};
use durable_jobs::{JobContext, JobInfo, Queue};
use parking_lot::Mutex;

/// A storage backend the engine tests run on.
pub trait Backend {
    /// A handle on this test's storage; every call opens the same storage (as another process
    /// would).
    fn store(&self) -> Box<dyn Store>;

    /// A queue on a new handle.
    fn queue(&self) -> Queue {
        Queue::new(self.store())
    }
}

pub struct Memory(durable_jobs::MemoryStore);

impl Memory {
    pub fn new() -> Self {
        Memory(durable_jobs::MemoryStore::new())
    }
}

impl Backend for Memory {
    fn store(&self) -> Box<dyn Store> {
        Box::new(self.0.clone())
    }
}

/// Every handle opens the file again, as another process would.
#[cfg(feature = "sqlite")]
pub struct Sqlite(tempfile::TempDir);

#[cfg(feature = "sqlite")]
impl Sqlite {
    pub fn new() -> Self {
        Sqlite(tempfile::tempdir().expect("tempdir"))
    }
}

#[cfg(feature = "sqlite")]
impl Backend for Sqlite {
    fn store(&self) -> Box<dyn Store> {
        Box::new(durable_jobs::sqlite::SqliteStore::open(self.0.path().join("jobs.db")).expect("open sqlite"))
    }
}

/// One process may open a sled directory, so every handle shares one store.
#[cfg(feature = "sled")]
pub struct Sled(Arc<durable_jobs::sled::SledStore>, #[allow(dead_code)] tempfile::TempDir);

#[cfg(feature = "sled")]
impl Sled {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = durable_jobs::sled::SledStore::open(dir.path().join("jobs")).expect("open sled");
        Sled(Arc::new(store), dir)
    }
}

#[cfg(feature = "sled")]
impl Backend for Sled {
    fn store(&self) -> Box<dyn Store> {
        Box::new(self.0.clone())
    }
}

/// Expands each listed `fn name(db: &dyn Backend)` into one `#[test]` per enabled backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[test] fn $name() { super::$name(&$crate::support::Memory::new()); } )*
        }
        #[cfg(feature = "sqlite")]
        mod sqlite {
            $( #[test] fn $name() { super::$name(&$crate::support::Sqlite::new()); } )*
        }
        #[cfg(feature = "sled")]
        mod sled {
            $( #[test] fn $name() { super::$name(&$crate::support::Sled::new()); } )*
        }
    };
}

/// Side effects recorded by the tests' own handlers, independent of the library's bookkeeping.
#[derive(Clone, Default)]
pub struct Ledger(Arc<Mutex<Vec<String>>>);

impl Ledger {
    pub fn record(&self, entry: impl Into<String>) {
        self.0.lock().push(entry.into());
    }

    pub fn count(&self, entry: &str) -> usize {
        self.0.lock().iter().filter(|e| *e == entry).count()
    }

    pub fn entries(&self) -> Vec<String> {
        self.0.lock().clone()
    }

    /// Waits until `entry` has been recorded `n` times; panics after 20 s.
    pub fn wait_for(&self, entry: &str, n: usize) {
        let start = Instant::now();
        while self.count(entry) < n {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "waited 20 s for {n} x {entry:?}; ledger: {:?}",
                self.entries()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The time a test waits for jobs to finish before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Runs one worker thread until job `id` is finished, and returns the job.
pub fn finish(queue: &Queue, id: JobId) -> JobInfo {
    let worker = queue.worker().concurrency(1).start().unwrap();
    let info = queue.wait(id, PATIENCE).unwrap();
    worker.shutdown();
    info
}

/// Registers `name` as a handler that records its string argument.
pub fn register_recorder(queue: &Queue, name: &str, ledger: &Ledger) {
    let l = ledger.clone();
    queue
        .register(name, move |_: &JobContext, tag: String| -> Result<(), std::io::Error> {
            l.record(tag);
            Ok(())
        })
        .unwrap();
}

/// A store wrapper that counts calls per method and can drop lease renewals (a stalled
/// worker whose heartbeat stopped).
#[derive(Debug)]
pub struct Spy {
    inner: Box<dyn Store>,
    calls: Mutex<HashMap<&'static str, usize>>,
    pub skip_renewals: bool,
    total: AtomicUsize,
}

impl Spy {
    pub fn new(inner: Box<dyn Store>) -> Self {
        Spy { inner, calls: Mutex::new(HashMap::new()), skip_renewals: false, total: AtomicUsize::new(0) }
    }

    pub fn total_calls(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    fn hit(&self, method: &'static str) {
        *self.calls.lock().entry(method).or_default() += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
    }
}

impl Store for Spy {
    fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError> {
        self.hit("enqueue");
        self.inner.enqueue(jobs)
    }
    fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        self.hit("claim");
        self.inner.claim(req)
    }
    fn commit(&self, worker: &str, now: Timestamp, writes: &[Write]) -> Result<Vec<WriteOutcome>, StoreError> {
        self.hit("commit");
        self.inner.commit(worker, now, writes)
    }
    fn renew(&self, worker: &str, jobs: &[JobId], lease_until: Timestamp) -> Result<Vec<JobId>, StoreError> {
        self.hit("renew");
        if self.skip_renewals {
            return Ok(Vec::new());
        }
        self.inner.renew(worker, jobs, lease_until)
    }
    fn release(&self, worker: &str, jobs: &[JobId], now: Timestamp) -> Result<usize, StoreError> {
        self.hit("release");
        self.inner.release(worker, jobs, now)
    }
    fn reclaim_expired(&self, now: Timestamp) -> Result<Reclaimed, StoreError> {
        self.hit("reclaim_expired");
        self.inner.reclaim_expired(now)
    }
    fn wake_due(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.hit("wake_due");
        self.inner.wake_due(now)
    }
    fn cancel(&self, job: JobId, now: Timestamp) -> Result<bool, StoreError> {
        self.hit("cancel");
        self.inner.cancel(job, now)
    }
    fn requeue(&self, job: JobId, now: Timestamp) -> Result<bool, StoreError> {
        self.hit("requeue");
        self.inner.requeue(job, now)
    }
    fn checkpoints(&self, job: JobId) -> Result<Vec<Checkpoint>, StoreError> {
        self.hit("checkpoints");
        self.inner.checkpoints(job)
    }
    fn get(&self, job: JobId) -> Result<Option<JobRecord>, StoreError> {
        self.hit("get");
        self.inner.get(job)
    }
    fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        self.hit("list");
        self.inner.list(filter)
    }
    fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        self.hit("counts");
        self.inner.counts()
    }
}
