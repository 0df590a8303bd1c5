//! The member table, and with the `member-index` feature the indexes that keep the work per
//! input independent of the cluster's size.
//!
//! Without indexes, every input that brought news paid for a pass over the whole table and a
//! sort of its ids (the push ring, `spread.rs`), every gossip target draw sorted the eligible ids
//! again (`intake.rs`), every live count and every name check scanned the table. That is
//! O(N log N) work per frame, and a join of N members is N² frames' worth of news: at
//! N = 1,000 these passes cost as much as the signatures. With the feature:
//!
//! - the table is ordered by id, so a pass over it yields the ids already sorted (the sorts that
//!   follow find one run and stop);
//! - the push ring (members news is pushed to, and this node) is kept sorted as members change;
//! - the live members are counted as they change;
//! - members are indexed by a hash of their name.
//!
//! Every change to a member goes through [`Members::get_mut`], [`Members::insert`] or
//! [`Members::remove`], which bring the indexes up to date when the change is done (the guard
//! that `get_mut` returns does it when dropped). Debug builds check the indexes against a scan
//! of the table on every read. The browser build leaves the feature off: a tab's table is as
//! large as anyone's, but it receives its server's news only, a frame at a time.

#[cfg(not(feature = "member-index"))]
use std::collections::HashMap;
#[cfg(feature = "member-index")]
use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::sync::Arc;

use crate::identity::NodeId;
use crate::membership::Member;

#[cfg(feature = "member-index")]
type Map = BTreeMap<NodeId, Member>;
#[cfg(not(feature = "member-index"))]
type Map = HashMap<NodeId, Member>;

/// A member news is pushed to directly: up, dialable, not behind a relay.
pub(super) fn is_push_target(m: &Member) -> bool {
    !m.state.is_down() && m.relay().is_none() && !m.addrs.is_empty()
}

/// Every member this node knows, itself included.
#[derive(Debug)]
pub(super) struct Members {
    me: NodeId,
    map: Map,
    #[cfg(feature = "member-index")]
    index: Index,
}

/// What is derived from the table, kept in step with it.
#[cfg(feature = "member-index")]
#[derive(Debug, Default)]
struct Index {
    /// This node and the members that pass [`is_push_target`], sorted. Shared, so that each
    /// frame bringing news borrows it instead of copying it (at N = 1,000: 32 KB per frame);
    /// a change copies it only while a push still holds it, which it never does between inputs.
    ring: Arc<Vec<NodeId>>,
    /// Members not down (this node included).
    live: usize,
    /// Each member's indexed name hash, and the members by it.
    name_of: HashMap<NodeId, u64>,
    by_name: BTreeSet<(u64, NodeId)>,
}

#[cfg(feature = "member-index")]
impl Index {
    /// Brings the entries of `id` in line with `now` (its record, or None once removed), given
    /// whether it counted as live before.
    fn sync(&mut self, me: NodeId, id: NodeId, was_live: bool, now: Option<&Member>) {
        let live = now.is_some_and(|m| !m.state.is_down());
        match (was_live, live) {
            (false, true) => self.live += 1,
            (true, false) => self.live -= 1,
            _ => {}
        }
        let in_ring = id == me || now.is_some_and(is_push_target);
        match (self.ring.binary_search(&id), in_ring) {
            (Err(at), true) => Arc::make_mut(&mut self.ring).insert(at, id),
            (Ok(at), false) => {
                Arc::make_mut(&mut self.ring).remove(at);
            }
            _ => {}
        }
        let name = now.map(|m| name_hash(&m.name));
        let old = match name {
            Some(h) => self.name_of.insert(id, h),
            None => self.name_of.remove(&id),
        };
        if old != name {
            if let Some(h) = old {
                self.by_name.remove(&(h, id));
            }
            if let Some(h) = name {
                self.by_name.insert((h, id));
            }
        }
    }
}

