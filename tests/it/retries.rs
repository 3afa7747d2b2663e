//! Attempts, backoff, permanent errors, retry-after and panics.

use std::time::{Duration, Instant, SystemTime};

use durable_jobs::{Error, JobContext, JobOptions, JobStatus};

use crate::support::{finish, Backend, Ledger, PATIENCE};

fn fast_backoff() -> JobOptions {
    JobOptions::new().backoff(Duration::from_millis(5), Duration::from_millis(20))
}

/// A job that always fails runs exactly `retries` times and ends failed with its last error.
pub fn attempts_are_bounded_by_retries(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("flaky", move |ctx: &JobContext, (): ()| -> Result<(), std::io::Error> {
            l.record("run");
            Err(std::io::Error::other(format!("failure {}", ctx.attempt())))
        })
        .unwrap();
    let four = queue.enqueue("flaky", &(), fast_backoff().retries(4)).unwrap();
    let one = queue.enqueue("flaky", &(), fast_backoff().retries(1)).unwrap();
    let worker = queue.worker().concurrency(2).start().unwrap();
    let four = queue.wait(four, PATIENCE).unwrap();
    let one = queue.wait(one, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!((four.status, four.attempt, four.max_attempts), (JobStatus::Failed, 4, 4));
    assert_eq!(four.last_error.as_deref(), Some("failure 4"));
    assert_eq!((one.status, one.attempt), (JobStatus::Failed, 1));
    assert_eq!(ledger.count("run"), 5);
    assert!(four.finished_at.is_some());
}

/// A permanent error fails the job on its first attempt whatever `retries` allows.
pub fn permanent_errors_are_not_retried(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("charge", move |_: &JobContext, (): ()| -> Result<(), Error> {
            l.record("run");
            Err(Error::permanent(std::io::Error::other("card reported stolen")))
        })
        .unwrap();
    let id = queue.enqueue("charge", &(), fast_backoff().retries(10)).unwrap();
    let info = finish(&queue, id);
    assert_eq!((info.status, info.attempt), (JobStatus::Failed, 1));
    assert_eq!(info.last_error.as_deref(), Some("card reported stolen"));
    assert_eq!(ledger.count("run"), 1);
}

/// The backoff schedule holds: attempt n+1 starts no earlier than base · 2^n after attempt n
/// failed (less 10 % jitter).
pub fn backoff_delays_the_next_attempt(db: &dyn Backend) {
    let queue = db.queue();
    let starts = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s = starts.clone();
    queue
        .register("flaky", move |ctx: &JobContext, (): ()| -> Result<(), std::io::Error> {
            s.lock().push(Instant::now());
            if ctx.attempt() < 3 {
                return Err(std::io::Error::other("not yet"));
            }
            Ok(())
        })
        .unwrap();
    let opts = JobOptions::new().backoff(Duration::from_millis(50), Duration::from_secs(10));
    let id = queue.enqueue("flaky", &(), opts).unwrap();
    let worker = queue.worker().concurrency(1).start().unwrap();
    assert_eq!(queue.wait(id, PATIENCE).unwrap().status, JobStatus::Completed);
    worker.shutdown();
    let starts = starts.lock();
    assert_eq!(starts.len(), 3);
    let gap1 = starts[1] - starts[0];
    let gap2 = starts[2] - starts[1];
    assert!(gap1 >= Duration::from_millis(90), "first retry after 2 x 50 ms: {gap1:?}");
    assert!(gap2 >= Duration::from_millis(180), "second retry after 4 x 50 ms: {gap2:?}");
}

/// `Error::retry_after` chooses the delay before the next attempt.
pub fn retry_after_sets_the_delay(db: &dyn Backend) {
    let queue = db.queue();
    let starts = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s = starts.clone();
    queue
        .register("limited", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
            s.lock().push(Instant::now());
            if ctx.attempt() == 1 {
                return Err(Error::retry_after(Duration::from_millis(300), "429 too many requests"));
            }
            Ok(())
        })
        .unwrap();
    let id = queue.enqueue("limited", &(), fast_backoff()).unwrap();
    let info = finish(&queue, id);
    assert_eq!((info.status, info.attempt), (JobStatus::Completed, 2));
    let starts = starts.lock();
    assert!(starts[1] - starts[0] >= Duration::from_millis(300), "{:?}", starts[1] - starts[0]);
    assert!(info.last_error.unwrap().contains("429 too many requests"));

    // A delay too long to represent is clamped, not a panic.
    queue
        .register("forever", |_: &JobContext, (): ()| -> Result<(), Error> {
            Err(Error::retry_after(Duration::MAX, "later"))
        })
        .unwrap();
    let id = queue.enqueue("forever", &(), JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(1).start().unwrap();
    let start = Instant::now();
    while queue.job(id).unwrap().unwrap().attempt == 0 || queue.job(id).unwrap().unwrap().status != JobStatus::Scheduled
    {
        assert!(start.elapsed() < PATIENCE, "{:?}", queue.job(id));
        std::thread::sleep(Duration::from_millis(5));
    }
    worker.shutdown();
    let info = queue.job(id).unwrap().unwrap();
    assert!(info.run_at > SystemTime::now() + Duration::from_secs(100 * 365 * 24 * 3600), "{info:?}");
}

/// A panic fails the attempt with its message, the job is retried, and the thread lives on to
/// run other jobs.
pub fn panics_are_caught_per_job(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("fragile", move |ctx: &JobContext, n: u32| -> Result<u32, std::io::Error> {
            l.record(format!("run {n}"));
            assert!(ctx.attempt() > 1 || n != 1, "boom on job {n}");
            Ok(n)
        })
        .unwrap();
    let ids = queue.enqueue_batch("fragile", &[1u32, 2, 3], fast_backoff()).unwrap();
    let worker = queue.worker().concurrency(1).start().unwrap();
    let infos: Vec<_> = ids.iter().map(|&id| queue.wait(id, PATIENCE).unwrap()).collect();
    worker.shutdown();
    assert!(infos.iter().all(|i| i.status == JobStatus::Completed), "{infos:?}");
    assert_eq!(infos[0].attempt, 2);
    assert!(infos[0].last_error.as_deref().unwrap().contains("panicked: boom on job 1"), "{:?}", infos[0].last_error);
    assert_eq!((infos[1].attempt, infos[2].attempt), (1, 1));
    assert_eq!((ledger.count("run 1"), ledger.count("run 2"), ledger.count("run 3")), (2, 1, 1));
}

crate::backend_tests!(
    attempts_are_bounded_by_retries,
    permanent_errors_are_not_retried,
    backoff_delays_the_next_attempt,
    retry_after_sets_the_delay,
    panics_are_caught_per_job,
);
