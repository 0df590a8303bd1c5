//! The tokio driver of `gossip-core`: run a cluster member inside your axum service.
//!
//! See also the crate README (transports, limits, CLI).
//!
//! A [`Gossip`] owns one engine on a task of its own and connects it to the network: an axum
//! WebSocket route you nest in your app ([`Gossip::router`]), a WebSocket client, UDP for small
//! best-effort frames with automatic fallback to TCP (or an open WebSocket) above the UDP budget,
//! and relaying for browser members that reached it over WebSocket. Connections are pooled and
//! reused in both directions; every queue is bounded; a peer that misbehaves is dropped with a
//! counted reason and the node keeps serving everyone else.
//!
//! ```no_run
//! use gossip_server::gossip_core::Config; // the engine, re-exported: one dependency
//! use gossip_server::{Gossip, GossipConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = GossipConfig::new(Config::lan().with_name("api-1"))
//!     .with_bind("127.0.0.1:7946".parse()?)
//!     .with_seed("127.0.0.1:7947")
//!     .with_metadata("role", "api");
//! let gossip = Gossip::start(config).await?;
//! let app: axum::Router = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "hello" }))
//!     .nest("/gossip", gossip.router());
//! gossip.advertise_ws("ws://127.0.0.1:8080/gossip/ws".into()).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! The wire contract with browsers (hello, close codes, status JSON) is in `docs/DRIVERS.md`.
//!
//! Features: none by default (the library alone). `cli` builds the `gossip-node` binary and pulls
//! in what only it needs (clap, tracing-subscriber, serde_json, rmp-serde).

#![deny(missing_docs)]

mod admission;
mod auth;
mod config;
mod conn;
mod driver;
mod election;
mod endpoints;
mod error;
mod handle;
mod identity_file;
mod keys;
mod metrics_export;
mod ownership;
mod quorum;
mod seeds;
mod shared;
mod state;
mod status;
mod stream;
mod tcp;
mod udp;
mod ws;

pub use admission::{Admission, AdmissionRequest};
pub use config::{DriverLimits, GossipConfig};
pub use election::{ElectError, Leadership, Lease};
pub use endpoints::{EndpointReply, EndpointWatch};
pub use error::{GossipError, JoinError, SeedAttempt, SeedProblem, StartError};
pub use handle::{Gossip, Watch};
pub use identity_file::IdentityFileError;
pub use ownership::{OwnershipEvent, OwnershipWatch};
pub use state::{StateChange, StateWatch};
pub use status::{Counters, MemberStatus, Status};
pub use stream::GossipStream;

pub use gossip_core;
