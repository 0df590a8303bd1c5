//! The shell around an engine: the wire pipeline, the clocks and the output queues.
//!
//! Every frame an engine receives goes through [`Shell::decode`] (one clock-drift policy: a
//! frame stamped further ahead than the hybrid logical clock tolerates is dropped, not merged),
//! and every frame it sends is signed once ([`Shell::sign`]) and sealed per target
//! ([`Shell::seal`]). Outputs wait in bounded queues that drop the *oldest* entry when full:
//! the newest news supersedes what waited longest, and a driver that fell behind catches up on
//! the present. Drops are counted by [`DropReason`]. Message ids from before the engine started
//! are refused (the replay floor starts there), so a frame captured before a restart is not
//! accepted again after it.

#[cfg(feature = "admission")]
use std::collections::HashMap;
use std::collections::{BTreeMap, VecDeque};

use rand_chacha::ChaCha20Rng;

use crate::address::Address;
use crate::drop_reason::{DropReason, Refused};
use crate::error::WireError;
use crate::hlc::{Hlc, Timestamp};
#[cfg(feature = "admission")]
use crate::identity::NodeId;
#[cfg(feature = "admission")]
use crate::keyring::{ClusterKey, Keyring};
use crate::message::Message;
use crate::time::Instant;
use crate::transmit::Transmit;
use crate::wire::{Codec, Inbound, SignedPacket};

/// Counters a driver exports as metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames received.
    pub packets_in: u64,
    /// Frames emitted.
    pub packets_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes emitted.
    pub bytes_out: u64,
    /// Dropped inbound frames or items, by reason.
    pub drops: BTreeMap<DropReason, u64>,
    /// Outbound frames dropped because the transmit queue was full.
    pub transmits_dropped: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Messages that could not be encoded.
    pub encode_errors: u64,
    /// Members never heard answering that a full member table forgot to make room for a
    /// newcomer (see `Config::max_members`): a high rate means someone is minting identities.
    pub members_evicted: u64,
    /// Alive records of members nobody this node heard answer vouches for, kept but not passed
    /// on because probes show that most such members are fakes (see `gossip_core` intake): a
    /// mint reaches each member from the minter alone, not amplified by every honest member.
    pub news_withheld: u64,
}

/// Codec, clocks, bounded output queues and counters of one engine (`E` is its event type).
#[derive(Debug)]
pub(crate) struct Shell<E> {
    pub(crate) codec: Codec,
    hlc: Hlc,
    /// The monotonic instant at which the wall clock read `wall_at_start_ms`.
    start: Instant,
    wall_at_start_ms: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<E>,
    max_queue: usize,
    pub(crate) stats: Stats,
    /// Links sealed with their own key (admitted members, who do not hold the cluster key), by
    /// member, and the member each such link's address belongs to.
    #[cfg(feature = "admission")]
    links: HashMap<NodeId, LinkSeal>,
    #[cfg(feature = "admission")]
    link_at: HashMap<Address, NodeId>,
}

/// One link sealed with the key its handshake agreed.
#[cfg(feature = "admission")]
struct LinkSeal {
    // No Debug derive: the key must never reach a log.
    keyring: Keyring,
    from: Address,
    rng: ChaCha20Rng,
}

