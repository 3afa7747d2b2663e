//! What the engine tests share: backends, a side-effect ledger, helpers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_jobs::store::{JobId, Store};
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

/// Polls `done` in real time until it holds; panics after [`PATIENCE`] naming `what`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Everything logged by any test of this binary so far (the first call installs a global
/// subscriber writing here), for tests of what the library logs.
pub fn logs() -> String {
    static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    let buffer = LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = LogWriter(buffer.clone());
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    });
    String::from_utf8_lossy(&buffer.lock()).into_owned()
}

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
