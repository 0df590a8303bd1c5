//! Hostile key holders: frames made outside the simulated nodes, validly signed and sealed with the
//! cluster key, and delivered through the simulator's network model ([`Sim::inject`]).
//!
//! An [`Attacker`] holds the cluster key and a few identities of its own ([`Holder`]s that
//! announce themselves like members, at addresses nobody listens at), and mints more at will:
//! an Ed25519 identity costs nothing. It never signs as an honest node. An [`Assault`] runs one
//! [`Attack`] continuously: each [`Assault::tick`] injects one round of its frames into every
//! running node, so a test interleaves ticks with [`Sim::run_for`](crate::VirtualTime::run_for)
//! slices and watches whether the honest nodes still converge. Everything random comes from the
//! simulation's seed.

use gossip_core::message::{Alive, Dead, Gossip, Relay, Suspect};
use gossip_core::streams::StreamOpen;
use gossip_core::{
    Address, Codec, Identity, Keyring, Message, NodeId, ReplayConfig, SignedPacket, Timestamp,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::Sim;

/// An identity the attacker signs as.
#[derive(Debug)]
pub struct Holder {
    codec: Codec,
    addr: Address,
}

impl Holder {
    /// Its id.
    pub fn id(&self) -> NodeId {
        self.codec.identity().id()
    }

    /// The address it claims: nobody listens there, so probes of it are never answered.
    pub fn addr(&self) -> &Address {
        &self.addr
    }

    /// Signs `message` as this identity, with message id `stamp`.
    pub fn sign(&self, stamp: Timestamp, message: &Message) -> SignedPacket {
        self.codec
            .sign(stamp, message)
            .expect("the attacker's messages fit the default limits")
    }
}

/// A key holder: the cluster key, its own identities, and the identities it minted.
#[derive(Debug)]
pub struct Attacker {
    keyring: Keyring,
    /// Sealing needs the key only, not an identity: any codec with the keyring does.
    sealer: Codec,
    rng: ChaCha20Rng,
    /// Its own identities, announced to every node by [`Attacker::announce`].
    pub holders: Vec<Holder>,
    minted: u64,
    /// Message ids: the wall clock, and a logical counter that makes every id of the same
    /// millisecond distinct (the replay window refuses a repeated (origin, id)).
    last_wall: u64,
    logical: u16,
}

/// The address of minted identity `n`: in 10.255.0.0/16 and beyond, where no simulated node is.
fn unreachable(n: u64) -> Address {
    let ip = Ipv4Addr::new(
        10 + (n >> 24) as u8 % 16 + 128,
        (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
    );
    Address::Udp(SocketAddr::V4(SocketAddrV4::new(ip, 7946)))
}

impl Attacker {
    /// A key holder of `sim`'s cluster with `identities` identities of its own.
    pub fn new(sim: &Sim, identities: usize) -> Attacker {
        let mut a = Attacker {
            keyring: sim.keyring(),
            sealer: Codec::new(
                Identity::from_secret_bytes([0; 32]),
                sim.keyring(),
                gossip_core::Limits::default(),
                ReplayConfig::default(),
            ),
            rng: ChaCha20Rng::seed_from_u64(sim.seed() ^ 0xa77a_c4e5),
            holders: Vec::new(),
            minted: 0,
            last_wall: 0,
            logical: 0,
        };
        a.holders = (0..identities).map(|_| a.mint()).collect();
        a
    }

    /// A fresh identity, at an address of its own where nobody listens.
    pub fn mint(&mut self) -> Holder {
        let mut secret = [0u8; 32];
        self.rng.fill_bytes(&mut secret);
        self.minted += 1;
        Holder {
            codec: Codec::new(
                Identity::from_secret_bytes(secret),
                self.keyring.clone(),
                gossip_core::Limits::default(),
                ReplayConfig::default(),
            ),
            addr: unreachable(self.minted),
        }
    }

    /// Identities minted so far (its own included).
    pub fn minted(&self) -> u64 {
        self.minted
    }

    /// A message id no earlier one of this attacker shares: the simulated wall clock now.
    pub fn stamp(&mut self, sim: &Sim) -> Timestamp {
        let wall = sim.wall_ms();
        if wall != self.last_wall {
            self.last_wall = wall;
            self.logical = 0;
        }
        self.logical = self.logical.wrapping_add(1);
        Timestamp::new(wall, self.logical)
    }

    /// Seals a signed packet into a frame with the cluster key.
    pub fn seal(&mut self, packet: &SignedPacket) -> Vec<u8> {
        self.sealer
            .seal(&mut self.rng, 0, packet)
            .expect("the attacker's frames fit the default limits")
    }

    /// Signs `message` as own identity `holder`, seals it and injects it into node `to`.
    pub fn send(&mut self, sim: &mut Sim, holder: usize, to: usize, message: &Message) {
        let stamp = self.stamp(sim);
        let packet = self.holders[holder].sign(stamp, message);
        let frame = self.seal(&packet);
        let from = self.holders[holder].addr.clone();
        sim.inject(to, from, frame);
    }

    /// Each own identity sends its alive record (incarnation: the wall clock, so each
    /// announcement outranks the last and brings it back if it was declared dead) to every
    /// running node. `relayed_via`: claim to be relayed through that node instead of listening.
    pub fn announce(&mut self, sim: &mut Sim, relayed_via: Option<NodeId>) {
        let incarnation = sim.wall_ms();
        for h in 0..self.holders.len() {
            let addrs = match relayed_via {
                Some(via) => vec![Address::Relayed(via)],
                None => vec![self.holders[h].addr.clone()],
            };
            let alive = Message::from(Alive {
                incarnation,
                addrs,
                name: format!("attacker-{h}"),
            });
            for to in sim.up() {
                self.send(sim, h, to, &alive);
            }
        }
    }
}

/// What the attacker does, continuously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// Suspect and Dead about every running member at `u64::MAX` and at its incarnation plus
    /// 1, 2^20 and 2^40, gossiped to every node each tick; the accusations about a node are also
    /// sent to it directly (it refutes what it may: see `MAX_REFUTE_JUMP` in the engine).
    InflatedAccusations,
    /// Each tick, one new identity per running member claims its name with an alive record at an
    /// incarnation near `u64::MAX`, sent by the claimant itself to every node.
    NameTakeover,
    /// Each own identity introduces fresh minted identities (alive records they signed, at
    /// addresses nobody answers at) to every node, 256 to a frame, as many per intake window as
    /// `max_new_members_per_sender` lets through, for as long as the assault runs.
    MintedIdentities,
    /// Frames captured between nodes replayed to their receiver and to another node, both
    /// at once (inside the replay window) and long after (outside it).
    Replays,
    /// Relay requests whose inner frame another member signed (the attacker claims to be relayed
    /// through node 0, so node 0 considers relaying for it), and stream opens past each peer's
    /// share, from every own identity to every node.
    RelaysAndStreams,
}

impl Attack {
    /// Every attack, for table-driven tests.
    pub const ALL: [Attack; 5] = [
        Attack::InflatedAccusations,
        Attack::NameTakeover,
        Attack::MintedIdentities,
        Attack::Replays,
        Attack::RelaysAndStreams,
    ];

    /// Its name, for failure messages.
    pub fn name(self) -> &'static str {
        match self {
            Attack::InflatedAccusations => "inflated accusations",
            Attack::NameTakeover => "name takeover",
            Attack::MintedIdentities => "minted identities",
            Attack::Replays => "replays",
            Attack::RelaysAndStreams => "relays and streams",
        }
    }
}

