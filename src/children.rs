//! Child jobs: a workflow starts ordinary jobs ([`spawn`], [`fan_out`]) and waits, suspended,
//! for their results.

use std::collections::HashMap;
use std::fmt;

use durable_jobs_store::{CancelOutcome, Checkpoint, FanIn, JobFilter, JobId, JobRecord, JobStatus, NewJob};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::context::Suspension;
use crate::{names, Error, JobContext, JobOptions};

/// The checkpoint name of a fan-out. Step names start with a letter, so no step can take it.
const FAN_OUT: &str = "@fan-out";

/// Children read per store call when a fan-out gathers its results.
const PAGE: usize = 1000;

/// A job for a workflow to start as its child: a registered handler name, its arguments and
/// its own [`JobOptions`] (queue, retries, timeout…; not a unique key).
#[derive(Debug)]
pub struct Child {
    name: String,
    args: Result<Vec<u8>, serde_json::Error>,
    options: JobOptions,
}

impl Child {
    /// A child job running handler `name` with `args`, with default options.
    pub fn new<A: Serialize + ?Sized>(name: &str, args: &A) -> Child {
        Child { name: name.to_owned(), args: serde_json::to_vec(args), options: JobOptions::new() }
    }

    /// Sets the child's options.
    pub fn options(mut self, options: JobOptions) -> Child {
        self.options = options;
        self
    }
}

/// When a [`fan_out`] is decided and its workflow resumes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum FanInStrategy {
    /// When every child has completed, or at the first child that fails for good (the others
    /// still waiting to run are cancelled).
    #[default]
    FailFast,
    /// When every child has finished, whatever their outcome.
    CollectAll,
    /// When this fraction of the children (0 to 1, rounded up) has completed, or when so many
    /// have failed that it cannot be reached; the children still waiting to run are cancelled.
    Threshold(f64),
}

impl FanInStrategy {
    /// The store's rule for `total` children at step position `index`.
    fn rule(self, index: u32, total: u32) -> Result<FanIn, Error> {
        let (need, tolerate) = match self {
            FanInStrategy::FailFast => (total, 0),
            FanInStrategy::CollectAll => (total, total),
            FanInStrategy::Threshold(f) if (0.0..=1.0).contains(&f) => {
                // Rounded up, but not past an exact product that floating point overshoots
                // (0.07 × 100 is 7.000000000000001).
                let need = (f * f64::from(total) - 1e-9).ceil().max(0.0) as u32;
                (need, total - need.min(total))
            }
            FanInStrategy::Threshold(_) => {
                let reason = "the fraction must be between 0 and 1".to_owned();
                return Err(Error::InvalidOption { option: "Threshold", reason });
            }
        };
        Ok(FanIn { index, need, tolerate })
    }
}

/// Why a child gave no value: it failed, was cancelled, or had not finished when its fan-out
/// was decided (then it is cancelled if it was waiting to run, else left to finish).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChildFailed {
    /// The child job.
    pub job: JobId,
    /// Its status when the fan-out was decided.
    pub status: JobStatus,
    /// Its last error, if any.
    pub error: Option<String>,
}

impl fmt::Display for ChildFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status, &self.error) {
            (JobStatus::Failed, Some(e)) => write!(f, "child job {} failed: {e}", self.job),
            (JobStatus::Cancelled, _) => write!(f, "child job {} was cancelled", self.job),
            (status, _) => write!(f, "child job {} was {status} when its fan-out was decided", self.job),
        }
    }
}

impl std::error::Error for ChildFailed {}

/// What a fan-out's checkpoint records: the children started, then their results.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Recorded {
    Started { children: u32 },
    Results(Vec<Result<serde_json::Value, Failed>>),
}

/// A [`ChildFailed`] as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Failed {
    job: i64,
    status: String,
    error: Option<String>,
}

