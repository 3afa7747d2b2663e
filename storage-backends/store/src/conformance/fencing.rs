//! Leases: fencing by worker and claim token, renewal, release, reclaim, suspension, and the
//! operator's cancel and requeue.

use super::{at, claim_ids, claim_req, claim_runs, commit, insert, job, Harness, T0, WORKER};
use crate::transition::reclaim_message;
use crate::{
    CancelOutcome, Checkpoint, Claim, ClaimToken, FanIn, JobFilter, JobStatus, ReclaimRequest, RequeueOutcome,
    SignalId, Write, WriteOutcome,
};

fn checkpoint(run: Claim, index: u32) -> Write {
    Write::checkpoint(run, Checkpoint::value(index, "step", b"1".to_vec()))
}

/// Every kind of write about one run.
fn every_write(run: Claim) -> Vec<Write> {
    vec![
        Write::start(run),
        checkpoint(run, 0),
        Write::complete(run, b"1".to_vec()),
        Write::retry(run, "x", T0),
        Write::fail(run, "x"),
        Write::suspend(run, None),
        Write::wait_signal(run, "s", Some(at(60))),
        Write::wait_children(run, FanIn { index: 1, need: 1, tolerate: 0 }, vec![job("b")]),
        Write::receive(run, SignalId(1), Checkpoint::value(2, "@signal:s", b"1".to_vec())),
    ]
}

/// Another worker's writes and renewals about a job are refused and change nothing.
pub fn writes_are_fenced_by_worker(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a")]);
    let run = claim_runs(&*store, WORKER, 1, T0)[0];
    let intruder = "worker-z";
    let mut writes = every_write(run);
    writes.push(Write::complete(Claim::new(ids[1], ClaimToken(0)), b"1".to_vec()));
    assert_eq!(commit(&*store, intruder, at(1), &writes), vec![WriteOutcome::LeaseLost; 10]);
    let pending = Claim::new(ids[1], ClaimToken(0));
    assert_eq!(store.renew(intruder, &[run, pending], at(99)).unwrap().lost, vec![run, pending]);
    assert_eq!(store.release(intruder, &[run], at(1)).unwrap(), 0);
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.status, rec.locked_by.as_deref(), rec.run_started), (JobStatus::Running, Some(WORKER), false));
    assert_eq!(rec.lease_until, Some(at(30)));
    assert!(store.checkpoints(ids[0], 0, 10).unwrap().is_empty());
    assert_eq!(store.list(&JobFilter::new()).unwrap().len(), 2, "a refused suspension starts no child");
    assert_eq!(store.get(ids[1]).unwrap().unwrap().status, JobStatus::Pending, "a pending job is not writable");
}

/// The same worker holding a job again after losing it: the old run's writes, renewals and
/// releases name an old token and are refused; the new run's apply.
pub fn writes_are_fenced_by_claim_token(h: &dyn Harness) {
    let store = h.open();
    let id = insert(&*store, &[job("a")])[0];
    let old = claim_runs(&*store, WORKER, 1, T0)[0];
    assert_eq!(store.reclaim(&ReclaimRequest::new(at(31), 10)).unwrap().released, vec![id]);
    let new = claim_runs(&*store, WORKER, 1, at(31))[0];
    assert_eq!((old.token, new.token), (ClaimToken(1), ClaimToken(2)));
    assert_eq!(commit(&*store, WORKER, at(32), &every_write(old)), vec![WriteOutcome::LeaseLost; 9]);
    assert_eq!(store.renew(WORKER, &[old, new], at(90)).unwrap().lost, vec![old]);
    assert_eq!(store.release(WORKER, &[old], at(32)).unwrap(), 0);
    let rec = store.get(id).unwrap().unwrap();
    assert_eq!((rec.status, rec.token, rec.lease_until), (JobStatus::Running, ClaimToken(2), Some(at(90))));
    assert!(store.checkpoints(id, 0, 10).unwrap().is_empty(), "the old run's checkpoint was refused");
    assert_eq!(commit(&*store, WORKER, at(33), &[checkpoint(new, 0)]), vec![WriteOutcome::Applied]);
    assert_eq!(commit(&*store, WORKER, at(33), &[Write::complete(new, b"2".to_vec())]), vec![WriteOutcome::Applied]);
}

