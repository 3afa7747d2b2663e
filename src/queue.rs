//! `Queue`: registering handlers and enqueueing jobs.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use durable_jobs_store::{Enqueued, JobId, NewJob, Store, StoreError, StoreErrorKind, Timestamp};
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::doorbell::Doorbell;
use crate::error::BoxError;
use crate::events::Listeners;
use crate::observability::MetricKeys;
use crate::registry::{self, Registry};
use crate::wait::Waitable;
use crate::worker::WorkerShared;
use crate::{names, Error, JobContext, JobOptions, WorkerBuilder};

/// The default limit on encoded arguments, results and step values: 1 MiB.
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
    pub(crate) max_payload: usize,
    doorbells: Mutex<Vec<Weak<Doorbell>>>,
    /// This process's worker pools, told at once when a job is cancelled.
    workers: Mutex<Vec<Weak<WorkerShared>>>,
    /// Bumped after every commit of this process's workers, so that waits can sleep.
    pub(crate) commits: Arc<Waitable<u64>>,
    /// Jobs released by a shutdown while their handler still ran on an abandoned thread:
    /// not claimed again in this process until that handler returns.
    quarantined: Mutex<HashSet<JobId>>,
    /// Who is told about events.
    pub(crate) events: Listeners,
    /// The keys of the metrics of this queue's jobs.
    pub(crate) metric_keys: MetricKeys,
}

/// Settings of a [`Queue`] beyond its store.
#[derive(Debug)]
pub struct QueueBuilder {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    max_payload: usize,
}

impl QueueBuilder {
    /// The largest encoded arguments, result or step value accepted, in bytes (default 1 MiB).
    /// Arguments are checked before any storage call; a result or step value over it fails
    /// its job for good, and is not stored.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// The clock for stored times and every timer (default: the system clock). For tests of
    /// clock jumps, or virtual time with [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The queue.
    pub fn build(self) -> Queue {
        let commits = Waitable::new(&*self.clock, 0);
        Queue {
            inner: Arc::new(QueueInner {
                store: self.store,
                registry: RwLock::new(Registry::default()),
                clock: self.clock,
                max_payload: self.max_payload,
                doorbells: Mutex::new(Vec::new()),
                workers: Mutex::new(Vec::new()),
                commits,
                quarantined: Mutex::new(HashSet::new()),
                events: Listeners::default(),
                metric_keys: MetricKeys::default(),
            }),
        }
    }
}

impl QueueInner {
    pub(crate) fn now(&self) -> Timestamp {
        Timestamp::from_system_time(self.clock.now())
    }

    /// Wakes this process's dispatchers for a job ready at `run_at`.
    pub(crate) fn wake_workers(&self, run_at: Timestamp) {
        self.doorbells.lock().retain(|bell| match bell.upgrade() {
            Some(bell) => {
                bell.ring_at(run_at);
                true
            }
            None => false,
        });
    }

    pub(crate) fn add_worker(&self, worker: &Arc<WorkerShared>) {
        self.workers.lock().push(Arc::downgrade(worker));
    }

