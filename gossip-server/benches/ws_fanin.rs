//! WebSocket fan-in: N members connected over WebSocket to one server node, all in this process
//! on 127.0.0.1. Prints a table.
//!
//! 1. Memory per connection: N light members on one server (a WebSocket that sent a signed
//!    join, then answers the server's probes and reads); resident memory of the process before
//!    and after, divided by N. Then the time until every light member knows every live member
//!    (from the server's deliveries and its answers to the join), and broadcast latency to those
//!    N: the server broadcasts, and each light member decodes and verifies what its server
//!    delivers.
//! 2. Broadcast latency: N full client nodes (no listener: relayed through the server, like
//!    browsers) join the server; the server broadcasts; time until each member has it.
//!
//! ```text
//! cargo bench -p gossip-server --bench ws_fanin -- [N light] [M full] [member probe interval ms]
//! ```
//!
//! The server node runs on a runtime (one thread) of its own, as it would in its own process: in
//! a shared runtime, tokio's per-task fairness would give the one task that handles every
//! member's traffic the same share as each single member. Full members run their whole engine in
//! this process (signatures, probes, gossip) on two worker threads; with many of them, a longer
//! probe interval (third argument, default 1,000 ms as in `Config::lan()`) keeps their own CPU
//! from dominating the machine. Progress lines go to stderr while members join.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gossip_core::hlc::Hlc;
use gossip_core::message::{
    Ack, Alive, MembershipMessage, Message as Msg, Sync, UpdateMessage, sync_phase,
};
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
    // All light members connect at once: unproven connections beyond this budget (256 by
    // default) are refused at accept, and those members would never join.
    cfg.limits.max_pending_connections = 8192;
    let g = Gossip::start(cfg).await.unwrap();
    let addr = g.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (g, format!("ws://{addr}/gossip/ws"))
}

async fn alive(g: &Gossip) -> usize {
    g.with_node(|n, _| n.live_count()).await.unwrap()
}

async fn known(g: &Gossip) -> usize {
    g.status().await.unwrap().members.len()
}

async fn wait_known(g: &Gossip, n: usize, what: &str) -> Duration {
    let t0 = Instant::now();
    let mut last_report = Instant::now();
    while known(g).await < n {
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "{what}: no convergence"
        );
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let s = g.status().await.unwrap();
            eprintln!(
                "[{:>3} s] {what}: {} of {n} known, {} connections, {} pending, drops {:?}",
                t0.elapsed().as_secs(),
                s.members.len(),
                s.counters.connections,
                s.counters.pending_connections,
                s.counters.drops
            );
        }
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

/// Every few seconds until aborted: what the server and the members see while members join.
fn progress(server: Gossip, members: Vec<Gossip>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let t0 = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let s = server.status().await.unwrap();
            let mut live = Vec::new();
            for m in &members {
                live.push(alive(m).await as f64);
            }
            eprintln!(
                "[{:>3} s] server: {} alive of {} known, {} connections, backlog {}, frames in/out {}/{}, drops {:?} | members: alive seen min {} p50 {}",
                t0.elapsed().as_secs(),
                s.members.iter().filter(|m| m.state == "alive").count(),
                s.members.len(),
                s.counters.connections,
                s.counters.inbound_backlog,
                s.counters.packets_in,
                s.counters.packets_out,
                s.counters.drops,
                pct(&mut live.clone(), 0.0),
                pct(&mut live, 0.5),
            );
        }
    })
}

/// A member that says who it is and then only reads: the server's cost of one connection.
/// Broadcast latencies (ms) light members measured, per broadcast round.
type Samples = std::sync::Arc<std::sync::Mutex<Vec<(u32, f64)>>>;

/// Frames light members have read.
static LIGHT_FRAMES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Frames light members have read, by the kind of the frame's message (index: its wire code),
/// and records they received, by kind: what still arrives once the join is over.
static FRAME_KINDS: [std::sync::atomic::AtomicU64; 32] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 32];
static RECORD_KINDS: [std::sync::atomic::AtomicU64; 32] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 32];

