//! Running one claimed job on the calling thread and turning its outcome into a write: the
//! part of a worker that needs no pool (a worker thread and [`Queue::run_one`] share it).

use std::sync::Arc;
use std::time::Duration;

use durable_jobs_store::{ClaimRequest, ClaimedJob, Write, WriteOp, WriteOutcome};

use crate::failure::Failure;
use crate::observability::{self, Ending, RunEnd};
use crate::queue::QueueInner;
use crate::registry::HandlerError;
use crate::retry::{self, with_patience, Patience};
use crate::signal::JobSignal;
use crate::{names, unwind, Error, JobContext, Queue};

/// How long writes made on the job's own thread (a start to confirm, a checkpoint, `run_one`'s
/// outcome) keep being retried on retryable store errors.
const PATIENCE: Patience = Patience { budget: Duration::from_secs(5), max_pause: Duration::from_millis(500) };

/// The lease `run_one` takes: it is not renewed, so it outlasts any reasonable handler.
const RUN_ONE_LEASE: Duration = Duration::from_secs(300);

/// What to do after a run.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Commit these, in one transaction: a completion, a retry or a failure, or a suspension
    /// with its wait's checkpoint. `child`: the job is a child, whose end may wake its parent.
    /// `run_time`: how long the handler ran; `dead`: a failure on the last attempt.
    Writes { writes: Vec<Write>, child: bool, run_time: Duration, ending: Ending },
    /// Hand the job back without charging it: the worker is stopping.
    Release,
    /// Nothing to write: the run no longer holds the job.
    Discard,
}

/// Runs `job` on this thread for `worker` and says what to write. `signal` tells the handler
/// to stop; a job that must confirm its start gets it committed before the handler runs. The
/// caller then tells the queue [`handler_returned`](QueueInner::handler_returned).
pub(crate) fn execute(
    queue: &Arc<QueueInner>,
    worker: &Arc<str>,
    job: &ClaimedJob,
    signal: &Arc<JobSignal>,
) -> Outcome {
    if signal.is_job_cancelled() {
        // Cancelled while it waited for a thread: the store ends the run `Cancelled`.
        let write = Write::fail(job.claim(), "cancelled before its handler started").with_parent(job.parent);
        let (child, run_time) = (job.parent.is_some(), Duration::ZERO);
        return Outcome::Writes { writes: vec![write], child, run_time, ending: Ending::Cancelled };
    }
    let span = tracing::info_span!("job", id = job.id.0, name = %job.name, queue = %job.queue, attempt = job.attempt);
    let _entered = span.enter();
    if job.confirm_start {
        if let Err(outcome) = confirm_start(queue, worker, job, signal) {
            return outcome;
        }
    }
    let now = queue.now();
    let waited = Duration::from_micros(u64::try_from(now.0.saturating_sub(job.run_at.0)).unwrap_or(0));
    observability::started(queue, job, waited);
    let started = queue.clock.monotonic();
    let ctx = JobContext::new(queue.clone(), worker.clone(), job, signal.clone(), started);
    let handler = queue.registry.read().get(&job.name);
    let mut panicked = false;
    let result = match handler {
        // Registration cannot be undone, so this is only reachable through a store bug.
        None => Err(Failure::Retry { message: format!("no handler for {:?} in this worker", job.name), after: None }),
        Some(handler) => match unwind::catch(|| handler(&ctx, &job.args)) {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(HandlerError::Failed(e))) => Err(Failure::of(&e)),
            Ok(Err(HandlerError::Decode(source))) => {
                let e = Error::Decode { job: job.id, name: job.name.clone(), what: "arguments", source };
                Err(Failure::Permanent(e.to_string()))
            }
            Ok(Err(HandlerError::Encode(source))) => {
                Err(Failure::Permanent(Error::Encode { name: job.name.clone(), what: "result", source }.to_string()))
            }
            Err(panic) => {
                panicked = true;
                Err(Failure::Retry { message: format!("handler panicked: {panic}"), after: None })
            }
        },
    };
    let timed_out = job.timeout.filter(|_| ctx.time_left() == Some(Duration::ZERO));
    let run_time = queue.clock.monotonic().saturating_sub(started);
    let suspension = ctx.suspension.borrow_mut().take();
    drop(ctx);
    if signal.is_lease_lost() {
        // Another worker may own the job now; the write would be refused.
        tracing::warn!(job = %job.id, "job finished after losing its lease; outcome discarded");
        return Outcome::Discard;
    }
    match suspension {
        // A durable wait suspends the job whatever the handler returned after asking for it,
        // unless it panicked or ran out of time.
        Some(s) if timed_out.is_none() && !panicked => {
            let ending = if signal.is_job_cancelled() { Ending::Cancelled } else { Ending::Plain };
            Outcome::Writes { writes: s.into_writes(job.claim()), child: job.parent.is_some(), run_time, ending }
        }
        _ => outcome(queue, job, signal, result, timed_out, run_time),
    }
}

/// Commits one write about a run from the run's own thread, retrying retryable store errors
/// while `go_on` says the run may go on. `Ok(false)` if the fence refused it: the run has lost
/// its lease (and `signal` now says so).
pub(crate) fn commit_own(
    queue: &QueueInner,
    worker: &str,
    write: Write,
    what: &str,
    signal: &JobSignal,
    go_on: impl Fn() -> bool,
) -> Result<bool, durable_jobs_store::StoreError> {
    let writes = [write];
    let commit = || queue.store.commit(worker, queue.now(), &writes);
    let outcomes = with_patience(&*queue.clock, what, &PATIENCE, go_on, commit)?;
    let applied = outcomes.first() == Some(&WriteOutcome::Applied);
    if !applied {
        signal.lose_lease();
    }
    Ok(applied)
}

