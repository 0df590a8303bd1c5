//! Members without the cluster key, admitted by the web app's hook (issue 14): a client the hook
//! refuses gets 4406 and the hook's reason; an admitted one joins over a link sealed with its
//! handshake's key, never receives a frame the cluster key opens, and what its grant does not
//! allow is refused and counted while the cluster carries on.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use gossip_core::message::{Broadcast, Suspect};
use gossip_core::{Codec, Event, Grant, Identity, Keyring, Limits, ReplayConfig};
use gossip_server::{Admission, Gossip, GossipConfig};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const T: Duration = Duration::from_secs(20);

/// A server whose hook admits `?user=tab...` as `tab-*` members allowed the topic `chat`, and
/// `?user=brief` for half a second; only clients it sees connect from loopback (so the hook is
/// shown the peer's address).
async fn admitting_server() -> (Gossip, String) {
    watch_task_panics();
    let hook = Admission::new(|req| async move {
        if !req.peer.is_some_and(|p| p.ip().is_loopback()) {
            return Err(format!("not from loopback: {:?}", req.peer));
        }
        match req.query.get("user").map(String::as_str) {
            Some("brief") => Ok(Grant::new()
                .with_name_prefix("tab-")
                .with_lifetime(Duration::from_millis(500))),
            Some(u) if u.starts_with("tab") => {
                Ok(Grant::new().with_name_prefix("tab-").with_topics(["chat"]))
            }
            _ => Err("unknown user".into()),
        }
    });
    let cfg = GossipConfig::new(fast("server"))
        .with_key(key())
        .with_bind(localhost())
        .with_token("s3cret")
        .with_admission(hook);
    let g = Gossip::start(cfg).await.unwrap();
    let addr = g.serve(localhost()).await.unwrap();
    (g, format!("ws://{addr}/gossip/ws"))
}