/// Frames light members could not decode, by error: a frame that waited in a queue past the
/// replay window is refused, which a member that knows too little may show.
static DECODE_ERRORS: std::sync::Mutex<std::collections::BTreeMap<String, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Whose alive records one light member has read: what it knows of the cluster.
type Known = std::sync::Arc<std::sync::Mutex<std::collections::HashSet<gossip_core::NodeId>>>;

/// Light member `i`'s key (its secret is derived from `i`, so the bench knows every member's id).
fn light_secret(i: u32) -> [u8; 32] {
    let mut secret = [0u8; 32];
    secret[..4].copy_from_slice(&i.to_le_bytes());
    secret[4] = 0x5a;
    secret
}

fn count(counters: &[std::sync::atomic::AtomicU64; 32], kind: u8) {
    if let Some(c) = counters.get(kind as usize) {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn snapshot(counters: &[std::sync::atomic::AtomicU64; 32]) -> [u64; 32] {
    std::array::from_fn(|i| counters[i].load(std::sync::atomic::Ordering::Relaxed))
}

/// The non-zero differences of two snapshots, by kind name.
fn kinds_between(before: &[u64; 32], after: &[u64; 32]) -> String {
    let name = |code: usize| match code {
        1 => "ping",
        2 => "ack",
        3 => "ping-req",
        4 => "nack",
        5 => "gossip",
        6 => "alive",
        7 => "suspect",
        8 => "dead",
        9 => "leave",
        10 => "broadcast",
        12 => "sync",
        13 => "metadata",
        14 => "relay",
        _ => "other",
    };
    let parts: Vec<String> = (0..32)
        .filter(|&i| after[i] > before[i])
        .map(|i| format!("{} {}", name(i), after[i] - before[i]))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// A light member: joins with a signed alive record, answers the server's probes, and records
/// when each `bench` broadcast arrives (its data: the round, then micros since `t0` at sending).
async fn light_member(
    i: u32,
    url: String,
    hub_id: gossip_core::NodeId,
    t0: Instant,
    samples: Samples,
    known: Known,
) {
    let secret = light_secret(i);
    let mut codec = gossip_core::Codec::new(
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
    // The link handshake first (a fresh nonce per member, from its seeded generator).
    let mut nonce = [0u8; 32];
    rand_core::Rng::fill_bytes(&mut rng, &mut nonce);
    let mut handshake = gossip_core::link::Handshake::dial(nonce, Some(hub_id));
    let identity = Identity::from_secret_bytes(secret);
    while handshake.peer().is_none() {
        let Some(Ok(Message::Binary(bytes))) = ws.next().await else {
            eprintln!("light-{i}: the server closed the connection during the link handshake");
            return;
        };
        let Ok(step) = handshake.on_message(&identity, &bytes) else {
            eprintln!("light-{i}: the link handshake failed");
            return;
        };
        if let Some(reply) = step.reply {
            ws.send(Message::Binary(reply.into())).await.unwrap();
        }
    }
    ws.send(Message::Binary(frame.into())).await.unwrap();
    let broadcast_kind = Msg::from(gossip_core::message::Broadcast {
        topic: String::new(),
        data: Default::default(),
    })
    .kind();
    let alive_kind = Msg::from(Alive {
        incarnation: 0,
        addrs: Vec::new(),
        name: String::new(),
    })
    .kind();
    let me = identity.id();
    // Alive records are read, not verified (see below): whose they are is all that is kept.
    let note = |records: &[gossip_core::SignedPacket]| {
        let mut known = known.lock().unwrap();
        let mut learned = false;
        for r in records {
            count(&RECORD_KINDS, r.kind());
            if r.kind() == alive_kind && r.origin() != me {
                learned |= known.insert(r.origin());
            }
        }
        learned
    };
    let mut followups = 0u8;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Binary(bytes) = msg else {
            continue;
        };
        LIGHT_FRAMES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wall = wall_ms();
        let inbound = match codec.decode(&bytes, wall) {
            Ok(inbound) => inbound,
            Err(e) => {
                *DECODE_ERRORS
                    .lock()
                    .unwrap()
                    .entry(e.to_string())
                    .or_insert(0) += 1;
                continue;
            }
        };
        count(&FRAME_KINDS, inbound.message.kind());
        match inbound.message {
            // The server's answer to the join: its records are cut to its sync budget (about
            // 400 alive records), so, like a full member, ask again with what is now held until
            // nothing is missing or the answer brings nothing new.
            Msg::Membership(MembershipMessage::Sync(answer))
                if inbound.origin() == hub_id && answer.phase == sync_phase::ANSWER =>
            {
                let learned = note(&answer.states);
                let held = known.lock().unwrap().clone();
                let behind = answer
                    .digest
                    .iter()
                    .any(|e| e.node != me && !held.contains(&e.node));
                if behind && learned && followups < 32 {
                    followups += 1;
                    // What this member holds, in the server's own terms: those entries are not
                    // sent again.
                    let again = Sync {
                        phase: sync_phase::OPEN,
                        digest: answer
                            .digest
                            .into_iter()
                            .filter(|e| e.node == me || held.contains(&e.node))
                            .collect(),
                        states: Vec::new(),
                    };
                    let packet = codec.sign(hlc.now(wall), &again.into()).unwrap();
                    let frame = codec.seal(&mut rng, 0, &packet).unwrap();
                    if ws.send(Message::Binary(frame.into())).await.is_err() {
                        return;
                    }
                }
            }
            Msg::Membership(MembershipMessage::Ping(ping)) if inbound.origin() == hub_id => {
                let ack = Ack {
                    seq: ping.seq,
                    piggyback: Vec::new(),
                };
                let packet = codec.sign(hlc.now(wall), &ack.into()).unwrap();
                let frame = codec.seal(&mut rng, 0, &packet).unwrap();
                if ws.send(Message::Binary(frame.into())).await.is_err() {
                    return;
                }
            }
            Msg::Membership(MembershipMessage::Gossip(gossip)) => {
                note(&gossip.items);
                // Only broadcasts are verified: a light member keeps no member table, and
                // checking every alive record of the join would cost it 1,000 signatures.
                for item in gossip.items.iter().filter(|i| i.kind() == broadcast_kind) {
                    if let Ok(Msg::Update(UpdateMessage::Broadcast(b))) = codec.accept(item, wall)
                        && b.topic == "bench"
                        && b.data.len() == 12
                    {
                        let round = u32::from_le_bytes(b.data[..4].try_into().unwrap());
                        let sent = u64::from_le_bytes(b.data[4..].try_into().unwrap());
                        let ms = (t0.elapsed().as_micros() as u64 - sent) as f64 / 1_000.0;
                        samples.lock().unwrap().push((round, ms));
                    }
                }
            }
            _ => {}
        }
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let nums: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = nums.first().copied().unwrap_or(1_000) as usize;
    let m = nums.get(1).copied().unwrap_or(100) as usize;
    let probe_ms = nums
        .get(2)
        .copied()
        .unwrap_or(Config::lan().probe_interval_ms);

    // The server's own runtime: its thread competes with the members' two, not each of its tasks
    // with each of theirs.
    let hub_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("hub")
        .enable_all()
        .build()
        .unwrap();

    // 1. Memory per connection.
    let (server, url) = hub_rt.spawn(hub()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss0 = rss_kb();
    let mut light = Vec::new();
    let t0 = Instant::now();
    let samples = Samples::default();
    let ids: Vec<gossip_core::NodeId> = (0..n as u32)
        .map(|i| Identity::from_secret_bytes(light_secret(i)).id())
        .collect();
    let knowledge: Vec<Known> = (0..n).map(|_| Known::default()).collect();
    for i in 0..n as u32 {
        let member = light_member(
            i,
            url.clone(),
            server.id(),
            t0,
            samples.clone(),
            knowledge[i as usize].clone(),
        );
        light.push(tokio::spawn(member));
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
    // Broadcast latency to the light members: the server delivers to every member relayed
    // through it. First let the members (all in this process) read what the join brought them:
    // each new member's record was delivered to every member already there, and each member
    // read the others' records from the server's answers to its join. Waiting for the frames to
    // stop does not work: the server probes one member per probe interval, so some frame is
    // always on its way. Wait until every light member the server holds live knows every member
    // the server holds live (a member buried meanwhile is no longer handed out: light members
    // do not refute, so a late ack on this loaded process can bury one for good).
    let know_start = Instant::now();
    let frames_at_join = LIGHT_FRAMES.load(std::sync::atomic::Ordering::Relaxed);
    let mut last_report = Instant::now();
    // The last time one more member came to know everyone: after 60 s without progress the
    // stragglers are reported rather than waited for.
    let (mut progress_at, mut best) = (know_start.elapsed(), 0);
    let (knowing, light_live) = loop {
        let live: std::collections::HashSet<gossip_core::NodeId> = server
            .with_node(|n, _| {
                n.members()
                    .filter(|m| !m.state.is_down())
                    .map(|m| m.id)
                    .collect()
            })
            .await
            .unwrap();
        let (mut light_live, mut knowing) = (0, 0);
        let mut missing = Vec::new();
        for (i, (id, known)) in ids.iter().zip(&knowledge).enumerate() {
            if live.contains(id) {
                light_live += 1;
                let known = known.lock().unwrap();
                let lacks = live
                    .iter()
                    .filter(|m| *m != id && !known.contains(m))
                    .count();
                knowing += usize::from(lacks == 0);
                if lacks > 0 {
                    missing.push(format!("light-{i} lacks {lacks}"));
                }
            }
        }
        if knowing > best {
            (best, progress_at) = (knowing, know_start.elapsed());
        }
        if knowing == light_live || know_start.elapsed() - progress_at > Duration::from_secs(60) {
            break (knowing, light_live);
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            missing.truncate(5);
            eprintln!(
                "[{:>3} s] {knowing} of {light_live} live light members know every live member; {} frames read; {}",
                know_start.elapsed().as_secs(),
                LIGHT_FRAMES.load(std::sync::atomic::Ordering::Relaxed),
                missing.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let know_all = progress_at;
    let frames = LIGHT_FRAMES.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "| live light members that know every live member: {knowing} of {light_live} ({light_live} of {n} light members live on the server; {frames} frames read in all, {} of them after all joined) | the last of them {:.2} s after all joined ({:.2} s from the first connection) |",
        frames - frames_at_join,
        know_all.as_secs_f64(),
        (light_join + know_all).as_secs_f64()
    );
    println!(
        "| frames light members could not decode, by error | {:?} |",
        DECODE_ERRORS.lock().unwrap()
    );
    // What keeps arriving once everyone knows everyone: why a quiet window never comes.
    let (f0, r0) = (snapshot(&FRAME_KINDS), snapshot(&RECORD_KINDS));
    let quiet = Duration::from_secs(5);
    tokio::time::sleep(quiet).await;
    let (f1, r1) = (snapshot(&FRAME_KINDS), snapshot(&RECORD_KINDS));
    println!(
        "| frames light members read in the next {} s, by kind (records inside, by kind) | {} ({}) |",
        quiet.as_secs(),
        kinds_between(&f0, &f1),
        kinds_between(&r0, &r1)
    );
    const ROUNDS: u32 = 10;
    for round in 0..ROUNDS {
        let mut data = round.to_le_bytes().to_vec();
        data.extend_from_slice(&(t0.elapsed().as_micros() as u64).to_le_bytes());
        server.broadcast("bench", data).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = samples.lock().unwrap().clone();
    let alive_light = alive(&server).await - 1;
    let mut lat: Vec<f64> = got.iter().map(|&(_, ms)| ms).collect();
    if !lat.is_empty() {
        let mut per_round = Vec::new();
        for round in 0..ROUNDS {
            let r: Vec<f64> = got
                .iter()
                .filter(|&&(g, _)| g == round)
                .map(|&(_, ms)| ms)
                .collect();
            if r.len() == n {
                per_round.push(r.iter().copied().fold(0.0, f64::max));
            }
        }
        println!(
            "| broadcast from the server to {n} light members ({ROUNDS} broadcasts, {} of {} deliveries; {alive_light} members alive on the server) | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
            lat.len(),
            n * ROUNDS as usize,
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99),
            pct(&mut lat, 1.0)
        );
        if !per_round.is_empty() {
            println!(
                "| the broadcast reaches all {n} ({} of {ROUNDS} broadcasts reached all) | p50 {:.1} ms, max {:.1} ms |",
                per_round.len(),
                pct(&mut per_round, 0.5),
                pct(&mut per_round, 1.0)
            );
        }
    }
    let after = server.status().await.unwrap().counters;
    println!(
        "| server after those broadcasts: connections, frames in / out, drops | {}, {} / {}, {} |",
        after.connections,
        after.packets_in,
        after.packets_out,
        serde_json::to_string(&after.drops).unwrap()
    );
    for t in light {
        t.abort();
    }
    server.kill().await;
    if m == 0 {
        hub_rt.shutdown_background();
        return;
    }
    let n = m;

    // 2. Broadcast latency with full members.
    let (server, url) = hub_rt.spawn(hub()).await.unwrap();
    let rss_before = rss_kb();
    let t0 = Instant::now();
    let mut members = Vec::new();
    for i in 0..n {
        let mut core = Config::lan().with_name(format!("member-{i}"));
        core.probe_interval_ms = probe_ms;
        let mut cfg = GossipConfig::new(core).with_key(KEY.parse().unwrap());
        cfg.seeds = vec![url.clone()];
        members.push(Gossip::start(cfg).await.unwrap());
        // Stay under the listener's accept backlog.
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let watch = progress(server.clone(), members.clone());
    let server_join = wait_alive(&server, n + 1, "full members on the server").await;
    for m in &members {
        wait_alive(m, n + 1, "full members on every member").await;
    }
    let full_join = t0.elapsed();
    watch.abort();
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
    let live_now = alive(&server).await;

    println!(
        "| {n} full members (`Config::lan()`, probe interval {probe_ms} ms): all alive on the server | {:.1} s |",
        server_join.as_secs_f64()
    );
    println!(
        "| ... and on every member | {:.1} s |",
        full_join.as_secs_f64()
    );
    println!(
        "| process RSS, server plus {n} full members (each with its own engine and client socket) | {} MB ({:.0} KB per member) |",
        rss2 / 1024,
        rss2.saturating_sub(rss_before) as f64 / n as f64
    );
    println!(
        "| broadcast from the server, per member ({} samples) | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        lat.len(),
        pct(&mut lat.clone(), 0.5),
        pct(&mut lat.clone(), 0.99),
        pct(&mut lat, 1.0)
    );
    println!(
        "| the broadcast reaches all {n} (10 broadcasts) | p50 {:.1} ms, max {:.1} ms |",
        pct(&mut all.clone(), 0.5),
        pct(&mut all, 1.0)
    );
    println!(
        "| server after the broadcasts: alive, frames in / out, drops | {live_now} of {}, {} / {}, {:?} |",
        n + 1,
        status.counters.packets_in,
        status.counters.packets_out,
        status.counters.drops
    );
    for m in members {
        m.kill().await;
    }
    server.kill().await;
    hub_rt.shutdown_background();
}
