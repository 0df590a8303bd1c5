//! The loop that owns the engine: it feeds it frames, timers and commands, and routes what it
//! emits to UDP, pooled connections or new dials.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gossip_core::link::route::{self, DialBudget, Links, Route};
use gossip_core::link::{
    CloseCode, Decision, Fault, HandshakeError, LinkDrop, Session, SessionConfig, relay,
};
use gossip_core::requests::FailReason;
use gossip_core::streams::StreamOutput;
use gossip_core::{Address, Event, Instant, Node, NodeId, RequestId, Transmit};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::conn::{self, ConnHandle, ConnId, Input, Transport};
use crate::error::{GossipError, SeedAttempt, SeedProblem};
use crate::metrics_export::Exporter;
use crate::shared::{Shared, Slot};
use crate::stream::{GossipStream, StreamTable};

/// While the node knows other members, seeds are re-resolved every this many rejoin intervals.
const RESOLVE_EVERY_TICKS: u64 = 12;

/// Inputs read at most before due timers fire: enough for a burst of answers, and a flood cannot
/// hold the timers back for long.
const READ_BEFORE_TIMERS: usize = 256;

/// Inputs handled back to back when they are already queued, their news pushed once (see
/// `Driver::burst`): small enough that the timers and jobs behind them wait little.
const BURST: usize = 32;

/// Work the handle sends to the driver: a closure run with the driver borrowed.
pub(crate) type Job = Box<dyn FnOnce(&mut Driver) + Send>;

