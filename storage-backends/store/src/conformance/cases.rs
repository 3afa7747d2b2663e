//! Enqueue, claim, completion, checkpoints and inspection.

use std::time::Duration;

use super::{at, claim_ids, claim_req, insert, job, Harness, T0, WORKER};
use crate::{Checkpoint, Enqueued, JobFilter, JobId, JobStatus, RetryPolicy, StatusCount, Write, WriteOutcome};

/// Ids are positive and increase; every field of a new job is stored as given.
pub fn enqueue_assigns_increasing_ids_and_stores_fields(h: &dyn Harness) {
    let store = h.open();
    let mut full = job("a");
    full.queue = "mail".into();
    full.priority = -7;
    full.run_at = at(5);
    full.max_attempts = 9;
    full.unique_key = Some("k-1".into());
    full.timeout = Some(Duration::from_millis(1500));
    full.retry_policy = Some(RetryPolicy { base: Duration::from_millis(10), max: Duration::from_secs(60) });
    full.args = "{\"emoji\":\"\u{1F600}\",\"q\":\"'\\\"\"}".as_bytes().to_vec();
    let ids = insert(&*store, &[job("a"), full.clone(), job("b")]);
    assert_eq!(ids.len(), 3);
    assert!(ids[0].0 > 0, "ids must be positive, got {ids:?}");
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "ids must increase, got {ids:?}");
    let rec = store.get(ids[1]).unwrap().expect("inserted job is readable");
    assert_eq!(rec.id, ids[1]);
    assert_eq!(rec.queue, "mail");
    assert_eq!(rec.name, "a");
    assert_eq!(rec.args, full.args);
    assert_eq!(rec.status, JobStatus::Pending);
    assert_eq!(rec.priority, -7);
    assert_eq!(rec.run_at, at(5));
    assert_eq!(rec.attempt, 0);
    assert_eq!(rec.max_attempts, 9);
    assert_eq!(rec.unique_key.as_deref(), Some("k-1"));
    assert_eq!(rec.timeout, full.timeout);
    assert_eq!(rec.retry_policy, full.retry_policy);
    assert_eq!(rec.created_at, T0);
    assert_eq!((rec.locked_by, rec.lease_until, rec.result, rec.last_error), (None, None, None, None));
    assert_eq!((rec.started_at, rec.finished_at, rec.wake_at), (None, None, None));
}

/// An id that was never assigned reads as `None`.
pub fn get_unknown_job_is_none(h: &dyn Harness) {
    let store = h.open();
    let id = insert(&*store, &[job("a")])[0];
    assert_eq!(store.get(JobId(id.0 + 1000)).unwrap(), None);
    assert!(store.checkpoints(JobId(id.0 + 1000)).unwrap().is_empty());
}

/// A live job holding a key blocks a second one; a finished one does not.
pub fn unique_key_blocks_only_live_jobs(h: &dyn Harness) {
    let store = h.open();
    let mut u = job("a");
    u.unique_key = Some("order-1".into());
    let first = insert(&*store, &[u.clone()])[0];
    assert_eq!(store.enqueue(&[u.clone()]).unwrap(), vec![Enqueued::Duplicate(first)]);
    // Still a duplicate while running.
    assert_eq!(claim_ids(&*store, WORKER, 10, T0), vec![first]);
    assert_eq!(store.enqueue(&[u.clone()]).unwrap(), vec![Enqueued::Duplicate(first)]);
    let done = store.commit(WORKER, T0, &[Write::Complete { job: first, result: b"null".to_vec() }]);
    assert_eq!(done.unwrap(), vec![WriteOutcome::Applied]);
    let second = store.enqueue(&[u]).unwrap();
    assert!(matches!(second[0], Enqueued::New(id) if id != first), "key is free after completion: {second:?}");
    let all = store.list(&JobFilter::default()).unwrap();
    assert_eq!(all.len(), 2, "the duplicates must not have been inserted");
}

/// Two jobs with one key in the same batch: the second is a duplicate of the first.
pub fn unique_key_within_one_batch(h: &dyn Harness) {
    let store = h.open();
    let mut u = job("a");
    u.unique_key = Some("k".into());
    let out = store.enqueue(&[u.clone(), job("b"), u]).unwrap();
    let Enqueued::New(first) = out[0] else { panic!("first must be new: {out:?}") };
    assert!(matches!(out[1], Enqueued::New(_)));
    assert_eq!(out[2], Enqueued::Duplicate(first));
}

