//! The schema: what a fresh database gets, numbered upgrades of older ones, and the check that
//! refuses a database whose tables would collide with ours before anything is changed.

use durable_jobs_store::{StoreError, StoreErrorKind};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::Context;

/// The schema version this library writes.
pub const SCHEMA_VERSION: i64 = 4;

/// The tables and indexes of the current schema. Every name starts with `dj_`, so the store can
/// share a database file with an application's own tables.
const CURRENT: &str = "
    CREATE TABLE dj_jobs (
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
        updated_at      INTEGER NOT NULL,
        token           INTEGER NOT NULL DEFAULT 0,
        run_started     INTEGER NOT NULL DEFAULT 0,
        confirm_start   INTEGER NOT NULL DEFAULT 0,
        parent_id       INTEGER,
        parent_idx      INTEGER,
        wait_signal     TEXT,
        fan_idx         INTEGER,
        fan_need        INTEGER,
        fan_tolerate    INTEGER,
        fan_total       INTEGER,
        fan_succeeded   INTEGER,
        fan_failed      INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        concurrency_key TEXT,
        capped          INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE dj_checkpoints (
        job_id     INTEGER NOT NULL,
        idx        INTEGER NOT NULL,
        name       TEXT    NOT NULL,
        ok         INTEGER NOT NULL,
        value      TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        retryable  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (job_id, idx)
    ) WITHOUT ROWID;";

/// The indexes of the current schema (also built by the upgrade from version 1).
const INDEXES: &str = "
    -- The claim: ready jobs of one queue and name in claim order, so that neither future jobs
    -- nor jobs of names the worker cannot run lie in front of the ones it can. The direction
    -- must match (priority DESC) or SQLite sorts the whole group on every claim.
    CREATE INDEX dj_jobs_ready ON dj_jobs (queue, name, priority DESC, run_at) WHERE status = 'pending';
    CREATE INDEX dj_jobs_due ON dj_jobs (queue, run_at) WHERE status = 'scheduled';
    CREATE INDEX dj_jobs_wake ON dj_jobs (queue, wake_at) WHERE status = 'waiting' AND wake_at IS NOT NULL;
    CREATE INDEX dj_jobs_lease ON dj_jobs (lease_until) WHERE status = 'running';
    CREATE UNIQUE INDEX dj_jobs_unique ON dj_jobs (unique_key)
        WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'pending', 'running', 'waiting', 'paused');
    CREATE INDEX dj_jobs_key ON dj_jobs (unique_key, created_at) WHERE unique_key IS NOT NULL;";

/// Version 1 (tables `jobs`, `checkpoints`, `durable_jobs_schema`) to 2. `?1` is now.
const V1_TO_V2: &str = "
    ALTER TABLE durable_jobs_schema RENAME TO dj_schema;
    DROP INDEX jobs_claim;
    DROP INDEX jobs_lease;
    DROP INDEX jobs_wake;
    DROP INDEX jobs_unique;
    ALTER TABLE jobs RENAME TO dj_jobs;
    ALTER TABLE checkpoints RENAME TO dj_checkpoints;
    ALTER TABLE dj_jobs ADD COLUMN token INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE dj_jobs ADD COLUMN run_started INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE dj_jobs ADD COLUMN confirm_start INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE dj_checkpoints ADD COLUMN retryable INTEGER NOT NULL DEFAULT 0;";

/// Version 2 to 3: the columns of durable waits (the parent of a child job; what a waiting job
/// waits for besides a time: a signal name, the fan-in of its children with their counts).
/// [`WAITS`] follows.
const V2_TO_V3: &str = "
    ALTER TABLE dj_jobs ADD COLUMN parent_id INTEGER;
    ALTER TABLE dj_jobs ADD COLUMN parent_idx INTEGER;
    ALTER TABLE dj_jobs ADD COLUMN wait_signal TEXT;
    ALTER TABLE dj_jobs ADD COLUMN fan_idx INTEGER;
    ALTER TABLE dj_jobs ADD COLUMN fan_need INTEGER;
    ALTER TABLE dj_jobs ADD COLUMN fan_tolerate INTEGER;
    ALTER TABLE dj_jobs ADD COLUMN fan_total INTEGER;
    ALTER TABLE dj_jobs ADD COLUMN fan_succeeded INTEGER;
    ALTER TABLE dj_jobs ADD COLUMN fan_failed INTEGER;";

