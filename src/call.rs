//! Durable steps: `call` (a registered handler as a step) and `JobContext::step` (a closure),
//! both checkpointed by one rule.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::BoxError;
use crate::failpoint::failpoint;
use crate::failure::Failure;
use crate::registry::HandlerError;
use crate::{names, Error, JobContext};
use durable_jobs_store::Checkpoint;

/// Why a step produced no value.
enum StepError {
    /// The step ran and failed; the failure is recorded by the rule of [`call`].
    Failed(Failure),
    /// The step could not run (bad arguments, no handler): nothing is recorded.
    Unrun(Error),
}

/// Runs the handler registered as `step` with `args`, inline on this thread, and checkpoints
/// its result before returning it. When the job runs again (a retry, or after a crash), the
/// call at the same position returns the checkpointed value without running the step.
///
/// - The checkpoint is keyed by the job, the call's position (0, 1, 2… per attempt, shared
///   with [`JobContext::step`]) and the step's name. A different name at a checkpointed
///   position means the workflow's code changed: [`Error::Determinism`], which fails the job
///   for good.
/// - The value returned the first time is decoded from the same JSON a replay reads.
/// - A step error is returned as [`Error::Step`]. A permanent one ([`Error::permanent`]) is
///   replayed as it is. A retryable one is recorded too: if the workflow handled it and went
///   on to later steps, a replay returns the same error (so the workflow takes the same
///   branch); if the workflow stopped there, the step runs again on the next attempt.
/// - Durable on return: the checkpoint has committed (group-committed with other workers').
/// - A value larger than the queue's payload limit is not stored: [`Error::PayloadTooLarge`],
///   permanent.
/// - A cancelled context (timeout, shutdown, lost lease) refuses to start a step.
/// - A step started inside a step runs inline as part of that step, without its own
///   checkpoint.
///
/// # Errors
///
/// Those above, plus [`Error::UnknownJob`] if no handler is registered as `step`,
/// [`Error::LeaseLost`] if the checkpoint was refused, [`Error::Store`] if it failed,
/// [`Error::Decode`] if the value does not decode as `T`.
///
/// # Examples
///
/// ```
/// use durable_jobs::{call, JobContext, JobOptions, MemoryStore, Queue};
/// use std::time::Duration;
///
/// let queue = Queue::new(MemoryStore::new());
/// queue.register("double", |_: &JobContext, n: u64| Ok::<_, std::io::Error>(n * 2))?;
/// queue.register("flow", |ctx: &JobContext, n: u64| -> Result<u64, durable_jobs::Error> {
///     let a: u64 = call(ctx, "double", &n)?;
///     let b: u64 = call(ctx, "double", &a)?;
///     Ok(b)
/// })?;
/// let id = queue.enqueue("flow", &5, JobOptions::new())?;
/// let worker = queue.worker().concurrency(1).start()?;
/// queue.wait(id, Duration::from_secs(10))?;
/// assert_eq!(queue.result::<u64>(id)?, 20);
/// assert_eq!(queue.checkpoints(id)?.len(), 2);
/// worker.shutdown();
/// # Ok::<(), durable_jobs::Error>(())
/// ```
pub fn call<T: DeserializeOwned>(ctx: &JobContext, step: &str, args: &(impl Serialize + ?Sized)) -> Result<T, Error> {
    ctx.durable(step, || {
        let handler = ctx.queue.registry.read().get(step);
        let handler = handler.ok_or_else(|| StepError::Unrun(Error::UnknownJob { name: step.to_owned() }))?;
        let args = serde_json::to_vec(args)
            .map_err(|source| StepError::Unrun(Error::Encode { name: step.to_owned(), what: "arguments", source }))?;
        handler(ctx, &args).map_err(|e| match e {
            HandlerError::Failed(e) => StepError::Failed(Failure::of(&e)),
            HandlerError::Decode(source) => {
                StepError::Unrun(Error::Decode { job: ctx.id(), name: step.to_owned(), what: "arguments", source })
            }
            HandlerError::Encode(source) => {
                StepError::Unrun(Error::Encode { name: step.to_owned(), what: "result", source })
            }
        })
    })
}

