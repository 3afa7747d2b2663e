//! The sled store for [durable-jobs](https://docs.rs/durable-jobs): jobs, indexes, checkpoints
//! and signals as trees of an embedded [sled](https://docs.rs/sled/0.34) 0.34 database.
//!
//! ```
//! use durable_jobs_sled::SledStore;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let dir = tempfile::tempdir()?;
//!     let store = SledStore::open(dir.path().join("jobs"))?;
//!     // A second open of the same directory is refused, never a hang:
//!     let again = SledStore::open(dir.path().join("jobs"));
//!     assert_eq!(again.unwrap_err().kind(), durable_jobs_store::StoreErrorKind::AlreadyOpen);
//!     drop(store);
//!     Ok(())
//! }
//! ```
//!
//! # Guarantees
//!
//! - **Atomic**: every store call is one sled transaction over all trees (jobs, indexes,
//!   checkpoints, signals): it happens entirely or not at all, also across a crash. A
//!   suspension inserts its children, and a cancel reaches every descendant, in that one
//!   transaction. (`pause_queue`, `lead`, `set_limit` and `remove_limit` write one entry of a
//!   tree of their own.)
//! - **Process crash**: a write is acknowledged only after sled's `flush()`; concurrent writers
//!   share flushes (group commit). Nothing acknowledged is lost when the process dies.
//! - **Power loss**: on Linux sled's `flush()` writes to the OS but does not flush the device
//!   cache (no `fsync`/`fdatasync` of the data). A power loss or kernel crash may lose recent
//!   acknowledged writes. Worse, the disk may keep some of those writes and not others; sled
//!   0.34 trusts the later ones, and on such a torn log it panics in recovery ("tried to
//!   serialize Uninitialized"), hangs, or opens with the data after the tear gone. `open` then
//!   fails with [`Corrupt`](durable_jobs_store::StoreErrorKind::Corrupt) and the way out is
//!   [`salvage`] (below). Use the SQLite store with `Durability::Full` where that matters.
//! - **One process per directory**: sled locks its files. Opening a directory that is already
//!   open (in this process or another) fails at once with
//!   [`AlreadyOpen`](durable_jobs_store::StoreErrorKind::AlreadyOpen).
//! - **Damaged directories are left untouched**: sled writes on open and, on some damage, opens
//!   empty, panics or hangs. An existing database is therefore first opened as a throwaway copy
//!   (on a thread with a time limit) and must carry this crate's format marker; otherwise
//!   `open` fails with [`Corrupt`](durable_jobs_store::StoreErrorKind::Corrupt) and the
//!   directory is byte-identical. The copy costs a read of the database per open
//!   ([`SledOptions::verify_on_open`]).
//! - Reads do not wait for flushes: they may see a write whose flush is still running.
//!
//! # When `open` refuses a damaged directory
//!
//! [`salvage`] copies every job, checkpoint and signal that sled can still read into a new
//! store and never writes to the damaged directory. It tries the log as it is, then with the
//! writes it cannot read dropped (each damaged stretch skipped, or the log cut at the first, as
//! a crash there would have), and keeps the attempt that reads cleanly and recovers the most
//! jobs; records come out as they were stored, indexes rebuilt (children stay linked to their
//! parents), and new ids stay above every old one. (A partial `snap.*.generating`, which a crash while sled writes a snapshot leaves
//! behind and plain sled refuses, needs no salvage: `open` removes it.) What it cannot bring back: writes that
//! never reached the disk, and a log whose lost writes had let sled reuse space that older
//! data was still read from (then it fails with `Corrupt`; restore a backup). In tests that
//! lose one 4 KiB page of the writes since the last sync, it salvaged most of the stores sled
//! panicked on, usually with every job.
//!
//! ```
//! use std::path::Path;
//!
//! use durable_jobs_sled::{salvage, SledStore};
//! use durable_jobs_store::{StoreError, StoreErrorKind};
//!
//! /// Opens `dir`, or if it is damaged, salvages it into `salvaged` and opens that.
//! fn open_or_salvage(dir: &Path, salvaged: &Path) -> Result<SledStore, StoreError> {
//!     match SledStore::open(dir) {
//!         Err(e) if e.kind() == StoreErrorKind::Corrupt => {
//!             // `dir` is left as it was, for a closer look.
//!             let report = salvage(dir, salvaged)?;
//!             eprintln!("{e}; {report}"); // jobs, checkpoints, unreadable entries, highest id
//!             SledStore::open(salvaged)
//!         }
//!         opened => opened,
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let dir = tempfile::tempdir()?;
//!     let store = open_or_salvage(&dir.path().join("jobs"), &dir.path().join("jobs-salvaged"))?;
//!     # drop(store);
//!     Ok(())
//! }
//! ```
//!
//! # Choosing a backend
//!
//! Choose SQLite (the default) for power-loss durability, several processes on one database,
//! and inspection with standard tools. Choose sled for a pure-Rust build without a C compiler,
//! when one process owns its queue and a power loss may cost the last writes.

mod claim;
mod codec;
mod control;
mod enqueue;
mod error;
mod finished;
mod flush;
mod keys;
mod limits;
mod open;
mod options;
mod salvage;
mod schedules;
mod store;
mod tx;
mod upgrade;
mod waits;

pub use options::SledOptions;
pub use salvage::{salvage, salvage_with, SalvageReport};
pub use store::SledStore;
