//! The committer: writes the outcomes (and start marks) of runs, everything queued in one
//! transaction (group commit), so worker threads never wait for the disk after a job. A run
//! stays held, and renewed, until its outcome is committed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use durable_jobs_store::{Claim, Write, WriteOp, WriteOutcome};

use super::WorkerShared;
use crate::failpoint::failpoint;
use crate::observability::{self, RunEnd};
use crate::retry::{with_patience, Patience};

/// The most writes in one transaction.
const MAX_BATCH: usize = 1024;

/// How long a batch keeps being retried on retryable store errors before it is given up.
const PATIENCE: Patience = Patience { budget: Duration::from_secs(10), max_pause: Duration::from_secs(1) };

/// A message to the committer.
pub(crate) enum Commit {
    /// A run's handler started (nobody waits for it).
    Start(Claim),
    /// A run's outcome (nobody waits for it): writes committed in one transaction, one of
    /// which ends the run `end`. `child`: the job is a child, whose end may wake its parent.
    Writes { writes: Vec<Write>, child: bool, end: RunEnd },
    /// Commit what is queued, then stop.
    Stop,
}

/// How long a batch of nothing but start marks waits for more. A short handler's outcome comes
/// meanwhile and makes its start needless (one write instead of two), and the write does not
/// take a CPU from the handlers that have just started. Nobody waits for a start mark: a crash
/// before it is written leaves the run uncharged, as it may anyway.
const START_DELAY: Duration = Duration::from_millis(5);

pub(crate) fn run(shared: &Arc<WorkerShared>, rx: &Receiver<Commit>) {
    let mut writes = Vec::with_capacity(MAX_BATCH);
    let mut ends = Vec::new();
    let mut stop = false;
    while !stop {
        let Ok(first) = rx.recv() else { break };
        let mut next = Some(first);
        let (mut starts_until, mut only_starts, mut children) = (None, true, false);
        loop {
            while let Some(msg) = next.take() {
                match msg {
                    Commit::Start(claim) => writes.push(Write::start(claim)),
                    Commit::Writes { writes: ws, child, end } => {
                        only_starts = false;
                        children |= child;
                        writes.extend(ws);
                        ends.push(end);
                    }
                    Commit::Stop => stop = true,
                }
                if writes.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if stop || !only_starts || writes.len() >= MAX_BATCH {
                break;
            }
            let clock = shared.clock();
            let until = *starts_until.get_or_insert_with(|| clock.monotonic().saturating_add(START_DELAY));
            // A virtual clock's time does not pass by itself: its start marks go at once.
            let real = until.checked_sub(clock.monotonic()).and_then(|left| clock.real_wait(left));
            match real.map(|r| rx.recv_timeout(r)) {
                Some(Ok(msg)) => next = Some(msg),
                _ => break,
            }
        }
        if !writes.is_empty() {
            drop_needless_starts(&mut writes);
            commit_batch(shared, &writes, children, &ends);
            writes.clear();
            ends.clear();
        }
    }
}

/// A start whose run's outcome is in the same batch says nothing the outcome does not: short
/// handlers cost no start write.
fn drop_needless_starts(writes: &mut Vec<Write>) {
    let ended: HashSet<Claim> = writes.iter().filter(|w| w.ends_run()).map(|w| w.claim).collect();
    if !ended.is_empty() {
        writes.retain(|w| !(matches!(w.op, WriteOp::Start) && ended.contains(&w.claim)));
    }
}

/// Commits `writes`, retrying retryable errors for a while, then lets go of the runs they end
/// (`ends`, in the order of their ending writes) and tells what they did.
fn commit_batch(shared: &WorkerShared, writes: &[Write], children: bool, ends: &[RunEnd]) {
    if writes.iter().any(|w| matches!(w.op, WriteOp::Complete { .. })) {
        failpoint!("before-completion-commit");
    }
    let queue = &shared.queue;
    let commit = || queue.store.commit(&shared.worker_id, queue.now(), writes);
    match with_patience(shared.clock(), "commit", &PATIENCE, || true, commit) {
        Ok(outcomes) => {
            failpoint!("inside-group-commit");
            let mut lost_outcomes = 0;
            for (write, outcome) in writes.iter().zip(&outcomes) {
                if *outcome == WriteOutcome::LeaseLost {
                    shared.held.lose(&[write.claim]);
                    lost_outcomes += usize::from(write.ends_run());
                }
            }
            if lost_outcomes > 0 {
                tracing::warn!(lost = lost_outcomes, "outcomes of jobs whose lease was lost were refused");
            }
            // Told before waits for these jobs wake: a `wait` that returns saw their events.
            observability::committed(queue, writes, &outcomes, ends);
            queue.committed(writes, children);
        }
        // The runs whose outcome is lost here are let go: their leases expire and the reaper
        // gives them another attempt (at-least-once).
        Err(e) => tracing::error!(error = %e, writes = writes.len(), "commit failed; giving up this batch"),
    }
    // Runs whose outcome was sent here leave the held set here: this is where their slots free.
    shared.let_go(writes.iter().filter(|w| w.ends_run()).map(|w| w.claim));
}

#[cfg(test)]
mod tests {
    use super::*;
    use durable_jobs_store::{ClaimToken, JobId};

    #[test]
    fn a_start_with_its_outcome_in_the_batch_is_dropped() {
        let (a, b) = (Claim::new(JobId(1), ClaimToken(1)), Claim::new(JobId(2), ClaimToken(1)));
        let mut writes = vec![Write::start(a), Write::start(b), Write::complete(a, b"1".to_vec())];
        drop_needless_starts(&mut writes);
        assert_eq!(writes, vec![Write::start(b), Write::complete(a, b"1".to_vec())]);
    }
}
