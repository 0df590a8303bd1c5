//! Hostile input against a live node: each gets a counted drop or a closed connection with a
//! reason, and the node keeps serving a well-behaved member afterwards.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use gossip_core::link::Handshake;
use gossip_core::link::handshake::{CHALLENGE_LEN, CHALLENGE_MAGIC};
use gossip_core::message::{ApplicationMessage, Message};
use gossip_core::{Event, Identity, SignedPacket};
use gossip_server::{Gossip, GossipConfig};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const T: Duration = Duration::from_secs(20);

/// After the abuse, an honest node still joins and sees `g` alive.
async fn still_serves(g: &Gossip, seed: String) {
    let honest = udp_node("honest", &[seed]).await;
    let ids = [g.id(), honest.id()];
    eventually(T, "an honest member joins after the abuse", || async {
        sees_alive(&honest, &ids).await
    })
    .await;
    honest.shutdown().await;
}

/// Reads a TCP connection until the server closes it; returns how many bytes came first.
async fn read_to_close(tcp: &mut tokio::net::TcpStream) -> usize {
    let mut buf = [0u8; 512];
    let mut total = 0;
    tokio::time::timeout(T, async {
        loop {
            match tokio::io::AsyncReadExt::read(tcp, &mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .expect("the server closes the connection")
}

async fn ws_server(f: impl FnOnce(GossipConfig) -> GossipConfig) -> (Gossip, String) {
    watch_task_panics();
    let cfg = f(GossipConfig::new(fast("server"))
        .with_key(key())
        .with_bind(localhost()));
    let g = Gossip::start(cfg).await.unwrap();
    let addr = g.serve(localhost()).await.unwrap();
    (g, format!("ws://{addr}/gossip/ws"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_forgeries_replays_and_wrong_keys_over_udp_and_tcp_are_counted() {
    let (g, _) = ws_server(|c| c).await;
    let udp = tokio::net::UdpSocket::bind(localhost()).await.unwrap();
    let target = g.udp_addr().unwrap();
    udp.send_to(b"\x01", target).await.unwrap();
    let mut honest = Forger::new(1, Some(key()));
    // A forged signature: the right cluster key, a signature that does not verify.
    let mut forged = honest.broadcast("forged").as_bytes().to_vec();
    *forged.last_mut().unwrap() ^= 1;
    let forged = SignedPacket::from_bytes(forged).unwrap();
    udp.send_to(&honest.seal(&forged), target).await.unwrap();
    // A replay: the same signed packet twice (fresh nonces, so only the replay guard can tell).
    let once = honest.broadcast("once");
    udp.send_to(&honest.seal(&once), target).await.unwrap();
    udp.send_to(&honest.seal(&once), target).await.unwrap();
    // The wrong cluster key.
    let mut stranger = Forger::new(2, Some("11".repeat(32).parse().unwrap()));
    let p = stranger.broadcast("hi");
    udp.send_to(&stranger.seal(&p), target).await.unwrap();
    eventually(T, "every bad datagram is counted", || async {
        let ok = drops(&g, "malformed").await >= 1
            && drops(&g, "unauthenticated").await >= 2
            && status(&g).await.counters.duplicates >= 1
            && drops(&g, "duplicate").await == 0;
        if !ok {
            eprintln!("drops so far: {:?}", status(&g).await.counters.drops);
        }
        ok
    })
    .await;

    // TCP: a length-prefixed garbage frame instead of the handshake gets the connection closed;
    // nothing but the server's challenge ever came out.
    let mut tcp = tokio::net::TcpStream::connect(g.tcp_addr().unwrap())
        .await
        .unwrap();
    tcp.write_all(&[0, 0, 0, 5, 1, 2, 3, 4, 5]).await.unwrap();
    assert_eq!(read_to_close(&mut tcp).await, 4 + CHALLENGE_LEN);
    // A length prefix over the frame limit is refused before anything is buffered.
    let mut tcp = tokio::net::TcpStream::connect(g.tcp_addr().unwrap())
        .await
        .unwrap();
    tcp.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    assert_eq!(read_to_close(&mut tcp).await, 4 + CHALLENGE_LEN);
    still_serves(&g, seed_of(&g)).await;
    g.shutdown().await;
    assert_no_task_panicked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_abuse_is_closed_with_a_reason() {
    let (g, url) = ws_server(|mut c| {
        c.token = Some("s3cret".into());
        c.allowed_origins = vec!["http://app.test".into()];
        c.limits.max_frame = 64 * 1024;
        c
    })
    .await;
    let with_token = format!("{url}?token=s3cret");

    let mut ws = ws_connect(&url, None).await;
    assert_eq!(close_of(&mut ws).await.0, 4401, "no token");
    let mut ws = ws_connect(&format!("{url}?token=wrong"), None).await;
    assert_eq!(close_of(&mut ws).await.0, 4401, "wrong token");
    let mut ws = ws_connect(&with_token, Some("http://evil.test")).await;
    assert_eq!(close_of(&mut ws).await.0, 4403, "origin");

    // With the token (and an allowed origin) the server opens the handshake: its id, a nonce.
    let mut ws = ws_connect(&with_token, Some("http://app.test")).await;
    let challenge = ws.next().await.unwrap().unwrap().into_data();
    assert_eq!(challenge.len(), CHALLENGE_LEN);
    assert!(challenge.starts_with(CHALLENGE_MAGIC));
    assert_eq!(&challenge[8..40], g.id().as_bytes());
    ws.send(WsMessage::Text("hello?".into())).await.unwrap();
    assert_eq!(close_of(&mut ws).await.0, 4415, "text");

    // A frame instead of the handshake.
    let mut ws = ws_connect(&with_token, None).await;
    ws.send(WsMessage::Binary(vec![1u8; 100].into()))
        .await
        .unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 4400, "frame before the handshake: {reason}");
    assert!(reason.contains("handshake"), "{reason}");

    // A proof whose signature does not verify (a recorded proof, or one for another nonce).
    let mut ws = ws_connect(&with_token, None).await;
    let challenge = ws.next().await.unwrap().unwrap().into_data();
    let liar = Identity::from_secret_bytes([9; 32]);
    let mut proof = Handshake::dial([1; 32], None)
        .on_message(&liar, &challenge)
        .unwrap()
        .reply
        .unwrap();
    *proof.last_mut().unwrap() ^= 1;
    ws.send(WsMessage::Binary(proof.into())).await.unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 4400, "bad proof: {reason}");
    assert!(reason.contains("signature"), "{reason}");

    // The handshake proves an identity, not the cluster key: a stranger gets this far.
    let mut ws = ws_connect(&with_token, None).await;
    let mut stranger = Forger::new(3, Some("22".repeat(32).parse().unwrap()));
    assert_eq!(stranger.link(&mut ws).await, g.id());
    ws.send(WsMessage::Binary(stranger.join_via(g.id()).into()))
        .await
        .unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 4400, "wrong cluster key: {reason}");
    assert!(reason.contains("cluster key"), "{reason}");

    let mut ws = ws_connect(&with_token, None).await;
    let _ = ws
        .send(WsMessage::Binary(vec![1u8; 200 * 1024].into()))
        .await;
    assert_eq!(close_of(&mut ws).await.0, 4413, "oversized");

    // A member whose token is right but whose frames are honest is served normally.
    let mut ws = ws_connect(&with_token, None).await;
    let mut member = Forger::new(4, Some(key()));
    member.link(&mut ws).await;
    ws.send(WsMessage::Binary(member.join_via(g.id()).into()))
        .await
        .unwrap();
    let reply = tokio::time::timeout(T, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(reply, WsMessage::Binary(_)), "{reply:?}");
    drop(ws);
    still_serves(&g, seed_of(&g)).await;
    g.shutdown().await;
    assert_no_task_panicked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_reads_is_disconnected() {
    let (g, url) = ws_server(|mut c| {
        c.limits.conn_queue = 8;
        // Slow probes: the flood must fill the queue before the silent member is buried.
        c.core = gossip_core::Config::lan().with_name("server");
        c
    })
    .await;
    let mut ws = ws_connect(&url, None).await;
    let mut member = Forger::new(5, Some(key()));
    member.link(&mut ws).await;
    ws.send(WsMessage::Binary(member.join_via(g.id()).into()))
        .await
        .unwrap();
    let forger_id = Identity::from_secret_bytes([5; 32]).id();
    eventually(T, "the forger is a member", || async {
        state_of(&g, &forger_id).await.as_deref() == Some("alive")
    })
    .await;
    // From now on it reads nothing; the node pushes 100 KB broadcasts at it. Random bytes, so
    // lz4 cannot shrink them: the frames must outgrow the socket buffers, whatever the batching.
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut closed = false;
    for _ in 0..20 {
        for _ in 0..20 {
            let mut big = vec![0u8; 100 * 1024];
            rng.fill_bytes(&mut big);
            g.broadcast("flood", big).await.unwrap();
        }
        if drops(&g, "slow_consumer").await > 0 {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the slow member was never disconnected: {:?}",
        status(&g).await.counters
    );
    drop(ws);
    still_serves(&g, seed_of(&g)).await;
    g.shutdown().await;
    assert_no_task_panicked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_refused_over_the_limit() {
    let (g, url) = ws_server(|mut c| {
        // Idle connections have not proven membership: the pending budget is what they hit.
        c.limits.max_pending_connections = 16;
        c
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(
            tokio::net::TcpStream::connect(g.tcp_addr().unwrap())
                .await
                .unwrap(),
        );
    }
    eventually(T, "connections over the limit are refused", || async {
        drops(&g, "too_many_connections").await >= 20
    })
    .await;
    let mut ws = ws_connect(&url, None).await;
    assert_eq!(close_of(&mut ws).await.0, 4429, "websocket over the limit");
    drop(idle);
    eventually(T, "the idle connections are gone", || async {
        status(&g).await.counters.connections < 16
    })
    .await;
    still_serves(&g, seed_of(&g)).await;
    g.shutdown().await;
    assert_no_task_panicked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_proves_membership_is_closed_at_the_deadline() {
    let (g, url) = ws_server(|mut c| {
        c.limits.verify_within = Duration::from_millis(300);
        c
    })
    .await;
    // A member proves itself before the deadline.
    let mut member_ws = ws_connect(&url, None).await;
    let mut member = Forger::new(6, Some(key()));
    member.link(&mut member_ws).await;
    member_ws
        .send(WsMessage::Binary(member.join_via(g.id()).into()))
        .await
        .unwrap();
    let reply = tokio::time::timeout(T, member_ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(reply, WsMessage::Binary(_)), "{reply:?}");

    // Idle connections, WebSocket and TCP, are closed once the deadline passed.
    let mut idle = ws_connect(&url, None).await;
    let (code, reason) = close_of(&mut idle).await;
    assert_eq!(code, 4428, "idle websocket: {reason}");
    let mut tcp = tokio::net::TcpStream::connect(g.tcp_addr().unwrap())
        .await
        .unwrap();
    assert_eq!(read_to_close(&mut tcp).await, 4 + CHALLENGE_LEN);
    // So is one that finished the handshake (anyone can mint an identity) but sends no frame.
    let mut linked = ws_connect(&url, None).await;
    Forger::new(10, None).link(&mut linked).await;
    let (code, reason) = close_of(&mut linked).await;
    assert_eq!(code, 4428, "linked but silent: {reason}");
    eventually(T, "the idle connections are counted", || async {
        drops(&g, "handshake_timeout").await >= 2 && drops(&g, "unverified_timeout").await >= 1
    })
    .await;

    // The member's connection is older than the deadline and still carries frames.
    let next = tokio::time::timeout(T, async {
        loop {
            match member_ws.next().await {
                Some(Ok(WsMessage::Binary(_))) => return None,
                Some(Ok(WsMessage::Close(f))) => return Some(format!("{f:?}")),
                Some(Ok(_)) => {}
                other => return Some(format!("{other:?}")),
            }
        }
    })
    .await
    .expect("the server keeps talking to its member");
    assert_eq!(next, None, "the verified member was disconnected");
    drop(member_ws);
    g.shutdown().await;
    assert_no_task_panicked();
}

/// A frame captured on the wire and replayed on a new connection binds nothing (issue 13,
/// item 4). The "captured" frames are made with the victim's key but never sent by the victim:
/// bytes an attacker can hold without the key, and new to the server's replay guard, so only the
/// handshake stands between them and the victim's route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_frame_never_moves_a_route() {
    let (g, url) = ws_server(|c| c).await;
    let mut events = g.subscribe();
    // The victim: a member the server relays over the victim's WebSocket.
    let mut victim = Forger::new(7, Some(key()));
    let mut victim_ws = ws_connect(&url, None).await;
    assert_eq!(victim.link(&mut victim_ws).await, g.id());
    victim_ws
        .send(WsMessage::Binary(victim.join_via(g.id()).into()))
        .await
        .unwrap();
    eventually(T, "the victim is a member", || async {
        state_of(&g, &victim.id()).await.as_deref() == Some("alive")
    })
    .await;
    let first = victim.broadcast("captured first");
    let captured_first = victim.seal(&first);
    let late = victim.broadcast("captured late");
    let captured_late = victim.seal(&late);
    // The victim's link drops: no route to it remains.
    drop(victim_ws);
    eventually(T, "the server saw the victim's link close", || async {
        status(&g).await.counters.connections == 0
    })
    .await;

    // 1. As the first message of a new connection, where the handshake belongs: closed, and
    //    nothing but the challenge came out.
    let mut tcp = tokio::net::TcpStream::connect(g.tcp_addr().unwrap())
        .await
        .unwrap();
    let mut prefixed = (captured_first.len() as u32).to_be_bytes().to_vec();
    prefixed.extend_from_slice(&captured_first);
    tcp.write_all(&prefixed).await.unwrap();
    assert_eq!(read_to_close(&mut tcp).await, 4 + CHALLENGE_LEN);
    eventually(T, "the replay is counted", || async {
        drops(&g, "frame_before_handshake").await >= 1
    })
    .await;

    // 2. A member holding the cluster key links as itself, then replays the victim's frame as
    //    its first frame. The server takes the frame (it is valid and new) but not the route.
    let mut attacker = Forger::new(8, Some(key()));
    let mut ws = ws_connect(&url, None).await;
    assert_eq!(attacker.link(&mut ws).await, g.id());
    ws.send(WsMessage::Binary(captured_late.into()))
        .await
        .unwrap();
    let victim_id = victim.id();
    tokio::time::timeout(T, async {
        loop {
            match events.recv().await {
                Ok(Event::Broadcast { from, data, .. })
                    if from == victim_id && data == b"captured late" =>
                {
                    return;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await
    .expect("the server handled the replayed frame");
    ws.send(WsMessage::Binary(attacker.join_via(g.id()).into()))
        .await
        .unwrap();
    let attacker_id = attacker.id();
    eventually(T, "the attacker is a member", || async {
        state_of(&g, &attacker_id).await.as_deref() == Some("alive")
    })
    .await;
    // Nowhere to go: the victim has no link. It must not take the attacker's.
    let _ = g.send(victim_id, "t", b"for the victim".to_vec()).await;
    g.send(attacker_id, "t", b"marker".to_vec()).await.unwrap();
    let mut frames = 0;
    tokio::time::timeout(T, async {
        loop {
            let msg = ws.next().await.expect("open").expect("no error");
            let WsMessage::Binary(bytes) = msg else {
                continue;
            };
            frames += 1;
            if let Some(Message::Application(ApplicationMessage::Direct(d))) = attacker.open(&bytes)
            {
                assert_ne!(
                    d.to, victim_id,
                    "a message for the victim came over the attacker's link"
                );
                if d.to == attacker_id && d.data.as_ref() == b"marker" {
                    return;
                }
            }
        }
    })
    .await
    .expect("the marker reaches the attacker");
    assert!(frames >= 1);
    drop(ws);
    still_serves(&g, seed_of(&g)).await;
    g.shutdown().await;
    assert_no_task_panicked();
}
