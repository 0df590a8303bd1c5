//! A 3-node native cluster for the browser tests of `gossip-wasm`, driven over gossip itself.
//!
//! `wasm-cluster <port1,port2,port3> <key hex> <token> [admit]` starts three `gossip-server` nodes on
//! 127.0.0.1 (WebSocket on the given ports, UDP/TCP on free ones), prints `ready`, and answers
//! requests on topic `ctl` (MessagePack maps, the encoding `gossip-wasm` sends JSON-able values
//! in) so a browser test can check what the native side sees (members, metadata, replicated
//! state, key owners, endpoint holders) and make the natives act (broadcast, request, write state,
//! register endpoint names, request and stream by name, die). Every node echoes the streams
//! opened to it, and answers a request whose topic is an endpoint name it holds with
//! `<its name>:<the request's bytes>`. It stops when stdin closes or after `MAX_LIFETIME`,
//! whichever comes first.
//!
//! With `admit`, a client without the token is handed to every node's admission hook, which admits by the
//! `user` query parameter (see [`admit`]): `tab*` as a `tab-*` member allowed the topic `chat`,
//! `hostile*` the same at a low rate (the least-privilege test exceeds it), `brief*` for
//! [`BRIEF_MS`] only; `svc*` as a `tab-*` member that may also write its replicated state (so
//! register endpoint names) and send on the topics `orders` and `jobs*` (requests by name);
//! anyone else, and any user the `revoke` op named, is refused.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gossip_core::endpoints::Policy;
use gossip_core::{ClusterKey, Config, Event, Grant, NodeId, State, typed};
use gossip_server::{Admission, Gossip, GossipConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

/// The harness never outlives a test run, even if nobody stops it.
const MAX_LIFETIME: Duration = Duration::from_secs(600);
/// How long a `ctl` check waits for the cluster to converge.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a `brief*` user's admission lasts.
const BRIEF_MS: u64 = 3_000;
/// The rate of a `hostile*` user: frames per second, and burst.
const HOSTILE_RATE: (u32, u32) = (20, 40);

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
/// Users the hook refuses from now on (named by the `revoke` op, or a `brief*` user once admitted).
type Banned = Arc<std::sync::Mutex<HashSet<String>>>;

/// The admission hook's decision for `user`.
fn admit(user: Option<&str>, banned: &Banned) -> Result<Grant, String> {
    let user = user.ok_or("no user")?;
    let mut banned = banned.lock().map_err(|_| "hook state poisoned")?;
    if banned.contains(user) {
        return Err(format!("{user} is banned"));
    }
    let tab = Grant::new().with_name_prefix("tab-").with_topics(["chat"]);
    if user.starts_with("hostile") {
        Ok(tab.with_rate(HOSTILE_RATE.0, HOSTILE_RATE.1))
    } else if user.starts_with("brief") {
        // Once only: a tab that comes back after its admission ended is refused.
        banned.insert(user.to_owned());
        Ok(tab.with_lifetime(Duration::from_millis(BRIEF_MS)))
    } else if user.starts_with("svc") {
        Ok(Grant::new()
            .with_name_prefix("tab-")
            .with_topics(["chat", "orders", "jobs*"])
            .with_state(true))
    } else if user.starts_with("tab") {
        Ok(tab)
    } else {
        Err(format!("unknown user {user}"))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (ports, key, token, hook) = match args.as_slice() {
        [ports, key, token] => (ports, key, token, false),
        [ports, key, token, admit] if admit == "admit" => (ports, key, token, true),
        _ => {
            return Err("usage: wasm-cluster <port1,port2,port3> <key hex> <token> [admit]".into());
        }
    };
    let key: ClusterKey = key.parse()?;
    let ports: Vec<u16> = ports.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let mut nodes = Vec::new();
    let mut first_tcp: Option<SocketAddr> = None;
    let banned = Banned::default();
    for (i, port) in ports.iter().enumerate() {
        let hook_banned = banned.clone();
        let admission = Admission::new(move |req| {
            let decision = admit(req.query.get("user").map(String::as_str), &hook_banned);
            async move { decision }
        });
        let mut cfg = GossipConfig::new(Config::local().with_name(format!("n{}", i + 1)))
            .with_bind("127.0.0.1:0".parse()?)
            .with_key(key.clone())
            .with_token(token.clone())
            .with_metadata("kind", "native");
        // Without the hook a client with a wrong token is refused as unauthorized (what the
        // other browser test checks); with it, the hook decides.
        if hook {
            cfg = cfg.with_admission(admission.clone());
        }
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
        tokio::spawn(serve_ctl(g.clone(), shared.clone(), banned.clone()));
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

async fn serve_ctl(g: Gossip, nodes: Nodes, banned: Banned) {
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
            tokio::spawn(answer_by_name(g.clone(), from, id, topic, data));
            continue;
        }
        let (g, nodes, banned) = (g.clone(), nodes.clone(), banned.clone());
        tokio::spawn(async move {
            let reply = match typed::from_bytes::<Ctl>(&data) {
                Ok(ctl) => handle(&g, &nodes, &banned, from, ctl).await,
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

/// Answers a request whose topic is an endpoint name this node holds (what a request by name
/// is) with `<node name>:<the request's bytes>`; other topics get no answer.
async fn answer_by_name(
    g: Gossip,
    from: NodeId,
    id: gossip_core::RequestId,
    topic: String,
    data: Vec<u8>,
) {
    let held = g
        .with_node(move |n, _| {
            n.endpoints_held()
                .contains(&topic)
                .then(|| n.local().name.clone())
        })
        .await
        .ok()
        .flatten();
    if let Some(name) = held {
        let mut answer = format!("{name}:").into_bytes();
        answer.extend_from_slice(&data);
        let _ = g.respond(from, id, answer).await;
    }
}

/// The ids of the holders of `name` every live native resolves, sorted, one list per node.
async fn holder_views(nodes: &Nodes, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for g in live(nodes).await {
        let ids = match g.resolve(name).await {
            Ok(hs) => {
                let mut ids: Vec<String> = hs.iter().map(|h| h.id.to_string()).collect();
                ids.sort();
                ids.join(",")
            }
            Err(e) => format!("error: {e}"),
        };
        out.push(ids);
    }
    out
}

fn policy(text: &str) -> Option<Policy> {
    match text {
        "" | "any" => Some(Policy::Any),
        "nearest" => Some(Policy::Nearest),
        "all" => Some(Policy::All),
        _ => None,
    }
}

/// Opens a stream to the holder of `name`, writes `text` and reads as many bytes back.
async fn stream_by_name(g: &Gossip, name: &str, text: &str) -> Result<String, String> {
    let mut stream = g
        .open_stream_to_endpoint(name, Policy::Any)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(text.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut back = vec![0u8; text.len()];
    tokio::time::timeout(CHECK_TIMEOUT, stream.read_exact(&mut back))
        .await
        .map_err(|_| "no answer on the stream".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "{}:{}",
        stream.peer(),
        String::from_utf8_lossy(&back)
    ))
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

/// The live native nodes.
async fn live(nodes: &Nodes) -> Vec<Gossip> {
    nodes
        .lock()
        .await
        .iter()
        .filter(|g| !g.is_stopped())
        .cloned()
        .collect()
}

/// What every live native node holds of `key` in `member`'s replicated state.
async fn state_views(nodes: &Nodes, member: NodeId, key: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for g in live(nodes).await {
        let v = g.state_get(member, key).await.ok().flatten();
        out.push(v.map(|v| String::from_utf8_lossy(&v.value).into_owned()));
    }
    out
}

/// Every live node's count of drops for `reason`, as `n1=3,n2=0,...`, and their sum.
async fn drops(nodes: &Nodes, reason: &str) -> (String, u64) {
    let mut parts = Vec::new();
    let mut total = 0u64;
    for g in live(nodes).await {
        let n = match g.status().await {
            Ok(s) => s.counters.drops.get(reason).copied().unwrap_or(0),
            Err(_) => continue,
        };
        total = total.saturating_add(n);
        parts.push(format!("{}={n}", g.id().short()));
    }
    (parts.join(","), total)
}

/// Whether every live node knows exactly one member named `name`, and it is `id`.
async fn named(nodes: &Nodes, name: &str, id: NodeId) -> (bool, String) {
    let mut ok = true;
    let mut seen = Vec::new();
    for g in live(nodes).await {
        let name = name.to_owned();
        let ids: Vec<NodeId> = g
            .with_node(move |n, _| {
                n.members()
                    .filter(|m| m.name == name)
                    .map(|m| m.id)
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
        ok &= ids == [id];
        seen.push(format!("{}: {}", g.id().short(), ids.len()));
    }
    (ok, seen.join(","))
}

async fn handle(g: &Gossip, nodes: &Nodes, banned: &Banned, from: NodeId, ctl: Ctl) -> Reply {
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
        // At least `value` drops for the reason `key`, summed over the live nodes.
        "drops" => {
            let want: u64 = ctl.value.parse().unwrap_or(1);
            let ok = wait(|| async { drops(nodes, &ctl.key).await.1 >= want }).await;
            Reply {
                ok,
                detail: drops(nodes, &ctl.key).await.0,
            }
        }
        // Every live node knows one member named `key`, and it is `member`.
        "named" => {
            let ok = wait(|| async { named(nodes, &ctl.key, member).await.0 }).await;
            Reply {
                ok,
                detail: named(nodes, &ctl.key, member).await.1,
            }
        }
        // Every live node names `member`'s admitting server (the one the `value` node is).
        "admitted" => {
            let ok = wait(|| async {
                let mut all = true;
                for n in live(nodes).await {
                    let issuer = n
                        .with_node(move |x, _| x.admission_of(&member).map(|a| a.0))
                        .await
                        .ok()
                        .flatten();
                    let expected = ctl.value.parse::<NodeId>().ok();
                    all &= issuer.is_some() && issuer == expected;
                }
                all
            })
            .await;
            Reply {
                ok,
                detail: String::new(),
            }
        }
        // The hook refuses the user `key` from now on, and the server that admitted `member`
        // revokes it.
        "revoke" => {
            if let Ok(mut b) = banned.lock() {
                b.insert(ctl.key.clone());
            }
            let mut revoked = false;
            for n in live(nodes).await {
                revoked |= n
                    .revoke(member, "revoked by the test")
                    .await
                    .unwrap_or(false);
            }
            Reply {
                ok: revoked,
                detail: String::new(),
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
        // This node registers (or with `epUnregister` drops) the endpoint name `key`; the
        // detail says whether anything changed.
        "epRegister" | "epUnregister" => {
            let r = if ctl.op == "epRegister" {
                g.register_endpoint(ctl.key).await
            } else {
                g.unregister_endpoint(ctl.key).await
            };
            match r {
                Ok(changed) => Reply {
                    ok: true,
                    detail: changed.to_string(),
                },
                Err(e) => Reply {
                    ok: false,
                    detail: e.to_string(),
                },
            }
        }
        // Every live native resolves the name `key` to exactly the holders `value` (ids,
        // comma-separated, sorted; empty: none).
        "epHolders" => {
            let ok = wait(|| async {
                holder_views(nodes, &ctl.key)
                    .await
                    .iter()
                    .all(|ids| *ids == ctl.value)
            })
            .await;
            Reply {
                ok,
                detail: holder_views(nodes, &ctl.key).await.join(" | "),
            }
        }
        // This node requests `text` by the name `key` with the policy `value`; the detail is
        // one `<holder id>=<answer>` (or `<holder id>!<error>`) per holder, sorted, joined by
        // `;`.
        "epRequest" => {
            let Some(policy) = policy(&ctl.value) else {
                return Reply {
                    ok: false,
                    detail: format!("bad policy {}", ctl.value),
                };
            };
            match g
                .request_endpoint(ctl.key, policy, ctl.text.into_bytes(), CHECK_TIMEOUT)
                .await
            {
                Ok(replies) => {
                    let mut parts: Vec<String> = replies
                        .into_iter()
                        .map(|r| match r.result {
                            Ok(answer) => {
                                format!("{}={}", r.from, String::from_utf8_lossy(&answer))
                            }
                            Err(e) => format!("{}!{e}", r.from),
                        })
                        .collect();
                    parts.sort();
                    Reply {
                        ok: true,
                        detail: parts.join(";"),
                    }
                }
                Err(e) => Reply {
                    ok: false,
                    detail: e.to_string(),
                },
            }
        }
        // This node opens a stream by the name `key`, writes `text` and reads as many bytes
        // back: `<holder id>:<what came back>`.
        "epStream" => match stream_by_name(g, &ctl.key, &ctl.text).await {
            Ok(detail) => Reply { ok: true, detail },
            Err(detail) => Reply { ok: false, detail },
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
