//! The node: one member of a cluster as a sans-IO state machine.
//!
//! Inputs: [`Node::handle_packet`], [`Node::handle_timeout`] and commands ([`Node::join`],
//! [`Node::broadcast`], [`Node::set_metadata`], ...). Outputs, pulled by the driver after every
//! input: [`Node::poll_transmit`], [`Node::poll_event`], [`Node::poll_timeout`].

mod admit;
mod apply;
mod backlog;
mod commands;
#[cfg(feature = "endpoints")]
mod endpoints;
mod facades;
mod hub;
mod intake;
#[cfg(feature = "ownership")]
mod ownership;
mod probe;
mod send;
mod spread;
#[cfg(feature = "state")]
mod state;
mod sync;
mod table;
mod timers;

pub use self::commands::CommandError;
pub use self::facades::{NodeGroups, NodeStreams};
#[cfg(feature = "state")]
pub use self::state::StateStats;
pub use crate::shell::Stats;
pub use crate::transmit::Transmit;

use std::collections::BTreeMap;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

#[cfg(feature = "admission")]
use self::admit::Admitted;
use self::apply::Gate;
use self::hub::Hub;
use self::probe::Probing;
use self::spread::Spread;
use self::sync::SyncState;
use self::table::Members;
use self::timers::{Timer, TimerTable};
use crate::address::Address;
use crate::config::Config;
use crate::drop_reason::{DropReason, Refused};
use crate::event::Event;
use crate::groups::Groups;
use crate::hlc::Hlc;
use crate::identity::{Identity, NodeId};
use crate::keyring::Keyring;
use crate::membership::{Member, State};
use crate::message::{Ack, Alive, ApplicationMessage, MembershipMessage, Message, UpdateMessage};
use crate::requests::Requests;
use crate::shell::Shell;
use crate::streams::{StreamLimits, Streams};
use crate::time::Instant;
use crate::wire::{Codec, Inbound, SignedPacket};

/// One member of a cluster.
///
/// Methods come in four kinds: getters ([`Node::id`], [`Node::members`], [`Node::stats`], ...),
/// inputs ([`Node::handle_packet`], [`Node::handle_timeout`]), commands ([`Node::join`],
/// [`Node::broadcast`], [`Node::streams`], [`Node::groups`], ...) and outputs. After every input
/// or command, drain [`Node::poll_transmit`] and [`Node::poll_event`], then sleep until
/// [`Node::poll_timeout`].
#[derive(Debug)]
pub struct Node {
    config: Config,
    id: NodeId,
    rng: ChaCha20Rng,
    /// Codec, clocks, output queues and counters.
    shell: Shell<Event>,
    members: Members,
    /// Who may enter the member table: tombstones, challenges, intake bounds (`apply.rs`).
    gate: Gate,
    /// Failure detection (`probe.rs`).
    probing: Probing,
    /// Dissemination (`spread.rs`).
    spread: Spread,
    /// Members relayed through this node (`hub.rs`).
    hub: Hub,
    /// Members without the cluster key: the grants of those connected here, and the admissions
    /// of all (`admit.rs`).
    #[cfg(feature = "admission")]
    admitted: Admitted,
    /// Push-pull anti-entropy (`sync.rs`).
    sync: SyncState,
    requests: Requests,
    groups: Groups,
    streams: Streams,
    timers: TimerTable,
    left: bool,
    /// Replicated per-member state (`state.rs`).
    #[cfg(feature = "state")]
    state: crate::state::store::Store,
    /// Key ownership's candidates and watches (`ownership.rs`).
    #[cfg(feature = "ownership")]
    ownership: self::ownership::Ownership,
}