#[cfg(feature = "admission")]
impl core::fmt::Debug for LinkSeal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LinkSeal")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl<E> Shell<E> {
    /// `hlc` already issued the ids of anything signed before; `max_queue` bounds each queue.
    pub(crate) fn new(
        mut codec: Codec,
        hlc: Hlc,
        now: Instant,
        wall_ms: u64,
        max_queue: usize,
    ) -> Self {
        // Nothing seen before this start is remembered: refuse what was signed before it (up to
        // the last id of the previous millisecond) rather than accept a replay.
        codec.raise_replay_floor(Timestamp::from_u64(
            Timestamp::new(wall_ms, 0).to_u64().saturating_sub(1),
        ));
        Shell {
            codec,
            hlc,
            start: now,
            wall_at_start_ms: wall_ms,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            max_queue,
            stats: Stats::default(),
            #[cfg(feature = "admission")]
            links: HashMap::new(),
            #[cfg(feature = "admission")]
            link_at: HashMap::new(),
        }
    }

    #[cfg(feature = "admission")]
    /// From now on, frames from `from` are opened with `key` and must be `peer`'s own, and frames
    /// for `peer` are sealed with `key` instead of the cluster key. `seed` feeds the nonces.
    pub(crate) fn open_link(
        &mut self,
        peer: NodeId,
        from: Address,
        key: ClusterKey,
        seed: [u8; 32],
    ) {
        self.close_link(&peer);
        self.link_at.insert(from.clone(), peer);
        self.links.insert(
            peer,
            LinkSeal {
                keyring: Keyring::new(key),
                from,
                rng: rand_core::SeedableRng::from_seed(seed),
            },
        );
    }

    #[cfg(feature = "admission")]
    /// `peer`'s link closed: its key is forgotten.
    pub(crate) fn close_link(&mut self, peer: &NodeId) {
        if let Some(link) = self.links.remove(peer) {
            self.link_at.remove(&link.from);
        }
    }

    #[cfg(feature = "admission")]
    /// Opens a frame `peer` sealed with its link's key and seals its packet with the cluster
    /// key, for the rest of the cluster.
    pub(crate) fn reseal_from_link(
        &mut self,
        peer: &NodeId,
        frame: &[u8],
    ) -> Result<(SignedPacket, Vec<u8>), WireError> {
        let link = self
            .links
            .get_mut(peer)
            .ok_or(crate::error::Unauthenticated::Decrypt)?;
        self.codec
            .reseal(Some(&link.keyring), None, &mut link.rng, frame)
    }

    #[cfg(feature = "admission")]
    /// The member whose own-key link `from` is.
    pub(crate) fn link_peer(&self, from: &Address) -> Option<NodeId> {
        // Every inbound frame asks: skip hashing its address when no link has its own key.
        if self.link_at.is_empty() {
            return None;
        }
        self.link_at.get(from).copied()
    }

    /// [`Shell::decode`] for a frame that arrived from `from`: over an own-key link it opens with
    /// that link's key and must be the linked member's own frame.
    pub(crate) fn decode_from(
        &mut self,
        now: Instant,
        from: &Address,
        bytes: &[u8],
    ) -> Result<Inbound, Refused> {
        #[cfg(not(feature = "admission"))]
        {
            let _ = from;
            self.decode(now, bytes)
        }
        #[cfg(feature = "admission")]
        self.decode_from_link(now, from, bytes)
    }

    #[cfg(feature = "admission")]
    fn decode_from_link(
        &mut self,
        now: Instant,
        from: &Address,
        bytes: &[u8],
    ) -> Result<Inbound, Refused> {
        let Some(peer) = self.link_peer(from) else {
            return self.decode(now, bytes);
        };
        self.stats.packets_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        let wall = self.wall(now);
        let Some(link) = self.links.get(&peer) else {
            return self.refuse(DropReason::Unexpected);
        };
        let inbound = match self.codec.decode_with(&link.keyring, bytes, wall) {
            Ok(inbound) => inbound,
            Err(e) => {
                self.drop_counted(&e);
                return Err(Refused {
                    reason: DropReason::from(&e),
                });
            }
        };
        if inbound.origin() != peer {
            return self.refuse(DropReason::Forbidden);
        }
        if self.hlc.observe(wall, inbound.id()).is_err() {
            return self.refuse(DropReason::ClockDrift);
        }
        Ok(inbound)
    }

    #[cfg(feature = "admission")]
    fn refuse(&mut self, reason: DropReason) -> Result<Inbound, Refused> {
        self.count_drop(reason);
        Err(Refused { reason })
    }

    /// Wall-clock milliseconds at `now`.
    pub(crate) fn wall(&self, now: Instant) -> u64 {
        self.wall_at_start_ms + now.micros_since(self.start) / 1_000
    }

    pub(crate) fn set_wall_clock(&mut self, now: Instant, wall_ms: u64) {
        self.start = now;
        self.wall_at_start_ms = wall_ms;
    }

    /// Opens, authenticates and replay-checks a frame, and merges its timestamp into the clock.
    pub(crate) fn decode(&mut self, now: Instant, bytes: &[u8]) -> Result<Inbound, Refused> {
        self.stats.packets_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        let wall = self.wall(now);
        let inbound = match self.codec.decode(bytes, wall) {
            Ok(inbound) => inbound,
            Err(e) => {
                self.drop_counted(&e);
                return Err(Refused {
                    reason: DropReason::from(&e),
                });
            }
        };
        if self.hlc.observe(wall, inbound.id()).is_err() {
            self.count_drop(DropReason::ClockDrift);
            return Err(Refused {
                reason: DropReason::ClockDrift,
            });
        }
        Ok(inbound)
    }

    /// A fresh message id from the hybrid logical clock.
    pub(crate) fn next_id(&mut self, now: Instant) -> Timestamp {
        self.hlc.now(self.wall(now))
    }

    /// Signs `message` with a fresh id (None, counted, if it does not encode).
    pub(crate) fn sign(&mut self, now: Instant, message: Message) -> Option<SignedPacket> {
        let id = self.next_id(now);
        match self.codec.sign(id, &message) {
            Ok(p) => Some(p),
            Err(_) => {
                self.stats.encode_errors += 1;
                None
            }
        }
    }

    /// Encrypts a signed packet for one target (a fresh nonce per call).
    pub(crate) fn seal(&mut self, rng: &mut ChaCha20Rng, packet: &SignedPacket) -> Option<Vec<u8>> {
        match self.codec.seal(rng, 0, packet) {
            Ok(f) => Some(f),
            Err(_) => {
                self.stats.encode_errors += 1;
                None
            }
        }
    }

    /// Queues a frame, dropping the oldest when the queue is full. A frame for a member on an
    /// own-key link is sealed again with that link's key: it cannot open the cluster's.
    pub(crate) fn emit(&mut self, #[allow(unused_mut)] mut t: Transmit) {
        #[cfg(feature = "admission")]
        if let Some(link) = t.node.and_then(|n| self.links.get_mut(&n)) {
            match self
                .codec
                .reseal(None, Some(&link.keyring), &mut link.rng, &t.bytes)
            {
                Ok((_, frame)) => t.bytes = frame,
                Err(e) => return self.drop_counted(&e),
            }
        }
        if self.transmits.len() >= self.max_queue {
            self.transmits.pop_front();
            self.stats.transmits_dropped += 1;
        }
        self.stats.packets_out += 1;
        self.stats.bytes_out += t.bytes.len() as u64;
        self.transmits.push_back(t);
    }

    /// Queues an event, dropping the oldest when the queue is full.
    pub(crate) fn push_event(&mut self, e: E) {
        if self.events.len() >= self.max_queue {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<E> {
        self.events.pop_front()
    }

    /// Counts a refused frame or item under its reason.
    pub(crate) fn drop_counted(&mut self, e: &WireError) {
        self.count_drop(DropReason::from(e));
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        *self.stats.drops.entry(reason).or_insert(0) += 1;
    }
}
