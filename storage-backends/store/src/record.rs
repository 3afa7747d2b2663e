//! The values that cross the [`Store`](crate::Store) boundary.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A job's identifier, assigned by the store at enqueue. Never reused by a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A point in time as whole microseconds since the Unix epoch (UTC).
///
/// Stores compare and order timestamps but never read a clock: every "now" is passed in by the
/// caller, so time can be controlled in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current system time.
    pub fn now() -> Self {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// Converts a `SystemTime`, saturating at the representable range.
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |m| -m)),
        }
    }

    /// Converts back to a `SystemTime` (clamped to what the platform can represent).
    pub fn to_system_time(self) -> SystemTime {
        let magnitude = Duration::from_micros(self.0.unsigned_abs());
        let converted = if self.0 >= 0 { UNIX_EPOCH.checked_add(magnitude) } else { UNIX_EPOCH.checked_sub(magnitude) };
        // Every platform represents ±2^31 s around the epoch.
        let limit = Duration::from_secs(1 << 31);
        converted.unwrap_or_else(|| if self.0 >= 0 { UNIX_EPOCH + limit } else { UNIX_EPOCH - limit })
    }

    /// `self + d`, or `None` if the result does not fit.
    pub fn checked_add(self, d: Duration) -> Option<Self> {
        let micros = i64::try_from(d.as_micros()).ok()?;
        self.0.checked_add(micros).map(Timestamp)
    }

    /// `self + d`, saturating at the largest timestamp.
    pub fn saturating_add(self, d: Duration) -> Self {
        self.checked_add(d).unwrap_or(Timestamp(i64::MAX))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0).max(0).unsigned_abs())
    }
}

/// Where a job is in its life.
///
/// `Pending → Running → Completed | Failed | Cancelled`, plus `Waiting` (a suspended workflow)
/// and `Paused`. A job is *live* while pending, running, waiting or paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum JobStatus {
    /// Ready to run at its `run_at` time.
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
    pub const ALL: [JobStatus; 7] = [
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

/// A job to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The queue it is claimed from.
    pub queue: String,
    /// The registered handler name.
    pub name: String,
    /// The JSON-encoded arguments.
    pub args: Vec<u8>,
    /// Higher runs first.
    pub priority: i32,
    /// Not claimed before this time.
    pub run_at: Timestamp,
    /// Total attempts allowed, at least 1.
    pub max_attempts: u32,
    /// At most one live job holds a given key.
    pub unique_key: Option<String>,
    /// How long one attempt may run before it is told to stop.
    pub timeout: Option<Duration>,
    /// The backoff between attempts, if not the engine's default.
    pub retry_policy: Option<RetryPolicy>,
    /// When it was enqueued.
    pub created_at: Timestamp,
}

/// What [`Store::enqueue`](crate::Store::enqueue) did with one [`NewJob`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Inserted under a new id.
    New(JobId),
    /// Not inserted: a live job already holds the unique key.
    Duplicate(JobId),
}

impl Enqueued {
    /// The new job's id, or the id of the live job holding the key.
    pub fn id(self) -> JobId {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// A request to claim ready jobs for one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The worker incarnation that will hold the leases.
    pub worker: String,
    /// Claim only from these queues.
    pub queues: Vec<String>,
    /// Claim only jobs with these handler names.
    pub names: Vec<String>,
    /// Claim at most this many jobs.
    pub limit: usize,
    /// Jobs with `run_at <= now` are ready.
    pub now: Timestamp,
    /// The lease written on every claimed job.
    pub lease_until: Timestamp,
}

/// A job handed to a worker by [`Store::claim`](crate::Store::claim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its handler name.
    pub name: String,
    /// JSON-encoded arguments.
    pub args: Vec<u8>,
    /// This attempt's number, starting at 1.
    pub attempt: u32,
    /// Total attempts allowed.
    pub max_attempts: u32,
    /// Its priority.
    pub priority: i32,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
    /// Backoff override.
    pub retry_policy: Option<RetryPolicy>,
    /// Whether the job has checkpoints (an earlier run recorded steps). `false` means it has
    /// none, so a worker need not read them.
    pub resumed: bool,
}

/// A checkpoint: the recorded outcome of one durable step of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The step's position in the job's execution, from 0.
    pub index: u32,
    /// The step's name.
    pub name: String,
    /// The JSON-encoded value, or a permanent error message.
    pub outcome: Result<Vec<u8>, String>,
}