/// Frames of an older tick replayed per tick (a bound on the simulator's work, not the attacker's).
const REPLAYS_PER_TICK: usize = 64;
/// How long captured frames are kept before the late replay: past the 60 s replay window.
const LATE_REPLAY_MS: u64 = 75_000;

/// One attack, run continuously against a simulation.
#[derive(Debug)]
pub struct Assault {
    /// The attack.
    pub attack: Attack,
    /// The key holder running it.
    pub attacker: Attacker,
    /// Ticks so far.
    pub ticks: u64,
    /// For `MintedIdentities`: when the current intake window of each own identity started, and
    /// how many it introduced in it.
    window: Vec<(u64, usize)>,
    /// For `Replays`: frames captured long ago, waiting to be replayed after the window.
    old: Vec<(u64, crate::Tapped)>,
    /// For `RelaysAndStreams`: the next stream id each own identity opens.
    next_stream: u64,
}

impl Assault {
    /// `attack` by a key holder with `identities` own identities, which announce themselves now.
    pub fn start(sim: &mut Sim, attack: Attack, identities: usize) -> Assault {
        let mut attacker = Attacker::new(sim, identities);
        let via = (attack == Attack::RelaysAndStreams).then(|| sim.id(0));
        attacker.announce(sim, via);
        if matches!(attack, Attack::Replays | Attack::RelaysAndStreams) {
            sim.tap(4_096);
        }
        Assault {
            attack,
            window: vec![(0, 0); identities],
            attacker,
            ticks: 0,
            old: Vec::new(),
            next_stream: 1,
        }
    }

    /// One round of the attack against every running node.
    pub fn tick(&mut self, sim: &mut Sim) {
        self.ticks += 1;
        // Own identities that are declared dead come back: alive records every 5 s.
        if self.ticks.is_multiple_of(50) {
            let via = (self.attack == Attack::RelaysAndStreams).then(|| sim.id(0));
            self.attacker.announce(sim, via);
        }
        match self.attack {
            Attack::InflatedAccusations => self.accuse(sim),
            Attack::NameTakeover => self.take_names(sim),
            Attack::MintedIdentities => self.mint(sim),
            Attack::Replays => self.replay(sim),
            Attack::RelaysAndStreams => self.relay_and_open(sim),
        }
    }

