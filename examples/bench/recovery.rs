//! W7: recovery after a worker process is killed with SIGKILL.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_jobs::{JobContext, JobOptions, Queue};

use super::{open_store, progress, row, wait_all_done, Bench, Res, Row};

impl Bench {
    /// W7: SIGKILL a worker process holding 100 running jobs, start another (default 30 s
    /// lease): how long until it has finished them. It finds the dead process's lock file free
    /// and recovers its jobs at once, instead of waiting out the lease.
    pub(super) fn w7(&self) -> Res<Row> {
        progress("W7", "SIGKILL a worker holding 100 running jobs; time until another finished them");
        let dir = self.path("w7");
        std::fs::create_dir_all(&dir)?;
        {
            let queue = self.queue(&dir.join("db"))?;
            queue.enqueue_batch("stuck", &[(); 100], JobOptions::new())?;
        }
        let mut child = Command::new(std::env::current_exe()?)
            .env("DJ_BENCH_CHILD", &dir)
            .env("DJ_BENCH_STORE", &self.args.store)
            .spawn()?;
        let ready = dir.join("running");
        let since = Instant::now();
        while !ready.exists() {
            if since.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                return Err("the child never held 100 running jobs".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill()?;
        child.wait()?;
        let killed = Instant::now();
        let queue = self.queue(&dir.join("db"))?;
        let worker = queue.worker().concurrency(8).start()?;
        wait_all_done(&queue)?;
        let ms = killed.elapsed().as_secs_f64() * 1000.0;
        worker.shutdown();
        Ok(row("W7", "recovery after SIGKILL, same machine, lease 30 s", ms, "ms", None, "milliseconds, not the lease"))
    }
}

/// W7's child: holds 100 `stuck` jobs running (their handlers never return) until killed.
pub(super) fn recovery_child(dir: &Path) -> ExitCode {
    let kind = std::env::var("DJ_BENCH_STORE").unwrap_or_default();
    let Ok(store) = open_store(&kind, &dir.join("db"), durable_jobs::sqlite::SqliteOptions::new()) else {
        return ExitCode::FAILURE;
    };
    let queue = Queue::new(store);
    let running = Arc::new(AtomicUsize::new(0));
    let (r, marker) = (running.clone(), dir.join("running"));
    let registered = queue.register("stuck", move |_: &JobContext, (): ()| -> Result<(), std::io::Error> {
        if r.fetch_add(1, Ordering::SeqCst) + 1 == 100 {
            std::fs::write(&marker, b"")?;
        }
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    });
    if registered.is_err() {
        return ExitCode::FAILURE;
    }
    let Ok(_worker) = queue.worker().concurrency(100).prefetch(0).start() else {
        return ExitCode::FAILURE;
    };
    loop {
        std::thread::sleep(Duration::from_secs(60));
        if queue.counts().is_ok_and(|c| c.total().prefetched + c.total().running == 0) {
            return ExitCode::SUCCESS;
        }
    }
}
