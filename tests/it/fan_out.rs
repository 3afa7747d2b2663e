//! Issue 10: child jobs. A workflow starts children with its suspension, waits holding no
//! thread, and wakes once when its strategy is decided, with every child's result in order.

use std::time::Duration;

use durable_jobs::{
    fan_out, spawn, CancelOutcome, Child, ChildFailed, Error, FanInStrategy, JobContext, JobFilter, JobId, JobOptions,
    JobStatus, Queue,
};

use crate::support::{Backend, Ledger, PATIENCE};

/// Registers "part" (records "part <n>", takes 2 ms; child 13 fails for good) and "batch", which fans out
/// 100 parts with the strategy its argument names and returns (values, failures, statuses of
/// the failures), recording "decided" after the fan-out.
fn register_batch(queue: &Queue, ledger: &Ledger) {
    let l = ledger.clone();
    queue
        .register("part", move |_: &JobContext, n: u32| -> Result<u32, Error> {
            l.record(format!("part {n}"));
            // Long enough that a decision at part 13 comes while most parts still wait.
            std::thread::sleep(Duration::from_millis(2));
            if n == 13 {
                return Err(Error::permanent(std::io::Error::other("part 13 is broken")));
            }
            Ok(n * 10)
        })
        .unwrap();
    let l = ledger.clone();
    queue
        .register("batch", move |ctx: &JobContext, strategy: String| -> Result<(Vec<u32>, Vec<String>), Error> {
            let strategy = match strategy.as_str() {
                "fail-fast" => FanInStrategy::FailFast,
                "collect-all" => FanInStrategy::CollectAll,
                _ => FanInStrategy::Threshold(0.5),
            };
            let children = (0..100u32).map(|n| Child::new("part", &n)).collect();
            let results = fan_out::<u32>(ctx, children, strategy)?;
            ctx.step("decided", || {
                l.record("decided");
                Ok::<_, std::io::Error>(())
            })?;
            let values = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
            let failures = results.iter().filter_map(|r| r.as_ref().err()).map(|f: &ChildFailed| f.status.to_string());
            Ok((values, failures.collect()))
        })
        .unwrap();
}

