//! Fixtures shared by the wire tests: fixed keys, a fixed-output RNG, one message of every kind,
//! and an independent signer that follows docs/PROTOCOL.md byte for byte.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;

use ed25519_dalek::{Signer, SigningKey};
use gossip_core::message::{
    Ack, Alive, Broadcast, Dead, DigestEntry, Direct, Gossip, Leave, Metadata, Nack, Ping, PingReq,
    Relay, Request, Response, Suspect, Sync, sync_phase,
};
use gossip_core::overlay::messages::{
    Disconnect, EagerPush, ForwardJoin, Graft, Heartbeat, IHave, MessageRef, Neighbor,
    NeighborReply, OverlayJoin, PeerInfo, Prune, Shuffle, ShuffleReply, priority,
};
use gossip_core::streams::{
    ACCEPTOR_BIT, StreamAccept, StreamClose, StreamCredit, StreamData, StreamOpen,
};
use gossip_core::wire::{SIGNATURE_DOMAIN, VERSION};
use gossip_core::{
    Address, ClusterKey, Codec, Config, Identity, Instant, Keyring, Limits, Message, Node, NodeId,
    ReplayConfig, SignedPacket, Timestamp,
};
use rand_core::{TryCryptoRng, TryRng};

/// 2023-11-14T22:13:20Z: the wall clock of every test.
pub const NOW_MS: u64 = 1_700_000_000_000;

/// An RNG that yields `seed, seed+1, ...` as bytes: golden vectors need a known nonce.
pub struct CountingRng(pub u8);

impl TryRng for CountingRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for b in dst {
            *b = self.0;
            self.0 = self.0.wrapping_add(1);
        }
        Ok(())
    }
}

impl TryCryptoRng for CountingRng {}

pub fn secret(n: u8) -> [u8; 32] {
    [n; 32]
}

pub fn identity(n: u8) -> Identity {
    Identity::from_secret_bytes(secret(n))
}

pub fn key(n: u8) -> ClusterKey {
    ClusterKey::from_bytes([0xc0 ^ n; 32])
}

pub fn codec(node: u8, keyring: Keyring) -> Codec {
    Codec::new(
        identity(node),
        keyring,
        Limits::default(),
        ReplayConfig::default(),
    )
}

pub fn encrypted(node: u8) -> Codec {
    codec(node, Keyring::new(key(1)))
}

pub fn plaintext(node: u8) -> Codec {
    codec(node, Keyring::unencrypted())
}

