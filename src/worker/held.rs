//! The runs a worker holds leases on, keyed by claim (job and token), from claim until their
//! outcome is committed.
//!
//! Keyed by claim, not by job: if a run loses its lease and the same worker claims the job
//! again, the two runs are two entries, and the old one's end cannot remove the new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[cfg(test)]
use durable_jobs_store::JobId;
use durable_jobs_store::{Claim, ClaimedJob};
use parking_lot::Mutex;

use crate::signal::JobSignal;

/// One worker thread, so that the timeout watchdog can retire the thread a stuck handler holds.
#[derive(Debug, Default)]
pub(crate) struct ThreadSlot {
    retired: AtomicBool,
}

impl ThreadSlot {
    /// The thread's handler is abandoned: a replacement takes its place, and the thread ends
    /// when the handler returns.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }
}

/// What the watchdog needs to fail a run that overran its timeout.
#[derive(Debug, Clone)]
pub(crate) struct Overrun {
    pub(crate) job: ClaimedJob,
    pub(crate) thread: Arc<ThreadSlot>,
    pub(crate) signal: Arc<JobSignal>,
}

#[derive(Debug)]
enum Phase {
    /// Claimed, not started (or handed back by its thread at shutdown).
    Waiting,
    /// Its handler runs on `thread`.
    Running { thread: Arc<ThreadSlot>, timeout: Option<Box<Timeout>> },
    /// The outcome is with the committer.
    Finishing,
}

/// A running job with a timeout: when the watchdog gives up on it, and what to fail.
#[derive(Debug)]
struct Timeout {
    give_up_at: Duration,
    job: ClaimedJob,
}

#[derive(Debug)]
struct Entry {
    signal: Arc<JobSignal>,
    phase: Phase,
}

/// The runs a worker holds.
#[derive(Debug, Default)]
pub(crate) struct Held(Mutex<HashMap<Claim, Entry>>);

impl Held {
    /// Holds a claimed run; returns the signal its handler will read.
    pub(crate) fn insert(&self, claim: Claim) -> Arc<JobSignal> {
        let signal = Arc::new(JobSignal::default());
        self.0.lock().insert(claim, Entry { signal: signal.clone(), phase: Phase::Waiting });
        signal
    }

    /// The run's handler starts on `thread`. With a timeout, the watchdog gives up on it at
    /// `give_up_at` (the clock's monotonic time).
    pub(crate) fn start(&self, job: &ClaimedJob, thread: &Arc<ThreadSlot>, give_up_at: Option<Duration>) {
        let timeout = give_up_at.map(|at| Box::new(Timeout { give_up_at: at, job: without_args(job) }));
        if let Some(entry) = self.0.lock().get_mut(&job.claim()) {
            entry.phase = Phase::Running { thread: thread.clone(), timeout };
        }
    }

    /// The run's outcome went to the committer; it stays held (renewed) until committed.
    pub(crate) fn finishing(&self, claim: Claim) {
        self.set_phase(claim, Phase::Finishing);
    }

    /// The run was handed back by its thread (the worker is stopping): released at shutdown.
    pub(crate) fn unstarted(&self, claim: Claim) {
        self.set_phase(claim, Phase::Waiting);
    }

    fn set_phase(&self, claim: Claim, phase: Phase) {
        if let Some(entry) = self.0.lock().get_mut(&claim) {
            entry.phase = phase;
        }
    }

    pub(crate) fn remove(&self, claim: Claim) {
        self.0.lock().remove(&claim);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.lock().len()
    }

    /// The runs to renew: every held one that has not lost its lease.
    pub(crate) fn renewable(&self) -> Vec<Claim> {
        self.0.lock().iter().filter(|(_, e)| !e.signal.is_lease_lost()).map(|(c, _)| *c).collect()
    }

    /// Tells these runs that their lease is gone, except those whose outcome is with the
    /// committer (a renewal racing the commit that ended the run sees it gone; if the lease
    /// was lost for real, the commit finds out). Returns the runs told.
    pub(crate) fn lose_running(&self, claims: &[Claim]) -> Vec<Claim> {
        let held = self.0.lock();
        claims
            .iter()
            .filter(|c| held.get(c).is_some_and(|e| !matches!(e.phase, Phase::Finishing)))
            .inspect(|c| held[c].signal.lose_lease())
            .copied()
            .collect()
    }

    /// Tells these runs that their lease is gone.
    pub(crate) fn lose(&self, claims: &[Claim]) {
        let held = self.0.lock();
        for claim in claims {
            if let Some(entry) = held.get(claim) {
                entry.signal.lose_lease();
            }
        }
    }

    /// Asks these runs to stop: their jobs were cancelled.
    pub(crate) fn cancel(&self, claims: &[Claim]) {
        let held = self.0.lock();
        for claim in claims {
            if let Some(entry) = held.get(claim) {
                entry.signal.cancel_job();
            }
        }
    }

