use super::Node;
use super::backlog::{ITEM_OVERHEAD, Subject};
use crate::address::Address;
use crate::drop_reason::DropReason;
use crate::identity::NodeId;
use crate::membership::Member;
use crate::message::{Gossip, Relay};
use crate::time::Instant;
use crate::transmit::Transmit;
use crate::wire::SignedPacket;
use std::collections::{BTreeMap, BTreeSet};

/// Members relayed through this node (browsers): it hands them every piece of news itself.
#[derive(Debug)]
pub(super) struct Hub {
    /// News waiting for the next delivery, with what each item is about.
    pub(super) pending: Vec<(Subject, SignedPacket)>,
    /// Deliveries are batched: the next one may not happen before this.
    pub(super) next_delivery: Instant,
    /// The members this node relays for.
    pub(super) leaves: BTreeSet<NodeId>,
}

impl Hub {
    pub(super) fn new(now: Instant) -> Self {
        Hub {
            pending: Vec::new(),
            next_delivery: now,
            leaves: BTreeSet::new(),
        }
    }

    /// When pending news is due for delivery (None: nothing pending).
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        (!self.pending.is_empty()).then_some(self.next_delivery)
    }
}

/// One item of a delivery to a member with a limited view (see [`crate::admission::ViewScope`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
// Without the `admission` feature nobody has a limited view: no piece is ever made.
#[cfg_attr(not(feature = "admission"), allow(dead_code))]
pub(super) enum Piece {
    /// The pending item at this index.
    Pending(usize),
    /// A member's current alive record: the first news of it this member may see.
    Alive(NodeId),
    /// A member's current metadata, with its alive record.
    Meta(NodeId),
}

impl Node {
    /// Hands pending news to every member relayed through this node, at most once per
    /// fast-gossip interval: browsers hear everything in one hop from their server instead of
    /// through random gossip that would cross the server twice per hop.
    pub(super) fn deliver_hub(&mut self, now: Instant) {
        if self.hub.pending.is_empty() {
            return;
        }
        self.hub.next_delivery = now.plus_millis(self.config.fast_gossip_interval_ms);
        let pending = std::mem::take(&mut self.hub.pending);
        let retention = self.config.dead_retention_ms;
        // The recently buried too: a falsely buried browser must hear it to refute.
        let leaves: Vec<NodeId> = self
            .hub
            .leaves
            .iter()
            .filter(|id| {
                self.members.get(id).is_some_and(|m| {
                    !m.state.is_down() || now.micros_since(m.since) / 1_000 < retention
                })
            })
            .copied()
            .collect();
        if leaves.is_empty() {
            return;
        }
        // Members that see everything share one signed batch. Each limited view gets what it may
        // see; views that come out the same (most tabs of a `None` scope) share a batch too, so
        // a join storm costs a signature per distinct view, not per tab.
        let mut everything = Vec::new();
        let mut views: BTreeMap<Vec<Piece>, Vec<NodeId>> = BTreeMap::new();
        let mut refresh = Vec::new();
        for leaf in leaves {
            match self.limited_view(leaf, &pending, &mut refresh) {
                None => everything.push(leaf),
                Some(pieces) if pieces.is_empty() => {}
                Some(pieces) => views.entry(pieces).or_default().push(leaf),
            }
        }
        if !everything.is_empty() {
            let items: Vec<SignedPacket> = pending.iter().map(|(_, p)| p.clone()).collect();
            self.deliver_to(now, &items, &everything);
        }
        for (pieces, leaves) in views {
            let items: Vec<SignedPacket> = pieces
                .iter()
                .filter_map(|piece| match piece {
                    Piece::Pending(i) => Some(pending[*i].1.clone()),
                    Piece::Alive(id) => self.members.get(id).map(|m| m.alive.clone()),
                    Piece::Meta(id) => self.members.get(id).and_then(|m| m.meta.clone()),
                })
                .collect();
            self.deliver_to(now, &items, &leaves);
        }
        // A leaf whose view may have widened (its metadata changed under a `Groups` scope): a
        // push-pull's close brings it what it now may see and lacks.
        for leaf in refresh {
            self.open_push_pull(now, leaf);
        }
    }

