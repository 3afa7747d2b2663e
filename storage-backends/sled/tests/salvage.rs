//! `salvage`: the way out for a sled directory that `SledStore::open` refuses.
//!
//! The damage is a power loss that tears the write sequence: the store is reopened (sled
//! syncs what it recovered and writes a snapshot), then written to; of the bytes written
//! since, everything reached the disk except one 4 KiB page, which kept its old content. For
//! about half of the pages sled 0.34 then panics in recovery ("tried to serialize
//! Uninitialized").

#![allow(clippy::unwrap_used)] // helpers shared by the tests

mod common;

use common::{fixture_copy, snapshot, Files};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use durable_jobs_sled::{salvage, salvage_with, SalvageReport, SledOptions, SledStore};
use durable_jobs_store::conformance::{at, claim_ids, claim_runs, insert, job, T0};
use durable_jobs_store::{
    CancelOutcome, Checkpoint, ClaimRequest, Enqueued, FanIn, JobFilter, JobId, JobRecord, JobStatus, Limit, NewJob,
    PurgeRequest, ReclaimRequest, ScheduleRecord, SignalId, SignalOutcome, Store, StoreErrorKind, Timestamp, Write,
};

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The unit in which a disk writes: one page reaches it or does not.
const PAGE: usize = 4096;

fn restore(dir: &Path, files: &Files) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn options() -> SledOptions {
    SledOptions::new().open_timeout(Duration::from_secs(20))
}

fn with_args(name: &str, bytes: usize) -> NewJob {
    let mut j = job(name);
    j.args = format!("{{\"pad\":\"{}\"}}", "x".repeat(bytes)).into_bytes();
    j
}

/// Jobs in every state, in id order: 2 running (the second holding a unique key and two
/// checkpoints), 1 completed (its key free again), 1 failed, 1 waiting until `at(60)`, then 4
/// pending (the last two holding unique keys).
fn varied(store: &SledStore) -> Vec<JobId> {
    let keyed = |name: &str, key: &str| job(name).unique_key(key);
    let mut ids = insert(store, &[job("a"), keyed("a", "k-running"), keyed("b", "k-done"), job("c"), job("c")]);
    let runs = claim_runs(store, "w", 5, T0);
    assert_eq!(runs.iter().map(|r| r.job).collect::<Vec<_>>(), ids);
    let writes = [
        Write::checkpoint(runs[1], Checkpoint::value(0, "fetch", b"1".to_vec())),
        Write::checkpoint(runs[1], Checkpoint::error(1, "send", "no", false)),
        Write::complete(runs[2], b"\"ok\"".to_vec()),
        Write::fail(runs[3], "boom"),
        Write::suspend(runs[4], Some(at(60))),
    ];
    store.commit("w", T0, &writes).unwrap();
    ids.extend(insert(store, &[job("a"), job("a"), keyed("a", "k-pending"), keyed("b", "k-pending-2")]));
    ids
}

fn all_jobs(store: &SledStore) -> Vec<JobRecord> {
    store.list(&JobFilter::new().limit(usize::MAX)).unwrap()
}

fn all_checkpoints(store: &SledStore, jobs: &[JobRecord]) -> BTreeMap<JobId, Vec<Checkpoint>> {
    jobs.iter()
        .map(|j| (j.id, store.checkpoints(j.id, 0, usize::MAX).unwrap()))
        .filter(|(_, c)| !c.is_empty())
        .collect()
}

/// Every entry of every tree, read with sled itself.
fn trees(path: &Path) -> BTreeMap<String, Entries> {
    let db = sled::open(path).unwrap();
    let names = [
        "jobs",
        "ready",
        "due",
        "lease",
        "wake",
        "unique",
        "keys",
        "checkpoints",
        "children",
        "signals",
        "finished",
        "paused",
        "schedules",
        "limits",
        "windows",
        "meta",
    ];
    names
        .iter()
        .map(|&n| {
            let entries = db.open_tree(n).unwrap().iter().map(|e| e.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec()));
            (n.to_owned(), entries.collect())
        })
        .collect()
}

