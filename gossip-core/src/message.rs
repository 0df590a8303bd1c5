//! The messages nodes exchange. Each kind has a fixed one-byte code in the frame header and a
//! MessagePack body (structs as arrays, see `docs/PROTOCOL.md`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::address::Address;
use crate::error::{Incompatible, Malformed, TooLarge, WireError};
use crate::identity::NodeId;
use crate::limits::Limits;
use crate::overlay::messages::{
    Disconnect, EagerPush, ForwardJoin, Graft, Heartbeat, IHave, Neighbor, NeighborReply,
    OverlayJoin, Prune, Shuffle, ShuffleReply,
};
#[cfg(feature = "state")]
use crate::state::messages::{StateEntry, StateSync};
use crate::streams::{StreamAccept, StreamClose, StreamCredit, StreamData, StreamOpen};
use crate::wire::SignedPacket;

/// A direct probe: "are you alive?". Carries piggybacked gossip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Correlates the ack.
    pub seq: u32,
    /// The member the sender means to probe (a stale address may reach someone else).
    pub target: NodeId,
    /// Gossip riding along, each item signed by its own origin.
    pub piggyback: Vec<SignedPacket>,
}

/// The answer to a [`Ping`], or the relay of an indirect probe's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The `seq` of the ping answered.
    pub seq: u32,
    /// Gossip riding along.
    pub piggyback: Vec<SignedPacket>,
}

/// Asks a member to probe `target` on the sender's behalf (SWIM indirect probe).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReq {
    /// The requester's probe sequence, echoed in the relayed [`Ack`] or [`Nack`].
    pub seq: u32,
    /// Whom to probe.
    pub target: NodeId,
    /// Where the requester believes the target is.
    pub addrs: Vec<Address>,
}

/// Lifeguard: the intermediary of an indirect probe heard nothing back, which tells the requester
/// its own network is fine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    /// The requester's probe sequence.
    pub seq: u32,
}

/// Gossip pushed on its own (not riding a probe), so fresh news spreads at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gossip {
    /// The items, each signed by its own origin.
    pub items: Vec<SignedPacket>,
}

/// A member announces itself alive at `incarnation` (signed by the member itself, so nobody else
/// can refute a suspicion for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alive {
    /// Raised to refute a suspicion or after a restart.
    pub incarnation: u64,
    /// Where it can be reached.
    pub addrs: Vec<Address>,
    /// A human-friendly name, unique by convention.
    pub name: String,
}

/// The origin suspects `node` at `incarnation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspect {
    /// The suspected member.
    pub node: NodeId,
    /// The incarnation it was suspected at.
    pub incarnation: u64,
}

/// The origin declares `node` dead at `incarnation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dead {
    /// The dead member.
    pub node: NodeId,
    /// The incarnation it died at.
    pub incarnation: u64,
}

/// The origin leaves the cluster. Only the leaver can sign this, so nobody can make another node leave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    /// The leaver's incarnation at leave time; a later restart rejoins above it.
    pub incarnation: u64,
}

/// A user broadcast, gossiped to every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broadcast {
    /// Application-chosen topic.
    pub topic: String,
    /// Opaque application data.
    pub data: ByteBuf,
}

/// A user message to one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Direct {
    /// The addressee (relays forward by it).
    pub to: NodeId,
    /// Application-chosen topic.
    pub topic: String,
    /// Opaque application data.
    pub data: ByteBuf,
}

/// One member's versions, as a push-pull digest lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// The member.
    pub node: NodeId,
    /// Its incarnation.
    pub incarnation: u64,
    /// Its state code (see `membership::State::code`).
    pub state: u8,
    /// Its metadata version (0: none).
    pub meta_version: u64,
}

/// Where a push-pull exchange stands.
pub mod sync_phase {
    /// Opening: the sender's digest; the receiver answers with its delta and digest.
    pub const OPEN: u8 = 0;
    /// Opening of a join: like [`OPEN`], and the receiver also learns the joiner.
    pub const JOIN: u8 = 1;
    /// Answer: delta plus the answerer's digest; the receiver sends back its own delta.
    pub const ANSWER: u8 = 2;
    /// Closing: delta only.
    pub const CLOSE: u8 = 3;
}

