//! The committer: writes the outcomes of finished jobs, everything queued in one transaction
//! (group commit), so worker threads never wait for the disk after a job.

use std::time::Duration;

use crossbeam_channel::Receiver;
use durable_jobs_store::{Write, WriteOutcome};

use super::WorkerShared;
use crate::failpoint::failpoint;
use crate::retry::{with_patience, Patience};

/// The most writes in one transaction.
const MAX_BATCH: usize = 1024;

/// How long a batch keeps being retried on retryable store errors before it is given up.
const PATIENCE: Patience = Patience { budget: Duration::from_secs(10), max_pause: Duration::from_secs(1) };

/// A message to the committer.
pub(crate) enum Commit {
    /// Write this (a job's outcome; nobody waits for it).
    Write(Write),
    /// Commit what is queued, then stop.
    Stop,
}

pub(crate) fn run(shared: &WorkerShared, rx: &Receiver<Commit>) {
    let mut writes = Vec::with_capacity(MAX_BATCH);
    let mut stop = false;
    while !stop {
        let Ok(first) = rx.recv() else { break };
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Commit::Write(w) => writes.push(w),
                Commit::Stop => stop = true,
            }
            if writes.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !writes.is_empty() {
            commit_batch(shared, &writes);
            writes.clear();
        }
    }
}

/// Commits `writes`, retrying retryable errors for a while.
fn commit_batch(shared: &WorkerShared, writes: &[Write]) {
    if writes.iter().any(|w| matches!(w, Write::Complete { .. })) {
        failpoint!("before-completion-commit");
    }
    let store = &shared.queue.store;
    match with_patience("commit", &PATIENCE, || true, || store.commit(&shared.worker_id, shared.queue.now(), writes)) {
        Ok(outcomes) => {
            failpoint!("inside-group-commit");
            let lost = outcomes.iter().filter(|o| **o == WriteOutcome::LeaseLost).count();
            if lost > 0 {
                tracing::warn!(lost, "outcomes of jobs whose lease was lost were refused");
            }
            shared.queue.notify_committed();
        }
        // Jobs whose outcome is lost here stay running until their lease expires; the reaper
        // then gives them another attempt (at-least-once).
        Err(e) => tracing::error!(error = %e, writes = writes.len(), "commit failed; giving up this batch"),
    }
}
