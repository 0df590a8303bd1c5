//! The browser driver of `gossip-core`: a page (or a Node.js process) as a full cluster member.
//!
//! One core node runs in the page. It joins a native cluster through a server's WebSocket
//! (`ws://host/gossip/ws`, see docs/DRIVERS.md), relays everything through that connection,
//! and re-joins through the next seed when its server goes away. Time comes from
//! `performance.now()`, randomness from `crypto.getRandomValues`, timers from `setTimeout`.
//!
//! The JavaScript API (`GossipNode`, `Message`, `Group`, `GossipStream`) is described in the
//! package README (`gossip-wasm/npm/README.md`). Outside `wasm32` only the platform-neutral
//! parts build ([`error`], [`msgpack`]), so the workspace compiles and tests them natively.

#![deny(missing_docs)]

pub mod error;
pub mod msgpack;

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod driver;
#[cfg(target_arch = "wasm32")]
mod js;
#[cfg(target_arch = "wasm32")]
mod services;
#[cfg(any(target_arch = "wasm32", test))]
mod small_map;

#[cfg(all(test, target_arch = "wasm32"))]
mod browser_tests;

#[cfg(target_arch = "wasm32")]
pub use api::{GossipNode, GossipStream, Group, Message};
pub use error::{ClusterError, GossipError, JoinError, UsageError};
