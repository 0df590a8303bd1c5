//! HyParView's two views: a small active view of symmetric links, and a larger passive view of
//! known members to promote when an active neighbour fails. Both are bounded vectors: at these
//! sizes a linear scan beats any map, and holds nothing but the entries.

use rand_core::Rng;

use crate::address::Address;
use crate::identity::NodeId;
use crate::time::Instant;

/// An active neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePeer {
    /// The neighbour.
    pub node: NodeId,
    /// Where it is reached.
    pub addr: Address,
    /// Plumtree: broadcasts are pushed to it in full (else announced by `IHave`).
    pub eager: bool,
    /// Last authenticated frame from it.
    pub last_heard: Instant,
    /// Last frame to it.
    pub last_sent: Instant,
}

/// The active view, at most `capacity` neighbours.
#[derive(Debug, Clone)]
pub struct ActiveView {
    peers: Vec<ActivePeer>,
    capacity: usize,
}

impl ActiveView {
    /// An empty view of at most `capacity` neighbours.
    pub fn new(capacity: usize) -> Self {
        ActiveView {
            peers: Vec::new(),
            capacity: capacity.max(1),
        }
    }

    /// Neighbours held.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no neighbour is held.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Whether the view is full.
    pub fn is_full(&self) -> bool {
        self.peers.len() >= self.capacity
    }

    /// Whether `node` is a neighbour.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.get(node).is_some()
    }

    /// The neighbour `node`.
    pub fn get(&self, node: &NodeId) -> Option<&ActivePeer> {
        self.peers.iter().find(|p| p.node == *node)
    }

    /// The neighbour `node`, mutably.
    pub fn get_mut(&mut self, node: &NodeId) -> Option<&mut ActivePeer> {
        self.peers.iter_mut().find(|p| p.node == *node)
    }

    /// The neighbours.
    pub fn iter(&self) -> impl Iterator<Item = &ActivePeer> {
        self.peers.iter()
    }

    /// The neighbours, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut ActivePeer> {
        self.peers.iter_mut()
    }

    /// Adds a neighbour (eager, heard from now). Returns false if the view is full or holds it
    /// already; the caller evicts first.
    pub fn insert(&mut self, node: NodeId, addr: Address, now: Instant) -> bool {
        if self.is_full() || self.contains(&node) {
            return false;
        }
        if self.peers.capacity() == 0 {
            self.peers.reserve_exact(self.capacity);
        }
        self.peers.push(ActivePeer {
            node,
            addr,
            eager: true,
            last_heard: now,
            last_sent: now,
        });
        true
    }

    /// Removes `node`, returning its entry.
    pub fn remove(&mut self, node: &NodeId) -> Option<ActivePeer> {
        let at = self.peers.iter().position(|p| p.node == *node)?;
        Some(self.peers.swap_remove(at))
    }

    /// A random neighbour other than those in `except`.
    pub fn random<R: Rng + ?Sized>(&self, rng: &mut R, except: &[NodeId]) -> Option<&ActivePeer> {
        pick(rng, self.peers.iter().filter(|p| !except.contains(&p.node)))
    }
}

/// The passive view, at most `capacity` entries; a full view forgets a random entry to make room.
#[derive(Debug, Clone)]
pub struct PassiveView {
    peers: Vec<(NodeId, Address)>,
    capacity: usize,
}

