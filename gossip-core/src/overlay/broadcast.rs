//! Plumtree broadcast over the active view: eager push along a spanning tree, `IHave` on the
//! other links, graft on a missing-message timer, prune on duplicates.
//!
//! Every active link starts eager, so the first broadcast floods; each duplicate prunes the link
//! it came over, which leaves a tree. A broadcast then costs about one frame per member on the
//! tree plus one small `IHave` per other link. A lost tree frame is repaired by the `IHave`s:
//! after `graft_timeout_ms` without the broadcast, the node grafts the first announcer (which
//! sends it and joins the tree again).

use std::collections::VecDeque;

use crate::address::Address;
use crate::drop_reason::DropReason;
use crate::error::{Replayed, TooLarge, WireError};
use crate::hlc::Timestamp;
use crate::identity::NodeId;
use crate::message::{Broadcast, Message, UpdateMessage};
use crate::time::Instant;
use crate::wire::{ENCRYPTED_OVERHEAD, SignedPacket};

use super::messages::{EagerPush, Graft, IHave, MessageRef, Prune};
use super::{Overlay, OverlayError, OverlayEvent};

/// Wire code of a `Broadcast`, the only packet an `EagerPush` may carry.
pub(super) const BROADCAST_KIND: u8 = 10;

/// Bytes an `EagerPush` adds around the origin's packet (array, round, bin header).
const PUSH_OVERHEAD: usize = 8;

/// A broadcast kept to answer grafts.
#[derive(Debug, Clone)]
struct Cached {
    origin: NodeId,
    id: Timestamp,
    /// Hops from the origin to this node.
    round: u8,
    packet: SignedPacket,
    until: Instant,
}

/// A broadcast announced by `IHave` that has not arrived.
#[derive(Debug, Clone)]
struct Missing {
    origin: NodeId,
    id: Timestamp,
    /// Neighbours that announced it, to graft in turn.
    announcers: VecDeque<NodeId>,
    deadline: Instant,
}

/// Plumtree's state; the eager/lazy flag of each link lives in the active view.
#[derive(Debug, Default)]
pub(super) struct Plumtree {
    cache: VecDeque<Cached>,
    missing: Vec<Missing>,
}

impl Plumtree {
    /// A broadcast arrived: it is no longer awaited.
    fn arrived(&mut self, origin: &NodeId, id: Timestamp) {
        self.missing
            .retain(|m| !(m.origin == *origin && m.id == id));
    }

    fn cache(&mut self, entry: Cached, capacity: usize) {
        if capacity == 0 {
            return;
        }
        while self.cache.len() >= capacity {
            self.cache.pop_front();
        }
        self.cache.push_back(entry);
    }

