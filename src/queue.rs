//! `Queue`: registering handlers, enqueueing jobs, and looking at them.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use durable_jobs_store::{Checkpoint, Enqueued, JobFilter, JobId, NewJob, StatusCount, Store, StoreError, Timestamp};
use parking_lot::{Condvar, Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::doorbell::Doorbell;
use crate::error::BoxError;
use crate::registry::{self, Registry};
use crate::{names, Error, JobContext, JobInfo, JobOptions, WorkerBuilder};

/// The default limit on encoded arguments: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// A handle on one store: register handlers, enqueue jobs, inspect them, start workers.
///
/// Cheap to clone; clones share handlers and wake each other's workers.
#[derive(Clone, Debug)]
pub struct Queue {
    pub(crate) inner: Arc<QueueInner>,
}

#[derive(Debug)]
pub(crate) struct QueueInner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: RwLock<Registry>,
    pub(crate) clock: Arc<dyn Clock>,
    max_payload: usize,
    doorbells: Mutex<Vec<Weak<Doorbell>>>,
    /// Bumped after every commit of this process's workers, so `wait` can sleep.
    commits: Mutex<u64>,
    committed: Condvar,
}

/// Settings of a [`Queue`] beyond its store.
#[derive(Debug)]
pub struct QueueBuilder {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    max_payload: usize,
}

impl QueueBuilder {
    /// The largest encoded arguments accepted, in bytes (default 1 MiB). Checked before any
    /// storage call.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// The clock for stored times (default: the system clock). For tests of clock jumps.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The queue.
    pub fn build(self) -> Queue {
        Queue {
            inner: Arc::new(QueueInner {
                store: self.store,
                registry: RwLock::new(Registry::default()),
                clock: self.clock,
                max_payload: self.max_payload,
                doorbells: Mutex::new(Vec::new()),
                commits: Mutex::new(0),
                committed: Condvar::new(),
            }),
        }
    }
}

impl QueueInner {
    pub(crate) fn now(&self) -> Timestamp {
        Timestamp::from_system_time(self.clock.now())
    }

    /// Wakes this process's dispatchers for a job ready at `run_at`.
    fn wake_workers(&self, run_at: Timestamp) {
        let now = self.now();
        let mut bells = self.doorbells.lock();
        bells.retain(|bell| match bell.upgrade() {
            Some(bell) if run_at > now => {
                bell.ring_in(run_at.duration_since(now));
                true
            }
            Some(bell) => {
                bell.ring();
                true
            }
            None => false,
        });
    }

    pub(crate) fn add_doorbell(&self, bell: &Arc<Doorbell>) {
        self.doorbells.lock().push(Arc::downgrade(bell));
    }

    /// Wakes `wait` callers after a commit.
    pub(crate) fn notify_committed(&self) {
        *self.commits.lock() += 1;
        self.committed.notify_all();
    }
}

impl Queue {
    /// A queue on `store` with default settings.
    ///
    /// ```
    /// use durable_jobs::{MemoryStore, Queue};
    /// let queue = Queue::new(MemoryStore::new());
    /// # let _ = queue;
    /// ```
    pub fn new(store: impl Store) -> Queue {
        Queue::builder(store).build()
    }

    /// A queue on `store` with settings.
    pub fn builder(store: impl Store) -> QueueBuilder {
        QueueBuilder { store: Arc::new(store), clock: Arc::new(SystemClock), max_payload: DEFAULT_MAX_PAYLOAD }
    }

    /// The store this queue works on.
    pub fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    /// Registers `handler` under `name`, replacing an earlier one. Workers of this queue claim
    /// jobs with registered names only, and [`call`](crate::call) runs registered handlers as
    /// steps.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] if `name` breaks the naming rule.
    ///
    /// # Examples
    ///
    /// ```
    /// use durable_jobs::{JobContext, MemoryStore, Queue};
    ///
    /// let queue = Queue::new(MemoryStore::new());
    /// queue.register("add", |_ctx: &JobContext, (a, b): (i64, i64)| -> Result<i64, std::io::Error> { Ok(a + b) })?;
    /// # Ok::<(), durable_jobs::Error>(())
    /// ```
    pub fn register<A, R, E, F>(&self, name: &str, handler: F) -> Result<(), Error>
    where
        A: DeserializeOwned,
        R: Serialize,
        E: Into<BoxError>,
        F: Fn(&JobContext, A) -> Result<R, E> + Send + Sync + 'static,
    {
        names::validate("job", name)?;
        self.inner.registry.write().insert(name, registry::erase(handler));
        Ok(())
    }

