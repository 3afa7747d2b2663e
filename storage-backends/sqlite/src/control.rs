//! Operator control as statements: pausing jobs and queues, retention (purge, delete) and
//! leadership. None of it is on the path of a claim or a completion, except the paused queues,
//! which every claim reads (`claim.rs`).

use durable_jobs_store::transition;
use durable_jobs_store::{DeleteOutcome, JobId, PauseOutcome, PurgeRequest, ResumeOutcome, Timestamp};
use rusqlite::{params, Connection};

use crate::jobs;
use crate::waits::PENDING_SIGNAL;
use crate::writes::status_of;

/// Whether job `?1` exists and has not finished: a child of it is kept, the parent may still
/// read it. The statuses must match `JobStatus::is_live`.
const LIVE: &str =
    "SELECT 1 FROM dj_jobs WHERE id = ?1 AND status IN ('scheduled', 'pending', 'running', 'waiting', 'paused')";

/// The oldest jobs of status `?1` finished before `?2` whose parent is not live, at most `?3`,
/// read from `dj_jobs_finished` in purge order (the plan test below checks it).
const OLD_FINISHED: &str = "SELECT id FROM dj_jobs AS j
     WHERE status = ?1 AND finished_at < ?2
       AND NOT EXISTS (SELECT 1 FROM dj_jobs AS p
                       WHERE p.id = j.parent_id AND p.status IN ('scheduled', 'pending', 'running', 'waiting', 'paused'))
     ORDER BY finished_at, id LIMIT ?3";

/// Takes role `?1` for holder `?2` until `?4` if it is free, held by `?2`, or its lease ended
/// before `?3`; one row changed if granted.
const LEAD: &str = "INSERT INTO dj_leads (role, holder, lease_until) VALUES (?1, ?2, ?4)
     ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until
     WHERE dj_leads.holder = excluded.holder OR dj_leads.lease_until < ?3";

pub(crate) fn pause(conn: &Connection, job: JobId, now: Timestamp) -> rusqlite::Result<PauseOutcome> {
    let Some((status, _)) = status_of(conn, job)? else { return Ok(PauseOutcome::NotFound) };
    let outcome = transition::pause_outcome(status);
    if outcome == PauseOutcome::Paused {
        // The wait columns stay: a paused workflow keeps its wait.
        conn.prepare_cached("UPDATE dj_jobs SET status = 'paused', updated_at = ?2 WHERE id = ?1")?
            .execute(params![job.0, now.0])?;
    }
    Ok(outcome)
}

/// Resumes a paused job by [`transition::resume`] on its record (the rule has one copy), then
/// writes back what it changes: status, wait, `updated_at`.
pub(crate) fn resume(conn: &Connection, job: JobId, now: Timestamp) -> rusqlite::Result<ResumeOutcome> {
    let Some(mut record) = jobs::get(conn, job)? else { return Ok(ResumeOutcome::NotFound) };
    let signal_pending = match &record.wait_signal {
        Some(name) => conn.prepare_cached(PENDING_SIGNAL)?.exists(params![job.0, name])?,
        None => false,
    };
    let outcome = transition::resume(&mut record, now, signal_pending);
    if let ResumeOutcome::Resumed(status) = outcome {
        let fan = record.wait_children;
        conn.prepare_cached(
            "UPDATE dj_jobs SET status = ?2, wake_at = ?3, wait_signal = ?4, fan_idx = ?5, fan_need = ?6,
                                fan_tolerate = ?7, fan_total = ?8, fan_succeeded = ?9, fan_failed = ?10,
                                updated_at = ?11
             WHERE id = ?1",
        )?
        .execute(params![
            job.0,
            status.as_str(),
            record.wake_at.map(|t| t.0),
            record.wait_signal,
            fan.map(|c| c.rule.index),
            fan.map(|c| c.rule.need),
            fan.map(|c| c.rule.tolerate),
            fan.map(|c| c.total),
            fan.map(|c| c.succeeded),
            fan.map(|c| c.failed),
            record.updated_at.0,
        ])?;
    }
    Ok(outcome)
}

pub(crate) fn pause_queue(conn: &Connection, queue: &str, paused: bool, now: Timestamp) -> rusqlite::Result<()> {
    if paused {
        conn.prepare_cached(
            "INSERT INTO dj_paused_queues (queue, paused_at) VALUES (?1, ?2) ON CONFLICT (queue) DO NOTHING",
        )?
        .execute(params![queue, now.0])?;
    } else {
        conn.prepare_cached("DELETE FROM dj_paused_queues WHERE queue = ?1")?.execute([queue])?;
    }
    Ok(())
}

/// Sorted by name (`BINARY` collation: byte order, as `String`'s).
pub(crate) fn paused_queues(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT queue FROM dj_paused_queues ORDER BY queue")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// Deletes the jobs `req` names (its status checked by the caller: terminal).
pub(crate) fn purge(conn: &Connection, req: &PurgeRequest) -> rusqlite::Result<usize> {
    let limit = i64::try_from(req.limit).unwrap_or(i64::MAX);
    let old: Vec<i64> = conn
        .prepare_cached(OLD_FINISHED)?
        .query_map(params![req.status.as_str(), req.finished_before.0, limit], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for &id in &old {
        remove(conn, id)?;
    }
    Ok(old.len())
}

pub(crate) fn delete(conn: &Connection, ids: &[JobId]) -> rusqlite::Result<Vec<DeleteOutcome>> {
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let outcome = match jobs::get(conn, id)? {
            None => DeleteOutcome::NotFound,
            Some(job) => {
                let parent_live = match job.parent {
                    Some(link) => conn.prepare_cached(LIVE)?.exists([link.parent.0])?,
                    None => false,
                };
                transition::delete_outcome(&job, parent_live)
            }
        };
        if outcome == DeleteOutcome::Deleted {
            remove(conn, id.0)?;
        }
        out.push(outcome);
    }
    Ok(out)
}

/// Deletes a job with its checkpoints and signals.
fn remove(conn: &Connection, job: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM dj_checkpoints WHERE job_id = ?1")?.execute([job])?;
    conn.prepare_cached("DELETE FROM dj_signals WHERE job_id = ?1")?.execute([job])?;
    conn.prepare_cached("DELETE FROM dj_jobs WHERE id = ?1")?.execute([job])?;
    Ok(())
}

pub(crate) fn lead(
    conn: &Connection,
    role: &str,
    holder: &str,
    now: Timestamp,
    until: Timestamp,
) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached(LEAD)?.execute(params![role, holder, now.0, until.0])? == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::tests::plan;

    /// Retention reads the oldest finished jobs of a status from `dj_jobs_finished`, in purge
    /// order: neither a scan of the table nor a sort of every finished job.
    #[test]
    fn purge_walks_the_finished_index_in_order() {
        let mut conn = Connection::open_in_memory().expect("open");
        crate::connection::plan_once(&conn).expect("stable plans");
        crate::schema::migrate(&mut conn, 0).expect("migrate");
        let found = plan(&conn, OLD_FINISHED);
        eprintln!("purge plan:\n{found}");
        assert!(found.contains("SEARCH j USING INDEX dj_jobs_finished (status=? AND finished_at<?)"), "{found}");
        assert!(found.contains("SEARCH p USING INTEGER PRIMARY KEY (rowid=?)"), "{found}");
        assert!(!found.contains("TEMP B-TREE") && !found.contains("SCAN"), "{found}");
    }
}
