//! Durable background jobs and checkpointed multi-step workflows for ordinary (non-async) Rust
//! programs.
//!
//! Open a store, register handlers by name, enqueue jobs, start a pool of worker threads. A
//! handler can be a workflow: each [`call`] runs a step and checkpoints its result, so a retry
//! or a restart after a crash skips the steps that already finished.
//!
//! ```
//! use std::time::Duration;
//! use durable_jobs::{call, JobContext, JobOptions, MemoryStore, Queue};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Order { id: String, cents: u64 }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // In a program: `durable_jobs::sqlite::SqliteStore::open("jobs.db")?` (or the sled store).
//!     let queue = Queue::new(MemoryStore::new());
//!     queue.register("charge", |_: &JobContext, order: Order| -> Result<String, std::io::Error> {
//!         Ok(format!("txn-{}-{}", order.id, order.cents))
//!     })?;
//!     queue.register("ship", |_: &JobContext, txn: String| -> Result<String, std::io::Error> {
//!         Ok(format!("TRACK-{txn}"))
//!     })?;
//!     queue.register("process-order", |ctx: &JobContext, order: Order| -> Result<String, durable_jobs::Error> {
//!         let txn: String = call(ctx, "charge", &order)?;   // checkpointed
//!         let tracking: String = call(ctx, "ship", &txn)?;  // checkpointed
//!         Ok(tracking)
//!     })?;
//!
//!     let id = queue.enqueue("process-order", &Order { id: "ORD-1".into(), cents: 9999 }, JobOptions::new().retries(5))?;
//!     let worker = queue.worker().concurrency(2).start()?;
//!     let info = queue.wait(id, Duration::from_secs(30))?;
//!     assert_eq!(info.status, durable_jobs::JobStatus::Completed);
//!     assert_eq!(queue.result::<String>(id)?, "TRACK-txn-ORD-1-9999");
//!     worker.shutdown();
//!     Ok(())
//! }
//! ```
//!
//! See the README for the guarantees, the configuration and the errors.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod call;
mod children;
mod clock;
mod context;
mod control;
mod counts;
mod doorbell;
mod error;
mod events;
mod execute;
mod failpoint;
mod failure;
mod handle;
mod inspect;
mod limits;
mod names;
pub mod observability;
mod options;
mod queue;
mod registry;
mod replay;
mod retry;
mod schedule;
mod signal;
mod signals;
mod sleep;
mod unwind;
mod wait;
mod worker;

pub use call::call;
pub use children::{fan_out, spawn, Child, ChildFailed, FanInStrategy};
pub use clock::{Clock, ManualClock, SystemClock};
pub use context::JobContext;
pub use control::RequeueReport;
pub use counts::{Counts, JobCounts};
pub use error::{BoxError, Error};
pub use events::{Event, EventKind};
pub use failpoint::FAILPOINTS;
pub use handle::JobHandle;
pub use inspect::JobInfo;
pub use names::MAX_NAME_LEN;
pub use options::{JobOptions, DEFAULT_QUEUE, MAX_UNIQUE_KEY_LEN};
pub use queue::{Queue, QueueBuilder, DEFAULT_MAX_PAYLOAD};
pub use retry::DEFAULT_RETRY_POLICY;
pub use schedule::{Schedule, ScheduleInfo};
pub use signals::{wait_signal, wait_signal_timeout};
pub use worker::{Retention, ShutdownReport, Worker, WorkerBuilder, MAX_CONCURRENCY};

pub use durable_jobs_store::{
    CancelOutcome, Checkpoint, ChildrenWait, JobFilter, JobId, JobStatus, Limit, LimitScope, MemoryStore, PauseOutcome,
    RequeueOutcome, ResumeOutcome, RetryPolicy, Signal, SignalId, Store, StoreError, StoreErrorKind, Timestamp,
};

/// The SQLite store (feature `sqlite`, on by default).
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite {
    pub use durable_jobs_sqlite::{limits, Durability, SqliteOptions, SqliteStore, SCHEMA_VERSION};
}

/// The sled store (feature `sled`).
#[cfg(feature = "sled")]
#[cfg_attr(docsrs, doc(cfg(feature = "sled")))]
pub mod sled {
    pub use durable_jobs_sled::{salvage, salvage_with, SalvageReport, SledOptions, SledStore};
}

/// The storage contract, for writing or testing backends.
pub mod store {
    pub use durable_jobs_store::*;
}

/// Compiles the README's code.
#[cfg(all(doctest, feature = "sqlite"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Misuse that the types forbid (each block must fail to compile).
///
/// A handler runs on worker threads, so it must be `Send + Sync`:
///
/// ```compile_fail
/// use std::rc::Rc;
/// use durable_jobs::{JobContext, MemoryStore, Queue};
///
/// let queue = Queue::new(MemoryStore::new());
/// let local = Rc::new(5_u32);
/// queue.register("job", move |_: &JobContext, (): ()| Ok::<u32, std::io::Error>(*local)).unwrap();
/// ```
///
/// A `JobContext` belongs to the thread running the job; it cannot be shared with another:
///
/// ```compile_fail
/// use durable_jobs::{JobContext, MemoryStore, Queue};
///
/// let queue = Queue::new(MemoryStore::new());
/// queue
///     .register("job", |ctx: &JobContext, (): ()| -> Result<u32, std::io::Error> {
///         Ok(std::thread::scope(|s| s.spawn(|| ctx.attempt()).join().unwrap()))
///     })
///     .unwrap();
/// ```
///
/// A started worker must be kept: dropping it shuts it down at once (`#[must_use]`; a
/// `let _ = ...start()` that the compiler cannot flag is logged as a warning at run time):
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// use durable_jobs::{MemoryStore, Queue};
///
/// fn main() -> Result<(), durable_jobs::Error> {
///     let queue = Queue::new(MemoryStore::new());
///     queue.worker().start()?;
///     Ok(())
/// }
/// ```
///
/// A typed handle takes only its argument type:
///
/// ```compile_fail
/// use durable_jobs::{JobContext, JobOptions, MemoryStore, Queue};
///
/// let queue = Queue::new(MemoryStore::new());
/// let double = queue.define("double", |_: &JobContext, n: u64| Ok::<u64, std::io::Error>(n * 2)).unwrap();
/// double.enqueue(&"five", JobOptions::new()).unwrap();
/// ```
#[cfg(doctest)]
pub struct CompileFail;
