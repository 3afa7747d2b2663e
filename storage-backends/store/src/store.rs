//! The `Store` trait: the whole contract between the engine and a storage backend.

use std::fmt::Debug;
use std::sync::Arc;

use crate::{
    Checkpoint, ClaimRequest, ClaimedJob, Enqueued, JobFilter, JobId, JobRecord, NewJob, Reclaimed, StatusCount,
    StoreError, Timestamp, Write, WriteOutcome,
};

/// Durable storage for jobs and checkpoints.
///
/// # Contract
///
/// - **Atomic**: each method is one transaction. It takes effect entirely or not at all.
/// - **Durable on return**: when a mutating method returns `Ok`, its effect survives a crash of
///   the process (and, depending on the backend's durability setting, of the machine).
/// - **Errors**: an `Err` does not prove that nothing happened (an acknowledgement can be lost
///   after a commit), so every mutating method is safe to repeat: the notes say what a repeat
///   does. [`StoreError::is_retryable`] says whether repeating can help.
/// - **Fencing**: writes about a running job name the worker incarnation that claimed it and
///   apply only while the job is `Running` with `locked_by` equal to that worker.
/// - **Time**: a store never reads a clock; every `now` comes from the caller.
/// - **No panics**: a store reports bad data (for example an unknown status in a row written by
///   another program) as a [`StoreError`], never by panicking.
pub trait Store: Send + Sync + Debug + 'static {
    /// Inserts `jobs` as `Pending` with `attempt = 0`, in order, in one transaction.
    ///
    /// A job whose `unique_key` is held by a live job (pending, running, waiting or paused),
    /// including one inserted earlier in the same call, is not inserted and reports
    /// [`Enqueued::Duplicate`] with the holder's id. Ids are positive, increase with insertion
    /// order and are never reused.
    ///
    /// Repeat: inserts again (unless unique keys deduplicate).
    fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError>;

    /// Claims up to `req.limit` ready jobs and leases them to `req.worker`.
    ///
    /// Ready means `Pending`, in one of `req.queues`, with a name in `req.names` and
    /// `run_at <= req.now`. Jobs are taken in order of priority (highest first), then `run_at`,
    /// then id. Each claimed job becomes `Running` with `attempt + 1`, `locked_by = req.worker`,
    /// `lease_until = req.lease_until` and `started_at = req.now`. The result is in claim order;
    /// [`ClaimedJob::resumed`] says whether each job has checkpoints.
    /// Two concurrent claims (from any process) never return the same job.
    ///
    /// Repeat: claims other jobs; the first claim's jobs stay leased until their lease expires.
    fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError>;

    /// Applies `writes` in order in one transaction, each fenced by `worker`'s lease.
    ///
    /// Returns one outcome per write, in order. A refused write ([`WriteOutcome::LeaseLost`])
    /// does not prevent the others from applying, and a write that ends a job's run (complete,
    /// retry, fail, suspend) makes later writes about that job in the same batch refused.
    /// Terminal writes set `finished_at = now` and clear the lease; every write but a
    /// checkpoint sets `updated_at = now`. A checkpoint write leaves the job's record unchanged
    /// and replaces any checkpoint at the same `(job, index)`.
    ///
    /// Repeat: checkpoints are rewritten with the same value (idempotent); job-ending writes
    /// report `LeaseLost` because the job is no longer running.
    fn commit(&self, worker: &str, now: Timestamp, writes: &[Write]) -> Result<Vec<WriteOutcome>, StoreError>;

    /// Extends the leases of `jobs` held by `worker` to `lease_until`.
    ///
    /// Returns the jobs whose lease could not be renewed because they are no longer running
    /// under `worker` (reclaimed, finished, released): their holder must stop writing.
    ///
    /// Repeat: idempotent.
    fn renew(&self, worker: &str, jobs: &[JobId], lease_until: Timestamp) -> Result<Vec<JobId>, StoreError>;

    /// Returns jobs still running under `worker` to `Pending` without consuming an attempt
    /// (`attempt - 1`), keeping their `run_at`. Jobs not held by `worker` are left alone.
    ///
    /// Returns how many jobs were released. Repeat: idempotent (releases nothing more).
    fn release(&self, worker: &str, jobs: &[JobId], now: Timestamp) -> Result<usize, StoreError>;

    /// Recovers jobs whose holder died: every `Running` job with `lease_until < now` loses its
    /// lease. The lost attempt counts: if it was the last, the job becomes `Failed` with an
    /// error saying the lease expired; otherwise it becomes `Pending` with `run_at = now`.
    ///
    /// Repeat: idempotent (finds nothing more).
    fn reclaim_expired(&self, now: Timestamp) -> Result<Reclaimed, StoreError>;

    /// Makes every `Waiting` job with `wake_at <= now` `Pending` with `run_at = now`.
    ///
    /// Returns how many jobs were woken. Repeat: idempotent.
    fn wake_due(&self, now: Timestamp) -> Result<usize, StoreError>;

    /// Cancels a job that is not running and not finished: `Pending`, `Waiting` or `Paused`
    /// becomes `Cancelled` with `finished_at = now` (its unique key is freed). A running job is
    /// left to its worker.
    ///
    /// Returns whether the job was cancelled. Repeat: `false`.
    fn cancel(&self, job: JobId, now: Timestamp) -> Result<bool, StoreError>;

    /// Gives a `Failed` or `Cancelled` job a fresh set of attempts: `Pending` at
    /// `run_at = now` with `attempt = 0` and `finished_at` cleared; `last_error` and the
    /// checkpoints are kept, so a workflow resumes after its last recorded step. Refused
    /// (`false`) if the job is in another status, or its unique key is now held by another live
    /// job.
    ///
    /// Returns whether the job was requeued. Repeat: `false` (it is pending).
    fn requeue(&self, job: JobId, now: Timestamp) -> Result<bool, StoreError>;

    /// The checkpoints of `job` in index order (empty for an unknown job).
    fn checkpoints(&self, job: JobId) -> Result<Vec<Checkpoint>, StoreError>;

    /// One job, or `None` if no job has this id.
    fn get(&self, job: JobId) -> Result<Option<JobRecord>, StoreError>;

    /// The jobs matching `filter`, in ascending id order, after `filter.offset` matches, at most
    /// `filter.limit`.
    fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError>;

    /// The number of jobs per queue and status, sorted by queue then status. Pairs with no
    /// jobs are left out.
    fn counts(&self) -> Result<Vec<StatusCount>, StoreError>;
}

