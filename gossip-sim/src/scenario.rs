//! The scenarios the binary runs. Each starts from a fresh, unjoined `Sim` and returns what it
//! measured; all virtual times are in milliseconds.

use std::collections::HashSet;

use gossip_core::Config;
use gossip_core::State;
use gossip_sim::{NetConfig, Sim};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde_json::json;

use crate::observe::{Log, Sent, Traffic, Verdict, converged, run_for, run_until_true};
use crate::report::Outcome;

/// Longest wait for `join_all` to converge.
const JOIN_MAX_MS: u64 = 120_000;
/// How often convergence is checked.
const CHECK_MS: u64 = 50;

/// Which scenario to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// join_all, run until converged (max 120 s). Measures the time to converge.
    Join,
    /// Converge, then node 0 sets metadata role=x; time until every node sees it (max 60 s).
    Metadata,
    /// Converge, run 5 s, crash node n-1; time until each other node marks it dead (max 120 s).
    Crash,
    /// Converge, then run --duration-s steady state; counts false deaths and measures traffic.
    Loss,
    /// Converge, split in halves for 60 s, heal; time until converged again (max 300 s).
    Partition,
    /// Converge, crash/restart/leave a node every 2 s for --duration-s, then converge (max 120 s).
    Churn,
    /// Partial-view overlay (HyParView + Plumtree): nodes join 0.2 ms apart through random
    /// earlier nodes; converged = every active view within its target, symmetric, connected,
    /// and two broadcasts reach every node.
    OverlayJoin,
    /// Replicated state: node 0 writes 1,000 keys; time and bytes until one changed key is
    /// everywhere, and until 100 deletes' tombstones are collected (see `state_scenario.rs`).
    State,
    /// `--nodes` full members and `--tabs` admitted members with `--scope`: join time and bytes
    /// per tab and per server (see `admitted_scenario.rs`).
    Admitted,
}

impl Scenario {
    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Join => "join",
            Scenario::Metadata => "metadata",
            Scenario::Crash => "crash",
            Scenario::Loss => "loss",
            Scenario::Partition => "partition",
            Scenario::Churn => "churn",
            Scenario::OverlayJoin => "overlay-join",
            Scenario::State => "state",
            Scenario::Admitted => "admitted",
        }
    }

    /// Default `--duration-s`, for the scenarios that use it.
    pub fn default_duration_s(self) -> u64 {
        match self {
            Scenario::Loss => 1_800,
            Scenario::Metadata => 0,
            Scenario::Admitted => 30,
            _ => 120,
        }
    }

    /// Runs it on a fresh cluster of `nodes`. `duration_s` is used by `loss` and `churn`, and by
    /// `metadata` as the time the converged cluster settles before the update (so join traffic
    /// has drained).
    pub fn run(
        self,
        nodes: usize,
        seed: u64,
        config: Config,
        net: NetConfig,
        duration_s: u64,
    ) -> Outcome {
        let mut log = Log::default();
        let fresh = || {
            let mut sim = Sim::new(nodes, seed, config, net);
            sim.set_threads(crate::overlay_join::threads());
            sim
        };
        match self {
            Scenario::Join => join(&mut fresh(), &mut log),
            Scenario::Metadata => metadata(&mut fresh(), &mut log, duration_s * 1_000),
            Scenario::Crash => crash(&mut fresh(), &mut log),
            Scenario::Loss => loss(&mut fresh(), &mut log, duration_s * 1_000),
            Scenario::Partition => partition(&mut fresh(), &mut log),
            Scenario::Churn => churn(&mut fresh(), &mut log, duration_s * 1_000),
            Scenario::OverlayJoin => crate::overlay_join::run(nodes, seed, net),
            Scenario::State => {
                let mut sim = fresh();
                let join_ms = setup(&mut sim, &mut log);
                crate::state_scenario::run(&mut sim, &mut log, join_ms)
            }
            // Needs the tab options: `main` runs it.
            Scenario::Admitted => unreachable!("run by main with its options"),
        }
    }
}

/// join_all and wait for convergence; the virtual ms it took.
fn setup(sim: &mut Sim, log: &mut Log) -> Option<u64> {
    sim.join_all();
    run_until_true(sim, log, JOIN_MAX_MS, CHECK_MS, |s, _| converged(s))
}

