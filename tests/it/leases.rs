//! Leases: renewal, expiry, reclaim and fencing of a stalled worker.

use std::sync::Arc;
use std::time::Duration;

use durable_jobs::store::faulty::FaultyStore;
use durable_jobs::store::{ClaimRequest, Store, Timestamp, Write, WriteOutcome};
use durable_jobs::{call, Error, JobContext, JobOptions, JobStatus, Queue};

use crate::support::{Backend, Ledger, PATIENCE};

/// Heartbeats keep a slow job's lease alive: a handler running four times its lease is not
/// reclaimed and runs once.
pub fn heartbeats_keep_slow_jobs(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("slow", move |_: &JobContext, (): ()| -> Result<(), std::io::Error> {
            l.record("run");
            std::thread::sleep(Duration::from_millis(1200));
            Ok(())
        })
        .unwrap();
    let id = queue.enqueue("slow", &(), JobOptions::new()).unwrap();
    // A second worker's reaper runs throughout and must not take the job.
    let other = db.queue();
    other.register("slow", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    let worker = queue.worker().concurrency(1).lease(Duration::from_millis(300)).start().unwrap();
    ledger.wait_for("run", 1);
    let watcher = other.worker().concurrency(1).lease(Duration::from_millis(300)).start().unwrap();
    let info = queue.wait(id, PATIENCE).unwrap();
    worker.shutdown();
    watcher.shutdown();
    assert_eq!((info.status, info.attempt), (JobStatus::Completed, 1), "{info:?}");
    assert_eq!(ledger.count("run"), 1);
}

/// A worker whose heartbeat stalls loses the job when the lease expires; another worker takes
/// it over and resumes after the checkpointed step; the stalled worker's late checkpoint is
/// refused (`LeaseLost`, `is_cancelled`) and its step 2 never runs.
pub fn expired_lease_is_taken_over_and_late_writes_refused(db: &dyn Backend) {
    let ledger = Ledger::default();
    let register = |queue: &Queue, who: &'static str| {
        let l = ledger.clone();
        queue
            .register("step1", move |_: &JobContext, (): ()| -> Result<u32, std::io::Error> {
                l.record(format!("step1 by {who}"));
                Ok(1)
            })
            .unwrap();
        let l = ledger.clone();
        queue
            .register("step2", move |_: &JobContext, (): ()| -> Result<u32, std::io::Error> {
                l.record(format!("step2 by {who}"));
                Ok(2)
            })
            .unwrap();
        let l = ledger.clone();
        queue
            .register("flow", move |ctx: &JobContext, (): ()| -> Result<u32, Error> {
                let a: u32 = call(ctx, "step1", &())?;
                if who == "stalled" {
                    // Stall past the lease, until the other worker runs the job, then write.
                    l.record("stalled");
                    l.wait_for("healthy running", 1);
                    let late = call::<u32>(ctx, "step2", &());
                    l.record(format!("late call: {}", matches!(late, Err(Error::LeaseLost { .. }))));
                    l.record(format!("cancelled: {}", ctx.is_cancelled()));
                    l.record("late call done");
                    late?;
                } else {
                    // Hold the job (running, leased to this worker) while the stalled one writes.
                    l.record("healthy running");
                    l.wait_for("late call done", 1);
                }
                let b: u32 = call(ctx, "step2", &())?;
                Ok(a + b)
            })
            .unwrap();
    };
    let stalling = FaultyStore::new(db.store());
    stalling.stall_renewals(true);
    let stalled = Queue::new(stalling);
    register(&stalled, "stalled");
    let id = stalled.enqueue("flow", &(), JobOptions::new().retries(3)).unwrap();
    let stalled_worker = stalled.worker().concurrency(1).prefetch(0).lease(Duration::from_millis(400)).start().unwrap();
    ledger.wait_for("stalled", 1);
    let healthy = db.queue();
    register(&healthy, "healthy");
    let healthy_worker = healthy.worker().concurrency(1).lease(Duration::from_millis(400)).start().unwrap();
    let info = healthy.wait(id, PATIENCE).unwrap();
    stalled_worker.shutdown();
    healthy_worker.shutdown();
    assert_eq!((info.status, info.attempt), (JobStatus::Completed, 2), "{info:?}");
    assert_eq!(healthy.result::<u32>(id).unwrap(), 3);
    assert_eq!(ledger.count("step1 by stalled"), 1);
    assert_eq!(ledger.count("step1 by healthy"), 0, "step 1 was replayed from its checkpoint");
    assert_eq!(ledger.count("step2 by healthy"), 1);
    assert_eq!(ledger.count("step2 by stalled"), 1, "the stalled worker's step ran but was not recorded");
    assert_eq!(ledger.count("late call: true"), 1, "{:?}", ledger.entries());
    assert_eq!(ledger.count("cancelled: true"), 1, "{:?}", ledger.entries());
    let final_info = healthy.job(id).unwrap().unwrap();
    assert_eq!(final_info.status, JobStatus::Completed, "the late writes changed nothing");
}

