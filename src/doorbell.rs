//! Wakes a sleeping dispatcher: at once (a job was enqueued or a slot freed) or when the
//! earliest known due time comes (a delayed job, a retry, a wake-up).

use std::sync::Arc;
use std::time::Duration;

use durable_jobs_store::Timestamp;

use crate::wait::Waitable;
use crate::Clock;

/// A one-waiter wake-up signal that also keeps the earliest time someone asked to be woken at.
///
/// Due times only move earlier until one fires: a due time that turns out stale costs one
/// extra claim, while a forgotten one would leave a job waiting for the poll.
#[derive(Debug)]
pub(crate) struct Doorbell {
    clock: Arc<dyn Clock>,
    state: Arc<Waitable<Rung>>,
}

#[derive(Debug, Default)]
struct Rung {
    now: bool,
    /// The earliest due time, on the clock's monotonic scale.
    due: Option<Duration>,
}

impl Doorbell {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        let state = Waitable::new(&*clock, Rung::default());
        Doorbell { clock, state }
    }

    /// Wakes the waiter now.
    pub(crate) fn ring(&self) {
        self.state.update(|r| r.now = true);
    }

    /// Makes the waiter wake no later than `after` from now (a time too far to represent is
    /// left to polling).
    pub(crate) fn ring_in(&self, after: Duration) {
        let Some(at) = self.clock.monotonic().checked_add(after) else { return };
        self.state.update(|r| {
            if r.due.is_none_or(|due| at < due) {
                r.due = Some(at);
            }
        });
    }

    /// Makes the waiter wake no later than the wall-clock time `at`.
    pub(crate) fn ring_at(&self, at: Timestamp) {
        let now = Timestamp::from_system_time(self.clock.now());
        if at <= now {
            self.ring();
        } else {
            self.ring_in(at.duration_since(now));
        }
    }

    /// Sleeps until rung, until the due time (also one set while sleeping), or for at most
    /// `max`.
    pub(crate) fn wait(&self, max: Duration) {
        let clock = &*self.clock;
        let limit = clock.monotonic().saturating_add(max);
        let mut rung = self.state.lock();
        loop {
            if std::mem::take(&mut rung.now) {
                return;
            }
            let now = clock.monotonic();
            if rung.due.is_some_and(|due| due <= now) {
                rung.due = None;
                return;
            }
            if now >= limit {
                return;
            }
            let deadline = rung.due.map_or(limit, |due| due.min(limit));
            self.state.wait_once(clock, &mut rung, Some(deadline));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    fn bell() -> (ManualClock, Arc<Doorbell>) {
        let clock = ManualClock::new();
        (clock.clone(), Arc::new(Doorbell::new(Arc::new(clock))))
    }

    #[test]
    fn ring_wakes_and_is_consumed() {
        let (clock, bell) = bell();
        bell.ring();
        bell.wait(Duration::from_secs(3600));
        let b = bell.clone();
        let waiter = std::thread::spawn(move || b.wait(Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!waiter.is_finished(), "the ring was consumed");
        bell.ring();
        waiter.join().unwrap();
        // The longest wait ends once a minute of virtual time has passed after it began.
        let b = bell.clone();
        let waiter = std::thread::spawn(move || b.wait(Duration::from_secs(60)));
        while !waiter.is_finished() {
            clock.advance(Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(5));
        }
        waiter.join().unwrap();
    }

    #[test]
    fn the_earliest_due_time_wakes_the_waiter_then_is_cleared() {
        let (clock, bell) = bell();
        bell.ring_in(Duration::from_secs(40));
        bell.ring_in(Duration::from_secs(60));
        bell.ring_in(Duration::MAX);
        let b = bell.clone();
        let waiter = std::thread::spawn(move || b.wait(Duration::from_secs(3600)));
        clock.advance(Duration::from_secs(39));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!waiter.is_finished(), "not due yet");
        clock.advance(Duration::from_secs(1));
        waiter.join().unwrap();
        let b = bell.clone();
        let waiter = std::thread::spawn(move || b.wait(Duration::from_secs(3600)));
        clock.advance(Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!waiter.is_finished(), "the later due time was not kept: the store reports it again");
        bell.ring_at(Timestamp::from_system_time(clock.now()));
        waiter.join().unwrap();
    }

    /// A due time set while the waiter sleeps shortens its sleep (real time: nothing but the
    /// due time can end this hour-long wait).
    #[test]
    fn a_due_time_set_during_a_wait_is_kept() {
        let bell = Arc::new(Doorbell::new(Arc::new(crate::SystemClock)));
        let b = bell.clone();
        let waiter = std::thread::spawn(move || b.wait(Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(30));
        bell.ring_in(Duration::from_millis(20));
        let since = std::time::Instant::now();
        while !waiter.is_finished() && since.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(waiter.is_finished(), "the due time set during the wait did not end it");
    }
}
