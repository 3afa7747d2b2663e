//! Converting between Rust values and SQLite columns.

use std::time::Duration;

use durable_jobs_store::{
    ChildOf, ChildrenWait, ClaimToken, FanIn, JobId, JobRecord, JobStatus, RetryPolicy, Timestamp,
};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Row, ToSql};

/// JSON bytes stored as TEXT (readable with the sqlite3 shell) and read back byte for byte,
/// whether or not they are valid UTF-8.
pub(crate) struct Json<'a>(pub &'a [u8]);

impl ToSql for Json<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.0)))
    }
}

/// Reads TEXT or BLOB as raw bytes.
pub(crate) struct Bytes(pub Vec<u8>);

impl FromSql for Bytes {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_bytes().map(|b| Bytes(b.to_vec()))
    }
}

/// A status column.
pub(crate) struct Status(pub JobStatus);

impl FromSql for Status {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        text.parse().map(Status).map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

pub(crate) fn duration(us: Option<i64>) -> Option<Duration> {
    us.map(|us| Duration::from_micros(us.max(0).unsigned_abs()))
}

pub(crate) fn retry_policy(base_us: Option<i64>, max_us: Option<i64>) -> Option<RetryPolicy> {
    Some(RetryPolicy { base: duration(base_us)?, max: duration(max_us)? })
}

pub(crate) fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// The columns [`job_record`] reads, in order.
pub(crate) const JOB_COLUMNS: &str = "id, queue, name, args, status, priority, run_at, attempt, max_attempts, \
     unique_key, timeout_us, backoff_base_us, backoff_max_us, locked_by, lease_until, wake_at, last_error, \
     result, created_at, started_at, finished_at, updated_at, token, run_started, confirm_start, parent_id, parent_idx, \
     wait_signal, fan_idx, fan_need, fan_tolerate, fan_total, fan_succeeded, fan_failed, cancel_requested, \
     concurrency_key";

pub(crate) fn job_record(r: &Row<'_>) -> rusqlite::Result<JobRecord> {
    let ts = |i| r.get::<_, i64>(i).map(Timestamp);
    let opt_ts = |i| r.get::<_, Option<i64>>(i).map(|t| t.map(Timestamp));
    let mut job = JobRecord::new(
        JobId(r.get(0)?),
        r.get::<_, String>(1)?,
        r.get::<_, String>(2)?,
        r.get::<_, Bytes>(3)?.0,
        ts(18)?,
    );
    job.status = r.get::<_, Status>(4)?.0;
    job.priority = r.get(5)?;
    job.run_at = ts(6)?;
    job.attempt = count(r.get(7)?);
    job.max_attempts = count(r.get(8)?);
    job.unique_key = r.get(9)?;
    job.timeout = duration(r.get(10)?);
    job.retry_policy = retry_policy(r.get(11)?, r.get(12)?);
    job.locked_by = r.get(13)?;
    job.lease_until = opt_ts(14)?;
    job.wake_at = opt_ts(15)?;
    job.last_error = r.get(16)?;
    job.result = r.get::<_, Option<Bytes>>(17)?.map(|b| b.0);
    job.started_at = opt_ts(19)?;
    job.finished_at = opt_ts(20)?;
    job.updated_at = ts(21)?;
    job.token = token(r.get(22)?);
    job.run_started = r.get(23)?;
    job.confirm_start = r.get(24)?;
    job.parent = child_of(r.get(25)?, r.get(26)?);
    job.wait_signal = r.get(27)?;
    job.wait_children = children_wait(r, 28)?;
    job.cancel_requested = r.get(34)?;
    job.concurrency_key = r.get(35)?;
    Ok(job)
}

/// A child's link to its parent, from `parent_id` and `parent_idx`.
pub(crate) fn child_of(parent: Option<i64>, index: Option<i64>) -> Option<ChildOf> {
    Some(ChildOf { parent: JobId(parent?), index: count(index.unwrap_or(0)) })
}

/// What a waiting job's children have done, from the six `fan_` columns starting at `at`
/// (`fan_idx`, `fan_need`, `fan_tolerate`, `fan_total`, `fan_succeeded`, `fan_failed`).
fn children_wait(r: &Row<'_>, at: usize) -> rusqlite::Result<Option<ChildrenWait>> {
    let Some(index) = r.get::<_, Option<i64>>(at)? else { return Ok(None) };
    let n = |i: usize| r.get::<_, Option<i64>>(at + i).map(|v| count(v.unwrap_or(0)));
    let rule = FanIn { index: count(index), need: n(1)?, tolerate: n(2)? };
    Ok(Some(ChildrenWait::new(rule, n(3)?, n(4)?, n(5)?)))
}

/// A stored claim token (never negative).
pub(crate) fn token(n: i64) -> ClaimToken {
    ClaimToken(n.max(0).unsigned_abs())
}

/// A claim token as stored.
pub(crate) fn token_value(t: ClaimToken) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}
