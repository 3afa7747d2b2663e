//! Observability: `tracing` spans, `metrics` counters, histograms and gauges, and
//! [events](crate::Queue::on_event).
//!
//! All three cost next to nothing when unused: spans are `tracing` macros (a cached check when
//! no subscriber wants them), metrics go through the `metrics` facade (a no-op until a program
//! installs a recorder, such as a Prometheus exporter), and no event is built while no
//! listener is registered.
//!
//! # Spans
//!
//! | span | level | fields | where |
//! |---|---|---|---|
//! | `job` | info | `id` (the job id), `name`, `queue`, `attempt` | around each run of a handler, on the thread running it (a worker thread, or the caller of [`run_one`](crate::Queue::run_one)) |
//! | `step` | debug | `index` (the step position; absent for a step nested in a step), `name` (the step's name, or `@sleep`, `@signal:<name>`, `@fan-out` for waits), `replayed` | inside `job`, around each [`call`](crate::call), [`step`](crate::JobContext::step), sleep, signal wait and fan-out |
//!
//! `replayed` is `true` when the step found its recorded outcome and returned it without
//! running (or, for a wait, without waiting or writing), `false` when it ran, recorded, or
//! suspended. The engine's log lines inside a run (a failed attempt, a lost lease) carry the
//! `job` span's fields.
//!
//! With `tracing-subscriber`, `fmt().with_span_events(FmtSpan::CLOSE)` prints each span as it
//! closes, with its fields and timing; the flagship example's `--trace` does that.
//!
//! # Metrics
//!
//! Names follow Prometheus conventions. `queue` and `name` are a job's queue and handler
//! name: their number is bounded by the program's registrations, and no label holds a job id.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `durable_jobs_enqueued_total` | counter | `queue`, `name` | jobs inserted: enqueues (a duplicate of a unique job is not counted) and the children of fan-outs, once committed |
//! | `durable_jobs_started_total` | counter | `queue`, `name` | runs started (a resumed workflow's run counts again) |
//! | `durable_jobs_completed_total` | counter | `queue`, `name` | jobs completed |
//! | `durable_jobs_failed_total` | counter | `queue`, `name` | jobs failed for good before their attempts ran out (permanent errors) |
//! | `durable_jobs_retried_total` | counter | `queue`, `name` | failed attempts with a retry scheduled |
//! | `durable_jobs_dead_total` | counter | `queue`, `name` | jobs dead-lettered: failed for good on their last attempt (including a last run lost with its worker) |
//! | `durable_jobs_reclaimed_total` | counter | `queue`, `name` | runs lost with their worker and taken back by a reaper |
//! | `durable_jobs_cancelled_total` | counter | `queue`, `name` | runs that ended cancelled because their job was cancelled while they ran |
//! | `durable_jobs_run_seconds` | histogram | `queue`, `name` | how long each run's handler ran, for runs whose outcome (completed, retrying, failed, dead, cancelled, suspended) committed |
//! | `durable_jobs_queue_wait_seconds` | histogram | `queue`, `name` | how long each run waited between its job's due time (`run_at`; for a woken workflow, the time it first became due) and its start |
//! | `durable_jobs_queue_depth` | gauge | `queue`, `status` | jobs per queue and status (`pending`, `scheduled`, `running`, `waiting`, `paused`, `completed`, `failed`, `cancelled`), summed over names |
//!
//! Counters count the [events](#events) of the same name, and like them are counted by the
//! process that learned the fact, once it is durable (a run whose outcome was refused because
//! its lease was lost counts nothing). `failed + retried + dead` is the number of failed
//! attempts that ended with a write.
//!
//! The queue depth is read by every worker's maintenance thread with
//! [`Store::counts`](crate::Store::counts), every 10 s by default
//! ([`WorkerBuilder::queue_depth_interval`](crate::WorkerBuilder::queue_depth_interval); `None`
//! turns it off). That read visits every job row (finished ones too), so on a large table keep
//! the interval long or turn it off where another worker reports it. A status that empties is
//! set back to 0.
//!
//! # Events
//!
//! Each [`Event`] names the job, its handler name, queue and attempt. Listeners
//! are told on the thread that learned the fact, after it is durable:
//!
//! | kind | when | thread |
//! |---|---|---|
//! | `Started` | a run's handler is about to start (after its claim, and after its start is confirmed when the store asks for it) | the run's |
//! | `Completed` | the run's completion committed | committer (`run_one`: the caller's) |
//! | `Retrying` | the run failed retryably with attempts left, and the retry committed | committer |
//! | `Failed` | the run failed for good with attempts left: a permanent error, undecodable arguments, a result over the payload limit, a determinism error | committer |
//! | `DeadLettered` | the run's last attempt failed retryably (an error, a panic, a timeout) and the failure committed; or a reaper found that a job's lost run was its last attempt (after its `Reclaimed`) | committer, or maintenance |
//! | `Suspended` | the run's durable wait (sleep, signal wait, fan-out) committed | committer |
//! | `Woken` | a run goes past a wait that an earlier run suspended at and left unresolved: a signal wait recorded as waiting that now receives its signal or times out, a fan-out whose children now decide it, both once their new checkpoint committed; a sleep whose deadline has passed and which is the last step recorded | the run's |
//! | `Reclaimed` | a reaper took back a job whose run was lost (its worker died, or stalled past its lease) | maintenance |
//! | `Cancelled` | the job was cancelled while it ran and its run ended (not retried; a job cancelled before it ran tells nothing) | committer |
//!
//! So a job that completes at once tells `Started, Completed`; one that fails once then
//! succeeds `Started, Retrying, Started, Completed`; one whose every attempt fails ends with
//! `DeadLettered`; a workflow that sleeps `Started, Suspended, Started, Woken, Completed`.
//! Each terminal failure is exactly one of `Failed` or `DeadLettered`.
//!
//! A sleep records nothing when it is woken, so a run that dies after waking and before it
//! records another step tells `Woken` again on its next run. Events from different threads may
//! interleave: a `Reclaimed` may come after the `Started` of the job's next run. Events of a
//! job's runs in other processes are told in those processes.

