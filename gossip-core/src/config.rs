//! Protocol settings, with presets after hashicorp memberlist's `DefaultLANConfig`,
//! `DefaultWANConfig` and `DefaultLocalConfig`.

use crate::detector::PhiConfig;
use crate::limits::Limits;
use crate::replay::ReplayConfig;

/// Everything tunable about a node. Durations are in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Human-friendly name; a restarted node with the same name replaces its earlier self.
    pub name: String,
    /// Time between failure-detector probes (scaled by the local health multiplier).
    pub probe_interval_ms: u64,
    /// How long to wait for a direct ack before asking others to probe (scaled likewise).
    pub probe_timeout_ms: u64,
    /// How many members an indirect probe goes through.
    pub indirect_checks: usize,
    /// Time between gossip rounds.
    pub gossip_interval_ms: u64,
    /// Members gossiped to per round, and the least fan-out of event-driven push (which grows
    /// with the cluster: [`Config::push_fanout`]).
    pub gossip_nodes: usize,
    /// While fresh updates are queued, gossip rounds run this often instead, so an update's
    /// retransmit budget is spent within a few network round trips rather than gossip intervals.
    pub fast_gossip_interval_ms: u64,
    /// Retransmit limit multiplier: each update is sent `retransmit_mult * ceil(log10(n + 1))` times.
    pub retransmit_mult: u32,
    /// Suspicion timeout multiplier: `suspicion_mult * max(1, log10(n)) * probe_interval`.
    pub suspicion_mult: u32,
    /// Lifeguard: the suspicion timeout starts at this multiple of the minimum and shrinks with
    /// independent confirmations.
    pub suspicion_max_timeout_mult: u32,
    /// Lifeguard: upper bound of the local health multiplier.
    pub awareness_max_multiplier: u32,
    /// Optional phi-accrual mode (with the `phi` feature, on by default): a failed probe leads to suspicion only if the member's silence
    /// is also improbable given its arrival history (see [`crate::detector`]). `None`: SWIM's
    /// timeouts alone decide.
    pub phi: Option<PhiConfig>,
    /// Time between push-pull anti-entropy exchanges with a random member (0 disables).
    pub push_pull_interval_ms: u64,
    /// How long dead and left members are kept (and gossiped to) before they are forgotten.
    pub dead_retention_ms: u64,
    /// Largest frame sent as a best-effort datagram; anything larger asks for a reliable link.
    pub udp_budget: usize,
    /// Bytes of state records one push-pull message carries at most (deltas are cut to this).
    pub max_sync_bytes: usize,
    /// Most bytes of metadata (keys plus values) a member may publish.
    pub max_metadata_bytes: usize,
    /// Most outbound packets and events buffered before the oldest are dropped (and counted).
    pub max_queue: usize,
    /// Wire limits.
    pub limits: Limits,
    /// Replay window.
    pub replay: ReplayConfig,
    /// Most members, in any state, this node holds: records of more are dropped and counted
    /// (`too_many_members`). Bounds what any key holder can make every node keep.
    pub max_members: usize,
    /// Most members one inbound frame may add (the rest of its records are dropped and counted;
    /// push-pull fetches them again from honest peers).
    pub max_new_members_per_frame: usize,
    /// Most members one sender may introduce, other than itself, per `intake_window_ms`: a key
    /// holder minting identities adds at most this many per window.
    pub max_new_members_per_sender: usize,
    /// The window of `max_new_members_per_sender`, in ms.
    pub intake_window_ms: u64,
    /// The replicated state's sizes and timers.
    #[cfg(feature = "state")]
    pub state: crate::state::StateConfig,
    /// Limits on endpoint names.
    #[cfg(feature = "endpoints")]
    pub endpoints: crate::endpoints::EndpointConfig,
}

impl Config {
    /// A LAN cluster (memberlist `DefaultLANConfig`).
    pub fn lan() -> Self {
        Config {
            name: String::new(),
            probe_interval_ms: 1_000,
            probe_timeout_ms: 500,
            indirect_checks: 3,
            gossip_interval_ms: 200,
            gossip_nodes: 3,
            fast_gossip_interval_ms: 10,
            retransmit_mult: 4,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            awareness_max_multiplier: 8,
            phi: None,
            push_pull_interval_ms: 30_000,
            dead_retention_ms: 30_000,
            udp_budget: 1_400,
            max_sync_bytes: 60 * 1024,
            max_metadata_bytes: 4 * 1024,
            max_queue: 16 * 1024,
            limits: Limits::default(),
            replay: ReplayConfig::default(),
            max_members: 10_000,
            max_new_members_per_frame: 256,
            max_new_members_per_sender: 512,
            intake_window_ms: 10_000,
            #[cfg(feature = "state")]
            state: crate::state::StateConfig::default(),
            #[cfg(feature = "endpoints")]
            endpoints: crate::endpoints::EndpointConfig::default(),
        }
    }