impl PassiveView {
    /// An empty view of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        PassiveView {
            peers: Vec::new(),
            capacity,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Whether `node` is held.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.peers.iter().any(|(n, _)| n == node)
    }

    /// The entries.
    pub fn iter(&self) -> impl Iterator<Item = &(NodeId, Address)> {
        self.peers.iter()
    }

    /// Adds or refreshes an entry; when full, a random entry other than those in `keep` makes
    /// room (or, if all are to be kept, nothing is added).
    pub fn insert<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        node: NodeId,
        addr: Address,
        keep: &[NodeId],
    ) {
        if self.capacity == 0 {
            return;
        }
        if let Some(entry) = self.peers.iter_mut().find(|(n, _)| *n == node) {
            entry.1 = addr;
            return;
        }
        if self.peers.len() >= self.capacity {
            let victims: Vec<usize> = (0..self.peers.len())
                .filter(|&i| !keep.contains(&self.peers[i].0))
                .collect();
            let Some(&victim) = pick(rng, victims.iter()) else {
                return;
            };
            self.peers.swap_remove(victim);
        }
        if self.peers.capacity() == 0 {
            self.peers.reserve_exact(self.capacity);
        }
        self.peers.push((node, addr));
    }

    /// Removes `node`, returning its address.
    pub fn remove(&mut self, node: &NodeId) -> Option<Address> {
        let at = self.peers.iter().position(|(n, _)| n == node)?;
        Some(self.peers.swap_remove(at).1)
    }

    /// A random entry other than those in `except`.
    pub fn random<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        except: &[NodeId],
    ) -> Option<&(NodeId, Address)> {
        pick(rng, self.peers.iter().filter(|(n, _)| !except.contains(n)))
    }

    /// Up to `k` distinct random entries.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R, k: usize) -> Vec<(NodeId, Address)> {
        sample(rng, self.peers.iter(), k)
            .into_iter()
            .cloned()
            .collect()
    }
}

/// A uniformly random item.
pub(crate) fn pick<R: Rng + ?Sized, T>(
    rng: &mut R,
    items: impl Iterator<Item = T> + Clone,
) -> Option<T> {
    let n = items.clone().count();
    if n == 0 {
        return None;
    }
    items.into_iter().nth(below(rng, n))
}

/// Up to `k` distinct random items (a partial Fisher-Yates shuffle).
pub(crate) fn sample<R: Rng + ?Sized, T>(
    rng: &mut R,
    items: impl Iterator<Item = T>,
    k: usize,
) -> Vec<T> {
    let mut all: Vec<T> = items.collect();
    let k = k.min(all.len());
    for i in 0..k {
        let j = i + below(rng, all.len() - i);
        all.swap(i, j);
    }
    all.truncate(k);
    all
}

/// A uniform index below `n` (n > 0; the modulo bias is under 2^-32 for views this small).
pub(crate) fn below<R: Rng + ?Sized>(rng: &mut R, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 32])
    }

    fn addr(b: u8) -> Address {
        Address::Udp(([10, 0, 0, b], 7946).into())
    }

    #[test]
    fn active_view_is_bounded_and_unique() {
        let now = Instant::from_millis(0);
        let mut v = ActiveView::new(3);
        assert!(v.insert(id(1), addr(1), now));
        assert!(!v.insert(id(1), addr(1), now), "no duplicates");
        assert!(v.insert(id(2), addr(2), now));
        assert!(v.insert(id(3), addr(3), now));
        assert!(v.is_full());
        assert!(!v.insert(id(4), addr(4), now), "full");
        assert_eq!(v.remove(&id(2)).map(|p| p.node), Some(id(2)));
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|p| p.eager), "new neighbours start eager");
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for _ in 0..50 {
            let p = v.random(&mut rng, &[id(1)]).unwrap();
            assert_eq!(p.node, id(3));
        }
        assert!(v.random(&mut rng, &[id(1), id(3)]).is_none());
    }

    #[test]
    fn passive_view_evicts_randomly_but_keeps_protected_entries() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let mut v = PassiveView::new(4);
        for b in 1..=4 {
            v.insert(&mut rng, id(b), addr(b), &[]);
        }
        v.insert(&mut rng, id(1), addr(9), &[]);
        assert_eq!(v.len(), 4, "refreshing an entry does not grow the view");
        assert!(v.iter().any(|(n, a)| *n == id(1) && *a == addr(9)));
        for b in 5..=40 {
            v.insert(&mut rng, id(b), addr(b), &[id(1), id(2)]);
            assert_eq!(v.len(), 4);
            assert!(v.contains(&id(1)) && v.contains(&id(2)));
            assert!(v.contains(&id(b)), "the newcomer is in");
        }
        // Everything protected: the newcomer is not added.
        let keep: Vec<NodeId> = v.iter().map(|(n, _)| *n).collect();
        v.insert(&mut rng, id(99), addr(99), &keep);
        assert!(!v.contains(&id(99)));
        let s = v.sample(&mut rng, 3);
        assert_eq!(s.len(), 3);
        assert!(s.iter().all(|(n, _)| v.contains(n)));
        assert_ne!(s[0].0, s[1].0);
        assert_eq!(v.sample(&mut rng, 10).len(), 4);
    }
}
