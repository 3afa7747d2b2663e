//! Issue 9: one timing model driven by the queue's clock, a job run without a pool, supervised
//! threads, leases held until outcomes commit, bounded shutdowns, and workflows that branch on
//! retryable step errors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_jobs::store::faulty::{Fault, FaultyStore};
use durable_jobs::{call, Error, JobContext, JobOptions, JobStatus, ManualClock, Queue};

use crate::support::{register_recorder, wait_until, Backend, Ledger, PATIENCE};

fn status(queue: &Queue, id: durable_jobs::JobId) -> JobStatus {
    queue.job(id).unwrap().unwrap().status
}

/// Delayed jobs and retries start when their time comes, each one, with no poll (the worker
/// polls once an hour): job A due in 200 ms and B in 400 ms both start on time.
pub fn every_due_time_wakes_the_worker(db: &dyn Backend) {
    let clock = ManualClock::new();
    let queue = Queue::builder(db.store()).clock(clock.clone()).build();
    let ledger = Ledger::default();
    register_recorder(&queue, "tick", &ledger);
    let failed = Arc::new(AtomicBool::new(false));
    let (l, f) = (ledger.clone(), failed.clone());
    queue
        .register("flaky", move |_: &JobContext, (): ()| -> Result<(), Error> {
            l.record("flaky");
            if f.swap(true, Ordering::SeqCst) {
                Ok(())
            } else {
                Err(Error::retry_after(Duration::from_millis(300), "later"))
            }
        })
        .unwrap();
    queue.enqueue("tick", "a", JobOptions::new().delay(Duration::from_millis(200))).unwrap();
    queue.enqueue("tick", "b", JobOptions::new().delay(Duration::from_millis(400))).unwrap();
    let flaky = queue.enqueue("flaky", &(), JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(1).poll_interval(Duration::from_secs(3600)).start().unwrap();
    ledger.wait_for("flaky", 1);
    wait_until("the retry is scheduled", || status(&queue, flaky) == JobStatus::Scheduled);
    assert_eq!((ledger.count("a"), ledger.count("b")), (0, 0));
    clock.advance(Duration::from_millis(200));
    ledger.wait_for("a", 1);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!((ledger.count("b"), ledger.count("flaky")), (0, 1), "{:?}", ledger.entries());
    clock.advance(Duration::from_millis(100));
    ledger.wait_for("flaky", 2);
    clock.advance(Duration::from_millis(100));
    ledger.wait_for("b", 1);
    worker.shutdown();
    assert_eq!(queue.job(flaky).unwrap().unwrap().attempt, 2);
}

/// `run_one` runs a job on the calling thread: nothing before its time, a retry after its
/// backoff, all on virtual time.
pub fn run_one_needs_no_pool(db: &dyn Backend) {
    let clock = ManualClock::new();
    let queue = Queue::builder(db.store()).clock(clock.clone()).build();
    let tries = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let t = tries.clone();
    queue
        .register("report", move |ctx: &JobContext, (): ()| -> Result<u32, std::io::Error> {
            if t.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(std::io::Error::other("flaky"))
            } else {
                Ok(ctx.attempt())
            }
        })
        .unwrap();
    let opts =
        JobOptions::new().delay(Duration::from_secs(3600)).backoff(Duration::from_secs(60), Duration::from_secs(60));
    let id = queue.enqueue("report", &(), opts).unwrap();
    assert_eq!(queue.run_one("default").unwrap(), None);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(queue.run_one("default").unwrap(), Some(id));
    assert_eq!(status(&queue, id), JobStatus::Scheduled, "backing off");
    assert_eq!(queue.run_one("default").unwrap(), None);
    clock.advance(Duration::from_secs(121));
    assert_eq!(queue.run_one("default").unwrap(), Some(id));
    assert_eq!((status(&queue, id), queue.result::<u32>(id).unwrap()), (JobStatus::Completed, 2));
}