/// A frame as a WebSocket message.
fn bin(frame: Vec<u8>) -> WsMessage {
    WsMessage::Binary(frame.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_admits_a_keyless_member_and_its_grant_holds() {
    let (s, url) = admitting_server().await;
    let m = udp_node("m", &[seed_of(&s)]).await;
    let mut m_events = m.subscribe();
    let (s_id, m_id) = (s.id(), m.id());
    eventually(T, "s and m see each other", || async {
        sees_alive(&s, &[s_id, m_id]).await && sees_alive(&m, &[s_id, m_id]).await
    })
    .await;

    // Refused by the hook: 4406 and its reason.
    let mut refused = ws_connect(&format!("{url}?user=mallory"), None).await;
    let (code, reason) = close_of(&mut refused).await;
    assert_eq!(code, 4406, "{reason}");
    assert!(reason.contains("unknown user"), "{reason}");
    eventually(T, "the refusal is counted", || async {
        drops(&s, "ws_not_admitted").await >= 1
    })
    .await;

    // Admitted: no token, no cluster key.
    let mut ws = ws_connect(&format!("{url}?user=tab1"), None).await;
    let identity = Identity::from_secret_bytes([30; 32]);
    let (server, link_key) = ws_handshake_keyed(&mut ws, &identity).await;
    assert_eq!(server, s_id);
    let mut tab = Forger::new(30, Some(link_key.clone()));
    let (mut tx, mut rx) = ws.split();
    let (frames_tx, mut frames) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            if let WsMessage::Binary(b) = msg
                && frames_tx.send(b.to_vec()).is_err()
            {
                return;
            }
        }
    });
    tx.send(bin(tab.join_as(s_id, "tab-30"))).await.unwrap();
    let tab_id = tab.id();
    eventually(T, "both full members see the tab", || async {
        state_of(&s, &tab_id).await.as_deref() == Some("alive")
            && state_of(&m, &tab_id).await.as_deref() == Some("alive")
    })
    .await;

    // Forbidden: an accusation, a name outside the grant, a topic outside it.
    let m_inc = s
        .members()
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.id == m_id)
        .unwrap()
        .incarnation;
    tx.send(bin(tab.frame(
        Suspect {
            node: m_id,
            incarnation: m_inc,
        }
        .into(),
    )))
    .await
    .unwrap();
    tx.send(bin(tab.frame(
        Broadcast {
            topic: "admin".into(),
            data: b"rm -rf".to_vec().into(),
        }
        .into(),
    )))
    .await
    .unwrap();
    tx.send(bin(tab.join_as(s_id, "server"))).await.unwrap();
    eventually(T, "each forbidden word is counted", || async {
        drops(&s, "forbidden").await >= 3
    })
    .await;
    // Granted: a broadcast on `chat` reaches the other full member.
    tx.send(bin(tab.frame(
        Broadcast {
            topic: "chat".into(),
            data: b"hello from a tab".to_vec().into(),
        }
        .into(),
    )))
    .await
    .unwrap();
    tokio::time::timeout(T, async {
        loop {
            match m_events.recv().await {
                Ok(Event::Broadcast { from, topic, .. }) if from == tab_id => {
                    assert_eq!(topic, "chat", "only the granted topic reaches m");
                    return;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("the granted broadcast reaches m");
    // The cluster is unaffected: m was never suspected anywhere.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state_of(&s, &m_id).await.as_deref(), Some("alive"));
    assert_eq!(state_of(&m, &m_id).await.as_deref(), Some("alive"));

    // What the tab received: every frame opens with its link key, none with the cluster key,
    // and the cluster key's bytes are in none of them.
    let mut outsider = Codec::new(
        Identity::from_secret_bytes([31; 32]),
        Keyring::new(key()),
        Limits::default(),
        ReplayConfig::default(),
    );
    let mut linked = Codec::new(
        Identity::from_secret_bytes([32; 32]),
        Keyring::new(link_key),
        Limits::default(),
        ReplayConfig::default(),
    );
    let mut seen = 0;
    while let Ok(frame) = frames.try_recv() {
        seen += 1;
        assert!(outsider.decode(&frame, wall_ms()).is_err());
        assert!(!frame.windows(32).any(|w| w == key().as_bytes()));
        let opened = linked.decode(&frame, wall_ms());
        assert!(
            opened.is_ok() || matches!(opened, Err(gossip_core::WireError::Replayed(_))),
            "{opened:?}"
        );
    }
    assert!(seen >= 2, "the server talked to the tab ({seen} frames)");
    drop(tx);
    m.shutdown().await;
    s.shutdown().await;
    assert_no_task_panicked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_or_expired_admission_ends_everywhere() {
    let (s, url) = admitting_server().await;
    let m = udp_node("m", &[seed_of(&s)]).await;
    let (s_id, m_id) = (s.id(), m.id());
    eventually(T, "s and m see each other", || async {
        sees_alive(&s, &[s_id, m_id]).await && sees_alive(&m, &[s_id, m_id]).await
    })
    .await;
    // Revoked: closed with 4406 and the reason, and left for every member at once (the
    // revocation S signs is honoured by every member that holds the admission).
    let mut ws = ws_connect(&format!("{url}?user=tab9"), None).await;
    let (_, key) = ws_handshake_keyed(&mut ws, &Identity::from_secret_bytes([40; 32])).await;
    let mut tab = Forger::new(40, Some(key));
    ws.send(bin(tab.join_as(s_id, "tab-40"))).await.unwrap();
    let tab_id = tab.id();
    eventually(T, "m sees the tab", || async {
        state_of(&m, &tab_id).await.as_deref() == Some("alive")
    })
    .await;
    assert!(
        !s.revoke(m_id, "not a tab").await.unwrap(),
        "only admitted members"
    );
    assert!(s.revoke(tab_id, "banned").await.unwrap());
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 4406, "{reason}");
    assert!(reason.contains("revoked: banned"), "{reason}");
    eventually(T, "m sees the revoked tab left", || async {
        state_of(&m, &tab_id).await.as_deref() == Some("left")
    })
    .await;

    // A grant with a lifetime: the link closes when it ends.
    let mut ws = ws_connect(&format!("{url}?user=brief"), None).await;
    let (_, key) = ws_handshake_keyed(&mut ws, &Identity::from_secret_bytes([41; 32])).await;
    let mut brief = Forger::new(41, Some(key));
    ws.send(bin(brief.join_as(s_id, "tab-41"))).await.unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 4406, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
    eventually(T, "both ends are counted", || async {
        drops(&s, "admission_ended").await >= 2
    })
    .await;
    m.shutdown().await;
    s.shutdown().await;
    assert_no_task_panicked();
}
