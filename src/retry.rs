//! When a failed attempt runs again: `base · 2^attempt`, capped, with ±10 % jitter.

use std::time::Duration;

use durable_jobs_store::RetryPolicy;

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
}
