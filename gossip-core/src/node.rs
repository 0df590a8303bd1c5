//! The node: one member of a cluster as a sans-IO state machine.
//!
//! Inputs: [`Node::handle_packet`], [`Node::handle_timeout`] and commands ([`Node::join`],
//! [`Node::broadcast`], [`Node::set_metadata`], ...). Outputs, pulled by the driver after every
//! input: [`Node::poll_transmit`], [`Node::poll_event`], [`Node::poll_timeout`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde_bytes::ByteBuf;

use crate::address::Address;
use crate::config::Config;
use crate::detector::PhiDetector;
use crate::drop_reason::{DropReason, Refused};
use crate::error::{EncodeError, WireError};
use crate::event::Event;
use crate::groups::{GroupError, GroupId, GroupSpec, Groups};
use crate::hlc::Hlc;
use crate::identity::{Identity, NodeId};
use crate::keyring::Keyring;
use crate::membership::{Member, State, outranks};
use crate::message::{
    Ack, Alive, Broadcast, Dead, DigestEntry, Direct, Gossip, Leave, Message, Metadata, Nack, Ping,
    PingReq, Relay, Request, Response, Suspect, Sync, sync_phase,
};
use crate::push_tree;
use crate::requests::{Quorum, QuorumId, RequestId, Requests};
use crate::streams::{StreamError, StreamKey, StreamLimits, StreamMessage, StreamOutput, Streams};
use crate::time::Instant;
use crate::wire::{Codec, ENCRYPTED_OVERHEAD, Inbound, SignedPacket};

/// Bytes a piggybacked packet costs on top of its own length (MessagePack `bin` header).
const ITEM_OVERHEAD: usize = 5;
/// Room left in a probe for its own fields when filling the rest with piggyback.
const PROBE_FIELDS: usize = 64;
/// Follow-up push-pull rounds when an answer was cut by the byte budget.
const MAX_SYNC_FOLLOWUPS: u8 = 32;
/// Quick push-pulls after a join, one probe interval apart.
const BOOTSTRAP_SYNCS: u8 = 3;
/// Newcomers remembered per input; one frame holds at most a few hundred items.
const NEWCOMERS_MAX: usize = 1_024;

/// A datagram or frame the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to. `Address::Relayed(x)` means: over the connection member `x` holds to this node.
    pub to: Address,
    /// The member it is for, when known: the driver prefers an open connection to it.
    pub node: Option<NodeId>,
    /// The frame.
    pub bytes: Vec<u8>,
    /// It must go over a reliable link (it exceeds the UDP budget, or the message asks for it).
    pub reliable: bool,
}

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
}

/// Why a command was refused. Nothing was sent and no state changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The node has left the cluster.
    #[error("the node has left the cluster")]
    Left,
    /// The addressee is not a known, live member.
    #[error("unknown or unreachable member {0}")]
    UnknownMember(NodeId),
    /// The metadata would exceed `Config::max_metadata_bytes`.
    #[error("metadata of {size} bytes exceeds the {max} byte limit")]
    MetadataTooLarge {
        /// Resulting size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// A stream operation failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// No group with that id.
    #[error("unknown group {0}")]
    UnknownGroup(GroupId),
    /// Too many requests are outstanding (`Config::max_queue`).
    #[error("too many outstanding requests")]
    TooManyRequests,
    /// The message could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

#[derive(Debug, Clone)]
struct Probe {
    target: NodeId,
    seq: u32,
    sent: Instant,
    indirect_at: Instant,
    deadline: Instant,
    acked: bool,
    indirect_sent: bool,
    nacks_expected: u32,
    nacks: u32,
}

#[derive(Debug, Clone)]
struct IndirectProbe {
    requester: NodeId,
    reply_to: Address,
    seq: u32,
    deadline: Instant,
}

#[derive(Debug, Clone)]
struct Suspicion {
    incarnation: u64,
    start: Instant,
    min_ms: u64,
    max_ms: u64,
    expected: u32,
    confirmations: BTreeSet<NodeId>,
    deadline: Instant,
}

impl Suspicion {
    /// Lifeguard: the timeout falls from max towards min as independent suspicions arrive.
    fn recompute(&mut self) {
        let c = self.confirmations.len().saturating_sub(1) as f64;
        let k = self.expected as f64;
        let span = (self.max_ms - self.min_ms) as f64;
        let ms = if k < 1.0 {
            self.min_ms
        } else {
            let frac = ((c + 1.0).ln() / (k + 1.0).ln()).min(1.0);
            (self.max_ms as f64 - span * frac).max(self.min_ms as f64) as u64
        };
        self.deadline = self.start.plus_millis(ms);
    }
}

/// What an update is about: a newer update about the same subject replaces the queued one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject {
    Member(NodeId),
    Metadata(NodeId),
    Broadcast(NodeId, u64),
}

#[derive(Debug, Clone)]
struct Queued {
    subject: Subject,
    packet: SignedPacket,
    transmits: u32,
}

/// One member of a cluster.
#[derive(Debug)]
pub struct Node {
    config: Config,
    codec: Codec,
    hlc: Hlc,
    rng: ChaCha20Rng,
    id: NodeId,
    start: Instant,
    wall_at_start_ms: u64,
    members: HashMap<NodeId, Member>,
    tombstones: HashMap<NodeId, (u64, Instant)>,
    challenged: HashMap<NodeId, Instant>,
    probe_order: Vec<NodeId>,
    probe_index: usize,
    probe: Option<Probe>,
    next_probe: Instant,
    seq: u32,
    indirect: HashMap<u32, IndirectProbe>,
    awareness: u32,
    suspicions: HashMap<NodeId, Suspicion>,
    queue: Vec<Queued>,
    fresh: Vec<SignedPacket>,
    /// Who sent the input being handled: its news is not pushed back to it.
    fresh_from: Option<NodeId>,
    /// Members first learned of while handling the input (at most `NEWCOMERS_MAX`): other
    /// members may not know them yet, so their news gets no push tree (see `tree_root`).
    newcomers: Vec<NodeId>,
    /// News waiting for the next delivery to the members this node relays for.
    hub_pending: Vec<SignedPacket>,
    next_hub: Instant,
    /// Members relayed through this node: it hands them news itself (see `deliver_hub`).
    leaves: BTreeSet<NodeId>,
    sync_followups: HashMap<NodeId, u8>,
    bootstrap_syncs: u8,
    requests: Requests,
    groups: Groups,
    detectors: HashMap<NodeId, PhiDetector>,
    streams: Streams,
    last_now: Instant,
    next_gossip: Instant,
    next_push_pull: Instant,
    next_reap: Instant,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    left: bool,
}

impl Node {
    /// A node that is reachable at `addrs` (empty for a member that cannot listen and will be
    /// relayed). `seed` seeds its RNG: drivers draw it from the OS or `crypto.getRandomValues`,
    /// the simulator from its own seed. `now` and `wall_ms` anchor its clocks; its incarnation
    /// starts at `wall_ms`, so a restart always outranks the previous life.
    pub fn new(
        config: Config,
        identity: Identity,
        keyring: Keyring,
        addrs: Vec<Address>,
        seed: [u8; 32],
        now: Instant,
        wall_ms: u64,
    ) -> Node {
        let id = identity.id();
        let codec = Codec::new(identity, keyring, config.limits, config.replay);
        let mut hlc = Hlc::new(config.replay.max_future_ms);
        let first = hlc.now(wall_ms);
        let alive = Alive {
            incarnation: wall_ms,
            addrs: addrs.clone(),
            name: config.name.clone(),
        };
        let record = codec
            .sign(first, &alive.clone().into())
            .expect("a node's own alive record fits the limits");
        let me = Member {
            id,
            name: config.name.clone(),
            addrs,
            incarnation: wall_ms,
            state: State::Alive,
            since: now,
            metadata: BTreeMap::new(),
            meta_version: 0,
            rtt_micros: None,
            alive: record,
            status: None,
            meta: None,
        };
        let mut rng = ChaCha20Rng::from_seed(seed);
        let jitter = |rng: &mut ChaCha20Rng, ms: u64| now.plus_millis(rng.next_u64() % ms.max(1));
        let next_probe = jitter(&mut rng, config.probe_interval_ms);
        let next_gossip = jitter(&mut rng, config.gossip_interval_ms);
        let next_push_pull = jitter(&mut rng, config.push_pull_interval_ms.max(1));
        Node {
            codec,
            hlc,
            id,
            start: now,
            wall_at_start_ms: wall_ms,
            members: HashMap::from([(id, me)]),
            tombstones: HashMap::new(),
            challenged: HashMap::new(),
            probe_order: Vec::new(),
            probe_index: 0,
            probe: None,
            next_probe,
            seq: rng.next_u32(),
            indirect: HashMap::new(),
            awareness: 0,
            suspicions: HashMap::new(),
            queue: Vec::new(),
            fresh: Vec::new(),
            fresh_from: None,
            newcomers: Vec::new(),
            hub_pending: Vec::new(),
            next_hub: now,
            leaves: BTreeSet::new(),
            sync_followups: HashMap::new(),
            bootstrap_syncs: 0,
            requests: Requests::new(rng.next_u64()),
            groups: Groups::new(),
            detectors: HashMap::new(),
            streams: Streams::new(StreamLimits::default()),
            last_now: now,
            next_gossip,
            next_push_pull,
            next_reap: now.plus_millis(config.dead_retention_ms.max(1_000)),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            left: false,
            rng,
            config,
        }
    }

