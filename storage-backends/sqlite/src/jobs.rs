//! Inserting, claiming and reading jobs.

use durable_jobs_store::{
    Checkpoint, ClaimRequest, ClaimedJob, Enqueued, JobFilter, JobId, JobRecord, JobStatus, NewJob, StatusCount,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::rows::{self, micros, Bytes, Json, Status, JOB_COLUMNS};

/// The statuses in which a job holds its unique key; must match the `jobs_unique` index.
const LIVE_KEY_HOLDER: &str =
    "SELECT id FROM jobs WHERE unique_key = ?1 AND unique_key IS NOT NULL AND status IN ('pending', 'running', 'waiting', 'paused')";

pub(crate) fn enqueue(conn: &Connection, jobs: &[NewJob]) -> rusqlite::Result<Vec<Enqueued>> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO jobs (queue, name, args, status, priority, run_at, attempt, max_attempts, unique_key,
                           timeout_us, backoff_base_us, backoff_max_us, created_at, updated_at)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5, 0, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
    )?;
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Some(key) = &job.unique_key {
            let holder: Option<i64> =
                conn.prepare_cached(LIVE_KEY_HOLDER)?.query_row([key], |r| r.get(0)).optional()?;
            if let Some(holder) = holder {
                out.push(Enqueued::Duplicate(JobId(holder)));
                continue;
            }
        }
        insert.execute(params![
            job.queue,
            job.name,
            Json(&job.args),
            job.priority,
            job.run_at.0,
            job.max_attempts,
            job.unique_key,
            job.timeout.map(micros),
            job.retry_policy.map(|p| micros(p.base)),
            job.retry_policy.map(|p| micros(p.max)),
            job.created_at.0,
        ])?;
        out.push(Enqueued::New(JobId(conn.last_insert_rowid())));
    }
    Ok(out)
}

/// The best ready jobs of one queue, read in index order: no sort, whatever the backlog.
const CLAIM_SCAN: &str = "SELECT priority, run_at, id FROM jobs
     WHERE queue = ?1 AND status = 'pending' AND run_at <= ?2
       AND name IN (SELECT value FROM json_each(?3))
     ORDER BY priority DESC, run_at, id
     LIMIT ?4";

/// A ready job found by the candidate scan, with its sort key.
struct Candidate {
    priority: i32,
    run_at: i64,
    id: i64,
}

/// One queue: the scan and the update in one statement.
const CLAIM_ONE_QUEUE: &str =
    "UPDATE jobs SET status = 'running', attempt = attempt + 1, locked_by = ?5, lease_until = ?6,
                     started_at = ?2, updated_at = ?2
     WHERE id IN (SELECT id FROM jobs
                  WHERE queue = ?1 AND status = 'pending' AND run_at <= ?2
                    AND name IN (SELECT value FROM json_each(?3))
                  ORDER BY priority DESC, run_at, id
                  LIMIT ?4)
     RETURNING id, queue, name, args, attempt, max_attempts, priority, timeout_us, backoff_base_us, backoff_max_us,
               EXISTS (SELECT 1 FROM checkpoints WHERE job_id = jobs.id), run_at";

pub(crate) fn claim(conn: &Connection, req: &ClaimRequest) -> rusqlite::Result<Vec<ClaimedJob>> {
    if req.limit == 0 || req.queues.is_empty() || req.names.is_empty() {
        return Ok(Vec::new());
    }
    let names = serde_json::to_string(&req.names).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    let limit = i64::try_from(req.limit).unwrap_or(i64::MAX);
    if let [queue] = req.queues.as_slice() {
        let mut claim = conn.prepare_cached(CLAIM_ONE_QUEUE)?;
        // Stepped to the end (not query_row): see BENCHMARKS.md fact 2 on RETURNING.
        let mut rows = claim.query(params![queue, req.now.0, names, limit, req.worker, req.lease_until.0])?;
        let mut claimed = Vec::with_capacity(req.limit.min(1024));
        while let Some(r) = rows.next()? {
            let job = claimed_job(r, 1)?;
            claimed.push((r.get::<_, i64>(11)?, job));
        }
        // RETURNING has no order: restore the claim order.
        claimed.sort_by_key(|(run_at, j)| (std::cmp::Reverse(j.priority), *run_at, j.id));
        return Ok(claimed.into_iter().map(|(_, j)| j).collect());
    }
    // Several queues: per queue, the best `limit` ready jobs straight off the claim index (no
    // sort); then the best `limit` of those across queues, taken one by one.
    let mut scan = conn.prepare_cached(CLAIM_SCAN)?;
    let mut candidates = Vec::new();
    for queue in &req.queues {
        let rows = scan.query_map(params![queue, req.now.0, names, limit], |r| {
            Ok(Candidate { priority: r.get(0)?, run_at: r.get(1)?, id: r.get(2)? })
        })?;
        for c in rows {
            candidates.push(c?);
        }
    }
    candidates.sort_by_key(|c| (std::cmp::Reverse(c.priority), c.run_at, c.id));
    candidates.truncate(req.limit);
    let mut take = conn.prepare_cached(
        "UPDATE jobs SET status = 'running', attempt = attempt + 1, locked_by = ?2, lease_until = ?3,
                         started_at = ?4, updated_at = ?4
         WHERE id = ?1 AND status = 'pending'
         RETURNING queue, name, args, attempt, max_attempts, priority, timeout_us, backoff_base_us, backoff_max_us,
                   EXISTS (SELECT 1 FROM checkpoints WHERE job_id = jobs.id)",
    )?;
    let mut claimed = Vec::with_capacity(candidates.len());
    for c in candidates {
        // Stepped to the end (not query_row): see BENCHMARKS.md fact 2 on RETURNING.
        let mut rows = take.query(params![c.id, req.worker, req.lease_until.0, req.now.0])?;
        while let Some(r) = rows.next()? {
            let mut job = claimed_job(r, 0)?;
            job.id = JobId(c.id);
            claimed.push(job);
        }
    }
    Ok(claimed)
}

