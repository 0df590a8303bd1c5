//! The node's periodic timers in one table.
//!
//! Timers that belong to one piece of state (a probe's stages, suspicions, indirect probes,
//! requests, the hub's next delivery) live with that state and report their own deadline;
//! [`Node::poll_timeout`](super::Node::poll_timeout) takes the earliest of this table and those.

use crate::time::Instant;

/// A periodic timer of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// Start the next probe (SWIM's protocol period, stretched by local health).
    Probe,
    /// Gossip the retransmit queue to random members.
    Gossip,
    /// Push-pull with a random member (never armed when the interval is 0).
    PushPull,
    /// Forget members that have been down for the retention period.
    Reap,
}

impl Timer {
    const ALL: [Timer; 4] = [Timer::Probe, Timer::Gossip, Timer::PushPull, Timer::Reap];
}

/// When each [`Timer`] fires next, and the latest time the node was told.
#[derive(Debug, Clone)]
pub(super) struct TimerTable {
    at: [Option<Instant>; Timer::ALL.len()],
    latest: Instant,
}

impl TimerTable {
    pub(super) fn new(now: Instant) -> Self {
        TimerTable {
            at: [None; Timer::ALL.len()],
            latest: now,
        }
    }

    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer as usize] = Some(at);
    }

    /// Moves the timer earlier, never later (an armed timer only).
    pub(super) fn lower(&mut self, timer: Timer, at: Instant) {
        if let Some(t) = self.at[timer as usize].as_mut() {
            *t = (*t).min(at);
        }
    }

    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer as usize]
    }

    pub(super) fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| now >= at)
    }

    /// The earliest armed timer.
    pub(super) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// Records that time reached `now` (inputs may arrive with slightly older instants).
    pub(super) fn advance(&mut self, now: Instant) {
        self.latest = self.latest.max(now);
    }

    /// The latest instant any input carried.
    pub(super) fn latest(&self) -> Instant {
        self.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_the_earliest_armed_timer_and_lower_never_delays() {
        let t = |ms| Instant::from_millis(ms);
        let mut table = TimerTable::new(t(0));
        assert_eq!(table.next(), None);
        table.set(Timer::Gossip, t(200));
        table.set(Timer::Probe, t(1_000));
        assert_eq!(table.next(), Some(t(200)));
        table.lower(Timer::Gossip, t(500));
        assert_eq!(table.get(Timer::Gossip), Some(t(200)));
        table.lower(Timer::Gossip, t(10));
        assert_eq!(table.next(), Some(t(10)));
        // An unarmed timer stays unarmed.
        table.lower(Timer::PushPull, t(1));
        assert_eq!(table.get(Timer::PushPull), None);
        assert!(!table.is_due(Timer::PushPull, t(5_000)));
        assert!(table.is_due(Timer::Probe, t(1_000)));
        assert!(!table.is_due(Timer::Probe, t(999)));
    }

    #[test]
    fn latest_only_moves_forward() {
        let mut table = TimerTable::new(Instant::from_millis(100));
        table.advance(Instant::from_millis(50));
        assert_eq!(table.latest(), Instant::from_millis(100));
        table.advance(Instant::from_millis(150));
        assert_eq!(table.latest(), Instant::from_millis(150));
    }
}
