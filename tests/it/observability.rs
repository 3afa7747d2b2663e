//! Issue 11, point 5: observability. Events through `Queue::on_event` in exact sequences,
//! `tracing` spans through a test subscriber, `metrics` through recorders.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use durable_jobs::observability::{
    COMPLETED, DEAD, ENQUEUED, FAILED, QUEUE_DEPTH, QUEUE_WAIT_SECONDS, RECLAIMED, RETRIED, RUN_SECONDS, STARTED,
};
use durable_jobs::store::{ClaimRequest, Timestamp, Write, WriteOutcome};
use durable_jobs::{
    fan_out, wait_signal, Child, Clock, Error, Event, EventKind, FanInStrategy, JobContext, JobId, JobOptions,
    JobStatus, ManualClock, Queue,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use parking_lot::Mutex;
use tracing_subscriber::layer::SubscriberExt;

use crate::capture::{unique_queue, Kept, SpanLog, SpanSeen};
use crate::support::{wait_until, Backend, Ledger, PATIENCE};

const HOUR: Duration = Duration::from_secs(3600);

/// Every event of `queue`, in the order told.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Event>>>);

impl Events {
    fn listen(queue: &Queue) -> Events {
        let events = Events::default();
        let e = events.clone();
        queue.on_event(move |event| e.0.lock().push(event.clone()));
        events
    }

    /// The events of `job`, each as `kind attempt` (`started 1`, `retrying 1`...).
    fn of(&self, job: JobId) -> Vec<String> {
        self.0.lock().iter().filter(|e| e.job == job).map(|e| format!("{} {}", short(&e.kind), e.attempt)).collect()
    }

    fn wait_for(&self, job: JobId, n: usize) -> Vec<String> {
        wait_until(&format!("{n} events of job {job}"), || self.of(job).len() >= n);
        self.of(job)
    }

    fn all(&self) -> Vec<Event> {
        self.0.lock().clone()
    }
}

fn short(kind: &EventKind) -> String {
    match kind {
        EventKind::Started => "started".into(),
        EventKind::Completed { .. } => "completed".into(),
        EventKind::Retrying { .. } => "retrying".into(),
        EventKind::Failed { .. } => "failed".into(),
        EventKind::DeadLettered { .. } => "dead".into(),
        EventKind::Suspended { .. } => "suspended".into(),
        EventKind::Woken { step, index, .. } => format!("woken({step}#{index})"),
        EventKind::Reclaimed { charged: true, .. } => "reclaimed(charged)".into(),
        EventKind::Reclaimed { .. } => "reclaimed(free)".into(),
        other => format!("{other:?}"),
    }
}

/// A job that completes tells `Started` then `Completed`, with its identity, once its
/// completion committed (a worker's committer tells it before `wait` returns).
pub fn a_completed_job_tells_started_then_completed(db: &dyn Backend) {
    let queue = db.queue();
    let events = Events::listen(&queue);
    queue.register("greet", |_: &JobContext, who: String| Ok::<_, std::io::Error>(format!("hi {who}"))).unwrap();
    let id = queue.enqueue("greet", "ada", JobOptions::new().queue("mail")).unwrap();
    let worker = queue.worker().concurrency(1).queues(["mail"]).start().unwrap();
    assert_eq!(queue.wait(id, PATIENCE).unwrap().status, JobStatus::Completed);
    assert_eq!(events.of(id), ["started 1", "completed 1"], "told before wait returned");
    worker.shutdown();
    let all = events.all();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|e| e.job == id && e.name == "greet" && e.queue == "mail"), "{all:?}");
}

/// Registers "flaky": fails its first `fails` attempts with a retryable error (retry at once),
/// then returns its attempt.
fn register_flaky(queue: &Queue, fails: u32) {
    queue
        .register("flaky", move |ctx: &JobContext, (): ()| -> Result<u32, Error> {
            if ctx.attempt() <= fails {
                return Err(Error::retry_after(Duration::ZERO, format!("flake {}", ctx.attempt())));
            }
            Ok(ctx.attempt())
        })
        .unwrap();
}

