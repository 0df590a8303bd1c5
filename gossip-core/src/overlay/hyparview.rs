//! HyParView membership: joins and their random walks, neighbor requests, disconnects, shuffles,
//! and the maintenance tick (heartbeats, failure detection, repair from the passive view).

use crate::address::Address;
use crate::identity::NodeId;
use crate::time::Instant;

use super::messages::{
    Disconnect, ForwardJoin, Heartbeat, Neighbor, NeighborReply, OverlayJoin, PeerInfo, Shuffle,
    ShuffleReply, priority,
};
use super::views::below;
use super::{Overlay, OverlayEvent, Pending};
use crate::drop_reason::DropReason;

/// The address to answer a peer at: the first it announced (signed by it), else where it sent from.
fn peer_addr(from: Address, announced: &[Address]) -> Address {
    announced.first().cloned().unwrap_or(from)
}

impl Overlay {
    /// Adds `node` to the active view, evicting a random neighbour if the view is full.
    /// Returns false if it was there already (its address is refreshed).
    pub(super) fn add_active(&mut self, now: Instant, node: NodeId, addr: Address) -> bool {
        if node == self.id() {
            return false;
        }
        if let Some(peer) = self.active.get_mut(&node) {
            peer.addr = addr;
            return false;
        }
        if self.active.is_full() {
            let victim = self.active.random(&mut self.rng, &[]).map(|p| p.node);
            if let Some(victim) = victim {
                self.drop_active(now, victim, false, false);
            }
        }
        self.passive.remove(&node);
        self.pending.retain(|p| p.node != Some(node));
        if self.active.insert(node, addr, now) {
            self.isolated = false;
            self.emit(OverlayEvent::NeighborUp(node));
        }
        true
    }

    /// Removes an active neighbour: `failed` ones are forgotten, others are told (unless they
    /// told us) and kept as passive entries.
    fn drop_active(&mut self, now: Instant, node: NodeId, failed: bool, told_us: bool) {
        let Some(peer) = self.active.remove(&node) else {
            return;
        };
        if failed {
            self.stats.failures += 1;
        } else {
            if !told_us {
                self.send(
                    now,
                    None,
                    peer.addr.clone(),
                    Disconnect { leaving: false }.into(),
                );
            }
            self.passive.insert(&mut self.rng, node, peer.addr, &[]);
        }
        self.emit(OverlayEvent::NeighborDown { node, failed });
    }

    fn my_info(&self) -> PeerInfo {
        PeerInfo {
            node: self.id(),
            addrs: self.addrs.clone(),
        }
    }

    pub(super) fn send_join(&mut self, now: Instant) {
        let at = below(&mut self.rng, self.seeds.len().max(1));
        let Some(seed) = self.seeds.get(at).cloned() else {
            return;
        };
        self.pending.retain(|p| p.node.is_some());
        self.join_through(now, seed);
    }

    /// Asks the member at `seed` to let us join, and waits for its answer.
    fn join_through(&mut self, now: Instant, seed: Address) {
        self.pending.push(Pending {
            node: None,
            addr: seed.clone(),
            deadline: now.plus_millis(self.config.request_timeout_ms),
        });
        let addrs = self.addrs.clone();
        self.send(now, None, seed, OverlayJoin { addrs }.into());
    }

    /// A contact's side of a join: link to the joiner and start walks through every other
    /// neighbour.
    pub(super) fn on_join(&mut self, now: Instant, joiner: NodeId, from: Address, m: OverlayJoin) {
        let addr = peer_addr(from, &m.addrs);
        self.add_active(now, joiner, addr.clone());
        let reply = NeighborReply {
            accepted: true,
            addrs: self.addrs.clone(),
        };
        self.send(now, Some(joiner), addr.clone(), reply.into());
        let others: Vec<(NodeId, Address)> = self
            .active
            .iter()
            .filter(|p| p.node != joiner)
            .map(|p| (p.node, p.addr.clone()))
            .collect();
        // Not in HyParView: a welcome sample of our views, so the joiner's passive view does
        // not start empty (an overlay region whose passive views are all empty cannot heal).
        let mut peers: Vec<PeerInfo> = self
            .passive
            .sample(&mut self.rng, self.config.shuffle_passive)
            .into_iter()
            .map(|(node, a)| PeerInfo {
                node,
                addrs: vec![a],
            })
            .collect();
        peers.extend(
            others
                .iter()
                .take(self.config.shuffle_active)
                .map(|(node, a)| PeerInfo {
                    node: *node,
                    addrs: vec![a.clone()],
                }),
        );
        if !peers.is_empty() {
            self.send(
                now,
                Some(joiner),
                addr.clone(),
                ShuffleReply { peers }.into(),
            );
        }
        let walk = ForwardJoin {
            joiner: PeerInfo {
                node: joiner,
                addrs: vec![addr],
            },
            ttl: self.config.active_walk,
        };
        let targets = others.into_iter().map(|(n, a)| (Some(n), a)).collect();
        self.send_many(now, targets, walk.into());
    }

