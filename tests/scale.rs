//! S12: 100,000 jobs through one worker pool on each persistent backend, each run exactly once,
//! with the process's memory growth while draining kept under the 100 MiB budget (memory must
//! not depend on the queue's depth). S13: a million jobs through a SQLite table with 1 s
//! retention, which stays bounded. The claim cost with a million finished jobs is pinned in
//! the SQLite crate by counting VM steps; speed is measured by the benchmarks, not asserted.

#![allow(clippy::unwrap_used)]
// Nothing to run without a persistent backend.
#![cfg(any(feature = "sqlite", feature = "sled"))]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_jobs::{JobContext, JobOptions, Queue, Store};

const JOBS: usize = 100_000;

fn hundred_thousand_jobs_run_once(store: Box<dyn Store>) {
    let queue = Queue::new(store);
    let runs: Arc<Vec<AtomicU8>> = Arc::new((0..JOBS).map(|_| AtomicU8::new(0)).collect());
    let r = runs.clone();
    queue
        .register("count", move |_: &JobContext, n: usize| -> Result<(), std::io::Error> {
            r[n].fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    let args: Vec<usize> = (0..JOBS).collect();
    let mut last = None;
    for chunk in args.chunks(1000) {
        last = queue.enqueue_batch("count", chunk, JobOptions::new()).unwrap().last().copied();
    }
    let baseline = rss_kib();
    assert!(baseline > 0, "memory is read from /proc/self/status");
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let started = Instant::now();
    let worker = queue.worker().concurrency(4).start().unwrap();
    queue.wait(last.unwrap(), Duration::from_secs(600)).unwrap();
    while runs.iter().map(|r| usize::from(r.load(Ordering::Relaxed))).sum::<usize>() < JOBS {
        assert!(started.elapsed() < Duration::from_secs(600), "not all jobs ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    worker.shutdown();
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let growth_mib = peak.load(Ordering::Relaxed).saturating_sub(baseline) / 1024;
    let counts = queue.counts().unwrap();
    let completed = counts.total().completed;
    assert_eq!(completed, JOBS as u64, "{counts:?}");
    let twice: Vec<usize> = (0..JOBS).filter(|&n| runs[n].load(Ordering::Relaxed) != 1).collect();
    assert!(
        twice.is_empty(),
        "{} jobs did not run exactly once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    eprintln!(
        "{JOBS} jobs drained in {elapsed:.1?} ({:.0} jobs/s, debug build); memory grew {growth_mib} MiB while draining",
        JOBS as f64 / elapsed.as_secs_f64()
    );
    assert!(growth_mib <= 100, "memory grew {growth_mib} MiB while draining {JOBS} jobs");
}

/// This process's resident memory in KiB (0 where /proc is missing).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// One test, backends in turn, so that the memory samples of one do not mix with the other's.
#[test]
fn every_backend_runs_100k_jobs_once_in_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    #[cfg(feature = "sqlite")]
    hundred_thousand_jobs_run_once(Box::new(
        durable_jobs::sqlite::SqliteStore::open(dir.path().join("jobs.db")).unwrap(),
    ));
    #[cfg(feature = "sled")]
    hundred_thousand_jobs_run_once(Box::new(durable_jobs::sled::SledStore::open(dir.path().join("jobs")).unwrap()));
    assert!(dir.path().exists());
}

/// S13: a million jobs pass through one SQLite table whose finished jobs are kept 1 s: the
/// table stays bounded while they flow (sampled every 50,000 jobs) and ends empty, and every
/// job ran exactly once.
#[cfg(feature = "sqlite")]
#[test]
fn a_million_jobs_pass_through_a_bounded_table() {
    const MILLION: usize = 1_000_000;
    /// The producer stays at most this far ahead of the workers.
    const BACKLOG: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::new(durable_jobs::sqlite::SqliteStore::open(dir.path().join("jobs.db")).unwrap());
    let ran = Arc::new(AtomicU64::new(0));
    let r = ran.clone();
    queue
        .register("count", move |_: &JobContext, (): ()| -> Result<(), std::io::Error> {
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    let retention =
        durable_jobs::Retention::default().completed(Duration::from_secs(1)).every(Duration::from_millis(250));
    let worker = queue.worker().concurrency(4).retention(retention).start().unwrap();
    let (started, mut most_rows) = (Instant::now(), 0);
    for batch in 0..MILLION / 1000 {
        if batch % 50 == 0 {
            let total = queue.counts().unwrap().total();
            most_rows = most_rows.max(total.total());
            while queue.counts().unwrap().total().unfinished() > BACKLOG {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        queue.enqueue_batch("count", &[(); 1000], JobOptions::new()).unwrap();
    }
    while ran.load(Ordering::Relaxed) < MILLION as u64 {
        assert!(started.elapsed() < Duration::from_secs(900), "not all jobs ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    let drained = started.elapsed();
    let mut left = u64::MAX;
    while left > 0 {
        assert!(started.elapsed() < Duration::from_secs(960), "{left} jobs left after the drain");
        std::thread::sleep(Duration::from_millis(100));
        left = queue.counts().unwrap().total().total();
    }
    worker.shutdown();
    eprintln!(
        "{MILLION} jobs through a table with 1 s retention in {drained:.1?} (debug build); at most {most_rows} rows seen, 0 left {:.1?} later",
        started.elapsed().saturating_sub(drained)
    );
    assert_eq!(ran.load(Ordering::Relaxed), MILLION as u64, "every job ran once");
    assert!(most_rows <= 200_000, "the table held {most_rows} rows");
}
