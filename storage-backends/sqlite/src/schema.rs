//! Numbered migrations and the schema-version table.

use durable_jobs_store::{StoreError, StoreErrorKind};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::Context;

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only: never edit one
/// that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: jobs and checkpoints.
    "CREATE TABLE jobs (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        queue           TEXT    NOT NULL,
        name            TEXT    NOT NULL,
        args            TEXT    NOT NULL,
        status          TEXT    NOT NULL,
        priority        INTEGER NOT NULL,
        run_at          INTEGER NOT NULL,
        attempt         INTEGER NOT NULL,
        max_attempts    INTEGER NOT NULL,
        unique_key      TEXT,
        timeout_us      INTEGER,
        backoff_base_us INTEGER,
        backoff_max_us  INTEGER,
        locked_by       TEXT,
        lease_until     INTEGER,
        wake_at         INTEGER,
        last_error      TEXT,
        result          TEXT,
        created_at      INTEGER NOT NULL,
        started_at      INTEGER,
        finished_at     INTEGER,
        updated_at      INTEGER NOT NULL
    );
    -- The claim scan: equality on queue and status, then the ORDER BY of the claim. The
    -- direction must match (priority DESC) or SQLite sorts the whole priority group per claim.
    CREATE INDEX jobs_claim ON jobs (queue, status, priority DESC, run_at);
    CREATE INDEX jobs_lease ON jobs (lease_until) WHERE status = 'running';
    CREATE INDEX jobs_wake ON jobs (wake_at) WHERE status = 'waiting';
    CREATE UNIQUE INDEX jobs_unique ON jobs (unique_key)
        WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'waiting', 'paused');
    CREATE TABLE checkpoints (
        job_id     INTEGER NOT NULL,
        idx        INTEGER NOT NULL,
        name       TEXT    NOT NULL,
        ok         INTEGER NOT NULL,
        value      TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (job_id, idx)
    ) WITHOUT ROWID;",
];

/// The schema version this library writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`], one transaction per migration.
///
/// Fails with [`StoreErrorKind::IncompatibleSchema`] if the database is newer, changing nothing.
pub(crate) fn migrate(conn: &mut Connection, now_us: i64) -> Result<(), StoreError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).context("begin migration")?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS durable_jobs_schema (
                version    INTEGER PRIMARY KEY,
                applied_at INTEGER NOT NULL
            );",
        )
        .context("create schema table")?;
        let current: i64 = tx
            .query_row("SELECT MAX(version) FROM durable_jobs_schema", [], |r| r.get::<_, Option<i64>>(0))
            .optional()
            .context("read schema version")?
            .flatten()
            .unwrap_or(0);
        if current > SCHEMA_VERSION {
            return Err(StoreError::new(
                StoreErrorKind::IncompatibleSchema,
                format!(
                    "the database has schema version {current}, newer than the {SCHEMA_VERSION} this version of \
                     durable-jobs-sqlite understands; upgrade the library"
                ),
            ));
        }
        let Some(sql) = MIGRATIONS.get(current as usize) else {
            return Ok(());
        };
        tx.execute_batch(sql).context("apply migration")?;
        tx.execute("INSERT INTO durable_jobs_schema (version, applied_at) VALUES (?1, ?2)", (current + 1, now_us))
            .context("record migration")?;
        tx.commit().context("commit migration")?;
    }
}
