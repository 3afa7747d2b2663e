//! Enqueue, claim, completion, checkpoints and inspection.

use std::time::Duration;

use super::{at, claim_ids, claim_req, claim_runs, commit, insert, job, Harness, T0, WORKER};
use crate::{
    Checkpoint, ClaimToken, Enqueued, JobFilter, JobId, JobStatus, RetryPolicy, StatusCount, Write, WriteOutcome,
};

/// Ids are positive and increase; every field of a new job is stored as given.
pub fn enqueue_assigns_increasing_ids_and_stores_fields(h: &dyn Harness) {
    let store = h.open();
    let mut full = job("a");
    full.queue = "mail".into();
    full.priority = -7;
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
    assert_eq!(rec.run_at, T0);
    assert_eq!((rec.attempt, rec.token, rec.run_started, rec.confirm_start), (0, ClaimToken(0), false, false));
    assert_eq!(rec.max_attempts, 9);
    assert_eq!(rec.unique_key.as_deref(), Some("k-1"));
    assert_eq!(rec.timeout, full.timeout);
    assert_eq!(rec.retry_policy, full.retry_policy);
    assert_eq!((rec.created_at, rec.updated_at), (T0, T0));
    assert_eq!((rec.locked_by, rec.lease_until, rec.result, rec.last_error), (None, None, None, None));
    assert_eq!((rec.started_at, rec.finished_at, rec.wake_at), (None, None, None));
}

/// An id that was never assigned reads as `None`.
pub fn get_unknown_job_is_none(h: &dyn Harness) {
    let store = h.open();
    let id = insert(&*store, &[job("a")])[0];
    assert_eq!(store.get(JobId(id.0 + 1000)).unwrap(), None);
    assert!(store.checkpoints(JobId(id.0 + 1000), 0, 100).unwrap().is_empty());
}

/// A live job holding a key blocks a second one; a finished one does not.
pub fn unique_key_blocks_only_live_jobs(h: &dyn Harness) {
    let store = h.open();
    let u = job("a").unique_key("order-1");
    let first = insert(&*store, std::slice::from_ref(&u))[0];
    assert_eq!(store.enqueue(std::slice::from_ref(&u)).unwrap(), vec![Enqueued::Duplicate(first)]);
    // Still a duplicate while running.
    let run = claim_runs(&*store, WORKER, 10, T0);
    assert_eq!(run.iter().map(|c| c.job).collect::<Vec<_>>(), vec![first]);
    assert_eq!(store.enqueue(std::slice::from_ref(&u)).unwrap(), vec![Enqueued::Duplicate(first)]);
    assert_eq!(commit(&*store, WORKER, T0, &[Write::complete(run[0], b"null".to_vec())]), vec![WriteOutcome::Applied]);
    let second = store.enqueue(&[u]).unwrap();
    assert!(matches!(second[0], Enqueued::New(id) if id != first), "key is free after completion: {second:?}");
    // A scheduled job holds its key too.
    let later = job("a").unique_key("later").run_at(at(60));
    let held = insert(&*store, std::slice::from_ref(&later))[0];
    assert_eq!(store.enqueue(&[later]).unwrap(), vec![Enqueued::Duplicate(held)]);
    let all = store.list(&JobFilter::default()).unwrap();
    assert_eq!(all.len(), 3, "the duplicates must not have been inserted");
}

/// Two jobs with one key in the same batch: the second is a duplicate of the first.
pub fn unique_key_within_one_batch(h: &dyn Harness) {
    let store = h.open();
    let u = job("a").unique_key("k");
    let out = store.enqueue(&[u.clone(), job("b"), u]).unwrap();
    let Enqueued::New(first) = out[0] else { panic!("first must be new: {out:?}") };
    assert!(matches!(out[1], Enqueued::New(_)));
    assert_eq!(out[2], Enqueued::Duplicate(first));
}

