//! How a connection between two members works, the same for every driver.
//!
//! - The hello (this file): the greeting a WebSocket acceptor sends before any frame.
//! - [`close`]: the codes a link is closed with ([`CloseCode`]).
//! - [`session`]: one connection's handshake rules (hello, first verified frame, refused frames,
//!   deadline), as decisions the driver executes ([`Session`], [`Decision`]).
//! - [`route`]: where a [`Transmit`](crate::Transmit) goes ([`route()`](route::route)).
//! - [`relay`]: which server relays a node that cannot listen.
//! - [`pump`]: bytes waiting for stream credit ([`Outbox`]).
//! - [`drops`]: what a driver drops around the engine ([`LinkDrop`]).
//! - [`handshake`]: the authenticated per-connection handshake (each side signs the other's
//!   fresh nonce); defined and tested here, not yet run by the drivers.
//!
//! # The hello
//!
//! A browser cannot listen, so its address is "relayed via the server it connected to"
//! ([`Address::Relayed`](crate::Address::Relayed)), and it must know that server's id before it
//! signs its own alive record. The accepting side of a WebSocket therefore sends one binary
//! message first: [`HELLO_MAGIC`] followed by its node id. The id is a claim, not a proof: the
//! [`Session`] of the dialing side checks that the first frame it verifies from that connection
//! has that origin (see [`Node::handle_packet`](crate::Node::handle_packet)) and closes the
//! connection otherwise.

pub mod close;
pub mod drops;
pub mod handshake;
pub mod pump;
pub mod relay;
pub mod route;
pub mod session;

pub use close::CloseCode;
pub use drops::LinkDrop;
pub use pump::Outbox;
pub use route::{DialBudget, Links, Route};
pub use session::{Decision, Fault, Session, SessionConfig};

use crate::identity::{NODE_ID_LEN, NodeId};

/// The first 8 bytes of a hello. Frames start with a protocol version byte (1), never `G`.
pub const HELLO_MAGIC: &[u8; 8] = b"GSPHELO1";

/// Length of a hello message.
pub const HELLO_LEN: usize = HELLO_MAGIC.len() + NODE_ID_LEN;

/// The message a WebSocket acceptor sends first.
pub fn encode_hello(id: &NodeId) -> Vec<u8> {
    let mut out = Vec::with_capacity(HELLO_LEN);
    out.extend_from_slice(HELLO_MAGIC);
    out.extend_from_slice(id.as_bytes());
    out
}

/// Why a hello was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum HelloError {
    /// The message is not `HELLO_LEN` bytes long.
    #[error("hello of {0} bytes, expected {HELLO_LEN}")]
    Length(usize),
    /// The message does not start with [`HELLO_MAGIC`].
    #[error("not a gossip hello")]
    Magic,
}

/// The server id in a hello.
pub fn decode_hello(bytes: &[u8]) -> Result<NodeId, HelloError> {
    if bytes.len() != HELLO_LEN {
        return Err(HelloError::Length(bytes.len()));
    }
    let (magic, id) = bytes.split_at(HELLO_MAGIC.len());
    if magic != HELLO_MAGIC {
        return Err(HelloError::Magic);
    }
    let mut raw = [0u8; NODE_ID_LEN];
    raw.copy_from_slice(id);
    Ok(NodeId::from_bytes(raw))
}

/// Whether a message is a hello rather than a frame (cheap: the magic only).
pub fn is_hello(bytes: &[u8]) -> bool {
    bytes.starts_with(HELLO_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let id = NodeId::from_bytes([7; NODE_ID_LEN]);
        let hello = encode_hello(&id);
        assert!(is_hello(&hello));
        assert_eq!(decode_hello(&hello), Ok(id));
        assert_eq!(
            decode_hello(&hello[..HELLO_LEN - 1]),
            Err(HelloError::Length(HELLO_LEN - 1))
        );
        let mut bad = hello.clone();
        bad[0] = 1;
        assert_eq!(decode_hello(&bad), Err(HelloError::Magic));
        assert!(!is_hello(&bad));
    }
}