    /// Enqueues one job for the handler registered as `name`.
    ///
    /// Durable on return. An in-process worker is woken at once.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`] if no handler is registered under `name` (see
    /// [`enqueue_raw`](Self::enqueue_raw)); [`Error::InvalidOption`] / [`Error::InvalidName`]
    /// for bad options; [`Error::Encode`] or [`Error::PayloadTooLarge`] for arguments that
    /// cannot be stored (checked before any storage call); [`Error::Duplicate`] if a live job
    /// holds the unique key; [`Error::Store`] if the store fails.
    pub fn enqueue<A: Serialize + ?Sized>(&self, name: &str, args: &A, options: JobOptions) -> Result<JobId, Error> {
        self.check_registered(name)?;
        let args = self.encode(name, args)?;
        one(self.insert(name, vec![args], &options)?)
    }

    /// Enqueues one job per element of `args`, all with `options`, in one transaction: all
    /// are stored or none. Returns their ids in order.
    ///
    /// # Errors
    ///
    /// As [`enqueue`](Self::enqueue); a unique key is refused for more than one job.
    pub fn enqueue_batch<A: Serialize>(
        &self,
        name: &str,
        args: &[A],
        options: JobOptions,
    ) -> Result<Vec<JobId>, Error> {
        if args.len() > 1 && options.unique_key.is_some() {
            return Err(Error::InvalidOption {
                option: "unique",
                reason: "a batch of more than one job cannot share one unique key".into(),
            });
        }
        self.check_registered(name)?;
        let encoded = args.iter().map(|a| self.encode(name, a)).collect::<Result<Vec<_>, _>>()?;
        self.insert(name, encoded, &options)
    }

    /// Enqueues a job from raw JSON bytes without checking that `name` is registered here or
    /// that the bytes decode: for producers that do not link the handlers. A payload that
    /// does not decode fails its job terminally when a worker runs it, with the payload kept.
    ///
    /// # Errors
    ///
    /// As [`enqueue`](Self::enqueue), except [`Error::UnknownJob`] and [`Error::Encode`].
    pub fn enqueue_raw(&self, name: &str, args_json: &[u8], options: JobOptions) -> Result<JobId, Error> {
        self.check_size(name, args_json.len())?;
        one(self.insert(name, vec![args_json.to_vec()], &options)?)
    }

    fn check_registered(&self, name: &str) -> Result<(), Error> {
        names::validate("job", name)?;
        if self.inner.registry.read().contains(name) {
            Ok(())
        } else {
            Err(Error::UnknownJob { name: name.to_owned() })
        }
    }

    fn encode<A: Serialize + ?Sized>(&self, name: &str, args: &A) -> Result<Vec<u8>, Error> {
        let bytes = serde_json::to_vec(args).map_err(|source| Error::Encode {
            name: name.into(),
            what: "arguments",
            source,
        })?;
        self.check_size(name, bytes.len())?;
        Ok(bytes)
    }

    fn check_size(&self, name: &str, size: usize) -> Result<(), Error> {
        if size > self.inner.max_payload {
            return Err(Error::PayloadTooLarge { name: name.into(), size, limit: self.inner.max_payload });
        }
        Ok(())
    }

    fn insert(&self, name: &str, args: Vec<Vec<u8>>, options: &JobOptions) -> Result<Vec<JobId>, Error> {
        names::validate("job", name)?;
        let now = self.inner.now();
        let run_at = options.validate(now)?;
        if args.is_empty() {
            return Ok(Vec::new());
        }
        let jobs: Vec<NewJob> = args
            .into_iter()
            .map(|args| NewJob {
                queue: options.queue.clone(),
                name: name.to_owned(),
                args,
                priority: options.priority,
                run_at,
                max_attempts: options.max_attempts,
                unique_key: options.unique_key.clone(),
                timeout: options.timeout,
                retry_policy: options.backoff,
                created_at: now,
            })
            .collect();
        let out = self.inner.store.enqueue(&jobs)?;
        let mut ids = Vec::with_capacity(out.len());
        for e in out {
            match e {
                Enqueued::New(id) => ids.push(id),
                Enqueued::Duplicate(existing) => {
                    let key = options.unique_key.clone().unwrap_or_default();
                    return Err(Error::Duplicate { key, existing });
                }
            }
        }
        self.inner.wake_workers(run_at);
        Ok(ids)
    }

