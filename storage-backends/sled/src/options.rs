//! How a `SledStore` is opened.

use std::time::Duration;

use crate::open::DEFAULT_OPEN_TIMEOUT;

/// Settings for [`SledStore::open_with`](crate::SledStore::open_with).
///
/// ```
/// use durable_jobs_sled::SledOptions;
/// let options = SledOptions::new().cache_capacity(32 << 20).verify_on_open(false);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SledOptions {
    pub(crate) cache_capacity: u64,
    pub(crate) verify_on_open: bool,
    pub(crate) open_timeout: Duration,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions { cache_capacity: 64 << 20, verify_on_open: true, open_timeout: DEFAULT_OPEN_TIMEOUT }
    }
}

impl SledOptions {
    /// The defaults: a 64 MiB cache, verification on open, a 60 s open limit.
    pub fn new() -> Self {
        SledOptions::default()
    }

    /// The most memory sled's page cache may use, in bytes.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// Whether an existing database is first opened as a throwaway copy (default on). This is
    /// what guarantees that a damaged database is reported and left untouched; it costs a copy
    /// of the database files per open. Turn it off only for databases too large to copy.
    pub fn verify_on_open(mut self, verify: bool) -> Self {
        self.verify_on_open = verify;
        self
    }

    /// How long opening (or verifying) may take before the database counts as damaged.
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }
}
