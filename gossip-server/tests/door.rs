//! The door of a live node, over real sockets: who gets the bearer token, who reads `/status`,
//! and what a flood of silent connections can hold.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gossip_core::Event;
use gossip_server::{Gossip, GossipConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(20);

/// One HTTP/1.1 GET over a fresh connection; returns the status code and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str, header: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let extra = header.map(|h| format!("{h}\r\n")).unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("the status route answers")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_requires_the_token_when_one_is_set() {
    watch_task_panics();
    let cfg = GossipConfig::new(fast("guarded"))
        .with_key(key())
        .with_bind(localhost())
        .with_token("s3cret");
    let g = Gossip::start(cfg).await.unwrap();
    let http = g.serve(localhost()).await.unwrap();
    let id = g.id().to_string();

    for (path, header) in [
        ("/gossip/status", None),
        ("/gossip/status", Some("Authorization: Bearer wrong")),
        ("/gossip/status?token=wrong", None),
        ("/gossip/status?token=", None),
        (
            "/gossip/status",
            Some("Sec-WebSocket-Protocol: bearer.s3cret"),
        ),
    ] {
        let (code, body) = http_get(http, path, header).await;
        assert_eq!(code, 401, "{path} {header:?}");
        assert!(!body.contains(&id), "{path} {header:?} leaks the id");
    }
    for (path, header) in [
        ("/gossip/status", Some("Authorization: Bearer s3cret")),
        ("/gossip/status?token=s3cret", None),
    ] {
        let (code, body) = http_get(http, path, header).await;
        assert_eq!(code, 200, "{path} {header:?}");
        assert!(body.contains(&id), "{path} {header:?}: {body}");
    }

    // Without a token the route stays open.
    let open = Gossip::start(
        GossipConfig::new(fast("open"))
            .with_key(key())
            .with_bind(localhost()),
    )
    .await
    .unwrap();
    let open_http = open.serve(localhost()).await.unwrap();
    let (code, body) = http_get(open_http, "/gossip/status", None).await;
    assert_eq!(code, 200);
    assert!(body.contains(&open.id().to_string()));
    g.shutdown().await;
    open.shutdown().await;
    assert_no_task_panicked();
}

/// A listener that records the request head of every connection, then hangs up.
async fn recorder() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind(localhost()).await.unwrap();
    let url = format!("ws://{}/gossip/ws", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                seen.lock().unwrap().push(text);
            });
        }
    });
    (url, heads)
}

