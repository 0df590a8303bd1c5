//! The same network model driving [`Overlay`] nodes (partial views, HyParView + Plumtree)
//! instead of full-membership [`Node`](gossip_core::Node)s.
//!
//! Kept lean for 10,000-node runs: nodes are found by address arithmetic rather than a map,
//! events are folded into counters and the last broadcast received, and each node has at most
//! one live timer entry in the heap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;

use gossip_core::overlay::{Overlay, OverlayConfig, OverlayEvent};
use gossip_core::{Address, ClusterKey, Identity, Instant, Keyring, NodeId, Timestamp, Transmit};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::window::{MIN_PARALLEL_JOBS, disjoint_mut, run_all};
use crate::{Delivery, EPOCH_MS, NetConfig, VirtualTime, addr_of};

/// A broadcast as one node received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Its origin.
    pub origin: NodeId,
    /// The origin's message id.
    pub id: Timestamp,
    /// Virtual time of delivery.
    pub at: Instant,
    /// Hops it travelled.
    pub hops: u8,
}

/// A member of the overlay simulation.
#[derive(Debug)]
pub struct OverlaySimNode {
    /// The engine.
    pub node: Overlay,
    /// Whether it is running (crashed nodes neither send nor receive).
    pub up: bool,
    /// Frames it sent.
    pub sent_packets: u64,
    /// Bytes it sent.
    pub sent_bytes: u64,
    /// Broadcasts it received.
    pub received: u32,
    /// The last broadcast it received.
    pub last: Option<Received>,
    /// `NeighborDown` events with `failed`.
    pub failures_seen: u32,
    /// `Isolated` events.
    pub isolated: u32,
    armed: Option<Instant>,
}

impl OverlaySimNode {
    /// Takes what the engine queued: frames into `out`, events folded into the counters.
    fn collect(&mut self, now: Instant, out: &mut Vec<Transmit>) {
        while let Some(t) = self.node.poll_transmit() {
            self.sent_packets += 1;
            self.sent_bytes += t.bytes.len() as u64;
            out.push(t);
        }
        while let Some(e) = self.node.poll_event() {
            match e {
                OverlayEvent::Broadcast {
                    origin, id, hops, ..
                } => {
                    self.received += 1;
                    self.last = Some(Received {
                        origin,
                        id,
                        at: now,
                        hops,
                    });
                }
                OverlayEvent::NeighborDown { failed: true, .. } => self.failures_seen += 1,
                OverlayEvent::Isolated => self.isolated += 1,
                _ => {}
            }
        }
    }

    /// Runs this node's share of a window: its deliveries and its timeouts before `end`, in
    /// time order (a delivery before a timeout due at the same instant, as one step at a time
    /// would).
    fn run(&mut self, start: Instant, end: Instant, job: &mut Job) {
        let mut now = start;
        let mut next = 0;
        let mut buf = Vec::new();
        loop {
            let delivery = job.inputs.get(next).map(|d| d.at);
            let timer = if self.up {
                self.node.poll_timeout().filter(|t| *t < end)
            } else {
                None
            };
            match (delivery, timer) {
                (Some(d), t) if t.is_none_or(|t| d <= t) => {
                    let input = &job.inputs[next];
                    next += 1;
                    now = now.max(d);
                    if !self.up {
                        job.dropped += 1;
                        continue;
                    }
                    job.delivered += 1;
                    // A refused frame is counted in the node's wire stats.
                    let _ = self
                        .node
                        .handle_packet(now, addr_of(input.from), &input.bytes);
                }
                (_, Some(t)) => {
                    now = now.max(t);
                    self.node.handle_timeout(now);
                }
                (_, None) => break,
            }
            self.collect(now, &mut buf);
            job.out.extend(buf.drain(..).map(|t| (now, t)));
        }
        job.last = now;
    }
}

/// One node's work in a window, and what it produced.
#[derive(Debug)]
struct Job {
    index: usize,
    /// Its deliveries, in time order.
    inputs: Vec<Delivery>,
    /// Frames it sent, with the virtual time they were sent at.
    out: Vec<(Instant, Transmit)>,
    delivered: u64,
    dropped: u64,
    /// The time of its last input.
    last: Instant,
}

