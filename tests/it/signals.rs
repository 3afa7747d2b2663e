//! Issue 10: durable signals. A signal is stored until a wait consumes it, exactly once and in
//! sending order; a waiting workflow holds no thread and wakes when its signal comes; a wait
//! with a timeout takes the other path when it passes.

use std::time::Duration;

use durable_jobs::{
    wait_signal, wait_signal_timeout, Error, JobContext, JobId, JobOptions, JobStatus, ManualClock, Queue,
};

use crate::support::{Backend, Ledger, PATIENCE};

const HOUR: Duration = Duration::from_secs(3600);

fn status(queue: &Queue, id: JobId) -> JobStatus {
    queue.job(id).unwrap().unwrap().status
}

/// Registers "confirm": records "waiting <n>" (a step), waits for "code", records "got <n>
/// <code>", sleeps an hour (so that it replays past the wait), then waits for "code" again.
fn register_confirm(queue: &Queue, ledger: &Ledger) {
    let l = ledger.clone();
    queue
        .register("confirm", move |ctx: &JobContext, n: u32| -> Result<(u32, u32), Error> {
            ctx.step("before", || {
                l.record(format!("waiting {n}"));
                Ok::<_, std::io::Error>(())
            })?;
            let first: u32 = wait_signal(ctx, "code")?;
            ctx.step("got", || {
                l.record(format!("got {n} {first}"));
                Ok::<_, std::io::Error>(())
            })?;
            ctx.sleep(HOUR)?;
            let second: u32 = wait_signal(ctx, "code")?;
            Ok((first, second))
        })
        .unwrap();
}

/// A signal sent before the workflow waits is kept and consumed by the wait, once: the replay
/// after the sleep returns the recorded payload without consuming the next signal, which the
/// second wait receives. Signals are received in sending order.
pub fn signals_sent_before_the_waits_are_consumed_once_in_order(db: &dyn Backend) {
    let clock = ManualClock::new();
    let queue = Queue::builder(db.store()).clock(clock.clone()).build();
    let ledger = Ledger::default();
    register_confirm(&queue, &ledger);
    let id = queue.enqueue("confirm", &1, JobOptions::new()).unwrap();
    queue.signal(id, "code", &11).unwrap();
    queue.signal(id, "other", &0).unwrap();
    queue.signal(id, "code", &22).unwrap();
    queue.run_one("default").unwrap();
    assert_eq!(status(&queue, id), JobStatus::Waiting, "asleep after the first wait");
    let pending: Vec<(String, Vec<u8>)> = queue.signals(id).unwrap().into_iter().map(|s| (s.name, s.payload)).collect();
    assert_eq!(pending, vec![("other".to_owned(), b"0".to_vec()), ("code".to_owned(), b"22".to_vec())]);
    clock.advance(HOUR);
    queue.run_one("default").unwrap();
    assert_eq!(queue.result::<(u32, u32)>(id).unwrap(), (11, 22));
    assert_eq!((ledger.count("waiting 1"), ledger.count("got 1 11")), (1, 1), "{:?}", ledger.entries());
    assert_eq!(queue.signals(id).unwrap().len(), 1, "only the other name is left");
    let info = queue.job(id).unwrap().unwrap();
    assert_eq!(info.attempt, 1, "waiting charged no attempt");
}