impl From<Failed> for ChildFailed {
    fn from(f: Failed) -> Self {
        // Recorded by this library from a status's own name.
        let status = f.status.parse().unwrap_or(JobStatus::Failed);
        ChildFailed { job: JobId(f.job), status, error: f.error }
    }
}

/// Starts one child job and waits for its result, suspended (see [`fan_out`]).
///
/// ```
/// use durable_jobs::{spawn, Child, JobContext, JobOptions, MemoryStore, Queue};
///
/// let queue = Queue::new(MemoryStore::new());
/// queue.register("charge", |_: &JobContext, cents: u64| Ok::<_, std::io::Error>(format!("receipt-{cents}")))?;
/// queue.register("order", |ctx: &JobContext, cents: u64| -> Result<String, durable_jobs::Error> {
///     let options = JobOptions::new().queue("payments").retries(5);
///     spawn::<String>(ctx, Child::new("charge", &cents).options(options))
/// })?;
/// let id = queue.enqueue("order", &1999, JobOptions::new())?;
/// queue.run_one("default")?; // starts the child in queue "payments" and waits
/// queue.run_one("payments")?;
/// queue.run_one("default")?;
/// assert_eq!(queue.result::<String>(id)?, "receipt-1999");
/// # Ok::<(), durable_jobs::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::ChildFailed`] if the child did not complete; otherwise as [`fan_out`].
pub fn spawn<T: DeserializeOwned>(ctx: &JobContext, child: Child) -> Result<T, Error> {
    let mut results = fan_out::<T>(ctx, vec![child], FanInStrategy::CollectAll)?;
    match results.pop() {
        Some(Ok(value)) => Ok(value),
        Some(Err(failed)) => Err(Error::ChildFailed(failed)),
        None => Err(Error::Suspended { job: ctx.id() }),
    }
}

/// Starts `children` as jobs and waits, suspended, until `strategy` is decided; returns their
/// results in order: the value of each completed child, or why it has none.
///
/// - The children are ordinary jobs (any registered handler, their own options; they may be
///   workflows themselves, and run in any process). They are inserted in the same transaction
///   that suspends the parent, so a crash can neither lose them nor start them twice.
/// - The parent holds no thread while it waits, and wakes once, when the strategy is
///   decided: by the worker that ends the deciding child at once, by others within their poll
///   interval. Children not finished then are cancelled ([`FanInStrategy::FailFast`] and
///   [`FanInStrategy::Threshold`]): those waiting to run at once, running ones asked to stop
///   (as [`Queue::cancel`](crate::Queue::cancel) does); the latter are reported with status
///   `running`, their results not used.
/// - The fan-out takes the next step position (shared with [`call`](crate::call) and the
///   waits); its results are recorded there, so a replay returns them without reading the
///   children again. A replay must pass as many children as the first run did.
/// - Cancelling the parent ([`Queue::cancel`](crate::Queue::cancel)) cancels its children and
///   their descendants waiting to run.
///
/// ```
/// use durable_jobs::{fan_out, Child, FanInStrategy, JobContext, JobOptions, MemoryStore, Queue};
///
/// let queue = Queue::new(MemoryStore::new());
/// queue.register("square", |_: &JobContext, n: u64| Ok::<_, std::io::Error>(n * n))?;
/// queue.register("sum-of-squares", |ctx: &JobContext, n: u64| -> Result<u64, durable_jobs::Error> {
///     let children = (1..=n).map(|i| Child::new("square", &i)).collect();
///     let squares = fan_out::<u64>(ctx, children, FanInStrategy::FailFast)?;
///     squares.into_iter().map(|r| r.map_err(durable_jobs::Error::ChildFailed)).sum()
/// })?;
/// let id = queue.enqueue("sum-of-squares", &3, JobOptions::new())?;
/// while queue.run_one("default")?.is_some() {}
/// assert_eq!(queue.result::<u64>(id)?, 1 + 4 + 9);
/// # Ok::<(), durable_jobs::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Suspended`] to return from the handler; for a child: [`Error::InvalidName`],
/// [`Error::InvalidOption`] (a unique key, or bad options), [`Error::Encode`] or
/// [`Error::PayloadTooLarge`] for its arguments (nothing is started); [`Error::Decode`] if a
/// child's result does not decode as `T`; [`Error::Determinism`] if another step was recorded
/// at this position or the number of children changed; [`Error::WaitInStep`] inside a step;
/// [`Error::LeaseLost`] or [`Error::Store`] if the results could not be recorded.
pub fn fan_out<T: DeserializeOwned>(
    ctx: &JobContext,
    children: Vec<Child>,
    strategy: FanInStrategy,
) -> Result<Vec<Result<T, ChildFailed>>, Error> {
    let results = ctx.at_next_position(FAN_OUT, |index| match index {
        Some(index) => ctx.fan_out_at(index, children, strategy),
        None => Err(Error::WaitInStep { job: ctx.id() }),
    })?;
    results
        .into_iter()
        .map(|result| match result {
            Ok(value) => serde_json::from_value(value).map(Ok).map_err(|source| Error::Decode {
                job: ctx.id(),
                name: FAN_OUT.into(),
                what: "result",
                source,
            }),
            Err(failed) => Ok(Err(failed.into())),
        })
        .collect()
}

