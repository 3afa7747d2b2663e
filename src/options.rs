//! Per-job options: attempts, priority, schedule, queue, uniqueness, timeout, backoff.

use std::time::{Duration, SystemTime};

use durable_jobs_store::{NewJob, RetryPolicy, Timestamp};

use crate::{names, Error};

/// The queue jobs go to unless [`JobOptions::queue`] says otherwise.
pub const DEFAULT_QUEUE: &str = "default";

/// The longest unique key, in bytes.
pub const MAX_UNIQUE_KEY_LEN: usize = 1024;

/// How a job is enqueued. Built by value; checked when the job is enqueued.
///
/// ```
/// use std::time::Duration;
/// use durable_jobs::JobOptions;
///
/// let options = JobOptions::new()
///     .retries(5)                          // 5 attempts in all
///     .priority(10)                        // before priority 0 jobs
///     .delay(Duration::from_secs(60))      // not before a minute from now
///     .queue("mail")
///     .unique("welcome-mail:42")           // at most one live job with this key
///     .timeout(Duration::from_secs(30));   // each attempt is told to stop after 30 s
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOptions {
    pub(crate) max_attempts: u32,
    pub(crate) priority: i32,
    pub(crate) schedule: Option<When>,
    pub(crate) queue: String,
    pub(crate) unique_key: Option<String>,
    pub(crate) unique_window: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) backoff: Option<RetryPolicy>,
    pub(crate) concurrency_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    Delay(Duration),
    At(SystemTime),
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            max_attempts: 3,
            priority: 0,
            schedule: None,
            queue: DEFAULT_QUEUE.to_owned(),
            unique_key: None,
            unique_window: None,
            timeout: None,
            backoff: None,
            concurrency_key: None,
        }
    }
}

impl JobOptions {
    /// The defaults: 3 attempts, priority 0, run now, queue `"default"`, not unique, no
    /// timeout, backoff 1 s · 2^attempt (±10 %) up to an hour.
    pub fn new() -> Self {
        JobOptions::default()
    }

    /// `n` attempts in all (not `n` retries after the first): `retries(1)` never retries.
    /// At least 1; `retries(0)` is refused at enqueue.
    pub fn retries(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Higher priorities are claimed first. Default 0; negative values run after.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Not claimed before `delay` from now. Replaces an earlier [`run_at`](Self::run_at).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.schedule = Some(When::Delay(delay));
        self
    }

    /// Not claimed before `at`. Replaces an earlier [`delay`](Self::delay).
    pub fn run_at(mut self, at: SystemTime) -> Self {
        self.schedule = Some(When::At(at));
        self
    }

    /// The queue to put the job in (a worker serves the queues it is given).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// At most one live (not yet completed, failed or cancelled) job holds `key`; enqueueing a
    /// second one fails with [`Error::Duplicate`] naming the first. Replaces an earlier
    /// [`unique_for`](Self::unique_for).
    pub fn unique(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self.unique_window = None;
        self
    }

    /// Idempotent enqueue: while a job holding `key` is live, or was created less than `window`
    /// ago whatever became of it, enqueueing returns that job's id and inserts nothing (as
    /// Sidekiq's `unique_for`, Oban's `unique: [period: ..]`, River's `ByPeriod`). "Enqueue
    /// these 300 once" and a cron guard ("at most once an hour") are one option each.
    /// Replaces an earlier [`unique`](Self::unique).
    ///
    /// ```
    /// use std::time::Duration;
    /// use durable_jobs::{JobContext, JobOptions, MemoryStore, Queue};
    ///
    /// let queue = Queue::new(MemoryStore::new());
    /// queue.register("invoice", |_: &JobContext, month: String| Ok::<_, std::io::Error>(month))?;
    /// let once = || JobOptions::new().unique_for("invoice:2026-11", Duration::from_secs(40 * 86_400));
    /// let first = queue.enqueue("invoice", "2026-11", once())?;
    /// assert_eq!(queue.enqueue("invoice", "2026-11", once())?, first);
    /// # Ok::<(), durable_jobs::Error>(())
    /// ```
    pub fn unique_for(mut self, key: impl Into<String>, window: Duration) -> Self {
        self.unique_key = Some(key.into());
        self.unique_window = Some(window);
        self
    }

