//! The `chat` example's server side, run as a user runs it: the same code
//! (`examples/chat/app.rs`, included below) on 127.0.0.1 port 0. It serves the page, its script
//! and the wasm package (only those files), tells the page where to join without any secret,
//! admits a WebSocket client as a `tab-*` member, prints and announces what it says, refuses
//! what its grant does not allow, and says lines of its own. The browser side is
//! `examples/chat/e2e/chat.mjs` (`cargo xtask chat-e2e`, part of `cargo xtask test`).

#[path = "../examples/chat/app.rs"]
mod app;
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use gossip_core::message::Broadcast;
use gossip_core::{Identity, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const T: Duration = Duration::from_secs(20);

/// A package folder shaped like `gossip-wasm/pkg`: a manifest, the browser entry, a `.wasm`.
fn fake_package(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chat-pkg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("web")).unwrap();
    std::fs::write(
        dir.join("package.json"),
        r#"{"name":"gossip-wasm","browser":"./index.js","main":"./node.js"}"#,
    )
    .unwrap();
    std::fs::write(dir.join("index.js"), "export class GossipNode {}").unwrap();
    std::fs::write(dir.join("web/gossip_wasm_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    dir
}

async fn start(tag: &str) -> (app::Chat, PathBuf) {
    watch_task_panics();
    let dir = fake_package(tag);
    let chat = app::Chat::start(app::Options {
        bind: "127.0.0.1".parse().unwrap(),
        port: 0,
        pkg_dir: dir.clone(),
        core: fast("unused"),
    })
    .await
    .expect("the chat server starts");
    (chat, dir)
}

/// One HTTP/1.1 request over a fresh connection: (status, content type, body).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(T, conn.read_to_end(&mut raw))
        .await
        .expect("the server answers")
        .unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, content_type, raw[split + 4..].to_vec())
}

/// Waits for a line `accept` takes; every line seen on the way is kept in `seen`.
async fn line(
    lines: &mut broadcast::Receiver<String>,
    seen: &mut Vec<String>,
    what: &str,
    accept: impl Fn(&str) -> bool,
) {
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, lines.recv()).await {
            Ok(Ok(l)) => {
                seen.push(l.clone());
                if accept(&l) {
                    return;
                }
            }
            Ok(Err(e)) => panic!("lines ended ({e}) waiting for {what}; saw {seen:?}"),
            Err(_) => panic!("no line {what} within {T:?}; saw {seen:?}"),
        }
    }
}

/// A WebSocket client that joins as an admitted member named `name`; returns its sender half
/// (frames it receives are read and dropped), its id and its forger.
async fn tab(
    seed: &str,
    seed_byte: u8,
    name: &str,
) -> (
    futures_util::stream::SplitSink<Ws, WsMessage>,
    NodeId,
    Forger,
) {
    let mut ws = ws_connect(seed, None).await;
    let identity = Identity::from_secret_bytes([seed_byte; 32]);
    let (server, link_key) = ws_handshake_keyed(&mut ws, &identity).await;
    let mut forger = Forger::new(seed_byte, Some(link_key));
    let (mut tx, mut rx) = futures_util::StreamExt::split(ws);
    tokio::spawn(async move { while futures_util::StreamExt::next(&mut rx).await.is_some() {} });
    tx.send(WsMessage::Binary(forger.join_as(server, name).into()))
        .await
        .unwrap();
    let id = forger.id();
    (tx, id, forger)
}

