//! The worker process and the parent's tools, shared by the multi-process test binaries
//! (each re-executes itself as workers).

#![allow(dead_code, unreachable_pub, clippy::missing_panics_doc)]

use std::collections::{BTreeMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_jobs::{
    call, fan_out, wait_signal, Child as ChildJob, Error, FanInStrategy, JobContext, JobFilter, JobOptions, JobStatus,
    Queue, Store,
};

pub const STEPS: u32 = 3;
pub const PATIENCE: Duration = Duration::from_secs(300);

/// The enabled backends and whether several processes may share one database.
pub const BACKENDS: &[(&str, bool)] = &[
    #[cfg(feature = "sqlite")]
    ("sqlite", true),
    #[cfg(feature = "sled")]
    ("sled", false),
];

// ---------------------------------------------------------------------------------------------
// The worker process.

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

pub fn open_store(backend: &str, dir: &Path) -> Result<Box<dyn Store>, String> {
    let _ = dir; // unused when no backend is compiled in
    match backend {
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            Ok(Box::new(durable_jobs::sqlite::SqliteStore::open(dir.join("jobs.db")).map_err(|e| e.to_string())?))
        }
        #[cfg(feature = "sled")]
        "sled" => Ok(Box::new(durable_jobs::sled::SledStore::open(dir.join("jobs")).map_err(|e| e.to_string())?)),
        other => Err(format!("unknown backend {other}")),
    }
}

/// Appends one line; `O_APPEND` writes of one short buffer are not interleaved.
pub fn record(dir: &Path, line: &str) {
    let mut f = OpenOptions::new().create(true).append(true).open(dir.join("ledger.txt")).expect("open ledger");
    f.write_all(format!("{line}\n").as_bytes()).expect("write ledger");
}

