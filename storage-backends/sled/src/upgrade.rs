//! Upgrading a database written in an older format, in one transaction (all or nothing).
//!
//! Format 1 → 4 goes through format 2's record: format 1's fields are read into a record with
//! format 2's fields at their upgrade values (scheduled status, no claim token), and the later
//! formats' at their defaults (no wait besides a time, no parent, no cancel asked for, no
//! concurrency key), which is what 1 → 2 → 3 → 4 gives. Formats 2 and 3 → 4 rewrite every job
//! record with the newer fields at their defaults: a format-2 database has no signals and no
//! child jobs, and no older format has a cancel asked for, paused queues, leads, schedules or
//! limits, so those trees start empty.
//! Every upgrade writes each job through `Tx::save`, which builds the finished index (new in
//! format 4) for the jobs that had finished.

use durable_jobs_store::{transition, Checkpoint, JobRecord, JobStatus, StoreError, Timestamp};
use serde::Deserialize;

use crate::codec::{self, JobFields, RunFields, WaitFields};
use crate::error::store_error;
use crate::store::SledStore;
use crate::tx::{Format, TxError};

/// A checkpoint as format 1 stored it.
#[derive(Deserialize)]
struct CheckpointV1 {
    name: String,
    ok: bool,
    value: Vec<u8>,
}

/// A job as format 2 stored it: format 1's fields, then its own.
#[derive(Deserialize)]
struct JobV2 {
    fields: JobFields,
    run: RunFields,
}

/// A job as format 3 stored it: format 2's fields, then its own.
#[derive(Deserialize)]
struct JobV3 {
    fields: JobFields,
    run: RunFields,
    waits: WaitFields,
}

/// A format-1 job record in the current shape; a pending job due after `now` becomes scheduled.
pub(crate) fn decode_job_v1(bytes: &[u8], now: Timestamp) -> Result<JobRecord, StoreError> {
    let old: JobFields = postcard::from_bytes(bytes).map_err(|e| codec::corrupt("format 1 job", &e))?;
    let mut job = old.into_record()?;
    if job.status == JobStatus::Pending {
        job.status = transition::initial_status(job.run_at, now);
    }
    Ok(job)
}

/// A format-2 job record in the current shape.
pub(crate) fn decode_job_v2(bytes: &[u8]) -> Result<JobRecord, StoreError> {
    let old: JobV2 = postcard::from_bytes(bytes).map_err(|e| codec::corrupt("format 2 job", &e))?;
    let mut job = old.fields.into_record()?;
    old.run.apply(&mut job);
    Ok(job)
}

/// A format-3 job record in the current shape.
pub(crate) fn decode_job_v3(bytes: &[u8]) -> Result<JobRecord, StoreError> {
    let old: JobV3 = postcard::from_bytes(bytes).map_err(|e| codec::corrupt("format 3 job", &e))?;
    let mut job = old.fields.into_record()?;
    old.run.apply(&mut job);
    old.waits.apply(&mut job);
    Ok(job)
}

/// A job record stored in `format`, in the current shape (`now` decides format 1's statuses).
pub(crate) fn decode_job(format: Format, bytes: &[u8], now: Timestamp) -> Result<JobRecord, StoreError> {
    match format {
        Format::V1 => decode_job_v1(bytes, now),
        Format::V2 => decode_job_v2(bytes),
        Format::V3 => decode_job_v3(bytes),
        Format::Current => codec::decode_job(bytes),
    }
}

/// A format-1 checkpoint in the current shape.
pub(crate) fn decode_checkpoint_v1(index: u32, bytes: &[u8]) -> Result<Checkpoint, StoreError> {
    let old: CheckpointV1 = postcard::from_bytes(bytes).map_err(|e| codec::corrupt("format 1 checkpoint", &e))?;
    Ok(codec::checkpoint(index, old.name, old.ok, old.value, false))
}

/// A checkpoint stored in `format` (formats 2 to 4 store them alike).
pub(crate) fn decode_checkpoint(format: Format, index: u32, bytes: &[u8]) -> Result<Checkpoint, StoreError> {
    match format {
        Format::V1 => decode_checkpoint_v1(index, bytes),
        Format::V2 | Format::V3 | Format::Current => codec::decode_checkpoint(index, bytes),
    }
}

/// Brings a database opened in `format` to the current format.
pub(crate) fn upgrade(store: &SledStore, format: Format, now: Timestamp) -> Result<(), StoreError> {
    match format {
        Format::V1 => from_v1(store, now),
        Format::V2 | Format::V3 => rewrite_jobs(store, format),
        Format::Current => Ok(()),
    }
}

/// Rewrites every job and checkpoint of a format-1 database in the current format and builds
/// the current indexes. Format 1's own claim index is left behind in its old tree, unread.
fn from_v1(store: &SledStore, now: Timestamp) -> Result<(), StoreError> {
    let jobs = read_jobs(store, Format::V1, now)?;
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

/// Rewrites every job record of a format-2 or format-3 database in the current format. Its
/// other indexes and its checkpoints are already in the current layout (saving a record again
/// writes the same index entries); saving adds the finished index's.
fn rewrite_jobs(store: &SledStore, format: Format) -> Result<(), StoreError> {
    let jobs = read_jobs(store, format, Timestamp::now())?;
    let what = if format == Format::V2 { "upgrade format 2" } else { "upgrade format 3" };
    store.write(what, |tx| {
        for job in &jobs {
            tx.save(None, job)?;
        }
        tx.set_format().map_err(TxError::from)
    })
}

fn read_jobs(store: &SledStore, format: Format, now: Timestamp) -> Result<Vec<JobRecord>, StoreError> {
    let mut jobs = Vec::new();
    for entry in &store.trees().jobs {
        let (_, bytes) = entry.map_err(|e| store_error("read jobs to upgrade", e))?;
        jobs.push(decode_job(format, &bytes, now)?);
    }
    Ok(jobs)
}