    /// Each attempt is cancelled after `timeout`: [`JobContext::is_cancelled`] turns true and
    /// [`call`] refuses to start new steps. Cooperative: a handler that ignores it runs on.
    ///
    /// [`JobContext::is_cancelled`]: crate::JobContext::is_cancelled
    /// [`call`]: crate::call
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The wait after failed attempt `n` is `base · 2^n` (±10 % jitter), at most `max`.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = Some(RetryPolicy { base, max });
        self
    }

    /// The value limits set with `by_key` count this job under (for example the tenant it
    /// works for): at most so many running, or starting per second, per value
    /// ([`Queue::set_limit`](crate::Queue::set_limit)). 1 to 1024 bytes.
    pub fn concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = Some(key.into());
        self
    }

    /// The store record of a job with these options.
    pub(crate) fn new_job(&self, name: &str, args: Vec<u8>, now: Timestamp, run_at: Timestamp) -> NewJob {
        let mut job = NewJob::new(self.queue.clone(), name, args, now)
            .priority(self.priority)
            .run_at(run_at)
            .max_attempts(self.max_attempts);
        job.unique_key.clone_from(&self.unique_key);
        job.unique_window = self.unique_window;
        job.timeout = self.timeout;
        job.retry_policy = self.backoff;
        job.concurrency_key.clone_from(&self.concurrency_key);
        job
    }

    /// Checks every option and returns the time the job becomes ready.
    pub(crate) fn validate(&self, now: Timestamp) -> Result<Timestamp, Error> {
        let invalid = |option, reason: &str| Err(Error::InvalidOption { option, reason: reason.to_owned() });
        names::validate("queue", &self.queue)?;
        if self.max_attempts == 0 {
            return invalid("retries", "a job needs at least 1 attempt");
        }
        if let Some(key) = &self.unique_key {
            if key.is_empty() || key.len() > MAX_UNIQUE_KEY_LEN {
                return invalid("unique", "the key must be 1 to 1024 bytes long");
            }
        }
        if self.concurrency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > MAX_UNIQUE_KEY_LEN) {
            return invalid("concurrency_key", "the key must be 1 to 1024 bytes long");
        }
        if self.unique_window.is_some_and(|w| w.is_zero()) {
            return invalid("unique_for", "the window must be greater than zero");
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return invalid("timeout", "must be greater than zero");
        }
        if let Some(p) = self.backoff {
            if p.base.is_zero() || p.max < p.base {
                return invalid("backoff", "base must be greater than zero and max at least base");
            }
        }
        match self.schedule {
            None => Ok(now),
            Some(When::Delay(d)) => match now.checked_add(d) {
                Some(at) => Ok(at),
                None => invalid("delay", "the delay is too long to represent"),
            },
            Some(When::At(at)) => Ok(Timestamp::from_system_time(at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_schedule() {
        let now = Timestamp(1_000_000);
        assert_eq!(JobOptions::new().validate(now).unwrap(), now);
        let delayed = JobOptions::new().delay(Duration::from_secs(2)).validate(now).unwrap();
        assert_eq!(delayed, Timestamp(3_000_000));
        let at = std::time::UNIX_EPOCH + Duration::from_secs(9);
        assert_eq!(
            JobOptions::new().delay(Duration::from_secs(2)).run_at(at).validate(now).unwrap(),
            Timestamp(9_000_000)
        );
    }

    #[test]
    fn nonsense_is_refused_by_name() {
        let now = Timestamp(0);
        let cases = [
            (JobOptions::new().retries(0), "retries"),
            (JobOptions::new().timeout(Duration::ZERO), "timeout"),
            (JobOptions::new().unique(""), "unique"),
            (JobOptions::new().unique("k".repeat(2000)), "unique"),
            (JobOptions::new().unique_for("k", Duration::ZERO), "unique_for"),
            (JobOptions::new().concurrency_key(""), "concurrency_key"),
            (JobOptions::new().delay(Duration::MAX), "delay"),
            (JobOptions::new().backoff(Duration::ZERO, Duration::ZERO), "backoff"),
            (JobOptions::new().backoff(Duration::from_secs(2), Duration::from_secs(1)), "backoff"),
        ];
        for (options, name) in cases {
            match options.validate(now) {
                Err(Error::InvalidOption { option, .. }) => assert_eq!(option, name),
                other => panic!("{name}: expected InvalidOption, got {other:?}"),
            }
        }
        let bad_queue = JobOptions::new().queue("no spaces").validate(now);
        assert!(matches!(bad_queue, Err(Error::InvalidName { what: "queue", .. })));
    }
}
