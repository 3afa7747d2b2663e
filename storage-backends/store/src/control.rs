//! Operator control of jobs and queues: pausing, retention, and the outcomes of these calls.

use crate::{Claim, JobId, JobStatus, Timestamp};

/// What [`Store::pause`](crate::Store::pause) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PauseOutcome {
    /// The job was waiting to run (scheduled, pending or waiting) and is paused now.
    Paused,
    /// The job was paused already.
    AlreadyPaused,
    /// The job is running: a running job is not paused (cancel it, or pause its queue).
    Running,
    /// The job has finished.
    Finished(JobStatus),
    /// No job has this id.
    NotFound,
}

/// What [`Store::resume`](crate::Store::resume) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResumeOutcome {
    /// The job was paused and is back in this status (scheduled, pending or waiting).
    Resumed(JobStatus),
    /// The job is not paused (it is in this status).
    NotPaused(JobStatus),
    /// No job has this id.
    NotFound,
}

/// What [`Store::renew`](crate::Store::renew) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Renewal {
    /// Runs that no longer hold their job (reclaimed, finished, released, claimed again): not
    /// renewed; their holder must stop writing.
    pub lost: Vec<Claim>,
    /// Runs renewed whose job was asked to cancel ([`Store::cancel`](crate::Store::cancel) of a
    /// running job): their handler should stop.
    pub cancelled: Vec<Claim>,
}

impl Renewal {
    /// Lost and cancelled runs.
    pub fn new(lost: Vec<Claim>, cancelled: Vec<Claim>) -> Self {
        Renewal { lost, cancelled }
    }
}

/// Which finished jobs [`Store::purge`](crate::Store::purge) deletes: those in `status` that
/// finished before `finished_before`, oldest first, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeRequest {
    /// A terminal status: completed, failed or cancelled.
    pub status: JobStatus,
    /// Only jobs whose `finished_at` is before this.
    pub finished_before: Timestamp,
    /// At most this many jobs (one short transaction).
    pub limit: usize,
}

impl PurgeRequest {
    /// Deletes at most `limit` jobs in `status` that finished before `finished_before`.
    pub fn new(status: JobStatus, finished_before: Timestamp, limit: usize) -> Self {
        PurgeRequest { status, finished_before, limit }
    }
}

/// What [`Store::delete`](crate::Store::delete) did with one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeleteOutcome {
    /// The job, its checkpoints and its signals are deleted.
    Deleted,
    /// No job has this id.
    NotFound,
    /// The job has not finished (it is in this live status): kept.
    NotFinished(JobStatus),
    /// The job is a child whose parent has not finished: kept, its parent may still read it.
    ParentLive(JobId),
}
