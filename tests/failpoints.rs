//! S2: a worker process aborts at each named fail point (at a seeded k-th hit); a fresh worker
//! then finishes the work, and the ledger shows the same guarantees as after a `kill -9`.
//! Needs `--features failpoints`. `DJ_SEED=<n>` replays a run.

mod workers;

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use workers::{check, wait_all, Run, BACKENDS};

fn main() -> ExitCode {
    if let Ok(dir) = std::env::var("DJ_CHILD_DIR") {
        return workers::child(Path::new(&dir));
    }
    let seed = std::env::var("DJ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut failed = false;
    for &(backend, _) in BACKENDS {
        for &point in durable_jobs::FAILPOINTS {
            let k = if point == "during-reclaim" { 1 } else { rng.u32(1..=5) };
            match abort_at(backend, point, k) {
                Ok(summary) => println!("S2 {point} (hit {k}) on {backend}: passed: {summary}"),
                Err(e) => {
                    eprintln!(
                        "S2 {point} (hit {k}) on {backend}: FAILED with seed {seed} (rerun with DJ_SEED={seed}):\n{e}"
                    );
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

fn abort_at(backend: &'static str, point: &str, k: u32) -> Result<String, String> {
    let mut run = Run::new(backend)?;
    run.enqueue(&run.queue()?, 100, 50)?;
    let mut crashed = HashSet::new();
    if point == "during-reclaim" {
        // Leave leases behind for the armed worker's reaper to reclaim: kill a worker once it
        // is running jobs (it then holds them, and more claimed ahead).
        let mut first = run.spawn(&[])?;
        let pid = first.id().to_string();
        let started = Instant::now();
        while !run.ledger().unwrap_or_default().lines().any(|l| l.starts_with("effect") && l.ends_with(&pid)) {
            if started.elapsed() > Duration::from_secs(60) {
                let _ = first.kill();
                return Err("the first worker ran nothing within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        first.kill().map_err(|e| e.to_string())?;
        first.wait().map_err(|e| e.to_string())?;
        crashed.insert(first.id());
    }
    let spec = format!("{point}:{k}");
    let mut armed = run.spawn(&[("DJ_FAILPOINT", &spec)])?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = armed.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = armed.kill();
            return Err(format!("{point} was not reached within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if status.signal() != Some(6) {
        return Err(format!("the armed worker ended with {status}, not by aborting at {point}"));
    }
    let line = format!("abort {point} - {}", armed.id());
    if !run.ledger()?.lines().any(|l| l == line) {
        return Err(format!("no {line:?} in the ledger"));
    }
    crashed.insert(armed.id());
    wait_all(&mut [run.spawn(&[])?])?;
    check(&run, &crashed)
}
