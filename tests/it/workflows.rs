//! `call::<T>`: checkpoints, replay, determinism, durability on return.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use durable_jobs::{call, Error, JobContext, JobOptions, JobStatus, Queue};
use serde::{Deserialize, Serialize};

use crate::support::{finish, Backend, Ledger, PATIENCE};

/// Registers steps `s1`..`s3` that record their runs; `s2` fails its first `fail_s2` runs.
fn three_steps(queue: &Queue, ledger: &Ledger, fail_s2: u32) {
    for step in ["s1", "s3"] {
        let l = ledger.clone();
        queue
            .register(step, move |ctx: &JobContext, n: u32| -> Result<String, Error> {
                l.record(format!("{step}:{}", ctx.id()));
                Ok(format!("{step}-{n}"))
            })
            .unwrap();
    }
    let l = ledger.clone();
    let failures = Arc::new(AtomicU32::new(0));
    queue
        .register("s2", move |ctx: &JobContext, prev: String| -> Result<String, std::io::Error> {
            l.record(format!("s2:{}", ctx.id()));
            if failures.fetch_add(1, Ordering::SeqCst) < fail_s2 {
                return Err(std::io::Error::other("payment gateway timeout"));
            }
            Ok(format!("{prev}+s2"))
        })
        .unwrap();
    queue
        .register("flow", |ctx: &JobContext, n: u32| -> Result<String, Error> {
            let a: String = call(ctx, "s1", &n)?;
            let b: String = call(ctx, "s2", &a)?;
            let c: String = call(ctx, "s3", &n)?;
            Ok(format!("{b}|{c}"))
        })
        .unwrap();
}

/// Step 2 fails twice: steps 1 and 3 run once, step 2 three times, and the job completes on
/// its third attempt with the values threaded through.
pub fn failed_step_reruns_alone(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    three_steps(&queue, &ledger, 2);
    let opts = JobOptions::new().retries(5).backoff(Duration::from_millis(10), Duration::from_millis(50));
    let id = queue.enqueue("flow", &7, opts).unwrap();
    let worker = queue.worker().concurrency(2).start().unwrap();
    let info = queue.wait(id, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!(info.status, JobStatus::Completed, "{info:?}");
    assert_eq!(info.attempt, 3);
    assert_eq!(ledger.count(&format!("s1:{id}")), 1, "{:?}", ledger.entries());
    assert_eq!(ledger.count(&format!("s2:{id}")), 3, "{:?}", ledger.entries());
    assert_eq!(ledger.count(&format!("s3:{id}")), 1, "{:?}", ledger.entries());
    assert_eq!(queue.result::<String>(id).unwrap(), "s1-7+s2|s3-7");
    let names: Vec<String> = queue.checkpoints(id).unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["s1", "s2", "s3"]);
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Clone)]
struct Reading {
    value: f64,
    tags: Vec<String>,
    note: Option<String>,
}

/// The first run returns the JSON round trip of the step's value, exactly what the replay
/// returns, and the replay does not run the step.
pub fn replay_returns_the_first_value(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("measure", move |_: &JobContext, (): ()| -> Result<Reading, std::io::Error> {
            l.record("measure");
            // A step's own value type may differ from what the caller decodes.
            Ok(Reading { value: 0.1 + 0.2, tags: vec!["a".into(), "é\"\n".into()], note: None })
        })
        .unwrap();
    let seen: Arc<parking_lot::Mutex<Vec<serde_json::Value>>> = Arc::default();
    let s = seen.clone();
    queue
        .register("flow", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
            let v: serde_json::Value = call(ctx, "measure", &())?;
            s.lock().push(v);
            if ctx.attempt() == 1 {
                return Err(Error::Step {
                    step: "after".into(),
                    message: "crash after the step".into(),
                    permanent: false,
                });
            }
            Ok(())
        })
        .unwrap();
    let opts = JobOptions::new().backoff(Duration::from_millis(10), Duration::from_millis(10));
    let id = queue.enqueue("flow", &(), opts).unwrap();
    let info = finish(&queue, id);
    assert_eq!((info.status, info.attempt), (JobStatus::Completed, 2), "{info:?}");
    assert_eq!(ledger.count("measure"), 1);
    let seen = seen.lock();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1], "first-run value must equal the replayed one");
    assert_eq!(seen[0]["note"], serde_json::Value::Null);
    let back: Reading = serde_json::from_value(seen[0].clone()).unwrap();
    assert_eq!(back.value.to_bits(), (0.1_f64 + 0.2).to_bits(), "JSON keeps every bit of the float");
}

