//! S16 torn checkpoint (G10): a writer killed at every write of a WAL checkpoint to the database
//! file reopens through the library with every acknowledged job.
//!
//! SQLite writes a checkpoint's pages in ascending order, so page 1, whose header already counts
//! the grown database, lands before the pages that extend the file. A kill between the two leaves
//! a file shorter than its header says while the WAL still holds every missing page: SQLite
//! reads them from there, so the store must open.
//!
//! This binary re-executes itself as the writer under `strace`, which fails the writer's Nth
//! `pwrite64` to the database file and kills it (SIGKILL), for N = 1, 2, … until a run finishes.
//! The writer appends each acknowledged job to a ledger after `enqueue` returns; the parent
//! reopens after every kill and reads each one back. Every write to the database file in a WAL
//! store is a checkpoint's (or the first one, which creates the file). Needs `strace`
//! (`apt-get install -y strace`).
// Test code: clippy's allow-unwrap-in-tests does not see a binary without libtest.
#![allow(clippy::unwrap_used)]

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use durable_jobs_sqlite::SqliteStore;
use durable_jobs_store::{JobId, NewJob, Store, StoreErrorKind};

/// Set in the writer's environment: the directory it works in.
const CHILD: &str = "DJ_TORN_CHECKPOINT_DIR";
/// Rounds of `COMMITS` enqueues, each ending in a checkpoint.
const ROUNDS: usize = 2;
/// Enqueues per round, each its own commit.
const COMMITS: usize = 12;
/// Payload bytes per job: a job takes about half a 4 KiB page, so each round grows the file.
const PAD: usize = 1800;

fn main() -> ExitCode {
    if let Some(dir) = std::env::var_os(CHILD) {
        writer(Path::new(&dir));
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let writes = count_writes(&root.path().join("clean"));
    assert!(writes > 0, "the writer never wrote the database file");
    let (mut torn, mut acknowledged) = (0, 0);
    for n in 1.. {
        let dir = root.path().join(format!("kill-{n}"));
        if !run_writer(&dir, &["-e", &format!("inject=pwrite64:error=EIO:signal=SIGKILL:when={n}")]) {
            // strace counts per thread: as many kills as writes means every write was a kill point.
            assert_eq!(n - 1, writes, "the writer finished after {} kills; a clean run writes {writes} times", n - 1);
            break;
        }
        assert!(n <= writes, "killed at write {n}; a clean run writes only {writes} times");
        if is_torn(&dir.join("jobs.db")) {
            if torn == 0 {
                a_wal_without_the_missing_pages_is_refused(&dir);
            }
            torn += 1;
        }
        acknowledged += reopen_and_check(&dir, n);
        fs::remove_dir_all(&dir).unwrap();
    }
    // Not vacuous: some kill left the header counting pages only the WAL holds.
    assert!(torn > 0, "no kill among {writes} left a torn checkpoint; the workload does not grow the file");
    assert!(acknowledged > 0);
    println!(
        "S16 torn checkpoint: passed in {:.1?}: {writes} kill points, {torn} torn checkpoints, \
         {acknowledged} acknowledged jobs read back",
        started.elapsed()
    );
    ExitCode::SUCCESS
}

/// The writer: enqueues in separate commits, logging each acknowledged job; checkpoints after the
/// first round, and closing checkpoints the second.
fn writer(dir: &Path) {
    let db = dir.join("jobs.db");
    let store = SqliteStore::open(&db).unwrap();
    let mut ledger = OpenOptions::new().create(true).append(true).open(dir.join("ledger")).unwrap();
    for round in 0..ROUNDS {
        for i in 0..COMMITS {
            let n = round * COMMITS + i;
            let id = store.enqueue(&[new_job(n)]).unwrap()[0].id();
            writeln!(ledger, "{id} {n}").unwrap();
        }
        if round == 0 {
            // Now rather than at SQLite's 1,000 WAL pages: each run stays short.
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
        }
    }
}

/// The only place a job is built.
fn new_job(n: usize) -> NewJob {
    let mut job = durable_jobs_store::conformance::job("torn");
    job.args = format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(PAD)).into_bytes();
    job
}

/// Runs the writer in a fresh `dir` under `strace` with `inject`; returns whether it was killed.
fn run_writer(dir: &Path, inject: &[&str]) -> bool {
    fs::create_dir(dir).unwrap();
    let db = dir.join("jobs.db");
    let mut strace = Command::new("strace");
    strace.args(["-f", "-o"]).arg(dir.join("trace")).arg("-P").arg(&db).args(["-e", "trace=pwrite64"]);
    let out = strace
        .args(inject)
        .arg(std::env::current_exe().unwrap())
        .env(CHILD, dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run strace ({e}): S16 needs it; install it with `apt-get install -y strace`")
        });
    let trace = fs::read_to_string(dir.join("trace")).unwrap_or_default();
    let killed = trace.contains("killed by SIGKILL");
    assert!(
        killed || out.status.success(),
        "the writer failed without being killed ({}):\n{}\n{}\ntrace:\n{trace}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    killed
}

/// How many times a run without faults writes the database file.
fn count_writes(dir: &Path) -> usize {
    assert!(!run_writer(dir, &[]), "the writer was killed without a fault");
    fs::read_to_string(dir.join("trace")).unwrap().lines().filter(|l| l.contains("pwrite64(")).count()
}

/// Whether the file is shorter than its header says (the header's count valid).
fn is_torn(db: &Path) -> bool {
    let bytes = fs::read(db).unwrap();
    if bytes.len() < 100 {
        return false;
    }
    let be32 = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    be32(24) == be32(92) && (bytes.len() as u64) < u64::from(be32(28)) * page_size
}

/// Reopens through the library and reads back every acknowledged job; returns how many.
fn reopen_and_check(dir: &Path, n: usize) -> usize {
    let store = SqliteStore::open(dir.join("jobs.db"))
        .unwrap_or_else(|e| panic!("killed at write {n}, the store does not reopen: {e}"));
    store.check_integrity().unwrap_or_else(|e| panic!("killed at write {n}: {e}"));
    let ledger = fs::read_to_string(dir.join("ledger")).unwrap_or_default();
    let mut count = 0;
    for line in ledger.lines() {
        let (id, job) = line.split_once(' ').unwrap();
        let (id, job) = (JobId(id.parse().unwrap()), job.parse().unwrap());
        let record = store.get(id).unwrap().unwrap_or_else(|| panic!("killed at write {n}: job {id} lost"));
        assert_eq!(record.args, new_job(job).args, "killed at write {n}: job {id} changed");
        count += 1;
    }
    count
}

/// A WAL with a valid header but without the missing pages does not excuse the truncation: the
/// open is refused and leaves both files byte-identical.
fn a_wal_without_the_missing_pages_is_refused(torn: &Path) {
    let dir = torn.join("header-only-wal");
    fs::create_dir(&dir).unwrap();
    let db: PathBuf = dir.join("jobs.db");
    fs::copy(torn.join("jobs.db"), &db).unwrap();
    let wal = fs::read(torn.join("jobs.db-wal")).unwrap();
    fs::write(dir.join("jobs.db-wal"), &wal[..32]).unwrap();
    let before = (fs::read(&db).unwrap(), fs::read(dir.join("jobs.db-wal")).unwrap());
    let err = SqliteStore::open(&db).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_eq!((fs::read(&db).unwrap(), fs::read(dir.join("jobs.db-wal")).unwrap()), before);
    assert!(!dir.join("jobs.db-shm").exists());
}
