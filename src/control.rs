//! The operator's actions: cancel (also a running job), requeue, pause and resume jobs and
//! queues, and delete finished jobs.

use durable_jobs_store::{
    CancelOutcome, DeleteOutcome, JobFilter, JobId, JobStatus, PauseOutcome, RequeueOutcome, ResumeOutcome,
};

use crate::{names, Error, Queue};

/// Jobs read per store call when acting on a filter.
const PAGE: usize = 500;

/// What [`Queue::requeue_all`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequeueReport {
    /// Jobs pending again with all their attempts.
    pub requeued: usize,
    /// Jobs matched but left as they were (not failed or cancelled, or their unique key is
    /// held by another live job).
    pub skipped: usize,
}

impl Queue {
    /// Cancels a job and says what happened. A job waiting to run (scheduled, ready, waiting or
    /// paused) is cancelled at once. A running job is asked to stop
    /// ([`CancelOutcome::Requested`]): its [`JobContext::is_cancelled`](crate::JobContext::is_cancelled)
    /// turns true at once in this process and within a heartbeat (a third of the lease) in
    /// another, the next [`call`](crate::call) or step refuses to start, and the job ends
    /// `Cancelled` (not retried) unless its handler completes first. Its descendants (the
    /// children its workflow started, theirs…) that have not finished are cancelled with it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use durable_jobs::{CancelOutcome, JobContext, JobOptions, JobStatus, MemoryStore, Queue};
    ///
    /// let queue = Queue::new(MemoryStore::new());
    /// queue.register("report", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(()))?;
    /// let id = queue.enqueue("report", &(), JobOptions::new().delay(Duration::from_secs(3600)))?;
    /// assert_eq!(queue.cancel(id)?, CancelOutcome::Cancelled);
    /// assert_eq!(queue.cancel(id)?, CancelOutcome::Finished(JobStatus::Cancelled));
    /// # Ok::<(), durable_jobs::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store fails.
    pub fn cancel(&self, id: JobId) -> Result<CancelOutcome, Error> {
        let now = self.inner.now();
        let outcome = self.inner.store.cancel(id, now)?;
        if matches!(outcome, CancelOutcome::Cancelled | CancelOutcome::Requested) {
            // Running descendants, or the job itself, are told now rather than at a heartbeat.
            self.inner.check_cancelled_runs();
            // A cancelled child may have decided its parent's fan-in.
            self.inner.wake_workers(now);
            self.inner.notify_committed();
        }
        Ok(outcome)
    }

    /// Runs a failed or cancelled job again, with all its attempts (a dead letter retried by
    /// hand), and says what happened. Its checkpoints are kept: a workflow resumes after its
    /// last recorded step.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store fails.
    pub fn requeue(&self, id: JobId) -> Result<RequeueOutcome, Error> {
        let now = self.inner.now();
        let outcome = self.inner.store.requeue(id, now)?;
        if outcome == RequeueOutcome::Requeued {
            self.inner.wake_workers(now);
        }
        Ok(outcome)
    }

    /// Requeues every failed or cancelled job matching `filter` (its `limit` and `offset` are
    /// ignored), a page at a time: dead letters retried in bulk, for example all jobs of one
    /// queue that failed with one error. Workflows resume after their last checkpoint.
    ///
    /// ```
    /// use durable_jobs::{JobContext, JobFilter, JobOptions, MemoryStore, Queue};
    ///
    /// let queue = Queue::new(MemoryStore::new());
    /// queue.register("charge", |_: &JobContext, (): ()| -> Result<(), std::io::Error> {
    ///     Err(std::io::Error::other("bank unreachable"))
    /// })?;
    /// queue.enqueue("charge", &(), JobOptions::new().retries(1))?;
    /// queue.run_one("default")?;
    /// let dead = JobFilter::dead_letters().name("charge").error_contains("unreachable");
    /// assert_eq!(queue.list(&dead)?.len(), 1);
    /// assert_eq!(queue.requeue_all(dead)?.requeued, 1);
    /// # Ok::<(), durable_jobs::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store fails (the jobs of earlier pages stay requeued).
    pub fn requeue_all(&self, filter: JobFilter) -> Result<RequeueReport, Error> {
        let mut report = RequeueReport::default();
        self.for_each_page(filter, |page| {
            let ids: Vec<JobId> = page.iter().map(|(id, _)| *id).collect();
            let outcomes = self.inner.store.requeue_many(&ids, self.inner.now())?;
            let requeued = outcomes.iter().filter(|o| **o == RequeueOutcome::Requeued).count();
            report.requeued += requeued;
            report.skipped += outcomes.len() - requeued;
            Ok(())
        })?;
        if report.requeued > 0 {
            self.inner.wake_workers(self.inner.now());
        }
        Ok(report)
    }