    /// Cancels a job that is waiting to run (pending, delayed, waiting or paused). A running job
    /// is not interrupted: returns `false`, as for a finished or unknown job.
    ///
    /// ```
    /// use std::time::Duration;
    /// use durable_jobs::{JobContext, JobOptions, JobStatus, MemoryStore, Queue};
    ///
    /// let queue = Queue::new(MemoryStore::new());
    /// queue.register("report", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(()))?;
    /// let id = queue.enqueue("report", &(), JobOptions::new().delay(Duration::from_secs(3600)))?;
    /// assert!(queue.cancel(id)?);
    /// assert_eq!(queue.job(id)?.unwrap().status, JobStatus::Cancelled);
    /// # Ok::<(), durable_jobs::Error>(())
    /// ```
    pub fn cancel(&self, id: JobId) -> Result<bool, Error> {
        let cancelled = self.inner.store.cancel(id, self.inner.now())?;
        if cancelled {
            self.inner.notify_committed();
        }
        Ok(cancelled)
    }

    /// Runs a failed or cancelled job again, with all its attempts (a dead letter retried by
    /// hand). Its checkpoints are kept: a workflow resumes after its last recorded step.
    /// Returns `false` if the job is in another status or its unique key is held by another
    /// live job.
    pub fn requeue(&self, id: JobId) -> Result<bool, Error> {
        let now = self.inner.now();
        let requeued = self.inner.store.requeue(id, now)?;
        if requeued {
            self.inner.wake_workers(now);
        }
        Ok(requeued)
    }

    /// A builder for a worker pool serving this queue's handlers.
    pub fn worker(&self) -> WorkerBuilder {
        WorkerBuilder::new(self.clone())
    }

    /// One job, or `None` if no job has this id.
    pub fn job(&self, id: JobId) -> Result<Option<JobInfo>, Error> {
        Ok(self.inner.store.get(id)?.map(JobInfo::from))
    }

    /// The jobs matching `filter`, in id order.
    ///
    /// ```
    /// use durable_jobs::{JobFilter, JobStatus, MemoryStore, Queue};
    /// let queue = Queue::new(MemoryStore::new());
    /// let failed = queue.list(&JobFilter::new().status(JobStatus::Failed).limit(20))?;
    /// assert!(failed.is_empty());
    /// # Ok::<(), durable_jobs::Error>(())
    /// ```
    pub fn list(&self, filter: &JobFilter) -> Result<Vec<JobInfo>, Error> {
        Ok(self.inner.store.list(filter)?.into_iter().map(JobInfo::from).collect())
    }

    /// The number of jobs per queue and status.
    pub fn counts(&self) -> Result<Vec<StatusCount>, Error> {
        Ok(self.inner.store.counts()?)
    }

    /// The checkpoints a job has recorded, in step order.
    pub fn checkpoints(&self, id: JobId) -> Result<Vec<Checkpoint>, Error> {
        Ok(self.inner.store.checkpoints(id)?)
    }

    /// Waits until the job is completed, failed or cancelled, for at most `timeout`.
    ///
    /// Woken at once by commits of workers in this process; jobs run by other processes are
    /// seen within 100 ms.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown id, [`Error::WaitTimeout`] if it did not finish in
    /// time, [`Error::Store`] if the store fails.
    pub fn wait(&self, id: JobId, timeout: Duration) -> Result<JobInfo, Error> {
        let start = Instant::now();
        loop {
            let seen = *self.inner.commits.lock();
            let info = self.job(id)?.ok_or(Error::NotFound { job: id })?;
            if info.status.is_terminal() {
                return Ok(info);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(Error::WaitTimeout { job: id, status: info.status, waited });
            }
            let slice = timeout.saturating_sub(waited).min(Duration::from_millis(100));
            let mut commits = self.inner.commits.lock();
            if *commits == seen {
                self.inner.committed.wait_for(&mut commits, slice);
            }
        }
    }

    /// The result of a completed job, decoded as `T`.
    ///
    /// # Errors
    ///
    /// [`Error::NoResult`] if the job has not completed, [`Error::NotFound`], or
    /// [`Error::Decode`] if the result does not decode as `T`.
    pub fn result<T: DeserializeOwned>(&self, id: JobId) -> Result<T, Error> {
        let record = self.inner.store.get(id)?.ok_or(Error::NotFound { job: id })?;
        match record.result {
            Some(bytes) if record.status == durable_jobs_store::JobStatus::Completed => serde_json::from_slice(&bytes)
                .map_err(|source| Error::Decode { job: id, name: record.name, what: "result", source }),
            _ => Err(Error::NoResult { job: id, status: record.status, error: record.last_error }),
        }
    }
}

/// The id of a one-job enqueue.
fn one(ids: Vec<JobId>) -> Result<JobId, Error> {
    ids.into_iter().next().ok_or_else(|| {
        Error::Store(StoreError::new(durable_jobs_store::StoreErrorKind::Other, "the store returned no id"))
    })
}
