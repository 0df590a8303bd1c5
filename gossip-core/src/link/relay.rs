//! Which server relays a node that cannot listen.
//!
//! A node with no address of its own (a browser, or a native node started without listeners)
//! is reached through a server it dialed: its address is [`Address::Relayed`]`(server)`. The
//! first server whose handshake proves it ([`Decision::Linked`](super::Decision::Linked)) becomes its
//! relay and stays so while that connection lives; when the connection to the relay closes, the
//! node joins again through its seeds, and the next server to link becomes the relay.

use crate::Address;
use crate::identity::NodeId;
use crate::membership::Member;

/// Whether `local` (this node's own record) has an address others can dial.
pub fn listens(local: &Member) -> bool {
    local
        .addrs
        .iter()
        .any(|a| !matches!(a, Address::Relayed(_)))
}

/// `server` proved itself over a new link this node dialed: the relay to adopt (call
/// [`Node::set_addresses`](crate::Node::set_addresses) with `vec![Address::Relayed(it)]`), or
/// `None` when the node listens or still holds a live link to its current relay
/// (`relay_link_open` says whether it does, not counting the new link).
///
/// Linked again to the relay it lost, the node adopts it again: `set_addresses` announces a new
/// incarnation, which outranks the suspicion or death the lost link may have caused.
pub fn adopt(
    local: &Member,
    server: NodeId,
    relay_link_open: impl FnOnce(&NodeId) -> bool,
) -> Option<NodeId> {
    if listens(local) {
        return None;
    }
    match local.relay() {
        Some(current) if relay_link_open(&current) => None,
        _ => Some(server),
    }
}

/// A link bound to `owner` closed: whether the node lost its relay and must join again through
/// its seeds.
pub fn lost_relay(local: &Member, owner: Option<NodeId>) -> bool {
    owner.is_some() && owner == local.relay()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, NODE_ID_LEN};
    use crate::{Config, Instant, Keyring, Node};

    fn node(addrs: Vec<Address>) -> Node {
        Node::new(
            Config::local(),
            Identity::from_secret_bytes([6; 32]),
            Keyring::unencrypted(),
            addrs,
            [0; 32],
            Instant::from_micros(0),
            1_000,
        )
    }

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; NODE_ID_LEN])
    }

    #[test]
    fn a_listening_node_never_adopts_a_relay() {
        let n = node(vec![Address::Tcp(([127, 0, 0, 1], 9).into())]);
        assert!(listens(n.local()));
        assert_eq!(adopt(n.local(), id(2), |_| false), None);
        assert!(!lost_relay(n.local(), Some(id(2))));
    }

    #[test]
    fn the_first_greeter_becomes_the_relay_and_stays_while_its_link_lives() {
        let mut n = node(Vec::new());
        assert!(!listens(n.local()));
        assert_eq!(adopt(n.local(), id(2), |_| true), Some(id(2)));
        n.set_addresses(Instant::from_micros(1), vec![Address::Relayed(id(2))])
            .unwrap();
        assert!(!listens(n.local()), "a relayed address is not a listener");
        // The same server over a second link while the first lives: nothing to change.
        assert_eq!(adopt(n.local(), id(2), |r| *r == id(2)), None);
        // Another server while the relay's link lives: keep the relay.
        assert_eq!(adopt(n.local(), id(3), |r| *r == id(2)), None);
        // The relay's link was lost and the same server greets again: announce it anew.
        assert_eq!(adopt(n.local(), id(2), |_| false), Some(id(2)));
        // The relay's link is gone: the new greeter takes over.
        assert_eq!(adopt(n.local(), id(3), |_| false), Some(id(3)));
    }

    #[test]
    fn only_losing_the_relay_calls_for_a_rejoin() {
        let mut n = node(Vec::new());
        assert!(!lost_relay(n.local(), None));
        assert!(!lost_relay(n.local(), Some(id(2))), "no relay yet");
        n.set_addresses(Instant::from_micros(1), vec![Address::Relayed(id(2))])
            .unwrap();
        assert!(lost_relay(n.local(), Some(id(2))));
        assert!(!lost_relay(n.local(), Some(id(3))));
        assert!(!lost_relay(n.local(), None));
    }
}