    /// The earliest graft timer or cache expiry.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let missing = self.missing.iter().map(|m| m.deadline).min();
        let cache = self.cache.front().map(|c| c.until);
        match (missing, cache) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Overlay {
    /// Whether a broadcast was seen: Plumtree asks the wire's replay guard, which records every
    /// accepted id anyway (and refuses those below its floor), instead of keeping a set of its own.
    fn has_seen(&self, origin: &NodeId, id: Timestamp) -> bool {
        self.shell.codec.replay().has_seen(origin, id)
    }

    pub(super) fn originate(
        &mut self,
        now: Instant,
        topic: &str,
        data: Vec<u8>,
    ) -> Result<Timestamp, OverlayError> {
        let id = self.shell.next_id(now);
        let message: Message = Broadcast {
            topic: topic.to_owned(),
            data: data.into(),
        }
        .into();
        let packet = self.shell.codec.sign(id, &message)?;
        let size = packet.len() + PUSH_OVERHEAD + ENCRYPTED_OVERHEAD;
        let max = self.config.limits.max_frame_bytes;
        if size > max {
            return Err(OverlayError::Encode(TooLarge::Frame { size, max }.into()));
        }
        let me = self.id();
        // Our own broadcast never passes the replay guard: record it, so echoes are duplicates.
        self.shell.codec.record_seen(me, id);
        self.keep(now, me, id, 0, packet.clone());
        self.push(now, me, id, 0, &packet, None);
        Ok(id)
    }

    fn keep(
        &mut self,
        now: Instant,
        origin: NodeId,
        id: Timestamp,
        round: u8,
        packet: SignedPacket,
    ) {
        let until = now.plus_millis(self.config.cache_ttl_ms);
        let entry = Cached {
            origin,
            id,
            round,
            packet,
            until,
        };
        self.tree.cache(entry, self.config.cache_capacity);
    }

    /// Sends a broadcast on: in full to eager links, by id to lazy ones, never back to `except`.
    fn push(
        &mut self,
        now: Instant,
        origin: NodeId,
        id: Timestamp,
        round: u8,
        packet: &SignedPacket,
        except: Option<NodeId>,
    ) {
        let (mut eager, mut lazy) = (Vec::new(), Vec::new());
        for p in self.active.iter().filter(|p| Some(p.node) != except) {
            let target = (Some(p.node), p.addr.clone());
            if p.eager {
                eager.push(target);
            } else {
                lazy.push(target);
            }
        }
        self.stats.eager_sent += eager.len() as u64;
        self.stats.ihave_sent += lazy.len() as u64;
        let push = EagerPush {
            round,
            packet: packet.clone(),
        };
        self.send_many(now, eager, push.into());
        let ids = vec![MessageRef { origin, id, round }];
        self.send_many(now, lazy, IHave { ids }.into());
    }

    /// The link to `sender` carried a duplicate: make it lazy and tell the sender.
    fn prune(&mut self, now: Instant, sender: NodeId) {
        let Some(peer) = self.active.get_mut(&sender) else {
            return;
        };
        peer.eager = false;
        let addr = peer.addr.clone();
        self.stats.prunes_sent += 1;
        self.send(now, Some(sender), addr, Prune {}.into());
    }

    pub(super) fn on_eager(&mut self, now: Instant, sender: NodeId, from: Address, m: EagerPush) {
        if m.packet.kind() != BROADCAST_KIND {
            self.shell.count_drop(DropReason::Unexpected);
            return;
        }
        // Content from a member we hold no link to is still authentic and still delivered.
        let linked = self.require_link(now, sender, from);
        let (origin, id) = (m.packet.origin(), m.packet.id());
        if self.has_seen(&origin, id) {
            self.shell.count_drop(DropReason::Duplicate);
            if linked {
                self.prune(now, sender);
            }
            return;
        }
        let wall = self.wall(now);
        let broadcast = match self.shell.codec.accept(&m.packet, wall) {
            Ok(Message::Update(UpdateMessage::Broadcast(b))) => b,
            Ok(_) => {
                self.shell.count_drop(DropReason::Unexpected);
                return;
            }
            Err(e) => {
                self.shell.drop_counted(&e);
                // Forgotten by our seen-set but refused by the replay guard: a duplicate too.
                if matches!(
                    e,
                    WireError::Replayed(Replayed::Duplicate | Replayed::BelowFloor)
                ) && linked
                {
                    self.prune(now, sender);
                }
                return;
            }
        };
        let round = m.round.saturating_add(1);
        self.tree.arrived(&origin, id);
        self.keep(now, origin, id, round, m.packet.clone());
        if let Some(peer) = self.active.get_mut(&sender) {
            peer.eager = true;
        }
        self.stats.delivered += 1;
        self.emit(OverlayEvent::Broadcast {
            origin,
            id,
            hops: round,
            topic: broadcast.topic,
            data: broadcast.data.into_vec(),
        });
        self.push(now, origin, id, round, &m.packet, Some(sender));
    }

    pub(super) fn on_ihave(&mut self, now: Instant, sender: NodeId, from: Address, m: IHave) {
        if !self.require_link(now, sender, from) {
            return;
        }
        let (max_missing, max_announcers) = (self.config.max_missing, self.config.active_size);
        let deadline = now.plus_millis(self.config.graft_timeout_ms);
        for r in m.ids.iter().take(max_missing) {
            if self.has_seen(&r.origin, r.id) {
                continue;
            }
            let room = self.tree.missing.len() < max_missing;
            let entry = self
                .tree
                .missing
                .iter_mut()
                .find(|e| e.origin == r.origin && e.id == r.id);
            match entry {
                Some(e) => {
                    if !e.announcers.contains(&sender) && e.announcers.len() < max_announcers {
                        e.announcers.push_back(sender);
                    }
                }
                None if room => {
                    self.tree.missing.push(Missing {
                        origin: r.origin,
                        id: r.id,
                        announcers: VecDeque::from([sender]),
                        deadline,
                    });
                }
                None => self.shell.count_drop(DropReason::QueueFull),
            }
        }
    }

    /// Graft timers: ask the next announcer of each overdue broadcast; forget expired cache.
    pub(super) fn tree_timeout(&mut self, now: Instant) {
        while self.tree.cache.front().is_some_and(|c| c.until <= now) {
            self.tree.cache.pop_front();
        }
        let mut grafts = Vec::new();
        let retry = now.plus_millis(self.config.graft_retry_ms);
        let active = &mut self.active;
        // An entry with nobody left to ask is given up once its last graft had time to answer.
        self.tree.missing.retain_mut(|e| {
            if e.deadline > now {
                return true;
            }
            while let Some(a) = e.announcers.pop_front() {
                if let Some(peer) = active.get_mut(&a) {
                    peer.eager = true;
                    grafts.push((a, peer.addr.clone(), e.origin, e.id));
                    e.deadline = retry;
                    return true;
                }
            }
            false
        });
        for (node, addr, origin, id) in grafts {
            self.stats.grafts_sent += 1;
            self.send(now, Some(node), addr, Graft { origin, id }.into());
        }
    }

    pub(super) fn on_graft(&mut self, now: Instant, sender: NodeId, from: Address, m: Graft) {
        if !self.require_link(now, sender, from) {
            return;
        }
        let addr = match self.active.get_mut(&sender) {
            Some(peer) => {
                peer.eager = true;
                peer.addr.clone()
            }
            None => return,
        };
        let cached = self
            .tree
            .cache
            .iter()
            .find(|c| c.origin == m.origin && c.id == m.id)
            .map(|c| (c.round, c.packet.clone()));
        if let Some((round, packet)) = cached {
            self.stats.eager_sent += 1;
            self.send(now, Some(sender), addr, EagerPush { round, packet }.into());
        }
    }

    pub(super) fn on_prune(&mut self, now: Instant, sender: NodeId, from: Address) {
        if !self.require_link(now, sender, from) {
            return;
        }
        if let Some(peer) = self.active.get_mut(&sender) {
            peer.eager = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_kind_is_the_wire_code() {
        let m: Message = Broadcast {
            topic: String::new(),
            data: Vec::new().into(),
        }
        .into();
        assert_eq!(m.kind(), BROADCAST_KIND);
    }
}
