//! Monotonic time as the driver hands it in: the core never reads a clock.

use core::ops::{Add, Sub};

/// A point on the driver's monotonic clock, in microseconds from an origin the driver picks.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Instant(u64);

impl Instant {
    /// `micros` after the driver's origin.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// `millis` after the driver's origin.
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1_000))
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Whole milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000
    }

    /// `self + ms` milliseconds.
    pub const fn plus_millis(self, ms: u64) -> Self {
        Instant(self.0.saturating_add(ms.saturating_mul(1_000)))
    }

    /// Microseconds from `earlier` to `self`, zero if `earlier` is later.
    pub const fn micros_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<u64> for Instant {
    type Output = Instant;
    /// Adds microseconds.
    fn add(self, micros: u64) -> Instant {
        Instant(self.0.saturating_add(micros))
    }
}

impl Sub for Instant {
    type Output = u64;
    /// Microseconds between two instants (saturating at zero).
    fn sub(self, rhs: Instant) -> u64 {
        self.0.saturating_sub(rhs.0)
    }
}
