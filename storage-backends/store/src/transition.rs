//! The job state machine of `STATE_MACHINE.md`, on one [`JobRecord`].
//!
//! [`MemoryStore`](crate::MemoryStore) and key-value backends are built on these functions; SQL
//! backends express the same transitions as statements, and the conformance suite's
//! differential test checks that they agree.

use std::cmp::Reverse;

use crate::{
    CancelOutcome, ChildOf, ChildrenWait, Claim, ClaimRequest, ClaimedJob, DeleteOutcome, JobId, JobRecord, JobStatus,
    NewJob, PauseOutcome, ReclaimRequest, RequeueOutcome, ResumeOutcome, SignalOutcome, Timestamp, WriteOp,
};

/// The record of a newly enqueued job: `Scheduled` if it is due after its creation, else
/// `Pending`.
pub fn new_record(id: JobId, new: &NewJob) -> JobRecord {
    let mut job = JobRecord::new(id, new.queue.clone(), new.name.clone(), new.args.clone(), new.created_at);
    job.status = initial_status(new.run_at, new.created_at);
    job.priority = new.priority;
    job.run_at = new.run_at;
    job.max_attempts = new.max_attempts;
    job.unique_key.clone_from(&new.unique_key);
    job.timeout = new.timeout;
    job.retry_policy = new.retry_policy;
    job.parent = new.parent;
    job.concurrency_key.clone_from(&new.concurrency_key);
    job
}

/// `Scheduled` for a job due after `now`, else `Pending`.
pub fn initial_status(run_at: Timestamp, now: Timestamp) -> JobStatus {
    if run_at > now {
        JobStatus::Scheduled
    } else {
        JobStatus::Pending
    }
}

/// Whether `job` holds unique key `key` against a new job: it is live, or it was created
/// after `window_start` (the new job's creation minus its unique window).
pub fn holds_key(job: &JobRecord, key: &str, window_start: Option<Timestamp>) -> bool {
    job.unique_key.as_deref() == Some(key)
        && (job.status.is_live() || window_start.is_some_and(|start| job.created_at > start))
}

/// The start of `new`'s unique window, if it has one.
pub fn window_start(new: &NewJob) -> Option<Timestamp> {
    new.unique_window.map(|w| new.created_at.saturating_sub(w))
}

/// Makes a due job of a requested queue pending: a scheduled job whose `run_at` has come, or a
/// waiting job whose `wake_at` has come (its `run_at` becomes the wake time). Returns whether
/// the job changed.
pub fn promote(job: &mut JobRecord, req: &ClaimRequest) -> bool {
    if !req.queues.contains(&job.queue) {
        return false;
    }
    match (job.status, job.wake_at) {
        (JobStatus::Scheduled, _) if job.run_at <= req.now => {}
        (JobStatus::Waiting, Some(at)) if at <= req.now => {
            job.run_at = at;
            clear_wait(job);
        }
        _ => return false,
    }
    job.status = JobStatus::Pending;
    job.updated_at = req.now;
    true
}

/// When a job of a requested queue becomes due, if it is waiting for a time.
pub fn due_time(job: &JobRecord, req: &ClaimRequest) -> Option<Timestamp> {
    if !req.queues.contains(&job.queue) {
        return None;
    }
    match job.status {
        JobStatus::Scheduled => Some(job.run_at),
        JobStatus::Waiting => job.wake_at,
        _ => None,
    }
}

/// Whether `req` may claim `job` (ignoring the limit; due jobs are promoted first).
pub fn is_ready(job: &JobRecord, req: &ClaimRequest) -> bool {
    job.status == JobStatus::Pending
        && req.queues.contains(&job.queue)
        && req.names.contains(&job.name)
        && !req.exclude.contains(&job.id)
}

/// The order ready jobs are claimed in: priority (highest first), then `run_at`, then id.
pub fn claim_order(job: &JobRecord) -> (Reverse<i32>, Timestamp, JobId) {
    (Reverse(job.priority), job.run_at, job.id)
}

/// Leases a ready job to `req.worker` for a new run and describes it for the worker;
/// `resumed` says whether the job has checkpoints.
pub fn claim(job: &mut JobRecord, req: &ClaimRequest, resumed: bool) -> ClaimedJob {
    job.status = JobStatus::Running;
    job.attempt = job.attempt.saturating_add(1);
    job.token.0 = job.token.0.saturating_add(1);
    job.run_started = false;
    job.locked_by = Some(req.worker.clone());
    job.lease_until = Some(req.lease_until);
    job.started_at = Some(req.now);
    job.updated_at = req.now;
    let mut claimed = ClaimedJob::new(job.id, job.token, job.queue.clone(), job.name.clone(), job.args.clone());
    claimed.attempt = job.attempt;
    claimed.max_attempts = job.max_attempts;
    claimed.priority = job.priority;
    claimed.timeout = job.timeout;
    claimed.retry_policy = job.retry_policy;
    claimed.resumed = resumed;
    claimed.confirm_start = job.confirm_start;
    claimed.parent = job.parent;
    claimed.run_at = job.run_at;
    claimed
}

