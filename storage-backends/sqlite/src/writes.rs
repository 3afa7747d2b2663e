//! Fenced writes about runs, lease renewal, release, reclaim, cancel and requeue: the
//! transitions of `STATE_MACHINE.md` as statements.
//!
//! A run whose job was asked to cancel (`cancel_requested`) ends `Cancelled` unless it
//! completes. Its flag is read by the statement that ends the run (a `CASE`, or a condition
//! with a second statement for the rare cancelled case), so that no write gains a statement.

use durable_jobs_store::transition::WaitState;
use durable_jobs_store::transition::{self, Recovery};
use durable_jobs_store::{
    CancelOutcome, Checkpoint, Claim, JobId, JobStatus, ReclaimRequest, Reclaimed, Renewal, RequeueOutcome, Timestamp,
    Write, WriteOp, WriteOutcome,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::jobs::LIVE_KEY_HOLDER;
use crate::rows::{self, token_value, Json, Status};
use crate::waits;

/// A statement about one run, fenced: `?1` is the job, `?2` the worker, `?3` now, `?4` the
/// claim token, then the statement's own parameters from `?5`. Built at compile time: the
/// statement cache is keyed by text, and this runs for every completion.
macro_rules! fenced {
    ($($set:tt)*) => {
        concat!("UPDATE dj_jobs SET ", $($set)*, " WHERE id = ?1 AND status = 'running' AND locked_by = ?2 AND token = ?4")
    };
}

/// A statement ending a run in a terminal status, for some jobs only: `?6` = 0, a job without
/// a parent (the common case, tried first without a hint); 1, the child of step `?8` of job
/// `?7` (the write's hint); 2, any child.
macro_rules! terminal {
    ($set:literal) => {
        concat!(
            ending!($set),
            " AND CASE ?6 WHEN 0 THEN parent_id IS NULL WHEN 1 THEN parent_id = ?7 AND parent_idx = ?8
                         ELSE parent_id IS NOT NULL END"
        )
    };
}

/// A statement ending a run: clears the lease, the start mark and a cancel request, and sets
/// `updated_at`.
macro_rules! ending {
    ($set:literal) => {
        fenced!(concat!(
            $set,
            ", locked_by = NULL, lease_until = NULL, run_started = 0, cancel_requested = 0, updated_at = ?3"
        ))
    };
}

/// Ends a run asked to cancel other than by completing: `Cancelled`, with `?5` as `last_error`
/// if not null, the attempt given back if `?9` (a suspension), the wait cleared. Terminal: `?6`
/// to `?8` as in [`terminal!`].
const CANCELLED_RUN: &str = concat!(
    terminal!(
        "status = 'cancelled', finished_at = ?3, last_error = COALESCE(?5, last_error),
         attempt = MAX(attempt - ?9, 0), wake_at = NULL, wait_signal = NULL, fan_idx = NULL, fan_need = NULL,
         fan_tolerate = NULL, fan_total = NULL, fan_succeeded = NULL, fan_failed = NULL"
    ),
    " AND cancel_requested = 1"
);

pub(crate) fn commit(
    conn: &Connection,
    worker: &str,
    now: Timestamp,
    writes: &[Write],
) -> rusqlite::Result<Vec<WriteOutcome>> {
    let mut out = Vec::with_capacity(writes.len());
    let mut finished = waits::FinishedChildren::default();
    for write in writes {
        if matches!(write.op, WriteOp::Suspend { .. }) {
            // A suspension counts its children itself: what this batch ended before it first.
            finished.count_into(conn, Some(write.claim.job), now)?;
        }
        let changed = apply(conn, worker, now.0, write, &mut finished)?;
        out.push(if changed { WriteOutcome::Applied } else { WriteOutcome::LeaseLost });
    }
    finished.count_into(conn, None, now)?;
    Ok(out)
}

/// Applies one write; `false` if the fence refused it. A child it ends is added to `finished`.
fn apply(
    conn: &Connection,
    worker: &str,
    now: i64,
    write: &Write,
    finished: &mut waits::FinishedChildren,
) -> rusqlite::Result<bool> {
    let (job, token) = (write.claim.job.0, token_value(write.claim.token));
    let changed = match &write.op {
        WriteOp::Start => conn.prepare_cached(fenced!("run_started = 1"))?.execute(params![job, worker, now, token])?,
        WriteOp::Checkpoint(checkpoint) => {
            if !holds(conn, job, worker, token)? {
                return Ok(false);
            }
            upsert_checkpoint(conn, job, checkpoint, now)?
        }
        WriteOp::Receive { signal, checkpoint, .. } => {
            if !holds(conn, job, worker, token)? {
                return Ok(false);
            }
            waits::consume(conn, job, *signal)?;
            upsert_checkpoint(conn, job, checkpoint, now)?
        }
        WriteOp::Complete { result, .. } => {
            let ending =
                |mode: i64, (parent, index): (i64, u32)| -> rusqlite::Result<usize> {
                    conn.prepare_cached(terminal!("status = 'completed', result = ?5, finished_at = ?3"))?
                        .execute(params![job, worker, now, token, Json(result), mode, parent, index])
                };
            return ended(conn, write, true, finished, ending);
        }
        WriteOp::Retry { error, run_at, .. } => {
            let retried = conn
                .prepare_cached(concat!(
                    ending!(
                        "status = CASE WHEN ?6 > ?3 THEN 'scheduled' ELSE 'pending' END, last_error = ?5, run_at = ?6"
                    ),
                    " AND cancel_requested = 0"
                ))?
                .execute(params![job, worker, now, token, error, run_at.0])?;
            if retried == 0 {
                return end_cancelled(conn, worker, now, write, Some(error), finished);
            }
            retried
        }
        WriteOp::Fail { error, .. } => {
            let ending = |mode: i64, (parent, index): (i64, u32)| -> rusqlite::Result<usize> {
                conn.prepare_cached(terminal!(
                    "status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END, last_error = ?5,
                     finished_at = ?3"
                ))?
                .execute(params![job, worker, now, token, error, mode, parent, index])
            };
            return ended(conn, write, false, finished, ending);
        }
        WriteOp::Suspend { wake_at, signal, fan_in, children, .. } => {
            // A plain sleep waits for nothing else: one statement, as before waits existed.
            let plain = signal.is_none() && fan_in.is_none() && children.is_empty();
            let wait = if plain {
                WaitState::default()
            } else {
                match cancel_requested(conn, job, worker, token)? {
                    None => return Ok(false),
                    // Its children are not inserted: the run is over.
                    Some(true) => return end_cancelled(conn, worker, now, write, None, finished),
                    Some(false) => waits::prepare(conn, job, signal.as_deref(), *fan_in, children)?,
                }
            };
            // A wait over before it began: pending at once, in its place in line (`run_at` kept).
            let over = wait.is_over();
            let (wake_at, signal, children) =
                if over { (None, None, None) } else { (wake_at.map(|t| t.0), signal.as_deref(), wait.children) };
            let suspended = conn
                .prepare_cached(concat!(
                    ending!(
                        "status = CASE WHEN ?5 THEN 'pending' ELSE 'waiting' END, wake_at = ?6, wait_signal = ?7,
                         fan_idx = ?8, fan_need = ?9, fan_tolerate = ?10, fan_total = ?11, fan_succeeded = ?12,
                         fan_failed = ?13, attempt = MAX(attempt - 1, 0)"
                    ),
                    " AND cancel_requested = 0"
                ))?
                .execute(params![
                    job,
                    worker,
                    now,
                    token,
                    over,
                    wake_at,
                    signal,
                    children.map(|c| c.rule.index),
                    children.map(|c| c.rule.need),
                    children.map(|c| c.rule.tolerate),
                    children.map(|c| c.total),
                    children.map(|c| c.succeeded),
                    children.map(|c| c.failed),
                ])?;
            if suspended == 0 && plain {
                return end_cancelled(conn, worker, now, write, None, finished);
            }
            suspended
        }
        _ => return Err(rusqlite::Error::ToSqlConversionFailure("a write this store does not know".into())),
    };
    Ok(changed == 1)
}

/// Makes a run's job terminal with `ending(mode, link)` (see [`terminal!`]): as the child the
/// write's hint names, else as a job without a parent, else as a child found by reading. A
/// child is added to `finished`. Whether the write applied.
fn ended(
    conn: &Connection,
    write: &Write,
    completed: bool,
    finished: &mut waits::FinishedChildren,
    ending: impl Fn(i64, (i64, u32)) -> rusqlite::Result<usize>,
) -> rusqlite::Result<bool> {
    let hinted = match write.child_of {
        Some(link) if ending(1, (link.parent.0, link.index))? == 1 => Some(link),
        _ if ending(0, (0, 0))? == 1 => return Ok(true),
        _ if ending(2, (0, 0))? == 1 => waits::parent_of(conn, write.claim.job.0)?,
        _ => return Ok(false),
    };
    if let Some(link) = hinted {
        finished.add(link, completed);
    }
    Ok(true)
}

/// Ends a run asked to cancel (by a retry with `error`, or a suspension: its attempt given
/// back); whether it held its lease. A child is added to `finished`.
fn end_cancelled(
    conn: &Connection,
    worker: &str,
    now: i64,
    write: &Write,
    error: Option<&str>,
    finished: &mut waits::FinishedChildren,
) -> rusqlite::Result<bool> {
    let (job, token) = (write.claim.job.0, token_value(write.claim.token));
    let give_back = matches!(write.op, WriteOp::Suspend { .. });
    let ending = |mode: i64, (parent, index): (i64, u32)| -> rusqlite::Result<usize> {
        conn.prepare_cached(CANCELLED_RUN)?
            .execute(params![job, worker, now, token, error, mode, parent, index, give_back])
    };
    ended(conn, write, false, finished, ending)
}

/// Whether `worker` holds run `token` of `job` (read, not written: a checkpoint leaves the
/// job's row, and its page, alone).
fn holds(conn: &Connection, job: i64, worker: &str, token: i64) -> rusqlite::Result<bool> {
    Ok(cancel_requested(conn, job, worker, token)?.is_some())
}

/// Whether the run's job was asked to cancel, or `None` if `worker` does not hold run `token`
/// of `job`.
fn cancel_requested(conn: &Connection, job: i64, worker: &str, token: i64) -> rusqlite::Result<Option<bool>> {
    conn.prepare_cached(
        "SELECT cancel_requested FROM dj_jobs WHERE id = ?1 AND status = 'running' AND locked_by = ?2 AND token = ?3",
    )?
    .query_row(params![job, worker, token], |r| r.get(0))
    .optional()
}

/// Inserts or replaces the checkpoint `(job, checkpoint.index)`.
fn upsert_checkpoint(conn: &Connection, job: i64, checkpoint: &Checkpoint, now: i64) -> rusqlite::Result<usize> {
    let (ok, value) = match &checkpoint.outcome {
        Ok(v) => (true, v.as_slice()),
        Err(e) => (false, e.as_bytes()),
    };
    conn.prepare_cached(
        "INSERT INTO dj_checkpoints (job_id, idx, name, ok, value, created_at, retryable)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (job_id, idx) DO UPDATE
         SET name = excluded.name, ok = excluded.ok, value = excluded.value, created_at = excluded.created_at,
             retryable = excluded.retryable",
    )?
    .execute(params![job, checkpoint.index, checkpoint.name, ok, Json(value), now, checkpoint.retryable])
}

pub(crate) fn renew(
    conn: &Connection,
    worker: &str,
    claims: &[Claim],
    lease_until: Timestamp,
) -> rusqlite::Result<Renewal> {
    // `?3` is the new lease here, not now.
    let mut stmt = conn.prepare_cached(concat!(fenced!("lease_until = ?3"), " RETURNING cancel_requested"))?;
    let mut out = Renewal::default();
    for &claim in claims {
        let mut returned = stmt.query(params![claim.job.0, worker, lease_until.0, token_value(claim.token)])?;
        // Stepped to the end: a RETURNING statement reset early stops WAL auto-checkpoints.
        let mut held = None;
        while let Some(row) = returned.next()? {
            held = Some(row.get::<_, bool>(0)?);
        }
        match held {
            None => out.lost.push(claim),
            Some(true) => out.cancelled.push(claim),
            Some(false) => {}
        }
    }
    Ok(out)
}

/// Hands runs back without charging them: `Pending`, or `Cancelled` (counted by a parent's
/// fan-in) if their job was asked to cancel.
pub(crate) fn release(conn: &Connection, worker: &str, claims: &[Claim], now: Timestamp) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(concat!(
        ending!(
            "status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END,
             finished_at = CASE WHEN cancel_requested THEN ?3 ELSE finished_at END, attempt = MAX(attempt - 1, 0)"
        ),
        " RETURNING status = 'cancelled', parent_id, parent_idx"
    ))?;
    let mut released = 0;
    let mut finished = waits::FinishedChildren::default();
    for &claim in claims {
        let mut returned = stmt.query(params![claim.job.0, worker, now.0, token_value(claim.token)])?;
        while let Some(row) = returned.next()? {
            released += 1;
            if let (true, Some(link)) = (row.get(0)?, rows::child_of(row.get(1)?, row.get(2)?)) {
                finished.add(link, false);
            }
        }
    }
    finished.count_into(conn, None, now)?;
    Ok(released)
}

