//! Hostile-input harness for `Node::handle_packet`, shared by the stable integration test
//! (`tests/fuzz_handle_packet.rs`, seeded ChaCha choices) and the cargo-fuzz target
//! (`fuzz/fuzz_targets/handle_packet.rs`, choices read from the fuzzer's input).
//!
//! A small cluster of real nodes, converged through each other, receives frames from the
//! [`frames::Generator`]: every message kind with hostile field values, signed by members and by
//! strangers, sealed with the cluster key (sometimes not), sometimes mutated after sealing or
//! re-signed after mutation. Some of the nodes' own traffic is delivered so state keeps moving, and
//! is kept for replays and splices. After every frame the harness checks invariants that must hold
//! whatever arrives.
#![allow(dead_code)]

pub mod frames;
pub mod source;

use gossip_core::message::Alive;
use gossip_core::streams::StreamOutput;
use gossip_core::{
    Address, ClusterKey, Codec, Config, Event, Identity, Instant, Keyring, Node, NodeId,
    ReplayConfig, State, Timestamp,
};

use frames::{CLUSTER_KEY, Frame, Generator, Rates, View};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use source::Source;

/// The wall clock of every node at `Instant` 0 (2023-11-14T22:13:20Z).
pub const WALL_MS: u64 = 1_700_000_000_000;
/// Outbound and event queue bound of the harness's nodes, small so the bound is exercised.
pub const MAX_QUEUE: usize = 512;
/// Furthest a node may ask to be woken, relative to now.
pub const MAX_TIMER_MS: u64 = 10 * 60 * 1_000;
/// Secrets of the members whose keys the generator holds (known to every node, but not nodes).
pub const HOSTILE: [u8; 2] = [11, 12];
/// How long [`Harness::settle`] runs the honest nodes alone.
pub const SETTLE_MS: u64 = 90_000;
/// `handle_timeout` calls at one instant after which every timer must lie in the future.
const MAX_CATCH_UP: usize = 16;

/// The address node `i` (secret `[i; 32]`) listens at.
pub fn addr(i: u8) -> Address {
    Address::Udp(format!("127.0.0.{i}:7946").parse().expect("valid"))
}

/// A frame and the node it is for.
#[derive(Debug, Clone)]
pub struct Step {
    /// Index of the receiving node.
    pub target: usize,
    /// The frame.
    pub frame: Frame,
}

/// The cluster, the generator and a stand-alone decoder.
pub struct Harness {
    /// The nodes; node `i` has secret `[i + 1; 32]`.
    pub nodes: Vec<Node>,
    /// The frame generator.
    pub generator: Generator,
    /// Virtual time.
    pub now: Instant,
    /// A codec outside any node, to drive `Codec::decode` directly.
    pub decoder: Codec,
    /// Frames fed to nodes (generated and delivered).
    pub fed: u64,
}

fn node(i: u8) -> Node {
    let config = Config {
        max_queue: MAX_QUEUE,
        ..Config::lan()
    }
    .with_name(format!("n{i}"));
    Node::new(
        config,
        Identity::from_secret_bytes([i; 32]),
        Keyring::new(ClusterKey::from_bytes(CLUSTER_KEY)),
        vec![addr(i)],
        [i; 32],
        Instant::from_millis(0),
        WALL_MS,
    )
}

