//! Signed records this node has already verified, so the copies that keep arriving (gossip items,
//! push-pull states, relayed news) cost a hash instead of an Ed25519 verification.
//!
//! A hit means "these exact bytes, signature included, verified before": the key is a digest of
//! the whole packet, so a verified signature replayed over a changed body (or a changed signature
//! over a verified body) misses and is verified like any stranger. Only packets that just verified
//! are inserted, so a forgery can never make an entry.
//!
//! The digest is keyed with a secret derived from this node's signing key: the set an entry
//! lands in and its tag are unpredictable to anyone else, so a member holding the cluster key
//! cannot grind records that evict a chosen entry, and flushing the cache takes about as many
//! valid records as it has slots, each of which this node verifies anyway. The memory is fixed:
//! `capacity` slots of 24 bytes, allocated on first insertion. Losing an entry costs one
//! verification, never correctness.

use sha2::{Digest, Sha512};

/// Ways per set: a hit moves an entry to the front of its set, an insertion evicts the back.
const WAYS: usize = 2;
/// Domain separation of the cache key derived from the signing key.
const KEY_DOMAIN: &[u8] = b"gossip/v1 verified-record cache key\0";

/// One slot: a 128-bit keyed tag (0 = empty) and nothing else.
type Tag = u128;

/// A bounded, set-associative set of verified packet digests.
#[derive(Clone)]
pub(crate) struct VerifiedCache {
    key: [u8; 32],
    slots: Vec<Tag>,
    capacity: usize,
}

impl core::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The key stays out of logs: with it, an attacker could aim at chosen entries.
        f.debug_struct("VerifiedCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// Where a packet's digest lives: its set and its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    set: usize,
    tag: Tag,
}

impl VerifiedCache {
    /// A cache of `capacity` entries (rounded down to whole sets; 0 disables it) keyed from
    /// `secret`, which must never leave this node.
    pub(crate) fn new(secret: &[u8; 32], capacity: usize) -> Self {
        let digest = Sha512::new()
            .chain_update(KEY_DOMAIN)
            .chain_update(secret)
            .finalize();
        let mut key = [0u8; 32];
        key.copy_from_slice(&digest[..32]);
        VerifiedCache {
            key,
            slots: Vec::new(),
            capacity: capacity - capacity % WAYS,
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.slots.iter().filter(|t| **t != 0).count()
    }

    /// Changes the capacity, forgetting every entry.
    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity - capacity % WAYS;
        self.slots = Vec::new();
    }

    /// Where `packet` would be held (None: the cache is off).
    pub(crate) fn slot(&self, packet: &[u8]) -> Option<Slot> {
        let sets = self.capacity / WAYS;
        if sets == 0 {
            return None;
        }
        let digest = Sha512::new()
            .chain_update(self.key)
            .chain_update(packet)
            .finalize();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&digest[..16]);
        let mut index = [0u8; 8];
        index.copy_from_slice(&digest[16..24]);
        // The modulo bias is at most sets / 2^64: irrelevant for placement.
        let set = (u64::from_le_bytes(index) % sets as u64) as usize;
        // A zero tag marks an empty slot; a real digest is never stored as one.
        Some(Slot {
            set,
            tag: u128::from_le_bytes(tag).max(1),
        })
    }

    /// Whether the packet at `slot` verified before; a hit becomes the most recent of its set.
    pub(crate) fn hit(&mut self, slot: Slot) -> bool {
        let Some(set) = self.set_mut(slot.set) else {
            return false;
        };
        match set.iter().position(|t| *t == slot.tag) {
            Some(at) => {
                set[..=at].rotate_right(1);
                true
            }
            None => false,
        }
    }

    /// Whether the packet at `slot` verified before, leaving the order of its set alone.
    #[cfg(feature = "batch-verify")]
    pub(crate) fn contains(&self, slot: Slot) -> bool {
        let start = slot.set * WAYS;
        self.slots
            .get(start..start + WAYS)
            .is_some_and(|set| set.contains(&slot.tag))
    }

    /// Records that the packet at `slot` just verified, evicting the least recent of its set.
    pub(crate) fn insert(&mut self, slot: Slot) {
        if self.slots.is_empty() && self.capacity > 0 {
            self.slots = vec![0; self.capacity];
        }
        let Some(set) = self.set_mut(slot.set) else {
            return;
        };
        if set.contains(&slot.tag) {
            return;
        }
        set.rotate_right(1);
        set[0] = slot.tag;
    }

    fn set_mut(&mut self, set: usize) -> Option<&mut [Tag]> {
        let start = set.checked_mul(WAYS)?;
        self.slots.get_mut(start..start.checked_add(WAYS)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inserted_bytes_hit_and_any_change_misses() {
        let mut c = VerifiedCache::new(&[7; 32], 64);
        let record = b"signature and body".to_vec();
        let s = c.slot(&record).unwrap();
        assert!(!c.hit(s), "nothing is verified before it is inserted");
        c.insert(s);
        assert!(c.hit(c.slot(&record).unwrap()));
        for i in 0..record.len() {
            let mut changed = record.clone();
            changed[i] ^= 1;
            assert!(!c.hit(c.slot(&changed).unwrap()), "byte {i} changed");
        }
        assert!(!c.hit(c.slot(&record[..record.len() - 1]).unwrap()));
    }

    #[test]
    fn placement_depends_on_the_secret() {
        let (a, b) = (
            VerifiedCache::new(&[1; 32], 4096),
            VerifiedCache::new(&[2; 32], 4096),
        );
        let record = b"the same record".as_slice();
        assert_ne!(a.slot(record), b.slot(record));
    }

    #[test]
    fn memory_stays_at_capacity_and_a_hit_survives_one_newcomer() {
        let mut c = VerifiedCache::new(&[3; 32], 16);
        for i in 0..10_000u32 {
            let s = c.slot(&i.to_le_bytes()).unwrap();
            c.insert(s);
        }
        assert_eq!(c.slots.len(), 16);
        assert_eq!(c.len(), 16);
        // In a two-way set, the entry just hit is not the one the next insertion evicts.
        let old = c.slot(b"old").unwrap();
        c.insert(old);
        let other = (0..u32::MAX)
            .map(|i| c.slot(&i.to_be_bytes()).unwrap())
            .find(|s| s.set == old.set && s.tag != old.tag)
            .unwrap();
        c.insert(other);
        assert!(c.hit(old));
        let third = (1_000_000..u32::MAX)
            .map(|i| c.slot(&i.to_be_bytes()).unwrap())
            .find(|s| s.set == old.set && s.tag != old.tag && s.tag != other.tag)
            .unwrap();
        c.insert(third);
        assert!(c.hit(old), "the hit entry was most recent");
        assert!(!c.hit(other), "the least recent was evicted");
    }

    #[test]
    fn zero_capacity_disables_it() {
        let mut c = VerifiedCache::new(&[4; 32], 0);
        assert!(c.slot(b"x").is_none());
        c.set_capacity(1);
        assert!(c.slot(b"x").is_none(), "less than one set");
        c.set_capacity(8);
        let s = c.slot(b"x").unwrap();
        c.insert(s);
        assert!(c.hit(s));
        assert_eq!(c.len(), 1);
    }
}
