//! The structure-aware generator: hostile messages of every kind, signed by members and strangers,
//! sealed with the cluster key (sometimes not), then optionally mutated byte by byte.

use ed25519_dalek::{Signer, SigningKey};
use gossip_core::message::{
    Ack, Alive, Broadcast, Dead, DigestEntry, Direct, Gossip, Leave, Metadata, Nack, Ping, PingReq,
    Relay, Request, Response, Suspect, Sync,
};
use gossip_core::overlay::messages::{
    Disconnect, EagerPush, ForwardJoin, Graft, Heartbeat, IHave, MessageRef, Neighbor,
    NeighborReply, OverlayJoin, PeerInfo, Prune, Shuffle, ShuffleReply,
};
use gossip_core::streams::{
    ACCEPTOR_BIT, StreamAccept, StreamClose, StreamCredit, StreamData, StreamOpen,
};
use gossip_core::wire::{
    ENCODING_LZ4, ENCODING_RAW, FLAG_ENCRYPTED, NONCE_LEN, PREFIX_LEN, SIGNATURE_DOMAIN,
    SIGNATURE_LEN, SIGNED_HEADER_LEN, VERSION,
};
use gossip_core::{
    Address, ClusterKey, Codec, Identity, Keyring, Limits, Message, NodeId, ReplayConfig,
    SignedPacket, Timestamp,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

use super::source::Source;

/// The cluster key every node of the harness uses.
pub const CLUSTER_KEY: [u8; 32] = [0xc1; 32];
/// A key no node holds.
pub const WRONG_KEY: [u8; 32] = [0x5a; 32];
/// Secrets `STRANGER_BASE..STRANGER_BASE + STRANGERS` sign as identities no node starts out with.
pub const STRANGER_BASE: u8 = 100;
/// How many strangers sign frames.
pub const STRANGERS: u8 = 4;

/// Someone who can sign frames.
pub struct Sender {
    /// The Ed25519 secret (for signing hand-built packets).
    pub key: SigningKey,
    /// A codec with the cluster key and relaxed limits, so over-limit messages still get signed
    /// and the receiver's limits are what refuses them.
    pub codec: Codec,
    /// The same identity sealing with a key nobody holds.
    pub wrong: Codec,
    /// The same identity sealing in plain text.
    pub plain: Codec,
    /// Its id.
    pub id: NodeId,
}

/// What the generator knows of the receiver's world.
#[derive(Debug, Clone)]
pub struct View {
    /// The receiver's wall clock now, in ms.
    pub wall_ms: u64,
    /// The receiver.
    pub receiver: NodeId,
    /// Members the receiver knows: id, incarnation, metadata version.
    pub members: Vec<(NodeId, u64, u64)>,
    /// Addresses the cluster's nodes listen at.
    pub addrs: Vec<Address>,
}

/// Knobs of the generator.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// Per mille of frames that get byte-level mutations after sealing.
    pub mutate: u32,
    /// Per mille of frames whose signed packet is mutated, then validly re-signed.
    pub resign: u32,
    /// Per mille of frames sealed with the wrong key or in plain text.
    pub wrong_seal: u32,
    /// Per mille of frames taken from recent real traffic (replayed or mutated) instead.
    pub replay: u32,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            mutate: 150,
            resign: 100,
            wrong_seal: 30,
            replay: 80,
        }
    }
}

/// A generated frame and how it was made (for the failure report).
#[derive(Debug, Clone)]
pub struct Frame {
    /// The bytes for `handle_packet`.
    pub bytes: Vec<u8>,
    /// The message kind code before any mutation (0: replayed traffic).
    pub kind: u8,
    /// The signer, if the frame was generated.
    pub signer: Option<NodeId>,
    /// What was done to it, for the report.
    pub how: String,
}

/// The generator: signers, a nonce RNG and recent real frames to splice.
pub struct Generator {
    /// Every identity that signs: the cluster's nodes first, then the strangers.
    pub signers: Vec<Sender>,
    /// Frames recently seen on the harness's network (valid, sealed by real nodes).
    pub recent: Vec<Vec<u8>>,
    /// Rates.
    pub rates: Rates,
    nonces: ChaCha20Rng,
    limits: Limits,
}

