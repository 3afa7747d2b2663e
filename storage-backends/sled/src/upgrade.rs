//! Upgrading a database written in an older format, in one transaction (all or nothing).

use durable_jobs_store::{transition, Checkpoint, JobRecord, JobStatus, StoreError, Timestamp};
use serde::Deserialize;

use crate::codec;
use crate::error::store_error;
use crate::store::SledStore;
use crate::tx::TxError;

/// A checkpoint as format 1 stored it.
#[derive(Deserialize)]
struct CheckpointV1 {
    name: String,
    ok: bool,
    value: Vec<u8>,
}

/// A format-1 job record in the current shape; a pending job due after `now` becomes scheduled.
pub(crate) fn decode_job_v1(bytes: &[u8], now: Timestamp) -> Result<JobRecord, StoreError> {
    let old: codec::JobFields = postcard::from_bytes(bytes).map_err(|e| codec::corrupt("format 1 job", &e))?;
    let mut job = old.into_record()?;
    if job.status == JobStatus::Pending {
        job.status = transition::initial_status(job.run_at, now);
    }
    Ok(job)
}

/// A format-1 checkpoint in the current shape.
pub(crate) fn decode_checkpoint_v1(index: u32, bytes: &[u8]) -> Result<Checkpoint, StoreError> {
    let old: CheckpointV1 = postcard::from_bytes(bytes).map_err(|e| codec::corrupt("format 1 checkpoint", &e))?;
    Ok(codec::checkpoint(index, old.name, old.ok, old.value, false))
}

/// Rewrites every job and checkpoint of a format-1 database in the current format and builds
/// the current indexes. Format 1's own claim index is left behind in its old tree, unread.
pub(crate) fn from_v1(store: &SledStore, now: Timestamp) -> Result<(), StoreError> {
    let mut jobs = Vec::new();
    for entry in &store.trees().jobs {
        let (_, bytes) = entry.map_err(|e| store_error("read jobs to upgrade", e))?;
        jobs.push(decode_job_v1(&bytes, now)?);
    }
    let mut checkpoints = Vec::new();
    for entry in &store.trees().checkpoints {
        let (key, bytes) = entry.map_err(|e| store_error("read checkpoints to upgrade", e))?;
        let index = key.get(8..12).and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes);
        if let Some(job) = crate::keys::id_from(key.get(..8).unwrap_or_default()) {
            checkpoints.push((job, decode_checkpoint_v1(index, &bytes)?));
        }
    }
    store.write("upgrade format 1", |tx| {
        for job in &jobs {
            tx.save(None, job)?;
        }
        for (job, checkpoint) in &checkpoints {
            tx.put_checkpoint(*job, checkpoint)?;
        }
        tx.set_format().map_err(TxError::from)
    })
}
