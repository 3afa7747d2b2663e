//! Reliability scenarios with real worker processes: this binary re-executes itself as workers.
//!
//! - S1: SIGKILL at seeded random moments while 1,000 jobs (plain jobs and three-step
//!   workflows) run on two worker processes (one on sled, whose directory admits one process).
//! - S11: three worker processes and a producer on one SQLite file, no crash.
//! - S9: a worker stopped with SIGSTOP past its lease; another takes the job over; the stopped one
//!   resumes and its late write is refused.
//! - G12: workflows asleep when their worker is killed wake at their deadline in the next one.
//! - G13/G14: a worker killed while workflows wait for signals and fan-outs' children run: no
//!   signal lost or received twice, no child lost or started twice.
//! - G15: three worker processes fire an every-200-ms schedule for 5 s: each due time once.
//! - G16: two worker processes under a queue limit of 4 claims a second and 2 running.
//!
//! The steps write a ledger (an append-only file) that the parent checks: every job completed,
//! every re-run of a step explained by a crash that hit it in flight, nothing re-run after its
//! checkpoint committed. `DJ_SEED=<n>` replays a run (the seed is printed on failure);
//! `DJ_LONG=1` runs the long tier (10,000 jobs, 100 kills).

#[path = "processes/ops.rs"]
mod ops;
mod workers;

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use durable_jobs::{JobFilter, JobOptions, JobStatus};
use workers::{check, signal, wait_all, Run, BACKENDS, PARTS};

/// A scenario: its summary, or what went wrong.
type Scenario = Box<dyn Fn() -> Result<String, String>>;

