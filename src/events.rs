//! Events: what happened to jobs, told to the listeners registered with [`Queue::on_event`].
//! Which event fires when, and on which thread, is in [`observability`](crate::observability).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use durable_jobs_store::JobId;
use parking_lot::RwLock;

use crate::{unwind, Queue};

/// Something that happened to a job, told to the listeners of [`Queue::on_event`] once it is
/// durable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// The job.
    pub job: JobId,
    /// Its handler name.
    pub name: String,
    /// Its queue.
    pub queue: String,
    /// The run's attempt number (from 1); for [`EventKind::Reclaimed`] and a dead letter that
    /// follows it, the attempts charged so far.
    pub attempt: u32,
    /// What happened.
    pub kind: EventKind,
}

/// What an [`Event`] says happened. The variants are listed in
/// [`observability`](crate::observability#events) with the moment each fires.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A run's handler is about to start (after its claim, and after its start is confirmed
    /// when the store asks for that). Every run starts with one, including a run that resumes
    /// a suspended workflow.
    Started,
    /// The job completed: its result is stored.
    #[non_exhaustive]
    Completed {
        /// How long the run's handler ran.
        run_time: Duration,
    },
    /// The attempt failed and another is scheduled.
    #[non_exhaustive]
    Retrying {
        /// What went wrong.
        error: String,
        /// When the next attempt may start.
        retry_at: SystemTime,
        /// How long the run's handler ran.
        run_time: Duration,
    },
    /// The job failed for good before its attempts ran out: a permanent error
    /// ([`Error::permanent`](crate::Error::permanent)), arguments that do not decode, a result
    /// too large, a determinism error.
    #[non_exhaustive]
    Failed {
        /// What went wrong.
        error: String,
        /// How long the run's handler ran.
        run_time: Duration,
    },
    /// The job failed for good because its last attempt failed with a retryable error (or was
    /// lost with its worker): dead-lettered, kept with status `Failed` for inspection and
    /// [`requeue`](crate::Queue::requeue).
    #[non_exhaustive]
    DeadLettered {
        /// What went wrong.
        error: String,
        /// How long the run's handler ran; `None` for a run lost with its worker.
        run_time: Option<Duration>,
    },
    /// The run ended in a durable wait (a sleep, a signal wait, a fan-out): status `Waiting`,
    /// no thread held.
    #[non_exhaustive]
    Suspended {
        /// When the wait ends by time, if it has a deadline.
        wake_at: Option<SystemTime>,
        /// How long the run's handler ran.
        run_time: Duration,
    },
    /// A run went past a durable wait that an earlier run suspended at and left unresolved.
    #[non_exhaustive]
    Woken {
        /// The wait's checkpoint name: `@sleep`, `@signal:<name>`, `@fan-out`.
        step: String,
        /// The wait's step position.
        index: u32,
    },
    /// The job's run was lost (its worker died or stalled past its lease) and a reaper took
    /// the job back: pending again, or failed for good if the lost run was its last attempt
    /// (a [`DeadLettered`](Self::DeadLettered) follows then).
    #[non_exhaustive]
    Reclaimed {
        /// Whether the lost run was charged an attempt (its handler had started).
        charged: bool,
    },
    /// The job was cancelled while it ran ([`Queue::cancel`](crate::Queue::cancel)), and its
    /// run ended: status `Cancelled`, not retried. (A job cancelled while it waited to run tells
    /// nothing: no run ended.)
    #[non_exhaustive]
    Cancelled {
        /// How the run ended: the handler's error once it was told to stop.
        error: String,
        /// How long the run's handler ran.
        run_time: Duration,
    },
}

type Listener = Box<dyn Fn(&Event) + Send + Sync>;

/// The listeners of one queue (and its clones).
#[derive(Default)]
pub(crate) struct Listeners {
    /// Whether any listener is registered: events are built only then.
    active: AtomicBool,
    /// Swapped whole on registration, so telling an event holds no lock while listeners run
    /// (a listener may register another).
    list: RwLock<Arc<Vec<Arc<Registered>>>>,
}

struct Registered {
    listener: Listener,
    /// Whether a panic of this listener has been logged.
    warned: AtomicBool,
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listeners").field("count", &self.list.read().len()).finish_non_exhaustive()
    }
}