/// Another step name at a checkpointed position fails the job for good, naming both steps.
pub fn changed_step_order_is_a_determinism_error(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    for step in ["validate", "charge"] {
        let l = ledger.clone();
        queue
            .register(step, move |_: &JobContext, (): ()| -> Result<(), std::io::Error> {
                l.record(step);
                Ok(())
            })
            .unwrap();
    }
    queue
        .register("flow", |ctx: &JobContext, (): ()| -> Result<(), Error> {
            // A deploy between attempts swapped the first step.
            let first = if ctx.attempt() == 1 { "validate" } else { "charge" };
            call::<()>(ctx, first, &())?;
            Err(Error::Step { step: "later".into(), message: "transient".into(), permanent: false })
        })
        .unwrap();
    let opts = JobOptions::new().retries(5).backoff(Duration::from_millis(10), Duration::from_millis(10));
    let id = queue.enqueue("flow", &(), opts).unwrap();
    let info = finish(&queue, id);
    assert_eq!((info.status, info.attempt), (JobStatus::Failed, 2), "{info:?}");
    let error = info.last_error.unwrap();
    assert!(error.contains("\"validate\"") && error.contains("\"charge\"") && error.contains("step 0"), "{error}");
    assert_eq!((ledger.count("validate"), ledger.count("charge")), (1, 0));
}

/// A permanent step error is checkpointed and replayed without running the step; a retryable
/// one is not checkpointed and the step runs again.
pub fn permanent_step_errors_are_checkpointed(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("charge", move |_: &JobContext, (): ()| -> Result<(), Error> {
            l.record("charge");
            Err(Error::permanent("card declined"))
        })
        .unwrap();
    let l = ledger.clone();
    queue
        .register("notify", move |_: &JobContext, (): ()| -> Result<(), std::io::Error> {
            l.record("notify");
            Err(std::io::Error::other("smtp down"))
        })
        .unwrap();
    let l = ledger.clone();
    queue
        .register("flow", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
            // The workflow handles the declined card (compensation) and goes on.
            match call::<()>(ctx, "charge", &()) {
                Err(Error::Step { permanent: true, message, .. }) => l.record(format!("declined:{message}")),
                other => panic!("expected a permanent step error, got {other:?}"),
            }
            match call::<()>(ctx, "notify", &()) {
                Err(e @ Error::Step { permanent: false, .. }) if ctx.attempt() < 3 => Err(e),
                _ => Ok(()),
            }
        })
        .unwrap();
    let opts = JobOptions::new().retries(3).backoff(Duration::from_millis(10), Duration::from_millis(10));
    let id = queue.enqueue("flow", &(), opts).unwrap();
    let info = finish(&queue, id);
    assert_eq!((info.status, info.attempt), (JobStatus::Completed, 3), "{info:?}");
    assert_eq!(ledger.count("charge"), 1, "the permanent error was replayed: {:?}", ledger.entries());
    assert_eq!(ledger.count("declined:card declined"), 3);
    assert_eq!(ledger.count("notify"), 3, "the retryable error the workflow stopped at ran again");
    let cps = queue.checkpoints(id).unwrap();
    assert_eq!(cps.len(), 2);
    assert_eq!((cps[0].outcome.clone(), cps[0].retryable), (Err("card declined".to_owned()), false));
    assert_eq!((cps[1].outcome.clone(), cps[1].retryable), (Err("smtp down".to_owned()), true));
}

/// When `call` returns, its checkpoint is in the store (read through another handle).
pub fn checkpoint_is_durable_when_call_returns(db: &dyn Backend) {
    let queue = db.queue();
    let observer = db.store();
    let ledger = Ledger::default();
    queue.register("step", |_: &JobContext, n: u32| -> Result<u32, std::io::Error> { Ok(n + 1) }).unwrap();
    let l = ledger.clone();
    queue
        .register("flow", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
            for i in 0..3u32 {
                let _: u32 = call(ctx, "step", &i)?;
                let stored = observer.checkpoints(ctx.id(), 0, 100)?;
                l.record(format!("after call {i}: {} checkpoints", stored.len()));
            }
            Ok(())
        })
        .unwrap();
    let id = queue.enqueue("flow", &(), JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(1).start().unwrap();
    assert_eq!(queue.wait(id, PATIENCE).unwrap().status, JobStatus::Completed);
    worker.shutdown();
    assert_eq!(
        ledger.entries(),
        ["after call 0: 1 checkpoints", "after call 1: 2 checkpoints", "after call 2: 3 checkpoints"]
    );
}

