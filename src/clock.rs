//! Where the engine reads the time it stores.

use std::fmt::Debug;
use std::time::SystemTime;

/// The source of wall-clock time for everything the engine stores (run times, leases,
/// timestamps). Replace it to test clock jumps; local waits still use `Instant`.
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
