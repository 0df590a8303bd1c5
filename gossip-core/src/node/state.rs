//! The replicated state inside the node: commands, gossip of fresh writes, anti-entropy.
//!
//! A malicious member holding the cluster key can, with these messages: send entries (each
//! must verify as signed by its owner, so it cannot write or delete another member's keys, and
//! a replayed old write is older than what is held or below the watermark); claim a batch
//! covers versions it does not (believed only up to the highest version shown signed, and
//! repaired by the digest hash at the next sync with an honest holder); flag a batch as a full
//! copy (a rebuild, bounded by the per-member limits, repaired the same way); send oversized
//! maps (refused per entry against the limits, counted as `StateLimit`); or send forged
//! entries (the first one that fails ends its batch: one wasted verification per batch).

use std::collections::HashMap;

use rand_core::Rng;
use serde_bytes::ByteBuf;

use super::Node;
use super::apply::Applied;
use super::backlog::{ITEM_OVERHEAD, Subject};
use crate::address::Address;
use crate::drop_reason::DropReason;
use crate::event::Event;
use crate::identity::NodeId;
use crate::membership::State;
use crate::message::{Message, UpdateMessage, sync_phase};
use crate::state::messages::{StateBatch, StateDigest, StateEntry, StateSync, batch_flags};
use crate::state::store::{Entry, Put, Replica, key_subject};
use crate::state::{StateError, StateValue, WatchId};
use crate::time::Instant;
use crate::wire::SignedPacket;

/// Follow-up rounds with one peer while its answers are cut by the budget.
const MAX_STATE_FOLLOWUPS: u8 = 32;

/// Bytes a batch costs besides its entries (owner, four integers, array headers).
const BATCH_OVERHEAD: usize = 64;

/// An idle node (holding and watching nothing) syncs this many times less often.
const IDLE_SLOWDOWN: u64 = 10;

/// Counters of the replicated state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateStats {
    /// Owners whose map this node holds (itself included).
    pub owners: usize,
    /// Live keys held, all owners.
    pub keys: usize,
    /// Tombstones held, all owners.
    pub tombstones: usize,
    /// Key and value bytes held.
    pub bytes: usize,
    /// Tombstones collected since start.
    pub collected: u64,
    /// Owners' maps rebuilt from a full copy since start.
    pub rebuilds: u64,
}

impl Node {
    /// Sets `key` in this member's map to `value`; returns the write's version.
    pub fn state_set(
        &mut self,
        now: Instant,
        key: &str,
        value: Vec<u8>,
    ) -> Result<u64, StateError> {
        self.state_write(now, key, Some(value))
    }

    /// Deletes `key` from this member's map (a tombstone, collected after the grace period);
    /// returns the write's version, or `None` if the key was not set.
    pub fn state_delete(&mut self, now: Instant, key: &str) -> Result<Option<u64>, StateError> {
        let live = self
            .state
            .replicas
            .get(&self.id)
            .and_then(|r| r.entries.get(key))
            .is_some_and(|e| e.value.is_some());
        if !live {
            return Ok(None);
        }
        self.state_write(now, key, None).map(Some)
    }

