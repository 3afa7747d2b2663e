//! What is specific to the sled store: one process per directory, damaged directories.

#![allow(clippy::unwrap_used)] // helpers shared by the tests

mod common;

use common::{fixture_copy, snapshot};

use std::path::{Path, PathBuf};
use std::time::Duration;

use durable_jobs_sled::{SledOptions, SledStore};
use durable_jobs_store::conformance::{insert, job};
use durable_jobs_store::{JobFilter, Store, StoreErrorKind};

fn database_with_jobs(dir: &Path) -> PathBuf {
    let path = dir.join("jobs");
    let store = SledStore::open(&path).unwrap();
    assert_eq!(insert(&store, &vec![job("a"); 500]).len(), 500);
    path
}

fn options() -> SledOptions {
    SledOptions::new().open_timeout(Duration::from_secs(10))
}

#[test]
fn a_second_open_is_refused_not_hung() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs");
    let store = SledStore::open(&path).unwrap();
    let err = SledStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::AlreadyOpen, "{err}");
    assert!(err.to_string().contains("one process at a time"), "{err}");
    insert(&store, &[job("a")]);
    drop(store);
    let reopened = SledStore::open(&path).unwrap();
    assert_eq!(reopened.list(&JobFilter::default()).unwrap().len(), 1);
}

/// Each kind of damage is refused with a clear error, and the directory is byte-identical.
#[test]
fn damaged_directories_are_refused_and_left_untouched() {
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 6] = [
        ("db replaced with garbage", |p| {
            let len = std::fs::metadata(p.join("db")).unwrap().len() as usize;
            std::fs::write(p.join("db"), (0..len).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>()).unwrap();
        }),
        ("db truncated", |p| {
            let bytes = std::fs::read(p.join("db")).unwrap();
            std::fs::write(p.join("db"), &bytes[..bytes.len() / 2]).unwrap();
        }),
        ("db overwritten in the middle", |p| {
            let mut bytes = std::fs::read(p.join("db")).unwrap();
            let n = bytes.len();
            bytes[n / 3..n / 3 + 4096].fill(0xAB);
            std::fs::write(p.join("db"), bytes).unwrap();
        }),
        ("conf replaced with garbage", |p| std::fs::write(p.join("conf"), b"garbage garbage garbage").unwrap()),
        ("a foreign file in the directory", |p| std::fs::write(p.join("notes.txt"), b"hello").unwrap()),
        ("db emptied", |p| std::fs::write(p.join("db"), b"").unwrap()),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        let path = database_with_jobs(dir.path());
        damage(&path);
        let before = snapshot(dir.path());
        assert!(!before.is_empty());
        let result = SledStore::open_with(&path, options());
        match result {
            Ok(store) => {
                panic!("{what}: opened with {} jobs", store.list(&JobFilter::new().limit(1000)).unwrap().len())
            }
            Err(e) => assert!(matches!(e.kind(), StoreErrorKind::Corrupt | StoreErrorKind::Other), "{what}: {e}"),
        }
        assert!(snapshot(dir.path()) == before, "{what}: the directory changed");
    }
}

#[test]
fn a_file_or_a_foreign_sled_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = SledStore::open(&file).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");

    let foreign = dir.path().join("foreign");
    {
        let db = sled::open(&foreign).unwrap();
        db.insert(b"k", b"v").unwrap();
        db.flush().unwrap();
    }
    let before = snapshot(&foreign);
    let err = SledStore::open(&foreign).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("no durable-jobs data"), "{err}");
    assert!(snapshot(&foreign) == before, "the foreign database changed");
}

#[test]
fn a_healthy_database_reopens_with_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_with_jobs(dir.path());
    let store = SledStore::open_with(&path, options()).unwrap();
    assert_eq!(store.list(&JobFilter::new().limit(1000)).unwrap().len(), 500);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["jobs"], "the verification copy is removed");
    let unverified = SledOptions::new().verify_on_open(false);
    drop(store);
    assert_eq!(SledStore::open_with(&path, unverified).unwrap().list(&JobFilter::default()).unwrap().len(), 100);
}

