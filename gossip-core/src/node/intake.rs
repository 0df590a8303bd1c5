//! Room in the member table for members this node has not yet heard answer.
//!
//! Any key holder can mint identities (a key pair and a self-signed alive record each) faster
//! than probes can show that nobody answers at their addresses, so a table of `max_members`
//! fills within a minute of minting however strict the intake caps per frame and per sender
//! are. What a full table must not do is refuse the next genuine newcomer: that is how a mint
//! locks a cluster against joins. So the unconfirmed members (see `Probing::confirmed`) are
//! counted by who vouched for them: the confirmed member whose frame introduced them, or
//! nobody (a member that introduced itself, or was introduced by a member we never heard
//! answer). A full table makes room by forgetting the oldest member of the largest share,
//! and only when that share is larger than the newcomer's own by two or more, or is its own:
//! a key holder's mint evicts first its own earlier mint, never a member another confirmed
//! member introduced while its share is smaller. The attacker gets at most its fair share of
//! the table per identity that answers probes, and a member introduced by an honest member
//! stays until it answers.

//!
//! Behind the `intake` feature. The browser build leaves it off: a browser member is relayed,
//! its table is fed by its own server alone and everything it sends goes through that server, so
//! there is no table to keep open and no target to choose; without the feature a full table
//! refuses newcomers and target draws are uniform.

#[cfg(feature = "intake")]
use std::collections::{HashMap, VecDeque};

use super::Node;
#[cfg(feature = "intake")]
use super::send::shuffle;
use crate::identity::NodeId;
#[cfg(feature = "intake")]
use crate::membership::Member;
#[cfg(feature = "intake")]
use crate::message::sync_phase;
use crate::time::Instant;
use crate::wire::SignedPacket;
#[cfg(feature = "intake")]
use rand_core::Rng;

/// Vouched newcomers waiting to be probed first; more wait their turn in the lane.
#[cfg(feature = "intake")]
const SOON_MAX: usize = 64;

/// Who vouched for an unconfirmed member: a confirmed member that introduced it, or nobody.
pub(super) type Voucher = Option<NodeId>;

/// The unconfirmed members of the table, by voucher, oldest first.
#[cfg(feature = "intake")]
#[derive(Debug, Default)]
pub(super) struct Pool {
    /// Each counted member's voucher, and whether it came in a seed's answer to this node's join
    /// (the seed is whom the operator told us to trust, and it chose none of the timing).
    of: HashMap<NodeId, (Voucher, bool)>,
    /// Members per voucher (no zero entries).
    count: HashMap<Voucher, usize>,
    /// Members per voucher in the order they entered. Entries of members that have since left
    /// the pool are skipped when met, and compacted away before they outnumber the live ones.
    order: HashMap<Voucher, VecDeque<NodeId>>,
    /// Vouched newcomers to probe before the rest of the unconfirmed lane, oldest first.
    soon: VecDeque<NodeId>,
    /// Members this node opened a push-pull with, and when. Their answer comes from the address
    /// they signed as surely as an ack to a probe does, so it confirms them: a joiner must not
    /// treat its seed's records as a stranger's.
    awaiting: HashMap<NodeId, Instant>,
    /// Seeds asked to let this node join that have not answered (their ids are not known).
    seeds_awaiting: usize,
    /// Whether the records being applied are a seed's answer to our join.
    asked: bool,
}

#[cfg(feature = "intake")]
impl Pool {
    /// Counts a member new to the table under `voucher`; whether it is to be probed first
    /// (a confirmed member with a modest share vouched for it; a mint's order is the minter's
    /// to choose, so it gets no head start).
    pub(super) fn enter(&mut self, id: NodeId, voucher: Voucher) -> bool {
        if self.of.contains_key(&id) {
            return false;
        }
        self.of.insert(id, (voucher, self.asked));
        *self.count.entry(voucher).or_insert(0) += 1;
        self.order.entry(voucher).or_default().push_back(id);
        let soon = self.is_modest(voucher) && self.soon.len() < SOON_MAX;
        if soon {
            self.soon.push_back(id);
        }
        soon
    }

    /// The next vouched newcomer waiting to be probed first.
    pub(super) fn next_soon(&mut self) -> Option<NodeId> {
        self.soon.pop_front()
    }

