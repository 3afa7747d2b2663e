//! What a suspended job waits for besides a time: signals sent to it, and the children it
//! started.

use crate::{JobId, JobStatus, Timestamp};

/// A signal's identifier, assigned by the store when it is sent: ids increase with sending
/// order and are never reused, so the oldest pending signal has the smallest id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SignalId(pub i64);

/// A signal sent to a job and not consumed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Signal {
    /// Its id.
    pub id: SignalId,
    /// The job it was sent to.
    pub job: JobId,
    /// Its name: a workflow waits for signals of one name.
    pub name: String,
    /// The JSON-encoded payload.
    pub payload: Vec<u8>,
    /// When it was sent.
    pub sent_at: Timestamp,
}

impl Signal {
    /// Signal `id` named `name` for `job`.
    pub fn new(id: SignalId, job: JobId, name: impl Into<String>, payload: Vec<u8>, sent_at: Timestamp) -> Self {
        Signal { id, job, name: name.into(), payload, sent_at }
    }
}

/// What [`Store::signal`](crate::Store::signal) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalOutcome {
    /// Stored; `woke` says whether the job was waiting for this name and is pending now.
    Sent {
        /// The stored signal.
        id: SignalId,
        /// Whether the job was woken.
        woke: bool,
    },
    /// No job has this id; nothing is stored.
    NotFound,
    /// The job has finished; nothing is stored.
    Finished(JobStatus),
}

/// Where a child job comes from: its parent and the parent's step position that started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChildOf {
    /// The parent job.
    pub parent: JobId,
    /// The parent's step position (its fan-out).
    pub index: u32,
}

/// When a parent waiting for the children of one step position wakes: once `need` of them
/// completed, more than `tolerate` ended otherwise (failed or cancelled), or all have finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FanIn {
    /// The parent's step position whose children it waits for.
    pub index: u32,
    /// Completed children that decide the fan-in.
    pub need: u32,
    /// Unsuccessful children that are tolerated; one more decides the fan-in.
    pub tolerate: u32,
}

/// What the children a parent waits for have done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ChildrenWait {
    /// The rule it waits by.
    pub rule: FanIn,
    /// Children of the step position.
    pub total: u32,
    /// Of them, completed.
    pub succeeded: u32,
    /// Of them, failed or cancelled.
    pub failed: u32,
}

impl ChildrenWait {
    /// A wait by `rule` on `total` children, `succeeded` and `failed` of which have finished.
    pub fn new(rule: FanIn, total: u32, succeeded: u32, failed: u32) -> Self {
        ChildrenWait { rule, total, succeeded, failed }
    }

    /// Whether the parent should wake: the rule is decided either way, or every child finished.
    pub fn is_decided(&self) -> bool {
        self.succeeded >= self.rule.need
            || self.failed > self.rule.tolerate
            || self.succeeded.saturating_add(self.failed) >= self.total
    }
}
