//! How a connection between two members works, the same for every driver.
//!
//! - [`handshake`]: the authenticated per-connection handshake (each side signs the other's
//!   fresh nonce) that runs before any frame and alone binds a connection to a member.
//! - [`session`]: one connection's rules (handshake first, first verified frame, refused frames,
//!   deadline), as decisions the driver executes ([`Session`], [`Decision`]).
//! - [`close`]: the codes a link is closed with ([`CloseCode`]).
//! - [`route`]: where a [`Transmit`](crate::Transmit) goes ([`route()`](route::route)).
//! - [`relay`]: which server relays a node that cannot listen.
//! - [`pump`]: bytes waiting for stream credit ([`Outbox`]).
//! - [`drops`]: what a driver drops around the engine ([`LinkDrop`]).
//!
//! A browser cannot listen, so its address is "relayed via the server it connected to"
//! ([`Address::Relayed`](crate::Address::Relayed)), and it must know that server's id before it
//! signs its own alive record: the handshake proves it (the acceptor's challenge names it, its
//! answer proves it), so a browser adopts as its relay only a server that proved who it is.

pub mod close;
pub mod drops;
pub mod handshake;
pub mod pump;
pub mod relay;
pub mod route;
pub mod session;

pub use close::CloseCode;
pub use drops::LinkDrop;
pub use handshake::{Handshake, HandshakeError, Step, VersionRange, Versions, is_handshake};
pub use pump::Outbox;
pub use route::{DialBudget, Links, Route};
pub use session::{Decision, Fault, Session, SessionConfig};
