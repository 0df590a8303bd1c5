//! Each piece of SWIM + Lifeguard exercised on its own, so that breaking one fails a test: indirect
//! probes (a single cut link), nacks, local health, suspicion that shrinks with independent
//! confirmations, and the reconnect of a healed partition through the dead-member push-pull and
//! the tombstone challenge. Every assertion names its seed; rerun with it to reproduce exactly.

use std::collections::HashMap;

use gossip_core::{Config, Event, Instant, NodeId, State};
use gossip_sim::VirtualTime;
use gossip_sim::{NetConfig, Sim};

fn converge(sim: &mut Sim) {
    let seed = sim.seed();
    sim.join_all();
    sim.run_until_true(30_000, 50, Sim::converged)
        .unwrap_or_else(|| panic!("seed {seed}: no convergence on join"));
}

/// `MemberSuspect` events node `observer` reported about `about` at or after `since`.
fn suspicions(sim: &Sim, observer: usize, about: NodeId, since: Instant) -> usize {
    sim.nodes[observer]
        .events
        .iter()
        .filter(|(at, e)| *at >= since && *e == Event::MemberSuspect { id: about })
        .count()
}

/// Every `MemberDead` reported at or after `since`, as (observer, member).
fn deaths(sim: &Sim, since: Instant) -> Vec<(usize, NodeId)> {
    let mut out = Vec::new();
    for (i, n) in sim.nodes.iter().enumerate() {
        for (at, e) in &n.events {
            if let Event::MemberDead { id } = e
                && *at >= since
            {
                out.push((i, *id));
            }
        }
    }
    out
}

/// Runs `ms` in `slice_ms` steps and returns the highest health score each node showed.
fn run_sampling_health(sim: &mut Sim, ms: u64, slice_ms: u64) -> Vec<u32> {
    let mut max = vec![0; sim.nodes.len()];
    let end = sim.now.plus_millis(ms);
    while sim.now < end {
        let next = sim.now.plus_millis(slice_ms).min(end);
        sim.run_until(next);
        for (i, n) in sim.nodes.iter().enumerate() {
            if n.up {
                max[i] = max[i].max(n.node.health_score());
            }
        }
    }
    max
}

/// Node A cannot reach B nor B reach A, but both reach everyone else: A's direct probes of B fail
/// and only the indirect probes through others keep B from being suspected. With indirect probes
/// disabled, the same cut makes A accuse B over and over (B refutes each time, from the far side).
#[test]
fn a_cut_direct_link_is_bridged_by_indirect_probes() {
    for seed in [1, 2, 3] {
        let run = |indirect_checks: usize| {
            let config = Config {
                indirect_checks,
                ..Config::fast()
            };
            let mut sim = Sim::new(10, seed, config, NetConfig::default());
            converge(&mut sim);
            let (a, b) = (0, 5);
            let before = sim.nodes[b].node.local().incarnation;
            sim.cut(a, b);
            let since = sim.now;
            // A pass over 9 members takes 0.9 s: A probes B about 30 times.
            sim.run_for(30_000);
            let accused: usize = (0..sim.nodes.len())
                .map(|i| suspicions(&sim, i, sim.id(b), since))
                .sum();
            let refuted = sim.nodes[b].node.local().incarnation > before;
            (sim, accused, refuted)
        };
        let (sim, accused, refuted) = run(5);
        assert_eq!(
            accused, 0,
            "seed {seed}: B was suspected {accused} times although others could reach it"
        );
        assert!(!refuted, "seed {seed}: B had to refute");
        assert_eq!(sim.view(0, 5), Some(State::Alive), "seed {seed}");
        assert!(
            deaths(&sim, Instant::from_millis(0)).is_empty(),
            "seed {seed}"
        );

        let (_, accused, refuted) = run(0);
        assert!(
            accused > 0 && refuted,
            "seed {seed}: without indirect probes the cut link should make A accuse B \
             ({accused} suspicions, refuted: {refuted})"
        );
    }
}

/// A crashed member is probed by healthy nodes: their helpers hear nothing either and say so with
/// a nack, so the prober knows the silence is not its own network's fault and its local health
/// stays perfect. A node that hears nothing at all (every link into it cut) gets no nacks and
/// its health score rises: the measurement can tell the two apart.
#[test]
fn nacks_keep_a_healthy_prober_from_blaming_itself() {
    for seed in [1, 2, 3] {
        let n = 12;
        let mut sim = Sim::new(n, seed, Config::fast(), NetConfig::default());
        converge(&mut sim);
        sim.run_for(2_000);
        let victim = n - 1;
        let vid = sim.id(victim);
        sim.crash(victim);
        let since = sim.now;
        let max = run_sampling_health(&mut sim, 8_000, 10);
        let buried = (0..victim).all(|i| sim.view(i, victim) == Some(State::Dead));
        assert!(
            buried,
            "seed {seed}: the crashed member was not declared dead"
        );
        let probers = (0..victim)
            .filter(|&i| suspicions(&sim, i, vid, since) > 0)
            .count();
        assert!(probers > 0, "seed {seed}: nobody suspected the victim");
        for (i, score) in max.iter().enumerate().take(victim) {
            assert_eq!(
                *score, 0,
                "seed {seed}: node {i} blamed its own health ({score}) for a dead member"
            );
        }

        // The same cluster, with one node deaf: no ack and no nack reaches it.
        let deaf = 3;
        for i in 0..victim {
            if i != deaf {
                sim.cut_one_way(i, deaf);
            }
        }
        let max = run_sampling_health(&mut sim, 5_000, 10);
        assert!(
            max[deaf] >= 3,
            "seed {seed}: a node hearing nothing kept health score {}",
            max[deaf]
        );
    }
}