/// Registers the handlers; the parent registers them too, to enqueue (it never runs them).
///
/// A step first looks up its own checkpoint in the store: finding one means it is running
/// again although its result had committed, which the ledger records as a violation.
pub fn register(queue: &Queue, store: &Arc<dyn Store>, dir: &Path, gated: bool) -> Result<(), Error> {
    let pid = std::process::id();
    let d = dir.to_path_buf();
    queue.register("plain", move |ctx: &JobContext, (): ()| -> Result<(), std::io::Error> {
        record(&d, &format!("effect {} plain {pid}", ctx.id()));
        std::thread::sleep(Duration::from_micros(fastrand::u64(1000..5000)));
        Ok(())
    })?;
    // A job that kills its worker process every time it runs.
    queue.register("poison", |_: &JobContext, (): ()| -> Result<(), std::io::Error> { std::process::abort() })?;
    let d = dir.to_path_buf();
    let observer = store.clone();
    queue.register("step", move |ctx: &JobContext, n: u32| -> Result<u32, std::io::Error> {
        let done = observer.checkpoints(ctx.id(), 0, usize::MAX).map_err(std::io::Error::other)?;
        if done.iter().any(|c| c.index + 1 == n) {
            record(&d, &format!("rerun-after-commit {} s{n} {pid}", ctx.id()));
        }
        record(&d, &format!("effect {} s{n} {pid}", ctx.id()));
        std::thread::sleep(Duration::from_micros(fastrand::u64(3000..10_000)));
        Ok(pid)
    })?;
    let d = dir.to_path_buf();
    let observer = store.clone();
    queue.register("sleeper", move |ctx: &JobContext, millis: u64| -> Result<(), Error> {
        let id = ctx.id();
        ctx.step("before", || {
            record(&d, &format!("effect {id} before {pid}"));
            Ok::<_, Error>(())
        })?;
        record(&d, &format!("sleeping {id} {pid}"));
        ctx.sleep(Duration::from_millis(millis))?;
        // Late against the deadline recorded at the first run (another process's, if killed).
        let recorded = observer.checkpoints(id, 0, usize::MAX).map_err(Error::Store)?;
        let deadline = recorded.iter().find(|c| c.name == "@sleep").and_then(|c| c.outcome.clone().ok());
        let deadline: i64 = deadline.and_then(|v| String::from_utf8(v).ok()?.parse().ok()).unwrap_or(i64::MAX);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let late_us = i128::try_from(now.as_micros()).unwrap_or(i128::MAX) - i128::from(deadline);
        record(&d, &format!("woke {id} {late_us} {pid}"));
        ctx.step("after", || {
            record(&d, &format!("effect {id} after {pid}"));
            Ok::<_, Error>(())
        })
    })?;
    register_waits(queue, dir)?;
    let d = dir.to_path_buf();
    // Records when it runs, to check limits across processes.
    queue.register("limited", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
        let micros =
            || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros();
        record(&d, &format!("lim-start {} {} {pid}", ctx.id(), micros()));
        std::thread::sleep(Duration::from_millis(30));
        record(&d, &format!("lim-end {} {} {pid}", ctx.id(), micros()));
        Ok(())
    })?;
    let d = dir.to_path_buf();
    queue.register("flow", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
        for n in 1..=STEPS {
            match call::<u32>(ctx, "step", &n) {
                Ok(_) => record(&d, &format!("committed {} s{n} {pid}", ctx.id())),
                Err(e) => {
                    record(&d, &format!("refused {} s{n} {pid} {}", ctx.id(), matches!(e, Error::LeaseLost { .. })));
                    return Err(e);
                }
            }
            if gated && n == 1 {
                record(&d, &format!("waiting {} {pid}", ctx.id()));
                let go = d.join(format!("go-{pid}"));
                let since = Instant::now();
                while !go.exists() && since.elapsed() < PATIENCE {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        Ok(())
    })
}

/// The children of a "fanner".
pub const PARTS: u64 = 20;

/// "waiter" waits for signal "go" between two steps; "fanner" fans out [`PARTS`] "part"
/// children between two steps. Effects and receptions are recorded in the ledger.
fn register_waits(queue: &Queue, dir: &Path) -> Result<(), Error> {
    let pid = std::process::id();
    let d = dir.to_path_buf();
    queue.register("waiter", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
        let id = ctx.id();
        ctx.step("before", || {
            record(&d, &format!("effect {id} before {pid}"));
            Ok::<_, Error>(())
        })?;
        let payload: i64 = wait_signal(ctx, "go")?;
        record(&d, &format!("got {id} {payload} {pid}"));
        ctx.step("after", || {
            record(&d, &format!("effect {id} after {pid}"));
            Ok::<_, Error>(())
        })
    })?;
    let d = dir.to_path_buf();
    queue.register("part", move |ctx: &JobContext, n: u64| -> Result<u64, Error> {
        record(&d, &format!("part {} {n} {pid}", ctx.id()));
        std::thread::sleep(Duration::from_millis(fastrand::u64(10..30)));
        Ok(n * 3)
    })?;
    let d = dir.to_path_buf();
    queue.register("fanner", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
        let id = ctx.id();
        ctx.step("before", || {
            record(&d, &format!("effect {id} before {pid}"));
            Ok::<_, Error>(())
        })?;
        let children = (0..PARTS).map(|n| ChildJob::new("part", &n)).collect();
        let results = fan_out::<u64>(ctx, children, FanInStrategy::CollectAll)?;
        let sum: u64 = results.into_iter().map(|r| r.map_err(Error::ChildFailed)).sum::<Result<u64, Error>>()?;
        record(&d, &format!("fanned {id} {sum} {pid}"));
        ctx.step("after", || {
            record(&d, &format!("effect {id} after {pid}"));
            Ok::<_, Error>(())
        })
    })
}

/// Runs a worker until the expected number of jobs has completed.
pub fn child(dir: &Path) -> ExitCode {
    let pid = std::process::id();
    let log = OpenOptions::new().create(true).append(true).open(dir.join(format!("log-{pid}.txt"))).expect("open log");
    tracing_subscriber::fmt().with_ansi(false).with_writer(std::sync::Mutex::new(log)).init();
    // Proves to the parent that logging reaches the file (so "no warnings" means something).
    tracing::info!("worker {pid} logging");
    let expect: usize = env("DJ_EXPECT").parse().expect("DJ_EXPECT");
    let store: Arc<dyn Store> = open_store(&env("DJ_STORE"), dir).expect("open store").into();
    let queue = Queue::new(store.clone());
    register(&queue, &store, dir, !env("DJ_GATED").is_empty()).expect("register");
    #[cfg(feature = "failpoints")]
    arm_failpoint(dir);
    let lease = env("DJ_LEASE_MS").parse().map_or(Duration::from_secs(1), Duration::from_millis);
    let mut builder = queue.worker().concurrency(2).lease(lease);
    if let Ok(prefetch) = env("DJ_PREFETCH").parse() {
        builder = builder.prefetch(prefetch);
    }
    if let Ok(queues) = std::env::var("DJ_QUEUES") {
        builder = builder.queues(queues.split(','));
    }
    if let Ok(poll) = env("DJ_POLL_MS").parse() {
        builder = builder.poll_interval(Duration::from_millis(poll));
    }
    let worker = builder.start().expect("start worker");
    // Tells the parent this worker runs (outside the ledger, which the checks parse).
    std::fs::write(dir.join(format!("up-{pid}")), b"").expect("write up file");
    let started = Instant::now();
    if let Ok(run_for) = env("DJ_RUN_MS").parse() {
        // Runs for a while instead of until a number of jobs completed.
        std::thread::sleep(Duration::from_millis(run_for));
        worker.shutdown();
        return ExitCode::SUCCESS;
    }
    while completed(&queue).expect("count jobs") < expect {
        assert!(started.elapsed() < PATIENCE, "worker {pid} gave up waiting");
        std::thread::sleep(Duration::from_millis(50));
    }
    worker.shutdown();
    ExitCode::SUCCESS
}

