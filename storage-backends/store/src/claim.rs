//! Claims: leasing ready jobs to a worker, the token that fences each run, and recovering the
//! jobs of workers that died.

use std::fmt;
use std::time::Duration;

use crate::{ChildOf, JobId, RetryPolicy, Timestamp};

/// The fencing token of one claim of a job: 1 for its first claim, and one more for every
/// claim after, never reused (a release does not take it back). Every write about a run names
/// its token, so a run that lost its lease cannot write, even if the same worker holds the job
/// again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ClaimToken(pub u64);

impl fmt::Display for ClaimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One run of a job: the job and the token of the claim that started the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Claim {
    /// The job.
    pub job: JobId,
    /// The claim's fencing token.
    pub token: ClaimToken,
}

impl Claim {
    /// The run of `job` started by the claim with `token`.
    pub fn new(job: JobId, token: ClaimToken) -> Self {
        Claim { job, token }
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.job, self.token)
    }
}

/// A request to claim ready jobs for one worker.
///
/// ```
/// use std::time::Duration;
/// use durable_jobs_store::{ClaimRequest, Timestamp};
///
/// let now = Timestamp::now();
/// let req = ClaimRequest::new("worker-1", now, now.saturating_add(Duration::from_secs(30)))
///     .queues(["default"])
///     .names(["send-email"])
///     .limit(10);
/// assert_eq!(req.limit, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimRequest {
    /// The worker incarnation that will hold the leases.
    pub worker: String,
    /// Claim only from these queues.
    pub queues: Vec<String>,
    /// Claim only jobs with these handler names.
    pub names: Vec<String>,
    /// Claim at most this many jobs.
    pub limit: usize,
    /// Jobs due at or before `now` are ready.
    pub now: Timestamp,
    /// The lease written on every claimed job.
    pub lease_until: Timestamp,
    /// Never claim these jobs (their previous run still executes in the claiming process).
    pub exclude: Vec<JobId>,
}

impl ClaimRequest {
    /// A claim by `worker` at `now` with leases until `lease_until`, from queue `default`, of
    /// no names yet, at most one job.
    pub fn new(worker: impl Into<String>, now: Timestamp, lease_until: Timestamp) -> Self {
        ClaimRequest {
            worker: worker.into(),
            queues: vec!["default".to_owned()],
            names: Vec::new(),
            limit: 1,
            now,
            lease_until,
            exclude: Vec::new(),
        }
    }

    /// Sets the queues to claim from.
    pub fn queues<I: IntoIterator<Item = S>, S: Into<String>>(mut self, queues: I) -> Self {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the handler names that may be claimed.
    pub fn names<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the most jobs to claim.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Sets jobs that must not be claimed.
    pub fn exclude(mut self, jobs: Vec<JobId>) -> Self {
        self.exclude = jobs;
        self
    }
}

/// A job handed to a worker by [`Store::claim`](crate::Store::claim).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimedJob {
    /// The job.
    pub id: JobId,
    /// This claim's fencing token.
    pub token: ClaimToken,
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
    /// Whether the worker must record the handler's start ([`Write::start`](crate::Write::start))
    /// and see it applied before running the handler: an earlier run was lost before its start
    /// was recorded.
    pub confirm_start: bool,
    /// The parent whose step started it, for a child job (its end may wake the parent).
    pub parent: Option<ChildOf>,
    /// When it was due (its `run_at` when claimed): the time it waited in the queue is the
    /// claim's `now` minus this.
    pub run_at: Timestamp,
}

impl ClaimedJob {
    /// Claim `token` of job `id`, with every other field at its initial value (attempt 1 of 1,
    /// priority 0, nothing else set): for backends rebuilding a claimed job field by field.
    pub fn new(id: JobId, token: ClaimToken, queue: impl Into<String>, name: impl Into<String>, args: Vec<u8>) -> Self {
        ClaimedJob {
            id,
            token,
            queue: queue.into(),
            name: name.into(),
            args,
            attempt: 1,
            max_attempts: 1,
            priority: 0,
            timeout: None,
            retry_policy: None,
            resumed: false,
            confirm_start: false,
            parent: None,
            run_at: Timestamp(0),
        }
    }

    /// The run this claim started.
    pub fn claim(&self) -> Claim {
        Claim { job: self.id, token: self.token }
    }
}

/// What [`Store::claim`](crate::Store::claim) returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claimed {
    /// The claimed jobs, in claim order.
    pub jobs: Vec<ClaimedJob>,
    /// When fewer than the limit were claimed: the earliest time a job of the requested queues
    /// becomes due (a scheduled job's `run_at`, a waiting job's `wake_at`), or the end of the
    /// current one-second window if a rate limit held a job back, if any. `None` when the limit
    /// was reached.
    pub next_due: Option<Timestamp>,
}

impl Claimed {
    /// A claim result.
    pub fn new(jobs: Vec<ClaimedJob>, next_due: Option<Timestamp>) -> Self {
        Claimed { jobs, next_due }
    }
}

/// A request to recover the jobs of workers that died or stalled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReclaimRequest {
    /// Running jobs whose `lease_until` is before `now` are recovered.
    pub now: Timestamp,
    /// Running jobs held by these workers are recovered whatever their lease: the workers are
    /// known to be gone.
    pub dead_workers: Vec<String>,
    /// Recover at most this many jobs (in order of lease expiry, then id).
    pub limit: usize,
}

impl ReclaimRequest {
    /// Recovers at most `limit` jobs whose lease expired before `now`.
    pub fn new(now: Timestamp, limit: usize) -> Self {
        ReclaimRequest { now, dead_workers: Vec::new(), limit }
    }

    /// Also recovers every running job of these workers.
    pub fn dead_workers(mut self, workers: Vec<String>) -> Self {
        self.dead_workers = workers;
        self
    }
}

/// What [`Store::reclaim`](crate::Store::reclaim) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reclaimed {
    /// Charged for the lost attempt (its start was recorded) and pending for another one.
    pub requeued: Vec<JobId>,
    /// Charged for the lost attempt, which was their last: failed for good.
    pub failed: Vec<JobId>,
    /// Not charged (the run's start was not recorded): pending with the attempt given back.
    pub released: Vec<JobId>,
    /// A cancel was asked for while they ran: cancelled.
    pub cancelled: Vec<JobId>,
}

impl Reclaimed {
    /// Whether nothing was reclaimed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many jobs were reclaimed.
    pub fn len(&self) -> usize {
        self.requeued.len() + self.failed.len() + self.released.len() + self.cancelled.len()
    }
}