#[cfg(unix)]
#[test]
fn a_new_database_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("jobs");
    drop(SledStore::open(&path).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "mode {mode:o}");
}

/// Without the verification copy, a log that lost data is still refused (the directory may
/// then have been touched: that is what the copy prevents).
#[test]
fn a_truncated_log_is_refused_without_verification_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_with_jobs(dir.path());
    let bytes = std::fs::read(path.join("db")).unwrap();
    std::fs::write(path.join("db"), &bytes[..bytes.len() / 2]).unwrap();
    let unverified = SledOptions::new().verify_on_open(false);
    match SledStore::open_with(&path, unverified) {
        Ok(store) => panic!("opened with {} jobs", store.list(&JobFilter::new().limit(1000)).unwrap().len()),
        Err(e) => assert_eq!(e.kind(), StoreErrorKind::Corrupt, "{e}"),
    }
}

/// A directory written by the release with format 1 opens, is upgraded in place (claim tokens,
/// scheduled jobs, new indexes) and its jobs run to the end.
#[test]
fn a_format_1_database_is_upgraded_in_place_and_finishes_its_jobs() {
    use durable_jobs_store::{
        ClaimRequest, Enqueued, JobId, JobStatus, ReclaimRequest, Timestamp, Write, WriteOutcome,
    };
    use JobStatus::{Cancelled, Completed, Failed, Pending, Running, Scheduled, Waiting};
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy("format-1", dir.path());
    let store = SledStore::open_with(&path, options()).unwrap();
    let status = |id: i64| store.get(JobId(id)).unwrap().unwrap().status;
    let before: Vec<JobStatus> = (1..=8).map(status).collect();
    assert_eq!(before, [Completed, Failed, Cancelled, Running, Pending, Scheduled, Waiting, Pending]);
    assert_eq!(store.checkpoints(JobId(4), 0, 10).unwrap().len(), 3);
    assert_eq!(store.checkpoints(JobId(4), 2, 10).unwrap()[0].outcome, Err("declined".to_owned()));
    let dup = store.enqueue(&[job("a").unique_key("order-7")]).unwrap();
    assert_eq!(dup, vec![Enqueued::Duplicate(JobId(8))], "the unique index is rebuilt");
    let now = Timestamp::now();
    assert_eq!(store.reclaim(&ReclaimRequest::new(now, 10)).unwrap().released, vec![JobId(4)]);
    let names = ["running-cp", "pending", "waiting", "uniq"];
    let lease = now.saturating_add(Duration::from_secs(30));
    let claimed = store.claim(&ClaimRequest::new("new", now, lease).names(names).limit(10)).unwrap().jobs;
    let mut seen: Vec<(i64, u64, bool)> = claimed.iter().map(|c| (c.id.0, c.token.0, c.resumed)).collect();
    seen.sort_unstable();
    assert_eq!(seen, vec![(4, 1, true), (5, 1, false), (7, 1, false), (8, 1, false)]);
    let writes: Vec<Write> = claimed.iter().map(|c| Write::complete(c.claim(), b"1".to_vec())).collect();
    assert_eq!(store.commit("new", now, &writes).unwrap(), vec![WriteOutcome::Applied; 4]);
    let fresh = insert(&store, &[job("a")])[0];
    assert!(fresh > JobId(8), "ids continue after the upgrade: {fresh}");
    drop(store);
    let store = SledStore::open_with(&path, options()).unwrap();
    assert_eq!(store.get(JobId(7)).unwrap().unwrap().status, JobStatus::Completed, "the upgrade is durable");
}

