//! `call`: a checkpointed step.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::failpoint::failpoint;
use crate::failure::Failure;
use crate::registry::HandlerError;
use crate::{Error, JobContext};
use durable_jobs_store::Checkpoint;

/// Runs the handler registered as `step` with `args`, inline on this thread, and checkpoints
/// its result before returning it. When the job runs again (a retry, or after a crash), the
/// call at the same position returns the checkpointed value without running the step.
///
/// - The checkpoint is keyed by the job, the call's position (0, 1, 2… per attempt) and the
///   step's name. A different name at a checkpointed position means the workflow's code
///   changed: [`Error::Determinism`], which fails the job for good.
/// - The value returned the first time is decoded from the same JSON a replay reads.
/// - A step error is returned as [`Error::Step`]. A permanent one ([`Error::permanent`]) is
///   checkpointed too, so a replay returns the same error; a retryable one is not, so the step
///   runs again on the next attempt.
/// - Durable on return: the checkpoint has committed (group-committed with other workers').
/// - A cancelled context (timeout, shutdown, lost lease) refuses to start a step.
/// - A `call` made inside a step runs inline as part of that step, without its own checkpoint.
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
    ctx.check_running()?;
    let index = ctx.enter_step();
    let out = run_step(ctx, step, args, index);
    ctx.leave_step();
    out
}

fn run_step<T: DeserializeOwned>(
    ctx: &JobContext,
    step: &str,
    args: &(impl Serialize + ?Sized),
    index: Option<u32>,
) -> Result<T, Error> {
    if let Some(index) = index {
        if let Some(recorded) = ctx.recorded(index)? {
            if recorded.name != step {
                return Err(Error::Determinism {
                    job: ctx.id(),
                    index,
                    recorded: recorded.name,
                    called: step.to_owned(),
                });
            }
            return match recorded.outcome {
                Ok(value) => decode(ctx, step, &value),
                Err(message) => Err(Error::Step { step: step.to_owned(), message, permanent: true }),
            };
        }
    }
    let handler =
        ctx.worker().queue.registry.read().get(step).ok_or_else(|| Error::UnknownJob { name: step.to_owned() })?;
    let args = serde_json::to_vec(args).map_err(|source| Error::Encode {
        name: step.to_owned(),
        what: "arguments",
        source,
    })?;
    match handler(ctx, &args) {
        Ok(value) => {
            if let Some(index) = index {
                failpoint!("after-step-effect");
                ctx.checkpoint(Checkpoint { index, name: step.to_owned(), outcome: Ok(value.clone()) })?;
                failpoint!("after-checkpoint");
            }
            decode(ctx, step, &value)
        }
        Err(HandlerError::Failed(e)) => {
            let failure = Failure::of(&e);
            let permanent = failure.is_permanent();
            let message = failure.into_message();
            if let (true, Some(index)) = (permanent, index) {
                ctx.checkpoint(Checkpoint { index, name: step.to_owned(), outcome: Err(message.clone()) })?;
            }
            Err(Error::Step { step: step.to_owned(), message, permanent })
        }
        Err(HandlerError::Decode(source)) => {
            Err(Error::Decode { job: ctx.id(), name: step.to_owned(), what: "arguments", source })
        }
        Err(HandlerError::Encode(source)) => Err(Error::Encode { name: step.to_owned(), what: "result", source }),
    }
}

fn decode<T: DeserializeOwned>(ctx: &JobContext, step: &str, value: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(value).map_err(|source| Error::Decode {
        job: ctx.id(),
        name: step.to_owned(),
        what: "checkpoint",
        source,
    })
}