/// Once a write ends a run, later writes about that run, even in the same batch, are refused.
pub fn writes_after_run_ended_are_refused(h: &dyn Harness) {
    let store = h.open();
    let id = insert(&*store, &[job("a")])[0];
    let run = claim_runs(&*store, WORKER, 1, T0)[0];
    let writes = [Write::complete(run, b"1".to_vec()), Write::fail(run, "late"), checkpoint(run, 3), Write::start(run)];
    let out = commit(&*store, WORKER, at(1), &writes);
    assert_eq!(
        out,
        vec![WriteOutcome::Applied, WriteOutcome::LeaseLost, WriteOutcome::LeaseLost, WriteOutcome::LeaseLost]
    );
    // A repeated completion (a retried commit) is refused, not applied twice.
    assert_eq!(commit(&*store, WORKER, at(2), &[Write::complete(run, b"2".to_vec())]), vec![WriteOutcome::LeaseLost]);
    let rec = store.get(id).unwrap().unwrap();
    assert_eq!((rec.status, rec.result.as_deref()), (JobStatus::Completed, Some(&b"1"[..])));
    assert_eq!((rec.last_error, rec.run_started), (None, false));
    assert!(store.checkpoints(id, 0, 10).unwrap().is_empty());
}

/// One refused write in a batch does not stop the others.
pub fn mixed_batch_applies_independently(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a"), job("a")]);
    let mine = claim_runs(&*store, WORKER, 2, T0);
    let theirs = claim_runs(&*store, "worker-b", 1, T0);
    let writes =
        [Write::complete(mine[0], b"1".to_vec()), Write::complete(theirs[0], b"1".to_vec()), checkpoint(mine[1], 0)];
    let out = commit(&*store, WORKER, at(1), &writes);
    assert_eq!(out, vec![WriteOutcome::Applied, WriteOutcome::LeaseLost, WriteOutcome::Applied]);
    assert_eq!(store.get(ids[0]).unwrap().unwrap().status, JobStatus::Completed);
    assert_eq!(store.get(ids[2]).unwrap().unwrap().status, JobStatus::Running);
    assert_eq!(store.checkpoints(ids[1], 0, 10).unwrap().len(), 1);
}

/// Renewal moves the lease of held runs and names the ones no longer held.
pub fn renew_extends_and_reports_lost(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a"), job("a")]);
    let runs = claim_runs(&*store, WORKER, 2, T0);
    assert_eq!(commit(&*store, WORKER, T0, &[Write::complete(runs[1], b"1".to_vec())]), vec![WriteOutcome::Applied]);
    let never = Claim::new(ids[2], ClaimToken(1));
    let renewal = store.renew(WORKER, &[runs[0], runs[1], never], at(90)).unwrap();
    assert_eq!(renewal, crate::Renewal::new(vec![runs[1], never], vec![]));
    assert_eq!(store.get(ids[0]).unwrap().unwrap().lease_until, Some(at(90)));
    assert_eq!(store.renew(WORKER, &[], at(90)).unwrap(), crate::Renewal::default());
}

/// Releasing gives the attempt back and makes the job claimable at once.
pub fn release_returns_attempt(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a")]);
    let runs = claim_runs(&*store, WORKER, 2, T0);
    assert_eq!(store.release(WORKER, &runs[..1], at(1)).unwrap(), 1);
    assert_eq!(store.release(WORKER, &runs[..1], at(1)).unwrap(), 0, "second release is a no-op");
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.status, rec.attempt, rec.locked_by, rec.lease_until), (JobStatus::Pending, 0, None, None));
    assert_eq!((rec.finished_at, rec.run_at, rec.updated_at), (None, T0, at(1)));
    assert_eq!(claim_ids(&*store, "worker-b", 5, at(1)), vec![ids[0]]);
    assert_eq!(store.get(ids[0]).unwrap().unwrap().attempt, 1);
    assert_eq!(store.get(ids[1]).unwrap().unwrap().status, JobStatus::Running);
}

