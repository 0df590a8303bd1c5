//! A frame an engine asks its driver to send.

use crate::address::Address;
use crate::identity::NodeId;

/// A datagram or frame the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to. `Address::Relayed(x)` means: over the connection member `x` holds to this node.
    pub to: Address,
    /// The member it is for, when known: the driver prefers an open connection to it.
    pub node: Option<NodeId>,
    /// The frame.
    pub bytes: Vec<u8>,
    /// It must go over a reliable link (it exceeds the UDP budget, or the message asks for it).
    pub reliable: bool,
}