/// FNV-1a: a fixed hash, so the index is the same in every run (collisions only cost a
/// comparison of the names).
#[cfg(feature = "member-index")]
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Members {
    /// A table holding this node alone.
    pub(super) fn new(me: Member) -> Self {
        let id = me.id;
        let mut table = Members {
            me: id,
            map: Map::new(),
            #[cfg(feature = "member-index")]
            index: Index::default(),
        };
        table.insert(id, me);
        table
    }

    pub(super) fn get(&self, id: &NodeId) -> Option<&Member> {
        self.map.get(id)
    }

    pub(super) fn contains_key(&self, id: &NodeId) -> bool {
        self.map.contains_key(id)
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Every member (ordered by id with `member-index`, in no particular order without).
    pub(super) fn values(&self) -> impl Iterator<Item = &Member> {
        self.map.values()
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &NodeId> {
        self.map.keys()
    }

    /// A member to change; the indexes follow when the guard is dropped.
    pub(super) fn get_mut(&mut self, id: &NodeId) -> Option<MemberMut<'_>> {
        #[cfg(feature = "member-index")]
        {
            let member = self.map.get_mut(id)?;
            let was_live = !member.state.is_down();
            Some(MemberMut {
                member,
                index: &mut self.index,
                me: self.me,
                was_live,
            })
        }
        #[cfg(not(feature = "member-index"))]
        self.map.get_mut(id).map(|member| MemberMut { member })
    }

    pub(super) fn insert(&mut self, id: NodeId, member: Member) {
        let _old = self.map.insert(id, member);
        #[cfg(feature = "member-index")]
        {
            let was_live = _old.is_some_and(|m| !m.state.is_down());
            self.index.sync(self.me, id, was_live, self.map.get(&id));
        }
    }

    pub(super) fn remove(&mut self, id: &NodeId) -> Option<Member> {
        let old = self.map.remove(id);
        #[cfg(feature = "member-index")]
        if let Some(m) = &old {
            self.index.sync(self.me, *id, !m.state.is_down(), None);
        }
        old
    }

    /// Members alive or suspect, this node included.
    pub(super) fn live_count(&self) -> usize {
        let scan = || self.map.values().filter(|m| !m.state.is_down()).count();
        #[cfg(feature = "member-index")]
        {
            debug_assert_eq!(self.index.live, scan(), "live index out of step");
            self.index.live
        }
        #[cfg(not(feature = "member-index"))]
        scan()
    }

    /// This node and the members news is pushed to ([`is_push_target`]), sorted by id: the
    /// ring push trees are laid over.
    pub(super) fn push_ring(&self) -> Arc<Vec<NodeId>> {
        let scan = || {
            let mut ring: Vec<NodeId> = self
                .map
                .values()
                .filter(|m| m.id != self.me && is_push_target(m))
                .map(|m| m.id)
                .collect();
            ring.push(self.me);
            crate::sort::unstable(&mut ring);
            ring
        };
        #[cfg(feature = "member-index")]
        {
            debug_assert_eq!(*self.index.ring, scan(), "ring index out of step");
            Arc::clone(&self.index.ring)
        }
        #[cfg(not(feature = "member-index"))]
        Arc::new(scan())
    }

    /// Members that may be named `name` (all of them without `member-index`; with it, those
    /// whose name hashes alike): the caller compares the names.
    pub(super) fn maybe_named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Member> {
        #[cfg(feature = "member-index")]
        {
            let h = name_hash(name);
            self.index
                .by_name
                .range((h, NodeId::from_bytes([0; 32]))..=(h, NodeId::from_bytes([0xff; 32])))
                .filter_map(|(_, id)| self.map.get(id))
        }
        #[cfg(not(feature = "member-index"))]
        {
            let _ = name;
            self.map.values()
        }
    }
}

impl core::ops::Index<&NodeId> for Members {
    type Output = Member;
    fn index(&self, id: &NodeId) -> &Member {
        &self.map[id]
    }
}

/// A member being changed: dropping it brings the table's indexes up to date.
#[derive(Debug)]
pub(super) struct MemberMut<'a> {
    member: &'a mut Member,
    #[cfg(feature = "member-index")]
    index: &'a mut Index,
    #[cfg(feature = "member-index")]
    me: NodeId,
    #[cfg(feature = "member-index")]
    was_live: bool,
}