pub fn ts(logical: u16) -> Timestamp {
    Timestamp::new(NOW_MS, logical)
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A signed packet from `node`, to carry as piggyback.
pub fn nested(node: u8, logical: u16) -> SignedPacket {
    let m = Message::from(Suspect {
        node: identity(9).id(),
        incarnation: 4,
    });
    codec(node, Keyring::unencrypted())
        .sign(ts(logical), &m)
        .unwrap()
}

/// One message of every kind, named. `every_kind_is_covered` keeps this list complete.
pub fn all_kinds() -> Vec<(&'static str, Message)> {
    let target = identity(9).id();
    let mut kinds: Vec<(&'static str, Message)> = vec![
        (
            "ping",
            Ping {
                seq: 7,
                target,
                piggyback: vec![nested(3, 100)],
            }
            .into(),
        ),
        (
            "ack",
            Ack {
                seq: 7,
                piggyback: vec![],
            }
            .into(),
        ),
        (
            "ping_req",
            PingReq {
                seq: 8,
                target,
                addrs: vec![Address::Udp(addr("127.0.0.1:7946"))],
            }
            .into(),
        ),
        ("nack", Nack { seq: 8 }.into()),
        (
            "gossip",
            Gossip {
                items: vec![nested(3, 101), nested(4, 102)],
            }
            .into(),
        ),
        (
            "alive",
            Alive {
                incarnation: 2,
                addrs: vec![
                    Address::Udp(addr("127.0.0.1:7946")),
                    Address::Tcp(addr("[::1]:7946")),
                    Address::WebSocket("wss://example.test/gossip".into()),
                    Address::Relayed(target),
                ],
                name: "node-a".into(),
            }
            .into(),
        ),
        (
            "suspect",
            Suspect {
                node: target,
                incarnation: 3,
            }
            .into(),
        ),
        (
            "dead",
            Dead {
                node: target,
                incarnation: 3,
            }
            .into(),
        ),
        ("leave", Leave { incarnation: 5 }.into()),
        (
            "broadcast",
            Broadcast {
                topic: "chat".into(),
                data: b"hello, cluster".to_vec().into(),
            }
            .into(),
        ),
        (
            "direct",
            Direct {
                to: target,
                topic: "rpc".into(),
                data: vec![0, 1, 2, 255].into(),
            }
            .into(),
        ),
        (
            "sync",
            Sync {
                phase: sync_phase::ANSWER,
                digest: vec![DigestEntry {
                    node: target,
                    incarnation: 9,
                    state: 1,
                    meta_version: 3,
                }],
                states: vec![nested(5, 103)],
            }
            .into(),
        ),
        (
            "metadata",
            Metadata {
                version: 12,
                entries: vec![
                    ("role".into(), b"worker".to_vec().into()),
                    ("zone".into(), b"eu".to_vec().into()),
                ],
            }
            .into(),
        ),
        (
            "relay",
            Relay {
                to: target,
                frame: vec![1, 0, 0, 9, 9].into(),
            }
            .into(),
        ),
        (
            "request",
            Request {
                req: 77,
                to: target,
                topic: "kv.get".into(),
                data: b"key".to_vec().into(),
            }
            .into(),
        ),
        (
            "response",
            Response {
                req: 77,
                to: target,
                data: b"value".to_vec().into(),
            }
            .into(),
        ),
        (
            "stream_open",
            StreamOpen {
                stream: 3,
                window: 262_144,
            }
            .into(),
        ),
        (
            "stream_accept",
            StreamAccept {
                stream: 3 | ACCEPTOR_BIT,
                window: 262_144,
            }
            .into(),
        ),
        (
            "stream_data",
            StreamData {
                stream: 3,
                seq: 0,
                data: b"chunk".to_vec().into(),
            }
            .into(),
        ),
        (
            "stream_credit",
            StreamCredit {
                stream: 3 | ACCEPTOR_BIT,
                credit: 65_536,
            }
            .into(),
        ),
        (
            "stream_close",
            StreamClose {
                stream: 3,
                code: 0,
                reason: "done".into(),
            }
            .into(),
        ),
    ];
    kinds.extend(overlay_kinds());
    kinds.extend(state_kinds());
    kinds.extend(admission_kinds());
    kinds
}

/// The admission (kind 36), after the state's so earlier golden ids stay put.
pub fn admission_kinds() -> Vec<(&'static str, Message)> {
    vec![(
        "admission",
        gossip_core::message::Admission {
            member: identity(3).id(),
            expires: 1_700_000_060_000,
            name: "tab-".into(),
            topics: Some(vec!["chat".into(), "game/*".into()]),
            state: false,
        }
        .into(),
    )]
}

/// The replicated state's kinds (34-35), after the overlay's so earlier golden ids stay put.
pub fn state_kinds() -> Vec<(&'static str, Message)> {
    use gossip_core::state::messages::{StateBatch, StateDigest, StateEntry, StateSync};
    let owner = identity(2).id();
    vec![
        (
            "state_entry",
            StateEntry {
                life: 1_700_000_000_000,
                version: 7,
                key: "svc/orders".into(),
                value: Some(b"10.0.0.7:8080".to_vec().into()),
            }
            .into(),
        ),
        (
            "state_sync",
            StateSync {
                phase: 2,
                digest: vec![StateDigest {
                    owner,
                    life: 1_700_000_000_000,
                    version: 7,
                    hash: Some(0x0123_4567_89ab_cdef),
                }],
                batches: vec![StateBatch {
                    owner,
                    life: 1_700_000_000_000,
                    from: 5,
                    through: 7,
                    flags: 2,
                    entries: vec![nested(2, 1)],
                }],
            }
            .into(),
        ),
    ]
}

/// The overlay's kinds (22-33), appended after the older ones so their golden ids stay put.
pub fn overlay_kinds() -> Vec<(&'static str, Message)> {
    let udp = || vec![Address::Udp(addr("127.0.0.1:7946"))];
    let peer = |n: u8| PeerInfo {
        node: identity(n).id(),
        addrs: vec![Address::Udp(addr("10.0.0.7:7946"))],
    };
    vec![
        ("overlay_join", OverlayJoin { addrs: udp() }.into()),
        (
            "forward_join",
            ForwardJoin {
                joiner: peer(5),
                ttl: 6,
            }
            .into(),
        ),
        (
            "neighbor",
            Neighbor {
                addrs: udp(),
                priority: priority::HIGH,
            }
            .into(),
        ),
        (
            "neighbor_reply",
            NeighborReply {
                accepted: true,
                addrs: udp(),
            }
            .into(),
        ),
        ("disconnect", Disconnect { leaving: false }.into()),
        (
            "shuffle",
            Shuffle {
                origin: peer(5),
                ttl: 6,
                peers: vec![peer(6), peer(7)],
            }
            .into(),
        ),
        (
            "shuffle_reply",
            ShuffleReply {
                peers: vec![peer(8)],
            }
            .into(),
        ),
        ("heartbeat", Heartbeat { probe: true }.into()),
        (
            "eager_push",
            EagerPush {
                round: 2,
                packet: nested(3, 104),
            }
            .into(),
        ),
        (
            "ihave",
            IHave {
                ids: vec![MessageRef {
                    origin: identity(3).id(),
                    id: ts(104),
                    round: 2,
                }],
            }
            .into(),
        ),
        (
            "graft",
            Graft {
                origin: identity(3).id(),
                id: ts(104),
            }
            .into(),
        ),
        ("prune", Prune {}.into()),
    ]
}

/// Signs `signed_part` (origin ‖ id ‖ kind ‖ encoding ‖ payload) the way PROTOCOL.md says, with
/// ed25519-dalek directly: an independent check of the layout, and the way to forge test packets.
pub fn sign_raw(secret: [u8; 32], signed_part: &[u8]) -> SignedPacket {
    let key = SigningKey::from_bytes(&secret);
    let mut msg = Vec::new();
    msg.extend_from_slice(SIGNATURE_DOMAIN);
    msg.push(VERSION);
    msg.extend_from_slice(signed_part);
    let sig = key.sign(&msg);
    let mut out = sig.to_bytes().to_vec();
    out.extend_from_slice(signed_part);
    SignedPacket::from_bytes(out).unwrap()
}

/// `origin ‖ id ‖ kind ‖ encoding ‖ payload`.
pub fn signed_part(
    origin: NodeId,
    id: Timestamp,
    kind: u8,
    encoding: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = origin.as_bytes().to_vec();
    v.extend_from_slice(&id.to_u64().to_be_bytes());
    v.push(kind);
    v.push(encoding);
    v.extend_from_slice(payload);
    v
}

/// The UDP address of in-test member `i`.
pub fn member_addr(i: u8) -> Address {
    Address::Udp(format!("127.0.0.{i}:7946").parse().unwrap())
}

/// In-test member `i`: named `n{i}`, identity `i`, cluster key 1, started at virtual time 0 and
/// wall clock `wall_ms`.
pub fn member(i: u8, config: Config, wall_ms: u64) -> Node {
    Node::new(
        config.with_name(format!("n{i}")),
        identity(i),
        Keyring::new(key(1)),
        vec![member_addr(i)],
        [i; 32],
        Instant::from_millis(0),
        wall_ms,
    )
}

/// The id of in-test member `i`.
pub fn member_id(i: u8) -> NodeId {
    identity(i).id()
}
