//! `gossip-sim`: runs one scenario on a simulated cluster and reports what it measured.
//!
//! Prints a short human summary, then, as the last line of stdout, one JSON object. Exits 0 when
//! the scenario's success criterion held, 1 otherwise.

mod admitted_scenario;
mod observe;
mod overlay_join;
mod report;
mod scenario;
mod state_scenario;

use std::process::ExitCode;
use std::time::Instant as WallClock;

use clap::Parser;
use gossip_core::Config;
use gossip_sim::NetConfig;

use crate::report::Params;
use crate::scenario::Scenario;

/// Config preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Preset {
    /// `Config::lan()`.
    Lan,
    /// `Config::wan()`.
    Wan,
    /// `Config::local()`.
    Local,
    /// `Config::fast()`.
    Fast,
}

/// Deterministic gossip cluster simulator: runs one scenario and prints a summary, then one JSON
/// line (nodes, seed, loss, scenario, converged, rounds_to_converge, sim_ms_to_converge,
/// detect_ms_p50, detect_ms_max, false_deaths, bytes_per_node_per_s, msgs_per_node_per_s,
/// wall_ms, peak_rss_kb, plus scenario-specific keys; null where a metric does not apply).
///
/// Times are virtual. rounds_to_converge = sim_ms_to_converge / the config's gossip_interval_ms.
/// sim_ms_to_converge is, per scenario: join: join_all to converged; metadata: set_metadata to
/// every node seeing it; loss: the initial join under loss; partition: heal to converged;
/// churn: end of churn to converged; crash: null (see detect_ms_*). Traffic rates are sent
/// frames and bytes per node (all N) per virtual second over the scenario's measurement window
/// (join: the join; metadata: the dissemination; crash: crash to detection; loss: the steady
/// state; partition: heal to converged; churn: the churn period). false_deaths / false_suspects
/// count MemberDead / MemberSuspect events about running members (partition: same-side only;
/// churn: null). Exit code 0 when the scenario succeeded (partition also requires both sides to
/// have declared each other down after 60 s), else 1.
#[derive(Debug, Parser)]
#[command(name = "gossip-sim", version)]
struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(2..=65_536))]
    nodes: u64,
    /// Seed: the same seed and arguments reproduce a run exactly.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Probability that a best-effort datagram is lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Scenario to run.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Protocol config preset.
    #[arg(long, value_enum, default_value_t = Preset::Lan)]
    config: Preset,
    /// One-way latency in ms (default: the simulator's, 1 ms).
    #[arg(long)]
    latency_ms: Option<f64>,
    /// Uniform extra delay in [0, J) ms (default: the simulator's, 0.5 ms).
    #[arg(long)]
    jitter_ms: Option<f64>,
    /// Virtual seconds of steady state (loss, default 1800), of churn (churn, default 120), or of
    /// settling after the join before the update (metadata, default 0).
    #[arg(long)]
    duration_s: Option<u64>,
    /// Worker threads of the simulator (default: the machine's cores). Results do not depend
    /// on it.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: Option<u64>,
    /// At the end, print on stderr what the run would take alone on as many cores as threads:
    /// the main thread's CPU time plus its waits for the busiest thread of each window.
    #[arg(long)]
    critical_path: bool,
    /// Report progress on stderr every 10 wall-clock seconds.
    #[arg(long)]
    progress: bool,
    /// Admitted members behind the `--nodes` full members (`admitted`).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    tabs: u64,
    /// The view scope every tab is admitted with (`admitted`).
    #[arg(long, value_enum, default_value_t = ScopeArg::None)]
    scope: ScopeArg,
    /// Tabs per room under `--scope groups` (`admitted`).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    room_size: u64,
}

/// `--scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ScopeArg {
    /// Every member.
    All,
    /// Full members and the tabs of its room.
    Groups,
    /// Full members and itself.
    None,
}

impl From<ScopeArg> for gossip_sim::admitted::Scope {
    fn from(s: ScopeArg) -> Self {
        match s {
            ScopeArg::All => gossip_sim::admitted::Scope::All,
            ScopeArg::Groups => gossip_sim::admitted::Scope::Groups,
            ScopeArg::None => gossip_sim::admitted::Scope::None,
        }
    }
}

fn main() -> ExitCode {
    let started = WallClock::now();
    let args = Args::parse();
    observe::PROGRESS.store(args.progress, std::sync::atomic::Ordering::Relaxed);
    gossip_sim::measure_critical_path(args.critical_path);
    if let Some(threads) = args.threads {
        overlay_join::THREADS.store(threads as usize, std::sync::atomic::Ordering::Relaxed);
    }
    if !(0.0..=1.0).contains(&args.loss) {
        eprintln!("--loss must be within [0, 1]");
        return ExitCode::from(2);
    }
    let (config, config_name) = match args.config {
        Preset::Lan => (Config::lan(), "lan"),
        Preset::Wan => (Config::wan(), "wan"),
        Preset::Local => (Config::local(), "local"),
        Preset::Fast => (Config::fast(), "fast"),
    };
    let defaults = NetConfig::default();
    let micros = |ms: Option<f64>, default: u64| {
        ms.map_or(default, |ms| (ms.max(0.0) * 1_000.0).round() as u64)
    };
    let net = NetConfig {
        latency_us: micros(args.latency_ms, defaults.latency_us),
        jitter_us: micros(args.jitter_ms, defaults.jitter_us),
        loss: args.loss,
        ..defaults
    };
    let params = Params {
        nodes: args.nodes as usize,
        seed: args.seed,
        loss: args.loss,
        scenario: args.scenario.name(),
        config: config_name,
        gossip_interval_ms: config.gossip_interval_ms,
        latency_ms: net.latency_us as f64 / 1_000.0,
        jitter_ms: net.jitter_us as f64 / 1_000.0,
    };
    println!(
        "gossip-sim: seed {} (scenario {}, {} nodes)",
        args.seed, params.scenario, params.nodes
    );
    let duration_s = args
        .duration_s
        .unwrap_or(args.scenario.default_duration_s());
    let outcome = if args.scenario == Scenario::Admitted {
        admitted_scenario::run(
            params.nodes,
            args.tabs as usize,
            args.scope.into(),
            args.room_size as usize,
            args.seed,
            config,
            net,
            duration_s,
        )
    } else {
        args.scenario
            .run(params.nodes, args.seed, config, net, duration_s)
    };
    let wall_ms = started.elapsed().as_millis();
    for line in report::summary(&params, &outcome, wall_ms) {
        println!("{line}");
    }
    println!("{}", report::json(&params, &outcome, wall_ms));
    if args.critical_path {
        match gossip_sim::critical_path_ns() {
            Some(ns) => eprintln!(
                "critical path: {:.2} s of CPU (main thread plus its waits for the busiest thread of each window)",
                ns as f64 / 1e9
            ),
            None => eprintln!("critical path: not measurable here (no /proc/thread-self)"),
        }
    }
    if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
