//! N real nodes on 127.0.0.1 (UDP + TCP) in one process: metadata spread, steady-state traffic,
//! and crash detection. Prints a table.
//!
//! ```text
//! cargo bench -p gossip-server --bench loopback -- [N] [lan|wan|local|fast]
//! ```
//!
//! The join is timed from before the first node starts until every node sees all N alive, from
//! the nodes' events (followed on a thread of their own, so measuring takes nothing from the
//! nodes), then checked against every node's table. Environment: `LOOPBACK_WORKERS` (threads of
//! the nodes' runtime, default 2), `LOOPBACK_CENSUS_MS` (a census line while the join lasts,
//! default every 2,000 ms), `LOOPBACK_STRAGGLERS` (the census also lists, for each node that does
//! not see all alive, what it holds of the others), `LOOPBACK_JOIN_ONLY` (print the join's line,
//! with the process's CPU until then and frames sent per node, and stop).

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

/// What the nodes see, for progress lines: how many see all alive, the states they hold, the
/// deepest inbound backlog and the drops; with `LOOPBACK_STRAGGLERS` set, also what each node
/// that does not see all alive holds of the others.
async fn census(nodes: &[Gossip]) -> String {
    let n = nodes.len();
    let (mut all, mut min_alive, mut suspect, mut dead, mut backlog) = (0, usize::MAX, 0, 0, 0);
    let mut drops = std::collections::BTreeMap::new();
    let (mut statuses, mut withheld) = (Vec::with_capacity(n), 0);
    for g in nodes {
        statuses.push(g.status().await.unwrap());
        withheld += g.with_node(|n, _| n.stats().news_withheld).await.unwrap();
    }
    for s in &statuses {
        let alive = s.members.iter().filter(|m| m.state == "alive").count();
        all += usize::from(alive >= n);
        min_alive = min_alive.min(alive);
        suspect += s.members.iter().filter(|m| m.state == "suspect").count();
        dead += s.members.iter().filter(|m| m.state == "dead").count();
        backlog = backlog.max(s.counters.inbound_backlog);
        for (k, v) in &s.counters.drops {
            *drops.entry(k.clone()).or_insert(0u64) += v;
        }
    }
    let mut line = format!(
        "{all} of {n} see all alive; fewest alive seen {min_alive}; suspect {suspect}, dead {dead} (summed over observers); deepest inbound backlog {backlog}; drops {drops:?}; news withheld {withheld}"
    );
    if std::env::var_os("LOOPBACK_STRAGGLERS").is_some() {
        for s in &statuses {
            let held: std::collections::BTreeMap<&str, &str> = s
                .members
                .iter()
                .map(|m| (m.name.as_str(), m.state))
                .collect();
            let off: Vec<String> = statuses
                .iter()
                .map(|o| o.name.as_str())
                .filter(|name| held.get(name) != Some(&"alive"))
                .map(|name| format!("{name}:{}", held.get(name).copied().unwrap_or("absent")))
                .collect();
            if !off.is_empty() {
                line.push_str(&format!("\n    {} lacks {}", s.name, off.join(" ")));
            }
        }
    }
    line
}

/// Follows, from each node's events, how many nodes see all `n` members alive, and notes the
/// first moment all of them do. Event-driven so that measuring costs the nodes nothing: polling
/// every node's status every few milliseconds (as this bench did before) takes CPU from the join
/// it measures.
#[derive(Default)]
struct AllAlive {
    /// Nodes that see all members alive now.
    seeing: std::sync::atomic::AtomicUsize,
    /// When `seeing` last became all nodes.
    at: std::sync::Mutex<Option<Instant>>,
    done: tokio::sync::Notify,
}

