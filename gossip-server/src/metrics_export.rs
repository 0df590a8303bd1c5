//! Counters and gauges through the `metrics` facade: install any recorder (Prometheus, ...) to
//! collect them.

use gossip_core::{Node, State};

use crate::shared::Shared;

/// Remembers what was already exported, so counters only ever increase by what is new.
#[derive(Debug, Default)]
pub(crate) struct Exporter {
    packets_in: u64,
    packets_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    members_evicted: u64,
    drops: std::collections::BTreeMap<gossip_core::DropReason, u64>,
}

impl Exporter {
    pub(crate) fn export(&mut self, node: &Node, _shared: &Shared, connections: usize) {
        let s = node.stats();
        metrics::counter!("gossip_packets_in_total").increment(s.packets_in - self.packets_in);
        metrics::counter!("gossip_packets_out_total").increment(s.packets_out - self.packets_out);
        metrics::counter!("gossip_bytes_in_total").increment(s.bytes_in - self.bytes_in);
        metrics::counter!("gossip_bytes_out_total").increment(s.bytes_out - self.bytes_out);
        self.packets_in = s.packets_in;
        self.packets_out = s.packets_out;
        self.bytes_in = s.bytes_in;
        self.bytes_out = s.bytes_out;
        // A high rate means someone is minting identities (see `Stats::members_evicted`).
        metrics::counter!("gossip_members_evicted_total")
            .increment(s.members_evicted - self.members_evicted);
        self.members_evicted = s.members_evicted;
        for (reason, n) in &s.drops {
            let before = self.drops.insert(*reason, *n).unwrap_or(0);
            // Gossip delivers news more than once by design: a duplicate (a record, or a gossip
            // frame of nothing but duplicates) is not a drop.
            if matches!(
                reason,
                gossip_core::DropReason::Duplicate | gossip_core::DropReason::Copies
            ) {
                metrics::counter!("gossip_duplicates_total").increment(n - before);
            } else {
                metrics::counter!("gossip_drops_total", "reason" => reason.as_str())
                    .increment(n - before);
            }
        }
        let mut by_state = [0usize; 4];
        for m in node.members() {
            by_state[m.state.code() as usize % 4] += 1;
            if let Some(rtt) = m.rtt_micros {
                metrics::histogram!("gossip_probe_rtt_seconds").record(rtt as f64 / 1e6);
            }
        }
        for state in [State::Alive, State::Suspect, State::Dead, State::Left] {
            metrics::gauge!("gossip_members", "state" => state.as_str())
                .set(by_state[state.code() as usize % 4] as f64);
        }
        metrics::gauge!("gossip_connections").set(connections as f64);
    }
}
