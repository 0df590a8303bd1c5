//! What an overlay node reports to its driver: events, counters, and command errors.

use thiserror::Error;

use crate::error::{EncodeError, WireError};
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

/// Frames refused by the wire pipeline or by the overlay, by cause.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drops {
    /// Not a well-formed frame (`WireError::Malformed`).
    pub malformed: u64,
    /// Failed the cluster key or the origin's signature (`WireError::Unauthenticated`).
    pub unauthenticated: u64,
    /// Already accepted (`Replayed::Duplicate`).
    pub duplicate: u64,
    /// Outside the replay window or below its floor (other `Replayed`).
    pub replayed: u64,
    /// Over a size limit (`WireError::TooLarge`).
    pub too_large: u64,
    /// Unknown version or kind (`WireError::Incompatible`).
    pub incompatible: u64,
    /// Authentic, but not an overlay message, or one that makes no sense here (a push that does
    /// not carry a broadcast, a message from ourselves).
    pub unexpected: u64,
    /// Outbound frames or events dropped because the queue was full.
    pub queue_full: u64,
}

impl Drops {
    /// Counts a wire error under its cause.
    pub fn count(&mut self, error: &WireError) {
        let slot = match error.reason() {
            "malformed" => &mut self.malformed,
            "unauthenticated" => &mut self.unauthenticated,
            "duplicate" => &mut self.duplicate,
            "replayed" => &mut self.replayed,
            "too_large" => &mut self.too_large,
            _ => &mut self.incompatible,
        };
        *slot += 1;
    }

    /// All inbound drops (not counting `queue_full`).
    pub fn inbound(&self) -> u64 {
        self.malformed
            + self.unauthenticated
            + self.duplicate
            + self.replayed
            + self.too_large
            + self.incompatible
            + self.unexpected
    }
}

/// Counters a driver exports as metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayStats {
    /// Frames received.
    pub packets_in: u64,
    /// Frames queued for sending.
    pub packets_out: u64,
    /// Bytes queued for sending.
    pub bytes_out: u64,
    /// Refused frames, by cause.
    pub drops: Drops,
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
    /// Own messages that could not be encoded (nothing was sent).
    pub encode_errors: u64,
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
