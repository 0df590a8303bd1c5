//! A 3-node native cluster for the browser tests of `gossip-wasm`, driven over gossip itself.
//!
//! `wasm-cluster <port1,port2,port3> <key hex> <token>` starts three `gossip-server` nodes on
//! 127.0.0.1 (WebSocket on the given ports, UDP/TCP on free ones), prints `ready`, and answers
//! requests on topic `ctl` (MessagePack maps, the encoding `gossip-wasm` sends JSON-able values
//! in) so a browser test can check what the native side sees (members, metadata, replicated
//! state, key owners) and make the natives act (broadcast, request, write state, die). Every node echoes the streams
//! opened to it. It stops when stdin closes or after `MAX_LIFETIME`, whichever comes first.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gossip_core::{ClusterKey, Config, Event, NodeId, State, typed};
use gossip_server::{Gossip, GossipConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

/// The harness never outlives a test run, even if nobody stops it.
const MAX_LIFETIME: Duration = Duration::from_secs(600);
/// How long a `ctl` check waits for the cluster to converge.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Ctl {
    op: String,
    member: String,
    key: String,
    value: String,
    state: String,
    topic: String,
    text: String,
}

#[derive(Debug, Default, Serialize)]
struct Reply {
    ok: bool,
    detail: String,
}

type Nodes = Arc<Mutex<Vec<Gossip>>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ports, key, token] = args.as_slice() else {
        return Err("usage: wasm-cluster <port1,port2,port3> <key hex> <token>".into());
    };
    let key: ClusterKey = key.parse()?;
    let ports: Vec<u16> = ports.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let mut nodes = Vec::new();
    let mut first_tcp: Option<SocketAddr> = None;
    for (i, port) in ports.iter().enumerate() {
        let mut cfg = GossipConfig::new(Config::local().with_name(format!("n{}", i + 1)))
            .with_bind("127.0.0.1:0".parse()?)
            .with_key(key.clone())
            .with_token(token.clone())
            .with_metadata("kind", "native");
        if let Some(seed) = first_tcp {
            cfg = cfg.with_seed(seed.to_string());
        }
        let g = Gossip::start(cfg).await?;
        first_tcp = first_tcp.or(g.tcp_addr());
        g.serve(SocketAddr::from(([127, 0, 0, 1], *port))).await?;
        nodes.push(g);
    }
    let shared: Nodes = Arc::new(Mutex::new(nodes.clone()));
    for g in &nodes {
        tokio::spawn(serve_ctl(g.clone(), shared.clone()));
        tokio::spawn(echo_streams(g.clone()));
    }
    // Wait until the natives see each other, so the browser joins a settled cluster.
    let settled = wait(|| {
        let nodes = nodes.clone();
        async move {
            for g in &nodes {
                let alive = g
                    .with_node(|n, _| n.members().filter(|m| m.state == State::Alive).count())
                    .await
                    .unwrap_or(0);
                if alive < nodes.len() {
                    return false;
                }
            }
            true
        }
    })
    .await;
    if !settled {
        return Err("the native nodes did not see each other in time".into());
    }
    println!("ready");
    let stdin = async {
        let mut buf = [0u8; 64];
        let mut input = tokio::io::stdin();
        while input.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    };
    tokio::select! {
        _ = stdin => {}
        _ = tokio::time::sleep(MAX_LIFETIME) => eprintln!("wasm-cluster: lifetime over, stopping"),
    }
    for g in shared.lock().await.iter() {
        g.kill().await;
    }
    Ok(())
}

/// Polls `check` every 50 ms until it holds or [`CHECK_TIMEOUT`] passed.
async fn wait<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + CHECK_TIMEOUT;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn serve_ctl(g: Gossip, nodes: Nodes) {
    let mut events = g.subscribe();
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        let Event::Request {
            from,
            id,
            topic,
            data,
        } = event
        else {
            continue;
        };
        if topic != "ctl" {
            continue;
        }
        let (g, nodes) = (g.clone(), nodes.clone());
        tokio::spawn(async move {
            let reply = match typed::from_bytes::<Ctl>(&data) {
                Ok(ctl) => handle(&g, &nodes, from, ctl).await,
                Err(e) => Reply {
                    ok: false,
                    detail: e.to_string(),
                },
            };
            if let Ok(bytes) = typed::to_bytes(&reply) {
                let _ = g.respond(from, id, bytes).await;
            }
        });
    }
}

/// What every live native node sees of `member`: its state and metadata.
async fn views(nodes: &Nodes, member: NodeId) -> Vec<(String, BTreeMap<String, Vec<u8>>)> {
    let live: Vec<Gossip> = nodes
        .lock()
        .await
        .iter()
        .filter(|g| !g.is_stopped())
        .cloned()
        .collect();
    let mut out = Vec::new();
    for g in live {
        let seen = g
            .with_node(move |n, _| {
                n.member(&member)
                    .map(|m| (m.state.as_str().to_owned(), m.metadata.clone()))
            })
            .await
            .ok()
            .flatten();
        out.push(seen.unwrap_or_else(|| ("unknown".into(), BTreeMap::new())));
    }
    out
}

