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
use std::collections::{HashMap, HashSet, VecDeque};

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

/// Outcomes of probes of unconfirmed members remembered: the latest minute or so of probing.
#[cfg(feature = "intake")]
const FIRST_PROBES_KEPT: usize = 64;

/// Answers assumed before any probe of an unconfirmed member has ended: until probes show
/// otherwise, a newcomer is taken to be what it says (in a join storm nothing has been probed
/// yet, and a draw weighted against newcomers would slow the storm's news).
#[cfg(feature = "intake")]
const FIRST_PROBES_PRIOR: usize = 8;

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
    /// Members in `soon` because they asked this node to let them join, newest first: not
    /// forgotten before their probe (at most `SOON_MAX`).
    joiners: VecDeque<NodeId>,
    /// Members this node opened a push-pull with, and when. Their answer comes from the address
    /// they signed as surely as an ack to a probe does, so it confirms them: a joiner must not
    /// treat its seed's records as a stranger's.
    awaiting: HashMap<NodeId, Instant>,
    /// Seeds asked to let this node join that have not answered (their ids are not known).
    seeds_awaiting: usize,
    /// Whether the records being applied are a seed's answer to our join.
    asked: bool,
    /// Whether each of the latest probes of a member not yet confirmed was answered, oldest
    /// first, for vouched members (`[0]`) and the rest (`[1]`): the evidence of a mint, which no
    /// count of members can give (a join storm and a mint both fill the table with members
    /// nobody has heard answer yet). Kept per class because a mint can land in either: a seed
    /// that holds minted members vouches for all of them in its answer to our join.
    first_probes: [VecDeque<bool>; 2],
    /// Counted members whose alive record this node kept to itself (see `Node::withholding`):
    /// passed on once they answer a probe of ours.
    withheld: HashSet<NodeId>,
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

    /// `id` asked this node to let it join: it goes first in line to be probed (a newcomer
    /// introduces itself, so nobody vouches for it, and in a table full of minted members it
    /// would otherwise be forgotten before its turn came; see `evict`). Only a member the pool
    /// holds: one already heard answering needs no probe.
    pub(super) fn asked_to_join(&mut self, id: NodeId) {
        if !self.of.contains_key(&id) || self.soon.contains(&id) {
            return;
        }
        self.soon.push_front(id);
        self.soon.truncate(SOON_MAX);
        self.joiners.push_front(id);
        self.joiners.truncate(SOON_MAX);
    }

    /// The next vouched newcomer waiting to be probed first.
    pub(super) fn next_soon(&mut self) -> Option<NodeId> {
        let id = self.soon.pop_front()?;
        self.joiners.retain(|j| *j != id);
        Some(id)
    }

    /// Remembers that news of `id`, a counted member, was kept back.
    pub(super) fn withhold(&mut self, id: NodeId) {
        if self.of.contains_key(&id) {
            self.withheld.insert(id);
        }
    }

    /// The member stops counting: it answered a probe of ours, or left the table. Whether its
    /// news was kept back (and is now to be passed on, if it answered).
    pub(super) fn leave(&mut self, id: &NodeId) -> bool {
        let withheld = self.withheld.remove(id);
        let Some((voucher, _)) = self.of.remove(id) else {
            return withheld;
        };
        let live = match self.count.get_mut(&voucher) {
            Some(n) if *n > 1 => {
                *n -= 1;
                *n
            }
            _ => {
                self.count.remove(&voucher);
                self.order.remove(&voucher);
                return withheld;
            }
        };
        // Members that answered stay in `order` until met; bound the stale entries.
        if let Some(queue) = self.order.get_mut(&voucher)
            && queue.len() > 2 * live + 16
        {
            let of = &self.of;
            queue.retain(|m| of.get(m).is_some_and(|(v, _)| *v == voucher));
        }
        withheld
    }

    /// Whether `id` is counted (unconfirmed).
    pub(super) fn counts(&self, id: &NodeId) -> bool {
        self.of.contains_key(id)
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
    /// fairness allows one: the oldest of the newcomer's own share when that share is within
    /// one of the largest (it holds its fair share already, so it makes room from its own),
    /// else the oldest of the largest share when that is larger than the newcomer's own by two
    /// or more (taking from a share only one larger would just make the two trade places),
    /// passing over members in line to be probed first because they asked to join. It leaves
    /// the pool; the caller removes it from the table. `keep` spares members that must stay
    /// (those relayed by this node).
    pub(super) fn evict(
        &mut self,
        newcomer: Voucher,
        keep: impl Fn(&NodeId) -> bool,
    ) -> Option<NodeId> {
        // Ties go to the larger key, so every run picks the same share whatever the map order.
        let (&largest, &n) = self.count.iter().max_by_key(|(v, n)| (**n, **v))?;
        let own = self.share(newcomer);
        // A share level with the largest, or one short of it, is the newcomer's to make room
        // from. Shares under a mint level out (each mint evicts from the largest), and a
        // self-introduced newcomer, whose share is nobody's, used to be refused whenever another
        // voucher's share was as large and won the tie (issue 13: a joiner refused by its own
        // seed in a table of shares 497, 497, 497, 496 and nobody's 497).
        let largest = if own > 0 && own + 1 >= n {
            newcomer
        } else if n >= own + 2 {
            largest
        } else {
            return None;
        };
        // Members waiting in line to be probed first are passed over (each once per call: at
        // most `SOON_MAX` of them).
        let mut passed = 0;
        loop {
            let id = self.order.get_mut(&largest)?.pop_front()?;
            if self.of.get(&id).is_none_or(|(v, _)| *v != largest) {
                continue;
            }
            if passed < SOON_MAX && self.joiners.contains(&id) {
                passed += 1;
                self.order.get_mut(&largest)?.push_back(id);
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

    /// Records how a probe of `id`, a member not yet confirmed, ended.
    pub(super) fn probed(&mut self, id: &NodeId, answered: bool) {
        let window = &mut self.first_probes[usize::from(!self.is_vouched(id))];
        if window.len() == FIRST_PROBES_KEPT {
            window.pop_front();
        }
        window.push_back(answered);
    }

    /// Whether a first probe of an unconfirmed member failed among the latest kept: until one
    /// does, [`Pool::likely_fakes`] is 0 for any class and size, so no class can be capped.
    fn saw_a_failed_first_probe(&self) -> bool {
        self.first_probes.iter().flatten().any(|answered| !answered)
    }

    /// How many of `n` unconfirmed members of a class (`0`: vouched, `1`: the rest) are likely
    /// fakes, by how the latest probes of that class ended (with `FIRST_PROBES_PRIOR` answers
    /// assumed).
    fn likely_fakes(&self, class: usize, n: usize) -> usize {
        let window = &self.first_probes[class];
        let failed = window.iter().filter(|a| !**a).count();
        // At most 10,000 members times 64: no overflow.
        n * failed / (window.len() + FIRST_PROBES_PRIOR)
    }

    /// Unconfirmed members counted.
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

    pub(super) fn asked_to_join(&mut self, _id: NodeId) {}

    pub(super) fn is_vouched(&self, _id: &NodeId) -> bool {
        false
    }

    pub(super) fn withhold(&mut self, _id: NodeId) {}

    pub(super) fn leave(&mut self, _id: &NodeId) -> bool {
        false
    }

    pub(super) fn probed(&mut self, _id: &NodeId, _answered: bool) {}

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
    /// Up to `k` distinct members that pass `keep`, drawn at random. Members are drawn by
    /// class: heard answering, vouched for (`Pool::is_vouched`), the rest. When probes of a class
    /// of unconfirmed members show that its likely fakes outnumber the members heard answering,
    /// that class weighs at most as much as those members, as in the probe lanes: however many
    /// members a key holder mints, and whoever passed them on, at least a third of every gossip,
    /// push and push-pull target draw lands on members known to answer (suspects included: in a
    /// mint most suspects are minted members, whose suspicions every member gossips). The two
    /// classes are measured apart because a mint can land in either: an honest member that
    /// passes a mint on vouches for it, and so does a seed's answer to our join. Without
    /// evidence of a mint the draw is uniform, exactly as without the intake.
    pub(super) fn random_members(
        &mut self,
        k: usize,
        keep: impl Fn(&Member) -> bool,
    ) -> Vec<NodeId> {
        let (confirmed, pool) = (&self.probing.confirmed, &self.gate.pool);
        // Heard answering, vouched for, the rest.
        let class_of = |id: &NodeId| {
            if confirmed.contains(id) {
                0
            } else if pool.is_vouched(id) {
                1
            } else {
                2
            }
        };
        // Without a failed first probe no class is capped whatever the sizes: the draw is
        // uniform, and classifying each member (two lookups per member, at every gossip round)
        // would be wasted (at N = 500, 7 % of a join's CPU went to `is_vouched` alone).
        if !pool.saw_a_failed_first_probe() {
            let mut all = Vec::with_capacity(self.members.len());
            all.extend(
                self.members
                    .values()
                    .filter(|m| m.id != self.id && !m.addrs.is_empty() && keep(m))
                    .map(|m| m.id),
            );
            // With `member-index` the table is ordered by id: the list is already sorted.
            #[cfg(feature = "member-index")]
            {
                debug_assert!(all.is_sorted(), "member-index table out of order");
                return uniform_in_order(&mut self.rng, all, k);
            }
            #[cfg(not(feature = "member-index"))]
            return uniform(&mut self.rng, all, k);
        }
        // One pass counts the classes and lists the candidates in table order (sorted with
        // `member-index`, so the uniform draw's sort finds them in order): the classes
        // themselves are only listed when a class is capped.
        let mut sizes = [0usize; 3];
        let mut all = Vec::new();
        for m in self.members.values() {
            if m.id != self.id && !m.addrs.is_empty() && keep(m) {
                sizes[class_of(&m.id)] += 1;
                all.push(m.id);
            }
        }
        let sure = sizes[0].max(1);
        let capped = [
            false,
            pool.likely_fakes(0, sizes[1]) > sure,
            pool.likely_fakes(1, sizes[2]) > sure,
        ];
        if capped == [false; 3] {
            return uniform(&mut self.rng, all, k);
        }
        let mut classes: [Vec<NodeId>; 3] = Default::default();
        for id in all {
            classes[class_of(&id)].push(id);
        }
        for class in &mut classes {
            class.sort_unstable();
        }
        let mut out = Vec::with_capacity(k.min(classes.iter().map(Vec::len).sum()));
        while out.len() < k {
            let weights: [usize; 3] = std::array::from_fn(|c| {
                let n = classes[c].len();
                if capped[c] { n.min(sure) } else { n }
            });
            let total: usize = weights.iter().sum();
            if total == 0 {
                break;
            }
            let mut draw = (self.rng.next_u64() % total as u64) as usize;
            let mut class = 0;
            while draw >= weights[class] {
                draw -= weights[class];
                class += 1;
            }
            let n = classes[class].len();
            let at = (self.rng.next_u64() % n as u64) as usize;
            out.push(classes[class].swap_remove(at));
        }
        out
    }

    /// Whether this node keeps news of members nobody vouches for to itself: probes of such
    /// members show that their likely fakes outnumber the members heard answering (a mint, the
    /// condition under which `random_members` caps their class). Passing a mint on would let the
    /// minter's records reach every member from every honest member, each copy spending the
    /// honest sender's intake allowance at the receiver (`Config::max_new_members_per_sender`)
    /// that genuine news of a newcomer needs. Without such evidence nothing is withheld.
    pub(super) fn withholding(&self) -> bool {
        let sure = self.probing.confirmed.len().max(1);
        self.gate.pool.likely_fakes(1, self.gate.pool.len()) > sure
    }

    /// Whether `id` is a member nobody vouches for: not heard answering, not vouched for (see
    /// `Pool::is_vouched`), and not relayed by this node (a tab introduces itself to its server,
    /// which answers for it).
    pub(super) fn unvouched(&self, id: &NodeId) -> bool {
        self.gate.pool.counts(id) && !self.gate.pool.is_vouched(id) && !self.hub.leaves.contains(id)
    }

    /// [`Node::random_members`] of the push targets (`is_push_target`) other than this node and
    /// `exclude`: the same draw, read off the push ring when no class can be capped, instead of
    /// a pass over the whole table. In a join storm most news has no push tree and each frame
    /// bringing it draws random targets: at N = 1,000 a pass over 1,000 members per frame.
    pub(super) fn random_push_targets(&mut self, k: usize, exclude: &[NodeId]) -> Vec<NodeId> {
        #[cfg(feature = "member-index")]
        if !self.gate.pool.saw_a_failed_first_probe() {
            let ring = self.members.push_ring();
            // The ring is the push targets and this node, sorted by id like the table: the
            // candidates are the ring without the excluded positions.
            let mut skip: Vec<usize> = exclude
                .iter()
                .chain([&self.id])
                .filter_map(|id| ring.binary_search(id).ok())
                .collect();
            skip.sort_unstable();
            skip.dedup();
            let picks = fisher_yates_prefix(&mut self.rng, ring.len() - skip.len(), k);
            return picks
                .into_iter()
                .map(|x| {
                    // The x-th candidate: past every skipped position at or before it.
                    let mut at = x;
                    for &s in &skip {
                        if s <= at {
                            at += 1;
                        } else {
                            break;
                        }
                    }
                    ring[at]
                })
                .collect();
        }
        let me = self.id;
        self.random_members(k, |m| {
            super::table::is_push_target(m) && m.id != me && !exclude.contains(&m.id)
        })
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
            self.confirm(origin);
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

    pub(super) fn random_push_targets(&mut self, k: usize, exclude: &[NodeId]) -> Vec<NodeId> {
        let me = self.id;
        self.random_members(k, |m| {
            super::table::is_push_target(m) && m.id != me && !exclude.contains(&m.id)
        })
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

    pub(super) fn withholding(&self) -> bool {
        false
    }

    pub(super) fn unvouched(&self, _id: &NodeId) -> bool {
        false
    }

    pub(super) fn delta_order(&mut self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.members.keys().copied().collect();
        crate::sort::unstable(&mut ids);
        super::send::shuffle(&mut self.rng, &mut ids);
        ids
    }
}

/// `k` of `ids` drawn uniformly (partial Fisher-Yates over the sorted ids: k draws, not a full
/// shuffle).
fn uniform(rng: &mut rand_chacha::ChaCha20Rng, mut ids: Vec<NodeId>, k: usize) -> Vec<NodeId> {
    crate::sort::unstable(&mut ids);
    uniform_in_order(rng, ids, k)
}

/// The first `k` positions of `0..n` after the partial Fisher-Yates of [`uniform_in_order`]
/// (the same random draws), without listing the `n` positions: only the swapped ones are kept.
#[cfg(all(feature = "intake", feature = "member-index"))]
fn fisher_yates_prefix(rng: &mut rand_chacha::ChaCha20Rng, n: usize, k: usize) -> Vec<usize> {
    use rand_core::Rng;
    let k = k.min(n);
    // Positions whose content a swap changed: (position, content).
    let mut moved: Vec<(usize, usize)> = Vec::with_capacity(2 * k);
    let get = |moved: &[(usize, usize)], p: usize| {
        moved
            .iter()
            .rev()
            .find(|(q, _)| *q == p)
            .map_or(p, |(_, v)| *v)
    };
    for i in 0..k {
        let j = i + (rng.next_u64() as usize) % (n - i);
        let (a, b) = (get(&moved, i), get(&moved, j));
        moved.push((i, b));
        moved.push((j, a));
    }
    (0..k).map(|i| get(&moved, i)).collect()
}

/// [`uniform`] of `ids` already sorted (the same draws, without the sort's pass).
fn uniform_in_order(
    rng: &mut rand_chacha::ChaCha20Rng,
    mut ids: Vec<NodeId>,
    k: usize,
) -> Vec<NodeId> {
    use rand_core::Rng;
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

    /// The push-target draw reads positions off the ring instead of listing the candidates:
    /// it must pick exactly what the listed draw picks from the same random numbers, or every
    /// simulated run would change.
    #[cfg(feature = "member-index")]
    #[test]
    fn the_position_draw_picks_what_the_listed_draw_picks() {
        use rand_core::SeedableRng;
        for seed in 0..50u64 {
            for (n, k) in [(0, 3), (1, 3), (2, 2), (3, 3), (10, 3), (50, 7), (200, 5)] {
                let ids: Vec<NodeId> = (0..n).map(|i| id(i as u8)).collect();
                let mut a = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
                let mut b = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
                let listed = uniform_in_order(&mut a, ids.clone(), k);
                let drawn: Vec<NodeId> = fisher_yates_prefix(&mut b, n, k)
                    .into_iter()
                    .map(|p| ids[p])
                    .collect();
                assert_eq!(listed, drawn, "seed {seed}, n {n}, k {k}");
                // The same random numbers consumed: the next draw agrees too.
                assert_eq!(uniform_in_order(&mut a, ids.clone(), k), {
                    let next = fisher_yates_prefix(&mut b, n, k);
                    next.into_iter().map(|p| ids[p]).collect::<Vec<_>>()
                });
            }
        }
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
        // not take from it (the two would just trade places); it makes room from its own.
        assert_eq!(pool.evict(holder, |_| false), Some(id(10)));
        assert_eq!(pool.share(honest), 2);
        // Nobody's newcomer (a self-introduction) may not either: it too makes room from its
        // own share, one short of the largest.
        pool.enter(id(40), None);
        assert_eq!(pool.evict(None, |_| false), Some(id(40)));
        assert_eq!(pool.share(honest), 2);
        // A voucher with no share, one short of the largest, has nothing to give: refused.
        let mut pool = Pool::default();
        pool.enter(id(30), honest);
        assert_eq!(pool.evict(holder, |_| false), None);
        assert_eq!(pool.share(honest), 1);
    }

    #[test]
    fn a_newcomer_whose_share_is_level_with_the_largest_makes_room_from_its_own() {
        // Shares levelled by a mint: three holders' and nobody's (self-introductions), each
        // the same size or one short. Ties of size go to the larger key, never to nobody's.
        let mut pool = Pool::default();
        let holders = [Some(id(1)), Some(id(2)), Some(id(3))];
        let mut n = 10;
        for (v, size) in [(holders[0], 4), (holders[1], 4), (holders[2], 3), (None, 4)] {
            for _ in 0..size {
                pool.enter(id(n), v);
                n += 1;
            }
        }
        // A self-introduced joiner: nobody's share (members 21..24) gives up its oldest.
        assert_eq!(pool.evict(None, |_| false), Some(id(21)));
        assert_eq!(pool.share(None), 3);
        // One short of the largest: its own oldest too, the others keep theirs.
        assert_eq!(pool.evict(holders[2], |_| false), Some(id(18)));
        assert_eq!(pool.share(holders[0]), 4);
        assert_eq!(pool.share(holders[1]), 4);
        // Two short: the largest share gives one (the larger key of the tie).
        assert_eq!(pool.evict(holders[2], |_| false), Some(id(14)));
        assert_eq!(pool.share(holders[1]), 3);
    }

    #[test]
    fn a_member_that_asked_to_join_is_probed_first_and_not_forgotten_meanwhile() {
        let mut pool = Pool::default();
        // A table full of self-introduced members; the joiner introduced itself too.
        for n in 10..20 {
            pool.enter(id(n), None);
        }
        let joiner = id(9);
        pool.enter(joiner, None);
        pool.asked_to_join(id(99)); // not in the pool: ignored
        pool.asked_to_join(joiner);
        pool.asked_to_join(joiner);
        // The mint rotates through the share, oldest first, passing over the joiner.
        let evicted: Vec<NodeId> = (0..10)
            .filter_map(|_| pool.evict(None, |_| false))
            .collect();
        assert_eq!(evicted, (10..20).map(id).collect::<Vec<_>>());
        assert_eq!(pool.next_soon(), Some(joiner));
        assert_eq!(pool.next_soon(), None);
        // Probed (taken from the line) and still silent: it is a member like any other.
        assert_eq!(pool.evict(None, |_| false), Some(joiner));
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

    #[test]
    fn withheld_news_is_remembered_only_for_counted_members_until_they_leave() {
        let mut pool = Pool::default();
        for n in 10..20 {
            pool.enter(id(n), None);
        }
        // Only counted members are remembered: the set is never larger than the pool, which
        // the member table bounds.
        pool.withhold(id(99));
        pool.withhold(id(10));
        pool.withhold(id(11));
        pool.withhold(id(11));
        assert_eq!(pool.withheld.len(), 2);
        // Answering: its news is to be passed on now, once.
        assert!(pool.leave(&id(11)));
        assert!(!pool.leave(&id(11)));
        // Evicted (forgotten before answering): its news goes with it.
        assert_eq!(pool.evict(None, |_| false), Some(id(10)));
        assert!(pool.withheld.is_empty());
        assert!(!pool.leave(&id(12)));
    }
}

impl Node {
    /// `id` answered this node from the address it signed: it is heard answering from now on,
    /// and news of it that was kept back (see `withholding`) is passed on now.
    pub(super) fn confirm(&mut self, id: NodeId) {
        self.probing.confirmed.insert(id);
        if self.gate.pool.leave(&id)
            && let Some(m) = self.members.get(&id)
            && !m.state.is_down()
        {
            let alive = m.alive.clone();
            self.enqueue(super::backlog::Subject::Member(id), alive);
        }
    }
}
