//! Cases for durable waits: signals, and children with their fan-in.

use super::{at, claim_runs, commit, insert, job, Harness, T0, WORKER};
use crate::{
    CancelOutcome, Checkpoint, ChildOf, ClaimToken, FanIn, JobFilter, JobId, JobStatus, SignalId, SignalOutcome, Store,
    Write, WriteOutcome,
};

fn sent(store: &dyn Store, job: JobId, name: &str, payload: &str, secs: i64) -> (SignalId, bool) {
    match store.signal(job, name, payload.as_bytes(), at(secs)).unwrap() {
        SignalOutcome::Sent { id, woke } => (id, woke),
        other => panic!("signal {name} to {job}: {other:?}"),
    }
}

fn pending_signals(store: &dyn Store, job: JobId) -> Vec<(String, String)> {
    let signals = store.signals(job).unwrap();
    signals.into_iter().map(|s| (s.name, String::from_utf8(s.payload).unwrap())).collect()
}

fn status(store: &dyn Store, job: JobId) -> JobStatus {
    store.get(job).unwrap().unwrap().status
}

/// Signals are stored in sending order, survive a reopen, and a receive consumes exactly the
/// one it names, with its checkpoint, fenced like any write; a signal to an unknown or finished
/// job stores nothing.
pub fn signals_are_kept_in_order_and_consumed_once(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a")]);
    let run = claim_runs(&*store, WORKER, 1, T0)[0];
    let (first, woke) = sent(&*store, ids[0], "x", "1", 1);
    assert!(!woke, "a running job is not woken");
    let (second, _) = sent(&*store, ids[0], "x", "2", 2);
    sent(&*store, ids[0], "y", "3", 3);
    assert!(first < second, "ids follow sending order");
    drop(store);
    let store = h.open();
    let all = store.signals(ids[0]).unwrap();
    assert_eq!((all[0].id, all[0].job, all[0].sent_at), (first, ids[0], at(1)));
    assert_eq!(
        pending_signals(&*store, ids[0]),
        [("x", "1"), ("x", "2"), ("y", "3")].map(|(a, b)| (a.into(), b.into()))
    );
    let received = Checkpoint::value(0, "@signal:x", b"1".to_vec());
    let stale = crate::Claim { token: ClaimToken(run.token.0 + 1), ..run };
    let refused = commit(&*store, WORKER, at(4), &[Write::receive(stale, first, received.clone())]);
    assert_eq!(refused, vec![WriteOutcome::LeaseLost]);
    assert_eq!(store.signals(ids[0]).unwrap().len(), 3, "a refused receive consumes nothing");
    let receive = Write::receive(run, first, received.clone());
    assert_eq!(commit(&*store, WORKER, at(4), std::slice::from_ref(&receive)), vec![WriteOutcome::Applied]);
    assert_eq!(pending_signals(&*store, ids[0]), [("x", "2"), ("y", "3")].map(|(a, b)| (a.into(), b.into())));
    assert_eq!(store.checkpoints(ids[0], 0, 10).unwrap(), vec![received.clone()]);
    assert_eq!(commit(&*store, WORKER, at(5), &[receive]), vec![WriteOutcome::Applied], "a repeat is idempotent");
    assert_eq!(store.signals(ids[0]).unwrap().len(), 2);
    let other = Write::receive(run, second, Checkpoint::value(1, "@signal:x", b"2".to_vec()));
    assert!(store.signals(ids[1]).unwrap().is_empty());
    assert_eq!(
        store.signal(ids[1], "x", b"9", at(5)).unwrap(),
        SignalOutcome::Sent { id: SignalId(second.0 + 2), woke: false }
    );
    assert_eq!(
        commit(&*store, WORKER, at(6), &[other, Write::complete(run, b"1".to_vec())]),
        vec![WriteOutcome::Applied; 2]
    );
    assert_eq!(store.signal(ids[0], "x", b"4", at(7)).unwrap(), SignalOutcome::Finished(JobStatus::Completed));
    assert_eq!(pending_signals(&*store, ids[0]), [("y".into(), "3".into())], "nothing stored for a finished job");
    assert_eq!(store.signal(JobId(ids[1].0 + 100), "x", b"4", at(7)).unwrap(), SignalOutcome::NotFound);
    assert_eq!(store.signals(ids[1]).unwrap().len(), 1, "signals are per job");
}