/// Push-pull anti-entropy: digests and the signed state records the other side lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sync {
    /// One of [`sync_phase`].
    pub phase: u8,
    /// The sender's view (empty when closing).
    pub digest: Vec<DigestEntry>,
    /// Signed alive/suspect/dead/leave/metadata records, cut to the sync byte budget.
    pub states: Vec<SignedPacket>,
}

/// A member's whole metadata, signed by that member; a higher version replaces a lower one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The owner's version (its hybrid clock at the change, so restarts keep increasing it).
    pub version: u64,
    /// Key/value pairs, sorted by key.
    pub entries: Vec<(String, ByteBuf)>,
}

/// A full member vouches for `member`, a member without the cluster key it admitted (see
/// [`crate::admission`]): signed by the admitting member, it says under which name prefix and on
/// which topics `member` may speak, and until when. A newer one (a higher packet id) from the
/// same issuer replaces it: a renewal, or with `expires` 0 a revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// The admitted member.
    pub member: NodeId,
    /// Wall-clock milliseconds after which nobody accepts its records; 0: revoked.
    pub expires: u64,
    /// Its name must start with this.
    pub name: String,
    /// Topics it may broadcast, send and request on (`*` at the end: a prefix); nil: every topic.
    pub topics: Option<Vec<String>>,
    /// It may write its own replicated state. A fifth field only when true, so an admission
    /// without it has the four-field encoding of before (and its golden bytes).
    #[serde(default, skip_serializing_if = "is_false")]
    pub state: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Asks a member to hand `frame` to `to`, a member that is reachable only through it (a browser).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    /// The final addressee.
    pub to: NodeId,
    /// The complete frame for it (sealed for it by the sender).
    pub frame: ByteBuf,
}

/// A user request; the addressee answers with a [`Response`] carrying the same `req`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Correlation id chosen by the requester.
    pub req: u64,
    /// The addressee.
    pub to: NodeId,
    /// Application-chosen topic.
    pub topic: String,
    /// Opaque application data.
    pub data: ByteBuf,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The request's correlation id.
    pub req: u64,
    /// The requester.
    pub to: NodeId,
    /// Opaque application data.
    pub data: ByteBuf,
}

