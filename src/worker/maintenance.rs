//! Lease renewal for held jobs, and the reaper that recovers jobs of dead workers.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use durable_jobs_store::Timestamp;

use super::WorkerShared;
use crate::failpoint::failpoint;

pub(crate) fn run(shared: &WorkerShared, stop: &Receiver<()>) {
    let heartbeat_every = shared.lease / 3;
    let reap_every = (shared.lease / 2).min(Duration::from_secs(1));
    let mut next_heartbeat = Instant::now() + heartbeat_every;
    let mut next_reap = Instant::now();
    let mut clock = ClockWatch::new(shared);
    loop {
        match stop.recv_deadline(next_heartbeat.min(next_reap)) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        // After a wall-clock jump our own leases may look expired: renew them before reaping,
        // so that the reaper does not take jobs from the living.
        let jumped = clock.jumped(shared);
        if jumped || now >= next_heartbeat {
            heartbeat(shared);
            next_heartbeat = now + heartbeat_every;
        }
        if now >= next_reap {
            reap(shared);
            next_reap = now + reap_every;
        }
    }
}

/// Notices when the wall clock moves differently from the monotonic clock.
struct ClockWatch {
    mono: Instant,
    wall: Timestamp,
    tolerance: Duration,
}

impl ClockWatch {
    fn new(shared: &WorkerShared) -> Self {
        ClockWatch { mono: Instant::now(), wall: shared.queue.now(), tolerance: shared.lease / 4 }
    }

    fn jumped(&mut self, shared: &WorkerShared) -> bool {
        let (mono, wall) = (Instant::now(), shared.queue.now());
        let expected = i64::try_from(mono.duration_since(self.mono).as_micros()).unwrap_or(i64::MAX);
        let drift = wall.0.saturating_sub(self.wall.0).saturating_sub(expected);
        (self.mono, self.wall) = (mono, wall);
        let jumped = drift.unsigned_abs() > u64::try_from(self.tolerance.as_micros()).unwrap_or(u64::MAX);
        if jumped {
            tracing::warn!(drift_us = drift, "the wall clock jumped; renewing leases before reaping");
        }
        jumped
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
            failpoint!("during-reclaim");
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