/// A directory written by the release with format 2 opens, is upgraded in place (records with
/// the wait and parent fields, new signal and children trees) and its jobs run to the end,
/// with signals and children of their own. (The fixture's `T + 2` is 2 µs after `T`.)
#[test]
fn a_format_2_database_is_upgraded_in_place_and_finishes_its_jobs() {
    use durable_jobs_store::conformance::{release_2_fixture_finished, release_2_fixture_runs};
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy("format-2", dir.path());
    let store = SledStore::open_with(&path, options()).unwrap();
    let run = release_2_fixture_runs(&store);
    drop(store);
    let store = SledStore::open_with(&path, options()).unwrap();
    release_2_fixture_finished(&store, &run);
    drop(store);
    assert_eq!(format_marker(&path, &dir.path().join("copy")), b"durable-jobs-sled/4");
}

/// The format marker of the closed database `path`, read by plain sled from a copy in `copy`.
fn format_marker(path: &Path, copy: &Path) -> Vec<u8> {
    std::fs::create_dir_all(copy).unwrap();
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
    }
    sled::open(copy).unwrap().open_tree("meta").unwrap().get("format").unwrap().unwrap().to_vec()
}

/// A directory written by the release with format 3 opens, is upgraded in place (records with
/// `cancel_requested`, the finished index) and its jobs run to the end: jobs 1 to 8 through the
/// shared check, then the signal wait (with a signal of another name pending) and the fan-in
/// (one child of two counted) from where the release left them. The jobs that release
/// finished are found by `purge`, through the finished index that the upgrade built.
#[test]
fn a_format_3_database_is_upgraded_in_place_and_finishes_its_jobs() {
    use durable_jobs_store::conformance::{release_2_fixture_finished, release_2_fixture_runs};
    use durable_jobs_store::{
        ChildOf, ChildrenWait, ClaimRequest, FanIn, JobId, JobStatus, PurgeRequest, SignalId, SignalOutcome, Timestamp,
        Write, WriteOutcome,
    };
    const T: i64 = 1_790_000_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy("format-3", dir.path());
    let store = SledStore::open_with(&path, options()).unwrap();
    let get = |store: &SledStore, id: i64| store.get(JobId(id)).unwrap().unwrap();
    let nine = get(&store, 9);
    assert_eq!((nine.status, nine.wait_signal.as_deref(), nine.token.0), (JobStatus::Waiting, Some("approve"), 1));
    let note = store.signals(JobId(9)).unwrap();
    assert_eq!(
        note.iter().map(|s| (s.id, s.name.as_str(), &s.payload[..])).collect::<Vec<_>>(),
        [(SignalId(1), "note", &b"\"hi\""[..])]
    );
    let rule = FanIn { index: 0, need: 2, tolerate: 0 };
    let ten = get(&store, 10);
    assert_eq!((ten.status, ten.wait_children), (JobStatus::Waiting, Some(ChildrenWait::new(rule, 2, 1, 0))));
    let link = Some(ChildOf { parent: JobId(10), index: 0 });
    let (eleven, twelve) = (get(&store, 11), get(&store, 12));
    assert_eq!(
        (eleven.status, eleven.parent, eleven.result.as_deref()),
        (JobStatus::Completed, link, Some(&b"11"[..]))
    );
    assert_eq!((twelve.status, twelve.parent), (JobStatus::Pending, link));
    assert!((1..=12).all(|id| !get(&store, id).cancel_requested));

    let run = release_2_fixture_runs(&store);
    drop(store);
    let store = SledStore::open_with(&path, options()).unwrap();
    release_2_fixture_finished(&store, &run);
    let now = Timestamp::now();
    let lease = Timestamp(now.0 + 30_000_000);
    let SignalOutcome::Sent { woke: true, .. } = store.signal(JobId(9), "approve", b"1", now).unwrap() else {
        panic!("the signal did not wake job 9")
    };
    let names = ["signal-wait", "fan-child"];
    let claimed = store.claim(&ClaimRequest::new("new", now, lease).names(names).limit(5)).unwrap().jobs;
    let seen: Vec<(i64, u64, bool)> = claimed.iter().map(|c| (c.id.0, c.token.0, c.resumed)).collect();
    assert_eq!(seen, [(9, 2, true), (12, 1, false)], "in claim order, job 9 with its checkpoint");
    let writes: Vec<Write> =
        claimed.iter().map(|c| Write::complete(c.claim(), b"1".to_vec()).with_parent(c.parent)).collect();
    assert_eq!(store.commit("new", now, &writes).unwrap(), vec![WriteOutcome::Applied; 2]);
    assert_eq!(get(&store, 10).status, JobStatus::Pending, "its second child decided the fan-in");
    let parent = store.claim(&ClaimRequest::new("new", now, lease).names(["fan-parent"])).unwrap().jobs;
    assert_eq!((parent[0].id, parent[0].token.0), (JobId(10), 2));
    let done = store.commit("new", now, &[Write::complete(parent[0].claim(), b"1".to_vec())]).unwrap();
    assert_eq!(done, [WriteOutcome::Applied]);

    // Finished at T by the release: 1 and 11 completed, 2 failed, 3 cancelled.
    let purge = |status, limit| store.purge(&PurgeRequest::new(status, Timestamp(T + 1), limit)).unwrap();
    assert_eq!((purge(JobStatus::Failed, 10), purge(JobStatus::Cancelled, 10)), (1, 1));
    assert_eq!(purge(JobStatus::Completed, 10), 2);
    let gone: Vec<i64> = (1..=12).filter(|id| store.get(JobId(*id)).unwrap().is_none()).collect();
    assert_eq!(gone, [1, 2, 3, 11]);
    assert!(store.checkpoints(JobId(1), 0, 10).unwrap().is_empty(), "with its checkpoints");
    drop(store);
    assert_eq!(format_marker(&path, &dir.path().join("copy")), b"durable-jobs-sled/4");
}

