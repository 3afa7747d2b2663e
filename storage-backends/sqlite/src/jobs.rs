//! Inserting and reading jobs.

use durable_jobs_store::{
    transition, Checkpoint, ChildOf, Enqueued, JobFilter, JobId, JobRecord, JobStatus, NewJob, StatusCount, Timestamp,
};
use rusqlite::{params, Connection, OptionalExtension, Statement};

use crate::rows::{self, micros, Bytes, Json, Status, JOB_COLUMNS};

/// The live job holding a unique key; must match the `dj_jobs_unique` index.
pub(crate) const LIVE_KEY_HOLDER: &str = "SELECT id FROM dj_jobs
     WHERE unique_key = ?1 AND status IN ('scheduled', 'pending', 'running', 'waiting', 'paused')";

/// The newest job holding a unique key created after `?2` (the start of a unique window).
const WINDOW_KEY_HOLDER: &str =
    "SELECT id FROM dj_jobs WHERE unique_key = ?1 AND created_at > ?2 ORDER BY id DESC LIMIT 1";

/// Inserts one job: `?1`… in the order of [`insert`].
pub(crate) const INSERT: &str =
    "INSERT INTO dj_jobs (queue, name, args, status, priority, run_at, attempt, max_attempts, unique_key,
                          timeout_us, backoff_base_us, backoff_max_us, created_at, updated_at, parent_id, parent_idx,
                          concurrency_key)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14, ?15)";

pub(crate) fn enqueue(conn: &Connection, jobs: &[NewJob]) -> rusqlite::Result<Vec<Enqueued>> {
    let mut insert_stmt = conn.prepare_cached(INSERT)?;
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Some(holder) = key_holder(conn, job)? {
            out.push(Enqueued::Duplicate(JobId(holder)));
            continue;
        }
        out.push(Enqueued::New(insert(conn, &mut insert_stmt, job, job.unique_key.as_deref(), job.parent)?));
    }
    Ok(out)
}

/// Inserts `job` (its unique key checked already) with `unique_key` and `parent` instead of its
/// own, through `stmt` (prepared from [`INSERT`]); returns its id.
pub(crate) fn insert(
    conn: &Connection,
    stmt: &mut Statement<'_>,
    job: &NewJob,
    unique_key: Option<&str>,
    parent: Option<ChildOf>,
) -> rusqlite::Result<JobId> {
    stmt.execute(params![
        job.queue,
        job.name,
        Json(&job.args),
        transition::initial_status(job.run_at, job.created_at).as_str(),
        job.priority,
        job.run_at.0,
        job.max_attempts,
        unique_key,
        job.timeout.map(micros),
        job.retry_policy.map(|p| micros(p.base)),
        job.retry_policy.map(|p| micros(p.max)),
        job.created_at.0,
        parent.map(|p| p.parent.0),
        parent.map(|p| p.index),
        job.concurrency_key,
    ])?;
    Ok(JobId(conn.last_insert_rowid()))
}

/// The job holding `job`'s unique key: a live one, else the newest inside its window.
fn key_holder(conn: &Connection, job: &NewJob) -> rusqlite::Result<Option<i64>> {
    let Some(key) = &job.unique_key else { return Ok(None) };
    let live = conn.prepare_cached(LIVE_KEY_HOLDER)?.query_row([key], |r| r.get(0)).optional()?;
    match (live, transition::window_start(job)) {
        (Some(id), _) => Ok(Some(id)),
        (None, Some(start)) => {
            conn.prepare_cached(WINDOW_KEY_HOLDER)?.query_row(params![key, start.0], |r| r.get(0)).optional()
        }
        (None, None) => Ok(None),
    }
}

pub(crate) fn get(conn: &Connection, job: JobId) -> rusqlite::Result<Option<JobRecord>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM dj_jobs WHERE id = ?1");
    conn.prepare_cached(&sql)?.query_row([job.0], rows::job_record).optional()
}

