//! The shape of a worker process in production: run until SIGINT (Ctrl-C) or SIGTERM (a
//! deploy, `systemctl stop`, `docker stop`), then stop gracefully: claim nothing more, tell the
//! running handlers, let them finish within a bound, hand back what did not start (no attempt
//! charged), commit every outcome.
//!
//! A process killed by a signal it does not handle (SIGKILL, or SIGINT/SIGTERM without a
//! handler) is a crash: nothing acknowledged is lost, and the jobs it held are recovered by the
//! next worker on this machine at once, but handlers stop mid-step. Handling the signal turns
//! it into a clean stop.
//!
//! ```text
//! cargo run --release --example worker_service            # Ctrl-C to stop
//! timeout -s TERM 3 cargo run --release --example worker_service
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use durable_jobs::sqlite::SqliteStore;
use durable_jobs::{JobContext, JobOptions, Queue};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // SIGINT and SIGTERM set a flag (ctrlc calls this on a thread of its own); the main thread
    // owns the worker and does the shutdown.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;

    let dir = tempfile::tempdir()?;
    let queue = Queue::new(SqliteStore::open(dir.path().join("service.db"))?);
    queue.register("resize-image", |ctx: &JobContext, image: u32| -> Result<String, std::io::Error> {
        // A long job checks `is_cancelled` between units of work, so a shutdown stops it
        // between units (and it is released, not failed).
        for _ in 0..10 {
            if ctx.is_cancelled() {
                return Err(std::io::Error::other("stopped by the shutdown"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(format!("image-{image}-thumb.png"))
    })?;
    let worker = queue.worker().concurrency(2).shutdown_timeout(Duration::from_secs(5)).start()?;
    println!("worker {} running; Ctrl-C or SIGTERM stops it", worker.id());

    let mut next = 0u32;
    while !stop.load(Ordering::SeqCst) {
        // Stands for the rest of the program (a web server, a scheduler) enqueueing work.
        queue.enqueue("resize-image", &next, JobOptions::new())?;
        next += 1;
        std::thread::sleep(Duration::from_millis(50));
    }

    println!("signal received: stopping gracefully");
    let report = worker.shutdown();
    let counts = queue.counts()?.total();
    println!(
        "stopped gracefully: {} jobs completed, {} handed back unfinished without charge, {} handlers abandoned",
        counts.completed, report.released, report.abandoned
    );
    Ok(())
}
