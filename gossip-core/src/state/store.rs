//! Each owner's map as this node holds it, and the rules for taking in an entry.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{StateConfig, StateLimit};
use crate::identity::NodeId;
use crate::time::Instant;
use crate::wire::SignedPacket;

/// One live key of a member's map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateValue {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: Vec<u8>,
    /// The owner's version at the write.
    pub version: u64,
}

/// Versions above the watermark remembered while the gap below them is open: gossip may
/// deliver writes out of order. Beyond this anti-entropy fills the gap anyway.
const MAX_AHEAD: usize = 4_096;

/// One key as held: its latest write (a value or a tombstone) and the owner's signed record.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) version: u64,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) record: SignedPacket,
    /// When this node learned it: tombstones are collected a grace period after.
    pub(crate) since: Instant,
}

impl Entry {
    fn cost(&self, key: &str) -> usize {
        key.len() + self.value.as_ref().map_or(0, Vec::len)
    }
}

/// What taking in an entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Put {
    /// It replaced what was held (if anything).
    News,
    /// An equal or newer write of the key is held, or it was deleted and collected since.
    Known,
    /// A size limit refused it.
    Refused(StateLimit),
}

/// One owner's map as this node holds it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Replica {
    pub(crate) life: u64,
    /// Every write up to this version is held (or was superseded by a held one).
    pub(crate) watermark: u64,
    /// Versions above the watermark already held, waiting for the gap below them to close.
    ahead: BTreeSet<u64>,
    pub(crate) entries: BTreeMap<String, Entry>,
    by_version: BTreeMap<u64, String>,
    /// The highest version of a tombstone collected here: a holder below it cannot be patched.
    pub(crate) floor: u64,
    /// Key and value bytes held, tombstones' keys included.
    pub(crate) bytes: usize,
    /// XOR of the hashes of live `(key, version)` pairs.
    hash: u64,
    tombstones: usize,
    /// A rebuild from a full copy in progress; replaces this one when complete.
    pub(crate) staging: Option<Box<Replica>>,
}