impl core::ops::Deref for MemberMut<'_> {
    type Target = Member;
    fn deref(&self) -> &Member {
        self.member
    }
}

impl core::ops::DerefMut for MemberMut<'_> {
    fn deref_mut(&mut self) -> &mut Member {
        self.member
    }
}

impl Drop for MemberMut<'_> {
    fn drop(&mut self) {
        #[cfg(feature = "member-index")]
        self.index
            .sync(self.me, self.member.id, self.was_live, Some(self.member));
    }
}

#[cfg(all(test, feature = "member-index"))]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::hlc::Timestamp;
    use crate::identity::Identity;
    use crate::keyring::{ClusterKey, Keyring};
    use crate::limits::Limits;
    use crate::membership::State;
    use crate::message::Alive;
    use crate::replay::ReplayConfig;
    use crate::time::Instant;
    use crate::wire::Codec;
    use std::collections::BTreeMap;

    fn member(n: u8, name: &str, addrs: Vec<Address>) -> Member {
        let codec = Codec::new(
            Identity::from_secret_bytes([n; 32]),
            Keyring::new(ClusterKey::from_bytes([2; 32])),
            Limits::default(),
            ReplayConfig::default(),
        );
        let alive = Alive {
            incarnation: 1,
            addrs: addrs.clone(),
            name: name.into(),
        };
        let record = codec
            .sign(Timestamp::from_u64(1 << 16), &alive.into())
            .expect("fits");
        Member {
            id: codec.identity().id(),
            name: name.into(),
            addrs,
            incarnation: 1,
            state: State::Alive,
            since: Instant::from_micros(0),
            metadata: BTreeMap::new(),
            meta_version: 0,
            rtt_micros: None,
            alive: record,
            status: None,
            meta: None,
        }
    }

    fn udp(port: u16) -> Vec<Address> {
        vec![Address::Udp(([127, 0, 0, 1], port).into())]
    }

    #[test]
    fn the_indexes_follow_every_change() {
        let me = member(1, "me", udp(1));
        let mut t = Members::new(me.clone());
        let (a, b, c) = (
            member(2, "a", udp(2)),
            member(3, "b", udp(3)),
            member(4, "a", vec![Address::Relayed(me.id)]),
        );
        for m in [&a, &b, &c] {
            t.insert(m.id, m.clone());
        }
        // A relayed member is live but no push target.
        assert_eq!(t.live_count(), 4);
        let mut ring = vec![me.id, a.id, b.id];
        ring.sort_unstable();
        assert_eq!(*t.push_ring(), ring);
        let named_a: Vec<NodeId> = t
            .maybe_named("a")
            .filter(|m| m.name == "a")
            .map(|m| m.id)
            .collect();
        assert_eq!(named_a.len(), 2);
        // Down: out of the ring and the live count; renamed: under its new name only.
        t.get_mut(&a.id).expect("held").state = State::Dead;
        t.get_mut(&b.id).expect("held").name = "z".into();
        assert_eq!(t.live_count(), 3);
        assert!(!t.push_ring().contains(&a.id));
        assert!(t.maybe_named("b").all(|m| m.id != b.id));
        assert!(t.maybe_named("z").any(|m| m.id == b.id));
        // Back up, then gone.
        t.get_mut(&a.id).expect("held").state = State::Alive;
        assert!(t.push_ring().contains(&a.id));
        assert!(t.remove(&a.id).is_some());
        assert_eq!(t.live_count(), 3);
        assert!(!t.push_ring().contains(&a.id));
        assert!(t.maybe_named("a").all(|m| m.id != a.id));
        // This node stays on the ring whatever its state.
        t.get_mut(&me.id).expect("held").state = State::Left;
        assert!(t.push_ring().contains(&me.id));
        assert_eq!(t.live_count(), 2);
    }
}
