//! Recurring schedules as statements: stored by name in `dj_schedules`, fired by a
//! compare-and-set on their next fire time in the transaction that enqueues their job.

use durable_jobs_store::{Enqueued, FireOutcome, JobId, NewJob, ScheduleRecord, Timestamp};
use rusqlite::{params, Connection};

use crate::jobs;
use crate::rows::Bytes;

/// Inserts a schedule, or replaces what a put replaces (the rest says what it did).
const PUT: &str =
    "INSERT INTO dj_schedules (name, spec, template, next_fire, last_fire, last_job, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
     ON CONFLICT (name) DO UPDATE
     SET spec = excluded.spec, template = excluded.template, next_fire = excluded.next_fire,
         updated_at = excluded.updated_at";

/// Moves schedule `?1` from due time `?2` to `?3` at `?4`: one row changed only if `?2` is
/// still its next fire, so that each due time fires once across processes.
const MOVE: &str = "UPDATE dj_schedules SET next_fire = ?3, last_fire = ?2, last_job = NULL, updated_at = ?4
     WHERE name = ?1 AND next_fire = ?2";

pub(crate) fn put(conn: &Connection, s: &ScheduleRecord) -> rusqlite::Result<()> {
    conn.prepare_cached(PUT)?.execute(params![
        s.name,
        s.spec,
        s.template,
        s.next_fire.0,
        s.last_fire.map(|t| t.0),
        s.last_job.map(|j| j.0),
        s.created_at.0,
        s.updated_at.0,
    ])?;
    Ok(())
}

/// Sorted by name (`BINARY` collation: byte order, as `String`'s).
pub(crate) fn all(conn: &Connection) -> rusqlite::Result<Vec<ScheduleRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, spec, template, next_fire, last_fire, last_job, created_at, updated_at
         FROM dj_schedules ORDER BY name",
    )?;
    let rows = stmt.query_map([], |r| {
        let mut s = ScheduleRecord::new(
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Bytes>(2)?.0,
            Timestamp(r.get(3)?),
            Timestamp(r.get(6)?),
        );
        s.last_fire = r.get::<_, Option<i64>>(4)?.map(Timestamp);
        s.last_job = r.get::<_, Option<i64>>(5)?.map(JobId);
        s.updated_at = Timestamp(r.get(7)?);
        Ok(s)
    })?;
    rows.collect()
}

pub(crate) fn remove(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached("DELETE FROM dj_schedules WHERE name = ?1")?.execute([name])? == 1)
}

/// Fires `name` for due time `due` inside the caller's transaction: moves it first (the
/// compare-and-set), then enqueues `job` and records it.
pub(crate) fn fire(
    conn: &Connection,
    name: &str,
    due: Timestamp,
    next: Timestamp,
    job: &NewJob,
    now: Timestamp,
) -> rusqlite::Result<FireOutcome> {
    if conn.prepare_cached(MOVE)?.execute(params![name, due.0, next.0, now.0])? == 0 {
        let exists = conn.prepare_cached("SELECT 1 FROM dj_schedules WHERE name = ?1")?.exists([name])?;
        return Ok(if exists { FireOutcome::Moved } else { FireOutcome::NotFound });
    }
    let enqueued = jobs::enqueue(conn, std::slice::from_ref(job))?
        .pop()
        .ok_or_else(|| rusqlite::Error::ToSqlConversionFailure("an enqueue of one job reported none".into()))?;
    if let Enqueued::New(id) = enqueued {
        conn.prepare_cached("UPDATE dj_schedules SET last_job = ?2 WHERE name = ?1")?.execute(params![name, id.0])?;
    }
    Ok(FireOutcome::Fired(enqueued))
}
