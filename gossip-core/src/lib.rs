#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod address;
pub mod admission;
pub mod config;
pub mod detector;
pub mod drop_reason;
#[cfg(feature = "election")]
pub mod election;
#[cfg(feature = "endpoints")]
pub mod endpoints;
pub mod error;
pub mod event;
pub mod groups;
pub mod hlc;
pub mod identity;
pub mod keyring;
pub mod limits;
pub mod link;
pub mod membership;
pub mod message;
mod msgpack;
pub mod node;
pub mod overlay;
#[cfg(feature = "ownership")]
pub mod ownership;
mod push_tree;
pub mod replay;
pub mod requests;
mod shell;
pub mod sort;
#[cfg(feature = "state")]
pub mod state;
pub mod streams;
pub mod time;
pub mod transmit;
pub mod typed;
#[cfg(feature = "verify-cache")]
mod verified;
pub mod wire;

pub use address::Address;
pub use admission::{Grant, ViewScope};
pub use config::Config;
pub use drop_reason::{DropReason, Refused};
pub use error::{EncodeError, WireError};
pub use event::Event;
pub use hlc::{Hlc, Timestamp};
pub use identity::{Identity, NodeId};
pub use keyring::{ClusterKey, Keyring};
pub use limits::Limits;
pub use membership::{Member, State};
pub use message::Message;
pub use node::{CommandError, Node, Stats, Transmit};
pub use replay::ReplayConfig;
pub use requests::{FailReason, Quorum, QuorumId, QuorumOutcome, RequestId};
pub use time::Instant;
pub use wire::{Codec, Inbound, SignedPacket};
