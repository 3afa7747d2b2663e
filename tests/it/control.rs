//! Issue 11: operator control. Cancelling a running job stops it (at once in this process,
//! within a heartbeat from another); pausing holds jobs and queues back; dead letters are found
//! by their error and requeued in bulk.

use std::time::Duration;

use durable_jobs::{
    call, fan_out, CancelOutcome, Child, Error, FanInStrategy, JobContext, JobFilter, JobId, JobOptions, JobStatus,
    PauseOutcome, Queue, ResumeOutcome,
};

use crate::support::{wait_until, Backend, Ledger, PATIENCE};

/// Registers "stubborn": records "started", then works until told to stop, records "stopped",
/// and tries one more step, which must refuse to start.
fn register_stubborn(queue: &Queue, ledger: &Ledger) {
    let l = ledger.clone();
    queue
        .register("step", move |_: &JobContext, (): ()| -> Result<(), Error> {
            l.record("step ran");
            Ok(())
        })
        .unwrap();
    let l = ledger.clone();
    queue
        .register("stubborn", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
            l.record("started");
            while !ctx.is_cancelled() {
                std::thread::sleep(Duration::from_millis(2));
            }
            l.record("stopped");
            call::<()>(ctx, "step", &())
        })
        .unwrap();
}

fn status(queue: &Queue, id: JobId) -> JobStatus {
    queue.job(id).unwrap().unwrap().status
}