impl Node {
    /// A node that is reachable at `addrs` (empty for a member that cannot listen and will be
    /// relayed). `seed` seeds its RNG: drivers draw it from the OS or `crypto.getRandomValues`,
    /// the simulator from its own seed. `now` and `wall_ms` anchor its clocks; its incarnation
    /// starts at `wall_ms`, so a restart always outranks the previous life.
    pub fn new(
        config: Config,
        identity: Identity,
        keyring: Keyring,
        addrs: Vec<Address>,
        seed: [u8; 32],
        now: Instant,
        wall_ms: u64,
    ) -> Node {
        let id = identity.id();
        let codec = Codec::new(identity, keyring, config.limits, config.replay);
        let mut hlc = Hlc::new(config.replay.max_future_ms);
        let first = hlc.now(wall_ms);
        let alive = Alive {
            incarnation: wall_ms,
            addrs: addrs.clone(),
            name: config.name.clone(),
        };
        let record = codec
            .sign(first, &alive.clone().into())
            .expect("a node's own alive record fits the limits");
        let me = Member {
            id,
            name: config.name.clone(),
            addrs,
            incarnation: wall_ms,
            state: State::Alive,
            since: now,
            metadata: BTreeMap::new(),
            meta_version: 0,
            rtt_micros: None,
            alive: record,
            status: None,
            meta: None,
        };
        let mut rng = ChaCha20Rng::from_seed(seed);
        let jitter = |rng: &mut ChaCha20Rng, ms: u64| now.plus_millis(rng.next_u64() % ms.max(1));
        let next_probe = jitter(&mut rng, config.probe_interval_ms);
        let next_gossip = jitter(&mut rng, config.gossip_interval_ms);
        let next_push_pull = jitter(&mut rng, config.push_pull_interval_ms.max(1));
        let seq = rng.next_u32();
        let mut timers = TimerTable::new(now);
        timers.set(Timer::Probe, next_probe);
        timers.set(Timer::Gossip, next_gossip);
        if config.push_pull_interval_ms > 0 {
            timers.set(Timer::PushPull, next_push_pull);
        }
        timers.set(
            Timer::Reap,
            now.plus_millis(config.dead_retention_ms.max(1_000)),
        );
        Node {
            id,
            shell: Shell::new(codec, hlc, now, wall_ms, config.max_queue),
            members: Members::new(me),
            gate: Gate::default(),
            probing: Probing::new(seq),
            spread: Spread::default(),
            hub: Hub::new(now),
            #[cfg(feature = "admission")]
            admitted: Admitted::default(),
            sync: SyncState::default(),
            requests: Requests::new(rng.next_u64()),
            groups: Groups::new(),
            streams: Streams::new(StreamLimits::default()),
            timers,
            left: false,
            // Its life is its first incarnation: a restart starts a new, empty map.
            #[cfg(feature = "state")]
            state: crate::state::store::Store::new(
                config.state,
                id,
                wall_ms,
                now.plus_millis(config.state.sync_interval_ms.max(1)),
            ),
            #[cfg(feature = "ownership")]
            ownership: self::ownership::Ownership::new(id),
            rng,
            config,
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every member this node knows, itself included, in no particular order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// One member.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// Members currently alive or suspect (not dead or left), itself included.
    pub fn live_count(&self) -> usize {
        self.members.live_count()
    }

    /// Whether `id` answered a direct probe of this node in its current life: someone listens at
    /// the address it signed. Members that never did are probed in a lane of their own.
    pub fn is_confirmed(&self, id: &NodeId) -> bool {
        self.probing.confirmed.contains(id)
    }

    /// This node's record.
    pub fn local(&self) -> &Member {
        self.members.get(&self.id).expect("self is always a member")
    }

    /// Updates waiting in the retransmit queue (0 once everything has spread).
    pub fn pending_updates(&self) -> usize {
        self.spread.queue.len()
    }

    /// Lifeguard's local health score (0 is healthy; probes slow down by `score + 1`).
    pub fn health_score(&self) -> u32 {
        self.probing.awareness.score()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.shell.stats
    }

    /// Cluster keys, for rotation.
    pub fn keyring_mut(&mut self) -> &mut Keyring {
        self.shell.codec.keyring_mut()
    }

    /// Re-anchors the wall clock (a driver may call this when the OS clock is adjusted).
    pub fn set_wall_clock(&mut self, now: Instant, wall_ms: u64) {
        self.shell.set_wall_clock(now, wall_ms);
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.shell.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.shell.poll_event()
    }

    /// When [`Node::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadlines = [
            self.timers.next(),
            self.probing.next_deadline(),
            self.requests.next_deadline(),
            self.hub.next_deadline(),
            self.streams.next_deadline(),
            #[cfg(feature = "state")]
            Some(self.state_deadline()),
            #[cfg(feature = "admission")]
            self.admission_deadline(),
        ];
        (!self.left).then(|| deadlines.into_iter().flatten().min())?
    }