/// The hash of one live key at one version (FNV-1a, then a 64-bit finalizer). Not a defence:
/// only owners choose keys, and a collision at worst delays a repair.
fn pair_hash(key: &str, version: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain(version.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The backlog subject of a key: a newer write of it replaces the queued one.
pub(crate) fn key_subject(key: &str) -> u64 {
    pair_hash(key, 0)
}

impl Replica {
    pub(crate) fn new(life: u64) -> Self {
        Replica {
            life,
            ..Replica::default()
        }
    }

    /// The highest version held.
    pub(crate) fn top(&self) -> u64 {
        self.by_version.last_key_value().map_or(0, |(v, _)| *v)
    }

    /// The digest hash, when this copy is exactly the writes up to the watermark.
    pub(crate) fn digest_hash(&self) -> Option<u64> {
        (self.ahead.is_empty() && self.staging.is_none()).then_some(self.hash)
    }

    /// Total bytes held, a rebuild in progress included.
    pub(crate) fn total_bytes(&self) -> usize {
        self.bytes + self.staging.as_ref().map_or(0, |s| s.bytes)
    }

    /// Whether a write of `key` at `version` would be news.
    pub(crate) fn is_news(&self, key: &str, version: u64) -> bool {
        match self.entries.get(key) {
            Some(e) => version > e.version,
            // Everything up to the watermark was seen: a key absent below it was deleted.
            None => version > self.watermark,
        }
    }

    /// Checks the limits for writing `key` with a value of `value_len` bytes (`None`: a
    /// tombstone); returns the growth in bytes. `cluster_room` is what the cluster limit
    /// still allows.
    pub(crate) fn check(
        &self,
        key: &str,
        value_len: Option<usize>,
        config: &StateConfig,
        cluster_room: usize,
    ) -> Result<usize, StateLimit> {
        if key.len() > config.max_key_bytes {
            return Err(StateLimit::KeyTooLong {
                len: key.len(),
                max: config.max_key_bytes,
            });
        }
        let len = value_len.unwrap_or(0);
        if len > config.max_value_bytes {
            return Err(StateLimit::ValueTooLarge {
                len,
                max: config.max_value_bytes,
            });
        }
        let old = self.entries.get(key).map(|e| e.cost(key));
        if old.is_none() && self.entries.len() >= config.max_keys_per_member {
            return Err(StateLimit::TooManyKeys {
                max: config.max_keys_per_member,
            });
        }
        let new = key.len() + len;
        let old = old.unwrap_or(0);
        let size = self.bytes - old + new;
        if size > config.max_bytes_per_member {
            return Err(StateLimit::MemberBytes {
                size,
                max: config.max_bytes_per_member,
            });
        }
        let growth = new.saturating_sub(old);
        if growth > cluster_room {
            return Err(StateLimit::ClusterBytes {
                size: config.max_cluster_bytes - cluster_room + growth,
                max: config.max_cluster_bytes,
            });
        }
        Ok(growth)
    }

    /// Takes in a verified write of this replica's life. `cluster_room` shrinks by the growth.
    pub(crate) fn put(
        &mut self,
        key: &str,
        entry: Entry,
        config: &StateConfig,
        cluster_room: &mut usize,
    ) -> Put {
        if !self.is_news(key, entry.version) {
            return Put::Known;
        }
        let growth = match self.check(
            key,
            entry.value.as_ref().map(Vec::len),
            config,
            *cluster_room,
        ) {
            Ok(g) => g,
            Err(limit) => return Put::Refused(limit),
        };
        *cluster_room -= growth;
        let version = entry.version;
        self.insert(key, entry);
        self.note_version(version);
        Put::News
    }

    fn insert(&mut self, key: &str, entry: Entry) {
        if let Some(old) = self.entries.remove(key) {
            self.forget(key, &old);
        }
        self.bytes += entry.cost(key);
        match entry.value {
            Some(_) => self.hash ^= pair_hash(key, entry.version),
            None => self.tombstones += 1,
        }
        self.by_version.insert(entry.version, key.to_owned());
        self.entries.insert(key.to_owned(), entry);
    }

    fn forget(&mut self, key: &str, old: &Entry) {
        self.bytes -= old.cost(key);
        self.by_version.remove(&old.version);
        match old.value {
            Some(_) => self.hash ^= pair_hash(key, old.version),
            None => self.tombstones -= 1,
        }
    }

    fn note_version(&mut self, version: u64) {
        if self.watermark.checked_add(1) == Some(version) {
            self.watermark = version;
            self.close_gap();
        } else if version > self.watermark && self.ahead.len() < MAX_AHEAD {
            self.ahead.insert(version);
        }
    }

    fn close_gap(&mut self) {
        while let Some(next) = self.watermark.checked_add(1)
            && self.ahead.remove(&next)
        {
            self.watermark = next;
        }
        let floor = self.watermark;
        self.ahead.retain(|v| *v > floor);
    }

    /// A sender vouched that it holds nothing else in `(watermark, through]`. Only believed up
    /// to the highest signed version held: an unsigned claim cannot push the watermark past
    /// writes nobody has shown us.
    pub(crate) fn advance(&mut self, through: u64) {
        let through = through.min(self.top());
        if through > self.watermark {
            self.watermark = through;
            self.close_gap();
        }
    }

    /// The records of versions in `(from, watermark]`, ascending.
    pub(crate) fn since(&self, from: u64) -> impl Iterator<Item = (u64, &SignedPacket)> {
        let range = match from.checked_add(1) {
            Some(lo) if lo <= self.watermark => Some(lo..=self.watermark),
            _ => None,
        };
        range
            .into_iter()
            .flat_map(move |r| self.by_version.range(r))
            .map(|(v, k)| (*v, &self.entries[k].record))
    }

    /// Forgets tombstones older than `grace_ms`, except the newest write: it proves the owner's
    /// version to holders that compare digests. Returns how many went.
    pub(crate) fn collect(&mut self, now: Instant, grace_ms: u64) -> usize {
        if self.tombstones == 0 {
            return 0;
        }
        let top = self.top();
        let old: Vec<(u64, String)> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.value.is_none()
                    && e.version != top
                    && now.micros_since(e.since) / 1_000 >= grace_ms
            })
            .map(|(k, e)| (e.version, k.clone()))
            .collect();
        for (version, key) in &old {
            if let Some(e) = self.entries.remove(key) {
                self.forget(key, &e);
            }
            self.floor = self.floor.max(*version);
        }
        old.len()
    }

    /// Tombstones held.
    pub(crate) fn tombstones(&self) -> usize {
        self.tombstones
    }

    /// Live keys, in key order.
    pub(crate) fn values(&self) -> impl Iterator<Item = StateValue> + '_ {
        self.entries.iter().filter_map(|(k, e)| {
            e.value.as_ref().map(|v| StateValue {
                key: k.clone(),
                value: v.clone(),
                version: e.version,
            })
        })
    }

    /// Replaces this copy by its completed rebuild, keeping writes newer than the rebuild
    /// reached (they came by gossip meanwhile). Returns the live keys that changed: the new
    /// write, or `None` for a key that is gone.
    pub(crate) fn finish_staging(&mut self) -> Vec<(String, u64, Option<Vec<u8>>)> {
        let Some(staging) = self.staging.take() else {
            return Vec::new();
        };
        let old = std::mem::replace(self, *staging);
        self.floor = self.floor.max(old.floor);
        for (key, e) in &old.entries {
            if e.version > self.watermark && self.is_news(key, e.version) {
                let version = e.version;
                self.insert(key, e.clone());
                self.note_version(version);
            }
        }
        let mut changes = Vec::new();
        for (key, e) in &old.entries {
            let now = self.entries.get(key);
            if e.value.is_some() && now.is_none_or(|n| n.value.is_none()) {
                changes.push((key.clone(), now.map_or(e.version, |n| n.version), None));
            }
        }
        for (key, n) in &self.entries {
            let before = old.entries.get(key);
            if n.value.is_some() && before.is_none_or(|b| b.version != n.version) {
                changes.push((key.clone(), n.version, n.value.clone()));
            }
        }
        changes
    }
}

