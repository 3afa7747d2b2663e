//! Points in time as stores keep them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time as whole microseconds since the Unix epoch (UTC).
///
/// Stores compare and order timestamps but never read a clock: every "now" is passed in by the
/// caller, so time can be controlled in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current system time.
    pub fn now() -> Self {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// Converts a `SystemTime`, saturating at the representable range.
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |m| -m)),
        }
    }

    /// Converts back to a `SystemTime` (clamped to what the platform can represent).
    pub fn to_system_time(self) -> SystemTime {
        let magnitude = Duration::from_micros(self.0.unsigned_abs());
        let converted = if self.0 >= 0 { UNIX_EPOCH.checked_add(magnitude) } else { UNIX_EPOCH.checked_sub(magnitude) };
        // Every platform represents ±2^31 s around the epoch.
        let limit = Duration::from_secs(1 << 31);
        converted.unwrap_or_else(|| if self.0 >= 0 { UNIX_EPOCH + limit } else { UNIX_EPOCH - limit })
    }

    /// `self + d`, or `None` if the result does not fit.
    pub fn checked_add(self, d: Duration) -> Option<Self> {
        let micros = i64::try_from(d.as_micros()).ok()?;
        self.0.checked_add(micros).map(Timestamp)
    }

    /// `self + d`, saturating at the largest timestamp.
    pub fn saturating_add(self, d: Duration) -> Self {
        self.checked_add(d).unwrap_or(Timestamp(i64::MAX))
    }

    /// `self - d`, saturating at the smallest timestamp.
    pub fn saturating_sub(self, d: Duration) -> Self {
        let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(micros))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0).max(0).unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trips_and_saturates() {
        let now = SystemTime::now();
        let t = Timestamp::from_system_time(now);
        let back = t.to_system_time();
        let diff = now.duration_since(back).unwrap_or_default();
        assert!(diff < Duration::from_micros(1));
        assert_eq!(Timestamp(i64::MAX - 1).checked_add(Duration::from_secs(1)), None);
        assert_eq!(Timestamp(i64::MIN + 1).saturating_sub(Duration::from_secs(1)), Timestamp(i64::MIN));
        assert_eq!(Timestamp(5).duration_since(Timestamp(9)), Duration::ZERO);
        assert_eq!(Timestamp(-3).to_system_time(), UNIX_EPOCH - Duration::from_micros(3));
    }
}
