//! Settings of an overlay node. Every view, queue and set it keeps is bounded by a field here.

use crate::limits::Limits;
use crate::replay::ReplayConfig;

/// Settings of an [`Overlay`](super::Overlay) node.
///
/// The defaults suit clusters up to about 10^5 members on a LAN: an active view of 5
/// (log10(N) + 1 for N = 10,000), a passive view of 30, HyParView's walk lengths (ARWL 6, PRWL 3).
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayConfig {
    /// Most active neighbours (symmetric links the node gossips over).
    pub active_size: usize,
    /// Below this many active neighbours, repair asks with high priority (the receiver evicts a
    /// neighbour if it must). Between this and `active_size`, it asks with low priority.
    pub active_min: usize,
    /// Most passive entries (known members to promote when an active neighbour fails).
    pub passive_size: usize,
    /// Active random walk length (ARWL): hops of a join's walk and of a shuffle's.
    pub active_walk: u8,
    /// Passive random walk length (PRWL): the walk's node at this ttl keeps the joiner as passive.
    pub passive_walk: u8,
    /// Period of the shuffle that refreshes the passive view.
    pub shuffle_interval_ms: u64,
    /// Active entries a shuffle sends.
    pub shuffle_active: usize,
    /// Passive entries a shuffle sends.
    pub shuffle_passive: usize,
    /// Maintenance period: heartbeats, failure checks, repair and timeouts run on this tick.
    pub tick_ms: u64,
    /// An active link that carried nothing for this long gets a heartbeat.
    pub heartbeat_interval_ms: u64,
    /// An active neighbour silent for this long is probed on every tick.
    pub suspect_after_ms: u64,
    /// An active neighbour silent for this long has failed and is replaced from the passive view.
    pub failure_timeout_ms: u64,
    /// A join or neighbor request unanswered for this long is given up (its target is dropped
    /// from the passive view).
    pub request_timeout_ms: u64,
    /// Most neighbor requests outstanding at once.
    pub max_pending: usize,
    /// Low-priority fill attempts (active view between `active_min` and `active_size`) at most
    /// this often.
    pub fill_interval_ms: u64,
    /// Plumtree: wait this long after an `IHave` for the broadcast before grafting.
    pub graft_timeout_ms: u64,
    /// Plumtree: after a graft, wait this long before grafting from the next announcer.
    pub graft_retry_ms: u64,
    /// Broadcasts kept to answer grafts.
    pub cache_capacity: usize,
    /// How long a broadcast is kept to answer grafts.
    pub cache_ttl_ms: u64,
    /// Most broadcasts awaited after an `IHave` at once.
    pub max_missing: usize,
    /// Most outbound frames and events queued; the excess is dropped and counted.
    pub max_queue: usize,
    /// Datagrams larger than this go over a reliable link.
    pub udp_budget: usize,
    /// Frame and payload limits.
    pub limits: Limits,
    /// Replay guard. The overlay talks to few peers, so a small seen-set covers several seconds
    /// of traffic; a full set raises the floor instead of growing (see `replay`).
    pub replay: ReplayConfig,
    /// Parsed verifying keys cached (about 230 bytes each).
    pub key_cache: usize,
    /// A remote clock further ahead than this is not merged into the local hybrid clock.
    pub max_clock_drift_ms: u64,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        OverlayConfig {
            active_size: 5,
            active_min: 4,
            passive_size: 30,
            active_walk: 6,
            passive_walk: 3,
            shuffle_interval_ms: 10_000,
            shuffle_active: 3,
            shuffle_passive: 4,
            tick_ms: 500,
            heartbeat_interval_ms: 1_000,
            suspect_after_ms: 2_000,
            failure_timeout_ms: 4_000,
            request_timeout_ms: 1_000,
            max_pending: 2,
            fill_interval_ms: 2_000,
            graft_timeout_ms: 100,
            graft_retry_ms: 50,
            cache_capacity: 16,
            cache_ttl_ms: 10_000,
            max_missing: 32,
            max_queue: 1_024,
            udp_budget: 1_400,
            limits: Limits {
                max_items: 256,
                ..Limits::default()
            },
            replay: ReplayConfig {
                capacity: 64,
                ..ReplayConfig::default()
            },
            key_cache: 6,
            max_clock_drift_ms: 10_000,
        }
    }
}

impl OverlayConfig {
    /// The defaults with the views sized for about `n` members: an active view of
    /// ceil(log10(n)) + 1 (at least 3), a passive view six times that.
    pub fn for_cluster_size(n: usize) -> Self {
        let mut digits = 0;
        let mut rest = n.max(1) - 1;
        while rest > 0 {
            digits += 1;
            rest /= 10;
        }
        let active = (digits + 1).max(3);
        OverlayConfig {
            active_size: active,
            active_min: active - 1,
            passive_size: active * 6,
            ..OverlayConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_grow_with_log10_of_the_cluster() {
        assert_eq!(OverlayConfig::for_cluster_size(10_000).active_size, 5);
        assert_eq!(OverlayConfig::for_cluster_size(10_000).passive_size, 30);
        assert_eq!(OverlayConfig::for_cluster_size(1_000).active_size, 4);
        assert_eq!(OverlayConfig::for_cluster_size(500).active_size, 4);
        assert_eq!(OverlayConfig::for_cluster_size(3).active_size, 3);
        assert_eq!(OverlayConfig::default(), {
            let mut c = OverlayConfig::for_cluster_size(10_000);
            c.active_min = 4;
            c
        });
    }
}
