//! Fenced writes about running jobs, lease renewal, release, reclaim and wake-ups.

use durable_jobs_store::{lease_expired_message, JobId, Reclaimed, Timestamp, Write, WriteOutcome};
use rusqlite::{params, Connection, ToSql};

use crate::rows::{self, Json};

/// The fence every write about a running job carries: `?1` is the job, `?2` the worker.
const FENCE: &str = "WHERE id = ?1 AND status = 'running' AND locked_by = ?2";

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
    // Ends the run: `?1` job, `?2` worker, `?3` now, then `extra` as `?4`, `?5`.
    let end = |set: &str, extra: &[&dyn ToSql]| -> rusqlite::Result<bool> {
        let sql = format!("UPDATE jobs SET {set}, locked_by = NULL, lease_until = NULL, updated_at = ?3 {FENCE}");
        let fence: [&dyn ToSql; 3] = [&job, &worker, &now];
        let all: Vec<&dyn ToSql> = fence.into_iter().chain(extra.iter().copied()).collect();
        Ok(conn.prepare_cached(&sql)?.execute(all.as_slice())? == 1)
    };
    match write {
        Write::Checkpoint { checkpoint, .. } => {
            let touch = format!("UPDATE jobs SET updated_at = ?3 {FENCE}");
            if conn.prepare_cached(&touch)?.execute(params![job, worker, now])? == 0 {
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
            Ok(true)
        }
        Write::Complete { result, .. } => end("status = 'completed', result = ?4, finished_at = ?3", &[&Json(result)]),
        Write::Retry { error, run_at, .. } => {
            end("status = 'pending', last_error = ?4, run_at = ?5", &[error, &run_at.0])
        }
        Write::Fail { error, .. } => end("status = 'failed', last_error = ?4, finished_at = ?3", &[error]),
        Write::Suspend { wake_at, .. } => end("status = 'waiting', wake_at = ?4", &[&wake_at.map(|t| t.0)]),
    }
}

pub(crate) fn renew(
    conn: &Connection,
    worker: &str,
    jobs: &[JobId],
    lease_until: Timestamp,
) -> rusqlite::Result<Vec<JobId>> {
    let mut stmt = conn.prepare_cached(&format!("UPDATE jobs SET lease_until = ?3 {FENCE}"))?;
    let mut lost = Vec::new();
    for &job in jobs {
        if stmt.execute(params![job.0, worker, lease_until.0])? == 0 {
            lost.push(job);
        }
    }
    Ok(lost)
}

pub(crate) fn release(conn: &Connection, worker: &str, jobs: &[JobId], now: Timestamp) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE jobs SET status = 'pending', attempt = MAX(attempt - 1, 0), locked_by = NULL, lease_until = NULL,
                         updated_at = ?3 {FENCE}"
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

pub(crate) fn wake_due(conn: &Connection, now: Timestamp) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE jobs SET status = 'pending', run_at = ?1, wake_at = NULL, updated_at = ?1
         WHERE status = 'waiting' AND wake_at <= ?1",
    )?
    .execute([now.0])
}