    /// Asks every held run to stop.
    pub(crate) fn cancel_all(&self) {
        for entry in self.0.lock().values() {
            entry.signal.cancel();
        }
    }

    /// Takes out the running jobs the watchdog gives up on at `now`.
    pub(crate) fn overrun(&self, now: Duration) -> Vec<Overrun> {
        let mut held = self.0.lock();
        let due: Vec<Claim> = held
            .iter()
            .filter(|(_, e)| matches!(&e.phase, Phase::Running { timeout: Some(t), .. } if t.give_up_at <= now))
            .map(|(c, _)| *c)
            .collect();
        due.into_iter()
            .filter_map(|claim| {
                let entry = held.remove(&claim)?;
                let Phase::Running { thread, timeout: Some(t) } = entry.phase else { return None };
                Some(Overrun { job: t.job, thread, signal: entry.signal })
            })
            .collect()
    }

    /// When the watchdog next gives up on a running job, if any has a timeout.
    pub(crate) fn next_give_up(&self) -> Option<Duration> {
        self.0
            .lock()
            .values()
            .filter_map(|e| match &e.phase {
                Phase::Running { timeout: Some(t), .. } => Some(t.give_up_at),
                _ => None,
            })
            .min()
    }

    /// The runs claimed and not started.
    pub(crate) fn waiting(&self) -> Vec<Claim> {
        self.0.lock().iter().filter(|(_, e)| matches!(e.phase, Phase::Waiting)).map(|(c, _)| *c).collect()
    }

    /// The runs whose handler is running.
    pub(crate) fn running(&self) -> Vec<Claim> {
        self.0.lock().iter().filter(|(_, e)| matches!(e.phase, Phase::Running { .. })).map(|(c, _)| *c).collect()
    }

    /// The runs a shutdown hands back: all but those whose outcome is being committed.
    pub(crate) fn releasable(&self) -> Vec<Claim> {
        self.0.lock().iter().filter(|(_, e)| !matches!(e.phase, Phase::Finishing)).map(|(c, _)| *c).collect()
    }

    /// The jobs held, for tests and diagnostics.
    #[cfg(test)]
    pub(crate) fn jobs(&self) -> Vec<JobId> {
        self.0.lock().keys().map(|c| c.job).collect()
    }
}

/// What the watchdog needs of a job: everything but its arguments, which may be large.
fn without_args(job: &ClaimedJob) -> ClaimedJob {
    let mut slim = ClaimedJob::new(job.id, job.token, job.queue.clone(), job.name.clone(), Vec::new());
    slim.attempt = job.attempt;
    slim.max_attempts = job.max_attempts;
    slim.timeout = job.timeout;
    slim.retry_policy = job.retry_policy;
    slim
}

#[cfg(test)]
mod tests {
    use super::*;
    use durable_jobs_store::ClaimToken;

    /// Issue 8: the same worker holds a job's old run and its new run; the old run's end does
    /// not take the new one out (so the new one stays renewed).
    #[test]
    fn two_runs_of_one_job_are_two_entries() {
        let held = Held::default();
        let old = Claim::new(JobId(7), ClaimToken(1));
        let new = Claim::new(JobId(7), ClaimToken(2));
        held.insert(old);
        held.insert(new);
        held.lose(&[old]);
        held.remove(old);
        assert_eq!(held.renewable(), vec![new]);
        assert_eq!(held.jobs(), vec![JobId(7)]);
    }

    #[test]
    fn the_watchdog_takes_out_overrunning_jobs_only() {
        let held = Held::default();
        let thread = Arc::new(ThreadSlot::default());
        let mut slow = ClaimedJob::new(JobId(1), ClaimToken(1), "default", "slow", b"[1,2,3]".to_vec());
        slow.timeout = Some(Duration::from_secs(1));
        let quick = ClaimedJob::new(JobId(2), ClaimToken(1), "default", "quick", Vec::new());
        for job in [&slow, &quick] {
            held.insert(job.claim());
        }
        held.start(&slow, &thread, Some(Duration::from_secs(2)));
        held.start(&quick, &thread, None);
        assert_eq!(held.next_give_up(), Some(Duration::from_secs(2)));
        assert!(held.overrun(Duration::from_secs(1)).is_empty());
        let over = held.overrun(Duration::from_secs(2));
        assert_eq!(over.len(), 1);
        assert_eq!((over[0].job.claim(), over[0].job.args.len()), (slow.claim(), 0));
        assert_eq!(held.jobs(), vec![JobId(2)]);
        held.finishing(quick.claim());
        assert!(held.releasable().is_empty(), "an outcome being committed is not released");
    }
}
