//! A worker thread: runs claimed jobs and turns their outcome into a write.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use durable_jobs_store::{ClaimedJob, Write};

use super::{Commit, JobSignal, WorkerShared};
use crate::failure::Failure;
use crate::registry::HandlerError;
use crate::{retry, unwind, Error, JobContext};

/// Tells the pool this thread ended, however it ended.
struct ExitGuard(Sender<usize>, usize);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
    }
}

pub(crate) fn run(
    shared: &Arc<WorkerShared>,
    jobs: &Receiver<(ClaimedJob, Arc<JobSignal>)>,
    (exit, index): (Sender<usize>, usize),
) {
    let _guard = ExitGuard(exit, index);
    while let Ok((job, signal)) = jobs.recv() {
        if shared.stopping.load(Ordering::Acquire) {
            // Not started: stays held and is released by the shutdown.
            continue;
        }
        let started = Instant::now();
        execute(shared, &job, signal);
        shared.pace.record_handler(started.elapsed());
        // Wake the dispatcher when half the held jobs are done, not after every job.
        if shared.held.len() <= shared.pace.capacity() / 2 {
            shared.doorbell.ring();
        }
    }
}

fn execute(shared: &Arc<WorkerShared>, job: &ClaimedJob, signal: Arc<JobSignal>) {
    let handler = shared.queue.registry.read().get(&job.name);
    let ctx = JobContext::new(shared.clone(), job, signal.clone(), Instant::now());
    let outcome = match handler {
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
            Err(panic) => Err(Failure::Retry { message: panic, after: None }),
        },
    };
    drop(ctx);
    if outcome.is_err() && signal.is_cancelled() && shared.stopping.load(Ordering::Acquire) {
        // Stopped by the shutdown: the job stays held and is released (not failed), its
        // attempt given back.
        return;
    }
    shared.held.remove(job.id);
    if signal.is_lease_lost() {
        // Another worker may own the job now; the write would be refused.
        tracing::warn!(job = %job.id, "job finished after losing its lease; outcome discarded");
        return;
    }
    let write = match outcome {
        Ok(result) => Write::Complete { job: job.id, result },
        Err(failure) => failure_write(shared, job, failure),
    };
    if shared.committer.send(Commit::Write(write)).is_err() {
        tracing::warn!(job = %job.id, "worker stopped before the outcome was written; the lease will expire");
    }
}

/// A retry if attempts remain and the error allows it, else a terminal failure.
fn failure_write(shared: &WorkerShared, job: &ClaimedJob, failure: Failure) -> Write {
    tracing::debug!(job = %job.id, name = %job.name, attempt = job.attempt, error = failure.message(), "attempt failed");
    match failure {
        Failure::Retry { message, after } if job.attempt < job.max_attempts => {
            let delay = after.unwrap_or_else(|| retry::backoff(job.retry_policy, job.attempt));
            shared.doorbell.ring_in(delay);
            Write::Retry { job: job.id, error: message, run_at: shared.queue.now().saturating_add(delay) }
        }
        Failure::Retry { message, .. } | Failure::Permanent(message) => Write::Fail { job: job.id, error: message },
    }
}
