//! The behaviour every [`Store`] must have, as test functions.
//!
//! A backend runs the whole suite with one macro call in its `tests/conformance.rs`:
//!
//! ```
//! use durable_jobs_store::{conformance::Harness, MemoryStore, Store};
//!
//! /// Opens the store under test; a second `open` must reach the same storage.
//! struct Memory(MemoryStore);
//!
//! impl Harness for Memory {
//!     fn open(&self) -> Box<dyn Store> {
//!         Box::new(self.0.clone())
//!     }
//! }
//!
//! durable_jobs_store::store_conformance_tests!(Memory(MemoryStore::new()));
//! # fn main() {}
//! ```
//!
//! Each case panics with a message saying what it saw when the store breaks the contract.
#![allow(clippy::missing_panics_doc, clippy::unwrap_used)]

mod cases;
mod fencing;

pub use cases::*;
pub use fencing::*;

use std::time::Duration;

use crate::{ClaimRequest, ClaimedJob, JobId, NewJob, Store, Timestamp};

/// Opens the store under test.
pub trait Harness {
    /// Opens the storage. Called again after the previous handle was dropped, it must open the
    /// same storage, as a restarted process would.
    fn open(&self) -> Box<dyn Store>;
}

/// Expands to one `#[test]` per conformance case, each opening a fresh store from `$harness`
/// (an expression evaluated once per test).
#[macro_export]
macro_rules! store_conformance_tests {
    ($harness:expr) => {
        $crate::__conformance_cases!($harness;
            enqueue_assigns_increasing_ids_and_stores_fields,
            get_unknown_job_is_none,
            unique_key_blocks_only_live_jobs,
            unique_key_within_one_batch,
            claim_orders_by_priority_then_run_at_then_id,
            claim_skips_future_jobs,
            claim_filters_queues_and_names,
            claim_respects_limit_and_never_returns_a_job_twice,
            claim_sets_lease_and_attempt,
            claim_reports_whether_checkpoints_exist,
            concurrent_claims_never_share_a_job,
            complete_stores_result_and_ends_run,
            retry_requeues_with_error_and_run_at,
            fail_is_terminal,
            checkpoints_upsert_and_read_in_index_order,
            writes_are_fenced_by_worker,
            writes_after_job_ended_are_refused,
            mixed_batch_applies_independently,
            renew_extends_and_reports_lost,
            release_returns_attempt,
            reclaim_requeues_expired_and_fails_exhausted,
            suspend_and_wake_due,
            cancel_stops_jobs_that_wait,
            requeue_revives_failed_and_cancelled_jobs,
            list_filters_and_pages,
            counts_per_queue_and_status,
            committed_work_survives_reopen,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let harness = $harness;
                $crate::conformance::$case(&harness);
            }
        )*
    };
}

/// The worker name most cases claim as.
pub const WORKER: &str = "worker-a";

/// A fixed "now" far from the epoch, so offsets either way stay positive.
pub const T0: Timestamp = Timestamp(1_700_000_000_000_000);

/// `T0 + secs`.
pub fn at(secs: i64) -> Timestamp {
    Timestamp(T0.0 + secs * 1_000_000)
}

/// A pending job in queue `default` named `name`, ready at `T0`.
pub fn job(name: &str) -> NewJob {
    NewJob {
        queue: "default".into(),
        name: name.into(),
        args: br#"{"n":1}"#.to_vec(),
        priority: 0,
        run_at: T0,
        max_attempts: 3,
        unique_key: None,
        timeout: None,
        retry_policy: None,
        created_at: T0,
    }
}

/// Enqueues and returns the ids, asserting every job was inserted.
pub fn insert(store: &dyn Store, jobs: &[NewJob]) -> Vec<JobId> {
    store
        .enqueue(jobs)
        .unwrap()
        .into_iter()
        .map(|e| match e {
            crate::Enqueued::New(id) => id,
            crate::Enqueued::Duplicate(id) => panic!("unexpected duplicate of {id}"),
        })
        .collect()
}

/// A claim for `worker` of up to `limit` jobs named `a`, `b` or `c` from queue `default` at
/// `now`, with a 30 s lease.
pub fn claim_req(worker: &str, limit: usize, now: Timestamp) -> ClaimRequest {
    ClaimRequest {
        worker: worker.into(),
        queues: vec!["default".into()],
        names: vec!["a".into(), "b".into(), "c".into()],
        limit,
        now,
        lease_until: now.saturating_add(Duration::from_secs(30)),
    }
}

/// Claims as [`claim_req`] and returns the ids.
pub fn claim_ids(store: &dyn Store, worker: &str, limit: usize, now: Timestamp) -> Vec<JobId> {
    store.claim(&claim_req(worker, limit, now)).unwrap().iter().map(|c: &ClaimedJob| c.id).collect()
}