/// A write about a running job, applied by [`Store::commit`](crate::Store::commit) only while
/// the committing worker still holds the job's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Insert or replace the checkpoint `(job, checkpoint.index)`. The job keeps running.
    Checkpoint {
        /// The job.
        job: JobId,
        /// The checkpoint.
        checkpoint: Checkpoint,
    },
    /// The job succeeded: status `Completed`, result stored, lease cleared.
    Complete {
        /// The job.
        job: JobId,
        /// JSON-encoded result.
        result: Vec<u8>,
    },
    /// The attempt failed and another is allowed: status `Pending` at `run_at`, error recorded.
    Retry {
        /// The job.
        job: JobId,
        /// What went wrong.
        error: String,
        /// When the next attempt may start.
        run_at: Timestamp,
    },
    /// The job failed for good: status `Failed`, error recorded.
    Fail {
        /// The job.
        job: JobId,
        /// What went wrong.
        error: String,
    },
    /// The job suspends itself: status `Waiting`, woken at `wake_at` (or by an event if `None`).
    Suspend {
        /// The job.
        job: JobId,
        /// When [`Store::wake_due`](crate::Store::wake_due) makes it pending again.
        wake_at: Option<Timestamp>,
    },
}

impl Write {
    /// The job this write is about.
    pub fn job(&self) -> JobId {
        match self {
            Write::Checkpoint { job, .. }
            | Write::Complete { job, .. }
            | Write::Retry { job, .. }
            | Write::Fail { job, .. }
            | Write::Suspend { job, .. } => *job,
        }
    }
}

/// What happened to one [`Write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The write is committed.
    Applied,
    /// Refused: the job is not running under this worker's lease (any more).
    LeaseLost,
}

/// Everything a store knows about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Attempts started (and not released), 0 before the first claim.
    pub attempt: u32,
    /// Total attempts allowed.
    pub max_attempts: u32,
    /// The unique key, if any.
    pub unique_key: Option<String>,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
    /// Backoff override.
    pub retry_policy: Option<RetryPolicy>,
    /// The worker holding the lease while running.
    pub locked_by: Option<String>,
    /// The lease expiry while running.
    pub lease_until: Option<Timestamp>,
    /// When a waiting job becomes pending again.
    pub wake_at: Option<Timestamp>,
    /// The last failure message.
    pub last_error: Option<String>,
    /// JSON-encoded result once completed.
    pub result: Option<Vec<u8>>,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When its latest attempt started.
    pub started_at: Option<Timestamp>,
    /// When it reached a terminal status.
    pub finished_at: Option<Timestamp>,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// Which jobs [`Store::list`](crate::Store::list) returns, in ascending id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs in this queue.
    pub queue: Option<String>,
    /// Only jobs with this handler name.
    pub name: Option<String>,
    /// At most this many.
    pub limit: usize,
    /// Skip this many matches first.
    pub offset: usize,
}

impl Default for JobFilter {
    fn default() -> Self {
        JobFilter { status: None, queue: None, name: None, limit: 100, offset: 0 }
    }
}

impl JobFilter {
    /// Every job, 100 at a time.
    pub fn new() -> Self {
        JobFilter::default()
    }

    /// Only jobs in `status`.
    pub fn status(mut self, status: JobStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only jobs in `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Only jobs named `name`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// At most `limit` jobs.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Skip the first `offset` matches.
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    /// Whether `job` matches the filter's conditions (ignoring limit and offset).
    pub fn matches(&self, job: &JobRecord) -> bool {
        self.status.is_none_or(|s| s == job.status)
            && self.queue.as_ref().is_none_or(|q| *q == job.queue)
            && self.name.as_ref().is_none_or(|n| *n == job.name)
    }
}

/// The number of jobs in one queue with one status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusCount {
    /// The queue.
    pub queue: String,
    /// The status.
    pub status: JobStatus,
    /// How many jobs.
    pub count: u64,
}

/// What [`Store::reclaim_expired`](crate::Store::reclaim_expired) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Returned to `Pending` for another attempt.
    pub requeued: Vec<JobId>,
    /// Failed for good: the lost attempt was their last.
    pub failed: Vec<JobId>,
}

impl Reclaimed {
    /// Whether nothing was reclaimed.
    pub fn is_empty(&self) -> bool {
        self.requeued.is_empty() && self.failed.is_empty()
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
    }

    #[test]
    fn timestamp_round_trips_and_saturates() {
        let now = SystemTime::now();
        let t = Timestamp::from_system_time(now);
        let back = t.to_system_time();
        let diff = now.duration_since(back).unwrap_or_default();
        assert!(diff < Duration::from_micros(1));
        assert_eq!(Timestamp(i64::MAX - 1).checked_add(Duration::from_secs(1)), None);
        assert_eq!(Timestamp(5).duration_since(Timestamp(9)), Duration::ZERO);
        assert_eq!(Timestamp(-3).to_system_time(), UNIX_EPOCH - Duration::from_micros(3));
    }
}
