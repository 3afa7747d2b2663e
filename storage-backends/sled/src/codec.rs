//! Job records and checkpoints as stored values (postcard, a compact serde format).

use std::time::Duration;

use durable_jobs_store::{
    Checkpoint, ClaimToken, JobId, JobRecord, JobStatus, RetryPolicy, StoreError, StoreErrorKind, Timestamp,
};
use serde::{Deserialize, Serialize};

/// The layout of a stored job (postcard is not self-describing: any change is a new format,
/// with an upgrade in `upgrade.rs`).
#[derive(Serialize, Deserialize)]
struct StoredJob {
    id: i64,
    queue: String,
    name: String,
    args: Vec<u8>,
    status: String,
    priority: i32,
    run_at: i64,
    attempt: u32,
    max_attempts: u32,
    unique_key: Option<String>,
    timeout_us: Option<u64>,
    backoff_us: Option<(u64, u64)>,
    locked_by: Option<String>,
    lease_until: Option<i64>,
    wake_at: Option<i64>,
    last_error: Option<String>,
    result: Option<Vec<u8>>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    updated_at: i64,
    token: u64,
    run_started: bool,
    confirm_start: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredCheckpoint {
    name: String,
    ok: bool,
    value: Vec<u8>,
    retryable: bool,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn corrupt(what: &str, e: &postcard::Error) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, format!("sled: unreadable {what}: {e}"))
}

pub(crate) fn encode_job(j: &JobRecord) -> Result<Vec<u8>, StoreError> {
    let stored = StoredJob {
        id: j.id.0,
        queue: j.queue.clone(),
        name: j.name.clone(),
        args: j.args.clone(),
        status: j.status.as_str().to_owned(),
        priority: j.priority,
        run_at: j.run_at.0,
        attempt: j.attempt,
        max_attempts: j.max_attempts,
        unique_key: j.unique_key.clone(),
        timeout_us: j.timeout.map(micros),
        backoff_us: j.retry_policy.map(|p| (micros(p.base), micros(p.max))),
        locked_by: j.locked_by.clone(),
        lease_until: j.lease_until.map(|t| t.0),
        wake_at: j.wake_at.map(|t| t.0),
        last_error: j.last_error.clone(),
        result: j.result.clone(),
        created_at: j.created_at.0,
        started_at: j.started_at.map(|t| t.0),
        finished_at: j.finished_at.map(|t| t.0),
        updated_at: j.updated_at.0,
        token: j.token.0,
        run_started: j.run_started,
        confirm_start: j.confirm_start,
    };
    postcard::to_stdvec(&stored)
        .map_err(|e| StoreError::new(StoreErrorKind::InvalidInput, format!("sled: cannot encode job: {e}")))
}

pub(crate) fn decode_job(bytes: &[u8]) -> Result<JobRecord, StoreError> {
    let s: StoredJob = postcard::from_bytes(bytes).map_err(|e| corrupt("job record", &e))?;
    let mut job = record(s.id, s.queue, s.name, s.args, &s.status, s.created_at)?;
    job.priority = s.priority;
    job.run_at = Timestamp(s.run_at);
    job.attempt = s.attempt;
    job.max_attempts = s.max_attempts;
    job.unique_key = s.unique_key;
    job.timeout = s.timeout_us.map(Duration::from_micros);
    job.retry_policy = s
        .backoff_us
        .map(|(base, max)| RetryPolicy { base: Duration::from_micros(base), max: Duration::from_micros(max) });
    job.locked_by = s.locked_by;
    job.lease_until = s.lease_until.map(Timestamp);
    job.wake_at = s.wake_at.map(Timestamp);
    job.last_error = s.last_error;
    job.result = s.result;
    job.started_at = s.started_at.map(Timestamp);
    job.finished_at = s.finished_at.map(Timestamp);
    job.updated_at = Timestamp(s.updated_at);
    job.token = ClaimToken(s.token);
    job.run_started = s.run_started;
    job.confirm_start = s.confirm_start;
    Ok(job)
}

/// A record with the fields every format has.
pub(crate) fn record(
    id: i64,
    queue: String,
    name: String,
    args: Vec<u8>,
    status: &str,
    created_at: i64,
) -> Result<JobRecord, StoreError> {
    let status: JobStatus = status
        .parse()
        .map_err(|e| StoreError::with_source(StoreErrorKind::Corrupt, format!("sled: job {id}: bad status"), e))?;
    let mut job = JobRecord::new(JobId(id), queue, name, args, Timestamp(created_at));
    job.status = status;
    Ok(job)
}

pub(crate) fn encode_checkpoint(c: &Checkpoint) -> Result<Vec<u8>, StoreError> {
    let (ok, value) = match &c.outcome {
        Ok(v) => (true, v.clone()),
        Err(e) => (false, e.as_bytes().to_vec()),
    };
    postcard::to_stdvec(&StoredCheckpoint { name: c.name.clone(), ok, value, retryable: c.retryable })
        .map_err(|e| StoreError::new(StoreErrorKind::InvalidInput, format!("sled: cannot encode checkpoint: {e}")))
}

pub(crate) fn decode_checkpoint(index: u32, bytes: &[u8]) -> Result<Checkpoint, StoreError> {
    let s: StoredCheckpoint = postcard::from_bytes(bytes).map_err(|e| corrupt("checkpoint", &e))?;
    Ok(checkpoint(index, s.name, s.ok, s.value, s.retryable))
}

/// A checkpoint from its stored parts.
pub(crate) fn checkpoint(index: u32, name: String, ok: bool, value: Vec<u8>, retryable: bool) -> Checkpoint {
    if ok {
        Checkpoint::value(index, name, value)
    } else {
        Checkpoint::error(index, name, String::from_utf8_lossy(&value), retryable)
    }
}

pub(crate) fn corrupt_entry(what: &str, e: &postcard::Error) -> StoreError {
    corrupt(what, e)
}