fn relaxed_limits() -> Limits {
    Limits {
        max_frame_bytes: 4 << 20,
        max_payload_bytes: 4 << 20,
        max_items: 1 << 16,
        ..Limits::default()
    }
}

impl Generator {
    /// Signers for the secrets `[s; 32]` of `members` (hostile members), plus the strangers.
    pub fn new(members: &[u8], rates: Rates) -> Self {
        let mut secrets: Vec<u8> = members.to_vec();
        secrets.extend(STRANGER_BASE..STRANGER_BASE + STRANGERS);
        let signers = secrets
            .into_iter()
            .map(|s| {
                let identity = Identity::from_secret_bytes([s; 32]);
                let codec = |keyring: Keyring| {
                    Codec::new(
                        identity.clone(),
                        keyring,
                        relaxed_limits(),
                        ReplayConfig::default(),
                    )
                };
                Sender {
                    key: SigningKey::from_bytes(&[s; 32]),
                    codec: codec(Keyring::new(ClusterKey::from_bytes(CLUSTER_KEY))),
                    wrong: codec(Keyring::new(ClusterKey::from_bytes(WRONG_KEY))),
                    plain: codec(Keyring::unencrypted()),
                    id: identity.id(),
                }
            })
            .collect();
        Generator {
            signers,
            recent: Vec::new(),
            rates,
            nonces: ChaCha20Rng::seed_from_u64(0),
            limits: Limits::default(),
        }
    }

    /// Remembers a real frame for replays and splices (a bounded ring).
    pub fn observe(&mut self, frame: &[u8], src: &mut dyn Source) {
        const KEEP: usize = 64;
        if self.recent.len() < KEEP {
            self.recent.push(frame.to_vec());
        } else {
            let i = src.below(KEEP as u64) as usize;
            self.recent[i] = frame.to_vec();
        }
    }

    /// One frame for `view.receiver`.
    pub fn frame(&mut self, src: &mut dyn Source, view: &View) -> Frame {
        if !self.recent.is_empty() && src.per_mille(self.rates.replay) {
            let i = src.below(self.recent.len() as u64) as usize;
            let mut bytes = self.recent[i].clone();
            let mut how = String::from("replayed real frame");
            if src.chance(3, 4) {
                self.mutate(src, &mut bytes, &mut how);
            }
            return Frame {
                bytes,
                kind: 0,
                signer: None,
                how,
            };
        }
        let signer = self.pick_signer(src, view);
        let message = self.message(src, view, 0);
        let kind = message.kind();
        let id = self.timestamp(src, view);
        let mut how = format!("kind {kind} id {id:?}");
        let s = &self.signers[signer];
        let mut packet = match s.codec.sign(id, &message) {
            Ok(p) => p,
            Err(e) => {
                // Over the relaxed limits too: send what fits, a Nack.
                how.push_str(&format!(" (sign failed: {e}, sent a nack)"));
                s.codec
                    .sign(id, &Nack { seq: 0 }.into())
                    .expect("a nack signs")
            }
        };
        if src.per_mille(self.rates.resign) {
            packet = self.resign(src, signer, &packet, &mut how);
        }
        let ttl = *src.pick(&[0u8, 1, 3, 255]);
        let s = &self.signers[signer];
        let sealed = if src.per_mille(self.rates.wrong_seal) {
            if src.chance(1, 2) {
                how.push_str(" sealed with a wrong key");
                s.wrong.seal(&mut self.nonces, ttl, &packet)
            } else {
                how.push_str(" sealed in plain text");
                s.plain.seal(&mut self.nonces, ttl, &packet)
            }
        } else {
            s.codec.seal(&mut self.nonces, ttl, &packet)
        };
        let mut bytes = sealed.unwrap_or_else(|e| {
            how.push_str(&format!(" (seal failed: {e}, sent raw)"));
            packet.as_bytes().to_vec()
        });
        if src.per_mille(self.rates.mutate) {
            self.mutate(src, &mut bytes, &mut how);
        }
        Frame {
            bytes,
            kind,
            signer: Some(self.signers[signer].id),
            how,
        }
    }

