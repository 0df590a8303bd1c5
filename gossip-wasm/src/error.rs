//! Errors of the browser driver, grouped by cause. Each has a stable `code` that JavaScript sees
//! as `error.code` (the message may be reworded, the code not).

use gossip_core::CommandError;
use gossip_core::groups::GroupError;
use gossip_core::link::{CloseCode, Fault};
use gossip_core::streams::StreamError;

/// Anything the driver refuses or reports as failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GossipError {
    /// The caller passed something unusable. Nothing changed.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// Joining the cluster (or re-joining after the server died) failed.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// The cluster could not carry out a command, or a request got no answer.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// The caller's input was unusable. Nothing was sent and no state changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// An option of `GossipNode.create` is missing or malformed.
    #[error("invalid option `{option}`: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An argument of a method is malformed.
    #[error("invalid argument `{argument}`: {reason}")]
    InvalidArgument {
        /// The argument's name.
        argument: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A value given as message data cannot be encoded (a function, a symbol, a cycle...).
    #[error("data cannot be encoded: {0}")]
    Encode(String),
    /// A received message's data is not a MessagePack value (`message.value()`).
    #[error("data is not a MessagePack value: {0}")]
    Decode(String),
    /// The node was called back from inside its own driver (it should not happen: events are
    /// delivered after the driver released the node; reported instead of panicking).
    #[error("the node is busy (re-entrant call)")]
    Busy,
    /// Policy `"all"` was given for something that goes to one member (a stream by name).
    #[cfg(feature = "endpoints")]
    #[error("policy \"all\" picks several holders; a stream goes to one")]
    NotOne,
}

/// The node could not join the cluster through a server. The connection was closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The server refused the token (close code 4401).
    #[error("{url} refused the token (close code 4401)")]
    Unauthorized {
        /// The seed.
        url: String,
    },
    /// The server could not authenticate this node's frames, or this node could not
    /// authenticate the server's: the cluster keys differ (close code 4400).
    #[error("{url} could not authenticate our frames: wrong cluster key (close code 4400)")]
    ClusterKey {
        /// The seed.
        url: String,
    },
    /// The server speaks no protocol or application version this node does (close code 4426).
    /// Browser members speak application version 0.
    #[error("{url} speaks no protocol or application version in common (close code 4426)")]
    Version {
        /// The seed.
        url: String,
    },
    /// The server's admission hook refused this node (close code 4406); `reason` is the hook's.
    #[error("{url} did not admit this node (close code 4406): {reason}")]
    NotAdmitted {
        /// The seed.
        url: String,
        /// The hook's reason.
        reason: String,
    },
    /// The server does not accept connections from this page's origin (close code 4403).
    #[error("{url} refused this page's origin (close code 4403)")]
    OriginRefused {
        /// The seed.
        url: String,
    },
    /// The server has too many connections (close code 4429).
    #[error("{url} has too many connections (close code 4429)")]
    TooManyConnections {
        /// The seed.
        url: String,
    },
    /// The server broke the protocol (a failed handshake, text frames),
    /// or closed the connection for a protocol reason of its own.
    #[error("{url} broke the gossip protocol: {reason}")]
    Protocol {
        /// The seed.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The connection failed or closed before the join completed.
    #[error("could not join through {url}: {reason}")]
    Connect {
        /// The seed.
        url: String,
        /// What happened.
        reason: String,
    },
    /// No seed let the node join; the most telling failure comes first.
    #[error("could not join through any seed: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    AllSeedsFailed(Vec<JoinError>),
}

