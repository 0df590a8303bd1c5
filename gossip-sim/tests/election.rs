//! Leader election in the simulator, 20 seeds: majority/minority partitions and heals, a split
//! with no majority anywhere, crashes of the leader and of others, restarts.
//!
//! The safety invariant, checked after every tick (every 20 ms of virtual time, which is when
//! a member can start to lead: leases only begin at a tick): at no instant do two running
//! members both hold an unexpired lease (`Election::is_leader(now)`), on whichever side of a
//! partition they are. A crashed member does nothing, so its lease does not count. Because every
//! lease starts at a tick and runs without a gap until it ends, two leases overlap exactly when,
//! at the later one's first tick, the earlier has not ended yet: the check misses no overlap.
//!
//! Liveness: once a majority of the voters is up, connected and stays so, some member leads
//! within `BOUND_MS`. Every assertion names its seed.

use gossip_core::Config;
use gossip_core::election::{Election, ElectionConfig};
use gossip_sim::VirtualTime;
use gossip_sim::{NetConfig, Sim};

const N: usize = 5;
const LEASE_MS: u64 = 1_000;
const TICK_MS: u64 = 20;
/// A leader within this long of a majority being connected and stable. What it has to cover:
/// the promises made to a lost leader running out (one lease), the waits of the voters ranked
/// before the successor (`lease + rank x lease/2`, up to three leases), and one failed round
/// of split bids (two leases more); membership and state need a few rounds of gossip more.
const BOUND_MS: u64 = 8 * LEASE_MS;

struct Cluster {
    sim: Sim,
    /// A voter that does not follow the protocol: its election is not ticked; it bids the last
    /// term instead, renewed every tick.
    rogue: Option<usize>,
    seed: u64,
    elections: Vec<Election>,
    config: ElectionConfig,
    rng: u64,
}