    /// Any signer but the receiver itself (whose key an attacker does not hold).
    fn pick_signer(&self, src: &mut dyn Source, view: &View) -> usize {
        loop {
            let i = src.below(self.signers.len() as u64) as usize;
            if self.signers[i].id != view.receiver || self.signers.len() == 1 {
                return i;
            }
        }
    }

    /// A message id: mostly near the receiver's clock, sometimes far off either way.
    fn timestamp(&self, src: &mut dyn Source, view: &View) -> Timestamp {
        let logical = src.below(1 << 16) as u16;
        match src.below(40) {
            34 => Timestamp::from_u64(0),
            35 => Timestamp::from_u64(u64::MAX),
            36 => Timestamp::new(view.wall_ms.saturating_add(3_600_000), logical),
            37 => Timestamp::new(view.wall_ms.saturating_sub(3_600_000), logical),
            38 => Timestamp::new(view.wall_ms.saturating_add(9_999), u16::MAX),
            39 => Timestamp::new(view.wall_ms.saturating_sub(59_999), 0),
            _ => {
                let back = src.below(3_000);
                Timestamp::new(view.wall_ms.saturating_sub(back) + src.below(500), logical)
            }
        }
    }

    /// A node id: the receiver, a known member, a signer, or nobody.
    fn node_id(&self, src: &mut dyn Source, view: &View) -> NodeId {
        match src.below(10) {
            0..=1 => view.receiver,
            2..=5 if !view.members.is_empty() => {
                view.members[src.below(view.members.len() as u64) as usize].0
            }
            2..=7 => self.signers[src.below(self.signers.len() as u64) as usize].id,
            8 => NodeId::from_bytes([src.below(256) as u8; 32]),
            _ => {
                let mut b = [0u8; 32];
                src.fill(&mut b);
                NodeId::from_bytes(b)
            }
        }
    }

    /// Incarnations and versions: the edges, a known member's value and neighbours, or noise.
    fn big(&self, src: &mut dyn Source, view: &View) -> u64 {
        let known = |src: &mut dyn Source| {
            if view.members.is_empty() {
                view.wall_ms
            } else {
                let m = view.members[src.below(view.members.len() as u64) as usize];
                if src.chance(1, 2) { m.1 } else { m.2 }
            }
        };
        match src.below(12) {
            0 | 1 => u64::MAX,
            2 => u64::MAX - 1,
            3 => 0,
            4 => 1,
            5 => view.wall_ms,
            6 => u64::MAX >> 16,
            7 | 8 => known(src),
            9 => known(src).saturating_add(1 + src.below(3)),
            10 => known(src).saturating_sub(1),
            _ => src.next_u64(),
        }
    }

    fn small(&self, src: &mut dyn Source) -> u64 {
        match src.below(8) {
            0 => 0,
            1 => u64::MAX,
            2 => u64::from(u32::MAX),
            3 => 1 << 63,
            _ => src.below(16),
        }
    }

    /// A list length: usually a few, sometimes many, rarely at or just over `max_items`.
    fn count(&self, src: &mut dyn Source, cheap: bool) -> usize {
        let max = self.limits.max_items;
        // Choice 0 is the cheapest everywhere: an exhausted fuzzer input reads as zeros.
        match src.below(400) {
            0..=110 => 0,
            390..=397 => 16 + src.below(48) as usize,
            398 if cheap => max,
            399 if cheap => max + 1,
            _ => 1 + src.below(3) as usize,
        }
    }

