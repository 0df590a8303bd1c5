//! Key ownership: which live members own a key, by rendezvous (highest-random-weight) hashing.
//!
//! Every member of the candidate set (all live members, or the members of a group) gets a score
//! for the key; the `n` highest scores own it, best first. The answer is a pure function of the
//! key and the candidate set, so every member with the same view computes the same owners, and
//! nothing travels on the wire. Why rendezvous hashing rather than a ring of virtual nodes, the
//! hash, and the costs are in `docs/OWNERSHIP.md`.
//!
//! - **The hash is specified, not std's.** A key's hash is the first 8 bytes (little-endian) of
//!   `SHA-512("gossip ownership key v1\0" || key)`; a member's is the same over
//!   `"gossip ownership member v1\0" || id`, computed once when it becomes a candidate. The
//!   score of a member for a key is murmur3's 64-bit finalizer of the XOR of the two. SHA-512 is
//!   the hash Ed25519 already links; a std `Hasher` is seeded per process and would make
//!   members disagree.
//! - **Ties** (two equal 64-bit scores) go to the smaller id, so the order is total.
//! - **Watches are incremental.** A candidate joining is scored against each watched key once
//!   and displaces the last owner only where it ranks above it; a candidate leaving triggers a
//!   full rescoring only of the keys it owned. See [`Watches`].

use std::collections::BTreeMap;

use sha2::{Digest, Sha512};
use thiserror::Error;

use crate::groups::GroupId;
use crate::identity::NodeId;

/// The most ownership watches a node holds at once.
pub const MAX_WATCHES: usize = 64;
/// The most keys all of a node's watches hold together.
pub const MAX_WATCHED_KEYS: usize = 1 << 20;
/// The most key bytes all of a node's watches hold together.
pub const MAX_WATCHED_BYTES: usize = 64 << 20;
/// The most owners per key a watch follows.
pub const MAX_WATCH_OWNERS: usize = 64;

const KEY_DOMAIN: &[u8] = b"gossip ownership key v1\0";
const MEMBER_DOMAIN: &[u8] = b"gossip ownership member v1\0";

fn digest64(domain: &[u8], bytes: &[u8]) -> u64 {
    let d = Sha512::new()
        .chain_update(domain)
        .chain_update(bytes)
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_le_bytes(first)
}

/// A key's 64-bit hash (specified in the [module docs](self)).
pub fn key_hash(key: &[u8]) -> u64 {
    digest64(KEY_DOMAIN, key)
}

/// A member's 64-bit hash (specified in the [module docs](self)).
pub fn member_hash(id: &NodeId) -> u64 {
    digest64(MEMBER_DOMAIN, id.as_bytes())
}

/// The score of a member (by its [`member_hash`]) for a key (by its [`key_hash`]): higher owns.
pub fn score(key: u64, member: u64) -> u64 {
    // murmur3's fmix64: a bijection in which every input bit flips each output bit with
    // probability about 1/2, so the members' scores for one key rank them like a random draw.
    let mut h = key ^ member;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Whether `a` ranks before `b`: the higher score, then the smaller id.
fn ranks_before(a: &(u64, NodeId), b: &(u64, NodeId)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
}

fn rank_order(a: &(u64, NodeId), b: &(u64, NodeId)) -> core::cmp::Ordering {
    b.0.cmp(&a.0).then(a.1.cmp(&b.1))
}

/// The `n` best-ranked candidates for the key hashed `key`, best first, with their scores.
/// Candidates are `(id, member_hash)`; fewer than `n` gives all of them.
pub fn top(key: u64, candidates: &[(NodeId, u64)], n: usize) -> Vec<(u64, NodeId)> {
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return candidates
            .iter()
            .map(|&(id, h)| (score(key, h), id))
            .reduce(|best, c| if ranks_before(&c, &best) { c } else { best })
            .into_iter()
            .collect();
    }
    let mut all: Vec<(u64, NodeId)> = candidates
        .iter()
        .map(|&(id, h)| (score(key, h), id))
        .collect();
    if n < all.len() {
        all.select_nth_unstable_by(n - 1, rank_order);
        all.truncate(n);
    }
    all.sort_unstable_by(rank_order);
    all
}

