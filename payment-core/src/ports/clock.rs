//! The clock port: the only source of "now" for use cases.

use chrono::{DateTime, SubsecRound, Utc};

/// Tells the time. Use cases take it as a port so tests can fix it.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock, truncated to microseconds — the precision stores keep — so that an event
/// re-published from a stored payment is byte-for-byte the event first published.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}