/// A job waiting for a signal name wakes when a signal of that name is sent (and not for
/// another name); a sleeper is not woken by signals; a signal wait with a time wakes at the
/// time too, forgetting the name.
pub fn a_signal_wakes_only_a_job_waiting_for_its_name(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a"), job("a")]);
    let runs = claim_runs(&*store, WORKER, 3, T0);
    let writes = [
        Write::wait_signal(runs[0], "go", None),
        Write::suspend(runs[1], Some(at(50))),
        Write::wait_signal(runs[2], "go", Some(at(10))),
    ];
    assert_eq!(commit(&*store, WORKER, at(1), &writes), vec![WriteOutcome::Applied; 3]);
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.wait_signal.as_deref(), rec.wake_at, rec.attempt),
        (JobStatus::Waiting, Some("go"), None, 0)
    );
    assert!(!sent(&*store, ids[0], "other", "1", 2).1, "another name does not wake it");
    assert!(!sent(&*store, ids[1], "go", "1", 2).1, "a sleeper is not woken by a signal");
    assert_eq!(status(&*store, ids[1]), JobStatus::Waiting);
    assert!(sent(&*store, ids[0], "go", "2", 3).1);
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.status, rec.run_at, rec.wait_signal, rec.updated_at), (JobStatus::Pending, T0, None, at(3)));
    assert_eq!(store.signals(ids[0]).unwrap().len(), 2, "waking consumes nothing: the run receives");
    let claimed = claim_runs(&*store, WORKER, 5, at(11));
    assert_eq!(claimed.iter().map(|c| c.job).collect::<Vec<_>>(), vec![ids[0], ids[2]], "woken, then timed out");
    let rec = store.get(ids[2]).unwrap().unwrap();
    assert_eq!((rec.wait_signal, rec.wake_at, rec.run_at), (None, None, at(10)));
}

/// A run that suspends for a signal already pending (sent while it ran) is ready at once,
/// its attempt given back.
pub fn a_wait_for_a_pending_signal_does_not_suspend(h: &dyn Harness) {
    let store = h.open();
    let id = insert(&*store, &[job("a")])[0];
    let run = claim_runs(&*store, WORKER, 1, T0)[0];
    sent(&*store, id, "go", "1", 1);
    let writes = [
        Write::checkpoint(run, Checkpoint::value(0, "@signal:go", b"null".to_vec())),
        Write::wait_signal(run, "go", Some(at(60))),
    ];
    assert_eq!(commit(&*store, WORKER, at(2), &writes), vec![WriteOutcome::Applied; 2]);
    let rec = store.get(id).unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.attempt, rec.run_at, rec.wake_at, rec.wait_signal),
        (JobStatus::Pending, 0, T0, None, None)
    );
    assert_eq!(store.checkpoints(id, 0, 10).unwrap().len(), 1, "the suspension's checkpoint is kept");
}

/// A suspension inserts its children in the same transaction (linked to the parent's step,
/// unique keys dropped); the parent waits, counting them, and wakes when its fan-in is decided.
pub fn children_are_inserted_with_the_suspension_and_wake_their_parent(h: &dyn Harness) {
    let store = h.open();
    let parent = insert(&*store, &[job("a")])[0];
    let run = claim_runs(&*store, WORKER, 1, T0)[0];
    let children = vec![job("b"), job("b").unique_key("k"), job("c").priority(3)];
    let rule = FanIn { index: 2, need: 3, tolerate: 0 };
    assert_eq!(
        commit(&*store, WORKER, at(1), &[Write::wait_children(run, rule, children)]),
        vec![WriteOutcome::Applied]
    );
    let rec = store.get(parent).unwrap().unwrap();
    let wait = rec.wait_children.unwrap();
    assert_eq!(
        (rec.status, rec.attempt, wait.rule, wait.total, wait.succeeded, wait.failed),
        (JobStatus::Waiting, 0, rule, 3, 0, 0)
    );
    let kids = store.list(&JobFilter::new().parent(parent)).unwrap();
    assert_eq!(kids.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["b", "b", "c"], "in order");
    assert!(kids.iter().all(|k| k.parent == Some(ChildOf { parent, index: 2 }) && k.unique_key.is_none()));
    assert!(kids.iter().all(|k| k.status == JobStatus::Pending && k.created_at == T0), "as enqueued");
    assert_eq!(store.list(&JobFilter::new().parent(kids[0].id)).unwrap(), vec![], "no grandchildren");
    let req = super::claim_req(WORKER, 5, at(2));
    let claimed = store.claim(&req).unwrap().jobs;
    assert!(claimed.iter().all(|c| c.parent == Some(ChildOf { parent, index: 2 })), "a claimed child knows its parent");
    let runs: Vec<_> = claimed.iter().map(crate::ClaimedJob::claim).collect();
    assert_eq!(runs.iter().map(|r| r.job).collect::<Vec<_>>(), vec![kids[2].id, kids[0].id, kids[1].id]);
    // With and without the hint of its parent (ClaimedJob::parent): the same outcome.
    let done = vec![
        Write::complete(runs[0], b"1".to_vec()).with_parent(claimed[0].parent),
        Write::complete(runs[1], b"1".to_vec()),
    ];
    assert_eq!(commit(&*store, WORKER, at(3), &done), vec![WriteOutcome::Applied; 2]);
    let rec = store.get(parent).unwrap().unwrap();
    let wait = rec.wait_children.unwrap();
    assert_eq!((rec.status, wait.succeeded, wait.failed, rec.updated_at), (JobStatus::Waiting, 2, 0, at(3)));
    assert_eq!(commit(&*store, WORKER, at(4), &[Write::complete(runs[2], b"1".to_vec())]), vec![WriteOutcome::Applied]);
    let rec = store.get(parent).unwrap().unwrap();
    assert_eq!((rec.status, rec.run_at, rec.wait_children, rec.updated_at), (JobStatus::Pending, T0, None, at(4)));
}

