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
/// `n` UDP nodes named `{prefix}-0` ... joined through the first, returned once every one sees
/// all of them alive (within `timeout`).
pub async fn udp_cluster(prefix: &str, n: usize, timeout: Duration) -> Vec<Gossip> {
    let first = udp_node(&format!("{prefix}-0"), &[]).await;
    let seed = seed_of(&first);
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(udp_node(&format!("{prefix}-{i}"), std::slice::from_ref(&seed)).await);
    }
    let ids: Vec<NodeId> = nodes.iter().map(Gossip::id).collect();
    for g in &nodes {
        eventually(timeout, &format!("{n} nodes see each other"), || {
            sees_alive(g, &ids)
        })
        .await;
    }
    nodes
}

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

/// A WebSocket client of the tests.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Runs the dialer's half of the link handshake over `ws` as `identity` (what a member does
/// before its first frame); returns the server's proven id.
pub async fn ws_handshake(ws: &mut Ws, identity: &gossip_core::Identity) -> NodeId {
    ws_handshake_keyed(ws, identity).await.0
}

/// [`ws_handshake`], also returning the link key the handshake agreed.
pub async fn ws_handshake_keyed(
    ws: &mut Ws,
    identity: &gossip_core::Identity,
) -> (NodeId, ClusterKey) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    static NONCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    // Fresh per connection: a counter in a per-process random-enough prefix is all a test needs.
    let mut nonce = [0u8; 32];
    nonce[..8].copy_from_slice(
        &NONCES
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_be_bytes(),
    );
    nonce[8..16].copy_from_slice(&u64::from(std::process::id()).to_be_bytes());
    let mut handshake = gossip_core::link::Handshake::dial(nonce, None);
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("the server runs its half of the handshake")
            .expect("open")
            .expect("no error");
        let Message::Binary(bytes) = msg else {
            panic!("expected a handshake message, got {msg:?}");
        };
        let step = handshake.on_message(identity, &bytes).unwrap();
        if let Some(reply) = step.reply {
            ws.send(Message::Binary(reply.into())).await.unwrap();
        }
        if let (Some(peer), Some(key)) = (step.peer, step.key) {
            return (peer, key);
        }
    }
}

pub async fn ws_connect(url: &str, origin: Option<&str>) -> Ws {
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// Reads until the server closes; returns the close code and reason.
pub async fn close_of(ws: &mut Ws) -> (u16, String) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(m) = futures_util::StreamExt::next(ws).await {
            match m {
                Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f))) => {
                    return (u16::from(f.code), f.reason.to_string());
                }
                Ok(tokio_tungstenite::tungstenite::Message::Close(None)) | Err(_) => {
                    return (0, String::new());
                }
                Ok(_) => {}
            }
        }
        (0, String::new())
    })
    .await
    .expect("the server closes the connection")
}

use gossip_core::hlc::Hlc;
use gossip_core::message::{Alive, Broadcast, Message, Sync, sync_phase};
use gossip_core::{Address, Codec, Identity, Keyring, Limits, ReplayConfig, SignedPacket};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Makes frames the way a member (or an attacker holding some key) would.
#[derive(Debug)]
pub struct Forger {
    pub identity: Identity,
    codec: Codec,
    hlc: Hlc,
    rng: ChaCha20Rng,
}

impl Forger {
    pub fn new(seed: u8, key: Option<ClusterKey>) -> Forger {
        let keyring = key.map(Keyring::new).unwrap_or_else(Keyring::unencrypted);
        let identity = Identity::from_secret_bytes([seed; 32]);
        Forger {
            codec: Codec::new(
                identity.clone(),
                keyring,
                Limits::default(),
                ReplayConfig::default(),
            ),
            identity,
            hlc: Hlc::new(60_000),
            rng: ChaCha20Rng::from_seed([seed; 32]),
        }
    }

    pub fn id(&self) -> NodeId {
        self.identity.id()
    }

    /// Runs the dialer's half of the handshake over `ws`; returns the server's proven id.
    pub async fn link(&mut self, ws: &mut Ws) -> NodeId {
        ws_handshake(ws, &self.identity).await
    }

    /// The message a frame carries, when it opens with the cluster key.
    pub fn open(&mut self, frame: &[u8]) -> Option<Message> {
        self.codec.decode(frame, wall_ms()).ok().map(|i| i.message)
    }

    pub fn packet(&mut self, message: Message) -> SignedPacket {
        let ts = self.hlc.now(wall_ms());
        self.codec.sign(ts, &message).unwrap()
    }

    pub fn seal(&mut self, packet: &SignedPacket) -> Vec<u8> {
        self.codec.seal(&mut self.rng, 0, packet).unwrap()
    }

    pub fn broadcast(&mut self, text: &str) -> SignedPacket {
        self.packet(
            Broadcast {
                topic: "t".into(),
                data: text.as_bytes().to_vec().into(),
            }
            .into(),
        )
    }

    /// A join announcing this forger as a member relayed by `server`.
    pub fn join_via(&mut self, server: NodeId) -> Vec<u8> {
        let name = format!("forger-{}", self.id().short());
        self.join_as(server, &name)
    }

    /// A frame of its own carrying `message`.
    pub fn frame(&mut self, message: Message) -> Vec<u8> {
        let packet = self.packet(message);
        self.seal(&packet)
    }

    /// A join announcing this forger, named `name`, as a member relayed by `server`.
    pub fn join_as(&mut self, server: NodeId, name: &str) -> Vec<u8> {
        let alive = self.packet(
            Alive {
                incarnation: wall_ms(),
                addrs: vec![Address::Relayed(server)],
                name: name.into(),
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