#[derive(Debug)]
struct Conn {
    handle: ConnHandle,
    /// The address frames from this connection are answered at: the dialed address for outbound
    /// connections, a connection-local name for inbound ones.
    from: Address,
    /// The member its handshake proved (or that we dialed it for, until the handshake proves it).
    owner: Option<NodeId>,
    /// What its handshake, first frames and deadline decide.
    session: Session,
    transport: Transport,
    /// An accepted connection's place in the pending budget, moved to the established one when
    /// its peer proves membership.
    slot: Option<Arc<Slot>>,
    /// What the admission hook granted its client, which has no cluster key.
    grant: Option<gossip_core::Grant>,
    /// When that admission ends (its grant's lifetime, from the handshake).
    expires: Option<Instant>,
    /// Why this node closed it, if it did.
    fault: Option<Fault>,
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
    session: SessionConfig,
    pub(crate) events: broadcast::Sender<Event>,
    pending: HashMap<RequestId, oneshot::Sender<Result<Vec<u8>, GossipError>>>,
    /// Quorum requests made from the handle, completed by their `QuorumDone`.
    pub(crate) quorums: HashMap<gossip_core::QuorumId, oneshot::Sender<gossip_core::QuorumOutcome>>,
    pub(crate) streams: StreamTable,
    pub(crate) seeds: Vec<String>,
    pub(crate) ws_url: Option<String>,
    stopping: Option<tokio::time::Instant>,
    pub(crate) shutdown_replies: Vec<oneshot::Sender<()>>,
    pub(crate) leave_drain: Duration,
    rejoin_interval: Duration,
    exporter: Exporter,
    /// While the node knows no other live member: the last problem met with each seed address.
    join_failures: std::collections::BTreeMap<String, SeedProblem>,
    /// When a peer's frames last failed to authenticate here and it was logged (once per 10 s:
    /// a flood must not flood the log).
    foreign_logged: Option<tokio::time::Instant>,
    /// When a version refusal was last logged: anyone with a key pair can be refused for its
    /// versions, as often as it connects, so the log says it at most every 10 s.
    version_logged: Option<tokio::time::Instant>,
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
        let verify_ms =
            u64::try_from(p.shared.limits.verify_within.as_millis()).unwrap_or(u64::MAX);
        Driver {
            session: SessionConfig::default().with_verify_within_ms(verify_ms),
            node: p.node,
            shared: p.shared,
            epoch: p.epoch,
            conns: HashMap::new(),
            by_node: HashMap::new(),
            by_addr: HashMap::new(),
            udp: p.udp,
            events: p.events,
            pending: HashMap::new(),
            quorums: HashMap::new(),
            streams: p.streams,
            seeds: p.seeds,
            ws_url: p.ws_url,
            stopping: None,
            shutdown_replies: Vec::new(),
            leave_drain: p.leave_drain,
            rejoin_interval: p.rejoin_interval,
            exporter: Exporter::default(),
            join_failures: std::collections::BTreeMap::new(),
            foreign_logged: None,
            version_logged: None,
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
        // Unverified connections are checked against their deadline this often: a sweep costs a
        // pass over the connections, so not on every frame.
        let sweep_every = (self.shared.limits.verify_within / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        // Only a node with a UDP socket reads datagrams itself (`read_ready`).
        let mut buf = if self.udp.is_some() {
            vec![0u8; crate::udp::DATAGRAM_BUF]
        } else {
            Vec::new()
        };
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
                Some(input) = inputs.recv() => self.burst(input, &mut inputs),
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
                _ = sweep.tick() => self.close_unverified(),
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
            if self.node.poll_timeout().is_some_and(|t| t <= self.now()) {
                self.read_ready(&mut inputs, &mut buf);
                let now = self.now();
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

    /// Handles what has already arrived (queued by the transport tasks, then waiting in the UDP
    /// socket) before due timers fire, up to [`READ_BEFORE_TIMERS`]. When the process is busy the
    /// loop comes back late; firing a probe's timeout first would suspect a member whose ack is
    /// already here, and at N = 100 in one process those false suspicions (and the refutations
    /// they force, each signed and verified by every member) were what kept the join from
    /// settling.
    fn read_ready(&mut self, inputs: &mut mpsc::Receiver<Input>, buf: &mut [u8]) {
        self.node.hold_pushes();
        self.read_ready_held(inputs, buf);
        let now = self.now();
        self.node.release_pushes(now);
    }

    fn read_ready_held(&mut self, inputs: &mut mpsc::Receiver<Input>, buf: &mut [u8]) {
        for _ in 0..READ_BEFORE_TIMERS {
            let input = match inputs.try_recv() {
                Ok(input) => input,
                Err(_) => match self
                    .udp
                    .as_ref()
                    .and_then(|udp| crate::udp::try_read(&self.shared, udp, buf))
                {
                    Some(input) => input,
                    None => return,
                },
            };
            self.input(input);
            self.drain();
        }
    }

    /// Handles `first` and whatever else has already been queued behind it (at most
    /// [`BURST`] inputs), pushing the news they bring once at the end (see
    /// [`Node::hold_pushes`]): a driver with a backlog pays a signature per push, and its
    /// targets a frame each, per burst rather than per input. Answers go out as each input is
    /// handled.
    fn burst(&mut self, first: Input, inputs: &mut mpsc::Receiver<Input>) {
        self.node.hold_pushes();
        self.input(first);
        for _ in 1..BURST {
            let Ok(input) = inputs.try_recv() else { break };
            self.drain();
            self.input(input);
        }
        let now = self.now();
        self.node.release_pushes(now);
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
                    Err(e) => {
                        tracing::warn!(%seed, error = %e, "seed did not resolve");
                        let input = Input::SeedUnresolved {
                            seed: seed.clone(),
                            reason: e.to_string(),
                        };
                        let _ = shared.inbound.send(input).await;
                    }
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
                slot,
                grant,
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
                        session: Session::accepted(now, self.session),
                        transport,
                        slot: Some(slot),
                        grant,
                        expires: None,
                        fault: None,
                    },
                );
            }
            Input::Linked { id, peer, key } => {
                let Some(c) = self.conns.get_mut(&id) else {
                    return;
                };
                let decision = c.session.on_linked(peer);
                if let (Decision::Linked(_), Some(grant)) = (decision, c.grant.clone()) {
                    // Its frames are sealed with the link's key from now on, and held to its grant.
                    c.expires = grant.lifetime_ms.map(|ms| now.plus_millis(ms));
                    self.node.admit_link(now, c.from.clone(), peer, key, grant);
                }
                self.execute(now, id, decision);
            }
            Input::HandshakeFailed { id, error } => {
                let Some(c) = self.conns.get(&id) else {
                    return;
                };
                let decision = c.session.on_handshake_error(error);
                self.execute(now, id, decision);
            }
            Input::Frame { id, bytes } => self.frame(now, id, &bytes),
            Input::Closed { id, peer } => {
                self.note_join_failure(id, peer, None);
                self.forget(id);
            }
            Input::DialFailed { id, reason } => {
                self.note_join_failure(id, None, Some(reason));
                self.forget(id);
            }
            Input::SeedUnresolved { seed, reason } => {
                self.record_join_failure(seed, SeedProblem::Unresolved(reason));
            }
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
        if c.handle.closer.is_closed() {
            // Queued before the close: the peer is no longer listened to.
            return;
        }
        let admit = c.session.admit_frame();
        if admit != Decision::Keep {
            return self.execute(now, id, admit);
        }
        let from = c.from.clone();
        let result = self.node.handle_packet(now, from, bytes);
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let node = &self.node;
        let decision = c.session.on_frame(&result, |origin| {
            node.member(origin).and_then(|m| m.relay())
        });
        self.execute(now, id, decision);
    }