/// A store whose last writes were torn in several ways, and what it should hold.
struct TornRun {
    dir: tempfile::TempDir,
    /// Each a copy of the store as a power loss may leave it, such that `sled::open` panics.
    torn: Vec<Files>,
    /// Jobs written before the last sync, as they were.
    synced: Vec<JobRecord>,
    checkpoints: BTreeMap<JobId, Vec<Checkpoint>>,
    /// Jobs written after it, as they were last written.
    unsynced: Vec<JobRecord>,
    /// The highest id at the last clean close.
    mark: JobId,
}

/// Up to `wanted` torn copies, spread over the write sequence: of the pages written since the
/// store was reopened (sled syncs what it recovered), all reached the disk but one, which
/// kept its old content.
fn torn_run(wanted: usize) -> TornRun {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs");
    let store = SledStore::open(&path).unwrap();
    varied(&store);
    drop(store);
    let store = SledStore::open(&path).unwrap();
    let synced = all_jobs(&store);
    let checkpoints = all_checkpoints(&store, &synced);
    let before = snapshot(&path);
    for _ in 0..150 {
        insert(&store, &vec![with_args("b", 1000); 10]);
    }
    let newest = snapshot(&path);
    let unsynced = all_jobs(&store).split_off(synced.len());
    drop(store);
    let (old, new) = (&before[Path::new("db")], &newest[Path::new("db")]);
    let changed: Vec<usize> = (0..new.len().div_ceil(PAGE))
        .filter(|p| {
            let range = p * PAGE..new.len().min((p + 1) * PAGE);
            old.get(range.clone()) != Some(&new[range])
        })
        .collect();
    let scratch = dir.path().join("scratch");
    let mut torn = Vec::new();
    // Pages spread over the whole write sequence.
    for page in (0..64).map(|i| changed[i * changed.len() / 64]) {
        // The page never reached the disk; beyond the old end of the file it reads as zeros.
        let mut db = new.clone();
        for (i, b) in db.iter_mut().enumerate().skip(page * PAGE).take(PAGE) {
            *b = old.get(i).copied().unwrap_or(0);
        }
        let mut files = before.clone();
        files.insert("db".into(), db);
        let _ = std::fs::remove_dir_all(&scratch);
        restore(&scratch, &files);
        if sled_panics_on(&scratch) {
            torn.push(files);
        }
    }
    let torn = (0..wanted.min(torn.len())).map(|i| torn[i * torn.len() / wanted.min(torn.len())].clone()).collect();
    let mark = synced.iter().map(|j| j.id).max().unwrap();
    TornRun { dir, torn, synced, checkpoints, unsynced, mark }
}

/// Whether plain `sled::open` panics on `dir` (a hang counts as no).
fn sled_panics_on(dir: &Path) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let opened = std::panic::catch_unwind(|| sled::Config::new().path(&dir).open().map(drop));
        let _ = tx.send(opened.is_err());
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap_or(false)
}

/// Every torn copy is refused by `open`, and then either salvaged (each record exactly as last
/// written; if clean, everything synced too, and of the rest whatever sled can still read)
/// or refused by `salvage` too; either way nothing is written to it. Most are salvaged
/// cleanly; some cannot be (see the crate docs), but not all.
#[test]
fn torn_stores_that_open_refuses_are_salvaged_or_refused_untouched() {
    let run = (0..3).map(|_| torn_run(8)).find(|r| !r.torn.is_empty()).expect("no torn page made sled panic");
    let mut salvaged = 0;
    for (i, files) in run.torn.iter().enumerate() {
        let path = run.dir.path().join(format!("torn-{i}"));
        restore(&path, files);
        let err = SledStore::open_with(&path, options()).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
        assert!(snapshot(&path) == *files, "open changed the damaged directory");

        let into = run.dir.path().join(format!("salvaged-{i}"));
        match salvage_with(&path, &into, &options()) {
            Ok(report) => salvaged += usize::from(check_salvaged(&run, &into, &report)),
            Err(e) => {
                assert_eq!(e.kind(), StoreErrorKind::Corrupt, "{e}");
                assert!(!into.exists());
            }
        }
        assert!(snapshot(&path) == *files, "salvage changed the damaged directory");
    }
    eprintln!("salvaged {salvaged} of {} torn stores cleanly", run.torn.len());
    assert!(salvaged > 0, "none of {} torn stores was salvaged cleanly", run.torn.len());
}

