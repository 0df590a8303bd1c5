//! The overlay node: its state, inputs, outputs and the wire plumbing around its protocols.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::address::Address;
use crate::drop_reason::{DropReason, Refused};
use crate::hlc::{Hlc, Timestamp};
use crate::identity::{Identity, NodeId};
use crate::keyring::Keyring;
use crate::message::{Message, OverlayMessage};
use crate::shell::{Shell, Stats};
use crate::time::Instant;
use crate::transmit::Transmit;
use crate::wire::Codec;

use super::broadcast::Plumtree;
use super::views::{self, ActiveView, PassiveView};
use super::{OverlayConfig, OverlayError, OverlayEvent, OverlayStats, messages};

/// Most seed addresses kept for joining again after isolation.
pub(super) const MAX_SEEDS: usize = 16;

/// An outstanding join or neighbor request.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    /// The member asked (unknown for a join: only the seed's address is).
    pub(super) node: Option<NodeId>,
    /// Where it was sent.
    pub(super) addr: Address,
    /// When it is given up.
    pub(super) deadline: Instant,
}

/// One member of a partial-view overlay (HyParView + Plumtree). See the [module docs](super).
///
/// ```
/// use gossip_core::overlay::{Overlay, OverlayConfig};
/// use gossip_core::{Address, ClusterKey, Identity, Instant, Keyring};
///
/// let key = ClusterKey::from_bytes([7; 32]);
/// let addr = |i: u8| Address::Udp(([10, 0, 0, i], 7946).into());
/// let now = Instant::from_millis(0);
/// let wall_ms = 1_700_000_000_000;
/// let mut make = |i: u8| {
///     let identity = Identity::from_secret_bytes([i; 32]);
///     let keyring = Keyring::new(key.clone());
///     Overlay::new(OverlayConfig::default(), identity, keyring, vec![addr(i)], [i; 32], now, wall_ms)
/// };
/// let (mut a, mut b) = (make(1), make(2));
/// b.join(now, &[addr(1)]).unwrap();
/// // Deliver frames both ways until quiet.
/// loop {
///     let mut moved = false;
///     while let Some(t) = b.poll_transmit() {
///         a.handle_packet(now, addr(2), &t.bytes);
///         moved = true;
///     }
///     while let Some(t) = a.poll_transmit() {
///         b.handle_packet(now, addr(1), &t.bytes);
///         moved = true;
///     }
///     if !moved {
///         break;
///     }
/// }
/// assert!(a.active().contains(&b.id()) && b.active().contains(&a.id()));
/// ```
#[derive(Debug)]
pub struct Overlay {
    pub(super) config: OverlayConfig,
    /// Codec, clocks, bounded output queues and wire counters, as a `Node` has.
    pub(super) shell: Shell<OverlayEvent>,
    pub(super) rng: ChaCha20Rng,
    pub(super) addrs: Vec<Address>,
    pub(super) active: ActiveView,
    pub(super) passive: PassiveView,
    pub(super) pending: Vec<Pending>,
    pub(super) seeds: Vec<Address>,
    pub(super) left: bool,
    /// A contact answered our join (a node that never joined, like the first one, is not).
    pub(super) joined: bool,
    pub(super) isolated: bool,
    pub(super) next_tick: Instant,
    pub(super) next_shuffle: Instant,
    pub(super) next_fill: Instant,
    pub(super) next_rejoin: Instant,
    /// Consecutive shuffle answers that brought no member we did not know.
    pub(super) stale_shuffles: u8,
    pub(super) tree: Plumtree,
    pub(super) stats: OverlayStats,
}

