//! Time as the log records it: signed unix nanoseconds, UTC.
//!
//! Only [`Clock`] reads the system clock; everything else takes a [`Timestamp`] argument or reads
//! `Record::time`, so folds and deciding functions are deterministic under test.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix time in nanoseconds, UTC. Taken by the sequencer when a record is sequenced.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// The one reader of the system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock;

// === impl Timestamp ===

impl Timestamp {
    pub fn as_nanos(self) -> i64 {
        self.0
    }

    /// The later of `self + d`, saturating instead of overflowing.
    pub fn plus(self, d: Duration) -> Timestamp {
        let n = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(n))
    }

    /// `self - earlier`, or zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        let d = self.0.saturating_sub(earlier.0);
        Duration::from_nanos(u64::try_from(d).unwrap_or(0))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

// === impl Clock ===

impl Clock {
    /// Now, as unix nanoseconds. A clock before 1970 reads as 0; one past 2262 saturates.
    #[allow(clippy::disallowed_methods)]
    pub fn now(&self) -> Timestamp {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}
