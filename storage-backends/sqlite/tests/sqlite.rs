//! What is specific to the SQLite store: the file, the schema version, sharing one file.

use std::sync::Arc;
use std::thread;

use durable_jobs_sqlite::{Durability, SqliteOptions, SqliteStore, SCHEMA_VERSION};
use durable_jobs_store::conformance::{claim_runs, insert, job, T0};
use durable_jobs_store::{JobId, JobStatus, Store, StoreErrorKind, Write, WriteOutcome};

#[cfg(unix)]
#[test]
fn new_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let store = SqliteStore::open(&path).unwrap();
    insert(&store, &[job("a")]);
    for file in [path.clone(), dir.path().join("jobs.db-wal")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", file.display());
    }
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("INSERT INTO dj_schema (version, applied_at) VALUES (?1, 0)", [SCHEMA_VERSION + 1]).unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::IncompatibleSchema, "{err}");
    assert!(err.to_string().contains(&format!("schema version {}", SCHEMA_VERSION + 1)), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "the file must be byte-identical");
}

#[test]
fn normal_durability_opens_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let options = SqliteOptions::new().durability(Durability::Normal).readers(1);
    let id = insert(&SqliteStore::open_with(&path, options.clone()).unwrap(), &[job("a")])[0];
    let store = SqliteStore::open_with(&path, options).unwrap();
    assert_eq!(store.get(id).unwrap().map(|j| j.status), Some(JobStatus::Pending));
}

/// Two stores on one file (as two processes would have) claim and complete concurrently:
/// no error reaches the caller and no job is claimed twice.
#[test]
fn two_stores_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let n = 400;
    let ids = insert(&SqliteStore::open(&path).unwrap(), &vec![job("a"); n]);
    let workers: Vec<_> = ["p1", "p2"]
        .into_iter()
        .map(|worker| {
            let store = Arc::new(SqliteStore::open(&path).unwrap());
            thread::spawn(move || {
                let mut done: Vec<JobId> = Vec::new();
                loop {
                    let got = claim_runs(&*store, worker, 5, T0);
                    if got.is_empty() {
                        return done;
                    }
                    let writes: Vec<Write> = got.iter().map(|&run| Write::complete(run, b"null".to_vec())).collect();
                    let out = store.commit(worker, T0, &writes).unwrap();
                    assert!(out.iter().all(|o| *o == WriteOutcome::Applied), "{out:?}");
                    done.extend(got.iter().map(|run| run.job));
                }
            })
        })
        .collect();
    let mut all: Vec<JobId> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    all.sort();
    assert_eq!(all, ids, "every job exactly once across both stores");
}

/// S4: a full database refuses the write with a retryable `Full`, keeps every acknowledged job
/// and stays intact; the jobs it holds can still be claimed and finished; with room again, work
/// resumes. At several sizes: where the last enqueue stops depends on how the pages fall.
#[test]
fn a_full_database_refuses_writes_and_recovers() {
    for kb in (224..=252).step_by(4) {
        full_database_refuses_writes_and_recovers(kb * 1024);
    }
}

#[allow(clippy::unwrap_used)] // a test helper: allow-unwrap-in-tests sees only #[test] functions
fn full_database_refuses_writes_and_recovers(max_size: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    // `Normal`: the page accounting is the same, without an fsync per enqueue.
    let small = SqliteOptions::new().max_size(max_size).durability(Durability::Normal);
    let store = SqliteStore::open_with(&path, small).unwrap();
    let mut big = job("a");
    big.args = format!("\"{}\"", "x".repeat(4000)).into_bytes();
    let mut acknowledged = Vec::new();
    let err = loop {
        match store.enqueue(&[big.clone(), big.clone()]) {
            Ok(out) => acknowledged.extend(out.into_iter().map(durable_jobs_store::Enqueued::id)),
            Err(e) => break e,
        }
        assert!(acknowledged.len() < 10_000, "the size limit never hit");
    };
    assert_eq!(err.kind(), StoreErrorKind::Full, "{max_size} bytes: {err}");
    assert!(err.is_retryable());
    assert!(acknowledged.len() > 10, "{max_size} bytes: {} jobs fit", acknowledged.len());
    // Claims and completions of what is there still work while full (the reserve).
    let claimed = claim_runs(&store, "w", 5, T0);
    assert_eq!(claimed.len(), 5, "{max_size} bytes");
    let writes: Vec<Write> = claimed.iter().map(|&run| Write::complete(run, b"1".to_vec())).collect();
    assert_eq!(store.commit("w", T0, &writes).unwrap(), vec![WriteOutcome::Applied; 5], "{max_size} bytes");
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    drop(conn);
    let roomy = SqliteStore::open_with(&path, SqliteOptions::new().max_size(64 << 20)).unwrap();
    for id in &acknowledged {
        assert!(roomy.get(*id).unwrap().is_some(), "acknowledged job {id} kept");
    }
    assert_eq!(roomy.enqueue(&[big]).unwrap().len(), 1, "work resumes with room");
}

