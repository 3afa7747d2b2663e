//! `JobHandle`: a handler registered with its types, enqueued and called without naming them.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Weak};

use durable_jobs_store::JobId;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::BoxError;
use crate::queue::QueueInner;
use crate::{call, Error, JobContext, JobOptions, Queue};

/// A typed handle on a registered handler, from [`Queue::define`]: the argument and result
/// types travel with it, so enqueueing, calling as a step and reading the result are checked
/// by the compiler. Routed by the same name as [`Queue::register`] and [`call`].
///
/// ```
/// use std::time::Duration;
/// use durable_jobs::{JobContext, JobOptions, MemoryStore, Queue};
///
/// let queue = Queue::new(MemoryStore::new());
/// let double = queue.define("double", |_: &JobContext, n: u64| Ok::<_, std::io::Error>(n * 2))?;
/// let quadruple = {
///     let double = double.clone();
///     queue.define("quadruple", move |ctx: &JobContext, n: u64| -> Result<u64, durable_jobs::Error> {
///         let twice = double.call(ctx, &n)?; // a checkpointed step, typed
///         double.call(ctx, &twice)
///     })?
/// };
/// let id = quadruple.enqueue(&5, JobOptions::new())?;
/// let worker = queue.worker().concurrency(1).start()?;
/// queue.wait(id, Duration::from_secs(10))?;
/// assert_eq!(quadruple.result(id)?, 20);
/// worker.shutdown();
/// # Ok::<(), durable_jobs::Error>(())
/// ```
///
/// A handle holds its queue weakly, so handles captured by handlers (as above) do not keep
/// the queue, and its store, alive forever.
pub struct JobHandle<A, R> {
    queue: Weak<QueueInner>,
    name: String,
    types: PhantomData<fn(A) -> R>,
}

impl<A, R> Clone for JobHandle<A, R> {
    fn clone(&self) -> Self {
        JobHandle { queue: self.queue.clone(), name: self.name.clone(), types: PhantomData }
    }
}

impl<A, R> fmt::Debug for JobHandle<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<A: Serialize, R: DeserializeOwned> JobHandle<A, R> {
    fn queue(&self) -> Result<Queue, Error> {
        self.queue.upgrade().map(|inner| Queue { inner }).ok_or(Error::QueueClosed)
    }

    /// The handler's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Enqueues a job; as [`Queue::enqueue`].
    ///
    /// # Errors
    ///
    /// As [`Queue::enqueue`], and [`Error::QueueClosed`] if the queue was dropped.
    pub fn enqueue(&self, args: &A, options: JobOptions) -> Result<JobId, Error> {
        self.queue()?.enqueue_unchecked(&self.name, args, options)
    }

    /// Enqueues one job per element in one transaction; as [`Queue::enqueue_batch`].
    ///
    /// # Errors
    ///
    /// As [`Queue::enqueue_batch`].
    pub fn enqueue_batch(&self, args: &[A], options: JobOptions) -> Result<Vec<JobId>, Error> {
        self.queue()?.enqueue_batch_unchecked(&self.name, args, options)
    }

    /// Runs the handler as a checkpointed step of the running job; as [`call`].
    ///
    /// # Errors
    ///
    /// As [`call`].
    pub fn call(&self, ctx: &JobContext, args: &A) -> Result<R, Error> {
        call(ctx, &self.name, args)
    }

    /// The result of a completed job; as [`Queue::result`].
    ///
    /// # Errors
    ///
    /// As [`Queue::result`].
    pub fn result(&self, id: JobId) -> Result<R, Error> {
        self.queue()?.result(id)
    }
}

impl Queue {
    /// Registers `handler` under `name`, as [`register`](Queue::register), and returns a typed
    /// handle on it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] if `name` breaks the naming rule, [`Error::AlreadyRegistered`] if
    /// it is taken.
    pub fn define<A, R, E, F>(&self, name: &str, handler: F) -> Result<JobHandle<A, R>, Error>
    where
        A: DeserializeOwned + Serialize,
        R: Serialize + DeserializeOwned,
        E: Into<BoxError>,
        F: Fn(&JobContext, A) -> Result<R, E> + Send + Sync + 'static,
    {
        self.register(name, handler)?;
        Ok(JobHandle { queue: Arc::downgrade(&self.inner), name: name.to_owned(), types: PhantomData })
    }

    /// A typed handle on a handler that another process registers: a producer enqueues jobs
    /// and reads their results with the argument and result types checked by the compiler,
    /// without linking (or registering) the handler. Jobs wait for a worker that registers
    /// `name`; [`JobHandle::call`] needs the handler registered in this process.
    ///
    /// ```
    /// use durable_jobs::{JobOptions, JobStatus, MemoryStore, Queue};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Resize { image: String, width: u32 }
    ///
    /// let producer = Queue::new(MemoryStore::new());
    /// let resize = producer.declare::<Resize, String>("images::resize")?;
    /// let id = resize.enqueue(&Resize { image: "cat.png".into(), width: 64 }, JobOptions::new())?;
    /// assert_eq!(producer.job(id)?.unwrap().status, JobStatus::Pending);
    /// # Ok::<(), durable_jobs::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] if `name` breaks the naming rule.
    pub fn declare<A, R>(&self, name: &str) -> Result<JobHandle<A, R>, Error>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        crate::names::validate("job", name)?;
        Ok(JobHandle { queue: Arc::downgrade(&self.inner), name: name.to_owned(), types: PhantomData })
    }
}
