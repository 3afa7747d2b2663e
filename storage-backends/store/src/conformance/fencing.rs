//! Leases: fencing, renewal, release, reclaim and suspension.

use super::{at, claim_ids, insert, job, Harness, T0, WORKER};
use crate::{Checkpoint, JobStatus, Write, WriteOutcome};

fn checkpoint(job: crate::JobId, index: u32) -> Write {
    Write::Checkpoint { job, checkpoint: Checkpoint { index, name: "step".into(), outcome: Ok(b"1".to_vec()) } }
}

/// Another worker's writes and renewals about a job are refused and change nothing.
pub fn writes_are_fenced_by_worker(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a")]);
    claim_ids(&*store, WORKER, 1, T0);
    let intruder = "worker-z";
    let writes = [
        checkpoint(ids[0], 0),
        Write::Complete { job: ids[0], result: b"1".to_vec() },
        Write::Retry { job: ids[0], error: "x".into(), run_at: T0 },
        Write::Fail { job: ids[0], error: "x".into() },
        Write::Suspend { job: ids[0], wake_at: None },
        Write::Complete { job: ids[1], result: b"1".to_vec() },
    ];
    assert_eq!(store.commit(intruder, at(1), &writes).unwrap(), vec![WriteOutcome::LeaseLost; 6]);
    assert_eq!(store.renew(intruder, &[ids[0], ids[1]], at(99)).unwrap(), vec![ids[0], ids[1]]);
    assert_eq!(store.release(intruder, &[ids[0]], at(1)).unwrap(), 0);
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.status, rec.locked_by.as_deref()), (JobStatus::Running, Some(WORKER)));
    assert_eq!(rec.lease_until, Some(at(30)));
    assert!(store.checkpoints(ids[0]).unwrap().is_empty());
    assert_eq!(store.get(ids[1]).unwrap().unwrap().status, JobStatus::Pending, "a pending job is not writable");
}

/// Once a write ends a run, later writes about that job, even in the same batch, are refused.
pub fn writes_after_job_ended_are_refused(h: &dyn Harness) {
    let store = h.open();
    let id = insert(&*store, &[job("a")])[0];
    claim_ids(&*store, WORKER, 1, T0);
    let writes = [
        Write::Complete { job: id, result: b"1".to_vec() },
        Write::Fail { job: id, error: "late".into() },
        checkpoint(id, 3),
    ];
    let out = store.commit(WORKER, at(1), &writes).unwrap();
    assert_eq!(out, vec![WriteOutcome::Applied, WriteOutcome::LeaseLost, WriteOutcome::LeaseLost]);
    // A repeated completion (a retried commit) is refused, not applied twice.
    let again = store.commit(WORKER, at(2), &[Write::Complete { job: id, result: b"2".to_vec() }]);
    assert_eq!(again.unwrap(), vec![WriteOutcome::LeaseLost]);
    let rec = store.get(id).unwrap().unwrap();
    assert_eq!((rec.status, rec.result.as_deref()), (JobStatus::Completed, Some(&b"1"[..])));
    assert_eq!(rec.last_error, None);
    assert!(store.checkpoints(id).unwrap().is_empty());
}

/// One refused write in a batch does not stop the others.
pub fn mixed_batch_applies_independently(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a"), job("a")]);
    claim_ids(&*store, WORKER, 2, T0);
    claim_ids(&*store, "worker-b", 1, T0);
    let writes = [
        Write::Complete { job: ids[0], result: b"1".to_vec() },
        Write::Complete { job: ids[2], result: b"1".to_vec() },
        checkpoint(ids[1], 0),
    ];
    let out = store.commit(WORKER, at(1), &writes).unwrap();
    assert_eq!(out, vec![WriteOutcome::Applied, WriteOutcome::LeaseLost, WriteOutcome::Applied]);
    assert_eq!(store.get(ids[0]).unwrap().unwrap().status, JobStatus::Completed);
    assert_eq!(store.get(ids[2]).unwrap().unwrap().status, JobStatus::Running);
    assert_eq!(store.checkpoints(ids[1]).unwrap().len(), 1);
}

