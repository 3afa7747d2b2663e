//! Bad input gets a typed error and loses nothing.

use std::sync::Arc;
use std::time::Duration;

use durable_jobs::store::faulty::FaultyStore;
use durable_jobs::{Error, JobContext, JobFilter, JobOptions, JobStatus, Queue};
use serde::{Deserialize, Serialize};

use crate::support::{Backend, Ledger, PATIENCE};

#[derive(Debug, Serialize, Deserialize)]
struct Email {
    to: String,
    retries: u8,
}

/// Unknown and invalid names are refused at enqueue; nothing is stored.
pub fn unknown_and_invalid_names_are_refused(db: &dyn Backend) {
    let queue = db.queue();
    queue.register("known", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    let unknown = queue.enqueue("unknown", &(), JobOptions::new());
    assert!(matches!(&unknown, Err(Error::UnknownJob { name }) if name == "unknown"), "{unknown:?}");
    for bad in ["", "9lives", "x'); DROP TABLE jobs;--", "nul\0byte", "\u{202e}evil", &"a".repeat(10_000)] {
        let err = queue.enqueue(bad, &(), JobOptions::new()).unwrap_err();
        assert!(matches!(err, Error::InvalidName { what: "job", .. }), "{bad:?}: {err}");
        let err = queue.enqueue_raw(bad, b"null", JobOptions::new()).unwrap_err();
        assert!(matches!(err, Error::InvalidName { what: "job", .. }), "{bad:?}: {err}");
        let err = queue.enqueue("known", &(), JobOptions::new().queue(bad)).unwrap_err();
        assert!(matches!(err, Error::InvalidName { what: "queue", .. }), "{bad:?}: {err}");
        let err = queue.register(bad, |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
    }
    assert!(queue.list(&JobFilter::new()).unwrap().is_empty());
}

/// Oversize arguments are refused before any storage call.
pub fn oversize_payloads_never_reach_the_store(db: &dyn Backend) {
    let spy = Arc::new(FaultyStore::new(db.store()));
    let queue = Queue::builder(spy.clone()).max_payload(1024).build();
    queue.register("job", |_: &JobContext, _: String| Ok::<_, std::io::Error>(())).unwrap();
    let big = "x".repeat(2000);
    let err = queue.enqueue("job", &big, JobOptions::new()).unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { size: 2002, limit: 1024, .. }), "{err}");
    let err = queue.enqueue_batch("job", &["ok".to_owned(), big.clone()], JobOptions::new()).unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err}");
    let err = queue.enqueue_raw("job", big.as_bytes(), JobOptions::new()).unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err}");
    assert_eq!(spy.calls(), 0, "no store call for refused payloads");
    queue.enqueue("job", &"small", JobOptions::new()).unwrap();
    assert_eq!(spy.calls(), 1);
    // The default limit is 1 MiB.
    let default = db.queue();
    default.register("job", |_: &JobContext, _: String| Ok::<_, std::io::Error>(())).unwrap();
    let err = default.enqueue("job", &"y".repeat(1 << 20), JobOptions::new()).unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { limit: 1_048_576, .. }), "{err}");
}

