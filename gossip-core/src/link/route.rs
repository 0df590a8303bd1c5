//! Where a [`Transmit`] goes: the routing table every driver follows, as code.
//!
//! The driver describes what it has through [`Links`] (connections bound to members or open to
//! addresses, a UDP socket, room for another connection) and executes the [`Route`] that
//! [`route`] returns. In order:
//!
//! 0. A node with a single uplink (a browser) sends everything over it: its server routes on
//!    (the core already wrapped frames for other members in relay messages).
//! 1. `t.node` has a connection bound to it (by its first verified frame, or dialed for it):
//!    that connection. The first live route to a member sticks until it closes, so frames of
//!    one stream never overtake each other on two connections.
//! 2. `t.to` is `Relayed(x)` and nothing is bound: dropped ([`LinkDrop::NoRoute`]); only the
//!    connection `x` holds reaches it.
//! 3. `t.to` is `Udp(a)`, the frame fits [`Config::udp_budget`](crate::Config::udp_budget), is not
//!    `reliable`, and the driver has a UDP socket: a datagram to `a`.
//! 4. Otherwise a reliable link: the connection open to the address, else a dial. For a `Udp`
//!    address the member's `Tcp` or `WebSocket` address is used, else `Tcp` at the same socket
//!    address (a node binds both on one port). A dial over the connection budget is dropped
//!    ([`LinkDrop::TooManyConnections`]); an address no transport dials is dropped
//!    ([`LinkDrop::NoRoute`]).

use core::net::SocketAddr;

use crate::identity::NodeId;
use crate::membership::Member;
use crate::{Address, Transmit};

use super::drops::LinkDrop;

/// Whether the driver can open another connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialBudget {
    /// It can.
    Available,
    /// Not now: the connection limit is reached.
    Exhausted,
    /// It never dials per frame (a browser holds one uplink).
    Unsupported,
}

/// What a driver holds to send frames with.
pub trait Links {
    /// How the driver names a connection.
    type Conn: Copy;

    /// The one connection every frame goes over, for a node that has exactly one (a browser).
    fn uplink(&self) -> Option<Self::Conn> {
        None
    }

    /// The live connection bound to `node`.
    fn bound(&self, node: &NodeId) -> Option<Self::Conn>;

    /// The live connection open to `addr`.
    fn open_to(&self, addr: &Address) -> Option<Self::Conn>;

    /// The driver has a UDP socket.
    fn has_udp(&self) -> bool;

    /// Whether a dial is possible now.
    fn dial_budget(&self) -> DialBudget;
}

/// How to send one [`Transmit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<C> {
    /// Over this open connection.
    Connection(C),
    /// As a UDP datagram to this address.
    Datagram(SocketAddr),
    /// Dial this address (TCP, or a `ws://`/`wss://` URL), bind it to `t.node`, send over it.
    Dial(Address),
    /// Nowhere: count it.
    Drop(LinkDrop),
}

/// Whether a driver can dial `addr` (TCP, or a WebSocket URL rather than a connection-local name).
pub fn dialable(addr: &Address) -> bool {
    match addr {
        Address::Tcp(_) => true,
        Address::WebSocket(url) => url.starts_with("ws://") || url.starts_with("wss://"),
        _ => false,
    }
}