/// The objects of durable waits (version 3), for a fresh database and the upgrade from 2.
const WAITS: &str = "
    -- Signals not consumed yet. AUTOINCREMENT: an id is never reused, even after the newest
    -- signal is consumed, so ids follow sending order for ever.
    CREATE TABLE dj_signals (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id  INTEGER NOT NULL,
        name    TEXT    NOT NULL,
        payload TEXT    NOT NULL,
        sent_at INTEGER NOT NULL
    );
    CREATE INDEX dj_signals_job ON dj_signals (job_id, name, id);
    -- The children of a parent's step: fan-in counts, the cascade of cancel, listing.
    -- Its entries are (parent_id, id): a parent's children are listed in id order, a page at a
    -- time, without a sort.
    CREATE INDEX dj_jobs_parent ON dj_jobs (parent_id) WHERE parent_id IS NOT NULL;";

/// Version 3 to 4: a running job asked to cancel; the key its limits count it under, and
/// whether a running cap counts it (`capped`, see [`CONTROL`], which follows).
const V3_TO_V4: &str = "
    ALTER TABLE dj_jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE dj_jobs ADD COLUMN concurrency_key TEXT;
    ALTER TABLE dj_jobs ADD COLUMN capped INTEGER NOT NULL DEFAULT 0;";

/// The objects of operator control, schedules and limits (version 4), for a fresh database and
/// the upgrade from 3.
const CONTROL: &str = "
    -- Queues no claim takes from, for every process sharing the file. Read by every claim:
    -- a tiny table, usually empty.
    CREATE TABLE dj_paused_queues (
        queue     TEXT    PRIMARY KEY,
        paused_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- One holder per role (retention, schedules) until its lease ends.
    CREATE TABLE dj_leads (
        role        TEXT    PRIMARY KEY,
        holder      TEXT    NOT NULL,
        lease_until INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Retention: the oldest finished jobs of a status, in purge order, without reading the
    -- table. Live jobs have no finished_at and no entry (a requeue removes its job's).
    CREATE INDEX dj_jobs_finished ON dj_jobs (status, finished_at) WHERE finished_at IS NOT NULL;
    -- Recurring schedules; template is the engine's encoding of the job, opaque here.
    CREATE TABLE dj_schedules (
        name       TEXT    PRIMARY KEY,
        spec       TEXT    NOT NULL,
        template   BLOB    NOT NULL,
        next_fire  INTEGER NOT NULL,
        last_fire  INTEGER,
        last_job   INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Limits on claims; kind 0 is a queue, 1 a handler name (queues sort first).
    CREATE TABLE dj_limits (
        kind        INTEGER NOT NULL,
        scope       TEXT    NOT NULL,
        max_running INTEGER,
        per_second  INTEGER,
        by_key      INTEGER NOT NULL,
        PRIMARY KEY (kind, scope)
    ) WITHOUT ROWID;
    -- Claims counted per limit scope and key ('' for the whole scope) in one one-second window
    -- (`second`, since the epoch); a count of another second than now's is 0.
    CREATE TABLE dj_limit_windows (
        kind            INTEGER NOT NULL,
        scope           TEXT    NOT NULL,
        concurrency_key TEXT    NOT NULL,
        second          INTEGER NOT NULL,
        count           INTEGER NOT NULL,
        PRIMARY KEY (kind, scope, concurrency_key)
    ) WITHOUT ROWID;
    -- Running jobs a running cap counts, per queue or name and key. Only jobs claimed while a
    -- cap of their queue (capped bit 1) or name (bit 2) covers them, or running when it was
    -- set, have an entry: without caps, claims and completions maintain none. The last two
    -- columns make the counts covering.
    CREATE INDEX dj_jobs_capped_queue ON dj_jobs (queue, COALESCE(concurrency_key, ''), concurrency_key, capped)
        WHERE status = 'running' AND capped IN (1, 3);
    CREATE INDEX dj_jobs_capped_name ON dj_jobs (name, COALESCE(concurrency_key, ''), concurrency_key, capped)
        WHERE status = 'running' AND capped IN (2, 3);";

/// Names version 3 added: a database of an older version that has one was not made by us.
const ADDED_IN_3: &[&str] = &["dj_signals", "dj_signals_job", "dj_jobs_parent"];

/// Names version 4 added, likewise.
const ADDED_IN_4: &[&str] = &[
    "dj_paused_queues",
    "dj_leads",
    "dj_jobs_finished",
    "dj_schedules",
    "dj_limits",
    "dj_limit_windows",
    "dj_jobs_capped_queue",
    "dj_jobs_capped_name",
];

/// Names this library creates; a database that has one without being ours is refused.
const OUR_NAMES: &[&str] = &[
    "dj_schema",
    "dj_jobs",
    "dj_checkpoints",
    "dj_jobs_ready",
    "dj_jobs_due",
    "dj_jobs_wake",
    "dj_jobs_lease",
    "dj_jobs_unique",
    "dj_jobs_key",
    "dj_signals",
    "dj_signals_job",
    "dj_jobs_parent",
    "dj_jobs_child_finished",
    "dj_paused_queues",
    "dj_leads",
    "dj_jobs_finished",
    "dj_schedules",
    "dj_limits",
    "dj_limit_windows",
    "dj_jobs_capped_queue",
    "dj_jobs_capped_name",
];

/// What a database holds before the store touches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// None of our tables: the schema will be created.
    Fresh,
    /// Our tables at this version.
    Version(i64),
}

/// Reads (never writes) what the database holds, refusing one whose tables collide with ours
/// or whose schema is newer than this library.
pub(crate) fn inspect(conn: &Connection) -> Result<Found, StoreError> {
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .context("read the schema")?;
    let has = |name: &str| names.iter().any(|n| n == name);
    let version_table = if has("dj_schema") {
        "dj_schema"
    } else if has("durable_jobs_schema") {
        // Version 1 had none of the `dj_` names.
        if let Some(clash) = OUR_NAMES.iter().find(|n| has(n)) {
            return Err(conflict(clash));
        }
        "durable_jobs_schema"
    } else {
        return match OUR_NAMES.iter().find(|n| has(n)) {
            Some(clash) => Err(conflict(clash)),
            None => Ok(Found::Fresh),
        };
    };
    let version = read_version(conn, version_table)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::new(
            StoreErrorKind::IncompatibleSchema,
            format!(
                "the database has schema version {version}, newer than the {SCHEMA_VERSION} this version of \
                 durable-jobs-sqlite understands; upgrade the library"
            ),
        ));
    }
    let added_since = [(3, ADDED_IN_3), (4, ADDED_IN_4)].into_iter().filter(|(added, _)| version < *added);
    if let Some(clash) = added_since.flat_map(|(_, names)| names.iter()).find(|n| has(n)) {
        return Err(conflict(clash));
    }
    Ok(Found::Version(version))
}

fn read_version(conn: &Connection, table: &str) -> Result<i64, StoreError> {
    let version = conn
        .query_row(&format!("SELECT MAX(version) FROM {table}"), [], |r| r.get::<_, Option<i64>>(0))
        .optional()
        .context("read the schema version")?;
    Ok(version.flatten().unwrap_or(0))
}

fn conflict(name: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::IncompatibleSchema,
        format!(
            "the database already has a {name:?} that durable-jobs did not create; nothing was changed (durable-jobs \
             keeps its tables under the dj_ prefix: rename yours, or use another database file)"
        ),
    )
}