/// A verification that runs out of time leaves no copy beside the database (it is deleted at
/// once, and again when the check ends, if sled recreated it meanwhile).
#[test]
fn a_timed_out_verification_leaves_no_copy_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_with_jobs(dir.path());
    let hurried = SledOptions::new().open_timeout(Duration::from_nanos(1));
    let err = SledStore::open_with(&path, hurried).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("did not open within"), "{err}");
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while leftovers() != ["jobs"] && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(leftovers(), ["jobs"], "the verification copy is removed");
    assert_eq!(SledStore::open_with(&path, options()).unwrap().list(&JobFilter::new().limit(1000)).unwrap().len(), 500);
}

/// A child asked to cancel while it runs, then released (a shutdown) or reclaimed, ends
/// cancelled and is counted by its waiting parent's fan-in. (No conformance case reaches this
/// yet: a sled build without the count on release passed all of them.)
#[test]
fn a_cancelled_child_released_or_reclaimed_is_counted_by_its_parent() {
    use durable_jobs_store::conformance::{at, claim_runs, commit, T0};
    use durable_jobs_store::{CancelOutcome, FanIn, JobStatus, ReclaimRequest, Write};
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("jobs")).unwrap();
    let parents = insert(&store, &[job("a"), job("a")]);
    let runs = claim_runs(&store, "w", 2, T0);
    let rule = FanIn { index: 0, need: 1, tolerate: 0 };
    for run in &runs {
        commit(&store, "w", at(1), &[Write::wait_children(*run, rule, vec![job("b")])]);
    }
    let kids = claim_runs(&store, "w", 2, at(2));
    for kid in &kids {
        assert_eq!(store.cancel(kid.job, at(3)).unwrap(), CancelOutcome::Requested);
    }
    assert_eq!(store.release("w", &kids[..1], at(4)).unwrap(), 1);
    commit(&store, "w", at(4), &[Write::start(kids[1])]);
    assert_eq!(store.reclaim(&ReclaimRequest::new(at(99), 10)).unwrap().cancelled, [kids[1].job]);
    for ((parent, kid), ended) in parents.iter().zip(&kids).zip([at(4), at(99)]) {
        assert_eq!(store.get(kid.job).unwrap().unwrap().status, JobStatus::Cancelled);
        let parent = store.get(*parent).unwrap().unwrap();
        assert_eq!((parent.status, parent.updated_at), (JobStatus::Pending, ended), "woken by its child's end");
    }
}

