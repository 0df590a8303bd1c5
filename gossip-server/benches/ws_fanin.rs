//! WebSocket fan-in: N members connected over WebSocket to one server node, all in this process
//! on 127.0.0.1. Prints a table.
//!
//! 1. Memory per connection: N light members (a WebSocket that sent a signed join, then only
//!    reads) on one server; resident memory of the process before and after, divided by N.
//! 2. Broadcast latency: N full client nodes (no listener: relayed through the server, like
//!    browsers) join the server; the server broadcasts; time until each member has it.
//!
//! ```text
//! cargo bench -p gossip-server --bench ws_fanin -- [N light members] [M full members]
//! ```
//!
//! Full members run their whole engine in this process (signatures, probes, gossip), so on a
//! small machine M is bounded by the CPU of the members themselves, not by the server.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gossip_core::hlc::Hlc;
use gossip_core::message::{Alive, Sync, sync_phase};
use gossip_core::{Address, Config, Event, Identity, Keyring, Limits, ReplayConfig};
use gossip_server::{Gossip, GossipConfig};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "5e1f0c0ffee0ddba11ad0be5eed5a1ad5c0ffee0ddba11ad0be5eed5a1adbeef";

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn hub() -> (Gossip, String) {
    let mut cfg = GossipConfig::new(Config::lan().with_name("hub")).with_key(KEY.parse().unwrap());
    cfg.limits.max_connections = 8192;
    let g = Gossip::start(cfg).await.unwrap();
    let addr = g.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (g, format!("ws://{addr}/gossip/ws"))
}

async fn alive(g: &Gossip) -> usize {
    g.status()
        .await
        .unwrap()
        .members
        .iter()
        .filter(|m| m.state == "alive")
        .count()
}

async fn known(g: &Gossip) -> usize {
    g.status().await.unwrap().members.len()
}

async fn wait_known(g: &Gossip, n: usize, what: &str) -> Duration {
    let t0 = Instant::now();
    while known(g).await < n {
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "{what}: no convergence"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t0.elapsed()
}

async fn wait_alive(g: &Gossip, n: usize, what: &str) -> Duration {
    let t0 = Instant::now();
    while alive(g).await < n {
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "{what}: no convergence"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t0.elapsed()
}

/// A member that says who it is and then only reads: the server's cost of one connection.
async fn light_member(i: u32, url: String, hub_id: gossip_core::NodeId) {
    let mut secret = [0u8; 32];
    secret[..4].copy_from_slice(&i.to_le_bytes());
    secret[4] = 0x5a;
    let codec = gossip_core::Codec::new(
        Identity::from_secret_bytes(secret),
        Keyring::new(KEY.parse().unwrap()),
        Limits::default(),
        ReplayConfig::default(),
    );
    let mut hlc = Hlc::new(60_000);
    let mut rng = ChaCha20Rng::from_seed(secret);
    let alive = codec
        .sign(
            hlc.now(wall_ms()),
            &Alive {
                incarnation: wall_ms(),
                addrs: vec![Address::Relayed(hub_id)],
                name: format!("light-{i}"),
            }
            .into(),
        )
        .unwrap();
    let join = Sync {
        phase: sync_phase::JOIN,
        digest: Vec::new(),
        states: vec![alive],
    };
    let frame = codec
        .seal(
            &mut rng,
            0,
            &codec.sign(hlc.now(wall_ms()), &join.into()).unwrap(),
        )
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    ws.send(Message::Binary(frame.into())).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = nums.first().copied().unwrap_or(1_000);
    let m = nums.get(1).copied().unwrap_or(100);

    // 1. Memory per connection.
    let (server, url) = hub().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss0 = rss_kb();
    let mut light = Vec::new();
    for i in 0..n as u32 {
        light.push(tokio::spawn(light_member(i, url.clone(), server.id())));
    }
    // Light members do not answer probes: count them known, whatever their state.
    let light_join = wait_known(&server, n + 1, "light members").await;
    let rss1 = rss_kb();
    let per_conn_kb = (rss1.saturating_sub(rss0)) as f64 / n as f64;
    let conns = server.status().await.unwrap().counters.connections;
    println!("| WebSocket fan-in | measured |");
    println!("|---|---|");
    println!(
        "| {n} light members: all joined | {:.2} s |",
        light_join.as_secs_f64()
    );
    println!(
        "| memory per connection (light member: socket, tasks, queues, member record) | {per_conn_kb:.1} KB ({conns} connections, RSS {} -> {} MB) |",
        rss0 / 1024,
        rss1 / 1024
    );
    for t in light {
        t.abort();
    }
    server.kill().await;
    let n = m;

    // 2. Broadcast latency with full members.
    let (server, url) = hub().await;
    let t0 = Instant::now();
    let mut members = Vec::new();
    for i in 0..n {
        let mut cfg = GossipConfig::new(Config::lan().with_name(format!("member-{i}")))
            .with_key(KEY.parse().unwrap());
        cfg.seeds = vec![url.clone()];
        members.push(Gossip::start(cfg).await.unwrap());
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    wait_alive(&server, n + 1, "full members on the server").await;
    for m in members.iter().step_by((n / 10).max(1)) {
        wait_alive(m, n + 1, "full members on a member").await;
    }
    let full_join = t0.elapsed();
    let rss2 = rss_kb();

    let mut lat = Vec::new();
    let mut all = Vec::new();
    for round in 0..10u32 {
        let subs: Vec<_> = members.iter().map(Gossip::subscribe).collect();
        let start = Instant::now();
        server
            .broadcast("bench", round.to_le_bytes().to_vec())
            .await
            .unwrap();
        let mut waits = Vec::new();
        for mut sub in subs {
            waits.push(tokio::spawn(async move {
                loop {
                    match sub.recv().await {
                        Ok(Event::Broadcast { topic, data, .. })
                            if topic == "bench" && data == round.to_le_bytes() =>
                        {
                            return Instant::now();
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => panic!("member stopped"),
                    }
                }
            }));
        }
        let mut last = start;
        for w in waits {
            let t = tokio::time::timeout(Duration::from_secs(60), w)
                .await
                .expect("broadcast reaches every member within 60 s")
                .unwrap();
            lat.push((t - start).as_secs_f64() * 1e3);
            last = last.max(t);
        }
        all.push((last - start).as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = server.status().await.unwrap();

    println!(
        "| {n} full members: all alive on the server and on sampled members | {:.1} s |",
        full_join.as_secs_f64()
    );
    println!(
        "| process RSS with {n} full members + server | {} MB |",
        rss2 / 1024
    );
    println!(
        "| broadcast latency per member ({} samples) | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        lat.len(),
        pct(&mut lat.clone(), 0.5),
        pct(&mut lat.clone(), 0.99),
        pct(&mut lat, 1.0)
    );
    println!(
        "| broadcast reaches all {n} (10 broadcasts) | p50 {:.1} ms, max {:.1} ms |",
        pct(&mut all.clone(), 0.5),
        pct(&mut all, 1.0)
    );
    println!(
        "| server: frames in / out | {} / {} |",
        status.counters.packets_in, status.counters.packets_out
    );
    for m in members {
        m.kill().await;
    }
    server.kill().await;
}
