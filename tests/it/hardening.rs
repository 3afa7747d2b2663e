//! Issue 8: fencing by claim token, timeouts that hold, shutdowns that tell handlers at once,
//! and the semantics users build on (counts, idempotent enqueue, sizes, names, typed handles).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_jobs::store::faulty::FaultyStore;
use durable_jobs::{call, Error, JobContext, JobFilter, JobOptions, JobStatus, Queue};

use crate::support::{logs, wait_until, Backend, Ledger, PATIENCE};

/// The same worker claims a job again after its run lost the lease (renewals stalled, its own
/// reaper reclaimed it): the old run's late checkpoint is refused by the claim token, and the
/// old run's end does not take the new run out of the held set (it stays renewed).
pub fn a_reclaimed_run_cannot_write_over_its_successor_in_the_same_worker(db: &dyn Backend) {
    let store = Arc::new(FaultyStore::new(db.store()));
    let queue = Queue::new(store.clone());
    let ledger = Ledger::default();
    for step in ["one", "two"] {
        let l = ledger.clone();
        queue
            .register(step, move |ctx: &JobContext, (): ()| -> Result<u32, std::io::Error> {
                l.record(format!("{step} by attempt {}", ctx.attempt()));
                Ok(ctx.attempt())
            })
            .unwrap();
    }
    let l = ledger.clone();
    queue
        .register("flow", move |ctx: &JobContext, (): ()| -> Result<u32, Error> {
            l.record(format!("flow attempt {}", ctx.attempt()));
            call::<u32>(ctx, "one", &())?;
            if ctx.attempt() == 1 {
                l.record("old run waiting");
                l.wait_for("new run done with its steps", 1);
                let late = call::<u32>(ctx, "two", &());
                l.record(format!("old run refused: {}", matches!(late, Err(Error::LeaseLost { .. }))));
                return late;
            }
            let two = call::<u32>(ctx, "two", &())?;
            l.record("new run done with its steps");
            l.wait_for("old run refused: true", 1);
            // Outlive several leases: renewals must keep this run alive.
            std::thread::sleep(Duration::from_millis(900));
            Ok(two)
        })
        .unwrap();
    store.stall_renewals(true);
    let id = queue.enqueue("flow", &(), JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(2).prefetch(0).lease(Duration::from_millis(300)).start().unwrap();
    ledger.wait_for("flow attempt 2", 1);
    store.stall_renewals(false);
    let info = queue.wait(id, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!((info.status, info.attempt), (JobStatus::Completed, 2), "{info:?}\n{:?}", ledger.entries());
    assert_eq!(queue.result::<u32>(id).unwrap(), 2);
    assert_eq!(ledger.count("old run refused: true"), 1, "{:?}", ledger.entries());
    assert_eq!(ledger.count("one by attempt 1"), 1, "step one replayed: {:?}", ledger.entries());
    assert_eq!(ledger.count("flow attempt 3"), 0, "no third run: the new run stayed renewed");
    let checkpoints = queue.checkpoints(id).unwrap();
    assert_eq!(checkpoints[1].outcome, Ok(b"2".to_vec()), "step two's checkpoint is the new run's");
}

/// An outcome returned after the deadline is a timeout failure, not a success.
pub fn a_result_after_the_timeout_is_a_timeout_failure(db: &dyn Backend) {
    let queue = db.queue();
    queue
        .register("slow", |_: &JobContext, (): ()| -> Result<u32, std::io::Error> {
            std::thread::sleep(Duration::from_millis(600));
            Ok(1)
        })
        .unwrap();
    let id = queue.enqueue("slow", &(), JobOptions::new().retries(1).timeout(Duration::from_millis(200))).unwrap();
    let worker = queue.worker().concurrency(1).timeout_grace(Duration::from_secs(30)).start().unwrap();
    let info = queue.wait(id, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!((info.status, info.result.as_deref()), (JobStatus::Failed, None), "{info:?}");
    assert!(info.last_error.as_deref().is_some_and(|e| e.contains("timed out after 200ms")), "{info:?}");
}

/// A handler that never returns is given up on after its timeout and the grace: its attempt
/// fails as timed out and is retried, on a thread that replaced the stuck one (the pool has
/// one thread); its late writes are refused; the shutdown reports the stuck thread.
pub fn a_handler_stuck_past_its_timeout_is_given_up_and_replaced(db: &dyn Backend) {
    logs();
    let queue = db.queue();
    let ledger = Ledger::default();
    let release = Arc::new(AtomicBool::new(false));
    queue.register("note", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    let (l, r) = (ledger.clone(), release.clone());
    queue
        .register("hang", move |ctx: &JobContext, (): ()| -> Result<u32, Error> {
            l.record(format!("attempt {}", ctx.attempt()));
            if ctx.attempt() == 1 {
                while !r.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let late = call::<()>(ctx, "note", &());
                l.record(format!("late write refused: {}", matches!(late, Err(Error::LeaseLost { .. }))));
            }
            Ok(ctx.attempt())
        })
        .unwrap();
    let opts = JobOptions::new()
        .retries(2)
        .timeout(Duration::from_millis(200))
        .backoff(Duration::from_millis(10), Duration::from_millis(10));
    let id = queue.enqueue("hang", &(), opts).unwrap();
    let worker = queue.worker().concurrency(1).timeout_grace(Duration::from_millis(200)).start().unwrap();
    let info = queue.wait(id, PATIENCE).unwrap();
    assert_eq!((info.status, info.attempt), (JobStatus::Completed, 2), "{info:?}");
    assert!(info.last_error.as_deref().is_some_and(|e| e.contains("timed out")), "{info:?}");
    release.store(true, Ordering::SeqCst);
    ledger.wait_for("late write refused: true", 1);
    let report = worker.shutdown();
    assert_eq!(report.stuck, 1, "{report:?}");
    assert_eq!(queue.result::<u32>(id).unwrap(), 2);
    assert!(logs().contains(&format!("job={id} name=hang")), "the give-up is logged");
}

/// A shutdown tells handlers at once. A handler that ignores it is abandoned at the bound; its
/// job is released, but it does not start again in this process while the old thread runs.
pub fn an_abandoned_job_does_not_run_twice_in_this_process(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let release = Arc::new(AtomicBool::new(false));
    let (l, r) = (ledger.clone(), release.clone());
    queue
        .register("stubborn", move |ctx: &JobContext, (): ()| -> Result<(), std::io::Error> {
            l.record("start");
            if l.count("start") > 1 {
                return Ok(());
            }
            let told = Instant::now();
            while !ctx.is_cancelled() && told.elapsed() < PATIENCE {
                std::thread::sleep(Duration::from_millis(1));
            }
            l.record(format!("told to stop: {}", ctx.is_cancelled()));
            while !r.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            l.record("end");
            Ok(())
        })
        .unwrap();
    let id = queue.enqueue("stubborn", &(), JobOptions::new()).unwrap();
    let first = queue.worker().concurrency(1).shutdown_timeout(Duration::from_millis(100)).start().unwrap();
    ledger.wait_for("start", 1);
    let report = first.shutdown();
    assert_eq!(ledger.count("told to stop: true"), 1, "told when the shutdown began: {:?}", ledger.entries());
    assert_eq!((report.abandoned, report.released), (1, 1), "{report:?}");
    let second = queue.worker().concurrency(1).poll_interval(Duration::from_millis(10)).start().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ledger.count("start"), 1, "not started again while the old thread runs: {:?}", ledger.entries());
    release.store(true, Ordering::SeqCst);
    ledger.wait_for("end", 1);
    let info = queue.wait(id, PATIENCE).unwrap();
    second.shutdown();
    assert_eq!(info.status, JobStatus::Completed);
    let entries = ledger.entries();
    let first_end = entries.iter().position(|e| e == "end").unwrap();
    let second_start = entries.iter().rposition(|e| e == "start").unwrap();
    assert!(first_end < second_start, "the runs did not overlap: {entries:?}");
}

/// Counts separate ready from scheduled and prefetched from running, per name; `wait_idle`
/// returns when the work is done.
pub fn counts_drive_a_progress_bar(db: &dyn Backend) {
    let queue = db.queue();
    let gate = Arc::new(AtomicBool::new(false));
    let g = gate.clone();
    queue
        .register("work", move |_: &JobContext, (): ()| -> Result<(), std::io::Error> {
            while !g.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        })
        .unwrap();
    queue.register("later", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    queue.enqueue_batch("work", &[(); 6], JobOptions::new()).unwrap();
    queue.enqueue("later", &(), JobOptions::new().delay(Duration::from_secs(3600))).unwrap();
    let counts = queue.counts().unwrap();
    assert_eq!((counts.name("work").ready, counts.name("later").scheduled), (6, 1));
    let worker = queue.worker().concurrency(1).prefetch(2).start().unwrap();
    wait_until("one running, two prefetched", || {
        let c = queue.counts().unwrap().name("work");
        (c.running, c.prefetched, c.ready) == (1, 2, 3)
    });
    gate.store(true, Ordering::SeqCst);
    let idle = queue.wait_idle(PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!((idle.name("work").completed, idle.total().busy(), idle.total().scheduled), (6, 0, 1));
}

/// `unique_for` makes enqueue idempotent: "these 300 once", also after they finished; plain
/// `unique` refuses a second live job.
pub fn unique_for_makes_enqueue_idempotent(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    crate::support::register_recorder(&queue, "send", &ledger);
    let once = |n: u32| JobOptions::new().unique_for(format!("send:{n}"), Duration::from_secs(3600));
    let first: Vec<_> = (0..300u32).map(|n| queue.enqueue("send", &format!("mail {n}"), once(n)).unwrap()).collect();
    let again: Vec<_> = (0..300u32).map(|n| queue.enqueue("send", &format!("mail {n}"), once(n)).unwrap()).collect();
    assert_eq!(first, again, "the same ids: nothing inserted the second time");
    let worker = queue.worker().concurrency(2).start().unwrap();
    queue.wait_idle(PATIENCE).unwrap();
    worker.shutdown();
    let after: Vec<_> = (0..300u32).map(|n| queue.enqueue("send", &format!("mail {n}"), once(n)).unwrap()).collect();
    assert_eq!(first, after, "finished jobs still hold their key inside the window");
    assert_eq!(queue.counts().unwrap().total().total(), 300);
    assert!((0..300).all(|n| ledger.count(&format!("mail {n}")) == 1));
    let live = queue.enqueue("send", "x", JobOptions::new().unique("k").delay(Duration::from_secs(60))).unwrap();
    let err = queue.enqueue("send", "x", JobOptions::new().unique("k")).unwrap_err();
    assert!(matches!(err, Error::Duplicate { existing, .. } if existing == live), "{err}");
}

/// Ready jobs of a name no handler here runs are counted per name, and a worker warns.
pub fn unhandled_names_are_counted_and_warned_about(db: &dyn Backend) {
    logs();
    let queue = db.queue();
    queue.register("known", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    let stranger = format!("stranger{}", fastrand::u32(..));
    queue.enqueue_raw(&stranger, b"null", JobOptions::new()).unwrap();
    assert_eq!(queue.counts().unwrap().name(&stranger).ready, 1);
    let worker = queue.worker().concurrency(1).start().unwrap();
    wait_until("the warning", || logs().contains(&stranger));
    worker.shutdown();
    assert!(logs().contains(&format!("name={stranger} ready=1")), "{}", logs());
}

/// Results and step values obey the payload limit (the job fails, nothing huge is stored);
/// names may be module paths; listing pages after an id.
pub fn sizes_names_and_paging(db: &dyn Backend) {
    let queue = Queue::builder(db.store()).max_payload(1000).build();
    queue.register("big::result", |_: &JobContext, (): ()| Ok::<_, std::io::Error>("x".repeat(2000))).unwrap();
    queue.register("big::value", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(vec![7u8; 2000])).unwrap();
    queue
        .register("flow::uses_big", |ctx: &JobContext, (): ()| -> Result<(), Error> {
            call::<Vec<u8>>(ctx, "big::value", &())?;
            Ok(())
        })
        .unwrap();
    let result = queue.enqueue("big::result", &(), JobOptions::new()).unwrap();
    let value = queue.enqueue("flow::uses_big", &(), JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(1).start().unwrap();
    let info = queue.wait(result, PATIENCE).unwrap();
    assert_eq!((info.status, info.result.as_deref()), (JobStatus::Failed, None), "{info:?}");
    assert!(info.last_error.unwrap().contains("result of \"big::result\" is 2002 bytes"));
    let info = queue.wait(value, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!(info.status, JobStatus::Failed, "{info:?}");
    assert!(info.last_error.unwrap().contains("step value"));
    assert!(queue.checkpoints(value).unwrap().is_empty(), "the value was not stored");
    let mut seen = Vec::new();
    let mut page = JobFilter::new().limit(1);
    loop {
        let jobs = queue.list(&page).unwrap();
        let Some(last) = jobs.last() else { break };
        seen.push(last.id);
        page = page.after(last.id);
    }
    assert_eq!(seen, vec![result, value]);
}

/// `ctx.step` checkpoints closures under the same rules as `call` (one position counter), and
/// a producer enqueues through a declared handle without the handler.
pub fn closure_steps_and_declared_handles(db: &dyn Backend) {
    let worker_side = db.queue();
    let ledger = Ledger::default();
    let (l, failed_once) = (ledger.clone(), Arc::new(AtomicBool::new(false)));
    worker_side.register("double", |_: &JobContext, n: u64| Ok::<_, std::io::Error>(n * 2)).unwrap();
    worker_side
        .register("signup", move |ctx: &JobContext, n: u64| -> Result<u64, Error> {
            let a: u64 = ctx.step("create", || {
                l.record("create");
                Ok::<_, std::io::Error>(n + 1)
            })?;
            let b: u64 = call(ctx, "double", &a)?;
            ctx.step("mail", || {
                l.record("mail");
                if failed_once.swap(true, Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err(std::io::Error::other("smtp down"))
                }
            })?;
            Ok(b)
        })
        .unwrap();
    let producer = db.queue();
    let signup = producer.declare::<u64, u64>("signup").unwrap();
    let opts = JobOptions::new().backoff(Duration::from_millis(10), Duration::from_millis(10));
    let id = signup.enqueue(&20, opts).unwrap();
    let worker = worker_side.worker().concurrency(1).start().unwrap();
    worker_side.wait(id, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!(signup.result(id).unwrap(), 42);
    assert_eq!((ledger.count("create"), ledger.count("mail")), (1, 2), "{:?}", ledger.entries());
    let names: Vec<String> = worker_side.checkpoints(id).unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["create", "double", "mail"]);
    assert!(matches!(producer.declare::<u64, u64>("no spaces"), Err(Error::InvalidName { .. })));
}

/// `let _ = queue.worker().start()` drops the worker at once; the compiler cannot flag it, so
/// the worker says so in the log.
pub fn a_worker_dropped_at_start_is_logged(db: &dyn Backend) {
    logs();
    let queue = db.queue();
    queue.register("noop", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    let worker = queue.worker().concurrency(1).start().unwrap();
    let id = worker.id().to_owned();
    drop(worker);
    assert!(logs().contains(&format!("worker={id}")), "{}", logs());
    let kept = queue.worker().concurrency(1).start().unwrap();
    let kept_id = kept.id().to_owned();
    kept.shutdown();
    assert!(!logs().contains(&format!("worker={kept_id}")), "an explicit shutdown is not warned about");
}

crate::backend_tests!(
    a_worker_dropped_at_start_is_logged,
    a_reclaimed_run_cannot_write_over_its_successor_in_the_same_worker,
    a_result_after_the_timeout_is_a_timeout_failure,
    a_handler_stuck_past_its_timeout_is_given_up_and_replaced,
    an_abandoned_job_does_not_run_twice_in_this_process,
    counts_drive_a_progress_bar,
    unique_for_makes_enqueue_idempotent,
    unhandled_names_are_counted_and_warned_about,
    sizes_names_and_paging,
    closure_steps_and_declared_handles,
);
