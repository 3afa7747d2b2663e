//! Reliability scenarios with real worker processes: this binary re-executes itself as workers.
//!
//! - S1: SIGKILL at seeded random moments while 1,000 jobs (plain jobs and three-step
//!   workflows) run on two worker processes (one on sled, whose directory admits one process).
//! - S11: three worker processes and a producer on one SQLite file, no crash.
//! - S9: a worker stopped with SIGSTOP past its lease; another takes the job over; the stopped one
//!   resumes and its late write is refused.
//!
//! The steps write a ledger (an append-only file) that the parent checks: every job completed,
//! every re-run of a step explained by a crash that hit it in flight, nothing re-run after its
//! checkpoint committed. `DJ_SEED=<n>` replays a run (the seed is printed on failure);
//! `DJ_LONG=1` runs the long tier (10,000 jobs, 100 kills).

use std::collections::{BTreeMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use durable_jobs::{call, Error, JobContext, JobFilter, JobOptions, JobStatus, Queue, Store};

const STEPS: u32 = 3;

/// A scenario: its summary, or what went wrong.
type Scenario = Box<dyn Fn() -> Result<String, String>>;
const PATIENCE: Duration = Duration::from_secs(300);

/// The enabled backends and whether several processes may share one database.
const BACKENDS: &[(&str, bool)] = &[
    #[cfg(feature = "sqlite")]
    ("sqlite", true),
    #[cfg(feature = "sled")]
    ("sled", false),
];

fn main() -> ExitCode {
    if let Ok(dir) = std::env::var("DJ_CHILD_DIR") {
        return child(Path::new(&dir));
    }
    let seed = std::env::var("DJ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    let long = std::env::var_os("DJ_LONG").is_some();
    let mut failed = false;
    for &(backend, shared) in BACKENDS {
        let mut scenarios: Vec<(&str, Scenario)> = Vec::new();
        let (jobs, kills) = if long { (10_000, 100) } else { (1_000, 10) };
        let workers = if shared { 2 } else { 1 };
        scenarios.push(("S1 kill -9", Box::new(move || kill_loop(backend, workers, jobs, kills, seed))));
        if shared {
            scenarios.push(("S11 shared file", Box::new(move || shared_file(backend, seed))));
            scenarios.push(("S9 stopped worker", Box::new(move || stopped_worker(backend))));
        }
        for (name, scenario) in scenarios {
            let started = Instant::now();
            match scenario() {
                Ok(summary) => {
                    println!("{name} on {backend}: passed in {:.1?} (seed {seed}): {summary}", started.elapsed());
                }
                Err(e) => {
                    eprintln!("{name} on {backend}: FAILED with seed {seed} (rerun with DJ_SEED={seed}):\n{e}");
                    failed = true;
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

// ---------------------------------------------------------------------------------------------
// The worker process.

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
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

/// Appends one line; `O_APPEND` writes of one short buffer are not interleaved.
fn record(dir: &Path, line: &str) {
    let mut f = OpenOptions::new().create(true).append(true).open(dir.join("ledger.txt")).expect("open ledger");
    f.write_all(format!("{line}\n").as_bytes()).expect("write ledger");
}

/// Registers the handlers; the parent registers them too, to enqueue (it never runs them).
fn register(queue: &Queue, dir: &Path, gated: bool) -> Result<(), Error> {
    let pid = std::process::id();
    let d = dir.to_path_buf();
    queue.register("plain", move |ctx: &JobContext, (): ()| -> Result<(), std::io::Error> {
        record(&d, &format!("effect {} plain {pid}", ctx.id()));
        std::thread::sleep(Duration::from_micros(fastrand::u64(1000..5000)));
        Ok(())
    })?;
    let d = dir.to_path_buf();
    queue.register("step", move |ctx: &JobContext, n: u32| -> Result<u32, std::io::Error> {
        record(&d, &format!("effect {} s{n} {pid}", ctx.id()));
        std::thread::sleep(Duration::from_micros(fastrand::u64(3000..10_000)));
        Ok(pid)
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

/// Runs a worker until the expected number of jobs has completed.
fn child(dir: &Path) -> ExitCode {
    let pid = std::process::id();
    let log = OpenOptions::new().create(true).append(true).open(dir.join(format!("log-{pid}.txt"))).expect("open log");
    tracing_subscriber::fmt().with_ansi(false).with_writer(std::sync::Mutex::new(log)).init();
    let expect: usize = env("DJ_EXPECT").parse().expect("DJ_EXPECT");
    let queue = Queue::new(open_store(&env("DJ_STORE"), dir).expect("open store"));
    register(&queue, dir, !env("DJ_GATED").is_empty()).expect("register");
    let worker = queue.worker().concurrency(2).lease(Duration::from_secs(1)).start().expect("start worker");
    let started = Instant::now();
    while completed(&queue).expect("count jobs") < expect {
        assert!(started.elapsed() < PATIENCE, "worker {pid} gave up waiting");
        std::thread::sleep(Duration::from_millis(50));
    }
    worker.shutdown();
    ExitCode::SUCCESS
}

fn completed(queue: &Queue) -> Result<usize, Error> {
    let counts = queue.counts()?;
    Ok(counts.iter().filter(|c| c.status == JobStatus::Completed).map(|c| c.count as usize).sum())
}

// ---------------------------------------------------------------------------------------------
// The parent.

struct Run {
    backend: &'static str,
    dir: tempfile::TempDir,
    expect: usize,
}

impl Run {
    fn new(backend: &'static str) -> Result<Self, String> {
        Ok(Run { backend, dir: tempfile::tempdir().map_err(|e| e.to_string())?, expect: 0 })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A queue for enqueueing and checking (never running) jobs.
    fn queue(&self) -> Result<Queue, String> {
        let queue = Queue::new(open_store(self.backend, self.path())?);
        register(&queue, self.path(), false).map_err(|e| e.to_string())?;
        Ok(queue)
    }

    /// Enqueues `plain` plain jobs and `flows` workflows, interleaved in batches.
    fn enqueue(&mut self, queue: &Queue, plain: usize, flows: usize) -> Result<(), String> {
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

    fn spawn(&self, gated: bool) -> Result<Child, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut command = Command::new(exe);
        command
            .env("DJ_CHILD_DIR", self.path())
            .env("DJ_STORE", self.backend)
            .env("DJ_EXPECT", self.expect.to_string());
        if gated {
            command.env("DJ_GATED", "1");
        }
        command.spawn().map_err(|e| format!("spawn worker: {e}"))
    }

    fn ledger(&self) -> Result<String, String> {
        std::fs::read_to_string(self.path().join("ledger.txt")).map_err(|e| format!("read ledger: {e}"))
    }

    /// Waits for `line` to appear in the ledger.
    fn wait_for(&self, line: &str) -> Result<(), String> {
        let started = Instant::now();
        while !self.ledger().unwrap_or_default().lines().any(|l| l == line) {
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!("waited 60 s for {line:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Lines of the workers' logs at WARN or ERROR.
    fn warnings(&self) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.path()).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("log-")) {
                let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
                out.extend(text.lines().filter(|l| l.contains(" WARN ") || l.contains("ERROR")).map(str::to_owned));
            }
        }
        Ok(out)
    }
}

fn wait_all(children: &mut [Child]) -> Result<(), String> {
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

fn signal(child: &Child, sig: &str) -> Result<(), String> {
    let status = Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        other => Err(format!("kill -{sig} {}: {other:?}", child.id())),
    }
}

/// S1: `kills` SIGKILLs of random workers at random moments; each is restarted at once.
fn kill_loop(backend: &'static str, workers: usize, jobs: usize, kills: u32, seed: u64) -> Result<String, String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut run = Run::new(backend)?;
    run.enqueue(&run.queue()?, jobs * 7 / 10, jobs * 3 / 10)?;
    let mut children = (0..workers).map(|_| run.spawn(false)).collect::<Result<Vec<_>, _>>()?;
    let mut killed = HashSet::new();
    for k in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.u64(40..160)));
        let victim = rng.usize(..workers);
        if children[victim].try_wait().map_err(|e| e.to_string())?.is_some() {
            return Err(format!("the work finished after {k} of {kills} kills; the workload is too small"));
        }
        children[victim].kill().map_err(|e| format!("SIGKILL: {e}"))?;
        children[victim].wait().map_err(|e| e.to_string())?;
        killed.insert(children[victim].id());
        children[victim] = run.spawn(false)?;
    }
    wait_all(&mut children)?;
    let report = check(&run, &killed)?;
    Ok(format!("{kills} kills; {report}"))
}

/// S11: three workers on one file while the parent keeps enqueueing; no crash, so every step
/// runs exactly once, and no worker logs a warning (no busy error, no failed commit).
fn shared_file(backend: &'static str, seed: u64) -> Result<String, String> {
    let mut run = Run::new(backend)?;
    let queue = run.queue()?;
    run.enqueue(&queue, 70, 30)?;
    run.expect = 700;
    let mut children = (0..3).map(|_| run.spawn(false)).collect::<Result<Vec<_>, _>>()?;
    run.expect = 100;
    let mut rng = fastrand::Rng::with_seed(seed);
    while run.expect < 700 {
        std::thread::sleep(Duration::from_millis(rng.u64(5..40)));
        run.enqueue(&queue, 70, 30)?;
    }
    wait_all(&mut children)?;
    let report = check(&run, &HashSet::new())?;
    let warnings = run.warnings()?;
    if !warnings.is_empty() {
        return Err(format!("workers logged {} warnings:\n{}", warnings.len(), warnings.join("\n")));
    }
    Ok(report)
}

/// S9: worker A is stopped after step 1 of a workflow and stays stopped past its lease; worker
/// B reclaims the job and holds it; A resumes: its late step-2 checkpoint is refused
/// (`LeaseLost`) while B owns the job; B finishes it with its own step 2.
fn stopped_worker(backend: &'static str) -> Result<String, String> {
    let mut run = Run::new(backend)?;
    let queue = run.queue()?;
    run.enqueue(&queue, 0, 1)?;
    let id = queue.list(&JobFilter::new()).map_err(|e| e.to_string())?[0].id;
    let mut a = run.spawn(true)?;
    run.wait_for(&format!("waiting {id} {}", a.id()))?;
    signal(&a, "STOP")?;
    let b = run.spawn(true)?;
    run.wait_for(&format!("waiting {id} {}", b.id()))?;
    std::fs::write(run.path().join(format!("go-{}", a.id())), b"").map_err(|e| e.to_string())?;
    signal(&a, "CONT")?;
    run.wait_for(&format!("refused {id} s2 {} true", a.id()))?;
    std::fs::write(run.path().join(format!("go-{}", b.id())), b"").map_err(|e| e.to_string())?;
    wait_all(&mut [b])?;
    let info = queue.wait(id, Duration::from_secs(30)).map_err(|e| e.to_string())?;
    wait_all(std::slice::from_mut(&mut a))?;
    let checkpoints = queue.checkpoints(id).map_err(|e| e.to_string())?;
    let owners: Vec<String> = checkpoints
        .iter()
        .map(|c| String::from_utf8_lossy(c.outcome.as_ref().map_or(&b""[..], |v| v)).into_owned())
        .collect();
    let (a_pid, b_pid) = (
        a.id().to_string(),
        run.ledger()?
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("waiting {id} ")).filter(|p| *p != a.id().to_string()).map(str::to_owned)
            })
            .unwrap_or_default(),
    );
    if info.status != JobStatus::Completed || info.attempt != 2 {
        return Err(format!("job ended {:?} after {} attempts", info.status, info.attempt));
    }
    if owners.len() != 3 || owners[0] != a_pid || owners[1] != b_pid || owners[2] != b_pid {
        return Err(format!("checkpoints by {owners:?}; expected step 1 by {a_pid}, steps 2-3 by {b_pid}"));
    }
    Ok(format!("the stopped worker's late write was refused; checkpoints by {owners:?}"))
}

/// The pass criteria, from the ledger and the final job states.
fn check(run: &Run, killed: &HashSet<u32>) -> Result<String, String> {
    let queue = run.queue()?;
    let jobs = queue.list(&JobFilter::new().limit(usize::MAX)).map_err(|e| e.to_string())?;
    let not_done: Vec<_> = jobs.iter().filter(|j| j.status != JobStatus::Completed).collect();
    if jobs.len() != run.expect || !not_done.is_empty() {
        return Err(format!("{} jobs, {} not completed: {not_done:#?}", jobs.len(), not_done.len()));
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
        violations.truncate(20);
        return Err(violations.join("\n"));
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
