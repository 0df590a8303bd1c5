use super::Node;
use super::backlog::{Backlog, Subject};
use super::table::Members;
use super::timers::Timer;
use crate::identity::NodeId;
use crate::message::Gossip;
use crate::push_tree;
use crate::time::Instant;
use crate::wire::{ENCRYPTED_OVERHEAD, SignedPacket};

/// What is being disseminated: the retransmit queue and the news of the input being handled.
#[derive(Debug, Default)]
pub(super) struct Spread {
    /// Updates to piggyback and gossip, each until its retransmit budget is spent.
    pub(super) queue: Backlog,
    /// What became news while handling the current input (pushed by `flush`).
    pub(super) fresh: Vec<SignedPacket>,
    /// What each of `fresh` is about, in step with it: the hub tells each relayed member only
    /// about the members its view lets it see.
    pub(super) fresh_subjects: Vec<Subject>,
    /// Who sent the input being handled: its news is not pushed back to it.
    pub(super) fresh_from: Option<NodeId>,
    /// Members first learned of while handling the input (at most `NEWCOMERS_MAX`): other
    /// members may not know them yet, so their news gets no push tree (see `tree_root`).
    pub(super) newcomers: Vec<NodeId>,
    /// Pushes held back (see [`Node::hold_pushes`]), with the one member all the news in
    /// `fresh` came from, if there is one (`None` once several did; not read while `fresh` is
    /// empty, so nothing needs resetting when a timer flushes it).
    pub(super) held: Option<Option<NodeId>>,
    /// Set while held news is pushed: it is cut into datagram-sized batches. A held batch is
    /// as large as the backlog it came from, and a batch over the datagram budget goes over a
    /// connection, which for most push targets would first have to be dialled.
    pub(super) datagrams: bool,
}

/// News held back before the push goes out anyway: a driver that never releases must not
/// make the node buffer without bound, and a wave must not wait for a whole backlog.
pub(super) const HELD_MAX: usize = 64;

/// Room left in a probe for its own fields when filling the rest with piggyback.
pub(super) const PROBE_FIELDS: usize = 64;

/// Ring index of the member an update's push tree hangs from: its origin, or for a relayed
/// origin its relay, which is the member that pushes a relayed member's news first. None when
/// neither is on the ring, or when the origin is a newcomer: then the members that get the news
/// disagree on whether it is on their ring (in a join storm, on most of it), their trees do not
/// line up, and a random push covers more.
pub(super) fn tree_root(
    members: &Members,
    ring: &[NodeId],
    newcomers: &[NodeId],
    item: &SignedPacket,
) -> Option<usize> {
    let origin = item.origin();
    if newcomers.contains(&origin) {
        return None;
    }
    ring.binary_search(&origin).ok().or_else(|| {
        let relay = members.get(&origin)?.relay()?;
        ring.binary_search(&relay).ok()
    })
}

impl Node {
    pub(super) fn enqueue(&mut self, subject: Subject, packet: SignedPacket) {
        self.spread
            .queue
            .push(subject, packet.clone(), self.config.max_queue);
        self.spread.fresh.push(packet);
        self.spread.fresh_subjects.push(subject);
        let fast = self
            .timers
            .latest()
            .plus_millis(self.config.fast_gossip_interval_ms);
        self.timers.lower(Timer::Gossip, fast);
    }

    pub(super) fn piggyback_budget(&self) -> usize {
        self.config
            .udp_budget
            .saturating_sub(ENCRYPTED_OVERHEAD + PROBE_FIELDS)
    }

    /// Least-sent items first, within `budget` bytes; items retire after the retransmit limit.
    pub(super) fn take_piggyback(&mut self, budget: usize) -> Vec<SignedPacket> {
        if self.spread.queue.is_empty() {
            return Vec::new();
        }
        let limit = self.config.retransmit_limit(self.live_count());
        self.spread.queue.take(budget, limit)
    }