    // ----- accessors -------------------------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every member this node knows, itself included, in no particular order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// One member.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// Members currently alive or suspect (not dead or left), itself included.
    pub fn live_count(&self) -> usize {
        self.members.values().filter(|m| !m.state.is_down()).count()
    }

    /// This node's record.
    pub fn local(&self) -> &Member {
        &self.members[&self.id]
    }

    /// Lifeguard's local health score (0 is healthy; probes slow down by `score + 1`).
    pub fn health_score(&self) -> u32 {
        self.awareness
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Cluster keys, for rotation.
    pub fn keyring_mut(&mut self) -> &mut Keyring {
        self.codec.keyring_mut()
    }

    /// Re-anchors the wall clock (a driver may call this when the OS clock is adjusted).
    pub fn set_wall_clock(&mut self, now: Instant, wall_ms: u64) {
        self.start = now;
        self.wall_at_start_ms = wall_ms;
    }

    fn wall(&self, now: Instant) -> u64 {
        self.wall_at_start_ms + now.micros_since(self.start) / 1_000
    }

    // ----- outputs ---------------------------------------------------------------------------

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.left {
            return None;
        }
        let mut t = self.next_probe.min(self.next_gossip).min(self.next_reap);
        if self.config.push_pull_interval_ms > 0 {
            t = t.min(self.next_push_pull);
        }
        if let Some(p) = &self.probe {
            t = t.min(if p.indirect_sent {
                p.deadline
            } else {
                p.indirect_at
            });
        }
        for s in self.suspicions.values() {
            t = t.min(s.deadline);
        }
        for i in self.indirect.values() {
            t = t.min(i.deadline);
        }
        if let Some(d) = self.requests.next_deadline() {
            t = t.min(d);
        }
        if !self.hub_pending.is_empty() {
            t = t.min(self.next_hub);
        }
        Some(t)
    }

    // ----- commands --------------------------------------------------------------------------

    /// Joins through seed addresses: a push-pull with each, which teaches them this node and
    /// this node the cluster.
    pub fn join(&mut self, now: Instant, seeds: &[Address]) {
        // Members that join together learn little from the seed's first answer: a few quick
        // push-pulls with random members close the gap in seconds instead of a full interval.
        self.bootstrap_syncs = BOOTSTRAP_SYNCS;
        let jitter = self.rng.next_u64() % self.config.probe_interval_ms.max(1);
        self.next_push_pull = now.plus_millis(self.config.probe_interval_ms / 2 + jitter);
        let digest = self.digest();
        let states = self.own_records();
        for seed in seeds {
            let msg = Sync {
                phase: sync_phase::JOIN,
                digest: digest.clone(),
                states: states.clone(),
            };
            self.send_to_addr(now, seed.clone(), None, msg.into(), true);
        }
    }

    /// Sets (or with `None` removes) a metadata key and disseminates the new version.
    pub fn set_metadata(
        &mut self,
        now: Instant,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let mut entries = self.local().metadata.clone();
        match value {
            Some(v) => entries.insert(key.to_owned(), v),
            None => entries.remove(key),
        };
        let size: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > self.config.max_metadata_bytes {
            return Err(CommandError::MetadataTooLarge {
                size,
                max: self.config.max_metadata_bytes,
            });
        }
        let id = self.hlc.now(self.wall(now));
        let meta = Metadata {
            version: id.to_u64(),
            entries: entries
                .iter()
                .map(|(k, v)| (k.clone(), ByteBuf::from(v.clone())))
                .collect(),
        };
        let packet = self.codec.sign(id, &meta.into())?;
        let me = self
            .members
            .get_mut(&self.id)
            .expect("self is always a member");
        me.metadata = entries;
        me.meta_version = id.to_u64();
        me.meta = Some(packet.clone());
        self.push_event(Event::MetadataChanged {
            id: self.id,
            version: id.to_u64(),
        });
        self.regroup(self.id);
        self.enqueue(Subject::Metadata(self.id), packet);
        self.flush(now);
        Ok(())
    }