impl Listeners {
    /// Whether an event would reach anyone.
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Tells the event `make` builds to every listener, if there is any (nothing is built
    /// otherwise). A panicking listener is contained: the others and later events still run.
    pub(crate) fn emit(&self, make: impl FnOnce() -> Event) {
        if !self.is_active() {
            return;
        }
        let list = self.list.read().clone();
        let event = make();
        for registered in list.iter() {
            if let Err(panic) = unwind::catch(|| (registered.listener)(&event)) {
                if registered.warned.swap(true, Ordering::Relaxed) {
                    tracing::debug!(panic = %panic, job = %event.job, "an event listener panicked again");
                } else {
                    tracing::warn!(panic = %panic, job = %event.job, kind = ?event.kind, "an event listener panicked; the panic is contained (later panics of this listener are logged at debug level)");
                }
            }
        }
    }

    fn add(&self, listener: Listener) {
        let mut list = self.list.write();
        let mut next = Vec::with_capacity(list.len() + 1);
        next.extend(list.iter().cloned());
        next.push(Arc::new(Registered { listener, warned: AtomicBool::new(false) }));
        *list = Arc::new(next);
        self.active.store(true, Ordering::Relaxed);
    }
}

impl Queue {
    /// Registers `listener`, called with every [`Event`] of this queue's jobs seen by this
    /// process (through this queue or any clone of it: its workers, [`run_one`](Self::run_one),
    /// its reapers) from now on. See [`observability`](crate::observability#events) for which
    /// event fires when.
    ///
    /// - A listener runs on the thread that learned the fact (a worker thread, the committer,
    ///   the maintenance thread), after the fact is durable, and holds that thread while it
    ///   runs: keep it short (count, log, or send to a channel and do the work elsewhere).
    /// - A panic in a listener is caught and logged (at warn level the first time, then at
    ///   debug level); it changes nothing for the job, the other listeners or later events.
    /// - Listeners cannot be removed; they live as long as the queue.
    /// - With no listener registered, no event is built.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use durable_jobs::{EventKind, JobContext, JobOptions, MemoryStore, Queue};
    ///
    /// let queue = Queue::new(MemoryStore::new());
    /// queue.register("greet", |_: &JobContext, who: String| Ok::<_, std::io::Error>(format!("hi {who}")))?;
    /// let (tx, rx) = mpsc::channel();
    /// queue.on_event(move |e| {
    ///     let _ = tx.send(e.clone());
    /// });
    /// let id = queue.enqueue("greet", "ada", JobOptions::new())?;
    /// queue.run_one("default")?;
    /// let kinds: Vec<EventKind> = rx.try_iter().map(|e| e.kind).collect();
    /// assert!(matches!(kinds[..], [EventKind::Started, EventKind::Completed { .. }]));
    /// # let _ = id;
    /// # Ok::<(), durable_jobs::Error>(())
    /// ```
    pub fn on_event<F>(&self, listener: F)
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        self.inner.events.add(Box::new(listener));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn event() -> Event {
        Event { job: JobId(1), name: "n".into(), queue: "q".into(), attempt: 1, kind: EventKind::Started }
    }

    #[test]
    fn nothing_is_built_without_listeners_and_a_panic_is_contained() {
        let listeners = Listeners::default();
        listeners.emit(|| unreachable!("no listener: no event is built"));
        let seen = Arc::new(AtomicUsize::new(0));
        listeners.add(Box::new(|_| panic!("listener bug")));
        let s = seen.clone();
        listeners.add(Box::new(move |_| {
            s.fetch_add(1, Ordering::Relaxed);
        }));
        listeners.emit(event);
        listeners.emit(event);
        assert_eq!(seen.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_listener_may_register_another_while_an_event_is_told() {
        let listeners = Arc::new(Listeners::default());
        let seen = Arc::new(AtomicUsize::new(0));
        let (l, s) = (Arc::downgrade(&listeners), seen.clone());
        listeners.add(Box::new(move |_| {
            let s = s.clone();
            if let Some(l) = l.upgrade() {
                l.add(Box::new(move |_| {
                    s.fetch_add(1, Ordering::Relaxed);
                }));
            }
        }));
        listeners.emit(event);
        assert_eq!(seen.load(Ordering::Relaxed), 0, "added during the event: not told it");
        listeners.emit(event);
        assert_eq!(seen.load(Ordering::Relaxed), 1, "the listener added during the first event");
    }
}
