//! The node: one member of a cluster as a sans-IO state machine.
//!
//! Inputs: [`Node::handle_packet`], [`Node::handle_timeout`] and commands ([`Node::join`],
//! [`Node::broadcast`], [`Node::set_metadata`], ...). Outputs, pulled by the driver after every
//! input: [`Node::poll_transmit`], [`Node::poll_event`], [`Node::poll_timeout`].

mod apply;
mod commands;
mod hub;
mod probe;
mod send;
mod spread;
mod sync;

pub use self::commands::CommandError;
pub use self::send::Stats;
pub use crate::transmit::Transmit;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use self::probe::{IndirectProbe, Probe, Suspicion};
use self::spread::Queued;
use crate::address::Address;
use crate::config::Config;
use crate::detector::PhiDetector;
use crate::drop_reason::{DropReason, Refused};
use crate::event::Event;
use crate::groups::Groups;
use crate::hlc::Hlc;
use crate::identity::{Identity, NodeId};
use crate::keyring::Keyring;
use crate::membership::{Member, State};
use crate::message::{Ack, Alive, Message};
use crate::requests::Requests;
use crate::streams::{StreamLimits, Streams};
use crate::time::Instant;
use crate::wire::{Codec, Inbound, SignedPacket};

/// One member of a cluster.
#[derive(Debug)]
pub struct Node {
    config: Config,
    codec: Codec,
    hlc: Hlc,
    rng: ChaCha20Rng,
    id: NodeId,
    start: Instant,
    wall_at_start_ms: u64,
    members: HashMap<NodeId, Member>,
    tombstones: HashMap<NodeId, (u64, Instant)>,
    challenged: HashMap<NodeId, Instant>,
    probe_order: Vec<NodeId>,
    probe_index: usize,
    probe: Option<Probe>,
    next_probe: Instant,
    seq: u32,
    indirect: HashMap<u32, IndirectProbe>,
    awareness: u32,
    suspicions: HashMap<NodeId, Suspicion>,
    queue: Vec<Queued>,
    fresh: Vec<SignedPacket>,
    /// Who sent the input being handled: its news is not pushed back to it.
    fresh_from: Option<NodeId>,
    /// Members first learned of while handling the input (at most `NEWCOMERS_MAX`): other
    /// members may not know them yet, so their news gets no push tree (see `tree_root`).
    newcomers: Vec<NodeId>,
    /// News waiting for the next delivery to the members this node relays for.
    hub_pending: Vec<SignedPacket>,
    next_hub: Instant,
    /// Members relayed through this node: it hands them news itself (see `deliver_hub`).
    leaves: BTreeSet<NodeId>,
    sync_followups: HashMap<NodeId, u8>,
    bootstrap_syncs: u8,
    requests: Requests,
    groups: Groups,
    detectors: HashMap<NodeId, PhiDetector>,
    streams: Streams,
    last_now: Instant,
    next_gossip: Instant,
    next_push_pull: Instant,
    next_reap: Instant,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    left: bool,
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
        Node {
            codec,
            hlc,
            id,
            start: now,
            wall_at_start_ms: wall_ms,
            members: HashMap::from([(id, me)]),
            tombstones: HashMap::new(),
            challenged: HashMap::new(),
            probe_order: Vec::new(),
            probe_index: 0,
            probe: None,
            next_probe,
            seq: rng.next_u32(),
            indirect: HashMap::new(),
            awareness: 0,
            suspicions: HashMap::new(),
            queue: Vec::new(),
            fresh: Vec::new(),
            fresh_from: None,
            newcomers: Vec::new(),
            hub_pending: Vec::new(),
            next_hub: now,
            leaves: BTreeSet::new(),
            sync_followups: HashMap::new(),
            bootstrap_syncs: 0,
            requests: Requests::new(rng.next_u64()),
            groups: Groups::new(),
            detectors: HashMap::new(),
            streams: Streams::new(StreamLimits::default()),
            last_now: now,
            next_gossip,
            next_push_pull,
            next_reap: now.plus_millis(config.dead_retention_ms.max(1_000)),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            left: false,
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
        self.members.values().filter(|m| !m.state.is_down()).count()
    }

    /// This node's record.
    pub fn local(&self) -> &Member {
        &self.members[&self.id]
    }