    pub(super) fn on_forward_join(&mut self, now: Instant, sender: NodeId, m: ForwardJoin) {
        let joiner = m.joiner.node;
        let Some(addr) = m.joiner.addrs.first().cloned() else {
            self.shell.count_drop(DropReason::Unexpected);
            return;
        };
        if joiner == self.id() {
            return;
        }
        // A hostile ttl cannot make a walk longer than ours.
        let ttl = m.ttl.min(self.config.active_walk);
        if ttl > 0 && self.active.len() > 1 {
            if ttl == self.config.passive_walk && !self.active.contains(&joiner) {
                self.passive
                    .insert(&mut self.rng, joiner, addr.clone(), &[]);
            }
            let next = self
                .active
                .random(&mut self.rng, &[sender, joiner])
                .map(|p| (p.node, p.addr.clone()));
            if let Some((node, to)) = next {
                let walk = ForwardJoin {
                    joiner: PeerInfo {
                        node: joiner,
                        addrs: vec![addr],
                    },
                    ttl: ttl - 1,
                };
                self.send(now, Some(node), to, walk.into());
                return;
            }
        }
        // The walk ends here: link to the joiner, which accepts (high priority).
        if self.add_active(now, joiner, addr.clone()) {
            let ask = Neighbor {
                addrs: self.addrs.clone(),
                priority: priority::HIGH,
            };
            self.send(now, Some(joiner), addr, ask.into());
        }
    }

    pub(super) fn on_neighbor(&mut self, now: Instant, sender: NodeId, from: Address, m: Neighbor) {
        let addr = peer_addr(from, &m.addrs);
        let accepted =
            self.active.contains(&sender) || m.priority == priority::HIGH || !self.active.is_full();
        if accepted {
            self.add_active(now, sender, addr.clone());
        } else {
            self.passive
                .insert(&mut self.rng, sender, addr.clone(), &[]);
        }
        let reply = NeighborReply {
            accepted,
            addrs: self.addrs.clone(),
        };
        self.send(now, Some(sender), addr, reply.into());
    }

    pub(super) fn on_neighbor_reply(
        &mut self,
        now: Instant,
        sender: NodeId,
        from: Address,
        m: NeighborReply,
    ) {
        let addr = peer_addr(from.clone(), &m.addrs);
        let asked = self.pending.iter().position(|p| match p.node {
            Some(node) => node == sender,
            None => p.addr == from || m.addrs.contains(&p.addr),
        });
        let join = asked.is_some_and(|at| self.pending[at].node.is_none());
        if let Some(at) = asked {
            self.pending.swap_remove(at);
        }
        if self.active.contains(&sender) {
            return;
        }
        if !m.accepted {
            self.passive.insert(&mut self.rng, sender, addr, &[]);
            return;
        }
        if join {
            self.joined = true;
        }
        if asked.is_some() && (join || !self.active.is_full()) {
            self.add_active(now, sender, addr);
        } else {
            // Unsolicited, or no room any more: the sender holds a link we do not.
            self.send(
                now,
                None,
                addr.clone(),
                Disconnect { leaving: false }.into(),
            );
            self.passive.insert(&mut self.rng, sender, addr, &[]);
        }
    }

    pub(super) fn on_disconnect(
        &mut self,
        now: Instant,
        sender: NodeId,
        from: Address,
        m: Disconnect,
    ) {
        self.pending.retain(|p| p.node != Some(sender));
        let addr = self.active.get(&sender).map_or(from, |p| p.addr.clone());
        self.drop_active(now, sender, false, true);
        if m.leaving {
            self.passive.remove(&sender);
        } else {
            self.passive.insert(&mut self.rng, sender, addr, &[]);
        }
    }