    /// This process's running worker pools.
    fn workers(&self) -> Vec<Arc<WorkerShared>> {
        let mut list = self.workers.lock();
        list.retain(|w| w.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    }

    /// Tells this process's workers at once about runs whose job was cancelled (instead of at
    /// their next heartbeat).
    pub(crate) fn check_cancelled_runs(&self) {
        for worker in self.workers() {
            worker.renew_now();
        }
    }

    /// Tells this process's workers that limits changed.
    pub(crate) fn limits_changed(&self) {
        for worker in self.workers() {
            worker.refresh_limits();
        }
        // Jobs a removed or raised limit held back may go now.
        self.wake_workers(self.now());
    }

    /// Wakes this process's schedulers: a schedule was put.
    pub(crate) fn schedules_changed(&self) {
        for worker in self.workers() {
            worker.schedules_changed();
        }
    }

    pub(crate) fn add_doorbell(&self, bell: &Arc<Doorbell>) {
        self.doorbells.lock().push(Arc::downgrade(bell));
    }

    /// Wakes waits for jobs after a commit.
    pub(crate) fn notify_committed(&self) {
        self.commits.update(|n| *n += 1);
    }

    /// Keeps `job` from being claimed in this process until its abandoned handler returns.
    pub(crate) fn quarantine(&self, job: JobId) {
        self.quarantined.lock().insert(job);
    }

    /// A handler of `job` returned: it may be claimed here again.
    pub(crate) fn handler_returned(&self, job: JobId) {
        let mut quarantined = self.quarantined.lock();
        if !quarantined.is_empty() {
            quarantined.remove(&job);
        }
    }

    /// The jobs no claim of this queue may take.
    pub(crate) fn quarantined(&self) -> Vec<JobId> {
        let quarantined = self.quarantined.lock();
        if quarantined.is_empty() {
            Vec::new()
        } else {
            quarantined.iter().copied().collect()
        }
    }

    /// Checks a result or step value against the payload limit.
    pub(crate) fn check_size(&self, name: &str, what: &'static str, size: usize) -> Result<(), Error> {
        if size > self.max_payload {
            return Err(Error::PayloadTooLarge { name: name.into(), what, size, limit: self.max_payload });
        }
        Ok(())
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

    /// Registers `handler` under `name`. Workers of this queue claim jobs with registered
    /// names only, and [`call`](crate::call) runs registered handlers as steps.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] if `name` breaks the naming rule, [`Error::AlreadyRegistered`] if
    /// a handler has this name already (two handlers for one name would be a silent mix-up).
    ///
    /// # Examples
    ///
    /// ```
    /// use durable_jobs::{Error, JobContext, MemoryStore, Queue};
    ///
    /// let queue = Queue::new(MemoryStore::new());
    /// let add = |_ctx: &JobContext, (a, b): (i64, i64)| -> Result<i64, std::io::Error> { Ok(a + b) };
    /// queue.register("math::add", add)?;
    /// assert!(matches!(queue.register("math::add", add), Err(Error::AlreadyRegistered { .. })));
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
        if self.inner.registry.write().insert(name, registry::erase(handler)) {
            Ok(())
        } else {
            Err(Error::AlreadyRegistered { name: name.to_owned() })
        }
    }

    /// Enqueues one job for the handler registered as `name`.
    ///
    /// Durable on return. An in-process worker is woken at once (or at the job's time).
    ///
    /// With [`JobOptions::unique_for`], enqueueing is idempotent: if a job holding the key
    /// exists (live, or created within the window), its id is returned and nothing is
    /// inserted.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`] if no handler is registered under `name` (see
    /// [`enqueue_raw`](Self::enqueue_raw) and [`declare`](Self::declare));
    /// [`Error::InvalidOption`] / [`Error::InvalidName`] for bad options; [`Error::Encode`] or
    /// [`Error::PayloadTooLarge`] for arguments that cannot be stored (checked before any
    /// storage call); [`Error::Duplicate`] if a live job holds the [`unique`](JobOptions::unique)
    /// key; [`Error::Store`] if the store fails.
    pub fn enqueue<A: Serialize + ?Sized>(&self, name: &str, args: &A, options: JobOptions) -> Result<JobId, Error> {
        self.check_registered(name)?;
        self.enqueue_unchecked(name, args, options)
    }

    /// Enqueues without checking that `name` is registered here (typed handles from
    /// [`declare`](Self::declare)).
    pub(crate) fn enqueue_unchecked<A: Serialize + ?Sized>(
        &self,
        name: &str,
        args: &A,
        options: JobOptions,
    ) -> Result<JobId, Error> {
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
        self.check_registered(name)?;
        self.enqueue_batch_unchecked(name, args, options)
    }

    pub(crate) fn enqueue_batch_unchecked<A: Serialize>(
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
        self.inner.check_size(name, "arguments", args_json.len())?;
        one(self.insert(name, vec![args_json.to_vec()], &options)?)
    }

    pub(crate) fn check_registered(&self, name: &str) -> Result<(), Error> {
        names::validate("job", name)?;
        if self.inner.registry.read().contains(name) {
            Ok(())
        } else {
            Err(Error::UnknownJob { name: name.to_owned() })
        }
    }

    fn encode<A: Serialize + ?Sized>(&self, name: &str, args: &A) -> Result<Vec<u8>, Error> {
        self.encode_checked(name, "arguments", args)
    }

    /// Encodes the `what` of `name` as JSON within the payload limit, before any store call.
    pub(crate) fn encode_checked<T: Serialize + ?Sized>(
        &self,
        name: &str,
        what: &'static str,
        value: &T,
    ) -> Result<Vec<u8>, Error> {
        let bytes = serde_json::to_vec(value).map_err(|source| Error::Encode { name: name.into(), what, source })?;
        self.inner.check_size(name, what, bytes.len())?;
        Ok(bytes)
    }

    fn insert(&self, name: &str, args: Vec<Vec<u8>>, options: &JobOptions) -> Result<Vec<JobId>, Error> {
        names::validate("job", name)?;
        let now = self.inner.now();
        let run_at = options.validate(now)?;
        if args.is_empty() {
            return Ok(Vec::new());
        }
        let jobs: Vec<NewJob> = args.into_iter().map(|args| options.new_job(name, args, now, run_at)).collect();
        let out = self.inner.store.enqueue(&jobs)?;
        let mut ids = Vec::with_capacity(out.len());
        let mut inserted = 0_u64;
        for e in out {
            match e {
                Enqueued::New(id) => {
                    inserted += 1;
                    ids.push(id);
                }
                Enqueued::Duplicate(existing) if options.unique_window.is_some() => ids.push(existing),
                Enqueued::Duplicate(existing) => {
                    let key = options.unique_key.clone().unwrap_or_default();
                    return Err(Error::Duplicate { key, existing });
                }
                other => return Err(unexpected(&format!("{other:?}"))),
            }
        }
        if inserted > 0 {
            crate::observability::enqueued(&self.inner, &options.queue, name, inserted);
            self.inner.wake_workers(run_at);
        }
        Ok(ids)
    }

    /// A builder for a worker pool serving this queue's handlers.
    pub fn worker(&self) -> WorkerBuilder {
        WorkerBuilder::new(self.clone())
    }
}

/// The id of a one-job enqueue.
fn one(ids: Vec<JobId>) -> Result<JobId, Error> {
    ids.into_iter().next().ok_or_else(|| unexpected("no id"))
}

fn unexpected(what: &str) -> Error {
    Error::Store(StoreError::new(StoreErrorKind::Other, format!("the store returned {what} for an enqueue")))
}
