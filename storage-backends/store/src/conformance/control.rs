//! Cases for operator control: cancelling running jobs, pausing jobs and queues, retention,
//! leadership and bulk requeue.

use super::{at, claim_ids, claim_req, claim_runs, commit, insert, job, Harness, T0, WORKER};
use crate::{
    CancelOutcome, Checkpoint, ChildOf, DeleteOutcome, FanIn, JobFilter, JobId, JobStatus, PauseOutcome, PurgeRequest,
    ReclaimRequest, Renewal, RequeueOutcome, ResumeOutcome, SignalOutcome, Store, StoreErrorKind, Write, WriteOutcome,
};

fn status(store: &dyn Store, job: JobId) -> JobStatus {
    store.get(job).unwrap().unwrap().status
}

/// A running job asked to cancel keeps running, is reported by `renew`, and ends `Cancelled`
/// however its run ends (retry, failure, suspension, release, reclaim) unless it completes.
pub fn cancelling_a_running_job_ends_its_run_cancelled(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &(0..6).map(|_| job("a")).collect::<Vec<_>>());
    let runs = claim_runs(&*store, WORKER, 6, T0);
    for id in &ids {
        assert_eq!(store.cancel(*id, at(1)).unwrap(), CancelOutcome::Requested);
    }
    assert_eq!(store.cancel(ids[0], at(2)).unwrap(), CancelOutcome::Requested, "repeated");
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.status, rec.cancel_requested, rec.updated_at), (JobStatus::Running, true, at(1)));
    let renewal = store.renew(WORKER, &runs, at(60)).unwrap();
    assert_eq!(renewal, Renewal::new(vec![], runs.clone()), "renewed, and told to stop");
    assert_eq!(store.get(ids[0]).unwrap().unwrap().lease_until, Some(at(60)));
    let writes = [
        Write::retry(runs[0], "stopped", at(5)),
        Write::fail(runs[1], "gave up"),
        Write::wait_children(runs[2], FanIn { index: 0, need: 1, tolerate: 0 }, vec![job("b")]),
        Write::complete(runs[3], b"7".to_vec()),
    ];
    assert_eq!(commit(&*store, WORKER, at(3), &writes), vec![WriteOutcome::Applied; 4]);
    assert_eq!(store.release(WORKER, &[runs[4]], at(3)).unwrap(), 1);
    commit(&*store, WORKER, at(3), &[Write::start(runs[5])]);
    let reclaimed = store.reclaim(&ReclaimRequest::new(at(61), 10)).unwrap();
    assert_eq!(reclaimed.cancelled, vec![ids[5]]);
    assert_eq!(reclaimed.len(), 1);
    let got: Vec<_> = ids.iter().map(|id| store.get(*id).unwrap().unwrap()).collect();
    let statuses: Vec<_> = got.iter().map(|r| r.status).collect();
    let cancelled = JobStatus::Cancelled;
    assert_eq!(statuses, [cancelled, cancelled, cancelled, JobStatus::Completed, cancelled, cancelled]);
    assert_eq!((got[0].last_error.as_deref(), got[1].last_error.as_deref()), (Some("stopped"), Some("gave up")));
    assert!(got.iter().all(|r| !r.cancel_requested && r.locked_by.is_none() && r.finished_at.is_some()));
    assert_eq!(got[3].result.as_deref(), Some(&b"7"[..]));
    assert!(store.list(&JobFilter::new().parent(ids[2])).unwrap().is_empty(), "no child inserted");
    // Requeued, it runs again like any job.
    assert_eq!(store.requeue(ids[0], at(70)).unwrap(), RequeueOutcome::Requeued);
    let again = claim_runs(&*store, WORKER, 1, at(70))[0];
    assert_eq!(store.renew(WORKER, &[again], at(99)).unwrap(), Renewal::default());
}

