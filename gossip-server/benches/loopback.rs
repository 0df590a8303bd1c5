//! N real nodes on 127.0.0.1 (UDP + TCP) in one process: metadata spread, steady-state traffic,
//! and crash detection. Prints a table.
//!
//! ```text
//! cargo bench -p gossip-server --bench loopback -- [N] [lan|wan|local|fast]
//! ```

use std::time::{Duration, Instant};

use gossip_core::{Config, Event, NodeId};
use gossip_server::{Gossip, GossipConfig};

const KEY: &str = "5e1f0c0ffee0ddba11ad0be5eed5a1ad5c0ffee0ddba11ad0be5eed5a1adbeef";

/// The preset named on the command line (default `lan`), and its name for the table.
fn preset() -> (Config, &'static str) {
    match std::env::args()
        .skip(1)
        .find(|a| a.parse::<usize>().is_err() && !a.starts_with('-'))
    {
        None => (Config::lan(), "lan"),
        Some(name) => match name.as_str() {
            "lan" => (Config::lan(), "lan"),
            "wan" => (Config::wan(), "wan"),
            "local" => (Config::local(), "local"),
            "fast" => (Config::fast(), "fast"),
            other => panic!("unknown preset {other:?}: lan, wan, local or fast"),
        },
    }
}

async fn start(name: String, seed: Option<String>) -> Gossip {
    let mut cfg = GossipConfig::new(preset().0.with_name(name))
        .with_key(KEY.parse().unwrap())
        .with_bind("127.0.0.1:0".parse().unwrap());
    cfg.seeds.extend(seed);
    Gossip::start(cfg).await.unwrap()
}

async fn live(g: &Gossip) -> usize {
    g.status()
        .await
        .unwrap()
        .members
        .iter()
        .filter(|m| m.state == "alive")
        .count()
}

/// What the nodes see, for progress lines: how many see all alive, the states they hold, the
/// deepest inbound backlog and the drops.
async fn census(nodes: &[Gossip]) -> String {
    let n = nodes.len();
    let (mut all, mut min_alive, mut suspect, mut dead, mut backlog) = (0, usize::MAX, 0, 0, 0);
    let mut drops = std::collections::BTreeMap::new();
    for g in nodes {
        let s = g.status().await.unwrap();
        let alive = s.members.iter().filter(|m| m.state == "alive").count();
        all += usize::from(alive >= n);
        min_alive = min_alive.min(alive);
        suspect += s.members.iter().filter(|m| m.state == "suspect").count();
        dead += s.members.iter().filter(|m| m.state == "dead").count();
        backlog = backlog.max(s.counters.inbound_backlog);
        for (k, v) in s.counters.drops {
            *drops.entry(k).or_insert(0u64) += v;
        }
    }
    format!(
        "{all} of {n} see all alive; fewest alive seen {min_alive}; suspect {suspect}, dead {dead} (summed over observers); deepest inbound backlog {backlog}; drops {drops:?}"
    )
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Time until every other node reported `pred`, measured from `start`.
async fn spread(
    nodes: &[Gossip],
    skip: usize,
    start: Instant,
    pred: impl Fn(&Event) -> bool + Clone + Send + 'static,
    subs: Vec<tokio::sync::broadcast::Receiver<Event>>,
) -> Duration {
    let mut waits = Vec::new();
    for (i, mut sub) in subs.into_iter().enumerate() {
        if i == skip {
            continue;
        }
        let pred = pred.clone();
        waits.push(tokio::spawn(async move {
            loop {
                match sub.recv().await {
                    Ok(e) if pred(&e) => return Instant::now(),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => panic!("node stopped"),
                }
            }
        }));
    }
    let _ = nodes;
    let mut last = start;
    for w in waits {
        let t = tokio::time::timeout(Duration::from_secs(120), w)
            .await
            .expect("spread within 120 s")
            .unwrap();
        last = last.max(t);
    }
    last - start
}

/// Worker threads of the one runtime all nodes share (`LOOPBACK_WORKERS`, default 2).
fn workers() -> usize {
    std::env::var("LOOPBACK_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2)
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers())
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn run() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50);
    let t0 = Instant::now();
    let first = start("bench-0".into(), None).await;
    let seed = first.tcp_addr().unwrap().to_string();
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(start(format!("bench-{i}"), Some(seed.clone())).await);
    }
    // How often the join prints a census (`LOOPBACK_CENSUS_MS`, default 2,000).
    let census_every = Duration::from_millis(
        std::env::var("LOOPBACK_CENSUS_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(2_000),
    );
    let mut last_report = Instant::now();
    loop {
        let mut all = true;
        for g in &nodes {
            if live(g).await < n {
                all = false;
                break;
            }
        }
        if all {
            break;
        }
        if last_report.elapsed() >= census_every {
            last_report = Instant::now();
            eprintln!(
                "[{:>5.1} s] {}",
                t0.elapsed().as_secs_f64(),
                census(&nodes).await
            );
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no convergence in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let join = t0.elapsed();

    // Metadata spread, 10 updates from different writers.
    let mut meta_ms = Vec::new();
    for round in 0..10 {
        let writer = (round * 7) % n;
        let id: NodeId = nodes[writer].id();
        let subs: Vec<_> = nodes.iter().map(Gossip::subscribe).collect();
        let start = Instant::now();
        nodes[writer]
            .set_metadata("round", round.to_string())
            .await
            .unwrap();
        let d = spread(
            &nodes,
            writer,
            start,
            move |e| matches!(e, Event::MetadataChanged { id: from, .. } if *from == id),
            subs,
        )
        .await;
        meta_ms.push(d.as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Steady state: 10 s of traffic with nothing happening.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bytes = |nodes: &[Gossip]| {
        let nodes = nodes.to_vec();
        async move {
            let mut sum = 0u64;
            for g in &nodes {
                sum += g.status().await.unwrap().counters.bytes_out;
            }
            sum
        }
    };
    let b0 = bytes(&nodes).await;
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    let b1 = bytes(&nodes).await;
    let per_node = (b1 - b0) as f64 / n as f64 / window.as_secs_f64();

    // Crash detection: kill one node, time until every other one declared it dead.
    let mut detect_ms = Vec::new();
    for k in 0..3 {
        let victim = nodes.remove(n / 2 - k);
        let id = victim.id();
        let subs: Vec<_> = nodes.iter().map(Gossip::subscribe).collect();
        let start = Instant::now();
        victim.kill().await;
        let d = spread(
            &nodes,
            usize::MAX,
            start,
            move |e| matches!(e, Event::MemberDead { id: dead } if *dead == id),
            subs,
        )
        .await;
        detect_ms.push(d.as_secs_f64() * 1e3);
    }

    println!("| loopback, N={n}, Config::{}() | measured |", preset().1);
    println!("|---|---|");
    println!(
        "| all {n} see all alive after start | {:.2} s |",
        join.as_secs_f64()
    );
    println!(
        "| metadata update reaches all (10 updates) | p50 {:.1} ms, max {:.1} ms |",
        percentile(&mut meta_ms.clone(), 0.5),
        percentile(&mut meta_ms, 1.0)
    );
    println!(
        "| crash detected by all (3 kills) | p50 {:.2} s, max {:.2} s |",
        percentile(&mut detect_ms.clone(), 0.5) / 1e3,
        percentile(&mut detect_ms, 1.0) / 1e3
    );
    println!("| steady-state traffic per node | {per_node:.0} B/s |");
    for g in nodes {
        g.kill().await;
    }
}