/// A running job cancelled in its own process is told at once, runs no further step, and ends
/// `Cancelled` with its attempt, not retried.
pub fn cancelling_a_running_job_stops_it(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    register_stubborn(&queue, &ledger);
    let events = Ledger::default();
    let e = events.clone();
    queue
        .on_event(move |event| e.record(format!("{:?}", event.kind).split([' ', '{']).next().unwrap_or("").to_owned()));
    // Leases far longer than the test: only the in-process path can tell the handler.
    let worker = queue.worker().concurrency(1).lease(Duration::from_secs(3600)).start().unwrap();
    let id = queue.enqueue("stubborn", &(), JobOptions::new().retries(3)).unwrap();
    ledger.wait_for("started", 1);
    assert_eq!(queue.cancel(id).unwrap(), CancelOutcome::Requested);
    let info = queue.wait(id, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!((info.status, info.attempt), (JobStatus::Cancelled, 1), "{info:?}");
    assert_eq!((ledger.count("started"), ledger.count("stopped"), ledger.count("step ran")), (1, 1, 0));
    assert_eq!(events.entries(), ["Started", "Cancelled"], "told as cancelled, not failed");
}

/// Cancelled through another handle on the store (as another process would), the handler is
/// told at its worker's next heartbeat.
pub fn a_cancel_from_another_process_arrives_with_the_heartbeat(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    register_stubborn(&queue, &ledger);
    let worker = queue.worker().concurrency(1).lease(Duration::from_millis(300)).start().unwrap();
    let id = queue.enqueue("stubborn", &(), JobOptions::new()).unwrap();
    ledger.wait_for("started", 1);
    let operator = db.queue();
    assert_eq!(operator.cancel(id).unwrap(), CancelOutcome::Requested);
    let info = queue.wait(id, PATIENCE).unwrap();
    worker.shutdown();
    assert_eq!(info.status, JobStatus::Cancelled);
    assert_eq!((ledger.count("stopped"), ledger.count("step ran")), (1, 0));
}

/// Cancelling a waiting workflow cancels its children: those waiting to run at once, the
/// running ones by asking them to stop.
pub fn cancelling_a_workflow_stops_its_running_children(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    register_stubborn(&queue, &ledger);
    queue
        .register("parent", |ctx: &JobContext, (): ()| -> Result<(), Error> {
            let children = (0..4).map(|_| Child::new("stubborn", &())).collect();
            fan_out::<()>(ctx, children, FanInStrategy::CollectAll).map(drop)
        })
        .unwrap();
    let worker = queue.worker().concurrency(2).lease(Duration::from_secs(3600)).start().unwrap();
    let id = queue.enqueue("parent", &(), JobOptions::new()).unwrap();
    ledger.wait_for("started", 2);
    assert_eq!(queue.cancel(id).unwrap(), CancelOutcome::Cancelled);
    let children = queue.list(&JobFilter::new().parent(id)).unwrap();
    for child in &children {
        assert_eq!(queue.wait(child.id, PATIENCE).unwrap().status, JobStatus::Cancelled);
    }
    worker.shutdown();
    assert_eq!(children.len(), 4);
    assert_eq!((ledger.count("started"), ledger.count("stopped"), ledger.count("step ran")), (2, 2, 0));
}

/// A paused job is not run until resumed; a paused queue is not claimed from until resumed,
/// while the worker runs its other queues; a workflow paused while it waits gets the signal
/// sent meanwhile when resumed.
pub fn pausing_holds_jobs_and_queues_back(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("note", move |_: &JobContext, tag: String| -> Result<(), Error> {
            l.record(tag);
            Ok(())
        })
        .unwrap();
    queue.register("approve", |ctx: &JobContext, (): ()| durable_jobs::wait_signal::<String>(ctx, "ok")).unwrap();
    let held = queue.enqueue("note", "held", JobOptions::new()).unwrap();
    assert_eq!(queue.pause(held).unwrap(), PauseOutcome::Paused);
    queue.pause_queue("mail").unwrap();
    assert_eq!(queue.paused_queues().unwrap(), ["mail"]);
    let mail = queue.enqueue("note", "mail", JobOptions::new().queue("mail")).unwrap();
    let flow = queue.enqueue("approve", &(), JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(2).queues(["default", "mail"]).start().unwrap();
    let other = queue.enqueue("note", "other", JobOptions::new()).unwrap();
    queue.wait(other, PATIENCE).unwrap();
    wait_until("the workflow waits", || status(&queue, flow) == JobStatus::Waiting);
    assert_eq!(queue.pause(flow).unwrap(), PauseOutcome::Paused);
    queue.signal(flow, "ok", "yes").unwrap();
    queue.wait_idle(PATIENCE).unwrap();
    assert_eq!(
        (status(&queue, held), status(&queue, mail), status(&queue, flow)),
        (JobStatus::Paused, JobStatus::Pending, JobStatus::Paused)
    );
    assert_eq!(ledger.entries(), ["other"]);
    assert_eq!(queue.resume(flow).unwrap(), ResumeOutcome::Resumed(JobStatus::Pending), "its signal came");
    assert_eq!(queue.resume(held).unwrap(), ResumeOutcome::Resumed(JobStatus::Pending));
    queue.resume_queue("mail").unwrap();
    for id in [held, mail, flow] {
        assert_eq!(queue.wait(id, PATIENCE).unwrap().status, JobStatus::Completed);
    }
    worker.shutdown();
    assert_eq!(queue.result::<String>(flow).unwrap(), "yes");
    assert_eq!((ledger.count("held"), ledger.count("mail")), (1, 1));
    assert!(queue.paused_queues().unwrap().is_empty());
}

/// Dead letters are listed by queue, name and error text, requeued in bulk (a workflow
/// resumes after its last checkpoint) and deleted by filter.
pub fn dead_letters_are_found_requeued_and_purged(db: &dyn Backend) {
    let queue = db.queue();
    let ledger = Ledger::default();
    let broken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (l, b) = (ledger.clone(), broken.clone());
    queue
        .register("charge", move |ctx: &JobContext, n: u32| -> Result<u32, Error> {
            ctx.step("reserve", || {
                l.record(format!("reserve {n}"));
                Ok::<_, std::io::Error>(())
            })?;
            if b.load(std::sync::atomic::Ordering::SeqCst) {
                let why = if n.is_multiple_of(2) { "card declined" } else { "bank unreachable" };
                return Err(Error::permanent(std::io::Error::other(format!("{why} ({n})"))));
            }
            Ok(n)
        })
        .unwrap();
    let ids: Vec<JobId> = (0..10).map(|n| queue.enqueue("charge", &n, JobOptions::new()).unwrap()).collect();
    while queue.run_one("default").unwrap().is_some() {}
    let declined = JobFilter::dead_letters().name("charge").error_contains("declined");
    let found: Vec<JobId> = queue.list(&declined).unwrap().iter().map(|j| j.id).collect();
    assert_eq!(found, ids.iter().step_by(2).copied().collect::<Vec<_>>());
    assert_eq!(queue.list(&JobFilter::dead_letters().queue("other")).unwrap().len(), 0);
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let report = queue.requeue_all(declined.clone()).unwrap();
    assert_eq!((report.requeued, report.skipped), (5, 0));
    while queue.run_one("default").unwrap().is_some() {}
    assert!(found.iter().all(|id| status(&queue, *id) == JobStatus::Completed));
    assert!((0..10).all(|n| ledger.count(&format!("reserve {n}")) == 1), "resumed after the checkpoint");
    assert_eq!(queue.requeue_all(JobFilter::new().name("charge").status(JobStatus::Completed)).unwrap().requeued, 0);
    assert_eq!(queue.purge(JobFilter::dead_letters()).unwrap(), 5);
    assert_eq!(queue.purge(JobFilter::new()).unwrap(), 5, "the completed ones");
    assert!(queue.list(&JobFilter::new()).unwrap().is_empty());
    assert!(queue.checkpoints(ids[0]).unwrap().is_empty());
}

/// Retention deletes finished jobs past their age with their checkpoints, keeps failed ones
/// for their own age, and never deletes a child whose parent still waits on it.
pub fn retention_deletes_old_finished_jobs(db: &dyn Backend) {
    let queue = db.queue();
    queue
        .register("work", |ctx: &JobContext, n: u32| -> Result<u32, Error> {
            ctx.step("half", || Ok::<_, std::io::Error>(n / 2))?;
            if n == 0 {
                return Err(Error::permanent(std::io::Error::other("zero")));
            }
            Ok(n)
        })
        .unwrap();
    queue.register("nap", |ctx: &JobContext, (): ()| ctx.sleep(Duration::from_secs(3600))).unwrap();
    queue
        .register("parent", |ctx: &JobContext, (): ()| -> Result<(), Error> {
            let children = vec![Child::new("work", &7), Child::new("nap", &())];
            fan_out::<serde_json::Value>(ctx, children, FanInStrategy::CollectAll).map(drop)
        })
        .unwrap();
    let parent = queue.enqueue("parent", &(), JobOptions::new()).unwrap();
    let ids = queue.enqueue_batch("work", &(0..30).collect::<Vec<u32>>(), JobOptions::new()).unwrap();
    let retention = durable_jobs::Retention::default().completed(Duration::ZERO).every(Duration::from_millis(20));
    let worker = queue.worker().concurrency(2).retention(retention).start().unwrap();
    let completed = || queue.list(&JobFilter::new().status(JobStatus::Completed)).unwrap();
    wait_until("the completed jobs are deleted", || {
        let left = completed();
        left.len() == 1 && left[0].parent == Some(parent)
    });
    worker.shutdown();
    let failed = queue.list(&JobFilter::dead_letters()).unwrap();
    assert_eq!(failed.iter().map(|j| j.id).collect::<Vec<_>>(), [ids[0]], "failed jobs are kept 30 days");
    assert!(queue.job(ids[1]).unwrap().is_none() && queue.checkpoints(ids[1]).unwrap().is_empty());
    assert_eq!(queue.job(parent).unwrap().unwrap().status, JobStatus::Waiting);
}

crate::backend_tests!(
    cancelling_a_running_job_stops_it,
    a_cancel_from_another_process_arrives_with_the_heartbeat,
    cancelling_a_workflow_stops_its_running_children,
    pausing_holds_jobs_and_queues_back,
    dead_letters_are_found_requeued_and_purged,
    retention_deletes_old_finished_jobs,
);