/// A command or request failed in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The addressee is not a known, live member.
    #[error("unknown or unreachable member {0}")]
    UnknownMember(String),
    /// No answer came before the deadline.
    #[error("request to {0} timed out")]
    Timeout(String),
    /// The addressee died or left before it answered.
    #[error("{0} went down before it answered")]
    MemberDown(String),
    /// Too many requests are outstanding.
    #[error("too many outstanding requests")]
    TooManyRequests,
    /// The metadata would exceed the node's limit.
    #[error("metadata of {size} bytes exceeds the {max} byte limit")]
    MetadataTooLarge {
        /// Resulting size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// The node left the cluster (or is leaving).
    #[error("the node has left the cluster")]
    Left,
    /// The stream was closed (by the peer, by this side, or because the peer went down).
    #[error("stream closed (code {code}{})", if .reason.is_empty() { String::new() } else { format!(": {}", .reason) })]
    StreamClosed {
        /// The close code (see `gossip_core::streams::close_code`).
        code: u32,
        /// The reason given.
        reason: String,
    },
    /// As many streams are open as the node allows.
    #[error("too many streams")]
    TooManyStreams,
    /// As many groups are defined as the node allows.
    #[error("too many groups")]
    TooManyGroups,
    /// A replicated-state write or watch exceeds a limit (key, value, keys or bytes per
    /// member, cluster bytes, watches). Nothing was written.
    #[error("{0}")]
    StateLimit(String),
    /// No live member other than this node holds the endpoint name.
    #[cfg(feature = "endpoints")]
    #[error("no live holder of endpoint {0:?}")]
    NoHolder(String),
    /// This node already holds as many endpoint names as it may.
    #[cfg(feature = "endpoints")]
    #[error("this node already holds {max} endpoint names")]
    TooManyNames {
        /// The limit.
        max: usize,
    },
    /// The core refused the command for another reason.
    #[error("{0}")]
    Refused(String),
}

impl GossipError {
    /// The stable code JavaScript sees as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            GossipError::Usage(e) => match e {
                UsageError::InvalidOption { .. } => "INVALID_OPTION",
                UsageError::InvalidArgument { .. } => "INVALID_ARGUMENT",
                UsageError::Encode(_) => "ENCODE",
                UsageError::Decode(_) => "DECODE",
                UsageError::Busy => "BUSY",
                #[cfg(feature = "endpoints")]
                UsageError::NotOne => "NOT_ONE",
            },
            GossipError::Join(e) => e.code(),
            GossipError::Cluster(e) => match e {
                ClusterError::UnknownMember(_) => "UNKNOWN_MEMBER",
                ClusterError::Timeout(_) => "TIMEOUT",
                ClusterError::MemberDown(_) => "MEMBER_DOWN",
                ClusterError::TooManyRequests => "TOO_MANY_REQUESTS",
                ClusterError::MetadataTooLarge { .. } => "METADATA_TOO_LARGE",
                ClusterError::Left => "LEFT",
                ClusterError::StreamClosed { .. } => "STREAM_CLOSED",
                ClusterError::TooManyStreams => "TOO_MANY_STREAMS",
                ClusterError::TooManyGroups => "TOO_MANY_GROUPS",
                ClusterError::StateLimit(_) => "STATE_LIMIT",
                #[cfg(feature = "endpoints")]
                ClusterError::NoHolder(_) => "NO_HOLDER",
                #[cfg(feature = "endpoints")]
                ClusterError::TooManyNames { .. } => "TOO_MANY_NAMES",
                ClusterError::Refused(_) => "REFUSED",
            },
        }
    }
}

