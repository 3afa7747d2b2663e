//! `FaultyStore`: a store that fails on purpose, for testing what sits on top of a store.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

use crate::{
    CancelOutcome, Capabilities, Checkpoint, Claim, ClaimRequest, Claimed, DeleteOutcome, Enqueued, FireOutcome,
    JobFilter, JobId, JobRecord, Limit, LimitScope, NewJob, PauseOutcome, PurgeRequest, ReclaimRequest, Reclaimed,
    Renewal, RequeueOutcome, ResumeOutcome, ScheduleRecord, Signal, SignalOutcome, StatusCount, Store, StoreError,
    StoreErrorKind, Timestamp, Write, WriteOutcome,
};

/// Which calls fail, counting every call from 1 (of any method, from any thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Call `n` fails without reaching the inner store; later calls work.
    FailOnce(u64),
    /// Every call from `n` on fails without reaching the inner store.
    FailFrom(u64),
    /// Call `n` reaches the inner store (and commits), then reports an error: a lost
    /// acknowledgement.
    ErrorAfterCommit(u64),
    /// Call `n` blocks until [`FaultyStore::heal`] is called, then goes through.
    HangAt(u64),
    /// Call `n` panics (a bug in a store, or in code it calls).
    PanicAt(u64),
    /// The next call of this method (`"claim"`, `"commit"`, `"renew"`…) panics.
    PanicOnNext(&'static str),
    /// The next call of this method blocks until [`FaultyStore::heal`] is called.
    HangOnNext(&'static str),
}

/// Wraps a store and injects one [`Fault`], like SQLite's I/O-error test loops: forward every
/// method, fail where told.
///
/// ```
/// use durable_jobs_store::faulty::{Fault, FaultyStore};
/// use durable_jobs_store::{JobFilter, MemoryStore, Store};
///
/// let store = FaultyStore::new(MemoryStore::new());
/// store.inject(Fault::FailOnce(1));
/// assert!(store.list(&JobFilter::default()).is_err());
/// assert!(store.list(&JobFilter::default()).is_ok());
/// assert_eq!(store.calls(), 2);
/// ```
pub struct FaultyStore<S> {
    inner: S,
    calls: AtomicU64,
    /// Writes passed on to the inner store's `commit`.
    writes: AtomicU64,
    stalled_renewals: AtomicBool,
    /// Microseconds every run-ending commit waits before reaching the inner store.
    slow_endings: AtomicU64,
    plan: Mutex<Plan>,
    healed: Condvar,
}

#[derive(Debug, Default)]
struct Plan {
    fault: Option<Fault>,
    /// Calls that failed (or hung) because of the fault.
    hits: u64,
}

impl<S: fmt::Debug> fmt::Debug for FaultyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .field("fault", &self.plan.lock().fault)
            .finish_non_exhaustive()
    }
}

/// What one call should do.
enum Verdict {
    Pass,
    Fail,
    FailAfter,
    Panic,
}