/// Renewal moves the lease of held jobs and names the ones no longer held.
pub fn renew_extends_and_reports_lost(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a"), job("a")]);
    claim_ids(&*store, WORKER, 2, T0);
    let done = store.commit(WORKER, T0, &[Write::Complete { job: ids[1], result: b"1".to_vec() }]);
    assert_eq!(done.unwrap(), vec![WriteOutcome::Applied]);
    let lost = store.renew(WORKER, &ids, at(90)).unwrap();
    assert_eq!(lost, vec![ids[1], ids[2]]);
    assert_eq!(store.get(ids[0]).unwrap().unwrap().lease_until, Some(at(90)));
    assert_eq!(store.renew(WORKER, &[], at(90)).unwrap(), vec![]);
}

/// Releasing gives the attempt back and makes the job claimable at once.
pub fn release_returns_attempt(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a")]);
    claim_ids(&*store, WORKER, 2, T0);
    assert_eq!(store.release(WORKER, &[ids[0]], at(1)).unwrap(), 1);
    assert_eq!(store.release(WORKER, &[ids[0]], at(1)).unwrap(), 0, "second release is a no-op");
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.status, rec.attempt, rec.locked_by, rec.lease_until), (JobStatus::Pending, 0, None, None));
    assert_eq!(rec.finished_at, None);
    assert_eq!(claim_ids(&*store, "worker-b", 5, at(1)), vec![ids[0]]);
    assert_eq!(store.get(ids[0]).unwrap().unwrap().attempt, 1);
    assert_eq!(store.get(ids[1]).unwrap().unwrap().status, JobStatus::Running);
}

/// Expired leases are reclaimed: requeued if attempts remain, failed if not; live leases stay.
pub fn reclaim_requeues_expired_and_fails_exhausted(h: &dyn Harness) {
    let store = h.open();
    let mut last_chance = job("a");
    last_chance.max_attempts = 1;
    let ids = insert(&*store, &[job("a"), last_chance, job("a")]);
    claim_ids(&*store, WORKER, 2, T0); // leases until T0 + 30 s
    claim_ids(&*store, WORKER, 1, at(20)); // lease until T0 + 50 s
    assert!(store.reclaim_expired(at(30)).unwrap().is_empty(), "a lease is valid up to its end");
    let r = store.reclaim_expired(at(31)).unwrap();
    assert_eq!((r.requeued, r.failed), (vec![ids[0]], vec![ids[1]]));
    let requeued = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((requeued.status, requeued.attempt, requeued.run_at), (JobStatus::Pending, 1, at(31)));
    assert_eq!(requeued.locked_by, None);
    assert!(requeued.last_error.as_deref().is_some_and(|e| e.contains("lease")), "{:?}", requeued.last_error);
    let failed = store.get(ids[1]).unwrap().unwrap();
    assert_eq!((failed.status, failed.finished_at), (JobStatus::Failed, Some(at(31))));
    assert_eq!(store.get(ids[2]).unwrap().unwrap().status, JobStatus::Running);
    let late = store.commit(WORKER, at(32), &[Write::Complete { job: ids[0], result: b"1".to_vec() }]);
    assert_eq!(late.unwrap(), vec![WriteOutcome::LeaseLost], "the old holder is fenced out");
    assert!(store.reclaim_expired(at(31)).unwrap().is_empty());
    assert_eq!(claim_ids(&*store, "worker-b", 5, at(31)), vec![ids[0]]);
    assert_eq!(store.get(ids[0]).unwrap().unwrap().attempt, 2, "the lost attempt was consumed");
}

/// A suspended job waits, is not claimable, and is woken when due.
pub fn suspend_and_wake_due(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a")]);
    claim_ids(&*store, WORKER, 2, T0);
    let writes = [
        checkpoint(ids[0], 0),
        Write::Suspend { job: ids[0], wake_at: Some(at(10)) },
        Write::Suspend { job: ids[1], wake_at: None },
    ];
    assert_eq!(store.commit(WORKER, at(1), &writes).unwrap(), vec![WriteOutcome::Applied; 3]);
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.status, rec.wake_at, rec.locked_by), (JobStatus::Waiting, Some(at(10)), None));
    assert_eq!(rec.finished_at, None);
    assert!(claim_ids(&*store, WORKER, 5, at(20)).is_empty(), "waiting jobs are not claimable");
    assert_eq!(store.wake_due(at(9)).unwrap(), 0);
    assert_eq!(store.wake_due(at(10)).unwrap(), 1);
    assert_eq!(store.wake_due(at(10)).unwrap(), 0);
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.status, rec.run_at, rec.wake_at), (JobStatus::Pending, at(10), None));
    assert_eq!(store.checkpoints(ids[0]).unwrap().len(), 1, "checkpoints survive suspension");
    assert_eq!(claim_ids(&*store, WORKER, 5, at(20)), vec![ids[0]]);
    assert_eq!(store.get(ids[1]).unwrap().unwrap().status, JobStatus::Waiting, "no wake time: waits for an event");
}