/// Forwards every method, so `Box<dyn Store>` and `Arc<dyn Store>` are stores too.
macro_rules! forward_store {
    ($ptr:ident) => {
        impl<S: Store + ?Sized> Store for $ptr<S> {
            fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError> {
                (**self).enqueue(jobs)
            }
            fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
                (**self).claim(req)
            }
            fn commit(&self, worker: &str, now: Timestamp, writes: &[Write]) -> Result<Vec<WriteOutcome>, StoreError> {
                (**self).commit(worker, now, writes)
            }
            fn renew(&self, worker: &str, jobs: &[JobId], lease_until: Timestamp) -> Result<Vec<JobId>, StoreError> {
                (**self).renew(worker, jobs, lease_until)
            }
            fn release(&self, worker: &str, jobs: &[JobId], now: Timestamp) -> Result<usize, StoreError> {
                (**self).release(worker, jobs, now)
            }
            fn reclaim_expired(&self, now: Timestamp) -> Result<Reclaimed, StoreError> {
                (**self).reclaim_expired(now)
            }
            fn wake_due(&self, now: Timestamp) -> Result<usize, StoreError> {
                (**self).wake_due(now)
            }
            fn cancel(&self, job: JobId, now: Timestamp) -> Result<bool, StoreError> {
                (**self).cancel(job, now)
            }
            fn requeue(&self, job: JobId, now: Timestamp) -> Result<bool, StoreError> {
                (**self).requeue(job, now)
            }
            fn checkpoints(&self, job: JobId) -> Result<Vec<Checkpoint>, StoreError> {
                (**self).checkpoints(job)
            }
            fn get(&self, job: JobId) -> Result<Option<JobRecord>, StoreError> {
                (**self).get(job)
            }
            fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
                (**self).list(filter)
            }
            fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
                (**self).counts()
            }
        }
    };
}

forward_store!(Box);
forward_store!(Arc);
