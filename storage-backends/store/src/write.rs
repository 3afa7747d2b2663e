//! Writes about running jobs, and the checkpoints some of them carry.

use crate::{Claim, Timestamp};

/// A checkpoint: the recorded outcome of one durable step of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checkpoint {
    /// The step's position in the job's execution, from 0.
    pub index: u32,
    /// The step's name.
    pub name: String,
    /// The JSON-encoded value, or an error message.
    pub outcome: Result<Vec<u8>, String>,
    /// For an error: whether it was retryable. A retryable error is replayed only if the
    /// workflow went on past it (a later index is recorded); otherwise the step runs again.
    pub retryable: bool,
}

impl Checkpoint {
    /// A step that returned `value` (JSON).
    pub fn value(index: u32, name: impl Into<String>, value: Vec<u8>) -> Self {
        Checkpoint { index, name: name.into(), outcome: Ok(value), retryable: false }
    }

    /// A step that failed with `message`; `retryable` says whether another attempt may succeed.
    pub fn error(index: u32, name: impl Into<String>, message: impl Into<String>, retryable: bool) -> Self {
        Checkpoint { index, name: name.into(), outcome: Err(message.into()), retryable }
    }
}

/// A write about one run of a job, applied by [`Store::commit`](crate::Store::commit) only
/// while the run holds the job's lease (status `Running`, the committing worker in
/// `locked_by`, the claim's token current).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Write {
    /// The run this write is about.
    pub claim: Claim,
    /// What to write.
    pub op: WriteOp,
}

/// What a [`Write`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteOp {
    /// The run's handler has started: a later loss of the lease charges the attempt.
    Start,
    /// Insert or replace the checkpoint `(job, checkpoint.index)`. The job keeps running.
    Checkpoint(Checkpoint),
    /// The job succeeded: status `Completed`, result stored, lease cleared.
    #[non_exhaustive]
    Complete {
        /// JSON-encoded result.
        result: Vec<u8>,
    },
    /// The attempt failed and another is allowed: `Scheduled` until `run_at` (or `Pending` if
    /// that is not after now), error recorded.
    #[non_exhaustive]
    Retry {
        /// What went wrong.
        error: String,
        /// When the next attempt may start.
        run_at: Timestamp,
    },
    /// The job failed for good: status `Failed`, error recorded.
    #[non_exhaustive]
    Fail {
        /// What went wrong.
        error: String,
    },
    /// The job suspends itself without being charged: status `Waiting`, woken at `wake_at`
    /// (or by an event if `None`), its attempt given back.
    #[non_exhaustive]
    Suspend {
        /// When the job becomes pending again.
        wake_at: Option<Timestamp>,
    },
}

impl Write {
    /// Records that the run's handler started.
    pub fn start(claim: Claim) -> Self {
        Write { claim, op: WriteOp::Start }
    }

    /// Records a checkpoint.
    pub fn checkpoint(claim: Claim, checkpoint: Checkpoint) -> Self {
        Write { claim, op: WriteOp::Checkpoint(checkpoint) }
    }

    /// Completes the job with `result` (JSON).
    pub fn complete(claim: Claim, result: Vec<u8>) -> Self {
        Write { claim, op: WriteOp::Complete { result } }
    }

    /// Ends the attempt with `error`; the next one may start at `run_at`.
    pub fn retry(claim: Claim, error: impl Into<String>, run_at: Timestamp) -> Self {
        Write { claim, op: WriteOp::Retry { error: error.into(), run_at } }
    }

    /// Fails the job for good with `error`.
    pub fn fail(claim: Claim, error: impl Into<String>) -> Self {
        Write { claim, op: WriteOp::Fail { error: error.into() } }
    }

    /// Suspends the job until `wake_at` (or an event).
    pub fn suspend(claim: Claim, wake_at: Option<Timestamp>) -> Self {
        Write { claim, op: WriteOp::Suspend { wake_at } }
    }

    /// Whether applying this write ends the run (every write but a start and a checkpoint).
    pub fn ends_run(&self) -> bool {
        !matches!(self.op, WriteOp::Start | WriteOp::Checkpoint(_))
    }
}

/// What happened to one [`Write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteOutcome {
    /// The write is committed.
    Applied,
    /// Refused: the run does not hold the job's lease (any more).
    LeaseLost,
}
