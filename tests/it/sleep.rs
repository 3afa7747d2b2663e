//! Issue 10: durable sleep. A sleeping workflow holds no thread, wakes at its deadline (from the
//! worker's timer, on virtual time here), replays only what is left after a restart, and is
//! never charged an attempt.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use durable_jobs::store::Timestamp;
use durable_jobs::{Clock, Error, JobContext, JobOptions, JobStatus, ManualClock, Queue};

use crate::support::{register_recorder, wait_until, Backend, Ledger, PATIENCE};

/// How long "nap" sleeps.
const NAP: Duration = Duration::from_secs(600);
const HOUR: Duration = Duration::from_secs(3600);

fn status(queue: &Queue, id: durable_jobs::JobId) -> JobStatus {
    queue.job(id).unwrap().unwrap().status
}

/// Registers "nap": records "before <n>", sleeps ten minutes, records "after <n>".
fn register_nap(queue: &Queue, ledger: &Ledger) {
    let l = ledger.clone();
    queue
        .register("nap", move |ctx: &JobContext, n: u32| -> Result<u32, Error> {
            ctx.step("before", || {
                l.record(format!("before {n}"));
                Ok::<_, std::io::Error>(())
            })?;
            ctx.sleep(NAP)?;
            ctx.step("after", || {
                l.record(format!("after {n}"));
                Ok::<_, std::io::Error>(())
            })?;
            Ok(n)
        })
        .unwrap();
}