/// Failed, reclaimed-for-good and cancelled children count as failures; one more than the
/// fan-in tolerates wakes the parent; a fan-in decided before the suspension commits does not
/// suspend.
pub fn failures_decide_a_fan_in_and_decided_fan_ins_do_not_suspend(h: &dyn Harness) {
    let store = h.open();
    let parent = insert(&*store, &[job("a")])[0];
    let run = claim_runs(&*store, WORKER, 1, T0)[0];
    let rule = FanIn { index: 0, need: 4, tolerate: 2 };
    let children = vec![job("b").max_attempts(1), job("b"), job("c"), job("c")];
    assert_eq!(
        commit(&*store, WORKER, at(1), &[Write::wait_children(run, rule, children)]),
        vec![WriteOutcome::Applied]
    );
    let kids: Vec<JobId> = store.list(&JobFilter::new().parent(parent)).unwrap().iter().map(|k| k.id).collect();
    assert_eq!(store.cancel(kids[3], at(2)).unwrap(), CancelOutcome::Cancelled);
    let child = claim_runs(&*store, WORKER, 1, at(3))[0];
    assert_eq!(child.job, kids[0]);
    commit(&*store, WORKER, at(3), &[Write::start(child)]);
    let lost = store.reclaim(&crate::ReclaimRequest::new(at(40), 10)).unwrap();
    assert_eq!(lost.failed, vec![kids[0]], "its only attempt was lost");
    let wait = store.get(parent).unwrap().unwrap().wait_children.unwrap();
    assert_eq!((wait.succeeded, wait.failed), (0, 2), "a cancelled child and a reclaimed one");
    let child = claim_runs(&*store, WORKER, 1, at(41))[0];
    assert_eq!(commit(&*store, WORKER, at(42), &[Write::fail(child, "no")]), vec![WriteOutcome::Applied]);
    let rec = store.get(parent).unwrap().unwrap();
    assert_eq!((rec.status, rec.run_at), (JobStatus::Pending, T0), "the third failure is one too many");
    // It keeps its place in line, ahead of its children; its next run finds them decided
    // already: it is ready at once.
    let run = claim_runs(&*store, WORKER, 1, at(43))[0];
    assert_eq!(run.job, parent);
    assert_eq!(
        commit(&*store, WORKER, at(44), &[Write::wait_children(run, rule, Vec::new())]),
        vec![WriteOutcome::Applied]
    );
    let rec = store.get(parent).unwrap().unwrap();
    assert_eq!((rec.status, rec.attempt, rec.wait_children), (JobStatus::Pending, 0, None));
    assert_eq!(store.list(&JobFilter::new().parent(parent)).unwrap().len(), 4, "no child added");
}

/// Cancelling a parent cancels its descendants that wait to run, in the same call; running and
/// finished ones are left alone, and other jobs too.
pub fn cancel_reaches_every_waiting_descendant(h: &dyn Harness) {
    use JobStatus::{Cancelled, Pending, Running};
    let store = h.open();
    let parent = insert(&*store, &[job("a")])[0];
    let run = claim_runs(&*store, WORKER, 1, T0)[0];
    let children = vec![job("b"), job("c"), job("zzz").run_at(at(60))];
    commit(&*store, WORKER, at(1), &[Write::wait_children(run, FanIn { index: 0, need: 3, tolerate: 3 }, children)]);
    let kids: Vec<JobId> = store.list(&JobFilter::new().parent(parent)).unwrap().iter().map(|k| k.id).collect();
    let running = claim_runs(&*store, WORKER, 1, at(2))[0];
    assert_eq!(running.job, kids[0]);
    let grandchildren = insert(&*store, &[job("c").parent(kids[0], 0), job("c").parent(kids[2], 1)]);
    let bystander = insert(&*store, &[job("c")])[0];
    assert_eq!(store.cancel(parent, at(3)).unwrap(), CancelOutcome::Cancelled);
    let statuses: Vec<JobStatus> = [kids[0], kids[1], kids[2], grandchildren[0], grandchildren[1], bystander]
        .iter()
        .map(|id| status(&*store, *id))
        .collect();
    assert_eq!(statuses, [Running, Cancelled, Cancelled, Cancelled, Cancelled, Pending]);
    assert_eq!(store.get(grandchildren[1]).unwrap().unwrap().finished_at, Some(at(3)));
    assert_eq!(store.cancel(parent, at(4)).unwrap(), CancelOutcome::Finished(Cancelled));
    // Parent links are the caller's: a loop (a job naming itself as parent) ends too.
    let next = JobId(bystander.0 + 1);
    let looped = insert(&*store, &[job("c").parent(next, 0)])[0];
    assert_eq!(looped, next);
    assert_eq!(store.cancel(looped, at(5)).unwrap(), CancelOutcome::Cancelled);
}