/// Cancelling a parent cancels its waiting children and asks its running ones to stop; each
/// is counted by the fan-in when it ends.
pub fn cancel_reaches_running_descendants(h: &dyn Harness) {
    let store = h.open();
    let parent = insert(&*store, &[job("a")])[0];
    let run = claim_runs(&*store, WORKER, 1, T0)[0];
    let rule = FanIn { index: 0, need: 2, tolerate: 0 };
    commit(&*store, WORKER, at(1), &[Write::wait_children(run, rule, vec![job("b"), job("b")])]);
    let kids: Vec<JobId> = store.list(&JobFilter::new().parent(parent)).unwrap().iter().map(|k| k.id).collect();
    let child_run = claim_runs(&*store, WORKER, 1, at(2))[0];
    assert_eq!(child_run.job, kids[0]);
    assert_eq!(store.cancel(parent, at(3)).unwrap(), CancelOutcome::Cancelled);
    assert_eq!((status(&*store, kids[0]), status(&*store, kids[1])), (JobStatus::Running, JobStatus::Cancelled));
    assert!(store.get(kids[0]).unwrap().unwrap().cancel_requested);
    let link = Some(ChildOf { parent, index: 0 });
    let end = Write::fail(child_run, "stopped").with_parent(link);
    assert_eq!(commit(&*store, WORKER, at(4), &[end]), vec![WriteOutcome::Applied]);
    assert_eq!(status(&*store, kids[0]), JobStatus::Cancelled);
}

/// A paused job is not claimed, keeps its place and its wait, and returns where it was.
pub fn pausing_keeps_a_job_and_its_wait(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a").run_at(at(100)), job("a"), job("a"), job("a")]);
    // ids[2]: waits for a signal; ids[3]: sleeps until 50; ids[4] stays pending.
    let runs = claim_runs(&*store, WORKER, 5, T0);
    let (sleeper, waiter) = (runs.iter().find(|r| r.job == ids[3]).copied().unwrap(), runs[1]);
    assert_eq!(waiter.job, ids[2]);
    let waits = [Write::wait_signal(waiter, "go", None), Write::suspend(sleeper, Some(at(50)))];
    assert_eq!(commit(&*store, WORKER, at(1), &waits), vec![WriteOutcome::Applied; 2]);
    assert_eq!(store.release(WORKER, &[runs[0], runs[3]], at(1)).unwrap(), 2);
    for id in &ids[..4] {
        assert_eq!(store.pause(*id, at(2)).unwrap(), PauseOutcome::Paused, "job {id}");
    }
    assert_eq!(store.pause(ids[0], at(3)).unwrap(), PauseOutcome::AlreadyPaused);
    let rec = store.get(ids[2]).unwrap().unwrap();
    assert_eq!((rec.status, rec.updated_at, rec.wait_signal.as_deref()), (JobStatus::Paused, at(2), Some("go")));
    assert_eq!(claim_ids(&*store, WORKER, 5, at(200)), vec![ids[4]], "paused jobs are not claimed nor woken");
    match store.signal(ids[2], "go", b"1", at(201)).unwrap() {
        SignalOutcome::Sent { woke, .. } => assert!(!woke, "a paused job is not woken"),
        other => panic!("{other:?}"),
    }
    assert_eq!(status(&*store, ids[2]), JobStatus::Paused);
    assert_eq!(store.resume(ids[0], at(202)).unwrap(), ResumeOutcome::Resumed(JobStatus::Pending));
    assert_eq!(store.resume(ids[2], at(202)).unwrap(), ResumeOutcome::Resumed(JobStatus::Pending), "signal came");
    assert_eq!(store.get(ids[2]).unwrap().unwrap().wait_signal, None);
    assert_eq!(store.resume(ids[3], at(202)).unwrap(), ResumeOutcome::Resumed(JobStatus::Waiting));
    assert_eq!(store.resume(ids[0], at(203)).unwrap(), ResumeOutcome::NotPaused(JobStatus::Pending));
    let rec = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((rec.run_at, rec.updated_at), (T0, at(202)), "its place in line kept");
    assert_eq!(store.cancel(ids[1], at(204)).unwrap(), CancelOutcome::Cancelled, "a paused job can be cancelled");
    let mut woken = claim_ids(&*store, WORKER, 5, at(205));
    woken.sort();
    assert_eq!(woken, vec![ids[0], ids[2], ids[3]], "the sleeper is due");
    assert_eq!(store.pause(ids[0], at(206)).unwrap(), PauseOutcome::Running);
    assert_eq!(store.pause(ids[1], at(206)).unwrap(), PauseOutcome::Finished(JobStatus::Cancelled));
    let unknown = JobId(ids[4].0 + 100);
    assert_eq!(store.pause(unknown, at(206)).unwrap(), PauseOutcome::NotFound);
    assert_eq!(store.resume(unknown, at(206)).unwrap(), ResumeOutcome::NotFound);
    // A scheduled job resumes scheduled until due.
    let later = insert(&*store, &[job("a").run_at(at(500))])[0];
    assert_eq!(store.pause(later, at(207)).unwrap(), PauseOutcome::Paused);
    assert_eq!(store.resume(later, at(208)).unwrap(), ResumeOutcome::Resumed(JobStatus::Scheduled));
}