use std::collections::HashMap;
use std::collections::HashSet;
use std::time::Duration;

use durable_jobs_store::{Claim, ClaimedJob, JobStatus, NewJob, Reclaimed, StatusCount, Write, WriteOp, WriteOutcome};
use parking_lot::RwLock;

use crate::events::{Event, EventKind};
use crate::queue::QueueInner;
use crate::JobContext;

/// `durable_jobs_enqueued_total`: counter of jobs inserted.
pub const ENQUEUED: &str = "durable_jobs_enqueued_total";
/// `durable_jobs_started_total`: counter of runs started.
pub const STARTED: &str = "durable_jobs_started_total";
/// `durable_jobs_completed_total`: counter of jobs completed.
pub const COMPLETED: &str = "durable_jobs_completed_total";
/// `durable_jobs_failed_total`: counter of jobs failed for good before their attempts ran out.
pub const FAILED: &str = "durable_jobs_failed_total";
/// `durable_jobs_retried_total`: counter of failed attempts with a retry scheduled.
pub const RETRIED: &str = "durable_jobs_retried_total";
/// `durable_jobs_dead_total`: counter of jobs failed for good on their last attempt.
pub const DEAD: &str = "durable_jobs_dead_total";
/// `durable_jobs_reclaimed_total`: counter of lost runs taken back by a reaper.
pub const RECLAIMED: &str = "durable_jobs_reclaimed_total";
/// `durable_jobs_cancelled_total`: counter of running jobs whose run ended cancelled.
pub const CANCELLED: &str = "durable_jobs_cancelled_total";
/// `durable_jobs_queue_wait_seconds`: histogram of the time from a job's due time to its
/// claim, in seconds.
pub const QUEUE_WAIT_SECONDS: &str = "durable_jobs_queue_wait_seconds";
/// `durable_jobs_run_seconds`: histogram of handler run times, in seconds.
pub const RUN_SECONDS: &str = "durable_jobs_run_seconds";
/// `durable_jobs_queue_depth`: gauge of jobs per queue and status.
pub const QUEUE_DEPTH: &str = "durable_jobs_queue_depth";