    /// Deletes every finished job matching `filter` (its `limit` and `offset` are ignored),
    /// with its checkpoints and signals, and returns how many were deleted. Live jobs are
    /// kept, and so are children whose parent has not finished. Retention does this by age on
    /// its own ([`WorkerBuilder::retention`](crate::WorkerBuilder::retention)); this is for
    /// operators.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store fails (the jobs of earlier pages stay deleted).
    pub fn purge(&self, filter: JobFilter) -> Result<usize, Error> {
        let mut deleted = 0;
        self.for_each_page(filter, |page| {
            let ids: Vec<JobId> = page.iter().filter(|(_, status)| status.is_terminal()).map(|(id, _)| *id).collect();
            if !ids.is_empty() {
                let outcomes = self.inner.store.delete(&ids)?;
                deleted += outcomes.iter().filter(|o| **o == DeleteOutcome::Deleted).count();
            }
            Ok(())
        })?;
        Ok(deleted)
    }

    /// Pauses a job waiting to run (scheduled, ready or waiting): no worker claims it until
    /// [`resume`](Self::resume). A paused workflow keeps its wait: its children are counted,
    /// signals sent to it are kept, and resuming it finds what happened meanwhile. A running
    /// job is not paused ([`PauseOutcome::Running`]): cancel it or pause its queue.
    ///
    /// ```
    /// use durable_jobs::{JobContext, JobOptions, JobStatus, MemoryStore, PauseOutcome, Queue, ResumeOutcome};
    ///
    /// let queue = Queue::new(MemoryStore::new());
    /// queue.register("report", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(()))?;
    /// let id = queue.enqueue("report", &(), JobOptions::new())?;
    /// assert_eq!(queue.pause(id)?, PauseOutcome::Paused);
    /// assert_eq!(queue.run_one("default")?, None);
    /// assert_eq!(queue.resume(id)?, ResumeOutcome::Resumed(JobStatus::Pending));
    /// assert_eq!(queue.run_one("default")?, Some(id));
    /// # Ok::<(), durable_jobs::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store fails.
    pub fn pause(&self, id: JobId) -> Result<PauseOutcome, Error> {
        Ok(self.inner.store.pause(id, self.inner.now())?)
    }

    /// Resumes a paused job where it was: ready, scheduled, or waiting (ready at once if what
    /// it waited for happened while it was paused).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store fails.
    pub fn resume(&self, id: JobId) -> Result<ResumeOutcome, Error> {
        let now = self.inner.now();
        let outcome = self.inner.store.resume(id, now)?;
        if matches!(outcome, ResumeOutcome::Resumed(_)) {
            self.inner.wake_workers(now);
        }
        Ok(outcome)
    }

    /// Pauses queue `queue` for every process sharing the store: no worker claims its jobs
    /// (running ones finish), until [`resume_queue`](Self::resume_queue). Jobs can still be
    /// enqueued to it. Workers of other processes see it at their next claim.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a bad queue name, [`Error::Store`] if the store fails.
    pub fn pause_queue(&self, queue: &str) -> Result<(), Error> {
        names::validate("queue", queue)?;
        Ok(self.inner.store.pause_queue(queue, true, self.inner.now())?)
    }

    /// Resumes a paused queue: this process's workers look for its jobs at once, others
    /// within their poll interval.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a bad queue name, [`Error::Store`] if the store fails.
    pub fn resume_queue(&self, queue: &str) -> Result<(), Error> {
        names::validate("queue", queue)?;
        let now = self.inner.now();
        self.inner.store.pause_queue(queue, false, now)?;
        self.inner.wake_workers(now);
        Ok(())
    }

    /// The paused queues, by name.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store fails.
    pub fn paused_queues(&self) -> Result<Vec<String>, Error> {
        Ok(self.inner.store.paused_queues()?)
    }

    /// Calls `f` with the (id, status) of every job matching `filter`, a page at a time, in id
    /// order; jobs `f` changes do not move the paging.
    fn for_each_page(
        &self,
        filter: JobFilter,
        mut f: impl FnMut(&[(JobId, JobStatus)]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut filter = filter.limit(PAGE).offset(0);
        loop {
            let page: Vec<(JobId, JobStatus)> =
                self.inner.store.list(&filter)?.into_iter().map(|j| (j.id, j.status)).collect();
            let Some(&(last, _)) = page.last() else { return Ok(()) };
            f(&page)?;
            if page.len() < PAGE {
                return Ok(());
            }
            filter = filter.after(last);
        }
    }
}