fn join(sim: &mut Sim, log: &mut Log) -> Outcome {
    let (start, sent) = (sim.now, Sent::take(sim));
    let join_ms = setup(sim, log);
    let mut o = Outcome {
        ok: join_ms.is_some(),
        converged: join_ms.is_some(),
        join_ms,
        sim_ms_to_converge: join_ms,
        false_deaths: Some(log.count(Verdict::Dead, start, |_| true)),
        false_suspects: Some(log.count(Verdict::Suspect, start, |_| true)),
        traffic: Traffic::since(sim, sent),
        ..Outcome::default()
    };
    let knowledge = sim.knowledge();
    o.extra.insert("knowledge".into(), json!(knowledge));
    o.notes.push(format!(
        "knowledge (alive pairs seen) at end: {knowledge:.6}"
    ));
    o
}

fn metadata(sim: &mut Sim, log: &mut Log, settle_ms: u64) -> Outcome {
    let join_ms = setup(sim, log);
    if settle_ms > 0 {
        run_until_true(sim, log, settle_ms, 100, |_, _| false);
    }
    let (start, sent) = (sim.now, Sent::take(sim));
    let set = sim.with_node(0, |n, now| n.set_metadata(now, "role", Some(b"x".to_vec())));
    let id0 = sim.id(0);
    let seen = |s: &Sim| {
        s.nodes
            .iter()
            .filter(|n| {
                n.up && n
                    .node
                    .member(&id0)
                    .is_some_and(|m| m.metadata.get("role").is_some_and(|v| v == b"x"))
            })
            .count()
    };
    let ms = match &set {
        Ok(()) => run_until_true(sim, log, 60_000, 1, |s, _| seen(s) == s.up().len()),
        Err(_) => None,
    };
    let mut o = Outcome {
        ok: join_ms.is_some() && ms.is_some(),
        converged: ms.is_some(),
        join_ms,
        sim_ms_to_converge: ms,
        false_deaths: Some(log.count(Verdict::Dead, start, |_| true)),
        false_suspects: Some(log.count(Verdict::Suspect, start, |_| true)),
        traffic: Traffic::since(sim, sent),
        ..Outcome::default()
    };
    if let Err(e) = set {
        o.notes.push(format!("set_metadata refused: {e}"));
    }
    o.extra.insert("metadata_seen".into(), json!(seen(sim)));
    push_rounds(sim, ms, &mut o);
    o.notes.push(format!(
        "metadata role=x seen by {}/{} nodes after {:?} ms",
        seen(sim),
        sim.up().len(),
        ms
    ));
    o
}

/// Counts the update's spread in gossip rounds and compares it with the push-gossip bound
/// `log_(f+1)(N) + ln(N)/f` (Pittel 1987) for the push fan-out `f` at this cluster size.
///
/// While an update is news a node pushes it on receipt and then gossips every fast-gossip
/// interval, so each such interval holds at least one model round (every informed node pushes
/// to `f` members): rounds counted in fast-gossip intervals are an upper bound on model rounds.
fn push_rounds(sim: &mut Sim, ms: Option<u64>, o: &mut Outcome) {
    let n = sim.up().len();
    let config = sim.with_node(0, |node, _| node.config().clone());
    let f = config.push_fanout(n) as f64;
    let ln_n = (n.max(2) as f64).ln();
    let bound = ln_n / (f + 1.0).ln() + ln_n / f;
    let interval = config.fast_gossip_interval_ms.max(1);
    let rounds = ms.map(|ms| ms as f64 / interval as f64);
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    o.extra.insert("push_fanout".into(), json!(f as u64));
    o.extra.insert("round_ms".into(), json!(interval));
    o.extra
        .insert("push_rounds".into(), json!(rounds.map(round2)));
    o.extra
        .insert("push_bound_rounds".into(), json!(round2(bound)));
    o.extra.insert(
        "push_bound_ratio".into(),
        json!(rounds.map(|r| round2(r / bound))),
    );
    o.notes.push(format!(
        "spread in {} rounds of {interval} ms; push-gossip bound log_(f+1)(N) + ln(N)/f = {:.2} rounds (f = {f})",
        rounds.map_or("-".to_owned(), |r| format!("{r:.2}")),
        bound
    ));
}

