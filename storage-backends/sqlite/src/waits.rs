//! Durable waits as statements: signals (sent, listed, consumed), what a suspension finds when
//! it waits for a signal or for children it inserts, and the cancel of a job's descendants.
//!
//! A child that becomes terminal is counted by its parent with [`count_finished`], called by
//! every path that ends a job (complete, fail, reclaim, cancel). Not a trigger: a table with a
//! row trigger on its completions loses a quarter of its drain rate (PERFORMANCE.md, fact 8).

use durable_jobs_store::transition::{self, WaitState};
use durable_jobs_store::{ChildOf, ChildrenWait, FanIn, JobId, NewJob, Signal, SignalId, SignalOutcome, Timestamp};
use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};

use crate::jobs;
use crate::rows::{self, Bytes, Json};
use crate::writes::status_of;

/// Whether a signal named `?2` is pending for job `?1`.
pub(crate) const PENDING_SIGNAL: &str = "SELECT 1 FROM dj_signals WHERE job_id = ?1 AND name = ?2";

/// The children of job `?1`'s step `?2`: how many, how many completed, how many ended otherwise.
const COUNT_CHILDREN: &str = "SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'completed'),
            COUNT(*) FILTER (WHERE status IN ('failed', 'cancelled'))
     FROM dj_jobs WHERE parent_id = ?1 AND parent_idx = ?2";

/// Wakes job `?1` if it waits for signal `?2`; `?3` is now. It keeps its `run_at` (its place
/// in line).
const WAKE_FOR_SIGNAL: &str = "UPDATE dj_jobs
     SET status = 'pending', wake_at = NULL, wait_signal = NULL, fan_idx = NULL, fan_need = NULL,
         fan_tolerate = NULL, fan_total = NULL, fan_succeeded = NULL, fan_failed = NULL, updated_at = ?3
     WHERE id = ?1 AND status = 'waiting' AND wait_signal = ?2";

/// The descendants of job `?1` (through any status; `UNION` so that even a cycle of parent
/// links ends) that match `$which`, as the tail of a statement that starts with `$update`.
macro_rules! descendants {
    ($update:literal, $which:literal) => {
        concat!(
            "WITH RECURSIVE tree(id) AS (
                 SELECT id FROM dj_jobs WHERE parent_id = ?1
                 UNION SELECT j.id FROM dj_jobs j JOIN tree ON j.parent_id = tree.id)
             ",
            $update,
            " WHERE id IN (SELECT id FROM tree) AND ",
            $which
        )
    };
}

/// The descendants waiting to run are cancelled at `?2`, their waits cleared.
const CANCEL_DESCENDANTS: &str = descendants!(
    "UPDATE dj_jobs SET status = 'cancelled', finished_at = ?2, updated_at = ?2, locked_by = NULL,
                        lease_until = NULL, run_started = 0, wake_at = NULL, wait_signal = NULL, fan_idx = NULL,
                        fan_need = NULL, fan_tolerate = NULL, fan_total = NULL, fan_succeeded = NULL,
                        fan_failed = NULL",
    "status IN ('scheduled', 'pending', 'waiting', 'paused')"
);

/// The running descendants are asked at `?2` to stop (once: `updated_at` says when).
const REQUEST_DESCENDANTS: &str = descendants!(
    "UPDATE dj_jobs SET cancel_requested = 1, updated_at = ?2",
    "status = 'running' AND cancel_requested = 0"
);

/// Counts finished children of job `?1`'s step `?2` (`?3` completed, `?4` not) at `?5`, if the
/// parent waits for that step's children (paused or not), and returns the wait as counted.
const COUNT_FINISHED: &str = "UPDATE dj_jobs
     SET fan_succeeded = fan_succeeded + ?3, fan_failed = fan_failed + ?4, updated_at = ?5
     WHERE id = ?1 AND status IN ('waiting', 'paused') AND fan_idx = ?2
     RETURNING fan_need, fan_tolerate, fan_total, fan_succeeded, fan_failed";

/// Wakes waiting job `?1`, whose fan-in is decided; it keeps its `run_at` (its place in line).
/// A paused one stays paused: resuming it looks at its fan-in.
const WAKE_DECIDED: &str = "UPDATE dj_jobs
     SET status = 'pending', wake_at = NULL, wait_signal = NULL, fan_idx = NULL, fan_need = NULL,
         fan_tolerate = NULL, fan_total = NULL, fan_succeeded = NULL, fan_failed = NULL
     WHERE id = ?1 AND status = 'waiting'";

/// The parent link of job `?1`.
const PARENT_OF: &str = "SELECT parent_id, parent_idx FROM dj_jobs WHERE id = ?1";

/// A job that has just become terminal: its parent, if it waits for it, counts it.
pub(crate) fn count_finished(
    conn: &Connection,
    child: ChildOf,
    completed: bool,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let mut one = FinishedChildren::default();
    one.add(child, completed);
    one.count_into(conn, None, now)
}

/// Children ended by one commit, counted into their parents in one statement per parent and
/// step (a fan-out's children often end a thousand to a commit).
#[derive(Debug, Default)]
pub(crate) struct FinishedChildren(BTreeMap<(i64, u32), (u32, u32)>);

impl FinishedChildren {
    /// A child of `link` ended, `completed` or not.
    pub(crate) fn add(&mut self, link: ChildOf, completed: bool) {
        let (succeeded, failed) = self.0.entry((link.parent.0, link.index)).or_default();
        *if completed { succeeded } else { failed } += 1;
    }

