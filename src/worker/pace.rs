//! How many jobs a worker holds ahead of its free threads.
//!
//! Enough that the threads never wait for the next claim, no more: a held job is leased to this
//! worker and no other process can run it. The dispatcher holds about two claims' worth of work:
//! `2 · concurrency · claim time / handler time`, between `concurrency` and [`MAX_PREFETCH`]. Slow
//! handlers thus get one job ahead per thread; no-op handlers get batches of hundreds, which is
//! what lets one claim transaction (and one fsync) serve many jobs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The most jobs held ahead of free threads when the prefetch is adaptive.
pub(crate) const MAX_PREFETCH: usize = 1024;

#[derive(Debug)]
pub(crate) struct Pace {
    concurrency: usize,
    fixed: Option<usize>,
    /// Moving averages in microseconds, as `f64` bits.
    handler_us: AtomicU64,
    claim_us: AtomicU64,
}

impl Pace {
    pub(crate) fn new(concurrency: usize, fixed: Option<usize>) -> Self {
        let start = 1000.0_f64.to_bits();
        Pace { concurrency, fixed, handler_us: AtomicU64::new(start), claim_us: AtomicU64::new(start) }
    }

    /// The most jobs the worker may hold at once: running plus prefetched.
    pub(crate) fn capacity(&self) -> usize {
        self.concurrency + self.prefetch()
    }

    /// The largest capacity this pace can ask for (sizes the job channel).
    pub(crate) fn max_capacity(&self) -> usize {
        self.concurrency + self.fixed.unwrap_or(MAX_PREFETCH.max(self.concurrency))
    }

    fn prefetch(&self) -> usize {
        self.fixed.unwrap_or_else(|| {
            let (handler, claim) = (load(&self.handler_us).max(1.0), load(&self.claim_us));
            let ahead = 2.0 * self.concurrency as f64 * claim / handler;
            (ahead as usize).clamp(self.concurrency, MAX_PREFETCH.max(self.concurrency))
        })
    }

    pub(crate) fn record_handler(&self, took: Duration) {
        update(&self.handler_us, took);
    }

    pub(crate) fn record_claim(&self, took: Duration) {
        update(&self.claim_us, took);
    }
}

fn load(average: &AtomicU64) -> f64 {
    f64::from_bits(average.load(Ordering::Relaxed))
}

/// Moves an average a tenth of the way to `sample`. Racing updates may lose one; that is fine
/// for a rate estimate.
fn update(average: &AtomicU64, sample: Duration) {
    let next = 0.9f64.mul_add(load(average), 0.1 * sample.as_secs_f64() * 1e6);
    average.store(next.to_bits(), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_handlers_get_deep_prefetch_slow_ones_shallow() {
        let fast = Pace::new(2, None);
        for _ in 0..200 {
            fast.record_handler(Duration::from_micros(5));
            fast.record_claim(Duration::from_micros(400));
        }
        let capacity = fast.capacity();
        assert!((300..=330).contains(&capacity), "about 2 + 2 · 2 · 400 / 5, got {capacity}");
        let slow = Pace::new(4, None);
        for _ in 0..200 {
            slow.record_handler(Duration::from_secs(1));
            slow.record_claim(Duration::from_millis(1));
        }
        assert_eq!(slow.capacity(), 8, "one job ahead per thread");
        assert_eq!(Pace::new(3, Some(0)).capacity(), 3);
        assert_eq!(Pace::new(3, Some(7)).max_capacity(), 10);
    }
}