/// The runs `reclaim` recovers, in order; `?1` now, `?2` the dead workers (JSON), `?3` limit.
const LOST_RUNS: &str = "SELECT id, attempt, max_attempts, run_started, locked_by IN (SELECT value FROM json_each(?2)),
            cancel_requested
     FROM dj_jobs
     WHERE status = 'running' AND (lease_until < ?1 OR locked_by IN (SELECT value FROM json_each(?2)))
     ORDER BY lease_until, id LIMIT ?3";

/// Whether [`reclaim`] has anything to do: a read, so an idle reaper does not take the write
/// lock.
pub(crate) fn any_lost(conn: &Connection, req: &ReclaimRequest) -> rusqlite::Result<bool> {
    let dead = dead_workers(req)?;
    conn.prepare_cached(
        "SELECT 1 FROM dj_jobs
         WHERE status = 'running' AND (lease_until < ?1 OR locked_by IN (SELECT value FROM json_each(?2))) LIMIT 1",
    )?
    .exists(params![req.now.0, dead])
}

fn dead_workers(req: &ReclaimRequest) -> rusqlite::Result<String> {
    serde_json::to_string(&req.dead_workers).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))
}

pub(crate) fn reclaim(conn: &Connection, req: &ReclaimRequest) -> rusqlite::Result<Reclaimed> {
    let dead = dead_workers(req)?;
    let limit = i64::try_from(req.limit).unwrap_or(i64::MAX);
    let lost: Vec<(i64, i64, i64, bool, bool, bool)> = conn
        .prepare_cached(LOST_RUNS)?
        .query_map(params![req.now.0, dead, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let ends =
        ", locked_by = NULL, lease_until = NULL, run_started = 0, cancel_requested = 0, updated_at = ?2 WHERE id = ?1";
    let mut requeue =
        conn.prepare_cached(&format!("UPDATE dj_jobs SET status = 'pending', run_at = ?2, last_error = ?3{ends}"))?;
    let mut fail =
        conn.prepare_cached(&format!("UPDATE dj_jobs SET status = 'failed', finished_at = ?2, last_error = ?3{ends}"))?;
    let mut release = conn.prepare_cached(&format!(
        "UPDATE dj_jobs SET status = 'pending', run_at = ?2, last_error = ?3, attempt = MAX(attempt - 1, 0),
                            confirm_start = 1{ends}"
    ))?;
    // `?4`: the attempt is given back (its start was not recorded), as any lost run's.
    let mut cancel = conn.prepare_cached(&format!(
        "UPDATE dj_jobs SET status = 'cancelled', finished_at = ?2, last_error = ?3, attempt = MAX(attempt - ?4, 0){ends}"
    ))?;
    let mut out = Reclaimed::default();
    for (id, attempt, max_attempts, started, dead, cancelled) in lost {
        let (attempt, max_attempts) = (rows::count(attempt), rows::count(max_attempts));
        let message = transition::reclaim_message(attempt, started, dead);
        let recovery =
            if cancelled { Recovery::Cancelled } else { transition::recovery(started, attempt, max_attempts) };
        let (stmt, outcome) = match recovery {
            Recovery::Released => (&mut release, &mut out.released),
            Recovery::Failed => (&mut fail, &mut out.failed),
            Recovery::Requeued => (&mut requeue, &mut out.requeued),
            Recovery::Cancelled => (&mut cancel, &mut out.cancelled),
        };
        if recovery == Recovery::Cancelled {
            stmt.execute(params![id, req.now.0, message, !started])?;
        } else {
            stmt.execute(params![id, req.now.0, message])?;
        }
        outcome.push(JobId(id));
    }
    for failed in out.failed.iter().chain(&out.cancelled) {
        if let Some(child) = waits::parent_of(conn, failed.0)? {
            waits::count_finished(conn, child, false, req.now)?;
        }
    }
    Ok(out)
}

/// A job's status and unique key.
pub(crate) fn status_of(conn: &Connection, job: JobId) -> rusqlite::Result<Option<(JobStatus, Option<String>)>> {
    conn.prepare_cached("SELECT status, unique_key FROM dj_jobs WHERE id = ?1")?
        .query_row([job.0], |r| Ok((r.get::<_, Status>(0)?.0, r.get(1)?)))
        .optional()
}

/// Cancels a job and its descendants: those waiting to run now, running ones when their run
/// ends (`cancel_requested`, set once: `updated_at` says when it was asked).
pub(crate) fn cancel(conn: &Connection, job: JobId, now: Timestamp) -> rusqlite::Result<CancelOutcome> {
    let Some((status, _)) = status_of(conn, job)? else { return Ok(CancelOutcome::NotFound) };
    let outcome = transition::cancel_outcome(status);
    match outcome {
        CancelOutcome::Requested => {
            conn.prepare_cached(
                "UPDATE dj_jobs SET cancel_requested = 1, updated_at = ?2
                 WHERE id = ?1 AND status = 'running' AND cancel_requested = 0",
            )?
            .execute(params![job.0, now.0])?;
        }
        CancelOutcome::Cancelled => {
            conn.prepare_cached(
                "UPDATE dj_jobs SET status = 'cancelled', finished_at = ?2, updated_at = ?2, locked_by = NULL,
                                    lease_until = NULL, run_started = 0, wake_at = NULL, wait_signal = NULL,
                                    fan_idx = NULL, fan_need = NULL, fan_tolerate = NULL, fan_total = NULL,
                                    fan_succeeded = NULL, fan_failed = NULL
                 WHERE id = ?1",
            )?
            .execute(params![job.0, now.0])?;
            if let Some(child) = waits::parent_of(conn, job.0)? {
                waits::count_finished(conn, child, false, now)?;
            }
        }
        _ => return Ok(outcome),
    }
    waits::cancel_descendants(conn, job, now)?;
    Ok(outcome)
}

pub(crate) fn requeue(conn: &Connection, job: JobId, now: Timestamp) -> rusqlite::Result<RequeueOutcome> {
    let Some((status, key)) = status_of(conn, job)? else { return Ok(RequeueOutcome::NotFound) };
    if let Some(refusal) = transition::requeue_refusal(status) {
        return Ok(refusal);
    }
    if let Some(key) = key {
        let holder: Option<i64> = conn.prepare_cached(LIVE_KEY_HOLDER)?.query_row([key], |r| r.get(0)).optional()?;
        if let Some(holder) = holder {
            return Ok(RequeueOutcome::KeyTaken(JobId(holder)));
        }
    }
    conn.prepare_cached(
        "UPDATE dj_jobs SET status = 'pending', attempt = 0, confirm_start = 0, run_at = ?2, finished_at = NULL,
                            updated_at = ?2
         WHERE id = ?1",
    )?
    .execute(params![job.0, now.0])?;
    Ok(RequeueOutcome::Requeued)
}