/// `DJ_FAILPOINT=<point>:<k>` aborts the process at the k-th time `<point>` is reached.
#[cfg(feature = "failpoints")]
fn arm_failpoint(dir: &Path) {
    let spec = env("DJ_FAILPOINT");
    let Some((point, k)) = spec.split_once(':') else { return };
    let k: u32 = k.parse().expect("DJ_FAILPOINT count");
    let (point, d, hits) = (point.to_owned(), dir.to_path_buf(), std::sync::atomic::AtomicU32::new(0));
    fail::cfg_callback(point.clone(), move || {
        if hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == k {
            record(&d, &format!("abort {point} - {}", std::process::id()));
            std::process::abort();
        }
    })
    .expect("configure fail point");
}

/// Jobs that are finished, one way or another.
pub fn completed(queue: &Queue) -> Result<usize, Error> {
    let total = queue.counts()?.total();
    Ok((total.completed + total.failed + total.cancelled) as usize)
}

// ---------------------------------------------------------------------------------------------
// The parent.

pub struct Run {
    pub backend: &'static str,
    pub dir: tempfile::TempDir,
    pub expect: usize,
}

impl Run {
    pub fn new(backend: &'static str) -> Result<Self, String> {
        Ok(Run { backend, dir: tempfile::tempdir().map_err(|e| e.to_string())?, expect: 0 })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A queue for enqueueing and checking (never running) jobs.
    pub fn queue(&self) -> Result<Queue, String> {
        let store: Arc<dyn Store> = open_store(self.backend, self.path())?.into();
        let queue = Queue::new(store.clone());
        register(&queue, &store, self.path(), false).map_err(|e| e.to_string())?;
        Ok(queue)
    }

    /// Enqueues `plain` plain jobs and `flows` workflows, interleaved in batches.
    pub fn enqueue(&mut self, queue: &Queue, plain: usize, flows: usize) -> Result<(), String> {
        let opts = JobOptions::new().retries(1000);
        let (mut p, mut f) = (plain, flows);
        while p + f > 0 {
            let (np, nf) = (p.min(70), f.min(30));
            queue.enqueue_batch("plain", &vec![(); np], opts.clone()).map_err(|e| e.to_string())?;
            queue.enqueue_batch("flow", &vec![(); nf], opts.clone()).map_err(|e| e.to_string())?;
            (p, f) = (p - np, f - nf);
        }
        self.expect += plain + flows;
        Ok(())
    }

    /// Starts a worker process with extra environment (`DJ_GATED`, `DJ_FAILPOINT`).
    pub fn spawn(&self, env: &[(&str, &str)]) -> Result<Child, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut command = Command::new(exe);
        command
            .env("DJ_CHILD_DIR", self.path())
            .env("DJ_STORE", self.backend)
            .env("DJ_EXPECT", self.expect.to_string());
        command.envs(env.iter().copied());
        command.spawn().map_err(|e| format!("spawn worker: {e}"))
    }

    pub fn ledger(&self) -> Result<String, String> {
        std::fs::read_to_string(self.path().join("ledger.txt")).map_err(|e| format!("read ledger: {e}"))
    }

    /// Waits for `line` to appear in the ledger.
    pub fn wait_for(&self, line: &str) -> Result<(), String> {
        let started = Instant::now();
        while !self.ledger().unwrap_or_default().lines().any(|l| l == line) {
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!("waited 60 s for {line:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Lines of the workers' logs at WARN or ERROR; fails if a log does not show that
    /// logging worked.
    pub fn warnings(&self) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut logs = 0;
        for entry in std::fs::read_dir(self.path()).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("log-")) {
                let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
                if !text.contains(" logging") {
                    return Err(format!("{} does not show that logging worked", path.display()));
                }
                logs += 1;
                out.extend(text.lines().filter(|l| l.contains(" WARN ") || l.contains("ERROR")).map(str::to_owned));
            }
        }
        if logs == 0 {
            return Err("no worker log was written".into());
        }
        Ok(out)
    }
}

