//! Operations across processes: a schedule fires each due time once, and limits hold for
//! every process sharing the store.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant, UNIX_EPOCH};

use durable_jobs::{JobFilter, JobOptions, JobStatus, Limit, Schedule};

use super::workers::{wait_all, Run};

/// Waits until `n` worker processes have started.
fn wait_up(run: &Run, n: usize) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let up = std::fs::read_dir(run.path())
            .map_err(|e| e.to_string())?
            .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("up-")))
            .count();
        if up >= n {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("{up} of {n} workers started in 60 s"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// G15: three worker processes on one file, an every-200-ms schedule for 5 s: every due time
/// from the first to the last fired exactly once, and each fired job ran once.
pub(crate) fn a_schedule_fires_once_across_processes(backend: &'static str) -> Result<String, String> {
    let run = Run::new(backend)?;
    let queue = run.queue()?;
    let env = [("DJ_RUN_MS", "7000"), ("DJ_POLL_MS", "50")];
    let mut children = (0..3).map(|_| run.spawn(&env)).collect::<Result<Vec<_>, _>>()?;
    wait_up(&run, 3)?;
    let every = Schedule::every(Duration::from_millis(200));
    queue.schedule("ticker", every, "plain", &(), JobOptions::new()).map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(5));
    queue.unschedule("ticker").map_err(|e| e.to_string())?;
    wait_all(&mut children)?;
    let jobs = queue.list(&JobFilter::new().name("plain").limit(usize::MAX)).map_err(|e| e.to_string())?;
    let mut due: Vec<u128> =
        jobs.iter().map(|j| j.run_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()).collect();
    due.sort_unstable();
    let (first, last) = match (due.first(), due.last()) {
        (Some(f), Some(l)) if due.len() >= 20 => (*f, *l),
        _ => return Err(format!("{} fires in 5 s of an every-200-ms schedule", due.len())),
    };
    let expected: Vec<u128> = (first..=last).step_by(200_000).collect();
    if due != expected || first % 200_000 != 0 {
        return Err(format!("fired at {due:?}, expected every 200 ms from {first} to {last}"));
    }
    let ledger = run.ledger()?;
    let mut ran = HashSet::new();
    for line in ledger.lines() {
        if let ["effect", id, "plain", _pid] = line.split(' ').collect::<Vec<_>>()[..] {
            if !ran.insert(id.to_owned()) {
                return Err(format!("job {id} ran twice"));
            }
        }
    }
    let completed = jobs.iter().filter(|j| j.status == JobStatus::Completed).count();
    if ran.len() != completed {
        return Err(format!("{} jobs ran, {completed} completed", ran.len()));
    }
    Ok(format!("{} due times fired once each across 3 processes; {completed} ran", due.len()))
}

/// G16: two worker processes, a queue limited to 4 claims per second and 2 running: no
/// one-second window has more than 4 claims, never more than 2 handlers run at once, each job
/// runs once and is charged once.
pub(crate) fn limits_hold_across_processes(backend: &'static str) -> Result<String, String> {
    let mut run = Run::new(backend)?;
    let queue = run.queue()?;
    queue.set_limit(Limit::queue("lim").per_second(4).max_running(2)).map_err(|e| e.to_string())?;
    queue.enqueue_batch("limited", &[(); 24], JobOptions::new().queue("lim")).map_err(|e| e.to_string())?;
    run.expect = 24;
    let env = [("DJ_QUEUES", "default,lim"), ("DJ_POLL_MS", "50")];
    let mut children = (0..2).map(|_| run.spawn(&env)).collect::<Result<Vec<_>, _>>()?;
    wait_all(&mut children)?;
    let jobs = queue.list(&JobFilter::new().name("limited").limit(100)).map_err(|e| e.to_string())?;
    let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
    for job in &jobs {
        if (job.status, job.attempt) != (JobStatus::Completed, 1) {
            return Err(format!("job {} ended {:?} after {} attempts", job.id, job.status, job.attempt));
        }
        let started = job.started_at.ok_or("a completed job without a start")?;
        *per_second.entry(started.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()).or_default() += 1;
    }
    if per_second.values().any(|n| *n > 4) {
        return Err(format!("claims per second: {per_second:?}"));
    }
    // Handler intervals from the ledger: at most 2 at once.
    let ledger = run.ledger()?;
    let mut events: Vec<(u128, i32)> = Vec::new();
    let mut starts = HashSet::new();
    for line in ledger.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let at: u128 = parts.get(2).and_then(|t| t.parse().ok()).unwrap_or_default();
        match parts.first() {
            Some(&"lim-start") => {
                if !starts.insert(parts[1].to_owned()) {
                    return Err(format!("job {} ran twice", parts[1]));
                }
                events.push((at, 1));
            }
            Some(&"lim-end") => events.push((at, -1)),
            _ => {}
        }
    }
    events.sort_unstable();
    let (mut running, mut most) = (0, 0);
    for (_, delta) in events {
        running += delta;
        most = most.max(running);
    }
    if most > 2 || starts.len() != 24 {
        return Err(format!("{most} handlers at once, {} jobs ran", starts.len()));
    }
    Ok(format!("24 jobs over {} windows (at most 4 each), at most {most} running at once", per_second.len()))
}
