//! What the examples share: a graceful stop on Ctrl-C (SIGINT) and SIGTERM.
//!
//! Without a handler those signals kill the process, which the library survives (a crash
//! loses nothing acknowledged) but which stops handlers mid-step. With one, the main thread
//! sees the request, calls `worker.shutdown()`, and the worker hands back what it holds
//! without charging an attempt.

// Each example uses the part it needs.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_jobs::{Error, JobId, JobInfo, Queue};

/// Set when SIGINT or SIGTERM arrives (`ctrlc` runs the handler on a thread of its own).
pub(crate) struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Installs the handler; one per process.
    pub(crate) fn on_signals() -> Result<Stop, ctrlc::Error> {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        ctrlc::set_handler(move || f.store(true, Ordering::SeqCst))?;
        Ok(Stop(flag))
    }

    /// Whether a stop was asked for.
    pub(crate) fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Waits for job `id` to finish, for at most `timeout`: `None` if a stop was asked for
    /// first (the caller shuts its worker down).
    pub(crate) fn wait(&self, queue: &Queue, id: JobId, timeout: Duration) -> Result<Option<JobInfo>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.requested() {
                println!("\nInterrupted: stopping gracefully (running jobs finish or are handed back)");
                return Ok(None);
            }
            let slice = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
            match queue.wait(id, slice) {
                Ok(info) => return Ok(Some(info)),
                Err(Error::WaitTimeout { .. }) if Instant::now() < deadline => {}
                Err(e) => return Err(e),
            }
        }
    }
}