/// Expired leases are reclaimed: a run whose start was recorded is charged (requeued, or failed
/// on its last attempt); one whose start was not is given its attempt back and must confirm its
/// start next time; live leases stay.
pub fn reclaim_charges_only_started_runs(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a").max_attempts(1), job("a"), job("a")]);
    let runs = claim_runs(&*store, WORKER, 3, T0); // leases until T0 + 30 s
    claim_ids(&*store, WORKER, 1, at(20)); // ids[3], lease until T0 + 50 s
    let starts = [Write::start(runs[0]), Write::start(runs[1])];
    assert_eq!(commit(&*store, WORKER, at(1), &starts), vec![WriteOutcome::Applied; 2]);
    assert!(store.reclaim(&ReclaimRequest::new(at(30), 10)).unwrap().is_empty(), "a lease is valid up to its end");
    let r = store.reclaim(&ReclaimRequest::new(at(31), 10)).unwrap();
    assert_eq!((r.requeued, r.failed, r.released), (vec![ids[0]], vec![ids[1]], vec![ids[2]]));
    let requeued = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((requeued.status, requeued.attempt, requeued.run_at), (JobStatus::Pending, 1, at(31)));
    assert_eq!((requeued.locked_by, requeued.confirm_start), (None, false));
    assert_eq!(requeued.last_error, Some(reclaim_message(1, true, false)));
    let failed = store.get(ids[1]).unwrap().unwrap();
    assert_eq!((failed.status, failed.finished_at), (JobStatus::Failed, Some(at(31))));
    let released = store.get(ids[2]).unwrap().unwrap();
    assert_eq!((released.status, released.attempt, released.confirm_start), (JobStatus::Pending, 0, true));
    assert_eq!(released.last_error, Some(reclaim_message(1, false, false)));
    assert_eq!(store.get(ids[3]).unwrap().unwrap().status, JobStatus::Running);
    let late = commit(&*store, WORKER, at(32), &[Write::complete(runs[0], b"1".to_vec())]);
    assert_eq!(late, vec![WriteOutcome::LeaseLost], "the old holder is fenced out");
    assert!(store.reclaim(&ReclaimRequest::new(at(31), 10)).unwrap().is_empty());
    let again = store.claim(&claim_req("worker-b", 5, at(31))).unwrap().jobs;
    let seen: Vec<_> = again.iter().map(|c| (c.id, c.attempt, c.confirm_start)).collect();
    assert_eq!(seen, vec![(ids[0], 2, false), (ids[2], 1, true)], "the charged attempt counts; the other must confirm");
}

/// Jobs of dead workers are reclaimed whatever their lease, at most `limit` per call in lease
/// order, and the message says the worker died.
pub fn reclaim_recovers_dead_workers_and_respects_limit(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &vec![job("a"); 5]);
    let dead = claim_runs(&*store, "dead", 2, T0);
    assert_eq!(commit(&*store, "dead", T0, &[Write::start(dead[0])]), vec![WriteOutcome::Applied]);
    claim_ids(&*store, "alive", 1, T0);
    claim_ids(&*store, "stalled", 2, at(-100)); // leases expired at T0 - 70 s
    let req = ReclaimRequest::new(at(1), 3).dead_workers(vec!["dead".into(), "unknown".into()]);
    let first = store.reclaim(&req).unwrap();
    assert_eq!(first.len(), 3, "at most the limit: {first:?}");
    assert_eq!(first.released, vec![ids[3], ids[4]], "the longest-expired leases first");
    assert_eq!(first.requeued, vec![ids[0]]);
    let second = store.reclaim(&req).unwrap();
    assert_eq!((second.requeued, second.failed, second.released), (vec![], vec![], vec![ids[1]]));
    assert!(store.reclaim(&req).unwrap().is_empty());
    assert_eq!(store.get(ids[0]).unwrap().unwrap().last_error, Some(reclaim_message(1, true, true)));
    assert_eq!(store.get(ids[2]).unwrap().unwrap().status, JobStatus::Running, "a live worker keeps its job");
}