/// With a window, the key also covers finished jobs created inside it, naming the newest;
/// once the window has passed, the key is free.
pub fn unique_window_covers_finished_jobs(h: &dyn Harness) {
    let store = h.open();
    let hour = Duration::from_secs(3600);
    let first = insert(&*store, &[job("a").unique_key("daily")])[0];
    let run = claim_runs(&*store, WORKER, 1, T0);
    assert_eq!(commit(&*store, WORKER, T0, &[Write::complete(run[0], b"1".to_vec())]), vec![WriteOutcome::Applied]);
    let mut again = job("a").unique_key("daily").unique_window(hour);
    again.created_at = at(3599);
    again.run_at = at(3599);
    assert_eq!(store.enqueue(std::slice::from_ref(&again)).unwrap(), vec![Enqueued::Duplicate(first)]);
    let without_window = store.enqueue(&[job("a").unique_key("daily")]).unwrap();
    let Enqueued::New(second) = without_window[0] else { panic!("no window: a new job, got {without_window:?}") };
    assert_eq!(
        store.enqueue(std::slice::from_ref(&again)).unwrap(),
        vec![Enqueued::Duplicate(second)],
        "the live one first"
    );
    assert_eq!(store.cancel(second, at(1)).unwrap(), crate::CancelOutcome::Cancelled);
    assert_eq!(
        store.enqueue(std::slice::from_ref(&again)).unwrap(),
        vec![Enqueued::Duplicate(second)],
        "then the newest"
    );
    again.created_at = at(3601);
    again.run_at = at(3601);
    assert!(matches!(store.enqueue(&[again]).unwrap()[0], Enqueued::New(_)), "both created over an hour before");
}

/// Highest priority first, then earliest `run_at`, then insertion order.
pub fn claim_orders_by_priority_then_run_at_then_id(h: &dyn Harness) {
    let store = h.open();
    let spec = [(0, 3), (5, 9), (0, 1), (5, 2), (-1, 0), (0, 1)];
    let jobs: Vec<_> = spec.iter().map(|&(p, r)| job("a").priority(p).run_at(at(r))).collect();
    let ids = insert(&*store, &jobs);
    let got = claim_ids(&*store, WORKER, 100, at(10));
    let want = vec![ids[3], ids[1], ids[2], ids[5], ids[0], ids[4]];
    assert_eq!(got, want, "claim order (priority desc, run_at, id)");
}

/// Only the requested queues and names are claimed; across queues and names, priority order.
pub fn claim_filters_queues_and_names(h: &dyn Harness) {
    let store = h.open();
    let mut other_queue = job("a");
    other_queue.queue = "other".into();
    let mut third = job("b").priority(1);
    third.queue = "third".into();
    let ids = insert(&*store, &[other_queue, job("zzz"), job("a"), third, job("c").priority(2), job("b")]);
    assert_eq!(claim_ids(&*store, WORKER, 1, T0), vec![ids[4]], "names a, b, c: c has the highest priority");
    assert_eq!(claim_ids(&*store, WORKER, 10, T0), vec![ids[2], ids[5]]);
    let req = claim_req(WORKER, 10, T0).queues(["other", "third"]);
    let got: Vec<JobId> = store.claim(&req).unwrap().jobs.iter().map(|c| c.id).collect();
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

/// A claim returns the job's data and writes lease, holder, token and attempt.
pub fn claim_sets_lease_token_and_attempt(h: &dyn Harness) {
    let store = h.open();
    let j = job("b").max_attempts(4).timeout(Duration::from_secs(2)).run_at(at(-3));
    let id = insert(&*store, std::slice::from_ref(&j))[0];
    let claimed = store.claim(&claim_req(WORKER, 1, at(1))).unwrap().jobs;
    assert_eq!(claimed.len(), 1);
    let c = &claimed[0];
    assert_eq!(c.run_at, at(-3), "when it was due");
    assert_eq!((c.id, c.name.as_str(), c.queue.as_str()), (id, "b", "default"));
    assert_eq!((c.attempt, c.max_attempts, c.timeout, c.token), (1, 4, j.timeout, ClaimToken(1)));
    assert_eq!((c.resumed, c.confirm_start), (false, false));
    assert_eq!(c.args, j.args);
    let rec = store.get(id).unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Running);
    assert_eq!(rec.locked_by.as_deref(), Some(WORKER));
    assert_eq!(rec.lease_until, Some(at(31)));
    assert_eq!((rec.started_at, rec.updated_at), (Some(at(1)), at(1)));
    assert_eq!((rec.attempt, rec.token, rec.run_started), (1, ClaimToken(1), false));
    // A release does not take the token back: the next claim gets a new one.
    assert_eq!(store.release(WORKER, &[c.claim()], at(2)).unwrap(), 1);
    let again = store.claim(&claim_req(WORKER, 1, at(2))).unwrap().jobs;
    assert_eq!((again[0].attempt, again[0].token), (1, ClaimToken(2)));
}