/// The simulation of an overlay.
#[derive(Debug)]
pub struct OverlaySim {
    /// Virtual now.
    pub now: Instant,
    /// The nodes, by index.
    pub nodes: Vec<OverlaySimNode>,
    /// The network model.
    pub net: NetConfig,
    seed: u64,
    rng: ChaCha20Rng,
    in_flight: BinaryHeap<Reverse<Delivery>>,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    /// (id, index), sorted by id.
    ids: Vec<(NodeId, u32)>,
    seq: u64,
    threads: usize,
    /// Total frames delivered.
    pub delivered: u64,
    /// Windows whose nodes ran on the thread pool.
    pub parallel_windows: u64,
    /// Total frames dropped by the network model (loss, crashed receiver).
    pub dropped: u64,
}

/// The index `addr_of` encoded in an address.
fn index_of(addr: &Address) -> Option<usize> {
    match addr {
        Address::Udp(SocketAddr::V4(v4)) => {
            let [_, a, b, c] = v4.ip().octets();
            Some(usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c))
        }
        _ => None,
    }
}

impl OverlaySim {
    /// `n` overlay nodes with `config`, not yet joined.
    pub fn new(n: usize, seed: u64, config: OverlayConfig, net: NetConfig) -> OverlaySim {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let key = ClusterKey::from_bytes(key);
        let now = Instant::from_millis(0);
        let mut nodes = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            let mut node_seed = [0u8; 32];
            rng.fill_bytes(&mut node_seed);
            let node = Overlay::new(
                config.clone(),
                Identity::from_secret_bytes(secret),
                Keyring::new(key.clone()),
                vec![addr_of(i)],
                node_seed,
                now,
                EPOCH_MS,
            );
            ids.push((node.id(), i as u32));
            nodes.push(OverlaySimNode {
                node,
                up: true,
                sent_packets: 0,
                sent_bytes: 0,
                received: 0,
                last: None,
                failures_seen: 0,
                isolated: 0,
                armed: None,
            });
        }
        ids.sort_unstable();
        OverlaySim {
            now,
            nodes,
            net,
            seed,
            rng,
            in_flight: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            ids,
            seq: 0,
            threads: 1,
            delivered: 0,
            parallel_windows: 0,
            dropped: 0,
        }
    }

    /// The seed, for failure messages.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Node `i`'s id.
    pub fn id(&self, i: usize) -> NodeId {
        self.nodes[i].node.id()
    }

    /// Index of a node by id.
    pub fn index(&self, id: &NodeId) -> Option<usize> {
        let at = self.ids.binary_search_by(|(n, _)| n.cmp(id)).ok()?;
        Some(self.ids[at].1 as usize)
    }

    /// Node `i`'s address.
    pub fn addr(&self, i: usize) -> Address {
        addr_of(i)
    }

    /// Node `i` joins through the nodes at `seeds`.
    pub fn join(&mut self, i: usize, seeds: &[usize]) {
        let addrs: Vec<Address> = seeds.iter().map(|s| addr_of(*s)).collect();
        let now = self.now;
        // Only an empty seed list is refused, which callers never pass.
        let _ = self.nodes[i].node.join(now, &addrs);
        self.drain(i);
    }

    /// Node 0 starts the overlay; node i joins `spacing_us` after node i-1, through a random node
    /// that joined at least 20 ms earlier (or node 0).
    pub fn join_staggered(&mut self, spacing_us: u64) {
        let lag = (20_000 / spacing_us.max(1)).max(1) as usize;
        for i in 1..self.nodes.len() {
            let until = self.now + spacing_us;
            self.run_until(until);
            let contact = if i > lag {
                (self.rng.next_u64() % (i - lag) as u64) as usize
            } else {
                0
            };
            self.join(i, &[contact]);
        }
    }

    /// Node `i` broadcasts; returns the message id.
    pub fn broadcast(&mut self, i: usize, data: &[u8]) -> Option<Timestamp> {
        let now = self.now;
        let id = self.nodes[i].node.broadcast(now, "sim", data.to_vec()).ok();
        self.drain(i);
        id
    }

    /// Crashes node `i`: it stops at once, sending nothing more.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
    }

    /// Node `i` leaves gracefully, then stops.
    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].node.leave(now);
        self.drain(i);
        self.nodes[i].up = false;
    }

    fn arm(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(t) = node.node.poll_timeout()
            && node.armed.is_none_or(|armed| t < armed)
        {
            node.armed = Some(t);
            self.timers.push(Reverse((t, i as u32)));
        }
    }

    fn drain(&mut self, i: usize) {
        let now = self.now;
        let mut out = Vec::new();
        self.nodes[i].collect(now, &mut out);
        for t in out {
            self.route(i, now, t);
        }
        self.arm(i);
    }

    /// Puts a frame `from` sent at `at` on the network model: loss, duplication, retransmission
    /// of reliable frames, latency and jitter.
    fn route(&mut self, from: usize, at: Instant, t: Transmit) {
        let Some(to) = index_of(&t.to).filter(|to| *to < self.nodes.len()) else {
            self.dropped += 1;
            return;
        };
        for transit in self.net.transit(&mut self.rng, t.reliable) {
            let Some(transit) = transit else {
                self.dropped += 1;
                continue;
            };
            self.seq += 1;
            self.in_flight.push(Reverse(Delivery {
                at: at + transit,
                seq: self.seq,
                to,
                from,
                bytes: t.bytes.clone(),
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

    /// Processes everything pending before `until` within one lookahead window (at least one
    /// delivery or timeout); false when nothing is pending before `until`.
    ///
    /// No frame arrives sooner than the link latency after it was sent, so within
    /// `[t, t + latency)`, where `t` is the earliest pending time, no node's input depends on
    /// another node's output in the same window: the nodes run in parallel, each through its
    /// own inputs in time order, exactly as one at a time would. Their frames then enter the
    /// network model in node order, so the run is the same on any number of threads.
    pub fn step(&mut self, until: Instant) -> bool {
        let next_delivery = self.in_flight.peek().map(|Reverse(d)| d.at);
        let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
        let Some(start) = next_delivery.into_iter().chain(next_timer).min() else {
            return false;
        };
        if start > until {
            return false;
        }
        // Zero latency: a frame can arrive in the instant it was sent, so only the earliest
        // input is safe to process.
        let end = if self.net.latency_us == 0 {
            start + 1
        } else {
            (start + self.net.latency_us).min(until + 1)
        };
        let mut inputs: Vec<Delivery> = Vec::new();
        while self.in_flight.peek().is_some_and(|Reverse(d)| d.at < end) {
            if let Some(Reverse(d)) = self.in_flight.pop() {
                inputs.push(d);
                if self.net.latency_us == 0 {
                    break;
                }
            }
        }
        let mut woken: Vec<usize> = Vec::new();
        while let Some(&Reverse((t, i))) = self.timers.peek() {
            if t >= end || (self.net.latency_us == 0 && !inputs.is_empty()) {
                break;
            }
            self.timers.pop();
            let i = i as usize;
            // Entries superseded by an earlier one are skipped.
            if self.nodes[i].armed == Some(t) {
                self.nodes[i].armed = None;
                woken.push(i);
                if self.net.latency_us == 0 {
                    break;
                }
            }
        }
        // Popped in (time, seq) order; a stable sort by receiver keeps that order per node.
        inputs.sort_by_key(|d| d.to);
        let mut jobs: Vec<Job> = Vec::new();
        let mut rest = inputs.into_iter().peekable();
        woken.sort_unstable();
        woken.dedup();
        let mut woken = woken.into_iter().peekable();
        loop {
            let i = match (rest.peek().map(|d| d.to), woken.peek()) {
                (Some(d), Some(&w)) => d.min(w),
                (Some(d), None) => d,
                (None, Some(&w)) => w,
                (None, None) => break,
            };
            let mut job = Job {
                index: i,
                inputs: Vec::new(),
                out: Vec::new(),
                delivered: 0,
                dropped: 0,
                last: self.now,
            };
            while rest.peek().is_some_and(|d| d.to == i) {
                job.inputs.extend(rest.next());
            }
            if woken.peek() == Some(&i) {
                woken.next();
            }
            jobs.push(job);
        }
        let indices: Vec<usize> = jobs.iter().map(|j| j.index).collect();
        let nodes = disjoint_mut(&mut self.nodes, &indices);
        let mut work: Vec<(&mut OverlaySimNode, &mut Job)> =
            nodes.into_iter().zip(jobs.iter_mut()).collect();
        let now = self.now;
        if work.len() < MIN_PARALLEL_JOBS || self.threads == 1 {
            for (node, job) in &mut work {
                node.run(now, end, job);
            }
        } else {
            self.parallel_windows += 1;
            // Outputs are merged by node index afterwards, so the order of work does not
            // change the run.
            work.sort_by_key(|(_, job)| std::cmp::Reverse(job.inputs.len()));
            run_all(&mut work, self.threads, |(node, job)| {
                node.run(now, end, job)
            });
        }
        drop(work);
        for job in jobs {
            self.delivered += job.delivered;
            self.dropped += job.dropped;
            self.now = self.now.max(job.last);
            for (at, t) in job.out {
                self.route(job.index, at, t);
            }
            // A crashed node's timers stay disarmed: it would otherwise be woken forever.
            if self.nodes[job.index].up {
                self.arm(job.index);
            }
        }
        true
    }

    /// Indices of running nodes.
    pub fn up(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].up)
            .collect()
    }

    /// Node `i`'s active neighbours, as indices.
    pub fn neighbors(&self, i: usize) -> Vec<usize> {
        self.nodes[i]
            .node
            .active()
            .iter()
            .filter_map(|p| self.index(&p.node))
            .collect()
    }

    /// (min, mean, max) active view size over running nodes.
    pub fn active_sizes(&self) -> (usize, f64, usize) {
        sizes(
            self.nodes
                .iter()
                .filter(|n| n.up)
                .map(|n| n.node.active().len()),
        )
    }

    /// (min, mean, max) passive view size over running nodes.
    pub fn passive_sizes(&self) -> (usize, f64, usize) {
        sizes(
            self.nodes
                .iter()
                .filter(|n| n.up)
                .map(|n| n.node.passive().len()),
        )
    }

    /// Whether every running node's neighbours are running and hold it as a neighbour too.
    pub fn symmetric(&self) -> bool {
        self.up().into_iter().all(|i| {
            let me = self.id(i);
            self.nodes[i].node.active().iter().all(|p| {
                self.index(&p.node)
                    .is_some_and(|j| self.nodes[j].up && self.nodes[j].node.active().contains(&me))
            })
        })
    }

    /// Whether the running nodes form one component over active links.
    pub fn connected(&self) -> bool {
        let up = self.up();
        let Some(&first) = up.first() else {
            return true;
        };
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![first];
        seen[first] = true;
        let mut reached = 1;
        while let Some(i) = stack.pop() {
            for j in self.neighbors(i) {
                if self.nodes[j].up && !seen[j] {
                    seen[j] = true;
                    reached += 1;
                    stack.push(j);
                }
            }
        }
        reached == up.len()
    }

    /// The overlay's structure is converged: every running node's active view holds between
    /// `active_min` and `active_size` neighbours, links are symmetric, and the graph is connected.
    pub fn converged(&self) -> bool {
        let Some(n) = self.nodes.first() else {
            return true;
        };
        let (lo, hi) = (n.node.config().active_min, n.node.config().active_size);
        let (min, _, max) = self.active_sizes();
        min >= lo && max <= hi && self.symmetric() && self.connected()
    }

    /// Running nodes (other than the origin) that received broadcast `(origin, id)`, and the
    /// virtual ms from `sent_at` to each delivery.
    pub fn reach(&self, origin: usize, id: Timestamp, sent_at: Instant) -> (usize, Vec<u64>) {
        let oid = self.id(origin);
        let mut latencies = Vec::new();
        let mut others = 0;
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.up || i == origin {
                continue;
            }
            others += 1;
            if let Some(r) = n.last.filter(|r| r.origin == oid && r.id == id) {
                latencies.push(r.at.micros_since(sent_at) / 1_000);
            }
        }
        (others, latencies)
    }
}

fn sizes(values: impl Iterator<Item = usize>) -> (usize, f64, usize) {
    let (mut min, mut max, mut sum, mut count) = (usize::MAX, 0, 0, 0);
    for v in values {
        min = min.min(v);
        max = max.max(v);
        sum += v;
        count += 1;
    }
    if count == 0 {
        return (0, 0.0, 0);
    }
    (min, sum as f64 / count as f64, max)
}

impl crate::VirtualTime for OverlaySim {
    fn now(&self) -> Instant {
        self.now
    }

    fn advance_to(&mut self, until: Instant) {
        self.now = self.now.max(until);
    }

    fn step(&mut self, until: Instant) -> bool {
        OverlaySim::step(self, until)
    }
}
