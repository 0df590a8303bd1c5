//! What a node reports to its driver, drained with `Node::poll_event`.

use crate::groups::GroupEvent;
use crate::identity::NodeId;
use crate::requests::{FailReason, QuorumOutcome, RequestId};
use crate::streams::StreamOutput;

/// Something the application may want to know about. Events are queued, never delivered through
/// a callback, so handling one can freely call back into the node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A member was seen for the first time (or again after it was forgotten).
    MemberJoined {
        /// The member.
        id: NodeId,
        /// Its name.
        name: String,
    },
    /// A suspect or restarted member is alive again.
    MemberAlive {
        /// The member.
        id: NodeId,
    },
    /// A member missed its probes and is suspected.
    MemberSuspect {
        /// The member.
        id: NodeId,
    },
    /// A member was declared dead.
    MemberDead {
        /// The member.
        id: NodeId,
    },
    /// A member left gracefully, or was replaced by a newer member with its name.
    MemberLeft {
        /// The member.
        id: NodeId,
    },
    /// A member's metadata changed.
    MetadataChanged {
        /// The member.
        id: NodeId,
        /// The change's version: the hybrid-logical-clock timestamp its member signed it at
        /// (`Timestamp::from_u64(version)`: `millis()` is the member's wall clock in Unix
        /// milliseconds, `logical()` breaks ties). Larger is newer.
        version: u64,
    },
    /// A user broadcast arrived (once per broadcast, whoever relayed it).
    Broadcast {
        /// Its origin.
        from: NodeId,
        /// Its topic.
        topic: String,
        /// Its data.
        data: Vec<u8>,
    },
    /// A user message addressed to this node arrived.
    Direct {
        /// Its sender.
        from: NodeId,
        /// Its topic.
        topic: String,
        /// Its data.
        data: Vec<u8>,
    },
    /// A request addressed to this node: answer with `Node::respond(from, id, ...)`.
    Request {
        /// The requester.
        from: NodeId,
        /// Its correlation id.
        id: RequestId,
        /// Its topic.
        topic: String,
        /// Its data.
        data: Vec<u8>,
    },
    /// The answer to one of this node's requests.
    Response {
        /// The request.
        id: RequestId,
        /// The responder.
        from: NodeId,
        /// Its data.
        data: Vec<u8>,
    },
    /// A request failed: it timed out, or the addressee died or left first.
    RequestFailed {
        /// The request.
        id: RequestId,
        /// The addressee.
        to: NodeId,
        /// Why.
        reason: FailReason,
    },
    /// A quorum request completed (reached, or impossible to reach).
    QuorumDone(QuorumOutcome),
    /// A member entered, changed within, or left one of this node's groups.
    Group(GroupEvent),
    /// Something happened on a stream: a peer opened one (accept or reject it), ours was
    /// accepted, data can be read, the window reopened, or it closed. Never
    /// [`StreamOutput::Send`]: the node sends those itself.
    Stream(StreamOutput),
    /// A watched key of some member's replicated state changed (`Node::state_watch`).
    #[cfg(feature = "state")]
    StateChanged {
        /// The member whose map it is.
        owner: NodeId,
        /// The key.
        key: String,
        /// The owner's version at the write.
        version: u64,
        /// The new value, or `None` when the key was deleted.
        value: Option<Vec<u8>>,
    },
    /// A member's whole map was dropped: it died, left, or restarted (a new life starts empty).
    /// Sent while any watch is open, once per map, instead of one event per key.
    #[cfg(feature = "state")]
    StateCleared {
        /// The member.
        owner: NodeId,
    },
    /// The owners of some keys of an ownership watch changed (`Node::ownership_watch`): one
    /// event per watch and membership change, listing every key that moved.
    #[cfg(feature = "ownership")]
    OwnershipChanged {
        /// The watch.
        watch: crate::ownership::WatchId,
        /// The keys that moved, with their old and new owners.
        changes: Vec<crate::ownership::OwnershipChange>,
    },
}