/// Whether run `claim` of `worker` holds `job`'s lease, so that its writes apply.
pub fn holds(job: &JobRecord, worker: &str, claim: Claim) -> bool {
    job.status == JobStatus::Running
        && job.id == claim.job
        && job.token == claim.token
        && job.locked_by.as_deref() == Some(worker)
}

/// What a backend finds in storage when it applies a suspension: whether a signal of the name
/// it waits for is pending, and the state of the children of its fan-in's position (counted
/// after inserting the suspension's own children).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitState {
    /// A signal of the suspension's name is pending for the job.
    pub signal_pending: bool,
    /// The children of the fan-in, with the suspension's rule.
    pub children: Option<ChildrenWait>,
}

impl WaitState {
    /// Whether a suspension that finds this is ready at once instead of waiting: a signal it
    /// waits for is pending, or its fan-in is decided.
    pub fn is_over(&self) -> bool {
        self.signal_pending || self.children.is_some_and(|c| c.is_decided())
    }
}

/// Applies a fenced write (already checked with [`holds`]) to the job's record; `wait` matters
/// only to a suspension. A checkpoint (or a receive) leaves the record alone; storing it, and
/// inserting a suspension's children, is the backend's part.
pub fn apply(job: &mut JobRecord, op: &WriteOp, now: Timestamp, wait: WaitState) {
    if ends_cancelled(job, op) {
        if let WriteOp::Retry { error, .. } | WriteOp::Fail { error } = op {
            job.last_error = Some(error.clone());
        }
        if matches!(op, WriteOp::Suspend { .. }) {
            job.attempt = job.attempt.saturating_sub(1);
        }
        clear_wait(job);
        end_run(job, JobStatus::Cancelled, now);
        return;
    }
    match op {
        WriteOp::Start => job.run_started = true,
        WriteOp::Checkpoint(_) | WriteOp::Receive { .. } => {}
        WriteOp::Complete { result } => {
            job.result = Some(result.clone());
            end_run(job, JobStatus::Completed, now);
        }
        WriteOp::Retry { error, run_at } => {
            job.last_error = Some(error.clone());
            job.run_at = *run_at;
            end_run(job, initial_status(*run_at, now), now);
        }
        WriteOp::Fail { error } => {
            job.last_error = Some(error.clone());
            end_run(job, JobStatus::Failed, now);
        }
        WriteOp::Suspend { wake_at, signal, .. } => {
            job.attempt = job.attempt.saturating_sub(1);
            if wait.is_over() {
                // The wait is over before it began: ready at once, in its place in line.
                clear_wait(job);
                end_run(job, JobStatus::Pending, now);
            } else {
                job.wake_at = *wake_at;
                job.wait_signal.clone_from(signal);
                job.wait_children = wait.children;
                end_run(job, JobStatus::Waiting, now);
            }
        }
    }
}

/// Whether `op` ends a run of `job` as `Cancelled`: a cancel was asked for while it ran, and the
/// run ends other than by completing (a retry, a failure, a suspension). A suspension that ends
/// so inserts no children.
pub fn ends_cancelled(job: &JobRecord, op: &WriteOp) -> bool {
    job.cancel_requested && matches!(op, WriteOp::Retry { .. } | WriteOp::Fail { .. } | WriteOp::Suspend { .. })
}

/// What sending a signal to a job in `status` does: `None` if it is stored, else the refusal.
pub fn signal_refusal(status: JobStatus) -> Option<SignalOutcome> {
    status.is_terminal().then_some(SignalOutcome::Finished(status))
}

/// A signal named `name` was stored for `job`: wakes it if it waits for that name. Returns
/// whether it woke.
pub fn signal_arrives(job: &mut JobRecord, name: &str, now: Timestamp) -> bool {
    let waits = job.status == JobStatus::Waiting && job.wait_signal.as_deref() == Some(name);
    if waits {
        wake(job, now);
    }
    waits
}

/// If `child` has just finished, where it counts: its parent's step and whether it completed.
pub fn finished_child(child: &JobRecord) -> Option<(ChildOf, bool)> {
    let parent = child.parent.filter(|_| child.status.is_terminal())?;
    Some((parent, child.status == JobStatus::Completed))
}