/// Running counts of limits live in memory: a reopened store recounts its running jobs from the
/// lease index, and every way a run ends (complete, release, reclaim, a limit changed while
/// jobs run) is counted, so that the cap lets exactly as many run as it says.
#[test]
fn a_running_cap_holds_across_a_reopen_and_every_way_a_run_ends() {
    use durable_jobs_store::conformance::{at, claim_ids, claim_runs, commit, T0};
    use durable_jobs_store::{Limit, ReclaimRequest, Write};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs");
    let store = SledStore::open(&path).unwrap();
    let ids = insert(&store, &vec![job("a"); 6]);
    assert_eq!(claim_ids(&store, "w", 1, T0), ids[..1], "before the limit");
    store.set_limit(&Limit::queue("default").max_running(2)).unwrap();
    let first = claim_runs(&store, "w", 6, T0);
    assert_eq!(first.iter().map(|r| r.job).collect::<Vec<_>>(), ids[1..2], "one was running already");
    drop(store);
    let store = SledStore::open(&path).unwrap();
    assert!(claim_ids(&store, "w", 6, at(1)).is_empty(), "recounted at open: 2 running");
    commit(&store, "w", at(2), &[Write::complete(first[0], b"1".to_vec())]);
    let second = claim_runs(&store, "w", 6, at(3));
    assert_eq!(second.iter().map(|r| r.job).collect::<Vec<_>>(), ids[2..3]);
    assert_eq!(store.release("w", &second, at(4)).unwrap(), 1);
    let third = claim_runs(&store, "w", 6, at(5));
    assert_eq!(third.iter().map(|r| r.job).collect::<Vec<_>>(), ids[2..3], "released: its place is free");
    // Job 1's lease (from T0) and job 3's (from at(5)) run out: both reclaimed.
    assert_eq!(store.reclaim(&ReclaimRequest::new(at(99), 10)).unwrap().len(), 2);
    // Reclaimed jobs are due at at(99), behind the others.
    assert_eq!(claim_ids(&store, "w", 6, at(100)), ids[3..5]);
    store.set_limit(&Limit::queue("default").max_running(3)).unwrap();
    assert_eq!(claim_ids(&store, "w", 6, at(101)), ids[5..], "replaced: 3 may run");
    assert!(store.remove_limit(&durable_jobs_store::LimitScope::Queue("default".into())).unwrap());
    assert_eq!(claim_ids(&store, "w", 6, at(102)), [ids[0], ids[2]]);
}

/// The finished index lists the jobs that finish at one time in entries of up to 1,024 ids:
/// purge still takes them oldest first, then by id, across entries.
#[test]
fn purge_reads_jobs_finished_at_one_time_across_index_entries_in_id_order() {
    use durable_jobs_store::conformance::{at, claim_runs, commit, T0};
    use durable_jobs_store::{JobStatus, PurgeRequest, Write};
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("jobs")).unwrap();
    let ids = insert(&store, &vec![job("a"); 1100]);
    let runs = claim_runs(&store, "w", 1100, T0);
    let (early, late) = runs.split_at(1050);
    commit(&store, "w", at(2), &late.iter().map(|r| Write::complete(*r, b"1".to_vec())).collect::<Vec<_>>());
    commit(&store, "w", at(3), &early.iter().map(|r| Write::complete(*r, b"1".to_vec())).collect::<Vec<_>>());
    let purge = |limit| store.purge(&PurgeRequest::new(JobStatus::Completed, at(9), limit)).unwrap();
    assert_eq!(purge(60), 60, "the 50 finished first, then 10 of the others");
    let left: Vec<_> = store.list(&JobFilter::new().limit(usize::MAX)).unwrap().iter().map(|j| j.id).collect();
    assert_eq!(left, ids[10..1050]);
    assert_eq!(purge(1020), 1020, "across the entry of ids 1024 and up");
    let left: Vec<_> = store.list(&JobFilter::new().limit(usize::MAX)).unwrap().iter().map(|j| j.id).collect();
    assert_eq!(left, ids[1030..1050]);
    assert_eq!(purge(100), 20);
}