    /// The member stops counting: it answered a probe of ours, or left the table.
    pub(super) fn leave(&mut self, id: &NodeId) {
        let Some((voucher, _)) = self.of.remove(id) else {
            return;
        };
        let live = match self.count.get_mut(&voucher) {
            Some(n) if *n > 1 => {
                *n -= 1;
                *n
            }
            _ => {
                self.count.remove(&voucher);
                self.order.remove(&voucher);
                return;
            }
        };
        // Members that answered stay in `order` until met; bound the stale entries.
        if let Some(queue) = self.order.get_mut(&voucher)
            && queue.len() > 2 * live + 16
        {
            let of = &self.of;
            queue.retain(|m| of.get(m).is_some_and(|(v, _)| *v == voucher));
        }
    }

    /// Members counted under `voucher`.
    pub(super) fn share(&self, voucher: Voucher) -> usize {
        self.count.get(&voucher).copied().unwrap_or(0)
    }

    /// Whether `voucher` is a confirmed member whose share is at most the mean: a member it
    /// introduces is worth probing at once. A large share (a mint) waits its turn.
    pub(super) fn is_modest(&self, voucher: Voucher) -> bool {
        voucher.is_some() && self.share(voucher) * self.count.len() <= self.of.len()
    }

    /// Whether `id` is unconfirmed but as likely to be real as the confirmed member that
    /// vouched for it: that member is the seed that answered our join (whatever its share), or
    /// its share is modest. A mint pushed at us is neither.
    pub(super) fn is_vouched(&self, id: &NodeId) -> bool {
        self.of
            .get(id)
            .is_some_and(|(v, asked)| *asked || self.is_modest(*v))
    }

    /// The member to forget so that one vouched for by `newcomer` may enter a full table, if
    /// fairness allows one: the oldest of the largest share, when that share is the
    /// newcomer's own or larger than it by two or more. It leaves the pool; the caller removes
    /// it from the table. `keep` spares members that must stay (those relayed by this node).
    pub(super) fn evict(
        &mut self,
        newcomer: Voucher,
        keep: impl Fn(&NodeId) -> bool,
    ) -> Option<NodeId> {
        // Ties go to the larger key, so every run picks the same share whatever the map order.
        let (&largest, &n) = self.count.iter().max_by_key(|(v, n)| (**n, **v))?;
        if largest != newcomer && n < self.share(newcomer) + 2 {
            return None;
        }
        loop {
            let id = self.order.get_mut(&largest)?.pop_front()?;
            if self.of.get(&id).is_none_or(|(v, _)| *v != largest) {
                continue;
            }
            self.leave(&id);
            if keep(&id) {
                // Spared for good: it is not counted again.
                continue;
            }
            return Some(id);
        }
    }

    /// Unconfirmed members counted.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.of.len()
    }
}

/// Without the `intake` feature nothing is counted: a full table refuses every newcomer.
#[cfg(not(feature = "intake"))]
#[derive(Debug, Default)]
pub(super) struct Pool;

#[cfg(not(feature = "intake"))]
impl Pool {
    pub(super) fn enter(&mut self, _id: NodeId, _voucher: Voucher) -> bool {
        false
    }

    pub(super) fn next_soon(&mut self) -> Option<NodeId> {
        None
    }

    pub(super) fn is_vouched(&self, _id: &NodeId) -> bool {
        false
    }

    pub(super) fn leave(&mut self, _id: &NodeId) {}

    pub(super) fn evict(
        &mut self,
        _newcomer: Voucher,
        _keep: impl Fn(&NodeId) -> bool,
    ) -> Option<NodeId> {
        None
    }
}

