//! Honest members keep converging while a key holder attacks (issue 13). For each attack in
//! [`Attack::ALL`], run continuously on an established cluster from 30 s before a fresh member
//! joins until a killed member is buried: (a) the fresh member and the others see each other
//! alive within the anti-entropy interval, and (b) every running member declares the killed one
//! dead within the detection time SWIM promises without an attack (both bounds derived from the
//! config below, not tuned to pass). The same scenario without the attack (same seed) is measured
//! alongside and must meet the same bounds. Every failure names the attack, the preset and the
//! seed; `--nocapture` prints the figures.
//!
//! Minted identities (and the name takeover, which mints self-introduced claimants) fill the
//! member table within the warm-up: the presets run with `max_members` at 2,000 here instead of
//! 10,000, so the table is full for most of the run and each simulated second costs less. The
//! full table must still take the fresh member (a share of the table per voucher:
//! `gossip-core/src/node/intake.rs`), and the verdict must still reach everyone (gossip, push and
//! push-pull targets drawn mostly among members that answer: `random_members`). Under minted
//! identities every pair must also see each other alive within the join bound, and every member
//! must know the killed one when it dies: a member that first hears of the fresh member from the
//! fresh member itself counts it with the self-introduced mint, so honest members must not spend
//! each other's intake allowance (`max_new_members_per_sender`) passing the mint on, or news of
//! the fresh member from its seed is refused and it is forgotten (`Node::withholding`). Seed 7
//! under `fast` is where that showed. Seeds 1 (`fast`) and 2 (`lan`) showed the next cause: the
//! mint levels the shares of the full table, and the fresh member, which introduces itself, was
//! refused by its own seed whenever another voucher's share was as large as nobody's
//! (`Pool::evict`); minted identities therefore run seeds 7, 1 and 2.

use gossip_core::{Config, State};
use gossip_sim::hostile::{Assault, Attack};
use gossip_sim::{NetConfig, Sim, VirtualTime};

/// Honest members before the fresh one joins.
const NODES: usize = 10;
/// The attacker's own identities.
const IDENTITIES: usize = 4;
/// The attack runs one tick per slice of this many virtual ms.
const TICK_MS: u64 = 100;
/// How long the attack runs before the fresh member joins: long enough for minted members to
/// pile up (several intake windows) and for the first of them to be suspected and buried.
const WARM_UP_MS: u64 = 30_000;
/// Settling between the join and the kill.
const SETTLE_MS: u64 = 5_000;

/// The detection time SWIM with Lifeguard promises without an attack, for `n` members: the
/// victim is probed by every other member within one pass over the others (`n - 1` probe
/// intervals), a failed probe ends one interval after it starts, and a lone accuser's suspicion
/// lasts the longest Lifeguard timeout; one more interval covers the spread of the verdict.
fn detection_bound_ms(config: &Config, n: usize) -> u64 {
    let (_, max) = config.suspicion_timeout_ms(n);
    config.probe_interval_ms * (n as u64 - 1)
        + config.probe_interval_ms
        + max
        + config.probe_interval_ms
}

/// A joiner pulls the whole state from its seed at once and its alive record is pushed to all;
/// whatever that misses, anti-entropy (a push-pull with a random member every
/// `push_pull_interval_ms`, more often right after the join) repairs within one interval.
fn join_bound_ms(config: &Config) -> u64 {
    config.push_pull_interval_ms
}

#[derive(Debug, Clone)]
struct Figures {
    join_ms: Option<u64>,
    /// When the join did not complete: (observer, subject, view) of each pair not seeing alive.
    join_missing: Vec<(usize, usize, Option<State>)>,
    /// Until the first running member declared the killed one dead.
    first_ms: Option<u64>,
    /// Until every running member did.
    detect_ms: Option<u64>,
    /// Running members that did not know the killed one when it died.
    unaware: usize,
    members_max: usize,
    /// Alive records the honest members kept to themselves (`Stats::news_withheld`), in all.
    withheld: u64,
}

/// Runs `ms` of virtual time with the attack ticking (if any), until `done`; the ms it took.
fn run(
    sim: &mut Sim,
    assault: &mut Option<Assault>,
    ms: u64,
    members_max: &mut usize,
    done: impl Fn(&Sim) -> bool,
) -> Option<u64> {
    let start = sim.now;
    loop {
        if done(sim) {
            return Some(sim.now.micros_since(start) / 1_000);
        }
        if sim.now.micros_since(start) / 1_000 >= ms {
            return None;
        }
        if let Some(a) = assault.as_mut() {
            a.tick(sim);
        }
        sim.run_for(TICK_MS);
        for i in sim.up() {
            *members_max = (*members_max).max(sim.nodes[i].node.members().count());
        }
    }
}

