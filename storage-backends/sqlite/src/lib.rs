//! The SQLite store for [durable-jobs](https://docs.rs/durable-jobs): jobs, checkpoints and
//! signals in one file, in WAL mode, with bundled SQLite.
//!
//! ```
//! use durable_jobs_sqlite::{Durability, SqliteOptions, SqliteStore};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let dir = tempfile::tempdir()?;
//!     // The default: every commit fsynced (`Durability::Full`).
//!     let _store = SqliteStore::open(dir.path().join("jobs.db"))?;
//!     // Faster commits; a power loss may drop the newest ones.
//!     let _fast = SqliteStore::open_with(
//!         dir.path().join("fast.db"),
//!         SqliteOptions::new().durability(Durability::Normal),
//!     )?;
//!     Ok(())
//! }
//! ```
//!
//! # Guarantees
//!
//! - With [`Durability::Full`] (the default) an acknowledged write survives a process crash and
//!   a power loss. With [`Durability::Normal`] it survives a process crash; a power loss may lose
//!   the newest commits but never corrupts the file.
//! - Several processes may share one file. Writes wait for each other (busy timeout); reads never
//!   wait.
//! - The store never deletes the `-wal` or `-shm` files and never touches the file outside SQLite.

mod claim;
mod connection;
mod control;
mod error;
mod group;
mod jobs;
pub mod limits;
mod options;
mod preflight;
mod rows;
mod schedules;
mod schema;
mod store;
mod throttle;
mod waits;
mod writes;

pub use options::{Durability, SqliteOptions};
pub use schema::SCHEMA_VERSION;
pub use store::SqliteStore;