/// The replicated state as this node holds it.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) config: StateConfig,
    /// This node's life: its incarnation when it started.
    pub(crate) life: u64,
    pub(crate) replicas: HashMap<NodeId, Replica>,
    pub(crate) watches: BTreeMap<u64, String>,
    pub(crate) next_watch: u64,
    pub(crate) next_round: Instant,
    /// Follow-up rounds run with each peer whose answer was cut.
    pub(crate) followups: HashMap<NodeId, u8>,
    /// Tombstones collected, ever.
    pub(crate) collected: u64,
    /// Full rebuilds completed, ever.
    pub(crate) rebuilds: u64,
}

impl Store {
    pub(crate) fn new(config: StateConfig, me: NodeId, life: u64, first_round: Instant) -> Self {
        Store {
            config,
            life,
            replicas: HashMap::from([(me, Replica::new(life))]),
            watches: BTreeMap::new(),
            next_watch: 0,
            next_round: first_round,
            followups: HashMap::new(),
            collected: 0,
            rebuilds: 0,
        }
    }

    /// What the cluster limit still allows.
    pub(crate) fn cluster_room(&self) -> usize {
        let used: usize = self.replicas.values().map(Replica::total_bytes).sum();
        self.config.max_cluster_bytes.saturating_sub(used)
    }

    /// Whether a change of `key` is watched.
    pub(crate) fn watched(&self, key: &str) -> bool {
        self.watches.values().any(|p| key.starts_with(p.as_str()))
    }

