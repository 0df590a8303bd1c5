//! What can go wrong, grouped by cause.

use gossip_core::error::KeyringError;
use gossip_core::link::handshake::Versions;
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
    /// The identity file could not be read or created.
    #[error(transparent)]
    Identity(#[from] crate::identity_file::IdentityFileError),
}

/// Why a command on a running node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GossipError {
    /// The engine refused the command; nothing was sent.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The replicated state refused the write (a size limit, ...); nothing was sent.
    #[error(transparent)]
    State(#[from] gossip_core::state::StateError),
    /// An ownership query or watch was refused (unknown group, a watch bound).
    #[error(transparent)]
    Ownership(#[from] gossip_core::ownership::OwnershipError),
    /// The endpoint command was refused (a bad name, too many names, no holder...); nothing
    /// was sent.
    #[error(transparent)]
    Endpoint(#[from] gossip_core::endpoints::EndpointError),
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
    /// The keyring refused the change (the primary cannot be removed, the key is not there, the
    /// ring is full).
    #[error("keyring: {0}")]
    Keyring(#[from] KeyringError),
    /// The node runs without a cluster key (plain-text mode): giving it one would cut it off
    /// from every member, so it must be restarted with one instead.
    #[error("the node runs without a cluster key; restart it with one to encrypt")]
    Unencrypted,
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

/// Why [`Gossip::joined`](crate::Gossip::joined) gave up: the node knows no other live member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The node has no seed and nobody joined through it.
    #[error("no other member after {waited_ms} ms, and the node has no seed to join through")]
    NoSeeds {
        /// How long it waited.
        waited_ms: u64,
    },
    /// No seed let the node in; what each attempt ran into (empty: nothing answered at all, e.g.
    /// UDP seeds that drop what they cannot authenticate).
    #[error("not joined after {waited_ms} ms: {}", describe(.attempts))]
    NotJoined {
        /// How long it waited.
        waited_ms: u64,
        /// The last problem met with each seed address.
        attempts: Vec<SeedAttempt>,
    },
    /// The node was shut down.
    #[error("the node is shut down")]
    Stopped,
}

fn describe(attempts: &[SeedAttempt]) -> String {
    if attempts.is_empty() {
        return "no seed answered (wrong cluster key on a UDP-only seed, or nobody there)".into();
    }
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.seed, a.problem))
        .collect::<Vec<_>>()
        .join("; ")
}

/// One seed address and what went wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SeedAttempt {
    /// The seed (as configured when it did not resolve, else the address dialed).
    pub seed: String,
    /// What went wrong.
    pub problem: SeedProblem,
}

/// What went wrong when joining through one seed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SeedProblem {
    /// The seed did not parse or resolve.
    #[error("did not resolve: {0}")]
    Unresolved(String),
    /// Nothing accepted the connection.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The seed refused the token (4401): set the token it expects (`with_token`, `dial_token`).
    #[error("refused our token (4401): set the token the seed expects")]
    Unauthorized,
    /// The seed's admission hook refused us (4406).
    #[error("not admitted (4406): {0}")]
    NotAdmitted(String),
    /// Frames did not authenticate, one way or the other: the cluster keys differ (or one side
    /// runs without a key).
    #[error("frames do not authenticate: the cluster keys differ (or one side has none)")]
    ClusterKey,
    /// The link handshake failed.
    #[error("link handshake failed: {0}")]
    Handshake(String),
    /// The seed speaks no protocol or application version this node does (see
    /// [`GossipConfig::with_app_versions`](crate::GossipConfig::with_app_versions)).
    #[error("no common version: we speak {ours}, the seed {theirs}")]
    Version {
        /// This node's ranges.
        ours: Versions,
        /// The seed's.
        theirs: Versions,
    },
    /// The seed closed the connection for another reason.
    #[error("closed by the seed: {0}")]
    Closed(String),
}