    /// Lifeguard's local health score (0 is healthy; probes slow down by `score + 1`).
    pub fn health_score(&self) -> u32 {
        self.awareness
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Cluster keys, for rotation.
    pub fn keyring_mut(&mut self) -> &mut Keyring {
        self.codec.keyring_mut()
    }

    /// Re-anchors the wall clock (a driver may call this when the OS clock is adjusted).
    pub fn set_wall_clock(&mut self, now: Instant, wall_ms: u64) {
        self.start = now;
        self.wall_at_start_ms = wall_ms;
    }

    fn wall(&self, now: Instant) -> u64 {
        self.wall_at_start_ms + now.micros_since(self.start) / 1_000
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.left {
            return None;
        }
        let mut t = self.next_probe.min(self.next_gossip).min(self.next_reap);
        if self.config.push_pull_interval_ms > 0 {
            t = t.min(self.next_push_pull);
        }
        if let Some(p) = &self.probe {
            t = t.min(if p.indirect_sent {
                p.deadline
            } else {
                p.indirect_at
            });
        }
        for s in self.suspicions.values() {
            t = t.min(s.deadline);
        }
        for i in self.indirect.values() {
            t = t.min(i.deadline);
        }
        if let Some(d) = self.requests.next_deadline() {
            t = t.min(d);
        }
        if !self.hub_pending.is_empty() {
            t = t.min(self.next_hub);
        }
        Some(t)
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
        self.last_now = self.last_now.max(now);
        self.stats.packets_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        let wall = self.wall(now);
        let inbound = match self.codec.decode(bytes, wall) {
            Ok(inbound) => inbound,
            Err(e) => {
                self.drop_counted(&e);
                return Err(Refused {
                    reason: (&e).into(),
                });
            }
        };
        if self.hlc.observe(wall, inbound.id()).is_err() {
            self.count_drop(DropReason::ClockDrift);
            return Err(Refused {
                reason: DropReason::ClockDrift,
            });
        }
        let origin = inbound.origin();
        if let Some(phi) = self.config.phi
            && self.members.contains_key(&inbound.origin())
            && inbound.origin() != self.id
        {
            self.detectors
                .entry(inbound.origin())
                .or_default()
                .heartbeat(now, &phi);
        }
        self.fresh_from = Some(origin);
        self.dispatch(now, from, inbound);
        self.flush(now);
        self.fresh_from = None;
        Ok(origin)
    }

    /// Time passed: run whatever timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        if self.left {
            return;
        }
        self.probe_tick(now);
        self.indirect_tick(now);
        let mut events = Vec::new();
        self.requests.on_timeout(now, &mut events);
        events.into_iter().for_each(|e| self.push_event(e));
        self.suspicion_tick(now);
        if now >= self.next_gossip {
            self.gossip_round(now);
            let interval = if self.queue.is_empty() {
                self.config.gossip_interval_ms
            } else {
                self.config.fast_gossip_interval_ms
            };
            self.next_gossip = now.plus_millis(interval);
        }
        if self.config.push_pull_interval_ms > 0 && now >= self.next_push_pull {
            self.push_pull_round(now);
            let interval = if self.bootstrap_syncs > 0 {
                self.bootstrap_syncs -= 1;
                self.config.probe_interval_ms
            } else {
                self.config.push_pull_interval_ms
            };
            self.next_push_pull = now.plus_millis(interval);
        }
        if now >= self.next_reap {
            self.reap(now);
            self.next_reap = now.plus_millis(1_000);
        }
        if now >= self.next_hub {
            self.deliver_hub(now);
        }
        self.flush(now);
    }

    fn dispatch(&mut self, now: Instant, from: Address, inbound: Inbound) {
        let origin = inbound.origin();
        match inbound.message {
            Message::Ping(ping) => {
                self.receive_items(now, ping.piggyback);
                if ping.target != self.id || self.left {
                    return self.count_drop(DropReason::PingNotForUs);
                }
                let budget = self.piggyback_budget();
                let piggyback = self.take_piggyback(budget);
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
            Message::Ack(ack) => {
                self.receive_items(now, ack.piggyback);
                self.on_ack(now, origin, ack.seq);
            }
            Message::PingReq(req) => self.on_ping_req(now, origin, from, req),
            Message::Nack(nack) => {
                if let Some(p) = self.probe.as_mut().filter(|p| p.seq == nack.seq) {
                    p.nacks += 1;
                }
            }
            Message::Gossip(g) => self.receive_items(now, g.items),
            Message::Sync(sync) => self.on_sync(now, origin, from, sync),
            Message::Relay(relay) => self.on_relay(now, origin, relay),
            Message::Request(r) if r.to == self.id => {
                self.push_event(Event::Request {
                    from: origin,
                    id: r.req,
                    topic: r.topic,
                    data: r.data.into_vec(),
                });
            }
            Message::Response(r) if r.to == self.id => {
                let mut events = Vec::new();
                if !self
                    .requests
                    .on_response(origin, r.req, r.data.into_vec(), &mut events)
                {
                    self.count_drop(DropReason::UnexpectedResponse);
                }
                events.into_iter().for_each(|e| self.push_event(e));
            }
            Message::Request(_) | Message::Response(_) => {
                self.count_drop(DropReason::RequestNotForUs)
            }
            Message::StreamOpen(m) => self.on_stream_message(now, origin, m.into()),
            Message::StreamAccept(m) => self.on_stream_message(now, origin, m.into()),
            Message::StreamData(m) => self.on_stream_message(now, origin, m.into()),
            Message::StreamCredit(m) => self.on_stream_message(now, origin, m.into()),
            Message::StreamClose(m) => self.on_stream_message(now, origin, m.into()),
            Message::Direct(d) => {
                if d.to == self.id {
                    self.push_event(Event::Direct {
                        from: origin,
                        topic: d.topic,
                        data: d.data.into_vec(),
                    });
                } else {
                    self.count_drop(DropReason::DirectNotForUs);
                }
            }
            message => {
                // A state update or broadcast sent as a frame of its own. One about us is a
                // challenge (see `challenge`): answer it with our alive record, refuted if needed.
                let about_me = match &message {
                    Message::Dead(d) => d.node == self.id,
                    Message::Suspect(s) => s.node == self.id,
                    _ => false,
                };
                self.apply_and_spread(now, origin, message, inbound.packet);
                if about_me && !self.left {
                    let alive = self.local().alive.clone();
                    if let Some(frame) = self.seal(&alive) {
                        let reliable = frame.len() > self.config.udp_budget;
                        self.emit(Transmit {
                            to: from,
                            node: Some(origin),
                            bytes: frame,
                            reliable,
                        });
                    }
                }
            }
        }
    }
}
