//! A hub whose engine never catches up with its input must still run its timers: probes,
//! suspicion timeouts, gossip rounds and hub deliveries are what keep a cluster of relayed
//! members converged, and a hub serving many browsers always has another frame waiting.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use gossip_core::hlc::Hlc;
use gossip_core::message::{Alive, Broadcast, Gossip as GossipMsg, Sync, sync_phase};
use gossip_core::{Address, Codec, Identity, Keyring, Limits, ReplayConfig, SignedPacket};
use gossip_server::{Gossip, GossipConfig};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Joins the hub as a relayed member, then keeps a few dozen frames waiting for the hub's engine
/// until `stop` is set (tens of milliseconds of work each). Each frame is a validly signed gossip message carrying items whose
/// signatures do not match (fresh ids, so the replay guard lets them through): the hub checks
/// every one, while the flooder signs only the envelope.
async fn flood(hub: Gossip, url: String, stop: Arc<AtomicBool>) {
    let codec = Codec::new(
        Identity::from_secret_bytes([0x42; 32]),
        Keyring::new(key()),
        Limits::default(),
        ReplayConfig::default(),
    );
    let mut hlc = Hlc::new(60_000);
    let mut rng = ChaCha20Rng::from_seed([0x42; 32]);
    let alive = codec
        .sign(
            hlc.now(wall_ms()),
            &Alive {
                incarnation: wall_ms(),
                addrs: vec![Address::Relayed(hub.id())],
                name: "flooder".into(),
            }
            .into(),
        )
        .unwrap();
    let join = codec
        .sign(
            hlc.now(wall_ms()),
            &Sync {
                phase: sync_phase::JOIN,
                digest: Vec::new(),
                states: vec![alive],
            }
            .into(),
        )
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    ws_handshake(&mut ws, &Identity::from_secret_bytes([0x42; 32])).await;
    let (mut tx, mut rx) = ws.split();
    // Read whatever the hub sends, so it never closes this connection as a slow consumer.
    tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
    tx.send(WsMessage::Binary(
        codec.seal(&mut rng, 0, &join).unwrap().into(),
    ))
    .await
    .unwrap();
    let template = codec
        .sign(
            hlc.now(wall_ms()),
            &Broadcast {
                topic: "load".into(),
                data: vec![0; 16].into(),
            }
            .into(),
        )
        .unwrap();
    let mut bytes = template.as_bytes().to_vec();
    let id_at = bytes
        .windows(8)
        .position(|w| w == template.id().to_u64().to_be_bytes())
        .expect("the id is in the header");
    // An item that fails its check is not remembered, so the same ones serve every frame.
    let items: Vec<SignedPacket> = (0..1_000)
        .map(|_| {
            let id = hlc.now(wall_ms()).to_u64().to_be_bytes();
            bytes[id_at..id_at + 8].copy_from_slice(&id);
            SignedPacket::from_bytes(bytes.clone()).unwrap()
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        // Bounded: a dozen frames (about 2 MB) wait at most.
        if hub.status().await.unwrap().counters.inbound_backlog >= 12 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        for _ in 0..4 {
            let message = GossipMsg {
                items: items.clone(),
            };
            let packet = codec.sign(hlc.now(wall_ms()), &message.into()).unwrap();
            let frame = codec.seal(&mut rng, 0, &packet).unwrap();
            if tx.feed(WsMessage::Binary(frame.into())).await.is_err() {
                return;
            }
        }
        if tx.flush().await.is_err() {
            return;
        }
    }
    let _ = tx.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_flooded_with_frames_still_detects_a_dead_relayed_member() {
    let (hub, url) = ws_node("hub", &[]).await;
    // A client-only member: no listener, relayed through the hub like a browser.
    let mut cfg = GossipConfig::new(fast("browser")).with_key(key());
    cfg.seeds = vec![url.clone()];
    let member = Gossip::start(cfg).await.unwrap();
    let member_id = member.id();
    eventually(
        Duration::from_secs(10),
        "the hub sees the member",
        || async { state_of(&hub, &member_id).await.as_deref() == Some("alive") },
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let flooder = tokio::spawn(flood(hub.clone(), url, stop.clone()));
    // The flood reaches the hub's engine (its frames are refused there). Its queue need not stay
    // long: when a timer is due the driver reads out what has arrived before firing it, so a
    // status taken between two turns often sees few frames waiting.
    let refused = |s: &gossip_server::Status| s.counters.drops.get("unauthenticated").copied();
    eventually(
        Duration::from_secs(10),
        "the flood keeps the hub's engine busy",
        || async { refused(&status(&hub).await).unwrap_or(0) >= 200 },
    )
    .await;

    member.kill().await;
    // A fast config declares a silent member suspect within a second or two; a hub whose timers
    // wait for an idle moment never would while the flood lasts.
    eventually(
        Duration::from_secs(10),
        "the hub stops seeing the killed member alive while flooded",
        || async { state_of(&hub, &member_id).await.as_deref() != Some("alive") },
    )
    .await;
    let s = status(&hub).await;
    stop.store(true, Ordering::Relaxed);
    flooder.await.unwrap();
    assert!(
        s.counters
            .drops
            .get("unauthenticated")
            .copied()
            .unwrap_or(0)
            > 1_000,
        "the flood reached the engine: {:?}",
        s.counters.drops
    );
    hub.kill().await;
    assert_no_task_panicked();
}