/// Where `t` goes. `member` is what the engine knows of `t.node` (its addresses);
/// `udp_budget` is [`Config::udp_budget`](crate::Config::udp_budget).
pub fn route<L: Links>(
    t: &Transmit,
    links: &L,
    member: Option<&Member>,
    udp_budget: usize,
) -> Route<L::Conn> {
    if let Some(up) = links.uplink() {
        return Route::Connection(up);
    }
    if let Some(c) = t.node.and_then(|n| links.bound(&n)) {
        return Route::Connection(c);
    }
    let reliable = match &t.to {
        Address::Relayed(_) => return Route::Drop(LinkDrop::NoRoute),
        Address::Udp(addr) => {
            if links.has_udp() && !t.reliable && t.bytes.len() <= udp_budget {
                return Route::Datagram(*addr);
            }
            member
                .filter(|m| Some(m.id) == t.node)
                .and_then(|m| {
                    m.addrs
                        .iter()
                        .find(|a| matches!(a, Address::Tcp(_) | Address::WebSocket(_)))
                })
                .cloned()
                .unwrap_or(Address::Tcp(*addr))
        }
        other => other.clone(),
    };
    if let Some(c) = links.open_to(&reliable) {
        return Route::Connection(c);
    }
    if !dialable(&reliable) {
        return Route::Drop(LinkDrop::NoRoute);
    }
    match links.dial_budget() {
        DialBudget::Available => Route::Dial(reliable),
        DialBudget::Exhausted => Route::Drop(LinkDrop::TooManyConnections),
        DialBudget::Unsupported => Route::Drop(LinkDrop::NoRoute),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, NODE_ID_LEN};
    use crate::{Config, Instant, Keyring, Node};
    use std::collections::HashMap;

    #[derive(Default)]
    struct Table {
        uplink: Option<u32>,
        bound: HashMap<NodeId, u32>,
        open: HashMap<Address, u32>,
        udp: bool,
        budget: Option<DialBudget>,
    }

    impl Links for Table {
        type Conn = u32;
        fn uplink(&self) -> Option<u32> {
            self.uplink
        }
        fn bound(&self, node: &NodeId) -> Option<u32> {
            self.bound.get(node).copied()
        }
        fn open_to(&self, addr: &Address) -> Option<u32> {
            self.open.get(addr).copied()
        }
        fn has_udp(&self) -> bool {
            self.udp
        }
        fn dial_budget(&self) -> DialBudget {
            self.budget.unwrap_or(DialBudget::Available)
        }
    }

    const BUDGET: usize = 1_400;

    fn sock(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn tx(to: Address, node: Option<NodeId>, len: usize, reliable: bool) -> Transmit {
        Transmit {
            to,
            node,
            bytes: vec![0; len],
            reliable,
        }
    }

    /// A member with these addresses, as a real engine knows it.
    fn member_with(addrs: Vec<Address>) -> (Node, NodeId) {
        let id = Identity::from_secret_bytes([5; 32]);
        let nid = id.id();
        let node = Node::new(
            Config::local(),
            id,
            Keyring::unencrypted(),
            addrs,
            [0; 32],
            Instant::from_micros(0),
            1_000,
        );
        (node, nid)
    }

    #[test]
    fn a_bound_connection_wins_over_every_address() {
        let n = NodeId::from_bytes([9; NODE_ID_LEN]);
        let mut t = Table {
            udp: true,
            ..Table::default()
        };
        t.bound.insert(n, 7);
        t.open.insert(Address::Tcp(sock(1)), 8);
        for to in [
            Address::Udp(sock(1)),
            Address::Tcp(sock(1)),
            Address::Relayed(n),
        ] {
            assert_eq!(
                route(&tx(to, Some(n), 10, false), &t, None, BUDGET),
                Route::Connection(7)
            );
        }
        // Without `t.node` the binding is not consulted.
        assert_eq!(
            route(&tx(Address::Tcp(sock(1)), None, 10, true), &t, None, BUDGET),
            Route::Connection(8)
        );
    }

    #[test]
    fn a_relayed_member_without_its_connection_is_unreachable() {
        let n = NodeId::from_bytes([9; NODE_ID_LEN]);
        let t = Table::default();
        assert_eq!(
            route(
                &tx(Address::Relayed(n), Some(n), 10, false),
                &t,
                None,
                BUDGET
            ),
            Route::Drop(LinkDrop::NoRoute)
        );
    }

    #[test]
    fn small_unreliable_frames_go_by_datagram_when_there_is_a_socket() {
        let with_udp = Table {
            udp: true,
            ..Table::default()
        };
        let to = Address::Udp(sock(2));
        assert_eq!(
            route(
                &tx(to.clone(), None, BUDGET, false),
                &with_udp,
                None,
                BUDGET
            ),
            Route::Datagram(sock(2))
        );
        // Too big, reliable, or no socket: TCP at the same address.
        for (len, reliable, t) in [
            (BUDGET + 1, false, &with_udp),
            (10, true, &with_udp),
            (10, false, &Table::default()),
        ] {
            assert_eq!(
                route(&tx(to.clone(), None, len, reliable), t, None, BUDGET),
                Route::Dial(Address::Tcp(sock(2))),
                "len {len} reliable {reliable}"
            );
        }
    }

    #[test]
    fn a_big_frame_for_a_udp_member_uses_its_reliable_address() {
        let ws = Address::WebSocket("ws://127.0.0.1:3/gossip/ws".into());
        let (node, id) = member_with(vec![Address::Udp(sock(3)), ws.clone()]);
        let me = node.local();
        let t = Table {
            udp: true,
            ..Table::default()
        };
        let big = tx(Address::Udp(sock(3)), Some(id), BUDGET + 1, false);
        assert_eq!(route(&big, &t, Some(me), BUDGET), Route::Dial(ws.clone()));
        let mut open = Table {
            udp: true,
            ..Table::default()
        };
        open.open.insert(ws, 4);
        assert_eq!(route(&big, &open, Some(me), BUDGET), Route::Connection(4));
        // The member record must be the addressee's.
        let other = tx(Address::Udp(sock(3)), None, BUDGET + 1, false);
        assert_eq!(
            route(&other, &t, Some(me), BUDGET),
            Route::Dial(Address::Tcp(sock(3)))
        );
    }

    #[test]
    fn dials_respect_the_budget_and_the_transport() {
        let full = Table {
            budget: Some(DialBudget::Exhausted),
            ..Table::default()
        };
        let tcp = tx(Address::Tcp(sock(4)), None, 10, true);
        assert_eq!(
            route(&tcp, &full, None, BUDGET),
            Route::Drop(LinkDrop::TooManyConnections)
        );
        let t = Table::default();
        let wss = Address::WebSocket("wss://example.test/gossip/ws".into());
        assert_eq!(
            route(&tx(wss.clone(), None, 10, true), &t, None, BUDGET),
            Route::Dial(wss)
        );
        // A connection-local name (an inbound connection that closed) cannot be dialed.
        let local = Address::WebSocket("conn:12".into());
        assert_eq!(
            route(&tx(local, None, 10, true), &t, None, BUDGET),
            Route::Drop(LinkDrop::NoRoute)
        );
    }

    #[test]
    fn a_node_with_an_uplink_sends_everything_over_it() {
        let n = NodeId::from_bytes([9; NODE_ID_LEN]);
        let browser = Table {
            uplink: Some(1),
            budget: Some(DialBudget::Unsupported),
            ..Table::default()
        };
        for to in [
            Address::Relayed(n),
            Address::Udp(sock(5)),
            Address::Tcp(sock(5)),
        ] {
            assert_eq!(
                route(&tx(to, Some(n), 10, false), &browser, None, BUDGET),
                Route::Connection(1)
            );
        }
        let offline = Table {
            budget: Some(DialBudget::Unsupported),
            ..Table::default()
        };
        assert_eq!(
            route(
                &tx(Address::Tcp(sock(5)), None, 10, true),
                &offline,
                None,
                BUDGET
            ),
            Route::Drop(LinkDrop::NoRoute)
        );
    }
}
