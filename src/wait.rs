//! Blocking waits measured by the queue's [`Clock`]: every timer of the engine waits here, so a
//! virtual clock drives them all.

use std::sync::{Arc, Weak};
use std::task::{Wake, Waker};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::Clock;

/// State behind a mutex that threads wait on until it changes or a time (of the clock) comes.
#[derive(Debug)]
pub(crate) struct Waitable<T> {
    state: Mutex<T>,
    cv: Condvar,
}

/// Wakes a waitable when a virtual clock moves, without keeping it alive.
struct OnClockMove<T>(Weak<Waitable<T>>);

impl<T: Send + 'static> Wake for OnClockMove<T> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(w) = self.0.upgrade() {
            w.notify_all();
        }
    }
}

impl<T: Send + 'static> Waitable<T> {
    /// A waitable holding `value`, woken whenever `clock` jumps.
    pub(crate) fn new(clock: &dyn Clock, value: T) -> Arc<Self> {
        let waitable = Arc::new(Waitable { state: Mutex::new(value), cv: Condvar::new() });
        clock.subscribe(Waker::from(Arc::new(OnClockMove(Arc::downgrade(&waitable)))));
        waitable
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.state.lock()
    }

    /// Wakes every waiter to look at the state again. Takes the lock first, so that a waiter
    /// between its check and its wait cannot miss it.
    pub(crate) fn notify_all(&self) {
        drop(self.state.lock());
        self.cv.notify_all();
    }

    /// Changes the state and wakes the waiters.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let out = f(&mut self.state.lock());
        self.cv.notify_all();
        out
    }

    /// Waits until `ready` says so or the clock reaches `deadline` (its monotonic time; `None`:
    /// no deadline). Returns whether `ready` said so.
    pub(crate) fn wait_until(
        &self,
        clock: &dyn Clock,
        guard: &mut MutexGuard<'_, T>,
        deadline: Option<Duration>,
        mut ready: impl FnMut(&mut T) -> bool,
    ) -> bool {
        loop {
            if ready(guard) {
                return true;
            }
            if !self.wait_once(clock, guard, deadline) {
                return ready(guard);
            }
        }
    }

    /// Waits once: until woken (a change, a clock jump, or spuriously) or until the clock
    /// reaches `deadline`. Returns `false` if the deadline has passed.
    pub(crate) fn wait_once(
        &self,
        clock: &dyn Clock,
        guard: &mut MutexGuard<'_, T>,
        deadline: Option<Duration>,
    ) -> bool {
        let remaining = match deadline {
            Some(d) => match d.checked_sub(clock.monotonic()).filter(|r| !r.is_zero()) {
                Some(r) => Some(r),
                None => return false,
            },
            None => None,
        };
        match remaining.and_then(|r| clock.real_wait(r)) {
            Some(real) => {
                self.cv.wait_for(guard, real);
            }
            None => self.cv.wait(guard),
        }
        true
    }
}

/// Sleeps for `d` of `clock`'s time.
pub(crate) fn sleep(clock: &dyn Clock, d: Duration) {
    let deadline = clock.monotonic().saturating_add(d);
    let waitable = Waitable::new(clock, ());
    let mut guard = waitable.lock();
    waitable.wait_until(clock, &mut guard, Some(deadline), |()| false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, SystemClock};

    #[test]
    fn a_manual_clock_ends_waits_when_it_passes_their_deadline() {
        let clock = ManualClock::new();
        let waitable = Waitable::new(&clock, 0u32);
        let (c, w) = (clock.clone(), waitable.clone());
        let deadline = clock.monotonic() + Duration::from_secs(3600);
        let waiter = std::thread::spawn(move || {
            let mut guard = w.lock();
            w.wait_until(&c, &mut guard, Some(deadline), |_| false)
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "an hour of virtual time has not passed");
        clock.advance(Duration::from_secs(1800));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "half of it has");
        clock.advance(Duration::from_secs(1800));
        assert!(!waiter.join().unwrap(), "timed out, not ready");
    }

    #[test]
    fn a_change_ends_a_wait_before_its_deadline() {
        let waitable = Waitable::new(&SystemClock, 0u32);
        let w = waitable.clone();
        let waiter = std::thread::spawn(move || {
            let mut guard = w.lock();
            let deadline = SystemClock.monotonic() + Duration::from_secs(60);
            w.wait_until(&SystemClock, &mut guard, Some(deadline), |n| *n == 1)
        });
        std::thread::sleep(Duration::from_millis(20));
        waitable.update(|n| *n = 1);
        assert!(waiter.join().unwrap());
    }
}