    /// Broadcasts to every member (each receives it once).
    pub fn broadcast(
        &mut self,
        now: Instant,
        topic: &str,
        data: Vec<u8>,
    ) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let id = self.hlc.now(self.wall(now));
        let msg = Broadcast {
            topic: topic.to_owned(),
            data: data.into(),
        };
        let packet = self.codec.sign(id, &msg.into())?;
        self.enqueue(Subject::Broadcast(self.id, id.to_u64()), packet);
        self.flush(now);
        Ok(())
    }

    /// Sends a message to one member; `reliable` asks the driver for a reliable link.
    pub fn send(
        &mut self,
        now: Instant,
        to: NodeId,
        topic: &str,
        data: Vec<u8>,
        reliable: bool,
    ) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        if self.members.get(&to).is_none_or(|m| m.state.is_down()) {
            return Err(CommandError::UnknownMember(to));
        }
        let msg = Direct {
            to,
            topic: topic.to_owned(),
            data: data.into(),
        };
        let id = self.hlc.now(self.wall(now));
        let packet = self.codec.sign(id, &msg.into())?;
        self.route_packet(now, to, &packet, reliable);
        Ok(())
    }

    /// Sends a request to `to`; the answer arrives as [`Event::Response`], or
    /// [`Event::RequestFailed`] on timeout or if `to` dies or leaves first.
    pub fn request(
        &mut self,
        now: Instant,
        to: NodeId,
        topic: &str,
        data: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<RequestId, CommandError> {
        self.check_can_request(to)?;
        let id = self.requests.start(to, now.plus_millis(timeout_ms));
        let msg = Request {
            req: id,
            to,
            topic: topic.to_owned(),
            data: data.into(),
        };
        self.send_to_member(now, to, msg.into(), true);
        Ok(id)
    }

    /// Sends the same request to each of `members` and completes, with one
    /// [`Event::QuorumDone`], as soon as `quorum` answers arrived or can no longer arrive.
    pub fn quorum_request(
        &mut self,
        now: Instant,
        members: &[NodeId],
        topic: &str,
        data: Vec<u8>,
        quorum: Quorum,
        timeout_ms: u64,
    ) -> Result<QuorumId, CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        if self.requests.len() + members.len() > self.config.max_queue {
            return Err(CommandError::TooManyRequests);
        }
        let (reachable, unreachable): (Vec<NodeId>, Vec<NodeId>) = members
            .iter()
            .partition(|m| self.members.get(m).is_some_and(|m| !m.state.is_down()));
        let mut events = Vec::new();
        let (qid, sends) = self.requests.start_quorum(
            quorum,
            &reachable,
            &unreachable,
            now.plus_millis(timeout_ms),
            &mut events,
        );
        for (to, req) in sends {
            let msg = Request {
                req,
                to,
                topic: topic.to_owned(),
                data: data.clone().into(),
            };
            self.send_to_member(now, to, msg.into(), true);
        }
        events.into_iter().for_each(|e| self.push_event(e));
        Ok(qid)
    }

    /// Answers request `id` from `to` (as received in [`Event::Request`]).
    pub fn respond(
        &mut self,
        now: Instant,
        to: NodeId,
        id: RequestId,
        data: Vec<u8>,
    ) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        if self.members.get(&to).is_none_or(|m| m.state.is_down()) {
            return Err(CommandError::UnknownMember(to));
        }
        self.send_to_member(
            now,
            to,
            Response {
                req: id,
                to,
                data: data.into(),
            }
            .into(),
            true,
        );
        Ok(())
    }

    fn check_can_request(&self, to: NodeId) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        if self.members.get(&to).is_none_or(|m| m.state.is_down()) {
            return Err(CommandError::UnknownMember(to));
        }
        if self.requests.len() >= self.config.max_queue {
            return Err(CommandError::TooManyRequests);
        }
        Ok(())
    }

    /// Defines a group: a live view of the members (this node included) whose metadata matches
    /// `spec`. Its changes arrive as [`Event::Group`], starting with one `Added` per current match.
    pub fn define_group(&mut self, spec: GroupSpec) -> Result<GroupId, GroupError> {
        let live = self
            .members
            .values()
            .filter(|m| !m.state.is_down())
            .map(|m| (m.id, &m.metadata));
        let (id, events) = self.groups.define(spec, live)?;
        events
            .into_iter()
            .for_each(|e| self.push_event(Event::Group(e)));
        Ok(id)
    }

    /// Forgets a group.
    pub fn remove_group(&mut self, group: GroupId) -> bool {
        self.groups.remove(group)
    }

    /// The groups, to read members and attach per-member user data.
    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    /// The groups, to attach per-member user data ([`Groups::set_data`]).
    pub fn groups_mut(&mut self) -> &mut Groups {
        &mut self.groups
    }

    /// Sends a message to every current member of a group (this node excluded); returns how
    /// many it was sent to.
    pub fn send_to_group(
        &mut self,
        now: Instant,
        group: GroupId,
        topic: &str,
        data: Vec<u8>,
        reliable: bool,
    ) -> Result<usize, CommandError> {
        let targets: Vec<NodeId> = self
            .groups
            .members(group)
            .ok_or(CommandError::UnknownGroup(group))?
            .filter(|id| *id != self.id)
            .collect();
        for to in &targets {
            self.send(now, *to, topic, data.clone(), reliable)?;
        }
        Ok(targets.len())
    }

    /// Opens a byte stream to `peer`; [`Event::Stream`] reports `Opened` once it accepts.
    pub fn open_stream(&mut self, now: Instant, peer: NodeId) -> Result<StreamKey, CommandError> {
        self.check_can_request(peer)?;
        let (key, open) = self.streams.open(peer)?;
        self.send_to_member(now, peer, open.into(), true);
        Ok(key)
    }

    /// Accepts a stream a peer opened (reported as `Incoming`).
    pub fn accept_stream(&mut self, now: Instant, key: StreamKey) -> Result<(), CommandError> {
        let accept = self.streams.accept(key)?;
        self.send_to_member(now, key.peer, accept.into(), true);
        Ok(())
    }

    /// Refuses a stream a peer opened.
    pub fn reject_stream(
        &mut self,
        now: Instant,
        key: StreamKey,
        code: u32,
        reason: &str,
    ) -> Result<(), CommandError> {
        let close = self.streams.reject(key, code, reason)?;
        self.send_to_member(now, key.peer, close.into(), true);
        Ok(())
    }

    /// Writes as much of `data` as the peer's window allows; returns how much was taken (0 when
    /// the window is full: wait for `Writable`).
    pub fn stream_write(
        &mut self,
        now: Instant,
        key: StreamKey,
        data: &[u8],
    ) -> Result<usize, CommandError> {
        let (taken, frames) = self.streams.write(key, data)?;
        for frame in frames {
            self.send_to_member(now, key.peer, frame.into(), true);
        }
        Ok(taken)
    }

    /// Reads up to `max` buffered bytes, granting the peer window for them.
    pub fn stream_read(
        &mut self,
        now: Instant,
        key: StreamKey,
        max: usize,
    ) -> Result<Vec<u8>, CommandError> {
        let (data, credit) = self.streams.read(key, max)?;
        if let Some(credit) = credit {
            self.send_to_member(now, key.peer, credit.into(), true);
        }
        Ok(data)
    }

    /// Bytes waiting to be read on a stream.
    pub fn stream_readable(&self, key: StreamKey) -> Result<usize, CommandError> {
        Ok(self.streams.readable(key)?)
    }

    /// Closes a stream with a code and reason.
    pub fn close_stream(
        &mut self,
        now: Instant,
        key: StreamKey,
        code: u32,
        reason: &str,
    ) -> Result<(), CommandError> {
        let close = self.streams.close(key, code, reason)?;
        self.send_to_member(now, key.peer, close.into(), true);
        Ok(())
    }

    fn on_stream_message(&mut self, now: Instant, origin: NodeId, msg: StreamMessage) {
        match self.streams.handle(origin, msg) {
            Ok(outputs) => self.stream_outputs(now, outputs),
            Err(_) => self.count_drop(DropReason::StreamIgnored),
        }
    }

    fn stream_outputs(&mut self, now: Instant, outputs: Vec<StreamOutput>) {
        for out in outputs {
            match out {
                StreamOutput::Send(peer, msg) => {
                    let msg: Message = match msg {
                        StreamMessage::Open(m) => m.into(),
                        StreamMessage::Accept(m) => m.into(),
                        StreamMessage::Data(m) => m.into(),
                        StreamMessage::Credit(m) => m.into(),
                        StreamMessage::Close(m) => m.into(),
                    };
                    self.send_to_member(now, peer, msg, true);
                }
                other => self.push_event(Event::Stream(other)),
            }
        }
    }

    /// Re-evaluates `id` against every group after a join, a metadata change or a death.
    fn regroup(&mut self, id: NodeId) {
        let events = match self.members.get(&id) {
            Some(m) if !m.state.is_down() => self.groups.member_changed(id, Some(&m.metadata)),
            _ => self.groups.member_changed(id, None),
        };
        events
            .into_iter()
            .for_each(|e| self.push_event(Event::Group(e)));
    }

    /// [`Node::broadcast`] of a serde value (see [`crate::typed`]).
    pub fn broadcast_typed<T: serde::Serialize + ?Sized>(
        &mut self,
        now: Instant,
        topic: &str,
        value: &T,
    ) -> Result<(), CommandError> {
        self.broadcast(now, topic, crate::typed::to_bytes(value)?)
    }

    /// [`Node::send`] of a serde value.
    pub fn send_typed<T: serde::Serialize + ?Sized>(
        &mut self,
        now: Instant,
        to: NodeId,
        topic: &str,
        value: &T,
        reliable: bool,
    ) -> Result<(), CommandError> {
        self.send(now, to, topic, crate::typed::to_bytes(value)?, reliable)
    }

    /// [`Node::request`] with a serde value.
    pub fn request_typed<T: serde::Serialize + ?Sized>(
        &mut self,
        now: Instant,
        to: NodeId,
        topic: &str,
        value: &T,
        timeout_ms: u64,
    ) -> Result<RequestId, CommandError> {
        self.request(now, to, topic, crate::typed::to_bytes(value)?, timeout_ms)
    }

    /// [`Node::respond`] with a serde value.
    pub fn respond_typed<T: serde::Serialize + ?Sized>(
        &mut self,
        now: Instant,
        to: NodeId,
        id: RequestId,
        value: &T,
    ) -> Result<(), CommandError> {
        self.respond(now, to, id, crate::typed::to_bytes(value)?)
    }

    /// Changes where this node can be reached (a browser that lost its server and re-joins
    /// through another one) and announces it with a new incarnation, which outranks every record
    /// of the old addresses.
    pub fn set_addresses(&mut self, now: Instant, addrs: Vec<Address>) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let me = self.local();
        let incarnation = me.incarnation.max(self.wall(now)) + 1;
        let alive = Alive {
            incarnation,
            addrs: addrs.clone(),
            name: me.name.clone(),
        };
        let id = self.hlc.now(self.wall(now));
        let packet = self.codec.sign(id, &alive.into())?;
        let me = self
            .members
            .get_mut(&self.id)
            .expect("self is always a member");
        me.incarnation = incarnation;
        me.addrs = addrs;
        me.alive = packet.clone();
        self.enqueue(Subject::Member(self.id), packet);
        self.flush(now);
        Ok(())
    }

    /// Leaves the cluster: announces a leave signed by this node and stops probing. Keep the
    /// driver running a moment (a few gossip intervals) so the announcement spreads.
    pub fn leave(&mut self, now: Instant) {
        if self.left {
            return;
        }
        let incarnation = self.local().incarnation;
        if let Some(packet) = self.sign(now, Leave { incarnation }.into()) {
            let me = self
                .members
                .get_mut(&self.id)
                .expect("self is always a member");
            me.state = State::Left;
            me.status = Some(packet.clone());
            me.since = now;
            self.enqueue(Subject::Member(self.id), packet);
            self.flush(now);
            // Give the leave a second push so it survives a lost datagram.
            self.gossip_round(now);
        }
        self.left = true;
        self.probe = None;
    }

    // ----- inputs ----------------------------------------------------------------------------

    /// A frame arrived from `from` (the address to answer an unknown sender at).
    ///
    /// Returns the frame's origin once its signature verified, or why it was refused before
    /// that (counted in [`Stats::drops`] too). A relay forwards frames it did not sign, so the
    /// origin alone never proves who is at the other end of a connection.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        from: Address,
        bytes: &[u8],
    ) -> Result<NodeId, Refused> {
        self.last_now = self.last_now.max(now);
        self.stats.packets_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        let wall = self.wall(now);
        let inbound = match self.codec.decode(bytes, wall) {
            Ok(inbound) => inbound,
            Err(e) => {
                self.drop_counted(&e);
                return Err(Refused {
                    reason: (&e).into(),
                });
            }
        };
        if self.hlc.observe(wall, inbound.id()).is_err() {
            self.count_drop(DropReason::ClockDrift);
            return Err(Refused {
                reason: DropReason::ClockDrift,
            });
        }
        let origin = inbound.origin();
        if let Some(phi) = self.config.phi
            && self.members.contains_key(&inbound.origin())
            && inbound.origin() != self.id
        {
            self.detectors
                .entry(inbound.origin())
                .or_default()
                .heartbeat(now, &phi);
        }
        self.fresh_from = Some(origin);
        self.dispatch(now, from, inbound);
        self.flush(now);
        self.fresh_from = None;
        Ok(origin)
    }

    /// Time passed: run whatever timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        if self.left {
            return;
        }
        self.probe_tick(now);
        self.indirect_tick(now);
        let mut events = Vec::new();
        self.requests.on_timeout(now, &mut events);
        events.into_iter().for_each(|e| self.push_event(e));
        self.suspicion_tick(now);
        if now >= self.next_gossip {
            self.gossip_round(now);
            let interval = if self.queue.is_empty() {
                self.config.gossip_interval_ms
            } else {
                self.config.fast_gossip_interval_ms
            };
            self.next_gossip = now.plus_millis(interval);
        }
        if self.config.push_pull_interval_ms > 0 && now >= self.next_push_pull {
            self.push_pull_round(now);
            let interval = if self.bootstrap_syncs > 0 {
                self.bootstrap_syncs -= 1;
                self.config.probe_interval_ms
            } else {
                self.config.push_pull_interval_ms
            };
            self.next_push_pull = now.plus_millis(interval);
        }
        if now >= self.next_reap {
            self.reap(now);
            self.next_reap = now.plus_millis(1_000);
        }
        if now >= self.next_hub {
            self.deliver_hub(now);
        }
        self.flush(now);
    }

    fn dispatch(&mut self, now: Instant, from: Address, inbound: Inbound) {
        let origin = inbound.origin();
        match inbound.message {
            Message::Ping(ping) => {
                self.receive_items(now, ping.piggyback);
                if ping.target != self.id || self.left {
                    return self.count_drop(DropReason::PingNotForUs);
                }
                let budget = self.piggyback_budget();
                let piggyback = self.take_piggyback(budget);
                self.reply(
                    now,
                    origin,
                    from,
                    Ack {
                        seq: ping.seq,
                        piggyback,
                    }
                    .into(),
                    false,
                );
            }
            Message::Ack(ack) => {
                self.receive_items(now, ack.piggyback);
                self.on_ack(now, origin, ack.seq);
            }
            Message::PingReq(req) => self.on_ping_req(now, origin, from, req),
            Message::Nack(nack) => {
                if let Some(p) = self.probe.as_mut().filter(|p| p.seq == nack.seq) {
                    p.nacks += 1;
                }
            }
            Message::Gossip(g) => self.receive_items(now, g.items),
            Message::Sync(sync) => self.on_sync(now, origin, from, sync),
            Message::Relay(relay) => self.on_relay(now, origin, relay),
            Message::Request(r) if r.to == self.id => {
                self.push_event(Event::Request {
                    from: origin,
                    id: r.req,
                    topic: r.topic,
                    data: r.data.into_vec(),
                });
            }
            Message::Response(r) if r.to == self.id => {
                let mut events = Vec::new();
                if !self
                    .requests
                    .on_response(origin, r.req, r.data.into_vec(), &mut events)
                {
                    self.count_drop(DropReason::UnexpectedResponse);
                }
                events.into_iter().for_each(|e| self.push_event(e));
            }
            Message::Request(_) | Message::Response(_) => {
                self.count_drop(DropReason::RequestNotForUs)
            }
            Message::StreamOpen(m) => self.on_stream_message(now, origin, m.into()),
            Message::StreamAccept(m) => self.on_stream_message(now, origin, m.into()),
            Message::StreamData(m) => self.on_stream_message(now, origin, m.into()),
            Message::StreamCredit(m) => self.on_stream_message(now, origin, m.into()),
            Message::StreamClose(m) => self.on_stream_message(now, origin, m.into()),
            Message::Direct(d) => {
                if d.to == self.id {
                    self.push_event(Event::Direct {
                        from: origin,
                        topic: d.topic,
                        data: d.data.into_vec(),
                    });
                } else {
                    self.count_drop(DropReason::DirectNotForUs);
                }
            }
            message => {
                // A state update or broadcast sent as a frame of its own. One about us is a
                // challenge (see `challenge`): answer it with our alive record, refuted if needed.
                let about_me = match &message {
                    Message::Dead(d) => d.node == self.id,
                    Message::Suspect(s) => s.node == self.id,
                    _ => false,
                };
                self.apply_and_spread(now, origin, message, inbound.packet);
                if about_me && !self.left {
                    let alive = self.local().alive.clone();
                    if let Some(frame) = self.seal(&alive) {
                        let reliable = frame.len() > self.config.udp_budget;
                        self.emit(Transmit {
                            to: from,
                            node: Some(origin),
                            bytes: frame,
                            reliable,
                        });
                    }
                }
            }
        }
    }

    // ----- failure detection -----------------------------------------------------------------

    fn multiplier(&self) -> u64 {
        u64::from(self.awareness) + 1
    }

    fn adjust_awareness(&mut self, delta: i64) {
        let max = i64::from(self.config.awareness_max_multiplier.saturating_sub(1));
        self.awareness = (i64::from(self.awareness) + delta).clamp(0, max) as u32;
    }

    fn probe_tick(&mut self, now: Instant) {
        if let Some(p) = self.probe.clone() {
            if p.acked {
                self.probe = None;
            } else if !p.indirect_sent && now >= p.indirect_at {
                self.send_indirect_probes(now, &p);
            } else if p.indirect_sent && now >= p.deadline {
                // Lifeguard: nacks we expected but did not get point at our own network.
                let delta = if p.nacks_expected > 0 {
                    p.nacks_expected.saturating_sub(p.nacks) as i64
                } else {
                    1
                };
                self.adjust_awareness(delta);
                self.probe = None;
                // In phi mode a missed probe is only suspicious if the silence is too.
                let silent = match (self.config.phi, self.detectors.get(&p.target)) {
                    (Some(phi), Some(d)) => d.phi(now, &phi).is_none_or(|v| v >= phi.threshold),
                    _ => true,
                };
                if silent {
                    self.suspect(now, p.target);
                }
            }
        }
        if self.probe.is_none() && now >= self.next_probe {
            self.start_probe(now);
        }
    }

    fn start_probe(&mut self, now: Instant) {
        let interval = self.config.probe_interval_ms * self.multiplier();
        self.next_probe = now.plus_millis(interval);
        let Some(target) = self.next_probe_target() else {
            return;
        };
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.probe = Some(Probe {
            target,
            seq,
            sent: now,
            indirect_at: now.plus_millis(self.config.probe_timeout_ms * self.multiplier()),
            deadline: now.plus_millis(interval),
            acked: false,
            indirect_sent: false,
            nacks_expected: 0,
            nacks: 0,
        });
        let budget = self.piggyback_budget();
        let piggyback = self.take_piggyback(budget);
        self.send_to_member(
            now,
            target,
            Ping {
                seq,
                target,
                piggyback,
            }
            .into(),
            false,
        );
    }

    /// Round-robin over a shuffled list, reshuffled each pass (SWIM's bounded detection time).
    fn next_probe_target(&mut self) -> Option<NodeId> {
        for _ in 0..2 {
            while self.probe_index < self.probe_order.len() {
                let id = self.probe_order[self.probe_index];
                self.probe_index += 1;
                if self
                    .members
                    .get(&id)
                    .is_some_and(|m| !m.state.is_down() && !m.addrs.is_empty())
                {
                    return Some(id);
                }
            }
            let mut order: Vec<NodeId> = self
                .members
                .values()
                .filter(|m| m.id != self.id && !m.state.is_down())
                .map(|m| m.id)
                .collect();
            order.sort_unstable();
            shuffle(&mut self.rng, &mut order);
            self.probe_order = order;
            self.probe_index = 0;
        }
        None
    }

    fn send_indirect_probes(&mut self, now: Instant, p: &Probe) {
        let target = p.target;
        let helpers = self.random_members(self.config.indirect_checks, |m| {
            m.id != target && m.state == State::Alive
        });
        let addrs = self
            .members
            .get(&target)
            .map(|m| m.addrs.clone())
            .unwrap_or_default();
        for helper in &helpers {
            let req = PingReq {
                seq: p.seq,
                target,
                addrs: addrs.clone(),
            };
            self.send_to_member(now, *helper, req.into(), false);
        }
        if let Some(probe) = self.probe.as_mut() {
            probe.indirect_sent = true;
            probe.nacks_expected = helpers.len() as u32;
        }
    }

    fn on_ack(&mut self, now: Instant, origin: NodeId, seq: u32) {
        if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq && !p.acked) {
            p.acked = true;
            let (target, sent, direct) = (p.target, p.sent, origin == p.target);
            self.adjust_awareness(-1);
            if direct && let Some(m) = self.members.get_mut(&target) {
                m.rtt_micros = Some(now.micros_since(sent));
            }
            return;
        }
        if let Some(ind) = self.indirect.remove(&seq) {
            let ack = Ack {
                seq: ind.seq,
                piggyback: Vec::new(),
            };
            self.reply(now, ind.requester, ind.reply_to, ack.into(), false);
        }
    }

    fn on_ping_req(&mut self, now: Instant, origin: NodeId, from: Address, req: PingReq) {
        if self.left || req.target == self.id {
            return;
        }
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        if self.indirect.len() >= self.config.max_queue {
            return self.count_drop(DropReason::IndirectProbeOverflow);
        }
        self.indirect.insert(
            seq,
            IndirectProbe {
                requester: origin,
                reply_to: from,
                seq: req.seq,
                deadline: now.plus_millis(self.config.probe_timeout_ms),
            },
        );
        let ping = Ping {
            seq,
            target: req.target,
            piggyback: Vec::new(),
        };
        if self.members.contains_key(&req.target) {
            self.send_to_member(now, req.target, ping.into(), false);
        } else if let Some(addr) = req.addrs.first().cloned() {
            self.send_to_addr(now, addr, Some(req.target), ping.into(), false);
        }
    }

    fn indirect_tick(&mut self, now: Instant) {
        let expired: Vec<u32> = self
            .indirect
            .iter()
            .filter(|(_, i)| now >= i.deadline)
            .map(|(s, _)| *s)
            .collect();
        for seq in expired {
            if let Some(ind) = self.indirect.remove(&seq) {
                self.reply(
                    now,
                    ind.requester,
                    ind.reply_to,
                    Nack { seq: ind.seq }.into(),
                    false,
                );
            }
        }
    }

    fn suspect(&mut self, now: Instant, target: NodeId) {
        let Some(m) = self.members.get(&target) else {
            return;
        };
        // An already-suspect member is suspected again: our own failed probe is an independent
        // confirmation that shortens the Lifeguard timeout (and is gossiped so others count it).
        if m.state.is_down() {
            return;
        }
        let msg = Suspect {
            node: target,
            incarnation: m.incarnation,
        };
        if let Some(packet) = self.sign(now, msg.clone().into())
            && self.apply_suspect(now, self.id, msg, &packet)
        {
            self.enqueue(Subject::Member(target), packet);
        }
    }

    fn suspicion_tick(&mut self, now: Instant) {
        let due: Vec<(NodeId, u64)> = self
            .suspicions
            .iter()
            .filter(|(_, s)| now >= s.deadline)
            .map(|(id, s)| (*id, s.incarnation))
            .collect();
        for (node, incarnation) in due {
            self.suspicions.remove(&node);
            let msg = Dead { node, incarnation };
            if let Some(packet) = self.sign(now, msg.clone().into())
                && self.apply_dead(now, msg, &packet)
            {
                self.enqueue(Subject::Member(node), packet);
            }
        }
    }

    fn reap(&mut self, now: Instant) {
        let retention = self.config.dead_retention_ms;
        let gone: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| {
                m.id != self.id
                    && m.state.is_down()
                    && now.micros_since(m.since) / 1_000 >= retention
            })
            .map(|m| m.id)
            .collect();
        for id in gone {
            self.detectors.remove(&id);
            self.leaves.remove(&id);
            if let Some(m) = self.members.remove(&id) {
                self.tombstones
                    .insert(id, (m.incarnation, now.plus_millis(retention * 10)));
            }
        }
        self.tombstones.retain(|_, (_, until)| *until > now);
        self.challenged.retain(|_, next| *next > now);
    }

    // ----- applying updates ------------------------------------------------------------------

    fn receive_items(&mut self, now: Instant, items: Vec<SignedPacket>) {
        let wall = self.wall(now);
        for item in items {
            match self.codec.accept(&item, wall) {
                Ok(message) => {
                    self.apply_and_spread(now, item.origin(), message, item);
                }
                Err(e) => self.drop_counted(&e),
            }
        }
    }

    /// Applies a verified update and, if it was news, queues it to be passed on under its
    /// subject (a newer update about the same subject replaces a queued older one).
    fn apply_and_spread(
        &mut self,
        now: Instant,
        origin: NodeId,
        message: Message,
        packet: SignedPacket,
    ) -> bool {
        let subject = match &message {
            Message::Alive(_) | Message::Leave(_) => Subject::Member(origin),
            Message::Suspect(s) => Subject::Member(s.node),
            Message::Dead(d) => Subject::Member(d.node),
            Message::Metadata(_) => Subject::Metadata(origin),
            _ => Subject::Broadcast(origin, packet.id().to_u64()),
        };
        let news = self.apply(now, origin, message, &packet);
        if news {
            self.enqueue(subject, packet);
        }
        news
    }

    /// Applies a verified update; true if it was news (and should be passed on).
    fn apply(
        &mut self,
        now: Instant,
        origin: NodeId,
        message: Message,
        packet: &SignedPacket,
    ) -> bool {
        match message {
            Message::Alive(a) => self.apply_alive(now, origin, a, packet),
            Message::Suspect(s) => self.apply_suspect(now, origin, s, packet),
            Message::Dead(d) => self.apply_dead(now, d, packet),
            Message::Leave(l) => self.apply_leave(now, origin, l, packet),
            Message::Metadata(m) => self.apply_metadata(origin, m, packet),
            Message::Broadcast(b) => {
                if origin != self.id {
                    self.push_event(Event::Broadcast {
                        from: origin,
                        topic: b.topic,
                        data: b.data.into_vec(),
                    });
                }
                true
            }
            _ => {
                self.count_drop(DropReason::NotAnUpdate);
                false
            }
        }
    }

    fn apply_alive(
        &mut self,
        now: Instant,
        origin: NodeId,
        a: Alive,
        packet: &SignedPacket,
    ) -> bool {
        if origin == self.id {
            return false;
        }
        if let Some(&(buried_at, _)) = self.tombstones.get(&origin)
            && buried_at >= a.incarnation
        {
            self.challenge(now, origin, buried_at, &a.addrs);
            return false;
        }
        match self.members.get_mut(&origin) {
            None => {
                let name = a.name.clone();
                self.members.insert(
                    origin,
                    Member {
                        id: origin,
                        name: a.name,
                        addrs: a.addrs,
                        incarnation: a.incarnation,
                        state: State::Alive,
                        since: now,
                        metadata: BTreeMap::new(),
                        meta_version: 0,
                        rtt_micros: None,
                        alive: packet.clone(),
                        status: None,
                        meta: None,
                    },
                );
                self.tombstones.remove(&origin);
                self.track_leaf(origin);
                if self.newcomers.len() < NEWCOMERS_MAX {
                    self.newcomers.push(origin);
                }
                // Probe newcomers soon, at a random place in the current pass.
                let at = self.probe_index
                    + (self.rng.next_u64() as usize)
                        % (self.probe_order.len() - self.probe_index + 1);
                self.probe_order.insert(at, origin);
                self.push_event(Event::MemberJoined {
                    id: origin,
                    name: name.clone(),
                });
                self.regroup(origin);
                self.resolve_name_conflict(now, origin, &name, a.incarnation);
                true
            }
            Some(m) => {
                if a.incarnation <= m.incarnation {
                    return false;
                }
                let was = m.state;
                m.incarnation = a.incarnation;
                m.addrs = a.addrs;
                m.name = a.name.clone();
                m.alive = packet.clone();
                m.status = None;
                m.state = State::Alive;
                if was != State::Alive {
                    m.since = now;
                }
                self.track_leaf(origin);
                self.suspicions.remove(&origin);
                if was != State::Alive {
                    self.push_event(Event::MemberAlive { id: origin });
                }
                if was.is_down() {
                    self.regroup(origin);
                }
                self.resolve_name_conflict(now, origin, &a.name, a.incarnation);
                true
            }
        }
    }

    /// A restarted node with a new identity but the same name replaces its earlier self.
    fn resolve_name_conflict(&mut self, now: Instant, id: NodeId, name: &str, incarnation: u64) {
        if name.is_empty() {
            return;
        }
        let older: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| {
                m.id != id
                    && m.id != self.id
                    && m.name == name
                    && !m.state.is_down()
                    && m.incarnation < incarnation
            })
            .map(|m| m.id)
            .collect();
        for old in older {
            if let Some(m) = self.members.get_mut(&old) {
                m.state = State::Left;
                m.since = now;
                self.suspicions.remove(&old);
                self.push_event(Event::MemberLeft { id: old });
                self.member_down(old);
            }
        }
    }

    fn apply_suspect(
        &mut self,
        now: Instant,
        accuser: NodeId,
        s: Suspect,
        packet: &SignedPacket,
    ) -> bool {
        if s.node == self.id {
            self.refute(now, s.incarnation);
            return false;
        }
        let n = self.live_count();
        let (min_ms, max_ms) = self.config.suspicion_timeout_ms(n);
        let expected = if n > 2 {
            (self.config.suspicion_mult.saturating_sub(2)).min((n - 2) as u32)
        } else {
            0
        };
        let Some(m) = self.members.get_mut(&s.node) else {
            return false;
        };
        if m.state.is_down() || s.incarnation < m.incarnation {
            return false;
        }
        if m.state == State::Suspect && s.incarnation == m.incarnation {
            // Lifeguard: an independent confirmation shortens the timeout, and is passed on.
            let Some(sus) = self.suspicions.get_mut(&s.node) else {
                return false;
            };
            if !sus.confirmations.insert(accuser) {
                return false;
            }
            sus.recompute();
            return true;
        }
        m.state = State::Suspect;
        m.incarnation = s.incarnation;
        m.status = Some(packet.clone());
        m.since = now;
        let mut sus = Suspicion {
            incarnation: s.incarnation,
            start: now,
            min_ms,
            max_ms,
            expected,
            confirmations: BTreeSet::from([accuser]),
            deadline: now,
        };
        sus.recompute();
        self.suspicions.insert(s.node, sus);
        self.push_event(Event::MemberSuspect { id: s.node });
        true
    }

    fn apply_dead(&mut self, now: Instant, d: Dead, packet: &SignedPacket) -> bool {
        if d.node == self.id {
            self.refute(now, d.incarnation);
            return false;
        }
        let Some(m) = self.members.get_mut(&d.node) else {
            return false;
        };
        if m.state.is_down() || d.incarnation < m.incarnation {
            return false;
        }
        m.state = State::Dead;
        m.incarnation = d.incarnation;
        m.status = Some(packet.clone());
        m.since = now;
        self.suspicions.remove(&d.node);
        self.push_event(Event::MemberDead { id: d.node });
        self.member_down(d.node);
        true
    }

    fn apply_leave(
        &mut self,
        now: Instant,
        origin: NodeId,
        l: Leave,
        packet: &SignedPacket,
    ) -> bool {
        let Some(m) = self.members.get_mut(&origin) else {
            return false;
        };
        if origin == self.id || m.state == State::Left || l.incarnation < m.incarnation {
            return false;
        }
        m.state = State::Left;
        m.incarnation = l.incarnation;
        m.status = Some(packet.clone());
        m.since = now;
        self.suspicions.remove(&origin);
        self.push_event(Event::MemberLeft { id: origin });
        self.member_down(origin);
        true
    }

    fn apply_metadata(&mut self, origin: NodeId, meta: Metadata, packet: &SignedPacket) -> bool {
        let max = self.config.max_metadata_bytes;
        let Some(m) = self.members.get_mut(&origin) else {
            return false;
        };
        if origin == self.id || meta.version <= m.meta_version {
            return false;
        }
        let size: usize = meta.entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > max {
            self.count_drop(DropReason::MetadataTooLarge);
            return false;
        }
        m.metadata = meta
            .entries
            .into_iter()
            .map(|(k, v)| (k, v.into_vec()))
            .collect();
        m.meta_version = meta.version;
        m.meta = Some(packet.clone());
        self.push_event(Event::MetadataChanged {
            id: origin,
            version: meta.version,
        });
        self.regroup(origin);
        true
    }

    /// An alive record arrived for a member we buried and forgot: either it is stale, or the
    /// member is alive on the far side of a healed partition and never heard it was buried. Tell
    /// it, directly and signed: if it is alive it refutes and answers with a newer incarnation,
    /// which the tombstone lets through. Rate-limited to once per probe interval per member.
    fn challenge(&mut self, now: Instant, node: NodeId, incarnation: u64, addrs: &[Address]) {
        if self.challenged.get(&node).is_some_and(|next| now < *next) {
            return;
        }
        let Some(addr) = addrs
            .iter()
            .find(|a| !matches!(a, Address::Relayed(_)))
            .cloned()
        else {
            return;
        };
        if self.challenged.len() >= self.config.max_queue {
            self.challenged.retain(|_, next| *next > now);
        }
        self.challenged
            .insert(node, now.plus_millis(self.config.probe_interval_ms));
        self.send_to_addr(
            now,
            addr,
            Some(node),
            Dead { node, incarnation }.into(),
            false,
        );
    }

    /// Fails what was waiting on a member that is gone, and takes it out of its groups.
    fn member_down(&mut self, id: NodeId) {
        self.regroup(id);
        let closed = self.streams.peer_gone(id);
        let now = self.last_now;
        self.stream_outputs(now, closed);
        let mut events = Vec::new();
        self.requests.on_member_down(id, &mut events);
        events.into_iter().for_each(|e| self.push_event(e));
    }

    /// Someone suspects or buried us at `incarnation`: outbid it with a fresh alive record.
    fn refute(&mut self, now: Instant, incarnation: u64) {
        let me = &self.members[&self.id];
        if self.left || incarnation < me.incarnation {
            return;
        }
        let alive = Alive {
            incarnation: incarnation + 1,
            addrs: me.addrs.clone(),
            name: me.name.clone(),
        };
        // Lifeguard: being suspected hints that our own responses are slow.
        self.adjust_awareness(1);
        if let Some(packet) = self.sign(now, alive.into()) {
            let me = self
                .members
                .get_mut(&self.id)
                .expect("self is always a member");
            me.incarnation = incarnation + 1;
            me.alive = packet.clone();
            self.enqueue(Subject::Member(self.id), packet);
        }
    }

    // ----- dissemination ---------------------------------------------------------------------

    fn enqueue(&mut self, subject: Subject, packet: SignedPacket) {
        self.queue
            .retain(|q| q.subject != subject || matches!(subject, Subject::Broadcast(..)));
        if self.queue.len() >= self.config.max_queue {
            // Drop the most-sent item: it has had the most chances already.
            if let Some(i) = self
                .queue
                .iter()
                .enumerate()
                .max_by_key(|(_, q)| q.transmits)
                .map(|(i, _)| i)
            {
                self.queue.swap_remove(i);
            }
        }
        self.queue.push(Queued {
            subject,
            packet: packet.clone(),
            transmits: 0,
        });
        self.fresh.push(packet);
        let fast = self
            .last_now
            .plus_millis(self.config.fast_gossip_interval_ms);
        self.next_gossip = self.next_gossip.min(fast);
    }

    fn piggyback_budget(&self) -> usize {
        self.config
            .udp_budget
            .saturating_sub(ENCRYPTED_OVERHEAD + PROBE_FIELDS)
    }

    /// Least-sent items first, within `budget` bytes; items retire after the retransmit limit.
    fn take_piggyback(&mut self, budget: usize) -> Vec<SignedPacket> {
        if self.queue.is_empty() {
            return Vec::new();
        }
        let limit = self.config.retransmit_limit(self.live_count());
        self.queue.sort_by_key(|q| q.transmits);
        let mut used = 0;
        let mut out = Vec::new();
        for q in self.queue.iter_mut() {
            let cost = q.packet.len() + ITEM_OVERHEAD;
            if used + cost > budget {
                continue;
            }
            used += cost;
            q.transmits += 1;
            out.push(q.packet.clone());
        }
        self.queue.retain(|q| q.transmits < limit);
        out
    }

    fn gossip_round(&mut self, now: Instant) {
        if self.queue.is_empty() {
            return;
        }
        if self.local().relay().is_some() {
            // A relayed member's every link runs through its relay, which `flush` already handed
            // the news to over a reliable link: retransmitting would only cost the relay.
            self.queue.clear();
            return;
        }
        let retention = self.config.dead_retention_ms;
        // Gossip to the recently dead too, so a falsely buried member learns it and refutes.
        // Relayed members are left out: their relay serves them (`deliver_hub`).
        let targets = self.random_members(self.config.gossip_nodes, |m| {
            (!m.state.is_down() || now.micros_since(m.since) / 1_000 < retention)
                && m.relay().is_none()
        });
        for target in targets {
            let items = self.take_piggyback(self.piggyback_budget());
            if items.is_empty() {
                break;
            }
            self.send_to_member(now, target, Gossip { items }.into(), false);
        }
    }

    /// Event-driven push: what became news during this input goes down its push tree now (see
    /// `push_down_trees`), and to the members relayed through this node.
    fn flush(&mut self, now: Instant) {
        if self.fresh.is_empty() {
            self.newcomers.clear();
            return;
        }
        let fresh = std::mem::take(&mut self.fresh);
        if !self.leaves.is_empty() {
            self.hub_pending.extend(fresh.iter().cloned());
            let excess = self.hub_pending.len().saturating_sub(self.config.max_queue);
            if excess > 0 {
                self.hub_pending.drain(..excess);
                self.stats.transmits_dropped += excess as u64;
            }
            if now >= self.next_hub {
                self.deliver_hub(now);
            }
        }
        let source = self.fresh_from;
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
    fn push_down_trees(
        &mut self,
        now: Instant,
        mut fresh: Vec<SignedPacket>,
        source: Option<NodeId>,
    ) {
        let fanout = self.config.push_fanout(self.live_count());
        // Sorted ids lay out the same ring on every member whose view agrees. The map is a
        // HashMap, so sorting is the price of that order; it is small next to one signature.
        let mut ring: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| m.id != self.id && is_push_target(m))
            .map(|m| m.id)
            .collect();
        ring.push(self.id);
        ring.sort_unstable();
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
        let newcomers = std::mem::take(&mut self.newcomers);
        let root_of = |members: &HashMap<NodeId, Member>, item: &SignedPacket| {
            tree_root(members, ring, &newcomers, item)
        };
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
                fresh.sort_by_key(|item| root_of(&self.members, item) != Some(a));
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
                targets.sort_unstable();
                targets.dedup();
                let missing = fanout.saturating_sub(targets.len());
                if treeless && missing > 0 {
                    let more = self.random_members(missing, |m| {
                        is_push_target(m) && Some(m.id) != source && !targets.contains(&m.id)
                    });
                    targets.extend(more);
                }
                self.push_signed(now, &fresh, targets.iter().copied());
            }
        }
    }

    /// Signs `items` once per batch and seals each batch per target: the envelope names no
    /// recipient. Nothing is signed when there is nobody to send to (a tree leaf).
    fn push_signed<I>(&mut self, now: Instant, items: &[SignedPacket], targets: I)
    where
        I: IntoIterator<Item = NodeId> + Clone,
    {
        if targets.clone().into_iter().next().is_none() {
            return;
        }
        for batch in self.sign_batches(now, items) {
            for target in targets.clone() {
                self.route_packet(now, target, &batch, false);
            }
        }
    }

    /// Hands pending news to every member relayed through this node, at most once per
    /// fast-gossip interval: browsers hear everything in one hop from their server instead of
    /// through random gossip that would cross the server twice per hop.
    fn deliver_hub(&mut self, now: Instant) {
        if self.hub_pending.is_empty() {
            return;
        }
        self.next_hub = now.plus_millis(self.config.fast_gossip_interval_ms);
        let pending = std::mem::take(&mut self.hub_pending);
        let retention = self.config.dead_retention_ms;
        // The recently buried too: a falsely buried browser must hear it to refute.
        let leaves: Vec<NodeId> = self
            .leaves
            .iter()
            .filter(|id| {
                self.members.get(id).is_some_and(|m| {
                    !m.state.is_down() || now.micros_since(m.since) / 1_000 < retention
                })
            })
            .copied()
            .collect();
        if leaves.is_empty() {
            return;
        }
        for batch in self.sign_batches(now, &pending) {
            for &leaf in &leaves {
                if let Some(frame) = self.seal(&batch) {
                    self.emit(Transmit {
                        to: Address::Relayed(leaf),
                        node: Some(leaf),
                        bytes: frame,
                        reliable: true,
                    });
                }
            }
        }
    }

    /// Signed `Gossip` envelopes carrying `items`, each within the sync byte and item budgets.
    fn sign_batches(&mut self, now: Instant, items: &[SignedPacket]) -> Vec<SignedPacket> {
        let budget = self.config.max_sync_bytes;
        let max_items = self.config.limits.max_items;
        let mut out = Vec::new();
        let mut batch = Vec::new();
        let mut size = 0;
        for item in items {
            let cost = item.len() + ITEM_OVERHEAD;
            if !batch.is_empty() && (size + cost > budget || batch.len() >= max_items) {
                let items = std::mem::take(&mut batch);
                out.extend(self.sign(now, Gossip { items }.into()));
                size = 0;
            }
            size += cost;
            batch.push(item.clone());
        }
        if !batch.is_empty() {
            out.extend(self.sign(now, Gossip { items: batch }.into()));
        }
        out
    }

    /// Keeps `leaves` in step with a member's addresses.
    fn track_leaf(&mut self, id: NodeId) {
        if self.members.get(&id).and_then(Member::relay) == Some(self.id) {
            self.leaves.insert(id);
        } else {
            self.leaves.remove(&id);
        }
    }

    // ----- anti-entropy ----------------------------------------------------------------------

    fn digest(&self) -> Vec<DigestEntry> {
        let mut d: Vec<DigestEntry> = self.members.values().map(Member::digest).collect();
        d.sort_unstable_by_key(|e| e.node);
        d.truncate(self.config.limits.max_items);
        d
    }

    fn own_records(&self) -> Vec<SignedPacket> {
        let me = self.local();
        let mut v = vec![me.alive.clone()];
        v.extend(me.meta.clone());
        v
    }

    /// The records a peer with `digest` lacks, cut to the sync budget.
    fn delta(&mut self, digest: &[DigestEntry]) -> (Vec<SignedPacket>, bool) {
        let theirs: HashMap<NodeId, &DigestEntry> = digest.iter().map(|e| (e.node, e)).collect();
        let mut ids: Vec<NodeId> = self.members.keys().copied().collect();
        ids.sort_unstable();
        shuffle(&mut self.rng, &mut ids);
        let (mut out, mut size, mut cut) = (Vec::new(), 0usize, false);
        let budget = self.config.max_sync_bytes;
        for id in ids {
            let m = &self.members[&id];
            let e = theirs.get(&id);
            let their_state = e.and_then(|e| State::from_code(e.state).map(|s| (e.incarnation, s)));
            let mut records = Vec::new();
            match their_state {
                None if m.state.is_down() => {}
                None => records.push(&m.alive),
                Some((inc, st)) if outranks(m.incarnation, m.state, inc, st) => {
                    if inc < m.incarnation || st != State::Alive {
                        records.push(&m.alive);
                    }
                    records.extend(m.status.as_ref());
                }
                Some(_) => {}
            }
            if e.is_none_or(|e| e.meta_version < m.meta_version) && !m.state.is_down() {
                records.extend(m.meta.as_ref());
            }
            for r in records {
                if size + r.len() + ITEM_OVERHEAD > budget
                    || out.len() >= self.config.limits.max_items
                {
                    cut = true;
                    continue;
                }
                size += r.len() + ITEM_OVERHEAD;
                out.push(r.clone());
            }
        }
        (out, cut)
    }

    fn push_pull_round(&mut self, now: Instant) {
        let mut peers = self.random_members(1, |m| m.state == State::Alive);
        // Serf-style reconnect: also sync with one member we believe dead, so the two sides of a
        // healed partition find each other (the buried learn it and refute) before reaping.
        peers.extend(self.random_members(1, |m| m.state == State::Dead));
        for peer in peers {
            let msg = Sync {
                phase: sync_phase::OPEN,
                digest: self.digest(),
                states: Vec::new(),
            };
            self.send_to_member(now, peer, msg.into(), true);
        }
    }

    fn on_sync(&mut self, now: Instant, origin: NodeId, from: Address, sync: Sync) {
        let mut learned_from_peer = false;
        for state in sync.states {
            match self.codec.verify(&state) {
                Ok(message) => {
                    learned_from_peer |= self.apply_and_spread(now, state.origin(), message, state);
                }
                Err(e) => self.drop_counted(&e),
            }
        }
        match sync.phase {
            sync_phase::OPEN | sync_phase::JOIN => {
                let (states, _) = self.delta(&sync.digest);
                let answer = Sync {
                    phase: sync_phase::ANSWER,
                    digest: self.digest(),
                    states,
                };
                self.reply(now, origin, from, answer.into(), true);
            }
            sync_phase::ANSWER => {
                let (states, _) = self.delta(&sync.digest);
                if !states.is_empty() {
                    let close = Sync {
                        phase: sync_phase::CLOSE,
                        digest: Vec::new(),
                        states,
                    };
                    self.reply(now, origin, from.clone(), close.into(), true);
                }
                // The answer was cut by the budget if the peer still knows more than we do now.
                let behind = sync.digest.iter().any(|e| self.lacks(e));
                let rounds = self.sync_followups.entry(origin).or_insert(0);
                if behind && learned_from_peer && *rounds < MAX_SYNC_FOLLOWUPS {
                    *rounds += 1;
                    let again = Sync {
                        phase: sync_phase::OPEN,
                        digest: self.digest(),
                        states: Vec::new(),
                    };
                    self.reply(now, origin, from, again.into(), true);
                } else {
                    self.sync_followups.remove(&origin);
                }
            }
            _ => {}
        }
    }

    fn lacks(&self, e: &DigestEntry) -> bool {
        let Some(state) = State::from_code(e.state) else {
            return false;
        };
        match self.members.get(&e.node) {
            None => {
                !state.is_down()
                    && self
                        .tombstones
                        .get(&e.node)
                        .is_none_or(|(inc, _)| *inc < e.incarnation)
            }
            Some(m) => {
                outranks(e.incarnation, state, m.incarnation, m.state)
                    || e.meta_version > m.meta_version
            }
        }
    }

    fn on_relay(&mut self, now: Instant, origin: NodeId, relay: Relay) {
        // Relay only for members this node serves, never for strangers (no open amplifier).
        let serves = |id: &NodeId| self.members.get(id).and_then(Member::relay) == Some(self.id);
        if serves(&relay.to) {
            let t = Transmit {
                to: Address::Relayed(relay.to),
                node: Some(relay.to),
                bytes: relay.frame.into_vec(),
                reliable: true,
            };
            self.emit(t);
        } else if serves(&origin) && relay.to != self.id {
            let bytes = relay.frame.into_vec();
            // The sender asked for a reliable link or would not have needed a relay (browsers only
            // have WebSockets): keep the relayed hop reliable too, so credits and acks are not lost.
            self.emit_to_member(now, relay.to, bytes, true);
        } else {
            self.count_drop(DropReason::RelayRefused);
        }
    }

    // ----- sending ---------------------------------------------------------------------------

    fn sign(&mut self, now: Instant, message: Message) -> Option<SignedPacket> {
        let id = self.hlc.now(self.wall(now));
        match self.codec.sign(id, &message) {
            Ok(p) => Some(p),
            Err(_) => {
                self.stats.encode_errors += 1;
                None
            }
        }
    }

    fn seal(&mut self, packet: &SignedPacket) -> Option<Vec<u8>> {
        match self.codec.seal(&mut self.rng, 0, packet) {
            Ok(f) => Some(f),
            Err(_) => {
                self.stats.encode_errors += 1;
                None
            }
        }
    }

    fn send_to_member(&mut self, now: Instant, to: NodeId, message: Message, reliable: bool) {
        if let Some(packet) = self.sign(now, message) {
            self.route_packet(now, to, &packet, reliable);
        }
    }

    fn route_packet(&mut self, now: Instant, to: NodeId, packet: &SignedPacket, reliable: bool) {
        if let Some(frame) = self.seal(packet) {
            self.emit_to_member(now, to, frame, reliable);
        }
    }

    /// Sends a sealed frame to a member, through its relay (or ours) when it cannot be dialed.
    fn emit_to_member(&mut self, now: Instant, to: NodeId, frame: Vec<u8>, reliable: bool) {
        let Some(m) = self.members.get(&to) else {
            return self.count_drop(DropReason::NoRoute);
        };
        let via = m.relay();
        let my_relay = self.local().relay();
        match (via, my_relay) {
            (Some(via), _) if via == self.id => {
                self.emit(Transmit {
                    to: Address::Relayed(to),
                    node: Some(to),
                    bytes: frame,
                    reliable: true,
                });
            }
            (Some(via), _) | (None, Some(via)) if via != to => {
                let relay = Relay {
                    to,
                    frame: frame.into(),
                };
                self.send_to_member(now, via, relay.into(), true);
            }
            _ => {
                let reliable = reliable || frame.len() > self.config.udp_budget;
                let Some(addr) = pick_address(&m.addrs, reliable) else {
                    return self.count_drop(DropReason::NoRoute);
                };
                self.emit(Transmit {
                    to: addr,
                    node: Some(to),
                    bytes: frame,
                    reliable,
                });
            }
        }
    }

    fn send_to_addr(
        &mut self,
        now: Instant,
        to: Address,
        node: Option<NodeId>,
        message: Message,
        reliable: bool,
    ) {
        let Some(packet) = self.sign(now, message) else {
            return;
        };
        let Some(frame) = self.seal(&packet) else {
            return;
        };
        let reliable = reliable || frame.len() > self.config.udp_budget || to.is_reliable();
        self.emit(Transmit {
            to,
            node,
            bytes: frame,
            reliable,
        });
    }

    /// Answers a known member through its route, an unknown one at the address it came from.
    fn reply(
        &mut self,
        now: Instant,
        origin: NodeId,
        from: Address,
        message: Message,
        reliable: bool,
    ) {
        if self
            .members
            .get(&origin)
            .is_some_and(|m| !m.addrs.is_empty())
        {
            self.send_to_member(now, origin, message, reliable);
        } else {
            self.send_to_addr(now, from, Some(origin), message, reliable);
        }
    }

    fn emit(&mut self, t: Transmit) {
        if self.transmits.len() >= self.config.max_queue {
            self.transmits.pop_front();
            self.stats.transmits_dropped += 1;
        }
        self.stats.packets_out += 1;
        self.stats.bytes_out += t.bytes.len() as u64;
        self.transmits.push_back(t);
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= self.config.max_queue {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    fn drop_counted(&mut self, e: &WireError) {
        self.count_drop(e.into());
    }

    fn count_drop(&mut self, reason: DropReason) {
        *self.stats.drops.entry(reason).or_insert(0) += 1;
    }

    fn random_members(&mut self, k: usize, keep: impl Fn(&Member) -> bool) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| m.id != self.id && !m.addrs.is_empty() && keep(m))
            .map(|m| m.id)
            .collect();
        ids.sort_unstable();
        // Partial Fisher-Yates: k draws, not a full shuffle.
        let k = k.min(ids.len());
        for i in 0..k {
            let j = i + (self.rng.next_u64() as usize) % (ids.len() - i);
            ids.swap(i, j);
        }
        ids.truncate(k);
        ids
    }
}

