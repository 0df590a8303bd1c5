//! Running a simulation forward in virtual time, the same way for every engine it drives.

use gossip_core::Instant;

/// A simulation that advances by processing its earliest pending delivery or timeout.
pub trait VirtualTime {
    /// The current virtual time.
    fn now(&self) -> Instant;

    /// Moves the clock to `until` once nothing is pending before it (never backwards).
    fn advance_to(&mut self, until: Instant);

    /// Processes the earliest pending delivery or timeout (the overlay simulator, and the full
    /// one on several threads: everything pending within one lookahead window); false when
    /// nothing is pending before `until`.
    fn step(&mut self, until: Instant) -> bool;

    /// Runs until virtual time `until`.
    fn run_until(&mut self, until: Instant) {
        while self.step(until) {}
        self.advance_to(until);
    }

    /// Runs for `ms` more virtual milliseconds.
    fn run_for(&mut self, ms: u64) {
        let until = self.now().plus_millis(ms);
        self.run_until(until);
    }

    /// Runs in `check_ms` slices until `done(self)` or `max_ms` pass; returns the virtual
    /// milliseconds it took, or None.
    fn run_until_true(
        &mut self,
        max_ms: u64,
        check_ms: u64,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Option<u64>
    where
        Self: Sized,
    {
        let start = self.now();
        let end = start.plus_millis(max_ms);
        loop {
            if done(self) {
                return Some(self.now().micros_since(start) / 1_000);
            }
            if self.now() >= end {
                return None;
            }
            let next = self.now().plus_millis(check_ms).min(end);
            self.run_until(next);
        }
    }
}
