//! Time: scheduled jobs, their promotion when due, retries that back off, and the next due time
//! a claim reports so that a worker can sleep exactly until then.

use super::{at, claim_ids, claim_req, claim_runs, commit, insert, job, Harness, T0, WORKER};
use crate::{JobStatus, Write, WriteOutcome};

/// A job due after its creation is `Scheduled`, not claimable before its time, and becomes
/// `Pending` (then claimed) by the first claim at or after it, keeping its `run_at`.
pub fn future_jobs_are_scheduled_and_promoted_when_due(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a").run_at(at(60)), job("a"), job("a").run_at(at(60)).priority(9)]);
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.status, rec.run_at), (JobStatus::Scheduled, at(60)));
    assert_eq!(claim_ids(&*store, WORKER, 10, at(59)), vec![ids[1]], "the scheduled ones are not due");
    assert_eq!(store.get(ids[2]).unwrap().unwrap().status, JobStatus::Scheduled);
    assert_eq!(claim_ids(&*store, WORKER, 1, at(60)), vec![ids[2]], "due: promoted, then by priority");
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.status, rec.run_at, rec.updated_at), (JobStatus::Pending, at(60), at(60)), "promoted, unclaimed");
    assert_eq!(claim_ids(&*store, WORKER, 1, at(61)), vec![ids[0]]);
}

/// A retry whose time is in the future schedules the job; one whose time has come makes it
/// pending at once. Neither gives the attempt back.
pub fn retry_schedules_the_next_attempt(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a")]);
    let runs = claim_runs(&*store, WORKER, 2, T0);
    let writes = [Write::retry(runs[0], "boom", at(8)), Write::retry(runs[1], "now", at(1))];
    assert_eq!(commit(&*store, WORKER, at(1), &writes), vec![WriteOutcome::Applied; 2]);
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.status, rec.run_at, rec.attempt), (JobStatus::Scheduled, at(8), 1));
    assert_eq!((rec.last_error.as_deref(), rec.locked_by, rec.finished_at), (Some("boom"), None, None));
    assert_eq!(store.get(ids[1]).unwrap().unwrap().status, JobStatus::Pending);
    assert_eq!(claim_ids(&*store, WORKER, 5, at(7)), vec![ids[1]]);
    assert_eq!(claim_ids(&*store, WORKER, 5, at(8)), vec![ids[0]]);
    assert_eq!(store.get(ids[0]).unwrap().unwrap().attempt, 2);
}

/// A claim that takes fewer jobs than its limit says when the next job of its queues becomes
/// due: the earliest scheduled `run_at` or waiting `wake_at`; other queues do not count.
pub fn claim_reports_the_next_due_time(h: &dyn Harness) {
    let store = h.open();
    let mut elsewhere = job("a").run_at(at(5));
    elsewhere.queue = "mail".into();
    let ids = insert(&*store, &[job("a").run_at(at(40)), elsewhere, job("zzz").run_at(at(30)), job("a")]);
    let full = store.claim(&claim_req(WORKER, 1, T0)).unwrap();
    assert_eq!(full.jobs.len(), 1);
    let partial = store.claim(&claim_req(WORKER, 5, T0)).unwrap();
    assert!(partial.jobs.is_empty());
    assert_eq!(partial.next_due, Some(at(30)), "any name of the queue, not other queues");
    let run = full.jobs[0].claim();
    assert_eq!(run.job, ids[3]);
    assert_eq!(commit(&*store, WORKER, at(1), &[Write::suspend(run, Some(at(20)))]), vec![WriteOutcome::Applied]);
    assert_eq!(store.claim(&claim_req(WORKER, 5, at(1))).unwrap().next_due, Some(at(20)), "a waiting job's wake time");
    assert_eq!(claim_ids(&*store, WORKER, 5, at(20)), vec![ids[3]]);
    assert_eq!(store.claim(&claim_req(WORKER, 5, at(40))).unwrap().next_due, None, "nothing left to wait for");
    assert_eq!(claim_ids(&*store, WORKER, 5, at(40)), Vec::new(), "ids[0] was claimed by the claim before");
}