impl JoinError {
    /// The stable code JavaScript sees as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            JoinError::Unauthorized { .. } => "UNAUTHORIZED",
            JoinError::ClusterKey { .. } => "CLUSTER_KEY",
            JoinError::OriginRefused { .. } => "ORIGIN_REFUSED",
            JoinError::NotAdmitted { .. } => "NOT_ADMITTED",
            JoinError::Version { .. } => "VERSION",
            JoinError::TooManyConnections { .. } => "TOO_MANY_CONNECTIONS",
            JoinError::Protocol { .. } => "PROTOCOL",
            JoinError::Connect { .. } => "CONNECT",
            JoinError::AllSeedsFailed(all) => all.first().map_or("CONNECT", JoinError::code),
        }
    }

    /// What a WebSocket close before the join completed means (codes of docs/DRIVERS.md).
    pub fn from_close(url: &str, code: u16, reason: &str) -> JoinError {
        let url = url.to_owned();
        let said = |what: &str| {
            if reason.is_empty() {
                format!("{what} (close code {code})")
            } else {
                format!("{what} (close code {code}: {reason})")
            }
        };
        match CloseCode::from_code(code) {
            // A failed handshake is a protocol matter, not a key: only frames use the key.
            Some(CloseCode::BadFrame) if reason.contains("handshake") => JoinError::Protocol {
                url,
                reason: said("the link handshake failed"),
            },
            Some(CloseCode::BadFrame) => JoinError::ClusterKey { url },
            Some(CloseCode::Version) => JoinError::Version { url },
            Some(CloseCode::NotAdmitted) => JoinError::NotAdmitted {
                url,
                reason: reason
                    .strip_prefix("not admitted: ")
                    .unwrap_or(reason)
                    .to_owned(),
            },
            Some(CloseCode::Unauthorized) => JoinError::Unauthorized { url },
            Some(CloseCode::Forbidden) => JoinError::OriginRefused { url },
            Some(CloseCode::TooManyConnections) => JoinError::TooManyConnections { url },
            Some(
                CloseCode::SlowConsumer
                | CloseCode::TooLarge
                | CloseCode::BinaryOnly
                | CloseCode::NotVerified,
            ) => JoinError::Protocol {
                url,
                reason: said("the server closed the connection"),
            },
            Some(CloseCode::GoingAway) => JoinError::Connect {
                url,
                reason: said("the server is shutting down"),
            },
            Some(CloseCode::Abnormal) => JoinError::Connect {
                url,
                reason: format!("connection failed or dropped (close code {code})"),
            },
            _ => JoinError::Connect {
                url,
                reason: said("connection closed"),
            },
        }
    }

    /// Why this node closed its own link, as the error a pending `create()` (or a
    /// `disconnected` listener) sees. `verify_within_ms` is the connect timeout the session's
    /// deadline used.
    pub fn from_fault(url: &str, fault: Fault, verify_within_ms: u64) -> JoinError {
        let url = url.to_owned();
        match fault {
            Fault::Foreign(_) => JoinError::ClusterKey { url },
            Fault::Unverified | Fault::Unlinked => JoinError::Connect {
                url,
                reason: format!("no answer within {verify_within_ms} ms"),
            },
            other => JoinError::Protocol {
                url,
                reason: other.to_string(),
            },
        }
    }

    /// How much this failure tells the user: a refusal (wrong key, token, origin) says more
    /// than "could not connect", so it is the one reported when every seed failed.
    pub fn weight(&self) -> u8 {
        match self {
            JoinError::ClusterKey { .. }
            | JoinError::Unauthorized { .. }
            | JoinError::NotAdmitted { .. }
            | JoinError::Version { .. }
            | JoinError::OriginRefused { .. } => 3,
            JoinError::Protocol { .. } | JoinError::TooManyConnections { .. } => 2,
            JoinError::Connect { .. } => 1,
            JoinError::AllSeedsFailed(_) => 0,
        }
    }

    /// Every seed failed: the most telling failures first (stable among equals).
    pub fn all_failed(mut failures: Vec<JoinError>) -> JoinError {
        gossip_core::sort::stable_by_key(&mut failures, |e| core::cmp::Reverse(e.weight()));
        JoinError::AllSeedsFailed(failures)
    }
}

