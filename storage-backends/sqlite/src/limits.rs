//! The raw limits of SQLite on this machine, for benchmarks: the fewest statements doing the
//! same durable writes as the store (same schema, same pragmas), with nothing else around them.
//! `examples/bench.rs` reports the engine's figures as ratios to these, measured in the same run.

use std::path::Path;
use std::time::Instant;

use durable_jobs_store::StoreError;
use rusqlite::{params, Connection};

use crate::connection::{create_private_file, enable_wal, open_connection};
use crate::error::Context;
use crate::{schema, SqliteOptions};

const INSERT: &str = "INSERT INTO dj_jobs (queue, name, args, status, priority, run_at, attempt, max_attempts,
                       created_at, updated_at)
     VALUES ('default', 'bench', ?1, 'pending', 0, ?2, 0, 3, ?2, ?2)";

/// About 100 bytes of JSON, like the benchmark jobs.
pub const ARGS: &str =
    r#"{"user_id":4242,"template":"welcome_v2","to":"user4242@example.com","locale":"en-US","retry":true}"#;

fn open(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
    create_private_file(path)?;
    let mut conn = open_connection(path, options, true)?;
    enable_wal(&conn, path)?;
    schema::migrate(&mut conn, 0)?;
    Ok(conn)
}

/// Inserts `total` jobs in transactions of `batch` rows; returns rows per second.
///
/// # Errors
///
/// Any SQLite error, as a [`StoreError`].
pub fn inserts(path: &Path, options: &SqliteOptions, batch: usize, total: usize) -> Result<f64, StoreError> {
    let mut conn = open(path, options)?;
    let started = Instant::now();
    let mut done = 0;
    while done < total {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).context("begin")?;
        {
            let mut insert = tx.prepare_cached(INSERT).context("prepare")?;
            for i in 0..batch.min(total - done) {
                insert.execute(params![ARGS, i64::try_from(done + i).unwrap_or(0)]).context("insert")?;
            }
        }
        tx.commit().context("commit")?;
        done += batch;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// With `total` pending jobs in place (not timed), claims `batch` jobs per transaction and
/// completes them in a second transaction; returns jobs per second.
///
/// # Errors
///
/// Any SQLite error, as a [`StoreError`].
pub fn claim_complete(path: &Path, options: &SqliteOptions, batch: usize, total: usize) -> Result<f64, StoreError> {
    inserts(path, options, 1000, total)?;
    let mut conn = open(path, options)?;
    let k = i64::try_from(batch).unwrap_or(i64::MAX);
    let started = Instant::now();
    let mut done = 0;
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).context("begin")?;
        let ids: Vec<i64> = {
            let mut claim = tx
                .prepare_cached(
                    "UPDATE dj_jobs SET status = 'running', attempt = attempt + 1, locked_by = 'raw', lease_until = 1,
                                     started_at = 1, updated_at = 1
                     WHERE id IN (SELECT id FROM dj_jobs WHERE status = 'pending' AND queue = 'default' AND name = 'bench'
                                  AND run_at <= ?1 ORDER BY priority DESC, run_at, id LIMIT ?2)
                     RETURNING id, args",
                )
                .context("prepare claim")?;
            let rows = claim.query_map(params![i64::MAX, k], |r| r.get(0)).context("claim")?;
            rows.collect::<rusqlite::Result<_>>().context("claim")?
        };
        tx.commit().context("commit claim")?;
        if ids.is_empty() {
            break;
        }
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).context("begin")?;
        {
            let mut complete = tx
                .prepare_cached(
                    "UPDATE dj_jobs SET status = 'completed', result = 'null', locked_by = NULL, lease_until = NULL,
                                     finished_at = 2, updated_at = 2
                     WHERE id = ?1 AND status = 'running' AND locked_by = 'raw'",
                )
                .context("prepare complete")?;
            for id in &ids {
                complete.execute([id]).context("complete")?;
            }
        }
        tx.commit().context("commit completion")?;
        done += ids.len();
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// Inserts `finished` completed jobs quickly (one statement), for scale benchmarks.
///
/// # Errors
///
/// Any SQLite error, as a [`StoreError`].
pub fn fill_finished(path: &Path, options: &SqliteOptions, finished: u64) -> Result<(), StoreError> {
    let conn = open(path, options)?;
    conn.execute_batch(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {finished})
         INSERT INTO dj_jobs (queue, name, args, status, priority, run_at, attempt, max_attempts, result,
                           created_at, started_at, finished_at, updated_at)
         SELECT 'default', 'bench', '{ARGS}', 'completed', 0, i, 1, 3, 'null', i, i, i, i FROM n"
    ))
    .context("fill finished jobs")
}
