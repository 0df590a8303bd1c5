//! What a node is started with.

use std::net::SocketAddr;
use std::time::Duration;

use gossip_core::link::handshake::{VersionRange, Versions};
use gossip_core::{ClusterKey, Config, Identity};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::StartError;

/// Settings of a [`Gossip`](crate::Gossip) node: the engine's [`Config`] plus the transports,
/// the door (token, origins) and the driver's limits.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GossipConfig {
    /// The engine's settings (timings, limits, the node's name).
    pub core: Config,
    /// The node's key pair; generated from the OS RNG when `None`.
    pub identity: Option<Identity>,
    /// A file holding the node's key pair, created (mode 0600) with a new one when missing, so a
    /// restarted node keeps its id. Used when `identity` is `None`.
    pub identity_file: Option<std::path::PathBuf>,
    /// The cluster key that encrypts every frame; `None` runs in plain-text development mode
    /// (frames are still signed).
    pub cluster_key: Option<ClusterKey>,
    /// Further keys accepted from others but never used to encrypt: during a key rotation, the
    /// key being introduced or the one being retired (see docs/SECURITY.md). At most
    /// `gossip_core::keyring::MAX_KEYS - 1`; requires `cluster_key`.
    pub accepted_keys: Vec<ClusterKey>,
    /// Listen for UDP datagrams here.
    pub udp: Option<SocketAddr>,
    /// Listen for TCP connections here. When equal to `udp` (port 0 included), both share one port,
    /// so a `host:port` seed reaches either.
    pub tcp: Option<SocketAddr>,
    /// The IP other members dial this node at, when it listens on every interface (`0.0.0.0` or
    /// `[::]`); the bound ports are kept.
    pub advertise: Option<std::net::IpAddr>,
    /// The public `ws://` or `wss://` URL of this node's WebSocket route, advertised to the
    /// cluster. Set it when you mount [`Gossip::router`](crate::Gossip::router) in your own
    /// service; [`Gossip::serve`](crate::Gossip::serve) sets it itself.
    pub ws_url: Option<String>,
    /// Members to join through: `host:port` (every A/AAAA record, over TCP), `tcp://`, `udp://`,
    /// `ws://`/`wss://` URLs, or `srv+<name>` (an SRV record's targets).
    pub seeds: Vec<String>,
    /// Metadata set before joining.
    pub metadata: Vec<(String, Vec<u8>)>,
    /// A bearer token WebSocket clients must present (header, `?token=` or subprotocol `bearer.<t>`).
    pub token: Option<String>,
    /// Token presented when this node dials a WebSocket seed.
    pub dial_token: Option<String>,
    /// `Origin` values allowed on the WebSocket route; empty allows any (and requests without one).
    pub allowed_origins: Vec<String>,
    /// Decides which WebSocket clients without the token join as admitted members (without the
    /// cluster key), and what each may do. See [`Admission`](crate::Admission).
    pub admission: Option<crate::Admission>,
    /// Certificates trusted when dialing `wss://`, besides the public web roots: a private CA, or
    /// a self-signed server certificate.
    pub tls_roots: Vec<CertificateDer<'static>>,
    /// The protocol and application versions this node speaks. A link (TCP, WebSocket) is made
    /// only with a peer whose ranges overlap both; see [`GossipConfig::with_app_versions`].
    pub versions: Versions,
    /// Limits of the driver.
    pub limits: DriverLimits,
    /// While this node knows no other live member, it re-resolves its seeds and joins again this
    /// often; otherwise every 12 intervals (a minute by default), to follow DNS changes.
    pub rejoin_interval: Duration,
    /// How long a graceful shutdown keeps gossiping the leave before closing.
    pub leave_drain: Duration,
}

/// Bounds on what peers can make the driver hold. Every queue is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverLimits {
    /// Connections of members (TCP and WebSocket: the ones this node dialed, and accepted ones
    /// once their peer proved membership) beyond which no more are dialed or admitted.
    pub max_connections: usize,
    /// Accepted connections whose peer has not proven membership yet, beyond which new inbound
    /// ones are refused (a budget of their own: a flood of silent connections cannot take the
    /// slots of members' connections).
    pub max_pending_connections: usize,
    /// Frames queued for one connection; a peer that lets it fill is too slow and is disconnected.
    pub conn_queue: usize,
    /// Frames queued from all transports for the engine; a full queue drops UDP datagrams and
    /// pauses reading from connections.
    pub inbound_queue: usize,
    /// Largest frame accepted on any transport (also the WebSocket message limit).
    pub max_frame: usize,
    /// Time allowed to dial a connection (TCP connect plus WebSocket handshake).
    pub dial_timeout: std::time::Duration,
    /// Incoming streams waiting for [`Gossip::accept_stream`](crate::Gossip::accept_stream).
    pub accept_queue: usize,
    /// Bytes buffered per stream direction in the driver.
    pub stream_buffer: usize,
    /// An accepted connection on which no frame from a member verified within this long is
    /// closed with 4428 (`CloseCode::NotVerified`): an idle or replaying peer must not hold a
    /// slot of `max_pending_connections` for long. See `gossip_core::link::session`.
    pub verify_within: std::time::Duration,
}

