//! Job records and checkpoints as stored values (postcard, a compact serde format).

use std::time::Duration;

use durable_jobs_store::{
    Checkpoint, ClaimToken, JobId, JobRecord, JobStatus, RetryPolicy, StoreError, StoreErrorKind, Timestamp,
};
use serde::{Deserialize, Serialize};

/// The fields of a stored job that format 1 already had, in its order. Postcard writes a
/// nested struct as its fields in sequence, with nothing around them, so a format-2 job
/// ([`StoredJob`]) is these followed by its own, and a format-1 job (`upgrade.rs`) is these
/// alone. Postcard is not self-describing: any change is a new format, with an upgrade, and a
/// format that changes these fields must first freeze a copy of them for format 1.
#[derive(Serialize, Deserialize)]
pub(crate) struct JobFields {
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

/// The layout of a stored job in the current format (2).
#[derive(Serialize, Deserialize)]
struct StoredJob {
    fields: JobFields,
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

pub(crate) fn corrupt(what: &str, e: &postcard::Error) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, format!("sled: unreadable {what}: {e}"))
}

pub(crate) fn encode_job(j: &JobRecord) -> Result<Vec<u8>, StoreError> {
    let fields = JobFields {
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
    let stored = StoredJob { fields, token: j.token.0, run_started: j.run_started, confirm_start: j.confirm_start };
    postcard::to_stdvec(&stored)
        .map_err(|e| StoreError::new(StoreErrorKind::InvalidInput, format!("sled: cannot encode job: {e}")))
}

pub(crate) fn decode_job(bytes: &[u8]) -> Result<JobRecord, StoreError> {
    let s: StoredJob = postcard::from_bytes(bytes).map_err(|e| corrupt("job record", &e))?;
    let mut job = s.fields.into_record()?;
    job.token = ClaimToken(s.token);
    job.run_started = s.run_started;
    job.confirm_start = s.confirm_start;
    Ok(job)
}

impl JobFields {
    /// The record these fields describe (the fields of later formats at their defaults).
    pub(crate) fn into_record(self) -> Result<JobRecord, StoreError> {
        let id = self.id;
        let status: JobStatus = self
            .status
            .parse()
            .map_err(|e| StoreError::with_source(StoreErrorKind::Corrupt, format!("sled: job {id}: bad status"), e))?;
        let mut job = JobRecord::new(JobId(id), self.queue, self.name, self.args, Timestamp(self.created_at));
        job.status = status;
        job.priority = self.priority;
        job.run_at = Timestamp(self.run_at);
        job.attempt = self.attempt;
        job.max_attempts = self.max_attempts;
        job.unique_key = self.unique_key;
        job.timeout = self.timeout_us.map(Duration::from_micros);
        job.retry_policy = self
            .backoff_us
            .map(|(base, max)| RetryPolicy { base: Duration::from_micros(base), max: Duration::from_micros(max) });
        job.locked_by = self.locked_by;
        job.lease_until = self.lease_until.map(Timestamp);
        job.wake_at = self.wake_at.map(Timestamp);
        job.last_error = self.last_error;
        job.result = self.result;
        job.started_at = self.started_at.map(Timestamp);
        job.finished_at = self.finished_at.map(Timestamp);
        job.updated_at = Timestamp(self.updated_at);
        Ok(job)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A format-2 job is the format-1 fields followed by format 2's own: what `upgrade.rs`
    /// relies on to read format 1 with the same struct.
    #[test]
    fn a_stored_job_starts_with_the_format_1_fields() {
        let mut job = JobRecord::new(JobId(7), "q", "n", b"{}".to_vec(), Timestamp(5));
        job.status = JobStatus::Running;
        job.wake_at = Some(Timestamp(9));
        job.token = ClaimToken(3);
        job.run_started = true;
        let bytes = encode_job(&job).unwrap();
        let (fields, rest): (JobFields, _) = postcard::take_from_bytes(&bytes).unwrap();
        let (token, run_started, confirm_start): (u64, bool, bool) = postcard::from_bytes(rest).unwrap();
        assert_eq!((token, run_started, confirm_start), (3, true, false));
        let mut v1 = job.clone();
        (v1.token, v1.run_started) = (ClaimToken::default(), false);
        assert_eq!(fields.into_record().unwrap(), v1);
        assert_eq!(decode_job(&bytes).unwrap(), job);
    }
}
