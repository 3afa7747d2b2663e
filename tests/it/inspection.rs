//! Looking at jobs: `job`, `list`, `counts`, `wait`, `result`; and per-attempt timeouts.

use std::time::{Duration, Instant, SystemTime};

use durable_jobs::{call, CancelOutcome, Error, JobContext, JobFilter, JobId, JobOptions, JobStatus, RequeueOutcome};

use crate::support::{finish, Backend, Ledger, PATIENCE};

/// `job` reports every field; `result` decodes completed jobs and explains the others.
pub fn job_info_and_results(db: &dyn Backend) {
    let queue = db.queue();
    queue.register("ok", |_: &JobContext, n: u32| Ok::<_, std::io::Error>(vec![n; 2])).unwrap();
    queue
        .register("bad", |_: &JobContext, (): ()| -> Result<(), Error> { Err(Error::permanent("no such user")) })
        .unwrap();
    let before = SystemTime::now();
    let ok = queue.enqueue("ok", &7, JobOptions::new().priority(3).retries(4).queue("q1").unique("u-1")).unwrap();
    let bad = queue.enqueue("bad", &(), JobOptions::new()).unwrap();
    let pending = queue.job(ok).unwrap().unwrap();
    assert_eq!(
        (pending.status, pending.attempt, pending.max_attempts, pending.priority),
        (JobStatus::Pending, 0, 4, 3)
    );
    assert_eq!((pending.name.as_str(), pending.queue.as_str(), pending.args.as_str()), ("ok", "q1", "7"));
    assert_eq!(pending.unique_key.as_deref(), Some("u-1"));
    assert!(pending.created_at >= before - Duration::from_secs(1));
    assert_eq!((pending.started_at, pending.finished_at, pending.result.as_deref()), (None, None, None));
    let err = queue.result::<Vec<u32>>(ok).unwrap_err();
    assert!(matches!(err, Error::NoResult { status: JobStatus::Pending, .. }), "{err}");
    let worker = queue.worker().concurrency(1).queues(["default", "q1"]).start().unwrap();
    let done = queue.wait(ok, PATIENCE).unwrap();
    let failed = queue.wait(bad, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!((done.status, done.attempt), (JobStatus::Completed, 1));
    assert_eq!(done.result.as_deref(), Some("[7,7]"));
    assert!(done.started_at.is_some() && done.finished_at >= done.started_at);
    assert_eq!(queue.result::<Vec<u32>>(ok).unwrap(), vec![7, 7]);
    let err = queue.result::<String>(ok).unwrap_err();
    assert!(matches!(err, Error::Decode { what: "result", .. }), "{err}");
    let err = queue.result::<()>(bad).unwrap_err();
    assert!(err.to_string().contains("no such user"), "{err}");
    assert!(matches!(err, Error::NoResult { status: JobStatus::Failed, .. }));
    assert_eq!(failed.last_error.as_deref(), Some("no such user"));
    let missing = JobId(bad.0 + 1000);
    assert!(queue.job(missing).unwrap().is_none());
    assert!(matches!(queue.wait(missing, Duration::from_millis(10)), Err(Error::NotFound { .. })));
    assert!(matches!(queue.result::<()>(missing), Err(Error::NotFound { .. })));
}

/// `list` filters and pages; `counts` groups by queue and status; `wait` gives up in time.
pub fn list_counts_and_wait_timeout(db: &dyn Backend) {
    let queue = db.queue();
    queue.register("a", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    queue.register("b", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    let a = queue.enqueue_batch("a", &[(), (), ()], JobOptions::new()).unwrap();
    let b = queue.enqueue("b", &(), JobOptions::new().queue("other")).unwrap();
    let names = |f: JobFilter| queue.list(&f).unwrap().into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(names(JobFilter::new().name("a")), a);
    assert_eq!(names(JobFilter::new().queue("other")), vec![b]);
    assert_eq!(names(JobFilter::new().limit(2).offset(1)), vec![a[1], a[2]]);
    let counts = queue.counts().unwrap();
    assert_eq!((counts.queue("default").ready, counts.queue("other").ready, counts.name("b").ready), (3, 1, 1));
    assert_eq!(counts.rows().count(), 2);
    let started = Instant::now();
    let err = queue.wait(b, Duration::from_millis(150)).unwrap_err();
    assert!(matches!(err, Error::WaitTimeout { status: JobStatus::Pending, .. }), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(150));
    let worker = queue.worker().concurrency(2).start().unwrap();
    for &id in &a {
        queue.wait(id, PATIENCE).unwrap();
    }
    worker.shutdown();
    assert_eq!(names(JobFilter::new().status(JobStatus::Completed)), a);
    let counts = queue.counts().unwrap();
    assert_eq!((counts.name("a").completed, counts.name("a").busy(), counts.name("b").ready), (3, 0, 1));
}

/// Past its timeout an attempt is cancelled: `is_cancelled` turns true, `deadline` is set, and
/// `call` refuses new steps with `TimedOut`; the job is retried.
pub fn timeouts_cancel_the_attempt(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue.register("step", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    queue
        .register("slow", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
            assert!(ctx.deadline().is_some());
            if ctx.attempt() == 1 {
                let start = Instant::now();
                while !ctx.is_cancelled() && start.elapsed() < PATIENCE {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let refused = call::<()>(ctx, "step", &());
                l.record(format!("timed out: {}", matches!(refused, Err(Error::TimedOut { .. }))));
                refused?;
            }
            call::<()>(ctx, "step", &())
        })
        .unwrap();
    let opts = JobOptions::new()
        .timeout(Duration::from_millis(100))
        .backoff(Duration::from_millis(5), Duration::from_millis(5));
    let id = queue.enqueue("slow", &(), opts).unwrap();
    let info = finish(&queue, id);
    assert_eq!((info.status, info.attempt), (JobStatus::Completed, 2), "{info:?}");
    assert_eq!(ledger.entries(), ["timed out: true"]);
    assert!(info.last_error.unwrap().contains("timed out after 100ms"));
}

crate::backend_tests!(
    job_info_and_results,
    list_counts_and_wait_timeout,
    timeouts_cancel_the_attempt,
    cancel_and_requeue
);

/// A dead job is requeued by hand and resumes after its checkpointed step; a waiting job is
/// cancelled; a running one is not.
pub fn cancel_and_requeue(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("fetch", move |_: &JobContext, (): ()| -> Result<u32, std::io::Error> {
            l.record("fetch");
            Ok(7)
        })
        .unwrap();
    let fixed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = fixed.clone();
    queue
        .register("flow", move |ctx: &JobContext, (): ()| -> Result<u32, Error> {
            let v: u32 = call(ctx, "fetch", &())?;
            if !f.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::permanent("bug in the second step"));
            }
            Ok(v + 1)
        })
        .unwrap();
    let id = queue.enqueue("flow", &(), JobOptions::new()).unwrap();
    let later = queue.enqueue("flow", &(), JobOptions::new().delay(Duration::from_secs(3600))).unwrap();
    assert_eq!(queue.cancel(later).unwrap(), CancelOutcome::Cancelled);
    assert_eq!(queue.wait(later, PATIENCE).unwrap().status, JobStatus::Cancelled);
    let worker = queue.worker().concurrency(1).start().unwrap();
    assert_eq!(queue.wait(id, PATIENCE).unwrap().status, JobStatus::Failed);
    assert_eq!(queue.requeue(JobId(id.0 + 1000)).unwrap(), RequeueOutcome::NotFound);
    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(queue.requeue(id).unwrap(), RequeueOutcome::Requeued);
    let info = queue.wait(id, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!((info.status, info.attempt), (JobStatus::Completed, 1), "{info:?}");
    assert_eq!(queue.result::<u32>(id).unwrap(), 8);
    assert_eq!(ledger.count("fetch"), 1, "the requeued workflow resumed after its checkpoint");
    assert_eq!(queue.cancel(id).unwrap(), CancelOutcome::Finished(JobStatus::Completed), "a completed job");
}