/// What the report says is what the new store holds: each record exactly as last written,
/// none made up. A clean salvage (every entry read and decoded) also kept everything synced.
/// Returns whether it was clean.
fn check_salvaged(run: &TornRun, into: &Path, report: &SalvageReport) -> bool {
    assert!(report.repaired, "{report:?}");
    assert_eq!(report.max_job_id_at_last_close, Some(run.mark));
    let store = SledStore::open_with(into, options()).unwrap();
    let salvaged = all_jobs(&store);
    assert_eq!(salvaged.len(), report.jobs);
    let truth: BTreeMap<JobId, &JobRecord> = run.synced.iter().chain(&run.unsynced).map(|j| (j.id, j)).collect();
    for job in &salvaged {
        assert_eq!(truth.get(&job.id), Some(&job), "job {} differs", job.id);
    }
    assert_eq!(report.max_job_id, salvaged.last().map(|j| j.id));
    let checkpoints = all_checkpoints(&store, &salvaged);
    assert_eq!(checkpoints.values().map(Vec::len).sum::<usize>(), report.checkpoints);
    if (report.unreadable, report.broken_trees) != (0, 0) {
        return false;
    }
    assert!(salvaged[..run.synced.len()] == run.synced, "synced records lost: {report:?}");
    assert_eq!(checkpoints, run.checkpoints);
    assert_indexes_work(&store, &run.synced, report.jobs);
    true
}

/// The salvaged store behaves as the original did: unique keys of live jobs are held, pending
/// jobs are claimed in order, the running ones are reclaimed when their lease expires, the
/// waiting one wakes, and new ids never collide with old ones.
fn assert_indexes_work(store: &SledStore, original: &[JobRecord], total: usize) {
    let ids: Vec<JobId> = original.iter().map(|j| j.id).collect();
    let max = all_jobs(store).iter().map(|j| j.id).max().unwrap();
    let keyed = |key: &str| [job("z").unique_key(key)];
    assert_eq!(store.enqueue(&keyed("k-pending")).unwrap(), [Enqueued::Duplicate(ids[7])]);
    assert_eq!(store.enqueue(&keyed("k-running")).unwrap(), [Enqueued::Duplicate(ids[1])]);
    let freed = store.enqueue(&keyed("k-done")).unwrap();
    let Enqueued::New(new_id) = freed[0] else { panic!("{freed:?}") };
    assert!(new_id > max, "new id {new_id} reuses the range up to {max}");
    assert_eq!(all_jobs(store).len(), total + 1);

    assert_eq!(claim_ids(store, "w2", 3, at(10)), ids[5..8]);
    let reclaimed = store.reclaim(&ReclaimRequest::new(at(31), 100)).unwrap();
    // Never started (no start was recorded): given back uncharged.
    assert_eq!((reclaimed.released.as_slice(), reclaimed.requeued.len(), reclaimed.failed.len()), (&ids[..2], 0, 0));
    // A claim after its wake time (of a name nobody has) wakes the waiting job.
    let nothing = ClaimRequest::new("w3", at(60), at(90)).names(["zzz"]);
    assert!(store.claim(&nothing).unwrap().jobs.is_empty());
    assert_eq!(store.get(ids[4]).unwrap().unwrap().status, JobStatus::Pending);
}