/// A paused parent counts its children and wakes only when resumed.
pub fn a_paused_parent_counts_its_children(h: &dyn Harness) {
    let store = h.open();
    let parent = insert(&*store, &[job("a")])[0];
    let run = claim_runs(&*store, WORKER, 1, T0)[0];
    let rule = FanIn { index: 1, need: 1, tolerate: 0 };
    commit(&*store, WORKER, at(1), &[Write::wait_children(run, rule, vec![job("b")])]);
    assert_eq!(store.pause(parent, at(2)).unwrap(), PauseOutcome::Paused);
    let child = claim_runs(&*store, WORKER, 1, at(3))[0];
    let done = Write::complete(child, b"1".to_vec()).with_parent(Some(ChildOf { parent, index: 1 }));
    commit(&*store, WORKER, at(4), &[done]);
    let rec = store.get(parent).unwrap().unwrap();
    assert_eq!((rec.status, rec.wait_children.map(|w| w.succeeded)), (JobStatus::Paused, Some(1)));
    assert_eq!(store.resume(parent, at(5)).unwrap(), ResumeOutcome::Resumed(JobStatus::Pending), "decided");
    assert_eq!(claim_ids(&*store, WORKER, 1, at(6)), vec![parent]);
}

/// No claim takes a job of a paused queue, promotes its due jobs or reports them due; the
/// pause is durable and undone by resuming.
pub fn a_paused_queue_is_not_claimed(h: &dyn Harness) {
    let store = h.open();
    let mail = |j: crate::NewJob| crate::NewJob { queue: "mail".into(), ..j };
    let ids = insert(&*store, &[mail(job("a")), mail(job("a").run_at(at(10))), job("a"), job("a").run_at(at(20))]);
    store.pause_queue("mail", true, T0).unwrap();
    store.pause_queue("mail", true, T0).unwrap();
    store.pause_queue("never-used", true, T0).unwrap();
    drop(store);
    let store = h.open();
    assert_eq!(store.paused_queues().unwrap(), ["mail", "never-used"]);
    let req = claim_req(WORKER, 5, at(1)).queues(["default", "mail"]);
    let claimed = store.claim(&req).unwrap();
    assert_eq!(claimed.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), vec![ids[2]]);
    assert_eq!(claimed.next_due, Some(at(20)), "the paused queue's due time is not reported");
    assert!(store.claim(&claim_req(WORKER, 5, at(15)).queues(["mail"])).unwrap().jobs.is_empty());
    assert_eq!(status(&*store, ids[1]), JobStatus::Scheduled, "not promoted");
    store.pause_queue("mail", false, at(16)).unwrap();
    assert_eq!(store.paused_queues().unwrap(), ["never-used"]);
    let claimed = store.claim(&claim_req(WORKER, 5, at(16)).queues(["mail"])).unwrap();
    assert_eq!(claimed.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), vec![ids[0], ids[1]]);
}

