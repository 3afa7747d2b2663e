//! Graceful shutdown: drain within the bound, release the rest without using an attempt.

use std::time::{Duration, Instant};

use durable_jobs::{JobContext, JobOptions, JobStatus};

use crate::support::{Backend, Ledger, PATIENCE};

/// A short running job finishes during shutdown; nothing is released.
pub fn shutdown_lets_short_jobs_finish(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("short", move |_: &JobContext, (): ()| -> Result<(), std::io::Error> {
            l.record("started");
            std::thread::sleep(Duration::from_millis(200));
            l.record("finished");
            Ok(())
        })
        .unwrap();
    let id = queue.enqueue("short", &(), JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(1).prefetch(0).shutdown_timeout(Duration::from_secs(10)).start().unwrap();
    ledger.wait_for("started", 1);
    let report = worker.shutdown();
    assert_eq!((report.released, report.abandoned), (0, 0));
    let info = queue.job(id).unwrap().unwrap();
    assert_eq!((info.status, info.attempt), (JobStatus::Completed, 1), "{info:?}");
    assert_eq!(ledger.count("finished"), 1);
}

/// A shutdown tells running handlers at once; one that returns promptly is not abandoned, and
/// its job is released with the queued ones, all without consuming an attempt; the next
/// worker runs every one of them.
pub fn shutdown_releases_held_jobs(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("long", move |ctx: &JobContext, n: u32| -> Result<(), std::io::Error> {
            l.record(format!("start {n} attempt {}", ctx.attempt()));
            if l.count("second worker") == 0 {
                let started = Instant::now();
                // Spins, so it returns the instant the shutdown cancels it: its failure must
                // not beat the release (the job is released, not failed).
                while !ctx.is_cancelled() && started.elapsed() < PATIENCE {
                    std::thread::yield_now();
                }
                l.record(format!("cancelled {n}"));
                return Err(std::io::Error::other("stopped"));
            }
            Ok(())
        })
        .unwrap();
    let ids = queue.enqueue_batch("long", &[1u32, 2, 3], JobOptions::new().retries(1)).unwrap();
    let worker =
        queue.worker().concurrency(1).prefetch(2).shutdown_timeout(Duration::from_millis(200)).start().unwrap();
    ledger.wait_for("start 1 attempt 1", 1);
    std::thread::sleep(Duration::from_millis(50)); // let the dispatcher prefetch 2 and 3
    let stopping = Instant::now();
    let report = worker.shutdown();
    // Bounded: the 200 ms drain, a flush and a release, far from the handler's 20 s patience.
    assert!(stopping.elapsed() < Duration::from_secs(5), "shutdown took {:?}", stopping.elapsed());
    assert_eq!(report.released, 3, "{report:?}");
    assert_eq!(report.abandoned, 0, "the handler returned when told: {report:?}");
    ledger.wait_for("cancelled 1", 1);
    for &id in &ids {
        let info = queue.job(id).unwrap().unwrap();
        assert_eq!((info.status, info.attempt), (JobStatus::Pending, 0), "{info:?}");
    }
    ledger.record("second worker");
    let worker = queue.worker().concurrency(2).start().unwrap();
    for &id in &ids {
        let info = queue.wait(id, PATIENCE).unwrap();
        assert_eq!((info.status, info.attempt), (JobStatus::Completed, 1), "{info:?}");
    }
    worker.shutdown();
    assert_eq!(ledger.count("start 2 attempt 1") + ledger.count("start 3 attempt 1"), 2, "{:?}", ledger.entries());
}

/// Dropping a worker shuts it down: it claims nothing afterwards.
pub fn dropping_a_worker_stops_it(db: &dyn Backend) {
    let queue = db.queue();
    queue.register("job", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    let worker = queue.worker().concurrency(1).poll_interval(Duration::from_millis(10)).start().unwrap();
    drop(worker);
    let id = queue.enqueue("job", &(), JobOptions::new()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(queue.job(id).unwrap().unwrap().status, JobStatus::Pending);
}

crate::backend_tests!(shutdown_lets_short_jobs_finish, shutdown_releases_held_jobs, dropping_a_worker_stops_it);
