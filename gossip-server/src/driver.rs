//! The loop that owns the engine: it feeds it frames, timers and commands, and routes what it
//! emits to UDP, pooled connections or new dials.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gossip_core::requests::FailReason;
use gossip_core::streams::StreamOutput;
use gossip_core::{Address, Event, Instant, Node, NodeId, RequestId, Transmit};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::conn::{self, ConnHandle, ConnId, Input, Transport, close};
use crate::error::GossipError;
use crate::metrics_export::Exporter;
use crate::shared::Shared;
use crate::stream::{GossipStream, StreamTable};

/// While the node knows other members, seeds are re-resolved every this many rejoin intervals.
const RESOLVE_EVERY_TICKS: u64 = 12;

/// Work the handle sends to the driver: a closure run with the driver borrowed.
pub(crate) type Job = Box<dyn FnOnce(&mut Driver) + Send>;

#[derive(Debug)]
struct Conn {
    handle: ConnHandle,
    /// The address frames from this connection are answered at: the dialed address for outbound
    /// connections, a connection-local name for inbound ones.
    from: Address,
    /// The member whose first verified frame came over it (or that we dialed it for).
    owner: Option<NodeId>,
    /// The id a WebSocket server's hello claimed.
    claimed: Option<NodeId>,
    verified: bool,
    /// This node dialed it (only the accepting side of a WebSocket sends a hello).
    outbound: bool,
}

/// The engine and everything the driver tracks around it.
pub(crate) struct Driver {
    pub(crate) node: Node,
    pub(crate) shared: Arc<Shared>,
    epoch: tokio::time::Instant,
    conns: HashMap<ConnId, Conn>,
    by_node: HashMap<NodeId, ConnId>,
    by_addr: HashMap<Address, ConnId>,
    udp: Option<Arc<UdpSocket>>,
    pub(crate) events: broadcast::Sender<Event>,
    pending: HashMap<RequestId, oneshot::Sender<Result<Vec<u8>, GossipError>>>,
    pub(crate) streams: StreamTable,
    pub(crate) seeds: Vec<String>,
    pub(crate) ws_url: Option<String>,
    stopping: Option<tokio::time::Instant>,
    pub(crate) shutdown_replies: Vec<oneshot::Sender<()>>,
    pub(crate) leave_drain: Duration,
    rejoin_interval: Duration,
    exporter: Exporter,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("id", &self.node.id())
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

/// What [`Driver::new`] needs.
pub(crate) struct DriverParts {
    pub(crate) node: Node,
    pub(crate) shared: Arc<Shared>,
    pub(crate) epoch: tokio::time::Instant,
    pub(crate) udp: Option<Arc<UdpSocket>>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) streams: StreamTable,
    pub(crate) seeds: Vec<String>,
    pub(crate) ws_url: Option<String>,
    pub(crate) leave_drain: Duration,
    pub(crate) rejoin_interval: Duration,
}

impl Driver {
    pub(crate) fn new(p: DriverParts) -> Driver {
        Driver {
            node: p.node,
            shared: p.shared,
            epoch: p.epoch,
            conns: HashMap::new(),
            by_node: HashMap::new(),
            by_addr: HashMap::new(),
            udp: p.udp,
            events: p.events,
            pending: HashMap::new(),
            streams: p.streams,
            seeds: p.seeds,
            ws_url: p.ws_url,
            stopping: None,
            shutdown_replies: Vec::new(),
            leave_drain: p.leave_drain,
            rejoin_interval: p.rejoin_interval,
            exporter: Exporter::default(),
        }
    }

