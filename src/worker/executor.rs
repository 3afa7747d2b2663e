//! A worker thread: runs the jobs the dispatcher hands it, one at a time.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;

use super::held::ThreadSlot;
use super::{Commit, Dispatched, WorkerShared};
use crate::execute::{execute, Outcome};
use crate::observability::RunEnd;

pub(crate) fn run(shared: &Arc<WorkerShared>, jobs: &Receiver<Dispatched>, slot: &Arc<ThreadSlot>) {
    while let Ok((job, signal)) = jobs.recv() {
        if shared.stopping() {
            // Not started: stays held and is released by the shutdown.
            continue;
        }
        let (id, claim) = (job.id, job.claim());
        if !job.confirm_start {
            // Recorded in the background: a crash before it commits leaves the attempt
            // uncharged, and the job's next run confirms its start first.
            let _ = shared.committer.send(Commit::Start(claim));
        }
        let give_up_at = job.timeout.and_then(|t| shared.clock().monotonic().checked_add(t + shared.timeout_grace));
        shared.held.start(&job, slot, give_up_at);
        let started = Instant::now();
        let outcome = execute(&shared.queue, &shared.worker_id, &job, &signal);
        shared.pace.record_handler(started.elapsed());
        match outcome {
            Outcome::Writes { writes, child, run_time, ending } => {
                // Held (and renewed) until the committer has written it.
                shared.held.finishing(claim);
                let end = RunEnd::new(job, run_time, ending);
                if shared.committer.send(Commit::Writes { writes, child, end }).is_err() {
                    tracing::warn!(job = %id, "worker stopped before the outcome was written; the lease will expire");
                    shared.let_go([claim]);
                }
            }
            Outcome::Release => shared.held.unstarted(claim),
            Outcome::Discard => shared.let_go([claim]),
        }
        // After the held set says so: a shutdown quarantining this job sees one or the other.
        shared.queue.handler_returned(id);
        if slot.is_retired() {
            // The watchdog gave up on this thread's handler and started a replacement.
            return;
        }
    }
}
