//! Writing salvaged records into a fresh store, through the same `Tx::save` as every store
//! call, so that the claim, lease, wake, unique and children indexes are rebuilt exactly as a
//! store would have written them.

use std::path::{Path, PathBuf};

use durable_jobs_store::{
    Checkpoint, JobId, JobRecord, Signal, SignalId, Store, StoreError, StoreErrorKind, Timestamp,
};

use crate::error::store_error;
use crate::tx::Format;
use crate::{codec, keys, open, upgrade, SledOptions, SledStore};

/// Records per transaction: sled holds a transaction's writes in memory.
const BATCH: usize = 512;

/// A new store being filled, with what went into it.
pub(super) struct Writer {
    path: PathBuf,
    store: SledStore,
    /// The format of the records read (older ones are upgraded as they are written).
    pub(super) format: Format,
    jobs: Vec<JobRecord>,
    checkpoints: Vec<(JobId, Checkpoint)>,
    signals: Vec<Signal>,
    pub(super) written_jobs: usize,
    pub(super) written_checkpoints: usize,
    pub(super) written_signals: usize,
    pub(super) unreadable: usize,
    pub(super) max_id: Option<JobId>,
    pub(super) max_signal: Option<SignalId>,
}

impl Writer {
    /// Creates the store in `path`, which must not exist.
    pub(super) fn create(path: &Path, options: &SledOptions) -> Result<Self, StoreError> {
        let store = SledStore::open_with(path, options.clone())?;
        Ok(Writer {
            path: path.to_path_buf(),
            store,
            format: Format::Current,
            jobs: Vec::new(),
            checkpoints: Vec::new(),
            signals: Vec::new(),
            written_jobs: 0,
            written_checkpoints: 0,
            written_signals: 0,
            unreadable: 0,
            max_id: None,
            max_signal: None,
        })
    }

    /// Adds a raw `jobs` entry, or counts it as unreadable.
    pub(super) fn job(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let id = (key.len() == 8).then(|| keys::id_from(key)).flatten();
        match (id, upgrade::decode_job(self.format, value, Timestamp::now())) {
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
        match (job, index.map(|i| upgrade::decode_checkpoint(self.format, i, value))) {
            (Some(job), Some(Ok(c))) => self.checkpoints.push((job, c)),
            _ => self.unreadable += 1,
        }
        self.commit_if_full()
    }

    /// Adds a raw `signals` entry (job id, signal id), or counts it as unreadable.
    pub(super) fn signal(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        match codec::decode_signal(key, value) {
            Ok(signal) => {
                self.max_signal = self.max_signal.max(Some(signal.id));
                self.signals.push(signal);
            }
            Err(_) => self.unreadable += 1,
        }
        self.commit_if_full()
    }

    /// Pauses the queue of a raw `paused` entry (name → when paused) in the new store at once
    /// (queues are few), or counts it as unreadable.
    pub(super) fn paused(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if let (Ok(queue), Some(since)) = (std::str::from_utf8(key), keys::time_from(value)) {
            return self.store.pause_queue(queue, true, since);
        }
        self.unreadable += 1;
        Ok(())
    }

    /// Stores the schedule of a raw `schedules` entry as it was, or counts it as unreadable.
    pub(super) fn schedule(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if let Ok(schedule) = codec::decode_schedule(key, value) {
            // A new store has no schedule of that name: it is stored with what it did.
            return self.store.put_schedule(&schedule);
        }
        self.unreadable += 1;
        Ok(())
    }

    /// Sets the limit of a raw `limits` entry, or counts it as unreadable.
    pub(super) fn limit(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if let Ok(limit) = codec::decode_limit(key, value) {
            return self.store.set_limit(&limit);
        }
        self.unreadable += 1;
        Ok(())
    }

    fn commit_if_full(&mut self) -> Result<(), StoreError> {
        if self.jobs.len() + self.checkpoints.len() + self.signals.len() >= BATCH {
            self.commit(None, None)?;
        }
        Ok(())
    }

    /// Writes what is pending in one transaction, raising the stored highest job id to `floor`
    /// and the stored highest signal id to `signal_floor`.
    fn commit(&mut self, floor: Option<JobId>, signal_floor: Option<SignalId>) -> Result<(), StoreError> {
        let (jobs, checkpoints, signals) = (&self.jobs, &self.checkpoints, &self.signals);
        self.store.write("write salvaged records", |tx| {
            for job in jobs {
                // As it was: a running job keeps its lease, for the reaper to recover.
                tx.save(None, job)?;
                tx.raise_max_id(job.id)?;
            }
            for (job, c) in checkpoints {
                tx.put_checkpoint(*job, c)?;
            }
            for signal in signals {
                // As it was, like a checkpoint, even if its job was lost.
                tx.put_signal(signal)?;
            }
            if let Some(floor) = floor {
                tx.raise_max_id(floor)?;
            }
            if let Some(floor) = signal_floor {
                tx.raise_max_signal(floor)?;
            }
            Ok(())
        })?;
        self.written_jobs += self.jobs.len();
        self.written_checkpoints += self.checkpoints.len();
        self.written_signals += self.signals.len();
        self.jobs.clear();
        self.checkpoints.clear();
        self.signals.clear();
        Ok(())
    }

    /// Writes what is pending.
    pub(super) fn flush(&mut self) -> Result<(), StoreError> {
        self.commit(None, None)
    }

    /// Writes what is pending with `floor` as the stored highest job id and `signal_floor` as
    /// the stored highest signal id, closes the store, makes sure that it never hands out a
    /// job id up to `floor`, and records its data-loss mark.
    pub(super) fn seal(
        mut self,
        floor: Option<JobId>,
        signal_floor: Option<SignalId>,
        options: &SledOptions,
    ) -> Result<PathBuf, StoreError> {
        self.commit(floor, signal_floor)?;
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
