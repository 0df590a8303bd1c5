//! Partial-view overlay: HyParView membership with Plumtree broadcast, for clusters too large for
//! full membership (see `docs/DESIGN.md`, "A target that full membership cannot meet").
//!
//! A [`Node`](crate::Node) knows every member; an [`Overlay`] node knows a handful. It keeps a
//! small *active view* of symmetric links (default 5) and a larger *passive view* of members it
//! could link to (default 30), both refreshed by random walks (Leitão, Pereira, Rodrigues:
//! "HyParView: a membership protocol for reliable gossip-based broadcast", DSN 2007). Broadcasts
//! travel along a spanning tree embedded in the active links, eager on tree links and announced
//! by id on the others, so a lost tree link is repaired by a graft ("Epidemic Broadcast Trees",
//! SRDS 2007).
//!
//! The engine is sans-IO like [`Node`](crate::Node): the driver feeds
//! [`Overlay::handle_packet`] and [`Overlay::handle_timeout`], and drains
//! [`Overlay::poll_transmit`] and [`Overlay::poll_event`]. Every frame goes through the same
//! [`Codec`] pipeline (signed by its sender, encrypted with the cluster key, replay-checked);
//! a broadcast additionally keeps its origin's signature across hops. Active neighbours are
//! watched with heartbeats on idle links and probes after silence; a failed neighbour is
//! replaced from the passive view.
//!
//! The engine is behind the `overlay` cargo feature: no driver runs it yet, and the browser
//! build leaves it out. Its message kinds ([`messages`]) are part of the wire format and always
//! known.

#[cfg(feature = "overlay")]
mod broadcast;
#[cfg(feature = "overlay")]
pub mod config;
#[cfg(feature = "overlay")]
mod engine;
#[cfg(feature = "overlay")]
pub mod event;
#[cfg(feature = "overlay")]
mod hyparview;
pub mod messages;
#[cfg(feature = "overlay")]
pub mod views;

#[cfg(feature = "overlay")]
pub use self::config::OverlayConfig;
#[cfg(feature = "overlay")]
pub use self::engine::Overlay;
#[cfg(feature = "overlay")]
use self::engine::Pending;
#[cfg(feature = "overlay")]
pub use self::event::{OverlayError, OverlayEvent, OverlayStats};
#[cfg(feature = "overlay")]
pub use self::views::{ActivePeer, ActiveView, PassiveView};
