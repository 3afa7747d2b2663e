//! What tells a running handler to stop, and why.

use std::sync::atomic::{AtomicU8, Ordering};

const RUNNING: u8 = 0;
const CANCELLED: u8 = 1;
const LEASE_LOST: u8 = 2;
const JOB_CANCELLED: u8 = 3;

/// Tells a running handler to stop: the worker is shutting down (`cancelled`), the job was
/// cancelled (`job cancelled`: its run ends `Cancelled`), or its run no longer holds the job
/// (`lease lost`: reclaimed, or given up by the timeout watchdog), in which case its writes are
/// refused too.
#[derive(Debug, Default)]
pub(crate) struct JobSignal(AtomicU8);

impl JobSignal {
    /// Asks the handler to stop (a shutdown). A lost lease stays lost.
    pub(crate) fn cancel(&self) {
        let _ = self.0.compare_exchange(RUNNING, CANCELLED, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Asks the handler to stop because its job was cancelled. A lost lease stays lost.
    pub(crate) fn cancel_job(&self) {
        let _ =
            self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| (s != LEASE_LOST).then_some(JOB_CANCELLED));
    }

    pub(crate) fn lose_lease(&self) {
        self.0.store(LEASE_LOST, Ordering::Release);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        matches!(self.0.load(Ordering::Acquire), CANCELLED | JOB_CANCELLED)
    }

    pub(crate) fn is_job_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire) == JOB_CANCELLED
    }

    pub(crate) fn is_lease_lost(&self) -> bool {
        self.0.load(Ordering::Acquire) == LEASE_LOST
    }
}