impl Overlay {
    /// A node that signs as `identity`, encrypts with `keyring`, is reached at `addrs`, and draws
    /// its randomness from `seed` (from the driver's cryptographic RNG). `now` is the driver's
    /// monotonic clock and `wall_ms` the wall clock (ms since the UNIX epoch) at the same moment.
    pub fn new(
        config: OverlayConfig,
        identity: Identity,
        keyring: Keyring,
        addrs: Vec<Address>,
        seed: [u8; 32],
        now: Instant,
        wall_ms: u64,
    ) -> Self {
        let mut codec = Codec::new(identity, keyring, config.limits, config.replay);
        codec.set_key_cache_capacity(config.key_cache);
        let mut rng = ChaCha20Rng::from_seed(seed);
        // Spread the nodes' ticks so they do not all wake at once.
        let offset = views::below(&mut rng, config.tick_ms.max(1) as usize) as u64;
        let shuffle = config.shuffle_interval_ms;
        let hlc = Hlc::new(config.max_clock_drift_ms);
        Overlay {
            shell: Shell::new(codec, hlc, now, wall_ms, config.max_queue),
            active: ActiveView::new(config.active_size),
            passive: PassiveView::new(config.passive_size),
            tree: Plumtree::default(),
            next_tick: now.plus_millis(offset),
            next_shuffle: now
                .plus_millis(shuffle / 2 + views::below(&mut rng, shuffle.max(1) as usize) as u64),
            next_fill: now,
            next_rejoin: now,
            stale_shuffles: 0,
            config,
            rng,
            addrs,
            pending: Vec::new(),
            seeds: Vec::new(),
            left: false,
            joined: false,
            isolated: false,
            stats: OverlayStats::default(),
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.shell.codec.identity().id()
    }

    /// The settings.
    pub fn config(&self) -> &OverlayConfig {
        &self.config
    }

    /// The active view (the node's links).
    pub fn active(&self) -> &ActiveView {
        &self.active
    }

    /// The passive view.
    pub fn passive(&self) -> &PassiveView {
        &self.passive
    }

    /// The overlay's own counters (failures, deliveries, Plumtree traffic).
    pub fn stats(&self) -> &OverlayStats {
        &self.stats
    }

    /// Frames and bytes in and out, and drops by reason, counted as a `Node` counts them.
    pub fn wire_stats(&self) -> &Stats {
        &self.shell.stats
    }

    /// The wire pipeline (replay guard and key cache, for inspection).
    pub fn codec(&self) -> &Codec {
        &self.shell.codec
    }

    /// Whether [`Overlay::leave`] was called.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Re-anchors the wall clock: `wall_ms` is the wall time at `now`.
    pub fn set_wall_clock(&mut self, now: Instant, wall_ms: u64) {
        self.shell.set_wall_clock(now, wall_ms);
    }

    pub(super) fn wall(&self, now: Instant) -> u64 {
        self.shell.wall(now)
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.shell.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<OverlayEvent> {
        self.shell.poll_event()
    }

    /// When [`Overlay::handle_timeout`] should next be called (None: nothing to wait for).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.left {
            return None;
        }
        let busy = !self.active.is_empty()
            || !self.passive.is_empty()
            || !self.pending.is_empty()
            || !self.seeds.is_empty();
        let tick = busy.then_some(self.next_tick);
        match (tick, self.tree.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Joins the overlay through one of `seeds` (tried in random order until one answers).
    pub fn join(&mut self, now: Instant, seeds: &[Address]) -> Result<(), OverlayError> {
        if self.left {
            return Err(OverlayError::Left);
        }
        if seeds.is_empty() {
            return Err(OverlayError::NoSeeds);
        }
        self.seeds = seeds.iter().take(MAX_SEEDS).cloned().collect();
        self.joined = false;
        self.send_join(now);
        // The joiner's passive view starts empty: shuffle soon to fill it.
        let tick = self.config.tick_ms;
        self.next_shuffle =
            now.plus_millis(2 * tick + views::below(&mut self.rng, tick.max(1) as usize) as u64);
        Ok(())
    }

    /// Broadcasts `data` under `topic` to every member of the overlay. Returns the message id.
    pub fn broadcast(
        &mut self,
        now: Instant,
        topic: &str,
        data: Vec<u8>,
    ) -> Result<Timestamp, OverlayError> {
        if self.left {
            return Err(OverlayError::Left);
        }
        self.originate(now, topic, data)
    }

    /// Leaves: tells every active neighbour, then stops (further input is ignored).
    pub fn leave(&mut self, now: Instant) {
        if self.left {
            return;
        }
        let peers: Vec<(NodeId, Address)> = self
            .active
            .iter()
            .map(|p| (p.node, p.addr.clone()))
            .collect();
        for (node, addr) in peers {
            self.send(
                now,
                Some(node),
                addr,
                messages::Disconnect { leaving: true }.into(),
            );
        }
        self.active = ActiveView::new(self.config.active_size);
        self.passive = PassiveView::new(self.config.passive_size);
        self.pending.clear();
        self.tree = Plumtree::default();
        self.left = true;
    }

    /// Handles a frame received from `from`. Returns its authenticated sender, or why the frame
    /// was refused before that (counted in [`Overlay::wire_stats`]).
    pub fn handle_packet(
        &mut self,
        now: Instant,
        from: Address,
        bytes: &[u8],
    ) -> Result<NodeId, Refused> {
        if self.left {
            return Err(Refused {
                reason: DropReason::Unexpected,
            });
        }
        let inbound = self.shell.decode(now, bytes)?;
        let sender = inbound.origin();
        if sender == self.id() {
            self.shell.count_drop(DropReason::Unexpected);
            return Ok(sender);
        }
        if let Some(peer) = self.active.get_mut(&sender) {
            peer.last_heard = now;
        }
        let Message::Overlay(message) = inbound.message else {
            self.shell.count_drop(DropReason::WrongEngine);
            return Ok(sender);
        };
        match message {
            OverlayMessage::Join(m) => self.on_join(now, sender, from, m),
            OverlayMessage::ForwardJoin(m) => self.on_forward_join(now, sender, m),
            OverlayMessage::Neighbor(m) => self.on_neighbor(now, sender, from, m),
            OverlayMessage::NeighborReply(m) => self.on_neighbor_reply(now, sender, from, m),
            OverlayMessage::Disconnect(m) => self.on_disconnect(now, sender, from, m),
            OverlayMessage::Shuffle(m) => self.on_shuffle(now, sender, m),
            OverlayMessage::ShuffleReply(m) => self.on_shuffle_reply(m),
            OverlayMessage::Heartbeat(m) => self.on_heartbeat(now, sender, from, m),
            OverlayMessage::EagerPush(m) => self.on_eager(now, sender, from, m),
            OverlayMessage::IHave(m) => self.on_ihave(now, sender, from, m),
            OverlayMessage::Graft(m) => self.on_graft(now, sender, from, m),
            OverlayMessage::Prune(_) => self.on_prune(now, sender, from),
        }
        Ok(sender)
    }

    /// Runs what is due at `now`: Plumtree's graft timers, and on each tick heartbeats, failure
    /// detection, repair of the active view, request timeouts and shuffles.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.left {
            return;
        }
        self.tree_timeout(now);
        if now >= self.next_tick {
            self.next_tick = now.plus_millis(self.config.tick_ms.max(1));
            self.tick(now);
        }
    }

