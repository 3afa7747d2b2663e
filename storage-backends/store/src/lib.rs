//! The storage contract of [durable-jobs](https://docs.rs/durable-jobs).
//!
//! A [`Store`] keeps jobs and their checkpoints durable; the engine in `durable-jobs` does the
//! rest (threads, retries, workflows). This crate holds only the contract: the trait, the
//! records that cross it, [`StoreError`], and [`MemoryStore`], the reference implementation.
//! Backends (`durable-jobs-sqlite`, `durable-jobs-sled`) depend on this crate alone, and prove
//! they keep the contract by running the [`conformance`] suite (feature `conformance`).
//!
//! ```
//! use std::time::Duration;
//! use durable_jobs_store::{ClaimRequest, MemoryStore, NewJob, Store, Timestamp, Write, WriteOutcome};
//!
//! fn main() -> Result<(), durable_jobs_store::StoreError> {
//!     let store = MemoryStore::new();
//!     let now = Timestamp::now();
//!     let job = NewJob::new("default", "send-email", br#"{"to":"a@example.com"}"#.to_vec(), now);
//!     let id = store.enqueue(&[job])?[0].id();
//!     let lease_until = now.saturating_add(Duration::from_secs(30));
//!     let claimed = store.claim(&ClaimRequest::new("w1", now, lease_until).names(["send-email"]).limit(10))?;
//!     let run = claimed.jobs[0].claim();
//!     assert_eq!(run.job, id);
//!     let done = store.commit("w1", now, &[Write::complete(run, b"null".to_vec())])?;
//!     assert_eq!(done, vec![WriteOutcome::Applied]);
//!     Ok(())
//! }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

mod claim;
mod control;
mod error;
mod inspect;
mod job;
mod limit;
mod memory;
mod schedule;
mod store;
mod time;
pub mod transition;
mod wait;
mod write;

#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
#[cfg(feature = "faults")]
#[cfg_attr(docsrs, doc(cfg(feature = "faults")))]
pub mod faulty;

pub use claim::{Claim, ClaimRequest, ClaimToken, Claimed, ClaimedJob, ReclaimRequest, Reclaimed};
pub use control::{DeleteOutcome, PauseOutcome, PurgeRequest, Renewal, ResumeOutcome};
pub use error::{StoreError, StoreErrorKind};
pub use inspect::{CancelOutcome, Capabilities, JobFilter, RequeueOutcome, StatusCount};
pub use job::{Enqueued, JobId, JobRecord, JobStatus, NewJob, RetryPolicy, UnknownStatus};
pub use limit::{window_end, window_of, Limit, LimitScope};
pub use memory::{MemoryStore, StatusCounter};
pub use schedule::{FireOutcome, ScheduleRecord};
pub use store::Store;
pub use time::Timestamp;
pub use wait::{ChildOf, ChildrenWait, FanIn, Signal, SignalId, SignalOutcome};
pub use write::{Checkpoint, Write, WriteOp, WriteOutcome};
