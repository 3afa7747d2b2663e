//! The storage contract of [durable-jobs](https://docs.rs/durable-jobs).
//!
//! A [`Store`] keeps jobs and their checkpoints durable; the engine in `durable-jobs` does the
//! rest (threads, retries, workflows). This crate holds only the contract: the trait, the
//! records that cross it, [`StoreError`], and [`MemoryStore`], the reference implementation.
//! Backends (`durable-jobs-sqlite`, `durable-jobs-sled`) depend on this crate alone, and prove
//! they keep the contract by running the [`conformance`] suite (feature `conformance`).
//!
//! ```
//! use durable_jobs_store::{ClaimRequest, MemoryStore, NewJob, Store, Timestamp, Write, WriteOutcome};
//!
//! fn main() -> Result<(), durable_jobs_store::StoreError> {
//!     let store = MemoryStore::new();
//!     let now = Timestamp::now();
//!     let job = NewJob {
//!         queue: "default".into(),
//!         name: "send-email".into(),
//!         args: br#"{"to":"a@example.com"}"#.to_vec(),
//!         priority: 0,
//!         run_at: now,
//!         max_attempts: 3,
//!         unique_key: None,
//!         timeout: None,
//!         retry_policy: None,
//!         created_at: now,
//!     };
//!     let id = store.enqueue(&[job])?[0].id();
//!     let claimed = store.claim(&ClaimRequest {
//!         worker: "w1".into(),
//!         queues: vec!["default".into()],
//!         names: vec!["send-email".into()],
//!         limit: 10,
//!         now,
//!         lease_until: now.saturating_add(std::time::Duration::from_secs(30)),
//!     })?;
//!     assert_eq!(claimed[0].id, id);
//!     let done = store.commit("w1", now, &[Write::Complete { job: id, result: b"null".to_vec() }])?;
//!     assert_eq!(done, vec![WriteOutcome::Applied]);
//!     Ok(())
//! }
//! ```

mod error;
mod memory;
mod record;
mod store;
pub mod transition;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "faults")]
pub mod faulty;

pub use error::{StoreError, StoreErrorKind};
pub use memory::{lease_expired_message, MemoryStore, StatusCounter};
pub use record::{
    Checkpoint, ClaimRequest, ClaimedJob, Enqueued, JobFilter, JobId, JobRecord, JobStatus, NewJob, Reclaimed,
    RetryPolicy, StatusCount, Timestamp, UnknownStatus, Write, WriteOutcome,
};
pub use store::Store;
