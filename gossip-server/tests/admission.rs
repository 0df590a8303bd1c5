//! Members without the cluster key, admitted by the web app's hook (issue 14): a client the hook
//! refuses gets 4406 and the hook's reason; an admitted one joins over a link sealed with its
//! handshake's key, never receives a frame the cluster key opens, and what its grant does not
//! allow is refused and counted while the cluster carries on.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use gossip_core::message::{Ack, Broadcast, MembershipMessage, Message, Suspect};
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
    // Both statuses say who admitted it (what the dashboard shows), and nothing of the others.
    eventually(
        T,
        "both statuses name the tab's admitting server",
        || async {
            let mut ok = true;
            for g in [&s, &m] {
                let st = status(g).await;
                for member in &st.members {
                    let want = (member.id == tab_id.to_string()).then(|| s_id.to_string());
                    ok &= member.admitted_by == want;
                    ok &= member.admission_expires_ms.is_some() == want.is_some();
                }
                ok &= st
                    .members
                    .iter()
                    .filter(|x| x.id == tab_id.to_string())
                    .all(|x| x.admission_expires_ms.is_some_and(|e| e > wall_ms()));
            }
            ok
        },
    )
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

/// `bytes` as lower-case hex.
fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `bytes` in base64 with `alphabet`, unpadded.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The forms a secret could be written in: raw, hex (either case), and base64 (standard and URL
/// alphabets) at each of the three alignments it can have inside a longer base64 text (the
/// characters that depend only on the secret's own bytes).
fn encodings(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![
        secret.to_vec(),
        hex_lower(secret).into_bytes(),
        hex_lower(secret).to_uppercase().into_bytes(),
    ];
    for alphabet in [STD, URL] {
        for shift in 0..3usize {
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(secret);
            let text = base64(&shifted, alphabet);
            // Drop the characters that mix in the prefix, and the last (it mixes in what follows).
            let skip = (shift * 8).div_ceil(6);
            let inner = &text.as_bytes()[skip..text.len() - 1];
            forms.push(inner.to_vec());
        }
    }
    forms
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_secret_scan_finds_each_encoding() {
    // The scan below can fail: the key is found inside longer texts that carry it in each
    // encoding, at each base64 alignment, and not in a text that does not.
    let secret = key();
    let forms = encodings(secret.as_bytes());
    let found = |text: &[u8]| forms.iter().any(|f| contains(text, f));
    for prefix in 0..3usize {
        let mut carried = vec![7u8; prefix];
        carried.extend_from_slice(secret.as_bytes());
        carried.extend_from_slice(b"tail");
        for alphabet in [STD, URL] {
            let text = format!("{{\"k\":\"{}\"}}", base64(&carried, alphabet));
            assert!(found(text.as_bytes()), "{text}");
        }
        assert!(found(&carried));
        assert!(found(hex_lower(&carried).as_bytes()));
        assert!(found(hex_lower(&carried).to_uppercase().as_bytes()));
    }
    let other = base64(&[9u8; 40], STD);
    assert!(!found(other.as_bytes()) && !found(&[9u8; 40]));
    assert_eq!(base64(b"Man", STD), "TWFu");
    assert_eq!(base64(b"Ma", STD), "TWE");
    assert_eq!(hex_lower(&[0xab, 0x01]), "ab01");
}

/// Every byte a server sends an admitted member, over join, steady state and a rotation of the
/// cluster key, is scanned for the old and the new key and the token in every usual encoding:
/// none is there, and each frame opens with the link's own key, before and after the rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_key_and_token_never_reach_an_admitted_member() {
    let (s, url) = admitting_server().await;
    let m = udp_node("m", &[seed_of(&s)]).await;
    let (s_id, m_id) = (s.id(), m.id());
    eventually(T, "s and m see each other", || async {
        sees_alive(&s, &[s_id, m_id]).await && sees_alive(&m, &[s_id, m_id]).await
    })
    .await;

    // Everything the server sends is recorded from the upgrade on, the handshake included.
    let ws = ws_connect(&format!("{url}?user=tab5"), None).await;
    let (mut tx, mut rx) = ws.split();
    let (recv_tx, mut received) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            let bytes = match msg {
                WsMessage::Binary(b) => b.to_vec(),
                WsMessage::Text(t) => t.as_bytes().to_vec(),
                WsMessage::Close(Some(f)) => f.reason.as_bytes().to_vec(),
                other => other.into_data().to_vec(),
            };
            if recv_tx.send(bytes).is_err() {
                return;
            }
        }
    });
    let mut record: Vec<Vec<u8>> = Vec::new();
    let identity = Identity::from_secret_bytes([50; 32]);
    let mut handshake = gossip_core::link::Handshake::dial([50; 32], None);
    let (server, link_key) = loop {
        let bytes = tokio::time::timeout(T, received.recv())
            .await
            .expect("the server runs its half of the handshake")
            .expect("open");
        record.push(bytes.clone());
        let step = handshake.on_message(&identity, &bytes).unwrap();
        if let Some(reply) = step.reply {
            tx.send(bin(reply)).await.unwrap();
        }
        if let (Some(peer), Some(key)) = (step.peer, step.key) {
            break (peer, key);
        }
    };
    assert_eq!(server, s_id);
    let mut tab = Forger::new(50, Some(link_key.clone()));
    let tab_id = tab.id();
    tx.send(bin(tab.join_as(s_id, "tab-50"))).await.unwrap();
    let mut side = TabSide {
        tab,
        linked: Codec::new(
            Identity::from_secret_bytes([51; 32]),
            Keyring::new(link_key),
            Limits::default(),
            ReplayConfig::default(),
        ),
        tx,
        received,
        record,
        opened: 0,
        heard: Vec::new(),
    };

    // Join: both full members see the tab.
    side.pump(|t| t.opened >= 1, "the first frame after the join")
        .await;
    eventually(T, "both full members see the tab", || async {
        state_of(&s, &tab_id).await.as_deref() == Some("alive")
            && state_of(&m, &tab_id).await.as_deref() == Some("alive")
    })
    .await;
    // Steady state: a broadcast of m's reaches the tab, and probes go on.
    m.broadcast("chat", b"before the rotation".to_vec())
        .await
        .unwrap();
    side.pump(|t| t.heard("before the rotation"), "m's first broadcast")
        .await;
    let before = side.opened;
    side.pump(
        |t| t.opened >= before + 3,
        "three more frames of steady state",
    )
    .await;

    // A rotation, step by step on both full members: the tab notices nothing.
    let new_key = gossip_core::ClusterKey::from_bytes([77; 32]);
    for g in [&s, &m] {
        g.add_key(new_key.clone()).await.unwrap();
    }
    for g in [&s, &m] {
        g.use_key(new_key.clone()).await.unwrap();
    }
    for g in [&s, &m] {
        g.remove_key(key()).await.unwrap();
    }
    m.broadcast("chat", b"after the rotation".to_vec())
        .await
        .unwrap();
    side.pump(
        |t| t.heard("after the rotation"),
        "m's broadcast after the rotation",
    )
    .await;
    let after = side.opened;
    side.pump(
        |t| t.opened >= after + 3,
        "three more frames after the rotation",
    )
    .await;
    let record = std::mem::take(&mut side.record);
    assert_eq!(state_of(&m, &tab_id).await.as_deref(), Some("alive"));

    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("the first cluster key", key().as_bytes().to_vec()),
        ("the new cluster key", new_key.as_bytes().to_vec()),
        ("the token", b"s3cret".to_vec()),
    ];
    let total: usize = record.iter().map(Vec::len).sum();
    for (what, secret) in &secrets {
        for form in encodings(secret) {
            for (i, bytes) in record.iter().enumerate() {
                assert!(
                    !contains(bytes, &form),
                    "{what} ({}) is in message {i} the server sent the tab",
                    String::from_utf8_lossy(&form)
                );
            }
        }
    }
    assert!(
        record.len() >= 10 && total > 1_000,
        "the scan saw the traffic ({} messages, {total} B)",
        record.len()
    );
    drop(side);
    m.shutdown().await;
    s.shutdown().await;
    assert_no_task_panicked();
}

