//! What an overlay node reports to its driver: events, counters, and command errors.

use thiserror::Error;

use crate::error::EncodeError;
use crate::hlc::Timestamp;
use crate::identity::NodeId;

/// Something the application may want to know about, drained with
/// [`Overlay::poll_event`](super::Overlay::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverlayEvent {
    /// A member became an active neighbour.
    NeighborUp(NodeId),
    /// An active neighbour was dropped.
    NeighborDown {
        /// The former neighbour.
        node: NodeId,
        /// It stopped answering (rather than being evicted, or disconnecting or leaving itself).
        failed: bool,
    },
    /// A broadcast arrived (each at most once per node).
    Broadcast {
        /// The member that broadcast it (authenticated by its signature).
        origin: NodeId,
        /// The origin's message id.
        id: Timestamp,
        /// Hops it travelled.
        hops: u8,
        /// Application-chosen topic.
        topic: String,
        /// Opaque application data.
        data: Vec<u8>,
    },
    /// The node lost every neighbour and knows no member to ask: it joins again through its seeds.
    Isolated,
}

/// The overlay's own counters; frames, bytes and drops are in [`Overlay::wire_stats`](super::Overlay::wire_stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayStats {
    /// Active neighbours declared failed.
    pub failures: u64,
    /// Broadcasts delivered to the application.
    pub delivered: u64,
    /// Plumtree: eager pushes sent (full broadcasts).
    pub eager_sent: u64,
    /// Plumtree: `IHave` frames sent.
    pub ihave_sent: u64,
    /// Plumtree: grafts sent.
    pub grafts_sent: u64,
    /// Plumtree: prunes sent.
    pub prunes_sent: u64,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
}

/// Why a command was refused. Nothing was sent and no state changed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverlayError {
    /// The node has left the overlay; make a new one to join again.
    #[error("the node has left the overlay")]
    Left,
    /// `join` was given no seed.
    #[error("no seed to join through")]
    NoSeeds,
    /// The message could not be encoded (too large for the configured limits).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}