    /// A WAN cluster (memberlist `DefaultWANConfig`): slower probes, more patience.
    pub fn wan() -> Self {
        Config {
            probe_interval_ms: 5_000,
            probe_timeout_ms: 3_000,
            gossip_interval_ms: 500,
            gossip_nodes: 4,
            fast_gossip_interval_ms: 100,
            suspicion_mult: 6,
            push_pull_interval_ms: 60_000,
            dead_retention_ms: 60_000,
            ..Config::lan()
        }
    }

    /// Loopback or a single host (memberlist `DefaultLocalConfig`): fast detection.
    pub fn local() -> Self {
        Config {
            probe_interval_ms: 1_000,
            probe_timeout_ms: 200,
            gossip_interval_ms: 100,
            fast_gossip_interval_ms: 5,
            suspicion_mult: 3,
            push_pull_interval_ms: 15_000,
            dead_retention_ms: 15_000,
            ..Config::lan()
        }
    }

    /// A LAN or data centre that wants crashes seen within about a second (issue 17): probes ten
    /// times as often as [`Config::lan`], and Lifeguard's suspicion, refutation and local health
    /// keep lost datagrams from turning into false deaths. At N = 100 a crash is seen dead by all
    /// in about 1 s for a few KB/s per node (figures in `docs/BENCHMARKS.md`).
    pub fn fast() -> Self {
        Config {
            probe_interval_ms: 100,
            // Below half the interval: a helper nacks `probe_timeout_ms` after our ping-req, and
            // the nack must be back before the probe period ends or it counts against us.
            probe_timeout_ms: 40,
            // Five helpers: a false suspicion needs all five paths lost as well as the direct
            // one, so at 10 % loss suspicions (and their broadcasts) are rare.
            indirect_checks: 5,
            gossip_interval_ms: 100,
            fast_gossip_interval_ms: 10,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            ..Config::lan()
        }
    }

    /// Sets the name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Retransmissions of one update in a cluster of `n` members.
    pub fn retransmit_limit(&self, n: usize) -> u32 {
        let scale = ((n as f64) + 1.0).log10().ceil().max(1.0) as u32;
        self.retransmit_mult * scale
    }

    /// Members a new update is pushed to the moment it is news, in a cluster of `n` members:
    /// `gossip_nodes`, raised to `ceil(ln(n + 1))`. With fan-out `ln(n) + c`, one wave of pushes
    /// alone reaches every member with probability about `exp(-exp(-c))` (Kermarrec, Massoulié
    /// and Ganesh, 2003), so gossip rounds only mop up what a lost datagram missed.
    pub fn push_fanout(&self, n: usize) -> usize {
        let ln = ((n as f64) + 1.0).ln().ceil() as usize;
        self.gossip_nodes.max(ln)
    }

    /// Lifeguard suspicion timeout bounds `(min, max)` in ms for a cluster of `n` members.
    pub fn suspicion_timeout_ms(&self, n: usize) -> (u64, u64) {
        let scale = (n.max(1) as f64).log10().max(1.0);
        let min = (self.suspicion_mult as f64 * scale * self.probe_interval_ms as f64) as u64;
        (min, min * self.suspicion_max_timeout_mult as u64)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::lan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memberlist_reference_numbers() {
        let c = Config::lan();
        assert_eq!(c.retransmit_limit(1), 4);
        assert_eq!(c.retransmit_limit(9), 4);
        assert_eq!(c.retransmit_limit(10), 8);
        assert_eq!(c.retransmit_limit(1_000), 16);
        assert_eq!(c.suspicion_timeout_ms(5), (4_000, 24_000));
        assert_eq!(c.push_fanout(1), 3);
        assert_eq!(c.push_fanout(20), 4);
        assert_eq!(c.push_fanout(100), 5);
        assert_eq!(c.push_fanout(1_000), 7);
        assert_eq!(c.push_fanout(10_000), 10);
        assert_eq!(c.suspicion_timeout_ms(100), (8_000, 48_000));
        assert!(Config::wan().probe_interval_ms > c.probe_interval_ms);
        assert!(Config::local().probe_timeout_ms < c.probe_timeout_ms);
    }

    #[test]
    fn fast_preset_leaves_room_for_nacks() {
        let f = Config::fast();
        // Ping-req at the timeout, nack one timeout later: both inside the probe period.
        assert!(2 * f.probe_timeout_ms < f.probe_interval_ms);
        assert_eq!(f.suspicion_timeout_ms(100), (800, 4_800));
        assert!(f.indirect_checks > Config::lan().indirect_checks);
    }
}