fn crash(sim: &mut Sim, log: &mut Log) -> Outcome {
    let join_ms = setup(sim, log);
    run_for(sim, log, 5_000, CHECK_MS);
    let victim = sim.nodes.len() - 1;
    let vid = sim.id(victim);
    sim.crash(victim);
    let (at, sent) = (sim.now, Sent::take(sim));
    let observers = sim.up().len();
    let detected = |log: &Log| -> Vec<u64> {
        let mut seen = HashSet::new();
        let mut times = Vec::new();
        for e in &log.entries {
            if e.verdict == Verdict::Dead
                && e.member == vid
                && e.at >= at
                && seen.insert(e.observer)
            {
                times.push(e.at.micros_since(at) / 1_000);
            }
        }
        times
    };
    let all = run_until_true(sim, log, 120_000, CHECK_MS, |_, log| {
        detected(log).len() == observers
    })
    .is_some();
    let times = detected(log);
    let mut o = Outcome {
        ok: join_ms.is_some() && all,
        converged: all,
        join_ms,
        false_deaths: Some(log.count(Verdict::Dead, at, |id| *id != vid)),
        false_suspects: Some(log.count(Verdict::Suspect, at, |id| *id != vid)),
        traffic: Traffic::since(sim, sent),
        ..Outcome::default()
    };
    o.extra.insert("observers".into(), json!(observers));
    o.notes.push(format!(
        "crashed node {victim}: detected dead by {}/{observers} nodes, p50 {:?} ms, max {:?} ms",
        times.len(),
        crate::observe::percentile(&times, 50),
        times.iter().max()
    ));
    o.detect_ms = Some(times);
    o
}

fn loss(sim: &mut Sim, log: &mut Log, duration_ms: u64) -> Outcome {
    let join_ms = setup(sim, log);
    let (start, sent) = (sim.now, Sent::take(sim));
    run_for(sim, log, duration_ms, 1_000);
    // Nobody crashes here: every verdict is about a running member.
    let deaths = log.count(Verdict::Dead, start, |_| true);
    let suspects = log.count(Verdict::Suspect, start, |_| true);
    let still = converged(sim);
    let mut o = Outcome {
        ok: join_ms.is_some() && deaths == 0,
        converged: join_ms.is_some() && deaths == 0,
        join_ms,
        sim_ms_to_converge: join_ms,
        false_deaths: Some(deaths),
        false_suspects: Some(suspects),
        traffic: Traffic::since(sim, sent),
        ..Outcome::default()
    };
    o.extra.insert("converged_at_end".into(), json!(still));
    o.extra
        .insert("duration_s".into(), json!(duration_ms / 1_000));
    o.notes.push(format!(
        "{} s steady state: {deaths} false deaths, {suspects} false suspicions, converged at end: {still}",
        duration_ms / 1_000
    ));
    o
}

