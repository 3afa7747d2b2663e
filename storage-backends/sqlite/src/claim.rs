//! Claiming: promoting due jobs, taking ready ones in order, and finding the next due time.
//!
//! Ready jobs sit in `dj_jobs_ready`, ordered per queue and name exactly as they are claimed,
//! so a claim reads only jobs it can take: not-yet-due jobs are `scheduled` (another index)
//! and jobs of names the worker cannot run are under other keys. Claiming across several
//! queues or names merges the heads of their index ranges. A claim reads the paused queues and
//! the limits in one statement; one that no limit covers takes jobs as if limits did not exist
//! (`throttle.rs` has the rest).

use durable_jobs_store::{window_end, window_of, ClaimRequest, Claimed, ClaimedJob, JobId, Timestamp};
use rusqlite::{params, Connection};

use crate::rows::{self, Bytes};
use crate::throttle::{self, Config};

/// What [`claim`] sets on every job it takes: `?1` worker, `?2` lease, `?3` now, `$capped`
/// whether a running cap counts them.
macro_rules! take {
    ($capped:literal, $($which:tt)*) => {
        concat!(
            "UPDATE dj_jobs SET status = 'running', attempt = attempt + 1, token = token + 1, run_started = 0,
                    locked_by = ?1, lease_until = ?2, started_at = ?3, updated_at = ?3, capped = ",
            $capped,
            "
             WHERE id IN (",
            $($which)*,
            ")
             RETURNING id, token, queue, name, args, attempt, max_attempts, priority, timeout_us, backoff_base_us,
                       backoff_max_us, EXISTS (SELECT 1 FROM dj_checkpoints WHERE job_id = dj_jobs.id),
                       confirm_start, run_at, parent_id, parent_idx, concurrency_key"
        )
    };
}

/// The best ready jobs of one queue (`?4`) and name (`?5`), at most `?6`, in claim order.
macro_rules! best {
    () => {
        "SELECT id FROM dj_jobs WHERE status = 'pending' AND queue = ?4 AND name = ?5
         ORDER BY priority DESC, run_at, id LIMIT ?6"
    };
}

#[cfg(test)]
const BEST: &str = best!();

/// One queue and one name, nothing excluded, no limit: scan and update in one statement.
const TAKE_BEST: &str = take!("0", best!());

/// The same under limits that have room for the whole claim, `capped` if `?7`.
const TAKE_BEST_CAPPED: &str = take!("?7", best!());

/// A job a claim took, with the key its limits count it under.
struct Taken {
    job: ClaimedJob,
    key: Option<String>,
}

/// The candidates of one queue and name, with their sort key.
const CANDIDATES: &str =
    "SELECT priority, run_at, id FROM dj_jobs WHERE status = 'pending' AND queue = ?1 AND name = ?2
     ORDER BY priority DESC, run_at, id LIMIT ?3";

/// Chosen jobs, by id (`?4`: a JSON array), `capped` if `?5`.
const TAKE_CHOSEN: &str = take!("?5", "SELECT value FROM json_each(?4)");

const PROMOTE_SCHEDULED: &str = "UPDATE dj_jobs SET status = 'pending', updated_at = ?2
     WHERE status = 'scheduled' AND queue = ?1 AND run_at <= ?2";

/// A waiting job whose time has come forgets whatever else it waited for.
const WAKE_WAITING: &str = "UPDATE dj_jobs
     SET status = 'pending', run_at = wake_at, wake_at = NULL, wait_signal = NULL, fan_idx = NULL, fan_need = NULL,
         fan_tolerate = NULL, fan_total = NULL, fan_succeeded = NULL, fan_failed = NULL, updated_at = ?2
     WHERE status = 'waiting' AND queue = ?1 AND wake_at <= ?2";

const ANY_READY: &str = "SELECT 1 FROM dj_jobs WHERE status = 'pending' AND queue = ?1 AND name = ?2 LIMIT 1";

const ANY_DUE: &str = "SELECT EXISTS (SELECT 1 FROM dj_jobs WHERE status = 'scheduled' AND queue = ?1 AND run_at <= ?2)
     OR EXISTS (SELECT 1 FROM dj_jobs WHERE status = 'waiting' AND queue = ?1 AND wake_at <= ?2)";

const NEXT_SCHEDULED: &str = "SELECT MIN(run_at) FROM dj_jobs WHERE status = 'scheduled' AND queue = ?1";

const NEXT_WAKE: &str =
    "SELECT MIN(wake_at) FROM dj_jobs WHERE status = 'waiting' AND queue = ?1 AND wake_at IS NOT NULL";

/// The queues and names of a request, each once, without the paused queues of `config`.
fn pairs<'r>(config: &Config, req: &'r ClaimRequest) -> (Vec<&'r str>, Vec<&'r str>) {
    let mut queues: Vec<&str> = req.queues.iter().map(String::as_str).collect();
    let mut names: Vec<&str> = req.names.iter().map(String::as_str).collect();
    queues.sort_unstable();
    queues.dedup();
    queues.retain(|q| !config.paused.iter().any(|p| p == q));
    names.sort_unstable();
    names.dedup();
    (queues, names)
}