fn main() -> ExitCode {
    if let Ok(dir) = std::env::var("DJ_CHILD_DIR") {
        return workers::child(Path::new(&dir));
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
            scenarios.push((
                "G15 schedule across processes",
                Box::new(move || ops::a_schedule_fires_once_across_processes(backend)),
            ));
            scenarios
                .push(("G16 limits across processes", Box::new(move || ops::limits_hold_across_processes(backend))));
        }
        scenarios.push(("G5 process-killing job", Box::new(move || poison(backend))));
        scenarios.push(("G12 sleepers outlive kill -9", Box::new(move || sleepers_outlive_a_crash(backend))));
        scenarios.push(("G13/G14 waits outlive kill -9", Box::new(move || waits_outlive_a_crash(backend, seed))));
        scenarios.push((
            "G11 crashes charge only started runs",
            Box::new(move || crashes_charge_started_runs(backend, seed)),
        ));
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

/// S1: `kills` SIGKILLs of random workers at random moments; each is restarted at once.
fn kill_loop(backend: &'static str, workers: usize, jobs: usize, kills: u32, seed: u64) -> Result<String, String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut run = Run::new(backend)?;
    run.enqueue(&run.queue()?, jobs * 7 / 10, jobs * 3 / 10)?;
    let mut children = (0..workers).map(|_| run.spawn(&[])).collect::<Result<Vec<_>, _>>()?;
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
        children[victim] = run.spawn(&[])?;
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
    let mut children = (0..3).map(|_| run.spawn(&[])).collect::<Result<Vec<_>, _>>()?;
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
    let mut a = run.spawn(&[("DJ_GATED", "1")])?;
    run.wait_for(&format!("waiting {id} {}", a.id()))?;
    signal(&a, "STOP")?;
    let b = run.spawn(&[("DJ_GATED", "1")])?;
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

/// G11: workers holding prefetched jobs are killed three times. With one attempt per job and
/// leases of an hour, only jobs whose handler had started in a killed process may fail (charged
/// for the lost run), every other job completes, and all of it happens long before any lease
/// expires: a dead process's jobs are recovered at once by the next worker on this machine.
fn crashes_charge_started_runs(backend: &'static str, seed: u64) -> Result<String, String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut run = Run::new(backend)?;
    let queue = run.queue()?;
    let jobs = 1500;
    queue.enqueue_batch("plain", &vec![(); jobs], JobOptions::new().retries(1)).map_err(|e| e.to_string())?;
    run.expect = jobs;
    drop(queue); // one process at a time may open a sled database
                 // An hour's lease, and 50 jobs claimed ahead of the two threads for the kills to catch.
    let hour = [("DJ_LEASE_MS", "3600000"), ("DJ_PREFETCH", "50")];
    let mut killed = HashSet::new();
    for _ in 0..3 {
        let mut child = run.spawn(&hour)?;
        std::thread::sleep(Duration::from_millis(rng.u64(150..300)));
        child.kill().map_err(|e| format!("SIGKILL: {e}"))?;
        child.wait().map_err(|e| e.to_string())?;
        killed.insert(child.id().to_string());
    }
    let started = Instant::now();
    wait_all(&mut [run.spawn(&hour)?])?;
    let recovered_in = started.elapsed();
    let queue = run.queue()?;
    let ledger = run.ledger()?;
    let all = queue.list(&JobFilter::new().limit(jobs + 1)).map_err(|e| e.to_string())?;
    let mut failed = 0;
    for job in &all {
        match job.status {
            JobStatus::Completed => {}
            JobStatus::Failed => {
                failed += 1;
                let started_in_killed = ledger.lines().any(|l| {
                    l.strip_prefix(&format!("effect {} plain ", job.id)).is_some_and(|pid| killed.contains(pid))
                });
                let why = job.last_error.as_deref().unwrap_or_default();
                if !started_in_killed || !why.contains("died while the handler ran") {
                    return Err(format!("job {} failed without having started in a killed worker: {job:?}", job.id));
                }
            }
            other => return Err(format!("job {} ended {other}", job.id)),
        }
    }
    if all.len() != jobs || failed > 3 * 2 {
        return Err(format!("{} jobs, {failed} failed (at most 2 per kill may have been running)", all.len()));
    }
    // Not vacuous: kills did catch claimed jobs before they started, and they ran later.
    let spared = all.iter().filter(|j| j.last_error.as_deref().is_some_and(|e| e.contains("not charged"))).count();
    if spared == 0 {
        return Err("no kill caught a prefetched job; the scenario tested nothing".into());
    }
    Ok(format!(
        "3 kills; {} completed ({spared} of them lost unstarted, not charged), {failed} failed (started when killed); \
         the last worker finished in {recovered_in:.1?} with 1 h leases",
        jobs - failed
    ))
}

/// G12: workflows asleep when their worker is killed wake at the deadline recorded by the
/// killed worker, in the next one, and their steps before and after the sleep run once each.
fn sleepers_outlive_a_crash(backend: &'static str) -> Result<String, String> {
    const SLEEPERS: usize = 20;
    let mut run = Run::new(backend)?;
    let queue = run.queue()?;
    // Each sleeps 4 s from its first run, time for all of them to fall asleep before the kill.
    let naps: Vec<u64> = (0..SLEEPERS as u64).map(|i| 4000 + 50 * i).collect();
    // Three attempts: a kill that lands before a suspension commits costs the started run one.
    let ids = queue.enqueue_batch("sleeper", &naps, JobOptions::new().retries(3)).map_err(|e| e.to_string())?;
    run.expect = SLEEPERS;
    drop(queue); // one process at a time may open a sled database
    let mut first = run.spawn(&[])?;
    let started = Instant::now();
    while run.ledger().unwrap_or_default().lines().filter(|l| l.starts_with("sleeping ")).count() < SLEEPERS {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = first.kill();
            return Err("the sleepers did not all fall asleep".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Give the last suspension time to commit, then kill while every one sleeps.
    std::thread::sleep(Duration::from_millis(200));
    first.kill().map_err(|e| format!("SIGKILL: {e}"))?;
    first.wait().map_err(|e| e.to_string())?;
    let ledger = run.ledger()?;
    if ledger.lines().any(|l| l.starts_with("woke ")) {
        return Err("a sleeper woke before the kill; the scenario tested nothing".into());
    }
    wait_all(&mut [run.spawn(&[])?])?;
    let ledger = run.ledger()?;
    let mut latest = 0_i128;
    for id in &ids {
        let count = |what: &str| ledger.lines().filter(|l| l.starts_with(&format!("{what} {id} "))).count();
        let (before, after) =
            (count("effect"), ledger.lines().filter(|l| l.starts_with(&format!("effect {id} after"))).count());
        if (before, after, count("woke")) != (2, 1, 1) {
            return Err(format!("job {id}: {before} effects, {after} after the sleep, {} wake-ups", count("woke")));
        }
        let late: i128 = ledger
            .lines()
            .find_map(|l| l.strip_prefix(&format!("woke {id} ")))
            .and_then(|rest| rest.split(' ').next()?.parse().ok())
            .ok_or_else(|| format!("job {id}: no lateness recorded"))?;
        // Early is impossible (the sleep returns only past the recorded deadline); late by
        // more than a few seconds would mean the wake-up waited for something else.
        if !(0..5_000_000).contains(&late) {
            return Err(format!("job {id} woke {late} µs after its recorded deadline"));
        }
        latest = latest.max(late);
    }
    let queue = run.queue()?;
    let mut charged = 0;
    for id in &ids {
        let info = queue.job(*id).map_err(|e| e.to_string())?.ok_or("job gone")?;
        if info.status != JobStatus::Completed || info.attempt > 2 {
            return Err(format!("job {id}: {info:?}"));
        }
        charged += usize::from(info.attempt == 2);
    }
    Ok(format!(
        "{SLEEPERS} sleepers killed mid-sleep ({charged} caught before their suspension committed); all woke on \
         the next worker at the deadline the killed one recorded, the latest {:.1} ms late",
        latest as f64 / 1000.0
    ))
}

/// G13/G14: ten workflows wait for a signal (half of the signals sent before they run, half
/// after the kill) and five fan out twenty children each; the worker is killed while the
/// children run. The next worker finishes everything: every signal received exactly once with
/// its payload, every fan-out has exactly its twenty children, each run, the steps around the
/// waits run once each unless the kill caught them in flight.
fn waits_outlive_a_crash(backend: &'static str, seed: u64) -> Result<String, String> {
    const WAITERS: usize = 10;
    const FANNERS: usize = 5;
    let mut run = Run::new(backend)?;
    let queue = run.queue()?;
    let err = |e: durable_jobs::Error| e.to_string();
    let waiters = queue.enqueue_batch("waiter", &[(); WAITERS], JobOptions::new().retries(5)).map_err(err)?;
    let fanners = queue.enqueue_batch("fanner", &[(); FANNERS], JobOptions::new().retries(5)).map_err(err)?;
    for id in &waiters[..WAITERS / 2] {
        queue.signal(*id, "go", &(id.0 * 7)).map_err(err)?;
    }
    run.expect = WAITERS + FANNERS * (1 + PARTS as usize);
    drop(queue); // one process at a time may open a sled database
    let mut first = run.spawn(&[])?;
    let kill_after = 20 + (seed % 40) as usize;
    let started = Instant::now();
    while run.ledger().unwrap_or_default().lines().filter(|l| l.starts_with("part ")).count() < kill_after {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = first.kill();
            return Err("the children did not start".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    first.kill().map_err(|e| format!("SIGKILL: {e}"))?;
    let killed = first.id();
    first.wait().map_err(|e| e.to_string())?;
    let queue = run.queue()?;
    for id in &waiters[WAITERS / 2..] {
        queue.signal(*id, "go", &(id.0 * 7)).map_err(err)?;
    }
    drop(queue);
    wait_all(&mut [run.spawn(&[])?])?;
    let ledger = run.ledger()?;
    let lines = |prefix: &str| ledger.lines().filter(|l| l.starts_with(prefix)).map(str::to_owned).collect::<Vec<_>>();
    // A step ran more than once only if the killed worker was in it.
    let once_unless_killed = |prefix: &str| -> Result<(), String> {
        let runs = lines(prefix);
        let by_killed = runs.iter().filter(|l| l.ends_with(&format!(" {killed}"))).count();
        if runs.is_empty() || runs.len() > 1 + usize::from(by_killed > 0) {
            return Err(format!("{prefix:?} ran {} times ({by_killed} in the killed worker)", runs.len()));
        }
        Ok(())
    };
    for id in &waiters {
        let got = lines(&format!("got {id} "));
        let payload = got.first().and_then(|l| l.split(' ').nth(2)).unwrap_or_default().to_owned();
        if payload != (id.0 * 7).to_string() {
            return Err(format!("waiter {id} received {got:?}"));
        }
        once_unless_killed(&format!("effect {id} before "))?;
        once_unless_killed(&format!("effect {id} after "))?;
    }
    let queue = run.queue()?;
    let mut parts_rerun = 0;
    for id in &fanners {
        let children = queue.list(&JobFilter::new().parent(*id).limit(1000)).map_err(err)?;
        if children.len() != PARTS as usize || children.iter().any(|c| c.status != JobStatus::Completed) {
            return Err(format!("fanner {id} has {} children: {children:?}", children.len()));
        }
        for child in &children {
            let runs = lines(&format!("part {} ", child.id));
            parts_rerun += runs.len().saturating_sub(1);
            if runs.is_empty() || runs.len() > 2 {
                return Err(format!("child {} ran {} times", child.id, runs.len()));
            }
        }
        let expected: u64 = (0..PARTS).map(|n| n * 3).sum();
        if !lines(&format!("fanned {id} ")).iter().all(|l| l.split(' ').nth(2) == Some(&expected.to_string())) {
            return Err(format!("fanner {id} gathered the wrong results"));
        }
        once_unless_killed(&format!("effect {id} before "))?;
        once_unless_killed(&format!("effect {id} after "))?;
    }
    let all = queue.list(&JobFilter::new().limit(usize::MAX)).map_err(err)?;
    if all.len() != run.expect || all.iter().any(|j| j.status != JobStatus::Completed) {
        return Err(format!("{} jobs, expected {} all completed", all.len(), run.expect));
    }
    if !queue.signals(waiters[0]).map_err(err)?.is_empty() {
        return Err("a received signal is still pending".into());
    }
    Ok(format!(
        "killed after {kill_after} children started; {WAITERS} signals received once each, {FANNERS} fan-outs \
         with exactly {PARTS} children each ({parts_rerun} in flight at the kill ran again)"
    ))
}

/// G5: a job whose handler kills its worker process each time: every restart reclaims it and
/// uses an attempt, so it ends failed after its three attempts while the other jobs complete.
fn poison(backend: &'static str) -> Result<String, String> {
    let mut run = Run::new(backend)?;
    let queue = run.queue()?;
    run.enqueue(&queue, 100, 0)?;
    queue.enqueue("poison", &(), JobOptions::new().retries(3)).map_err(|e| e.to_string())?;
    run.expect += 1;
    drop(queue);
    let mut crashed = HashSet::new();
    for _ in 0..10 {
        let mut worker = run.spawn(&[])?;
        let status = worker.wait().map_err(|e| e.to_string())?;
        if status.success() {
            let report = check(&run, &crashed)?;
            return Ok(format!("{} worker crashes; {report}", crashed.len()));
        }
        crashed.insert(worker.id());
    }
    Err(format!("the poison job crashed {} workers and never ended", crashed.len()))
}