fn heads(r: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    r.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dial_token_goes_only_to_configured_seeds() {
    watch_task_panics();
    let (seed_url, seed_heads) = recorder().await;
    let (learned_url, learned_heads) = recorder().await;

    // `b` holds the token too: neither node may hand it to an address a peer announced.
    let b = Gossip::start(
        GossipConfig::new(fast("b"))
            .with_key(key())
            .with_bind(localhost())
            .with_token("s3cret"),
    )
    .await
    .unwrap();
    // `c` announces only a WebSocket URL, which is the recorder: whoever probes `c` dials it.
    let mut c_cfg = GossipConfig::new(fast("c")).with_key(key());
    c_cfg.ws_url = Some(learned_url.clone());
    c_cfg.seeds = vec![seed_of(&b)];
    // Its one connection is to b: it never dials a, so a reaches it only by dialing its URL.
    c_cfg.limits.max_connections = 1;
    let c = Gossip::start(c_cfg).await.unwrap();
    let mut a_cfg = GossipConfig::new(fast("a"))
        .with_key(key())
        .with_bind(localhost())
        .with_token("s3cret");
    a_cfg.seeds = vec![seed_url.clone(), seed_of(&b)];
    let a = Gossip::start(a_cfg).await.unwrap();

    eventually(T, "the configured seed is dialed", || async {
        !heads(&seed_heads).is_empty()
    })
    .await;
    assert!(
        heads(&seed_heads)
            .iter()
            .all(|h| h.contains("authorization: bearer s3cret")),
        "the seed gets the token: {:?}",
        heads(&seed_heads)
    );
    eventually(T, "a dials c's announced URL", || async {
        !heads(&learned_heads).is_empty()
    })
    .await;
    for head in heads(&learned_heads) {
        assert!(
            !head.contains("authorization"),
            "the token went to an address learned from a peer: {head}"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
    assert_no_task_panicked();
}

/// A node on TCP only: every frame travels over a connection, so connection slots are all it
/// has to reach anyone.
async fn tcp_node(name: &str, seeds: &[String], f: impl FnOnce(&mut GossipConfig)) -> Gossip {
    watch_task_panics();
    let mut cfg = GossipConfig::new(fast(name)).with_key(key());
    cfg.tcp = Some(localhost());
    cfg.seeds = seeds.to_vec();
    f(&mut cfg);
    Gossip::start(cfg).await.unwrap()
}

const FLOOD: usize = 300;
const PENDING: usize = 64;
const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_hold_neither_members_slots_nor_theirs_past_the_deadline() {
    let a = tcp_node("a", &[], |c| {
        c.limits.max_connections = 16;
        c.limits.max_pending_connections = PENDING;
        c.limits.verify_within = DEADLINE;
    })
    .await;
    let b = tcp_node("b", &[seed_of(&a)], |_| {}).await;
    let ab = [a.id(), b.id()];
    eventually(T, "a and b see each other", || async {
        sees_alive(&a, &ab).await && sees_alive(&b, &ab).await
    })
    .await;

    // The flood: connections that send nothing.
    let start = tokio::time::Instant::now();
    let mut silent = Vec::new();
    for _ in 0..FLOOD {
        silent.push(TcpStream::connect(a.tcp_addr().unwrap()).await.unwrap());
    }
    eventually(T, "the flood fills the pending budget", || async {
        drops(&a, "too_many_connections").await >= (FLOOD - PENDING) as u64
    })
    .await;
    assert_eq!(status(&a).await.counters.pending_connections, PENDING);

    // A new member joins through b while the flood holds, and a reaches it: a dials c, which
    // needs a slot of the members' budget that the silent connections must not hold.
    let c = tcp_node("c", &[seed_of(&b)], |_| {}).await;
    let mut events = c.subscribe();
    let responder = c.clone();
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            if let Event::Request { from, id, .. } = e {
                let _ = responder.respond(from, id, b"here".to_vec()).await;
            }
        }
    });
    let c_id = c.id();
    eventually(T, "a learns c", || async {
        state_of(&a, &c_id).await.as_deref() == Some("alive")
    })
    .await;
    // Requests are one-shot: one sent while c's refused dial to a was still closing is lost, so
    // ask again until the answer comes (before the deadline, or the check proves nothing).
    let mut answer = Err(None);
    while start.elapsed() < DEADLINE.mul_f32(0.8) {
        match a
            .request(c_id, "ping", b"?".to_vec(), Duration::from_secs(1))
            .await
        {
            Ok(data) => {
                answer = Ok(data);
                break;
            }
            Err(e) => answer = Err(Some(e)),
        }
    }
    assert_eq!(
        answer.as_deref().ok(),
        Some(&b"here"[..]),
        "a reaches c: {answer:?} {:?}",
        status(&a).await.counters
    );
    assert!(
        start.elapsed() < DEADLINE,
        "the check ran after the deadline ({:?}): it proves nothing",
        start.elapsed()
    );
    assert_eq!(status(&a).await.counters.pending_connections, PENDING);

    // Every silent connection is closed: the refused ones at once, the pending ones at the
    // deadline (not before it).
    let mut closes = tokio::task::JoinSet::new();
    for mut s in silent {
        closes.spawn(async move {
            let mut buf = [0u8; 128];
            let mut got = 0;
            tokio::time::timeout(DEADLINE + T, async {
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    got += n;
                }
            })
            .await
            .expect("a silent connection stays open past its deadline");
            // The handshake's challenge (a refused connection gets nothing), and no frame.
            assert!(
                got == 0 || got == 4 + gossip_core::link::handshake::CHALLENGE_LEN,
                "a silent connection got {got} bytes"
            );
            start.elapsed()
        });
    }
    let mut late = 0;
    while let Some(closed_after) = closes.join_next().await {
        if closed_after.unwrap() >= DEADLINE.mul_f32(0.9) {
            late += 1;
        }
    }
    assert_eq!(
        late, PENDING,
        "exactly the pending ones waited for the deadline"
    );
    eventually(T, "the pending budget empties", || async {
        let s = status(&a).await;
        s.counters.pending_connections == 0
            && s.counters
                .drops
                .get("handshake_timeout")
                .copied()
                .unwrap_or(0)
                >= PENDING as u64
    })
    .await;
    let abc = [a.id(), b.id(), c_id];
    for g in [&a, &b, &c] {
        eventually(T, "all three see each other", || sees_alive(g, &abc)).await;
    }
    for g in [a, b, c] {
        g.shutdown().await;
    }
    assert_no_task_panicked();
}
