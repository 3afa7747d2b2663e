//! Jobs: their identity, status, the record a store keeps, and what an enqueue inserts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::{ChildOf, ChildrenWait, ClaimToken, Timestamp};

/// A job's identifier, assigned by the store at enqueue. Never reused by a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a job is in its life; `STATE_MACHINE.md` beside this crate's sources has every
/// transition.
///
/// `Scheduled → Pending → Running → Completed | Failed | Cancelled`, plus `Waiting` (a
/// suspended workflow) and `Paused`. A job is *live* until it is completed, failed or cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum JobStatus {
    /// Not due yet: its `run_at` is in the future (a delayed job, or a retry backing off). It
    /// becomes `Pending` when due, at the next claim of its queue.
    Scheduled,
    /// Ready to run.
    Pending,
    /// Claimed by a worker holding a lease.
    Running,
    /// Suspended until a wake-up time or an event.
    Waiting,
    /// Held back from claiming until resumed.
    Paused,
    /// Finished successfully; the result is stored.
    Completed,
    /// Finished unsuccessfully after its last attempt or a permanent error.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 8] = [
        JobStatus::Scheduled,
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Waiting,
        JobStatus::Paused,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The lowercase name used in storage and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Scheduled => "scheduled",
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Waiting => "waiting",
            JobStatus::Paused => "paused",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the job will never run again by itself.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled)
    }

    /// Whether a unique key held by a job in this status blocks another job with the same key.
    pub fn is_live(self) -> bool {
        !self.is_terminal()
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// How a failed job waits before its next attempt: `base · 2^attempt`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryPolicy {
    /// The delay unit: the first retry waits `2 · base`.
    pub base: Duration,
    /// The longest wait between two attempts.
    pub max: Duration,
}

/// A job to insert, built with [`NewJob::new`] and its setters.
///
/// ```
/// use std::time::Duration;
/// use durable_jobs_store::{NewJob, Timestamp};
///
/// let now = Timestamp::now();
/// let job = NewJob::new("mail", "send-welcome", br#"{"user":42}"#.to_vec(), now)
///     .priority(5)
///     .run_at(now.saturating_add(Duration::from_secs(60)))
///     .unique_key("welcome:42");
/// assert_eq!(job.max_attempts, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewJob {
    /// The queue it is claimed from.
    pub queue: String,
    /// The registered handler name.
    pub name: String,
    /// The JSON-encoded arguments.
    pub args: Vec<u8>,
    /// Higher runs first.
    pub priority: i32,
    /// Not claimed before this time; after `created_at` makes the job `Scheduled`.
    pub run_at: Timestamp,
    /// Total attempts allowed, at least 1.
    pub max_attempts: u32,
    /// At most one live job holds a given key.
    pub unique_key: Option<String>,
    /// With a unique key: the key also covers jobs created less than this long before this one,
    /// whatever their status (idempotent enqueue).
    pub unique_window: Option<Duration>,
    /// How long one attempt may run before it is told to stop.
    pub timeout: Option<Duration>,
    /// The backoff between attempts, if not the engine's default.
    pub retry_policy: Option<RetryPolicy>,
    /// The parent whose step started it, for a child job.
    pub parent: Option<ChildOf>,
    /// The value its queue's or name's keyed limits count it under ([`Limit::by_key`](crate::Limit::by_key)).
    pub concurrency_key: Option<String>,
    /// When it was enqueued.
    pub created_at: Timestamp,
}

impl NewJob {
    /// A job for handler `name` in `queue`, enqueued at `now` and due at once, with 3 attempts,
    /// priority 0, no unique key, timeout or backoff override.
    pub fn new(queue: impl Into<String>, name: impl Into<String>, args: Vec<u8>, now: Timestamp) -> Self {
        NewJob {
            queue: queue.into(),
            name: name.into(),
            args,
            priority: 0,
            run_at: now,
            max_attempts: 3,
            unique_key: None,
            unique_window: None,
            timeout: None,
            retry_policy: None,
            parent: None,
            concurrency_key: None,
            created_at: now,
        }
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the time the job becomes due.
    pub fn run_at(mut self, at: Timestamp) -> Self {
        self.run_at = at;
        self
    }

    /// Sets the number of attempts.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets the unique key.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Sets the window in which the unique key also covers finished jobs.
    pub fn unique_window(mut self, window: Duration) -> Self {
        self.unique_window = Some(window);
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the backoff.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = Some(policy);
        self
    }

    /// Makes it a child of `parent`'s step at `index`.
    pub fn parent(mut self, parent: JobId, index: u32) -> Self {
        self.parent = Some(ChildOf { parent, index });
        self
    }

    /// Sets [`concurrency_key`](Self::concurrency_key).
    pub fn concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = Some(key.into());
        self
    }
}

