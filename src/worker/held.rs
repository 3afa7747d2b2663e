//! The jobs a worker holds leases on, each with a signal its handler can read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use durable_jobs_store::JobId;
use parking_lot::Mutex;

const RUNNING: u8 = 0;
const CANCELLED: u8 = 1;
const LEASE_LOST: u8 = 2;

/// Tells a running handler to stop, and why.
#[derive(Debug, Default)]
pub(crate) struct JobSignal(AtomicU8);

impl JobSignal {
    pub(crate) fn cancel(&self) {
        let _ = self.0.compare_exchange(RUNNING, CANCELLED, Ordering::Release, Ordering::Relaxed);
    }

    pub(crate) fn lose_lease(&self) {
        self.0.store(LEASE_LOST, Ordering::Release);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire) == CANCELLED
    }

    pub(crate) fn is_lease_lost(&self) -> bool {
        self.0.load(Ordering::Acquire) == LEASE_LOST
    }
}

/// Jobs claimed by this worker and not yet handed to the committer.
#[derive(Debug, Default)]
pub(crate) struct Held(Mutex<HashMap<JobId, Arc<JobSignal>>>);

impl Held {
    pub(crate) fn insert(&self, id: JobId) -> Arc<JobSignal> {
        let signal = Arc::new(JobSignal::default());
        self.0.lock().insert(id, signal.clone());
        signal
    }

    pub(crate) fn remove(&self, id: JobId) {
        self.0.lock().remove(&id);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.lock().len()
    }

    pub(crate) fn ids(&self) -> Vec<JobId> {
        self.0.lock().keys().copied().collect()
    }

    pub(crate) fn signal(&self, id: JobId) -> Option<Arc<JobSignal>> {
        self.0.lock().get(&id).cloned()
    }

    /// Asks every held job to stop.
    pub(crate) fn cancel_all(&self) {
        for signal in self.0.lock().values() {
            signal.cancel();
        }
    }
}