/// Excluded jobs are left pending and the next ones are claimed instead.
pub fn claim_skips_excluded_jobs(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a"), job("a")]);
    let req = claim_req(WORKER, 2, T0).exclude(vec![ids[0]]);
    let got: Vec<JobId> = store.claim(&req).unwrap().jobs.iter().map(|c| c.id).collect();
    assert_eq!(got, vec![ids[1], ids[2]]);
    assert_eq!(store.get(ids[0]).unwrap().unwrap().status, JobStatus::Pending);
    assert_eq!(claim_ids(&*store, WORKER, 5, T0), vec![ids[0]]);
}

/// Claims racing from several threads (and, for a multi-process store, from several handles)
/// partition the jobs: none claimed twice, none missed.
pub fn concurrent_claims_never_share_a_job(h: &dyn Harness) {
    let store: std::sync::Arc<dyn crate::Store> = h.open().into();
    let n = 200;
    let ids = insert(&*store, &vec![job("a"); n]);
    let shared_handles = store.capabilities().multi_process;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store: std::sync::Arc<dyn crate::Store> =
                if shared_handles && t % 2 == 1 { h.open().into() } else { store.clone() };
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
    let run = claim_runs(&*store, WORKER, 1, T0)[0];
    assert_eq!(commit(&*store, WORKER, at(1), &[Write::start(run)]), vec![WriteOutcome::Applied]);
    assert!(store.get(id).unwrap().unwrap().run_started, "a start is recorded");
    assert_eq!(store.get(id).unwrap().unwrap().updated_at, T0, "a start does not touch updated_at");
    let out = commit(&*store, WORKER, at(2), &[Write::complete(run, br#"{"ok":true}"#.to_vec())]);
    assert_eq!(out, vec![WriteOutcome::Applied]);
    let rec = store.get(id).unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Completed);
    assert_eq!(rec.result.as_deref(), Some(&br#"{"ok":true}"#[..]));
    assert_eq!((rec.locked_by, rec.lease_until, rec.run_started), (None, None, false));
    assert_eq!((rec.finished_at, rec.updated_at), (Some(at(2)), at(2)));
    assert_eq!(rec.attempt, 1);
}

/// A failure is terminal and keeps the payload.
pub fn fail_is_terminal(h: &dyn Harness) {
    let store = h.open();
    let id = insert(&*store, &[job("a")])[0];
    let run = claim_runs(&*store, WORKER, 1, T0)[0];
    assert_eq!(commit(&*store, WORKER, at(1), &[Write::fail(run, "bad input")]), vec![WriteOutcome::Applied]);
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
    let run = claim_runs(&*store, WORKER, 2, T0)[0];
    let cp = |c: Checkpoint| Write::checkpoint(run, c);
    let writes = [
        cp(Checkpoint::error(1, "two", "declined", false)),
        cp(Checkpoint::value(0, "one", b"1".to_vec())),
        cp(Checkpoint::value(0, "one", b"11".to_vec())),
        cp(Checkpoint::error(2, "three", "timeout", true)),
    ];
    assert_eq!(commit(&*store, WORKER, T0, &writes), vec![WriteOutcome::Applied; 4]);
    let got = store.checkpoints(id, 0, 100).unwrap();
    assert_eq!(
        got,
        vec![
            Checkpoint::value(0, "one", b"11".to_vec()),
            Checkpoint::error(1, "two", "declined", false),
            Checkpoint::error(2, "three", "timeout", true),
        ]
    );
    assert_eq!(store.checkpoints(JobId(id.0 + 1), 0, 100).unwrap(), vec![], "checkpoints belong to one job");
    assert_eq!(store.get(id).unwrap().unwrap().status, JobStatus::Running, "a checkpoint does not end the run");
}

/// Checkpoints are read from an index, a page at a time.
pub fn checkpoints_page_by_index(h: &dyn Harness) {
    let store = h.open();
    let id = insert(&*store, &[job("a")])[0];
    let run = claim_runs(&*store, WORKER, 1, T0)[0];
    let writes: Vec<Write> =
        (0..10).map(|i| Write::checkpoint(run, Checkpoint::value(i, format!("s{i}"), b"1".to_vec()))).collect();
    assert_eq!(commit(&*store, WORKER, T0, &writes), vec![WriteOutcome::Applied; 10]);
    let page = |from, limit| store.checkpoints(id, from, limit).unwrap().iter().map(|c| c.index).collect::<Vec<_>>();
    assert_eq!(page(0, 3), vec![0, 1, 2]);
    assert_eq!(page(3, 3), vec![3, 4, 5]);
    assert_eq!(page(8, 5), vec![8, 9]);
    assert_eq!(page(10, 5), Vec::<u32>::new());
    assert_eq!(page(0, 0), Vec::<u32>::new());
}

/// Listing filters by status, queue and name, in id order, with `after`, offset and limit.
pub fn list_filters_and_pages(h: &dyn Harness) {
    let store = h.open();
    let mut mail = job("b");
    mail.queue = "mail".into();
    let ids = insert(&*store, &[job("a"), mail.clone(), job("a"), mail, job("c")]);
    claim_ids(&*store, WORKER, 1, T0);
    let list = |f: JobFilter| store.list(&f).unwrap().iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(list(JobFilter::new()), ids);
    assert_eq!(list(JobFilter::new().queue("mail")), vec![ids[1], ids[3]]);
    assert_eq!(list(JobFilter::new().name("a")), vec![ids[0], ids[2]]);
    assert_eq!(list(JobFilter::new().status(JobStatus::Running)), vec![ids[0]]);
    assert_eq!(list(JobFilter::new().limit(2).offset(1)), vec![ids[1], ids[2]]);
    assert_eq!(list(JobFilter::new().offset(10)), vec![]);
    assert_eq!(list(JobFilter::new().after(ids[1]).limit(2)), vec![ids[2], ids[3]]);
    assert_eq!(list(JobFilter::new().after(ids[1]).status(JobStatus::Pending)), vec![ids[2], ids[3], ids[4]]);
}

/// Counts group by queue, name and status, sorted, without empty groups; due scheduled jobs
/// count as pending and running ones say how many started.
pub fn counts_per_queue_name_and_status(h: &dyn Harness) {
    let store = h.open();
    let mut mail = job("b");
    mail.queue = "mail".into();
    let later = job("a").run_at(at(60));
    insert(&*store, &[job("a"), job("a"), mail, job("a"), later, job("b"), job("a")]);
    let runs = claim_runs(&*store, WORKER, 2, T0);
    assert_eq!(commit(&*store, WORKER, T0, &[Write::start(runs[0])]), vec![WriteOutcome::Applied]);
    let c = |queue: &str, name: &str, status, count, started| StatusCount::new(queue, name, status, count, started);
    assert_eq!(
        store.counts(T0).unwrap(),
        vec![
            c("default", "a", JobStatus::Scheduled, 1, 0),
            c("default", "a", JobStatus::Pending, 2, 0),
            c("default", "a", JobStatus::Running, 2, 1),
            c("default", "b", JobStatus::Pending, 1, 0),
            c("mail", "b", JobStatus::Pending, 1, 0),
        ]
    );
    let due = store.counts(at(60)).unwrap();
    assert_eq!(due[0], c("default", "a", JobStatus::Pending, 3, 0), "a due scheduled job counts as ready: {due:?}");
}

/// What a store acknowledged is there after the store is dropped and opened again.
pub fn committed_work_survives_reopen(h: &dyn Harness) {
    let (ids, cp) = {
        let store = h.open();
        let ids = insert(&*store, &[job("a"), job("a"), job("a")]);
        let runs = claim_runs(&*store, WORKER, 2, T0);
        let cp = Checkpoint::value(0, "s", b"\"v\"".to_vec());
        let writes = [Write::checkpoint(runs[0], cp.clone()), Write::complete(runs[1], b"7".to_vec())];
        assert_eq!(commit(&*store, WORKER, at(1), &writes), vec![WriteOutcome::Applied; 2]);
        (ids, cp)
    };
    let store = h.open();
    let status = |id| store.get(id).unwrap().unwrap().status;
    assert_eq!(status(ids[0]), JobStatus::Running);
    assert_eq!(status(ids[1]), JobStatus::Completed);
    assert_eq!(status(ids[2]), JobStatus::Pending);
    assert_eq!(store.checkpoints(ids[0], 0, 100).unwrap(), vec![cp]);
    let more = insert(&*store, &[job("a")]);
    assert!(more[0] > ids[2], "ids keep increasing after reopen");
}

/// A claim says whether the job has checkpoints, so workers read them only when there are some.
pub fn claim_reports_whether_checkpoints_exist(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a")]);
    let runs = claim_runs(&*store, WORKER, 2, T0);
    assert!(store.get(ids[0]).unwrap().is_some());
    let cp = Write::checkpoint(runs[0], Checkpoint::value(0, "s", b"1".to_vec()));
    assert_eq!(commit(&*store, WORKER, T0, &[cp]), vec![WriteOutcome::Applied]);
    assert_eq!(store.release(WORKER, &runs, at(1)).unwrap(), 2);
    let again = store.claim(&claim_req(WORKER, 2, at(1))).unwrap().jobs;
    let resumed: Vec<(JobId, bool)> = again.iter().map(|c| (c.id, c.resumed)).collect();
    assert_eq!(resumed, vec![(ids[0], true), (ids[1], false)]);
}

/// Ids follow commit order: a reader paging with `after` while writers enqueue concurrently
/// sees every job (an id drawn before a lock and committed after a larger one would be
/// skipped).
pub fn ids_follow_commit_order_for_paging_readers(h: &dyn Harness) {
    let store: std::sync::Arc<dyn crate::Store> = h.open().into();
    let (writers, each) = (4, 150);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                for _ in 0..each {
                    insert(&*store, &[job("a")]);
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
        })
        .collect();
    let mut seen = Vec::new();
    let mut last = JobId(0);
    loop {
        let finished = done.load(std::sync::atomic::Ordering::SeqCst) == writers;
        let page = store.list(&JobFilter::new().after(last).limit(50)).unwrap();
        if let Some(end) = page.last() {
            last = end.id;
        }
        seen.extend(page.iter().map(|j| j.id));
        if finished && page.is_empty() {
            break;
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    let mut all: Vec<JobId> = store.list(&JobFilter::new().limit(usize::MAX)).unwrap().iter().map(|j| j.id).collect();
    all.sort();
    assert_eq!(all.len(), writers * each);
    assert_eq!(seen, all, "a reader paging by id missed jobs committed behind it");
}