impl<S: Store> FaultyStore<S> {
    /// Wraps `inner` with no fault.
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner,
            calls: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            stalled_renewals: AtomicBool::new(false),
            slow_endings: AtomicU64::new(0),
            plan: Mutex::new(Plan::default()),
            healed: Condvar::new(),
        }
    }

    /// Sets the fault (replacing any earlier one). Call numbers count from the store's first
    /// call, not from now.
    pub fn inject(&self, fault: Fault) {
        self.plan.lock().fault = Some(fault);
    }

    /// Removes the fault and releases calls hanging on it.
    pub fn heal(&self) {
        self.plan.lock().fault = None;
        self.healed.notify_all();
    }

    /// While `stalled`, lease renewals report success without reaching the inner store: a
    /// worker whose heartbeat has stalled (as in a long GC pause or a `SIGSTOP`).
    pub fn stall_renewals(&self, stalled: bool) {
        self.stalled_renewals.store(stalled, Ordering::SeqCst);
    }

    /// Makes every commit that ends a run (a completion, retry, failure or suspension) wait
    /// `delay` before it reaches the inner store: a slow disk under the outcomes of jobs.
    pub fn slow_endings(&self, delay: std::time::Duration) {
        self.slow_endings.store(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Writes that reached the inner store's `commit` so far (each write of a batch counts).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Calls the fault has hit so far.
    pub fn hits(&self) -> u64 {
        self.plan.lock().hits
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn verdict(&self, method: &str) -> Verdict {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let mut plan = self.plan.lock();
        let verdict = match plan.fault {
            Some(Fault::PanicOnNext(m)) if m == method => {
                plan.fault = None;
                Verdict::Panic
            }
            Some(Fault::HangOnNext(m)) if m == method => {
                plan.hits += 1;
                while plan.fault == Some(Fault::HangOnNext(m)) {
                    self.healed.wait(&mut plan);
                }
                return Verdict::Pass;
            }
            Some(Fault::FailOnce(k)) if k == n => Verdict::Fail,
            Some(Fault::FailFrom(k)) if n >= k => Verdict::Fail,
            Some(Fault::ErrorAfterCommit(k)) if k == n => Verdict::FailAfter,
            Some(Fault::PanicAt(k)) if k == n => Verdict::Panic,
            Some(Fault::HangAt(k)) if k == n => {
                plan.hits += 1;
                while plan.fault == Some(Fault::HangAt(k)) {
                    self.healed.wait(&mut plan);
                }
                return Verdict::Pass;
            }
            _ => Verdict::Pass,
        };
        if !matches!(verdict, Verdict::Pass) {
            plan.hits += 1;
        }
        verdict
    }

    fn call<T>(&self, method: &str, f: impl FnOnce(&S) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let injected =
            |when: &str| StoreError::new(StoreErrorKind::Io, format!("injected fault: {method} failed {when}"));
        match self.verdict(method) {
            Verdict::Pass => f(&self.inner),
            Verdict::Fail => Err(injected("before reaching the store")),
            Verdict::FailAfter => f(&self.inner).and_then(|_| Err(injected("after it committed"))),
            Verdict::Panic => panic!("injected fault: {method} panicked"),
        }
    }
}

impl<S: Store> Store for FaultyStore<S> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn local_identity(&self) -> Option<String> {
        self.inner.local_identity()
    }
    fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError> {
        self.call("enqueue", |s| s.enqueue(jobs))
    }
    fn claim(&self, req: &ClaimRequest) -> Result<Claimed, StoreError> {
        self.call("claim", |s| s.claim(req))
    }
    fn commit(&self, worker: &str, now: Timestamp, writes: &[Write]) -> Result<Vec<WriteOutcome>, StoreError> {
        let slow = self.slow_endings.load(Ordering::SeqCst);
        if slow > 0 && writes.iter().any(Write::ends_run) {
            std::thread::sleep(std::time::Duration::from_micros(slow));
        }
        self.call("commit", |s| {
            self.writes.fetch_add(writes.len() as u64, Ordering::SeqCst);
            s.commit(worker, now, writes)
        })
    }
    fn renew(&self, worker: &str, claims: &[Claim], lease_until: Timestamp) -> Result<Renewal, StoreError> {
        self.call("renew", |s| {
            if self.stalled_renewals.load(Ordering::SeqCst) {
                return Ok(Renewal::default());
            }
            s.renew(worker, claims, lease_until)
        })
    }
    fn release(&self, worker: &str, claims: &[Claim], now: Timestamp) -> Result<usize, StoreError> {
        self.call("release", |s| s.release(worker, claims, now))
    }
    fn reclaim(&self, req: &ReclaimRequest) -> Result<Reclaimed, StoreError> {
        self.call("reclaim", |s| s.reclaim(req))
    }
    fn cancel(&self, job: JobId, now: Timestamp) -> Result<CancelOutcome, StoreError> {
        self.call("cancel", |s| s.cancel(job, now))
    }
    fn cancel_many(&self, jobs: &[JobId], now: Timestamp) -> Result<Vec<CancelOutcome>, StoreError> {
        self.call("cancel_many", |s| s.cancel_many(jobs, now))
    }
    fn requeue(&self, job: JobId, now: Timestamp) -> Result<RequeueOutcome, StoreError> {
        self.call("requeue", |s| s.requeue(job, now))
    }
    fn requeue_many(&self, jobs: &[JobId], now: Timestamp) -> Result<Vec<RequeueOutcome>, StoreError> {
        self.call("requeue_many", |s| s.requeue_many(jobs, now))
    }
    fn pause(&self, job: JobId, now: Timestamp) -> Result<PauseOutcome, StoreError> {
        self.call("pause", |s| s.pause(job, now))
    }
    fn resume(&self, job: JobId, now: Timestamp) -> Result<ResumeOutcome, StoreError> {
        self.call("resume", |s| s.resume(job, now))
    }
    fn pause_queue(&self, queue: &str, paused: bool, now: Timestamp) -> Result<(), StoreError> {
        self.call("pause_queue", |s| s.pause_queue(queue, paused, now))
    }
    fn paused_queues(&self) -> Result<Vec<String>, StoreError> {
        self.call("paused_queues", Store::paused_queues)
    }
    fn purge(&self, req: &PurgeRequest) -> Result<usize, StoreError> {
        self.call("purge", |s| s.purge(req))
    }
    fn delete(&self, jobs: &[JobId]) -> Result<Vec<DeleteOutcome>, StoreError> {
        self.call("delete", |s| s.delete(jobs))
    }
    fn lead(&self, role: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool, StoreError> {
        self.call("lead", |s| s.lead(role, holder, now, until))
    }
    fn set_limit(&self, limit: &Limit) -> Result<(), StoreError> {
        self.call("set_limit", |s| s.set_limit(limit))
    }
    fn remove_limit(&self, scope: &LimitScope) -> Result<bool, StoreError> {
        self.call("remove_limit", |s| s.remove_limit(scope))
    }
    fn limits(&self) -> Result<Vec<Limit>, StoreError> {
        self.call("limits", Store::limits)
    }
    fn put_schedule(&self, schedule: &ScheduleRecord) -> Result<(), StoreError> {
        self.call("put_schedule", |s| s.put_schedule(schedule))
    }
    fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.call("schedules", Store::schedules)
    }
    fn remove_schedule(&self, name: &str) -> Result<bool, StoreError> {
        self.call("remove_schedule", |s| s.remove_schedule(name))
    }
    fn fire(
        &self,
        name: &str,
        due: Timestamp,
        next: Timestamp,
        job: &NewJob,
        now: Timestamp,
    ) -> Result<FireOutcome, StoreError> {
        self.call("fire", |s| s.fire(name, due, next, job, now))
    }
    fn signal(&self, job: JobId, name: &str, payload: &[u8], now: Timestamp) -> Result<SignalOutcome, StoreError> {
        self.call("signal", |s| s.signal(job, name, payload, now))
    }
    fn signals(&self, job: JobId) -> Result<Vec<Signal>, StoreError> {
        self.call("signals", |s| s.signals(job))
    }
    fn checkpoints(&self, job: JobId, from: u32, limit: usize) -> Result<Vec<Checkpoint>, StoreError> {
        self.call("checkpoints", |s| s.checkpoints(job, from, limit))
    }
    fn get(&self, job: JobId) -> Result<Option<JobRecord>, StoreError> {
        self.call("get", |s| s.get(job))
    }
    fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        self.call("list", |s| s.list(filter))
    }
    fn counts(&self, now: Timestamp) -> Result<Vec<StatusCount>, StoreError> {
        self.call("counts", |s| s.counts(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn job() -> NewJob {
        NewJob::new("q", "n", b"1".to_vec(), Timestamp(0))
    }

    #[test]
    fn faults_hit_the_numbered_calls() {
        let store = FaultyStore::new(MemoryStore::new());
        store.inject(Fault::ErrorAfterCommit(1));
        let err = store.enqueue(&[job()]).unwrap_err();
        assert!(err.is_retryable() && err.message().contains("after it committed"), "{err}");
        assert_eq!(store.inner().list(&JobFilter::default()).unwrap().len(), 1, "the write did happen");
        store.inject(Fault::FailFrom(3));
        assert!(store.enqueue(&[job()]).is_ok());
        assert!(store.enqueue(&[job()]).is_err());
        assert!(store.counts(Timestamp(0)).is_err());
        assert_eq!(store.inner().list(&JobFilter::default()).unwrap().len(), 2, "failed calls did not reach the store");
        store.heal();
        assert!(store.counts(Timestamp(0)).is_ok());
        assert_eq!((store.calls(), store.hits()), (5, 3));
    }

    #[test]
    fn a_hung_call_waits_for_heal() {
        let store = std::sync::Arc::new(FaultyStore::new(MemoryStore::new()));
        store.inject(Fault::HangAt(1));
        let s = store.clone();
        let call = std::thread::spawn(move || s.enqueue(&[job()]));
        while store.hits() == 0 {
            std::thread::yield_now();
        }
        assert!(!call.is_finished());
        store.heal();
        assert!(call.join().unwrap().is_ok());
    }
}
