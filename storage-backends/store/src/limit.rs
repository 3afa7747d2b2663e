//! Limits on how many jobs of a queue or name start per second and run at once, shared by
//! every process using the storage.

use crate::{JobRecord, Timestamp};

/// What a [`Limit`] applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum LimitScope {
    /// Every job of this queue.
    Queue(String),
    /// Every job with this handler name.
    Name(String),
}

impl LimitScope {
    /// Whether `job` is counted by this scope.
    pub fn covers(&self, job: &JobRecord) -> bool {
        match self {
            LimitScope::Queue(q) => *q == job.queue,
            LimitScope::Name(n) => *n == job.name,
        }
    }
}

/// A limit on claims ([`Store::set_limit`](crate::Store::set_limit)): a ready job is not claimed
/// while a limit of its queue or name holds it back (it is not charged an attempt; it waits).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limit {
    /// The jobs it counts.
    pub scope: LimitScope,
    /// At most this many `Running` at once (claimed and not ended, prefetched ones included).
    pub max_running: Option<u32>,
    /// At most this many claims in each one-second window (windows aligned on whole seconds
    /// of the store's clock: across a window boundary up to twice as many may start within a
    /// second, as with Sidekiq's bucket limiter).
    pub per_second: Option<u32>,
    /// Count each value of the jobs' `concurrency_key` on its own (jobs without a key share
    /// one count), instead of the whole scope together.
    pub by_key: bool,
}

impl Limit {
    /// No limit yet on `scope`: set [`max_running`](Self::max_running) or
    /// [`per_second`](Self::per_second).
    pub fn new(scope: LimitScope) -> Self {
        Limit { scope, max_running: None, per_second: None, by_key: false }
    }

    /// No limit yet on queue `queue`.
    pub fn queue(queue: impl Into<String>) -> Self {
        Limit::new(LimitScope::Queue(queue.into()))
    }

    /// No limit yet on the jobs of handler `name`.
    pub fn name(name: impl Into<String>) -> Self {
        Limit::new(LimitScope::Name(name.into()))
    }

    /// Sets [`max_running`](Self::max_running).
    pub fn max_running(mut self, jobs: u32) -> Self {
        self.max_running = Some(jobs);
        self
    }

    /// Sets [`per_second`](Self::per_second).
    pub fn per_second(mut self, starts: u32) -> Self {
        self.per_second = Some(starts);
        self
    }

    /// Sets [`by_key`](Self::by_key).
    pub fn by_key(mut self, yes: bool) -> Self {
        self.by_key = yes;
        self
    }

    /// The key `job` is counted under by this limit ("" for the whole scope, or a job with no
    /// key).
    pub fn key_of<'a>(&self, job: &'a JobRecord) -> &'a str {
        if self.by_key {
            job.concurrency_key.as_deref().unwrap_or("")
        } else {
            ""
        }
    }
}

/// The one-second window `now` falls in (whole seconds since the epoch).
pub fn window_of(now: Timestamp) -> i64 {
    now.0.div_euclid(1_000_000)
}

/// The start of the window after `window`.
pub fn window_end(window: i64) -> Timestamp {
    Timestamp(window.saturating_add(1).saturating_mul(1_000_000))
}