/// The statement of [`list`]; the children of one parent (`?7`) are read from their index. An
/// error is matched with `instr`: `LIKE` ignores ASCII case and gives `%` and `_` a meaning.
fn list_sql(by_parent: bool) -> String {
    let parent = if by_parent { "parent_id = ?7" } else { "?7 IS NULL" };
    format!(
        "SELECT {JOB_COLUMNS} FROM dj_jobs
         WHERE {parent} AND (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR queue = ?2) AND (?3 IS NULL OR name = ?3)
           AND id > ?6 AND (?8 IS NULL OR instr(last_error, ?8) > 0)
         ORDER BY id LIMIT ?4 OFFSET ?5"
    )
}

pub(crate) fn list(conn: &Connection, filter: &JobFilter) -> rusqlite::Result<Vec<JobRecord>> {
    let mut stmt = conn.prepare_cached(&list_sql(filter.parent.is_some()))?;
    let rows = stmt.query_map(
        params![
            filter.status.map(JobStatus::as_str),
            filter.queue,
            filter.name,
            i64::try_from(filter.limit).unwrap_or(i64::MAX),
            i64::try_from(filter.offset).unwrap_or(i64::MAX),
            filter.after.map_or(i64::MIN, |a| a.0),
            filter.parent.map(|p| p.0),
            filter.error_contains,
        ],
        rows::job_record,
    )?;
    rows.collect()
}

pub(crate) fn counts(conn: &Connection, now: Timestamp) -> rusqlite::Result<Vec<StatusCount>> {
    let mut stmt = conn.prepare_cached(
        "SELECT queue, name, CASE WHEN status = 'scheduled' AND run_at <= ?1 THEN 'pending' ELSE status END AS counted,
                COUNT(*), SUM(status = 'running' AND run_started)
         FROM dj_jobs GROUP BY queue, name, counted",
    )?;
    let rows = stmt.query_map([now.0], |r| {
        Ok(StatusCount::new(
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Status>(2)?.0,
            r.get::<_, i64>(3)?.unsigned_abs(),
            r.get::<_, i64>(4)?.unsigned_abs(),
        ))
    })?;
    let mut counts = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    counts.sort();
    Ok(counts)
}

pub(crate) fn checkpoints(conn: &Connection, job: JobId, from: u32, limit: usize) -> rusqlite::Result<Vec<Checkpoint>> {
    let mut stmt = conn.prepare_cached(
        "SELECT idx, name, ok, value, retryable FROM dj_checkpoints WHERE job_id = ?1 AND idx >= ?2 ORDER BY idx LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![job.0, from, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
        let (index, name) = (rows::count(r.get(0)?), r.get::<_, String>(1)?);
        let value = r.get::<_, Bytes>(3)?.0;
        Ok(if r.get::<_, bool>(2)? {
            Checkpoint::value(index, name, value)
        } else {
            Checkpoint::error(index, name, String::from_utf8_lossy(&value), r.get(4)?)
        })
    })?;
    rows.collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("explain");
        let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
        let rows = stmt.query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3)).expect("plan rows");
        rows.map(|r| r.expect("plan row")).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn unique_key_lookups_use_their_indexes() {
        let mut conn = Connection::open_in_memory().expect("open");
        crate::connection::plan_once(&conn).expect("stable plans");
        crate::schema::migrate(&mut conn, 0).expect("migrate");
        let holder = plan(&conn, LIVE_KEY_HOLDER);
        assert!(holder.contains("dj_jobs_unique"), "unique lookup plan:\n{holder}");
        let window = plan(&conn, WINDOW_KEY_HOLDER);
        assert!(window.contains("dj_jobs_key"), "window lookup plan:\n{window}");
    }

    #[test]
    fn children_are_listed_from_their_index() {
        let mut conn = Connection::open_in_memory().expect("open");
        crate::connection::plan_once(&conn).expect("stable plans");
        crate::schema::migrate(&mut conn, 0).expect("migrate");
        let children = plan(&conn, &list_sql(true));
        assert!(children.contains("dj_jobs_parent"), "children list plan:\n{children}");
        assert!(!children.contains("TEMP B-TREE"), "a page of children is read in order, not sorted:\n{children}");
    }
}