/// Commits the start of a run that must confirm it before its handler runs.
fn confirm_start(queue: &QueueInner, worker: &str, job: &ClaimedJob, signal: &JobSignal) -> Result<(), Outcome> {
    match commit_own(queue, worker, Write::start(job.claim()), "record a start", signal, || !signal.is_cancelled()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Outcome::Discard),
        Err(e) => {
            tracing::warn!(job = %job.id, error = %e, "could not record the start of a job; it is handed back");
            Err(Outcome::Release)
        }
    }
}

/// The write for a run's result.
fn outcome(
    queue: &QueueInner,
    job: &ClaimedJob,
    signal: &JobSignal,
    result: Result<Vec<u8>, Failure>,
    timed_out: Option<Duration>,
    run_time: Duration,
) -> Outcome {
    let result = match timed_out {
        // A result that comes after the deadline is a timeout, whatever it is.
        Some(timeout) => {
            Err(Failure::Retry { message: Error::TimedOut { job: job.id, timeout }.to_string(), after: None })
        }
        None => result,
    };
    let claim = job.claim();
    let (write, ending) = match result {
        Ok(value) => match queue.check_size(&job.name, "result", value.len()) {
            Ok(()) => (Write::complete(claim, value), Ending::Plain),
            Err(e) => (Write::fail(claim, e.to_string()), Ending::Plain),
        },
        // Stopped because its job was cancelled: the store ends the run `Cancelled`.
        Err(failure) if signal.is_job_cancelled() => {
            (Write::fail(claim, format!("cancelled while running: {}", failure.message())), Ending::Cancelled)
        }
        // Stopped by the shutdown: released (not failed), its attempt given back.
        Err(_) if signal.is_cancelled() && timed_out.is_none() => return Outcome::Release,
        Err(failure) => failure_write(queue, job, failure),
    };
    Outcome::Writes { writes: vec![write.with_parent(job.parent)], child: job.parent.is_some(), run_time, ending }
}

/// A retry if attempts remain and the error allows it, else a terminal failure; and whether
/// that failure is a dead letter (a retryable error on the last attempt).
pub(crate) fn failure_write(queue: &QueueInner, job: &ClaimedJob, failure: Failure) -> (Write, Ending) {
    tracing::debug!(job = %job.id, name = %job.name, attempt = job.attempt, error = failure.message(), "attempt failed");
    match failure {
        Failure::Retry { message, after } if job.attempt < job.max_attempts => {
            let delay = after.unwrap_or_else(|| retry::backoff(job.retry_policy, job.attempt));
            (Write::retry(job.claim(), message, queue.now().saturating_add(delay)), Ending::Plain)
        }
        Failure::Retry { message, .. } => (Write::fail(job.claim(), message), Ending::Dead),
        Failure::Permanent(message) => (Write::fail(job.claim(), message), Ending::Plain),
    }
}

impl QueueInner {
    /// After a commit of `writes`: wakes waiters, and workers for retries and sleeps coming due,
    /// and at once for jobs the commit may have made ready (a wait over before it began; the
    /// parent of a child that ended, if `children` ended here).
    pub(crate) fn committed(&self, writes: &[Write], children: bool) {
        let mut ready_now = children;
        for write in writes {
            match &write.op {
                WriteOp::Retry { run_at, .. } => self.wake_workers(*run_at),
                WriteOp::Suspend { wake_at, signal, fan_in, .. } => {
                    ready_now |= signal.is_some() || fan_in.is_some();
                    if let Some(at) = wake_at {
                        self.wake_workers(*at);
                    }
                }
                _ => {}
            }
        }
        if ready_now {
            self.wake_workers(self.now());
        }
        self.notify_committed();
    }
}

impl Queue {
    /// Claims one ready job of `queue` with a registered name, runs it on the calling thread
    /// and commits its outcome: no pool, no background thread. Returns the job's id, or `None`
    /// if nothing was ready. For tests (with a [`ManualClock`](crate::ManualClock)), scripts
    /// and command-line tools.
    ///
    /// The job's lease (5 minutes) is not renewed: use a worker pool for longer handlers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a bad queue name, [`Error::Store`] if the claim or the
    /// outcome's commit fails (the job is then recovered when its lease expires).
    pub fn run_one(&self, queue: &str) -> Result<Option<durable_jobs_store::JobId>, Error> {
        names::validate("queue", queue)?;
        let inner = &self.inner;
        let names = inner.registry.read().names();
        if names.is_empty() {
            return Ok(None);
        }
        let worker: Arc<str> = format!("{}-run-one-{:016x}", std::process::id(), fastrand::u64(..)).into();
        let now = inner.now();
        let req = ClaimRequest::new(&*worker, now, now.saturating_add(RUN_ONE_LEASE))
            .queues([queue])
            .names(names.iter().cloned())
            .exclude(inner.quarantined());
        let Some(job) = inner.store.claim(&req)?.jobs.into_iter().next() else { return Ok(None) };
        let id = job.id;
        let outcome = execute(inner, &worker, &job, &Arc::new(JobSignal::default()));
        inner.handler_returned(id);
        match outcome {
            Outcome::Writes { writes, child, run_time, ending } => {
                let commit = || inner.store.commit(&worker, inner.now(), &writes);
                let outcomes = with_patience(&*inner.clock, "commit", &PATIENCE, || true, commit)?;
                observability::committed(inner, &writes, &outcomes, &[RunEnd::new(job, run_time, ending)]);
                inner.committed(&writes, child);
            }
            Outcome::Release => {
                inner.store.release(&worker, &[job.claim()], inner.now())?;
            }
            Outcome::Discard => {}
        }
        Ok(Some(id))
    }
}