    pub(super) fn on_shuffle(&mut self, now: Instant, sender: NodeId, m: Shuffle) {
        let origin = m.origin.node;
        if origin == self.id() {
            return;
        }
        let ttl = m.ttl.min(self.config.active_walk);
        if ttl > 0 && self.active.len() > 1 {
            let next = self
                .active
                .random(&mut self.rng, &[sender, origin])
                .map(|p| (p.node, p.addr.clone()));
            if let Some((node, to)) = next {
                let walk = Shuffle { ttl: ttl - 1, ..m };
                self.send(now, Some(node), to, walk.into());
                return;
            }
        }
        let Some(addr) = m.origin.addrs.first().cloned() else {
            self.shell.count_drop(DropReason::Unexpected);
            return;
        };
        let k = self.shuffle_len().min(m.peers.len() + 1);
        let peers = self
            .passive
            .sample(&mut self.rng, k)
            .into_iter()
            .map(|(node, a)| PeerInfo {
                node,
                addrs: vec![a],
            })
            .collect();
        self.send(now, Some(origin), addr, ShuffleReply { peers }.into());
        let mut got = m.peers;
        got.push(m.origin);
        self.integrate(&got);
    }

    fn shuffle_len(&self) -> usize {
        self.config.shuffle_active + self.config.shuffle_passive + 1
    }

    /// The answer to our shuffle (or a contact's welcome sample).
    pub(super) fn on_shuffle_reply(&mut self, m: ShuffleReply) {
        let me = self.id();
        let new = m.peers.iter().any(|p| {
            p.node != me && !self.active.contains(&p.node) && !self.passive.contains(&p.node)
        });
        self.stale_shuffles = if new {
            0
        } else {
            self.stale_shuffles.saturating_add(1)
        };
        self.integrate(&m.peers);
    }

    /// Adds what a shuffle brought to the passive view (at most a shuffle's worth).
    pub(super) fn integrate(&mut self, peers: &[PeerInfo]) {
        let me = self.id();
        let mut added: Vec<NodeId> = Vec::new();
        for p in peers.iter().take(self.shuffle_len()) {
            let Some(addr) = p.addrs.first() else {
                continue;
            };
            if p.node == me || self.active.contains(&p.node) {
                continue;
            }
            self.passive
                .insert(&mut self.rng, p.node, addr.clone(), &added);
            added.push(p.node);
        }
    }

    /// Authentic link traffic from a member we hold no link to: tell it so, so it drops its side.
    /// Returns whether the link exists.
    pub(super) fn require_link(&mut self, now: Instant, sender: NodeId, from: Address) -> bool {
        if self.active.contains(&sender) {
            return true;
        }
        self.send(now, None, from, Disconnect { leaving: false }.into());
        false
    }

    pub(super) fn on_heartbeat(
        &mut self,
        now: Instant,
        sender: NodeId,
        from: Address,
        m: Heartbeat,
    ) {
        if self.require_link(now, sender, from.clone()) && m.probe {
            let to = self.active.get(&sender).map_or(from, |p| p.addr.clone());
            self.stats.heartbeats_sent += 1;
            self.send(now, Some(sender), to, Heartbeat { probe: false }.into());
        }
    }

    /// The maintenance tick.
    pub(super) fn tick(&mut self, now: Instant) {
        // Requests nobody answered: a silent passive entry is presumed dead.
        let expired: Vec<Pending> = self
            .pending
            .iter()
            .filter(|p| p.deadline <= now)
            .cloned()
            .collect();
        self.pending.retain(|p| p.deadline > now);
        for p in &expired {
            match p.node {
                Some(node) => {
                    self.passive.remove(&node);
                }
                // Until a contact answers, this node is not in the overlay even if joiners
                // linked to it: retry, or it and its joiners stay an island.
                None if !self.joined => self.send_join(now),
                None => {}
            }
        }
        // Failure detection and heartbeats.
        let c = &self.config;
        let (failure, suspect, beat) = (
            c.failure_timeout_ms * 1_000,
            c.suspect_after_ms * 1_000,
            c.heartbeat_interval_ms * 1_000,
        );
        let mut failed = Vec::new();
        let mut beats = Vec::new();
        for p in self.active.iter() {
            let silent = now.micros_since(p.last_heard);
            if silent >= failure {
                failed.push(p.node);
            } else if silent >= suspect {
                beats.push((p.node, p.addr.clone(), true));
            } else if now.micros_since(p.last_sent) >= beat {
                beats.push((p.node, p.addr.clone(), false));
            }
        }
        for node in failed {
            self.drop_active(now, node, true, false);
        }
        self.stats.heartbeats_sent += beats.len() as u64;
        for probe in [false, true] {
            let targets = beats
                .iter()
                .filter(|(_, _, p)| *p == probe)
                .map(|(node, addr, _)| (Some(*node), addr.clone()))
                .collect();
            self.send_many(now, targets, Heartbeat { probe }.into());
        }
        self.repair(now);
        if now >= self.next_shuffle {
            let interval = self.config.shuffle_interval_ms;
            self.next_shuffle = now
                .plus_millis(interval / 2 + below(&mut self.rng, interval.max(1) as usize) as u64);
            self.shuffle(now);
        }
    }