fn partition(sim: &mut Sim, log: &mut Log) -> Outcome {
    let join_ms = setup(sim, log);
    let n = sim.nodes.len();
    let half = n / 2;
    let group: Vec<u8> = (0..n).map(|i| u8::from(i >= half)).collect();
    sim.partition(group.clone());
    let split_at = sim.now;
    run_for(sim, log, 60_000, 100);
    // Each side should have declared every member of the other side down (or already forgotten it).
    let up = sim.up();
    let (mut cross, mut cross_down) = (0u64, 0u64);
    for &i in &up {
        for &j in up.iter().filter(|&&j| group[j] != group[i]) {
            cross += 1;
            cross_down += u64::from(sim.view(i, j).is_none_or(State::is_down));
        }
    }
    let split_detected = cross_down == cross;
    let same_side = |observer: usize, id: &gossip_core::NodeId| {
        sim.index(id).is_some_and(|m| group[m] == group[observer])
    };
    let wrong: Vec<_> = log
        .entries
        .iter()
        .filter(|e| e.at >= split_at && same_side(e.observer, &e.member))
        .collect();
    let false_deaths = wrong.iter().filter(|e| e.verdict == Verdict::Dead).count() as u64;
    let false_suspects = wrong
        .iter()
        .filter(|e| e.verdict == Verdict::Suspect)
        .count() as u64;

    sim.heal();
    let (healed, sent) = (sim.now, Sent::take(sim));
    let mut ms = run_until_true(sim, log, 60_000, CHECK_MS, |s, _| converged(s));
    let rejoined = ms.is_none();
    if rejoined {
        for i in half..n {
            if sim.nodes[i].up {
                sim.join(i, &[0]);
            }
        }
        ms = run_until_true(sim, log, 240_000, CHECK_MS, |s, _| converged(s))
            .map(|_| sim.now.micros_since(healed) / 1_000);
    }
    let mut o = Outcome {
        ok: join_ms.is_some() && split_detected && ms.is_some(),
        converged: ms.is_some(),
        join_ms,
        sim_ms_to_converge: ms,
        false_deaths: Some(false_deaths),
        false_suspects: Some(false_suspects),
        traffic: Traffic::since(sim, sent),
        ..Outcome::default()
    };
    o.extra
        .insert("split_detected".into(), json!(split_detected));
    o.extra.insert(
        "split_views_down".into(),
        json!(cross_down as f64 / cross.max(1) as f64),
    );
    o.extra.insert("rejoined".into(), json!(rejoined));
    o.extra.insert("knowledge".into(), json!(sim.knowledge()));
    o.notes.push(format!(
        "after 60 s split: {cross_down}/{cross} cross-side views down; {false_deaths} same-side false deaths"
    ));
    o.notes.push(format!(
        "after heal: converged in {ms:?} ms, rejoin needed: {rejoined}; knowledge {:.6}",
        sim.knowledge()
    ));
    o
}

fn churn(sim: &mut Sim, log: &mut Log, duration_ms: u64) -> Outcome {
    let join_ms = setup(sim, log);
    let n = sim.nodes.len();
    let mut rng = ChaCha20Rng::seed_from_u64(sim.seed() ^ 0x5eed);
    let mut pick = |v: &[usize]| v[(rng.next_u64() % v.len() as u64) as usize];
    let (start, sent) = (sim.now, Sent::take(sim));
    let (mut crashes, mut restarts, mut leaves) = (0u64, 0u64, 0u64);
    while sim.now.micros_since(start) < duration_ms * 1_000 {
        let up = sim.up();
        let down: Vec<usize> = (0..n).filter(|i| !sim.nodes[*i].up).collect();
        // Half restarts, a quarter crashes, a quarter leaves, so the population holds steady;
        // never below two running nodes, and a restart needs a crashed node.
        let roll = pick(&[0, 1, 2, 3]);
        let restart = !down.is_empty() && (roll < 2 || up.len() <= 2);
        let mut leaving = None;
        if restart {
            let (i, seed) = (pick(&down), pick(&up));
            sim.restart(i, &[seed]);
            restarts += 1;
        } else if up.len() > 2 && roll % 2 == 0 {
            sim.crash(pick(&up));
            crashes += 1;
        } else if up.len() > 2 {
            let i = pick(&up);
            sim.with_node(i, |node, now| node.leave(now));
            leaving = Some(i);
            leaves += 1;
        }
        run_for(sim, log, 2_000, 100);
        // A node that left runs 2 s to spread its leave, then stops.
        if let Some(i) = leaving {
            sim.crash(i);
        }
    }
    let churn_traffic = Traffic::since(sim, sent);
    let ms = run_until_true(sim, log, 120_000, CHECK_MS, |s, _| converged(s));
    let mut o = Outcome {
        ok: join_ms.is_some() && ms.is_some(),
        converged: ms.is_some(),
        join_ms,
        sim_ms_to_converge: ms,
        traffic: churn_traffic,
        ..Outcome::default()
    };
    o.extra.insert("crashes".into(), json!(crashes));
    o.extra.insert("restarts".into(), json!(restarts));
    o.extra.insert("leaves".into(), json!(leaves));
    o.extra.insert("up_at_end".into(), json!(sim.up().len()));
    o.extra.insert("knowledge".into(), json!(sim.knowledge()));
    o.notes.push(format!(
        "churn {} s: {crashes} crashes, {restarts} restarts, {leaves} leaves; {} up at end",
        duration_ms / 1_000,
        sim.up().len()
    ));
    o.notes.push(format!(
        "converged {ms:?} ms after churn stopped; knowledge {:.6}",
        sim.knowledge()
    ));
    o
}