/// The engine's side of the intake: target draws, push-pull answers, delta order.
#[cfg(feature = "intake")]
impl Node {
    /// Up to `k` distinct members that pass `keep`, drawn at random. Members this node has not
    /// heard answer, unless a confirmed member with a modest share (or the seed of our join)
    /// vouched for them, weigh at most as much as the others, as in the probe lanes: however
    /// many members a key holder mints, at least half of every gossip, push and push-pull
    /// target draw lands on members known to answer or vouched for by one. Without a mint the
    /// draw is uniform.
    pub(super) fn random_members(
        &mut self,
        k: usize,
        keep: impl Fn(&Member) -> bool,
    ) -> Vec<NodeId> {
        let (confirmed, pool) = (&self.probing.confirmed, &self.gate.pool);
        let (mut sure, mut unsure): (Vec<NodeId>, Vec<NodeId>) = self
            .members
            .values()
            .filter(|m| m.id != self.id && !m.addrs.is_empty() && keep(m))
            .map(|m| m.id)
            .partition(|id| confirmed.contains(id) || pool.is_vouched(id));
        if unsure.len() <= sure.len().max(1) {
            // The weight does not bind: the uniform draw, exactly as without the intake.
            sure.append(&mut unsure);
            return uniform(&mut self.rng, sure, k);
        }
        sure.sort_unstable();
        unsure.sort_unstable();
        let mut out = Vec::with_capacity(k.min(sure.len() + unsure.len()));
        while out.len() < k && !(sure.is_empty() && unsure.is_empty()) {
            let weight = unsure.len().min(sure.len().max(1));
            let draw = (self.rng.next_u64() % (sure.len() + weight) as u64) as usize;
            let id = if draw < sure.len() {
                sure.swap_remove(draw)
            } else {
                let at = (self.rng.next_u64() % unsure.len() as u64) as usize;
                unsure.swap_remove(at)
            };
            out.push(id);
        }
        out
    }

    /// Remembers a push-pull this node opens with `peer` (see `Pool::awaiting`).
    pub(super) fn opened_sync(&mut self, now: Instant, peer: NodeId) {
        // An answer later than this is not waited for (the map stays as small as our opens).
        let patience = 2 * self
            .config
            .push_pull_interval_ms
            .max(self.config.probe_interval_ms);
        let pool = &mut self.gate.pool;
        pool.awaiting
            .retain(|_, at| now.micros_since(*at) / 1_000 < patience);
        pool.awaiting.insert(peer, now);
    }

    /// Remembers a join through `seeds` seeds.
    pub(super) fn joining(&mut self, seeds: usize) {
        self.gate.pool.seeds_awaiting = seeds;
    }

    /// Takes a push-pull's records before they are applied: an answer to a push-pull we opened
    /// (or to our join) confirms its sender, whose own records are applied first so that it is
    /// a member when it vouches for the rest; a seed's answer vouches for all it brings. Call
    /// `answer_applied` after applying what this returns.
    pub(super) fn take_answer(
        &mut self,
        now: Instant,
        origin: NodeId,
        phase: u8,
        states: Vec<SignedPacket>,
    ) -> Vec<SignedPacket> {
        if phase != sync_phase::ANSWER {
            return states;
        }
        let pool = &mut self.gate.pool;
        let opened = pool.awaiting.remove(&origin).is_some();
        let seed = !opened && pool.seeds_awaiting > 0;
        if seed {
            pool.seeds_awaiting -= 1;
        }
        if !opened && !seed {
            return states;
        }
        let (own, rest): (Vec<SignedPacket>, Vec<SignedPacket>) =
            states.into_iter().partition(|r| r.origin() == origin);
        self.apply_states(now, own);
        if self
            .members
            .get(&origin)
            .is_some_and(|m| !m.state.is_down())
        {
            self.probing.confirmed.insert(origin);
            self.gate.pool.leave(&origin);
        }
        // Only a seed's answer to our join: later answers also carry whatever minted members
        // their senders hold, and must not make those look vouched for.
        self.gate.pool.asked = seed;
        rest
    }

    /// Ends what `take_answer` began.
    pub(super) fn answer_applied(&mut self) {
        self.gate.pool.asked = false;
    }

    /// The order a push-pull answer lists members in, shuffled: members this node heard answer
    /// (and itself) first, so that when the budget cuts the answer, a peer joining a cluster
    /// full of minted members still learns the real ones first.
    pub(super) fn delta_order(&mut self) -> Vec<NodeId> {
        let (me, confirmed) = (self.id, &self.probing.confirmed);
        let (mut ids, mut rest): (Vec<NodeId>, Vec<NodeId>) = self
            .members
            .keys()
            .partition(|id| **id == me || confirmed.contains(*id));
        ids.sort_unstable();
        rest.sort_unstable();
        shuffle(&mut self.rng, &mut ids);
        shuffle(&mut self.rng, &mut rest);
        ids.append(&mut rest);
        ids
    }
}

