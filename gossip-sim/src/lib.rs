//! Deterministic simulator for gossip clusters.
//!
//! N real [`gossip_core::Node`]s exchange their frames through a modelled network: latency with
//! jitter (which reorders), loss, duplication, partitions, crashes and restarts. Time is virtual:
//! the simulator jumps to the earliest pending delivery or node timeout, so an hour of protocol
//! time takes as long as the work it contains. Everything random comes from one seed, so a failing
//! run is reproduced exactly by its seed.

#![deny(missing_docs)]

pub mod admitted;
pub mod hostile;
pub mod overlay;
mod window;
pub use window::{critical_path_ns, measure_critical_path};

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use gossip_core::link::Handshake;
use gossip_core::{
    Address, ClusterKey, Config, Event, Grant, Identity, Instant, Keyring, Node, NodeId, State,
    Transmit,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

mod clock;
pub use clock::VirtualTime;
mod state;

/// The simulated wall clock at virtual time zero (2023-11-14T22:13:20Z).
pub const EPOCH_MS: u64 = 1_700_000_000_000;

/// First retransmission delay of a reliable link, doubling with each retry (TCP's minimum RTO).
pub const RETRANSMIT_US: u64 = 200_000;

/// How the network behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetConfig {
    /// One-way latency in microseconds.
    pub latency_us: u64,
    /// Uniform extra delay in `[0, jitter_us)`; reorders packets.
    pub jitter_us: u64,
    /// Probability that a datagram is lost (on reliable links: that a segment must be resent).
    pub loss: f64,
    /// Probability that a best-effort datagram is delivered twice.
    pub duplicate: f64,
}

impl NetConfig {
    /// The default network with best-effort datagrams lost with probability `loss`.
    pub fn lossy(loss: f64) -> NetConfig {
        NetConfig {
            loss,
            ..NetConfig::default()
        }
    }

    /// The fate of one frame: for each copy that arrives (two when a best-effort datagram is
    /// duplicated), Some(microseconds from sending to arrival), or None when it is lost. A
    /// reliable link (TCP) turns each lost segment into a retransmission delay; after five losses
    /// in a row the connection gives up and the frame is lost.
    pub(crate) fn transit(&self, rng: &mut ChaCha20Rng, reliable: bool) -> Vec<Option<u64>> {
        let copies = if !reliable && unit(rng) < self.duplicate {
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let mut delay = 0;
                for attempt in 0.. {
                    if unit(rng) >= self.loss {
                        break;
                    }
                    if !reliable || attempt == 4 {
                        return None;
                    }
                    delay += RETRANSMIT_US << attempt;
                }
                let jitter = if self.jitter_us > 0 {
                    rng.next_u64() % self.jitter_us
                } else {
                    0
                };
                Some(self.latency_us + jitter + delay)
            })
            .collect()
    }
}

