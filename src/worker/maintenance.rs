//! The maintenance thread: recovers the jobs of dead or stalled workers (the reaper), gives up
//! on handlers that overran their timeout (the watchdog), reports the queue depth, and warns
//! about ready jobs no handler here can run.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use durable_jobs_store::{JobStatus, ReclaimRequest, StatusCount, Timestamp};

use super::{heartbeat, retention, Commit, WorkerShared};
use crate::execute::failure_write;
use crate::failpoint::failpoint;
use crate::failure::Failure;
use crate::observability::{self, QueueDepth, RunEnd};
use crate::Error;

/// How often limits set by other processes are looked for.
const LIMITS_EVERY: Duration = Duration::from_secs(5);

/// Jobs recovered per store call: each call is one short transaction.
const REAP_BATCH: usize = 500;

/// How often to look for ready jobs of names this worker has no handler for, while it has
/// nothing in hand. Counting reads every job row, so a busy worker looks only rarely.
const NAME_CHECK_EVERY: Duration = Duration::from_secs(60);
const NAME_CHECK_WHEN_BUSY: Duration = Duration::from_secs(600);

pub(crate) fn run(shared: &Arc<WorkerShared>) {
    let reap_every = (shared.lease / 2).min(Duration::from_secs(1));
    let now = shared.clock().monotonic();
    let (mut next_reap, mut next_name_check) = (now, now.saturating_add(reap_every));
    let mut next_limits = now.saturating_add(LIMITS_EVERY);
    let mut next_retention = now.saturating_add(shared.retention.interval().min(Duration::from_secs(1)));
    let mut last_name_check = now;
    let mut next_depth = shared.queue_depth_every.map(|every| now.saturating_add(every));
    let mut depth = QueueDepth::default();
    let mut clock = ClockWatch::new(shared);
    let mut warned = HashSet::new();
    loop {
        let wake =
            [Some(next_reap), Some(next_name_check), Some(next_retention), next_depth, shared.held.next_give_up()]
                .into_iter()
                .flatten()
                .min();
        if shared.wait_stop(wake.unwrap_or(next_reap)) {
            return;
        }
        let now = shared.clock().monotonic();
        give_up_overruns(shared, now);
        if now >= next_limits {
            // Limits set by another process: whether runs that end should wake the dispatcher.
            shared.refresh_limits();
            next_limits = now.saturating_add(LIMITS_EVERY);
        }
        if now >= next_reap {
            reap(shared, &mut clock);
            next_reap = now.saturating_add(reap_every);
        }
        if now >= next_retention {
            // Behind (a round ended on a full batch): the next round comes at once, after the
            // other duties, so deleting keeps up with jobs finishing.
            let more = retention::round(shared, &shared.retention);
            next_retention = if more { now } else { now.saturating_add(shared.retention.interval()) };
        }
        // Both read every job's status: one read serves both when both are due.
        let mut counts = None;
        if let (Some(at), Some(every)) = (next_depth, shared.queue_depth_every) {
            if now >= at {
                counts = read_counts(shared);
                if let Some(counts) = &counts {
                    depth.report(counts);
                }
                next_depth = Some(now.saturating_add(every));
            }
        }
        if now >= next_name_check {
            if shared.held.len() == 0 || now.saturating_sub(last_name_check) >= NAME_CHECK_WHEN_BUSY {
                if let Some(counts) = counts.or_else(|| read_counts(shared)) {
                    warn_unhandled_names(shared, &counts, &mut warned);
                }
                last_name_check = now;
                next_name_check = now.saturating_add(NAME_CHECK_EVERY);
            } else {
                next_name_check = now.saturating_add(reap_every);
            }
        }
    }
}

/// The number of jobs per queue, name and status (a read of every job), or `None` if the
/// store fails.
fn read_counts(shared: &WorkerShared) -> Option<Vec<StatusCount>> {
    match shared.queue.store.counts(shared.queue.now()) {
        Ok(counts) => Some(counts),
        Err(e) => {
            tracing::debug!(error = %e, "could not count jobs");
            None
        }
    }
}

/// Notices when the wall clock moves differently from the monotonic clock.
struct ClockWatch {
    mono: Duration,
    wall: Timestamp,
    tolerance: Duration,
}