/// What the end of a run needs for its event and metrics once its write is committed.
#[derive(Debug)]
pub(crate) struct RunEnd {
    pub(crate) claim: Claim,
    pub(crate) name: String,
    pub(crate) queue: String,
    pub(crate) attempt: u32,
    pub(crate) run_time: Duration,
    pub(crate) ending: Ending,
}

impl RunEnd {
    /// The end of `job`'s run, taking its names.
    pub(crate) fn new(job: ClaimedJob, run_time: Duration, ending: Ending) -> Self {
        RunEnd { claim: job.claim(), name: job.name, queue: job.queue, attempt: job.attempt, run_time, ending }
    }
}

/// What a failing run's write means, for its event: the store cannot say, the run can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Ending {
    /// As its write says.
    #[default]
    Plain,
    /// A terminal failure on the last attempt (not a permanent error): a dead letter.
    Dead,
    /// Its job was cancelled while it ran: the store ends the run `Cancelled`.
    Cancelled,
}

/// The counters, each counting the event of the same name.
#[derive(Debug, Clone, Copy)]
enum Counter {
    Enqueued,
    Started,
    Completed,
    Failed,
    Retried,
    Dead,
    Reclaimed,
    Cancelled,
}

const COUNTERS: [&str; 8] = [ENQUEUED, STARTED, COMPLETED, FAILED, RETRIED, DEAD, RECLAIMED, CANCELLED];

/// What the metrics of this crate tell a recorder about where they come from.
static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The metric keys of one queue and name, built once and retained, so that recording a metric
/// allocates nothing (a key built per call would cost allocations per job even with no
/// recorder installed).
#[derive(Debug)]
struct Keys {
    counters: [metrics::Key; 8],
    run_seconds: metrics::Key,
    queue_wait_seconds: metrics::Key,
}

impl Keys {
    fn new(queue: &str, name: &str) -> Self {
        let key = |metric: &'static str| {
            let labels =
                vec![metrics::Label::new("queue", queue.to_owned()), metrics::Label::new("name", name.to_owned())];
            metrics::Key::from_parts(metric, labels).to_retained()
        };
        Keys { counters: COUNTERS.map(key), run_seconds: key(RUN_SECONDS), queue_wait_seconds: key(QUEUE_WAIT_SECONDS) }
    }
}

/// The metric keys of a queue's jobs, per queue and handler name (as many as the metrics'
/// label values).
#[derive(Debug, Default)]
pub(crate) struct MetricKeys(RwLock<HashMap<String, HashMap<String, Keys>>>);

impl MetricKeys {
    fn with<R>(&self, queue: &str, name: &str, f: impl FnOnce(&Keys) -> R) -> R {
        if let Some(keys) = self.0.read().get(queue).and_then(|names| names.get(name)) {
            return f(keys);
        }
        let mut map = self.0.write();
        let names = map.entry(queue.to_owned()).or_default();
        f(names.entry(name.to_owned()).or_insert_with(|| Keys::new(queue, name)))
    }

    fn count(&self, counter: Counter, queue: &str, name: &str, n: u64) {
        self.with(queue, name, |keys| {
            let key = &keys.counters[counter as usize];
            metrics::with_recorder(|r| r.register_counter(key, &METADATA).increment(n));
        });
    }

    /// A run started: counts it and records how long it waited (one look-up).
    fn started(&self, queue: &str, name: &str, waited: Duration) {
        self.with(queue, name, |keys| {
            metrics::with_recorder(|r| {
                r.register_counter(&keys.counters[Counter::Started as usize], &METADATA).increment(1);
                r.register_histogram(&keys.queue_wait_seconds, &METADATA).record(waited.as_secs_f64());
            });
        });
    }

    /// A run ended: counts `counter`, if any, and records its run time (one look-up).
    fn run_ended(&self, counter: Option<Counter>, queue: &str, name: &str, run_time: Duration) {
        self.with(queue, name, |keys| {
            metrics::with_recorder(|r| {
                if let Some(counter) = counter {
                    r.register_counter(&keys.counters[counter as usize], &METADATA).increment(1);
                }
                r.register_histogram(&keys.run_seconds, &METADATA).record(run_time.as_secs_f64());
            });
        });
    }
}