/// Highest priority first, then earliest `run_at`, then insertion order.
pub fn claim_orders_by_priority_then_run_at_then_id(h: &dyn Harness) {
    let store = h.open();
    let spec = [(0, 3), (5, 9), (0, 1), (5, 2), (-1, 0), (0, 1)];
    let jobs: Vec<_> = spec
        .iter()
        .map(|&(p, r)| {
            let mut j = job("a");
            j.priority = p;
            j.run_at = at(r);
            j
        })
        .collect();
    let ids = insert(&*store, &jobs);
    let got = claim_ids(&*store, WORKER, 100, at(10));
    let want = vec![ids[3], ids[1], ids[2], ids[5], ids[0], ids[4]];
    assert_eq!(got, want, "claim order (priority desc, run_at, id)");
}

/// A job is not claimed before its `run_at`.
pub fn claim_skips_future_jobs(h: &dyn Harness) {
    let store = h.open();
    let mut later = job("a");
    later.run_at = at(60);
    let ids = insert(&*store, &[later, job("a")]);
    assert_eq!(claim_ids(&*store, WORKER, 10, at(59)), vec![ids[1]]);
    assert_eq!(claim_ids(&*store, WORKER, 10, at(59)), vec![]);
    assert_eq!(claim_ids(&*store, WORKER, 10, at(60)), vec![ids[0]]);
}

/// Only the requested queues and names are claimed.
pub fn claim_filters_queues_and_names(h: &dyn Harness) {
    let store = h.open();
    let mut other_queue = job("a");
    other_queue.queue = "other".into();
    let mut third = job("b");
    third.queue = "third".into();
    third.priority = 1;
    let ids = insert(&*store, &[other_queue, job("zzz"), job("a"), third]);
    assert_eq!(claim_ids(&*store, WORKER, 10, T0), vec![ids[2]]);
    let mut req = claim_req(WORKER, 10, T0);
    req.queues = vec!["other".into(), "third".into()];
    let got: Vec<JobId> = store.claim(&req).unwrap().iter().map(|c| c.id).collect();
    assert_eq!(got, vec![ids[3], ids[0]], "across queues: priority order");
    assert_eq!(store.get(ids[1]).unwrap().unwrap().status, JobStatus::Pending, "unregistered name untouched");
}

/// `limit` caps a claim; claimed jobs are not handed out again.
pub fn claim_respects_limit_and_never_returns_a_job_twice(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &vec![job("a"); 5]);
    let first = claim_ids(&*store, WORKER, 2, T0);
    let second = claim_ids(&*store, "worker-b", 10, T0);
    assert_eq!(first, ids[..2].to_vec());
    assert_eq!(second, ids[2..].to_vec());
    assert!(claim_ids(&*store, WORKER, 10, T0).is_empty());
    assert!(claim_ids(&*store, WORKER, 0, T0).is_empty());
}

/// A claim returns the job's data and writes lease, holder and attempt.
pub fn claim_sets_lease_and_attempt(h: &dyn Harness) {
    let store = h.open();
    let mut j = job("b");
    j.max_attempts = 4;
    j.timeout = Some(Duration::from_secs(2));
    let id = insert(&*store, &[j.clone()])[0];
    let claimed = store.claim(&claim_req(WORKER, 1, at(1))).unwrap();
    assert_eq!(claimed.len(), 1);
    let c = &claimed[0];
    assert_eq!((c.id, c.name.as_str(), c.queue.as_str()), (id, "b", "default"));
    assert_eq!((c.attempt, c.max_attempts, c.timeout), (1, 4, j.timeout));
    assert_eq!(c.args, j.args);
    let rec = store.get(id).unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Running);
    assert_eq!(rec.locked_by.as_deref(), Some(WORKER));
    assert_eq!(rec.lease_until, Some(at(31)));
    assert_eq!(rec.started_at, Some(at(1)));
    assert_eq!(rec.attempt, 1);
}