/// A workflow waiting for a signal holds no thread and is woken in-process the moment the
/// signal is sent (the worker polls once an hour); while it waits, `JobInfo` says for what.
pub fn a_signal_wakes_its_waiting_workflow_at_once(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    register_confirm(&queue, &ledger);
    crate::support::register_recorder(&queue, "plain", &ledger);
    let id = queue.enqueue("confirm", &2, JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(1).poll_interval(HOUR).start().unwrap();
    crate::support::wait_until("the workflow waits", || status(&queue, id) == JobStatus::Waiting);
    let info = queue.job(id).unwrap().unwrap();
    assert_eq!((info.wait_signal.as_deref(), info.wake_at), (Some("code"), None), "{info:?}");
    let plain = queue.enqueue("plain", "p", JobOptions::new()).unwrap();
    assert_eq!(queue.wait(plain, PATIENCE).unwrap().status, JobStatus::Completed, "the thread is free");
    queue.signal(id, "code", &7).unwrap();
    ledger.wait_for("got 2 7", 1);
    crate::support::wait_until("the workflow sleeps", || queue.job(id).unwrap().unwrap().wake_at.is_some());
    worker.shutdown();
    assert_eq!(ledger.count("waiting 2"), 1);
}

/// A wait with a timeout takes the timeout path when it passes (the reminder), and a later
/// wait receives a signal sent after it; the deadline is kept across runs, and a signal does not
/// wake a sleeper early.
pub fn a_signal_wait_times_out_and_a_sleeper_ignores_signals(db: &dyn Backend) {
    let clock = ManualClock::new();
    let queue = Queue::builder(db.store()).clock(clock.clone()).build();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("signup", move |ctx: &JobContext, (): ()| -> Result<String, Error> {
            if let Some(code) = wait_signal_timeout::<String>(ctx, "confirmed", HOUR)? {
                return Ok(format!("activated {code}"));
            }
            ctx.step("remind", || {
                l.record("reminder");
                Ok::<_, std::io::Error>(())
            })?;
            let code: String = wait_signal(ctx, "confirmed")?;
            Ok(format!("late {code}"))
        })
        .unwrap();
    let id = queue.enqueue("signup", &(), JobOptions::new()).unwrap();
    queue.run_one("default").unwrap();
    clock.advance(HOUR / 2);
    assert_eq!(queue.run_one("default").unwrap(), None, "half the timeout is left");
    clock.advance(HOUR / 2);
    queue.run_one("default").unwrap();
    let info = queue.job(id).unwrap().unwrap();
    assert_eq!((info.status, info.wait_signal.as_deref()), (JobStatus::Waiting, Some("confirmed")), "{info:?}");
    assert_eq!(ledger.count("reminder"), 1);
    queue.signal(id, "confirmed", "abc").unwrap();
    queue.run_one("default").unwrap();
    assert_eq!(queue.result::<String>(id).unwrap(), "late abc");
    assert_eq!(ledger.count("reminder"), 1);

    queue.register("nap", |ctx: &JobContext, (): ()| -> Result<(), Error> { ctx.sleep(HOUR) }).unwrap();
    let nap = queue.enqueue("nap", &(), JobOptions::new()).unwrap();
    queue.run_one("default").unwrap();
    queue.signal(nap, "confirmed", "x").unwrap();
    assert_eq!(queue.run_one("default").unwrap(), None, "the sleeper is not woken");
    assert_eq!(status(&queue, nap), JobStatus::Waiting);
}

/// Bad signals are typed errors that store nothing: an unknown job, a finished one, a bad
/// name, a payload over the limit; a payload that does not decode is a decode error naming the
/// job and the signal, which fails the workflow for good and leaves the signal pending.
pub fn bad_signals_are_refused_and_store_nothing(db: &dyn Backend) {
    let queue = Queue::builder(db.store()).max_payload(64).build();
    queue.register("wants-number", |ctx: &JobContext, (): ()| wait_signal::<u32>(ctx, "n")).unwrap();
    let id = queue.enqueue("wants-number", &(), JobOptions::new()).unwrap();
    assert!(matches!(queue.signal(JobId(id.0 + 1000), "n", &1), Err(Error::NotFound { .. })));
    assert!(matches!(queue.signal(id, "not a name", &1), Err(Error::InvalidName { what: "signal", .. })));
    let big = "x".repeat(100);
    assert!(matches!(queue.signal(id, "n", &big), Err(Error::PayloadTooLarge { what: "signal payload", .. })));
    assert!(queue.signals(id).unwrap().is_empty(), "nothing stored");
    queue.signal(id, "n", "not a number").unwrap();
    queue.run_one("default").unwrap();
    let info = queue.job(id).unwrap().unwrap();
    let error = info.last_error.unwrap_or_default();
    assert_eq!(info.status, JobStatus::Failed, "{error}");
    assert!(error.contains(&format!("job {id} (n)")) && error.contains("signal"), "{error}");
    assert!(queue.signals(id).unwrap().is_empty(), "the signal that did not decode was received");
    let refused = queue.signal(id, "n", &1);
    assert!(matches!(refused, Err(Error::JobFinished { status: JobStatus::Failed, .. })), "{refused:?}");
    assert!(queue.signals(id).unwrap().is_empty());
}

/// A workflow whose code changed where a wait was recorded (another signal name, another
/// number of children, a step) fails for good with a determinism error naming both.
pub fn a_changed_wait_is_a_determinism_error(db: &dyn Backend) {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let queue = db.queue();
    let version = Arc::new(AtomicU32::new(0));
    queue.register("leaf", |_: &JobContext, (): ()| -> Result<(), Error> { Ok(()) }).unwrap();
    let v = version.clone();
    queue
        .register("flow", move |ctx: &JobContext, kind: String| -> Result<(), Error> {
            let changed = v.load(Ordering::SeqCst) > 0;
            match (kind.as_str(), changed) {
                ("signal", true) => wait_signal::<()>(ctx, "rejected"),
                ("children", _) => {
                    // In a queue not run before the change: the fan-out is still waiting then.
                    let n = if changed { 3 } else { 2 };
                    let later = JobOptions::new().queue("later");
                    let children =
                        (0..n).map(|_| durable_jobs::Child::new("leaf", &()).options(later.clone())).collect();
                    durable_jobs::fan_out::<()>(ctx, children, durable_jobs::FanInStrategy::CollectAll).map(drop)
                }
                ("timeout", false) => wait_signal_timeout::<()>(ctx, "approved", HOUR).map(drop),
                ("gathered", _) => {
                    // The fan-out's results are recorded before the signal wait.
                    let n = if changed { 3 } else { 2 };
                    let children = (0..n).map(|_| durable_jobs::Child::new("leaf", &())).collect();
                    durable_jobs::fan_out::<()>(ctx, children, durable_jobs::FanInStrategy::CollectAll)?;
                    wait_signal::<()>(ctx, "approved")
                }
                ("timeout", true) | (_, false) => wait_signal::<()>(ctx, "approved"),
                (_, true) => ctx.step("approve", || Ok::<_, std::io::Error>(())),
            }
        })
        .unwrap();
    let ids: Vec<JobId> = ["signal", "children", "step", "timeout", "gathered"]
        .iter()
        .map(|k| queue.enqueue("flow", k, JobOptions::new()).unwrap())
        .collect();
    while queue.run_one("default").unwrap().is_some() {}
    let statuses: Vec<JobStatus> = ids.iter().map(|id| status(&queue, *id)).collect();
    assert!(statuses.iter().all(|s| *s == JobStatus::Waiting), "{statuses:?}");
    version.store(1, Ordering::SeqCst);
    for id in [ids[0], ids[2], ids[3], ids[4]] {
        queue.signal(id, "approved", &()).unwrap();
    }
    while queue.run_one("later").unwrap().is_some() || queue.run_one("default").unwrap().is_some() {}
    let expected = [
        ("\"@signal:approved\"", "\"@signal:rejected\""),
        ("@fan-out of 2 children", "@fan-out of 3 children"),
        ("\"@signal:approved\"", "\"approve\""),
        ("@signal:approved (with a timeout)", "@signal:approved (without a timeout)"),
        ("@fan-out of 2 children", "@fan-out of 3 children"),
    ];
    for (id, (recorded, called)) in ids.iter().zip(expected) {
        let info = queue.job(*id).unwrap().unwrap();
        let error = info.last_error.unwrap_or_default();
        assert_eq!((info.status, info.attempt), (JobStatus::Failed, 1), "{error}");
        assert!(error.contains("non-deterministic") && error.contains(recorded) && error.contains(called), "{error}");
    }
}

/// A payload that does not decode is received all the same: its error is the wait's outcome,
/// and the signals behind it are not blocked.
pub fn a_signal_that_does_not_decode_is_received_and_blocks_nothing(db: &dyn Backend) {
    let queue = db.queue();
    queue
        .register("count", |ctx: &JobContext, catch: bool| -> Result<u32, Error> {
            match wait_signal::<u32>(ctx, "n") {
                Err(Error::Decode { .. }) if catch => wait_signal::<u32>(ctx, "n"),
                other => other,
            }
        })
        .unwrap();
    let (catches, fails) = (
        queue.enqueue("count", &true, JobOptions::new()).unwrap(),
        queue.enqueue("count", &false, JobOptions::new()).unwrap(),
    );
    for id in [catches, fails] {
        queue.signal(id, "n", "oops").unwrap();
        queue.signal(id, "n", &7).unwrap();
    }
    while queue.run_one("default").unwrap().is_some() {}
    let info = queue.job(catches).unwrap().unwrap();
    assert_eq!((info.status, info.attempt, queue.result::<u32>(catches).unwrap()), (JobStatus::Completed, 1, 7));
    assert!(queue.signals(catches).unwrap().is_empty());
    let info = queue.job(fails).unwrap().unwrap();
    let error = info.last_error.unwrap_or_default();
    assert_eq!(info.status, JobStatus::Failed, "{error}");
    assert!(error.contains(&format!("job {fails} (n)")) && error.contains("signal"), "{error}");
    let left: Vec<_> = queue.signals(fails).unwrap().into_iter().map(|s| s.payload).collect();
    assert_eq!(left, vec![b"7".to_vec()], "the bad signal was received, the good one is still pending");
}

crate::backend_tests!(
    a_signal_that_does_not_decode_is_received_and_blocks_nothing,
    a_changed_wait_is_a_determinism_error,
    signals_sent_before_the_waits_are_consumed_once_in_order,
    a_signal_wakes_its_waiting_workflow_at_once,
    a_signal_wait_times_out_and_a_sleeper_ignores_signals,
    bad_signals_are_refused_and_store_nothing,
);