/// The scenario, with `attack` running throughout (or not).
fn scenario(config: &Config, seed: u64, attack: Option<Attack>) -> Figures {
    let mut sim = Sim::new(NODES, seed, config.clone(), NetConfig::default());
    sim.join_all();
    sim.run_until_true(30_000, 50, Sim::converged)
        .unwrap_or_else(|| panic!("seed {seed}: no convergence before the attack"));
    // An established cluster: every member has probed every other a few times.
    sim.run_for(3 * NODES as u64 * config.probe_interval_ms);
    let mut assault = attack.map(|a| Assault::start(&mut sim, a, IDENTITIES));
    let mut members_max = 0;
    run(&mut sim, &mut assault, WARM_UP_MS, &mut members_max, |_| {
        false
    });

    // (a) A fresh member joins through node 0 mid-attack.
    let fresh = sim.add();
    sim.join(fresh, &[0]);
    let honest = |s: &Sim| s.up();
    let join_ms = run(
        &mut sim,
        &mut assault,
        join_bound_ms(config),
        &mut members_max,
        |s| {
            let up = honest(s);
            up.iter()
                .all(|&i| up.iter().all(|&j| s.view(i, j) == Some(State::Alive)))
        },
    );
    // Who did not see whom alive when the join bound ran out (observer, subject, view).
    let up = honest(&sim);
    let join_missing: Vec<(usize, usize, Option<State>)> = up
        .iter()
        .flat_map(|&i| up.iter().map(move |&j| (i, j)))
        .map(|(i, j)| (i, j, sim.view(i, j)))
        .filter(|(_, _, v)| *v != Some(State::Alive))
        .collect();
    run(&mut sim, &mut assault, SETTLE_MS, &mut members_max, |_| {
        false
    });

    // (b) A member is killed mid-attack.
    let victim = NODES / 2;
    sim.crash(victim);
    let n = sim.nodes.len();
    let wait = detection_bound_ms(config, n);
    // Members that knew the victim when it died: each must come to hold it dead, or forget it
    // after holding it dead.
    let running = honest(&sim);
    let knew: Vec<usize> = running
        .iter()
        .copied()
        .filter(|&i| sim.view(i, victim).is_some())
        .collect();
    let unaware = running.len() - knew.len();
    let buried = |s: &Sim, i: usize| s.view(i, victim).is_none_or(State::is_down);
    let first_ms = run(&mut sim, &mut assault, wait, &mut members_max, |s| {
        knew.iter().any(|&i| buried(s, i))
    });
    let detect_ms = first_ms.and_then(|first| {
        run(
            &mut sim,
            &mut assault,
            wait - first,
            &mut members_max,
            |s| knew.iter().all(|&i| buried(s, i)),
        )
        .map(|rest| first + rest)
    });
    Figures {
        join_ms,
        join_missing,
        first_ms,
        detect_ms,
        unaware,
        members_max,
        withheld: honest(&sim)
            .iter()
            .map(|&i| sim.nodes[i].node.stats().news_withheld)
            .sum(),
    }
}

/// The scenario under `attack` and without it, under both presets, for each of `seeds`.
fn check(attack: Attack, seeds: &[u64]) {
    for &seed in seeds {
        for (preset, config) in [("lan", Config::lan()), ("fast", Config::fast())] {
            let config = Config {
                max_members: 2_000,
                ..config
            };
            check_one(attack, preset, &config, seed);
        }
    }
}

fn check_one(attack: Attack, preset: &str, config: &Config, seed: u64) {
    let n = NODES + 1;
    let (join_bound, detect_bound) = (join_bound_ms(config), detection_bound_ms(config, n));
    let quiet = scenario(config, seed, None);
    let loud = scenario(config, seed, Some(attack));
    let report = format!(
        "{}, {preset}, seed {seed}: join {:?} ms (without the attack {:?}, bound {join_bound}), \
         crash detected by the first in {:?} ms and by all in {:?} ms (without {:?} and {:?}, \
         bound {detect_bound}), members unaware of the killed one {} (without {}), most members \
         held {} (without {}), news withheld {} (without {}); pairs not alive at the join bound \
         (observer, subject, view): {:?}",
        attack.name(),
        loud.join_ms,
        quiet.join_ms,
        loud.first_ms,
        loud.detect_ms,
        quiet.first_ms,
        quiet.detect_ms,
        loud.unaware,
        quiet.unaware,
        loud.members_max,
        quiet.members_max,
        loud.withheld,
        quiet.withheld,
        loud.join_missing
    );
    eprintln!("{report}");
    let within = |ms: Option<u64>, bound: u64| ms.is_some_and(|ms| ms <= bound);
    assert!(within(quiet.join_ms, join_bound), "{report}");
    assert!(within(quiet.detect_ms, detect_bound), "{report}");
    assert_eq!(quiet.unaware, 0, "{report}");
    // Without the attack nobody has evidence of a mint.
    assert_eq!(quiet.withheld, 0, "{report}");
    assert!(within(loud.first_ms, detect_bound), "{report}");
    assert!(within(loud.join_ms, join_bound), "{report}");
    if attack == Attack::MintedIdentities {
        // Every member, the fresh one included, knew the killed one when it died.
        assert_eq!(loud.unaware, 0, "{report}");
    }
    assert!(within(loud.detect_ms, detect_bound), "{report}");
}

#[test]
fn inflated_accusations() {
    check(Attack::InflatedAccusations, &[7]);
}

#[test]
fn name_takeover() {
    check(Attack::NameTakeover, &[7]);
}

#[test]
fn minted_identities() {
    check(Attack::MintedIdentities, &[7, 1, 2]);
}

#[test]
fn replays() {
    check(Attack::Replays, &[7]);
}

#[test]
fn relays_and_streams() {
    check(Attack::RelaysAndStreams, &[7]);
}
