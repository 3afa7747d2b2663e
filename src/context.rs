//! `JobContext`: what a running handler knows about its job, and the state behind its steps.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_jobs_store::{Checkpoint, Claim, ClaimedJob, FanIn, JobId, NewJob, Timestamp, Write};

use crate::queue::QueueInner;
use crate::replay::Replay;
use crate::signal::JobSignal;
use crate::Error;

/// The running job, passed to every handler.
///
/// Read its identity and attempt, check [`is_cancelled`](Self::is_cancelled) in long loops,
/// and record steps with [`step`](Self::step) or [`call`](crate::call).
pub struct JobContext {
    pub(crate) queue: Arc<QueueInner>,
    worker: Arc<str>,
    claim: Claim,
    name: String,
    queue_name: String,
    attempt: u32,
    max_attempts: u32,
    timeout: Option<Duration>,
    /// When the attempt times out, on the clock's monotonic scale.
    deadline: Option<Duration>,
    signal: Arc<JobSignal>,
    steps: RefCell<Steps>,
    /// A durable wait the handler asked for: written with the run's end.
    pub(crate) suspension: RefCell<Option<Suspension>>,
}

/// What suspends a job when its handler returns: the wait's checkpoint (on its first run) and
/// what wakes it (a time, a signal name, the fan-in of children inserted with the suspension).
#[derive(Debug, Default)]
pub(crate) struct Suspension {
    pub(crate) checkpoint: Option<Checkpoint>,
    pub(crate) wake_at: Option<Timestamp>,
    pub(crate) signal: Option<String>,
    pub(crate) children: Option<(FanIn, Vec<NewJob>)>,
}

impl Suspension {
    /// The write that suspends run `claim`.
    pub(crate) fn into_writes(self, claim: Claim) -> Vec<Write> {
        let mut writes = Vec::with_capacity(2);
        writes.extend(self.checkpoint.map(|c| Write::checkpoint(claim, c)));
        writes.push(match (self.signal, self.children) {
            (Some(name), _) => Write::wait_signal(claim, name, self.wake_at),
            (None, Some((fan_in, children))) => Write::wait_children(claim, fan_in, children),
            (None, None) => Write::suspend(claim, self.wake_at),
        });
        writes
    }
}

/// The per-attempt state of durable steps.
struct Steps {
    /// The index the next top-level step takes.
    next: u32,
    /// How many steps are running on this thread (nested steps are not checkpointed).
    depth: u32,
    replay: Replay,
    /// What the running top-level step did so far.
    mark: StepMark,
}

/// What a top-level step did: for its span's `replayed` and the `Woken` event.
#[derive(Debug, Default, Clone, Copy)]
struct StepMark {
    /// Its checkpoint was recorded by an earlier run.
    found: bool,
    /// A later checkpoint was recorded too.
    later: bool,
    /// It wrote (or tried to write) a checkpoint.
    wrote: bool,
}

