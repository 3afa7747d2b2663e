//! One transaction over every tree, with the index upkeep every job change needs.

use durable_jobs_store::{Checkpoint, JobId, JobRecord, JobStatus, StoreError};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use crate::{codec, keys};

/// The meta-tree key of the highest job id ever inserted.
pub(crate) const MAX_ID_KEY: &[u8] = b"max_id";

/// An error inside a transaction closure.
pub(crate) type TxError = ConflictableTransactionError<StoreError>;

/// The trees of one database, inside one transaction.
pub(crate) struct Tx<'a> {
    pub(crate) jobs: &'a TransactionalTree,
    pub(crate) claim: &'a TransactionalTree,
    pub(crate) lease: &'a TransactionalTree,
    pub(crate) wake: &'a TransactionalTree,
    pub(crate) unique: &'a TransactionalTree,
    pub(crate) checkpoints: &'a TransactionalTree,
    pub(crate) meta: &'a TransactionalTree,
}

fn abort(e: StoreError) -> TxError {
    ConflictableTransactionError::Abort(e)
}

impl Tx<'_> {
    pub(crate) fn job(&self, id: JobId) -> Result<Option<JobRecord>, TxError> {
        match self.jobs.get(keys::id(id))? {
            Some(bytes) => codec::decode_job(&bytes).map(Some).map_err(abort),
            None => Ok(None),
        }
    }

    /// The job if `worker` holds its lease.
    pub(crate) fn fenced(&self, id: JobId, worker: &str) -> Result<Option<JobRecord>, TxError> {
        Ok(self.job(id)?.filter(|j| j.status == JobStatus::Running && j.locked_by.as_deref() == Some(worker)))
    }

    pub(crate) fn live_holder(&self, key: &str) -> Result<Option<JobId>, TxError> {
        Ok(self.unique.get(key.as_bytes())?.and_then(|v| keys::id_from(&v)))
    }

    /// Writes `new`, moving its index entries from where `old` had them.
    pub(crate) fn save(&self, old: Option<&JobRecord>, new: &JobRecord) -> Result<(), TxError> {
        if let Some(old) = old {
            self.unindex(old)?;
        }
        self.index(new)?;
        self.jobs.insert(&keys::id(new.id), codec::encode_job(new).map_err(abort)?)?;
        Ok(())
    }

    fn index(&self, j: &JobRecord) -> Result<(), TxError> {
        match (j.status, j.lease_until, j.wake_at) {
            (JobStatus::Pending, ..) => {
                self.claim.insert(keys::claim(&j.queue, j.priority, j.run_at, j.id), j.name.as_bytes())?;
            }
            (JobStatus::Running, Some(until), _) => {
                self.lease.insert(&keys::timed(until, j.id), &[])?;
            }
            (JobStatus::Waiting, _, Some(at)) => {
                self.wake.insert(&keys::timed(at, j.id), &[])?;
            }
            _ => {}
        }
        if let (true, Some(key)) = (j.status.is_live(), &j.unique_key) {
            self.unique.insert(key.as_bytes(), &keys::id(j.id))?;
        }
        Ok(())
    }

    fn unindex(&self, j: &JobRecord) -> Result<(), TxError> {
        match (j.status, j.lease_until, j.wake_at) {
            (JobStatus::Pending, ..) => {
                self.claim.remove(keys::claim(&j.queue, j.priority, j.run_at, j.id))?;
            }
            (JobStatus::Running, Some(until), _) => {
                self.lease.remove(&keys::timed(until, j.id))?;
            }
            (JobStatus::Waiting, _, Some(at)) => {
                self.wake.remove(&keys::timed(at, j.id))?;
            }
            _ => {}
        }
        if let (true, Some(key)) = (j.status.is_live(), &j.unique_key) {
            self.unique.remove(key.as_bytes())?;
        }
        Ok(())
    }

    /// Raises the stored highest job id to `id` (it never goes down, whatever is deleted).
    pub(crate) fn raise_max_id(&self, id: JobId) -> Result<(), TxError> {
        let current = self.meta.get(MAX_ID_KEY)?.and_then(|v| keys::id_from(&v));
        if current.is_none_or(|c| c < id) {
            self.meta.insert(MAX_ID_KEY, &keys::id(id))?;
        }
        Ok(())
    }

    pub(crate) fn put_checkpoint(&self, job: JobId, c: &Checkpoint) -> Result<(), TxError> {
        self.checkpoints.insert(&keys::checkpoint(job, c.index), codec::encode_checkpoint(c).map_err(abort)?)?;
        Ok(())
    }
}
