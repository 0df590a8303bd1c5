//! The JSON status document (`GET .../status`), described in docs/DRIVERS.md.

use std::collections::BTreeMap;

use gossip_core::{Member, Node};
use serde::Serialize;

/// A node's view of the cluster, for dashboards and health checks.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct Status {
    /// This node's id (base32).
    pub id: String,
    /// Its short form.
    pub short: String,
    /// Its name.
    pub name: String,
    /// Where it can be reached.
    pub addrs: Vec<String>,
    /// Its incarnation.
    pub incarnation: u64,
    /// Every member it knows, itself included, sorted by name then id.
    pub members: Vec<MemberStatus>,
    /// Traffic and drop counters.
    pub counters: Counters,
}

/// One member as a node sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct MemberStatus {
    /// Id (base32).
    pub id: String,
    /// Short id.
    pub short: String,
    /// Name.
    pub name: String,
    /// `alive`, `suspect`, `dead` or `left`.
    pub state: &'static str,
    /// Addresses (`relay://<id>` for members reached through a relay).
    pub addrs: Vec<String>,
    /// The relay it is reached through, if any.
    pub relay: Option<String>,
    /// Incarnation.
    pub incarnation: u64,
    /// Metadata, values as UTF-8 (lossy).
    pub metadata: BTreeMap<String, String>,
    /// Last probe round trip, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// For an admitted member (a browser tab, any client without the cluster key): the id of
    /// the full member whose admission this node holds of it. `None` for a full member, and for
    /// an admitted member whose admission has not reached this node yet.
    pub admitted_by: Option<String>,
    /// When that admission expires (wall clock, ms since the UNIX epoch; 0: revoked).
    pub admission_expires_ms: Option<u64>,
}

/// Counters of the engine and the driver.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
#[non_exhaustive]
pub struct Counters {
    /// Frames received.
    pub packets_in: u64,
    /// Frames sent.
    pub packets_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Open connections.
    pub connections: usize,
    /// Accepted connections whose peer has not proven membership yet (at most
    /// `DriverLimits::max_pending_connections`).
    pub pending_connections: usize,
    /// Frames sent as UDP datagrams.
    pub frames_udp: u64,
    /// Largest UDP datagram sent, in bytes.
    pub udp_max_datagram: u64,
    /// Frames sent over reliable links (TCP, WebSocket).
    pub frames_reliable: u64,
    /// Frames and items received again (gossip delivers most news more than once, by design):
    /// not a problem, so not among `drops`.
    pub duplicates: u64,
    /// Drops by reason (engine and driver): what was refused, never a healthy duplicate.
    pub drops: BTreeMap<String, u64>,
    /// Inputs (frames, connection events) waiting for the engine, at most
    /// `DriverLimits::inbound_queue`: a backlog that stays near that bound means the engine cannot
    /// keep up, and every frame waits that long before it is read.
    pub inbound_backlog: usize,
}

impl MemberStatus {
    fn of(node: &Node, m: &Member) -> MemberStatus {
        let admission = node.admission_of(&m.id);
        MemberStatus {
            id: m.id.to_string(),
            short: m.id.short(),
            name: m.name.clone(),
            state: m.state.as_str(),
            addrs: m.addrs.iter().map(ToString::to_string).collect(),
            relay: m.relay().map(|r| r.to_string()),
            incarnation: m.incarnation,
            metadata: m
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
            rtt_ms: m.rtt_micros.map(|r| r as f64 / 1_000.0),
            admitted_by: admission.map(|(issuer, _)| issuer.to_string()),
            admission_expires_ms: admission.map(|(_, expires)| expires),
        }
    }
}

impl Status {
    pub(crate) fn of(node: &Node, connections: usize, shared: &crate::shared::Shared) -> Status {
        let driver_drops = shared.drops();
        let (frames_udp, udp_max_datagram, frames_reliable) = shared.sent.snapshot();
        let me = node.local();
        let mut members: Vec<MemberStatus> =
            node.members().map(|m| MemberStatus::of(node, m)).collect();
        members.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        let s = node.stats();
        // Gossip repeats news by design: a duplicate record, or a gossip frame of nothing but
        // duplicates (`copies`), is not a drop.
        let redundant = |k: &gossip_core::DropReason| {
            matches!(
                k,
                gossip_core::DropReason::Duplicate | gossip_core::DropReason::Copies
            )
        };
        let duplicates = s
            .drops
            .iter()
            .filter(|(k, _)| redundant(k))
            .map(|(_, v)| *v)
            .sum();
        let mut drops: BTreeMap<String, u64> = s
            .drops
            .iter()
            .filter(|(k, _)| !redundant(k))
            .map(|(k, v)| (k.as_str().to_owned(), *v))
            .collect();
        for (k, v) in driver_drops {
            *drops.entry(k.to_owned()).or_insert(0) += v;
        }
        Status {
            id: me.id.to_string(),
            short: me.id.short(),
            name: me.name.clone(),
            addrs: me.addrs.iter().map(ToString::to_string).collect(),
            incarnation: me.incarnation,
            members,
            counters: Counters {
                packets_in: s.packets_in,
                packets_out: s.packets_out,
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                connections,
                pending_connections: shared.pending_connections(),
                frames_udp,
                udp_max_datagram,
                frames_reliable,
                duplicates,
                drops,
                inbound_backlog: shared.inbound.max_capacity() - shared.inbound.capacity(),
            },
        }
    }

    /// The member with this name, if known.
    pub fn member(&self, name: &str) -> Option<&MemberStatus> {
        self.members.iter().find(|m| m.name == name)
    }
}
