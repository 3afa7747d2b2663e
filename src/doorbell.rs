//! Wakes a sleeping dispatcher: at once (a job was enqueued or a slot freed) or at a time.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A one-waiter wake-up signal that also remembers the earliest time someone asked to be
/// woken at.
#[derive(Debug, Default)]
pub(crate) struct Doorbell {
    state: Mutex<Rung>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct Rung {
    now: bool,
    at: Option<Instant>,
}

impl Doorbell {
    /// Wakes the waiter now.
    pub(crate) fn ring(&self) {
        self.state.lock().now = true;
        self.cv.notify_all();
    }

    /// Makes the waiter wake no later than `after` from now (a time too far to represent is
    /// left to polling).
    pub(crate) fn ring_in(&self, after: Duration) {
        let Some(at) = Instant::now().checked_add(after) else { return };
        let mut st = self.state.lock();
        if st.at.is_none_or(|t| at < t) {
            st.at = Some(at);
            self.cv.notify_all();
        }
    }

    /// Sleeps until rung, until a requested time, or for at most `max`.
    pub(crate) fn wait(&self, max: Duration) {
        let limit = Instant::now() + max;
        let mut st = self.state.lock();
        loop {
            if st.now {
                st.now = false;
                return;
            }
            let now = Instant::now();
            if st.at.is_some_and(|t| t <= now) {
                st.at = None;
                return;
            }
            if now >= limit {
                return;
            }
            let until = st.at.map_or(limit, |t| t.min(limit));
            self.cv.wait_until(&mut st, until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn ring_wakes_and_is_consumed() {
        let bell = Arc::new(Doorbell::default());
        bell.ring();
        let t = Instant::now();
        bell.wait(Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(1));
        let t = Instant::now();
        bell.wait(Duration::from_millis(30));
        assert!(t.elapsed() >= Duration::from_millis(30), "the ring was consumed");
        let b = bell.clone();
        let ringer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            b.ring();
        });
        let t = Instant::now();
        bell.wait(Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(4));
        ringer.join().unwrap();
    }

    #[test]
    fn ring_in_wakes_at_the_time() {
        let bell = Doorbell::default();
        let t = Instant::now();
        bell.ring_in(Duration::from_millis(40));
        bell.ring_in(Duration::from_secs(60));
        bell.ring_in(Duration::MAX);
        bell.wait(Duration::from_secs(5));
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(40) && waited < Duration::from_secs(4), "{waited:?}");
    }
}