/// A failed attempt with attempts left tells `Retrying` (with its error and retry time), and
/// the next attempt starts and completes.
pub fn a_retried_job_tells_retrying_then_completes(db: &dyn Backend) {
    let queue = db.queue();
    let events = Events::listen(&queue);
    register_flaky(&queue, 1);
    let id = queue.enqueue("flaky", &(), JobOptions::new().retries(3)).unwrap();
    let worker = queue.worker().concurrency(1).start().unwrap();
    assert_eq!(queue.wait(id, PATIENCE).unwrap().status, JobStatus::Completed);
    worker.shutdown();
    assert_eq!(events.of(id), ["started 1", "retrying 1", "started 2", "completed 2"]);
    let retrying = events.all().into_iter().find(|e| matches!(e.kind, EventKind::Retrying { .. })).unwrap();
    match retrying.kind {
        EventKind::Retrying { error, retry_at, .. } => {
            assert!(error.contains("flake 1"), "{error}");
            assert!(retry_at <= std::time::SystemTime::now());
        }
        other => panic!("{other:?}"),
    }
}

/// A job whose last attempt fails retryably is dead-lettered (not "failed"); a permanent
/// error fails at once (not dead-lettered). Each tells exactly one of the two.
pub fn the_last_failed_attempt_is_dead_lettered_and_a_permanent_error_failed(db: &dyn Backend) {
    let queue = db.queue();
    let events = Events::listen(&queue);
    register_flaky(&queue, 10);
    queue
        .register("declined", |_: &JobContext, (): ()| -> Result<(), Error> { Err(Error::permanent("card declined")) })
        .unwrap();
    let doomed = queue.enqueue("flaky", &(), JobOptions::new().retries(2)).unwrap();
    let declined = queue.enqueue("declined", &(), JobOptions::new().retries(5)).unwrap();
    let worker = queue.worker().concurrency(2).start().unwrap();
    assert_eq!(queue.wait(doomed, PATIENCE).unwrap().status, JobStatus::Failed);
    assert_eq!(queue.wait(declined, PATIENCE).unwrap().status, JobStatus::Failed);
    worker.shutdown();
    assert_eq!(events.of(doomed), ["started 1", "retrying 1", "started 2", "dead 2"]);
    assert_eq!(events.of(declined), ["started 1", "failed 1"]);
    for e in events.all() {
        match e.kind {
            EventKind::DeadLettered { error, run_time, .. } => {
                assert!(error.contains("flake 2"), "{error}");
                assert!(run_time.is_some());
            }
            EventKind::Failed { error, .. } => assert!(error.contains("card declined"), "{error}"),
            _ => {}
        }
    }
}

/// Durable waits tell `Suspended` when the run ends in one and `Woken` when a later run gets
/// past it: a sleep (and not again on a replay after a later step recorded a failure), a
/// signal wait, a fan-out.
pub fn waits_tell_suspended_then_woken(db: &dyn Backend) {
    let clock = ManualClock::new();
    let queue = Queue::builder(db.store()).clock(clock.clone()).build();
    let events = Events::listen(&queue);
    queue
        .register("nap", |ctx: &JobContext, (): ()| -> Result<(), Error> {
            ctx.step("before", || Ok::<_, std::io::Error>(()))?;
            ctx.sleep(HOUR)?;
            // Fails once after waking: the retry replays the sleep without waking again.
            ctx.step("after", || if ctx.attempt() == 1 { Err("not yet") } else { Ok(()) })?;
            Ok(())
        })
        .unwrap();
    queue.register("confirm", |ctx: &JobContext, (): ()| -> Result<u32, Error> { wait_signal(ctx, "code") }).unwrap();
    queue.register("square", |_: &JobContext, n: u64| Ok::<_, std::io::Error>(n * n)).unwrap();
    queue
        .register("sum", |ctx: &JobContext, n: u64| -> Result<u64, Error> {
            let children = (1..=n).map(|i| Child::new("square", &i)).collect();
            let squares = fan_out::<u64>(ctx, children, FanInStrategy::FailFast)?;
            squares.into_iter().map(|r| r.map_err(Error::ChildFailed)).sum()
        })
        .unwrap();
    let nap = queue.enqueue("nap", &(), JobOptions::new().retries(2)).unwrap();
    let t0 = clock.now();
    assert_eq!(queue.run_one("default").unwrap(), Some(nap));
    assert_eq!(events.of(nap), ["started 1", "suspended 1"]);
    let wake_at = events.all().into_iter().find_map(|e| match e.kind {
        EventKind::Suspended { wake_at, .. } => wake_at,
        _ => None,
    });
    assert_eq!(wake_at.map(Timestamp::from_system_time), Some(Timestamp::from_system_time(t0).saturating_add(HOUR)));
    clock.advance(HOUR);
    assert_eq!(queue.run_one("default").unwrap(), Some(nap));
    clock.advance(HOUR);
    assert_eq!(queue.run_one("default").unwrap(), Some(nap));
    assert_eq!(queue.job(nap).unwrap().unwrap().status, JobStatus::Completed);
    assert_eq!(
        events.of(nap),
        ["started 1", "suspended 1", "started 1", "woken(@sleep#1) 1", "retrying 1", "started 2", "completed 2"]
    );

    let confirm = queue.enqueue("confirm", &(), JobOptions::new()).unwrap();
    queue.run_one("default").unwrap();
    queue.signal(confirm, "code", &7).unwrap();
    queue.run_one("default").unwrap();
    assert_eq!(queue.result::<u32>(confirm).unwrap(), 7);
    assert_eq!(events.of(confirm), ["started 1", "suspended 1", "started 1", "woken(@signal:code#0) 1", "completed 1"]);

    let sum = queue.enqueue("sum", &2, JobOptions::new()).unwrap();
    while queue.run_one("default").unwrap().is_some() {}
    assert_eq!(queue.result::<u64>(sum).unwrap(), 5);
    assert_eq!(events.of(sum), ["started 1", "suspended 1", "started 1", "woken(@fan-out#0) 1", "completed 1"]);
    let squares = events.all().iter().filter(|e| e.name == "square" && short(&e.kind) == "completed").count();
    assert_eq!(squares, 2, "the children tell their own events");
}

