//! Supervised threads: a panic in any thread of a pool is caught, logged, and fails the pool
//! (it stops claiming, hands back what it has not started, and reports the failure), instead
//! of silently stopping part of it while the rest looks alive.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::WorkerShared;
use crate::wait::Waitable;
use crate::{unwind, Clock, Error};

/// Whether a pool is healthy, and which of its threads have ended.
#[derive(Debug)]
pub(crate) struct Health {
    /// The first failure: the thread and what happened.
    failure: Mutex<Option<(String, String)>>,
    /// Names of the threads that have ended, however they ended.
    exited: Arc<Waitable<HashSet<String>>>,
}

impl Health {
    pub(crate) fn new(clock: &dyn Clock) -> Self {
        Health { failure: Mutex::new(None), exited: Waitable::new(clock, HashSet::new()) }
    }

    pub(crate) fn failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .as_ref()
            .map(|(thread, message)| Error::WorkerFailed { thread: thread.clone(), message: message.clone() })
    }

    /// Whether the thread `name` has ended (its closure returned; joining it cannot block for
    /// more than its last few instructions).
    pub(crate) fn has_exited(&self, name: &str) -> bool {
        self.exited.lock().contains(name)
    }

    /// Waits until every thread in `names` has ended or the clock reaches `deadline`; returns
    /// the ones that have not.
    pub(crate) fn wait_exits(&self, clock: &dyn Clock, names: &[String], deadline: Duration) -> Vec<String> {
        let mut exited = self.exited.lock();
        self.exited.wait_until(clock, &mut exited, Some(deadline), |e| names.iter().all(|n| e.contains(n)));
        names.iter().filter(|n| !exited.contains(*n)).cloned().collect()
    }
}

/// Starts a thread named `name` running `f`, supervised.
pub(crate) fn spawn(
    name: String,
    shared: &Arc<WorkerShared>,
    f: impl FnOnce(&Arc<WorkerShared>) + Send + 'static,
) -> Result<JoinHandle<()>, Error> {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            if let Err(panic) = unwind::catch(|| f(&shared)) {
                fail(&shared, &name, &panic);
            }
            shared.health.exited.update(|e| e.insert(name));
        })
        .map_err(Error::Spawn)
}

/// Fails the pool: records the failure, stops claiming, hands back the runs not started.
pub(crate) fn fail(shared: &Arc<WorkerShared>, thread: &str, message: &str) {
    tracing::error!(thread, message, "a worker thread failed; the worker pool stops");
    {
        let mut failure = shared.health.failure.lock();
        if failure.is_none() {
            *failure = Some((thread.to_owned(), message.to_owned()));
        }
    }
    shared.stop_claiming();
    // Runs not started are handed back now; running ones finish. The store may be what
    // failed: a panic here must not hide the first one.
    let _ = unwind::catch(|| super::release(shared, &shared.held.waiting()));
}