/// What every live native node holds of `key` in `member`'s replicated state.
async fn state_views(nodes: &Nodes, member: NodeId, key: &str) -> Vec<Option<String>> {
    let live: Vec<Gossip> = nodes
        .lock()
        .await
        .iter()
        .filter(|g| !g.is_stopped())
        .cloned()
        .collect();
    let mut out = Vec::new();
    for g in live {
        let v = g.state_get(member, key).await.ok().flatten();
        out.push(v.map(|v| String::from_utf8_lossy(&v.value).into_owned()));
    }
    out
}

async fn handle(g: &Gossip, nodes: &Nodes, from: NodeId, ctl: Ctl) -> Reply {
    let member = if ctl.member.is_empty() {
        Ok(from)
    } else {
        ctl.member.parse::<NodeId>()
    };
    let Ok(member) = member else {
        return Reply {
            ok: false,
            detail: format!("bad member id {}", ctl.member),
        };
    };
    match ctl.op.as_str() {
        "meta" => {
            let ok = wait(|| async {
                views(nodes, member).await.iter().all(|(_, meta)| {
                    meta.get(&ctl.key).map(Vec::as_slice) == Some(ctl.value.as_bytes())
                })
            })
            .await;
            Reply {
                ok,
                detail: format!("{:?}", views(nodes, member).await),
            }
        }
        "state" => {
            let ok = wait(|| async {
                views(nodes, member)
                    .await
                    .iter()
                    .all(|(state, _)| *state == ctl.state)
            })
            .await;
            let seen: Vec<String> = views(nodes, member)
                .await
                .into_iter()
                .map(|v| v.0)
                .collect();
            Reply {
                ok,
                detail: seen.join(","),
            }
        }
        "broadcast" => match typed::to_bytes(&ctl.text) {
            Ok(data) => Reply {
                ok: g.broadcast(ctl.topic, data).await.is_ok(),
                detail: String::new(),
            },
            Err(e) => Reply {
                ok: false,
                detail: e.to_string(),
            },
        },
        "request" => {
            let data = typed::to_bytes(&ctl.text).unwrap_or_default();
            match g
                .request(member, ctl.topic, data, Duration::from_secs(10))
                .await
            {
                Ok(answer) => Reply {
                    ok: true,
                    detail: typed::from_bytes::<String>(&answer)
                        .unwrap_or_else(|e| format!("undecodable answer: {e}")),
                },
                Err(e) => Reply {
                    ok: false,
                    detail: e.to_string(),
                },
            }
        }
        "kill" => {
            let victim = nodes
                .lock()
                .await
                .iter()
                .find(|n| n.id() == member)
                .cloned();
            match victim {
                Some(v) => {
                    // Answer first: the requester may be relayed through the victim.
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        v.kill().await;
                    });
                    Reply {
                        ok: true,
                        detail: String::new(),
                    }
                }
                None => Reply {
                    ok: false,
                    detail: "not a native node".into(),
                },
            }
        }
        // Answers with this node's id: what a quorum request from a tab counts.
        "ping" => Reply {
            ok: true,
            detail: g.id().to_string(),
        },
        // This node writes `key` = `value` in its own replicated state.
        "stateSet" => match g.state_set(ctl.key, ctl.value.into_bytes()).await {
            Ok(v) => Reply {
                ok: true,
                detail: v.to_string(),
            },
            Err(e) => Reply {
                ok: false,
                detail: e.to_string(),
            },
        },
        // Every live native holds `key` = `value` in `member`'s state (`value` empty: no key).
        "stateSeen" => {
            let ok = wait(|| async {
                state_views(nodes, member, &ctl.key)
                    .await
                    .iter()
                    .all(|v| v.as_deref().unwrap_or("") == ctl.value)
            })
            .await;
            Reply {
                ok,
                detail: format!("{:?}", state_views(nodes, member, &ctl.key).await),
            }
        }
        // The 3 owners of `key` as this node sees them, comma-separated.
        "owners" => match g.owners(ctl.key.into_bytes(), 3).await {
            Ok(ids) => Reply {
                ok: true,
                detail: ids
                    .iter()
                    .map(NodeId::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            },
            Err(e) => Reply {
                ok: false,
                detail: e.to_string(),
            },
        },
        other => Reply {
            ok: false,
            detail: format!("unknown op {other}"),
        },
    }
}

/// Echoes every stream opened to this node until the opener closes it.
async fn echo_streams(g: Gossip) {
    while let Some(mut stream) = g.accept_stream().await {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        let _ = stream.flush().await;
                    }
                }
            }
        });
    }
}