/// A panic in an internal thread (a store bug) fails the pool visibly: `health` says which
/// thread and why, jobs it had not started are handed back, and the shutdown reports it.
pub fn a_panicking_internal_thread_fails_the_pool(db: &dyn Backend) {
    for (method, thread) in [("claim", "dj-dispatcher"), ("commit", "dj-committer")] {
        let store = Arc::new(FaultyStore::new(db.store()));
        let queue = Queue::new(store.clone());
        let ledger = Ledger::default();
        register_recorder(&queue, "job", &ledger);
        // A queue per case: the first case leaves its job pending in the shared storage.
        let ran = format!("ran in the {method} case");
        let id = queue.enqueue("job", &ran, JobOptions::new().queue(method)).unwrap();
        store.inject(Fault::PanicOnNext(method));
        let worker = queue.worker().concurrency(1).queues([method]).start().unwrap();
        wait_until("the failure", || worker.health().is_err());
        match worker.health() {
            Err(Error::WorkerFailed { thread: t, message }) => {
                assert_eq!(t, thread);
                assert!(message.contains(&format!("injected fault: {method} panicked")), "{message}");
            }
            other => panic!("{method}: {other:?}"),
        }
        let report = worker.shutdown();
        assert!(report.failure.as_deref().is_some_and(|f| f.contains(thread)), "{report:?}");
        let info = queue.job(id).unwrap().unwrap();
        match method {
            "claim" => assert_eq!((info.status, ledger.count(&ran)), (JobStatus::Pending, 0), "{info:?}"),
            _ => assert_eq!(ledger.count(&ran), 1, "the job ran; its outcome's commit panicked"),
        }
    }
}

