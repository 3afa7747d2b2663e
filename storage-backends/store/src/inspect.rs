//! Looking at jobs, the outcomes of operator actions, and what a store can do.

use crate::{JobId, JobRecord, JobStatus};

/// Which jobs [`Store::list`](crate::Store::list) returns, in ascending id order.
///
/// Page through every job with [`after`](Self::after) set to the last id seen: unlike an
/// offset, it skips nothing when jobs change status between pages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobFilter {
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs in this queue.
    pub queue: Option<String>,
    /// Only jobs with this handler name.
    pub name: Option<String>,
    /// Only children of this job.
    pub parent: Option<JobId>,
    /// Only jobs whose `last_error` contains this text (case-sensitive).
    pub error_contains: Option<String>,
    /// Only jobs with a greater id.
    pub after: Option<JobId>,
    /// At most this many.
    pub limit: usize,
    /// Skip this many matches first.
    pub offset: usize,
}

impl Default for JobFilter {
    fn default() -> Self {
        JobFilter {
            status: None,
            queue: None,
            name: None,
            parent: None,
            error_contains: None,
            after: None,
            limit: 100,
            offset: 0,
        }
    }
}

impl JobFilter {
    /// Every job, 100 at a time.
    pub fn new() -> Self {
        JobFilter::default()
    }

    /// The dead letters: jobs that failed for good (their last attempt, or a permanent error),
    /// 100 at a time. Narrow them with [`queue`](Self::queue), [`name`](Self::name) and
    /// [`error_contains`](Self::error_contains).
    pub fn dead_letters() -> Self {
        JobFilter::new().status(JobStatus::Failed)
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

    /// Only children of `parent` (jobs its workflow started).
    pub fn parent(mut self, parent: JobId) -> Self {
        self.parent = Some(parent);
        self
    }

    /// Only jobs whose last error contains `text` (case-sensitive).
    pub fn error_contains(mut self, text: impl Into<String>) -> Self {
        self.error_contains = Some(text.into());
        self
    }

    /// Only jobs with an id greater than `id` (the next page after a page ending at `id`).
    pub fn after(mut self, id: JobId) -> Self {
        self.after = Some(id);
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
            && self.parent.is_none_or(|p| job.parent.is_some_and(|c| c.parent == p))
            && self.error_contains.as_deref().is_none_or(|t| job.last_error.as_deref().is_some_and(|e| e.contains(t)))
            && self.after.is_none_or(|a| job.id > a)
    }
}

/// The number of jobs of one queue and handler name in one status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub struct StatusCount {
    /// The queue.
    pub queue: String,
    /// The handler name.
    pub name: String,
    /// The status; a scheduled job that is due counts as `Pending` (ready).
    pub status: JobStatus,
    /// How many jobs.
    pub count: u64,
    /// Of running jobs: how many have started their handler (the rest are claimed and waiting
    /// for a thread). Zero for other statuses.
    pub started: u64,
}

impl StatusCount {
    /// `count` jobs of `queue` and `name` in `status`, `started` of them started.
    pub fn new(queue: impl Into<String>, name: impl Into<String>, status: JobStatus, count: u64, started: u64) -> Self {
        StatusCount { queue: queue.into(), name: name.into(), status, count, started }
    }
}

/// What [`Store::cancel`](crate::Store::cancel) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelOutcome {
    /// The job was waiting to run and is cancelled now.
    Cancelled,
    /// No job has this id.
    NotFound,
    /// The job is running: it is asked to stop (its worker is told, at its next heartbeat from
    /// another process) and ends `Cancelled` unless it completes first. Repeating says so again.
    Requested,
    /// The job had already finished (completed, failed or cancelled).
    Finished(JobStatus),
}

/// What [`Store::requeue`](crate::Store::requeue) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequeueOutcome {
    /// The job is pending again with all its attempts.
    Requeued,
    /// No job has this id.
    NotFound,
    /// The job has not ended (it is in this live status): nothing to requeue.
    NotFinished(JobStatus),
    /// The job completed; only failed and cancelled jobs are requeued.
    Completed,
    /// Another live job holds the job's unique key.
    KeyTaken(JobId),
}

/// What a store can do, for the engine and the conformance suite to adapt to
/// ([`Store::capabilities`](crate::Store::capabilities)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
#[allow(clippy::struct_excessive_bools)] // independent yes/no facts, as object_store's
pub struct Capabilities {
    /// Several processes may use the storage at once (workers in one process must then look
    /// for work written by others, and tell dead processes from slow ones).
    pub multi_process: bool,
    /// The store tells listeners about new work (no polling needed).
    pub change_notification: bool,
    /// Times should come from the storage server's clock, not the caller's.
    pub server_clock: bool,
    /// Acknowledged writes survive a crash of the process (`false` for a store in memory).
    pub durable: bool,
}

impl Capabilities {
    /// Nothing: one process, no notification, the caller's clock, not durable.
    pub fn new() -> Self {
        Capabilities::default()
    }

    /// Sets [`multi_process`](Self::multi_process).
    pub fn multi_process(mut self, yes: bool) -> Self {
        self.multi_process = yes;
        self
    }

    /// Sets [`durable`](Self::durable).
    pub fn durable(mut self, yes: bool) -> Self {
        self.durable = yes;
        self
    }

    /// Sets [`change_notification`](Self::change_notification).
    pub fn change_notification(mut self, yes: bool) -> Self {
        self.change_notification = yes;
        self
    }

    /// Sets [`server_clock`](Self::server_clock).
    pub fn server_clock(mut self, yes: bool) -> Self {
        self.server_clock = yes;
        self
    }
}