type Results = Vec<Result<serde_json::Value, Failed>>;

impl JobContext {
    /// The fan-out at step position `index`: replayed, gathered, or starting its children.
    fn fan_out_at(&self, index: u32, children: Vec<Child>, strategy: FanInStrategy) -> Result<Results, Error> {
        let total = u32::try_from(children.len()).unwrap_or(u32::MAX);
        let rule = strategy.rule(index, total)?;
        match self.recorded_value::<Recorded>(index, FAN_OUT)? {
            Some(Recorded::Results(results)) if results.len() != children.len() => Err(Error::Determinism {
                job: self.id(),
                index,
                recorded: format!("{FAN_OUT} of {} children", results.len()),
                called: format!("{FAN_OUT} of {total} children"),
            }),
            Some(Recorded::Results(results)) => Ok(results),
            Some(Recorded::Started { children: started }) if started != total => Err(Error::Determinism {
                job: self.id(),
                index,
                recorded: format!("{FAN_OUT} of {started} children"),
                called: format!("{FAN_OUT} of {total} children"),
            }),
            Some(Recorded::Started { .. }) => self.gather(index, rule),
            None if children.is_empty() => {
                self.checkpoint(Checkpoint::value(
                    index,
                    FAN_OUT,
                    crate::call::to_json(&Recorded::Results(Vec::new())),
                ))?;
                Ok(Vec::new())
            }
            None => {
                let jobs = self.child_jobs(index, children)?;
                let checkpoint =
                    Checkpoint::value(index, FAN_OUT, crate::call::to_json(&Recorded::Started { children: total }));
                let suspension =
                    Suspension { checkpoint: Some(checkpoint), children: Some((rule, jobs)), ..Suspension::default() };
                Err(self.suspend(suspension))
            }
        }
    }

    /// Checks and encodes the children before anything is stored.
    fn child_jobs(&self, index: u32, children: Vec<Child>) -> Result<Vec<NewJob>, Error> {
        let now = self.queue.now();
        children
            .into_iter()
            .map(|child| {
                names::validate("job", &child.name)?;
                if child.options.unique_key.is_some() {
                    let reason = "a child job cannot have a unique key".to_owned();
                    return Err(Error::InvalidOption { option: "unique", reason });
                }
                let run_at = child.options.validate(now)?;
                let args = child.args.map_err(|source| Error::Encode {
                    name: child.name.clone(),
                    what: "arguments",
                    source,
                })?;
                self.queue.check_size(&child.name, "arguments", args.len())?;
                Ok(child.options.new_job(&child.name, args, now, run_at).parent(self.id(), index))
            })
            .collect()
    }