/// One node's own links lose 60 % of datagrams both ways. Lifeguard's local health raises its
/// score, its probes slow down, and it accuses healthy members far less often than the same node
/// with local health disabled (`awareness_max_multiplier = 1`); nobody healthy is declared dead.
#[test]
fn a_node_on_a_bad_network_slows_down_instead_of_accusing() {
    for seed in [1, 2, 3] {
        let n = 12;
        let bad = 0;
        let run = |awareness_max_multiplier: u32| {
            let overrides = HashMap::from([(
                bad,
                Config {
                    awareness_max_multiplier,
                    ..Config::fast()
                },
            )]);
            let mut sim =
                Sim::with_configs(n, seed, Config::fast(), NetConfig::default(), overrides);
            converge(&mut sim);
            for i in 1..n {
                sim.set_link_loss(bad, i, 0.6);
                sim.set_link_loss(i, bad, 0.6);
            }
            let since = sim.now;
            let max = run_sampling_health(&mut sim, 60_000, 50);
            let accusations: usize = (1..n)
                .map(|j| suspicions(&sim, bad, sim.id(j), since))
                .sum();
            // Its own view may be wrong (refutations reach it late); nobody else's may be.
            let healthy_dead: Vec<_> = deaths(&sim, since)
                .into_iter()
                .filter(|(observer, id)| *observer != bad && *id != sim.id(bad))
                .collect();
            (max[bad], accusations, healthy_dead)
        };
        let (score, with, dead) = run(Config::fast().awareness_max_multiplier);
        assert!(
            score >= 3,
            "seed {seed}: the node on a bad network kept health score {score}"
        );
        assert!(
            dead.is_empty(),
            "seed {seed}: healthy members declared dead by healthy observers: {dead:?}"
        );
        let (score_off, without, _) = run(1);
        assert_eq!(score_off, 0, "seed {seed}");
        assert!(
            with * 3 < without * 2,
            "seed {seed}: local health should cut accusations by a third at least: \
             {with} with it, {without} without"
        );
    }
}

/// Lifeguard's suspicion timeout starts at its maximum and shrinks as independent members confirm
/// the suspicion. To count the accusers exactly, every node but `k` probes so rarely that it never
/// probes within the test; the crashed member is then accused by exactly `k` members.
#[test]
fn suspicion_ends_sooner_with_independent_confirmations() {
    for seed in [1, 2, 3] {
        let n = 12;
        let victim = n - 1;
        let config = Config::fast();
        let (min_ms, max_ms) = config.suspicion_timeout_ms(n);
        // Milliseconds from the first suspicion to the first death, with `k` probing members.
        let run = |k: usize| {
            let rare = Config {
                probe_interval_ms: 3_600_000,
                ..Config::fast()
            };
            let overrides = (k..victim).map(|i| (i, rare.clone())).collect();
            let mut sim =
                Sim::with_configs(n, seed, Config::fast(), NetConfig::default(), overrides);
            converge(&mut sim);
            sim.run_for(1_000);
            let vid = sim.id(victim);
            sim.crash(victim);
            let since = sim.now;
            sim.run_until_true(30_000, 10, |s| {
                (0..victim).all(|i| s.view(i, victim) == Some(State::Dead))
            })
            .unwrap_or_else(|| panic!("seed {seed}: not declared dead with {k} probing"));
            let first = |pick: &dyn Fn(&Event) -> bool| {
                sim.nodes
                    .iter()
                    .flat_map(|n| n.events.iter())
                    .filter(|(at, e)| *at >= since && pick(e))
                    .map(|(at, _)| *at)
                    .min()
                    .unwrap_or_else(|| panic!("seed {seed}: no event with {k} probing"))
            };
            let suspected = first(&|e| *e == Event::MemberSuspect { id: vid });
            let dead = first(&|e| *e == Event::MemberDead { id: vid });
            dead.micros_since(suspected) / 1_000
        };
        let alone = run(1);
        assert!(
            alone >= max_ms,
            "seed {seed}: one accuser waited {alone} ms, less than the maximum {max_ms} ms"
        );
        let confirmed = run(4);
        assert!(
            confirmed < alone && confirmed < max_ms,
            "seed {seed}: four accusers waited {confirmed} ms, one waited {alone} ms \
             (min {min_ms} ms, max {max_ms} ms)"
        );
    }
}

/// A partition long enough that both sides declare each other dead and then forget each other
/// (reap after `dead_retention_ms`). When it heals, nobody calls `join`: the sides find each other
/// through push-pull with members they buried, and the tombstone challenge makes each buried
/// member refute with a newer incarnation.
#[test]
fn a_healed_partition_reunites_without_a_rejoin() {
    for seed in [1, 2, 3] {
        let n = 10;
        let config = Config::fast();
        let retention = config.dead_retention_ms;
        let mut sim = Sim::new(n, seed, config, NetConfig::default());
        converge(&mut sim);
        let before = sim.nodes[1].node.local().incarnation;
        sim.partition((0..n).map(|i| (i % 2) as u8).collect());
        sim.run_for(retention + 30_000);
        for (a, b) in [(0, 1), (1, 0), (2, 9), (9, 2)] {
            assert_eq!(
                sim.view(a, b),
                None,
                "seed {seed}: {a} still holds {b} after the retention period"
            );
        }
        sim.heal();
        let ms = sim.run_until_true(120_000, 100, Sim::converged);
        assert!(
            ms.is_some(),
            "seed {seed}: no single view 120 s after healing, without a rejoin (knowledge {:.4})",
            sim.knowledge()
        );
        assert!(
            sim.nodes[1].node.local().incarnation > before,
            "seed {seed}: node 1 came back without refuting its burial"
        );
    }
}
