//! Priority, delays, queues, unique keys, batches and wake-ups.

use std::time::{Duration, Instant, SystemTime};

use durable_jobs::{Error, JobContext, JobOptions, JobStatus};

use crate::support::{register_recorder, Backend, Ledger, PATIENCE};

/// One thread, no prefetch: jobs run by priority, then in enqueue order.
pub fn higher_priority_runs_first(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    register_recorder(&queue, "job", &ledger);
    let plan = [("low-1", -5), ("mid-1", 0), ("high-1", 10), ("mid-2", 0), ("high-2", 10), ("low-2", -5)];
    let mut ids = Vec::new();
    for (tag, priority) in plan {
        ids.push(queue.enqueue("job", tag, JobOptions::new().priority(priority)).unwrap());
    }
    let worker = queue.worker().concurrency(1).prefetch(0).start().unwrap();
    for id in ids {
        queue.wait(id, PATIENCE).unwrap();
    }
    worker.shutdown();
    assert_eq!(ledger.entries(), ["high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2"]);
}

/// A delayed job does not start before its time; a job due in the past starts at once.
pub fn delay_and_run_at_are_respected(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    register_recorder(&queue, "job", &ledger);
    let worker = queue.worker().concurrency(2).start().unwrap();
    let enqueued = SystemTime::now();
    let delayed = queue.enqueue("job", "delayed", JobOptions::new().delay(Duration::from_millis(400))).unwrap();
    let future = enqueued + Duration::from_millis(600);
    let at = queue.enqueue("job", "at", JobOptions::new().run_at(future)).unwrap();
    let past = queue.enqueue("job", "past", JobOptions::new().run_at(enqueued - Duration::from_secs(3600))).unwrap();
    let d = queue.wait(delayed, PATIENCE).unwrap();
    let a = queue.wait(at, PATIENCE).unwrap();
    let p = queue.wait(past, PATIENCE).unwrap();
    worker.shutdown();
    assert!(d.started_at.unwrap() >= enqueued + Duration::from_millis(400), "{d:?}");
    assert!(a.started_at.unwrap() >= future, "{a:?}");
    assert_eq!(ledger.entries().first().map(String::as_str), Some("past"), "{:?}", ledger.entries());
    assert_eq!(p.status, JobStatus::Completed);
}

/// An enqueue in this process wakes an idle worker at once: with an hour-long poll interval,
/// the job still runs.
pub fn enqueue_wakes_an_idle_worker(db: &dyn Backend) {
    let queue = db.queue();
    queue.register("job", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    let worker = queue.worker().concurrency(1).poll_interval(Duration::from_secs(3600)).start().unwrap();
    std::thread::sleep(Duration::from_millis(50)); // let the dispatcher go idle
    for _ in 0..3 {
        let started = Instant::now();
        let id = queue.enqueue("job", &(), JobOptions::new()).unwrap();
        assert_eq!(queue.wait(id, PATIENCE).unwrap().status, JobStatus::Completed);
        assert!(started.elapsed() < Duration::from_secs(60), "woken, not polled");
    }
    worker.shutdown();
}

/// A worker claims only from its queues; a second worker serves the other queue.
pub fn workers_serve_only_their_queues(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("job", move |ctx: &JobContext, (): ()| -> Result<(), std::io::Error> {
            l.record(ctx.queue().to_owned());
            Ok(())
        })
        .unwrap();
    let mail = queue.enqueue("job", &(), JobOptions::new().queue("mail")).unwrap();
    let default = queue.enqueue("job", &(), JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(1).start().unwrap();
    queue.wait(default, PATIENCE).unwrap();
    let err = queue.wait(mail, Duration::from_millis(300)).unwrap_err();
    assert!(matches!(err, Error::WaitTimeout { status: JobStatus::Pending, .. }), "{err}");
    let mail_worker = queue.worker().concurrency(1).queues(["mail"]).start().unwrap();
    assert_eq!(queue.wait(mail, PATIENCE).unwrap().status, JobStatus::Completed);
    worker.shutdown();
    mail_worker.shutdown();
    assert_eq!(ledger.entries(), ["default", "mail"]);
}

/// One live job per unique key: a duplicate is refused naming the holder; once the holder has
/// finished, the key is free.
pub fn unique_keys_allow_one_live_job(db: &dyn Backend) {
    let queue = db.queue();
    queue.register("job", |_: &JobContext, n: u32| Ok::<_, std::io::Error>(n)).unwrap();
    let first = queue.enqueue("job", &1, JobOptions::new().unique("order-42")).unwrap();
    match queue.enqueue("job", &2, JobOptions::new().unique("order-42")) {
        Err(Error::Duplicate { key, existing }) => assert_eq!((key.as_str(), existing), ("order-42", first)),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    let other = queue.enqueue("job", &3, JobOptions::new().unique("order-43")).unwrap();
    let worker = queue.worker().concurrency(1).start().unwrap();
    queue.wait(first, PATIENCE).unwrap();
    queue.wait(other, PATIENCE).unwrap();
    let again = queue.enqueue("job", &4, JobOptions::new().unique("order-42")).unwrap();
    assert_eq!(queue.wait(again, PATIENCE).unwrap().status, JobStatus::Completed);
    worker.shutdown();
    assert_eq!(queue.result::<u32>(first).unwrap(), 1);
    assert_eq!(queue.result::<u32>(again).unwrap(), 4);
    assert_eq!(queue.list(&durable_jobs::JobFilter::new()).unwrap().len(), 3, "the duplicate was not stored");
    let batch = queue.enqueue_batch("job", &[1, 2], JobOptions::new().unique("k"));
    assert!(matches!(batch, Err(Error::InvalidOption { option: "unique", .. })), "{batch:?}");
}

/// A batch is stored in one call, ids in order, and every job runs once.
pub fn batches_enqueue_in_order(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("job", move |_: &JobContext, n: u32| -> Result<u32, std::io::Error> {
            l.record(n.to_string());
            Ok(n * 2)
        })
        .unwrap();
    let args: Vec<u32> = (0..250).collect();
    let ids = queue.enqueue_batch("job", &args, JobOptions::new()).unwrap();
    assert_eq!(ids.len(), 250);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");
    assert!(queue.enqueue_batch::<u32>("job", &[], JobOptions::new()).unwrap().is_empty());
    let worker = queue.worker().concurrency(3).start().unwrap();
    for (i, &id) in ids.iter().enumerate() {
        queue.wait(id, PATIENCE).unwrap();
        assert_eq!(queue.result::<u32>(id).unwrap(), 2 * i as u32);
    }
    worker.shutdown();
    for n in args {
        assert_eq!(ledger.count(&n.to_string()), 1);
    }
}

crate::backend_tests!(
    higher_priority_runs_first,
    delay_and_run_at_are_respected,
    enqueue_wakes_an_idle_worker,
    workers_serve_only_their_queues,
    unique_keys_allow_one_live_job,
    batches_enqueue_in_order,
);
