//! Replay protection: a bounded seen-set of (origin, message id) inside a time window.
//!
//! Messages older than the window are refused outright, so forgetting them is safe: the set only
//! ever holds ids that could still be accepted. When the set is full, the oldest ids are
//! forgotten and the acceptance floor rises to them, trading the acceptance of late stragglers
//! for a hard memory bound. A replay is never accepted again.

use std::collections::BTreeSet;

use crate::error::Replayed;
use crate::hlc::Timestamp;
use crate::identity::NodeId;

/// Settings of the replay guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayConfig {
    /// How old (by the local wall clock) a message may be and still be accepted.
    pub window_ms: u64,
    /// How far ahead of the local wall clock a message may claim to be.
    pub max_future_ms: u64,
    /// Most ids remembered at once (about 48 bytes each).
    pub capacity: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            window_ms: 60_000,
            max_future_ms: 10_000,
            capacity: 1 << 18,
        }
    }
}

/// The seen-set.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    config: ReplayConfig,
    seen: BTreeSet<(Timestamp, NodeId)>,
    /// Ids at or below this were forgotten under capacity pressure and are refused.
    floor: Option<Timestamp>,
    /// The latest wall time seen: a wall clock that steps back must not reopen the window.
    horizon_ms: u64,
}

impl ReplayGuard {
    /// An empty guard.
    pub fn new(config: ReplayConfig) -> Self {
        ReplayGuard {
            config,
            seen: BTreeSet::new(),
            floor: None,
            horizon_ms: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ReplayConfig {
        &self.config
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Whether (origin, id) would be accepted now. Does not record it: call [`ReplayGuard::record`]
    /// once the message is authenticated, so forgeries cannot poison the set.
    pub fn check(&mut self, origin: &NodeId, id: Timestamp, wall_ms: u64) -> Result<(), Replayed> {
        self.horizon_ms = self.horizon_ms.max(wall_ms);
        let now = self.horizon_ms;
        let ts = id.millis();
        if ts > now {
            let ahead_ms = ts - now;
            if ahead_ms > self.config.max_future_ms {
                return Err(Replayed::FromFuture {
                    ahead_ms,
                    max_ms: self.config.max_future_ms,
                });
            }
        } else if now - ts > self.config.window_ms {
            return Err(Replayed::TooOld {
                age_ms: now - ts,
                window_ms: self.config.window_ms,
            });
        }
        if self.floor.is_some_and(|floor| id <= floor) {
            return Err(Replayed::BelowFloor);
        }
        if self.seen.contains(&(id, *origin)) {
            return Err(Replayed::Duplicate);
        }
        Ok(())
    }

    /// [`ReplayGuard::check`] for signed *state* (a member's alive record, an accusation, its
    /// metadata): refuses a copy already accepted and a time too far ahead, but not age. State
    /// is ordered by its own incarnation or version, so an old copy changes nothing, while
    /// refusing it by age kept a member's alive record, signed when it started, from ever
    /// spreading by gossip to members that started after it (below their floor) or joined a
    /// minute later (outside the window): they waited for a push-pull.
    pub fn check_state(
        &mut self,
        origin: &NodeId,
        id: Timestamp,
        wall_ms: u64,
    ) -> Result<(), Replayed> {
        self.horizon_ms = self.horizon_ms.max(wall_ms);
        let ts = id.millis();
        if ts > self.horizon_ms {
            let ahead_ms = ts - self.horizon_ms;
            if ahead_ms > self.config.max_future_ms {
                return Err(Replayed::FromFuture {
                    ahead_ms,
                    max_ms: self.config.max_future_ms,
                });
            }
        }
        if self.seen.contains(&(id, *origin)) {
            return Err(Replayed::Duplicate);
        }
        Ok(())
    }

    /// Refuses every id at or below `floor` from now on. A node sets it to its start time: it
    /// remembers nothing from before it started, so a frame captured before a restart would
    /// otherwise be accepted again while still inside the window.
    pub fn raise_floor(&mut self, floor: Timestamp) {
        self.floor = Some(self.floor.map_or(floor, |f| f.max(floor)));
    }

    /// Whether (origin, id) was recorded, or is at or below the floor (forgotten under capacity
    /// pressure, or from before the start): either way it will not be accepted again.
    pub fn has_seen(&self, origin: &NodeId, id: Timestamp) -> bool {
        self.floor.is_some_and(|floor| id <= floor) || self.seen.contains(&(id, *origin))
    }

    /// Records an authenticated (origin, id) and forgets what has left the window.
    pub fn record(&mut self, origin: NodeId, id: Timestamp) {
        self.seen.insert((id, origin));
        let oldest_ok = Timestamp::new(self.horizon_ms.saturating_sub(self.config.window_ms), 0);
        // Everything strictly older than the window edge is refused by `check` anyway.
        while self.seen.first().is_some_and(|(t, _)| *t < oldest_ok) {
            self.seen.pop_first();
        }
        while self.seen.len() > self.config.capacity {
            if let Some((t, _)) = self.seen.pop_first() {
                self.floor = Some(self.floor.map_or(t, |f| f.max(t)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_refused_only_as_a_copy_or_from_the_future() {
        let mut g = ReplayGuard::new(cfg(8));
        let a = origin(1);
        g.raise_floor(Timestamp::new(5_000, 0));
        let (old, now) = (Timestamp::new(1_000, 0), 200_000);
        // Below the floor and older than the window: refused as a message, taken as state.
        assert!(g.check(&a, old, now).is_err());
        assert_eq!(g.check_state(&a, old, now), Ok(()));
        let fresh = Timestamp::new(now - 10, 0);
        g.record(a, fresh);
        assert_eq!(g.check_state(&a, fresh, now), Err(Replayed::Duplicate));
        let ahead = Timestamp::new(now + 60_000, 0);
        assert!(matches!(
            g.check_state(&a, ahead, now),
            Err(Replayed::FromFuture { .. })
        ));
    }

    #[test]
    fn has_seen_covers_recorded_ids_and_everything_below_the_floor() {
        let mut g = ReplayGuard::new(cfg(2));
        let (a, b) = (origin(1), origin(2));
        let _ = g.check(&a, Timestamp::new(100, 0), 100);
        g.record(a, Timestamp::new(100, 0));
        assert!(g.has_seen(&a, Timestamp::new(100, 0)));
        assert!(!g.has_seen(&b, Timestamp::new(100, 0)));
        g.record(a, Timestamp::new(101, 0));
        g.record(a, Timestamp::new(102, 0));
        // Forgotten under capacity pressure, but still never accepted again.
        assert!(g.has_seen(&b, Timestamp::new(100, 0)));
        assert!(!g.has_seen(&b, Timestamp::new(103, 0)));
    }

    #[test]
    fn nothing_from_before_the_floor_is_accepted() {
        let mut g = ReplayGuard::new(cfg(16));
        g.raise_floor(Timestamp::new(5_000, 0));
        let o = origin(1);
        assert_eq!(
            g.check(&o, Timestamp::new(4_990, 3), 5_010),
            Err(Replayed::BelowFloor)
        );
        assert_eq!(g.check(&o, Timestamp::new(5_001, 0), 5_010), Ok(()));
        // A lower floor never lowers it.
        g.raise_floor(Timestamp::new(1_000, 0));
        assert_eq!(
            g.check(&o, Timestamp::new(4_999, 0), 5_010),
            Err(Replayed::BelowFloor)
        );
    }

    fn origin(b: u8) -> NodeId {
        NodeId::from_bytes([b; 32])
    }

    fn cfg(capacity: usize) -> ReplayConfig {
        ReplayConfig {
            window_ms: 1_000,
            max_future_ms: 100,
            capacity,
        }
    }

    #[test]
    fn duplicate_inside_window_is_refused() {
        let mut g = ReplayGuard::new(cfg(16));
        let id = Timestamp::new(10_000, 0);
        g.check(&origin(1), id, 10_000).unwrap();
        g.record(origin(1), id);
        assert_eq!(g.check(&origin(1), id, 10_500), Err(Replayed::Duplicate));
        // Another origin with the same timestamp is a different message.
        g.check(&origin(2), id, 10_500).unwrap();
    }

    #[test]
    fn replay_after_window_is_refused_not_forgotten() {
        let mut g = ReplayGuard::new(cfg(16));
        let id = Timestamp::new(10_000, 0);
        g.record(origin(1), id);
        g.check(&origin(2), Timestamp::new(11_500, 0), 11_500)
            .unwrap();
        g.record(origin(2), Timestamp::new(11_500, 0));
        assert_eq!(g.len(), 1, "the old id left the set");
        assert_eq!(
            g.check(&origin(1), id, 11_500),
            Err(Replayed::TooOld {
                age_ms: 1_500,
                window_ms: 1_000
            })
        );
    }

    #[test]
    fn future_is_refused() {
        let mut g = ReplayGuard::new(cfg(16));
        let err = g
            .check(&origin(1), Timestamp::new(10_200, 0), 10_000)
            .unwrap_err();
        assert_eq!(
            err,
            Replayed::FromFuture {
                ahead_ms: 200,
                max_ms: 100
            }
        );
        g.check(&origin(1), Timestamp::new(10_100, 0), 10_000)
            .unwrap();
    }

    #[test]
    fn wall_clock_stepping_back_does_not_reopen_the_window() {
        let mut g = ReplayGuard::new(cfg(16));
        let id = Timestamp::new(10_000, 0);
        g.record(origin(1), id);
        g.check(&origin(1), Timestamp::new(12_000, 0), 12_000)
            .unwrap();
        g.record(origin(1), Timestamp::new(12_000, 0));
        assert!(matches!(
            g.check(&origin(1), id, 10_000),
            Err(Replayed::TooOld { .. })
        ));
    }

    #[test]
    fn full_set_raises_the_floor_instead_of_growing() {
        let mut g = ReplayGuard::new(cfg(4));
        for i in 0..10u16 {
            let id = Timestamp::new(10_000, i);
            g.check(&origin(1), id, 10_000).unwrap();
            g.record(origin(1), id);
        }
        assert_eq!(g.len(), 4);
        assert_eq!(
            g.check(&origin(1), Timestamp::new(10_000, 0), 10_000),
            Err(Replayed::BelowFloor)
        );
        assert_eq!(
            g.check(&origin(9), Timestamp::new(10_000, 5), 10_000),
            Err(Replayed::BelowFloor)
        );
        assert_eq!(
            g.check(&origin(1), Timestamp::new(10_000, 9), 10_000),
            Err(Replayed::Duplicate)
        );
        g.check(&origin(1), Timestamp::new(10_000, 10), 10_000)
            .unwrap();
    }
}