/// Brings the database to [`SCHEMA_VERSION`] in one transaction, inspecting it again under the
/// write lock (another process may have created or upgraded it meanwhile).
pub(crate) fn migrate(conn: &mut Connection, now_us: i64) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).context("begin migration")?;
    match inspect(&tx)? {
        Found::Version(SCHEMA_VERSION) => return Ok(()),
        Found::Fresh => {
            tx.execute_batch(CURRENT).context("create tables")?;
            tx.execute_batch(INDEXES).context("create indexes")?;
            tx.execute_batch(WAITS).context("create the tables of waits")?;
            tx.execute_batch(CONTROL).context("create the tables of operator control, schedules and limits")?;
            tx.execute_batch("CREATE TABLE dj_schema (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
                .context("create schema table")?;
        }
        Found::Version(version @ 1..=3) => {
            if version == 1 {
                tx.execute_batch(V1_TO_V2).context("upgrade schema 1 to 2")?;
                tx.execute(
                    "UPDATE dj_jobs SET status = 'scheduled' WHERE status = 'pending' AND run_at > ?1",
                    [now_us],
                )
                .context("upgrade schema 1 to 2: schedule future jobs")?;
                tx.execute_batch(INDEXES).context("upgrade schema 1 to 2: indexes")?;
            }
            if version <= 2 {
                tx.execute_batch(V2_TO_V3).context("upgrade schema 2 to 3")?;
                tx.execute_batch(WAITS).context("upgrade schema 2 to 3: the tables of waits")?;
            }
            tx.execute_batch(V3_TO_V4).context("upgrade schema 3 to 4")?;
            tx.execute_batch(CONTROL).context("upgrade schema 3 to 4: the tables of operator control")?;
        }
        Found::Version(other) => {
            return Err(StoreError::new(
                StoreErrorKind::IncompatibleSchema,
                format!("the database has schema version {other}, which this version cannot upgrade"),
            ));
        }
    }
    tx.execute("INSERT INTO dj_schema (version, applied_at) VALUES (?1, ?2)", (SCHEMA_VERSION, now_us))
        .context("record the schema version")?;
    tx.commit().context("commit migration")
}