impl AllAlive {
    /// Follows `g` from now on (its members now, then its events: nothing in between is lost).
    async fn follow(self: std::sync::Arc<Self>, g: &Gossip, n: usize) {
        use std::sync::atomic::Ordering;
        let watch = g.watch().await.unwrap();
        let mut alive: std::collections::HashSet<NodeId> = watch
            .members
            .iter()
            .filter(|m| m.state == gossip_core::State::Alive)
            .map(|m| m.id)
            .collect();
        let mut events = watch.events;
        let me = self.clone();
        watchers().spawn(async move {
            let mut full = false;
            loop {
                let now_full = alive.len() >= n;
                if now_full != full {
                    full = now_full;
                    let before = if full {
                        me.seeing.fetch_add(1, Ordering::SeqCst)
                    } else {
                        me.seeing.fetch_sub(1, Ordering::SeqCst)
                    };
                    if full && before + 1 == n {
                        *me.at.lock().unwrap() = Some(Instant::now());
                        me.done.notify_one();
                    }
                }
                match events.recv().await {
                    Ok(Event::MemberJoined { id, .. } | Event::MemberAlive { id }) => {
                        alive.insert(id);
                    }
                    Ok(
                        Event::MemberSuspect { id, .. }
                        | Event::MemberDead { id }
                        | Event::MemberLeft { id, .. },
                    ) => {
                        alive.remove(&id);
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                        // Its count is wrong from here on; the status check after the join
                        // catches a wrong "all" (a missed "not all" would be caught the same).
                        eprintln!("a join watcher fell {k} events behind and stopped");
                        return;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// When all nodes last came to see all alive, if they all do now.
    fn all_now(&self, n: usize) -> Option<Instant> {
        let at = *self.at.lock().unwrap();
        (self.seeing.load(std::sync::atomic::Ordering::SeqCst) == n)
            .then_some(at)
            .flatten()
    }
}

/// A thread of its own for the join watchers: on the nodes' runtime a watcher would wait its
/// turn behind 100 busy drivers and note the moment late.
fn watchers() -> &'static tokio::runtime::Handle {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("join-watchers")
            .build()
            .unwrap()
    })
    .handle()
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat` (Linux; 0
/// elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces, so split after its ')').
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
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
    let all_alive = std::sync::Arc::new(AllAlive::default());
    let first = start("bench-0".into(), None).await;
    all_alive.clone().follow(&first, n).await;
    let seed = first.tcp_addr().unwrap().to_string();
    let mut nodes = vec![first];
    for i in 1..n {
        let g = start(format!("bench-{i}"), Some(seed.clone())).await;
        all_alive.clone().follow(&g, n).await;
        nodes.push(g);
    }
    eprintln!(
        "[{:>5.2} s] all {n} nodes started",
        t0.elapsed().as_secs_f64()
    );
    // How often the join prints a census (`LOOPBACK_CENSUS_MS`, default 2,000).
    let census_every = Duration::from_millis(
        std::env::var("LOOPBACK_CENSUS_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(2_000),
    );
    let mut last_report = Instant::now();
    let (join, join_cpu, join_frames) = loop {
        let _ = tokio::time::timeout(census_every, all_alive.done.notified()).await;
        if let Some(at) = all_alive.all_now(n) {
            let cpu = cpu_seconds();
            // The events said so; the nodes' own tables must agree (not timed).
            let (mut all, mut frames) = (true, 0);
            for g in &nodes {
                let s = g.status().await.unwrap();
                all &= s.members.iter().filter(|m| m.state == "alive").count() >= n;
                frames += s.counters.packets_out;
            }
            if all {
                break (at - t0, cpu, frames as f64 / n as f64);
            }
        }
        if last_report.elapsed() >= census_every {
            last_report = Instant::now();
            eprintln!(
                "[{:>5.2} s] {}",
                t0.elapsed().as_secs_f64(),
                census(&nodes).await
            );
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no convergence in 300 s"
        );
    };

    if std::env::var_os("LOOPBACK_JOIN_ONLY").is_some() {
        println!(
            "| all {n} see all alive after start | {:.2} s | CPU {join_cpu:.2} s | {join_frames:.0} frames per node |",
            join.as_secs_f64()
        );
        for g in nodes {
            g.kill().await;
        }
        return;
    }
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
    println!("| CPU (user + sys) of the process until then | {join_cpu:.2} s |");
    println!("| frames sent per node until then | {join_frames:.0} |");
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
