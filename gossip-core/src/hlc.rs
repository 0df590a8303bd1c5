//! Hybrid logical clock: message ids that follow wall time yet stay strictly monotonic.
//!
//! A [`Timestamp`] packs 48 bits of milliseconds since the UNIX epoch and a 16-bit logical
//! counter (Kulkarni et al., "Logical Physical Clocks", 2014). The wall clock is an input, so the
//! clock works the same under the simulator's virtual time and a real driver.

use serde::{Deserialize, Serialize};

const LOGICAL_BITS: u32 = 16;
const LOGICAL_MAX: u64 = (1 << LOGICAL_BITS) - 1;
const MILLIS_MAX: u64 = (1 << (64 - LOGICAL_BITS)) - 1;

/// A hybrid logical timestamp; also the message id of every packet a node originates.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Timestamp(u64);

impl Timestamp {
    /// Builds a timestamp from milliseconds (saturated to 48 bits) and a logical counter.
    pub const fn new(millis: u64, logical: u16) -> Self {
        let millis = if millis > MILLIS_MAX {
            MILLIS_MAX
        } else {
            millis
        };
        Timestamp((millis << LOGICAL_BITS) | logical as u64)
    }

    /// Milliseconds since the UNIX epoch.
    pub const fn millis(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// The logical counter.
    pub const fn logical(self) -> u16 {
        (self.0 & LOGICAL_MAX) as u16
    }

    /// The packed form, as it goes on the wire.
    pub const fn to_u64(self) -> u64 {
        self.0
    }

    /// Unpacks the wire form.
    pub const fn from_u64(raw: u64) -> Self {
        Timestamp(raw)
    }

    /// The next timestamp in order, carrying a full logical counter into the milliseconds.
    fn successor(self) -> Self {
        Timestamp(self.0.saturating_add(1))
    }
}

impl core::fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}", self.millis(), self.logical())
    }
}

/// A remote timestamp was too far ahead of the local wall clock to merge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("remote clock is {ahead_ms} ms ahead, more than the {max_ms} ms allowed")]
pub struct ClockDriftError {
    /// How far ahead the remote timestamp is.
    pub ahead_ms: u64,
    /// The allowed drift.
    pub max_ms: u64,
}

/// The clock state of one node.
#[derive(Debug, Clone)]
pub struct Hlc {
    last: Timestamp,
    max_drift_ms: u64,
}

impl Hlc {
    /// A clock that refuses to merge remote timestamps more than `max_drift_ms` ahead of wall time,
    /// so one peer with a broken clock cannot drag the cluster's ids into the future.
    pub fn new(max_drift_ms: u64) -> Self {
        Hlc {
            last: Timestamp::default(),
            max_drift_ms,
        }
    }

    /// The last timestamp issued or merged.
    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// A fresh timestamp for a local event or a send: greater than every earlier one, even when
    /// `wall_ms` went backwards.
    pub fn now(&mut self, wall_ms: u64) -> Timestamp {
        let wall = Timestamp::new(wall_ms, 0);
        self.last = if wall > self.last {
            wall
        } else {
            self.last.successor()
        };
        self.last
    }

    /// Merges a received timestamp, so that whatever this node does next is ordered after it.
    /// Returns the merged timestamp; on error the clock is unchanged.
    pub fn observe(
        &mut self,
        wall_ms: u64,
        remote: Timestamp,
    ) -> Result<Timestamp, ClockDriftError> {
        let ahead_ms = remote.millis().saturating_sub(wall_ms);
        if ahead_ms > self.max_drift_ms {
            return Err(ClockDriftError {
                ahead_ms,
                max_ms: self.max_drift_ms,
            });
        }
        let wall = Timestamp::new(wall_ms, 0);
        let top = self.last.max(remote);
        self.last = if wall > top { wall } else { top.successor() };
        Ok(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_wall_clock() {
        let mut c = Hlc::new(1_000);
        assert_eq!(c.now(100), Timestamp::new(100, 0));
        assert_eq!(c.now(250), Timestamp::new(250, 0));
    }

    #[test]
    fn stays_monotonic_when_wall_clock_steps_back_or_stalls() {
        let mut c = Hlc::new(1_000);
        let a = c.now(5_000);
        let b = c.now(5_000);
        let d = c.now(1_000);
        assert!(a < b && b < d);
        assert_eq!(d.millis(), 5_000);
        assert_eq!(d.logical(), 2);
    }

    #[test]
    fn merges_remote_time_ahead_of_us() {
        let mut c = Hlc::new(1_000);
        c.now(1_000);
        let remote = Timestamp::new(1_500, 7);
        let merged = c.observe(1_100, remote).unwrap();
        assert!(merged > remote);
        assert!(c.now(1_100) > merged);
    }

    #[test]
    fn ignores_remote_time_behind_us() {
        let mut c = Hlc::new(1_000);
        c.now(9_000);
        let merged = c.observe(10_000, Timestamp::new(2_000, 3)).unwrap();
        assert_eq!(merged, Timestamp::new(10_000, 0));
    }

    #[test]
    fn refuses_remote_time_beyond_drift_and_stays_unchanged() {
        let mut c = Hlc::new(1_000);
        let before = c.now(1_000);
        let err = c.observe(1_000, Timestamp::new(5_000, 0)).unwrap_err();
        assert_eq!(
            err,
            ClockDriftError {
                ahead_ms: 4_000,
                max_ms: 1_000
            }
        );
        assert_eq!(c.last(), before);
    }

    #[test]
    fn logical_overflow_carries_into_millis() {
        let mut c = Hlc::new(1_000);
        c.observe(10, Timestamp::new(10, u16::MAX)).unwrap();
        let t = c.last();
        assert_eq!((t.millis(), t.logical()), (11, 0));
        assert!(c.now(10) > t);
    }

    #[test]
    fn packs_and_unpacks() {
        let t = Timestamp::new(1_700_000_000_000, 42);
        assert_eq!(Timestamp::from_u64(t.to_u64()), t);
        assert_eq!((t.millis(), t.logical()), (1_700_000_000_000, 42));
        assert_eq!(Timestamp::new(u64::MAX, 0).millis(), MILLIS_MAX);
    }
}