/// A claimed job from `RETURNING queue, name, args, …` starting at column `at` (after `id`,
/// whose column is `at - 1` when present).
fn claimed_job(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<ClaimedJob> {
    Ok(ClaimedJob {
        id: JobId(if at > 0 { r.get(at - 1)? } else { 0 }),
        queue: r.get(at)?,
        name: r.get(at + 1)?,
        args: r.get::<_, Bytes>(at + 2)?.0,
        attempt: rows::count(r.get(at + 3)?),
        max_attempts: rows::count(r.get(at + 4)?),
        priority: r.get(at + 5)?,
        timeout: rows::duration(r.get(at + 6)?),
        retry_policy: rows::retry_policy(r.get(at + 7)?, r.get(at + 8)?),
        resumed: r.get(at + 9)?,
    })
}

pub(crate) fn get(conn: &Connection, job: JobId) -> rusqlite::Result<Option<JobRecord>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1");
    conn.prepare_cached(&sql)?.query_row([job.0], rows::job_record).optional()
}

pub(crate) fn list(conn: &Connection, filter: &JobFilter) -> rusqlite::Result<Vec<JobRecord>> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR queue = ?2) AND (?3 IS NULL OR name = ?3)
         ORDER BY id LIMIT ?4 OFFSET ?5"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            filter.status.map(JobStatus::as_str),
            filter.queue,
            filter.name,
            i64::try_from(filter.limit).unwrap_or(i64::MAX),
            i64::try_from(filter.offset).unwrap_or(i64::MAX),
        ],
        rows::job_record,
    )?;
    rows.collect()
}

pub(crate) fn counts(conn: &Connection) -> rusqlite::Result<Vec<StatusCount>> {
    let mut stmt = conn.prepare_cached("SELECT queue, status, COUNT(*) FROM jobs GROUP BY queue, status")?;
    let rows = stmt.query_map([], |r| {
        Ok(StatusCount {
            queue: r.get(0)?,
            status: r.get::<_, Status>(1)?.0,
            count: r.get::<_, i64>(2)?.unsigned_abs(),
        })
    })?;
    let mut counts = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    counts.sort();
    Ok(counts)
}

pub(crate) fn checkpoints(conn: &Connection, job: JobId) -> rusqlite::Result<Vec<Checkpoint>> {
    let mut stmt =
        conn.prepare_cached("SELECT idx, name, ok, value FROM checkpoints WHERE job_id = ?1 ORDER BY idx")?;
    let rows = stmt.query_map([job.0], |r| {
        let value = r.get::<_, Bytes>(3)?.0;
        let outcome = if r.get::<_, bool>(2)? { Ok(value) } else { Err(String::from_utf8_lossy(&value).into_owned()) };
        Ok(Checkpoint { index: rows::count(r.get(0)?), name: r.get(1)?, outcome })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("explain");
        let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
        let rows = stmt.query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3)).expect("plan rows");
        rows.map(|r| r.expect("plan row")).collect::<Vec<_>>().join("\n")
    }

    /// BENCHMARKS.md fact 1: a claim must walk `jobs_claim` in order. A temp B-tree here means
    /// SQLite sorts every pending job of the queue on each claim (56 claims/s instead of ~4.5k).
    #[test]
    fn claim_scan_uses_claim_index_without_sorting() {
        let mut conn = Connection::open_in_memory().expect("open");
        crate::schema::migrate(&mut conn, 0).expect("migrate");
        for sql in [CLAIM_SCAN, CLAIM_ONE_QUEUE] {
            let claim = plan(&conn, sql);
            assert!(claim.contains("USING INDEX jobs_claim (queue=? AND status=?"), "claim plan:\n{claim}");
            assert!(!claim.contains("TEMP B-TREE"), "claim plan sorts:\n{claim}");
        }
        let holder = plan(&conn, LIVE_KEY_HOLDER);
        assert!(holder.contains("jobs_unique"), "unique lookup plan:\n{holder}");
    }

    /// G7 / S12: a claim reads the same with a million finished jobs in the table as with none:
    /// the SQLite virtual-machine steps of the claim scan are counted, not timed.
    #[test]
    fn claim_cost_does_not_grow_with_finished_jobs() {
        let steps = |finished: i64| -> i32 {
            let mut conn = Connection::open_in_memory().expect("open");
            crate::schema::migrate(&mut conn, 0).expect("migrate");
            let fill = |status: &str, n: i64| {
                conn.execute_batch(&format!(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
                     INSERT INTO jobs (queue, name, args, status, priority, run_at, attempt, max_attempts,
                                       created_at, updated_at)
                     SELECT 'default', 'a', '{{}}', '{status}', i % 3, i, 1, 3, i, i FROM n"
                ))
                .expect("fill");
            };
            if finished > 0 {
                fill("completed", finished);
            }
            fill("pending", 1000);
            let mut stmt = conn.prepare(CLAIM_SCAN).expect("prepare");
            let rows =
                stmt.query_map(params!["default", i64::MAX, r#"["a"]"#, 100], |r| r.get::<_, i64>(2)).expect("scan");
            assert_eq!(rows.count(), 100);
            stmt.get_status(rusqlite::StatementStatus::VmStep)
        };
        let (empty, full) = (steps(0), steps(1_000_000));
        assert!(empty > 0);
        eprintln!("claim scan: {empty} VM steps with no finished jobs, {full} with 1M");
        assert!(full <= 2 * empty, "claim scan: {full} VM steps with 1M finished jobs, {empty} with none");
    }
}