/// A job whose worker vanished (claimed, never renewed) is reclaimed by any worker's reaper.
/// A run whose handler had started is charged (a job that kills its worker cannot loop
/// forever: on its last attempt it fails with the reason); one that never started is not, and
/// runs with its attempt given back.
pub fn reaper_recovers_jobs_of_dead_workers(db: &dyn Backend) {
    let store = db.store();
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("job", move |ctx: &JobContext, (): ()| -> Result<u32, std::io::Error> {
            l.record("run");
            Ok(ctx.attempt())
        })
        .unwrap();
    let again = queue.enqueue("job", &(), JobOptions::new().retries(2)).unwrap();
    let last = queue.enqueue("job", &(), JobOptions::new().retries(1)).unwrap();
    let prefetched = queue.enqueue("job", &(), JobOptions::new().retries(1)).unwrap();
    // A "dead" worker claims all three with a short lease, starts two, and disappears.
    let now = Timestamp::now();
    let req = ClaimRequest::new("dead", now, now.saturating_add(Duration::from_millis(200))).names(["job"]).limit(10);
    let claimed = store.claim(&req).unwrap().jobs;
    assert_eq!(claimed.len(), 3);
    let starts: Vec<Write> = claimed[..2].iter().map(|c| Write::start(c.claim())).collect();
    assert_eq!(store.commit("dead", now, &starts).unwrap(), vec![WriteOutcome::Applied; 2]);
    let worker = queue.worker().concurrency(1).lease(Duration::from_millis(400)).start().unwrap();
    let again = queue.wait(again, PATIENCE).unwrap();
    let last = queue.wait(last, PATIENCE).unwrap();
    let prefetched = queue.wait(prefetched, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!((again.status, again.attempt), (JobStatus::Completed, 2), "{again:?}");
    assert_eq!(queue.result::<u32>(again.id).unwrap(), 2);
    assert_eq!((last.status, last.attempt), (JobStatus::Failed, 1), "{last:?}");
    assert!(last.last_error.unwrap().contains("while the handler ran"));
    assert_eq!((prefetched.status, prefetched.attempt), (JobStatus::Completed, 1), "never started: not charged");
    assert_eq!(ledger.count("run"), 2);
    // The dead worker's writes are refused.
    let late = store.commit("dead", Timestamp::now(), &[Write::complete(claimed[0].claim(), b"0".to_vec())]);
    assert_eq!(late.unwrap(), vec![WriteOutcome::LeaseLost]);
    assert_eq!(queue.result::<u32>(again.id).unwrap(), 2);
}

/// The lease written at claim time and renewed by heartbeats belongs to the worker's id.
pub fn running_jobs_name_their_worker(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    let gate = Arc::new(parking_lot::Mutex::new(()));
    let held = gate.lock();
    let g = gate.clone();
    queue
        .register("job", move |_: &JobContext, (): ()| -> Result<(), std::io::Error> {
            l.record("started");
            drop(g.lock());
            Ok(())
        })
        .unwrap();
    let id = queue.enqueue("job", &(), JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(1).start().unwrap();
    ledger.wait_for("started", 1);
    let record = queue.store().get(id).unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Running);
    assert_eq!(record.locked_by.as_deref(), Some(worker.id()));
    assert!(record.lease_until.unwrap() > Timestamp::now());
    drop(held);
    queue.wait(id, PATIENCE).unwrap();
    worker.shutdown();
}

crate::backend_tests!(
    heartbeats_keep_slow_jobs,
    expired_lease_is_taken_over_and_late_writes_refused,
    reaper_recovers_jobs_of_dead_workers,
    running_jobs_name_their_worker,
);