/// Cancelling stops jobs waiting to run, not running or finished ones, and frees unique keys.
pub fn cancel_stops_jobs_that_wait(h: &dyn Harness) {
    let store = h.open();
    let mut keyed = job("a");
    keyed.unique_key = Some("k".into());
    let ids = insert(&*store, &[keyed.clone(), job("a"), job("a")]);
    claim_ids(&*store, WORKER, 1, T0); // ids[0] is running
    assert!(!store.cancel(ids[0], at(1)).unwrap(), "a running job is left to its worker");
    assert!(store.cancel(ids[1], at(1)).unwrap());
    assert!(!store.cancel(ids[1], at(2)).unwrap(), "second cancel is a no-op");
    let cancelled = store.get(ids[1]).unwrap().unwrap();
    assert_eq!((cancelled.status, cancelled.finished_at), (JobStatus::Cancelled, Some(at(1))));
    assert_eq!(claim_ids(&*store, WORKER, 5, at(3)), vec![ids[2]], "a cancelled job is not claimed");
    let done = store.commit(WORKER, at(4), &[Write::Complete { job: ids[0], result: b"1".to_vec() }]);
    assert_eq!(done.unwrap(), vec![WriteOutcome::Applied]);
    assert!(!store.cancel(ids[0], at(5)).unwrap(), "a completed job is not cancelled");
    assert!(!store.cancel(crate::JobId(ids[2].0 + 100), at(5)).unwrap(), "unknown job");
    // A cancelled pending holder frees its key.
    let second = insert(&*store, &[keyed.clone()])[0];
    assert!(store.cancel(second, at(6)).unwrap());
    assert!(matches!(store.enqueue(&[keyed]).unwrap()[0], crate::Enqueued::New(_)));
}

/// Requeueing gives a failed or cancelled job its attempts back, keeping its checkpoints.
pub fn requeue_revives_failed_and_cancelled_jobs(h: &dyn Harness) {
    let store = h.open();
    let mut keyed = job("a");
    keyed.unique_key = Some("k".into());
    keyed.max_attempts = 1;
    let ids = insert(&*store, &[keyed.clone(), job("a")]);
    claim_ids(&*store, WORKER, 2, T0);
    let writes = [
        checkpoint(ids[0], 0),
        Write::Fail { job: ids[0], error: "boom".into() },
        Write::Complete { job: ids[1], result: b"1".to_vec() },
    ];
    assert_eq!(store.commit(WORKER, at(1), &writes).unwrap(), vec![WriteOutcome::Applied; 3]);
    assert!(!store.requeue(ids[1], at(2)).unwrap(), "a completed job is not requeued");
    // Another live job took the key meanwhile: the failed one cannot come back yet.
    let holder = insert(&*store, &[keyed])[0];
    assert!(!store.requeue(ids[0], at(2)).unwrap());
    assert!(store.cancel(holder, at(2)).unwrap());
    assert!(store.requeue(ids[0], at(3)).unwrap());
    assert!(!store.requeue(ids[0], at(3)).unwrap(), "it is pending now");
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.status, rec.attempt, rec.run_at, rec.finished_at), (JobStatus::Pending, 0, at(3), None));
    assert_eq!(rec.last_error.as_deref(), Some("boom"));
    assert_eq!(store.checkpoints(ids[0]).unwrap().len(), 1, "checkpoints are kept");
    let claimed = store.claim(&super::claim_req(WORKER, 5, at(3))).unwrap();
    assert_eq!(claimed.iter().map(|c| (c.id, c.attempt, c.resumed)).collect::<Vec<_>>(), vec![(ids[0], 1, true)]);
    assert!(store.requeue(holder, at(4)).is_ok_and(|r| !r), "the key is held again by the requeued job");
}