    /// Keeps the active view full: promotes passive entries (high priority below `active_min`),
    /// or joins again through a seed when nothing is known.
    fn repair(&mut self, now: Instant) {
        let joining = self.pending.iter().any(|p| p.node.is_none());
        if self.active.is_empty() && self.passive.is_empty() {
            if !self.seeds.is_empty() && !joining {
                if !self.isolated {
                    self.isolated = true;
                    self.emit(OverlayEvent::Isolated);
                }
                self.send_join(now);
            }
            return;
        }
        // Not in HyParView: a region of the overlay can close on itself (no link out, every
        // passive entry inside). Its shuffles then bring nothing new; join again through a seed
        // we do not know, which links the region to the rest.
        if self.stale_shuffles >= 2 && !joining && now >= self.next_rejoin {
            let known = |a: &Address| {
                self.active.iter().any(|p| p.addr == *a) || self.passive.iter().any(|(_, b)| b == a)
            };
            let outside: Vec<Address> = self.seeds.iter().filter(|a| !known(a)).cloned().collect();
            if let Some(seed) = super::views::pick(&mut self.rng, outside.iter()).cloned() {
                self.stale_shuffles = 0;
                self.next_rejoin = now.plus_millis(self.config.shuffle_interval_ms);
                self.join_through(now, seed);
            }
        }
        let asking = self.pending.iter().filter(|p| p.node.is_some()).count();
        if self.active.is_full() || asking >= self.config.max_pending {
            return;
        }
        let urgent = self.active.len() < self.config.active_min;
        if !urgent && now < self.next_fill {
            return;
        }
        self.next_fill = now.plus_millis(self.config.fill_interval_ms);
        let mut skip: Vec<NodeId> = self.pending.iter().filter_map(|p| p.node).collect();
        skip.extend(self.active.iter().map(|p| p.node));
        let Some((node, addr)) = self.passive.random(&mut self.rng, &skip).cloned() else {
            // Nobody to ask: a shuffle brings candidates.
            if urgent {
                self.shuffle(now);
            }
            return;
        };
        self.pending.push(Pending {
            node: Some(node),
            addr: addr.clone(),
            deadline: now.plus_millis(self.config.request_timeout_ms),
        });
        let ask = Neighbor {
            addrs: self.addrs.clone(),
            priority: if urgent {
                priority::HIGH
            } else {
                priority::LOW
            },
        };
        self.send(now, Some(node), addr, ask.into());
    }

    fn shuffle(&mut self, now: Instant) {
        let Some((node, to)) = self
            .active
            .random(&mut self.rng, &[])
            .map(|p| (p.node, p.addr.clone()))
        else {
            return;
        };
        let mut peers: Vec<PeerInfo> = super::views::sample(
            &mut self.rng,
            self.active.iter().filter(|p| p.node != node),
            self.config.shuffle_active,
        )
        .into_iter()
        .map(|p| PeerInfo {
            node: p.node,
            addrs: vec![p.addr.clone()],
        })
        .collect();
        peers.extend(
            self.passive
                .sample(&mut self.rng, self.config.shuffle_passive)
                .into_iter()
                .map(|(node, a)| PeerInfo {
                    node,
                    addrs: vec![a],
                }),
        );
        let walk = Shuffle {
            origin: self.my_info(),
            ttl: self.config.active_walk,
            peers,
        };
        self.send(now, Some(node), to, walk.into());
    }
}