    fn accuse(&mut self, sim: &mut Sim) {
        let up = sim.up();
        let about = |node: NodeId, incarnation: u64| -> Vec<Message> {
            let mut out = Vec::new();
            for incarnation in [
                u64::MAX,
                incarnation.saturating_add(1),
                incarnation.saturating_add(1 << 20),
                incarnation.saturating_add(1 << 40),
            ] {
                out.push(Suspect { node, incarnation }.into());
                out.push(Dead { node, incarnation }.into());
            }
            out
        };
        let mut items = Vec::new();
        let mut own: Vec<(usize, Vec<Message>)> = Vec::new();
        let holder = (self.ticks as usize) % self.attacker.holders.len();
        for &j in &up {
            let accusations = about(sim.id(j), sim.nodes[j].node.local().incarnation);
            for m in &accusations {
                let stamp = self.attacker.stamp(sim);
                items.push(self.attacker.holders[holder].sign(stamp, m));
            }
            own.push((j, accusations));
        }
        let gossip = Message::from(Gossip { items });
        for &to in &up {
            self.attacker.send(sim, holder, to, &gossip);
        }
        // Directly to the accused, once a second: each is a challenge it answers.
        if self.ticks.is_multiple_of(10) {
            for (j, accusations) in own {
                for m in &accusations {
                    self.attacker.send(sim, holder, j, m);
                }
            }
        }
    }

    fn take_names(&mut self, sim: &mut Sim) {
        let up = sim.up();
        for &j in &up {
            let name = sim.nodes[j].node.local().name.clone();
            let claimant = self.attacker.mint();
            let stamp = self.attacker.stamp(sim);
            let alive = Message::from(Alive {
                incarnation: u64::MAX - self.ticks,
                addrs: vec![claimant.addr().clone()],
                name,
            });
            let frame = self.attacker.seal(&claimant.sign(stamp, &alive));
            for &to in &up {
                sim.inject(to, claimant.addr().clone(), frame.clone());
            }
        }
    }

    fn mint(&mut self, sim: &mut Sim) {
        let config = sim.config().clone();
        let now = sim.now.as_millis();
        let per_frame = config.max_new_members_per_frame;
        for h in 0..self.attacker.holders.len() {
            let (start, used) = &mut self.window[h];
            if now >= *start + config.intake_window_ms {
                *start = now;
                *used = 0;
            }
            let n = per_frame.min(config.max_new_members_per_sender.saturating_sub(*used));
            if n == 0 {
                continue;
            }
            *used += n;
            let incarnation = sim.wall_ms();
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                let fake = self.attacker.mint();
                let stamp = self.attacker.stamp(sim);
                let alive = Message::from(Alive {
                    incarnation,
                    addrs: vec![fake.addr().clone()],
                    name: String::new(),
                });
                items.push(fake.sign(stamp, &alive));
            }
            let gossip = Message::from(Gossip { items });
            for to in sim.up() {
                self.attacker.send(sim, h, to, &gossip);
            }
        }
    }

    fn replay(&mut self, sim: &mut Sim) {
        let now = sim.now.as_millis();
        let up = sim.up();
        if up.is_empty() {
            return;
        }
        let recent: Vec<crate::Tapped> = sim
            .tapped()
            .iter()
            .rev()
            .take(REPLAYS_PER_TICK)
            .cloned()
            .collect();
        let from = self.attacker.holders[0].addr().clone();
        for (k, t) in recent.iter().enumerate() {
            // Verbatim to its receiver (a duplicate), and to another node.
            sim.inject(t.to, from.clone(), t.bytes.clone());
            let other = up[(k + self.ticks as usize) % up.len()];
            sim.inject(other, from.clone(), t.bytes.clone());
        }
        if self.ticks.is_multiple_of(10)
            && let Some(t) = recent.first()
        {
            self.old.push((now, t.clone()));
        }
        let due = self
            .old
            .iter()
            .take_while(|(at, _)| now >= at + LATE_REPLAY_MS)
            .count();
        for (_, t) in self.old.drain(..due) {
            for &to in &up {
                sim.inject(to, from.clone(), t.bytes.clone());
            }
        }
    }

    fn relay_and_open(&mut self, sim: &mut Sim) {
        let up = sim.up();
        let foreign: Vec<Vec<u8>> = sim
            .tapped()
            .iter()
            .rev()
            .take(up.len())
            .map(|t| t.bytes.clone())
            .collect();
        for h in 0..self.attacker.holders.len() {
            for (k, &to) in up.iter().enumerate() {
                // A frame another member signed, to be carried to a third: refused
                // (`relay_forged` at node 0, which relays for us; `relay_refused` elsewhere).
                if let Some(frame) = foreign.get(k) {
                    let dest = up[(k + 1) % up.len()];
                    let relay = Message::from(Relay {
                        to: sim.id(dest),
                        frame: frame.clone().into(),
                    });
                    self.attacker.send(sim, h, to, &relay);
                }
                let open = Message::from(StreamOpen {
                    stream: self.next_stream,
                    window: 1 << 20,
                });
                self.attacker.send(sim, h, to, &open);
            }
        }
        self.next_stream += 1;
    }
}
