use rand_chacha::ChaCha20Rng;
use rand_core::Rng;

use super::Node;
use crate::address::Address;
use crate::drop_reason::DropReason;
use crate::identity::NodeId;
use crate::message::{Message, Relay};
use crate::time::Instant;
use crate::transmit::Transmit;
use crate::wire::SignedPacket;

pub(super) fn shuffle(rng: &mut ChaCha20Rng, v: &mut [NodeId]) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() as usize) % (i + 1);
        v.swap(i, j);
    }
}

/// UDP for small best-effort frames, a reliable transport otherwise (falling back to UDP when
/// the member has nothing else: the driver then uses an open connection or its TCP fallback).
pub(super) fn pick_address(addrs: &[Address], reliable: bool) -> Option<Address> {
    let udp = addrs.iter().find(|a| matches!(a, Address::Udp(_)));
    let stream = addrs
        .iter()
        .find(|a| a.is_reliable() && !matches!(a, Address::Relayed(_)));
    if reliable {
        stream.or(udp)
    } else {
        udp.or(stream)
    }
    .cloned()
}

impl Node {
    pub(super) fn send_to_member(
        &mut self,
        now: Instant,
        to: NodeId,
        message: Message,
        reliable: bool,
    ) {
        if let Some(packet) = self.shell.sign(now, message) {
            self.route_packet(now, to, &packet, reliable);
        }
    }

    pub(super) fn route_packet(
        &mut self,
        now: Instant,
        to: NodeId,
        packet: &SignedPacket,
        reliable: bool,
    ) {
        if let Some(frame) = self.shell.seal(&mut self.rng, packet) {
            self.emit_to_member(now, to, frame, reliable);
        }
    }

    /// Sends a sealed frame to a member, through its relay (or ours) when it cannot be dialed.
    pub(super) fn emit_to_member(
        &mut self,
        now: Instant,
        to: NodeId,
        frame: Vec<u8>,
        reliable: bool,
    ) {
        let Some(m) = self.members.get(&to) else {
            // A relayed member may be written to by members its view leaves out (see
            // `ViewScope`): it answers them through its relay, which knows every member.
            return match self.local().relay() {
                Some(mine) if mine != to => {
                    let relay = Relay {
                        to,
                        frame: frame.into(),
                    };
                    self.send_to_member(now, mine, relay.into(), true);
                }
                _ => self.shell.count_drop(DropReason::NoRoute),
            };
        };
        let via = m.relay();
        let my_relay = self.local().relay();
        match (via, my_relay) {
            (Some(via), _) if via == self.id => {
                self.shell.emit(Transmit {
                    to: Address::Relayed(to),
                    node: Some(to),
                    bytes: frame,
                    reliable: true,
                });
            }
            // A node that cannot listen hands its relay everything for others, wrapped once: the
            // relay routes on (through the target's own relay if it has one). Wrapping for the
            // target's relay instead would nest a relay in a relay, whose inner frame a relay
            // serving a member without the cluster key cannot open.
            (_, Some(mine)) if mine != to => {
                let relay = Relay {
                    to,
                    frame: frame.into(),
                };
                self.send_to_member(now, mine, relay.into(), true);
            }
            (Some(via), _) if via != to => {
                let relay = Relay {
                    to,
                    frame: frame.into(),
                };
                self.send_to_member(now, via, relay.into(), true);
            }
            _ => {
                let reliable = reliable || frame.len() > self.config.udp_budget;
                let Some(addr) = pick_address(&m.addrs, reliable) else {
                    return self.shell.count_drop(DropReason::NoRoute);
                };
                self.shell.emit(Transmit {
                    to: addr,
                    node: Some(to),
                    bytes: frame,
                    reliable,
                });
            }
        }
    }

    pub(super) fn send_to_addr(
        &mut self,
        now: Instant,
        to: Address,
        node: Option<NodeId>,
        message: Message,
        reliable: bool,
    ) {
        let Some(packet) = self.shell.sign(now, message) else {
            return;
        };
        let Some(frame) = self.shell.seal(&mut self.rng, &packet) else {
            return;
        };
        let reliable = reliable || frame.len() > self.config.udp_budget || to.is_reliable();
        self.shell.emit(Transmit {
            to,
            node,
            bytes: frame,
            reliable,
        });
    }

    /// Answers a known member through its route, an unknown one at the address it came from.
    pub(super) fn reply(
        &mut self,
        now: Instant,
        origin: NodeId,
        from: Address,
        message: Message,
        reliable: bool,
    ) {
        if self
            .members
            .get(&origin)
            .is_some_and(|m| !m.addrs.is_empty())
        {
            self.send_to_member(now, origin, message, reliable);
        } else {
            self.send_to_addr(now, from, Some(origin), message, reliable);
        }
    }
}