impl From<CommandError> for GossipError {
    fn from(e: CommandError) -> Self {
        let cluster = match e {
            CommandError::Left => ClusterError::Left,
            CommandError::UnknownMember(id) => ClusterError::UnknownMember(id.to_string()),
            CommandError::MetadataTooLarge { size, max } => {
                ClusterError::MetadataTooLarge { size, max }
            }
            CommandError::TooManyRequests => ClusterError::TooManyRequests,
            CommandError::Stream(StreamError::TooManyStreams) => ClusterError::TooManyStreams,
            CommandError::Stream(
                StreamError::Closed | StreamError::UnknownStream | StreamError::NotOpen,
            ) => ClusterError::StreamClosed {
                code: gossip_core::streams::close_code::NORMAL,
                reason: String::new(),
            },
            CommandError::Encode(e) => return UsageError::Encode(e.to_string()).into(),
            other => ClusterError::Refused(other.to_string()),
        };
        cluster.into()
    }
}

#[cfg(feature = "state")]
impl From<gossip_core::state::StateError> for GossipError {
    fn from(e: gossip_core::state::StateError) -> Self {
        use gossip_core::state::StateError;
        match e {
            StateError::Left => ClusterError::Left.into(),
            StateError::Limit(_) | StateError::TooManyWatches { .. } => {
                ClusterError::StateLimit(e.to_string()).into()
            }
            StateError::Encode(e) => UsageError::Encode(e.to_string()).into(),
            other => ClusterError::Refused(other.to_string()).into(),
        }
    }
}

#[cfg(feature = "endpoints")]
impl From<gossip_core::endpoints::EndpointError> for GossipError {
    fn from(e: gossip_core::endpoints::EndpointError) -> Self {
        use gossip_core::endpoints::EndpointError;
        match e {
            // A name the core's `check_name` refuses (empty, too long, other characters).
            EndpointError::Name(n) => UsageError::InvalidArgument {
                argument: "name",
                reason: n.to_string(),
            }
            .into(),
            EndpointError::TooManyNames { max } => ClusterError::TooManyNames { max }.into(),
            EndpointError::State(s) => s.into(),
            EndpointError::NoHolder(name) => ClusterError::NoHolder(name).into(),
            EndpointError::NotOne => UsageError::NotOne.into(),
            EndpointError::Command(c) => c.into(),
            other => ClusterError::Refused(other.to_string()).into(),
        }
    }
}