impl StepMark {
    /// Whether a step that returned went past a wait an earlier run suspended at: a wait that
    /// wrote its resolution over its recorded checkpoint (a signal received or timed out, a
    /// fan-out gathered), or a recorded sleep, over now, that is the last step recorded.
    fn woke(self, name: &str, suspended: bool) -> bool {
        let wait = name.starts_with('@');
        wait && self.found && !suspended && (self.wrote || (name == crate::sleep::SLEEP && !self.later))
    }
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.claim.job)
            .field("name", &self.name)
            .field("attempt", &self.attempt)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl JobContext {
    /// The context of `job`'s run, started at `started` (the clock's monotonic time).
    pub(crate) fn new(
        queue: Arc<QueueInner>,
        worker: Arc<str>,
        job: &ClaimedJob,
        signal: Arc<JobSignal>,
        started: Duration,
    ) -> Self {
        JobContext {
            queue,
            worker,
            claim: job.claim(),
            name: job.name.clone(),
            queue_name: job.queue.clone(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            timeout: job.timeout,
            deadline: job.timeout.and_then(|t| started.checked_add(t)),
            signal,
            steps: RefCell::new(Steps {
                next: 0,
                depth: 0,
                replay: Replay::new(job.id, job.resumed),
                mark: StepMark::default(),
            }),
            suspension: RefCell::new(None),
        }
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.claim.job
    }

    /// This run.
    pub(crate) fn claim(&self) -> Claim {
        self.claim
    }

    /// The job's handler name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The job's queue.
    pub fn queue(&self) -> &str {
        &self.queue_name
    }

    /// This attempt's number, from 1. A run that resumes a suspended workflow keeps the number
    /// of the attempt it resumes.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The number of attempts allowed.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// How long this attempt has left before its timeout, if the job has one (zero once it has
    /// passed).
    pub fn time_left(&self) -> Option<Duration> {
        let now = self.queue.clock.monotonic();
        self.deadline.map(|d| d.saturating_sub(now))
    }

    /// When this attempt's timeout passes, if the job has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.time_left().map(|left| Instant::now() + left)
    }

    /// Whether the handler should stop: the timeout passed, the worker is shutting down, the
    /// lease was lost (another worker may run the job now), or a durable wait suspended the
    /// job. Steps refuse to start then.
    pub fn is_cancelled(&self) -> bool {
        self.check_running().is_err()
    }

    /// `Ok` while the attempt may go on; else the error saying why not.
    pub(crate) fn check_running(&self) -> Result<(), Error> {
        if self.suspension.borrow().is_some() {
            Err(Error::Suspended { job: self.id() })
        } else if self.signal.is_lease_lost() {
            Err(Error::LeaseLost { job: self.id() })
        } else if self.signal.is_cancelled() {
            Err(Error::Cancelled { job: self.id() })
        } else if let (Some(timeout), Some(Duration::ZERO)) = (self.timeout, self.time_left()) {
            Err(Error::TimedOut { job: self.id(), timeout })
        } else {
            Ok(())
        }
    }

    /// Runs step `name` with `f` at the next step position, once the attempt may go on: `f`
    /// gets the position, or `None` inside a running step (nested steps are part of the
    /// enclosing step's checkpoint, and steps `f` starts are nested in it). The step runs in a
    /// `step` span; a wait that an earlier run left unresolved and that is over now tells
    /// `Woken`.
    pub(crate) fn at_next_position<T>(
        &self,
        name: &str,
        f: impl FnOnce(Option<u32>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.check_running()?;
        let index = {
            let mut steps = self.steps.borrow_mut();
            steps.depth += 1;
            (steps.depth == 1).then(|| {
                let index = steps.next;
                steps.next += 1;
                steps.mark = StepMark::default();
                index
            })
        };
        let span = tracing::debug_span!("step", index, name = name, replayed = tracing::field::Empty);
        let entered = span.enter();
        let out = f(index);
        drop(entered);
        let mark = {
            let mut steps = self.steps.borrow_mut();
            steps.depth = steps.depth.saturating_sub(1);
            if index.is_some() {
                std::mem::take(&mut steps.mark)
            } else {
                StepMark::default()
            }
        };
        let suspended = self.suspension.borrow().is_some();
        span.record("replayed", mark.found && !mark.wrote && !suspended);
        if let (Some(index), true) = (index, out.is_ok()) {
            if mark.woke(name, suspended) {
                crate::observability::woken(self, name, index);
            }
        }
        out
    }

    /// Asks for the job to be suspended when the handler returns; steps refuse to start from
    /// now on. Returns the error the handler returns.
    pub(crate) fn suspend(&self, suspension: Suspension) -> Error {
        *self.suspension.borrow_mut() = Some(suspension);
        Error::Suspended { job: self.id() }
    }

    /// The checkpoint recorded at `index` for `name`, and whether any is recorded after it. A
    /// checkpoint of another name there means the workflow's code changed: a determinism error
    /// naming both.
    pub(crate) fn recorded(&self, index: u32, name: &str) -> Result<Option<(Checkpoint, bool)>, Error> {
        let store = &*self.queue.store;
        let mut steps = self.steps.borrow_mut();
        let Some(found) = steps.replay.at(store, index)? else { return Ok(None) };
        if found.name != name {
            return Err(Error::Determinism { job: self.id(), index, recorded: found.name, called: name.to_owned() });
        }
        let later = steps.replay.has_later(store, index)?;
        steps.mark.found = true;
        steps.mark.later = later;
        Ok(Some((found, later)))
    }

    /// The value recorded at `index` for a wait named `name`, decoded: for waits, whose
    /// checkpoints always hold a value (see [`recorded`](Self::recorded) for the rule).
    pub(crate) fn recorded_value<T: serde::de::DeserializeOwned>(
        &self,
        index: u32,
        name: &str,
    ) -> Result<Option<T>, Error> {
        match self.recorded(index, name)? {
            Some((checkpoint, _)) => self.decode(name, &checkpoint.outcome.unwrap_or_default()).map(Some),
            None => Ok(None),
        }
    }

    /// Commits a checkpoint and returns once it is durable. Written from this thread: the
    /// store's group commit merges checkpoints of concurrent workers into one transaction, with
    /// no hop through another thread. Retryable store errors are retried for a while (the write
    /// is idempotent).
    pub(crate) fn checkpoint(&self, checkpoint: Checkpoint) -> Result<(), Error> {
        self.write(Write::checkpoint(self.claim, checkpoint))
    }

    /// Commits a write that records a step (a checkpoint, or a receive), as
    /// [`checkpoint`](Self::checkpoint) does.
    pub(crate) fn write(&self, write: Write) -> Result<(), Error> {
        self.steps.borrow_mut().mark.wrote = true;
        let go_on = || !self.is_cancelled();
        if crate::execute::commit_own(&self.queue, &self.worker, write, "record a step", &self.signal, go_on)? {
            Ok(())
        } else {
            Err(Error::LeaseLost { job: self.id() })
        }
    }
}
