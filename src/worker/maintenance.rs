//! Lease renewal for held jobs, and the reaper that recovers jobs of dead workers.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::WorkerShared;

pub(crate) fn run(shared: &WorkerShared, stop: &Receiver<()>) {
    let heartbeat_every = shared.lease / 3;
    let reap_every = (shared.lease / 2).min(Duration::from_secs(1));
    let mut next_heartbeat = Instant::now() + heartbeat_every;
    let mut next_reap = Instant::now();
    loop {
        match stop.recv_deadline(next_heartbeat.min(next_reap)) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        if now >= next_heartbeat {
            heartbeat(shared);
            next_heartbeat = now + heartbeat_every;
        }
        if now >= next_reap {
            reap(shared);
            next_reap = now + reap_every;
        }
    }
}

/// Renews the leases of every held job; jobs whose lease is gone are told so.
fn heartbeat(shared: &WorkerShared) {
    let ids = shared.held.ids();
    if ids.is_empty() {
        return;
    }
    let lease_until = shared.queue.now().saturating_add(shared.lease);
    match shared.queue.store.renew(&shared.worker_id, &ids, lease_until) {
        Ok(lost) => {
            for id in lost {
                if let Some(signal) = shared.held.signal(id) {
                    tracing::warn!(job = %id, "lease lost; the job's writes will be refused");
                    signal.lose_lease();
                }
            }
        }
        // Two more heartbeats come before the lease runs out.
        Err(e) => tracing::warn!(error = %e, jobs = ids.len(), "lease renewal failed"),
    }
}

/// Returns jobs with expired leases to the queue and wakes jobs whose sleep is over.
fn reap(shared: &WorkerShared) {
    let now = shared.queue.now();
    match shared.queue.store.reclaim_expired(now) {
        Ok(r) if !r.is_empty() => {
            tracing::info!(requeued = ?r.requeued, failed = ?r.failed, "reclaimed jobs with expired leases");
            shared.doorbell.ring();
            shared.queue.notify_committed();
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "reclaiming expired leases failed"),
    }
    match shared.queue.store.wake_due(now) {
        Ok(0) => {}
        Ok(_) => shared.doorbell.ring(),
        Err(e) => tracing::warn!(error = %e, "waking due jobs failed"),
    }
}