/// Purging deletes old finished jobs of one status, oldest first, with their checkpoints and
/// signals, and never a child whose parent is live.
pub fn purge_deletes_old_finished_jobs_with_their_data(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &(0..5).map(|_| job("a").max_attempts(1)).collect::<Vec<_>>());
    store.signal(ids[0], "left", b"1", T0).unwrap();
    let runs = claim_runs(&*store, WORKER, 5, T0);
    let step = Write::checkpoint(runs[0], Checkpoint::value(0, "s", b"1".to_vec()));
    commit(&*store, WORKER, at(1), &[step]);
    commit(&*store, WORKER, at(10), &[Write::complete(runs[1], b"1".to_vec())]);
    commit(&*store, WORKER, at(5), &[Write::complete(runs[0], b"1".to_vec())]);
    commit(&*store, WORKER, at(6), &[Write::fail(runs[2], "x")]);
    // ids[3] waits for a child that completes at 7; ids[4] stays running.
    let rule = FanIn { index: 0, need: 1, tolerate: 0 };
    commit(&*store, WORKER, at(7), &[Write::wait_children(runs[3], rule, vec![job("a")])]);
    let child = store.list(&JobFilter::new().parent(ids[3])).unwrap()[0].id;
    let child_run = claim_runs(&*store, WORKER, 1, at(7))[0];
    assert_eq!(child_run.job, child);
    commit(&*store, WORKER, at(7), &[Write::complete(child_run, b"1".to_vec())]);
    let purge = |status, secs, limit| store.purge(&PurgeRequest::new(status, at(secs), limit)).unwrap();
    assert_eq!(purge(JobStatus::Completed, 100, 1), 1, "the limit");
    assert!(store.get(ids[0]).unwrap().is_none(), "the oldest finished first");
    assert!(store.checkpoints(ids[0], 0, 10).unwrap().is_empty() && store.signals(ids[0]).unwrap().is_empty());
    assert_eq!(purge(JobStatus::Completed, 10, 10), 0, "finished at 10 is not before 10");
    assert_eq!(purge(JobStatus::Completed, 11, 10), 1);
    assert!(store.get(child).unwrap().is_some(), "its parent is live");
    assert_eq!(purge(JobStatus::Failed, 100, 10), 1);
    assert!(store.get(ids[2]).unwrap().is_none());
    let err = store.purge(&PurgeRequest::new(JobStatus::Pending, at(100), 10)).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidInput);
    assert_eq!(store.cancel(ids[3], at(20)).unwrap(), CancelOutcome::Cancelled);
    assert_eq!(purge(JobStatus::Completed, 100, 10), 1, "the child, once its parent finished");
    assert_eq!(store.list(&JobFilter::new()).unwrap().iter().map(|j| j.id).collect::<Vec<_>>(), [ids[3], ids[4]]);
}

/// Deleting by id removes finished jobs only, and says why it kept the others.
pub fn delete_reports_what_it_did(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a"), job("a"), job("a")]);
    let runs = claim_runs(&*store, WORKER, 2, T0);
    commit(
        &*store,
        WORKER,
        at(1),
        &[Write::wait_children(runs[0], FanIn { index: 0, need: 1, tolerate: 0 }, vec![job("b")])],
    );
    let child = store.list(&JobFilter::new().parent(ids[0])).unwrap()[0].id;
    assert_eq!(store.cancel(child, at(2)).unwrap(), CancelOutcome::Cancelled);
    commit(&*store, WORKER, at(2), &[Write::complete(runs[1], b"1".to_vec())]);
    let unknown = JobId(child.0 + 100);
    let got = store.delete(&[ids[1], ids[2], child, unknown, ids[1]]).unwrap();
    let expected = [
        DeleteOutcome::Deleted,
        DeleteOutcome::NotFinished(JobStatus::Pending),
        DeleteOutcome::ParentLive(ids[0]),
        DeleteOutcome::NotFound,
        DeleteOutcome::NotFound,
    ];
    assert_eq!(got, expected);
    assert!(store.get(ids[1]).unwrap().is_none());
}