    /// [`Node::take_piggyback`] for a probe or ack to `to`: a member with a limited view gets
    /// only items about members it may see (and none of its own words, nor admissions); a
    /// member relayed through this node that sees everything gets everything but admissions.
    pub(super) fn take_piggyback_for(&mut self, budget: usize, to: NodeId) -> Vec<SignedPacket> {
        #[cfg(feature = "admission")]
        if self.is_limited(&to) {
            if self.spread.queue.is_empty() {
                return Vec::new();
            }
            let limit = self.config.retransmit_limit(self.live_count());
            let (admitted, members, me) = (&self.admitted, &self.members, self.id);
            return self
                .spread
                .queue
                .take_where(budget, limit, |subject, packet| {
                    packet.origin() != to
                        && packet.kind() != super::admit::ADMISSION_KIND
                        && super::admit::sees(admitted, members, &me, &to, &subject.member())
                });
        }
        // Tabs get no admissions by any path (`flush`, `delta`, and here), even under a scope
        // that shows them everything: their server checks admissions for them and tells them
        // of a lapse with a dead record. One piggybacked here reached a tab by chance and its
        // renewals only by chance, so the tab held it until it expired and then dropped, as
        // `not_admitted`, a member every server still had alive (issue 14, 2,000 tabs).
        #[cfg(feature = "admission")]
        if self.hub.leaves.contains(&to) {
            let limit = self.config.retransmit_limit(self.live_count());
            return self.spread.queue.take_where(budget, limit, |_, packet| {
                packet.kind() != super::admit::ADMISSION_KIND
            });
        }
        #[cfg(not(feature = "admission"))]
        let _ = to;
        self.take_piggyback(budget)
    }

    pub(super) fn gossip_round(&mut self, now: Instant) {
        if self.spread.queue.is_empty() {
            return;
        }
        if self.local().relay().is_some() {
            // A relayed member's every link runs through its relay, which `flush` already handed
            // the news to over a reliable link: retransmitting would only cost the relay.
            self.spread.queue.clear();
            return;
        }
        let retention = self.config.dead_retention_ms;
        // Gossip to the recently dead too, so a falsely buried member learns it and refutes.
        // Relayed members are left out: their relay serves them (`deliver_hub`). With nobody
        // down those are exactly the push targets.
        let targets = if self.live_count() == self.members.len() {
            self.random_push_targets(self.config.gossip_nodes, &[])
        } else {
            self.random_members(self.config.gossip_nodes, |m| {
                (!m.state.is_down() || now.micros_since(m.since) / 1_000 < retention)
                    && m.relay().is_none()
            })
        };
        let budget = self.piggyback_budget();
        for target in targets {
            let items = self.take_piggyback(budget);
            // A broadcast too large to ride along is retransmitted in a frame of its own, so a
            // member the first push missed (a lost frame, a dead parent) still gets it.
            let limit = self.config.retransmit_limit(self.live_count());
            let large = self.spread.queue.take_oversized(budget, limit);
            if items.is_empty() && large.is_empty() {
                break;
            }
            if !items.is_empty() {
                self.send_to_member(now, target, Gossip { items }.into(), false);
            }
            for item in large {
                let gossip = Gossip { items: vec![item] };
                self.send_to_member(now, target, gossip.into(), true);
            }
        }
    }

    /// Event-driven push: what became news during this input goes down its push tree now (see
    /// `push_down_trees`), and to the members relayed through this node.
    pub(super) fn flush(&mut self, now: Instant) {
        if self.spread.fresh.is_empty() {
            self.spread.newcomers.clear();
            return;
        }
        let fresh = std::mem::take(&mut self.spread.fresh);
        let subjects = std::mem::take(&mut self.spread.fresh_subjects);
        if !self.hub.leaves.is_empty() {
            let for_tabs = subjects.into_iter().zip(fresh.iter().cloned());
            // Tabs do not decode admissions (their server checks them for them).
            #[cfg(feature = "admission")]
            let for_tabs = for_tabs.filter(|(_, p)| p.kind() != super::admit::ADMISSION_KIND);
            self.hub.pending.extend(for_tabs);
            let excess = self.hub.pending.len().saturating_sub(self.config.max_queue);
            if excess > 0 {
                self.hub.pending.drain(..excess);
                self.shell.stats.transmits_dropped += excess as u64;
            }
            if now >= self.hub.next_delivery {
                self.deliver_hub(now);
            }
        }
        let source = self.spread.fresh_from;
        match self.local().relay() {
            // Anything a relayed member sends crosses its relay: hand the news to the relay
            // alone, which pushes it on and delivers it to every member beside us.
            Some(relay) => {
                let up = self.members.get(&relay).is_some_and(|m| !m.state.is_down());
                if up && Some(relay) != source {
                    self.push_signed(now, &fresh, [relay]);
                }
            }
            None => self.push_down_trees(now, fresh, source),
        }
    }