/// What [`Store::enqueue`](crate::Store::enqueue) did with one [`NewJob`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Enqueued {
    /// Inserted under a new id.
    New(JobId),
    /// Not inserted: a job holding the unique key exists (live, or inside the unique window).
    Duplicate(JobId),
}

impl Enqueued {
    /// The new job's id, or the id of the job holding the key.
    pub fn id(self) -> JobId {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// Everything a store knows about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobRecord {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its handler name.
    pub name: String,
    /// JSON-encoded arguments, exactly as enqueued.
    pub args: Vec<u8>,
    /// Current status.
    pub status: JobStatus,
    /// Its priority.
    pub priority: i32,
    /// Not claimed before this time.
    pub run_at: Timestamp,
    /// Attempts charged so far, counting a running one: a run that ended without being charged
    /// (released, suspended, lost before its start was recorded) gives its attempt back.
    pub attempt: u32,
    /// Total attempts allowed.
    pub max_attempts: u32,
    /// The unique key, if any.
    pub unique_key: Option<String>,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
    /// Backoff override.
    pub retry_policy: Option<RetryPolicy>,
    /// The fencing token of the latest claim (0 before the first).
    pub token: ClaimToken,
    /// While running: whether the run's handler start has been recorded.
    pub run_started: bool,
    /// Set once a run was lost before its start was recorded: every later run records its
    /// start before its handler runs, so that a job that kills its worker is charged.
    pub confirm_start: bool,
    /// While running: a cancel was asked for ([`Store::cancel`](crate::Store::cancel)); the run
    /// ends `Cancelled` unless it completes.
    pub cancel_requested: bool,
    /// The worker holding the lease while running.
    pub locked_by: Option<String>,
    /// The lease expiry while running.
    pub lease_until: Option<Timestamp>,
    /// When a waiting job becomes pending again.
    pub wake_at: Option<Timestamp>,
    /// The signal name a waiting job waits for, if any.
    pub wait_signal: Option<String>,
    /// The children a waiting job waits for, if any, and what they have done so far.
    pub wait_children: Option<ChildrenWait>,
    /// The parent whose step started it, for a child job.
    pub parent: Option<ChildOf>,
    /// The value keyed limits count it under.
    pub concurrency_key: Option<String>,
    /// The last failure message.
    pub last_error: Option<String>,
    /// JSON-encoded result once completed.
    pub result: Option<Vec<u8>>,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When its latest run was claimed.
    pub started_at: Option<Timestamp>,
    /// When it reached a terminal status.
    pub finished_at: Option<Timestamp>,
    /// When its status or data last changed.
    pub updated_at: Timestamp,
}

impl JobRecord {
    /// A pending job `id` created at `created_at` with every other field at its initial value
    /// (priority 0, due at creation, 1 attempt, nothing else set): for backends rebuilding a
    /// record field by field.
    pub fn new(
        id: JobId,
        queue: impl Into<String>,
        name: impl Into<String>,
        args: Vec<u8>,
        created_at: Timestamp,
    ) -> Self {
        JobRecord {
            id,
            queue: queue.into(),
            name: name.into(),
            args,
            status: JobStatus::Pending,
            priority: 0,
            run_at: created_at,
            attempt: 0,
            max_attempts: 1,
            unique_key: None,
            timeout: None,
            retry_policy: None,
            token: ClaimToken(0),
            run_started: false,
            confirm_start: false,
            cancel_requested: false,
            locked_by: None,
            lease_until: None,
            wake_at: None,
            wait_signal: None,
            wait_children: None,
            parent: None,
            concurrency_key: None,
            last_error: None,
            result: None,
            created_at,
            started_at: None,
            finished_at: None,
            updated_at: created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_its_name() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(s));
        }
        assert!("done".parse::<JobStatus>().is_err());
        assert!(JobStatus::Scheduled.is_live());
    }
}
