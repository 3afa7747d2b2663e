//! When a failed attempt runs again: `base · 2^attempt`, capped, with ±10 % jitter; and how
//! the engine's own store calls ride out transient store errors.

use std::time::Duration;

use durable_jobs_store::{RetryPolicy, StoreError};

use crate::Clock;

/// The backoff used when a job sets none: 1 s · 2^attempt, at most one hour.
pub const DEFAULT_RETRY_POLICY: RetryPolicy =
    RetryPolicy { base: Duration::from_secs(1), max: Duration::from_secs(3600) };

/// The delay after failed attempt number `attempt` (1 for the first attempt).
pub(crate) fn backoff(policy: Option<RetryPolicy>, attempt: u32) -> Duration {
    let policy = policy.unwrap_or(DEFAULT_RETRY_POLICY);
    let factor = 2_u32.saturating_pow(attempt.min(31));
    let delay = policy.base.saturating_mul(factor).min(policy.max);
    // Jitter spreads retries of jobs that failed together (for example on one outage).
    let jittered = delay.as_secs_f64() * fastrand::f64().mul_add(0.2, 0.9);
    Duration::try_from_secs_f64(jittered).unwrap_or(delay)
}

/// How long, and how patiently, a background store call is repeated on retryable errors.
pub(crate) struct Patience {
    /// Give up once this much time has passed since the first try.
    pub(crate) budget: Duration,
    /// The longest pause between tries (pauses double from 5 ms).
    pub(crate) max_pause: Duration,
}

/// Runs `op` until it succeeds, fails with an error that is not retryable, `patience` runs out
/// or `go_on` says stop; returns the last result. Every write the engine repeats this way is
/// safe to repeat (see the `Store` contract).
pub(crate) fn with_patience<T>(
    clock: &dyn Clock,
    what: &str,
    patience: &Patience,
    go_on: impl Fn() -> bool,
    mut op: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let started = clock.monotonic();
    let mut pause = Duration::from_millis(5);
    loop {
        match op() {
            Err(e) if e.is_retryable() && clock.monotonic().saturating_sub(started) < patience.budget && go_on() => {
                tracing::warn!(error = %e, "{what} failed; retrying");
                crate::wait::sleep(clock, pause);
                pause = (pause * 2).min(patience.max_pause);
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(d: Duration, nominal: Duration) -> bool {
        d >= nominal.mul_f64(0.9) && d <= nominal.mul_f64(1.1)
    }

    #[test]
    fn doubles_per_attempt_with_jitter_and_cap() {
        let p = RetryPolicy { base: Duration::from_millis(100), max: Duration::from_secs(1) };
        for _ in 0..200 {
            assert!(within(backoff(Some(p), 1), Duration::from_millis(200)));
            assert!(within(backoff(Some(p), 2), Duration::from_millis(400)));
            assert!(within(backoff(Some(p), 3), Duration::from_millis(800)));
            assert!(within(backoff(Some(p), 4), Duration::from_secs(1)));
            assert!(within(backoff(Some(p), u32::MAX), Duration::from_secs(1)));
            assert!(within(backoff(None, 1), Duration::from_secs(2)));
            let huge = RetryPolicy { base: Duration::MAX, max: Duration::MAX };
            assert!(backoff(Some(huge), 3) >= Duration::from_secs(u64::MAX / 2), "no overflow panic");
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff(Some(p), 1)).collect();
        assert!(spread.len() > 10, "jitter varies the delay");
    }

    #[test]
    fn patience_retries_only_retryable_errors_within_budget() {
        use durable_jobs_store::StoreErrorKind;
        let patience = Patience { budget: Duration::from_secs(5), max_pause: Duration::from_millis(5) };
        let mut calls = 0;
        let clock = crate::SystemClock;
        let ok = with_patience(
            &clock,
            "op",
            &patience,
            || true,
            || {
                calls += 1;
                if calls < 3 {
                    Err(StoreError::new(StoreErrorKind::Busy, "busy"))
                } else {
                    Ok(calls)
                }
            },
        );
        assert_eq!(ok.unwrap(), 3);
        let mut calls = 0;
        let corrupt = with_patience(
            &clock,
            "op",
            &patience,
            || true,
            || -> Result<(), _> {
                calls += 1;
                Err(StoreError::new(StoreErrorKind::Corrupt, "bad"))
            },
        );
        assert!(corrupt.is_err());
        assert_eq!(calls, 1, "a non-retryable error is not repeated");
        let mut calls = 0;
        let stopped = with_patience(
            &clock,
            "op",
            &patience,
            || false,
            || -> Result<(), _> {
                calls += 1;
                Err(StoreError::new(StoreErrorKind::Busy, "busy"))
            },
        );
        assert!(stopped.is_err());
        assert_eq!(calls, 1, "go_on stops the retries");
    }
}