/// A uniform draw in [0, 1).
fn unit(rng: &mut ChaCha20Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency_us: 1_000,
            jitter_us: 500,
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// A member of the simulation.
#[derive(Debug)]
pub struct SimNode {
    /// The engine.
    pub node: Node,
    /// Its address.
    pub addr: Address,
    /// Whether it is running (crashed nodes neither send nor receive).
    pub up: bool,
    /// Events it reported, with the virtual time they were drained at.
    pub events: Vec<(Instant, Event)>,
    /// Frames it sent.
    pub sent_packets: u64,
    /// Bytes it sent.
    pub sent_bytes: u64,
    /// Frames delivered to it.
    pub recv_packets: u64,
    /// Bytes delivered to it.
    pub recv_bytes: u64,
    secret: [u8; 32],
}

/// Where an input falls in the order one step at a time processes them: (time, 0 for a
/// delivery or 1 for a timeout, the delivery's `seq` or the node's index, and a count for a
/// timeout that an input armed in the past of that input, which fires right after it).
type Order = (Instant, u8, u64, u32);

/// A frame delivered to a node in a window.
#[derive(Debug)]
struct Input {
    at: Instant,
    seq: u64,
    from: Address,
    bytes: Vec<u8>,
}

/// One node's work in a window, and what it produced.
#[derive(Debug)]
struct Job {
    index: usize,
    /// Its deliveries, in (time, seq) order.
    inputs: Vec<Input>,
    /// Its timer entries due in the window (stale ones included, skipped as `step` skips them).
    timers: BinaryHeap<Reverse<Instant>>,
    /// Frames it sent, with the order of the input that made it send them and the time.
    out: Vec<(Order, Instant, Transmit)>,
    /// Timer entries due after the window.
    later: Vec<Instant>,
    /// The time of its last input.
    last: Instant,
}

impl SimNode {
    /// Takes what the engine queued after an input at `now`: frames into `out`, events into
    /// its log.
    fn collect(&mut self, now: Instant, out: &mut Vec<Transmit>) {
        while let Some(t) = self.node.poll_transmit() {
            self.sent_packets += 1;
            self.sent_bytes += t.bytes.len() as u64;
            out.push(t);
        }
        while let Some(e) = self.node.poll_event() {
            self.events.push((now, e));
        }
    }

    /// Runs this node's share of a window ending before `end`: its deliveries and timeouts in
    /// the order [`Sim::step`] would process them one at a time (a delivery before a timeout
    /// due at the same instant; a timer entry that no longer matches the node's deadline
    /// skipped), re-arming after each.
    fn run(&mut self, start: Instant, end: Instant, job: &mut Job) {
        let mut now = start;
        let mut next = 0;
        let mut last: Option<Order> = None;
        let mut buf = Vec::new();
        loop {
            let delivery = job.inputs.get(next).map(|d| d.at);
            let timer = job.timers.peek().map(|Reverse(t)| *t);
            let order = match (delivery, timer) {
                (Some(d), t) if t.is_none_or(|t| d <= t) => {
                    let input = &job.inputs[next];
                    next += 1;
                    now = now.max(d);
                    // A refused frame is counted in the node's stats.
                    let _ = self
                        .node
                        .handle_packet(now, input.from.clone(), &input.bytes);
                    (d, 0, input.seq, 0)
                }
                (_, Some(t)) => {
                    job.timers.pop();
                    if !self.up || self.node.poll_timeout() != Some(t) {
                        continue;
                    }
                    now = now.max(t);
                    self.node.handle_timeout(now);
                    (t, 1, job.index as u64, 0)
                }
                (_, None) => break,
            };
            // A timeout armed before the input that armed it is the earliest entry of the
            // whole heap then: one step at a time runs it next.
            let order = match last {
                Some(l) if order <= l => (l.0, l.1, l.2, l.3 + 1),
                _ => order,
            };
            last = Some(order);
            self.collect(now, &mut buf);
            job.out.extend(buf.drain(..).map(|t| (order, now, t)));
            if let Some(t) = self.node.poll_timeout() {
                if t < end {
                    job.timers.push(Reverse(t));
                } else {
                    job.later.push(t);
                }
            }
        }
        job.last = now;
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Delivery {
    at: Instant,
    seq: u64,
    to: usize,
    from: usize,
    bytes: Vec<u8>,
}

/// `Delivery::from` of a frame injected from outside the simulated nodes (see [`Sim::inject`]).
const OUTSIDE: usize = usize::MAX;

/// A frame one node delivered to another, kept by [`Sim::tap`] for replays.
#[derive(Debug, Clone)]
pub struct Tapped {
    /// When it was delivered.
    pub at: Instant,
    /// Sender index.
    pub from: usize,
    /// Receiver index.
    pub to: usize,
    /// The frame, as it crossed the network.
    pub bytes: Vec<u8>,
}

/// The simulation.
#[derive(Debug)]
pub struct Sim {
    /// Virtual now.
    pub now: Instant,
    /// The nodes, by index.
    pub nodes: Vec<SimNode>,
    /// The network model.
    pub net: NetConfig,
    seed: u64,
    rng: ChaCha20Rng,
    config: Config,
    key: ClusterKey,
    in_flight: BinaryHeap<Reverse<Delivery>>,
    /// Last delivery time of a reliable frame per (from, to): reliable links keep order.
    reliable_tail: HashMap<(usize, usize), Instant>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    by_addr: HashMap<Address, usize>,
    by_id: HashMap<NodeId, usize>,
    /// Partition group of each node; packets cross only within a group. Empty: no partition.
    groups: Vec<u8>,
    /// Directed links (from, to) that lose everything: one-way partitions and cut links.
    cut: HashSet<(usize, usize)>,
    /// Directed links (from, to) with their own loss rate instead of `net.loss`.
    link_loss: HashMap<(usize, usize), f64>,
    /// Nodes that run their own config instead of the shared one.
    overrides: HashMap<usize, Config>,
    seq: u64,
    /// Where frames injected from outside claim to come from, by their delivery's `seq`.
    outside: HashMap<u64, Address>,
    /// Frames delivered between nodes, newest last, at most `tap_keep` of them.
    tapped: VecDeque<Tapped>,
    tap_keep: usize,
    /// Total frames delivered.
    pub delivered: u64,
    /// Total frames dropped by the network model (loss, partition, crashed receiver).
    pub dropped: u64,
    /// Worker threads for [`Sim::step`].
    threads: usize,
    /// Windows whose nodes ran on several threads.
    pub parallel_windows: u64,
    /// Frames a node sent, between taking them from the engine and routing them.
    scratch: Vec<Transmit>,
}

/// Below this many busy nodes, a window of [`Sim::step`] runs on the calling thread. Lower
/// than the overlay's: a full member checks a signature on most frames.
const MIN_PARALLEL_JOBS: usize = 4;

pub(crate) fn addr_of(i: usize) -> Address {
    let ip = Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
    Address::Udp(SocketAddr::V4(SocketAddrV4::new(ip, 7946)))
}

impl Sim {
    /// `n` nodes with `config` (each named `node-<i>`), not yet joined.
    pub fn new(n: usize, seed: u64, config: Config, net: NetConfig) -> Sim {
        Sim::with_configs(n, seed, config, net, HashMap::new())
    }

    /// Like [`Sim::new`], but node `i` runs `overrides[i]` where given (named `node-<i>` too),
    /// so a test can decide which members probe or how patient each one is.
    pub fn with_configs(
        n: usize,
        seed: u64,
        config: Config,
        net: NetConfig,
        overrides: HashMap<usize, Config>,
    ) -> Sim {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let mut sim = Sim {
            now: Instant::from_millis(0),
            nodes: Vec::with_capacity(n),
            net,
            seed,
            rng,
            config,
            key: ClusterKey::from_bytes(key),
            in_flight: BinaryHeap::new(),
            reliable_tail: HashMap::new(),
            timers: BinaryHeap::new(),
            by_addr: HashMap::new(),
            by_id: HashMap::new(),
            groups: Vec::new(),
            cut: HashSet::new(),
            link_loss: HashMap::new(),
            overrides,
            seq: 0,
            outside: HashMap::new(),
            tapped: VecDeque::new(),
            tap_keep: 0,
            delivered: 0,
            dropped: 0,
            threads: 1,
            parallel_windows: 0,
            scratch: Vec::new(),
        };
        for _ in 0..n {
            sim.add();
        }
        sim
    }

    /// Adds a member that cannot listen (like a browser tab): its only address is "relayed via
    /// node `via`", everything it sends goes through `via`, and it joins through `via`.
    pub fn add_relayed(&mut self, via: usize) -> usize {
        let i = self.nodes.len();
        let mut secret = [0u8; 32];
        self.rng.fill_bytes(&mut secret);
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let via_id = self.id(via);
        let config = self.config.clone().with_name(format!("browser-{i}"));
        let wall = EPOCH_MS + self.now.as_millis();
        let identity = Identity::from_secret_bytes(secret);
        let id = identity.id();
        let node = Node::new(
            config,
            identity,
            Keyring::new(self.key.clone()),
            vec![Address::Relayed(via_id)],
            seed,
            self.now,
            wall,
        );
        // Frames it sends carry its own relayed address as the reply-to, which routes by id.
        self.push_node(node, Address::Relayed(id), secret);
        self.join(i, &[via]);
        i
    }

    /// The config of the nodes added from now on.
    pub fn set_config(&mut self, config: Config) {
        self.config = config;
    }

    /// Adds an *admitted* member (a browser tab without the cluster key): its only key is the
    /// one its link's handshake with node `via` agreed, `via` admits it with `grant` (and holds
    /// it to it), it is relayed by `via`, and it joins through `via`. Named `tab-<i>`; its
    /// `metadata` is set before it joins.
    pub fn add_admitted(&mut self, via: usize, grant: Grant, metadata: &[(&str, &[u8])]) -> usize {
        let i = self.nodes.len();
        let mut secret = [0u8; 32];
        self.rng.fill_bytes(&mut secret);
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let mut nonces = [[0u8; 32]; 2];
        for n in &mut nonces {
            self.rng.fill_bytes(n);
        }
        let identity = Identity::from_secret_bytes(secret);
        let server = Identity::from_secret_bytes(self.nodes[via].secret);
        let key = link_key(&server, &identity, nonces);
        let via_id = self.id(via);
        let config = self.config.clone().with_name(format!("tab-{i}"));
        let wall = EPOCH_MS + self.now.as_millis();
        let id = identity.id();
        let mut node = Node::new(
            config,
            identity,
            Keyring::new(key.clone()),
            vec![Address::Relayed(via_id)],
            seed,
            self.now,
            wall,
        );
        for (k, v) in metadata {
            node.set_metadata(self.now, k, Some(v.to_vec()))
                .expect("tab metadata within the limits");
        }
        // Its frames arrive at `via` from its relayed address: that is its link.
        self.with_node(via, |n, now| {
            n.admit_link(now, Address::Relayed(id), id, key, grant)
        });
        self.push_node(node, Address::Relayed(id), secret);
        self.join(i, &[via]);
        i
    }

    /// Registers `node` as the next index, reachable at `addr`, and arms its first timer.
    fn push_node(&mut self, node: Node, addr: Address, secret: [u8; 32]) -> usize {
        let i = self.nodes.len();
        self.by_addr.insert(addr.clone(), i);
        self.by_id.insert(node.id(), i);
        self.nodes.push(SimNode {
            node,
            addr,
            up: true,
            events: Vec::new(),
            sent_packets: 0,
            sent_bytes: 0,
            recv_packets: 0,
            recv_bytes: 0,
            secret,
        });
        self.arm(i);
        i
    }

    /// The seed, for failure messages.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The config the nodes run (those without an override).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A keyring holding the cluster key: what a hostile key holder seals its frames with (see
    /// [`hostile::Attacker`]).
    pub fn keyring(&self) -> Keyring {
        Keyring::new(self.key.clone())
    }

    /// The simulated wall clock now, in ms since the UNIX epoch.
    pub fn wall_ms(&self) -> u64 {
        EPOCH_MS + self.now.as_millis()
    }

    /// Adds a node with the shared config (named `node-<i>`), not yet joined: a fresh member that
    /// arrives mid-run. Returns its index.
    pub fn add(&mut self) -> usize {
        let i = self.nodes.len();
        let mut secret = [0u8; 32];
        self.rng.fill_bytes(&mut secret);
        let node = self.make_node(i, secret);
        self.push_node(node, addr_of(i), secret)
    }

    /// Sends `bytes` to node `to` as a best-effort datagram from `from`, an address no simulated
    /// node holds (replies to it are lost): how frames generated outside the nodes, by a hostile
    /// key holder or a replaying stranger, enter the network. They take the network model's
    /// latency, jitter and loss like any datagram; partitions and cut links concern nodes only.
    pub fn inject(&mut self, to: usize, from: Address, bytes: Vec<u8>) {
        for transit in self.net.transit(&mut self.rng, false) {
            let Some(transit) = transit else {
                self.dropped += 1;
                continue;
            };
            self.seq += 1;
            self.outside.insert(self.seq, from.clone());
            self.in_flight.push(Reverse(Delivery {
                at: self.now + transit,
                seq: self.seq,
                to,
                from: OUTSIDE,
                bytes: bytes.clone(),
            }));
        }
    }

    /// Keeps the last `keep` frames delivered between nodes (0 stops keeping them), as a
    /// stranger on the path would capture them for replay.
    pub fn tap(&mut self, keep: usize) {
        self.tap_keep = keep;
        while self.tapped.len() > keep {
            self.tapped.pop_front();
        }
    }

    /// The frames kept by [`Sim::tap`], oldest first.
    pub fn tapped(&self) -> &VecDeque<Tapped> {
        &self.tapped
    }

    fn make_node(&mut self, i: usize, secret: [u8; 32]) -> Node {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let config = self
            .overrides
            .get(&i)
            .unwrap_or(&self.config)
            .clone()
            .with_name(format!("node-{i}"));
        let wall = EPOCH_MS + self.now.as_millis();
        Node::new(
            config,
            Identity::from_secret_bytes(secret),
            Keyring::new(self.key.clone()),
            vec![addr_of(i)],
            seed,
            self.now,
            wall,
        )
    }

    /// Node `i`'s id.
    pub fn id(&self, i: usize) -> NodeId {
        self.nodes[i].node.id()
    }

    /// Index of a node by id.
    pub fn index(&self, id: &NodeId) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Node `i` joins through the nodes at `seeds`.
    pub fn join(&mut self, i: usize, seeds: &[usize]) {
        let addrs: Vec<Address> = seeds.iter().map(|s| self.nodes[*s].addr.clone()).collect();
        let now = self.now;
        self.nodes[i].node.join(now, &addrs);
        self.drain(i);
    }

    /// Runs a command on node `i` and sends what it produced.
    pub fn with_node<T>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> T) -> T {
        let now = self.now;
        let out = f(&mut self.nodes[i].node, now);
        self.drain(i);
        out
    }

    /// Crashes node `i`: it stops at once, sending nothing more (no leave).
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
    }

    /// Restarts a crashed node `i` with the same identity and name, and joins it through `seeds`.
    pub fn restart(&mut self, i: usize, seeds: &[usize]) {
        let secret = self.nodes[i].secret;
        let node = self.make_node(i, secret);
        self.nodes[i].node = node;
        self.nodes[i].up = true;
        self.arm(i);
        self.join(i, seeds);
    }

    /// Splits the network: `group[i]` is node i's side. Packets between sides are lost.
    pub fn partition(&mut self, group: Vec<u8>) {
        self.groups = group;
    }

    /// Heals any partition.
    pub fn heal(&mut self) {
        self.groups.clear();
    }

    /// Cuts the link between `a` and `b` both ways: everything between them is lost, while both
    /// still reach (and are reached by) everyone else.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Cuts the link from `from` to `to` only: `to` still reaches `from`.
    pub fn cut_one_way(&mut self, from: usize, to: usize) {
        self.cut.insert((from, to));
    }

    /// Restores the link between `a` and `b` (both ways) to the network's defaults: uncut, and
    /// with the shared loss rate.
    pub fn restore(&mut self, a: usize, b: usize) {
        for link in [(a, b), (b, a)] {
            self.cut.remove(&link);
            self.link_loss.remove(&link);
        }
    }

    /// Gives the link from `from` to `to` its own loss rate (the probability that a datagram on
    /// it is lost), instead of `net.loss`.
    pub fn set_link_loss(&mut self, from: usize, to: usize, loss: f64) {
        self.link_loss.insert((from, to), loss);
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        if a == OUTSIDE {
            return true;
        }
        (self.groups.is_empty() || self.groups[a] == self.groups[b])
            && (self.cut.is_empty() || !self.cut.contains(&(a, b)))
    }

    fn arm(&mut self, i: usize) {
        if let Some(t) = self.nodes[i].node.poll_timeout() {
            self.timers.push(Reverse((t, i)));
        }
    }

    fn drain(&mut self, i: usize) {
        let now = self.now;
        let mut out = std::mem::take(&mut self.scratch);
        self.nodes[i].collect(now, &mut out);
        for t in out.drain(..) {
            self.route(i, now, t);
        }
        self.scratch = out;
        self.arm(i);
    }

    /// Puts a frame node `i` sent at `now` on the network model: loss, duplication,
    /// retransmission of reliable frames, latency and jitter.
    fn route(&mut self, i: usize, now: Instant, t: Transmit) {
        let to = match &t.to {
            Address::Relayed(_) => t.node.and_then(|id| self.by_id.get(&id).copied()),
            addr => self.by_addr.get(addr).copied(),
        };
        let Some(to) = to else {
            self.dropped += 1;
            return;
        };
        let net = match self.link_loss.get(&(i, to)) {
            Some(&loss) => NetConfig { loss, ..self.net },
            None => self.net,
        };
        let transits = net.transit(&mut self.rng, t.reliable);
        let copies = transits.len();
        let mut bytes = t.bytes;
        for (k, transit) in transits.into_iter().enumerate() {
            let Some(transit) = transit else {
                self.dropped += 1;
                continue;
            };
            // The last copy takes the frame itself: one allocation and copy fewer per frame.
            let bytes = if k + 1 < copies {
                bytes.clone()
            } else {
                std::mem::take(&mut bytes)
            };
            let mut at = now + transit;
            if t.reliable {
                // Head-of-line blocking: a frame never overtakes an earlier one on its link.
                let tail = self.reliable_tail.entry((i, to)).or_insert(at);
                at = at.max(*tail);
                *tail = at;
            }
            self.seq += 1;
            self.in_flight.push(Reverse(Delivery {
                at,
                seq: self.seq,
                to,
                from: i,
                bytes,
            }));
        }
    }

    /// Worker threads for [`step`](Self::step) (default 1). The outcome of a run does not
    /// depend on it.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Worker threads [`step`](Self::step) uses.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Processes the earliest pending delivery or timeout (on several threads: everything
    /// pending within one lookahead window, see `step_window`); false when nothing is
    /// pending before `until`.
    pub fn step(&mut self, until: Instant) -> bool {
        if self.threads > 1 && self.net.latency_us > 0 {
            self.step_window(until)
        } else {
            self.step_one(until)
        }
    }

    /// Processes everything pending before `until` within one lookahead window (at least one
    /// delivery or timeout); false when nothing is pending before `until`.
    ///
    /// No frame arrives sooner than `net.latency_us` after it was sent (jitter and
    /// retransmission only add to it), so within `[t, t + latency)`, where `t` is the earliest
    /// pending time, no node's input depends on another node's output in the same window: the
    /// nodes run in parallel, each through its own inputs in the order one step at a time
    /// would take them. Their frames then enter the network model in that same global order,
    /// so every random draw (loss, duplication, jitter) happens as it would one step at a
    /// time, and the run is the same on any number of threads. Scenarios act on the
    /// simulation only between calls, and a window never passes `until`.
    fn step_window(&mut self, until: Instant) -> bool {
        let next_delivery = self.in_flight.peek().map(|Reverse(d)| d.at);
        let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
        let Some(start) = next_delivery.into_iter().chain(next_timer).min() else {
            return false;
        };
        if start > until {
            return false;
        }
        let end = (start + self.net.latency_us).min(until + 1);
        let begin = self.now;
        // What `now` would be after the last entry one step at a time takes off the heaps.
        let mut latest = begin;
        let mut inputs: Vec<(usize, Input)> = Vec::new();
        while self.in_flight.peek().is_some_and(|Reverse(d)| d.at < end) {
            let Some(Reverse(d)) = self.in_flight.pop() else {
                break;
            };
            latest = latest.max(d.at);
            let Some(from) = self.arrive(&d, latest) else {
                continue;
            };
            let input = Input {
                at: d.at,
                seq: d.seq,
                from,
                bytes: d.bytes,
            };
            inputs.push((d.to, input));
        }
        let mut timers: Vec<(usize, Instant)> = Vec::new();
        while let Some(&Reverse((t, i))) = self.timers.peek() {
            if t >= end {
                break;
            }
            self.timers.pop();
            latest = latest.max(t);
            timers.push((i, t));
        }
        // Popped in time order; a stable sort by node keeps that order per node.
        inputs.sort_by_key(|(to, _)| *to);
        timers.sort_by_key(|(i, _)| *i);
        let mut jobs: Vec<Job> = Vec::new();
        let mut inputs = inputs.into_iter().peekable();
        let mut timers = timers.into_iter().peekable();
        loop {
            let i = match (inputs.peek().map(|d| d.0), timers.peek().map(|t| t.0)) {
                (Some(d), Some(t)) => d.min(t),
                (Some(d), None) => d,
                (None, Some(t)) => t,
                (None, None) => break,
            };
            let mut job = Job {
                index: i,
                inputs: Vec::new(),
                timers: BinaryHeap::new(),
                out: Vec::new(),
                later: Vec::new(),
                last: begin,
            };
            while inputs.peek().is_some_and(|d| d.0 == i) {
                job.inputs.extend(inputs.next().map(|d| d.1));
            }
            while timers.peek().is_some_and(|t| t.0 == i) {
                job.timers.extend(timers.next().map(|t| Reverse(t.1)));
            }
            jobs.push(job);
        }
        let indices: Vec<usize> = jobs.iter().map(|j| j.index).collect();
        let nodes = window::disjoint_mut(&mut self.nodes, &indices);
        let mut work: Vec<(&mut SimNode, &mut Job)> =
            nodes.into_iter().zip(jobs.iter_mut()).collect();
        if work.len() < MIN_PARALLEL_JOBS {
            for (node, job) in &mut work {
                node.run(begin, end, job);
            }
        } else {
            self.parallel_windows += 1;
            // Outputs are merged in step order afterwards, so the order of work does not
            // change the run.
            work.sort_by_key(|(_, job)| Reverse(job.inputs.len() + job.timers.len()));
            window::run_all(&mut work, self.threads, |(node, job)| {
                node.run(begin, end, job)
            });
        }
        drop(work);
        let mut out: Vec<(Order, usize, Instant, Transmit)> = Vec::new();
        for job in &mut jobs {
            latest = latest.max(job.last);
            let i = job.index;
            out.extend(job.out.drain(..).map(|(o, at, t)| (o, i, at, t)));
            for t in job.later.drain(..) {
                self.timers.push(Reverse((t, i)));
            }
        }
        // Stable: the frames of one input keep the order the node sent them in.
        out.sort_by_key(|(order, ..)| *order);
        for (_, i, at, t) in out {
            self.route(i, at, t);
        }
        self.now = latest;
        true
    }

    /// A frame taken off the wire at `at`: dropped (counted) when its receiver is down or the
    /// link is cut, else counted as delivered, tapped, and the sender's address returned (the
    /// injected one for frames from outside). Both steps take frames through here, so a run is
    /// the same whichever steps it.
    fn arrive(&mut self, d: &Delivery, at: Instant) -> Option<Address> {
        // Most runs inject nothing: skip hashing every delivery's seq for nothing.
        let outside = if self.outside.is_empty() {
            None
        } else {
            self.outside.remove(&d.seq)
        };
        // A crashed sender's frames already on the wire still arrive.
        if !self.nodes[d.to].up || !self.connected(d.from, d.to) {
            self.dropped += 1;
            return None;
        }
        self.delivered += 1;
        self.nodes[d.to].recv_packets += 1;
        self.nodes[d.to].recv_bytes += d.bytes.len() as u64;
        if self.tap_keep > 0 && d.from != OUTSIDE {
            if self.tapped.len() == self.tap_keep {
                self.tapped.pop_front();
            }
            self.tapped.push_back(Tapped {
                at,
                from: d.from,
                to: d.to,
                bytes: d.bytes.clone(),
            });
        }
        Some(match outside {
            Some(addr) => addr,
            None => self.nodes[d.from].addr.clone(),
        })
    }

    /// Processes the earliest pending delivery or timeout; false when nothing is pending before `until`.
    fn step_one(&mut self, until: Instant) -> bool {
        loop {
            let next_delivery = self.in_flight.peek().map(|Reverse(d)| d.at);
            let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
            let Some(next) = next_delivery.into_iter().chain(next_timer).min() else {
                return false;
            };
            if next > until {
                return false;
            }
            self.now = self.now.max(next);
            if next_delivery == Some(next) {
                let Reverse(d) = self.in_flight.pop().expect("peeked");
                let Some(from) = self.arrive(&d, self.now) else {
                    return true;
                };
                let now = self.now;
                // A refused frame is counted in the node's stats.
                let _ = self.nodes[d.to].node.handle_packet(now, from, &d.bytes);
                self.drain(d.to);
                return true;
            }
            let Reverse((t, i)) = self.timers.pop().expect("peeked");
            // Stale timer entries (the node re-armed earlier or later) are skipped.
            if !self.nodes[i].up || self.nodes[i].node.poll_timeout() != Some(t) {
                continue;
            }
            let now = self.now;
            self.nodes[i].node.handle_timeout(now);
            self.drain(i);
            return true;
        }
    }

    /// Indices of running nodes.
    pub fn up(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].up)
            .collect()
    }

    /// What node `i` believes about node `j`.
    pub fn view(&self, i: usize, j: usize) -> Option<State> {
        self.nodes[i].node.member(&self.id(j)).map(|m| m.state)
    }

    /// Whether every running node sees every running node alive and nothing else live.
    pub fn converged(&self) -> bool {
        let up = self.up();
        up.iter().all(|&i| {
            let n = &self.nodes[i].node;
            n.live_count() == up.len()
                && up.iter().all(|&j| {
                    n.member(&self.id(j))
                        .is_some_and(|m| m.state == State::Alive)
                })
        })
    }

    /// Whether every running node holds node `i` dead, or no longer holds it at all.
    pub fn buried_by_all(&self, i: usize) -> bool {
        self.up()
            .iter()
            .all(|&j| self.view(j, i).is_none_or(|st| st == State::Dead))
    }

    /// Fraction of (observer, member) pairs among running nodes where the observer sees the member alive.
    pub fn knowledge(&self) -> f64 {
        let up = self.up();
        let mut known = 0usize;
        for &i in &up {
            let n = &self.nodes[i].node;
            known += up
                .iter()
                .filter(|&&j| {
                    n.member(&self.id(j))
                        .is_some_and(|m| m.state == State::Alive)
                })
                .count();
        }
        known as f64 / (up.len() * up.len()).max(1) as f64
    }

    /// `n` nodes that joined through node 0 all at once and converged (every running node sees
    /// every other alive) within 30 virtual seconds; panics naming the seed otherwise. How most
    /// simulator tests begin.
    pub fn joined(n: usize, seed: u64, config: Config, net: NetConfig) -> Sim {
        Sim::joined_on(n, seed, config, net, 1)
    }

    /// Like [`Sim::joined`], stepping on `threads` worker threads (the same run on any number).
    pub fn joined_on(n: usize, seed: u64, config: Config, net: NetConfig, threads: usize) -> Sim {
        let mut sim = Sim::new(n, seed, config, net);
        sim.set_threads(threads);
        sim.join_all();
        let t = sim.run_until_true(30_000, 50, Sim::converged);
        assert!(
            t.is_some(),
            "seed {seed}: {n} nodes did not converge on join (knowledge {:.4})",
            sim.knowledge()
        );
        sim
    }

    /// Starts all nodes: node 0 is the seed, the others join through it, all at once.
    pub fn join_all(&mut self) {
        for i in 1..self.nodes.len() {
            self.join(i, &[0]);
        }
    }
}

/// The key a server and a tab agree in their link's handshake.
fn link_key(server: &Identity, tab: &Identity, nonces: [[u8; 32]; 2]) -> ClusterKey {
    let (mut acceptor, challenge) = Handshake::accept(server, nonces[0]);
    let mut dialer = Handshake::dial(nonces[1], Some(server.id()));
    let step = |s: Result<gossip_core::link::Step, _>| s.expect("an honest handshake");
    let proof = step(dialer.on_message(tab, &challenge));
    let answer = step(acceptor.on_message(server, &proof.reply.expect("a proof")));
    let done = step(dialer.on_message(tab, &answer.reply.expect("an answer")));
    done.key.expect("the dialer's key")
}

impl VirtualTime for Sim {
    fn now(&self) -> Instant {
        self.now
    }

    fn advance_to(&mut self, until: Instant) {
        self.now = self.now.max(until);
    }

    fn step(&mut self, until: Instant) -> bool {
        Sim::step(self, until)
    }
}