impl Harness {
    /// `size` nodes joined through node 1 and run for `converge_ms` of virtual time, so each knows
    /// the others (checked).
    ///
    /// The generator signs as [`HOSTILE`] members (which every node then learns of through their
    /// alive records) and as strangers, never as one of the nodes: the nodes are honest, so after
    /// the hostile input stops they must all see each other alive again ([`Harness::settle`]).
    pub fn new(size: u8, converge_ms: u64, rates: Rates) -> Self {
        let mut h = Harness {
            nodes: (1..=size).map(node).collect(),
            generator: Generator::new(&HOSTILE, rates),
            now: Instant::from_millis(1),
            decoder: Codec::new(
                Identity::from_secret_bytes([200; 32]),
                Keyring::new(ClusterKey::from_bytes(CLUSTER_KEY)),
                Config::lan().limits,
                ReplayConfig::default(),
            ),
            fed: 0,
        };
        for i in 1..h.nodes.len() {
            h.nodes[i].join(h.now, &[addr(1)]);
            h.pump_all();
        }
        for ms in (100..converge_ms).step_by(100) {
            h.now = Instant::from_millis(ms);
            let now = h.now;
            h.nodes.iter_mut().for_each(|n| n.handle_timeout(now));
            h.pump_all();
        }
        for n in &h.nodes {
            assert_eq!(
                n.live_count(),
                h.nodes.len(),
                "{} did not converge",
                n.config().name
            );
        }
        // The hostile members announce themselves like any joiner would.
        let wall = WALL_MS + h.now.as_millis();
        for (s, &secret) in HOSTILE.iter().enumerate() {
            // The generator lists its signers in the order of `HOSTILE`.
            let signer = &h.generator.signers[s];
            let alive = Alive {
                incarnation: wall,
                addrs: vec![addr(secret)],
                name: format!("h{secret}"),
            };
            let frame = signer
                .codec
                .encode(
                    &mut ChaCha20Rng::seed_from_u64(s as u64),
                    Timestamp::new(wall, s as u16),
                    0,
                    &alive.into(),
                )
                .expect("an alive record encodes");
            let now = h.now;
            for n in h.nodes.iter_mut() {
                n.handle_packet(now, addr(secret), &frame)
                    .expect("a hostile member's alive record is accepted");
            }
        }
        h.pump_all();
        h
    }