/// Runs a batch with `strategy` on a two-thread pool until everything is finished; returns
/// the batch's result and the ledger.
fn run_batch(db: &dyn Backend, strategy: &str) -> ((Vec<u32>, Vec<String>), Ledger, Queue, JobId) {
    let queue = db.queue();
    let ledger = Ledger::default();
    register_batch(&queue, &ledger);
    let id = queue.enqueue("batch", strategy, JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(2).start().unwrap();
    assert_eq!(queue.wait(id, PATIENCE).unwrap().status, JobStatus::Completed);
    queue.wait_idle(PATIENCE).unwrap();
    worker.shutdown();
    let result = queue.result(id).unwrap();
    (result, ledger, queue, id)
}

fn children(queue: &Queue, parent: JobId) -> Vec<durable_jobs::JobInfo> {
    queue.list(&JobFilter::new().parent(parent).limit(1000)).unwrap()
}

/// CollectAll: the parent wakes once, after all 100 children; 99 values in order and one
/// failure; every child ran exactly once, the workflow's later step once.
pub fn a_fan_out_collects_all_results_in_order(db: &dyn Backend) {
    let ((values, failures), ledger, queue, id) = run_batch(db, "collect-all");
    let expected: Vec<u32> = (0..100).filter(|n| *n != 13).map(|n| n * 10).collect();
    assert_eq!((values, failures), (expected, vec!["failed".to_owned()]));
    for n in 0..100 {
        assert_eq!(ledger.count(&format!("part {n}")), 1, "part {n}");
    }
    assert_eq!(ledger.count("decided"), 1);
    let kids = children(&queue, id);
    assert_eq!(kids.len(), 100);
    assert!(kids.iter().all(|k| k.parent == Some(id)), "JobInfo names the parent");
    assert_eq!(queue.job(id).unwrap().unwrap().attempt, 1, "waiting charged nothing");
}

/// FailFast: the parent wakes at the failure; children still waiting to run then are
/// cancelled, none ran twice, and nothing is left waiting to run.
pub fn a_fail_fast_fan_out_stops_at_the_first_failure(db: &dyn Backend) {
    let ((values, failures), ledger, queue, id) = run_batch(db, "fail-fast");
    assert!(failures.iter().any(|f| f == "failed"), "{failures:?}");
    assert_eq!(values.len() + failures.len(), 100);
    let ran = (0..100).filter(|n| ledger.count(&format!("part {n}")) == 1).count();
    assert!((0..100).all(|n| ledger.count(&format!("part {n}")) <= 1), "no child ran twice");
    let kids = children(&queue, id);
    let cancelled = kids.iter().filter(|k| k.status == JobStatus::Cancelled).count();
    assert_eq!(ran + cancelled, 100, "each child either ran once or was cancelled");
    assert!(cancelled > 0, "the failure decided early: {ran} ran");
    assert!(kids.iter().all(|k| k.status.is_terminal()), "nothing left to run");
    // A child running (or prefetched) at the decision is reported `running` and asked to stop:
    // it ends cancelled, or completed if it finished first.
    let reported = |status: &str| failures.iter().filter(|f| *f == status).count();
    assert!(reported("cancelled") <= cancelled && cancelled <= reported("cancelled") + reported("running"));
}

/// Threshold(0.5): decided once 50 children have completed (part 13 failing does not stop
/// it); at least 50 values come back, and the rest were cancelled or finished.
pub fn a_threshold_fan_out_wakes_at_its_fraction(db: &dyn Backend) {
    let ((values, failures), ledger, queue, id) = run_batch(db, "threshold");
    assert!(values.len() >= 50, "{} values", values.len());
    assert_eq!(values.len() + failures.len(), 100);
    assert!((0..100).all(|n| ledger.count(&format!("part {n}")) <= 1));
    assert_eq!(ledger.count("decided"), 1);
    assert!(children(&queue, id).iter().all(|k| k.status.is_terminal()));
}

/// `spawn` runs one child (itself a workflow with its own children) and returns its result; a
/// failed child is `Error::ChildFailed`, permanent for the parent.
pub fn spawn_returns_a_childs_result_and_nests(db: &dyn Backend) {
    let queue = db.queue();
    queue.register("leaf", |_: &JobContext, n: u32| -> Result<u32, Error> { Ok(n + 1) }).unwrap();
    queue
        .register("middle", |ctx: &JobContext, n: u32| -> Result<u32, Error> {
            let a: u32 = spawn(ctx, Child::new("leaf", &n))?;
            spawn(ctx, Child::new("leaf", &a).options(JobOptions::new().queue("other")))
        })
        .unwrap();
    queue
        .register("top", |ctx: &JobContext, n: u32| -> Result<u32, Error> {
            let got: u32 = spawn(ctx, Child::new("middle", &n))?;
            if got > 100 {
                spawn::<u32>(ctx, Child::new("leaf", "not a number"))?;
            }
            Ok(got)
        })
        .unwrap();
    let ok = queue.enqueue("top", &1, JobOptions::new()).unwrap();
    let bad = queue.enqueue("top", &200, JobOptions::new()).unwrap();
    let worker = queue.worker().queues(["default", "other"]).concurrency(2).start().unwrap();
    let ok_info = queue.wait(ok, PATIENCE).unwrap();
    let bad_info = queue.wait(bad, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!(ok_info.status, JobStatus::Completed, "{ok_info:?}");
    assert_eq!(queue.result::<u32>(ok).unwrap(), 3);
    assert_eq!((bad_info.status, bad_info.attempt), (JobStatus::Failed, 1), "{bad_info:?}");
    assert!(bad_info.last_error.unwrap_or_default().contains("child job"));
}

/// Cancelling a waiting parent cancels its children and their descendants waiting to run; the
/// parent never wakes. `JobInfo` showed what it waited for.
pub fn cancelling_a_parent_cancels_its_descendants(db: &dyn Backend) {
    let queue = db.queue();
    queue.register("slow", |ctx: &JobContext, (): ()| ctx.sleep(Duration::from_secs(3600))).unwrap();
    queue
        .register("tree", |ctx: &JobContext, (): ()| -> Result<(), Error> {
            let children = vec![Child::new("slow", &()), Child::new("slow", &())];
            fan_out::<()>(ctx, children, FanInStrategy::CollectAll).map(drop)
        })
        .unwrap();
    let id = queue.enqueue("tree", &(), JobOptions::new()).unwrap();
    while queue.run_one("default").unwrap().is_some() {}
    let info = queue.job(id).unwrap().unwrap();
    let wait = info.wait_children.unwrap();
    assert_eq!((info.status, wait.total, wait.succeeded + wait.failed), (JobStatus::Waiting, 2, 0), "{info:?}");
    let kids = children(&queue, id);
    assert!(kids.iter().all(|k| k.status == JobStatus::Waiting), "the children sleep");
    assert_eq!(queue.cancel(id).unwrap(), CancelOutcome::Cancelled);
    assert!(children(&queue, id).iter().all(|k| k.status == JobStatus::Cancelled));
    assert_eq!(queue.run_one("default").unwrap(), None);
}

/// Children are checked before anything is stored: a child with a unique key, a bad name or
/// arguments over the limit fails the workflow's step with a typed error and starts nothing.
pub fn bad_children_start_nothing(db: &dyn Backend) {
    let queue = Queue::builder(db.store()).max_payload(64).build();
    queue.register("leaf", |_: &JobContext, (): ()| -> Result<(), Error> { Ok(()) }).unwrap();
    queue
        .register("bad", |ctx: &JobContext, which: u32| -> Result<String, Error> {
            let child = match which {
                0 => Child::new("leaf", &()).options(JobOptions::new().unique("k")),
                1 => Child::new("no such name!", &()),
                _ => Child::new("leaf", &"x".repeat(100)),
            };
            match fan_out::<()>(ctx, vec![Child::new("leaf", &()), child], FanInStrategy::FailFast) {
                Err(Error::InvalidOption { option: "unique", .. }) => Ok("unique".into()),
                Err(Error::InvalidName { .. }) => Ok("name".into()),
                Err(Error::PayloadTooLarge { .. }) => Ok("size".into()),
                other => Ok(format!("{other:?}")),
            }
        })
        .unwrap();
    let ids: Vec<JobId> = (0..3).map(|n| queue.enqueue("bad", &n, JobOptions::new()).unwrap()).collect();
    while queue.run_one("default").unwrap().is_some() {}
    let got: Vec<String> = ids.iter().map(|id| queue.result(*id).unwrap()).collect();
    assert_eq!(got, ["unique", "name", "size"]);
    assert!(ids.iter().all(|id| children(&queue, *id).is_empty()), "no child was started");
}

/// A failed child requeued while its parent still waits is counted again when it ends: the
/// parent may wake before every child has finished, finds the fan-in undecided and waits again.
/// It completes once, with every child's final result, its steps run once.
pub fn a_child_requeued_while_its_parent_waits_is_gathered_once(db: &dyn Backend) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let queue = db.queue();
    let (ledger, broken) = (Ledger::default(), Arc::new(AtomicBool::new(true)));
    let (l, b) = (ledger.clone(), broken.clone());
    queue
        .register("leaf", move |_: &JobContext, n: u32| -> Result<u32, Error> {
            l.record(format!("leaf {n}"));
            if n == 0 && b.load(Ordering::SeqCst) {
                return Err(Error::permanent(std::io::Error::other("leaf 0 is broken")));
            }
            Ok(n)
        })
        .unwrap();
    let l = ledger.clone();
    queue
        .register("parent", move |ctx: &JobContext, (): ()| -> Result<Vec<u32>, Error> {
            ctx.step("before", || {
                l.record("before");
                Ok::<_, std::io::Error>(())
            })?;
            // Leaf 2 runs in its own queue, when the test says.
            let children = vec![
                Child::new("leaf", &0),
                Child::new("leaf", &1),
                Child::new("leaf", &2).options(JobOptions::new().queue("later")),
            ];
            let results = fan_out::<u32>(ctx, children, FanInStrategy::CollectAll)?;
            results.into_iter().map(|r| r.map_err(Error::ChildFailed)).collect()
        })
        .unwrap();
    let id = queue.enqueue("parent", &(), JobOptions::new()).unwrap();
    queue.run_one("default").unwrap();
    let leaf0 = children(&queue, id)[0].id;
    assert_eq!(queue.run_one("default").unwrap(), Some(leaf0));
    assert_eq!(queue.job(leaf0).unwrap().unwrap().status, JobStatus::Failed);
    broken.store(false, Ordering::SeqCst);
    assert_eq!(queue.requeue(leaf0).unwrap(), durable_jobs::RequeueOutcome::Requeued);
    while queue.run_one("default").unwrap().is_some() {}
    let info = queue.job(id).unwrap().unwrap();
    assert_eq!(info.status, JobStatus::Waiting, "leaf 2 has not run: {info:?}");
    while queue.run_one("later").unwrap().is_some() || queue.run_one("default").unwrap().is_some() {}
    assert_eq!(queue.result::<Vec<u32>>(id).unwrap(), [0, 1, 2]);
    let info = queue.job(id).unwrap().unwrap();
    assert_eq!((info.status, info.attempt), (JobStatus::Completed, 1));
    assert_eq!(ledger.count("before"), 1);
    assert_eq!((ledger.count("leaf 0"), ledger.count("leaf 1"), ledger.count("leaf 2")), (2, 1, 1));
}

crate::backend_tests!(
    a_child_requeued_while_its_parent_waits_is_gathered_once,
    a_fan_out_collects_all_results_in_order,
    a_fail_fast_fan_out_stops_at_the_first_failure,
    a_threshold_fan_out_wakes_at_its_fraction,
    spawn_returns_a_childs_result_and_nests,
    cancelling_a_parent_cancels_its_descendants,
    bad_children_start_nothing,
);