/// Counts a finished child of `parent`'s step `index` (`completed` or not) if the parent waits
/// (or is paused while waiting) for that step's children, and wakes a waiting parent once its
/// fan-in is decided. Returns whether it woke.
pub fn child_finished(parent: &mut JobRecord, index: u32, completed: bool, now: Timestamp) -> bool {
    let Some(wait) = parent.wait_children.as_mut().filter(|w| w.rule.index == index) else { return false };
    if !matches!(parent.status, JobStatus::Waiting | JobStatus::Paused) {
        return false;
    }
    if completed {
        wait.succeeded = wait.succeeded.saturating_add(1);
    } else {
        wait.failed = wait.failed.saturating_add(1);
    }
    parent.updated_at = now;
    let decided = wait.is_decided() && parent.status == JobStatus::Waiting;
    if decided {
        wake(parent, now);
    }
    decided
}

/// Ends a wait: the job is ready now. It keeps its `run_at`, so it is claimed before jobs
/// enqueued while it waited (its own children among them): a fan-out decided early cancels
/// the children still waiting before they run.
fn wake(job: &mut JobRecord, now: Timestamp) {
    job.status = JobStatus::Pending;
    clear_wait(job);
    job.updated_at = now;
}

fn clear_wait(job: &mut JobRecord) {
    job.wake_at = None;
    job.wait_signal = None;
    job.wait_children = None;
}

/// Hands a running job back without charging its attempt: `Pending`, or `Cancelled` if a cancel
/// was asked for while it ran. Returns the new status.
pub fn release(job: &mut JobRecord, now: Timestamp) -> JobStatus {
    job.attempt = job.attempt.saturating_sub(1);
    let status = if job.cancel_requested { JobStatus::Cancelled } else { JobStatus::Pending };
    end_run(job, status, now);
    status
}

/// Whether `req` recovers `job`: it is running and its lease expired, or its holder is dead.
pub fn is_reclaimable(job: &JobRecord, req: &ReclaimRequest) -> bool {
    job.status == JobStatus::Running
        && (job.lease_until.is_some_and(|l| l < req.now)
            || job.locked_by.as_ref().is_some_and(|w| req.dead_workers.contains(w)))
}

/// The order jobs are reclaimed in: lease expiry, then id.
pub fn reclaim_order(job: &JobRecord) -> (Option<Timestamp>, JobId) {
    (job.lease_until, job.id)
}

/// What [`reclaim`] did with one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Charged, pending for another attempt.
    Requeued,
    /// Charged, and that was the last attempt: failed.
    Failed,
    /// Not charged: its start was not recorded.
    Released,
    /// A cancel was asked for while it ran: cancelled.
    Cancelled,
}

/// Takes a lost run's lease away, charging the attempt only if the run's start was recorded.
pub fn reclaim(job: &mut JobRecord, req: &ReclaimRequest) -> Recovery {
    let dead = job.locked_by.as_ref().is_some_and(|w| req.dead_workers.contains(w));
    job.last_error = Some(reclaim_message(job.attempt, job.run_started, dead));
    let now = req.now;
    let recovery = if job.cancel_requested {
        Recovery::Cancelled
    } else {
        recovery(job.run_started, job.attempt, job.max_attempts)
    };
    match recovery {
        Recovery::Cancelled => {
            // Charged only if its start was recorded, as any lost run (the message says which).
            if !job.run_started {
                job.attempt = job.attempt.saturating_sub(1);
            }
            end_run(job, JobStatus::Cancelled, now);
        }
        Recovery::Released => {
            job.attempt = job.attempt.saturating_sub(1);
            job.confirm_start = true;
            job.run_at = now;
            end_run(job, JobStatus::Pending, now);
        }
        Recovery::Failed => end_run(job, JobStatus::Failed, now),
        Recovery::Requeued => {
            job.run_at = now;
            end_run(job, JobStatus::Pending, now);
        }
    }
    recovery
}

/// What [`reclaim`] does with a lost run: released if its start was not recorded, else charged
/// (failed if that was its last attempt).
pub fn recovery(started: bool, attempt: u32, max_attempts: u32) -> Recovery {
    if !started {
        Recovery::Released
    } else if attempt >= max_attempts {
        Recovery::Failed
    } else {
        Recovery::Requeued
    }
}

/// The `last_error` of a reclaimed job: whether its worker died or its lease ran out, and
/// whether the attempt was charged. Shared so every backend words it the same.
pub fn reclaim_message(attempt: u32, started: bool, dead_worker: bool) -> String {
    let what =
        if dead_worker { "its worker process died" } else { "its lease expired (the worker stopped or stalled)" };
    if started {
        format!("attempt {attempt} was lost: {what} while the handler ran")
    } else {
        format!("attempt {attempt} was lost before its handler's start was recorded: {what}; not charged")
    }
}

