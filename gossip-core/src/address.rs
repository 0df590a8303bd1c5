//! Where a member can be reached.

use core::fmt;
use core::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;

/// A transport endpoint of a member, or the member through which it is relayed.
///
/// Browsers cannot listen, so they are reached over the WebSocket they opened to a server member:
/// their address is `Relayed(server)`. Variant names are one letter on the wire to keep probes small.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Address {
    /// `udp://ip:port`: best-effort datagrams up to the UDP budget.
    #[serde(rename = "u")]
    Udp(SocketAddr),
    /// `tcp://ip:port`: length-prefixed frames over a reliable stream.
    #[serde(rename = "t")]
    Tcp(SocketAddr),
    /// `ws://` or `wss://` URL of a WebSocket endpoint.
    #[serde(rename = "w")]
    WebSocket(String),
    /// Reachable only through the connection it holds to this member.
    #[serde(rename = "r")]
    Relayed(NodeId),
}

impl Address {
    /// Whether the transport delivers every byte in order (anything but UDP).
    pub fn is_reliable(&self) -> bool {
        !matches!(self, Address::Udp(_))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Udp(a) => write!(f, "udp://{a}"),
            Address::Tcp(a) => write!(f, "tcp://{a}"),
            Address::WebSocket(url) => f.write_str(url),
            Address::Relayed(via) => write!(f, "relay://{via}"),
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
