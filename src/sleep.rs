//! Durable sleep: a wait recorded as a checkpoint, which suspends the job and frees its thread
//! until the deadline instead of blocking.

use std::time::{Duration, SystemTime};

use durable_jobs_store::{Checkpoint, Timestamp};

use crate::context::Suspension;
use crate::{Error, JobContext};

/// The checkpoint name of a sleep. Step names start with a letter, so no step can take it;
/// a step where a sleep was recorded (or the reverse) is a determinism error naming both.
pub(crate) const SLEEP: &str = "@sleep";

impl JobContext {
    /// Sleeps durably for `duration`: the job is suspended (status `Waiting`), its worker
    /// thread runs other jobs, and the handler runs again from the top once the time has
    /// passed, replaying its checkpoints, so the sleep survives restarts and crashes.
    ///
    /// - Returns [`Error::Suspended`]: return it from the handler (`?` does). When the handler
    ///   returns, the sleep's checkpoint and the suspension commit in one transaction; whatever
    ///   the handler returns after asking to sleep is discarded (no step starts after it:
    ///   they return `Error::Suspended` too). The next run returns `Ok(())` here and goes on.
    /// - The sleep takes the next step position (shared with [`call`](crate::call) and
    ///   [`step`](Self::step)). Its deadline is recorded when the suspension commits, moments
    ///   after the call, and every later run keeps it: a run after a restart sleeps only what
    ///   is left. (A run that dies, panics or times out before its suspension commits records
    ///   nothing: its next run sleeps again from then.) A deadline already past is recorded
    ///   and the handler goes on without suspending.
    /// - Suspending and waking charge no attempt, and a job's timeout does not run while it
    ///   sleeps.
    /// - A worker of this process starts the job within a millisecond or two of its deadline; a
    ///   worker of another process within its poll interval.
    /// - Inside a step ([`call`](crate::call) or [`step`](Self::step)) a durable sleep cannot
    ///   suspend: [`Error::WaitInStep`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use durable_jobs::{JobContext, JobOptions, JobStatus, ManualClock, MemoryStore, Queue};
    ///
    /// let clock = ManualClock::new();
    /// let queue = Queue::builder(MemoryStore::new()).clock(clock.clone()).build();
    /// queue.register("reminder", |ctx: &JobContext, (): ()| -> Result<(), durable_jobs::Error> {
    ///     ctx.step("sign-up", || Ok::<_, std::io::Error>(()))?;
    ///     ctx.sleep(Duration::from_secs(24 * 3600))?;
    ///     ctx.step("send-reminder", || Ok::<_, std::io::Error>(()))
    /// })?;
    /// let id = queue.enqueue("reminder", &(), JobOptions::new())?;
    /// queue.run_one("default")?;
    /// assert_eq!(queue.job(id)?.unwrap().status, JobStatus::Waiting, "asleep, no thread held");
    /// clock.advance(Duration::from_secs(24 * 3600));
    /// queue.run_one("default")?;
    /// assert_eq!(queue.job(id)?.unwrap().status, JobStatus::Completed);
    /// # Ok::<(), durable_jobs::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Suspended`] to return from the handler; [`Error::Determinism`] if a step was
    /// recorded at this position; [`Error::WaitInStep`] inside a step; the errors of
    /// [`call`](crate::call) recording a checkpoint.
    pub fn sleep(&self, duration: Duration) -> Result<(), Error> {
        self.sleep_to(self.queue.now().saturating_add(duration))
    }

    /// Sleeps durably until `deadline`, as [`sleep`](Self::sleep) does.
    ///
    /// # Errors
    ///
    /// As [`sleep`](Self::sleep).
    pub fn sleep_until(&self, deadline: SystemTime) -> Result<(), Error> {
        self.sleep_to(Timestamp::from_system_time(deadline))
    }

    fn sleep_to(&self, wanted: Timestamp) -> Result<(), Error> {
        self.at_next_position(SLEEP, |index| match index {
            Some(index) => self.sleep_at(index, wanted),
            None => Err(Error::WaitInStep { job: self.id() }),
        })
    }

    /// The sleep at step position `index`: replayed, recorded, or suspending.
    fn sleep_at(&self, index: u32, wanted: Timestamp) -> Result<(), Error> {
        let (deadline, checkpoint) = match self.recorded_value::<i64>(index, SLEEP)? {
            Some(recorded) => (Timestamp(recorded), None),
            None => (wanted, Some(Checkpoint::value(index, SLEEP, wanted.0.to_string().into_bytes()))),
        };
        if deadline <= self.queue.now() {
            if let Some(checkpoint) = checkpoint {
                self.checkpoint(checkpoint)?;
            }
            return Ok(());
        }
        Err(self.suspend(Suspension { checkpoint, wake_at: Some(deadline), ..Suspension::default() }))
    }
}