/// A suspended job waits without being charged, is not claimable, and is woken by the claim
/// that comes after its wake time.
pub fn suspend_waits_uncharged_and_wakes_when_due(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a")]);
    let runs = claim_runs(&*store, WORKER, 2, T0);
    let writes = [checkpoint(runs[0], 0), Write::suspend(runs[0], Some(at(10))), Write::suspend(runs[1], None)];
    assert_eq!(commit(&*store, WORKER, at(1), &writes), vec![WriteOutcome::Applied; 3]);
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.status, rec.wake_at, rec.locked_by), (JobStatus::Waiting, Some(at(10)), None));
    assert_eq!((rec.attempt, rec.finished_at, rec.updated_at), (0, None, at(1)));
    assert!(claim_ids(&*store, WORKER, 5, at(9)).is_empty(), "waiting jobs are not claimable");
    let claimed = store.claim(&claim_req(WORKER, 5, at(12))).unwrap().jobs;
    assert_eq!(claimed.iter().map(|c| (c.id, c.attempt, c.resumed)).collect::<Vec<_>>(), vec![(ids[0], 1, true)]);
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.status, rec.run_at, rec.wake_at), (JobStatus::Running, at(10), None));
    assert_eq!(store.get(ids[1]).unwrap().unwrap().status, JobStatus::Waiting, "no wake time: waits for an event");
    let other = claim_req(WORKER, 5, at(30)).queues(["mail"]);
    let stranger = insert(&*store, &[job("a")])[0];
    let run = claim_runs(&*store, WORKER, 1, at(20))[0];
    assert_eq!(commit(&*store, WORKER, at(20), &[Write::suspend(run, Some(at(21)))]), vec![WriteOutcome::Applied]);
    assert!(store.claim(&other).unwrap().jobs.is_empty());
    assert_eq!(store.get(stranger).unwrap().unwrap().status, JobStatus::Waiting, "only requested queues are woken");
}

/// Cancelling stops jobs waiting to run, says why it did not otherwise, and frees unique keys.
pub fn cancel_reports_what_it_did(h: &dyn Harness) {
    let store = h.open();
    let keyed = job("a").unique_key("k");
    let ids = insert(&*store, &[keyed.clone(), job("a"), job("a"), job("a").run_at(at(60))]);
    let run = claim_runs(&*store, WORKER, 1, T0)[0]; // ids[0] is running
    assert_eq!(store.cancel(ids[0], at(1)).unwrap(), CancelOutcome::Requested, "a running job is asked to stop");
    assert_eq!(store.cancel(ids[1], at(1)).unwrap(), CancelOutcome::Cancelled);
    assert_eq!(store.cancel(ids[1], at(2)).unwrap(), CancelOutcome::Finished(JobStatus::Cancelled));
    assert_eq!(store.cancel(ids[3], at(2)).unwrap(), CancelOutcome::Cancelled, "a scheduled job");
    let cancelled = store.get(ids[1]).unwrap().unwrap();
    assert_eq!((cancelled.status, cancelled.finished_at), (JobStatus::Cancelled, Some(at(1))));
    assert_eq!(claim_ids(&*store, WORKER, 5, at(61)), vec![ids[2]], "cancelled jobs are not claimed");
    assert_eq!(commit(&*store, WORKER, at(4), &[Write::complete(run, b"1".to_vec())]), vec![WriteOutcome::Applied]);
    assert_eq!(store.cancel(ids[0], at(5)).unwrap(), CancelOutcome::Finished(JobStatus::Completed));
    assert_eq!(store.cancel(crate::JobId(ids[3].0 + 100), at(5)).unwrap(), CancelOutcome::NotFound);
    // A cancelled pending holder frees its key.
    let second = insert(&*store, std::slice::from_ref(&keyed))[0];
    assert_eq!(store.cancel(second, at(6)).unwrap(), CancelOutcome::Cancelled);
    assert!(matches!(store.enqueue(&[keyed]).unwrap()[0], crate::Enqueued::New(_)));
    // Many at once: each as `cancel` does.
    let more = insert(&*store, &[job("a"), job("b")]);
    let running = claim_runs(&*store, WORKER, 1, at(7))[0].job;
    let unknown = crate::JobId(more[1].0 + 100);
    let many = store.cancel_many(&[more[1], running, ids[0], unknown, more[1]], at(8)).unwrap();
    let finished = CancelOutcome::Finished;
    let expected = [CancelOutcome::Cancelled, CancelOutcome::Requested, finished(JobStatus::Completed)];
    assert_eq!(many[..3], expected);
    assert_eq!(many[3..], [CancelOutcome::NotFound, finished(JobStatus::Cancelled)]);
    assert_eq!(store.get(more[1]).unwrap().unwrap().finished_at, Some(at(8)));
}

