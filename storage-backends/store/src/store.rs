//! The `Store` trait: the whole contract between the engine and a storage backend.

use std::fmt::Debug;
use std::sync::Arc;

use crate::{
    CancelOutcome, Capabilities, Checkpoint, Claim, ClaimRequest, Claimed, DeleteOutcome, Enqueued, FireOutcome,
    JobFilter, JobId, JobRecord, Limit, LimitScope, NewJob, PauseOutcome, PurgeRequest, ReclaimRequest, Reclaimed,
    Renewal, RequeueOutcome, ResumeOutcome, ScheduleRecord, Signal, SignalOutcome, StatusCount, StoreError, Timestamp,
    Write, WriteOutcome,
};

/// Durable storage for jobs and checkpoints.
///
/// # Contract
///
/// - **State machine**: every status change follows `STATE_MACHINE.md` beside this crate's
///   sources; [`transition`](crate::transition) implements it on one record, and the
///   conformance suite's differential test holds every backend to [`MemoryStore`](crate::MemoryStore).
/// - **Atomic**: each method is one transaction. It takes effect entirely or not at all.
/// - **Durable on return**: when a mutating method returns `Ok`, its effect survives a crash of
///   the process (and, depending on the backend's durability setting, of the machine).
/// - **Errors**: an `Err` does not prove that nothing happened (an acknowledgement can be lost
///   after a commit), so every mutating method is safe to repeat: the notes say what a repeat
///   does. [`StoreError::is_retryable`] says whether repeating can help.
/// - **Fencing**: writes about a running job name the run ([`Claim`]: job and claim token) and
///   the worker that claimed it; they apply only while the job is `Running` with `locked_by`
///   equal to that worker and the claim's token current.
/// - **Attempts**: a claim charges an attempt; a run that ends without being charged (released,
///   suspended, lost before its handler's start was recorded) gives it back. A wake-up or a
///   promotion from `Scheduled` never charges one.
/// - **Time**: a store never reads a clock; every `now` comes from the caller.
/// - **No panics**: a store reports bad data (for example an unknown status in a row written by
///   another program) as a [`StoreError`], never by panicking.
pub trait Store: Send + Sync + Debug + 'static {
    /// What this store can do. Constant for the life of the store.
    fn capabilities(&self) -> Capabilities;

    /// The storage's name on this machine: the same for every process here that opens the
    /// same storage (for example the canonical path of a database file), or `None`. Workers on
    /// one machine meet under this name to tell a dead process from a slow one and recover its
    /// jobs at once. Default: `None` (jobs of dead workers wait for their leases to expire).
    fn local_identity(&self) -> Option<String> {
        None
    }

    /// Inserts `jobs`, in order, in one transaction, with `attempt = 0` and token 0: `Scheduled`
    /// if `run_at` is after `created_at`, else `Pending`.
    ///
    /// A job with a `unique_key` is not inserted, and reports [`Enqueued::Duplicate`] with the
    /// holder's id, if a live job (any status but completed, failed, cancelled) holds the key,
    /// including one inserted earlier in the same call; or, with a `unique_window`, if a job of
    /// any status holding the key was created less than the window before the new job's
    /// `created_at` (the newest such job is named). Ids are positive, increase with insertion
    /// order and are never reused.
    ///
    /// Repeat: inserts again (unless unique keys deduplicate).
    ///
    /// # Errors
    ///
    /// [`Busy`](crate::StoreErrorKind::Busy), [`Full`](crate::StoreErrorKind::Full) or
    /// [`Io`](crate::StoreErrorKind::Io) (retryable; nothing is inserted unless the acknowledgement
    /// was lost), [`InvalidInput`](crate::StoreErrorKind::InvalidInput) for a job the backend
    /// cannot store.
    fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError>;

    /// Claims up to `req.limit` ready jobs and leases them to `req.worker`.
    ///
    /// First, in the requested queues, every `Scheduled` job with `run_at <= req.now` becomes
    /// `Pending`, and every `Waiting` job with `wake_at <= req.now` becomes `Pending` with
    /// `run_at = wake_at` (both with `updated_at = req.now`). Paused queues
    /// ([`pause_queue`](Self::pause_queue)) are left out of the request, read in the same
    /// transaction: nothing of theirs is promoted, claimed or reported due. Then the ready jobs (`Pending`, in
    /// one of `req.queues`, with a name in `req.names`, not in `req.exclude`) are taken in
    /// order of priority (highest first), then `run_at`, then id. Each becomes `Running` with
    /// `attempt + 1`, `token + 1`, `locked_by = req.worker`, `lease_until = req.lease_until`,
    /// `started_at = updated_at = req.now` and `run_started = false`. The jobs come back in
    /// claim order; [`ClaimedJob::resumed`](crate::ClaimedJob::resumed) says whether each has
    /// checkpoints.
    ///
    /// Limits ([`set_limit`](Self::set_limit)): a ready job is skipped (not claimed, not
    /// charged; later ones in claim order may be claimed) if a limit whose scope covers it
    /// holds it back: `max_running` and the `Running` jobs it covers (with the same key if
    /// `by_key`; jobs claimed earlier in this call count) already reach it, or `per_second`
    /// and the claims counted in the current one-second window ([`window_of`]`(req.now)`) of
    /// its key reach it. Each claimed job adds one to the window count of every per-second
    /// limit covering it (a count kept for any other window starts again from 0).
    ///
    /// [`window_of`]: crate::window_of
    ///
    /// If fewer than `limit` were claimed, [`Claimed::next_due`] is the earliest `run_at` of a
    /// scheduled job or `wake_at` of a waiting job in the requested queues (after the
    /// promotion), or the end of the current window if a per-second limit held a job back;
    /// otherwise `None`. A claim with `limit == 0` does nothing. Two
    /// concurrent claims (from any process) never return the same job.
    ///
    /// Repeat: claims other jobs; the first claim's jobs stay leased until their lease expires.
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing; the jobs of a claim whose
    /// acknowledgement was lost stay leased until their lease expires.
    fn claim(&self, req: &ClaimRequest) -> Result<Claimed, StoreError>;

    /// Applies `writes` in order in one transaction, each fenced by its run's lease.
    ///
    /// Returns one outcome per write, in order. A refused write ([`WriteOutcome::LeaseLost`])
    /// does not prevent the others from applying, and a write that ends a run (complete, retry,
    /// fail, suspend) makes later writes about that run in the same batch refused. A run whose
    /// job was asked to cancel ([`cancel`](Self::cancel)) and that ends other than by completing
    /// (retry, fail, suspend) ends `Cancelled` (a retry's or failure's error kept as
    /// `last_error`; a suspension inserts no children; checkpoints written earlier in the batch
    /// stay). Terminal
    /// writes set `finished_at = now`; every write that ends a run clears the lease and sets
    /// `updated_at = now`. A start sets `run_started` and nothing else; a checkpoint leaves the
    /// job's record unchanged and replaces any checkpoint at the same `(job, index)`; a receive
    /// also deletes the signal it names (if it is the job's). A suspension inserts its
    /// children, then waits (see [`WriteOp::Suspend`](crate::WriteOp::Suspend)). A job with a
    /// parent that ends here is counted by its parent's fan-in (which may wake the parent).
    ///
    /// Repeat: starts, checkpoints and receives are rewritten with the same value (idempotent);
    /// run-ending writes report `LeaseLost` because the run is over (so children are inserted
    /// once).
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing (the writes may or may not have
    /// applied: repeating them is safe).
    fn commit(&self, worker: &str, now: Timestamp, writes: &[Write]) -> Result<Vec<WriteOutcome>, StoreError>;

    /// Extends the leases of `claims` held by `worker` to `lease_until`.
    ///
    /// Returns the runs whose lease could not be renewed because they no longer hold their job
    /// (reclaimed, finished, released, claimed again: their holder must stop writing), and the
    /// runs renewed whose job was asked to cancel (their handler should stop), each in the
    /// order of `claims`.
    ///
    /// Repeat: idempotent.
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing.
    fn renew(&self, worker: &str, claims: &[Claim], lease_until: Timestamp) -> Result<Renewal, StoreError>;

    /// Returns runs still holding their job under `worker` to `Pending` without charging the
    /// attempt (`attempt - 1`), keeping their `run_at`; a run whose job was asked to cancel ends
    /// `Cancelled` instead (a cancelled child is counted by its parent's fan-in). Others are
    /// left alone.
    ///
    /// Returns how many jobs were released. Repeat: idempotent (releases nothing more).
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing.
    fn release(&self, worker: &str, claims: &[Claim], now: Timestamp) -> Result<usize, StoreError>;

    /// Recovers jobs whose holder died or stalled: every `Running` job with
    /// `lease_until < req.now`, or held by one of `req.dead_workers`, at most `req.limit` of
    /// them in order of `lease_until` then id.
    ///
    /// A run whose start was recorded (`run_started`) is charged: if it was the last attempt
    /// the job becomes `Failed` (with `finished_at = now`), else `Pending` with `run_at = now`.
    /// A run whose start was not recorded is not charged: `Pending` with `run_at = now`,
    /// `attempt - 1` and `confirm_start` set, so that its next run records its start first.
    /// A run whose job was asked to cancel ends `Cancelled`. Either way `last_error` says what
    /// happened ([`transition::reclaim_message`]). A child that fails or is cancelled here is
    /// counted by its parent's fan-in.
    ///
    /// [`transition::reclaim_message`]: crate::transition::reclaim_message
    ///
    /// Repeat: idempotent (finds nothing more).
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing.
    fn reclaim(&self, req: &ReclaimRequest) -> Result<Reclaimed, StoreError>;

    /// Cancels a job: `Scheduled`, `Pending`, `Waiting` or `Paused` becomes `Cancelled` with
    /// `finished_at = now` (its unique key is freed); a `Running` job gets `cancel_requested`
    /// (and `updated_at = now` the first time), reported by [`renew`](Self::renew), and ends
    /// `Cancelled` when its run ends unless it completes ([`CancelOutcome::Requested`]). The same
    /// happens to every descendant (children, their children…) not finished, in the same
    /// transaction. A cancelled child is counted by its parent's fan-in.
    ///
    /// Repeat: [`CancelOutcome::Finished`], or `Requested` again while it runs.
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing.
    fn cancel(&self, job: JobId, now: Timestamp) -> Result<CancelOutcome, StoreError>;

    /// Cancels each of `jobs` as [`cancel`](Self::cancel) does, in order, and returns one
    /// outcome per job. Each job's cancel is atomic; memory and SQLite do the whole call in one
    /// transaction (a fan-out decided early cancels thousands of children with one call).
    ///
    /// Repeat: [`CancelOutcome::Finished`] for the jobs cancelled the first time.
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing (some jobs may have been
    /// cancelled where the backend does not use one transaction).
    fn cancel_many(&self, jobs: &[JobId], now: Timestamp) -> Result<Vec<CancelOutcome>, StoreError>;

    /// Gives a `Failed` or `Cancelled` job a fresh set of attempts: `Pending` at
    /// `run_at = now` with `attempt = 0`, `confirm_start` cleared and `finished_at` cleared;
    /// `last_error` and the checkpoints are kept, so a workflow resumes after its last recorded
    /// step. Refused if another live job holds its unique key.
    ///
    /// Repeat: [`RequeueOutcome::NotFinished`] (it is pending).
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing.
    fn requeue(&self, job: JobId, now: Timestamp) -> Result<RequeueOutcome, StoreError>;

    /// Gives each of `jobs` a fresh set of attempts as [`requeue`](Self::requeue) does, in order,
    /// and returns one outcome per job; in one transaction where the backend can (as
    /// [`cancel_many`](Self::cancel_many)).
    ///
    /// Repeat: [`RequeueOutcome::NotFinished`] for the jobs requeued the first time.
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing.
    fn requeue_many(&self, jobs: &[JobId], now: Timestamp) -> Result<Vec<RequeueOutcome>, StoreError>;

    /// Pauses a job waiting to run: `Scheduled`, `Pending` or `Waiting` becomes `Paused`
    /// (`updated_at = now`), keeping `run_at` and its wait (`wake_at`, `wait_signal`,
    /// `wait_children`). A paused job is never claimed nor woken; its children are still counted
    /// by its fan-in, and signals sent to it are stored.
    ///
    /// Repeat: [`PauseOutcome::AlreadyPaused`].
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing.
    fn pause(&self, job: JobId, now: Timestamp) -> Result<PauseOutcome, StoreError>;

    /// Resumes a paused job ([`transition::resume`]): back to `Waiting` if it waits and its
    /// wait is not over, `Pending` if it is over (a signal it waits for is pending, or its
    /// fan-in is decided; the wait is cleared), else `Scheduled` or `Pending` by `run_at`;
    /// `updated_at = now`.
    ///
    /// [`transition::resume`]: crate::transition::resume
    ///
    /// Repeat: [`ResumeOutcome::NotPaused`].
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing.
    fn resume(&self, job: JobId, now: Timestamp) -> Result<ResumeOutcome, StoreError>;

    /// Pauses (`paused = true`) or resumes queue `queue`, durably, for every process sharing the
    /// storage: no claim takes a job of a paused queue (running jobs finish). Any name may be
    /// paused, also one with no jobs yet.
    ///
    /// Repeat: idempotent.
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing.
    fn pause_queue(&self, queue: &str, paused: bool, now: Timestamp) -> Result<(), StoreError>;

    /// The paused queues, sorted by name.
    ///
    /// # Errors
    ///
    /// A retryable error if the storage fails.
    fn paused_queues(&self) -> Result<Vec<String>, StoreError>;

    /// Deletes at most `req.limit` jobs in `req.status` whose `finished_at` is before
    /// `req.finished_before`, oldest `finished_at` first (then id), each with its checkpoints
    /// and signals, in one transaction; a job whose parent exists and is live is skipped (the
    /// parent may still read it). Returns how many were deleted. For retention: call it in small
    /// batches.
    ///
    /// Repeat: deletes the next ones.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](crate::StoreErrorKind::InvalidInput) if `req.status` is live; a
    /// retryable error if the storage is busy, full or failing.
    fn purge(&self, req: &PurgeRequest) -> Result<usize, StoreError>;

    /// Deletes each of `jobs` that has finished and whose parent (if it exists) has too, with
    /// its checkpoints and signals, in one transaction; one outcome per job, in order.
    ///
    /// Repeat: [`DeleteOutcome::NotFound`].
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing.
    fn delete(&self, jobs: &[JobId]) -> Result<Vec<DeleteOutcome>, StoreError>;

    /// Takes or keeps the lease of `role` for `holder` until `until`: granted (`true`) if nobody
    /// holds it, `holder` does, or its holder's lease ended before `now`. For work one process
    /// of a fleet does at a time (retention, schedules). Durable and shared by every process
    /// using the storage.
    ///
    /// Repeat: idempotent (extends the lease).
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing.
    fn lead(&self, role: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool, StoreError>;

    /// Sets the limit of `limit.scope`, replacing the one it had; claims of every process
    /// sharing the storage follow it from their next call. Window counts are kept.
    ///
    /// Repeat: idempotent.
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing.
    fn set_limit(&self, limit: &Limit) -> Result<(), StoreError>;

    /// Removes the limit of `scope`; `true` if there was one. Its window counts are kept (a
    /// limit set again within the same window goes on counting).
    ///
    /// Repeat: `false`.
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing.
    fn remove_limit(&self, scope: &LimitScope) -> Result<bool, StoreError>;

    /// Every limit, sorted by scope (queues first, then names, each by name).
    ///
    /// # Errors
    ///
    /// A retryable error if the storage fails.
    fn limits(&self) -> Result<Vec<Limit>, StoreError>;

    /// Stores `schedule` as given if no schedule has its name; otherwise replaces that one's
    /// `spec`, `template`, `next_fire` and `updated_at` with `schedule`'s, keeping its
    /// `created_at`, `last_fire` and `last_job`.
    ///
    /// Repeat: idempotent.
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing;
    /// [`InvalidInput`](crate::StoreErrorKind::InvalidInput) for a schedule the backend cannot store.
    fn put_schedule(&self, schedule: &ScheduleRecord) -> Result<(), StoreError>;

    /// Every schedule, sorted by name.
    ///
    /// # Errors
    ///
    /// [`Corrupt`](crate::StoreErrorKind::Corrupt) for a schedule that cannot be read back; a
    /// retryable error if the storage fails.
    fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError>;

    /// Deletes schedule `name`; `true` if it existed. Jobs it inserted are left alone.
    ///
    /// Repeat: `false`.
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing.
    fn remove_schedule(&self, name: &str) -> Result<bool, StoreError>;

    /// Fires schedule `name` for its fire due at `due`, in one transaction: only if its
    /// `next_fire` is still `due` (so that, across processes, each due time fires once), it
    /// enqueues `job` as [`enqueue`](Self::enqueue) does, then sets `last_fire = due`,
    /// `last_job` (the new job, or `None` if its unique key was held), `next_fire = next` and
    /// `updated_at = now`.
    ///
    /// Repeat: [`FireOutcome::Moved`].
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing (the fire may or may not have
    /// happened: repeating it is safe).
    fn fire(
        &self,
        name: &str,
        due: Timestamp,
        next: Timestamp,
        job: &NewJob,
        now: Timestamp,
    ) -> Result<FireOutcome, StoreError>;

    /// Sends signal `name` with `payload` (JSON) to `job`: stored durably, after every signal
    /// sent before it, until a run of the job consumes it
    /// ([`WriteOp::Receive`](crate::WriteOp::Receive)). If the job is `Waiting` for this name,
    /// it becomes `Pending` in the same transaction, keeping its `run_at` (its place in line).
    /// A finished job or an unknown id stores nothing.
    ///
    /// Repeat: stores the signal again.
    ///
    /// # Errors
    ///
    /// A retryable error if the storage is busy, full or failing;
    /// [`InvalidInput`](crate::StoreErrorKind::InvalidInput) for a signal the backend cannot store.
    fn signal(&self, job: JobId, name: &str, payload: &[u8], now: Timestamp) -> Result<SignalOutcome, StoreError>;

    /// The signals sent to `job` and not consumed yet, oldest first (empty for an unknown job).
    ///
    /// # Errors
    ///
    /// [`Corrupt`](crate::StoreErrorKind::Corrupt) for a signal that cannot be read back; a
    /// retryable error if the storage fails.
    fn signals(&self, job: JobId) -> Result<Vec<Signal>, StoreError>;

    /// Up to `limit` checkpoints of `job` with an index of at least `from`, in index order
    /// (empty for an unknown job).
    ///
    /// # Errors
    ///
    /// [`Corrupt`](crate::StoreErrorKind::Corrupt) for a checkpoint that cannot be read back; a
    /// retryable error if the storage fails.
    fn checkpoints(&self, job: JobId, from: u32, limit: usize) -> Result<Vec<Checkpoint>, StoreError>;

    /// One job, or `None` if no job has this id.
    ///
    /// # Errors
    ///
    /// [`Corrupt`](crate::StoreErrorKind::Corrupt) for a record that cannot be read back; a
    /// retryable error if the storage fails.
    fn get(&self, job: JobId) -> Result<Option<JobRecord>, StoreError>;

    /// The jobs matching `filter`, in ascending id order, after `filter.offset` matches, at most
    /// `filter.limit`.
    ///
    /// # Errors
    ///
    /// [`Corrupt`](crate::StoreErrorKind::Corrupt) for a record that cannot be read back; a
    /// retryable error if the storage fails.
    fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError>;

    /// The number of jobs per queue, name and status, sorted by queue, name, then status.
    /// A `Scheduled` job due at `now` counts as `Pending`. Groups with no jobs are left out.
    ///
    /// # Errors
    ///
    /// [`Corrupt`](crate::StoreErrorKind::Corrupt) for a record that cannot be read back; a
    /// retryable error if the storage fails.
    fn counts(&self, now: Timestamp) -> Result<Vec<StatusCount>, StoreError>;
}

/// Forwards every method, so `Box<dyn Store>` and `Arc<dyn Store>` are stores too.
macro_rules! forward_store {
    ($ptr:ident) => {
        impl<S: Store + ?Sized> Store for $ptr<S> {
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            fn local_identity(&self) -> Option<String> {
                (**self).local_identity()
            }
            fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError> {
                (**self).enqueue(jobs)
            }
            fn claim(&self, req: &ClaimRequest) -> Result<Claimed, StoreError> {
                (**self).claim(req)
            }
            fn commit(&self, worker: &str, now: Timestamp, writes: &[Write]) -> Result<Vec<WriteOutcome>, StoreError> {
                (**self).commit(worker, now, writes)
            }
            fn renew(&self, worker: &str, claims: &[Claim], lease_until: Timestamp) -> Result<Renewal, StoreError> {
                (**self).renew(worker, claims, lease_until)
            }
            fn release(&self, worker: &str, claims: &[Claim], now: Timestamp) -> Result<usize, StoreError> {
                (**self).release(worker, claims, now)
            }
            fn reclaim(&self, req: &ReclaimRequest) -> Result<Reclaimed, StoreError> {
                (**self).reclaim(req)
            }
            fn cancel(&self, job: JobId, now: Timestamp) -> Result<CancelOutcome, StoreError> {
                (**self).cancel(job, now)
            }
            fn cancel_many(&self, jobs: &[JobId], now: Timestamp) -> Result<Vec<CancelOutcome>, StoreError> {
                (**self).cancel_many(jobs, now)
            }
            fn requeue(&self, job: JobId, now: Timestamp) -> Result<RequeueOutcome, StoreError> {
                (**self).requeue(job, now)
            }
            fn requeue_many(&self, jobs: &[JobId], now: Timestamp) -> Result<Vec<RequeueOutcome>, StoreError> {
                (**self).requeue_many(jobs, now)
            }
            fn pause(&self, job: JobId, now: Timestamp) -> Result<PauseOutcome, StoreError> {
                (**self).pause(job, now)
            }
            fn resume(&self, job: JobId, now: Timestamp) -> Result<ResumeOutcome, StoreError> {
                (**self).resume(job, now)
            }
            fn pause_queue(&self, queue: &str, paused: bool, now: Timestamp) -> Result<(), StoreError> {
                (**self).pause_queue(queue, paused, now)
            }
            fn paused_queues(&self) -> Result<Vec<String>, StoreError> {
                (**self).paused_queues()
            }
            fn purge(&self, req: &PurgeRequest) -> Result<usize, StoreError> {
                (**self).purge(req)
            }
            fn delete(&self, jobs: &[JobId]) -> Result<Vec<DeleteOutcome>, StoreError> {
                (**self).delete(jobs)
            }
            fn lead(&self, role: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool, StoreError> {
                (**self).lead(role, holder, now, until)
            }
            fn set_limit(&self, limit: &Limit) -> Result<(), StoreError> {
                (**self).set_limit(limit)
            }
            fn remove_limit(&self, scope: &LimitScope) -> Result<bool, StoreError> {
                (**self).remove_limit(scope)
            }
            fn limits(&self) -> Result<Vec<Limit>, StoreError> {
                (**self).limits()
            }
            fn put_schedule(&self, schedule: &ScheduleRecord) -> Result<(), StoreError> {
                (**self).put_schedule(schedule)
            }
            fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
                (**self).schedules()
            }
            fn remove_schedule(&self, name: &str) -> Result<bool, StoreError> {
                (**self).remove_schedule(name)
            }
            fn fire(
                &self,
                name: &str,
                due: Timestamp,
                next: Timestamp,
                job: &NewJob,
                now: Timestamp,
            ) -> Result<FireOutcome, StoreError> {
                (**self).fire(name, due, next, job, now)
            }
            fn signal(
                &self,
                job: JobId,
                name: &str,
                payload: &[u8],
                now: Timestamp,
            ) -> Result<SignalOutcome, StoreError> {
                (**self).signal(job, name, payload, now)
            }
            fn signals(&self, job: JobId) -> Result<Vec<Signal>, StoreError> {
                (**self).signals(job)
            }
            fn checkpoints(&self, job: JobId, from: u32, limit: usize) -> Result<Vec<Checkpoint>, StoreError> {
                (**self).checkpoints(job, from, limit)
            }
            fn get(&self, job: JobId) -> Result<Option<JobRecord>, StoreError> {
                (**self).get(job)
            }
            fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
                (**self).list(filter)
            }
            fn counts(&self, now: Timestamp) -> Result<Vec<StatusCount>, StoreError> {
                (**self).counts(now)
            }
        }
    };
}

forward_store!(Box);
forward_store!(Arc);