/// Without the intake: uniform draws, no vouching, members in random order.
#[cfg(not(feature = "intake"))]
impl Node {
    pub(super) fn random_members(
        &mut self,
        k: usize,
        keep: impl Fn(&crate::membership::Member) -> bool,
    ) -> Vec<NodeId> {
        let ids: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| m.id != self.id && !m.addrs.is_empty() && keep(m))
            .map(|m| m.id)
            .collect();
        uniform(&mut self.rng, ids, k)
    }

    pub(super) fn opened_sync(&mut self, _now: Instant, _peer: NodeId) {}

    pub(super) fn joining(&mut self, _seeds: usize) {}

    pub(super) fn take_answer(
        &mut self,
        _now: Instant,
        _origin: NodeId,
        _phase: u8,
        states: Vec<SignedPacket>,
    ) -> Vec<SignedPacket> {
        states
    }

    pub(super) fn answer_applied(&mut self) {}

    pub(super) fn delta_order(&mut self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.members.keys().copied().collect();
        ids.sort_unstable();
        super::send::shuffle(&mut self.rng, &mut ids);
        ids
    }
}

/// `k` of `ids` drawn uniformly (partial Fisher-Yates over the sorted ids: k draws, not a full
/// shuffle).
fn uniform(rng: &mut rand_chacha::ChaCha20Rng, mut ids: Vec<NodeId>, k: usize) -> Vec<NodeId> {
    use rand_core::Rng;
    ids.sort_unstable();
    let k = k.min(ids.len());
    for i in 0..k {
        let j = i + (rng.next_u64() as usize) % (ids.len() - i);
        ids.swap(i, j);
    }
    ids.truncate(k);
    ids
}

#[cfg(all(test, feature = "intake"))]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    #[test]
    fn a_mint_evicts_its_own_before_anyone_else() {
        let mut pool = Pool::default();
        let (holder, honest) = (Some(id(1)), Some(id(2)));
        for n in 10..20 {
            pool.enter(id(n), holder);
        }
        pool.enter(id(30), honest);
        // The holder's next mint makes room from its own share, oldest first.
        assert_eq!(pool.evict(holder, |_| false), Some(id(10)));
        // The honest member's newcomer may evict from the holder's larger share too.
        assert_eq!(pool.evict(honest, |_| false), Some(id(11)));
        assert_eq!(pool.share(holder), 8);
        assert_eq!(pool.share(honest), 1);
    }

    #[test]
    fn a_smaller_share_is_never_evicted_for_a_larger_one() {
        let mut pool = Pool::default();
        let (holder, honest) = (Some(id(1)), Some(id(2)));
        pool.enter(id(10), holder);
        pool.enter(id(30), honest);
        pool.enter(id(31), honest);
        // The largest share is the honest member's, but only by one: the holder's newcomer may
        // not take from it (the two would just trade places).
        assert_eq!(pool.evict(holder, |_| false), None);
        assert_eq!(pool.share(honest), 2);
        // Nobody's newcomer (a self-introduction) may not either, with no share of its own.
        pool.enter(id(40), None);
        assert_eq!(pool.evict(None, |_| false), None);
    }

    #[test]
    fn confirmed_and_spared_members_leave_the_count() {
        let mut pool = Pool::default();
        let holder = Some(id(1));
        for n in 10..40 {
            pool.enter(id(n), holder);
        }
        // Most answer: the stale entries are compacted, the rest still come out oldest first.
        for n in 10..35 {
            pool.leave(&id(n));
        }
        assert_eq!(pool.len(), 5);
        assert!(pool.order[&holder].len() <= 2 * 5 + 16);
        assert_eq!(pool.evict(holder, |m| *m == id(35)), Some(id(36)));
        assert_eq!(pool.len(), 3);
        assert!(pool.is_modest(holder));
        assert!(!pool.is_modest(None));
        pool.leave(&id(37));
        pool.leave(&id(38));
        pool.leave(&id(39));
        assert_eq!(pool.len(), 0);
        assert!(pool.count.is_empty() && pool.order.is_empty());
        assert_eq!(pool.evict(holder, |_| false), None);
    }
}