    /// The children's results once the fan-in is decided (recorded, and the children still
    /// waiting to run cancelled), or a suspension until it is.
    fn gather(&self, index: u32, rule: FanIn) -> Result<Results, Error> {
        let children = self.children(index)?;
        let succeeded = children.iter().filter(|c| c.status == JobStatus::Completed).count() as u32;
        let failed = children.iter().filter(|c| c.status.is_terminal()).count() as u32 - succeeded;
        let total = children.len() as u32;
        let decided = durable_jobs_store::ChildrenWait::new(rule, total, succeeded, failed).is_decided();
        if !decided {
            return Err(self.suspend(Suspension { children: Some((rule, Vec::new())), ..Suspension::default() }));
        }
        // Those still waiting to run are cancelled, in one store call.
        let unfinished: Vec<JobId> = children.iter().filter(|c| !c.status.is_terminal()).map(|c| c.id).collect();
        let mut cancels: HashMap<JobId, CancelOutcome> = if unfinished.is_empty() {
            HashMap::new()
        } else {
            let outcomes = self.queue.store.cancel_many(&unfinished, self.queue.now())?;
            if outcomes.contains(&CancelOutcome::Requested) {
                // Running children are no longer needed: told now, not at their heartbeat.
                self.queue.check_cancelled_runs();
            }
            unfinished.iter().copied().zip(outcomes).collect()
        };
        let mut results = Vec::with_capacity(children.len());
        for child in children {
            let cancel = cancels.remove(&child.id);
            results.push(self.outcome(child, cancel)?);
        }
        self.checkpoint(Checkpoint::value(index, FAN_OUT, crate::call::to_json(&Recorded::Results(results.clone()))))?;
        Ok(results)
    }

    /// A child's outcome once its fan-in is decided, given what cancelling it did if it had
    /// not finished: cancelled (it was waiting to run), left to finish (running), or its own
    /// outcome if it finished meanwhile.
    fn outcome(
        &self,
        mut child: JobRecord,
        cancel: Option<CancelOutcome>,
    ) -> Result<Result<serde_json::Value, Failed>, Error> {
        match cancel {
            Some(CancelOutcome::Cancelled) => child.status = JobStatus::Cancelled,
            Some(CancelOutcome::Finished(_)) => child = self.queue.store.get(child.id)?.unwrap_or(child),
            _ => {}
        }
        if child.status != JobStatus::Completed {
            let status = child.status.as_str().to_owned();
            return Ok(Err(Failed { job: child.id.0, status, error: child.last_error }));
        }
        let bytes = child.result.unwrap_or_default();
        serde_json::from_slice(&bytes).map(Ok).map_err(|source| Error::Decode {
            job: child.id,
            name: child.name,
            what: "result",
            source,
        })
    }

    /// The children started at step position `index`, in the order they were given.
    fn children(&self, index: u32) -> Result<Vec<JobRecord>, Error> {
        let mut found = Vec::new();
        let mut filter = JobFilter::new().parent(self.id()).limit(PAGE);
        loop {
            let page = self.queue.store.list(&filter)?;
            let Some(last) = page.last().map(|c| c.id) else { break };
            let full = page.len() == PAGE;
            let mine = Some(durable_jobs_store::ChildOf { parent: self.id(), index });
            found.extend(page.into_iter().filter(|c| c.parent == mine));
            if !full {
                break;
            }
            filter = filter.after(last);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_needs_its_fraction_rounded_up_exactly() {
        let need = |f: f64, n: u32| FanInStrategy::Threshold(f).rule(0, n).map(|r| (r.need, r.tolerate)).ok();
        assert_eq!(need(0.07, 100), Some((7, 93)));
        assert_eq!(need(0.56, 100), Some((56, 44)));
        assert_eq!(need(0.5, 3), Some((2, 1)));
        assert_eq!(need(1.0, 4), Some((4, 0)));
        assert_eq!(need(0.0, 4), Some((0, 4)));
        assert_eq!(need(1.5, 4), None);
    }
}