impl From<GroupError> for GossipError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::TooManyGroups(_) => ClusterError::TooManyGroups.into(),
            other => ClusterError::Refused(other.to_string()).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_map_to_clear_errors() {
        let url = "ws://127.0.0.1:1/gossip/ws";
        let key = JoinError::from_close(url, 4400, "");
        assert_eq!(key.code(), "CLUSTER_KEY");
        assert!(key.to_string().contains("wrong cluster key"), "{key}");
        assert_eq!(JoinError::from_close(url, 4401, "").code(), "UNAUTHORIZED");
        assert_eq!(
            JoinError::from_close(url, 4403, "").code(),
            "ORIGIN_REFUSED"
        );
        let version = JoinError::from_close(url, 4426, "handshake failed: no common version");
        assert_eq!(version.code(), "VERSION");
        assert!(version.to_string().contains("4426"), "{version}");
        let refused = JoinError::from_close(url, 4406, "not admitted: no session cookie");
        assert_eq!(refused.code(), "NOT_ADMITTED");
        assert!(
            refused
                .to_string()
                .ends_with("(close code 4406): no session cookie"),
            "{refused}"
        );
        let handshake = JoinError::from_close(url, 4400, "handshake failed: signature");
        assert_eq!(handshake.code(), "PROTOCOL");
        assert_eq!(
            JoinError::from_close(url, 4429, "").code(),
            "TOO_MANY_CONNECTIONS"
        );
        let slow = JoinError::from_close(url, 4408, "send queue overflowed");
        assert_eq!(slow.code(), "PROTOCOL");
        assert!(slow.to_string().contains("send queue overflowed"));
        assert_eq!(JoinError::from_close(url, 1006, "").code(), "CONNECT");
        let late = JoinError::from_close(url, CloseCode::NotVerified.code(), "no verified frame");
        assert_eq!(late.code(), "PROTOCOL");
        assert_eq!(JoinError::from_close(url, 1002, "").code(), "CONNECT");
    }

    #[test]
    fn own_closes_map_by_fault() {
        let url = "ws://a";
        let key = JoinError::from_fault(
            url,
            Fault::Foreign(gossip_core::DropReason::Unauthenticated),
            5_000,
        );
        assert_eq!(key.code(), "CLUSTER_KEY");
        let late = JoinError::from_fault(url, Fault::Unverified, 5_000);
        assert_eq!(late.code(), "CONNECT");
        assert!(
            late.to_string().contains("no answer within 5000 ms"),
            "{late}"
        );
        let mismatch = JoinError::from_fault(
            url,
            Fault::Handshake(gossip_core::link::HandshakeError::WrongPeer),
            5_000,
        );
        assert_eq!(mismatch.code(), "PROTOCOL");
        assert!(mismatch.to_string().contains("handshake"), "{mismatch}");
    }

    #[test]
    fn the_most_telling_failure_names_the_whole() {
        let url = "ws://a";
        let all = JoinError::all_failed(vec![
            JoinError::from_close(url, 1006, ""),
            JoinError::from_close(url, 4401, ""),
            JoinError::from_close(url, 4408, ""),
        ]);
        assert_eq!(all.code(), "UNAUTHORIZED");
        let GossipError::Join(JoinError::AllSeedsFailed(v)) = GossipError::from(all) else {
            panic!("not AllSeedsFailed");
        };
        assert_eq!(
            v.iter().map(JoinError::code).collect::<Vec<_>>(),
            ["UNAUTHORIZED", "PROTOCOL", "CONNECT"]
        );
        assert_eq!(JoinError::all_failed(Vec::new()).code(), "CONNECT");
    }

    #[cfg(feature = "endpoints")]
    #[test]
    fn endpoint_refusals_have_their_own_codes() {
        use gossip_core::endpoints::{EndpointError, NameError};
        use gossip_core::state::StateError;
        let bad = GossipError::from(EndpointError::Name(NameError::BadChar(' ')));
        assert_eq!(bad.code(), "INVALID_ARGUMENT");
        assert!(bad.to_string().contains("`name`"), "{bad}");
        let long = GossipError::from(EndpointError::Name(NameError::TooLong { len: 65, max: 64 }));
        assert_eq!(long.code(), "INVALID_ARGUMENT");
        assert!(long.to_string().contains("65"), "{long}");
        let none = GossipError::from(EndpointError::NoHolder("orders".into()));
        assert_eq!(none.code(), "NO_HOLDER");
        assert!(none.to_string().contains("orders"), "{none}");
        assert_eq!(GossipError::from(EndpointError::NotOne).code(), "NOT_ONE");
        assert_eq!(
            GossipError::from(EndpointError::TooManyNames { max: 64 }).code(),
            "TOO_MANY_NAMES"
        );
        assert_eq!(
            GossipError::from(EndpointError::State(StateError::Left)).code(),
            "LEFT"
        );
        assert_eq!(
            GossipError::from(EndpointError::Command(CommandError::TooManyRequests)).code(),
            "TOO_MANY_REQUESTS"
        );
    }

    #[test]
    fn core_refusals_keep_their_meaning() {
        let id = gossip_core::NodeId::from_bytes([3; 32]);
        let e = GossipError::from(CommandError::UnknownMember(id));
        assert_eq!(e.code(), "UNKNOWN_MEMBER");
        assert!(e.to_string().contains(&id.to_string()));
        assert_eq!(GossipError::from(CommandError::Left).code(), "LEFT");
        assert_eq!(
            GossipError::from(CommandError::MetadataTooLarge { size: 9, max: 4 }).code(),
            "METADATA_TOO_LARGE"
        );
        assert_eq!(
            GossipError::from(GroupError::TooManyGroups(256)).code(),
            "TOO_MANY_GROUPS"
        );
    }
}
