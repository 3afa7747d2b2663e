//! Writes about running jobs, and the checkpoints some of them carry.

use crate::{ChildOf, Claim, FanIn, NewJob, SignalId, Timestamp};

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
    /// A hint: the run's job is a child of this step ([`ClaimedJob::parent`](crate::ClaimedJob::parent)),
    /// so its end is counted by the parent's fan-in. A store may use it to find the parent
    /// without reading; a missing or wrong hint changes no outcome.
    pub child_of: Option<ChildOf>,
}

/// What a [`Write`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteOp {
    /// The run's handler has started: a later loss of the lease charges the attempt.
    Start,
    /// Insert or replace the checkpoint `(job, checkpoint.index)`. The job keeps running.
    Checkpoint(Checkpoint),
    /// Consume signal `signal` of the job (delete it; nothing if it is gone already) and insert
    /// or replace `checkpoint`, which records what the wait received. The job keeps running.
    #[non_exhaustive]
    Receive {
        /// The signal consumed.
        signal: SignalId,
        /// The wait's checkpoint.
        checkpoint: Checkpoint,
    },
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
    /// The job suspends itself without being charged: status `Waiting` until `wake_at`, or a
    /// signal named `signal`, or the fan-in of its children, whichever comes first; its attempt
    /// given back. `children` are inserted in the same transaction (as by
    /// [`Store::enqueue`](crate::Store::enqueue), each with `parent = (job, fan_in.index)` and
    /// no unique key). If the wait is over already (a signal of that name is pending, or the
    /// fan-in is decided), the job becomes `Pending` at once instead, keeping its `run_at`.
    #[non_exhaustive]
    Suspend {
        /// When the job becomes pending again.
        wake_at: Option<Timestamp>,
        /// A signal name that wakes the job.
        signal: Option<String>,
        /// The children whose fan-in wakes the job.
        fan_in: Option<FanIn>,
        /// Children to insert.
        children: Vec<NewJob>,
    },
}

impl Write {
    /// Records that the run's handler started.
    pub fn start(claim: Claim) -> Self {
        Write { claim, op: WriteOp::Start, child_of: None }
    }

    /// Records a checkpoint.
    pub fn checkpoint(claim: Claim, checkpoint: Checkpoint) -> Self {
        Write { claim, op: WriteOp::Checkpoint(checkpoint), child_of: None }
    }

    /// Completes the job with `result` (JSON).
    pub fn complete(claim: Claim, result: Vec<u8>) -> Self {
        Write { claim, op: WriteOp::Complete { result }, child_of: None }
    }

    /// Ends the attempt with `error`; the next one may start at `run_at`.
    pub fn retry(claim: Claim, error: impl Into<String>, run_at: Timestamp) -> Self {
        Write { claim, op: WriteOp::Retry { error: error.into(), run_at }, child_of: None }
    }

    /// Fails the job for good with `error`.
    pub fn fail(claim: Claim, error: impl Into<String>) -> Self {
        Write { claim, op: WriteOp::Fail { error: error.into() }, child_of: None }
    }

    /// Suspends the job until `wake_at` (or an event).
    pub fn suspend(claim: Claim, wake_at: Option<Timestamp>) -> Self {
        Write {
            claim,
            op: WriteOp::Suspend { wake_at, signal: None, fan_in: None, children: Vec::new() },
            child_of: None,
        }
    }

    /// Suspends the job until a signal named `name` is sent to it (or until `wake_at`).
    pub fn wait_signal(claim: Claim, name: impl Into<String>, wake_at: Option<Timestamp>) -> Self {
        Write {
            claim,
            op: WriteOp::Suspend { wake_at, signal: Some(name.into()), fan_in: None, children: Vec::new() },
            child_of: None,
        }
    }

    /// Inserts `children` and suspends the job until their fan-in is decided by `fan_in`.
    pub fn wait_children(claim: Claim, fan_in: FanIn, children: Vec<NewJob>) -> Self {
        Write {
            claim,
            op: WriteOp::Suspend { wake_at: None, signal: None, fan_in: Some(fan_in), children },
            child_of: None,
        }
    }

    /// Consumes signal `signal` and records `checkpoint`.
    pub fn receive(claim: Claim, signal: SignalId, checkpoint: Checkpoint) -> Self {
        Write { claim, op: WriteOp::Receive { signal, checkpoint }, child_of: None }
    }

    /// Adds the hint that the run's job is a child of `link` (the field `child_of`).
    pub fn with_parent(mut self, link: Option<ChildOf>) -> Self {
        self.child_of = link;
        self
    }

    /// Whether applying this write ends the run (every write but a start, a checkpoint and a
    /// receive).
    pub fn ends_run(&self) -> bool {
        !matches!(self.op, WriteOp::Start | WriteOp::Checkpoint(_) | WriteOp::Receive { .. })
    }

    /// The checkpoint this write records, if any.
    pub fn checkpoint_written(&self) -> Option<&Checkpoint> {
        match &self.op {
            WriteOp::Checkpoint(c) | WriteOp::Receive { checkpoint: c, .. } => Some(c),
            _ => None,
        }
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
