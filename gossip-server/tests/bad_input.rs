//! Hostile input against a live node: each gets a counted drop or a closed connection with a
//! reason, and the node keeps serving a well-behaved member afterwards.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use gossip_core::hlc::Hlc;
use gossip_core::message::{Alive, Broadcast, Message, Sync, sync_phase};
use gossip_core::{
    Address, ClusterKey, Codec, Identity, Keyring, Limits, ReplayConfig, SignedPacket,
};
use gossip_server::{Gossip, GossipConfig};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const T: Duration = Duration::from_secs(20);

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Makes frames the way a member (or an attacker holding some key) would.
struct Forger {
    codec: Codec,
    hlc: Hlc,
    rng: ChaCha20Rng,
}

impl Forger {
    fn new(seed: u8, key: Option<ClusterKey>) -> Forger {
        let keyring = key.map(Keyring::new).unwrap_or_else(Keyring::unencrypted);
        Forger {
            codec: Codec::new(
                Identity::from_secret_bytes([seed; 32]),
                keyring,
                Limits::default(),
                ReplayConfig::default(),
            ),
            hlc: Hlc::new(60_000),
            rng: ChaCha20Rng::from_seed([seed; 32]),
        }
    }

    fn packet(&mut self, message: Message) -> SignedPacket {
        let ts = self.hlc.now(wall_ms());
        self.codec.sign(ts, &message).unwrap()
    }

    fn seal(&mut self, packet: &SignedPacket) -> Vec<u8> {
        self.codec.seal(&mut self.rng, 0, packet).unwrap()
    }

    fn broadcast(&mut self, text: &str) -> SignedPacket {
        self.packet(
            Broadcast {
                topic: "t".into(),
                data: text.as_bytes().to_vec().into(),
            }
            .into(),
        )
    }

    /// A join announcing this forger as a member relayed by `server`.
    fn join_via(&mut self, server: gossip_core::NodeId) -> Vec<u8> {
        let alive = self.packet(
            Alive {
                incarnation: wall_ms(),
                addrs: vec![Address::Relayed(server)],
                name: "forger".into(),
            }
            .into(),
        );
        let sync = self.packet(
            Sync {
                phase: sync_phase::JOIN,
                digest: Vec::new(),
                states: vec![alive],
            }
            .into(),
        );
        self.seal(&sync)
    }
}

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

async fn ws_connect(url: &str, origin: Option<&str>) -> Ws {
    let mut req = url.into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// Reads until the server closes; returns the close code and reason.
async fn close_of(ws: &mut Ws) -> (u16, String) {
    tokio::time::timeout(T, async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(WsMessage::Close(Some(f))) => return (u16::from(f.code), f.reason.to_string()),
                Ok(WsMessage::Close(None)) | Err(_) => return (0, String::new()),
                Ok(_) => {}
            }
        }
        (0, String::new())
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
            && drops(&g, "duplicate").await >= 1;
        if !ok {
            eprintln!("drops so far: {:?}", status(&g).await.counters.drops);
        }
        ok
    })
    .await;

    // TCP: a length-prefixed garbage frame gets the connection closed.
    let mut tcp = tokio::net::TcpStream::connect(g.tcp_addr().unwrap())
        .await
        .unwrap();
    tcp.write_all(&[0, 0, 0, 5, 1, 2, 3, 4, 5]).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(T, tokio::io::AsyncReadExt::read(&mut tcp, &mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "the server closed the TCP connection");
    // A length prefix over the frame limit is refused before anything is buffered.
    let mut tcp = tokio::net::TcpStream::connect(g.tcp_addr().unwrap())
        .await
        .unwrap();
    tcp.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let n = tokio::time::timeout(T, tokio::io::AsyncReadExt::read(&mut tcp, &mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
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

    // With the token (and an allowed origin) the server greets with its id.
    let mut ws = ws_connect(&with_token, Some("http://app.test")).await;
    let hello = ws.next().await.unwrap().unwrap().into_data();
    assert_eq!(gossip_core::link::decode_hello(&hello), Ok(g.id()));
    ws.send(WsMessage::Text("hello?".into())).await.unwrap();
    assert_eq!(close_of(&mut ws).await.0, 4415, "text");

    let mut ws = ws_connect(&with_token, None).await;
    ws.send(WsMessage::Binary(vec![1u8; 100].into()))
        .await
        .unwrap();
    assert_eq!(close_of(&mut ws).await.0, 4400, "garbage frame");

    // A client's hello claiming to be a member would capture the route to it: refused.
    let mut ws = ws_connect(&with_token, None).await;
    let claim = gossip_core::link::encode_hello(&Identity::from_secret_bytes([9; 32]).id());
    ws.send(WsMessage::Binary(claim.into())).await.unwrap();
    assert_eq!(close_of(&mut ws).await.0, 4400, "hello from a client");

    let mut ws = ws_connect(&with_token, None).await;
    let mut stranger = Forger::new(3, Some("22".repeat(32).parse().unwrap()));
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
    let _hello = ws.next().await.unwrap().unwrap();
    let mut member = Forger::new(4, Some(key()));
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
    let _hello = ws.next().await.unwrap().unwrap();
    let mut member = Forger::new(5, Some(key()));
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
    let _hello = member_ws.next().await.unwrap().unwrap();
    let mut member = Forger::new(6, Some(key()));
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
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(T, tokio::io::AsyncReadExt::read(&mut tcp, &mut buf))
        .await
        .expect("the idle TCP connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    eventually(T, "both idle connections are counted", || async {
        drops(&g, "unverified_timeout").await >= 2
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