/// S5: a truncated database is refused before SQLite touches it; the file stays
/// byte-identical and no sidecar file appears.
#[test]
fn a_truncated_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    insert(&SqliteStore::open(&path).unwrap(), &vec![job("a"); 300]);
    let full = std::fs::read(&path).unwrap();
    assert!(full.len() > 8192, "{} bytes", full.len());
    let half = &full[..full.len() / 2];
    std::fs::write(&path, half).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), half);
    assert!(!dir.path().join("jobs.db-wal").exists() && !dir.path().join("jobs.db-shm").exists());
}

/// S5: with `check_on_open`, damage inside a page is found before any write, untouched.
#[test]
fn check_on_open_refuses_a_damaged_page_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    insert(&SqliteStore::open(&path).unwrap(), &vec![job("a"); 300]);
    let mut bytes = std::fs::read(&path).unwrap();
    // Garble the b-tree page headers of the middle third of the pages (free space inside a page
    // is not checked, so damage there would go unnoticed).
    let pages = bytes.len() / 4096;
    for page in pages / 3..2 * pages / 3 {
        bytes[page * 4096..page * 4096 + 16].fill(0xA5);
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = SqliteStore::open_with(&path, SqliteOptions::new().check_on_open(true)).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

/// S15: hostile text goes through parameters only: stored literally, schema unchanged.
#[test]
fn hostile_text_leaves_the_schema_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let schema = || -> Vec<String> {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mut stmt = conn.prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let store = SqliteStore::open(&path).unwrap();
    let before = schema();
    let hostile = "x'); DROP TABLE dj_jobs;--\0\u{202e}";
    let mut j = job("a");
    j.queue = hostile.into();
    j.name = hostile.into();
    j.unique_key = Some(hostile.into());
    j.args = hostile.as_bytes().to_vec();
    let id = insert(&store, &[j])[0];
    let back = store.get(id).unwrap().unwrap();
    assert_eq!((back.queue.as_str(), back.name.as_str(), back.args.as_slice()), (hostile, hostile, hostile.as_bytes()));
    assert_eq!(back.unique_key.as_deref(), Some(hostile));
    drop(store);
    assert_eq!(schema(), before);
    assert!(before.iter().any(|s| s.starts_with("CREATE TABLE dj_jobs")));
}

/// A database written by the release with schema version 1 opens, is upgraded in place (tables
/// renamed under the `dj_` prefix, claim tokens, scheduled jobs) and its jobs run to the end.
#[test]
fn a_schema_1_database_is_upgraded_in_place_and_finishes_its_jobs() {
    use durable_jobs_store::{ClaimRequest, ReclaimRequest, Timestamp};
    use JobStatus::{Cancelled, Completed, Failed, Pending, Running, Scheduled, Waiting};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v1.db"), &path).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    store.check_integrity().unwrap();
    let status = |id: i64| store.get(JobId(id)).unwrap().unwrap().status;
    let before: Vec<JobStatus> = (1..=8).map(status).collect();
    assert_eq!(before, [Completed, Failed, Cancelled, Running, Pending, Scheduled, Waiting, Pending]);
    let uniq = store.get(JobId(8)).unwrap().unwrap();
    assert_eq!((uniq.priority, uniq.unique_key.as_deref()), (5, Some("order-7")));
    assert_eq!(uniq.timeout, Some(std::time::Duration::from_secs(9)));
    assert_eq!(store.checkpoints(JobId(4), 0, 10).unwrap().len(), 3);
    assert_eq!(store.checkpoints(JobId(4), 2, 10).unwrap()[0].outcome, Err("declined".to_owned()));
    assert_eq!(store.get(JobId(1)).unwrap().unwrap().result.as_deref(), Some(&br#""ok""#[..]));
    let dup = store.enqueue(&[job("a").unique_key("order-7")]).unwrap();
    assert_eq!(dup, vec![durable_jobs_store::Enqueued::Duplicate(JobId(8))], "the unique index is rebuilt");
    // Run everything that can run, now.
    let now = Timestamp::now();
    let lost = store.reclaim(&ReclaimRequest::new(now, 10)).unwrap();
    assert_eq!(lost.released, vec![JobId(4)], "the old worker's run is recovered without a charge");
    let names = ["running-cp", "pending", "waiting", "uniq"];
    let lease = now.saturating_add(std::time::Duration::from_secs(30));
    let claimed = store.claim(&ClaimRequest::new("new", now, lease).names(names).limit(10)).unwrap().jobs;
    let mut seen: Vec<(i64, u64, bool)> = claimed.iter().map(|c| (c.id.0, c.token.0, c.resumed)).collect();
    seen.sort_unstable();
    assert_eq!(seen, vec![(4, 1, true), (5, 1, false), (7, 1, false), (8, 1, false)]);
    let writes: Vec<Write> = claimed.iter().map(|c| Write::complete(c.claim(), b"1".to_vec())).collect();
    assert_eq!(store.commit("new", now, &writes).unwrap(), vec![WriteOutcome::Applied; 4]);
    let fresh = insert(&store, &[job("a")])[0];
    assert_eq!(fresh, JobId(9), "ids continue after the upgrade");
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.get(JobId(7)).unwrap().unwrap().status, JobStatus::Completed);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn.query_row("SELECT MAX(version) FROM dj_schema", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let old: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('jobs', 'checkpoints', 'durable_jobs_schema')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, 0, "the old tables are renamed, not copied");
}

/// A database written by the release with schema version 2 opens, is upgraded in place (the
/// columns of waits, the signals table, the children index) and its jobs run to the end, with
/// signals and children of their own. (The fixture's `T + 2` is 2 µs after `T`.)
#[test]
fn a_schema_2_database_is_upgraded_in_place_and_finishes_its_jobs() {
    use durable_jobs_store::conformance::{release_2_fixture_finished, release_2_fixture_runs};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v2.db"), &path).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    store.check_integrity().unwrap();
    let run = release_2_fixture_runs(&store);
    assert_eq!(store.get(JobId(9)).unwrap().unwrap().name, "child", "ids continue at 9");
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    release_2_fixture_finished(&store, &run);
    store.check_integrity().unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn.query_row("SELECT MAX(version) FROM dj_schema", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 4);
}

/// A database written by the release with schema version 3 opens, is upgraded in place (cancel
/// requests, paused queues, leads, the retention index) and its jobs run to the end: jobs 1 to 8
/// through the check shared with the release-2 fixtures, then its own signal wait (woken by a
/// signal sent now, reading one sent before the upgrade) and fan-in (one child counted by the
/// old release, the other now). Then the new calls work on it.
#[test]
fn a_schema_3_database_is_upgraded_in_place_and_finishes_its_jobs() {
    use durable_jobs_store::conformance::{release_2_fixture_finished, release_2_fixture_runs};
    use durable_jobs_store::{
        Checkpoint, ChildOf, ChildrenWait, ClaimRequest, Enqueued, FanIn, FireOutcome, JobFilter, Limit, NewJob,
        PurgeRequest, ScheduleRecord, SignalId, SignalOutcome, Timestamp,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v3.db"), &path).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    store.check_integrity().unwrap();
    let record = |id: i64| store.get(JobId(id)).unwrap().unwrap();
    let (waiter, parent) = (record(9), record(10));
    assert_eq!((waiter.status, waiter.wait_signal.as_deref()), (JobStatus::Waiting, Some("approve")));
    let note = store.signals(JobId(9)).unwrap();
    assert_eq!((note.len(), note[0].id, note[0].name.as_str()), (1, SignalId(1), "note"));
    let counted = ChildrenWait::new(FanIn { index: 0, need: 2, tolerate: 0 }, 2, 1, 0);
    assert_eq!((parent.status, parent.wait_children), (JobStatus::Waiting, Some(counted)));
    let link = Some(ChildOf { parent: JobId(10), index: 0 });
    assert_eq!((record(11).status, record(11).parent), (JobStatus::Completed, link));
    assert_eq!((record(12).status, record(12).parent), (JobStatus::Pending, link));
    assert!((1..=12).all(|id| !record(id).cancel_requested));

    let run = release_2_fixture_runs(&store);
    let now = Timestamp::now();
    let secs = |s: u64| now.saturating_add(std::time::Duration::from_secs(s));
    let sent = store.signal(JobId(9), "approve", b"true", now).unwrap();
    let SignalOutcome::Sent { id: approve, woke: true } = sent else { panic!("job 9 not woken: {sent:?}") };
    let req = ClaimRequest::new("new", secs(1), secs(30)).names(["signal-wait", "fan-child"]).limit(5);
    let claimed = store.claim(&req).unwrap().jobs;
    let seen: Vec<(i64, u64, bool)> = claimed.iter().map(|c| (c.id.0, c.token.0, c.resumed)).collect();
    assert_eq!(seen, [(9, 2, true), (12, 1, false)], "in claim order");
    assert_eq!(claimed[1].parent, link);
    let writes = [
        Write::receive(claimed[0].claim(), note[0].id, Checkpoint::value(1, "@signal:note", b"\"hi\"".to_vec())),
        Write::receive(claimed[0].claim(), approve, Checkpoint::value(2, "@signal:approve", b"true".to_vec())),
        Write::complete(claimed[0].claim(), b"9".to_vec()),
        Write::complete(claimed[1].claim(), b"12".to_vec()).with_parent(claimed[1].parent),
    ];
    assert_eq!(store.commit("new", secs(2), &writes).unwrap(), vec![WriteOutcome::Applied; 4]);
    assert_eq!(record(10).status, JobStatus::Pending, "its second child woke it");
    let req = ClaimRequest::new("new", secs(3), secs(30)).names(["fan-parent"]);
    let parent_run = store.claim(&req).unwrap().jobs[0].claim();
    assert_eq!((parent_run.job, parent_run.token.0), (JobId(10), 2));
    let done = store.commit("new", secs(4), &[Write::complete(parent_run, b"10".to_vec())]).unwrap();
    assert_eq!(done, [WriteOutcome::Applied]);
    drop(store);

    let store = SqliteStore::open(&path).unwrap();
    release_2_fixture_finished(&store, &run);
    assert!((9..=12).all(|id| store.get(JobId(id)).unwrap().unwrap().status == JobStatus::Completed));
    assert!(store.signals(JobId(9)).unwrap().is_empty(), "both signals consumed");
    // The new calls, on the upgraded file: the old finished jobs are in the retention index.
    store.pause_queue("default", true, secs(5)).unwrap();
    assert_eq!(store.paused_queues().unwrap(), ["default"]);
    assert!(store.lead("retention", "new", secs(5), secs(65)).unwrap());
    let purged = store.purge(&PurgeRequest::new(JobStatus::Completed, secs(6), 100)).unwrap();
    assert_eq!(purged, 10, "1, 4, 5, 7, 8, 9 to 12 and job 5's child");
    let left: Vec<JobId> = store.list(&JobFilter::new()).unwrap().iter().map(|j| j.id).collect();
    assert_eq!(left, [JobId(2), JobId(3), JobId(6)]);
    assert!(store.checkpoints(JobId(4), 0, 10).unwrap().is_empty());
    // Schedules and limits, on the upgraded file.
    store.put_schedule(&ScheduleRecord::new("nightly", "every 1d", b"{}".to_vec(), secs(7), secs(6))).unwrap();
    let job = NewJob::new("mail", "a", b"{}".to_vec(), secs(7)).concurrency_key("t1");
    let fired = store.fire("nightly", secs(7), secs(86_407), &job, secs(7)).unwrap();
    assert_eq!(fired, FireOutcome::Fired(Enqueued::New(JobId(14))), "ids go on");
    assert_eq!(store.fire("nightly", secs(7), secs(86_407), &job, secs(8)).unwrap(), FireOutcome::Moved);
    store.set_limit(&Limit::name("a").max_running(1).by_key(true)).unwrap();
    let req = ClaimRequest::new("new", secs(9), secs(30)).queues(["mail"]).names(["a"]).limit(5);
    assert_eq!(store.claim(&req).unwrap().jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [JobId(14)]);
    assert_eq!(store.get(JobId(14)).unwrap().unwrap().concurrency_key.as_deref(), Some("t1"));
    store.check_integrity().unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn.query_row("SELECT MAX(version) FROM dj_schema", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

/// A schema-3 database that has a table named like one schema 4 adds, not made by us, is
/// refused before anything changes.
#[test]
fn a_schema_3_database_with_a_colliding_table_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v3.db"), &path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = DELETE; CREATE TABLE dj_leads (x INTEGER);").unwrap();
    drop(conn);
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::IncompatibleSchema, "{err}");
    assert!(err.to_string().contains("dj_leads"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

/// A database upgraded from schema 1, 2 or 3 has the same tables, columns and indexes
/// as a fresh one.
#[test]
fn upgraded_databases_have_the_schema_of_a_fresh_one() {
    fn shape(path: &std::path::Path) -> Vec<String> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut out: Vec<String> = conn
            .prepare("SELECT type || ' ' || name || ' on ' || tbl_name FROM sqlite_master WHERE name LIKE 'dj%'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for table in [
            "dj_jobs",
            "dj_checkpoints",
            "dj_signals",
            "dj_schema",
            "dj_paused_queues",
            "dj_leads",
            "dj_schedules",
            "dj_limits",
            "dj_limit_windows",
        ] {
            let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})")).unwrap();
            let columns = stmt
                .query_map([], |r| {
                    let (name, kind, not_null) = (r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, bool>(3)?);
                    Ok(format!(
                        "{table}.{name} {kind} not null {not_null} default {:?}",
                        r.get::<_, Option<String>>(4)?
                    ))
                })
                .unwrap();
            out.extend(columns.map(Result::unwrap));
        }
        let mut indexes = conn
            .prepare("SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND sql IS NOT NULL")
            .unwrap();
        let normalized = indexes
            .query_map([], |r| {
                let sql: String = r.get(1)?;
                Ok(format!("{}: {}", r.get::<_, String>(0)?, sql.split_whitespace().collect::<Vec<_>>().join(" ")))
            })
            .unwrap();
        out.extend(normalized.map(Result::unwrap));
        out.sort();
        out
    }
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.db");
    drop(SqliteStore::open(&fresh).unwrap());
    let expected = shape(&fresh);
    assert!(expected.iter().any(|s| s.starts_with("dj_signals_job: CREATE INDEX")), "{expected:#?}");
    assert!(expected.iter().any(|s| s.starts_with("dj_jobs_finished: CREATE INDEX")), "{expected:#?}");
    assert!(expected.iter().any(|s| s.starts_with("dj_leads.holder TEXT")), "{expected:#?}");
    assert!(expected.iter().any(|s| s.starts_with("dj_jobs.concurrency_key TEXT")), "{expected:#?}");
    assert!(expected.iter().any(|s| s.starts_with("dj_limit_windows.second INTEGER")), "{expected:#?}");
    assert!(expected.iter().any(|s| s.starts_with("dj_schedules.template BLOB")), "{expected:#?}");
    assert!(expected.iter().any(|s| s.starts_with("dj_jobs_capped_name: CREATE INDEX")), "{expected:#?}");
    assert!(!expected.iter().any(|s| s.contains("TRIGGER")), "no trigger on the hot table: {expected:#?}");
    for old in ["schema-v1.db", "schema-v2.db", "schema-v3.db"] {
        let path = dir.path().join(old);
        std::fs::copy(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(old), &path)
            .unwrap();
        drop(SqliteStore::open(&path).unwrap());
        assert_eq!(shape(&path), expected, "{old} upgraded");
    }
}

/// Cancel cascades through waiting descendants (a parent waiting for its children, itself a
/// waiting child) exactly as `MemoryStore` does: every one cancelled with its wait cleared,
/// none counted by another on the way, even a child whose id is smaller than its parent's (a
/// link to a later job), so that SQLite's row order does not matter.
#[test]
fn cancel_cascades_through_waiting_descendants_as_memory_does() {
    use durable_jobs_store::{conformance::at, ClaimRequest, FanIn, JobFilter, MemoryStore, NewJob};
    fn play(store: &dyn Store) -> Vec<durable_jobs_store::JobRecord> {
        let run = |name: &str, secs: i64| {
            let req = ClaimRequest::new("w", at(secs), at(secs + 30)).names([name]).limit(1);
            store.claim(&req).unwrap().jobs[0].claim()
        };
        let wait = |claim, index, children: Vec<NewJob>, secs| {
            let fan_in = FanIn { index, need: 2, tolerate: 1 };
            let out = store.commit("w", at(secs), &[Write::wait_children(claim, fan_in, children)]).unwrap();
            assert_eq!(out, [WriteOutcome::Applied]);
        };
        let root = insert(store, &[job("a")])[0];
        wait(run("a", 1), 0, vec![job("b"), job("c")], 2); // children 2 and 3
        let early = insert(store, &[job("c").parent(JobId(5), 0)])[0];
        assert_eq!(early, JobId(4), "a child of 5, inserted before it");
        wait(run("b", 3), 1, vec![job("zzz")], 4); // 2 waits for 5
        wait(run("zzz", 5), 0, Vec::new(), 6); // 5 waits for 4
        let statuses: Vec<JobStatus> = (1..=5).map(|id| store.get(JobId(id)).unwrap().unwrap().status).collect();
        assert_eq!(
            statuses,
            [JobStatus::Waiting, JobStatus::Waiting, JobStatus::Pending, JobStatus::Pending, JobStatus::Waiting]
        );
        assert_eq!(store.cancel(root, at(7)).unwrap(), durable_jobs_store::CancelOutcome::Cancelled);
        store.list(&JobFilter::new().limit(100)).unwrap()
    }
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("jobs.db")).unwrap();
    let got = play(&sqlite);
    assert_eq!(got, play(&MemoryStore::new()));
    assert!(got.iter().all(|j| j.status == JobStatus::Cancelled && j.finished_at == Some(at(7))), "{got:#?}");
    assert!(got.iter().all(|j| j.wake_at.is_none() && j.wait_children.is_none()), "{got:#?}");
}

/// The store shares a file with an application's tables (even one called `jobs`), and a file
/// whose tables collide with ours is refused with a typed error, changed in nothing (not even
/// switched to WAL).
#[test]
fn shares_a_file_with_application_tables_and_refuses_colliding_ones() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.db");
    let conn = rusqlite::Connection::open(&app).unwrap();
    conn.execute_batch("CREATE TABLE jobs (title TEXT); INSERT INTO jobs VALUES ('engineer');").unwrap();
    drop(conn);
    let store = SqliteStore::open(&app).unwrap();
    let id = insert(&store, &[job("a")])[0];
    assert_eq!(store.get(id).unwrap().unwrap().status, JobStatus::Pending);
    drop(store);
    let conn = rusqlite::Connection::open(&app).unwrap();
    let title: String = conn.query_row("SELECT title FROM jobs", [], |r| r.get(0)).unwrap();
    assert_eq!(title, "engineer", "the application's table is untouched");
    drop(conn);

    let clash = dir.path().join("clash.db");
    let conn = rusqlite::Connection::open(&clash).unwrap();
    conn.execute_batch("CREATE TABLE dj_jobs (x INTEGER); INSERT INTO dj_jobs VALUES (1);").unwrap();
    drop(conn);
    let before = std::fs::read(&clash).unwrap();
    let err = SqliteStore::open(&clash).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::IncompatibleSchema, "{err}");
    assert!(err.to_string().contains("dj_jobs"), "{err}");
    assert_eq!(std::fs::read(&clash).unwrap(), before, "byte-identical: not even switched to WAL");
    assert!(!dir.path().join("clash.db-wal").exists());
}