impl JobContext {
    /// Runs `f` as a durable step named `name` and checkpoints its value: the same rules as
    /// [`call`] (one position counter, replay, determinism, errors), for the many steps that
    /// are not jobs of their own.
    ///
    /// ```
    /// use std::time::Duration;
    /// use durable_jobs::{JobContext, JobOptions, MemoryStore, Queue};
    ///
    /// let queue = Queue::new(MemoryStore::new());
    /// queue.register("signup", |ctx: &JobContext, email: String| -> Result<u64, durable_jobs::Error> {
    ///     let user: u64 = ctx.step("create-account", || Ok::<_, std::io::Error>(42))?;
    ///     ctx.step("send-welcome", || {
    ///         println!("welcome mail to {email} for user {user}");
    ///         Ok::<_, std::io::Error>(())
    ///     })?;
    ///     Ok(user)
    /// })?;
    /// let id = queue.enqueue("signup", "ada@example.com", JobOptions::new())?;
    /// let worker = queue.worker().concurrency(1).start()?;
    /// queue.wait(id, Duration::from_secs(10))?;
    /// assert_eq!(queue.checkpoints(id)?.len(), 2);
    /// worker.shutdown();
    /// # Ok::<(), durable_jobs::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`call`]: [`Error::Step`] if `f` fails, [`Error::InvalidName`] for a bad name, and
    /// the errors of recording the step.
    pub fn step<T, E, F>(&self, name: &str, f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        E: Into<BoxError>,
        F: FnOnce() -> Result<T, E>,
    {
        names::validate("step", name)?;
        self.durable(name, || {
            let value = f().map_err(|e| StepError::Failed(Failure::of(&e.into())))?;
            serde_json::to_vec(&value)
                .map_err(|source| StepError::Unrun(Error::Encode { name: name.to_owned(), what: "result", source }))
        })
    }

    /// The rule every durable step follows: take the next position; replay what is recorded
    /// there; or run, record and return.
    fn durable<T: DeserializeOwned>(
        &self,
        name: &str,
        run: impl FnOnce() -> Result<Vec<u8>, StepError>,
    ) -> Result<T, Error> {
        self.at_next_position(name, |index| self.replay_or_run(name, index, run))
    }

    fn replay_or_run<T: DeserializeOwned>(
        &self,
        name: &str,
        index: Option<u32>,
        run: impl FnOnce() -> Result<Vec<u8>, StepError>,
    ) -> Result<T, Error> {
        if let Some(index) = index {
            if let Some((recorded, later)) = self.recorded(index, name)? {
                match recorded.outcome {
                    Ok(value) => return self.decode(name, &value),
                    Err(message) if !recorded.retryable || later => {
                        return Err(Error::Step { step: name.to_owned(), message, permanent: !recorded.retryable });
                    }
                    // A retryable failure the workflow stopped at: run the step again.
                    Err(_) => {}
                }
            }
        }
        match run() {
            Ok(value) => {
                self.queue.check_size(name, "step value", value.len())?;
                if let Some(index) = index {
                    failpoint!("after-step-effect");
                    self.checkpoint(Checkpoint::value(index, name, value.clone()))?;
                    failpoint!("after-checkpoint");
                }
                self.decode(name, &value)
            }
            Err(StepError::Failed(failure)) => {
                let permanent = failure.is_permanent();
                let message = failure.into_message();
                if let Some(index) = index {
                    self.checkpoint(Checkpoint::error(index, name, message.clone(), !permanent))?;
                }
                Err(Error::Step { step: name.to_owned(), message, permanent })
            }
            Err(StepError::Unrun(e)) => Err(e),
        }
    }

    pub(crate) fn decode<T: DeserializeOwned>(&self, step: &str, value: &[u8]) -> Result<T, Error> {
        serde_json::from_slice(value).map_err(|source| Error::Decode {
            job: self.id(),
            name: step.to_owned(),
            what: "checkpoint",
            source,
        })
    }
}

/// The JSON of a record this library writes (plain data and JSON values, which always encode).
pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