/// The candidates: members that may own keys, each with its [`member_hash`], in id order (so
/// the answer never depends on the order members were added in).
#[derive(Debug, Clone, Default)]
pub struct Placement {
    members: Vec<(NodeId, u64)>,
}

impl Placement {
    /// No candidates.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a candidate; returns its hash if it was not one.
    pub fn insert(&mut self, id: NodeId) -> Option<u64> {
        let at = self.members.binary_search_by(|(m, _)| m.cmp(&id)).err()?;
        let h = member_hash(&id);
        self.members.insert(at, (id, h));
        Some(h)
    }

    /// Removes a candidate; returns whether it was one.
    pub fn remove(&mut self, id: &NodeId) -> bool {
        match self.members.binary_search_by(|(m, _)| m.cmp(id)) {
            Ok(at) => {
                self.members.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// A candidate's hash, or `None` if it is not one.
    pub fn hash_of(&self, id: &NodeId) -> Option<u64> {
        self.members
            .binary_search_by(|(m, _)| m.cmp(id))
            .ok()
            .map(|at| self.members[at].1)
    }

    /// The candidates with their hashes, in id order.
    pub fn members(&self) -> &[(NodeId, u64)] {
        &self.members
    }

    /// How many candidates there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The `n` owners of `key`, best first (all candidates if there are fewer).
    pub fn owners(&self, key: &[u8], n: usize) -> Vec<NodeId> {
        top(key_hash(key), &self.members, n)
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    }

    /// The candidates among `ids` (others are ignored: they are not live), with their hashes,
    /// in id order.
    pub fn subset(&self, ids: impl IntoIterator<Item = NodeId>) -> Vec<(NodeId, u64)> {
        let mut v: Vec<(NodeId, u64)> = ids
            .into_iter()
            .filter_map(|id| self.hash_of(&id).map(|h| (id, h)))
            .collect();
        v.sort_unstable_by_key(|(id, _)| *id);
        v.dedup_by_key(|(id, _)| *id);
        v
    }
}

/// Misuse of the ownership API, or one of its bounds reached.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwnershipError {
    /// [`MAX_WATCHES`] watches are open; close one first.
    #[error("too many ownership watches: at most {max}")]
    TooManyWatches {
        /// The bound.
        max: usize,
    },
    /// The watches would hold more than [`MAX_WATCHED_KEYS`] keys or [`MAX_WATCHED_BYTES`]
    /// key bytes together.
    #[error("too many watched keys: at most {max_keys} keys and {max_bytes} bytes")]
    TooManyKeys {
        /// The bound on keys.
        max_keys: usize,
        /// The bound on bytes.
        max_bytes: usize,
    },
    /// A watch follows between 1 and [`MAX_WATCH_OWNERS`] owners per key.
    #[error("a watch follows 1 to {max} owners per key")]
    BadOwnerCount {
        /// The bound.
        max: usize,
    },
    /// No group has this id.
    #[error("unknown group {0}")]
    UnknownGroup(GroupId),
}

/// Identifies an ownership watch of one node. Not reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(u64);

impl WatchId {
    /// The number behind the id, for logs.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// The owners of a watched key changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipChange {
    /// The key.
    pub key: Vec<u8>,
    /// Its owners before, best first.
    pub old: Vec<NodeId>,
    /// Its owners now, best first.
    pub new: Vec<NodeId>,
}

/// Which candidates a watch ranks: every live member, or the live members of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every live member, this node included.
    All,
    /// The members of a group.
    Group(GroupId),
}

#[derive(Debug, Clone)]
struct Watched {
    key: Vec<u8>,
    hash: u64,
    /// The current owners with their scores, best first.
    owners: Vec<(u64, NodeId)>,
}

impl Watched {
    fn ids(&self) -> Vec<NodeId> {
        self.owners.iter().map(|(_, id)| *id).collect()
    }
}

#[derive(Debug, Clone)]
struct Watch {
    n: usize,
    scope: Scope,
    keys: Vec<Watched>,
    bytes: usize,
}

/// The open ownership watches, kept current as candidates come and go.
///
/// Costs, for a watch of `K` keys following `n` owners among `N` candidates: opening it scores
/// every key against every candidate (`K x N`); a candidate joining scores it once per key
/// (`K`) and changes the keys where it ranks among the first `n` (`n/(N+1)` of them in
/// expectation); a candidate leaving scans the owner lists (`K x n`) and re-ranks only the keys
/// it owned (`n/N` of them, `N` scores each). A change of the candidate set therefore never
/// rehashes every key against every member.
#[derive(Debug, Clone, Default)]
pub struct Watches {
    next: u64,
    watches: BTreeMap<u64, Watch>,
    keys: usize,
    bytes: usize,
}

/// A watch's owners of each key when it opened: `(key, owners best first)`, in key order.
pub type Initial = Vec<(Vec<u8>, Vec<NodeId>)>;

impl Watches {
    /// No watches.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens a watch of `keys` (duplicates count once) following `n` owners among `candidates`
    /// (the current members of `scope`). Returns its id and the current owners of each key.
    pub fn open(
        &mut self,
        keys: Vec<Vec<u8>>,
        n: usize,
        scope: Scope,
        candidates: &[(NodeId, u64)],
    ) -> Result<(WatchId, Initial), OwnershipError> {
        if n == 0 || n > MAX_WATCH_OWNERS {
            return Err(OwnershipError::BadOwnerCount {
                max: MAX_WATCH_OWNERS,
            });
        }
        if self.watches.len() >= MAX_WATCHES {
            return Err(OwnershipError::TooManyWatches { max: MAX_WATCHES });
        }
        let mut keys = keys;
        keys.sort_unstable();
        keys.dedup();
        let bytes = keys.iter().map(Vec::len).sum::<usize>();
        let too_many = OwnershipError::TooManyKeys {
            max_keys: MAX_WATCHED_KEYS,
            max_bytes: MAX_WATCHED_BYTES,
        };
        if self.keys.saturating_add(keys.len()) > MAX_WATCHED_KEYS
            || self.bytes.saturating_add(bytes) > MAX_WATCHED_BYTES
        {
            return Err(too_many);
        }
        let keys: Vec<Watched> = keys
            .into_iter()
            .map(|key| {
                let hash = key_hash(&key);
                let owners = top(hash, candidates, n);
                Watched { key, hash, owners }
            })
            .collect();
        let initial = keys.iter().map(|w| (w.key.clone(), w.ids())).collect();
        self.keys += keys.len();
        self.bytes += bytes;
        let id = self.next;
        self.next += 1;
        self.watches.insert(
            id,
            Watch {
                n,
                scope,
                keys,
                bytes,
            },
        );
        Ok((WatchId(id), initial))
    }