    /// Signs, seals and queues `message` for `to`.
    pub(super) fn send(
        &mut self,
        now: Instant,
        node: Option<NodeId>,
        to: Address,
        message: Message,
    ) {
        self.send_many(now, vec![(node, to)], message);
    }

    /// Signs `message` once and seals it for each target: the signed part names no recipient,
    /// and a signature costs several times the sealing.
    pub(super) fn send_many(
        &mut self,
        now: Instant,
        targets: Vec<(Option<NodeId>, Address)>,
        message: Message,
    ) {
        if targets.is_empty() {
            return;
        }
        // Only a broadcast can be too large to encode, and `originate` checks it first.
        let Some(packet) = self.shell.sign(now, message) else {
            return;
        };
        for (node, to) in targets {
            let Some(bytes) = self.shell.seal(&mut self.rng, &packet) else {
                continue;
            };
            if let Some(peer) = node.and_then(|n| self.active.get_mut(&n)) {
                peer.last_sent = now;
            }
            let reliable = bytes.len() > self.config.udp_budget || to.is_reliable();
            self.shell.emit(Transmit {
                to,
                node,
                bytes,
                reliable,
            });
        }
    }

    pub(super) fn emit(&mut self, event: OverlayEvent) {
        self.shell.push_event(event);
    }
}