/// Requeueing gives a failed or cancelled job its attempts back, keeping its checkpoints, and
/// says why it did not otherwise.
pub fn requeue_reports_what_it_did(h: &dyn Harness) {
    let store = h.open();
    let keyed = job("a").unique_key("k").max_attempts(1);
    let ids = insert(&*store, &[keyed.clone(), job("a"), job("a")]);
    let runs = claim_runs(&*store, WORKER, 2, T0);
    let writes = [checkpoint(runs[0], 0), Write::fail(runs[0], "boom"), Write::complete(runs[1], b"1".to_vec())];
    assert_eq!(commit(&*store, WORKER, at(1), &writes), vec![WriteOutcome::Applied; 3]);
    assert_eq!(store.requeue(ids[1], at(2)).unwrap(), RequeueOutcome::Completed);
    assert_eq!(store.requeue(ids[2], at(2)).unwrap(), RequeueOutcome::NotFinished(JobStatus::Pending));
    assert_eq!(store.requeue(crate::JobId(ids[2].0 + 100), at(2)).unwrap(), RequeueOutcome::NotFound);
    // Another live job took the key meanwhile: the failed one cannot come back yet.
    let holder = insert(&*store, &[keyed])[0];
    assert_eq!(store.requeue(ids[0], at(2)).unwrap(), RequeueOutcome::KeyTaken(holder));
    assert_eq!(store.cancel(holder, at(2)).unwrap(), CancelOutcome::Cancelled);
    assert_eq!(store.requeue(ids[0], at(3)).unwrap(), RequeueOutcome::Requeued);
    assert_eq!(store.requeue(ids[0], at(3)).unwrap(), RequeueOutcome::NotFinished(JobStatus::Pending));
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.status, rec.attempt, rec.run_at, rec.finished_at), (JobStatus::Pending, 0, at(3), None));
    assert_eq!((rec.last_error.as_deref(), rec.updated_at), (Some("boom"), at(3)));
    assert_eq!(store.checkpoints(ids[0], 0, 10).unwrap().len(), 1, "checkpoints are kept");
    let claimed = store.claim(&claim_req(WORKER, 5, at(3))).unwrap().jobs;
    let seen: Vec<_> = claimed.iter().map(|c| (c.id, c.attempt, c.resumed)).collect();
    assert_eq!(seen, vec![(ids[2], 1, false), (ids[0], 1, true)], "ids[0] is due later (requeued at 3 s)");
    assert_eq!(store.requeue(holder, at(4)).unwrap(), RequeueOutcome::KeyTaken(ids[0]), "the requeued job holds it");
}