/// The tab's end of the key-scan test: its link, what it read, and its answers to probes.
struct TabSide {
    tab: Forger,
    /// Opens frames sealed with the link's key.
    linked: Codec,
    tx: futures_util::stream::SplitSink<Ws, WsMessage>,
    received: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    /// Every message the server sent, in order.
    record: Vec<Vec<u8>>,
    /// Frames the link key opened.
    opened: usize,
    /// Payloads of the broadcasts that reached the tab.
    heard: Vec<Vec<u8>>,
}

impl TabSide {
    fn heard(&self, text: &str) -> bool {
        self.heard.iter().any(|p| contains(p, text.as_bytes()))
    }

    /// Reads, records and answers until `until` holds.
    async fn pump(&mut self, until: impl Fn(&TabSide) -> bool, what: &str) {
        let deadline = tokio::time::Instant::now() + T;
        let tab_id = self.tab.id();
        while !until(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let bytes = tokio::time::timeout(left, self.received.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting: {what}"))
                .expect("the link stays open");
            self.record.push(bytes.clone());
            let inbound = match self.linked.decode(&bytes, wall_ms()) {
                Ok(inbound) => inbound,
                // A copy of a frame the tab already read: it opened with the link key too.
                Err(gossip_core::WireError::Replayed(_)) => {
                    self.opened += 1;
                    continue;
                }
                Err(e) => panic!("a frame the link key does not open: {e:?}"),
            };
            self.opened += 1;
            let items: Vec<gossip_core::SignedPacket> = match inbound.message {
                Message::Membership(MembershipMessage::Ping(p)) => {
                    if p.target == tab_id {
                        let ack = Ack {
                            seq: p.seq,
                            piggyback: Vec::new(),
                        };
                        let frame = self.tab.frame(ack.into());
                        self.tx.send(bin(frame)).await.unwrap();
                    }
                    p.piggyback
                }
                Message::Membership(MembershipMessage::Ack(a)) => a.piggyback,
                Message::Membership(MembershipMessage::Gossip(g)) => g.items,
                Message::Update(_) => vec![inbound.packet],
                _ => Vec::new(),
            };
            for item in items {
                if let Ok(Message::Update(gossip_core::message::UpdateMessage::Broadcast(b))) =
                    self.linked.verify(&item)
                {
                    self.heard.push(b.data.to_vec());
                }
            }
        }
    }
}
