//! Helpers shared by the real-socket tests: every node binds 127.0.0.1 port 0.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use gossip_core::{ClusterKey, Config, NodeId};
use gossip_server::{Gossip, GossipConfig, Status};

static TASK_PANICKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static HOOK: std::sync::Once = std::sync::Once::new();

/// Records panics on tokio worker threads: a panicking task dies silently otherwise.
pub fn watch_task_panics() {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("tokio-r"))
            {
                TASK_PANICKED.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

/// Fails if any task of any node panicked so far.
pub fn assert_no_task_panicked() {
    assert!(
        !TASK_PANICKED.load(std::sync::atomic::Ordering::SeqCst),
        "a task panicked (see the output above)"
    );
}

pub const KEY: &str = "5e1f0c0ffee0ddba11ad0be5eed5a1ad5c0ffee0ddba11ad0be5eed5a1adbeef";

pub fn key() -> ClusterKey {
    KEY.parse().unwrap()
}

/// Fast timings for loopback: probes every 200 ms, so a death is declared within seconds.
pub fn fast(name: &str) -> Config {
    let mut c = Config::local().with_name(name);
    c.probe_interval_ms = 200;
    c.probe_timeout_ms = 100;
    c.gossip_interval_ms = 50;
    c.push_pull_interval_ms = 2_000;
    c
}

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A node on UDP + TCP (one port).
pub async fn udp_node(name: &str, seeds: &[String]) -> Gossip {
    watch_task_panics();
    let mut cfg = GossipConfig::new(fast(name))
        .with_key(key())
        .with_bind(localhost());
    cfg.seeds = seeds.to_vec();
    Gossip::start(cfg).await.unwrap()
}

/// A node reachable only over WebSocket (it still dials TCP/UDP members out).
pub async fn ws_node(name: &str, seeds: &[String]) -> (Gossip, String) {
    watch_task_panics();
    let mut cfg = GossipConfig::new(fast(name)).with_key(key());
    cfg.seeds = seeds.to_vec();
    let g = Gossip::start(cfg).await.unwrap();
    let addr = g.serve(localhost()).await.unwrap();
    (g, format!("ws://{addr}/gossip/ws"))
}

/// The `host:port` seed of a UDP/TCP node.
pub fn seed_of(g: &Gossip) -> String {
    g.tcp_addr().unwrap().to_string()
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if check().await {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn status(g: &Gossip) -> Status {
    g.status().await.unwrap()
}

/// Whether `g` sees exactly `ids` alive (and nobody else alive or suspect).
pub async fn sees_alive(g: &Gossip, ids: &[NodeId]) -> bool {
    let s = status(g).await;
    let live: Vec<_> = s
        .members
        .iter()
        .filter(|m| m.state == "alive" || m.state == "suspect")
        .collect();
    live.len() == ids.len()
        && ids.iter().all(|id| {
            s.members
                .iter()
                .any(|m| m.id == id.to_string() && m.state == "alive")
        })
}

pub async fn state_of(g: &Gossip, id: &NodeId) -> Option<String> {
    status(g)
        .await
        .members
        .into_iter()
        .find(|m| m.id == id.to_string())
        .map(|m| m.state.to_owned())
}

/// How many drops `g` counted under `reason` (engine and driver together).
pub async fn drops(g: &Gossip, reason: &str) -> u64 {
    status(g)
        .await
        .counters
        .drops
        .get(reason)
        .copied()
        .unwrap_or(0)
}
