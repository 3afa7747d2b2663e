//! Issue 11: limits. At most N claims per one-second window and K running at once, per queue
//! or handler name, optionally per concurrency key; held jobs are not charged and start as soon
//! as the limit allows, with no poll delay in this process.

use std::time::{Duration, UNIX_EPOCH};

use durable_jobs::{Error, JobContext, JobFilter, JobOptions, JobStatus, Limit, LimitScope, ManualClock, Queue};

use crate::support::{wait_until, Backend, Ledger, PATIENCE};

/// A per-second limit spreads claims over windows: exactly N in each, the rest wait for the
/// next window (woken at its start, not by polling), each job run once and charged once.
pub fn a_rate_limit_spreads_claims_over_windows(db: &dyn Backend) {
    let clock = ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let queue = Queue::builder(db.store()).clock(clock.clone()).build();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("call-api", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
            l.record(format!("ran {}", ctx.id()));
            Ok(())
        })
        .unwrap();
    queue.set_limit(Limit::queue("api").per_second(5)).unwrap();
    let ids = queue.enqueue_batch("call-api", &[(); 20], JobOptions::new().queue("api")).unwrap();
    let worker =
        queue.worker().queues(["api"]).concurrency(8).poll_interval(Duration::from_secs(3600)).start().unwrap();
    let done = || queue.list(&JobFilter::new().status(JobStatus::Completed).limit(100)).unwrap().len();
    for window in 1..=4 {
        wait_until("a window's claims", || done() == window * 5);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(done(), window * 5, "no more than 5 in a window");
        clock.advance(Duration::from_secs(1));
    }
    worker.shutdown();
    let mut per_window = std::collections::BTreeMap::new();
    for id in &ids {
        let info = queue.job(*id).unwrap().unwrap();
        assert_eq!((info.status, info.attempt), (JobStatus::Completed, 1));
        let second = info.started_at.unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs();
        *per_window.entry(second).or_insert(0) += 1;
        assert_eq!(ledger.count(&format!("ran {id}")), 1);
    }
    assert_eq!(per_window.values().copied().collect::<Vec<_>>(), [5, 5, 5, 5]);
}

/// A cap per concurrency key runs one job per tenant at a time, tenants side by side; the next
/// job of a tenant starts when its previous one ends, with the poll interval an hour long.
pub fn a_running_cap_per_key_serializes_each_tenant(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("sync", move |_: &JobContext, tenant: String| -> Result<(), Error> {
            l.record(format!("start {tenant}"));
            std::thread::sleep(Duration::from_millis(10));
            l.record(format!("end {tenant}"));
            Ok(())
        })
        .unwrap();
    queue.set_limit(Limit::name("sync").max_running(1).by_key(true)).unwrap();
    assert_eq!(queue.limits().unwrap(), [Limit::name("sync").max_running(1).by_key(true)]);
    let mut ids = Vec::new();
    for tenant in ["a", "b", "a", "b", "a", "b"] {
        ids.push(queue.enqueue("sync", tenant, JobOptions::new().concurrency_key(tenant)).unwrap());
    }
    let worker = queue.worker().concurrency(4).poll_interval(Duration::from_secs(3600)).start().unwrap();
    for id in &ids {
        let info = queue.wait(*id, PATIENCE).unwrap();
        assert_eq!((info.status, info.attempt), (JobStatus::Completed, 1));
    }
    worker.shutdown();
    for tenant in ["a", "b"] {
        let mine: Vec<String> = ledger.entries().into_iter().filter(|e| e.ends_with(tenant)).collect();
        let expected: Vec<String> = (0..3).flat_map(|_| [format!("start {tenant}"), format!("end {tenant}")]).collect();
        assert_eq!(mine, expected, "one {tenant} job at a time");
    }
    assert!(queue.remove_limit(&LimitScope::Name("sync".into())).unwrap());
    assert!(queue.limits().unwrap().is_empty());
    let bad = queue.set_limit(Limit::queue("api"));
    assert!(matches!(bad, Err(Error::InvalidOption { option: "limit", .. })), "{bad:?}");
    let bad = queue.set_limit(Limit::queue("no spaces").max_running(1));
    assert!(matches!(bad, Err(Error::InvalidName { .. })), "{bad:?}");
}

/// The end of a capped run wakes the dispatcher even while most slots stay busy (no
/// half-capacity ring): three long uncapped jobs hold three of four slots while capped jobs
/// run one at a time; with an hour-long poll interval, each capped job starts when the
/// previous one ends.
pub fn a_capped_run_ending_lets_the_next_go_while_slots_stay_busy(db: &dyn Backend) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let queue = db.queue();
    let (ledger, release) = (Ledger::default(), Arc::new(AtomicBool::new(false)));
    let r = release.clone();
    queue
        .register("long", move |_: &JobContext, (): ()| -> Result<(), Error> {
            while !r.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        })
        .unwrap();
    let l = ledger.clone();
    queue
        .register("capped", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
            l.record(format!("ran {}", ctx.id()));
            Ok(())
        })
        .unwrap();
    queue.set_limit(Limit::name("capped").max_running(1)).unwrap();
    let long = queue.enqueue_batch("long", &[(); 3], JobOptions::new()).unwrap();
    let capped = queue.enqueue_batch("capped", &[(); 3], JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(4).prefetch(0).poll_interval(Duration::from_secs(3600)).start().unwrap();
    for id in &capped {
        assert_eq!(queue.wait(*id, PATIENCE).unwrap().status, JobStatus::Completed);
    }
    assert!(long.iter().all(|id| queue.job(*id).unwrap().unwrap().status == JobStatus::Running), "slots stayed busy");
    release.store(true, Ordering::SeqCst);
    for id in &long {
        queue.wait(*id, PATIENCE).unwrap();
    }
    worker.shutdown();
    assert_eq!(ledger.entries().len(), 3);
}

crate::backend_tests!(
    a_rate_limit_spreads_claims_over_windows,
    a_running_cap_per_key_serializes_each_tenant,
    a_capped_run_ending_lets_the_next_go_while_slots_stay_busy,
);
