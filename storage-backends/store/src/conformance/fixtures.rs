//! Checks shared by the backends' upgrade tests: a storage written by an earlier release, opened
//! by this one, must hold what the release wrote and finish its jobs with today's features.

use std::time::Duration;

use super::job;
use crate::{
    Checkpoint, ClaimRequest, ClaimToken, Enqueued, FanIn, JobFilter, JobId, JobStatus, ReclaimRequest, SignalId,
    SignalOutcome, Store, Timestamp, Write, WriteOutcome,
};

/// The time around which the release-2 fixtures were written.
const T: i64 = 1_790_000_000_000_000;

/// What [`release_2_fixture_runs`] did, for [`release_2_fixture_finished`] to check after a
/// reopen.
#[derive(Debug)]
pub struct Release2Run {
    now: Timestamp,
    signal: SignalId,
    received: Checkpoint,
}

fn record(store: &dyn Store, id: i64) -> crate::JobRecord {
    store.get(JobId(id)).unwrap().unwrap()
}

/// A store opened on a copy of a release-2 fixture (jobs 1 to 8 written at commit `9f9509d`,
/// described in the backends' `tests/fixtures/README.md`): checks every job as written, then
/// runs them all to their end, job 7 through a signal wait and job 5 through a child's fan-in.
pub fn release_2_fixture_runs(store: &dyn Store) -> Release2Run {
    use JobStatus::{Cancelled, Completed, Failed, Pending, Running, Scheduled, Waiting};
    let before: Vec<JobStatus> = (1..=8).map(|id| record(store, id).status).collect();
    assert_eq!(before, [Completed, Failed, Cancelled, Running, Pending, Scheduled, Waiting, Pending]);
    let tokens: Vec<u64> = (1..=8).map(|id| record(store, id).token.0).collect();
    assert_eq!(tokens, [1, 1, 0, 1, 0, 0, 1, 0], "the claim tokens are kept");
    for id in 1..=8 {
        let job = record(store, id);
        assert_eq!((job.wait_signal, job.wait_children, job.parent), (None, None, None), "job {id}");
    }
    assert_eq!(record(store, 7).wake_at, Some(Timestamp(T + 2)));
    assert_eq!(store.checkpoints(JobId(7), 0, 10).unwrap()[0].name, "@sleep");
    assert!(record(store, 4).run_started);
    assert_eq!(store.checkpoints(JobId(4), 2, 10).unwrap()[0].outcome, Err("declined".to_owned()));
    let uniq = record(store, 8);
    assert_eq!((uniq.priority, uniq.timeout), (5, Some(Duration::from_secs(9))));
    let dup = store.enqueue(&[job("a").unique_key("order-7")]).unwrap();
    assert_eq!(dup, vec![Enqueued::Duplicate(JobId(8))], "the unique index is kept");
    assert_eq!(store.signal(JobId(1), "go", b"1", Timestamp::now()).unwrap(), SignalOutcome::Finished(Completed));
    assert!(store.signals(JobId(1)).unwrap().is_empty());

    let now = Timestamp::now();
    let secs = |s: u64| now.saturating_add(Duration::from_secs(s));
    assert_eq!(store.reclaim(&ReclaimRequest::new(now, 10)).unwrap().requeued, vec![JobId(4)], "it had started");
    let names = ["running-cp", "pending", "waiting", "uniq"];
    let claimed = store.claim(&ClaimRequest::new("new", now, secs(30)).names(names).limit(10)).unwrap().jobs;
    let mut seen: Vec<(i64, u64, bool)> = claimed.iter().map(|c| (c.id.0, c.token.0, c.resumed)).collect();
    seen.sort_unstable();
    assert_eq!(seen, vec![(4, 2, true), (5, 1, false), (7, 2, true), (8, 1, false)]);
    let run = |id: i64| claimed.iter().find(|c| c.id == JobId(id)).unwrap().claim();
    // 7 waits for a signal, 5 for a child; 4 and 8 finish.
    let writes = [
        Write::wait_signal(run(7), "go", None),
        Write::wait_children(run(5), FanIn { index: 1, need: 1, tolerate: 0 }, vec![job("child")]),
        Write::complete(run(4), b"1".to_vec()),
        Write::complete(run(8), b"1".to_vec()),
    ];
    assert_eq!(store.commit("new", now, &writes).unwrap(), vec![WriteOutcome::Applied; 4]);
    let child = store.list(&JobFilter::new().parent(JobId(5))).unwrap();
    assert_eq!(child.len(), 1);
    assert!(child[0].id > JobId(8), "ids continue after the upgrade: {}", child[0].id);
    let SignalOutcome::Sent { id: signal, woke: true } = store.signal(JobId(7), "go", b"42", secs(1)).unwrap() else {
        panic!("the signal did not wake job 7")
    };
    let claimed =
        store.claim(&ClaimRequest::new("new", secs(2), secs(30)).names(["waiting", "child"]).limit(5)).unwrap().jobs;
    // The child was enqueued at the conformance T0, long before job 7's `run_at` (kept by the wake).
    assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), [child[0].id, JobId(7)], "in claim order");
    assert_eq!(claimed[0].parent.map(|p| (p.parent, p.index)), Some((JobId(5), 1)));
    let received = Checkpoint::value(1, "@signal:go", b"42".to_vec());
    let writes = [
        Write::receive(claimed[1].claim(), signal, received.clone()),
        Write::complete(claimed[1].claim(), b"1".to_vec()),
        Write::complete(claimed[0].claim(), b"1".to_vec()),
    ];
    assert_eq!(store.commit("new", secs(3), &writes).unwrap(), vec![WriteOutcome::Applied; 3]);
    assert_eq!(record(store, 5).status, Pending, "its child woke it");
    let parent = store.claim(&ClaimRequest::new("new", secs(4), secs(30)).names(["pending"])).unwrap().jobs;
    assert_eq!((parent[0].id, parent[0].token), (JobId(5), ClaimToken(2)));
    let done = store.commit("new", secs(5), &[Write::complete(parent[0].claim(), b"1".to_vec())]).unwrap();
    assert_eq!(done, [WriteOutcome::Applied]);
    Release2Run { now, signal, received }
}

/// After [`release_2_fixture_runs`] and a reopen: everything it did is there, and signal ids
/// go on increasing.
pub fn release_2_fixture_finished(store: &dyn Store, run: &Release2Run) {
    use JobStatus::{Cancelled, Completed, Failed, Scheduled};
    let after: Vec<JobStatus> = (1..=8).map(|id| record(store, id).status).collect();
    assert_eq!(after, [Completed, Failed, Cancelled, Completed, Completed, Scheduled, Completed, Completed]);
    assert_eq!(store.checkpoints(JobId(7), 0, 10).unwrap().last(), Some(&run.received));
    assert!(store.signals(JobId(7)).unwrap().is_empty(), "the signal was consumed");
    assert_eq!(store.list(&JobFilter::new().parent(JobId(5))).unwrap()[0].status, Completed);
    let later = run.now.saturating_add(Duration::from_secs(6));
    let SignalOutcome::Sent { id: next, woke: false } = store.signal(JobId(6), "x", b"1", later).unwrap() else {
        panic!("a scheduled job takes signals")
    };
    assert!(next > run.signal, "signal ids continue after a reopen");
}