/// Claims racing from several threads partition the jobs: none claimed twice, none missed.
pub fn concurrent_claims_never_share_a_job(h: &dyn Harness) {
    let store = h.open();
    let n = 200;
    let ids = insert(&*store, &vec![job("a"); n]);
    let store: std::sync::Arc<dyn crate::Store> = store.into();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let worker = format!("w{t}");
                let mut mine = Vec::new();
                loop {
                    let got = claim_ids(&*store, &worker, 7, T0);
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got);
                }
            })
        })
        .collect();
    let mut all: Vec<JobId> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort();
    assert_eq!(all.len(), n, "each job claimed exactly once");
    assert_eq!(all, ids);
}

/// Completing stores the result, ends the run and records the time.
pub fn complete_stores_result_and_ends_run(h: &dyn Harness) {
    let store = h.open();
    let id = insert(&*store, &[job("a")])[0];
    claim_ids(&*store, WORKER, 1, T0);
    let out = store.commit(WORKER, at(2), &[Write::Complete { job: id, result: br#"{"ok":true}"#.to_vec() }]);
    assert_eq!(out.unwrap(), vec![WriteOutcome::Applied]);
    let rec = store.get(id).unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Completed);
    assert_eq!(rec.result.as_deref(), Some(&br#"{"ok":true}"#[..]));
    assert_eq!((rec.locked_by, rec.lease_until), (None, None));
    assert_eq!(rec.finished_at, Some(at(2)));
    assert_eq!(rec.updated_at, at(2));
    assert_eq!(rec.attempt, 1);
}

/// A retry returns the job to pending at the given time with the error kept.
pub fn retry_requeues_with_error_and_run_at(h: &dyn Harness) {
    let store = h.open();
    let id = insert(&*store, &[job("a")])[0];
    claim_ids(&*store, WORKER, 1, T0);
    let w = Write::Retry { job: id, error: "boom".into(), run_at: at(8) };
    assert_eq!(store.commit(WORKER, at(1), &[w]).unwrap(), vec![WriteOutcome::Applied]);
    let rec = store.get(id).unwrap().unwrap();
    assert_eq!((rec.status, rec.run_at, rec.attempt), (JobStatus::Pending, at(8), 1));
    assert_eq!(rec.last_error.as_deref(), Some("boom"));
    assert_eq!((rec.locked_by, rec.finished_at), (None, None));
    assert!(claim_ids(&*store, WORKER, 1, at(7)).is_empty());
    assert_eq!(claim_ids(&*store, WORKER, 1, at(8)), vec![id]);
    assert_eq!(store.get(id).unwrap().unwrap().attempt, 2);
}

/// A failure is terminal and keeps the payload.
pub fn fail_is_terminal(h: &dyn Harness) {
    let store = h.open();
    let id = insert(&*store, &[job("a")])[0];
    claim_ids(&*store, WORKER, 1, T0);
    let w = Write::Fail { job: id, error: "bad input".into() };
    assert_eq!(store.commit(WORKER, at(1), &[w]).unwrap(), vec![WriteOutcome::Applied]);
    let rec = store.get(id).unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Failed);
    assert_eq!(rec.last_error.as_deref(), Some("bad input"));
    assert_eq!(rec.finished_at, Some(at(1)));
    assert_eq!(rec.args, job("a").args);
    assert!(claim_ids(&*store, WORKER, 1, at(100)).is_empty());
}

/// Checkpoints are upserted by index and read back in index order, errors included.
pub fn checkpoints_upsert_and_read_in_index_order(h: &dyn Harness) {
    let store = h.open();
    let id = insert(&*store, &[job("a"), job("a")])[0];
    claim_ids(&*store, WORKER, 2, T0);
    let cp = |index, name: &str, outcome| Write::Checkpoint {
        job: id,
        checkpoint: Checkpoint { index, name: name.into(), outcome },
    };
    let writes =
        [cp(1, "two", Err("declined".into())), cp(0, "one", Ok(b"1".to_vec())), cp(0, "one", Ok(b"11".to_vec()))];
    assert_eq!(store.commit(WORKER, T0, &writes).unwrap(), vec![WriteOutcome::Applied; 3]);
    let got = store.checkpoints(id).unwrap();
    assert_eq!(
        got,
        vec![
            Checkpoint { index: 0, name: "one".into(), outcome: Ok(b"11".to_vec()) },
            Checkpoint { index: 1, name: "two".into(), outcome: Err("declined".into()) },
        ]
    );
    assert_eq!(store.checkpoints(JobId(id.0 + 1)).unwrap(), vec![], "checkpoints belong to one job");
    assert_eq!(store.get(id).unwrap().unwrap().status, JobStatus::Running, "a checkpoint does not end the run");
}

/// Listing filters by status, queue and name, in id order, with offset and limit.
pub fn list_filters_and_pages(h: &dyn Harness) {
    let store = h.open();
    let mut mail = job("b");
    mail.queue = "mail".into();
    let ids = insert(&*store, &[job("a"), mail.clone(), job("a"), mail, job("c")]);
    claim_ids(&*store, WORKER, 1, T0);
    let list = |f: JobFilter| store.list(&f).unwrap().iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(list(JobFilter::default()), ids);
    assert_eq!(list(JobFilter { queue: Some("mail".into()), ..JobFilter::default() }), vec![ids[1], ids[3]]);
    assert_eq!(list(JobFilter { name: Some("a".into()), ..JobFilter::default() }), vec![ids[0], ids[2]]);
    assert_eq!(list(JobFilter { status: Some(JobStatus::Running), ..JobFilter::default() }), vec![ids[0]]);
    assert_eq!(list(JobFilter { limit: 2, offset: 1, ..JobFilter::default() }), vec![ids[1], ids[2]]);
    assert_eq!(list(JobFilter { offset: 10, ..JobFilter::default() }), vec![]);
}

/// Counts group by queue and status, sorted, without empty pairs.
pub fn counts_per_queue_and_status(h: &dyn Harness) {
    let store = h.open();
    let mut mail = job("b");
    mail.queue = "mail".into();
    insert(&*store, &[job("a"), job("a"), mail, job("a")]);
    claim_ids(&*store, WORKER, 1, T0);
    let c = |queue: &str, status, count| StatusCount { queue: queue.into(), status, count };
    assert_eq!(
        store.counts().unwrap(),
        vec![
            c("default", JobStatus::Pending, 2),
            c("default", JobStatus::Running, 1),
            c("mail", JobStatus::Pending, 1)
        ]
    );
}

/// What a store acknowledged is there after the store is dropped and opened again.
pub fn committed_work_survives_reopen(h: &dyn Harness) {
    let (ids, cp) = {
        let store = h.open();
        let ids = insert(&*store, &[job("a"), job("a"), job("a")]);
        claim_ids(&*store, WORKER, 2, T0);
        let cp = Checkpoint { index: 0, name: "s".into(), outcome: Ok(b"\"v\"".to_vec()) };
        let writes = [
            Write::Checkpoint { job: ids[0], checkpoint: cp.clone() },
            Write::Complete { job: ids[1], result: b"7".to_vec() },
        ];
        assert_eq!(store.commit(WORKER, at(1), &writes).unwrap(), vec![WriteOutcome::Applied; 2]);
        (ids, cp)
    };
    let store = h.open();
    let status = |id| store.get(id).unwrap().unwrap().status;
    assert_eq!(status(ids[0]), JobStatus::Running);
    assert_eq!(status(ids[1]), JobStatus::Completed);
    assert_eq!(status(ids[2]), JobStatus::Pending);
    assert_eq!(store.checkpoints(ids[0]).unwrap(), vec![cp]);
    let more = insert(&*store, &[job("a")]);
    assert!(more[0] > ids[2], "ids keep increasing after reopen");
}

/// A claim says whether the job has checkpoints, so workers read them only when there are some.
pub fn claim_reports_whether_checkpoints_exist(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a")]);
    let claimed = store.claim(&claim_req(WORKER, 2, T0)).unwrap();
    assert!(claimed.iter().all(|c| !c.resumed), "fresh jobs have no checkpoints: {claimed:?}");
    let cp = Checkpoint { index: 0, name: "s".into(), outcome: Ok(b"1".to_vec()) };
    let done = store.commit(WORKER, T0, &[Write::Checkpoint { job: ids[0], checkpoint: cp }]).unwrap();
    assert_eq!(done, vec![WriteOutcome::Applied]);
    assert_eq!(store.release(WORKER, &ids, at(1)).unwrap(), 2);
    let again = store.claim(&claim_req(WORKER, 2, at(1))).unwrap();
    let resumed: Vec<(JobId, bool)> = again.iter().map(|c| (c.id, c.resumed)).collect();
    assert_eq!(resumed, vec![(ids[0], true), (ids[1], false)]);
}