    /// Signs `items` in batches and seals each batch for every one of `leaves`.
    fn deliver_to(&mut self, now: Instant, items: &[SignedPacket], leaves: &[NodeId]) {
        let budget = self.config.max_sync_bytes;
        for batch in self.sign_batches(now, items, budget) {
            for &leaf in leaves {
                if let Some(frame) = self.shell.seal(&mut self.rng, &batch) {
                    self.shell.emit(Transmit {
                        to: Address::Relayed(leaf),
                        node: Some(leaf),
                        bytes: frame,
                        reliable: true,
                    });
                }
            }
        }
    }

    /// Signed `Gossip` envelopes carrying `items`, each within `budget` bytes of items and the
    /// item limit.
    pub(super) fn sign_batches(
        &mut self,
        now: Instant,
        items: &[SignedPacket],
        budget: usize,
    ) -> Vec<SignedPacket> {
        let max_items = self.config.limits.max_items;
        let mut out = Vec::new();
        let mut batch = Vec::new();
        let mut size = 0;
        for item in items {
            let cost = item.len() + ITEM_OVERHEAD;
            if !batch.is_empty() && (size + cost > budget || batch.len() >= max_items) {
                let items = std::mem::take(&mut batch);
                out.extend(self.shell.sign(now, Gossip { items }.into()));
                size = 0;
            }
            size += cost;
            batch.push(item.clone());
        }
        if !batch.is_empty() {
            out.extend(self.shell.sign(now, Gossip { items: batch }.into()));
        }
        out
    }

    /// Keeps `leaves` in step with a member's addresses.
    pub(super) fn track_leaf(&mut self, id: NodeId) {
        if self.members.get(&id).and_then(Member::relay) == Some(self.id) {
            self.hub.leaves.insert(id);
        } else {
            self.hub.leaves.remove(&id);
        }
    }

    pub(super) fn on_relay(
        &mut self,
        now: Instant,
        origin: NodeId,
        #[allow(unused_mut)] mut relay: Relay,
    ) {
        #[cfg(feature = "admission")]
        if self.is_served(&origin) {
            // Sealed with the requester's link key: open it, hold it to its grant like anything
            // it says, and seal it for the cluster.
            let (packet, frame) = match self.shell.reseal_from_link(&origin, &relay.frame) {
                Ok(opened) => opened,
                Err(e) => return self.shell.drop_counted(&e),
            };
            if packet.origin() != origin {
                return self.shell.count_drop(DropReason::RelayForged);
            }
            let message = match self.shell.codec.verify(&packet) {
                Ok(m) => m,
                Err(e) => return self.shell.drop_counted(&e),
            };
            // One wrapping only: a relay inside would carry a frame sealed with the link key.
            let nested = matches!(
                message,
                crate::message::Message::Membership(crate::message::MembershipMessage::Relay(_))
            );
            if nested {
                return self.shell.count_drop(DropReason::Forbidden);
            }
            if let Err(reason) = self.admission_check(now, &origin, &message) {
                return self.shell.count_drop(reason);
            }
            if let Err(reason) = self.check_carried(now, &origin, &message) {
                return self.shell.count_drop(reason);
            }
            relay.frame = frame.into();
        }
        // Relay only for members this node serves, never for strangers (no open amplifier).
        let serves = |id: &NodeId| self.members.get(id).and_then(Member::relay) == Some(self.id);
        let may_relay = serves(&relay.to) || (serves(&origin) && relay.to != self.id);
        if !may_relay {
            return self.shell.count_drop(DropReason::RelayRefused);
        }
        // The inner frame must be the requester's own, or one of a member it relays for: a relay
        // never carries words a member did not sign to someone it speaks for. Opening it costs a
        // decryption, not a signature check; its recipient verifies the signature.
        let inner = match self.shell.codec.peek_origin(&relay.frame) {
            Ok(inner) => inner,
            Err(e) => return self.shell.drop_counted(&e),
        };
        let relayed_by = self.members.get(&inner).and_then(Member::relay);
        if inner != origin && relayed_by != Some(origin) {
            return self.shell.count_drop(DropReason::RelayForged);
        }
        if serves(&relay.to) {
            let t = Transmit {
                to: Address::Relayed(relay.to),
                node: Some(relay.to),
                bytes: relay.frame.into_vec(),
                reliable: true,
            };
            self.shell.emit(t);
        } else {
            let bytes = relay.frame.into_vec();
            // The sender asked for a reliable link or would not have needed a relay (browsers only
            // have WebSockets): keep the relayed hop reliable too, so credits and acks are not lost.
            self.emit_to_member(now, relay.to, bytes, true);
        }
    }
}