    /// Stops the hostile input and runs the honest nodes alone, delivering all their traffic, for
    /// [`SETTLE_MS`]: whatever the fuzzer made them believe, each must then see every other node
    /// alive. Forged suspicions and deaths are refuted by their (honest) subjects; only a record
    /// that can never be outranked would keep a live node down.
    pub fn settle(&mut self) -> Result<(), String> {
        let end = self.now.as_millis() + SETTLE_MS;
        while self.now.as_millis() < end {
            self.now = self.now.plus_millis(100);
            let now = self.now;
            self.nodes.iter_mut().for_each(|n| n.handle_timeout(now));
            self.pump_all();
            for n in self.nodes.iter_mut() {
                while n.poll_event().is_some() {}
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            for (j, other) in self.nodes.iter().enumerate() {
                match n.member(&other.id()) {
                    Some(m) if m.state == State::Alive => {}
                    Some(m) => {
                        return Err(format!(
                            "after {SETTLE_MS} ms without hostile input, node {i} still sees node {j} {:?} at incarnation {} (node {j} is at {})",
                            m.state,
                            m.incarnation,
                            other.local().incarnation
                        ));
                    }
                    None => {
                        return Err(format!(
                            "after {SETTLE_MS} ms without hostile input, node {i} has forgotten node {j} (node {j} is at incarnation {})",
                            other.local().incarnation
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Delivers every transmit until none is left (cluster set-up only).
    fn pump_all(&mut self) {
        loop {
            let batch = self.drain_transmits();
            if batch.is_empty() {
                return;
            }
            for (from, to, bytes) in batch {
                if let Some(to) = to {
                    let from = addr(from as u8 + 1);
                    let _ = self.nodes[to].handle_packet(self.now, from, &bytes);
                }
            }
        }
    }

    /// Every queued transmit: sender index, receiver index (if a node of the cluster), bytes.
    fn drain_transmits(&mut self) -> Vec<(usize, Option<usize>, Vec<u8>)> {
        let mut batch = Vec::new();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            while let Some(t) = n.poll_transmit() {
                batch.push((i, t.to, t.bytes));
            }
        }
        batch
            .into_iter()
            .map(|(i, to, bytes)| {
                let to = self
                    .nodes
                    .iter()
                    .position(|n| n.local().addrs.contains(&to));
                (i, to, bytes)
            })
            .collect()
    }

    /// What the generator may know about node `target`.
    pub fn view(&self, target: usize) -> View {
        let n = &self.nodes[target];
        View {
            wall_ms: WALL_MS + self.now.as_millis(),
            receiver: n.id(),
            members: n
                .members()
                .map(|m| (m.id, m.incarnation, m.meta_version))
                .collect(),
            addrs: (1..=self.nodes.len() as u8).map(addr).collect(),
        }
    }

    /// Advances time a little and generates the next frame, mostly for node 0.
    pub fn next(&mut self, src: &mut dyn Source) -> Step {
        let advance = match src.below(100) {
            0 => 1_000 + src.below(30_000),
            1..=30 => 0,
            _ => src.below(60),
        };
        self.now = self.now.plus_millis(advance);
        let target = if src.chance(3, 4) {
            0
        } else {
            src.below(self.nodes.len() as u64) as usize
        };
        let view = self.view(target);
        let frame = self.generator.frame(src, &view);
        Step { target, frame }
    }

    /// Feeds `step` to its node and to the stand-alone decoder, runs due timers, delivers part of
    /// the resulting traffic, and checks the invariants. `Err` names the violated one.
    pub fn feed(&mut self, src: &mut dyn Source, step: &Step) -> Result<(), String> {
        let wall = WALL_MS + self.now.as_millis();
        if self.decoder.decode(&step.frame.bytes, wall).is_ok()
            && self.decoder.decode(&step.frame.bytes, wall).is_ok()
        {
            return Err("Codec::decode accepted a replayed frame".into());
        }
        let from = if src.chance(1, 8) {
            Address::WebSocket("ws://127.0.0.9:1/gossip".into())
        } else {
            addr(src.below(self.nodes.len() as u64 + 4) as u8 + 1)
        };
        self.fed += 1;
        let _ = self.nodes[step.target].handle_packet(self.now, from, &step.frame.bytes);
        self.check_outputs(src)?;
        self.initiate(src);
        self.run_timers()?;
        self.check_outputs(src)?;
        self.check_state()
    }

    /// Drains events and transmits, checking the queue bounds; delivers some transmits (up to a
    /// few rounds of cascading answers) and keeps some for replays.
    fn check_outputs(&mut self, src: &mut dyn Source) -> Result<(), String> {
        for _round in 0..3 {
            for i in 0..self.nodes.len() {
                let events: Vec<Event> =
                    std::iter::from_fn(|| self.nodes[i].poll_event()).collect();
                if events.len() > MAX_QUEUE {
                    return Err(format!("{} events queued, bound {MAX_QUEUE}", events.len()));
                }
                for e in events {
                    self.react(src, i, e);
                }
            }
            let batch = self.drain_transmits();
            for i in 0..self.nodes.len() {
                let count = batch.iter().filter(|b| b.0 == i).count();
                if count > MAX_QUEUE {
                    return Err(format!(
                        "node {i} queued {count} transmits, bound {MAX_QUEUE}"
                    ));
                }
            }
            if batch.is_empty() {
                break;
            }
            for (from, to, bytes) in batch {
                if src.chance(1, 6) {
                    self.generator.observe(&bytes, src);
                }
                if let Some(to) = to
                    && src.chance(1, 2)
                {
                    self.fed += 1;
                    let _ = self.nodes[to].handle_packet(self.now, addr(from as u8 + 1), &bytes);
                }
            }
        }
        // Whatever is still queued after the last round is dropped, like a lossy network.
        let _ = self.drain_transmits();
        Ok(())
    }

    /// What an application would do with an event: accept (or refuse) incoming streams, read and
    /// write them, answer requests. Command errors are typed answers, not failures.
    fn react(&mut self, src: &mut dyn Source, i: usize, event: Event) {
        let now = self.now;
        let n = &mut self.nodes[i];
        match event {
            Event::Stream(StreamOutput::Incoming(key)) => {
                if src.chance(1, 5) {
                    let _ = n.streams().reject(now, key, 1, "busy");
                } else {
                    let _ = n.streams().accept(now, key);
                }
            }
            Event::Stream(StreamOutput::Readable(key)) => {
                let max = *src.pick(&[0usize, 1, 4_096, usize::MAX]);
                let _ = n.streams().read(now, key, max);
            }
            Event::Stream(StreamOutput::Opened(key) | StreamOutput::Writable(key)) => {
                let len = *src.pick(&[0usize, 10, 70_000]);
                let _ = n.streams().write(now, key, &vec![7; len]);
                if src.chance(1, 10) {
                    let _ = n.streams().close(now, key, 0, "done");
                }
            }
            Event::Request { from, id, .. } => {
                let _ = n.respond(now, from, id, vec![1; 16]);
            }
            _ => {}
        }
    }

    /// Sometimes a node starts something of its own towards a member it knows (possibly one the
    /// fuzzer made up): a stream, a request, a direct message, a metadata change.
    fn initiate(&mut self, src: &mut dyn Source) {
        if !src.chance(1, 20) {
            return;
        }
        let now = self.now;
        let i = src.below(self.nodes.len() as u64) as usize;
        let n = &mut self.nodes[i];
        let peers: Vec<NodeId> = n
            .members()
            .map(|m| m.id)
            .filter(|id| *id != n.id())
            .collect();
        if peers.is_empty() {
            return;
        }
        let peer = *src.pick(&peers);
        match src.below(5) {
            0 => {
                let _ = n.streams().open(now, peer);
            }
            4 => {
                // A new incarnation with the same addresses, as a re-joining browser announces.
                let addrs = n.local().addrs.clone();
                let _ = n.set_addresses(now, addrs);
            }
            1 => {
                let _ = n.request(now, peer, "q", vec![2; 8], 1 + src.below(5_000));
            }
            2 => {
                let _ = n.send(now, peer, "d", vec![3; 8], src.chance(1, 2));
            }
            _ => {
                let value = if src.chance(1, 4) {
                    None
                } else {
                    Some(vec![4; 32])
                };
                let _ = n.set_metadata(now, "k", value);
            }
        }
    }

    /// Runs due timers; a node must not ask to be woken in the past forever, nor far ahead.
    fn run_timers(&mut self) -> Result<(), String> {
        let now = self.now;
        for (i, n) in self.nodes.iter_mut().enumerate() {
            for _ in 0..MAX_CATCH_UP {
                match n.poll_timeout() {
                    None => return Err(format!("node {i} has no timer but never left")),
                    Some(t) if t <= now => n.handle_timeout(now),
                    Some(_) => break,
                }
            }
            match n.poll_timeout() {
                None => return Err(format!("node {i} has no timer but never left")),
                Some(t) if t <= now => {
                    return Err(format!(
                        "node {i}: after {MAX_CATCH_UP} handle_timeout calls its timer is still due ({t:?} <= {now:?})"
                    ));
                }
                Some(t) if t.as_millis() > now.as_millis() + MAX_TIMER_MS => {
                    return Err(format!("node {i}: timer {t:?} is far beyond now {now:?}"));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Invariants of every node's member table.
    fn check_state(&self) -> Result<(), String> {
        // Only a signer can put itself in a table (alive records are self-signed): the nodes and
        // the generator's signers are all there is.
        let bound = self.nodes.len() + self.generator.signers.len();
        for (i, n) in self.nodes.iter().enumerate() {
            let me = n.local();
            if me.state.is_down() {
                return Err(format!("node {i} marks itself {:?}", me.state));
            }
            if n.member(&n.id()).map(|m| m.id) != Some(n.id()) {
                return Err(format!("node {i} lost its own record"));
            }
            let count = n.members().count();
            if count > bound {
                return Err(format!(
                    "node {i} has {count} members, at most {bound} can exist"
                ));
            }
            if n.live_count() == 0 {
                return Err(format!("node {i} counts no live member, not even itself"));
            }
        }
        Ok(())
    }
}