    /// Closes a watch; returns whether it was open.
    pub fn close(&mut self, id: WatchId) -> bool {
        match self.watches.remove(&id.0) {
            Some(w) => {
                self.keys -= w.keys.len();
                self.bytes -= w.bytes;
                true
            }
            None => false,
        }
    }

    /// Closes the watches scoped to `group` (it was removed); returns their ids.
    pub fn close_scope(&mut self, group: GroupId) -> Vec<WatchId> {
        let ids: Vec<WatchId> = self
            .watches
            .iter()
            .filter(|(_, w)| w.scope == Scope::Group(group))
            .map(|(&id, _)| WatchId(id))
            .collect();
        for &id in &ids {
            self.close(id);
        }
        ids
    }

    /// The number of open watches.
    pub fn len(&self) -> usize {
        self.watches.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.watches.is_empty()
    }

    /// Whether some watch ranks the members of `scope`.
    pub fn watches_scope(&self, scope: Scope) -> bool {
        self.watches.values().any(|w| w.scope == scope)
    }

    /// `id` (hashed `hash`) became a candidate of `scope`. Returns the changes per watch.
    pub fn joined(
        &mut self,
        scope: Scope,
        id: NodeId,
        hash: u64,
    ) -> Vec<(WatchId, Vec<OwnershipChange>)> {
        let mut out = Vec::new();
        for (&wid, w) in self.watches.iter_mut().filter(|(_, w)| w.scope == scope) {
            let mut changes = Vec::new();
            for k in &mut w.keys {
                let entry = (score(k.hash, hash), id);
                // Already an owner: a repeated report, nothing moves.
                if k.owners.iter().any(|(_, o)| *o == id) {
                    continue;
                }
                let at = k
                    .owners
                    .iter()
                    .position(|o| ranks_before(&entry, o))
                    .unwrap_or(k.owners.len());
                if at >= w.n {
                    continue;
                }
                let old = k.ids();
                k.owners.insert(at, entry);
                k.owners.truncate(w.n);
                changes.push(OwnershipChange {
                    key: k.key.clone(),
                    old,
                    new: k.ids(),
                });
            }
            if !changes.is_empty() {
                out.push((WatchId(wid), changes));
            }
        }
        out
    }