/// `n` jobs of `name` were inserted into `queue`.
pub(crate) fn enqueued(inner: &QueueInner, queue: &str, name: &str, n: u64) {
    if n > 0 {
        inner.metric_keys.count(Counter::Enqueued, queue, name, n);
    }
}

/// `job`'s handler is about to run, `waited` after its due time.
pub(crate) fn started(inner: &QueueInner, job: &ClaimedJob, waited: Duration) {
    inner.metric_keys.started(&job.queue, &job.name, waited);
    inner.events.emit(|| event(job.id, &job.name, &job.queue, job.attempt, EventKind::Started));
}

/// `ctx`'s run went past a wait an earlier run left unresolved (see the module docs).
pub(crate) fn woken(ctx: &JobContext, step: &str, index: u32) {
    let kind = || EventKind::Woken { step: step.to_owned(), index };
    ctx.queue.events.emit(|| event(ctx.id(), ctx.name(), ctx.queue(), ctx.attempt(), kind()));
}

fn event(job: durable_jobs_store::JobId, name: &str, queue: &str, attempt: u32, kind: EventKind) -> Event {
    Event { job, name: name.to_owned(), queue: queue.to_owned(), attempt, kind }
}

/// After a commit of `writes` with `outcomes`: counts and tells the runs ended by applied
/// writes. `ends` are the runs' ends, in the order of their ending writes.
pub(crate) fn committed(inner: &QueueInner, writes: &[Write], outcomes: &[WriteOutcome], ends: &[RunEnd]) {
    let mut next = 0;
    for (write, outcome) in writes.iter().zip(outcomes) {
        if !write.ends_run() {
            continue;
        }
        // In order, unless a write came without its end (then found by its run).
        let end = match ends.get(next) {
            Some(end) if end.claim == write.claim => {
                next += 1;
                end
            }
            _ => match ends.iter().find(|e| e.claim == write.claim) {
                Some(end) => end,
                None => continue,
            },
        };
        if *outcome == WriteOutcome::Applied {
            run_ended(inner, end, &write.op);
        }
    }
}

fn run_ended(inner: &QueueInner, end: &RunEnd, op: &WriteOp) {
    let (queue, name) = (end.queue.as_str(), end.name.as_str());
    let counter = match op {
        WriteOp::Retry { .. } | WriteOp::Fail { .. } if end.ending == Ending::Cancelled => Some(Counter::Cancelled),
        WriteOp::Complete { .. } => Some(Counter::Completed),
        WriteOp::Retry { .. } => Some(Counter::Retried),
        WriteOp::Fail { .. } if end.ending == Ending::Dead => Some(Counter::Dead),
        WriteOp::Fail { .. } => Some(Counter::Failed),
        WriteOp::Suspend { children, .. } => {
            enqueued_children(inner, children);
            None
        }
        _ => return,
    };
    inner.metric_keys.run_ended(counter, queue, name, end.run_time);
    let run_time = end.run_time;
    let kind = || match op {
        WriteOp::Retry { error, .. } | WriteOp::Fail { error, .. } if end.ending == Ending::Cancelled => {
            Some(EventKind::Cancelled { error: error.clone(), run_time })
        }
        WriteOp::Complete { .. } => Some(EventKind::Completed { run_time }),
        WriteOp::Retry { error, run_at, .. } => {
            Some(EventKind::Retrying { error: error.clone(), retry_at: run_at.to_system_time(), run_time })
        }
        WriteOp::Fail { error, .. } if end.ending == Ending::Dead => {
            Some(EventKind::DeadLettered { error: error.clone(), run_time: Some(run_time) })
        }
        WriteOp::Fail { error, .. } => Some(EventKind::Failed { error: error.clone(), run_time }),
        WriteOp::Suspend { wake_at, .. } => {
            Some(EventKind::Suspended { wake_at: wake_at.map(durable_jobs_store::Timestamp::to_system_time), run_time })
        }
        _ => None,
    };
    if inner.events.is_active() {
        if let Some(kind) = kind() {
            inner.events.emit(|| event(end.claim.job, name, queue, end.attempt, kind));
        }
    }
}