/// Arguments that do not decode (enqueued through the unchecked path) fail their job at once,
/// naming the job and the problem, with the payload kept; other jobs are unaffected.
pub fn undecodable_args_fail_terminally_and_keep_the_payload(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("send-email", move |_: &JobContext, email: Email| -> Result<(), std::io::Error> {
            l.record(email.to);
            Ok(())
        })
        .unwrap();
    let poison = [&br#"{"to": 42}"#[..], b"not json at all", br#"{"to":"a@b.c","retries":999}"#, b"\xff\xfe"];
    let bad: Vec<_> =
        poison.iter().map(|p| queue.enqueue_raw("send-email", p, JobOptions::new().retries(5)).unwrap()).collect();
    let good =
        queue.enqueue("send-email", &Email { to: "ok@example.com".into(), retries: 1 }, JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(2).start().unwrap();
    for (id, payload) in bad.iter().zip(poison) {
        let info = queue.wait(*id, PATIENCE).unwrap();
        assert_eq!((info.status, info.attempt), (JobStatus::Failed, 1), "{info:?}");
        let error = info.last_error.unwrap();
        assert!(error.contains(&format!("job {id} (send-email)")) && error.contains("decode the arguments"), "{error}");
        assert_eq!(queue.store().get(*id).unwrap().unwrap().args, payload, "payload kept byte for byte");
    }
    assert_eq!(queue.wait(good, PATIENCE).unwrap().status, JobStatus::Completed);
    worker.shutdown();
    assert_eq!(ledger.entries(), ["ok@example.com"]);
}

/// Nonsense options and settings are refused with the option's name.
pub fn nonsense_options_are_refused(db: &dyn Backend) {
    let queue = db.queue();
    queue.register("job", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    let option = |r: Result<durable_jobs::Worker, Error>| match r {
        Err(Error::InvalidOption { option, .. }) => option,
        Err(e) => panic!("expected InvalidOption, got {e}"),
        Ok(_) => panic!("expected InvalidOption, got a worker"),
    };
    assert_eq!(option(queue.worker().concurrency(0).start()), "concurrency");
    assert_eq!(option(queue.worker().concurrency(100_000).start()), "concurrency");
    assert_eq!(option(queue.worker().lease(Duration::ZERO).start()), "lease");
    assert_eq!(option(queue.worker().poll_interval(Duration::ZERO).start()), "poll_interval");
    assert_eq!(option(queue.worker().queues(Vec::<String>::new()).start()), "queues");
    assert_eq!(option(queue.worker().shutdown_timeout(Duration::MAX).start()), "shutdown_timeout");
    let err = queue.enqueue("job", &(), JobOptions::new().retries(0)).unwrap_err();
    assert!(matches!(err, Error::InvalidOption { option: "retries", .. }), "{err}");
    let err = queue.enqueue("job", &(), JobOptions::new().delay(Duration::MAX)).unwrap_err();
    assert!(matches!(err, Error::InvalidOption { option: "delay", .. }), "{err}");
    assert!(queue.list(&JobFilter::new()).unwrap().is_empty());
}

/// A worker never claims a job whose name it has not registered; one that has, does.
pub fn workers_claim_only_registered_names(db: &dyn Backend) {
    let producer = db.queue();
    let id = producer.enqueue_raw("resize-image", b"{}", JobOptions::new()).unwrap();
    let unrelated = db.queue();
    unrelated.register("other", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    let worker = unrelated.worker().concurrency(1).poll_interval(Duration::from_millis(10)).start().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    worker.shutdown();
    assert_eq!(producer.job(id).unwrap().unwrap().status, JobStatus::Pending);
    let able = db.queue();
    able.register("resize-image", |_: &JobContext, _: serde_json::Value| Ok::<_, std::io::Error>(())).unwrap();
    let worker = able.worker().concurrency(1).start().unwrap();
    assert_eq!(able.wait(id, PATIENCE).unwrap().status, JobStatus::Completed);
    worker.shutdown();
}

crate::backend_tests!(
    unknown_and_invalid_names_are_refused,
    oversize_payloads_never_reach_the_store,
    undecodable_args_fail_terminally_and_keep_the_payload,
    nonsense_options_are_refused,
    workers_claim_only_registered_names,
    undecodable_checkpoints_fail_terminally,
    hostile_text_is_stored_literally,
);

/// S6: a checkpoint written by another version of a step (another type) fails its job for good,
/// naming the job and the step, and other jobs go on.
pub fn undecodable_checkpoints_fail_terminally(db: &dyn Backend) {
    let queue = db.queue();
    queue
        .register("lookup", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(serde_json::json!({"user": "ann"})))
        .unwrap();
    queue
        .register("flow", |ctx: &JobContext, (): ()| -> Result<(), Error> {
            if ctx.attempt() == 1 {
                // Version 1 read the step as JSON, then failed on something transient.
                let _: serde_json::Value = durable_jobs::call(ctx, "lookup", &())?;
                return Err(Error::Step { step: "later".into(), message: "transient".into(), permanent: false });
            }
            // Version 2 expects a number from the same step.
            let _: u64 = durable_jobs::call(ctx, "lookup", &())?;
            Ok(())
        })
        .unwrap();
    queue.register("other", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(())).unwrap();
    let opts = JobOptions::new().retries(5).backoff(Duration::from_millis(5), Duration::from_millis(5));
    let id = queue.enqueue("flow", &(), opts).unwrap();
    let other = queue.enqueue("other", &(), JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(1).start().unwrap();
    let info = queue.wait(id, PATIENCE).unwrap();
    assert_eq!(queue.wait(other, PATIENCE).unwrap().status, JobStatus::Completed);
    worker.shutdown();
    assert_eq!((info.status, info.attempt), (JobStatus::Failed, 2), "{info:?}");
    let error = info.last_error.unwrap();
    assert!(error.contains(&format!("job {id} (lookup)")) && error.contains("decode the checkpoint"), "{error}");
    assert_eq!(queue.checkpoints(id).unwrap().len(), 1, "the checkpoint is kept");
}

/// S15: hostile text in arguments, unique keys, results and errors is stored and read back
/// literally.
pub fn hostile_text_is_stored_literally(db: &dyn Backend) {
    let queue = db.queue();
    let hostile = "x'); DROP TABLE jobs;-- \0 \u{202e}gnp.exe \"\\ 💥";
    queue.register("echo", |_: &JobContext, s: String| Ok::<_, std::io::Error>(s)).unwrap();
    queue.register("fail", |_: &JobContext, s: String| -> Result<(), Error> { Err(Error::permanent(s)) }).unwrap();
    let echo = queue.enqueue("echo", &hostile, JobOptions::new().unique(hostile)).unwrap();
    let fail = queue.enqueue("fail", &hostile, JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(1).start().unwrap();
    queue.wait(echo, PATIENCE).unwrap();
    let failed = queue.wait(fail, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!(queue.result::<String>(echo).unwrap(), hostile);
    let info = queue.job(echo).unwrap().unwrap();
    assert_eq!(serde_json::from_str::<String>(&info.args).unwrap(), hostile);
    assert_eq!(info.unique_key.as_deref(), Some(hostile));
    assert_eq!(failed.last_error.as_deref(), Some(hostile));
    assert_eq!(queue.list(&JobFilter::new()).unwrap().len(), 2, "the jobs table is still there");
}