    /// Carries out what a connection's session decided.
    fn execute(&mut self, now: Instant, id: ConnId, decision: Decision) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match decision {
            Decision::Keep => {}
            Decision::Linked(peer) => {
                let bind = c.owner.is_none();
                if bind {
                    c.owner = Some(peer);
                }
                if c.session.is_dialed() && c.transport == Transport::WebSocket {
                    // Before the binding: whether the relay's link lives must not count this one.
                    self.adopt_relay(now, peer);
                }
                // Only a handshake binds a route. The first route to a member sticks until it
                // closes: frames of one stream must not overtake each other on two connections.
                let alive = self
                    .by_node
                    .get(&peer)
                    .is_some_and(|other| *other != id && self.conns.contains_key(other));
                if !alive {
                    self.by_node.insert(peer, id);
                }
            }
            Decision::Verified(_) => {
                if let Some(slot) = &c.slot
                    && !slot.establish()
                {
                    // A proven member, but members' connections are at their limit.
                    let code = CloseCode::TooManyConnections;
                    c.handle.closer.close(code, code.reason());
                    self.shared.count_drop(LinkDrop::TooManyConnections);
                }
            }
            Decision::Close(code, fault) => {
                tracing::debug!(conn = id, code = code.code(), %fault, "closing connection");
                c.fault = Some(fault);
                c.handle.closer.close(code, fault.to_string());
                self.shared.count_drop(LinkDrop::Closed(fault));
                if let Fault::Handshake(HandshakeError::Version { ours, theirs }) = fault
                    && !c.session.is_dialed()
                {
                    let now = tokio::time::Instant::now();
                    if self
                        .version_logged
                        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
                    {
                        self.version_logged = Some(now);
                        tracing::warn!(
                            conn = id,
                            from = %c.from,
                            %ours,
                            %theirs,
                            "refused a peer that speaks no common protocol or application version (logged at most every 10 s; see the handshake_version drop counter)"
                        );
                    }
                }
                if matches!(fault, Fault::Foreign(_)) && !c.session.is_dialed() {
                    // The other side of a failed join: say it here too, once in a while.
                    let now = tokio::time::Instant::now();
                    if self
                        .foreign_logged
                        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
                    {
                        self.foreign_logged = Some(now);
                        tracing::warn!(
                            conn = id,
                            transport = ?c.transport,
                            "a peer's frames do not authenticate: is its cluster key the same as ours? (logged at most every 10 s; see the foreign_frame drop counter)"
                        );
                    }
                }
            }
        }
    }

    /// Closes the connections whose session deadline passed without a verified frame.
    fn close_unverified(&mut self) {
        let now = self.now();
        let due: Vec<(ConnId, Decision)> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.handle.closer.is_closed())
            .map(|(id, c)| (*id, c.session.on_timeout(now)))
            .filter(|(_, d)| *d != Decision::Keep)
            .collect();
        for (id, decision) in due {
            self.execute(now, id, decision);
        }
        // Admissions at the end of their lifetime: the client may come back and ask again.
        for c in self.conns.values() {
            if c.expires.is_some_and(|at| now >= at) && !c.handle.closer.is_closed() {
                let reason = crate::admission::close_reason("admission expired");
                c.handle.closer.close(CloseCode::NotAdmitted, reason);
                self.shared.count_drop(LinkDrop::AdmissionEnded);
            }
        }
    }

    /// Revokes an admission granted here: the member's link is closed (4406) and its
    /// admission revoked cluster-wide (it is left everywhere). `false` when `member` is not admitted through this node.
    pub(crate) fn revoke(&mut self, member: NodeId, reason: &str) -> bool {
        let now = self.now();
        if !self.node.revoke(now, &member) {
            return false;
        }
        let reason = crate::admission::close_reason(&format!("admission revoked: {reason}"));
        for c in self.conns.values() {
            if c.grant.is_some() && c.session.linked() == Some(member) {
                c.handle
                    .closer
                    .close(CloseCode::NotAdmitted, reason.clone());
                self.shared.count_drop(LinkDrop::AdmissionEnded);
            }
        }
        true
    }

    /// Whether this node knows another live member (it joined, or someone joined it).
    fn knows_anyone(&self) -> bool {
        let me = self.node.id();
        self.node
            .members()
            .any(|m| m.id != me && m.state == gossip_core::State::Alive)
    }

    /// A dialed connection ended before its peer proved anything: while the node knows no one,
    /// remember why, for [`Gossip::joined`](crate::Gossip::joined) and the log.
    fn note_join_failure(
        &mut self,
        id: ConnId,
        peer: Option<(u16, String)>,
        dial_error: Option<String>,
    ) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        if !c.session.is_dialed() || c.session.verified().is_some() {
            return;
        }
        let problem = if let Some(reason) = dial_error {
            SeedProblem::Unreachable(reason)
        } else {
            match (peer, c.fault) {
                (_, Some(Fault::Handshake(HandshakeError::Version { ours, theirs }))) => {
                    SeedProblem::Version { ours, theirs }
                }
                (Some((4401, _)), _) => SeedProblem::Unauthorized,
                (Some((4406, reason)), _) => SeedProblem::NotAdmitted(
                    reason
                        .strip_prefix("not admitted: ")
                        .unwrap_or(&reason)
                        .to_owned(),
                ),
                (Some((4400, reason)), _) if reason.contains("handshake") => {
                    SeedProblem::Handshake(reason)
                }
                (Some((4400, _)), _) => SeedProblem::ClusterKey,
                (Some((code, reason)), _) => SeedProblem::Closed(format!("{code}: {reason}")),
                (None, Some(Fault::Foreign(_))) => SeedProblem::ClusterKey,
                (None, Some(Fault::Handshake(e))) => SeedProblem::Handshake(e.to_string()),
                (None, Some(fault)) => SeedProblem::Closed(fault.to_string()),
                // Linked, then closed without a word before any frame verified: over TCP that is
                // how a peer refuses frames it cannot open.
                (None, None) if c.session.linked().is_some() => SeedProblem::ClusterKey,
                (None, None) => SeedProblem::Closed("before the link handshake".into()),
            }
        };
        let seed = c.from.to_string();
        self.record_join_failure(seed, problem);
    }

    fn record_join_failure(&mut self, seed: String, problem: SeedProblem) {
        if self.knows_anyone() {
            return;
        }
        if self.join_failures.get(&seed) != Some(&problem) {
            tracing::warn!(%seed, %problem, "join attempt failed");
        }
        self.join_failures.insert(seed, problem);
    }

    /// What each seed ran into, while the node knows no one (empty once it does).
    pub(crate) fn join_attempts(&mut self) -> Vec<SeedAttempt> {
        if self.knows_anyone() {
            self.join_failures.clear();
        }
        self.join_failures
            .iter()
            .map(|(seed, problem)| SeedAttempt {
                seed: seed.clone(),
                problem: problem.clone(),
            })
            .collect()
    }

    pub(crate) fn has_seeds(&self) -> bool {
        !self.seeds.is_empty()
    }

    fn forget(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(&id) {
            if c.grant.is_some()
                && let Some(peer) = c.session.linked()
            {
                self.node.release_link(&peer);
            }
            self.by_addr.retain(|_, v| *v != id);
            let mut orphans = Vec::new();
            self.by_node.retain(|n, v| {
                let keep = *v != id;
                if !keep {
                    orphans.push(*n);
                }
                keep
            });
            // Another live connection of the same member takes over the route: without this, a
            // member whose route was a dial that died (refused by a full peer) kept dialing
            // again while the connection that peer opened to it sat unused.
            for n in orphans {
                let heir = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.owner == Some(n) && !c.handle.closer.is_closed())
                    .map(|(cid, _)| *cid)
                    .min();
                if let Some(heir) = heir {
                    self.by_node.insert(n, heir);
                }
            }
            tracing::debug!(conn = id, owner = ?c.owner.map(|o| o.short()), "connection closed");
            // A node that cannot listen lost its relay: re-join through the seeds; the first
            // server to greet becomes the new relay.
            if relay::lost_relay(self.node.local(), c.owner) && self.stopping.is_none() {
                self.resolve_and_join();
            }
        }
    }

    /// A node without listeners is reached through the server it dialed: the first server that
    /// greets it becomes its relay, and stays so while its connection lives.
    fn adopt_relay(&mut self, now: Instant, server: NodeId) {
        if self.stopping.is_some() {
            return;
        }
        let links = self.links();
        let Some(relay) = relay::adopt(self.node.local(), server, |r| links.bound(r).is_some())
        else {
            return;
        };
        tracing::info!(relay = %relay.short(), "relayed through");
        let _ = self.node.set_addresses(now, vec![Address::Relayed(relay)]);
    }

    fn links(&self) -> ServerLinks<'_> {
        ServerLinks {
            conns: &self.conns,
            by_node: &self.by_node,
            by_addr: &self.by_addr,
            udp: self.udp.is_some(),
            room: self.shared.has_room(),
        }
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
        let member = t.node.and_then(|n| self.node.member(&n));
        let route = route::route(&t, &self.links(), member, self.node.config().udp_budget);
        match route {
            Route::Connection(id) => self.send_on(id, t.bytes),
            Route::Datagram(addr) => {
                let sent = self.udp.as_ref().map(|udp| udp.try_send_to(&t.bytes, addr));
                match sent {
                    Some(Ok(_)) => self.shared.sent.datagram(t.bytes.len()),
                    Some(Err(_)) | None => self.shared.count_drop(LinkDrop::UdpSendFailed),
                }
            }
            Route::Dial(addr) => {
                if let Some(id) = self.dial(addr, t.node) {
                    self.send_on(id, t.bytes);
                }
            }
            Route::Drop(reason) => self.shared.count_drop(reason),
        }
    }

    fn send_on(&mut self, id: ConnId, bytes: Vec<u8>) {
        let Some(c) = self.conns.get(&id) else {
            return self.shared.count_drop(LinkDrop::NoRoute);
        };
        match c.handle.tx.try_send(bytes) {
            Ok(()) => self.shared.sent.reliable(),
            Err(mpsc::error::TrySendError::Full(_)) => {
                // A peer that does not read is not allowed to make us buffer without bound.
                c.handle
                    .closer
                    .close(CloseCode::SlowConsumer, CloseCode::SlowConsumer.reason());
                self.shared.count_drop(LinkDrop::SlowConsumer);
                self.forget(id);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.shared.count_drop(LinkDrop::ConnectionClosed);
                self.forget(id);
            }
        }
    }

    /// Dials `addr` (which [`route::route`] found dialable, within the budget) for `node`.
    fn dial(&mut self, addr: Address, node: Option<NodeId>) -> Option<ConnId> {
        let id = self.shared.next_conn_id();
        let (tx, rx) = mpsc::channel(self.shared.limits.conn_queue);
        let handle = ConnHandle {
            tx,
            closer: conn::Closer::new(&self.shared.cancel),
        };
        let shared = self.shared.clone();
        let transport = match &addr {
            Address::Tcp(a) => {
                tokio::spawn(crate::tcp::dial(shared, id, *a, rx, handle.clone(), node));
                Transport::Tcp
            }
            Address::WebSocket(url) if route::dialable(&addr) => {
                let dial = crate::ws::dial(shared, id, url.clone(), rx, handle.clone(), node);
                tokio::spawn(dial);
                Transport::WebSocket
            }
            _ => {
                self.shared.count_drop(LinkDrop::NoRoute);
                return None;
            }
        };
        tracing::debug!(conn = id, %addr, ?transport, "dialing");
        self.by_addr.insert(addr.clone(), id);
        if let Some(n) = node {
            self.by_node.entry(n).or_insert(id);
        }
        // The handshake's deadline starts once the dial had its time to connect. No verified
        // frame is required: the peer may answer over a route it already holds to this node.
        let linked_from = self.now().plus_millis(
            u64::try_from(self.shared.limits.dial_timeout.as_millis()).unwrap_or(u64::MAX),
        );
        self.conns.insert(
            id,
            Conn {
                handle,
                from: addr,
                owner: node,
                session: Session::dialed(linked_from, self.session, node),
                transport,
                slot: None,
                grant: None,
                expires: None,
                fault: None,
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
            Event::QuorumDone(outcome) => {
                if let Some(reply) = self.quorums.remove(&outcome.id) {
                    let _ = reply.send(outcome.clone());
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
        match self.node.streams().open(now, peer) {
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

/// What the driver holds to send with, as [`route::route`] sees it.
struct ServerLinks<'a> {
    conns: &'a HashMap<ConnId, Conn>,
    by_node: &'a HashMap<NodeId, ConnId>,
    by_addr: &'a HashMap<Address, ConnId>,
    udp: bool,
    room: bool,
}

impl Links for ServerLinks<'_> {
    type Conn = ConnId;

    fn bound(&self, node: &NodeId) -> Option<ConnId> {
        self.by_node
            .get(node)
            .copied()
            .filter(|id| self.conns.contains_key(id))
    }

    fn open_to(&self, addr: &Address) -> Option<ConnId> {
        self.by_addr
            .get(addr)
            .copied()
            .filter(|id| self.conns.contains_key(id))
    }

    fn has_udp(&self) -> bool {
        self.udp
    }

    fn dial_budget(&self) -> DialBudget {
        if self.room {
            DialBudget::Available
        } else {
            DialBudget::Exhausted
        }
    }
}