/// Counts the children a committed fan-out inserted, a run of equal names at a time.
fn enqueued_children(inner: &QueueInner, children: &[NewJob]) {
    let mut i = 0;
    while let Some(first) = children.get(i) {
        let same = children[i..].iter().take_while(|c| c.queue == first.queue && c.name == first.name).count();
        enqueued(inner, &first.queue, &first.name, same as u64);
        i += same;
    }
}

/// After a reaper's reclaim: counts and tells each job reclaimed (read back for its names), and
/// the dead letters among them.
pub(crate) fn reclaimed(inner: &QueueInner, r: &Reclaimed) {
    let charged = r.requeued.iter().map(|&id| (id, true, false));
    let failed = r.failed.iter().map(|&id| (id, true, true));
    let released = r.released.iter().map(|&id| (id, false, false));
    for (id, charged, dead) in charged.chain(failed).chain(released) {
        let record = match inner.store.get(id) {
            Ok(Some(record)) => record,
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!(job = %id, error = %e, "could not read a reclaimed job for its metrics and events");
                continue;
            }
        };
        let (queue, name) = (record.queue.as_str(), record.name.as_str());
        inner.metric_keys.count(Counter::Reclaimed, queue, name, 1);
        inner.events.emit(|| event(id, name, queue, record.attempt, EventKind::Reclaimed { charged }));
        if dead {
            inner.metric_keys.count(Counter::Dead, queue, name, 1);
            let error = record.last_error.clone().unwrap_or_default();
            let kind = EventKind::DeadLettered { error, run_time: None };
            inner.events.emit(|| event(id, name, queue, record.attempt, kind));
        }
    }
}

/// The queue-depth gauges one worker sets, and which it set last, so that a status that
/// empties is set back to zero.
#[derive(Debug, Default)]
pub(crate) struct QueueDepth {
    last: HashSet<(String, JobStatus)>,
}

impl QueueDepth {
    /// Sets the gauges from `counts`.
    pub(crate) fn report(&mut self, counts: &[StatusCount]) {
        for (queue, status, n) in self.update(counts) {
            metrics::gauge!(QUEUE_DEPTH, "queue" => queue, "status" => status.as_str()).set(n as f64);
        }
    }

    /// The values to set: per queue and status, summed over names, and 0 for those set last
    /// time and gone now; sorted.
    fn update(&mut self, counts: &[StatusCount]) -> Vec<(String, JobStatus, u64)> {
        let mut depth: HashMap<(String, JobStatus), u64> = HashMap::new();
        for c in counts {
            *depth.entry((c.queue.clone(), c.status)).or_default() += c.count;
        }
        for gone in std::mem::take(&mut self.last) {
            depth.entry(gone).or_insert(0);
        }
        self.last = depth.iter().filter(|(_, &n)| n > 0).map(|(k, _)| k.clone()).collect();
        let mut values: Vec<_> = depth.into_iter().map(|((q, s), n)| (q, s, n)).collect();
        values.sort();
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(queue: &str, name: &str, status: JobStatus, n: u64) -> StatusCount {
        StatusCount::new(queue, name, status, n, 0)
    }

    #[test]
    fn queue_depth_sums_names_and_sets_emptied_statuses_back_to_zero() {
        let mut depth = QueueDepth::default();
        let first = depth.update(&[
            count("a", "x", JobStatus::Pending, 2),
            count("a", "y", JobStatus::Pending, 3),
            count("a", "y", JobStatus::Failed, 1),
            count("b", "x", JobStatus::Waiting, 4),
        ]);
        let s = |q: &str, st, n| (q.to_owned(), st, n);
        assert_eq!(
            first,
            vec![s("a", JobStatus::Pending, 5), s("a", JobStatus::Failed, 1), s("b", JobStatus::Waiting, 4)]
        );
        let second = depth.update(&[count("a", "y", JobStatus::Failed, 6)]);
        assert_eq!(
            second,
            vec![s("a", JobStatus::Pending, 0), s("a", JobStatus::Failed, 6), s("b", JobStatus::Waiting, 0)]
        );
        let third = depth.update(&[count("a", "y", JobStatus::Failed, 6)]);
        assert_eq!(third, vec![s("a", JobStatus::Failed, 6)], "zeros are set once");
    }
}