    fn state_write(
        &mut self,
        now: Instant,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<u64, StateError> {
        if self.left {
            return Err(StateError::Left);
        }
        let room = self.state.cluster_room();
        let config = self.state.config;
        let life = self.state.life;
        let own = self
            .state
            .replicas
            .entry(self.id)
            .or_insert_with(|| Replica::new(life));
        own.check(key, value.as_ref().map(Vec::len), &config, room)?;
        let version = own
            .watermark
            .checked_add(1)
            .ok_or(StateError::VersionExhausted)?;
        let id = self.shell.next_id(now);
        let entry = StateEntry {
            life,
            version,
            key: key.to_owned(),
            value: value.clone().map(ByteBuf::from),
        };
        let record = self.shell.codec.sign(id, &entry.into())?;
        let held = Entry {
            version,
            value: value.clone(),
            record: record.clone(),
            since: now,
        };
        let mut room = room;
        let put = own.put(key, held, &config, &mut room);
        debug_assert_eq!(put, Put::News, "checked above");
        self.state_changed(self.id, key, version, value);
        self.state_wake(now);
        self.enqueue(Subject::State(self.id, key_subject(key)), record);
        self.flush(now);
        Ok(version)
    }

    /// The live value of `key` in `owner`'s map, as this node holds it.
    pub fn state_get(&self, owner: &NodeId, key: &str) -> Option<StateValue> {
        let e = self.state.replicas.get(owner)?.entries.get(key)?;
        Some(StateValue {
            key: key.to_owned(),
            value: e.value.clone()?,
            version: e.version,
        })
    }

    /// Every live key of `owner`'s map as this node holds it, in key order.
    pub fn state_entries(&self, owner: &NodeId) -> Vec<StateValue> {
        self.state
            .replicas
            .get(owner)
            .map(|r| r.values().collect())
            .unwrap_or_default()
    }

    /// `owner`'s life and the version up to which this node holds its map.
    pub fn state_version(&self, owner: &NodeId) -> Option<(u64, u64)> {
        self.state
            .replicas
            .get(owner)
            .map(|r| (r.life, r.watermark))
    }

    /// This node's own life: its first incarnation, new at every start. Writes of an earlier
    /// life of the same identity are gone.
    pub fn state_life(&self) -> u64 {
        self.state.life
    }

    /// Owners whose maps this node holds, itself included.
    pub fn state_owners(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.state.replicas.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Reports changes of keys starting with `prefix` (any owner, this node's included) as
    /// [`Event::StateChanged`], and owners' maps dropped as [`Event::StateCleared`]. Nothing is
    /// reported while no watch is open.
    pub fn state_watch(&mut self, prefix: &str) -> Result<WatchId, StateError> {
        let max = self.state.config.max_watches;
        if self.state.watches.len() >= max {
            return Err(StateError::TooManyWatches { max });
        }
        let id = self.state.next_watch;
        self.state.next_watch += 1;
        let now = self.timers.latest();
        self.state_wake(now);
        self.state.watches.insert(id, prefix.to_owned());
        Ok(WatchId(id))
    }

    /// Closes a watch; returns whether it was open.
    pub fn state_unwatch(&mut self, watch: WatchId) -> bool {
        self.state.watches.remove(&watch.0).is_some()
    }

    /// Counters of the replicated state.
    pub fn state_stats(&self) -> StateStats {
        let mut s = StateStats {
            owners: self.state.replicas.len(),
            collected: self.state.collected,
            rebuilds: self.state.rebuilds,
            ..StateStats::default()
        };
        for r in self.state.replicas.values() {
            s.keys += r.entries.len() - r.tombstones();
            s.tombstones += r.tombstones();
            s.bytes += r.total_bytes();
        }
        s
    }

    pub(super) fn state_deadline(&self) -> Instant {
        self.state.next_round
    }

    /// An idle node that starts holding state syncs at the normal pace from now on.
    fn state_wake(&mut self, now: Instant) {
        let soon = now.plus_millis(self.state.config.sync_interval_ms.max(1));
        self.state.next_round = self.state.next_round.min(soon);
    }

    fn state_changed(&mut self, owner: NodeId, key: &str, version: u64, value: Option<Vec<u8>>) {
        if self.state.watched(key) {
            self.shell.push_event(Event::StateChanged {
                owner,
                key: key.to_owned(),
                version,
                value,
            });
        }
    }

    fn state_cleared(&mut self, owner: NodeId, had: &Replica) {
        if !self.state.watches.is_empty() && had.values().next().is_some() {
            self.shell.push_event(Event::StateCleared { owner });
        }
    }

    fn owner_is_live(&self, owner: &NodeId) -> bool {
        self.members.get(owner).is_some_and(|m| !m.state.is_down())
    }

    /// A fresh write arrived by gossip (hook in `apply.rs`).
    pub(super) fn apply_state(
        &mut self,
        now: Instant,
        origin: NodeId,
        e: StateEntry,
        packet: &SignedPacket,
    ) -> Applied {
        if origin == self.id {
            return Applied::Known;
        }
        if !self.owner_is_live(&origin) {
            return Applied::Refused(DropReason::StateUnknownOwner);
        }
        let room = self.state.cluster_room();
        let config = self.state.config;
        let replica = self
            .state
            .replicas
            .entry(origin)
            .or_insert_with(|| Replica::new(e.life));
        if e.life < replica.life {
            return Applied::Known;
        }
        if e.life > replica.life {
            let had = std::mem::replace(replica, Replica::new(e.life));
            self.state_cleared(origin, &had);
        }
        let replica = self.state.replicas.get_mut(&origin).expect("inserted");
        let held = Entry {
            version: e.version,
            value: e.value.map(ByteBuf::into_vec),
            record: packet.clone(),
            since: now,
        };
        let value = held.value.clone();
        let mut room = room;
        match replica.put(&e.key, held, &config, &mut room) {
            Put::News => {
                self.state_changed(origin, &e.key, e.version, value);
                self.state_wake(now);
                Applied::News
            }
            Put::Known => Applied::Known,
            Put::Refused(_) => Applied::Refused(DropReason::StateLimit),
        }
    }

    /// The state round (hook in `handle_timeout`): forget the maps of members that are gone,
    /// collect tombstones, open a sync with one random live member.
    pub(super) fn state_tick(&mut self, now: Instant) {
        if now < self.state.next_round {
            return;
        }
        let gone: Vec<NodeId> = self
            .state
            .replicas
            .keys()
            .filter(|id| **id != self.id && !self.owner_is_live(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(had) = self.state.replicas.remove(&id) {
                self.state_cleared(id, &had);
            }
            self.state.followups.remove(&id);
        }
        let grace = self.state.config.tombstone_grace_ms;
        let collected: usize = self
            .state
            .replicas
            .values_mut()
            .map(|r| r.collect(now, grace))
            .sum();
        self.state.collected += collected as u64;
        let mut interval = self.state.config.sync_interval_ms.max(1);
        if self.state.is_idle() {
            interval = interval.saturating_mul(IDLE_SLOWDOWN);
        }
        self.state.next_round = now.plus_millis(interval);
        let peers = self.random_members(1, |m| m.state == State::Alive);
        for peer in peers {
            let open = StateSync {
                phase: sync_phase::OPEN,
                digest: self.state_digest(),
                batches: Vec::new(),
            };
            self.send_to_member(now, peer, open.into(), true);
        }
    }

    fn state_digest(&mut self) -> Vec<StateDigest> {
        let mut d: Vec<StateDigest> = self
            .state
            .replicas
            .iter()
            .filter(|(id, _)| **id == self.id || self.owner_is_live(id))
            .map(|(id, r)| {
                let shown = r.staging.as_deref().unwrap_or(r);
                StateDigest {
                    owner: *id,
                    life: shown.life,
                    version: shown.watermark,
                    hash: r.digest_hash(),
                }
            })
            .collect();
        d.sort_unstable_by_key(|e| e.owner);
        let max = self.config.limits.max_items;
        if d.len() > max {
            // Beyond the limit, a random subset: the owners left out are sent in full, which
            // costs bytes, not correctness.
            for i in 0..max {
                let j = i + (self.rng.next_u64() as usize) % (d.len() - i);
                d.swap(i, j);
            }
            d.truncate(max);
        }
        d
    }

    /// The batches a peer with `digest` lacks, cut to the sync budget.
    fn state_delta(&mut self, digest: &[StateDigest]) -> Vec<StateBatch> {
        let theirs: HashMap<NodeId, &StateDigest> = digest.iter().map(|e| (e.owner, e)).collect();
        let mut owners: Vec<NodeId> = self
            .state
            .replicas
            .iter()
            .filter(|(id, r)| r.staging.is_none() && (**id == self.id || self.owner_is_live(id)))
            .map(|(id, _)| *id)
            .collect();
        owners.sort_unstable();
        super::send::shuffle(&mut self.rng, &mut owners);
        let budget = self.config.max_sync_bytes;
        let max_items = self.config.limits.max_items;
        let (mut out, mut size, mut items) = (Vec::new(), 0usize, 0usize);
        for owner in owners {
            let r = &self.state.replicas[&owner];
            let (from, full) = match theirs.get(&owner) {
                None => (0, false),
                Some(d) if d.life > r.life => continue,
                Some(d) if d.life < r.life => (0, false),
                Some(d) if d.version > r.watermark => continue,
                Some(d) if d.version == r.watermark => match (d.hash, r.digest_hash()) {
                    (Some(a), Some(b)) if a != b => (0, true),
                    _ => continue,
                },
                Some(d) if d.version < r.floor => (0, true),
                Some(d) => (d.version, false),
            };
            if from >= r.watermark {
                continue;
            }
            let mut batch = StateBatch {
                owner,
                life: r.life,
                from,
                through: r.watermark,
                flags: if full { batch_flags::FULL } else { 0 } | batch_flags::DONE,
                entries: Vec::new(),
            };
            size += BATCH_OVERHEAD;
            let mut cut = false;
            for (version, record) in r.since(from) {
                let cost = record.len() + ITEM_OVERHEAD;
                if size + cost > budget || items >= max_items {
                    cut = true;
                    break;
                }
                size += cost;
                items += 1;
                batch.through = version;
                batch.entries.push(record.clone());
            }
            if cut {
                batch.flags &= !batch_flags::DONE;
                if !batch.entries.is_empty() {
                    out.push(batch);
                }
                break;
            }
            out.push(batch);
        }
        out
    }

    /// A state sync arrived (hook in `on_membership`).
    pub(super) fn on_state_sync(
        &mut self,
        now: Instant,
        origin: NodeId,
        from: Address,
        sync: StateSync,
    ) {
        if self.left {
            return self.shell.count_drop(DropReason::Unexpected);
        }
        // What a member says of its own life is signed by it: a restart empties its map.
        if let Some(own) = sync.digest.iter().find(|d| d.owner == origin)
            && let Some(r) = self.state.replicas.get_mut(&origin)
            && own.life > r.life
        {
            let had = std::mem::replace(r, Replica::new(own.life));
            self.state_cleared(origin, &had);
        }
        let mut learned = false;
        let mut cut = false;
        for batch in sync.batches {
            cut |= batch.flags & batch_flags::DONE == 0;
            learned |= self.apply_batch(now, batch);
        }
        match sync.phase {
            sync_phase::OPEN => {
                let answer = StateSync {
                    phase: sync_phase::ANSWER,
                    digest: self.state_digest(),
                    batches: self.state_delta(&sync.digest),
                };
                self.reply(now, origin, from, answer.into(), true);
            }
            sync_phase::ANSWER => {
                let batches = self.state_delta(&sync.digest);
                if !batches.is_empty() {
                    let close = StateSync {
                        phase: sync_phase::CLOSE,
                        digest: Vec::new(),
                        batches,
                    };
                    self.reply(now, origin, from.clone(), close.into(), true);
                }
                let rounds = self.state.followups.entry(origin).or_insert(0);
                if cut && learned && *rounds < MAX_STATE_FOLLOWUPS {
                    *rounds += 1;
                    let again = StateSync {
                        phase: sync_phase::OPEN,
                        digest: self.state_digest(),
                        batches: Vec::new(),
                    };
                    self.reply(now, origin, from, again.into(), true);
                } else {
                    self.state.followups.remove(&origin);
                }
            }
            sync_phase::CLOSE => {}
            _ => self.shell.count_drop(DropReason::Unexpected),
        }
    }

    /// Takes in one owner's batch; returns whether anything was learned.
    fn apply_batch(&mut self, now: Instant, batch: StateBatch) -> bool {
        let owner = batch.owner;
        if owner == self.id {
            return false;
        }
        if !self.owner_is_live(&owner) {
            self.shell.count_drop(DropReason::StateUnknownOwner);
            return false;
        }
        // An admitted member's own map, relayed or sent by itself: held to its admission as its
        // updates are (a batch's entries never pass through `apply_and_spread`).
        if let Err(reason) = self.admission_check_state(now, &owner) {
            self.shell.count_drop(reason);
            return false;
        }
        if batch.from > batch.through {
            self.shell.count_drop(DropReason::StateForged);
            return false;
        }
        let full = batch.flags & batch_flags::FULL != 0;
        let done = batch.flags & batch_flags::DONE != 0;
        let config = self.state.config;
        let mut room = self.state.cluster_room();
        let replica = self
            .state
            .replicas
            .entry(owner)
            .or_insert_with(|| Replica::new(batch.life));
        // A full copy replaces a map that holds something; an empty one is simply filled.
        let staged = replica.staging.is_some() || (full && !replica.entries.is_empty());
        if staged && full && batch.from == 0 {
            replica.staging = Some(Box::new(Replica::new(batch.life)));
        }
        if staged && replica.staging.is_none() {
            // The rest of a rebuild that already completed.
            return false;
        }
        let mut learned = false;
        let mut changes = Vec::new();
        let mut cleared = None;
        let mut intact = true;
        for record in batch.entries {
            let e = match self.shell.codec.verify(&record) {
                Ok(Message::Update(UpdateMessage::State(e)))
                    if record.origin() == owner
                        && e.version > batch.from
                        && e.version <= batch.through =>
                {
                    e
                }
                Ok(_) => {
                    self.shell.count_drop(DropReason::StateForged);
                    intact = false;
                    break;
                }
                Err(err) => {
                    self.shell.drop_counted(&err);
                    intact = false;
                    break;
                }
            };
            let replica = self.state.replicas.get_mut(&owner).expect("inserted");
            let target = match replica.staging.as_deref_mut() {
                Some(s) if staged => s,
                _ => replica,
            };
            if e.life < target.life {
                continue;
            }
            if e.life > target.life {
                let had = std::mem::replace(target, Replica::new(e.life));
                if !staged {
                    cleared = Some(had);
                }
            }
            let value = e.value.map(ByteBuf::into_vec);
            let held = Entry {
                version: e.version,
                value: value.clone(),
                record,
                since: now,
            };
            match target.put(&e.key, held, &config, &mut room) {
                Put::News => {
                    learned = true;
                    if !staged {
                        changes.push((e.key, e.version, value));
                    }
                }
                Put::Known => {}
                Put::Refused(_) => self.shell.count_drop(DropReason::StateLimit),
            }
        }
        let replica = self.state.replicas.get_mut(&owner).expect("inserted");
        let target = match replica.staging.as_deref_mut() {
            Some(s) if staged => s,
            _ => &mut *replica,
        };
        let continues = intact && batch.life == target.life && batch.from <= target.watermark;
        if continues {
            let before = target.watermark;
            target.advance(batch.through);
            learned |= target.watermark > before;
        }
        if staged && done && continues {
            changes = replica.finish_staging();
            self.state.rebuilds += 1;
            learned = true;
        }
        if let Some(had) = cleared {
            self.state_cleared(owner, &had);
        }
        for (key, version, value) in changes {
            self.state_changed(owner, &key, version, value);
        }
        if learned {
            self.state_wake(now);
        }
        learned
    }
}
