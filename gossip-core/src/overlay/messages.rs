//! The overlay's message kinds (wire codes 22-33, see `docs/PROTOCOL.md`).
//!
//! HyParView membership: [`OverlayJoin`], [`ForwardJoin`], [`Neighbor`], [`NeighborReply`],
//! [`Disconnect`], [`Shuffle`], [`ShuffleReply`], [`Heartbeat`]. Plumtree broadcast:
//! [`EagerPush`], [`IHave`], [`Graft`], [`Prune`]. Every one travels in its own frame, signed by
//! the member that sends it; [`EagerPush`] also carries the origin's signed `Broadcast` packet.

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::hlc::Timestamp;
use crate::identity::NodeId;
use crate::wire::SignedPacket;

/// A member and where it can be reached: an entry of a view as peers exchange it.
///
/// The addresses are a hint, not authenticated for `node` (the sender of the message vouches for
/// them); a link is only made after `node` itself answers, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The member.
    pub node: NodeId,
    /// Its addresses.
    pub addrs: Vec<Address>,
}

/// A new member asks its contact to take it into the overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayJoin {
    /// Where the joiner can be reached.
    pub addrs: Vec<Address>,
}

/// A join's random walk: the last node of the walk (or a node with a single neighbour) links to
/// the joiner; the node at `ttl == passive_walk` keeps it as a passive entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardJoin {
    /// The joiner.
    pub joiner: PeerInfo,
    /// Hops left.
    pub ttl: u8,
}

/// Neighbor request priorities.
pub mod priority {
    /// Accepted only if the receiver's active view has room.
    pub const LOW: u8 = 0;
    /// Always accepted (the receiver evicts a neighbour if it must): the sender has too few.
    pub const HIGH: u8 = 1;
}

/// Asks the receiver to make the sender an active neighbour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbor {
    /// Where the sender can be reached.
    pub addrs: Vec<Address>,
    /// One of [`priority`].
    pub priority: u8,
}

/// The answer to a [`Neighbor`] request or an [`OverlayJoin`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborReply {
    /// Whether the sender now holds the receiver in its active view.
    pub accepted: bool,
    /// Where the sender can be reached.
    pub addrs: Vec<Address>,
}

/// The sender dropped the receiver from its active view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnect {
    /// The sender is leaving the overlay (do not keep it as a passive entry).
    pub leaving: bool,
}

/// A shuffle's random walk: a sample of the originator's views, answered by the walk's last node
/// with a sample of its passive view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shuffle {
    /// Who started the shuffle (the answer goes there directly).
    pub origin: PeerInfo,
    /// Hops left.
    pub ttl: u8,
    /// The sample.
    pub peers: Vec<PeerInfo>,
}

/// The answer to a [`Shuffle`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShuffleReply {
    /// A sample of the answerer's passive view.
    pub peers: Vec<PeerInfo>,
}

/// Keeps an idle active link alive. A `probe` asks for an immediate heartbeat back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Answer at once: the sender has not heard from the receiver for a while.
    pub probe: bool,
}

/// Plumtree eager push: a broadcast along the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EagerPush {
    /// Hops from the origin so far.
    pub round: u8,
    /// The origin's signed `Broadcast` packet.
    pub packet: SignedPacket,
}

/// A broadcast announced by id only (Plumtree lazy push).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    /// The broadcast's origin.
    pub origin: NodeId,
    /// The origin's message id.
    pub id: Timestamp,
    /// Hops from the origin to the announcer.
    pub round: u8,
}

/// Plumtree lazy push: "I have these broadcasts".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IHave {
    /// The announced broadcasts.
    pub ids: Vec<MessageRef>,
}

/// Asks the receiver to send a missing broadcast and to push eagerly to the sender from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graft {
    /// The broadcast's origin.
    pub origin: NodeId,
    /// The origin's message id.
    pub id: Timestamp,
}

/// The receiver should push to the sender lazily (by [`IHave`]) from now on: the sender got a
/// duplicate over this link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prune {}
