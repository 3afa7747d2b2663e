//! The dispatcher: claims batches of ready jobs and hands them to worker threads.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use durable_jobs_store::{ClaimRequest, ClaimedJob};

use super::{JobSignal, WorkerShared};
use crate::failpoint::failpoint;

pub(crate) fn run(shared: &WorkerShared, jobs: &Sender<(ClaimedJob, Arc<JobSignal>)>) {
    let mut error_pause = Duration::ZERO;
    while !shared.stopping.load(Ordering::Acquire) {
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
                if !claimed.is_empty() {
                    failpoint!("after-claim");
                }
                error_pause = Duration::ZERO;
                let full = claimed.len() == free;
                for job in claimed {
                    let signal = shared.held.insert(job.id);
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
                std::thread::sleep(error_pause);
                continue;
            }
        }
        shared.doorbell.wait(shared.poll_interval);
    }
}

fn claim(shared: &WorkerShared, limit: usize) -> Result<Vec<ClaimedJob>, durable_jobs_store::StoreError> {
    let names = shared.queue.registry.read().names();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let now = shared.queue.now();
    shared.queue.store.claim(&ClaimRequest {
        worker: shared.worker_id.clone(),
        queues: shared.queues.clone(),
        names: names.to_vec(),
        limit,
        now,
        lease_until: now.saturating_add(shared.lease),
    })
}