    /// `id` is no longer a candidate of `scope`; `candidates` are the ones left. Returns the
    /// changes per watch.
    pub fn left(
        &mut self,
        scope: Scope,
        id: NodeId,
        candidates: &[(NodeId, u64)],
    ) -> Vec<(WatchId, Vec<OwnershipChange>)> {
        let mut out = Vec::new();
        for (&wid, w) in self.watches.iter_mut().filter(|(_, w)| w.scope == scope) {
            let mut changes = Vec::new();
            for k in &mut w.keys {
                if !k.owners.iter().any(|(_, o)| *o == id) {
                    continue;
                }
                let old = k.ids();
                k.owners = top(k.hash, candidates, w.n);
                changes.push(OwnershipChange {
                    key: k.key.clone(),
                    old,
                    new: k.ids(),
                });
            }
            if !changes.is_empty() {
                out.push((WatchId(wid), changes));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u32) -> NodeId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_le_bytes());
        b[31] = 7;
        NodeId::from_bytes(b)
    }

    fn placement(ids: impl IntoIterator<Item = u32>) -> Placement {
        let mut p = Placement::new();
        for i in ids {
            p.insert(id(i));
        }
        p
    }

    #[test]
    fn the_hashes_are_the_specified_ones() {
        // Pinned: a change of the hash or the score moves every key, so it must be deliberate.
        let d = Sha512::new()
            .chain_update(b"gossip ownership key v1\0")
            .chain_update(b"orders/42")
            .finalize();
        let want = u64::from_le_bytes(d[..8].try_into().unwrap());
        assert_eq!(key_hash(b"orders/42"), want);
        // The same, computed with Python's hashlib, so the spec is checked outside this crate.
        assert_eq!(key_hash(b"orders/42"), 0xe8a6_a18c_377c_2f9d);
        assert_eq!(score(0, 0), 0);
        assert_eq!(score(1, 0), 0xb456_bcfc_34c2_cb2c);
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
    }

    #[test]
    fn the_answer_does_not_depend_on_insertion_order() {
        let forward = placement(0..50);
        let backward = placement((0..50).rev());
        let mut shuffled = Placement::new();
        for i in (0..50).map(|i| (i * 17) % 50) {
            shuffled.insert(id(i));
        }
        for k in 0..200u32 {
            let key = k.to_le_bytes();
            let want = forward.owners(&key, 3);
            assert_eq!(want.len(), 3);
            assert_eq!(backward.owners(&key, 3), want);
            assert_eq!(shuffled.owners(&key, 3), want);
            assert_eq!(forward.owners(&key, 1), want[..1]);
        }
    }

    #[test]
    fn asking_for_more_owners_than_candidates_gives_all_ranked() {
        let p = placement(0..4);
        let all = p.owners(b"k", 10);
        assert_eq!(all.len(), 4);
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, (0..4).map(id).collect::<Vec<_>>());
        assert_eq!(p.owners(b"k", 4), all, "the ranking is a prefix order");
        assert_eq!(p.owners(b"k", 2), all[..2]);
        assert!(Placement::new().owners(b"k", 3).is_empty());
        assert!(p.owners(b"k", 0).is_empty());
    }