    /// Whether this node holds or watches nothing: it syncs less often then.
    pub(crate) fn is_idle(&self) -> bool {
        self.watches.is_empty() && self.replicas.values().all(|r| r.entries.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Timestamp;
    use crate::identity::Identity;
    use crate::keyring::Keyring;
    use crate::limits::Limits;
    use crate::message::Message;
    use crate::replay::ReplayConfig;
    use crate::state::messages::StateEntry;
    use crate::wire::Codec;

    fn codec() -> Codec {
        let id = Identity::from_secret_bytes([7; 32]);
        Codec::new(
            id,
            Keyring::unencrypted(),
            Limits::default(),
            ReplayConfig::default(),
        )
    }

    fn entry(c: &Codec, version: u64, key: &str, value: Option<&[u8]>) -> Entry {
        let e = StateEntry {
            life: 1,
            version,
            key: key.into(),
            value: value.map(|v| v.to_vec().into()),
        };
        let record = c
            .sign(Timestamp::from_u64(version), &Message::from(e))
            .unwrap();
        Entry {
            version,
            value: value.map(<[u8]>::to_vec),
            record,
            since: Instant::from_micros(0),
        }
    }

    fn put(r: &mut Replica, c: &Codec, v: u64, key: &str, value: Option<&[u8]>) -> Put {
        let mut room = usize::MAX;
        r.put(
            key,
            entry(c, v, key, value),
            &StateConfig::default(),
            &mut room,
        )
    }

    #[test]
    fn out_of_order_writes_hold_the_watermark_until_the_gap_closes() {
        let c = codec();
        let mut r = Replica::new(1);
        assert_eq!(put(&mut r, &c, 2, "b", Some(b"2")), Put::News);
        assert_eq!(r.watermark, 0);
        assert_eq!(r.digest_hash(), None, "a gap: no hash to compare");
        assert_eq!(put(&mut r, &c, 1, "a", Some(b"1")), Put::News);
        assert_eq!(r.watermark, 2);
        assert!(r.digest_hash().is_some());
        assert_eq!(put(&mut r, &c, 1, "a", Some(b"1")), Put::Known);
    }

    #[test]
    fn a_deleted_and_collected_key_is_not_taken_back() {
        let c = codec();
        let mut r = Replica::new(1);
        assert_eq!(put(&mut r, &c, 1, "a", Some(b"1")), Put::News);
        assert_eq!(put(&mut r, &c, 2, "a", None), Put::News);
        assert_eq!(put(&mut r, &c, 3, "b", Some(b"3")), Put::News);
        let later = Instant::from_micros(0).plus_millis(10);
        assert_eq!(r.collect(later, 10), 1);
        assert_eq!(r.floor, 2);
        assert!(!r.entries.contains_key("a"));
        // The old write of "a", replayed by anyone, is below the watermark: deleted.
        assert_eq!(put(&mut r, &c, 1, "a", Some(b"1")), Put::Known);
        assert_eq!(r.values().count(), 1);
    }

    #[test]
    fn the_newest_tombstone_is_kept_as_proof_of_the_version() {
        let c = codec();
        let mut r = Replica::new(1);
        let _ = put(&mut r, &c, 1, "a", Some(b"1"));
        let _ = put(&mut r, &c, 2, "a", None);
        assert_eq!(r.collect(Instant::from_micros(0).plus_millis(99), 0), 0);
        assert_eq!(r.top(), 2);
    }

    #[test]
    fn unsigned_claims_cannot_raise_the_watermark_past_what_is_held() {
        let c = codec();
        let mut r = Replica::new(1);
        let _ = put(&mut r, &c, 1, "a", Some(b"1"));
        r.advance(u64::MAX);
        assert_eq!(r.watermark, 1);
        // A write 5 is still news.
        assert_eq!(put(&mut r, &c, 5, "e", Some(b"5")), Put::News);
    }

    #[test]
    fn limits_refuse_with_typed_errors() {
        let c = codec();
        let mut r = Replica::new(1);
        let config = StateConfig {
            max_key_bytes: 4,
            max_value_bytes: 4,
            max_keys_per_member: 2,
            max_bytes_per_member: 12,
            ..StateConfig::default()
        };
        let mut room = usize::MAX;
        let p = |r: &mut Replica, v, k: &str, val: &[u8], room: &mut usize| {
            r.put(k, entry(&c, v, k, Some(val)), &config, room)
        };
        assert!(matches!(
            p(&mut r, 1, "toolong", b"", &mut room),
            Put::Refused(StateLimit::KeyTooLong { len: 7, max: 4 })
        ));
        assert!(matches!(
            p(&mut r, 1, "a", b"12345", &mut room),
            Put::Refused(StateLimit::ValueTooLarge { len: 5, max: 4 })
        ));
        assert_eq!(p(&mut r, 1, "a", b"1234", &mut room), Put::News);
        assert_eq!(p(&mut r, 2, "b", b"1234", &mut room), Put::News);
        assert!(matches!(
            p(&mut r, 3, "c", b"", &mut room),
            Put::Refused(StateLimit::TooManyKeys { max: 2 })
        ));
        let mut small = 0;
        assert!(matches!(
            p(&mut r, 3, "a", b"12345"[..4].as_ref(), &mut small),
            Put::News
        ));
        let mut tight = StateConfig { ..config };
        tight.max_bytes_per_member = 9;
        assert!(matches!(
            r.check("b", Some(4), &tight, usize::MAX),
            Err(StateLimit::MemberBytes { size: 10, max: 9 })
        ));
        assert!(matches!(
            r.check("b", Some(1), &config, 0),
            Ok(0) // shrinking needs no room
        ));
        let fresh = Replica::new(1);
        assert!(matches!(
            fresh.check("b", Some(4), &config, 2),
            Err(StateLimit::ClusterBytes { .. })
        ));
        assert_eq!(r.bytes, 10);
    }

    #[test]
    fn a_rebuild_reports_removed_and_changed_keys_and_keeps_newer_gossip() {
        let c = codec();
        let mut r = Replica::new(1);
        let _ = put(&mut r, &c, 1, "gone", Some(b"x"));
        let _ = put(&mut r, &c, 2, "kept", Some(b"y"));
        let _ = put(&mut r, &c, 9, "fresh", Some(b"z")); // by gossip, above a gap
        let mut s = Replica::new(1);
        let _ = put(&mut s, &c, 2, "kept", Some(b"y"));
        let _ = put(&mut s, &c, 5, "new", Some(b"n"));
        s.advance(5);
        r.staging = Some(Box::new(s));
        let mut changes = r.finish_staging();
        changes.sort();
        assert_eq!(
            changes,
            vec![
                ("gone".into(), 1, None),
                ("new".into(), 5, Some(b"n".to_vec())),
            ]
        );
        assert!(r.entries.contains_key("fresh"));
        assert_eq!(r.watermark, 5);
        assert_eq!(r.values().count(), 3);
    }
}