/// A sleeping workflow frees its thread: a one-thread pool runs other jobs while it sleeps,
/// and the worker's own timer wakes it when the (virtual) ten minutes have passed; no poll
/// helps (the worker polls once an hour). Each step ran once, and the attempt is still the first.
pub fn a_sleeping_workflow_frees_its_thread(db: &dyn Backend) {
    let clock = ManualClock::new();
    let queue = Queue::builder(db.store()).clock(clock.clone()).build();
    let ledger = Ledger::default();
    register_nap(&queue, &ledger);
    register_recorder(&queue, "plain", &ledger);
    let nap = queue.enqueue("nap", &1, JobOptions::new().retries(1)).unwrap();
    let worker = queue.worker().concurrency(1).poll_interval(HOUR).start().unwrap();
    wait_until("the workflow sleeps", || status(&queue, nap) == JobStatus::Waiting);
    let plain = queue.enqueue_batch("plain", &["p1", "p2", "p3"], JobOptions::new()).unwrap();
    for id in &plain {
        assert_eq!(queue.wait(*id, PATIENCE).unwrap().status, JobStatus::Completed);
    }
    assert_eq!(status(&queue, nap), JobStatus::Waiting, "still asleep while the others ran");
    clock.advance(NAP);
    let info = queue.wait(nap, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!((info.status, info.attempt), (JobStatus::Completed, 1), "{info:?}");
    assert_eq!((ledger.count("before 1"), ledger.count("after 1")), (1, 1), "{:?}", ledger.entries());
}

/// A thousand workflows asleep at once on a two-thread pool: all suspend (none holds a thread),
/// all wake and finish, each step run exactly once.
pub fn a_thousand_sleepers_on_two_threads(db: &dyn Backend) {
    let clock = ManualClock::new();
    let queue = Queue::builder(db.store()).clock(clock.clone()).build();
    let ledger = Ledger::default();
    register_nap(&queue, &ledger);
    let ids = queue.enqueue_batch("nap", &(0..1000).collect::<Vec<u32>>(), JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(2).start().unwrap();
    wait_until("all 1,000 sleep", || queue.counts().unwrap().total().waiting == 1000);
    clock.advance(NAP);
    wait_until("all 1,000 finish", || queue.counts().unwrap().total().completed == 1000);
    worker.shutdown();
    for n in 0..1000 {
        assert_eq!((ledger.count(&format!("before {n}")), ledger.count(&format!("after {n}"))), (1, 1), "{n}");
    }
    assert!(ids.iter().all(|id| queue.job(*id).unwrap().unwrap().attempt == 1));
}

/// The deadline is recorded at the first run: a process that starts later (a new queue on the
/// same storage) runs the job only when the rest of the nap has passed; a sleep whose time has
/// already come is recorded and the workflow goes on.
pub fn a_sleep_replays_only_what_is_left(db: &dyn Backend) {
    let clock = ManualClock::new();
    let first = Queue::builder(db.store()).clock(clock.clone()).build();
    let ledger = Ledger::default();
    register_nap(&first, &ledger);
    let id = first.enqueue("nap", &7, JobOptions::new()).unwrap();
    assert_eq!(first.run_one("default").unwrap(), Some(id));
    let asleep = first.job(id).unwrap().unwrap();
    let deadline = Timestamp::from_system_time(clock.now()).saturating_add(NAP).to_system_time();
    assert_eq!((asleep.status, asleep.wake_at), (JobStatus::Waiting, Some(deadline)), "JobInfo says until when");
    drop(first);
    clock.advance(NAP / 2);
    let restarted = Queue::builder(db.store()).clock(clock.clone()).build();
    register_nap(&restarted, &ledger);
    assert_eq!(restarted.run_one("default").unwrap(), None, "half the nap is left");
    clock.advance(NAP / 2);
    assert_eq!(restarted.run_one("default").unwrap(), Some(id));
    assert_eq!(restarted.result::<u32>(id).unwrap(), 7);
    assert_eq!((ledger.count("before 7"), ledger.count("after 7")), (1, 1));
    let names: Vec<String> = restarted.checkpoints(id).unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["before", "@sleep", "after"]);

    restarted
        .register("no-wait", |ctx: &JobContext, (): ()| -> Result<(), Error> {
            ctx.sleep(Duration::ZERO)?;
            ctx.sleep_until(std::time::SystemTime::UNIX_EPOCH)
        })
        .unwrap();
    let past = restarted.enqueue("no-wait", &(), JobOptions::new()).unwrap();
    assert_eq!(restarted.run_one("default").unwrap(), Some(past));
    assert_eq!(status(&restarted, past), JobStatus::Completed, "a past deadline does not suspend");
    assert_eq!(restarted.checkpoints(past).unwrap().len(), 2, "and is recorded");
}

/// A workflow whose code now calls a step where a sleep was recorded fails for good with a
/// determinism error naming both; steps refuse to start once a sleep has suspended the job.
pub fn a_step_where_a_sleep_was_recorded_is_a_determinism_error(db: &dyn Backend) {
    let clock = ManualClock::new();
    let queue = Queue::builder(db.store()).clock(clock.clone()).build();
    let changed = Arc::new(AtomicBool::new(false));
    let after_suspension = Arc::new(std::sync::Mutex::new(None));
    let (c, a) = (changed.clone(), after_suspension.clone());
    queue
        .register("flow", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
            if c.load(Ordering::SeqCst) {
                return ctx.step("charge", || Ok::<_, std::io::Error>(()));
            }
            let slept = ctx.sleep(HOUR);
            // A handler that goes on regardless: the job suspends anyway, and no step starts.
            let step = ctx.step("too-early", || Ok::<_, std::io::Error>(()));
            *a.lock().unwrap() = Some((slept.is_err(), step.map_err(|e| e.to_string())));
            Ok(())
        })
        .unwrap();
    let id = queue.enqueue("flow", &(), JobOptions::new()).unwrap();
    queue.run_one("default").unwrap();
    assert_eq!(status(&queue, id), JobStatus::Waiting);
    let seen = after_suspension.lock().unwrap().take().unwrap();
    assert!(seen.0, "the sleep returned Error::Suspended");
    assert!(seen.1.as_ref().is_err_and(|e| e.contains("suspended")), "{seen:?}");
    assert_eq!(queue.checkpoints(id).unwrap().len(), 1, "only the sleep is recorded");
    changed.store(true, Ordering::SeqCst);
    clock.advance(HOUR);
    queue.run_one("default").unwrap();
    let info = queue.job(id).unwrap().unwrap();
    let error = info.last_error.clone().unwrap_or_default();
    assert_eq!(info.status, JobStatus::Failed, "{info:?}");
    assert!(error.contains("\"@sleep\"") && error.contains("\"charge\""), "{error}");
}

/// A sleeping job can be cancelled: it never wakes, and the steps after its sleep never run.
pub fn a_sleeping_job_can_be_cancelled(db: &dyn Backend) {
    let clock = ManualClock::new();
    let queue = Queue::builder(db.store()).clock(clock.clone()).build();
    let ledger = Ledger::default();
    register_nap(&queue, &ledger);
    let id = queue.enqueue("nap", &3, JobOptions::new()).unwrap();
    assert_eq!(queue.run_one("default").unwrap(), Some(id));
    assert_eq!(queue.cancel(id).unwrap(), durable_jobs::store::CancelOutcome::Cancelled);
    clock.advance(HOUR);
    assert_eq!(queue.run_one("default").unwrap(), None);
    let record = db.store().get(id).unwrap().unwrap();
    assert_eq!((record.status, record.wake_at), (JobStatus::Cancelled, None));
    assert_eq!((ledger.count("before 3"), ledger.count("after 3")), (1, 0));
}