fn broadcast_frame(forger: &mut Forger, topic: &str, text: &[u8]) -> WsMessage {
    WsMessage::Binary(
        forger
            .frame(
                Broadcast {
                    topic: topic.into(),
                    data: text.to_vec().into(),
                }
                .into(),
            )
            .into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_server_serves_its_page_and_only_its_package() {
    let (chat, dir) = start("page").await;
    let addr = chat.addr();
    let (status, ct, body) = http(addr, "GET", "/", b"").await;
    assert_eq!((status, ct.as_str()), (200, "text/html; charset=utf-8"));
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains(r#"src="/chat.js""#), "{page}");
    let (status, ct, body) = http(addr, "GET", "/chat.js", b"").await;
    assert_eq!(
        (status, ct.as_str()),
        (200, "text/javascript; charset=utf-8")
    );
    let script = String::from_utf8_lossy(&body);
    assert!(script.contains("GossipNode.create"));
    // Tabs join as admitted members: the page never asks for the cluster key.
    assert!(!script.contains("clusterKey"));
    assert_eq!(http(addr, "GET", "/chat.css", b"").await.0, 200);
    let (status, ct, body) = http(addr, "GET", "/pkg/index.js", b"").await;
    assert_eq!(
        (status, ct.as_str()),
        (200, "text/javascript; charset=utf-8")
    );
    assert_eq!(body, b"export class GossipNode {}");
    let (status, ct, _) = http(addr, "GET", "/pkg/web/gossip_wasm_bg.wasm", b"").await;
    assert_eq!((status, ct.as_str()), (200, "application/wasm"));
    for path in [
        "/pkg/../Cargo.toml",
        "/pkg/%2e%2e/Cargo.toml",
        "/pkg/web/../../Cargo.toml",
        "/pkg/nope.js",
        "/favicon.ico",
    ] {
        assert_eq!(http(addr, "GET", path, b"").await.0, 404, "{path}");
    }

    let (status, ct, body) = http(addr, "GET", "/api/config", b"").await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let config: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(config["seeds"][0], format!("ws://{addr}/gossip/ws"));
    assert_eq!(config["name_prefix"], "tab-");
    assert_eq!(config["topic"], "chat");
    assert_eq!(config["config"], "local");
    assert_eq!(config["package"], "/pkg/index.js");
    assert_eq!(config["server"], app::SERVER_NAME);
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains("key") && !text.contains("token"), "{text}");
    // The member's own status stays behind its token.
    assert_eq!(http(addr, "GET", "/gossip/status", b"").await.0, 401);

    chat.shutdown().await;
    assert_no_task_panicked();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_missing_package_is_a_typed_error_that_says_how_to_build_it() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("chat-no-pkg-{}", std::process::id()));
    let err = runtime
        .block_on(app::Chat::start(app::Options {
            bind: "127.0.0.1".parse().unwrap(),
            port: 0,
            pkg_dir: dir,
            core: fast("unused"),
        }))
        .unwrap_err();
    assert!(matches!(err, app::ChatError::Package { .. }), "{err:?}");
    assert!(err.to_string().contains("cargo xtask"), "{err}");
}

#[test]
fn lines_lose_control_characters_and_are_cut_on_a_character_boundary() {
    assert_eq!(
        app::clean("hi\x1b[2J\r\n* root joined", 100),
        "hi[2J* root joined"
    );
    assert_eq!(app::clean("  spaced\t ", 100), "spaced");
    assert_eq!(app::clean("ééé", 5), "éé");
    assert_eq!(app::clean("\u{7}\u{0}", 10), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_is_admitted_as_a_tab_and_chats_within_its_grant() {
    let (chat, dir) = start("ws").await;
    let addr = chat.addr();
    let seed = format!("ws://{addr}/gossip/ws");
    let mut lines = chat.lines();
    let mut seen = Vec::new();

    // Admitted without token or cluster key; the server announces the join.
    let (mut tx, tab_id, mut forger) = tab(&seed, 41, "tab-rust").await;
    line(&mut lines, &mut seen, "announcing tab-rust", |l| {
        l == "* tab-rust joined"
    })
    .await;
    eventually(T, "the server sees the tab alive", || async {
        state_of(chat.gossip(), &tab_id).await.as_deref() == Some("alive")
    })
    .await;

    // What it says on the chat topic is printed, cleaned of control characters.
    tx.send(broadcast_frame(
        &mut forger,
        "chat",
        b"hello\x1b[2J from rust",
    ))
    .await
    .unwrap();
    line(&mut lines, &mut seen, "the tab's line", |l| {
        l == "tab-rust: hello[2J from rust"
    })
    .await;

    // Another topic is outside its grant: refused, counted, never printed.
    tx.send(broadcast_frame(&mut forger, "secret", b"psst"))
        .await
        .unwrap();
    let status_forbidden = || async {
        let (status, _, body) = http(addr, "GET", "/api/status", b"").await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["forbidden"].as_u64().unwrap()
    };
    eventually(T, "the secret broadcast is refused", || async {
        status_forbidden().await >= 1
    })
    .await;
    tx.send(broadcast_frame(&mut forger, "chat", b"after the secret"))
        .await
        .unwrap();
    line(&mut lines, &mut seen, "the line after the secret", |l| {
        l == "tab-rust: after the secret"
    })
    .await;
    assert!(!seen.iter().any(|l| l.contains("psst")), "{seen:?}");

    // A name outside the grant's prefix never becomes a member.
    let before = status_forbidden().await;
    let (_tx2, mallory, _) = tab(&seed, 42, "mallory").await;
    eventually(T, "the refused join is counted", || async {
        status_forbidden().await > before
    })
    .await;
    assert_eq!(state_of(chat.gossip(), &mallory).await, None);

    // The server says lines of its own: POST /api/say (and stdin, in main.rs).
    let (status, _, _) = http(addr, "POST", "/api/say", b"hello tabs").await;
    assert_eq!(status, 204);
    line(&mut lines, &mut seen, "the server's line", |l| {
        l == format!("{}: hello tabs", app::SERVER_NAME)
    })
    .await;
    assert_eq!(http(addr, "POST", "/api/say", b" \x07 ").await.0, 400);
    assert_eq!(http(addr, "POST", "/api/say", &[0xff, 0xfe]).await.0, 400);
    let long = vec![b'a'; app::MAX_LINE + 1];
    assert_eq!(http(addr, "POST", "/api/say", &long).await.0, 400);
    assert_eq!(http(addr, "GET", "/api/say", b"").await.0, 405);
    assert!(chat.say("").await.is_err());

    // Closing the connection: the tab is gone, and the server says so.
    tx.close().await.unwrap();
    line(
        &mut lines,
        &mut seen,
        "announcing that tab-rust left",
        |l| l.starts_with("* tab-rust left"),
    )
    .await;
    let (_, _, body) = http(addr, "GET", "/api/status", b"").await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let names: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "alive")
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [app::SERVER_NAME], "{v}");

    chat.shutdown().await;
    assert_no_task_panicked();
    std::fs::remove_dir_all(dir).unwrap();
}