    /// A frame arrived from `from` (the address to answer an unknown sender at).
    ///
    /// Returns the frame's origin once its signature verified, or why it was refused before
    /// that (counted in [`Stats::drops`] too). A relay forwards frames it did not sign, so the
    /// origin alone never proves who is at the other end of a connection.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        from: Address,
        bytes: &[u8],
    ) -> Result<NodeId, Refused> {
        self.timers.advance(now);
        if let Err(reason) = self.admitted_rate(now, &from) {
            self.shell.count_drop(reason);
            return Err(Refused { reason });
        }
        let inbound = self.shell.decode_from(now, &from, bytes)?;
        self.gate.added_this_frame = 0;
        let origin = inbound.origin();
        if let Err(reason) = self.admission_check(now, &origin, &inbound.message) {
            self.shell.count_drop(reason);
            return Err(Refused { reason });
        }
        #[cfg(feature = "phi")]
        if let Some(phi) = self.config.phi
            && self.members.contains_key(&inbound.origin())
            && inbound.origin() != self.id
        {
            self.probing
                .detectors
                .entry(inbound.origin())
                .or_default()
                .heartbeat(now, &phi);
        }
        self.spread.fresh_from = Some(origin);
        let fresh_before = self.spread.fresh.len();
        self.dispatch(now, from, inbound);
        match self.spread.held {
            Some(source) => {
                if self.spread.fresh.len() > fresh_before {
                    let one = fresh_before == 0 || source == Some(origin);
                    self.spread.held = Some(one.then_some(origin));
                }
                if self.spread.fresh.len() >= spread::HELD_MAX {
                    self.release_held(now);
                }
            }
            None => self.flush(now),
        }
        self.spread.fresh_from = None;
        Ok(origin)
    }

    /// Holds back the pushes of the news the next frames bring until
    /// [`Node::release_pushes`], so that a driver with a backlog of frames pushes their news in
    /// one batch per tree instead of one per frame: in a join storm each frame brings one or
    /// two records, and each push costs a signature here and a frame at each of its targets.
    /// Answers (acks, push-pull answers) are not held: only the pushes of news. At most
    /// 64 items are held; then they go out. A driver that handles one frame at a time has no
    /// reason to call this.
    pub fn hold_pushes(&mut self) {
        if self.spread.held.is_none() {
            self.spread.held = Some(None);
        }
    }

    /// Pushes the news held since [`Node::hold_pushes`] and stops holding.
    pub fn release_pushes(&mut self, now: Instant) {
        if self.spread.held.take().is_some() {
            self.timers.advance(now);
            self.release_held(now);
        }
    }

    /// Pushes the held news, not back to its sender when there was one; holding goes on.
    fn release_held(&mut self, now: Instant) {
        let holding = self.spread.held.is_some();
        let source = self.spread.held.flatten();
        self.spread.fresh_from = source;
        self.spread.datagrams = true;
        self.flush(now);
        self.spread.datagrams = false;
        self.spread.fresh_from = None;
        if holding {
            self.spread.held = Some(None);
        }
    }

    /// Time passed: run whatever timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.timers.advance(now);
        if self.left {
            return;
        }
        self.probe_tick(now);
        self.indirect_tick(now);
        let mut events = Vec::new();
        self.requests.on_timeout(now, &mut events);
        events.into_iter().for_each(|e| self.shell.push_event(e));
        let expired = self.streams.on_timeout(now);
        self.stream_outputs(now, expired);
        self.suspicion_tick(now);
        if self.timers.is_due(Timer::Gossip, now) {
            self.gossip_round(now);
            let interval = if self.spread.queue.is_empty() {
                self.config.gossip_interval_ms
            } else {
                self.config.fast_gossip_interval_ms
            };
            self.timers.set(Timer::Gossip, now.plus_millis(interval));
        }
        if self.timers.is_due(Timer::PushPull, now) {
            self.push_pull_round(now);
            let interval = if self.sync.bootstrap_syncs > 0 {
                self.sync.bootstrap_syncs -= 1;
                self.config.probe_interval_ms
            } else {
                self.config.push_pull_interval_ms
            };
            self.timers.set(Timer::PushPull, now.plus_millis(interval));
        }
        #[cfg(feature = "admission")]
        self.admission_tick(now);
        if self.timers.is_due(Timer::Reap, now) {
            self.reap(now);
            self.timers.set(Timer::Reap, now.plus_millis(1_000));
        }
        if now >= self.hub.next_delivery {
            self.deliver_hub(now);
        }
        #[cfg(feature = "state")]
        self.state_tick(now);
        self.flush(now);
    }

    fn dispatch(&mut self, now: Instant, from: Address, inbound: Inbound) {
        let origin = inbound.origin();
        match inbound.message {
            Message::Membership(m) => self.on_membership(now, origin, from, m),
            Message::Update(u) => self.on_update(now, origin, from, u, inbound.packet),
            Message::Application(a) => self.on_application(origin, a),
            Message::Stream(s) => self.on_stream_message(now, origin, s),
            Message::Overlay(_) => self.shell.count_drop(DropReason::WrongEngine),
        }
    }

    fn on_membership(&mut self, now: Instant, origin: NodeId, from: Address, m: MembershipMessage) {
        match m {
            MembershipMessage::Ping(ping) => {
                self.receive_items(now, ping.piggyback);
                if ping.target != self.id || self.left {
                    return self.shell.count_drop(DropReason::PingNotForUs);
                }
                let budget = self.piggyback_budget();
                let piggyback = self.take_piggyback_for(budget, origin);
                self.reply(
                    now,
                    origin,
                    from,
                    Ack {
                        seq: ping.seq,
                        piggyback,
                    }
                    .into(),
                    false,
                );
            }
            MembershipMessage::Ack(ack) => {
                self.receive_items(now, ack.piggyback);
                self.on_ack(now, origin, ack.seq);
            }
            MembershipMessage::PingReq(req) => self.on_ping_req(now, origin, from, req),
            MembershipMessage::Nack(nack) => {
                if let Some(p) = self.probing.current.as_mut().filter(|p| p.seq == nack.seq) {
                    p.nacks += 1;
                }
            }
            MembershipMessage::Gossip(g) => self.receive_items(now, g.items),
            MembershipMessage::Sync(sync) => self.on_sync(now, origin, from, sync),
            MembershipMessage::Relay(relay) => self.on_relay(now, origin, relay),
            #[cfg(feature = "state")]
            MembershipMessage::StateSync(sync) => self.on_state_sync(now, origin, from, sync),
        }
    }

    /// A state update or broadcast sent as a frame of its own. One about us is a challenge
    /// (see `challenge`): answer it with our alive record, refuted if needed.
    fn on_update(
        &mut self,
        now: Instant,
        origin: NodeId,
        from: Address,
        update: UpdateMessage,
        packet: SignedPacket,
    ) {
        let about_me = match &update {
            UpdateMessage::Dead(d) => d.node == self.id,
            UpdateMessage::Suspect(s) => s.node == self.id,
            _ => false,
        };
        self.apply_and_spread(now, origin, update, packet);
        if about_me && !self.left {
            let alive = self.local().alive.clone();
            if let Some(frame) = self.shell.seal(&mut self.rng, &alive) {
                let reliable = frame.len() > self.config.udp_budget;
                self.shell.emit(Transmit {
                    to: from,
                    node: Some(origin),
                    bytes: frame,
                    reliable,
                });
            }
        }
    }

    fn on_application(&mut self, origin: NodeId, m: ApplicationMessage) {
        match m {
            ApplicationMessage::Request(r) if r.to == self.id => {
                self.shell.push_event(Event::Request {
                    from: origin,
                    id: r.req,
                    topic: r.topic,
                    data: r.data.into_vec(),
                });
            }
            ApplicationMessage::Response(r) if r.to == self.id => {
                let mut events = Vec::new();
                if !self
                    .requests
                    .on_response(origin, r.req, r.data.into_vec(), &mut events)
                {
                    self.shell.count_drop(DropReason::UnexpectedResponse);
                }
                events.into_iter().for_each(|e| self.shell.push_event(e));
            }
            ApplicationMessage::Request(_) | ApplicationMessage::Response(_) => {
                self.shell.count_drop(DropReason::RequestNotForUs)
            }
            ApplicationMessage::Direct(d) if d.to == self.id => {
                self.shell.push_event(Event::Direct {
                    from: origin,
                    topic: d.topic,
                    data: d.data.into_vec(),
                });
            }
            ApplicationMessage::Direct(_) => self.shell.count_drop(DropReason::DirectNotForUs),
        }
    }
}
