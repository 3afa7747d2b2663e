//! Job records and checkpoints as stored values (postcard, a compact serde format).

use std::time::Duration;

use durable_jobs_store::{Checkpoint, JobId, JobRecord, JobStatus, RetryPolicy, StoreError, StoreErrorKind, Timestamp};
use serde::{Deserialize, Serialize};

/// The layout of a stored job. Append fields only at the end, as `Option`s, to stay readable.
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
}

#[derive(Serialize, Deserialize)]
struct StoredCheckpoint {
    name: String,
    ok: bool,
    value: Vec<u8>,
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
    };
    postcard::to_stdvec(&stored)
        .map_err(|e| StoreError::new(StoreErrorKind::InvalidInput, format!("sled: cannot encode job: {e}")))
}

pub(crate) fn decode_job(bytes: &[u8]) -> Result<JobRecord, StoreError> {
    let s: StoredJob = postcard::from_bytes(bytes).map_err(|e| corrupt("job record", &e))?;
    let status: JobStatus = s
        .status
        .parse()
        .map_err(|e| StoreError::with_source(StoreErrorKind::Corrupt, format!("sled: job {}: bad status", s.id), e))?;
    Ok(JobRecord {
        id: JobId(s.id),
        queue: s.queue,
        name: s.name,
        args: s.args,
        status,
        priority: s.priority,
        run_at: Timestamp(s.run_at),
        attempt: s.attempt,
        max_attempts: s.max_attempts,
        unique_key: s.unique_key,
        timeout: s.timeout_us.map(Duration::from_micros),
        retry_policy: s
            .backoff_us
            .map(|(base, max)| RetryPolicy { base: Duration::from_micros(base), max: Duration::from_micros(max) }),
        locked_by: s.locked_by,
        lease_until: s.lease_until.map(Timestamp),
        wake_at: s.wake_at.map(Timestamp),
        last_error: s.last_error,
        result: s.result,
        created_at: Timestamp(s.created_at),
        started_at: s.started_at.map(Timestamp),
        finished_at: s.finished_at.map(Timestamp),
        updated_at: Timestamp(s.updated_at),
    })
}

pub(crate) fn encode_checkpoint(c: &Checkpoint) -> Result<Vec<u8>, StoreError> {
    let (ok, value) = match &c.outcome {
        Ok(v) => (true, v.clone()),
        Err(e) => (false, e.as_bytes().to_vec()),
    };
    postcard::to_stdvec(&StoredCheckpoint { name: c.name.clone(), ok, value })
        .map_err(|e| StoreError::new(StoreErrorKind::InvalidInput, format!("sled: cannot encode checkpoint: {e}")))
}

pub(crate) fn decode_checkpoint(index: u32, bytes: &[u8]) -> Result<Checkpoint, StoreError> {
    let s: StoredCheckpoint = postcard::from_bytes(bytes).map_err(|e| corrupt("checkpoint", &e))?;
    let outcome = if s.ok { Ok(s.value) } else { Err(String::from_utf8_lossy(&s.value).into_owned()) };
    Ok(Checkpoint { index, name: s.name, outcome })
}