pub fn wait_all(children: &mut [Child]) -> Result<(), String> {
    let started = Instant::now();
    for child in children {
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                if !status.success() {
                    return Err(format!("worker {} exited with {status}", child.id()));
                }
                break;
            }
            if started.elapsed() > PATIENCE {
                let _ = child.kill();
                return Err("the workers did not finish in time".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

pub fn signal(child: &Child, sig: &str) -> Result<(), String> {
    let status = Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        other => Err(format!("kill -{sig} {}: {other:?}", child.id())),
    }
}

/// The pass criteria, from the ledger and the final job states.
pub fn check(run: &Run, killed: &HashSet<u32>) -> Result<String, String> {
    let queue = run.queue()?;
    let jobs = queue.list(&JobFilter::new().limit(usize::MAX)).map_err(|e| e.to_string())?;
    let (poison, jobs): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|j| j.name == "poison");
    let not_done: Vec<_> = jobs.iter().filter(|j| j.status != JobStatus::Completed).collect();
    if jobs.len() + poison.len() != run.expect || !not_done.is_empty() {
        return Err(format!("{} jobs, {} not completed: {not_done:#?}", jobs.len(), not_done.len()));
    }
    // A job that kills its process ends failed after its attempts, its payload kept.
    for p in &poison {
        let lost = p.last_error.as_deref().is_some_and(|e| e.contains("died while the handler ran"));
        if p.status != JobStatus::Failed || p.attempt != p.max_attempts || !lost || p.args != "null" {
            return Err(format!("poison job ended as {p:?}"));
        }
    }
    #[cfg(feature = "sqlite")]
    if run.backend == "sqlite" {
        let store = durable_jobs::sqlite::SqliteStore::open(run.path().join("jobs.db")).map_err(|e| e.to_string())?;
        store.check_integrity().map_err(|e| e.to_string())?;
    }
    for job in jobs.iter().filter(|j| j.name == "flow") {
        let n = queue.checkpoints(job.id).map_err(|e| e.to_string())?.len();
        if n != STEPS as usize {
            return Err(format!("workflow {} has {n} checkpoints", job.id));
        }
    }
    let ledger = run.ledger()?;
    // Per (job, step): the processes that ran it, in order, and whether it had committed.
    let mut runs: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
    let mut committed: HashSet<(String, String)> = HashSet::new();
    let mut violations = Vec::new();
    for line in ledger.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let (kind, job, step, pid) = match parts[..] {
            [kind, job, step, pid, ..] => (kind, job, step, pid.parse::<u32>().map_err(|e| format!("{line:?}: {e}"))?),
            _ => return Err(format!("bad ledger line {line:?}")),
        };
        let key = (job.to_owned(), step.to_owned());
        match kind {
            "effect" if committed.contains(&key) => {
                violations.push(format!("{step} of job {job} ran again after its checkpoint committed"));
            }
            "effect" => runs.entry(key).or_default().push(pid),
            "rerun-after-commit" => {
                violations.push(format!("{step} of job {job} ran in {pid} after its checkpoint committed"));
            }
            "committed" => {
                committed.insert(key);
            }
            _ => {}
        }
    }
    let expected_runs = jobs.iter().map(|j| if j.name == "flow" { STEPS as usize } else { 1 }).sum::<usize>();
    if runs.len() != expected_runs {
        violations.push(format!("{} (job, step) pairs ran, expected {expected_runs}", runs.len()));
    }
    let mut reruns = 0;
    for ((job, step), pids) in &runs {
        // Every run but the last must have been cut short by a kill of its process.
        for pid in &pids[..pids.len() - 1] {
            if !killed.contains(pid) {
                violations.push(format!("{step} of job {job} ran in {pids:?}; {pid} was not killed"));
            }
        }
        reruns += pids.len() - 1;
    }
    if !violations.is_empty() {
        let kept = std::env::temp_dir().join(format!("durable-jobs-ledger-{}.txt", std::process::id()));
        let _ = std::fs::copy(run.path().join("ledger.txt"), &kept);
        let total = violations.len();
        violations.truncate(20);
        return Err(format!(
            "{total} violations:\n{}\nthe ledger is kept at {}",
            violations.join("\n"),
            kept.display()
        ));
    }
    if expected_runs == 0 {
        return Err("nothing ran".into());
    }
    Ok(format!(
        "{} jobs completed, {} step runs, {reruns} re-runs of steps cut short by a kill",
        jobs.len(),
        runs.values().map(Vec::len).sum::<usize>()
    ))
}
