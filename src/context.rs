//! `JobContext`: what a running handler knows about its job, and the state behind `call`.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_jobs_store::{Checkpoint, ClaimedJob, JobId, Write, WriteOutcome};

use crate::retry::{with_patience, Patience};
use crate::worker::{JobSignal, WorkerShared};
use crate::Error;

/// How long a checkpoint keeps being retried on retryable store errors before `call` fails.
const CHECKPOINT_PATIENCE: Patience =
    Patience { budget: Duration::from_secs(5), max_pause: Duration::from_millis(500) };

/// The running job, passed to every handler.
///
/// Read its identity and attempt, and check [`is_cancelled`](Self::is_cancelled) in long loops.
/// Steps run with [`call`](crate::call) receive the same context.
pub struct JobContext {
    worker: Arc<WorkerShared>,
    id: JobId,
    name: String,
    queue: String,
    attempt: u32,
    max_attempts: u32,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    signal: Arc<JobSignal>,
    steps: RefCell<Steps>,
}

/// The per-attempt state of durable steps.
#[derive(Default)]
struct Steps {
    /// The index the next top-level `call` takes.
    next: u32,
    /// How many `call`s are running on this thread (nested calls are not checkpointed).
    depth: u32,
    /// The job's checkpoints, read on the first `call`.
    recorded: Option<Vec<Checkpoint>>,
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("attempt", &self.attempt)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl JobContext {
    pub(crate) fn new(worker: Arc<WorkerShared>, job: &ClaimedJob, signal: Arc<JobSignal>, started: Instant) -> Self {
        JobContext {
            worker,
            id: job.id,
            name: job.name.clone(),
            queue: job.queue.clone(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            timeout: job.timeout,
            deadline: job.timeout.and_then(|t| started.checked_add(t)),
            signal,
            // A job that never recorded a step has nothing to read back.
            steps: RefCell::new(Steps { recorded: (!job.resumed).then(Vec::new), ..Steps::default() }),
        }
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// The job's handler name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The job's queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The number of attempts allowed.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// When this attempt's timeout passes, if the job has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the handler should stop: the timeout passed, the worker is shutting down, or the
    /// lease was lost (another worker may run the job now). `call` refuses new steps then.
    pub fn is_cancelled(&self) -> bool {
        self.check_running().is_err()
    }

    /// `Ok` while the attempt may go on; else the error saying why not.
    pub(crate) fn check_running(&self) -> Result<(), Error> {
        if self.signal.is_lease_lost() {
            Err(Error::LeaseLost { job: self.id })
        } else if self.signal.is_cancelled() {
            Err(Error::Cancelled { job: self.id })
        } else if let (Some(deadline), Some(timeout)) = (self.deadline, self.timeout) {
            if Instant::now() >= deadline {
                Err(Error::TimedOut { job: self.id, timeout })
            } else {
                Ok(())
            }
        } else {
            Ok(())
        }
    }

    pub(crate) fn worker(&self) -> &WorkerShared {
        &self.worker
    }

    /// Takes the next step index, or `None` inside a running step (nested steps are part of
    /// the enclosing step's checkpoint).
    pub(crate) fn enter_step(&self) -> Option<u32> {
        let mut steps = self.steps.borrow_mut();
        steps.depth += 1;
        (steps.depth == 1).then(|| {
            let index = steps.next;
            steps.next += 1;
            index
        })
    }

    pub(crate) fn leave_step(&self) {
        let mut steps = self.steps.borrow_mut();
        steps.depth = steps.depth.saturating_sub(1);
    }

    /// The checkpoint at `index`, reading the job's checkpoints on first use.
    pub(crate) fn recorded(&self, index: u32) -> Result<Option<Checkpoint>, Error> {
        let mut steps = self.steps.borrow_mut();
        if steps.recorded.is_none() {
            steps.recorded = Some(self.worker.queue.store.checkpoints(self.id)?);
        }
        Ok(steps.recorded.as_ref().and_then(|r| r.iter().find(|c| c.index == index).cloned()))
    }

    /// Commits a checkpoint and returns once it is durable. Written from this thread: the
    /// store's group commit merges checkpoints of concurrent workers into one transaction, with
    /// no hop through another thread. Retryable store errors are retried for a while (the write
    /// is idempotent).
    pub(crate) fn checkpoint(&self, checkpoint: Checkpoint) -> Result<(), Error> {
        let writes = [Write::Checkpoint { job: self.id, checkpoint }];
        let queue = &self.worker.queue;
        let commit = || queue.store.commit(&self.worker.worker_id, queue.now(), &writes);
        let outcomes = with_patience("checkpoint", &CHECKPOINT_PATIENCE, || !self.is_cancelled(), commit)?;
        if outcomes.first() == Some(&WriteOutcome::Applied) {
            Ok(())
        } else {
            self.signal.lose_lease();
            Err(Error::LeaseLost { job: self.id })
        }
    }
}