impl Cluster {
    fn new(seed: u64) -> Cluster {
        let sim = Sim::joined(N, seed, Config::lan(), NetConfig::default());
        let voters = (0..N).map(|i| sim.id(i)).collect();
        let config = ElectionConfig::new("test", voters).with_lease_ms(LEASE_MS);
        let elections = (0..N)
            .map(|i| Election::new(sim.now, sim.id(i), config.clone()).unwrap())
            .collect();
        Cluster {
            sim,
            rogue: None,
            seed,
            elections,
            config,
            rng: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// splitmix64: the test's own choices, from the seed.
    fn pick(&mut self, below: usize) -> usize {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % below as u64) as usize
    }

    fn leaders(&self) -> Vec<usize> {
        let now = self.sim.now;
        self.sim
            .up()
            .into_iter()
            .filter(|&i| self.elections[i].is_leader(now))
            .collect()
    }

    /// One tick of every running member, then the invariant.
    fn tick(&mut self) {
        for i in self.sim.up() {
            if self.rogue == Some(i) {
                // term u64::MAX, life 1, a round that moves so the bid stays fresh.
                let round = self.sim.now.as_millis();
                let bid: Vec<u8> = [u64::MAX, 1, round]
                    .iter()
                    .flat_map(|w| w.to_le_bytes())
                    .collect();
                self.sim
                    .with_node(i, |n, now| n.state_set(now, "election/test/bid", bid))
                    .unwrap_or_else(|err| panic!("seed {}: rogue bid: {err}", self.seed));
                continue;
            }
            let e = &mut self.elections[i];
            let r = self.sim.with_node(i, |n, now| e.tick(n, now));
            r.unwrap_or_else(|err| panic!("seed {}: tick of {i}: {err}", self.seed));
        }
        let leaders = self.leaders();
        assert!(
            leaders.len() <= 1,
            "seed {}: at {} ms members {leaders:?} both lead (terms {:?})",
            self.seed,
            self.sim.now.as_millis(),
            leaders
                .iter()
                .map(|&i| self.elections[i].leader_term(self.sim.now))
                .collect::<Vec<_>>()
        );
    }

    fn run(&mut self, ms: u64) {
        let end = self.sim.now.plus_millis(ms);
        while self.sim.now < end {
            let next = self.sim.now.plus_millis(TICK_MS);
            self.sim.run_until(next);
            self.tick();
        }
    }

    /// Runs until one of `among` leads; panics naming the seed after `BOUND_MS`.
    fn leader_among(&mut self, among: &[usize], what: &str) -> usize {
        let end = self.sim.now.plus_millis(BOUND_MS);
        loop {
            if let Some(&l) = self.leaders().iter().find(|l| among.contains(l)) {
                return l;
            }
            assert!(
                self.sim.now < end,
                "seed {}: no leader among {among:?} within {BOUND_MS} ms ({what})",
                self.seed
            );
            self.run(TICK_MS);
        }
    }

    /// Splits into `side` (group 1) and the rest (group 0).
    fn split(&mut self, side: &[usize]) {
        let groups = (0..N).map(|i| u8::from(side.contains(&i))).collect();
        self.sim.partition(groups);
    }

    /// `k` distinct members, one of them `with` if given.
    fn some(&mut self, k: usize, with: Option<usize>) -> Vec<usize> {
        let mut chosen: Vec<usize> = with.into_iter().collect();
        while chosen.len() < k {
            let i = self.pick(N);
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        chosen
    }

    fn restart(&mut self, i: usize) {
        let seed = (0..N).find(|&j| j != i && self.sim.nodes[j].up).unwrap();
        self.sim.restart(i, &[seed]);
        self.elections[i] =
            Election::new(self.sim.now, self.sim.id(i), self.config.clone()).expect("same config");
    }
}

fn scenario(seed: u64) {
    let mut c = Cluster::new(seed);
    let all: Vec<usize> = (0..N).collect();
    let first = c.leader_among(&all, "start");

    // The leader and one other on the minority side: the leader's lease runs out, and the
    // three others elect one of themselves. Nobody on the minority side may lead once its last
    // lease has ended.
    let minority = c.some(2, Some(first));
    let majority: Vec<usize> = all
        .iter()
        .copied()
        .filter(|i| !minority.contains(i))
        .collect();
    c.split(&minority);
    c.leader_among(&majority, "leader cut off in a minority");
    c.run(3 * LEASE_MS);
    assert!(
        c.leaders().iter().all(|l| majority.contains(l)),
        "seed {seed}: the minority side leads"
    );

    // Healed: a leader stays or comes within the bound.
    c.sim.heal();
    c.run(2 * LEASE_MS);
    let third = c.leader_among(&all, "healed");

    // The leader crashes; the others elect another; it restarts and does not disturb them.
    c.sim.crash(third);
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != third).collect();
    c.leader_among(&rest, "leader crashed");
    let wait = c.pick(3) as u64 * LEASE_MS;
    c.run(wait);
    c.restart(third);
    c.run(3 * LEASE_MS);

    // 2 / 2 / 1: no majority anywhere; no one may lead once the last lease ends.
    let order = c.some(N, None);
    let groups: Vec<u8> = (0..N)
        .map(|i| match order.iter().position(|&o| o == i).unwrap() {
            0 | 1 => 0,
            2 | 3 => 1,
            _ => 2,
        })
        .collect();
    c.sim.partition(groups);
    c.run(2 * LEASE_MS);
    assert!(
        c.leaders().is_empty(),
        "seed {seed}: {:?} leads with no majority connected",
        c.leaders()
    );
    c.run(2 * LEASE_MS);

    // A random member crashes during the split, and the majority that heals elects.
    let crashed = c.pick(N);
    c.sim.crash(crashed);
    c.sim.heal();
    let up: Vec<usize> = c.sim.up();
    c.leader_among(&up, "healed, one crashed");
    c.restart(crashed);
    c.run(4 * LEASE_MS);
    c.leader_among(&all, "end");
}

#[test]
fn never_two_leaders_and_a_majority_elects_one() {
    for seed in 0..20 {
        scenario(seed);
    }
}

/// A voter that bids term 2^64 - 1 (the last one) gets no votes for it and leaves the terms
/// to everyone else: when the leader crashes, the others still elect one of themselves. Before
/// leaps were bounded, every honest member took that term as seen, voted for the rogue, and
/// could never bid above it.
#[test]
fn a_voter_bidding_the_last_term_does_not_end_elections() {
    for seed in 0..3 {
        let mut c = Cluster::new(seed);
        let all: Vec<usize> = (0..N).collect();
        let first = c.leader_among(&all, "start");
        let rogue = (first + 1) % N;
        c.rogue = Some(rogue);
        c.run(2 * LEASE_MS);
        c.sim.crash(first);
        let honest: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| i != first && i != rogue)
            .collect();
        let next = c.leader_among(&honest, "leader crashed, a rogue bidding the last term");
        let term = c.elections[next].leader_term(c.sim.now);
        assert!(
            term.is_some_and(|t| t < u64::MAX),
            "seed {seed}: {next} leads in term {term:?}"
        );
    }
}