impl ClockWatch {
    fn new(shared: &WorkerShared) -> Self {
        ClockWatch { mono: shared.clock().monotonic(), wall: shared.queue.now(), tolerance: shared.lease / 4 }
    }

    /// The wall-clock time now, and whether it jumped since the last look.
    fn look(&mut self, shared: &WorkerShared) -> (Timestamp, bool) {
        let (mono, wall) = (shared.clock().monotonic(), shared.queue.now());
        let expected = i64::try_from(mono.saturating_sub(self.mono).as_micros()).unwrap_or(i64::MAX);
        let drift = wall.0.saturating_sub(self.wall.0).saturating_sub(expected);
        (self.mono, self.wall) = (mono, wall);
        let jumped = drift.unsigned_abs() > u64::try_from(self.tolerance.as_micros()).unwrap_or(u64::MAX);
        if jumped {
            tracing::warn!(drift_us = drift, "the wall clock jumped; renewing leases before reaping");
        }
        (wall, jumped)
    }
}

/// Returns jobs of dead workers and jobs with expired leases to the queue, a batch at a time.
fn reap(shared: &WorkerShared, clock: &mut ClockWatch) {
    // After a wall-clock jump our own leases may look expired: renew them first, and reap on
    // the next round with a reading taken after the renewal.
    let (now, jumped) = clock.look(shared);
    if jumped {
        heartbeat::renew(shared);
        return;
    }
    let dead = shared.liveness.as_ref().map(super::Liveness::dead_workers).unwrap_or_default();
    let req = ReclaimRequest::new(now, REAP_BATCH).dead_workers(dead.clone());
    loop {
        match shared.queue.store.reclaim(&req) {
            Ok(r) if !r.is_empty() => {
                failpoint!("during-reclaim");
                tracing::info!(requeued = ?r.requeued, failed = ?r.failed, released = ?r.released, "recovered jobs of dead or stalled workers");
                observability::reclaimed(&shared.queue, &r);
                shared.doorbell.ring();
                shared.queue.notify_committed();
                if r.len() < REAP_BATCH {
                    break;
                }
            }
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "recovering jobs of dead workers failed");
                return;
            }
        }
    }
    if let (Some(liveness), false) = (&shared.liveness, dead.is_empty()) {
        liveness.bury(&dead);
    }
}

/// Gives up on handlers still running past their timeout and grace: fails the attempt as
/// timed out (retried per its policy), stops renewing, refuses the handler's late writes, and
/// replaces its thread.
fn give_up_overruns(shared: &Arc<WorkerShared>, now: Duration) {
    for overrun in shared.held.overrun(now) {
        let job = &overrun.job;
        tracing::error!(job = %job.id, name = %job.name, timeout = ?job.timeout, "a handler did not return within its timeout and grace; its thread is abandoned and replaced");
        overrun.signal.lose_lease();
        overrun.thread.retire();
        let timeout = job.timeout.unwrap_or_default();
        let failure = Failure::Retry { message: Error::TimedOut { job: job.id, timeout }.to_string(), after: None };
        let (write, ending) = failure_write(&shared.queue, job, failure);
        let writes = vec![write.with_parent(job.parent)];
        let child = job.parent.is_some();
        // The handler has run for at least its timeout and grace.
        let end = RunEnd::new(job.clone(), timeout.saturating_add(shared.timeout_grace), ending);
        let _ = shared.committer.send(Commit::Writes { writes, child, end });
        shared.replace_stuck_thread();
    }
}

/// Warns once per name about ready jobs of this worker's queues that no handler here runs.
fn warn_unhandled_names(shared: &WorkerShared, counts: &[StatusCount], warned: &mut HashSet<(String, String)>) {
    let names = shared.queue.registry.read().names();
    for c in counts {
        let unhandled = c.status == JobStatus::Pending && shared.queues.contains(&c.queue) && !names.contains(&c.name);
        if unhandled && warned.insert((c.queue.clone(), c.name.clone())) {
            tracing::warn!(queue = %c.queue, name = %c.name, ready = c.count, "ready jobs that this worker has no handler for; they wait for a worker that registers the name");
        }
    }
}
