//! The job state machine on one [`JobRecord`], for backends that store whole records
//! (key-value stores). [`MemoryStore`](crate::MemoryStore) is built on it; SQL backends express
//! the same transitions as statements.

use crate::{lease_expired_message, ClaimRequest, ClaimedJob, JobId, JobRecord, JobStatus, NewJob, Timestamp, Write};

/// The record of a newly enqueued job.
pub fn new_record(id: JobId, new: &NewJob) -> JobRecord {
    JobRecord {
        id,
        queue: new.queue.clone(),
        name: new.name.clone(),
        args: new.args.clone(),
        status: JobStatus::Pending,
        priority: new.priority,
        run_at: new.run_at,
        attempt: 0,
        max_attempts: new.max_attempts,
        unique_key: new.unique_key.clone(),
        timeout: new.timeout,
        retry_policy: new.retry_policy,
        locked_by: None,
        lease_until: None,
        wake_at: None,
        last_error: None,
        result: None,
        created_at: new.created_at,
        started_at: None,
        finished_at: None,
        updated_at: new.created_at,
    }
}

/// Whether `req` may claim `job` (ignoring the limit).
pub fn is_ready(job: &JobRecord, req: &ClaimRequest) -> bool {
    job.status == JobStatus::Pending
        && job.run_at <= req.now
        && req.queues.contains(&job.queue)
        && req.names.contains(&job.name)
}

/// Whether `worker` holds `job`'s lease, so that its writes apply.
pub fn is_held_by(job: &JobRecord, worker: &str) -> bool {
    job.status == JobStatus::Running && job.locked_by.as_deref() == Some(worker)
}

/// Leases a pending job to `req.worker` and describes it for the worker; `resumed` says
/// whether the job has checkpoints.
pub fn claim(job: &mut JobRecord, req: &ClaimRequest, resumed: bool) -> ClaimedJob {
    job.status = JobStatus::Running;
    job.attempt = job.attempt.saturating_add(1);
    job.locked_by = Some(req.worker.clone());
    job.lease_until = Some(req.lease_until);
    job.started_at = Some(req.now);
    job.updated_at = req.now;
    ClaimedJob {
        id: job.id,
        queue: job.queue.clone(),
        name: job.name.clone(),
        args: job.args.clone(),
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        priority: job.priority,
        timeout: job.timeout,
        retry_policy: job.retry_policy,
        resumed,
    }
}

/// Applies a fenced write (already checked with [`is_held_by`]) to the job's record. A
/// checkpoint leaves the record alone; storing it is the backend's part.
pub fn apply(job: &mut JobRecord, write: &Write, now: Timestamp) {
    match write {
        Write::Checkpoint { .. } => {}
        Write::Complete { result, .. } => {
            job.result = Some(result.clone());
            end_run(job, JobStatus::Completed, now);
        }
        Write::Retry { error, run_at, .. } => {
            job.last_error = Some(error.clone());
            job.run_at = *run_at;
            end_run(job, JobStatus::Pending, now);
        }
        Write::Fail { error, .. } => {
            job.last_error = Some(error.clone());
            end_run(job, JobStatus::Failed, now);
        }
        Write::Suspend { wake_at, .. } => {
            job.wake_at = *wake_at;
            end_run(job, JobStatus::Waiting, now);
        }
    }
}

/// Hands a running job back without consuming its attempt.
pub fn release(job: &mut JobRecord, now: Timestamp) {
    job.attempt = job.attempt.saturating_sub(1);
    end_run(job, JobStatus::Pending, now);
}

/// Whether a running job's lease has expired at `now`.
pub fn is_expired(job: &JobRecord, now: Timestamp) -> bool {
    job.status == JobStatus::Running && job.lease_until.is_some_and(|l| l < now)
}

/// Takes an expired lease away: the job fails if that was its last attempt (returns `true`),
/// else it is pending again at `now`.
pub fn reclaim(job: &mut JobRecord, now: Timestamp) -> bool {
    job.last_error = Some(lease_expired_message(job.attempt));
    if job.attempt >= job.max_attempts {
        end_run(job, JobStatus::Failed, now);
        true
    } else {
        job.run_at = now;
        end_run(job, JobStatus::Pending, now);
        false
    }
}

/// Whether a waiting job is due at `now`.
pub fn is_due(job: &JobRecord, now: Timestamp) -> bool {
    job.status == JobStatus::Waiting && job.wake_at.is_some_and(|w| w <= now)
}

/// Makes a due waiting job pending at `now`.
pub fn wake(job: &mut JobRecord, now: Timestamp) {
    job.status = JobStatus::Pending;
    job.run_at = now;
    job.wake_at = None;
    job.updated_at = now;
}

/// Whether [`cancel`] applies: the job is waiting to run.
pub fn is_cancellable(job: &JobRecord) -> bool {
    matches!(job.status, JobStatus::Pending | JobStatus::Waiting | JobStatus::Paused)
}

/// Cancels a job that is waiting to run.
pub fn cancel(job: &mut JobRecord, now: Timestamp) {
    job.wake_at = None;
    end_run(job, JobStatus::Cancelled, now);
}

/// Whether [`requeue`] applies (ignoring unique keys): the job ended without success.
pub fn is_requeueable(job: &JobRecord) -> bool {
    matches!(job.status, JobStatus::Failed | JobStatus::Cancelled)
}

/// Makes a failed or cancelled job pending again with all its attempts.
pub fn requeue(job: &mut JobRecord, now: Timestamp) {
    job.status = JobStatus::Pending;
    job.attempt = 0;
    job.run_at = now;
    job.finished_at = None;
    job.updated_at = now;
}

fn end_run(job: &mut JobRecord, status: JobStatus, now: Timestamp) {
    job.status = status;
    job.locked_by = None;
    job.lease_until = None;
    job.updated_at = now;
    if status.is_terminal() {
        job.finished_at = Some(now);
    }
}