    #[test]
    fn removed_candidates_own_nothing_and_others_keep_their_keys() {
        let mut p = placement(0..20);
        let before: Vec<Vec<NodeId>> = (0..500u32).map(|k| p.owners(&k.to_le_bytes(), 2)).collect();
        assert!(p.remove(&id(5)));
        assert!(!p.remove(&id(5)));
        for (k, was) in (0..500u32).zip(&before) {
            let now = p.owners(&k.to_le_bytes(), 2);
            assert!(!now.contains(&id(5)));
            // Rendezvous hashing moves only what the removed member held.
            if !was.contains(&id(5)) {
                assert_eq!(&now, was, "key {k}");
            } else {
                let kept: Vec<_> = was.iter().filter(|o| **o != id(5)).collect();
                assert_eq!(now[0], *kept[0], "key {k}: the survivor moves up");
            }
        }
    }

    #[test]
    fn a_subset_ignores_members_that_are_not_candidates() {
        let p = placement(0..10);
        let s = p.subset([id(3), id(1), id(42), id(3)]);
        assert_eq!(
            s.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![id(1), id(3)]
        );
    }

    /// The incremental watch must always agree with a full recomputation.
    #[test]
    fn watches_follow_joins_and_leaves_exactly() {
        let mut p = placement(0..8);
        let mut w = Watches::new();
        let keys: Vec<Vec<u8>> = (0..300u32).map(|k| k.to_le_bytes().to_vec()).collect();
        let (wid, initial) = w.open(keys.clone(), 3, Scope::All, p.members()).unwrap();
        for (k, owners) in &initial {
            assert_eq!(owners, &p.owners(k, 3));
        }
        let mut current: BTreeMap<Vec<u8>, Vec<NodeId>> = initial.into_iter().collect();
        let steps: [(bool, u32); 6] = [
            (true, 8),
            (true, 9),
            (false, 2),
            (false, 8),
            (true, 2),
            (false, 0),
        ];
        for (join, who) in steps {
            let changes = if join {
                let h = p.insert(id(who)).unwrap();
                w.joined(Scope::All, id(who), h)
            } else {
                assert!(p.remove(&id(who)));
                w.left(Scope::All, id(who), p.members())
            };
            let mut moved = 0;
            for (got, list) in changes {
                assert_eq!(got, wid);
                for c in list {
                    assert_eq!(current[&c.key], c.old, "old owners of {:?}", c.key);
                    assert_ne!(c.old, c.new);
                    current.insert(c.key, c.new);
                    moved += 1;
                }
            }
            assert!(moved > 0, "a join or leave among 8 moves some of 300 keys");
            for k in &keys {
                assert_eq!(current[k], p.owners(k, 3), "step {join} {who}");
            }
        }
        // A repeated report changes nothing.
        let h = member_hash(&id(9));
        assert!(w.joined(Scope::All, id(9), h).is_empty());
        assert!(w.left(Scope::All, id(77), p.members()).is_empty());
        // Another scope's change is not this watch's.
        let (group, _) = crate::groups::Groups::new()
            .define(Default::default(), std::iter::empty())
            .unwrap();
        assert!(w.joined(Scope::Group(group), id(50), 1).is_empty());
        assert!(w.close(wid));
        assert!(!w.close(wid));
        assert_eq!((w.keys, w.bytes), (0, 0));
    }

    #[test]
    fn watches_are_bounded() {
        let mut w = Watches::new();
        let bad = OwnershipError::BadOwnerCount {
            max: MAX_WATCH_OWNERS,
        };
        assert_eq!(w.open(vec![], 0, Scope::All, &[]).unwrap_err(), bad);
        assert_eq!(
            w.open(vec![], MAX_WATCH_OWNERS + 1, Scope::All, &[])
                .unwrap_err(),
            bad
        );
        let huge = vec![vec![0u8; MAX_WATCHED_BYTES / 2 + 1]; 1];
        w.open(huge.clone(), 1, Scope::All, &[]).unwrap();
        assert!(matches!(
            w.open(huge, 1, Scope::All, &[]),
            Err(OwnershipError::TooManyKeys { .. })
        ));
        for _ in 1..MAX_WATCHES {
            w.open(vec![b"k".to_vec()], 1, Scope::All, &[]).unwrap();
        }
        assert_eq!(
            w.open(vec![], 1, Scope::All, &[]).unwrap_err(),
            OwnershipError::TooManyWatches { max: MAX_WATCHES }
        );
    }
}