#[test]
fn salvaging_a_healthy_store_copies_everything_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs");
    let store = SledStore::open(&path).unwrap();
    // Counts one claim of job 3 ("b") in a window.
    let limits = [Limit::queue("mail").max_running(2), Limit::name("b").per_second(100).by_key(true)];
    for limit in &limits {
        store.set_limit(limit).unwrap();
    }
    let ids = varied(&store);
    insert(&store, &vec![with_args("b", 100).concurrency_key("t1"); 300]);
    store.pause_queue("mail", true, at(7)).unwrap();
    let mut schedule = ScheduleRecord::new("nightly", "every 1d", b"{}".to_vec(), at(10), T0);
    (schedule.last_fire, schedule.last_job) = (Some(at(5)), Some(ids[0]));
    store.put_schedule(&schedule).unwrap();
    let jobs = all_jobs(&store);
    let checkpoints = all_checkpoints(&store, &jobs);
    drop(store);
    let mut original = trees(&path);
    assert_eq!((original["finished"].len(), original["paused"].len()), (2, 1), "indexed: one completed, one failed");
    assert_eq!((original["schedules"].len(), original["limits"].len(), original["windows"].len()), (1, 2, 1));
    let before = snapshot(&path);

    let into = dir.path().join("copy");
    let report = salvage(&path, &into).unwrap();
    assert!(snapshot(&path) == before, "the store changed");
    assert_eq!((report.jobs, report.checkpoints, report.unreadable, report.broken_trees), (309, 2, 0, 0));
    assert_eq!(report.max_job_id, jobs.last().map(|j| j.id));
    assert_eq!(report.max_job_id_at_last_close, report.max_job_id);
    assert!(!report.repaired);

    // Byte for byte: records, checkpoints, every index entry, paused queues, schedules, limits,
    // the stored highest id; not the window counts.
    original.insert("windows".to_owned(), Vec::new());
    assert!(trees(&into) == original, "the trees differ");
    let store = SledStore::open(&into).unwrap();
    assert_eq!(store.paused_queues().unwrap(), ["mail"]);
    assert_eq!((store.schedules().unwrap(), store.limits().unwrap()), (vec![schedule], limits.to_vec()));
    assert!(all_jobs(&store) == jobs);
    assert_eq!(all_checkpoints(&store, &jobs), checkpoints);
    assert_eq!(jobs[..9].iter().map(|j| j.id).collect::<Vec<_>>(), ids);
    assert_indexes_work(&store, &jobs[..9], 309);
}

/// Pending signals are copied as they were, the signal counter too (a consumed signal's id is
/// not handed out again), and child jobs stay linked to their parents: fan-ins and cancels
/// reach them in the new store.
#[test]
fn salvage_keeps_signals_and_child_links() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs");
    let store = SledStore::open(&path).unwrap();
    let ids = insert(&store, &[job("a"), job("b")]);
    let runs = claim_runs(&store, "w", 2, T0);
    for (name, payload) in [("x", "1"), ("y", "2"), ("x", "3")] {
        assert!(matches!(store.signal(ids[1], name, payload.as_bytes(), at(1)).unwrap(), SignalOutcome::Sent { .. }));
    }
    let writes = [
        Write::wait_children(runs[0], FanIn { index: 1, need: 2, tolerate: 0 }, vec![job("c"), job("c")]),
        Write::receive(runs[1], SignalId(3), Checkpoint::value(0, "@signal:x", b"3".to_vec())),
    ];
    store.commit("w", at(2), &writes).unwrap();
    let kids: Vec<JobId> = store.list(&JobFilter::new().parent(ids[0])).unwrap().iter().map(|j| j.id).collect();
    let grandchild = insert(&store, &[job("d").parent(kids[1], 0)])[0];
    let jobs = all_jobs(&store);

    drop(store);
    let original = trees(&path);
    assert_eq!(original["children"].len(), 3);
    assert_eq!(original["signals"].len(), 2);

    let into = dir.path().join("copy");
    let report = salvage(&path, &into).unwrap();
    assert_eq!((report.jobs, report.checkpoints, report.signals, report.unreadable), (5, 1, 2, 0));
    assert!(trees(&into) == original, "the trees differ");
    let store = SledStore::open(&into).unwrap();
    assert!(all_jobs(&store) == jobs);
    let signals = store.signals(ids[1]).unwrap();
    assert_eq!(signals.iter().map(|s| (s.id.0, s.name.as_str())).collect::<Vec<_>>(), [(1, "x"), (2, "y")]);
    assert_eq!(store.signal(ids[1], "y", b"4", at(3)).unwrap(), SignalOutcome::Sent { id: SignalId(4), woke: false });
    assert_eq!(store.list(&JobFilter::new().parent(kids[1])).unwrap()[0].id, grandchild);
    assert_eq!(store.cancel(kids[1], at(4)).unwrap(), CancelOutcome::Cancelled);
    assert_eq!(store.get(grandchild).unwrap().unwrap().status, JobStatus::Cancelled, "the cancel reached it");
    let parent = store.get(ids[0]).unwrap().unwrap();
    assert_eq!((parent.status, parent.updated_at), (JobStatus::Pending, at(4)), "the failed child decided the fan-in");
}

