#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod address;
pub mod error;
pub mod hlc;
pub mod identity;
pub mod keyring;
pub mod limits;
pub mod message;
pub mod replay;
pub mod wire;

pub use address::Address;
pub use error::{EncodeError, WireError};
pub use hlc::{Hlc, Timestamp};
pub use identity::{Identity, NodeId};
pub use keyring::{ClusterKey, Keyring};
pub use limits::Limits;
pub use message::Message;
pub use replay::ReplayConfig;
pub use wire::{Codec, Inbound, SignedPacket};
pub mod config;
pub mod event;
pub mod membership;
pub mod node;
pub mod time;

pub use config::Config;
pub use event::Event;
pub use membership::{Member, State};
pub use node::{CommandError, Node, Stats, Transmit};
pub use time::Instant;