/// A `call` inside a step is part of that step: no checkpoint of its own, and the replay of the
/// outer step does not shift the positions of later steps.
pub fn nested_calls_belong_to_their_step(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("inner", move |_: &JobContext, n: u32| -> Result<u32, std::io::Error> {
            l.record("inner");
            Ok(n * 10)
        })
        .unwrap();
    queue.register("outer", |ctx: &JobContext, n: u32| -> Result<u32, Error> { call(ctx, "inner", &n) }).unwrap();
    queue.register("last", |_: &JobContext, n: u32| -> Result<u32, std::io::Error> { Ok(n + 1) }).unwrap();
    queue
        .register("flow", |ctx: &JobContext, (): ()| -> Result<u32, Error> {
            let a: u32 = call(ctx, "outer", &4)?;
            let b: u32 = call(ctx, "last", &a)?;
            if ctx.attempt() == 1 {
                return Err(Error::Step { step: "x".into(), message: "retry me".into(), permanent: false });
            }
            Ok(b)
        })
        .unwrap();
    let opts = JobOptions::new().backoff(Duration::from_millis(10), Duration::from_millis(10));
    let id = queue.enqueue("flow", &(), opts).unwrap();
    let info = finish(&queue, id);
    assert_eq!((info.status, info.attempt), (JobStatus::Completed, 2), "{info:?}");
    assert_eq!(queue.result::<u32>(id).unwrap(), 41);
    assert_eq!(ledger.count("inner"), 1);
    let names: Vec<String> = queue.checkpoints(id).unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["outer", "last"]);
}

/// Many workflows at once, on several threads: each step runs exactly once per job.
pub fn concurrent_workflows_run_each_step_once(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    three_steps(&queue, &ledger, 0);
    let ids = queue.enqueue_batch("flow", &(0..40).collect::<Vec<u32>>(), JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(4).start().unwrap();
    for &id in &ids {
        assert_eq!(queue.wait(id, PATIENCE).unwrap().status, JobStatus::Completed);
    }
    worker.shutdown();
    assert_eq!(ledger.entries().len(), 3 * ids.len());
    for id in ids {
        for step in ["s1", "s2", "s3"] {
            assert_eq!(ledger.count(&format!("{step}:{id}")), 1, "{step} of {id}");
        }
    }
}

crate::backend_tests!(
    failed_step_reruns_alone,
    replay_returns_the_first_value,
    changed_step_order_is_a_determinism_error,
    permanent_step_errors_are_checkpointed,
    checkpoint_is_durable_when_call_returns,
    nested_calls_belong_to_their_step,
    concurrent_workflows_run_each_step_once,
    typed_handles_enqueue_call_and_read_results,
);

/// Typed handles: steps and jobs through `define`, and a handle captured by a handler does
/// not keep the queue alive.
pub fn typed_handles_enqueue_call_and_read_results(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    let charge = queue
        .define("charge", move |_: &JobContext, cents: u64| -> Result<String, std::io::Error> {
            l.record(format!("charge {cents}"));
            Ok(format!("txn-{cents}"))
        })
        .unwrap();
    let c = charge.clone();
    let order = queue
        .define("order", move |ctx: &JobContext, cents: u64| -> Result<String, Error> {
            let txn = c.call(ctx, &cents)?;
            if ctx.attempt() == 1 {
                return Err(Error::Step { step: "ship".into(), message: "later".into(), permanent: false });
            }
            Ok(format!("{txn} shipped"))
        })
        .unwrap();
    assert_eq!(order.name(), "order");
    let opts = JobOptions::new().backoff(Duration::from_millis(5), Duration::from_millis(5));
    let id = order.enqueue(&999, opts).unwrap();
    let info = crate::support::finish(&queue, id);
    assert_eq!((info.status, info.attempt), (JobStatus::Completed, 2), "{info:?}");
    assert_eq!(order.result(id).unwrap(), "txn-999 shipped");
    assert_eq!(ledger.count("charge 999"), 1, "the typed step was checkpointed");
    drop(queue);
    assert!(
        matches!(order.enqueue(&1, JobOptions::new()), Err(Error::QueueClosed)),
        "the handle does not keep the queue"
    );
}
