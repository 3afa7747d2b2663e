//! Job records, checkpoints and signals as stored values (postcard, a compact serde format).

use std::time::Duration;

use durable_jobs_store::{
    Checkpoint, ChildOf, ChildrenWait, ClaimToken, FanIn, JobId, JobRecord, JobStatus, Limit, RetryPolicy,
    ScheduleRecord, Signal, StoreError, StoreErrorKind, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::keys;

/// The fields of a stored job that format 1 already had, in its order. Postcard writes a
/// nested struct as its fields in sequence, with nothing around them, so a format-4 job
/// ([`StoredJob`]) is these followed by format 2's ([`RunFields`]), format 3's
/// ([`WaitFields`]) and its own; a format-3 job (`upgrade.rs`) stops after format 3's, a
/// format-2 job after format 2's, and a format-1 job is these alone. Postcard is not
/// self-describing: any change is a new format, with an upgrade, and a format that changes
/// these fields (or [`RunFields`]) must first freeze a copy of them for the older formats.
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

/// The fields format 2 added, in its order: a format-2 job is [`JobFields`] followed by these
/// (`upgrade.rs` reads it so), and a format-3 job has them in the same place.
#[derive(Serialize, Deserialize)]
pub(crate) struct RunFields {
    token: u64,
    run_started: bool,
    confirm_start: bool,
}

/// The fields format 3 added, after format 2's: what a waiting job waits for besides a time,
/// and the parent of a child job.
#[derive(Serialize, Deserialize)]
pub(crate) struct WaitFields {
    wait_signal: Option<String>,
    wait_children: Option<StoredChildrenWait>,
    /// Parent id, then the parent's step index.
    parent: Option<(i64, u32)>,
}

#[derive(Serialize, Deserialize)]
struct StoredChildrenWait {
    index: u32,
    need: u32,
    tolerate: u32,
    total: u32,
    succeeded: u32,
    failed: u32,
}

/// The fields format 4 added, after format 3's: operator control of a running job, and the
/// key its keyed limits count it under.
#[derive(Serialize, Deserialize)]
struct ControlFields {
    cancel_requested: bool,
    concurrency_key: Option<String>,
}

/// The layout of a stored job in the current format (4).
#[derive(Serialize, Deserialize)]
struct StoredJob {
    fields: JobFields,
    run: RunFields,
    waits: WaitFields,
    control: ControlFields,
}

/// A lead's holder and the end of its lease, as the `leads` tree stores them by role.
#[derive(Serialize, Deserialize)]
struct StoredLead {
    holder: String,
    until: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredSignal {
    name: String,
    payload: Vec<u8>,
    sent_at: i64,
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
    let run = RunFields { token: j.token.0, run_started: j.run_started, confirm_start: j.confirm_start };
    let waits = WaitFields {
        wait_signal: j.wait_signal.clone(),
        wait_children: j.wait_children.map(|w| StoredChildrenWait {
            index: w.rule.index,
            need: w.rule.need,
            tolerate: w.rule.tolerate,
            total: w.total,
            succeeded: w.succeeded,
            failed: w.failed,
        }),
        parent: j.parent.map(|p| (p.parent.0, p.index)),
    };
    let control = ControlFields { cancel_requested: j.cancel_requested, concurrency_key: j.concurrency_key.clone() };
    postcard::to_stdvec(&StoredJob { fields, run, waits, control })
        .map_err(|e| StoreError::new(StoreErrorKind::InvalidInput, format!("sled: cannot encode job: {e}")))
}

pub(crate) fn decode_job(bytes: &[u8]) -> Result<JobRecord, StoreError> {
    let s: StoredJob = postcard::from_bytes(bytes).map_err(|e| corrupt("job record", &e))?;
    let mut job = s.fields.into_record()?;
    s.run.apply(&mut job);
    s.waits.apply(&mut job);
    job.cancel_requested = s.control.cancel_requested;
    job.concurrency_key = s.control.concurrency_key;
    Ok(job)
}

impl WaitFields {
    /// Sets these fields of `job`.
    pub(crate) fn apply(self, job: &mut JobRecord) {
        job.wait_signal = self.wait_signal;
        job.wait_children = self.wait_children.map(|w| {
            let rule = FanIn { index: w.index, need: w.need, tolerate: w.tolerate };
            ChildrenWait::new(rule, w.total, w.succeeded, w.failed)
        });
        job.parent = self.parent.map(|(parent, index)| ChildOf { parent: JobId(parent), index });
    }
}

pub(crate) fn encode_lead(holder: &str, until: Timestamp) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(&StoredLead { holder: holder.to_owned(), until: until.0 })
        .map_err(|e| StoreError::new(StoreErrorKind::InvalidInput, format!("sled: cannot encode lead: {e}")))
}

/// A lead's holder and lease end.
pub(crate) fn decode_lead(bytes: &[u8]) -> Result<(String, Timestamp), StoreError> {
    let s: StoredLead = postcard::from_bytes(bytes).map_err(|e| corrupt("lead", &e))?;
    Ok((s.holder, Timestamp(s.until)))
}

/// A schedule as the `schedules` tree stores it by name.
#[derive(Serialize, Deserialize)]
struct StoredSchedule {
    spec: String,
    template: Vec<u8>,
    next_fire: i64,
    last_fire: Option<i64>,
    last_job: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

pub(crate) fn encode_schedule(s: &ScheduleRecord) -> Result<Vec<u8>, StoreError> {
    let stored = StoredSchedule {
        spec: s.spec.clone(),
        template: s.template.clone(),
        next_fire: s.next_fire.0,
        last_fire: s.last_fire.map(|t| t.0),
        last_job: s.last_job.map(|j| j.0),
        created_at: s.created_at.0,
        updated_at: s.updated_at.0,
    };
    postcard::to_stdvec(&stored)
        .map_err(|e| StoreError::new(StoreErrorKind::InvalidInput, format!("sled: cannot encode schedule: {e}")))
}

/// The schedule stored under `name` as `bytes`.
pub(crate) fn decode_schedule(name: &[u8], bytes: &[u8]) -> Result<ScheduleRecord, StoreError> {
    let name = std::str::from_utf8(name)
        .map_err(|_| StoreError::new(StoreErrorKind::Corrupt, "sled: a schedule's name is not UTF-8"))?;
    let s: StoredSchedule = postcard::from_bytes(bytes).map_err(|e| corrupt("schedule", &e))?;
    let mut out = ScheduleRecord::new(name, s.spec, s.template, Timestamp(s.next_fire), Timestamp(s.created_at));
    out.last_fire = s.last_fire.map(Timestamp);
    out.last_job = s.last_job.map(JobId);
    out.updated_at = Timestamp(s.updated_at);
    Ok(out)
}

/// A limit as the `limits` tree stores it by scope ([`keys::limit_scope`]).
#[derive(Serialize, Deserialize)]
struct StoredLimit {
    max_running: Option<u32>,
    per_second: Option<u32>,
    by_key: bool,
}

pub(crate) fn encode_limit(l: &Limit) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(&StoredLimit { max_running: l.max_running, per_second: l.per_second, by_key: l.by_key })
        .map_err(|e| StoreError::new(StoreErrorKind::InvalidInput, format!("sled: cannot encode limit: {e}")))
}

/// The limit stored under scope key `scope` as `bytes`.
pub(crate) fn decode_limit(scope: &[u8], bytes: &[u8]) -> Result<Limit, StoreError> {
    let Some((scope, [])) = keys::limit_scope_from(scope) else {
        return Err(StoreError::new(StoreErrorKind::Corrupt, "sled: unreadable limit scope"));
    };
    let s: StoredLimit = postcard::from_bytes(bytes).map_err(|e| corrupt("limit", &e))?;
    let mut limit = Limit::new(scope).by_key(s.by_key);
    limit.max_running = s.max_running;
    limit.per_second = s.per_second;
    Ok(limit)
}

impl RunFields {
    /// Sets these fields of `job`.
    pub(crate) fn apply(self, job: &mut JobRecord) {
        job.token = ClaimToken(self.token);
        job.run_started = self.run_started;
        job.confirm_start = self.confirm_start;
    }
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

pub(crate) fn encode_signal(s: &Signal) -> Result<Vec<u8>, StoreError> {
    let stored = StoredSignal { name: s.name.clone(), payload: s.payload.clone(), sent_at: s.sent_at.0 };
    postcard::to_stdvec(&stored)
        .map_err(|e| StoreError::new(StoreErrorKind::InvalidInput, format!("sled: cannot encode signal: {e}")))
}

/// The signal stored under `key` (job and id) as `bytes`.
pub(crate) fn decode_signal(key: &[u8], bytes: &[u8]) -> Result<Signal, StoreError> {
    let Some((job, id)) = keys::signal_from(key) else {
        return Err(StoreError::new(StoreErrorKind::Corrupt, "sled: unreadable signal key"));
    };
    let s: StoredSignal = postcard::from_bytes(bytes).map_err(|e| corrupt("signal", &e))?;
    Ok(Signal::new(id, job, s.name, s.payload, Timestamp(s.sent_at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Format 3's fields as plain values: wait signal, fan-in (index, need, tolerate, total,
    /// succeeded, failed), parent (id, index).
    type Waits = (Option<String>, Option<(u32, u32, u32, u32, u32, u32)>, Option<(i64, u32)>);

    /// A format-4 job is the format-1 fields, then format 2's, then format 3's, then its own:
    /// what `upgrade.rs` relies on to read formats 1 to 3 with the same structs.
    #[test]
    fn a_stored_job_starts_with_the_fields_of_each_older_format_in_turn() {
        let mut job = JobRecord::new(JobId(7), "q", "n", b"{}".to_vec(), Timestamp(5));
        job.status = JobStatus::Waiting;
        job.wake_at = Some(Timestamp(9));
        job.token = ClaimToken(3);
        job.run_started = true;
        job.wait_signal = Some("go".to_owned());
        job.wait_children = Some(ChildrenWait::new(FanIn { index: 2, need: 3, tolerate: 1 }, 4, 1, 0));
        job.parent = Some(ChildOf { parent: JobId(1), index: 6 });
        job.cancel_requested = true;
        job.concurrency_key = Some("t".to_owned());
        let bytes = encode_job(&job).unwrap();
        let (fields, rest): (JobFields, _) = postcard::take_from_bytes(&bytes).unwrap();
        let (run, rest): (RunFields, _) = postcard::take_from_bytes(rest).unwrap();
        let (token, run_started, confirm_start) = (run.token, run.run_started, run.confirm_start);
        assert_eq!((token, run_started, confirm_start), (3, true, false));
        let (waits, rest): (Waits, _) = postcard::take_from_bytes(rest).unwrap();
        assert_eq!(waits, (Some("go".to_owned()), Some((2, 3, 1, 4, 1, 0)), Some((1, 6))));
        assert_eq!(rest, [1, 1, 1, b't'], "cancel_requested, then the concurrency key, last");
        let mut v1 = job.clone();
        (v1.token, v1.run_started) = (ClaimToken::default(), false);
        (v1.wait_signal, v1.wait_children, v1.parent, v1.cancel_requested) = (None, None, None, false);
        v1.concurrency_key = None;
        let v1_record = fields.into_record().unwrap();
        assert_eq!(v1_record, v1);
        let mut v2 = v1_record;
        run.apply(&mut v2);
        (v1.token, v1.run_started) = (job.token, job.run_started);
        assert_eq!(v2, v1);
        assert_eq!(decode_job(&bytes).unwrap(), job);
        let v3 = crate::upgrade::decode_job_v3(&bytes[..bytes.len() - 4]).unwrap();
        let mut expected = job.clone();
        (expected.cancel_requested, expected.concurrency_key) = (false, None);
        assert_eq!(v3, expected);
        assert!(decode_job(&bytes[..bytes.len() - 4]).is_err(), "a format-3 record is not a format-4 one");
        assert!(decode_job(&bytes[..bytes.len() - 1]).is_err(), "nor is a format-4 record cut short");
    }

    #[test]
    fn a_signal_is_read_back_with_its_key() {
        let signal = Signal::new(durable_jobs_store::SignalId(4), JobId(2), "go", b"[1]".to_vec(), Timestamp(-3));
        let bytes = encode_signal(&signal).unwrap();
        assert_eq!(decode_signal(&keys::signal(JobId(2), signal.id), &bytes).unwrap(), signal);
        assert_eq!(decode_signal(&[0; 3], &bytes).unwrap_err().kind(), StoreErrorKind::Corrupt);
    }
}
