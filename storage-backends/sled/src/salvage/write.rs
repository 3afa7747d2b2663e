//! Writing salvaged records into a fresh store, through the same `Tx::save` as every store
//! call, so that the claim, lease, wake and unique indexes are rebuilt exactly as a store
//! would have written them.

use std::path::{Path, PathBuf};

use durable_jobs_store::{Checkpoint, JobId, JobRecord, StoreError, StoreErrorKind, Timestamp};

use crate::error::store_error;
use crate::{codec, keys, open, upgrade, SledOptions, SledStore};

/// Records per transaction: sled holds a transaction's writes in memory.
const BATCH: usize = 512;

/// A new store being filled, with what went into it.
pub(super) struct Writer {
    path: PathBuf,
    store: SledStore,
    /// The records read are in format 1 (upgraded as they are written).
    pub(super) format_1: bool,
    jobs: Vec<JobRecord>,
    checkpoints: Vec<(JobId, Checkpoint)>,
    pub(super) written_jobs: usize,
    pub(super) written_checkpoints: usize,
    pub(super) unreadable: usize,
    pub(super) max_id: Option<JobId>,
}

impl Writer {
    /// Creates the store in `path`, which must not exist.
    pub(super) fn create(path: &Path, options: &SledOptions) -> Result<Self, StoreError> {
        let store = SledStore::open_with(path, options.clone())?;
        Ok(Writer {
            path: path.to_path_buf(),
            store,
            format_1: false,
            jobs: Vec::new(),
            checkpoints: Vec::new(),
            written_jobs: 0,
            written_checkpoints: 0,
            unreadable: 0,
            max_id: None,
        })
    }

    /// Adds a raw `jobs` entry, or counts it as unreadable.
    pub(super) fn job(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let id = (key.len() == 8).then(|| keys::id_from(key)).flatten();
        let decoded =
            if self.format_1 { upgrade::decode_job_v1(value, Timestamp::now()) } else { codec::decode_job(value) };
        match (id, decoded) {
            (Some(id), Ok(job)) if job.id == id => {
                self.max_id = self.max_id.max(Some(id));
                self.jobs.push(job);
            }
            _ => self.unreadable += 1,
        }
        self.commit_if_full()
    }

    /// Adds a raw `checkpoints` entry (job id, step index), or counts it as unreadable.
    pub(super) fn checkpoint(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let job = (key.len() == 12).then(|| keys::id_from(&key[..8])).flatten();
        let index = key.get(8..12).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
        let decode = |i| {
            if self.format_1 {
                upgrade::decode_checkpoint_v1(i, value)
            } else {
                codec::decode_checkpoint(i, value)
            }
        };
        match (job, index.map(decode)) {
            (Some(job), Some(Ok(c))) => self.checkpoints.push((job, c)),
            _ => self.unreadable += 1,
        }
        self.commit_if_full()
    }

    fn commit_if_full(&mut self) -> Result<(), StoreError> {
        if self.jobs.len() + self.checkpoints.len() >= BATCH {
            self.commit(None)?;
        }
        Ok(())
    }

    /// Writes what is pending in one transaction, raising the stored highest id to `floor`.
    fn commit(&mut self, floor: Option<JobId>) -> Result<(), StoreError> {
        let (jobs, checkpoints) = (&self.jobs, &self.checkpoints);
        self.store.write("write salvaged records", |tx| {
            for job in jobs {
                // As it was: a running job keeps its lease, for the reaper to recover.
                tx.save(None, job)?;
                tx.raise_max_id(job.id)?;
            }
            for (job, c) in checkpoints {
                tx.put_checkpoint(*job, c)?;
            }
            if let Some(floor) = floor {
                tx.raise_max_id(floor)?;
            }
            Ok(())
        })?;
        self.written_jobs += self.jobs.len();
        self.written_checkpoints += self.checkpoints.len();
        self.jobs.clear();
        self.checkpoints.clear();
        Ok(())
    }

    /// Writes what is pending.
    pub(super) fn flush(&mut self) -> Result<(), StoreError> {
        self.commit(None)
    }

    /// Writes what is pending with `floor` as the stored highest id, closes the store, makes
    /// sure that it never hands out an id up to `floor`, and records its data-loss mark.
    pub(super) fn seal(mut self, floor: Option<JobId>, options: &SledOptions) -> Result<PathBuf, StoreError> {
        self.commit(floor)?;
        let Writer { path, store, .. } = self;
        // Closing flushes and records the store's mark.
        drop(store);
        if let Some(floor) = floor {
            raise_id_counter(&path, floor, options)?;
            // Mark and stored highest id agree: the new store holds everything it has.
            open::write_mark(&path, &keys::id(floor));
        }
        Ok(path)
    }
}

/// sled's default `idgen_persist_interval`, which every store of this crate opens with.
const ID_STEP: u64 = 1_000_000;

/// Makes the store in `path` hand out ids above `floor` only.
///
/// Job ids come from sled's id counter, which starts at 0 in a new database. sled persists
/// the counter in steps of `idgen_persist_interval` (the persisted value must be a multiple
/// of the step later opens use, or sled panics) and on each reopen continues two steps above
/// it. Reopened with a step of half a multiple of the default step above `floor`, one id
/// taken persists that multiple; later opens continue above it.
fn raise_id_counter(path: &Path, floor: JobId, options: &SledOptions) -> Result<(), StoreError> {
    let target = floor.0.max(1).cast_unsigned().div_ceil(ID_STEP).saturating_mul(ID_STEP);
    let step = target / 2;
    // The handle just dropped may still be letting go of the file.
    open::refuse_if_locked(path)?;
    let config = open::config(path, options).idgen_persist_interval(step);
    let raised = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> sled::Result<()> {
        let db = config.open()?;
        db.generate_id()?;
        db.flush()?;
        Ok(())
    }));
    match raised {
        Ok(result) => result.map_err(|e| store_error("raise the id counter", e)),
        Err(_) => Err(StoreError::new(
            StoreErrorKind::Other,
            format!("sled: panicked raising the id counter of {}", path.display()),
        )),
    }
}