/// What cancelling a job in `status` would do: [`CancelOutcome::Cancelled`] if it is waiting to
/// run.
pub fn cancel_outcome(status: JobStatus) -> CancelOutcome {
    match status {
        JobStatus::Running => CancelOutcome::Requested,
        s if s.is_terminal() => CancelOutcome::Finished(s),
        _ => CancelOutcome::Cancelled,
    }
}

/// Cancels a job: one waiting to run is cancelled now; a running one is asked to stop
/// (`cancel_requested`), and ends `Cancelled` when its run ends unless it completes.
pub fn cancel(job: &mut JobRecord, now: Timestamp) {
    if job.status == JobStatus::Running {
        if !job.cancel_requested {
            job.cancel_requested = true;
            job.updated_at = now;
        }
        return;
    }
    clear_wait(job);
    end_run(job, JobStatus::Cancelled, now);
}

/// What pausing a job in `status` does: [`PauseOutcome::Paused`] if it is waiting to run.
pub fn pause_outcome(status: JobStatus) -> PauseOutcome {
    match status {
        JobStatus::Scheduled | JobStatus::Pending | JobStatus::Waiting => PauseOutcome::Paused,
        JobStatus::Paused => PauseOutcome::AlreadyPaused,
        JobStatus::Running => PauseOutcome::Running,
        s => PauseOutcome::Finished(s),
    }
}

/// Pauses a job waiting to run. A paused workflow keeps its wait (time, signal, children): its
/// children are still counted, but nothing wakes it until it is resumed.
pub fn pause(job: &mut JobRecord, now: Timestamp) {
    job.status = JobStatus::Paused;
    job.updated_at = now;
}

/// Resumes a paused job and returns its new status: `Waiting` if it was waiting and its wait is
/// not over (`signal_pending`: a signal it waits for arrived meanwhile), `Pending` if the wait
/// is over, else `Scheduled` or `Pending` by its `run_at`. A wait whose time has passed becomes
/// pending at the next claim, as any other.
pub fn resume(job: &mut JobRecord, now: Timestamp, signal_pending: bool) -> ResumeOutcome {
    if job.status != JobStatus::Paused {
        return ResumeOutcome::NotPaused(job.status);
    }
    let waits = job.wake_at.is_some() || job.wait_signal.is_some() || job.wait_children.is_some();
    let over = (signal_pending && job.wait_signal.is_some()) || job.wait_children.is_some_and(|c| c.is_decided());
    job.status = if over {
        clear_wait(job);
        JobStatus::Pending
    } else if waits {
        JobStatus::Waiting
    } else {
        initial_status(job.run_at, now)
    };
    job.updated_at = now;
    ResumeOutcome::Resumed(job.status)
}

/// The claim request `req` without the queues in `paused`: a paused queue is not claimed from,
/// its due jobs are not promoted, and its due times are not reported.
pub fn unpaused(req: &ClaimRequest, paused: &std::collections::BTreeSet<String>) -> ClaimRequest {
    let mut req = req.clone();
    req.queues.retain(|q| !paused.contains(q));
    req
}

/// Whether a job in `status` may be deleted, given whether its parent (if it has one) is live.
pub fn delete_outcome(job: &JobRecord, parent_live: bool) -> DeleteOutcome {
    match job.parent {
        _ if job.status.is_live() => DeleteOutcome::NotFinished(job.status),
        Some(link) if parent_live => DeleteOutcome::ParentLive(link.parent),
        _ => DeleteOutcome::Deleted,
    }
}

/// Why a job in `status` cannot be requeued, or `None` if [`requeue`] applies (unique keys
/// aside): only a job that ended without success can be.
pub fn requeue_refusal(status: JobStatus) -> Option<RequeueOutcome> {
    match status {
        JobStatus::Failed | JobStatus::Cancelled => None,
        JobStatus::Completed => Some(RequeueOutcome::Completed),
        other => Some(RequeueOutcome::NotFinished(other)),
    }
}

/// Makes a failed or cancelled job pending again with all its attempts.
pub fn requeue(job: &mut JobRecord, now: Timestamp) {
    job.status = JobStatus::Pending;
    job.attempt = 0;
    job.confirm_start = false;
    job.run_at = now;
    job.finished_at = None;
    job.updated_at = now;
}

/// The status `job` is counted under at `now`: a due scheduled job is ready (`Pending`).
pub fn counted_status(job: &JobRecord, now: Timestamp) -> JobStatus {
    match job.status {
        JobStatus::Scheduled if job.run_at <= now => JobStatus::Pending,
        s => s,
    }
}

fn end_run(job: &mut JobRecord, status: JobStatus, now: Timestamp) {
    job.status = status;
    job.run_started = false;
    job.cancel_requested = false;
    job.locked_by = None;
    job.lease_until = None;
    job.updated_at = now;
    if status.is_terminal() {
        job.finished_at = Some(now);
    }
}
