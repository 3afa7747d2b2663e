//! The heartbeat: renews the leases of every held run, on a thread of its own so that no
//! other work (a reaper's batch, a slow claim) delays it.

use std::sync::Arc;

use super::WorkerShared;

pub(crate) fn run(shared: &Arc<WorkerShared>) {
    let every = shared.lease / 3;
    loop {
        let next = shared.clock().monotonic().saturating_add(every);
        if shared.wait_stop(next) {
            return;
        }
        renew(shared);
    }
}

/// Renews every held run's lease; runs whose lease is gone are told so, and runs whose job was
/// cancelled are asked to stop.
pub(crate) fn renew(shared: &WorkerShared) {
    let claims = shared.held.renewable();
    if claims.is_empty() {
        return;
    }
    let lease_until = shared.queue.now().saturating_add(shared.lease);
    match shared.queue.store.renew(&shared.worker_id, &claims, lease_until) {
        Ok(renewal) => {
            if !renewal.cancelled.is_empty() {
                shared.held.cancel(&renewal.cancelled);
            }
            let lost = shared.held.lose_running(&renewal.lost);
            if !lost.is_empty() {
                let jobs: Vec<_> = lost.iter().map(|c| c.job).collect();
                tracing::warn!(?jobs, "leases lost; the jobs' writes will be refused");
            }
        }
        // Two more heartbeats come before the lease runs out.
        Err(e) => tracing::warn!(error = %e, jobs = claims.len(), "lease renewal failed"),
    }
}
