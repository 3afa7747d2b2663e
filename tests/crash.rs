//! Crash recovery with real `kill -9`: this binary re-executes itself as a worker process,
//! the parent SIGKILLs it at seeded random moments while 30 three-step workflows run, restarts
//! it, and finally checks with a ledger written by the steps themselves that every workflow
//! completed and that no step whose checkpoint had committed ran again. Two worker processes
//! share the database file for the final stretch.
//!
//! `DJ_CRASH_SEED=<n>` replays a run; the seed is printed on failure. Runs on every enabled
//! backend; two worker processes share the database at the end where the backend allows it
//! (SQLite; a sled directory belongs to one process).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use durable_jobs::{call, Error, JobContext, JobFilter, JobOptions, JobStatus, Queue, Store};

const WORKFLOWS: u32 = 30;
const KILLS: u32 = 5;
const STEPS: [&str; 3] = ["s1", "s2", "s3"];
const CHILD_ENV: &str = "DJ_CRASH_CHILD";
const STORE_ENV: &str = "DJ_CRASH_STORE";

/// The enabled backends: name, and how many worker processes may share one database.
const BACKENDS: &[(&str, usize)] = &[
    #[cfg(feature = "sqlite")]
    ("sqlite", 2),
    #[cfg(feature = "sled")]
    ("sled", 1),
];