    fn string(&self, src: &mut dyn Source) -> String {
        // Long strings are rare: hashing and copying them dominates the cost of a frame.
        match src.below(256) {
            0..=15 => String::new(),
            231..=238 => "x".repeat(256 + src.below(4_096) as usize),
            239..=254 => "\u{0}\u{ffff}é🙂".repeat(1 + src.below(64) as usize),
            255 => "y".repeat(60 * 1024 + src.below(8 * 1024) as usize),
            _ => format!("n{}", src.below(1_000)),
        }
    }

    fn data(&self, src: &mut dyn Source) -> Vec<u8> {
        let len = match src.below(512) {
            0..=109 => 0,
            470..=510 => 1_400 + src.below(4_096) as usize,
            511 => 200 * 1024 + src.below(80 * 1024) as usize,
            _ => src.below(64) as usize,
        };
        let mut v = vec![0u8; len];
        if src.chance(1, 2) {
            src.fill(&mut v);
        }
        v
    }

    fn address(&self, src: &mut dyn Source, view: &View) -> Address {
        let ip = |src: &mut dyn Source| {
            let port = *src.pick(&[0u16, 7946, 65535]);
            if src.chance(1, 4) {
                format!("[::1]:{port}").parse().expect("valid")
            } else {
                format!("127.0.0.{}:{port}", src.below(256))
                    .parse()
                    .expect("valid")
            }
        };
        match src.below(10) {
            0..=2 if !view.addrs.is_empty() => {
                view.addrs[src.below(view.addrs.len() as u64) as usize].clone()
            }
            0..=3 => Address::Udp(ip(src)),
            4 => Address::Tcp(ip(src)),
            5 => Address::WebSocket(match src.below(4) {
                0 => "ws://127.0.0.1:1/gossip".into(),
                1 => format!("ws://{}", "h".repeat(src.below(1_024) as usize)),
                2 => "wss://".into(),
                _ => String::new(),
            }),
            6..=7 => Address::Relayed(view.receiver),
            _ => Address::Relayed(self.node_id(src, view)),
        }
    }

    fn addrs(&self, src: &mut dyn Source, view: &View) -> Vec<Address> {
        let n = self.count(src, true);
        if n > 8 {
            // Many copies of one address: cheap to build, and what a flood looks like.
            vec![self.address(src, view); n]
        } else {
            (0..n).map(|_| self.address(src, view)).collect()
        }
    }

    fn peer(&self, src: &mut dyn Source, view: &View) -> PeerInfo {
        PeerInfo {
            node: self.node_id(src, view),
            addrs: self.addrs(src, view),
        }
    }

    /// Signed items to piggyback: state records by random signers, fresh or stale.
    fn items(&mut self, src: &mut dyn Source, view: &View, depth: u8) -> Vec<SignedPacket> {
        let n = self.count(src, true);
        if n == 0 {
            return Vec::new();
        }
        let distinct = n.min(4);
        let mut out: Vec<SignedPacket> =
            (0..distinct).map(|_| self.item(src, view, depth)).collect();
        while out.len() < n {
            let p = out[src.below(distinct as u64) as usize].clone();
            out.push(p);
        }
        out
    }

    /// One signed item: usually a state update, sometimes any message, sometimes re-signed garbage.
    fn item(&mut self, src: &mut dyn Source, view: &View, depth: u8) -> SignedPacket {
        let signer = self.pick_signer(src, view);
        let message = if src.chance(4, 5) {
            self.update(src, view)
        } else {
            self.message(src, view, depth + 1)
        };
        let id = self.timestamp(src, view);
        let packet = match self.signers[signer].codec.sign(id, &message) {
            Ok(p) => p,
            Err(_) => self.signers[signer]
                .codec
                .sign(id, &Leave { incarnation: 0 }.into())
                .expect("a leave signs"),
        };
        if src.chance(1, 10) {
            let mut how = String::new();
            self.resign(src, signer, &packet, &mut how)
        } else {
            packet
        }
    }

    /// A membership or metadata record, the things piggyback and sync carry.
    fn update(&mut self, src: &mut dyn Source, view: &View) -> Message {
        let which = src.below(6) as u8;
        self.update_of(src, view, which)
    }