/// A run stays held, and renewed, until its outcome commits: a commit slower than three leases
/// does not let the job be reclaimed and run again.
pub fn a_slow_outcome_commit_keeps_the_lease(db: &dyn Backend) {
    let store = Arc::new(FaultyStore::new(db.store()));
    store.slow_endings(Duration::from_secs(1));
    let queue = Queue::new(store.clone());
    let ledger = Ledger::default();
    register_recorder(&queue, "job", &ledger);
    let id = queue.enqueue("job", "ran", JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(1).lease(Duration::from_millis(300)).start().unwrap();
    let info = queue.wait(id, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!((info.status, info.attempt, ledger.count("ran")), (JobStatus::Completed, 1, 1), "{info:?}");
}

/// Shutdown stays bounded when a store call hangs (here the heartbeat's renewal): the threads
/// stuck in it are left behind, and the rest stops.
pub fn shutdown_is_bounded_when_a_store_call_hangs(db: &dyn Backend) {
    let store = Arc::new(FaultyStore::new(db.store()));
    let queue = Queue::new(store.clone());
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("wait", move |ctx: &JobContext, (): ()| -> Result<(), std::io::Error> {
            l.record("started");
            let start = Instant::now();
            while !ctx.is_cancelled() && start.elapsed() < PATIENCE {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(std::io::Error::other("stopped"))
        })
        .unwrap();
    queue.enqueue("wait", &(), JobOptions::new()).unwrap();
    store.inject(Fault::HangOnNext("renew"));
    let worker = queue.worker().concurrency(1).lease(Duration::from_millis(300)).start().unwrap();
    ledger.wait_for("started", 1);
    wait_until("a renewal hangs", || store.hits() > 0);
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let stopping = std::thread::spawn(move || {
        let report = worker.shutdown();
        flag.store(true, Ordering::SeqCst);
        report
    });
    wait_until("the shutdown returns while the renewal still hangs", || done.load(Ordering::SeqCst));
    let report = stopping.join().unwrap();
    assert_eq!((report.released, report.abandoned), (1, 0), "{report:?}");
    store.heal();
}

/// A workflow that handles a retryable step error by taking another branch replays the same
/// branch on its next attempt (the error is recorded because the workflow went on past it),
/// instead of failing with a determinism error.
pub fn a_workflow_may_branch_on_a_retryable_step_error(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("charge", move |ctx: &JobContext, (): ()| -> Result<(), std::io::Error> {
            l.record("charge");
            if ctx.attempt() == 1 {
                Err(std::io::Error::other("gateway timeout"))
            } else {
                Ok(())
            }
        })
        .unwrap();
    register_recorder(&queue, "fallback", &ledger);
    register_recorder(&queue, "ship", &ledger);
    queue
        .register("order", |ctx: &JobContext, (): ()| -> Result<(), Error> {
            match call::<()>(ctx, "charge", &()) {
                Ok(()) => call::<()>(ctx, "ship", "ship")?,
                Err(Error::Step { permanent: false, .. }) => call::<()>(ctx, "fallback", "fallback")?,
                Err(e) => return Err(e),
            }
            if ctx.attempt() == 1 {
                return Err(Error::Step { step: "tail".into(), message: "flaky".into(), permanent: false });
            }
            Ok(())
        })
        .unwrap();
    let opts = JobOptions::new().backoff(Duration::from_millis(10), Duration::from_millis(10));
    let id = queue.enqueue("order", &(), opts).unwrap();
    let info = crate::support::finish(&queue, id);
    assert_eq!((info.status, info.attempt), (JobStatus::Completed, 2), "{info:?}");
    assert_eq!((ledger.count("charge"), ledger.count("fallback"), ledger.count("ship")), (1, 1, 0));
}

/// A slot freed when an outcome commits wakes the dispatcher (not the poll, here an hour): a
/// pool that holds one job at a time runs three in a row.
pub fn a_committed_outcome_frees_its_slot_at_once(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    register_recorder(&queue, "job", &ledger);
    let ids = queue.enqueue_batch("job", &["one", "two", "three"], JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(1).prefetch(0).poll_interval(Duration::from_secs(3600)).start().unwrap();
    let last = queue.wait(ids[2], PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!(
        (last.status, ledger.entries()),
        (JobStatus::Completed, vec!["one".into(), "two".into(), "three".into()])
    );
}

/// A short job (1 ms) costs one write, its outcome: its start mark waits a moment in the
/// committer and is dropped when the outcome comes (not asserted exactly: a descheduled handler
/// may outlast the wait). A long job's start is written while it runs.
pub fn a_short_job_costs_no_start_write(db: &dyn Backend) {
    let store = Arc::new(FaultyStore::new(db.store()));
    let queue = Queue::new(store.clone());
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("short", move |_: &JobContext, (): ()| -> Result<(), std::io::Error> {
            // Long enough for the committer to take the start mark alone if it did not wait.
            std::thread::sleep(Duration::from_millis(1));
            l.record("ran");
            Ok(())
        })
        .unwrap();
    let inner = store.clone();
    queue
        .register("long", move |ctx: &JobContext, (): ()| -> Result<(), std::io::Error> {
            wait_until("the start mark is written", || inner.inner().get(ctx.id()).unwrap().unwrap().run_started);
            Ok(())
        })
        .unwrap();
    let worker = queue.worker().concurrency(2).start().unwrap();
    let before = store.writes();
    for _ in 0..20 {
        let id = queue.enqueue("short", &(), JobOptions::new()).unwrap();
        queue.wait(id, PATIENCE).unwrap();
    }
    let short_writes = store.writes() - before;
    let long = queue.enqueue("long", &(), JobOptions::new()).unwrap();
    let info = queue.wait(long, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!((ledger.count("ran"), info.status), (20, JobStatus::Completed));
    assert!((20..=24).contains(&short_writes), "20 outcomes and few start marks, not 40 writes: {short_writes}");
}

crate::backend_tests!(
    a_short_job_costs_no_start_write,
    a_committed_outcome_frees_its_slot_at_once,
    every_due_time_wakes_the_worker,
    run_one_needs_no_pool,
    a_panicking_internal_thread_fails_the_pool,
    a_slow_outcome_commit_keeps_the_lease,
    shutdown_is_bounded_when_a_store_call_hangs,
    a_workflow_may_branch_on_a_retryable_step_error,
);