/// A listener that panics on every event stops neither the next listener nor the job nor
/// later events; its panics are contained.
pub fn a_panicking_listener_stops_neither_the_next_nor_the_job(db: &dyn Backend) {
    let queue = db.queue();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    queue.on_event(move |_| {
        c.fetch_add(1, Ordering::Relaxed);
        panic!("listener bug");
    });
    let events = Events::listen(&queue);
    queue.register("job", |_: &JobContext, n: u32| Ok::<_, std::io::Error>(n)).unwrap();
    let ids = queue.enqueue_batch("job", &[1, 2, 3], JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(2).start().unwrap();
    for &id in &ids {
        assert_eq!(queue.wait(id, PATIENCE).unwrap().status, JobStatus::Completed);
    }
    assert!(worker.health().is_ok(), "the committer survived the panics");
    worker.shutdown();
    for &id in &ids {
        assert_eq!(events.of(id), ["started 1", "completed 1"]);
    }
    assert_eq!(calls.load(Ordering::Relaxed), 6, "the panicking listener was called for every event");
}

/// A run lost with its worker tells `Reclaimed` from the reaper, charged or not; a lost last
/// attempt is also dead-lettered. Counted as `reclaimed` and `dead` by the global recorder.
pub fn reclaimed_jobs_are_told_and_counted(db: &dyn Backend) {
    let metrics = Kept::global();
    let q = unique_queue();
    let store = db.store();
    let queue = db.queue();
    let events = Events::listen(&queue);
    queue.register("job", |ctx: &JobContext, (): ()| Ok::<_, std::io::Error>(ctx.attempt())).unwrap();
    let options = |retries| JobOptions::new().queue(q.as_str()).retries(retries);
    let again = queue.enqueue("job", &(), options(2)).unwrap();
    let last = queue.enqueue("job", &(), options(1)).unwrap();
    let prefetched = queue.enqueue("job", &(), options(1)).unwrap();
    // A "dead" worker claims all three with a short lease, starts two, and disappears.
    let now = Timestamp::now();
    let req = ClaimRequest::new("dead", now, now.saturating_add(Duration::from_millis(200)))
        .queues([q.as_str()])
        .names(["job"])
        .limit(10);
    let claimed = store.claim(&req).unwrap().jobs;
    assert_eq!(claimed.len(), 3);
    let starts: Vec<Write> = claimed[..2].iter().map(|c| Write::start(c.claim())).collect();
    assert_eq!(store.commit("dead", now, &starts).unwrap(), vec![WriteOutcome::Applied; 2]);
    let worker = queue.worker().concurrency(1).queues([q.as_str()]).lease(Duration::from_millis(400)).start().unwrap();
    for id in [again, last, prefetched] {
        queue.wait(id, PATIENCE).unwrap();
    }
    let not_started =
        |id| -> Vec<String> { events.wait_for(id, 1).into_iter().filter(|e| !e.starts_with("started")).collect() };
    wait_until("every event", || events.all().len() == 8);
    worker.shutdown();
    assert_eq!(not_started(again), ["reclaimed(charged) 1", "completed 2"]);
    assert_eq!(not_started(last), ["reclaimed(charged) 1", "dead 1"]);
    assert_eq!(not_started(prefetched), ["reclaimed(free) 0", "completed 1"]);
    let started = |id| events.of(id).iter().filter(|e| e.starts_with("started")).count();
    assert_eq!((started(again), started(last), started(prefetched)), (1, 0, 1));
    assert_eq!(metrics.counter(RECLAIMED, &q, "job"), 3);
    assert_eq!(metrics.counter(DEAD, &q, "job"), 1);
    assert_eq!(metrics.counter(COMPLETED, &q, "job"), 2);
}

/// Every counter counts its outcome exactly, and each run's time is recorded (a local
/// recorder: `run_one` does everything on this thread).
pub fn metrics_count_each_outcome(db: &dyn Backend) {
    let clock = ManualClock::new();
    let queue = Queue::builder(db.store()).clock(clock.clone()).build();
    register_flaky(&queue, 1);
    queue.register("ok", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    queue.register("declined", |_: &JobContext, (): ()| -> Result<(), Error> { Err(Error::permanent("no")) }).unwrap();
    queue
        .register("doomed", |_: &JobContext, (): ()| -> Result<(), Error> {
            Err(Error::retry_after(Duration::ZERO, "x"))
        })
        .unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        queue.enqueue_batch("ok", &[(), ()], JobOptions::new()).unwrap();
        queue.enqueue("flaky", &(), JobOptions::new().retries(3)).unwrap();
        queue.enqueue("declined", &(), JobOptions::new().retries(3)).unwrap();
        queue.enqueue("doomed", &(), JobOptions::new().retries(2)).unwrap();
        let mut runs = 0;
        while queue.run_one("default").unwrap().is_some() {
            runs += 1;
        }
        assert_eq!(runs, 7, "ok ×2, flaky ×2, declined, doomed ×2");
    });
    let mut counters: HashMap<(String, String), u64> = HashMap::new();
    let mut histograms: HashMap<(String, String), usize> = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: BTreeMap<&str, &str> = key.labels().map(|l| (l.key(), l.value())).collect();
        assert_eq!(labels.keys().copied().collect::<Vec<_>>(), ["name", "queue"], "{key:?}");
        assert_eq!(labels["queue"], "default");
        let id = (key.name().to_owned(), labels["name"].to_owned());
        match value {
            DebugValue::Counter(n) => *counters.entry(id).or_default() += n,
            DebugValue::Histogram(values) => *histograms.entry(id).or_default() += values.len(),
            DebugValue::Gauge(_) => panic!("no gauge without a worker: {key:?}"),
        }
    }
    let counter = |metric: &str, name: &str| counters.get(&(metric.to_owned(), name.to_owned())).copied().unwrap_or(0);
    let table: Vec<(&str, [u64; 4])> = [ENQUEUED, STARTED, COMPLETED, RETRIED, FAILED, DEAD]
        .iter()
        .map(|m| (*m, ["ok", "flaky", "declined", "doomed"].map(|n| counter(m, n))))
        .collect();
    assert_eq!(
        table,
        [
            (ENQUEUED, [2, 1, 1, 1]),
            (STARTED, [2, 2, 1, 2]),
            (COMPLETED, [2, 1, 0, 0]),
            (RETRIED, [0, 1, 0, 1]),
            (FAILED, [0, 0, 1, 0]),
            (DEAD, [0, 0, 0, 1]),
        ]
    );
    let runs = |name: &str| histograms.get(&(RUN_SECONDS.to_owned(), name.to_owned())).copied().unwrap_or(0);
    assert_eq!([runs("ok"), runs("flaky"), runs("declined"), runs("doomed")], [2, 2, 1, 2]);
    let waits = |name: &str| histograms.get(&(QUEUE_WAIT_SECONDS.to_owned(), name.to_owned())).copied().unwrap_or(0);
    assert_eq!([waits("ok"), waits("flaky"), waits("declined"), waits("doomed")], [2, 2, 1, 2], "one wait per start");
}

