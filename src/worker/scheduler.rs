//! The scheduler thread: fires the store's recurring schedules when due. Every worker runs
//! one; the store's compare-and-set on the due time makes each due time fire once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use durable_jobs_store::FireOutcome;

use super::WorkerShared;
use crate::schedule::Due;

pub(crate) fn run(shared: &Arc<WorkerShared>) {
    let mut unreadable = HashSet::new();
    loop {
        let seen = *shared.schedule_bell.lock();
        // The deadline counts from the clock reading the due times were compared with: time
        // that passed during the fires must not push it later.
        let read_at = shared.clock().monotonic();
        let deadline = read_at.saturating_add(fire_due(shared, &mut unreadable));
        let mut bell = shared.schedule_bell.lock();
        shared.schedule_bell.wait_until(shared.clock(), &mut bell, Some(deadline), |n| *n != seen);
        drop(bell);
        if *shared.internal_stop.lock() {
            return;
        }
    }
}

/// Fires every due schedule; returns how long to sleep, from when it started: until the next
/// due time, and at most the poll interval (other processes add and change schedules).
fn fire_due(shared: &WorkerShared, unreadable: &mut HashSet<String>) -> Duration {
    let poll = shared.poll_interval;
    let store = &shared.queue.store;
    let records = match store.schedules() {
        Ok(records) => records,
        Err(e) => {
            tracing::warn!(error = %e, "reading the schedules failed");
            return poll;
        }
    };
    let now = shared.queue.now();
    let mut next = now.saturating_add(poll);
    for record in records {
        if record.next_fire > now {
            next = next.min(record.next_fire);
            continue;
        }
        let due = match Due::read(&record) {
            Ok(due) => due,
            Err(e) => {
                if unreadable.insert(record.name.clone()) {
                    tracing::error!(schedule = %record.name, error = %e, "a schedule this version cannot read is not fired");
                }
                continue;
            }
        };
        let (job, after) = due.fire(now);
        match store.fire(&due.name, due.at, after, &job, now) {
            Ok(FireOutcome::Fired(enqueued)) => {
                tracing::debug!(schedule = %due.name, due = ?due.at, ?enqueued, "schedule fired");
                shared.queue.wake_workers(now);
                next = next.min(after);
            }
            // Fired by another worker, replaced or removed meanwhile: read again next round.
            Ok(_) => next = now,
            Err(e) => tracing::warn!(schedule = %due.name, error = %e, "firing a schedule failed; retried next round"),
        }
    }
    Duration::from_micros(u64::try_from(next.0.saturating_sub(now.0)).unwrap_or(0)).min(poll)
}
