//! Durable signals: a message sent to a job from outside ([`Queue::signal`]), received exactly
//! once by its workflow ([`wait_signal`], [`wait_signal_timeout`]), which waits for it
//! suspended, holding no thread.

use std::time::Duration;

use durable_jobs_store::{Checkpoint, JobId, Signal, SignalId, SignalOutcome, Timestamp, Write};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::context::Suspension;
use crate::{names, Error, JobContext, Queue};

/// What a signal wait's checkpoint records: waiting (with its deadline, fixed at the first
/// run), the payload received, or that the deadline passed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Recorded {
    Waiting { until: Option<i64> },
    Received(serde_json::Value),
    TimedOut,
}

/// Waits durably for a signal named `name` sent to this job with [`Queue::signal`], and returns
/// its payload.
///
/// - If a signal of that name is pending (sent at any time since the job was enqueued, even
///   before the wait), the oldest is consumed, in the same transaction that records it as this
///   step's checkpoint: each signal is received by exactly one wait, in sending order.
/// - Otherwise the job is suspended (status `Waiting`, no thread held): returns
///   [`Error::Suspended`], which the handler returns (`?` does). A signal of that name wakes it
///   (a worker of this process at once, of another process within its poll interval) and the
///   handler replays to here and receives it.
/// - The wait takes the next step position (shared with [`call`](crate::call),
///   [`JobContext::step`] and the other waits); a replay returns the recorded payload.
///
/// ```
/// use durable_jobs::{wait_signal, JobContext, JobOptions, JobStatus, MemoryStore, Queue};
///
/// let queue = Queue::new(MemoryStore::new());
/// queue.register("signup", |ctx: &JobContext, user: String| -> Result<String, durable_jobs::Error> {
///     let code: u32 = wait_signal(ctx, "confirmed")?;
///     Ok(format!("{user} confirmed with {code}"))
/// })?;
/// let id = queue.enqueue("signup", "ada", JobOptions::new())?;
/// queue.run_one("default")?;
/// assert_eq!(queue.job(id)?.unwrap().status, JobStatus::Waiting);
/// queue.signal(id, "confirmed", &1234)?;
/// queue.run_one("default")?;
/// assert_eq!(queue.result::<String>(id)?, "ada confirmed with 1234");
/// # Ok::<(), durable_jobs::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Suspended`] to return from the handler; [`Error::Decode`] (naming the job and the
/// signal) if the payload does not decode as `T`: the signal is received all the same (a bad
/// payload cannot block the signals behind it) and its payload kept in the wait's checkpoint,
/// so a handler may catch the error and wait again, and a job requeued after a fix receives it;
/// [`Error::InvalidName`] for a bad name; [`Error::Determinism`] if another step was recorded
/// at this position; [`Error::WaitInStep`] inside a step; [`Error::LeaseLost`] or
/// [`Error::Store`] if receiving could not be recorded.
pub fn wait_signal<T: DeserializeOwned>(ctx: &JobContext, name: &str) -> Result<T, Error> {
    // Only a wait with a deadline returns `None`: this one has none.
    ctx.receive(name, None)?.ok_or(Error::Suspended { job: ctx.id() })
}

/// Waits durably for a signal named `name`, as [`wait_signal`] does, for at most `timeout`:
/// `Ok(None)` once the timeout has passed with no signal. The deadline is fixed when the wait
/// first runs and recorded, so a replay after a restart waits only what is left. A signal sent
/// after the wait has recorded its timeout stays pending for a later wait.
///
/// ```
/// use std::time::Duration;
/// use durable_jobs::{wait_signal_timeout, JobContext, JobOptions, ManualClock, MemoryStore, Queue};
///
/// let clock = ManualClock::new();
/// let queue = Queue::builder(MemoryStore::new()).clock(clock.clone()).build();
/// queue.register("signup", |ctx: &JobContext, (): ()| -> Result<&'static str, durable_jobs::Error> {
///     match wait_signal_timeout::<()>(ctx, "confirmed", Duration::from_secs(3600))? {
///         Some(()) => Ok("activated"),
///         None => Ok("reminded"),
///     }
/// })?;
/// let id = queue.enqueue("signup", &(), JobOptions::new())?;
/// queue.run_one("default")?;
/// clock.advance(Duration::from_secs(3600));
/// queue.run_one("default")?;
/// assert_eq!(queue.result::<String>(id)?, "reminded");
/// # Ok::<(), durable_jobs::Error>(())
/// ```
///
/// # Errors
///
/// As [`wait_signal`].
pub fn wait_signal_timeout<T: DeserializeOwned>(
    ctx: &JobContext,
    name: &str,
    timeout: Duration,
) -> Result<Option<T>, Error> {
    ctx.receive(name, Some(timeout))
}