/// An idle worker's claims only read: while another process holds the write lock, a claim
/// with nothing to do (and a reclaim with nothing to recover) answers instead of waiting out
/// the busy timeout and failing.
#[test]
fn idle_claims_and_reclaims_only_read() {
    use durable_jobs_store::{ClaimRequest, ReclaimRequest, Timestamp};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let store = SqliteStore::open_with(&path, SqliteOptions::new().busy_timeout(std::time::Duration::from_millis(200)))
        .unwrap();
    insert(&store, &[job("a").run_at(durable_jobs_store::conformance::at(60))]);
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let lease = Timestamp(T0.0 + 30_000_000);
    let idle = store.claim(&ClaimRequest::new("w", T0, lease).names(["a"]).limit(10)).unwrap();
    assert!(idle.jobs.is_empty());
    assert_eq!(idle.next_due, Some(durable_jobs_store::conformance::at(60)), "the read still finds the next due time");
    assert!(store.reclaim(&ReclaimRequest::new(T0, 10)).unwrap().is_empty());
    let busy =
        store.claim(&ClaimRequest::new("w", durable_jobs_store::conformance::at(61), lease).names(["a"]).limit(10));
    assert_eq!(busy.unwrap_err().kind(), StoreErrorKind::Busy, "work to do needs the write lock");
    other.execute_batch("ROLLBACK").unwrap();
}