macro_rules! messages {
    ($(
        $(#[$gdoc:meta])* $group:ident($genum:ident) {
            $($(#[$doc:meta])* $(@cfg($vcfg:meta))? $variant:ident($ty:ident) = $code:literal,)*
        }
    )*) => {
        /// Every message kind, nested by the part of the engine that owns it. Each kind keeps its
        /// one-byte wire code (`docs/PROTOCOL.md`); the nesting exists only in memory.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Message {
            $($(#[$gdoc])* $group($genum),)*
        }

        $(
            $(#[$gdoc])*
            #[derive(Debug, Clone, PartialEq, Eq)]
            pub enum $genum {
                $($(#[$doc])* $(#[cfg($vcfg)])? $variant($ty),)*
            }

            impl From<$genum> for Message {
                fn from(m: $genum) -> Self { Message::$group(m) }
            }

            $(
                $(#[cfg($vcfg)])?
                impl From<$ty> for $genum {
                    fn from(m: $ty) -> Self { $genum::$variant(m) }
                }

                $(#[cfg($vcfg)])?
                impl From<$ty> for Message {
                    fn from(m: $ty) -> Self { Message::$group($genum::$variant(m)) }
                }
            )*
        )*

        impl Message {
            /// The kind's one-byte wire code.
            pub fn kind(&self) -> u8 {
                match self { $($($(#[cfg($vcfg)])? Message::$group($genum::$variant(_)) => $code,)*)* }
            }

            /// Whether `kind` names a message this node understands.
            // Codes are listed, not ranged: retired codes leave holes that must stay unknown, and
            // a kind whose feature is off is unknown too.
            #[allow(clippy::match_like_matches_macro)]
            pub fn is_known_kind(kind: u8) -> bool {
                match kind {
                    $($($(#[cfg($vcfg)])? $code => true,)*)*
                    _ => false,
                }
            }

            pub(crate) fn write_payload(&self, out: &mut Vec<u8>) -> Result<(), rmp_serde::encode::Error> {
                #[cfg(not(feature = "overlay"))]
                if let Message::Overlay(_) = self {
                    let why = "overlay messages need the overlay feature";
                    return Err(rmp_serde::encode::Error::Syntax(why.into()));
                }
                match self { $($($(#[cfg($vcfg)])? Message::$group($genum::$variant(m)) => rmp_serde::encode::write(out, m),)*)* }
            }

            pub(crate) fn read_payload(kind: u8, payload: &[u8]) -> Result<Self, WireError> {
                // Without the overlay engine its kinds are unknown here: a `Node` refuses them
                // anyway, and their decoders stay out of the browser build.
                #[cfg(not(feature = "overlay"))]
                if OVERLAY_KINDS.contains(&kind) {
                    return Err(Incompatible::Kind(kind).into());
                }
                match kind {
                    $($($(#[cfg($vcfg)])? $code => decode::<$ty>(payload).map(|m| Message::$group($genum::$variant(m))),)*)*
                    other => Err(Incompatible::Kind(other).into()),
                }
            }
        }
    };
}

messages! {
    /// SWIM's transport: probes, gossip envelopes, push-pull and relaying.
    Membership(MembershipMessage) {
        /// Direct probe.
        Ping(Ping) = 1,
        /// Probe answer.
        Ack(Ack) = 2,
        /// Indirect probe request.
        PingReq(PingReq) = 3,
        /// Indirect probe got no answer.
        Nack(Nack) = 4,
        /// Standalone gossip.
        Gossip(Gossip) = 5,
        /// Push-pull anti-entropy.
        Sync(Sync) = 12,
        /// Frame to forward to a relayed member.
        Relay(Relay) = 14,
        /// Replicated-state anti-entropy (`state` feature).
        @cfg(feature = "state") StateSync(StateSync) = 35,
    }
    /// Signed records that change what members know; the only kinds that ride as gossip items.
    Update(UpdateMessage) {
        /// Member alive.
        Alive(Alive) = 6,
        /// Member suspected.
        Suspect(Suspect) = 7,
        /// Member dead.
        Dead(Dead) = 8,
        /// Member left.
        Leave(Leave) = 9,
        /// User broadcast.
        Broadcast(Broadcast) = 10,
        /// Member metadata.
        Metadata(Metadata) = 13,
        /// One key of a member's replicated state (`state` feature).
        @cfg(feature = "state") State(StateEntry) = 34,
        /// A full member vouches for a member it admitted (`admission` feature).
        @cfg(feature = "admission") Admission(Admission) = 36,
    }
    /// The application's messages between two members.
    Application(ApplicationMessage) {
        /// User direct message.
        Direct(Direct) = 11,
        /// User request.
        Request(Request) = 15,
        /// User response.
        Response(Response) = 16,
    }
    /// Byte streams between two members.
    Stream(StreamMessage) {
        /// Stream open.
        Open(StreamOpen) = 17,
        /// Stream accept.
        Accept(StreamAccept) = 18,
        /// Stream data.
        Data(StreamData) = 19,
        /// Stream flow-control credit.
        Credit(StreamCredit) = 20,
        /// Stream close.
        Close(StreamClose) = 21,
    }
    /// The partial-view overlay (HyParView + Plumtree); a [`Node`](crate::Node) refuses these.
    Overlay(OverlayMessage) {
        /// A new member asks its contact to take it in.
        Join(OverlayJoin) = 22,
        /// A join's random walk.
        ForwardJoin(ForwardJoin) = 23,
        /// Asks for an active link.
        Neighbor(Neighbor) = 24,
        /// Answer to a join or a neighbor request.
        NeighborReply(NeighborReply) = 25,
        /// An active link is dropped.
        Disconnect(Disconnect) = 26,
        /// A shuffle's random walk.
        Shuffle(Shuffle) = 27,
        /// Answer to a shuffle.
        ShuffleReply(ShuffleReply) = 28,
        /// Keeps an idle active link alive.
        Heartbeat(Heartbeat) = 29,
        /// Eager push along the tree.
        EagerPush(EagerPush) = 30,
        /// Lazy push of ids.
        IHave(IHave) = 31,
        /// Asks for a missing broadcast, joins the tree.
        Graft(Graft) = 32,
        /// Leaves the tree.
        Prune(Prune) = 33,
    }
}

/// Wire codes of the overlay's kinds.
#[cfg(not(feature = "overlay"))]
const OVERLAY_KINDS: std::ops::RangeInclusive<u8> = 22..=33;

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, WireError> {
    // The slice reader checks every declared length against the bytes left before allocating.
    crate::msgpack::from_slice(payload).map_err(|e| Malformed::Payload(e.0).into())
}

impl Message {
    /// Checks list lengths against `limits.max_items`.
    pub fn validate(&self, limits: &Limits) -> Result<(), TooLarge> {
        let check = |what: &'static str, count: usize| {
            if count > limits.max_items {
                Err(TooLarge::Items {
                    what,
                    count,
                    max: limits.max_items,
                })
            } else {
                Ok(())
            }
        };
        use MembershipMessage as M;
        use OverlayMessage as O;
        use UpdateMessage as U;
        match self {
            Message::Membership(m) => match m {
                M::Ping(m) => check("ping.piggyback", m.piggyback.len()),
                M::Ack(m) => check("ack.piggyback", m.piggyback.len()),
                M::PingReq(m) => check("ping_req.addrs", m.addrs.len()),
                M::Gossip(m) => check("gossip.items", m.items.len()),
                M::Sync(m) => {
                    check("sync.digest", m.digest.len())?;
                    check("sync.states", m.states.len())
                }
                M::Nack(_) | M::Relay(_) => Ok(()),
                #[cfg(feature = "state")]
                M::StateSync(m) => m.validate(limits),
            },
            Message::Update(u) => match u {
                U::Alive(m) => check("alive.addrs", m.addrs.len()),
                U::Metadata(m) => check("metadata.entries", m.entries.len()),
                U::Suspect(_) | U::Dead(_) | U::Leave(_) | U::Broadcast(_) => Ok(()),
                #[cfg(feature = "state")]
                U::State(_) => Ok(()),
                #[cfg(feature = "admission")]
                U::Admission(m) => check("admission.topics", m.topics.as_ref().map_or(0, Vec::len)),
            },
            Message::Application(_) | Message::Stream(_) => Ok(()),
            Message::Overlay(o) => match o {
                O::Join(m) => check("overlay_join.addrs", m.addrs.len()),
                O::ForwardJoin(m) => check("forward_join.addrs", m.joiner.addrs.len()),
                O::Neighbor(m) => check("neighbor.addrs", m.addrs.len()),
                O::NeighborReply(m) => check("neighbor_reply.addrs", m.addrs.len()),
                O::Shuffle(m) => {
                    check("shuffle.addrs", m.origin.addrs.len())?;
                    check("shuffle.peers", m.peers.len())?;
                    m.peers
                        .iter()
                        .try_for_each(|p| check("shuffle.peers.addrs", p.addrs.len()))
                }
                O::ShuffleReply(m) => {
                    check("shuffle_reply.peers", m.peers.len())?;
                    m.peers
                        .iter()
                        .try_for_each(|p| check("shuffle_reply.peers.addrs", p.addrs.len()))
                }
                O::IHave(m) => check("ihave.ids", m.ids.len()),
                O::Disconnect(_)
                | O::Heartbeat(_)
                | O::EagerPush(_)
                | O::Graft(_)
                | O::Prune(_) => Ok(()),
            },
        }
    }
}