impl JobContext {
    fn receive<T: DeserializeOwned>(&self, name: &str, timeout: Option<Duration>) -> Result<Option<T>, Error> {
        names::validate("signal", name)?;
        let step = format!("@signal:{name}");
        self.at_next_position(&step, |index| match index {
            Some(index) => self.receive_at(index, &step, name, timeout),
            None => Err(Error::WaitInStep { job: self.id() }),
        })
    }

    /// The signal wait at step position `index`: replayed, received, timed out, or suspending.
    fn receive_at<T: DeserializeOwned>(
        &self,
        index: u32,
        step: &str,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<T>, Error> {
        let now = self.queue.now();
        let recorded = self.recorded_value::<Recorded>(index, step)?;
        let until = match recorded {
            Some(Recorded::Received(value)) => return self.decode_signal(name, value).map(Some),
            Some(Recorded::TimedOut) if timeout.is_none() => {
                let (recorded, called) = (format!("{step} (with a timeout)"), step.to_owned());
                return Err(Error::Determinism { job: self.id(), index, recorded, called });
            }
            Some(Recorded::TimedOut) => return Ok(None),
            // A wait with a deadline cannot replay as one without, nor the other way round.
            Some(Recorded::Waiting { until }) if until.is_some() != timeout.is_some() => {
                let with = |t: bool| format!("{step} ({} a timeout)", if t { "with" } else { "without" });
                let (recorded, called) = (with(until.is_some()), with(timeout.is_some()));
                return Err(Error::Determinism { job: self.id(), index, recorded, called });
            }
            Some(Recorded::Waiting { until }) => until.map(Timestamp),
            None => timeout.map(|t| now.saturating_add(t)),
        };
        let pending = self.queue.store.signals(self.id())?.into_iter().find(|s| s.name == name);
        if let Some(signal) = pending {
            let value: serde_json::Value = serde_json::from_slice(&signal.payload).map_err(|source| Error::Decode {
                job: self.id(),
                name: name.to_owned(),
                what: "signal",
                source,
            })?;
            // Received (and recorded) even if it does not decode as `T`, so that a bad payload
            // cannot block the signals behind it: the error is the wait's outcome, and a replay
            // with code that can decode it receives it.
            let checkpoint = Checkpoint::value(index, step, crate::call::to_json(&Recorded::Received(value.clone())));
            self.write(Write::receive(self.claim(), signal.id, checkpoint))?;
            return self.decode_signal(name, value).map(Some);
        }
        if until.is_some_and(|u| u <= now) {
            self.checkpoint(Checkpoint::value(index, step, crate::call::to_json(&Recorded::TimedOut)))?;
            return Ok(None);
        }
        let checkpoint = match recorded {
            Some(_) => None,
            None => Some(Checkpoint::value(
                index,
                step,
                crate::call::to_json(&Recorded::Waiting { until: until.map(|u| u.0) }),
            )),
        };
        Err(self.suspend(Suspension { checkpoint, wake_at: until, signal: Some(name.to_owned()), children: None }))
    }

    fn decode_signal<T: DeserializeOwned>(&self, name: &str, value: serde_json::Value) -> Result<T, Error> {
        serde_json::from_value(value).map_err(|source| Error::Decode {
            job: self.id(),
            name: name.to_owned(),
            what: "signal",
            source,
        })
    }
}

impl Queue {
    /// Sends signal `name` with `payload` to job `job`: stored durably (after every signal sent
    /// to it before) until a [`wait_signal`] of the job's workflow consumes it. A job waiting
    /// for this name is woken: by a worker of this process at once, of another process within
    /// its poll interval. A signal sent before the workflow waits is kept for the wait.
    ///
    /// Not idempotent: sending twice stores two signals (a retried call after an error may
    /// have stored one already; see [`signals`](Self::signals)).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if no job has this id, [`Error::JobFinished`] if it has finished
    /// (nothing is stored either way); [`Error::InvalidName`], [`Error::Encode`] or
    /// [`Error::PayloadTooLarge`] (the queue's payload limit, as for arguments) before anything
    /// is stored; [`Error::Store`] if the store fails.
    pub fn signal<P: Serialize + ?Sized>(&self, job: JobId, name: &str, payload: &P) -> Result<SignalId, Error> {
        names::validate("signal", name)?;
        let bytes = self.encode_checked(name, "signal payload", payload)?;
        let now = self.inner.now();
        match self.inner.store.signal(job, name, &bytes, now)? {
            SignalOutcome::Sent { id, woke } => {
                if woke {
                    self.inner.wake_workers(now);
                    self.inner.notify_committed();
                }
                Ok(id)
            }
            SignalOutcome::Finished(status) => Err(Error::JobFinished { job, status }),
            // `NotFound`, and any outcome a newer store adds: nothing was stored.
            _ => Err(Error::NotFound { job }),
        }
    }

    /// The signals sent to `job` and not received yet, oldest first.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store fails.
    pub fn signals(&self, job: JobId) -> Result<Vec<Signal>, Error> {
        Ok(self.inner.store.signals(job)?)
    }
}