/// A database in an older format is salvaged into the current one, with the records its
/// upgrade would give.
#[test]
fn older_formats_are_salvaged_as_their_upgrade_reads_them() {
    for (name, counts) in [("format-1", (8, 4, 0)), ("format-2", (8, 5, 0)), ("format-3", (12, 6, 1))] {
        let dir = tempfile::tempdir().unwrap();
        let upgraded = SledStore::open(fixture_copy(name, &dir.path().join("upgraded"))).unwrap();
        let jobs = all_jobs(&upgraded);
        let path = fixture_copy(name, dir.path());
        let report = salvage(&path, dir.path().join("salvaged")).unwrap();
        assert_eq!(
            (report.jobs, report.checkpoints, report.signals, report.unreadable),
            (counts.0, counts.1, counts.2, 0),
            "{name}"
        );
        let store = SledStore::open(dir.path().join("salvaged")).unwrap();
        assert!(all_jobs(&store) == jobs, "{name}: the records differ");
        assert_eq!(all_checkpoints(&store, &jobs), all_checkpoints(&upgraded, &jobs), "{name}");
        let failed = PurgeRequest::new(JobStatus::Failed, Timestamp(i64::MAX), 10);
        assert_eq!(store.purge(&failed).unwrap(), 1, "{name}: the finished index is rebuilt");
    }
}

/// A crash while sled writes its snapshot on open leaves a partial `snap.*.generating`, which
/// sled reads first and refuses.
/// A crash while sled writes a snapshot leaves a partial `snap.*.generating`, which sled 0.34
/// would read first and refuse as corrupt on every open: salvage leaves it out, and
/// `SledStore::open` removes it (it is never a complete snapshot) and opens with every job.
#[test]
fn a_partial_snapshot_left_by_a_crash_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs");
    let store = SledStore::open(&path).unwrap();
    varied(&store);
    let jobs = all_jobs(&store);
    drop(store);
    drop(SledStore::open(&path).unwrap()); // sled writes a snapshot when it recovers
    let snap = snapshot(&path).into_iter().find(|(n, _)| n.to_string_lossy().starts_with("snap.")).unwrap();
    let partial = path.join(format!("{}.generating", snap.0.display()));
    std::fs::write(&partial, &snap.1[..snap.1.len() / 2]).unwrap();
    assert!(sled::open(scratch_copy(&path, dir.path())).is_err(), "sled alone refuses such a directory");
    let before = snapshot(&path);

    let into = dir.path().join("salvaged");
    let report = salvage_with(&path, &into, &options()).unwrap();
    assert!(snapshot(&path) == before, "the damaged directory changed");
    assert_eq!((report.jobs, report.checkpoints, report.unreadable, report.repaired), (9, 2, 0, true));
    assert!(all_jobs(&SledStore::open(&into).unwrap()) == jobs);

    let reopened = SledStore::open_with(&path, options()).unwrap();
    assert!(all_jobs(&reopened) == jobs, "open recovers every job");
    assert!(!partial.exists(), "the unfinished snapshot is gone");
}

/// A copy of the database directory `path` in `parent`, for plain sled to open.
fn scratch_copy(path: &Path, parent: &Path) -> PathBuf {
    let copy = parent.join("scratch-copy");
    restore(&copy, &snapshot(path));
    copy
}

#[test]
fn salvage_refuses_to_write_over_or_inside_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs");
    let store = SledStore::open(&path).unwrap();
    insert(&store, &[job("a")]);

    let err = salvage(&path, dir.path().join("new")).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::AlreadyOpen, "{err}");
    drop(store);
    let before = snapshot(dir.path());

    let occupied = dir.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("keep.txt"), b"mine").unwrap();
    let before_occupied = snapshot(&occupied);
    let err = salvage(&path, &occupied).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidInput, "{err}");
    assert!(snapshot(&occupied) == before_occupied);

    for into in [path.clone(), path.join("inner"), path.join("a").join("b")] {
        let err = salvage(&path, &into).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::InvalidInput, "{}: {err}", into.display());
    }
    let err = salvage(dir.path().join("missing"), dir.path().join("new")).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidInput, "{err}");
    std::fs::remove_dir_all(&occupied).unwrap();
    assert!(snapshot(dir.path()) == before, "something was written");

    let foreign = dir.path().join("foreign");
    let db = sled::open(&foreign).unwrap();
    db.insert(b"k", b"v").unwrap();
    drop(db);
    let err = salvage(&foreign, dir.path().join("new")).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    assert!(!dir.path().join("new").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "work directories are removed: {leftovers:?}");
}