fn main() -> ExitCode {
    if let (Ok(dir), Ok(backend)) = (std::env::var(CHILD_ENV), std::env::var(STORE_ENV)) {
        return child(&backend, Path::new(&dir));
    }
    let seed = std::env::var("DJ_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    let mut failed = false;
    for &(backend, workers) in BACKENDS {
        match parent(backend, workers, seed) {
            Ok(summary) => println!("crash test on {backend} passed (seed {seed}): {summary}"),
            Err(e) => {
                eprintln!("crash test on {backend} FAILED with seed {seed} (rerun with DJ_CRASH_SEED={seed}):\n{e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn open_store(backend: &str, dir: &Path) -> Result<Box<dyn Store>, String> {
    let store: Box<dyn Store> = match backend {
        #[cfg(feature = "sqlite")]
        "sqlite" => Box::new(durable_jobs::sqlite::SqliteStore::open(dir.join("jobs.db")).map_err(|e| e.to_string())?),
        #[cfg(feature = "sled")]
        "sled" => Box::new(durable_jobs::sled::SledStore::open(dir.join("jobs")).map_err(|e| e.to_string())?),
        other => return Err(format!("unknown backend {other}")),
    };
    Ok(store)
}

fn ledger_path(dir: &Path) -> PathBuf {
    dir.join("ledger.txt")
}

/// Appends one line; `O_APPEND` writes of one short buffer are not interleaved.
fn record(dir: &Path, line: &str) {
    let mut f = OpenOptions::new().create(true).append(true).open(ledger_path(dir)).expect("open ledger");
    f.write_all(format!("{line}\n").as_bytes()).expect("write ledger");
}

/// The worker process: runs workflows until all are completed (exit 0) or it is killed.
fn child(backend: &str, dir: &Path) -> ExitCode {
    let pid = std::process::id();
    let queue = Queue::new(open_store(backend, dir).expect("child: open store"));
    for step in STEPS {
        let d = dir.to_path_buf();
        queue
            .register(step, move |ctx: &JobContext, n: u32| -> Result<u32, std::io::Error> {
                record(&d, &format!("effect {} {step} {pid}", ctx.id()));
                std::thread::sleep(Duration::from_millis(fastrand::u64(60..140)));
                Ok(n + 1)
            })
            .expect("register step");
    }
    let d = dir.to_path_buf();
    queue
        .register("flow", move |ctx: &JobContext, n: u32| -> Result<u32, Error> {
            let mut v = n;
            for step in STEPS {
                v = call(ctx, step, &v)?;
                record(&d, &format!("committed {} {step} {pid}", ctx.id()));
            }
            Ok(v)
        })
        .expect("register flow");
    let worker = queue.worker().concurrency(2).lease(Duration::from_secs(1)).start().expect("start worker");
    loop {
        let done = queue.list(&JobFilter::new().status(JobStatus::Completed).limit(1000)).expect("list").len();
        if done == WORKFLOWS as usize {
            worker.shutdown();
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn_child(backend: &str, dir: &Path) -> Result<std::process::Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command.env(CHILD_ENV, dir).env(STORE_ENV, backend);
    command.spawn().map_err(|e| format!("spawn child: {e}"))
}

fn parent(backend: &str, workers: usize, seed: u64) -> Result<String, String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    {
        // Closed before the workers start: a sled directory admits one process.
        let queue = Queue::new(open_store(backend, dir.path())?);
        for n in 0..WORKFLOWS {
            let options = JobOptions::new().retries(20);
            queue.enqueue_raw("flow", n.to_string().as_bytes(), options).map_err(|e| e.to_string())?;
        }
    }
    let mut kills = 0;
    while kills < KILLS {
        let mut child = spawn_child(backend, dir.path())?;
        std::thread::sleep(Duration::from_millis(rng.u64(300..900)));
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            return Err(format!("the worker finished everything after only {kills} kills; the workload is too small"));
        }
        child.kill().map_err(|e| format!("SIGKILL: {e}"))?;
        child.wait().map_err(|e| e.to_string())?;
        kills += 1;
    }
    // The last workers finish the work (two processes on one SQLite file): no error may reach
    // any of them.
    let mut last = (0..workers).map(|_| spawn_child(backend, dir.path())).collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    for child in &mut last {
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if started.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                return Err("the last workers did not finish within 120 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            return Err(format!("a last worker exited with {status}"));
        }
    }
    let queue = Queue::new(open_store(backend, dir.path())?);
    check(&queue, dir.path(), kills)
}

/// The pass criteria, from the ledger and the final job states.
fn check(queue: &Queue, dir: &Path, kills: u32) -> Result<String, String> {
    let jobs = queue.list(&JobFilter::new().limit(1000)).map_err(|e| e.to_string())?;
    let completed = jobs.iter().filter(|j| j.status == JobStatus::Completed).count();
    if completed != WORKFLOWS as usize {
        return Err(format!("{completed} of {WORKFLOWS} workflows completed: {jobs:#?}"));
    }
    let ledger = std::fs::read_to_string(ledger_path(dir)).map_err(|e| e.to_string())?;
    let mut effects: HashMap<(String, String), u32> = HashMap::new();
    let mut committed: HashMap<(String, String), usize> = HashMap::new();
    let mut violations = Vec::new();
    for (line_no, line) in ledger.lines().enumerate() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [kind, job, step, _pid] = parts[..] else { return Err(format!("bad ledger line {line:?}")) };
        let key = (job.to_owned(), step.to_owned());
        match kind {
            "effect" => {
                *effects.entry(key.clone()).or_default() += 1;
                if let Some(at) = committed.get(&key) {
                    violations.push(format!(
                        "line {line_no}: {step} of job {job} ran again after its checkpoint committed (line {at})"
                    ));
                }
            }
            "committed" => {
                committed.entry(key).or_insert(line_no);
            }
            _ => return Err(format!("bad ledger line {line:?}")),
        }
    }
    let expected = (WORKFLOWS as usize) * STEPS.len();
    if effects.len() != expected {
        violations.push(format!("{} (job, step) pairs ran, expected {expected}", effects.len()));
    }
    for ((job, step), n) in &effects {
        if *n > 1 + kills {
            violations.push(format!("{step} of job {job} ran {n} times with only {kills} crashes"));
        }
    }
    for job in &jobs {
        let n = queue.checkpoints(job.id).map_err(|e| e.to_string())?.len();
        if n != STEPS.len() {
            violations.push(format!("job {} has {n} checkpoints", job.id));
        }
    }
    if !violations.is_empty() {
        return Err(format!("{}\nledger:\n{ledger}", violations.join("\n")));
    }
    let reruns: u32 = effects.values().map(|n| n - 1).sum();
    Ok(format!(
        "{kills} kills, {completed} workflows completed, {} step runs, {reruns} re-runs of in-flight steps",
        effects.values().sum::<u32>()
    ))
}
