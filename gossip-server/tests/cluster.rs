//! Real clusters on 127.0.0.1: UDP/TCP and WebSocket-only nodes mixed, messaging, streams, relays.

mod common;

use std::time::Duration;

use common::*;
use gossip_core::{Event, NodeId, Quorum};
use gossip_server::{Gossip, GossipConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(30);

async fn all_see(nodes: &[Gossip], ids: &[NodeId], what: &str) {
    for g in nodes {
        eventually(T, what, || sees_alive(g, ids)).await;
    }
}

/// Answers every request `g` receives with "echo:" + the data.
fn echo(g: &Gossip) {
    let mut events = g.subscribe();
    let g = g.clone();
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            if let Event::Request { from, id, data, .. } = e {
                let mut answer = b"echo:".to_vec();
                answer.extend(data);
                let _ = g.respond(from, id, answer).await;
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_mixing_udp_tcp_and_websocket_converge_spread_and_detect() {
    let first = udp_node("udp-0", &[]).await;
    let udp_seed = seed_of(&first);
    let mut nodes = vec![first];
    for i in 1..5 {
        nodes.push(udp_node(&format!("udp-{i}"), std::slice::from_ref(&udp_seed)).await);
    }
    // WebSocket-only nodes: the first joins a UDP/TCP node over TCP, the others over WebSocket.
    let (w0, w0_url) = ws_node("ws-0", std::slice::from_ref(&udp_seed)).await;
    nodes.push(w0);
    for i in 1..5 {
        let (w, _) = ws_node(&format!("ws-{i}"), std::slice::from_ref(&w0_url)).await;
        nodes.push(w);
    }
    let ids: Vec<NodeId> = nodes.iter().map(Gossip::id).collect();
    all_see(&nodes, &ids, "ten nodes see each other alive").await;

    let mut subs: Vec<_> = nodes.iter().map(Gossip::subscribe).collect();
    nodes[8].set_metadata("role", "worker").await.unwrap();
    nodes[2].broadcast("news", "hello all").await.unwrap();
    let writer = ids[8].to_string();
    for g in &nodes {
        eventually(T, "metadata reaches every node", || async {
            status(g).await.members.iter().any(|m| {
                m.id == writer && m.metadata.get("role").map(String::as_str) == Some("worker")
            })
        })
        .await;
    }
    for (i, sub) in subs.iter_mut().enumerate() {
        if i == 2 {
            continue;
        }
        let got = tokio::time::timeout(T, async {
            loop {
                if let Ok(Event::Broadcast { from, topic, data }) = sub.recv().await
                    && from == ids[2]
                {
                    return (topic, data);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("node {i} did not get the broadcast"));
        assert_eq!(got, ("news".to_owned(), b"hello all".to_vec()));
    }

    // A crash (no leave) is detected by everyone; a graceful leave is seen as left.
    let crashed = nodes.remove(4);
    let crashed_id = crashed.id();
    crashed.kill().await;
    for g in &nodes {
        eventually(T, "the killed node is marked dead", || async {
            state_of(g, &crashed_id).await.as_deref() == Some("dead")
        })
        .await;
    }
    let leaver = nodes.pop().unwrap();
    let leaver_id = leaver.id();
    leaver.shutdown().await;
    for g in &nodes {
        eventually(T, "the leaver is marked left", || async {
            state_of(g, &leaver_id).await.as_deref() == Some("left")
        })
        .await;
    }
    for g in nodes {
        g.shutdown().await;
    }
    assert_no_task_panicked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_udp_budget_goes_over_tcp() {
    let a = udp_node("a", &[]).await;
    let b = udp_node("b", &[seed_of(&a)]).await;
    all_see(&[a.clone(), b.clone()], &[a.id(), b.id()], "pair").await;
    let mut events = b.subscribe();
    let big: Vec<u8> = (0..6_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let (to, payload) = (b.id(), big.clone());
    // Best effort was asked for; the engine and driver must still pick a reliable link.
    a.with_node(move |n, now| n.send(now, to, "big", payload, false))
        .await
        .unwrap()
        .unwrap();
    let got = tokio::time::timeout(T, async {
        loop {
            if let Ok(Event::Direct { data, .. }) = events.recv().await {
                return data;
            }
        }
    })
    .await
    .expect("the large frame arrived");
    assert_eq!(got, big);
    let s = status(&a).await;
    assert!(s.counters.udp_max_datagram <= 1_400, "{:?}", s.counters);
    assert!(s.counters.frames_reliable > 0);
    a.shutdown().await;
    b.shutdown().await;
    assert_no_task_panicked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_quorum_requests_complete_or_time_out() {
    let a = udp_node("a", &[]).await;
    let seed = seed_of(&a);
    let b = udp_node("b", std::slice::from_ref(&seed)).await;
    let (c, _) = ws_node("c", std::slice::from_ref(&seed)).await;
    let silent = udp_node("silent", std::slice::from_ref(&seed)).await;
    let all = [a.clone(), b.clone(), c.clone(), silent.clone()];
    let ids: Vec<NodeId> = all.iter().map(Gossip::id).collect();
    all_see(&all, &ids, "four nodes").await;
    echo(&b);
    echo(&c);

    let answer = a
        .request(b.id(), "q", "ping", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer, b"echo:ping");
    let answer = a
        .request(c.id(), "q", "over ws", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer, b"echo:over ws");
    let err = a
        .request(silent.id(), "q", "anyone?", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            gossip_server::GossipError::RequestFailed {
                reason: gossip_core::FailReason::Timeout,
                ..
            }
        ),
        "{err:?}"
    );

    let mut events = a.subscribe();
    let members = vec![b.id(), c.id(), silent.id()];
    let qid = a
        .with_node(move |n, now| {
            n.quorum_request(
                now,
                &members,
                "q",
                b"vote".to_vec(),
                Quorum::Majority,
                2_000,
            )
        })
        .await
        .unwrap()
        .unwrap();
    let outcome = tokio::time::timeout(T, async {
        loop {
            if let Ok(Event::QuorumDone(o)) = events.recv().await
                && o.id == qid
            {
                return o;
            }
        }
    })
    .await
    .unwrap();
    assert!(outcome.reached, "{outcome:?}");
    for g in all {
        g.shutdown().await;
    }
    assert_no_task_panicked();
}

/// Writes `len` pseudo-random bytes while reading the echo back; returns what came back.
async fn round_trip(stream: gossip_server::GossipStream, len: usize) -> (Vec<u8>, Vec<u8>) {
    let data: Vec<u8> = (0..len as u64)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let (mut r, mut w) = tokio::io::split(stream);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        for chunk in sent.chunks(64 * 1024) {
            w.write_all(chunk).await.unwrap();
        }
        w.flush().await.unwrap();
        w
    });
    let mut back = vec![0u8; len];
    r.read_exact(&mut back).await.unwrap();
    let mut w = writer.await.unwrap();
    w.shutdown().await.unwrap();
    (data, back)
}

/// Echoes every accepted stream back until it ends.
fn echo_streams(g: &Gossip) {
    let g = g.clone();
    tokio::spawn(async move {
        while let Some(stream) = g.accept_stream().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(stream);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabyte_streams_node_to_node_and_through_a_relay() {
    let a = udp_node("a", &[]).await;
    let (relay, relay_url) = ws_node("relay", &[seed_of(&a)]).await;
    // A member that cannot listen: it is reached through the server it dialed.
    let mut cfg = GossipConfig::new(fast("behind-nat")).with_key(key());
    cfg.seeds = vec![relay_url];
    let hidden = Gossip::start(cfg).await.unwrap();
    let all = [a.clone(), relay.clone(), hidden.clone()];
    let ids: Vec<NodeId> = all.iter().map(Gossip::id).collect();
    all_see(&all, &ids, "three nodes incl. the relayed one").await;
    // The hidden member's join carries its record from before it adopted the server that
    // greeted it as its relay; the record naming that relay follows, so wait for it.
    let relay_id = relay.id().to_string();
    eventually(T, "a sees behind-nat relayed through the relay", || async {
        status(&a)
            .await
            .members
            .iter()
            .any(|m| m.name == "behind-nat" && m.relay.as_deref() == Some(relay_id.as_str()))
    })
    .await;

    echo_streams(&relay);
    echo_streams(&hidden);
    const LEN: usize = 10 * 1024 * 1024;
    let direct = a.open_stream(relay.id()).await.unwrap();
    let (sent, back) = round_trip(direct, LEN).await;
    assert!(sent == back, "node-to-node stream corrupted");
    let relayed = a.open_stream(hidden.id()).await.unwrap();
    let (sent, back) = round_trip(relayed, LEN).await;
    assert!(sent == back, "relayed stream corrupted");

    // Requests reach it through the relay; when it dies, everyone declares it dead.
    echo(&hidden);
    let answer = a
        .request(hidden.id(), "q", "hi", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer, b"echo:hi");
    let hidden_id = hidden.id();
    hidden.kill().await;
    for g in [&a, &relay] {
        eventually(T, "the relayed member is declared dead", || async {
            state_of(g, &hidden_id).await.as_deref() == Some("dead")
        })
        .await;
    }
    a.shutdown().await;
    relay.shutdown().await;
    assert_no_task_panicked();
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_works_nested_beside_the_users_routes() {
    watch_task_panics();
    let gossip = Gossip::start(GossipConfig::new(fast("embedded")).with_key(key()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind(localhost()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    gossip
        .advertise_ws(format!("ws://{addr}/gossip/ws"))
        .await
        .unwrap();
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "my service" }))
        .route("/api/items", axum::routing::get(|| async { "[1,2,3]" }))
        .nest("/gossip", gossip.router());
    tokio::spawn(async move { axum::serve(listener, app).await });

    assert!(http_get(addr, "/").await.ends_with("my service"));
    assert!(http_get(addr, "/api/items").await.ends_with("[1,2,3]"));
    let status = http_get(addr, "/gossip/status").await;
    let body = status.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["name"], "embedded");
    assert_eq!(json["id"], gossip.id().to_string());
    assert!(
        json["addrs"]
            .as_array()
            .unwrap()
            .contains(&format!("ws://{addr}/gossip/ws").into())
    );

    // Members join through the nested route.
    let (other, _) = ws_node("other", &[format!("ws://{addr}/gossip/ws")]).await;
    let ids = [gossip.id(), other.id()];
    all_see(
        &[gossip.clone(), other.clone()],
        &ids,
        "joined through the nested route",
    )
    .await;
    other.shutdown().await;
    gossip.shutdown().await;
    assert_no_task_panicked();
}

/// `subscribe()` only sees events from the moment it is called, and the node joins inside
/// `start()`: an application that subscribed after start missed the joins (the CLI's flaky
/// three-process test). `watch()` gives the members and the events after them, with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_every_member_with_no_gap_between_snapshot_and_events() {
    let a = udp_node("watch-a", &[]).await;
    let seed = seed_of(&a);
    let b = udp_node("watch-b", std::slice::from_ref(&seed)).await;
    // Let b learn a before anyone listens: its join event is already gone.
    let both = [a.id(), b.id()];
    eventually(T, "b sees a", || sees_alive(&b, &both)).await;
    let mut late = b.subscribe();
    let mut watch = b.watch().await.unwrap();
    let known: Vec<NodeId> = watch.members.iter().map(|m| m.id).collect();
    assert!(
        known.contains(&a.id()) && known.contains(&b.id()),
        "{known:?}"
    );
    assert_eq!(b.members().await.unwrap().len(), known.len());
    // A third member joins after the watch began: its join arrives as an event, once.
    let c = udp_node("watch-c", std::slice::from_ref(&seed)).await;
    let joined = tokio::time::timeout(T, async {
        loop {
            match watch.events.recv().await {
                Ok(Event::MemberJoined { id, .. }) if id == c.id() => return id,
                Ok(Event::MemberJoined { id, .. }) => panic!("{id} joined twice"),
                Ok(_) => {}
                Err(e) => panic!("watch ended: {e}"),
            }
        }
    })
    .await
    .expect("c's join reaches the watch");
    assert_eq!(joined, c.id());
    // The plain subscription never hears of a: that is the gap `watch` closes.
    while let Ok(e) = late.try_recv() {
        assert!(
            !matches!(e, Event::MemberJoined { id, .. } if id == a.id()),
            "a's join was published after b knew it"
        );
    }
    for g in [a, b, c] {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_over_its_stream_share_cannot_crowd_out_another() {
    let victim = udp_node("victim", &[]).await;
    let hostile = udp_node("hostile", &[seed_of(&victim)]).await;
    let (honest, _) = ws_node("honest", &[seed_of(&victim)]).await;
    let all = [victim.clone(), hostile.clone(), honest.clone()];
    let ids: Vec<NodeId> = all.iter().map(Gossip::id).collect();
    all_see(&all, &ids, "victim, hostile and honest see each other").await;

    // The hostile member opens 100 streams over TCP and keeps them; the victim's application
    // takes none yet, so without a per-member share they would fill its accept queue (64).
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..100 {
        match hostile.open_stream(victim.id()).await {
            Ok(stream) => held.push(stream),
            Err(gossip_server::GossipError::StreamRefused { code, .. }) => refused.push(code),
            Err(e) => panic!("unexpected error opening a stream: {e}"),
        }
    }
    assert_eq!(held.len(), 32, "the hostile member holds its share");
    assert_eq!(refused.len(), 68);
    assert!(
        refused
            .iter()
            .all(|c| *c == gossip_core::streams::close_code::TOO_MANY_FROM_PEER),
        "{refused:?}"
    );

    // The honest member, over WebSocket, still opens a stream that carries data.
    let stream = tokio::time::timeout(T, honest.open_stream(victim.id()))
        .await
        .expect("the honest open is answered")
        .expect("the honest open succeeds");
    let server = tokio::time::timeout(T, async {
        loop {
            let s = victim.accept_stream().await.expect("victim running");
            if s.peer() == honest.id() {
                return s;
            }
        }
    })
    .await
    .expect("the honest stream reaches the victim's application");
    tokio::spawn(async move {
        let (mut r, mut w) = tokio::io::split(server);
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let (sent, back) = round_trip(stream, 1 << 20).await;
    assert!(sent == back, "honest stream corrupted");
    drop(held);
    for g in all {
        g.shutdown().await;
    }
    assert_no_task_panicked();
}
