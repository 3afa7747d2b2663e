//! The dispatcher: claims batches of ready jobs and hands them to worker threads, sleeping
//! until a job can be ready: an enqueue or a freed slot rings it, the earliest due time a
//! claim reports wakes it, and the poll interval covers work written by other processes.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use durable_jobs_store::{ClaimRequest, Claimed};

use super::{Dispatched, WorkerShared};
use crate::failpoint::failpoint;

pub(crate) fn run(shared: &Arc<WorkerShared>, jobs: &Sender<Dispatched>) {
    let mut error_pause = Duration::ZERO;
    while !shared.stopping() {
        let free = shared.pace.capacity().saturating_sub(shared.held.len());
        if free == 0 {
            shared.doorbell.wait(shared.poll_interval);
            continue;
        }
        let claiming = std::time::Instant::now();
        let claimed = claim(shared, free);
        shared.pace.record_claim(claiming.elapsed());
        match claimed {
            Ok(claimed) => {
                if !claimed.jobs.is_empty() {
                    failpoint!("after-claim");
                }
                error_pause = Duration::ZERO;
                let full = claimed.jobs.len() == free;
                if let Some(due) = claimed.next_due {
                    shared.doorbell.ring_at(due);
                }
                for job in claimed.jobs {
                    let signal = shared.held.insert(job.claim());
                    // Never blocks: the channel holds the largest capacity, and no more jobs
                    // than that are held. Fails only if every worker thread is gone.
                    if jobs.send((job, signal)).is_err() {
                        return;
                    }
                }
                if full {
                    continue; // more may be ready
                }
            }
            Err(e) => {
                // Back off instead of spinning on a failing store; a slot or an enqueue
                // does not cut the pause short.
                error_pause = (error_pause * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                tracing::warn!(error = %e, pause = ?error_pause, "claim failed");
                crate::wait::sleep(shared.clock(), error_pause);
                continue;
            }
        }
        shared.doorbell.wait(shared.poll_interval);
    }
}

fn claim(shared: &WorkerShared, limit: usize) -> Result<Claimed, durable_jobs_store::StoreError> {
    let names = shared.queue.registry.read().names();
    if names.is_empty() {
        return Ok(Claimed::default());
    }
    let now = shared.queue.now();
    let req = ClaimRequest::new(&*shared.worker_id, now, now.saturating_add(shared.lease))
        .queues(shared.queues.iter().cloned())
        .names(names.iter().cloned())
        .limit(limit)
        .exclude(shared.queue.quarantined());
    shared.queue.store.claim(&req)
}