    /// Update number `which`: alive, suspect, dead, leave, metadata, broadcast.
    fn update_of(&mut self, src: &mut dyn Source, view: &View, which: u8) -> Message {
        match which {
            0 => Alive {
                incarnation: self.big(src, view),
                addrs: self.addrs(src, view),
                name: self.string(src),
            }
            .into(),
            1 => Suspect {
                node: self.node_id(src, view),
                incarnation: self.big(src, view),
            }
            .into(),
            2 => Dead {
                node: self.node_id(src, view),
                incarnation: self.big(src, view),
            }
            .into(),
            3 => Leave {
                incarnation: self.big(src, view),
            }
            .into(),
            4 => self.metadata(src, view).into(),
            _ => Broadcast {
                topic: self.string(src),
                data: self.data(src).into(),
            }
            .into(),
        }
    }

    fn metadata(&self, src: &mut dyn Source, view: &View) -> Metadata {
        let n = match src.below(10) {
            0 => 0,
            9 => 100 + src.below(200) as usize,
            _ => src.below(4) as usize,
        };
        let mut entries: Vec<(String, _)> = (0..n)
            .map(|i| {
                let key = if src.chance(1, 8) {
                    self.string(src)
                } else {
                    format!("k{i}")
                };
                (key, self.data(src).into())
            })
            .collect();
        if src.chance(3, 4) {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Metadata {
            version: self.big(src, view),
            entries,
        }
    }

    /// A sealed inner frame for a relay: another generated message, or noise.
    fn inner_frame(&mut self, src: &mut dyn Source, view: &View, depth: u8) -> Vec<u8> {
        if depth > 2 || src.chance(1, 5) {
            let mut v = vec![0u8; src.below(128) as usize];
            src.fill(&mut v);
            return v;
        }
        let signer = self.pick_signer(src, view);
        let message = self.message(src, view, depth + 1);
        let id = self.timestamp(src, view);
        let s = &self.signers[signer];
        s.codec
            .encode(&mut self.nonces, id, 0, &message)
            .unwrap_or_default()
    }

    /// A message of any kind.
    pub fn message(&mut self, src: &mut dyn Source, view: &View, depth: u8) -> Message {
        let kind = if depth > 2 {
            // Nested deep enough: only leaves from here.
            *src.pick(&[4u8, 6, 7, 8, 9, 10, 13])
        } else {
            1 + src.below(33) as u8
        };
        match kind {
            1 => Ping {
                seq: src.next_u64() as u32,
                target: self.node_id(src, view),
                piggyback: self.items(src, view, depth),
            }
            .into(),
            2 => Ack {
                seq: src.next_u64() as u32,
                piggyback: self.items(src, view, depth),
            }
            .into(),
            3 => PingReq {
                seq: src.next_u64() as u32,
                target: self.node_id(src, view),
                addrs: self.addrs(src, view),
            }
            .into(),
            4 => Nack {
                seq: src.next_u64() as u32,
            }
            .into(),
            5 => Gossip {
                items: self.items(src, view, depth),
            }
            .into(),
            6..=9 => self.update_of(src, view, kind - 6),
            10 => self.update_of(src, view, 5),
            13 => self.update_of(src, view, 4),
            11 => Direct {
                to: self.node_id(src, view),
                topic: self.string(src),
                data: self.data(src).into(),
            }
            .into(),
            12 => {
                let n = self.count(src, true);
                let entry = |g: &Self, src: &mut dyn Source| DigestEntry {
                    node: g.node_id(src, view),
                    incarnation: g.big(src, view),
                    state: *src.pick(&[0u8, 1, 2, 3, 4, 255]),
                    meta_version: g.big(src, view),
                };
                let digest = if n > 8 {
                    vec![entry(self, src); n]
                } else {
                    (0..n).map(|_| entry(self, src)).collect()
                };
                Sync {
                    phase: *src.pick(&[0u8, 1, 2, 3, 4, 255]),
                    digest,
                    states: self.items(src, view, depth),
                }
                .into()
            }
            14 => Relay {
                to: self.node_id(src, view),
                frame: self.inner_frame(src, view, depth).into(),
            }
            .into(),
            15 => Request {
                req: self.small(src),
                to: self.node_id(src, view),
                topic: self.string(src),
                data: self.data(src).into(),
            }
            .into(),
            16 => Response {
                req: self.small(src),
                to: self.node_id(src, view),
                data: self.data(src).into(),
            }
            .into(),
            17 => StreamOpen {
                stream: self.stream_id(src),
                window: self.window(src),
            }
            .into(),
            18 => StreamAccept {
                stream: self.stream_id(src) | ACCEPTOR_BIT,
                window: self.window(src),
            }
            .into(),
            19 => StreamData {
                stream: self.stream_id(src),
                seq: self.small(src),
                data: self.data(src).into(),
            }
            .into(),
            20 => StreamCredit {
                stream: self.stream_id(src),
                credit: self.window(src),
            }
            .into(),
            21 => StreamClose {
                stream: self.stream_id(src),
                code: src.below(8) as u32,
                reason: self.string(src),
            }
            .into(),
            22 => OverlayJoin {
                addrs: self.addrs(src, view),
            }
            .into(),
            23 => ForwardJoin {
                joiner: self.peer(src, view),
                ttl: src.below(256) as u8,
            }
            .into(),
            24 => Neighbor {
                addrs: self.addrs(src, view),
                priority: src.below(3) as u8,
            }
            .into(),
            25 => NeighborReply {
                accepted: src.chance(1, 2),
                addrs: self.addrs(src, view),
            }
            .into(),
            26 => Disconnect {
                leaving: src.chance(1, 2),
            }
            .into(),
            27 => Shuffle {
                origin: self.peer(src, view),
                ttl: src.below(256) as u8,
                peers: (0..self.count(src, false))
                    .map(|_| self.peer(src, view))
                    .collect(),
            }
            .into(),
            28 => ShuffleReply {
                peers: (0..self.count(src, false))
                    .map(|_| self.peer(src, view))
                    .collect(),
            }
            .into(),
            29 => Heartbeat {
                probe: src.chance(1, 2),
            }
            .into(),
            30 => EagerPush {
                round: src.below(256) as u8,
                packet: self.item(src, view, depth + 1),
            }
            .into(),
            31 => IHave {
                ids: (0..self.count(src, false))
                    .map(|_| MessageRef {
                        origin: self.node_id(src, view),
                        id: self.timestamp(src, view),
                        round: src.below(256) as u8,
                    })
                    .collect(),
            }
            .into(),
            32 => Graft {
                origin: self.node_id(src, view),
                id: self.timestamp(src, view),
            }
            .into(),
            _ => Prune {}.into(),
        }
    }

    fn stream_id(&self, src: &mut dyn Source) -> u64 {
        let low = self.small(src);
        if src.chance(1, 2) {
            low | ACCEPTOR_BIT
        } else {
            low
        }
    }

    fn window(&self, src: &mut dyn Source) -> u32 {
        *src.pick(&[0u32, 1, 65_536, 262_144, u32::MAX, u32::MAX - 1])
    }

    /// Mutates the signed part of `packet` (payload bytes, kind, encoding), then signs it again
    /// with the signer's real key: a validly signed packet whose body is hostile.
    fn resign(
        &self,
        src: &mut dyn Source,
        signer: usize,
        packet: &SignedPacket,
        how: &mut String,
    ) -> SignedPacket {
        let mut part = packet.as_bytes()[SIGNATURE_LEN..].to_vec();
        let header = SIGNED_HEADER_LEN - SIGNATURE_LEN;
        match src.below(6) {
            0 => {
                // kind byte
                part[header - 2] = src.below(40) as u8;
                how.push_str(" re-signed with another kind");
            }
            1 => {
                // encoding byte, and sometimes a hostile lz4 length prefix
                part[header - 1] = *src.pick(&[ENCODING_RAW, ENCODING_LZ4, 2, 255]);
                if part[header - 1] == ENCODING_LZ4 && src.chance(1, 2) {
                    let len = *src.pick(&[0u32, 1, 1 << 20, (1 << 20) + 1, u32::MAX]);
                    let mut body = len.to_le_bytes().to_vec();
                    body.extend_from_slice(&part[header..]);
                    part.truncate(header);
                    part.extend_from_slice(&body);
                }
                how.push_str(" re-signed with another encoding");
            }
            _ => {
                let mut payload = part.split_off(header);
                let mut note = String::new();
                mutate_bytes(src, &mut payload, &self.recent, &mut note);
                part.extend_from_slice(&payload);
                how.push_str(&format!(" re-signed after payload mutation ({note})"));
            }
        }
        let mut msg = Vec::with_capacity(SIGNATURE_DOMAIN.len() + 1 + part.len());
        msg.extend_from_slice(SIGNATURE_DOMAIN);
        msg.push(VERSION);
        msg.extend_from_slice(&part);
        let sig = self.signers[signer].key.sign(&msg);
        let mut out = sig.to_bytes().to_vec();
        out.extend_from_slice(&part);
        SignedPacket::from_bytes(out).expect("the header is intact")
    }

    fn mutate(&self, src: &mut dyn Source, frame: &mut Vec<u8>, how: &mut String) {
        let mut note = String::new();
        if frame.len() > PREFIX_LEN && src.chance(1, 8) {
            // Header bytes only: version, flags (the encrypted bit), ttl.
            let i = src.below(PREFIX_LEN as u64) as usize;
            frame[i] ^= match i {
                1 => FLAG_ENCRYPTED,
                _ => 1 << src.below(8),
            };
            note.push_str(&format!("header byte {i} flipped"));
        } else {
            mutate_bytes(src, frame, &self.recent, &mut note);
        }
        how.push_str(&format!(" mutated ({note})"));
    }
}

/// Byte-level mutations: bit flips, byte sets, truncation, insertions, deletions, splices.
pub fn mutate_bytes(
    src: &mut dyn Source,
    bytes: &mut Vec<u8>,
    pool: &[Vec<u8>],
    note: &mut String,
) {
    let rounds = 1 + src.below(3);
    for _ in 0..rounds {
        let len = bytes.len();
        match src.below(7) {
            0 | 1 if len > 0 => {
                let i = src.below(len as u64) as usize;
                bytes[i] ^= 1 << src.below(8);
                note.push_str(&format!("flip@{i} "));
            }
            2 if len > 0 => {
                let i = src.below(len as u64) as usize;
                bytes[i] = *src.pick(&[0u8, 0x7f, 0x80, 0xc0, 0xc1, 0xdc, 0xdd, 0xff]);
                note.push_str(&format!("set@{i} "));
            }
            3 => {
                let at = src.below(len as u64 + 1) as usize;
                bytes.truncate(at);
                note.push_str(&format!("truncate@{at} "));
            }
            4 => {
                let at = src.below(len as u64 + 1) as usize;
                let mut ins = vec![0u8; 1 + src.below(16) as usize];
                src.fill(&mut ins);
                bytes.splice(at..at, ins);
                note.push_str(&format!("insert@{at} "));
            }
            5 if len > 0 => {
                let at = src.below(len as u64) as usize;
                let end = (at + 1 + src.below(16) as usize).min(len);
                bytes.drain(at..end);
                note.push_str(&format!("delete@{at}..{end} "));
            }
            _ if !pool.is_empty() => {
                let other = &pool[src.below(pool.len() as u64) as usize];
                let at = src.below(len as u64 + 1) as usize;
                let from = src.below(other.len() as u64 + 1) as usize;
                bytes.truncate(at);
                bytes.extend_from_slice(&other[from..]);
                note.push_str(&format!("splice@{at}<-{from} "));
            }
            _ => {
                let at = (NONCE_LEN + PREFIX_LEN).min(len);
                bytes.truncate(at);
                note.push_str("cut to the nonce ");
            }
        }
    }
}
