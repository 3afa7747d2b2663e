//! Fenced writes about running jobs, lease renewal, release, reclaim and wake-ups.

use durable_jobs_store::{lease_expired_message, JobId, Reclaimed, Timestamp, Write, WriteOutcome};
use rusqlite::{params, Connection};

use crate::rows::{self, Json};

/// A statement ending a run of a job, fenced: `?1` is the job, `?2` the worker, `?3` now, then
/// the statement's own parameters from `?4`. Built at compile time: the statement cache is keyed
/// by text, and this runs for every completion.
macro_rules! fenced {
    ($set:literal) => {
        concat!("UPDATE jobs SET ", $set, ", updated_at = ?3 WHERE id = ?1 AND status = 'running' AND locked_by = ?2")
    };
}

pub(crate) fn commit(
    conn: &Connection,
    worker: &str,
    now: Timestamp,
    writes: &[Write],
) -> rusqlite::Result<Vec<WriteOutcome>> {
    let mut out = Vec::with_capacity(writes.len());
    for write in writes {
        let changed = apply(conn, worker, now.0, write)?;
        out.push(if changed { WriteOutcome::Applied } else { WriteOutcome::LeaseLost });
    }
    Ok(out)
}

/// Applies one write; `false` if the fence refused it.
fn apply(conn: &Connection, worker: &str, now: i64, write: &Write) -> rusqlite::Result<bool> {
    let job = write.job().0;
    let changed = match write {
        Write::Checkpoint { checkpoint, .. } => {
            // Read, not written: a checkpoint leaves the job's row (and its page) alone.
            let held = conn
                .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1 AND status = 'running' AND locked_by = ?2")?
                .exists(params![job, worker])?;
            if !held {
                return Ok(false);
            }
            let (ok, value) = match &checkpoint.outcome {
                Ok(v) => (true, v.as_slice()),
                Err(e) => (false, e.as_bytes()),
            };
            conn.prepare_cached(
                "INSERT INTO checkpoints (job_id, idx, name, ok, value, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (job_id, idx) DO UPDATE
                 SET name = excluded.name, ok = excluded.ok, value = excluded.value, created_at = excluded.created_at",
            )?
            .execute(params![job, checkpoint.index, checkpoint.name, ok, Json(value), now])?;
            1
        }
        Write::Complete { result, .. } => conn
            .prepare_cached(fenced!(
                "status = 'completed', result = ?4, finished_at = ?3, locked_by = NULL, lease_until = NULL"
            ))?
            .execute(params![job, worker, now, Json(result)])?,
        Write::Retry { error, run_at, .. } => conn
            .prepare_cached(fenced!(
                "status = 'pending', last_error = ?4, run_at = ?5, locked_by = NULL, lease_until = NULL"
            ))?
            .execute(params![job, worker, now, error, run_at.0])?,
        Write::Fail { error, .. } => conn
            .prepare_cached(fenced!(
                "status = 'failed', last_error = ?4, finished_at = ?3, locked_by = NULL, lease_until = NULL"
            ))?
            .execute(params![job, worker, now, error])?,
        Write::Suspend { wake_at, .. } => conn
            .prepare_cached(fenced!("status = 'waiting', wake_at = ?4, locked_by = NULL, lease_until = NULL"))?
            .execute(params![job, worker, now, wake_at.map(|t| t.0)])?,
    };
    Ok(changed == 1)
}

pub(crate) fn renew(
    conn: &Connection,
    worker: &str,
    jobs: &[JobId],
    lease_until: Timestamp,
) -> rusqlite::Result<Vec<JobId>> {
    // `?3` is the new lease here, not now.
    let mut stmt = conn
        .prepare_cached("UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND status = 'running' AND locked_by = ?2")?;
    let mut lost = Vec::new();
    for &job in jobs {
        if stmt.execute(params![job.0, worker, lease_until.0])? == 0 {
            lost.push(job);
        }
    }
    Ok(lost)
}

pub(crate) fn release(conn: &Connection, worker: &str, jobs: &[JobId], now: Timestamp) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(fenced!(
        "status = 'pending', attempt = MAX(attempt - 1, 0), locked_by = NULL, lease_until = NULL"
    ))?;
    let mut released = 0;
    for &job in jobs {
        released += stmt.execute(params![job.0, worker, now.0])?;
    }
    Ok(released)
}

pub(crate) fn reclaim_expired(conn: &Connection, now: Timestamp) -> rusqlite::Result<Reclaimed> {
    let expired: Vec<(i64, i64, i64)> = conn
        .prepare_cached("SELECT id, attempt, max_attempts FROM jobs WHERE status = 'running' AND lease_until < ?1")?
        .query_map([now.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut requeue = conn.prepare_cached(
        "UPDATE jobs SET status = 'pending', run_at = ?2, last_error = ?3, locked_by = NULL, lease_until = NULL,
                         updated_at = ?2
         WHERE id = ?1 AND status = 'running'",
    )?;
    let mut fail = conn.prepare_cached(
        "UPDATE jobs SET status = 'failed', finished_at = ?2, last_error = ?3, locked_by = NULL, lease_until = NULL,
                         updated_at = ?2
         WHERE id = ?1 AND status = 'running'",
    )?;
    let mut out = Reclaimed::default();
    for (id, attempt, max_attempts) in expired {
        let message = lease_expired_message(rows::count(attempt));
        if attempt >= max_attempts {
            fail.execute(params![id, now.0, message])?;
            out.failed.push(JobId(id));
        } else {
            requeue.execute(params![id, now.0, message])?;
            out.requeued.push(JobId(id));
        }
    }
    Ok(out)
}

/// Whether [`reclaim_expired`] or [`wake_due`] has anything to do at `now`: reads, so an idle
/// reaper does not take the write lock.
pub(crate) fn any_expired(conn: &Connection, now: Timestamp) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM jobs WHERE status = 'running' AND lease_until < ?1 LIMIT 1")?.exists([now.0])
}

pub(crate) fn any_due(conn: &Connection, now: Timestamp) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM jobs WHERE status = 'waiting' AND wake_at <= ?1 LIMIT 1")?.exists([now.0])
}

pub(crate) fn wake_due(conn: &Connection, now: Timestamp) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE jobs SET status = 'pending', run_at = ?1, wake_at = NULL, updated_at = ?1
         WHERE status = 'waiting' AND wake_at <= ?1",
    )?
    .execute([now.0])
}

pub(crate) fn cancel(conn: &Connection, job: JobId, now: Timestamp) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE jobs SET status = 'cancelled', wake_at = NULL, finished_at = ?2, updated_at = ?2
             WHERE id = ?1 AND status IN ('pending', 'waiting', 'paused')",
        )?
        .execute(params![job.0, now.0])?;
    Ok(changed == 1)
}

pub(crate) fn requeue(conn: &Connection, job: JobId, now: Timestamp) -> rusqlite::Result<bool> {
    // The NOT EXISTS keeps the partial unique index from refusing the update with an error.
    let changed = conn
        .prepare_cached(
            "UPDATE jobs SET status = 'pending', attempt = 0, run_at = ?2, finished_at = NULL, updated_at = ?2
             WHERE id = ?1 AND status IN ('failed', 'cancelled')
               AND NOT EXISTS (SELECT 1 FROM jobs AS other
                               WHERE other.unique_key = jobs.unique_key AND other.id != jobs.id
                                 AND other.status IN ('pending', 'running', 'waiting', 'paused'))",
        )?
        .execute(params![job.0, now.0])?;
    Ok(changed == 1)
}