/// The maintenance thread sets the queue-depth gauges per queue and status from the store's
/// counts, at the configured interval, and follows changes.
pub fn the_queue_depth_is_reported(db: &dyn Backend) {
    let metrics = Kept::global();
    let q = unique_queue();
    let queue = db.queue();
    queue.register("other", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    // Jobs no handler here runs: they stay pending while the worker reports them.
    let options = JobOptions::new().queue(q.as_str());
    let ids: Vec<JobId> = (0..3).map(|_| queue.enqueue_raw("unhandled", b"null", options.clone()).unwrap()).collect();
    queue.enqueue_raw("unhandled", b"null", options.clone().delay(HOUR)).unwrap();
    let worker = queue
        .worker()
        .concurrency(1)
        .queues([q.as_str()])
        .queue_depth_interval(Some(Duration::from_millis(20)))
        .start()
        .unwrap();
    let depth = |status: &str| metrics.gauge(QUEUE_DEPTH, &[("queue", &q), ("status", status)]);
    wait_until("pending depth 3", || depth("pending") == Some(3.0));
    assert_eq!(depth("scheduled"), Some(1.0));
    for id in ids {
        queue.cancel(id).unwrap();
    }
    wait_until("cancelled depth 3", || depth("cancelled") == Some(3.0) && depth("pending") == Some(0.0));
    worker.shutdown();
}

/// Spans: one `job` span per run with its id, name, queue and attempt; a `step` span per step
/// inside it, `replayed` on the retry that found the step's checkpoint.
pub fn spans_name_each_attempt_and_its_replayed_steps(db: &dyn Backend) {
    let clock = ManualClock::new();
    let queue = Queue::builder(db.store()).clock(clock.clone()).build();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue.register("double", |_: &JobContext, n: u64| Ok::<_, std::io::Error>(n * 2)).unwrap();
    queue
        .register("flow", move |ctx: &JobContext, n: u64| -> Result<u64, Error> {
            let a: u64 = ctx.step("load", || {
                l.record("load ran");
                Ok::<_, std::io::Error>(n)
            })?;
            let b: u64 = durable_jobs::call(ctx, "double", &a)?;
            if ctx.attempt() == 1 {
                return Err(Error::retry_after(Duration::ZERO, "first attempt fails"));
            }
            Ok(b)
        })
        .unwrap();
    let id = queue.enqueue("flow", &21, JobOptions::new().queue("spans").retries(2)).unwrap();
    let spans = SpanLog::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    tracing::subscriber::with_default(subscriber, || {
        assert_eq!(queue.run_one("spans").unwrap(), Some(id));
        assert_eq!(queue.run_one("spans").unwrap(), Some(id));
    });
    assert_eq!(queue.result::<u64>(id).unwrap(), 42);
    assert_eq!(ledger.count("load ran"), 1);
    let seen = spans.0.lock().clone();
    let jobs: Vec<&SpanSeen> = seen.iter().filter(|s| s.name == "job").collect();
    let field = |s: &SpanSeen, f: &str| s.fields.get(f).cloned().unwrap_or_default();
    assert_eq!(jobs.len(), 2, "{seen:#?}");
    for (attempt, job) in jobs.iter().enumerate() {
        let got = ["id", "name", "queue", "attempt"].map(|f| field(job, f));
        assert_eq!(got, [id.0.to_string(), "flow".into(), "spans".into(), (attempt + 1).to_string()]);
    }
    let steps: Vec<[String; 4]> = seen
        .iter()
        .filter(|s| s.name == "step")
        .map(|s| {
            let parent = s.parent.map(|p| field(&seen[p], "attempt")).unwrap_or_default();
            [parent, field(s, "index"), field(s, "name"), field(s, "replayed")]
        })
        .collect();
    let row = |a: &str, i: &str, n: &str, r: &str| [a, i, n, r].map(str::to_owned);
    assert_eq!(
        steps,
        [
            row("1", "0", "load", "false"),
            row("1", "1", "double", "false"),
            row("2", "0", "load", "true"),
            row("2", "1", "double", "true"),
        ]
    );
}

crate::backend_tests!(
    a_completed_job_tells_started_then_completed,
    a_retried_job_tells_retrying_then_completes,
    the_last_failed_attempt_is_dead_lettered_and_a_permanent_error_failed,
    waits_tell_suspended_then_woken,
    a_panicking_listener_stops_neither_the_next_nor_the_job,
    reclaimed_jobs_are_told_and_counted,
    metrics_count_each_outcome,
    the_queue_depth_is_reported,
    spans_name_each_attempt_and_its_replayed_steps,
);