/// A durable sleep inside a step cannot suspend (the step runs to its end on its thread): it is
/// refused at once with a typed error (which the step then reports as its failure).
pub fn a_sleep_inside_a_step_is_refused(db: &dyn Backend) {
    let clock = ManualClock::new();
    let queue = Queue::builder(db.store()).clock(clock).build();
    queue.register("inner", |ctx: &JobContext, (): ()| -> Result<(), Error> { ctx.sleep(HOUR) }).unwrap();
    queue
        .register("outer", |ctx: &JobContext, (): ()| -> Result<(), Error> {
            let in_call = durable_jobs::call::<()>(ctx, "inner", &());
            let in_step = ctx.step("wait", || ctx.sleep(HOUR));
            match (in_call, in_step) {
                (Err(Error::Step { message, .. }), Err(Error::Step { message: m2, .. }))
                    if message.contains("inside a step") && m2.contains("inside a step") =>
                {
                    Ok(())
                }
                other => Err(Error::permanent(std::io::Error::other(format!("{other:?}")))),
            }
        })
        .unwrap();
    let id = queue.enqueue("outer", &(), JobOptions::new()).unwrap();
    queue.run_one("default").unwrap();
    let info = queue.job(id).unwrap().unwrap();
    assert_eq!(info.status, JobStatus::Completed, "{info:?}");
}

/// A handler that asked to sleep and is still running when the worker shuts down is suspended,
/// not handed back: after the shutdown the job is asleep with its deadline, its attempt
/// uncharged.
pub fn a_suspension_pending_at_shutdown_is_written(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("nap", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
            let slept = ctx.sleep(HOUR);
            l.record("asked to sleep");
            // Still running when the shutdown starts.
            while !l.entries().iter().any(|e| e == "stopping") {
                std::thread::sleep(Duration::from_millis(1));
            }
            slept
        })
        .unwrap();
    let id = queue.enqueue("nap", &(), JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(1).start().unwrap();
    ledger.wait_for("asked to sleep", 1);
    ledger.record("stopping");
    worker.shutdown();
    let info = queue.job(id).unwrap().unwrap();
    assert_eq!((info.status, info.attempt, info.wake_at.is_some()), (JobStatus::Waiting, 0, true), "{info:?}");
}

/// A handler that asked to sleep and then panicked is a failed attempt, retried: nothing of the
/// sleep was recorded, so the next run sleeps again from its own start.
pub fn a_panic_after_asking_to_sleep_is_a_failure(db: &dyn Backend) {
    let clock = ManualClock::new();
    let queue = Queue::builder(db.store()).clock(clock.clone()).build();
    let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let r = runs.clone();
    queue
        .register("nap", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
            let slept = ctx.sleep(HOUR);
            assert!(r.fetch_add(1, Ordering::SeqCst) > 0, "first run panics after asking to sleep");
            slept
        })
        .unwrap();
    let opts = JobOptions::new().backoff(Duration::from_secs(1), Duration::from_secs(1));
    let id = queue.enqueue("nap", &(), opts).unwrap();
    queue.run_one("default").unwrap();
    let info = queue.job(id).unwrap().unwrap();
    assert_eq!((info.status, info.attempt), (JobStatus::Scheduled, 1), "{info:?}");
    assert!(queue.checkpoints(id).unwrap().is_empty(), "nothing of the sleep was recorded");
    clock.advance(Duration::from_secs(2));
    queue.run_one("default").unwrap();
    let info = queue.job(id).unwrap().unwrap();
    assert_eq!((info.status, info.attempt), (JobStatus::Waiting, 1), "the retry sleeps: {info:?}");
    clock.advance(HOUR);
    queue.run_one("default").unwrap();
    assert_eq!(status(&queue, id), JobStatus::Completed);
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

crate::backend_tests!(
    a_suspension_pending_at_shutdown_is_written,
    a_panic_after_asking_to_sleep_is_a_failure,
    a_sleep_inside_a_step_is_refused,
    a_sleeping_job_can_be_cancelled,
    a_sleeping_workflow_frees_its_thread,
    a_thousand_sleepers_on_two_threads,
    a_sleep_replays_only_what_is_left,
    a_step_where_a_sleep_was_recorded_is_a_determinism_error,
);