    /// The engine's clock: microseconds since the driver started.
    pub(crate) fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.conns.len()
    }

    /// Runs until the node stops: a graceful shutdown (leave, then drain), every handle dropped,
    /// or a kill.
    pub(crate) async fn run(
        mut self,
        mut jobs: mpsc::Receiver<Job>,
        mut inputs: mpsc::Receiver<Input>,
    ) {
        let cancel = self.shared.cancel.clone();
        let dirty = self.streams.dirty();
        self.resolve_and_join();
        let mut rejoin = tokio::time::interval(self.rejoin_interval);
        rejoin.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut metrics = tokio::time::interval(Duration::from_secs(1));
        let mut ticks: u64 = 0;
        loop {
            let wake = match (self.node.poll_timeout(), self.stopping) {
                (Some(t), Some(s)) => self.deadline(t).min(s),
                (Some(t), None) => self.deadline(t),
                (None, Some(s)) => s,
                (None, None) => self.epoch + Duration::from_secs(3600 * 24 * 365),
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                job = jobs.recv() => match job {
                    Some(job) => job(&mut self),
                    // Every handle is gone: leave like a graceful shutdown would.
                    None if self.stopping.is_none() => self.begin_shutdown(),
                    None => {}
                },
                Some(input) = inputs.recv() => self.input(input),
                _ = dirty.notified() => self.service_streams(),
                // Only wakes the loop: the timers run below, after any branch.
                _ = tokio::time::sleep_until(wake) => {}
                _ = rejoin.tick() => {
                    // Alone: retry the seeds now. Otherwise re-resolve now and then, so seeds
                    // whose DNS records changed (or a split that only the seeds can heal) are
                    // followed.
                    ticks += 1;
                    let alone = self.node.live_count() <= 1;
                    if self.stopping.is_none() && (alone || ticks.is_multiple_of(RESOLVE_EVERY_TICKS)) {
                        self.resolve_and_join();
                    }
                }
                _ = metrics.tick() => self.exporter.export(&self.node, &self.shared, self.conns.len()),
            }
            // The select prefers inputs. As a branch of their own, the timers (probes, suspicion
            // timeouts, gossip rounds, a hub's deliveries) would run only when no input happened
            // to be ready, which a busy hub cannot promise.
            if self
                .stopping
                .is_some_and(|s| tokio::time::Instant::now() >= s)
            {
                break;
            }
            let now = self.now();
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
            }
            self.drain();
        }
        self.shared.cancel.cancel();
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(GossipError::Stopped));
        }
        self.streams.stop_all();
        for reply in self.shutdown_replies.drain(..) {
            let _ = reply.send(());
        }
        tracing::info!(id = %self.node.id().short(), "node stopped");
    }

    fn deadline(&self, t: Instant) -> tokio::time::Instant {
        self.epoch + Duration::from_micros(t.as_micros())
    }

    /// Leaves the cluster and keeps gossiping for `leave_drain` so the leave spreads.
    pub(crate) fn begin_shutdown(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        let now = self.now();
        self.node.leave(now);
        self.stopping = Some(tokio::time::Instant::now() + self.leave_drain);
    }

    /// Resolves the seeds in the background and joins through what they resolve to.
    pub(crate) fn resolve_and_join(&mut self) {
        if self.seeds.is_empty() {
            return;
        }
        let seeds = self.seeds.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut addrs = Vec::new();
            for seed in &seeds {
                match crate::seeds::resolve(seed).await {
                    Ok(found) => addrs.extend(found),
                    Err(e) => tracing::warn!(%seed, error = %e, "seed did not resolve"),
                }
            }
            if !addrs.is_empty() {
                let _ = shared.inbound.send(Input::Join(addrs)).await;
            }
        });
    }

    fn input(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Datagram { from, bytes } => {
                // A refused datagram is counted by the engine; UDP has no connection to close.
                let _ = self.node.handle_packet(now, Address::Udp(from), &bytes);
            }
            Input::Accepted {
                id,
                handle,
                transport,
            } => {
                tracing::debug!(conn = id, ?transport, "accepted");
                let from = Address::WebSocket(format!("conn:{id}"));
                self.by_addr.insert(from.clone(), id);
                self.conns.insert(
                    id,
                    Conn {
                        handle,
                        from,
                        owner: None,
                        claimed: None,
                        verified: false,
                        outbound: false,
                    },
                );
            }
            Input::Hello { id, node } => {
                let Some(c) = self.conns.get_mut(&id) else {
                    return;
                };
                if !c.outbound {
                    // A client claiming an id must not capture the route to that member.
                    c.handle
                        .closer
                        .close(close::BAD_FRAME, "only the accepting side sends a hello");
                    return self.shared.count_drop("unexpected_hello");
                }
                c.claimed = Some(node);
                if c.owner.is_none() {
                    c.owner = Some(node);
                    self.by_node.entry(node).or_insert(id);
                }
                self.adopt_relay(now, node);
            }
            Input::Frame { id, bytes } => self.frame(now, id, &bytes),
            Input::Closed { id } => self.forget(id),
            Input::Join(addrs) => {
                tracing::debug!(seeds = addrs.len(), "joining");
                self.node.join(now, &addrs);
            }
        }
    }

    fn frame(&mut self, now: Instant, id: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let from = c.from.clone();
        let origin = self.node.handle_packet(now, from, bytes);
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.verified {
            return;
        }
        match origin {
            Ok(origin) => {
                // A server may forward frames of the browsers it relays over the same connection.
                let relayed_by = self.node.member(&origin).and_then(|m| m.relay());
                if c.claimed
                    .is_some_and(|claimed| claimed != origin && relayed_by != Some(claimed))
                {
                    c.handle.closer.close(
                        close::BAD_FRAME,
                        "first frame is not from the node the hello named",
                    );
                    self.shared.count_drop("hello_mismatch");
                    return;
                }
                c.verified = true;
                if c.owner.is_none() {
                    c.owner = Some(origin);
                }
                // The first route to a member sticks until it closes: frames of one stream must
                // not overtake each other on two connections.
                let alive = self
                    .by_node
                    .get(&origin)
                    .is_some_and(|other| self.conns.contains_key(other));
                if !alive {
                    self.by_node.insert(origin, id);
                }
            }
            Err(refused) if refused.is_foreign() => {
                c.handle.closer.close(
                    close::BAD_FRAME,
                    "frame failed to decode or authenticate (wrong cluster key?)",
                );
            }
            Err(_) => {}
        }
    }

    fn forget(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(&id) {
            self.by_addr.retain(|_, v| *v != id);
            self.by_node.retain(|_, v| *v != id);
            tracing::debug!(conn = id, owner = ?c.owner.map(|o| o.short()), "connection closed");
            // A node that cannot listen lost its relay: re-join through the seeds; the first
            // server to greet becomes the new relay.
            if c.owner.is_some() && c.owner == self.node.local().relay() && self.stopping.is_none()
            {
                self.resolve_and_join();
            }
        }
    }

    /// A node without listeners is reached through the server it dialed: the first server that
    /// greets it becomes its relay, and stays so while its connection lives.
    fn adopt_relay(&mut self, now: Instant, server: NodeId) {
        let me = self.node.local();
        let listens = me.addrs.iter().any(|a| !matches!(a, Address::Relayed(_)));
        if listens || self.stopping.is_some() {
            return;
        }
        let current = me.relay();
        if current == Some(server) {
            return;
        }
        if current.is_some_and(|r| {
            self.by_node
                .get(&r)
                .is_some_and(|c| self.conns.contains_key(c))
        }) {
            return;
        }
        tracing::info!(relay = %server.short(), "relayed through");
        let _ = self.node.set_addresses(now, vec![Address::Relayed(server)]);
    }

    /// Drains the engine's transmits and events.
    pub(crate) fn drain(&mut self) {
        while let Some(t) = self.node.poll_transmit() {
            self.route(t);
        }
        while let Some(e) = self.node.poll_event() {
            self.event(e);
        }
        if self.streams.has_dirty() {
            self.service_streams();
        }
    }

    fn route(&mut self, t: Transmit) {
        if let Some(node) = t.node
            && let Some(id) = self.by_node.get(&node).copied()
        {
            return self.send_on(id, t.bytes);
        }
        match &t.to {
            Address::Relayed(_) => self.shared.count_drop("no_route"),
            Address::Udp(addr) => {
                let small = t.bytes.len() <= self.node.config().udp_budget;
                if let Some(udp) = self.udp.as_ref().filter(|_| small && !t.reliable) {
                    match udp.try_send_to(&t.bytes, *addr) {
                        Ok(_) => self.shared.sent.datagram(t.bytes.len()),
                        Err(_) => self.shared.count_drop("udp_send_failed"),
                    }
                    return;
                }
                // Too big for a datagram, or no UDP socket here: the member's reliable address,
                // else TCP at the same address (a node binds both on one port).
                let reliable = t
                    .node
                    .and_then(|n| self.node.member(&n))
                    .and_then(|m| {
                        m.addrs
                            .iter()
                            .find(|a| matches!(a, Address::Tcp(_) | Address::WebSocket(_)))
                            .cloned()
                    })
                    .unwrap_or(Address::Tcp(*addr));
                self.send_to_addr(reliable, t.node, t.bytes);
            }
            _ => self.send_to_addr(t.to.clone(), t.node, t.bytes),
        }
    }

    fn send_to_addr(&mut self, addr: Address, node: Option<NodeId>, bytes: Vec<u8>) {
        let id = match self.by_addr.get(&addr) {
            Some(id) => *id,
            None => match self.dial(addr, node) {
                Some(id) => id,
                None => return,
            },
        };
        self.send_on(id, bytes);
    }

    fn send_on(&mut self, id: ConnId, bytes: Vec<u8>) {
        let Some(c) = self.conns.get(&id) else {
            return self.shared.count_drop("no_route");
        };
        match c.handle.tx.try_send(bytes) {
            Ok(()) => self.shared.sent.reliable(),
            Err(mpsc::error::TrySendError::Full(_)) => {
                // A peer that does not read is not allowed to make us buffer without bound.
                c.handle.closer.close(
                    close::TOO_SLOW,
                    "send queue overflowed: the peer does not read",
                );
                self.shared.count_drop("slow_consumer");
                self.forget(id);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.shared.count_drop("connection_closed");
                self.forget(id);
            }
        }
    }

    fn dial(&mut self, addr: Address, node: Option<NodeId>) -> Option<ConnId> {
        let transport = match &addr {
            Address::Tcp(_) => Transport::Tcp,
            Address::WebSocket(url) if url.starts_with("ws://") || url.starts_with("wss://") => {
                Transport::WebSocket
            }
            _ => {
                self.shared.count_drop("no_route");
                return None;
            }
        };
        if !self.shared.has_room() {
            self.shared.count_drop("too_many_connections");
            return None;
        }
        let id = self.shared.next_conn_id();
        let (tx, rx) = mpsc::channel(self.shared.limits.conn_queue);
        let handle = ConnHandle {
            tx,
            closer: conn::Closer::new(&self.shared.cancel),
        };
        let shared = self.shared.clone();
        match &addr {
            Address::Tcp(a) => {
                tokio::spawn(crate::tcp::dial(shared, id, *a, rx, handle.clone()));
            }
            Address::WebSocket(url) => {
                tokio::spawn(crate::ws::dial(shared, id, url.clone(), rx, handle.clone()));
            }
            _ => unreachable!("filtered above"),
        }
        tracing::debug!(conn = id, %addr, ?transport, "dialing");
        self.by_addr.insert(addr.clone(), id);
        if let Some(n) = node {
            self.by_node.entry(n).or_insert(id);
        }
        self.conns.insert(
            id,
            Conn {
                handle,
                from: addr,
                owner: node,
                claimed: None,
                verified: false,
                outbound: true,
            },
        );
        Some(id)
    }

    fn event(&mut self, e: Event) {
        match &e {
            Event::Response { id, data, .. } => {
                if let Some(reply) = self.pending.remove(id) {
                    let _ = reply.send(Ok(data.clone()));
                }
            }
            Event::RequestFailed { id, to, reason } => {
                if let Some(reply) = self.pending.remove(id) {
                    let _ = reply.send(Err(GossipError::RequestFailed {
                        to: *to,
                        reason: *reason,
                    }));
                }
            }
            Event::Stream(out) => {
                let now = self.now();
                self.streams.on_event(&mut self.node, now, out.clone());
                if matches!(out, StreamOutput::Incoming(_)) {
                    return;
                }
            }
            _ => {}
        }
        // No subscriber is fine: events are for whoever listens.
        let _ = self.events.send(e);
    }

    /// Registers a request so its answer completes `reply`.
    pub(crate) fn request(
        &mut self,
        to: NodeId,
        topic: &str,
        data: Vec<u8>,
        timeout: Duration,
        reply: oneshot::Sender<Result<Vec<u8>, GossipError>>,
    ) {
        let now = self.now();
        match self
            .node
            .request(now, to, topic, data, timeout.as_millis() as u64)
        {
            Ok(id) => {
                self.pending.insert(id, reply);
            }
            Err(gossip_core::CommandError::UnknownMember(_)) => {
                let _ = reply.send(Err(GossipError::RequestFailed {
                    to,
                    reason: FailReason::Unreachable,
                }));
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    /// Opens a stream; `reply` completes when the peer accepts or refuses.
    pub(crate) fn open_stream(
        &mut self,
        peer: NodeId,
        reply: oneshot::Sender<Result<GossipStream, GossipError>>,
    ) {
        let now = self.now();
        match self.node.open_stream(now, peer) {
            Ok(key) => self.streams.opening(key, reply),
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    fn service_streams(&mut self) {
        let now = self.now();
        self.streams.service(&mut self.node, now);
    }
}
