//! The `overlay-join` scenario: N partial-view overlay nodes (HyParView + Plumtree) join, the
//! structure converges, then two broadcasts are measured.

use gossip_core::overlay::OverlayConfig;
use gossip_sim::NetConfig;
use gossip_sim::VirtualTime;
use gossip_sim::overlay::OverlaySim;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::observe::percentile;
use crate::report::Outcome;

/// Longest wait for the structure to converge after the last join.
const CONVERGE_MAX_MS: u64 = 60_000;
/// Longest wait for a broadcast to reach everyone.
const BROADCAST_MAX_MS: u64 = 10_000;
/// Virtual time between two joins.
const JOIN_SPACING_US: u64 = 200;

/// Worker threads for the simulator; 0 means the machine's cores.
pub static THREADS: AtomicUsize = AtomicUsize::new(0);

/// The worker threads to run on: [`THREADS`], or the machine's cores.
pub fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// CPU time this process used so far (user + system), in ms.
pub fn cpu_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it are space-separated.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // utime and stime are fields 14 and 15 of the line, in USER_HZ ticks (100 per second on
    // every Linux architecture we build for).
    Some((ticks(11)? + ticks(12)?) * 10)
}

/// The process's resident set size now, in KiB (`VmRSS`).
pub fn rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs the scenario.
pub fn run(nodes: usize, seed: u64, net: NetConfig) -> Outcome {
    let baseline_kb = rss_kb();
    let config = OverlayConfig::for_cluster_size(nodes);
    let (lo, hi) = (config.active_min, config.active_size);
    let cpu_start = cpu_ms();
    let mut sim = OverlaySim::new(nodes, seed, config, net);
    sim.set_threads(threads());
    sim.join_staggered(JOIN_SPACING_US);
    let joins_ms = sim.now.as_millis();
    let settle = sim.run_until_true(CONVERGE_MAX_MS, 100, OverlaySim::converged);
    let structure_ms = settle.map(|ms| joins_ms + ms);
    let mut o = Outcome::default();
    // Two broadcasts from random nodes: the first floods and prunes, the second uses the tree.
    let mut reached_all = true;
    for (round, origin) in [nodes / 3, 2 * nodes / 3].into_iter().enumerate() {
        let (packets, eager, ihave, grafts) = totals(&sim);
        let at = sim.now;
        let Some(id) = sim.broadcast(origin, b"overlay-join") else {
            reached_all = false;
            break;
        };
        sim.run_until_true(BROADCAST_MAX_MS, 5, |s| {
            let (others, got) = s.reach(origin, id, at);
            got.len() == others
        });
        let (others, got) = sim.reach(origin, id, at);
        let (p2, e2, i2, g2) = totals(&sim);
        let n = nodes as f64;
        let fraction = got.len() as f64 / others.max(1) as f64;
        reached_all &= got.len() == others;
        let key = if round == 0 { "first" } else { "broadcast" };
        o.extra.insert(format!("{key}_reach"), json!(fraction));
        o.extra.insert(
            format!("{key}_latency_ms_max"),
            json!(got.iter().copied().max()),
        );
        o.extra
            .insert(format!("{key}_latency_ms_p50"), json!(percentile(&got, 50)));
        o.extra.insert(
            format!("{key}_msgs_per_node"),
            json!(round3((p2 - packets) as f64 / n)),
        );
        o.extra.insert(
            format!("{key}_payload_msgs_per_node"),
            json!(round3((e2 - eager) as f64 / n)),
        );
        o.extra.insert(
            format!("{key}_ihave_per_node"),
            json!(round3((i2 - ihave) as f64 / n)),
        );
        o.extra.insert(format!("{key}_grafts"), json!(g2 - grafts));
        o.notes.push(format!(
            "{key} broadcast: reached {}/{others} ({fraction}), latency max {:?} ms p50 {:?} ms, {:.2} frames/node ({:.2} full pushes/node)",
            got.len(),
            got.iter().max(),
            percentile(&got, 50),
            (p2 - packets) as f64 / n,
            (e2 - eager) as f64 / n,
        ));
    }
    let (amin, amean, amax) = sim.active_sizes();
    let (pmin, pmean, pmax) = sim.passive_sizes();
    let (symmetric, connected) = (sim.symmetric(), sim.connected());
    o.converged = settle.is_some() && reached_all;
    o.ok = o.converged;
    o.join_ms = structure_ms;
    o.sim_ms_to_converge = structure_ms;
    let drops: u64 = sim
        .nodes
        .iter()
        .flat_map(|n| &n.node.wire_stats().drops)
        .filter(|(reason, _)| **reason != gossip_core::DropReason::QueueFull)
        .map(|(_, count)| count)
        .sum();
    let failures: u64 = sim.nodes.iter().map(|n| n.node.stats().failures).sum();
    let sent: u64 = sim.nodes.iter().map(|n| n.sent_packets).sum();
    let seen: usize = sim
        .nodes
        .iter()
        .map(|n| n.node.codec().replay().len())
        .max()
        .unwrap_or(0);
    let peak_kb = crate::report::peak_rss_kb();
    let per_node_kb = match (peak_kb, baseline_kb) {
        (Some(p), Some(b)) => Some(round3(p.saturating_sub(b) as f64 / nodes as f64)),
        _ => None,
    };
    let extra = [
        ("membership", json!("partial")),
        ("active_target", json!([lo, hi])),
        ("active_min", json!(amin)),
        ("active_mean", json!(round3(amean))),
        ("active_max", json!(amax)),
        ("passive_min", json!(pmin)),
        ("passive_mean", json!(round3(pmean))),
        ("passive_max", json!(pmax)),
        ("symmetric", json!(symmetric)),
        ("connected", json!(connected)),
        ("joins_ms", json!(joins_ms)),
        ("frames_total", json!(sent)),
        ("frames_per_node", json!(round3(sent as f64 / nodes as f64))),
        ("inbound_drops", json!(drops)),
        ("neighbor_failures", json!(failures)),
        ("replay_entries_max", json!(seen)),
        ("baseline_rss_kb", json!(baseline_kb)),
        ("rss_per_node_kb", json!(per_node_kb)),
        ("threads", json!(sim.threads())),
        (
            "cpu_ms",
            json!(cpu_ms().zip(cpu_start).map(|(end, start)| end - start)),
        ),
    ];
    for (k, v) in extra {
        o.extra.insert(k.into(), v);
    }
    o.notes.push(format!(
        "joins over {joins_ms} ms; structure converged at {structure_ms:?} ms: active {amin}/{amean:.2}/{amax} (target [{lo}, {hi}]), passive {pmin}/{pmean:.1}/{pmax}, symmetric {symmetric}, connected {connected}"
    ));
    o.notes.push(format!(
        "RSS baseline {baseline_kb:?} KiB, peak {peak_kb:?} KiB: {per_node_kb:?} KiB per node above baseline"
    ));
    o
}

fn totals(sim: &OverlaySim) -> (u64, u64, u64, u64) {
    let mut t = (0, 0, 0, 0);
    for n in &sim.nodes {
        let s = n.node.stats();
        t.0 += n.sent_packets;
        t.1 += s.eager_sent;
        t.2 += s.ihave_sent;
        t.3 += s.grafts_sent;
    }
    t
}

fn round3(x: f64) -> f64 {
    (x * 1_000.0).round() / 1_000.0
}
