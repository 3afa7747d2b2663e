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
//! Each case panics with a message saying what it saw when the store breaks the contract. The
//! cases adapt to [`Store::capabilities`]: a multi-process store must also keep two handles
//! opened on the same storage from claiming one job twice. [`differential`] compares the store
//! with [`MemoryStore`](crate::MemoryStore) over random sequences of calls.
#![allow(clippy::missing_panics_doc, clippy::unwrap_used)]

mod cases;
mod control;
mod differential;
mod fencing;
mod fixtures;
mod limits;
mod schedules;
mod scheduling;
mod waits;

pub use cases::*;
pub use control::*;
pub use differential::*;
pub use fencing::*;
pub use fixtures::*;
pub use limits::*;
pub use schedules::*;
pub use scheduling::*;
pub use waits::*;

use std::time::Duration;

use crate::{Claim, ClaimRequest, Enqueued, JobId, NewJob, Store, Timestamp, Write, WriteOutcome};

/// Opens the store under test.
pub trait Harness {
    /// Opens the storage. Called again after the previous handle was dropped, it must open the
    /// same storage, as a restarted process would. A store whose capabilities say
    /// `multi_process` may also be opened while another handle is open.
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
            unique_window_covers_finished_jobs,
            claim_orders_by_priority_then_run_at_then_id,
            claim_filters_queues_and_names,
            claim_respects_limit_and_never_returns_a_job_twice,
            claim_sets_lease_token_and_attempt,
            claim_skips_excluded_jobs,
            claim_reports_whether_checkpoints_exist,
            concurrent_claims_never_share_a_job,
            complete_stores_result_and_ends_run,
            fail_is_terminal,
            checkpoints_upsert_and_read_in_index_order,
            checkpoints_page_by_index,
            list_filters_and_pages,
            ids_follow_commit_order_for_paging_readers,
            counts_per_queue_name_and_status,
            committed_work_survives_reopen,
            future_jobs_are_scheduled_and_promoted_when_due,
            retry_schedules_the_next_attempt,
            claim_reports_the_next_due_time,
            writes_are_fenced_by_worker,
            writes_are_fenced_by_claim_token,
            writes_after_run_ended_are_refused,
            mixed_batch_applies_independently,
            renew_extends_and_reports_lost,
            release_returns_attempt,
            reclaim_charges_only_started_runs,
            reclaim_recovers_dead_workers_and_respects_limit,
            suspend_waits_uncharged_and_wakes_when_due,
            cancel_reports_what_it_did,
            requeue_reports_what_it_did,
            signals_are_kept_in_order_and_consumed_once,
            a_signal_wakes_only_a_job_waiting_for_its_name,
            a_wait_for_a_pending_signal_does_not_suspend,
            children_are_inserted_with_the_suspension_and_wake_their_parent,
            failures_decide_a_fan_in_and_decided_fan_ins_do_not_suspend,
            cancel_reaches_every_waiting_descendant,
            cancelling_a_running_job_ends_its_run_cancelled,
            cancel_reaches_running_descendants,
            cancelled_children_ending_otherwise_are_counted,
            pausing_keeps_a_job_and_its_wait,
            a_paused_parent_counts_its_children,
            a_paused_queue_is_not_claimed,
            purge_deletes_old_finished_jobs_with_their_data,
            delete_reports_what_it_did,
            lead_grants_one_holder_at_a_time,
            requeue_many_and_error_filters,
            schedules_are_stored_replaced_and_removed,
            a_schedule_fires_once_per_due_time,
            a_running_cap_holds_jobs_back,
            a_rate_limit_counts_claims_per_window,
            differential_against_memory_store,
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

/// A job in queue `default` named `name`, created and due at `T0`.
pub fn job(name: &str) -> NewJob {
    NewJob::new("default", name, br#"{"n":1}"#.to_vec(), T0)
}

/// Enqueues and returns the ids, asserting every job was inserted.
pub fn insert(store: &dyn Store, jobs: &[NewJob]) -> Vec<JobId> {
    store
        .enqueue(jobs)
        .unwrap()
        .into_iter()
        .map(|e| match e {
            Enqueued::New(id) => id,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// A claim for `worker` of up to `limit` jobs named `a`, `b` or `c` from queue `default` at
/// `now`, with a 30 s lease.
pub fn claim_req(worker: &str, limit: usize, now: Timestamp) -> ClaimRequest {
    ClaimRequest::new(worker, now, now.saturating_add(Duration::from_secs(30))).names(["a", "b", "c"]).limit(limit)
}

/// Claims as [`claim_req`] and returns the runs.
pub fn claim_runs(store: &dyn Store, worker: &str, limit: usize, now: Timestamp) -> Vec<Claim> {
    store.claim(&claim_req(worker, limit, now)).unwrap().jobs.iter().map(crate::ClaimedJob::claim).collect()
}

/// Claims as [`claim_req`] and returns the ids.
pub fn claim_ids(store: &dyn Store, worker: &str, limit: usize, now: Timestamp) -> Vec<JobId> {
    claim_runs(store, worker, limit, now).into_iter().map(|c| c.job).collect()
}

/// Commits `writes` as `worker` at `now` and returns the outcomes.
pub fn commit(store: &dyn Store, worker: &str, now: Timestamp, writes: &[Write]) -> Vec<WriteOutcome> {
    store.commit(worker, now, writes).unwrap()
}
