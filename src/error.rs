//! The error type of the engine.

use std::error::Error as StdError;
use std::time::Duration;

use durable_jobs_store::{JobId, JobStatus, StoreError};

/// A boxed error from user code.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong in durable-jobs.
///
/// Handlers may return it too: wrap an error in [`Error::permanent`] to fail a job at once,
/// or in [`Error::retry_after`] to choose the delay before the next attempt. Any other error a
/// handler returns is retried with exponential backoff while attempts remain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed. [`StoreError::is_retryable`] says whether trying again can help.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// No handler is registered under this name.
    #[error("no handler is registered for {name:?}")]
    UnknownJob {
        /// The name asked for.
        name: String,
    },

    /// A handler is already registered under this name (in this queue).
    #[error("a handler is already registered for {name:?}")]
    AlreadyRegistered {
        /// The name.
        name: String,
    },

    /// A job, step or queue name breaks the naming rule `[A-Za-z][A-Za-z0-9_.:-]{0,254}`.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// `"job"`, `"queue"` or `"step"`.
        what: &'static str,
        /// The name given (shortened if very long).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An option or setting is out of range.
    #[error("invalid option `{option}`: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// Encoded arguments, a result or a step's value are larger than the queue's payload
    /// limit. Nothing was stored: for arguments, no job; for a result or a step, the job fails
    /// for good.
    #[error("the {what} of {name:?} is {size} bytes, over the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The job or step name.
        name: String,
        /// `"arguments"`, `"result"`, `"step value"` or `"signal payload"`.
        what: &'static str,
        /// The encoded size.
        size: usize,
        /// The limit ([`QueueBuilder::max_payload`](crate::QueueBuilder::max_payload)).
        limit: usize,
    },

    /// Arguments or a result could not be encoded as JSON.
    #[error("cannot encode the {what} of {name:?} as JSON: {source}")]
    Encode {
        /// The job or step name.
        name: String,
        /// `"arguments"` or `"result"`.
        what: &'static str,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },

    /// Stored JSON could not be decoded into the type asked for.
    #[error("job {job} ({name}): cannot decode the {what}: {source}")]
    Decode {
        /// The job.
        job: JobId,
        /// The job or step name.
        name: String,
        /// `"arguments"`, `"result"`, `"checkpoint"` or `"signal"`.
        what: &'static str,
        /// The deserializer's error.
        #[source]
        source: serde_json::Error,
    },

    /// A live job already holds the unique key; nothing was enqueued.
    #[error("job {existing} already holds the unique key {key:?}")]
    Duplicate {
        /// The key.
        key: String,
        /// The live job holding it.
        existing: JobId,
    },

    /// The worker no longer holds the job's lease (it expired and another worker may have taken
    /// the job); the write was refused. The handler should return.
    #[error("job {job} lost its lease; its writes are refused")]
    LeaseLost {
        /// The job.
        job: JobId,
    },

    /// The job was asked to stop (the worker is shutting down) before a new step started.
    #[error("job {job} was cancelled")]
    Cancelled {
        /// The job.
        job: JobId,
    },

    /// The attempt ran past its timeout before a new step started.
    #[error("job {job} timed out after {timeout:?}")]
    TimedOut {
        /// The job.
        job: JobId,
        /// The job's timeout.
        timeout: Duration,
    },

    /// The job is suspended by a durable wait ([`JobContext::sleep`](crate::JobContext::sleep)):
    /// return this error from the handler (`?` does). The worker thread is freed, and the
    /// handler runs again from the top when the wait is over, replaying its checkpoints. Not a
    /// failure: no attempt is charged.
    #[error("job {job} is suspended by a durable wait; return this error from the handler")]
    Suspended {
        /// The job.
        job: JobId,
    },

    /// A durable wait ([`JobContext::sleep`](crate::JobContext::sleep)) was called inside a
    /// step (a [`call`](crate::call)ed handler or [`JobContext::step`](crate::JobContext::step)):
    /// a step runs to its end on its thread, so it cannot suspend. Wait in the workflow itself.
    #[error("job {job}: a durable wait cannot run inside a step; wait in the workflow itself")]
    WaitInStep {
        /// The job.
        job: JobId,
    },

    /// The workflow called a different step at a position than the one checkpointed there:
    /// its code changed between attempts. Terminal.
    #[error(
        "job {job}: non-deterministic workflow: step {index} was {recorded:?} when checkpointed but is {called:?} now"
    )]
    Determinism {
        /// The job.
        job: JobId,
        /// The step position.
        index: u32,
        /// The name in the checkpoint.
        recorded: String,
        /// The name called now.
        called: String,
    },

    /// A step called with [`call`](crate::call) failed.
    #[error("step {step:?} failed{}: {message}", if *.permanent { " permanently" } else { "" })]
    Step {
        /// The step's name.
        step: String,
        /// Its error, with causes.
        message: String,
        /// Permanent step errors are checkpointed and fail the job if propagated.
        permanent: bool,
    },

    /// No job has this id.
    #[error("job {job} not found")]
    NotFound {
        /// The id.
        job: JobId,
    },

    /// A child job started by [`spawn`](crate::spawn) did not complete. Permanent: a replay of
    /// the parent would find the same recorded outcome.
    #[error(transparent)]
    ChildFailed(#[from] crate::ChildFailed),

    /// The job has finished, so it cannot take what was sent to it (a signal); nothing was
    /// stored.
    #[error("job {job} has finished ({status}); nothing was sent")]
    JobFinished {
        /// The job.
        job: JobId,
        /// Its final status.
        status: JobStatus,
    },

    /// [`Queue::wait`](crate::Queue::wait) gave up before the job finished.
    #[error("job {job} is still {status} after waiting {waited:?}")]
    WaitTimeout {
        /// The job.
        job: JobId,
        /// Its status when the wait ended.
        status: JobStatus,
        /// How long it waited.
        waited: Duration,
    },

    /// [`Queue::result`](crate::Queue::result) asked for the result of a job that did not
    /// complete.
    #[error("job {job} has no result: it is {status}{}", .error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default())]
    NoResult {
        /// The job.
        job: JobId,
        /// Its status.
        status: JobStatus,
        /// Its last error, if any.
        error: Option<String>,
    },

    /// Fail the job now, without further attempts.
    #[error("{0}")]
    Permanent(#[source] BoxError),

    /// Retry the job after `delay` instead of the backoff delay (if attempts remain).
    #[error("{source} (retry after {delay:?})")]
    RetryAfter {
        /// The wait before the next attempt.
        delay: Duration,
        /// The error.
        #[source]
        source: BoxError,
    },

    /// The queue a [`JobHandle`](crate::JobHandle) belongs to was dropped.
    #[error("the queue of this job handle was dropped")]
    QueueClosed,

    /// [`Queue::wait_idle`](crate::Queue::wait_idle) gave up while work was left.
    #[error("still {busy} jobs ready or running after waiting {waited:?}")]
    IdleTimeout {
        /// Jobs ready, claimed or running when the wait ended.
        busy: u64,
        /// How long it waited.
        waited: Duration,
    },

    /// An internal thread of a worker pool failed (a panic in the engine or a store); the pool
    /// shut down. See [`Worker::health`](crate::Worker::health).
    #[error("worker thread {thread} failed: {message}")]
    WorkerFailed {
        /// The thread's name.
        thread: String,
        /// What happened.
        message: String,
    },

    /// A worker thread could not be started.
    #[error("cannot start worker thread: {0}")]
    Spawn(#[source] std::io::Error),
}

impl Error {
    /// Wraps `error` so the job fails at once, without further attempts.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        Error::Permanent(error.into())
    }

    /// Wraps `error` so the next attempt starts after `delay`.
    pub fn retry_after(delay: Duration, error: impl Into<BoxError>) -> Self {
        Error::RetryAfter { delay, source: error.into() }
    }

    /// Whether a job failing with this error must not be retried.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Permanent(_)
            | Error::Determinism { .. }
            | Error::Decode { .. }
            | Error::ChildFailed(_)
            | Error::Encode { .. }
            | Error::InvalidName { .. }
            | Error::PayloadTooLarge { .. } => true,
            Error::Step { permanent, .. } => *permanent,
            _ => false,
        }
    }
}

/// `error` and its causes, joined by `": "`, skipping causes already in the message.
pub(crate) fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanence_and_messages() {
        let p = Error::permanent("card declined");
        assert!(p.is_permanent());
        assert_eq!(p.to_string(), "card declined");
        let r = Error::retry_after(Duration::from_secs(2), "rate limited");
        assert!(!r.is_permanent());
        assert_eq!(chain(&r), "rate limited (retry after 2s)");
        let step = Error::Step { step: "charge".into(), message: "declined".into(), permanent: true };
        assert!(step.is_permanent());
        assert_eq!(step.to_string(), "step \"charge\" failed permanently: declined");
        let io = std::io::Error::other("disk");
        let wrapped = Error::Spawn(io);
        assert_eq!(chain(&wrapped), "cannot start worker thread: disk");
        assert!(!Error::LeaseLost { job: JobId(1) }.is_permanent());
    }
}
