//! [`Gossip`]: the cloneable handle users hold.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use gossip_core::{Address, Event, Identity, Instant, Member, Node, NodeId, RequestId};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::GossipConfig;
use crate::driver::{Driver, DriverParts, Job};
use crate::error::{GossipError, JoinError, StartError};
use crate::shared::Shared;
use crate::status::Status;
use crate::stream::{GossipStream, StreamTable};

/// A running node. Clone it freely: every clone drives the same node. The node stops on
/// [`Gossip::shutdown`] (leaving the cluster), on [`Gossip::kill`], or when every clone (and the
/// router) is dropped.
#[derive(Clone, Debug)]
pub struct Gossip {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    id: NodeId,
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
    events: broadcast::Sender<Event>,
    accept: tokio::sync::Mutex<mpsc::Receiver<GossipStream>>,
    driver: Mutex<Option<tokio::task::JoinHandle<()>>>,
    udp_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
}

impl Gossip {
    /// Binds the configured listeners, starts the node and joins its seeds (retrying while it
    /// knows nobody). Must run inside a tokio runtime.
    pub async fn start(config: GossipConfig) -> Result<Gossip, StartError> {
        let random_secret = || {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| StartError::Random(e.to_string()))?;
            Ok(secret)
        };
        let identity = match (config.identity, &config.identity_file) {
            (Some(i), _) => i,
            (None, Some(path)) => crate::identity_file::load_or_create(path, random_secret)?,
            (None, None) => Identity::from_secret_bytes(random_secret()?),
        };
        let id = identity.id();
        let keyring = crate::keys::ring(config.cluster_key, config.accepted_keys)?;
        for a in [config.udp, config.tcp].into_iter().flatten() {
            advertised(a, config.advertise)?;
        }
        let (tcp, udp) = bind(config.tcp, config.udp).await?;
        let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
        let udp_addr = udp.as_ref().and_then(|s| s.local_addr().ok());
        let mut addrs = Vec::new();
        if let Some(a) = udp_addr {
            addrs.push(Address::Udp(advertised(a, config.advertise)?));
        }
        if let Some(a) = tcp_addr {
            addrs.push(Address::Tcp(advertised(a, config.advertise)?));
        }
        if let Some(url) = &config.ws_url {
            addrs.push(Address::WebSocket(url.clone()));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| StartError::Random(e.to_string()))?;
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let epoch = tokio::time::Instant::now();
        let mut node = Node::new(
            config.core,
            identity.clone(),
            keyring,
            addrs,
            seed,
            Instant::from_micros(0),
            wall_ms,
        );
        for (k, v) in config.metadata {
            node.set_metadata(Instant::from_micros(0), &k, Some(v))
                .map_err(|e| StartError::Config(e.to_string()))?;
        }
        let (inbound_tx, inbound_rx) = mpsc::channel(config.limits.inbound_queue);
        let tls = crate::ws::client_tls(config.tls_roots)?;
        let shared = Arc::new(Shared::new(
            identity,
            config.versions,
            config.limits,
            inbound_tx,
            config.token,
            config.dial_token,
            config
                .seeds
                .iter()
                .map(|s| s.trim())
                .filter(|s| s.starts_with("ws://") || s.starts_with("wss://"))
                .map(str::to_owned)
                .collect(),
            config.allowed_origins,
            config.admission,
            tls,
        ));
        let udp = udp.map(Arc::new);
        if let Some(listener) = tcp {
            tokio::spawn(crate::tcp::accept_loop(shared.clone(), listener));
        }
        if let Some(socket) = &udp {
            tokio::spawn(crate::udp::recv_loop(shared.clone(), socket.clone()));
        }
        let (events, _) = broadcast::channel(4096);
        let (accept_tx, accept_rx) = mpsc::channel(config.limits.accept_queue);
        let (jobs_tx, jobs_rx) = mpsc::channel(1024);
        let driver = Driver::new(DriverParts {
            node,
            shared: shared.clone(),
            epoch,
            udp,
            events: events.clone(),
            streams: StreamTable::new(accept_tx, config.limits.stream_buffer),
            seeds: config.seeds,
            ws_url: config.ws_url,
            leave_drain: config.leave_drain,
            rejoin_interval: config.rejoin_interval,
        });
        let task = tokio::spawn(driver.run(jobs_rx, inbound_rx));
        tracing::info!(id = %id.short(), ?udp_addr, ?tcp_addr, "node started");
        Ok(Gossip {
            inner: Arc::new(Inner {
                id,
                shared,
                jobs: jobs_tx,
                events,
                accept: tokio::sync::Mutex::new(accept_rx),
                driver: Mutex::new(Some(task)),
                udp_addr,
                tcp_addr,
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The bound UDP address, if any.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.inner.udp_addr
    }

    /// The bound TCP address, if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.inner.tcp_addr
    }

    /// The routes to nest in your axum app: `GET /ws` (WebSocket members) and `GET /status`.
    ///
    /// ```no_run
    /// # async fn f(gossip: gossip_server::Gossip) {
    /// let app: axum::Router = axum::Router::new()
    ///     .route("/", axum::routing::get(|| async { "my service" }))
    ///     .nest("/gossip", gossip.router());
    /// # }
    /// ```
    /// Tell the node the public URL of its WebSocket route with [`Gossip::advertise_ws`] (or
    /// `GossipConfig::ws_url`) so other members can dial it.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/ws", get(crate::ws::handler))
            .route("/status", get(status_handler))
            .with_state(self.clone())
    }

    /// Serves [`Gossip::router`] under `/gossip` on its own listener (a convenience for standalone
    /// nodes), advertises `ws://{addr}/gossip/ws`, and returns the bound address. The server stops
    /// with the node.
    pub async fn serve(&self, addr: SocketAddr) -> Result<SocketAddr, StartError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                what: "http",
                addr,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| StartError::Bind {
            what: "http",
            addr,
            source,
        })?;
        let app: Router = Router::new().nest("/gossip", self.router());
        let cancel = self.inner.shared.cancel.clone();
        tokio::spawn(async move {
            let server = axum::serve(
                listener,
                // The admission hook sees the peer's address.
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(cancel.cancelled_owned());
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "http server stopped");
            }
        });
        self.advertise_ws(format!("ws://{local}/gossip/ws"))
            .await
            .map_err(|e| StartError::Config(e.to_string()))?;
        Ok(local)
    }

    /// Adds (or replaces) the public WebSocket URL this node advertises.
    pub async fn advertise_ws(&self, url: String) -> Result<(), GossipError> {
        self.with_driver(move |d| {
            let now = d.now();
            let mut addrs: Vec<Address> = d
                .node
                .local()
                .addrs
                .iter()
                .filter(|a| !matches!(a, Address::WebSocket(_)))
                .cloned()
                .collect();
            addrs.push(Address::WebSocket(url.clone()));
            d.ws_url = Some(url);
            d.node.set_addresses(now, addrs).map_err(GossipError::from)
        })
        .await?
    }

    /// The job queue, held weakly (a state watch closes itself through it when dropped).
    pub(crate) fn weak_jobs(&self) -> mpsc::WeakSender<Job> {
        self.inner.jobs.downgrade()
    }

    /// The event channel (a state watch subscribes inside the driver, with no gap).
    pub(crate) fn event_sender(&self) -> broadcast::Sender<Event> {
        self.inner.events.clone()
    }

    /// Runs `f` on the driver and returns its result.
    pub(crate) async fn with_driver<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Driver) -> T + Send + 'static,
    ) -> Result<T, GossipError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |d| {
            let _ = tx.send(f(d));
        });
        self.inner
            .jobs
            .send(job)
            .await
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)
    }

    /// Runs `f` with the engine (for anything this handle has no shortcut for: groups, quorum
    /// requests, keyring rotation...). What it emits is sent once `f` returns.
    pub async fn with_node<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, Instant) -> T + Send + 'static,
    ) -> Result<T, GossipError> {
        self.with_driver(move |d| {
            let now = d.now();
            f(&mut d.node, now)
        })
        .await
    }

    /// Waits until this node knows another live member (it joined, or someone joined it), for
    /// at most `timeout`. `Err` says why not: what each seed ran into (refused token, differing
    /// cluster keys, not admitted, unreachable, unresolved...), or that there is no seed. The
    /// same reasons are logged at WARN as they happen. The node keeps trying after an `Err`.
    ///
    /// ```no_run
    /// # async fn f(gossip: gossip_server::Gossip) {
    /// if let Err(e) = gossip.joined(std::time::Duration::from_secs(10)).await {
    ///     eprintln!("still alone: {e}");
    /// }
    /// # }
    /// ```
    pub async fn joined(&self, timeout: Duration) -> Result<(), JoinError> {
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let me = self.id();
        let alive_other = |members: &[Member]| {
            members
                .iter()
                .any(|m| m.id != me && m.state == gossip_core::State::Alive)
        };
        let mut watch = self.watch().await.map_err(|_| JoinError::Stopped)?;
        if alive_other(&watch.members) {
            return Ok(());
        }
        loop {
            let event = tokio::select! {
                e = watch.events.recv() => e,
                _ = tokio::time::sleep_until(deadline) => break,
            };
            match event {
                Ok(Event::MemberJoined { .. } | Event::MemberAlive { .. })
                | Err(broadcast::error::RecvError::Lagged(_)) => {
                    let members = self.members().await.map_err(|_| JoinError::Stopped)?;
                    if alive_other(&members) {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Closed) => return Err(JoinError::Stopped),
            }
        }
        let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (attempts, has_seeds) = self
            .with_driver(|d| (d.join_attempts(), d.has_seeds()))
            .await
            .map_err(|_| JoinError::Stopped)?;
        if !has_seeds && attempts.is_empty() {
            return Err(JoinError::NoSeeds { waited_ms });
        }
        Err(JoinError::NotJoined {
            waited_ms,
            attempts,
        })
    }

    /// Revokes the admission of `member`, a client without the cluster key admitted through
    /// this node: its connection is closed with 4406 and `reason` (nothing secret: the client
    /// reads it), and this node signs a revocation of its admission, which every member honours
    /// at once (the member is left everywhere). It joins again only if the admission hook admits
    /// it again. `Ok(false)` when it is not admitted here.
    pub async fn revoke(
        &self,
        member: NodeId,
        reason: impl Into<String>,
    ) -> Result<bool, GossipError> {
        let reason = reason.into();
        self.with_driver(move |d| d.revoke(member, &reason)).await
    }

    /// This node's view of the cluster.
    pub async fn status(&self) -> Result<Status, GossipError> {
        self.with_driver(|d| Status::of(&d.node, d.open_connections(), &d.shared))
            .await
    }

    /// Events from now on: membership, metadata, messages, requests... A subscriber that falls
    /// more than 4,096 events behind misses the oldest ones (`RecvError::Lagged`).
    ///
    /// The node starts joining inside [`Gossip::start`], so membership events may already have
    /// passed: to follow membership, use [`Gossip::watch`], which has no gap.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The members this node knows now (itself included, in any state), and every event from
    /// that moment on, with nothing lost or repeated in between: both are taken inside the
    /// driver, between two of its inputs, after the events of the last one were published.
    pub async fn watch(&self) -> Result<Watch, GossipError> {
        let events = self.inner.events.clone();
        self.with_driver(move |d| {
            d.drain();
            Watch {
                members: d.node.members().cloned().collect(),
                events: events.subscribe(),
            }
        })
        .await
    }

    /// The members this node knows now, itself included, in any state.
    pub async fn members(&self) -> Result<Vec<Member>, GossipError> {
        self.with_node(|n, _| n.members().cloned().collect()).await
    }

    /// Sets a metadata key (disseminated to every member).
    pub async fn set_metadata(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), GossipError> {
        let (key, value) = (key.into(), value.into());
        self.with_node(move |n, now| n.set_metadata(now, &key, Some(value)))
            .await?
            .map_err(Into::into)
    }

    /// Removes a metadata key.
    pub async fn remove_metadata(&self, key: impl Into<String>) -> Result<(), GossipError> {
        let key = key.into();
        self.with_node(move |n, now| n.set_metadata(now, &key, None))
            .await?
            .map_err(Into::into)
    }

    /// Broadcasts to every member.
    pub async fn broadcast(
        &self,
        topic: impl Into<String>,
        data: impl Into<Vec<u8>>,
    ) -> Result<(), GossipError> {
        let (topic, data) = (topic.into(), data.into());
        self.with_node(move |n, now| n.broadcast(now, &topic, data))
            .await?
            .map_err(Into::into)
    }

    /// Sends a message to one member over a reliable link.
    pub async fn send(
        &self,
        to: NodeId,
        topic: impl Into<String>,
        data: impl Into<Vec<u8>>,
    ) -> Result<(), GossipError> {
        let (topic, data) = (topic.into(), data.into());
        self.with_node(move |n, now| n.send(now, to, &topic, data, true))
            .await?
            .map_err(Into::into)
    }

    /// Sends a request and waits for the answer (or the timeout, or the member's death).
    pub async fn request(
        &self,
        to: NodeId,
        topic: impl Into<String>,
        data: impl Into<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Vec<u8>, GossipError> {
        let (topic, data) = (topic.into(), data.into());
        let (tx, rx) = oneshot::channel();
        self.with_driver(move |d| d.request(to, &topic, data, timeout, tx))
            .await?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// Answers a request received as [`Event::Request`].
    pub async fn respond(
        &self,
        to: NodeId,
        id: RequestId,
        data: impl Into<Vec<u8>>,
    ) -> Result<(), GossipError> {
        let data = data.into();
        self.with_node(move |n, now| n.respond(now, to, id, data))
            .await?
            .map_err(Into::into)
    }

    /// Opens a stream to `peer` and waits until it accepts.
    pub async fn open_stream(&self, peer: NodeId) -> Result<GossipStream, GossipError> {
        let (tx, rx) = oneshot::channel();
        self.with_driver(move |d| d.open_stream(peer, tx)).await?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// The next stream another member opened to this node (`None` once the node stopped).
    /// Streams are accepted while fewer than `DriverLimits::accept_queue` wait here.
    pub async fn accept_stream(&self) -> Option<GossipStream> {
        self.inner.accept.lock().await.recv().await
    }

    /// Leaves the cluster: announces the leave, keeps gossiping for `leave_drain`, then closes
    /// every connection and stops.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .with_driver(move |d| {
                d.shutdown_replies.push(tx);
                d.begin_shutdown();
            })
            .await;
        if sent.is_ok() {
            let _ = rx.await;
        }
        self.join_driver().await;
    }

    /// Stops at once, without a leave: to the cluster it looks like a crash.
    pub async fn kill(&self) {
        self.inner.shared.cancel.cancel();
        self.join_driver().await;
    }

    async fn join_driver(&self) {
        let task = self
            .inner
            .driver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Whether the node has stopped.
    pub fn is_stopped(&self) -> bool {
        self.inner.shared.cancel.is_cancelled()
    }
}

/// `GET /status`: ids, addresses and metadata of every member are for those holding the
/// token, like the WebSocket route (header or `?token=`).
async fn status_handler(
    State(gossip): State<Gossip>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let shared = gossip.shared();
    if !crate::auth::token_presented(
        &headers,
        query.get("token").map(String::as_str),
        shared.token.as_deref(),
    ) {
        shared.count_drop(gossip_core::link::LinkDrop::Unauthorized);
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong token",
        )
            .into_response();
    }
    match gossip.status().await {
        Ok(status) => axum::Json(status).into_response(),
        Err(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Binds TCP and UDP; when both ask for the same address, both get the same port.
async fn bind(
    tcp: Option<SocketAddr>,
    udp: Option<SocketAddr>,
) -> Result<(Option<TcpListener>, Option<UdpSocket>), StartError> {
    let tcp_err = |addr, source| StartError::Bind {
        what: "tcp",
        addr,
        source,
    };
    let udp_err = |addr, source| StartError::Bind {
        what: "udp",
        addr,
        source,
    };
    match (tcp, udp) {
        (Some(t), Some(u)) if t == u => {
            // Port 0: the port TCP got may be taken for UDP; try a few.
            let mut last = None;
            for _ in 0..16 {
                let listener = TcpListener::bind(t).await.map_err(|e| tcp_err(t, e))?;
                let local = listener.local_addr().map_err(|e| tcp_err(t, e))?;
                match UdpSocket::bind(local).await {
                    Ok(socket) => return Ok((Some(listener), Some(socket))),
                    Err(e) if t.port() == 0 => last = Some(e),
                    Err(e) => return Err(udp_err(local, e)),
                }
            }
            Err(udp_err(
                u,
                last.unwrap_or_else(|| std::io::Error::other("no shared port")),
            ))
        }
        (t, u) => {
            let listener = match t {
                Some(t) => Some(TcpListener::bind(t).await.map_err(|e| tcp_err(t, e))?),
                None => None,
            };
            let socket = match u {
                Some(u) => Some(UdpSocket::bind(u).await.map_err(|e| udp_err(u, e))?),
                None => None,
            };
            Ok((listener, socket))
        }
    }
}

/// A snapshot of the members and the events that follow it (see [`Gossip::watch`]).
#[derive(Debug)]
pub struct Watch {
    /// The members when the watch began.
    pub members: Vec<Member>,
    /// Every event after that moment.
    pub events: broadcast::Receiver<Event>,
}

/// What other members dial for a listener bound at `bound`: itself, or, when it listens on every
/// interface (0.0.0.0, [::]), the advertised IP with the bound port.
fn advertised(
    bound: SocketAddr,
    advertise: Option<std::net::IpAddr>,
) -> Result<SocketAddr, StartError> {
    match advertise {
        _ if !bound.ip().is_unspecified() => Ok(bound),
        Some(ip) if !ip.is_unspecified() => Ok(SocketAddr::new(ip, bound.port())),
        _ => Err(StartError::Config(format!(
            "{bound}: other members cannot dial an unspecified address: bind a concrete one, or \
             set the address to advertise (`GossipConfig::with_advertise`, `gossip-node --advertise`)"
        ))),
    }
}

#[cfg(test)]
mod advertise_tests {
    use super::*;

    #[test]
    fn every_interface_needs_an_address_to_advertise() {
        let any: SocketAddr = "0.0.0.0:7946".parse().unwrap();
        let ip = "10.1.2.3".parse().unwrap();
        assert_eq!(
            advertised(any, Some(ip)).unwrap(),
            "10.1.2.3:7946".parse().unwrap()
        );
        let err = advertised(any, None).unwrap_err().to_string();
        assert!(
            err.contains("with_advertise") && err.contains("--advertise"),
            "{err}"
        );
        assert!(advertised(any, Some("::".parse().unwrap())).is_err());
        let concrete: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(advertised(concrete, Some(ip)).unwrap(), concrete);
        let v6: SocketAddr = "[::]:7946".parse().unwrap();
        assert_eq!(
            advertised(v6, Some("fd00::1".parse().unwrap())).unwrap(),
            "[fd00::1]:7946".parse().unwrap()
        );
    }
}
