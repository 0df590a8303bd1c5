//! What can go wrong, grouped by cause.

use gossip_core::requests::FailReason;
use gossip_core::{CommandError, NodeId};

/// Why [`Gossip::start`](crate::Gossip::start) or [`Gossip::serve`](crate::Gossip::serve) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Where.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The OS random generator failed.
    #[error("OS random generator: {0}")]
    Random(String),
    /// A setting is invalid.
    #[error("invalid setting: {0}")]
    Config(String),
}

/// Why a command on a running node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GossipError {
    /// The engine refused the command; nothing was sent.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The request got no answer.
    #[error("request to {to} failed: {reason:?}")]
    RequestFailed {
        /// The addressee.
        to: NodeId,
        /// Why (timeout, member gone, ...).
        reason: FailReason,
    },
    /// The peer refused the stream, or it closed before being accepted.
    #[error("stream refused (code {code}): {reason}")]
    StreamRefused {
        /// The close code (see `gossip_core::streams::close_code`).
        code: u32,
        /// The peer's reason.
        reason: String,
    },
    /// The node was shut down.
    #[error("the node is shut down")]
    Stopped,
    /// A seed could not be parsed or resolved.
    #[error("seed {seed:?}: {reason}")]
    Seed {
        /// The seed as given.
        seed: String,
        /// Why.
        reason: String,
    },
}