    /// Pushes news to this node's children in the push tree of the member it started from (see
    /// `push_tree`). Every member does so on first receipt, from whomever the news came, so
    /// when views agree one wave reaches every direct member in about `log_f(n)` hops with
    /// `n - 1` frames, where random targets cost `n * f` frames and still missed about
    /// `n * e^-f` members until a gossip round. A member the wave missed (stale view, lost
    /// frame, dead parent) pushes to its own subtree once a gossip round or push-pull reaches
    /// it. Relayed members are left out: their relay delivers to them (`deliver_hub`).
    pub(super) fn push_down_trees(
        &mut self,
        now: Instant,
        mut fresh: Vec<SignedPacket>,
        source: Option<NodeId>,
    ) {
        let fanout = self.config.push_fanout(self.live_count());
        // Sorted ids lay out the same ring on every member whose view agrees.
        let ring = self.members.push_ring();
        // Found: this node was just added to the ring.
        let me = ring.binary_search(&self.id).unwrap_or_else(|at| at);
        let ring = &ring[..];
        let children = move |root: usize| {
            push_tree::children(ring.len(), fanout, root, me)
                .map(move |i| ring[i])
                .filter(move |id| Some(*id) != source)
        };

        // Roots in order of first appearance: the batch keeps that order, so the members it
        // reaches pick the same first roots and the same trees.
        let newcomers = std::mem::take(&mut self.spread.newcomers);
        let root_of =
            |members: &Members, item: &SignedPacket| tree_root(members, ring, &newcomers, item);
        let mut roots = [None::<usize>; 2];
        let mut in_first = 0;
        let (mut more_roots, mut treeless) = (false, false);
        for item in &fresh {
            let root = root_of(&self.members, item);
            match root {
                None => treeless = true,
                Some(_) if roots.contains(&root) => {}
                Some(_) if roots[0].is_none() => roots[0] = root,
                Some(_) if roots[1].is_none() => roots[1] = root,
                Some(_) => more_roots = true,
            }
            in_first += usize::from(root.is_some() && root == roots[0]);
        }
        let spill = more_roots || treeless;
        match roots {
            [Some(a), None] if !spill => self.push_signed(now, &fresh, children(a)),
            [Some(a), Some(b)] if !spill => {
                // Stable, so each group keeps its order for the members downstream.
                crate::sort::stable_by_key(&mut fresh, |item| {
                    root_of(&self.members, item) != Some(a)
                });
                let (first, second) = fresh.split_at(in_first);
                self.push_signed(now, first, children(a));
                self.push_signed(now, second, children(b));
            }
            _ => {
                // More than two roots, or news without a tree (its origin is down, unknown or
                // relayed through a member we do not push to). A signature per root would make
                // a join storm cost one per joiner at every hop, so the whole set is signed once
                // and follows the first two trees: the members it reaches hold it fresh too and
                // pick the same first roots from the same order, so news of every root still
                // crosses the cluster in one wave, for at most twice the frames. Treeless news
                // has no wave of its own: topping up to the fan-out with random members keeps
                // for it, at tree leaves too, at least the random push this replaces.
                let mut targets: Vec<NodeId> =
                    roots.iter().flatten().flat_map(|&r| children(r)).collect();
                crate::sort::unstable(&mut targets);
                targets.dedup();
                let missing = fanout.saturating_sub(targets.len());
                if treeless && missing > 0 {
                    let exclude: Vec<NodeId> = targets.iter().copied().chain(source).collect();
                    let more = self.random_push_targets(missing, &exclude);
                    targets.extend(more);
                }
                self.push_signed(now, &fresh, targets.iter().copied());
            }
        }
    }

    /// Signs `items` once per batch and seals each batch per target: the envelope names no
    /// recipient. Nothing is signed when there is nobody to send to (a tree leaf).
    pub(super) fn push_signed<I>(&mut self, now: Instant, items: &[SignedPacket], targets: I)
    where
        I: IntoIterator<Item = NodeId> + Clone,
    {
        if targets.clone().into_iter().next().is_none() {
            return;
        }
        let budget = if self.spread.datagrams {
            self.piggyback_budget()
        } else {
            self.config.max_sync_bytes
        };
        for batch in self.sign_batches(now, items, budget) {
            for target in targets.clone() {
                self.route_packet(now, target, &batch, false);
            }
        }
    }
}