impl Default for DriverLimits {
    fn default() -> Self {
        DriverLimits {
            max_connections: 4096,
            max_pending_connections: 256,
            conn_queue: 1024,
            inbound_queue: 8192,
            max_frame: gossip_core::Limits::default().max_frame_bytes,
            dial_timeout: Duration::from_secs(5),
            accept_queue: 64,
            stream_buffer: 256 * 1024,
            verify_within: Duration::from_millis(
                gossip_core::link::session::DEFAULT_VERIFY_WITHIN_MS,
            ),
        }
    }
}

impl GossipConfig {
    /// Settings with no transport yet: add `udp`/`tcp` listeners, [`Gossip::serve`](crate::Gossip::serve)
    /// or mount the router.
    pub fn new(core: Config) -> Self {
        GossipConfig {
            core,
            identity: None,
            identity_file: None,
            cluster_key: None,
            accepted_keys: Vec::new(),
            udp: None,
            tcp: None,
            ws_url: None,
            seeds: Vec::new(),
            metadata: Vec::new(),
            token: None,
            dial_token: None,
            allowed_origins: Vec::new(),
            admission: None,
            advertise: None,
            tls_roots: Vec::new(),
            versions: Versions::DEFAULT,
            limits: DriverLimits::default(),
            rejoin_interval: Duration::from_secs(5),
            leave_drain: Duration::from_millis(500),
        }
    }

    /// Listens for UDP and TCP on one address (port 0 picks a port free for both).
    pub fn with_bind(mut self, addr: SocketAddr) -> Self {
        self.udp = Some(addr);
        self.tcp = Some(addr);
        self
    }

    /// Advertises `ip` (with the bound ports) when the node listens on every interface.
    pub fn with_advertise(mut self, ip: std::net::IpAddr) -> Self {
        self.advertise = Some(ip);
        self
    }

    /// Keeps the node's identity in `path` (see [`GossipConfig::identity_file`]): the first start
    /// creates it, later ones load it and come back with the same id.
    pub fn with_identity_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.identity_file = Some(path.into());
        self
    }

    /// The application versions this node understands, `min` to `max` (0 to 0 by default): a
    /// peer whose range has none of them is refused at the link handshake, with
    /// [`SeedProblem::Version`](crate::SeedProblem::Version) on the joining side and a WARN log on
    /// the refusing one. During a rolling upgrade from version 1 to 2, run 1-2 everywhere first.
    /// Browser members speak application version 0.
    pub fn with_app_versions(mut self, min: u16, max: u16) -> Self {
        self.versions.app = VersionRange::new(min, max);
        self
    }

    /// Sets the cluster key.
    pub fn with_key(mut self, key: ClusterKey) -> Self {
        self.cluster_key = Some(key);
        self
    }

    /// Also accepts frames sealed with `key` (see [`GossipConfig::accepted_keys`]).
    pub fn with_accepted_key(mut self, key: ClusterKey) -> Self {
        self.accepted_keys.push(key);
        self
    }

    /// Adds a seed.
    pub fn with_seed(mut self, seed: impl Into<String>) -> Self {
        self.seeds.push(seed.into());
        self
    }

    /// Adds a metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Trusts every certificate in `pem` when dialing `wss://` (see [`GossipConfig::tls_roots`]).
    pub fn with_tls_roots_pem(mut self, pem: &[u8]) -> Result<Self, StartError> {
        let before = self.tls_roots.len();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| StartError::Config(format!("TLS root PEM: {e}")))?;
            self.tls_roots.push(cert);
        }
        if self.tls_roots.len() == before {
            return Err(StartError::Config(
                "TLS root PEM holds no certificate".into(),
            ));
        }
        Ok(self)
    }

    /// Requires (and presents, when dialing) a bearer token on WebSocket connections.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.dial_token = Some(token.clone());
        self.token = Some(token);
        self
    }

    /// Lets WebSocket clients without the token join as admitted members, as `admission`
    /// decides (see [`Admission`](crate::Admission)).
    pub fn with_admission(mut self, admission: crate::Admission) -> Self {
        self.admission = Some(admission);
        self
    }
}