/// One holder of a role at a time, until its lease ends.
pub fn lead_grants_one_holder_at_a_time(h: &dyn Harness) {
    let store = h.open();
    assert!(store.lead("retention", "w1", T0, at(10)).unwrap());
    assert!(!store.lead("retention", "w2", at(5), at(15)).unwrap());
    assert!(store.lead("retention", "w1", at(5), at(20)).unwrap(), "renewed");
    assert!(store.lead("schedules", "w2", at(5), at(15)).unwrap(), "roles are independent");
    drop(store);
    let store = h.open();
    assert!(!store.lead("retention", "w2", at(20), at(30)).unwrap(), "held until its end");
    assert!(store.lead("retention", "w2", at(21), at(30)).unwrap(), "taken over after it");
    assert!(!store.lead("retention", "w1", at(22), at(40)).unwrap());
}

/// Requeueing many: each as `requeue` does; and dead jobs are found by their error.
pub fn requeue_many_and_error_filters(h: &dyn Harness) {
    let store = h.open();
    let ids = insert(&*store, &[job("a").max_attempts(1), job("a").max_attempts(1), job("a")]);
    let runs = claim_runs(&*store, WORKER, 2, T0);
    let fails = [Write::fail(runs[0], "card declined: 402"), Write::fail(runs[1], "timeout talking to bank")];
    commit(&*store, WORKER, at(1), &fails);
    let dead = JobFilter::new().status(JobStatus::Failed);
    let found = store.list(&dead.clone().error_contains("declined")).unwrap();
    assert_eq!(found.iter().map(|j| j.id).collect::<Vec<_>>(), vec![ids[0]]);
    assert!(store.list(&dead.error_contains("Declined")).unwrap().is_empty(), "case-sensitive");
    let got = store.requeue_many(&[ids[0], ids[2], ids[1]], at(2)).unwrap();
    let expected =
        [RequeueOutcome::Requeued, RequeueOutcome::NotFinished(JobStatus::Pending), RequeueOutcome::Requeued];
    assert_eq!(got, expected);
    assert_eq!(store.requeue_many(&[ids[0]], at(3)).unwrap(), [RequeueOutcome::NotFinished(JobStatus::Pending)]);
    let rec = store.get(ids[1]).unwrap().unwrap();
    assert_eq!((rec.status, rec.attempt, rec.run_at), (JobStatus::Pending, 0, at(2)));
}

/// A running child asked to cancel and then released, or reclaimed, ends `Cancelled` and is
/// counted by its waiting parent's fan-in, which it may decide.
pub fn cancelled_children_ending_otherwise_are_counted(h: &dyn Harness) {
    let store = h.open();
    let parent = insert(&*store, &[job("a")])[0];
    let run = claim_runs(&*store, WORKER, 1, T0)[0];
    let rule = FanIn { index: 3, need: 2, tolerate: 2 };
    commit(&*store, WORKER, at(1), &[Write::wait_children(run, rule, vec![job("b"), job("b")])]);
    let kids = claim_runs(&*store, WORKER, 2, at(2));
    commit(&*store, WORKER, at(2), &[Write::start(kids[1])]);
    for kid in &kids {
        assert_eq!(store.cancel(kid.job, at(3)).unwrap(), CancelOutcome::Requested);
    }
    assert_eq!(store.release(WORKER, &[kids[0]], at(4)).unwrap(), 1);
    let rec = store.get(parent).unwrap().unwrap();
    assert_eq!((rec.status, rec.wait_children.map(|w| w.failed)), (JobStatus::Waiting, Some(1)));
    let released = store.get(kids[0].job).unwrap().unwrap();
    assert_eq!((released.status, released.attempt), (JobStatus::Cancelled, 0), "not charged");
    let reclaimed = store.reclaim(&ReclaimRequest::new(at(40), 10)).unwrap();
    assert_eq!(reclaimed.cancelled, vec![kids[1].job]);
    let lost = store.get(kids[1].job).unwrap().unwrap();
    assert_eq!((lost.status, lost.attempt), (JobStatus::Cancelled, 1), "its start was recorded: charged");
    assert_eq!(store.get(parent).unwrap().unwrap().status, JobStatus::Pending, "the fan-in is decided");
}