/// The answer to a claim that would change nothing (no ready job it could take, no due job to
/// promote), or `None`. A read, so that an idle worker's claims do not take the write lock.
pub(crate) fn idle(conn: &Connection, req: &ClaimRequest) -> rusqlite::Result<Option<Claimed>> {
    if req.limit == 0 {
        return Ok(Some(Claimed::default()));
    }
    let config = throttle::config(conn)?;
    let (queues, names) = pairs(&config, req);
    let mut ready = conn.prepare_cached(ANY_READY)?;
    let mut due = conn.prepare_cached(ANY_DUE)?;
    for &queue in &queues {
        if due.query_row(params![queue, req.now.0], |r| r.get::<_, bool>(0))? {
            return Ok(None);
        }
        for &name in &names {
            if ready.exists(params![queue, name])? {
                return Ok(None);
            }
        }
    }
    Ok(Some(Claimed::new(Vec::new(), next_due_in(conn, &queues)?)))
}

/// The earliest time a job of `queues` becomes due.
fn next_due_in(conn: &Connection, queues: &[&str]) -> rusqlite::Result<Option<Timestamp>> {
    let mut scheduled = conn.prepare_cached(NEXT_SCHEDULED)?;
    let mut wake = conn.prepare_cached(NEXT_WAKE)?;
    let mut next: Option<i64> = None;
    for queue in queues {
        for stmt in [&mut scheduled, &mut wake] {
            if let Some(at) = stmt.query_row([queue], |r| r.get::<_, Option<i64>>(0))? {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
    }
    Ok(next.map(Timestamp))
}

/// Promotes due jobs, then claims, inside the caller's write transaction.
pub(crate) fn claim(conn: &Connection, req: &ClaimRequest) -> rusqlite::Result<Claimed> {
    if req.limit == 0 {
        return Ok(Claimed::default());
    }
    let config = throttle::config(conn)?;
    let (queues, names) = pairs(&config, req);
    if queues.is_empty() {
        return Ok(Claimed::default());
    }
    let mut promote = conn.prepare_cached(PROMOTE_SCHEDULED)?;
    let mut wake = conn.prepare_cached(WAKE_WAITING)?;
    for queue in &queues {
        promote.execute(params![queue, req.now.0])?;
        wake.execute(params![queue, req.now.0])?;
    }
    let limit = i64::try_from(req.limit).unwrap_or(i64::MAX);
    let lease = (req.worker.as_str(), req.lease_until.0, req.now.0);
    let limits = throttle::covering(&config, &queues, &names);
    let single = match (queues.as_slice(), names.as_slice()) {
        ([queue], [name]) if req.exclude.is_empty() => Some((*queue, *name)),
        _ => None,
    };
    let mut rate_held = false;
    let mut taken = if limits.is_empty() {
        if let Some((queue, name)) = single {
            let mut stmt = conn.prepare_cached(TAKE_BEST)?;
            // Stepped to the end, not `query_row`: a RETURNING statement reset before it is
            // done stops WAL auto-checkpoints (PERFORMANCE.md, fact 2).
            let taken = collect(stmt.query(params![lease.0, lease.1, lease.2, queue, name, limit])?)?;
            taken
        } else {
            take_chosen(conn, req, &choose(conn, req, &queues, &names)?, 0)?
        }
    } else {
        let mut counts = throttle::Counts::new(conn, limits, req.now);
        let capped = counts.capped();
        let taken = if counts.room_for(req.limit)? {
            // No job can be held back: taken as without limits, then counted.
            let taken = if let Some((queue, name)) = single {
                let mut stmt = conn.prepare_cached(TAKE_BEST_CAPPED)?;
                let taken = collect(stmt.query(params![lease.0, lease.1, lease.2, queue, name, limit, capped])?)?;
                taken
            } else {
                take_chosen(conn, req, &choose(conn, req, &queues, &names)?, capped)?
            };
            for t in &taken {
                counts.take(&t.job.queue, &t.job.name, t.key.as_deref())?;
            }
            taken
        } else {
            let chosen = throttle::choose(&mut counts, req, &queues, &names)?;
            rate_held = chosen.rate_held;
            take_chosen(conn, req, &chosen.ids, capped)?
        };
        counts.save()?;
        taken
    };
    // RETURNING has no order: restore the claim order.
    taken.sort_by_key(|t| (std::cmp::Reverse(t.job.priority), t.job.run_at, t.job.id));
    let jobs: Vec<ClaimedJob> = taken.into_iter().map(|t| t.job).collect();
    let next_due = if jobs.len() < req.limit {
        let window_end = rate_held.then(|| window_end(window_of(req.now)));
        next_due_in(conn, &queues)?.into_iter().chain(window_end).min()
    } else {
        None
    };
    Ok(Claimed::new(jobs, next_due))
}

/// Merges the heads of each queue and name's ready range: the best `limit` jobs not excluded.
fn choose(conn: &Connection, req: &ClaimRequest, queues: &[&str], names: &[&str]) -> rusqlite::Result<Vec<i64>> {
    let per_range = i64::try_from(req.limit.saturating_add(req.exclude.len())).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(CANDIDATES)?;
    let mut found: Vec<(std::cmp::Reverse<i32>, i64, i64)> = Vec::new();
    for queue in queues {
        for name in names {
            let rows = stmt.query_map(params![queue, name, per_range], |r| {
                Ok((std::cmp::Reverse(r.get::<_, i32>(0)?), r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })?;
            for row in rows {
                let row = row?;
                if !req.exclude.contains(&JobId(row.2)) {
                    found.push(row);
                }
            }
        }
    }
    found.sort_unstable();
    Ok(found.into_iter().take(req.limit).map(|(_, _, id)| id).collect())
}

/// Reads the rows of a `take!` statement.
fn collect(mut rows: rusqlite::Rows<'_>) -> rusqlite::Result<Vec<Taken>> {
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut job = ClaimedJob::new(
            JobId(r.get(0)?),
            rows::token(r.get(1)?),
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Bytes>(4)?.0,
        );
        job.attempt = rows::count(r.get(5)?);
        job.max_attempts = rows::count(r.get(6)?);
        job.priority = r.get(7)?;
        job.timeout = rows::duration(r.get(8)?);
        job.retry_policy = rows::retry_policy(r.get(9)?, r.get(10)?);
        job.resumed = r.get(11)?;
        job.confirm_start = r.get(12)?;
        job.run_at = Timestamp(r.get(13)?);
        job.parent = rows::child_of(r.get(14)?, r.get(15)?);
        out.push(Taken { job, key: r.get(16)? });
    }
    Ok(out)
}

/// Takes the jobs `chosen` (ids), `capped` as given.
fn take_chosen(conn: &Connection, req: &ClaimRequest, chosen: &[i64], capped: i64) -> rusqlite::Result<Vec<Taken>> {
    let ids = serde_json::to_string(chosen).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    let mut stmt = conn.prepare_cached(TAKE_CHOSEN)?;
    let taken = collect(stmt.query(params![req.worker, req.lease_until.0, req.now.0, ids, capped])?)?;
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::tests::plan;

    fn migrated() -> Connection {
        let mut conn = Connection::open_in_memory().expect("open");
        crate::connection::plan_once(&conn).expect("stable plans");
        crate::schema::migrate(&mut conn, 0).expect("migrate");
        conn
    }

    /// A claim must walk `dj_jobs_ready` in order. A temp B-tree here means SQLite sorts every
    /// ready job of the queue on each claim (56 claims/s instead of ~4.5k; PERFORMANCE.md, fact 1).
    #[test]
    fn claims_walk_the_ready_index_without_sorting() {
        let conn = migrated();
        for sql in [BEST, TAKE_BEST, CANDIDATES, ANY_READY] {
            let claim = plan(&conn, sql);
            assert!(claim.contains("INDEX dj_jobs_ready (queue=? AND name=?)"), "claim plan:\n{claim}");
            assert!(!claim.contains("TEMP B-TREE"), "claim plan sorts:\n{claim}");
        }
        for (sql, index) in
            [(PROMOTE_SCHEDULED, "dj_jobs_due"), (NEXT_SCHEDULED, "dj_jobs_due"), (WAKE_WAITING, "dj_jobs_wake")]
        {
            assert!(plan(&conn, sql).contains(index), "{sql}:\n{}", plan(&conn, sql));
        }
        assert!(plan(&conn, NEXT_WAKE).contains("dj_jobs_wake"), "{}", plan(&conn, NEXT_WAKE));
        assert!(plan(&conn, ANY_DUE).contains("dj_jobs_due"), "{}", plan(&conn, ANY_DUE));
    }

    /// Claims compile their statements once (PERFORMANCE.md, fact 7): with the store's
    /// connection settings, executing them again recompiles nothing.
    #[test]
    fn claim_statements_are_not_recompiled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.db");
        drop(Connection::open(&path).expect("create"));
        let mut conn = crate::connection::open_connection(&path, &crate::SqliteOptions::new(), true).expect("open");
        crate::schema::migrate(&mut conn, 0).expect("migrate");
        let req = ClaimRequest::new("w", Timestamp(10), Timestamp(20)).names(["a"]).limit(2);
        for i in 0..3 {
            conn.execute(
                "INSERT INTO dj_jobs (queue, name, args, status, priority, run_at, attempt, max_attempts,
                                      created_at, updated_at)
                 VALUES ('default', 'a', '{}', 'pending', 0, ?1, 0, 3, ?1, ?1)",
                [i],
            )
            .expect("insert");
            assert_eq!(claim(&conn, &req).expect("claim").jobs.len(), 1);
        }
        for sql in [throttle::CONFIG, TAKE_BEST, PROMOTE_SCHEDULED, WAKE_WAITING, NEXT_SCHEDULED, NEXT_WAKE] {
            let recompiled = conn.prepare_cached(sql).expect("cached").get_status(rusqlite::StatementStatus::RePrepare);
            assert_eq!(recompiled, 0, "recompiled {recompiled} times:\n{sql}");
        }
    }

    /// G7 / S12 and issue 9: a claim reads the same with a million finished jobs, 200k jobs due
    /// in the future at a higher priority, or 200k jobs of a name nobody claims: the SQLite
    /// virtual-machine steps of the claim scan are counted, not timed.
    #[test]
    fn claim_cost_does_not_grow_with_what_it_cannot_take() {
        let steps = |fill: &[(&str, &str, i64, i64)]| -> i32 {
            let conn = migrated();
            for &(status, name, priority, n) in fill {
                conn.execute_batch(&format!(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
                     INSERT INTO dj_jobs (queue, name, args, status, priority, run_at, attempt, max_attempts,
                                          created_at, updated_at)
                     SELECT 'default', '{name}', '{{}}', '{status}', {priority} + i % 3, i, 1, 3, i, i FROM n"
                ))
                .expect("fill");
            }
            conn.execute_batch(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
                 INSERT INTO dj_jobs (queue, name, args, status, priority, run_at, attempt, max_attempts,
                                      created_at, updated_at)
                 SELECT 'default', 'a', '{}', 'pending', i % 3, i, 1, 3, i, i FROM n",
            )
            .expect("fill ready");
            let mut stmt = conn.prepare(BEST).expect("prepare");
            let ids = stmt.query_map(params![0, 0, 0, "default", "a", 100], |r| r.get::<_, i64>(0)).expect("scan");
            assert_eq!(ids.count(), 100);
            stmt.get_status(rusqlite::StatementStatus::VmStep)
        };
        let empty = steps(&[]);
        assert!(empty > 0);
        for (what, fill) in [
            ("1M finished jobs", vec![("completed", "a", 0, 1_000_000)]),
            ("200k future jobs of higher priority", vec![("scheduled", "a", 10, 200_000)]),
            ("200k ready jobs of a name nobody claims", vec![("pending", "nobody", 10, 200_000)]),
        ] {
            let full = steps(&fill);
            eprintln!("claim scan: {empty} VM steps with nothing else, {full} with {what}");
            assert!(full <= 2 * empty, "claim scan: {full} VM steps with {what}, {empty} without");
        }
    }
}
