//! Cases for limits: at most so many running, at most so many claims per one-second window,
//! per scope or per key, across handles on the same storage.

use super::{at, claim_ids, claim_req, claim_runs, commit, insert, job, Harness, T0, WORKER};
use crate::{Limit, LimitScope, NewJob, Store, Timestamp, Write};

fn in_queue(queue: &str, key: Option<&str>) -> NewJob {
    let job = NewJob { queue: queue.into(), ..job("a") };
    match key {
        Some(k) => job.concurrency_key(k),
        None => job,
    }
}

fn claimed(store: &dyn Store, queue: &str, limit: usize, now: Timestamp) -> (Vec<crate::JobId>, Option<Timestamp>) {
    let out = store.claim(&claim_req(WORKER, limit, now).queues([queue])).unwrap();
    (out.jobs.iter().map(|j| j.id).collect(), out.next_due)
}

/// A cap on running jobs holds the rest back without charging them, and lets the next one go
/// when a run ends; keyed, each key has its own cap (jobs without a key share one).
pub fn a_running_cap_holds_jobs_back(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &(0..4).map(|_| job("a")).collect::<Vec<_>>());
    store.set_limit(&Limit::new(LimitScope::Queue("default".into())).max_running(2)).unwrap();
    let runs = claim_runs(&*store, WORKER, 4, T0);
    assert_eq!(runs.iter().map(|r| r.job).collect::<Vec<_>>(), ids[..2]);
    // Another handle (another process) where the store allows one while this one is open.
    let second = store.capabilities().multi_process.then(|| h.open());
    let other = second.as_deref().unwrap_or(&*store);
    assert_eq!(other.claim(&claim_req("worker-b", 4, at(1))).unwrap().jobs.len(), 0, "across handles");
    let rec = store.get(ids[2]).unwrap().unwrap();
    assert_eq!((rec.status, rec.attempt), (crate::JobStatus::Pending, 0), "held back, not charged");
    commit(&*store, WORKER, at(2), &[Write::complete(runs[0], b"1".to_vec())]);
    assert_eq!(claim_ids(&*store, WORKER, 4, at(3)), vec![ids[2]]);
    // Keyed: one running per tenant.
    let keyed = [Some("t1"), Some("t1"), Some("t2"), None, None];
    let tenants = insert(&*store, &keyed.iter().map(|k| in_queue("tenants", *k)).collect::<Vec<_>>());
    store.set_limit(&Limit::new(LimitScope::Queue("tenants".into())).max_running(1).by_key(true)).unwrap();
    let (got, due) = claimed(&*store, "tenants", 5, at(4));
    assert_eq!(got, vec![tenants[0], tenants[2], tenants[3]]);
    assert_eq!(due, None, "a cap gives no time to wait for");
    assert_eq!(store.get(tenants[0]).unwrap().unwrap().concurrency_key.as_deref(), Some("t1"));
    assert!(store.remove_limit(&LimitScope::Queue("tenants".into())).unwrap());
    assert!(!store.remove_limit(&LimitScope::Queue("tenants".into())).unwrap());
    assert_eq!(claimed(&*store, "tenants", 5, at(5)).0, vec![tenants[1], tenants[4]]);
}

/// A rate counts claims per one-second window: the rest wait for the next window, which the
/// claim reports as its next due time; limits and counts are durable.
pub fn a_rate_limit_counts_claims_per_window(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &(0..5).map(|_| in_queue("mail", None)).collect::<Vec<_>>());
    let by_name = Limit::new(LimitScope::Name("b".into())).per_second(7).by_key(true);
    let mail = Limit::new(LimitScope::Queue("mail".into())).per_second(2);
    store.set_limit(&by_name).unwrap();
    store.set_limit(&mail).unwrap();
    let window = crate::window_of(at(10));
    let (got, due) = claimed(&*store, "mail", 5, at(10));
    assert_eq!((got, due), (ids[..2].to_vec(), Some(crate::window_end(window))));
    drop(store);
    let store = h.open();
    assert_eq!(store.limits().unwrap(), vec![mail.clone(), by_name], "queues first");
    let end = crate::window_end(window);
    let (got, due) = claimed(&*store, "mail", 5, Timestamp(end.0 - 1));
    assert_eq!((got, due), (vec![], Some(end)), "the window's count is kept");
    assert_eq!(claimed(&*store, "mail", 5, end).0, ids[2..4].to_vec());
    store.set_limit(&mail.clone().per_second(10)).unwrap();
    assert_eq!(claimed(&*store, "mail", 5, end).0, vec![ids[4]], "replaced, the count goes on");
}