    /// Counts what was added into the parents (only `parent`'s, if given), waking those whose
    /// fan-in is now decided.
    pub(crate) fn count_into(
        &mut self,
        conn: &Connection,
        parent: Option<JobId>,
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        let due: Vec<(i64, u32)> =
            self.0.keys().filter(|(p, _)| parent.is_none_or(|only| only.0 == *p)).copied().collect();
        for key @ (parent, index) in due {
            let Some((succeeded, failed)) = self.0.remove(&key) else { continue };
            let counted = conn
                .prepare_cached(COUNT_FINISHED)?
                .query_row(params![parent, index, succeeded, failed, now.0], |r| {
                    let rule = FanIn { index, need: r.get(0)?, tolerate: r.get(1)? };
                    Ok(ChildrenWait::new(rule, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()?;
            if counted.is_some_and(|wait| wait.is_decided()) {
                conn.prepare_cached(WAKE_DECIDED)?.execute([parent])?;
            }
        }
        Ok(())
    }
}

/// The parent link of `job`, if it has one.
pub(crate) fn parent_of(conn: &Connection, job: i64) -> rusqlite::Result<Option<ChildOf>> {
    let link = conn
        .prepare_cached(PARENT_OF)?
        .query_row([job], |r| Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<u32>>(1)?)))
        .optional()?;
    Ok(link.flatten().map(|(parent, index)| ChildOf { parent: JobId(parent), index }))
}

/// Stores a signal for `job` and wakes the job if it waits for that name.
pub(crate) fn signal(
    conn: &Connection,
    job: JobId,
    name: &str,
    payload: &[u8],
    now: Timestamp,
) -> rusqlite::Result<SignalOutcome> {
    let Some((status, _)) = status_of(conn, job)? else { return Ok(SignalOutcome::NotFound) };
    if let Some(refusal) = transition::signal_refusal(status) {
        return Ok(refusal);
    }
    conn.prepare_cached("INSERT INTO dj_signals (job_id, name, payload, sent_at) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![job.0, name, Json(payload), now.0])?;
    let id = SignalId(conn.last_insert_rowid());
    let woke = conn.prepare_cached(WAKE_FOR_SIGNAL)?.execute(params![job.0, name, now.0])? == 1;
    Ok(SignalOutcome::Sent { id, woke })
}

/// The signals of `job` not consumed yet, oldest first.
pub(crate) fn signals(conn: &Connection, job: JobId) -> rusqlite::Result<Vec<Signal>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, name, payload, sent_at FROM dj_signals WHERE job_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([job.0], |r| {
        Ok(Signal::new(SignalId(r.get(0)?), job, r.get::<_, String>(1)?, r.get::<_, Bytes>(2)?.0, Timestamp(r.get(3)?)))
    })?;
    rows.collect()
}

/// Consumes signal `signal` if it is `job`'s (nothing if it is gone, or another job's).
pub(crate) fn consume(conn: &Connection, job: i64, signal: SignalId) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM dj_signals WHERE id = ?1 AND job_id = ?2")?.execute(params![signal.0, job])?;
    Ok(())
}

/// The first half of a suspension that holds its lease: inserts its `children` (as enqueued,
/// in order, without unique keys; linked to `job`'s step `fan_in.index` if it waits for them),
/// then reads what its wait finds.
pub(crate) fn prepare(
    conn: &Connection,
    job: i64,
    signal: Option<&str>,
    fan_in: Option<FanIn>,
    children: &[NewJob],
) -> rusqlite::Result<WaitState> {
    if !children.is_empty() {
        let link = fan_in.map(|f| ChildOf { parent: JobId(job), index: f.index });
        let mut insert = conn.prepare_cached(jobs::INSERT)?;
        for child in children {
            jobs::insert(conn, &mut insert, child, None, link.or(child.parent))?;
        }
    }
    let signal_pending = match signal {
        Some(name) => conn.prepare_cached(PENDING_SIGNAL)?.exists(params![job, name])?,
        None => false,
    };
    let children = match fan_in {
        Some(rule) => {
            let (total, succeeded, failed) = conn
                .prepare_cached(COUNT_CHILDREN)?
                .query_row(params![job, rule.index], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Some(ChildrenWait::new(rule, rows::count(total), rows::count(succeeded), rows::count(failed)))
        }
        None => None,
    };
    Ok(WaitState { signal_pending, children })
}

/// Cancels, at `now`, every descendant of `root` that waits to run, and asks the running ones
/// to stop; finished ones are left alone. None is counted by a fan-in: their parents are
/// cancelled with them, running, or finished.
pub(crate) fn cancel_descendants(conn: &Connection, root: JobId, now: Timestamp) -> rusqlite::Result<()> {
    conn.prepare_cached(CANCEL_DESCENDANTS)?.execute(params![root.0, now.0])?;
    conn.prepare_cached(REQUEST_DESCENDANTS)?.execute(params![root.0, now.0])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::tests::plan;

    /// Fan-in counts, cascades and signal lookups read an index, not the whole table.
    #[test]
    fn wait_statements_use_their_indexes() {
        let mut conn = Connection::open_in_memory().expect("open");
        crate::connection::plan_once(&conn).expect("stable plans");
        crate::schema::migrate(&mut conn, 0).expect("migrate");
        for (sql, index) in [
            (COUNT_CHILDREN, "dj_jobs_parent"),
            (CANCEL_DESCENDANTS, "dj_jobs_parent"),
            (REQUEST_DESCENDANTS, "dj_jobs_parent"),
            (PENDING_SIGNAL, "dj_signals_job"),
        ] {
            let found = plan(&conn, sql);
            assert!(found.contains(index), "{sql}:\n{found}");
            assert!(!found.contains("SCAN dj_jobs\n") && !found.ends_with("SCAN dj_jobs"), "{sql}:\n{found}");
        }
    }
}
