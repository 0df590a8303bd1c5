//! What a scenario measured, and how the binary prints it: a few human lines, then one JSON line.

use serde_json::{Map, Value, json};

use crate::observe::Traffic;

/// The measurements of one scenario run. `None` prints as JSON `null`: not applicable.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The scenario's success criterion held (the exit code).
    pub ok: bool,
    /// The scenario's convergence result (see `--help` for each scenario's meaning).
    pub converged: bool,
    /// Virtual ms the initial `join_all` took to converge (None: not within 120 s).
    pub join_ms: Option<u64>,
    /// Virtual ms of the scenario's measured convergence.
    pub sim_ms_to_converge: Option<u64>,
    /// Failure-detection times, virtual ms after the crash, one per observer that detected it.
    pub detect_ms: Option<Vec<u64>>,
    /// `MemberDead` verdicts about running members.
    pub false_deaths: Option<u64>,
    /// `MemberSuspect` verdicts about running members.
    pub false_suspects: Option<u64>,
    /// Send rates over the scenario's measurement window.
    pub traffic: Option<Traffic>,
    /// Scenario-specific keys.
    pub extra: Map<String, Value>,
    /// Scenario-specific human lines.
    pub notes: Vec<String>,
}

/// The run's parameters, echoed in the output.
#[derive(Debug)]
pub struct Params<'a> {
    /// Node count.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Datagram loss probability.
    pub loss: f64,
    /// Scenario name.
    pub scenario: &'a str,
    /// Config preset name.
    pub config: &'a str,
    /// The preset's gossip interval, which rounds are counted in.
    pub gossip_interval_ms: u64,
    /// One-way latency, ms.
    pub latency_ms: f64,
    /// Jitter, ms.
    pub jitter_ms: f64,
}

/// The process's peak resident set size in KiB (`VmHWM` in /proc/self/status).
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rounds(ms: Option<u64>, interval_ms: u64) -> Option<f64> {
    ms.map(|ms| (ms as f64 / interval_ms.max(1) as f64 * 10.0).round() / 10.0)
}

/// The human-readable summary lines.
pub fn summary(p: &Params, o: &Outcome, wall_ms: u128) -> Vec<String> {
    let show = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let mut lines = vec![
        format!(
            "gossip-sim: scenario={} nodes={} seed={} loss={} config={} latency={}ms jitter={}ms",
            p.scenario, p.nodes, p.seed, p.loss, p.config, p.latency_ms, p.jitter_ms
        ),
        format!(
            "  join_all converged: {} ms (virtual); result: {} (converged={})",
            show(o.join_ms),
            if o.ok { "OK" } else { "FAILED" },
            o.converged
        ),
    ];
    lines.extend(o.notes.iter().map(|n| format!("  {n}")));
    if let Some(t) = o.traffic {
        lines.push(format!(
            "  traffic over {} ms: {:.0} B/node/s, {:.1} msgs/node/s",
            t.window_ms, t.bytes_per_node_per_s, t.msgs_per_node_per_s
        ));
    }
    lines.push(format!(
        "  wall {wall_ms} ms, peak RSS {} KiB (reproduce with --seed {})",
        show(peak_rss_kb()),
        p.seed
    ));
    lines
}

/// The one-line JSON object.
pub fn json(p: &Params, o: &Outcome, wall_ms: u128) -> Value {
    let detect = o.detect_ms.as_deref();
    let mut obj = json!({
        "nodes": p.nodes,
        "seed": p.seed,
        "loss": p.loss,
        "scenario": p.scenario,
        "config": p.config,
        "latency_ms": p.latency_ms,
        "jitter_ms": p.jitter_ms,
        "ok": o.ok,
        "converged": o.converged,
        "join_ms": o.join_ms,
        "rounds_to_converge": rounds(o.sim_ms_to_converge, p.gossip_interval_ms),
        "sim_ms_to_converge": o.sim_ms_to_converge,
        "detect_ms_p50": detect.and_then(|d| crate::observe::percentile(d, 50)),
        "detect_ms_max": detect.and_then(|d| d.iter().copied().max()),
        "detected": detect.map(|d| d.len()),
        "false_deaths": o.false_deaths,
        "false_suspects": o.false_suspects,
        "bytes_per_node_per_s": o.traffic.map(|t| (t.bytes_per_node_per_s * 10.0).round() / 10.0),
        "msgs_per_node_per_s": o.traffic.map(|t| (t.msgs_per_node_per_s * 100.0).round() / 100.0),
        "traffic_window_ms": o.traffic.map(|t| t.window_ms),
        "wall_ms": wall_ms as u64,
        "peak_rss_kb": peak_rss_kb(),
    });
    if let Value::Object(map) = &mut obj {
        map.extend(o.extra.clone());
    }
    obj
}