/// A member news is pushed to directly: up, dialable, not behind a relay.
fn is_push_target(m: &Member) -> bool {
    !m.state.is_down() && m.relay().is_none() && !m.addrs.is_empty()
}

/// Ring index of the member an update's push tree hangs from: its origin, or for a relayed
/// origin its relay, which is the member that pushes a relayed member's news first. None when
/// neither is on the ring, or when the origin is a newcomer: then the members that get the news
/// disagree on whether it is on their ring (in a join storm, on most of it), their trees do not
/// line up, and a random push covers more.
fn tree_root(
    members: &HashMap<NodeId, Member>,
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

fn shuffle(rng: &mut ChaCha20Rng, v: &mut [NodeId]) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() as usize) % (i + 1);
        v.swap(i, j);
    }
}

/// UDP for small best-effort frames, a reliable transport otherwise (falling back to UDP when
/// the member has nothing else: the driver then uses an open connection or its TCP fallback).
fn pick_address(addrs: &[Address], reliable: bool) -> Option<Address> {
    let udp = addrs.iter().find(|a| matches!(a, Address::Udp(_)));
    let stream = addrs
        .iter()
        .find(|a| a.is_reliable() && !matches!(a, Address::Relayed(_)));
    if reliable {
        stream.or(udp)
    } else {
        udp.or(stream)
    }
    .cloned()
}
