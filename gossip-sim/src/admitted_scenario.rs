//! `--scenario admitted`: `--nodes` full members and `--tabs` admitted members behind them, all
//! admitted with `--scope` (see `gossip_sim::admitted`). Reports the join time and the bytes
//! per tab and per server, during the join and per virtual second of steady state
//! (`--duration-s`, default 30).

use gossip_core::Config;
use gossip_sim::NetConfig;
use gossip_sim::admitted::{self, Params, Scope};
use serde_json::json;

use crate::report::Outcome;

/// Longest wait for the tabs' join.
const JOIN_MAX_MS: u64 = 300_000;

/// Runs it.
#[allow(clippy::too_many_arguments)]
pub fn run(
    servers: usize,
    tabs: usize,
    scope: Scope,
    room_size: usize,
    seed: u64,
    config: Config,
    net: NetConfig,
    duration_s: u64,
) -> Outcome {
    let p = Params {
        servers,
        tabs,
        scope,
        room_size,
        measure_ms: duration_s * 1_000,
        join_max_ms: JOIN_MAX_MS,
        seed,
        config,
        tab_config: None,
        net,
        threads: crate::overlay_join::threads(),
    };
    let (sim, tabs_at, f) = admitted::run(&p);
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let mut o = Outcome {
        ok: f.join_ms.is_some() && f.views_exact,
        converged: f.join_ms.is_some(),
        join_ms: f.join_ms,
        sim_ms_to_converge: f.join_ms,
        ..Outcome::default()
    };
    for (k, v) in [
        ("tabs", json!(tabs)),
        ("scope", json!(scope.name())),
        ("room_size", json!(room_size)),
        ("views_exact", json!(f.views_exact)),
        ("mean_view", json!(round(f.mean_view))),
        ("join_bytes_per_tab", json!(round(f.join_bytes_per_tab))),
        (
            "join_bytes_per_server",
            json!(round(f.join_bytes_per_server)),
        ),
        ("tab_recv_bytes_per_s", json!(round(f.tab_recv_bytes_per_s))),
        ("tab_sent_bytes_per_s", json!(round(f.tab_sent_bytes_per_s))),
        (
            "server_sent_bytes_per_s",
            json!(round(f.server_sent_bytes_per_s)),
        ),
        (
            "server_recv_bytes_per_s",
            json!(round(f.server_recv_bytes_per_s)),
        ),
        ("measure_ms", json!(p.measure_ms)),
        ("tab_drops", json!(f.tab_drops)),
        ("server_drops", json!(f.server_drops)),
        ("server_news_withheld", json!(f.server_news_withheld)),
    ] {
        o.extra.insert(k.into(), v);
    }
    o.notes.push(format!(
        "{tabs} tabs (scope {}) behind {servers} servers: views exact after {:?} ms; join: {:.0} B received per tab, {:.0} B sent per server",
        scope.name(),
        f.join_ms,
        f.join_bytes_per_tab,
        f.join_bytes_per_server
    ));
    o.notes.push(format!(
        "steady state over {} s: per tab {:.1} B/s received, {:.1} B/s sent; per server {:.0} B/s sent, {:.0} B/s received; mean view {:.1} members",
        duration_s,
        f.tab_recv_bytes_per_s,
        f.tab_sent_bytes_per_s,
        f.server_sent_bytes_per_s,
        f.server_recv_bytes_per_s,
        f.mean_view
    ));
    if !f.views_exact {
        o.notes.push(admitted::shortfall(&sim, &p, &tabs_at));
    }
    o
}
