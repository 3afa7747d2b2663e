//! How a `SqliteStore` is opened.

use std::time::Duration;

/// What survives a crash, traded against commit speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous = FULL`: every commit is fsynced before it is acknowledged. Nothing
    /// acknowledged is lost on a process crash or a power loss. The default.
    #[default]
    Full,
    /// `synchronous = NORMAL`: the WAL is fsynced only at checkpoints. A process crash loses
    /// nothing; a power loss may lose the last commits (never in the middle: what survives is a
    /// prefix) and never corrupts the database.
    Normal,
}

impl Durability {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// Settings for [`SqliteStore::open_with`](crate::SqliteStore::open_with).
///
/// ```
/// use std::time::Duration;
/// use durable_jobs_sqlite::{Durability, SqliteOptions};
///
/// let options = SqliteOptions::new().durability(Durability::Normal).busy_timeout(Duration::from_secs(10));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    pub(crate) durability: Durability,
    pub(crate) readers: usize,
    pub(crate) busy_timeout: Duration,
    pub(crate) max_size: Option<u64>,
    pub(crate) check_on_open: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Full,
            readers: 4,
            busy_timeout: Duration::from_secs(10),
            max_size: None,
            check_on_open: false,
        }
    }
}

impl SqliteOptions {
    /// The defaults: [`Durability::Full`], 4 reader connections, a 10 s busy timeout.
    pub fn new() -> Self {
        SqliteOptions::default()
    }

    /// What survives a crash. Default [`Durability::Full`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How many read-only connections serve inspection and checkpoint reads (at least 1).
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers.max(1);
        self
    }

    /// How long a write waits for another process's write lock before it fails as busy.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// The largest the database file may grow, in bytes (rounded down to whole pages). A write
    /// that needs more fails with [`StoreErrorKind::Full`](durable_jobs_store::StoreErrorKind::Full)
    /// and changes nothing; it may be retried once space is freed or the limit raised (reopen).
    /// Writes that add work (enqueues, signals) stop a small reserve short of the limit (1/64
    /// of it, at least 8 and at most 4096 pages), so that the jobs a full database holds can
    /// still be claimed, run and finished.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// Whether to run SQLite's `quick_check` on a read-only connection before opening for
    /// writes (default off: it reads the whole file). A damaged file is then refused untouched
    /// instead of failing on the first read of a damaged page.
    pub fn check_on_open(mut self, check: bool) -> Self {
        self.check_on_open = check;
        self
    }
}
