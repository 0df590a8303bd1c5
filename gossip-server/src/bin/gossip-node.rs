//! `gossip-node`: one cluster member on UDP/TCP and/or WebSocket, printing membership as it changes.
//!
//! Reads commands on stdin, one per line: `meta KEY VALUE`, `unmeta KEY`, `broadcast TOPIC TEXT`,
//! `send ID TOPIC TEXT`, `request ID TOPIC TEXT`, `members`, `leave`. Ctrl-C (or `leave`) leaves
//! the cluster cleanly and exits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use gossip_core::{ClusterKey, Config, Event, NodeId};
use gossip_server::{Gossip, GossipConfig};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Preset {
    Lan,
    Wan,
    Local,
}

#[derive(Debug, Parser)]
#[command(name = "gossip-node", version, about = "Run one gossip cluster member")]
struct Args {
    /// Member name shown to the cluster.
    #[arg(long, default_value = "gossip-node")]
    name: String,
    /// UDP and TCP listen address (one port for both; port 0 picks one).
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// HTTP address of the WebSocket route (`/gossip/ws`) and status (`/gossip/status`).
    #[arg(long)]
    ws: Option<SocketAddr>,
    /// Seed to join through: host:port, tcp://, udp://, ws(s):// URL or srv+NAME (repeatable).
    #[arg(long = "join")]
    join: Vec<String>,
    /// Cluster key, 64 hex characters.
    #[arg(
        long,
        env = "GOSSIP_KEY",
        hide_env_values = true,
        conflicts_with = "key_file"
    )]
    key: Option<String>,
    /// File holding the cluster key (64 hex characters).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Metadata entry KEY=VALUE (repeatable).
    #[arg(long = "meta", value_parser = parse_meta)]
    meta: Vec<(String, String)>,
    /// Bearer token required from (and presented to) WebSocket peers.
    #[arg(long, env = "GOSSIP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM file of certificates to trust when dialing wss:// seeds (a private CA or a
    /// self-signed certificate), besides the public web roots.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Timing preset.
    #[arg(long, value_enum, default_value_t = Preset::Lan)]
    config: Preset,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Answer every request with its own data.
    #[arg(long)]
    echo: bool,
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gossip-node: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gossip-node: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let key = match (&args.key, &args.key_file) {
        (Some(k), _) => Some(k.trim().to_owned()),
        (None, Some(path)) => Some(std::fs::read_to_string(path)?.trim().to_owned()),
        (None, None) => None,
    };
    let key: Option<ClusterKey> = key
        .map(|k| k.parse().map_err(|e| format!("cluster key: {e:?}")))
        .transpose()?;
    if args.bind.is_none() && args.ws.is_none() {
        return Err("nothing to listen on: give --bind and/or --ws".into());
    }
    let core = match args.config {
        Preset::Lan => Config::lan(),
        Preset::Wan => Config::wan(),
        Preset::Local => Config::local(),
    }
    .with_name(args.name.clone());
    let mut config = GossipConfig::new(core);
    config.cluster_key = key;
    config.udp = args.bind;
    config.tcp = args.bind;
    config.seeds = args.join.clone();
    config.metadata = args
        .meta
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    if let Some(t) = &args.token {
        config = config.with_token(t.clone());
    }
    if let Some(path) = &args.tls_ca {
        let pem = std::fs::read(path).map_err(|e| format!("--tls-ca {}: {e}", path.display()))?;
        config = config.with_tls_roots_pem(&pem)?;
    }
    let gossip = Gossip::start(config).await?;
    let mut events = gossip.subscribe();
    let http = match args.ws {
        Some(addr) => Some(gossip.serve(addr).await?),
        None => None,
    };
    let status = gossip.status().await?;
    let out = Printer { json: args.json };
    out.line(
        json!({
            "event": "ready",
            "id": gossip.id().to_string(),
            "name": args.name,
            "addrs": status.addrs,
            "ws": http.map(|a| format!("ws://{a}/gossip/ws")),
            "status": http.map(|a| format!("http://{a}/gossip/status")),
        }),
        format!(
            "ready: {} ({}) at {}",
            args.name,
            gossip.id().short(),
            status.addrs.join(" ")
        ),
    );
    let mut names: HashMap<NodeId, String> = HashMap::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut terminate = terminate_signal()?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            event = events.recv() => match event {
                Ok(e) => on_event(&gossip, &out, &mut names, args.echo, e).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    out.line(json!({"event": "lagged", "missed": n}), format!("(missed {n} events)"));
                }
                Err(_) => break,
            },
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if !command(&gossip, &out, &line).await {
                        break;
                    }
                }
                _ => stdin_open = false,
            },
        }
    }
    gossip.shutdown().await;
    out.line(json!({"event": "stopped"}), "left the cluster".into());
    Ok(())
}

/// SIGTERM (what `kill` and service managers send) leaves as cleanly as Ctrl-C.
#[cfg(unix)]
fn terminate_signal() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
}

#[cfg(not(unix))]
fn terminate_signal() -> std::io::Result<NeverSignal> {
    Ok(NeverSignal)
}

#[cfg(not(unix))]
struct NeverSignal;

#[cfg(not(unix))]
impl NeverSignal {
    async fn recv(&mut self) -> Option<()> {
        std::future::pending().await
    }
}

struct Printer {
    json: bool,
}

impl Printer {
    fn line(&self, value: serde_json::Value, text: String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }
}

async fn on_event(
    gossip: &Gossip,
    out: &Printer,
    names: &mut HashMap<NodeId, String>,
    echo: bool,
    e: Event,
) {
    let name = |names: &HashMap<NodeId, String>, id: &NodeId| {
        names.get(id).cloned().unwrap_or_else(|| id.short())
    };
    let member = |kind: &str, id: &NodeId, names: &HashMap<NodeId, String>| {
        let n = name(names, id);
        out.line(
            json!({"event": kind, "id": id.to_string(), "name": n}),
            format!("{kind:>8} {n} ({})", id.short()),
        );
    };
    match e {
        Event::MemberJoined { id, name } => {
            names.insert(id, name);
            member("joined", &id, names);
        }
        Event::MemberAlive { id } => member("alive", &id, names),
        Event::MemberSuspect { id } => member("suspect", &id, names),
        Event::MemberDead { id } => member("dead", &id, names),
        Event::MemberLeft { id } => member("left", &id, names),
        Event::MetadataChanged { id, version } => {
            let meta = gossip
                .status()
                .await
                .ok()
                .and_then(|s| s.members.into_iter().find(|m| m.id == id.to_string()))
                .map(|m| m.metadata)
                .unwrap_or_default();
            let n = name(names, &id);
            out.line(
                json!({"event": "metadata", "id": id.to_string(), "name": n, "version": version, "metadata": meta}),
                format!("metadata {n}: {meta:?}"),
            );
        }
        Event::Broadcast { from, topic, data } => {
            let text = String::from_utf8_lossy(&data).into_owned();
            out.line(
                json!({"event": "broadcast", "from": from.to_string(), "topic": topic, "data": text}),
                format!("broadcast from {} [{topic}]: {text}", name(names, &from)),
            );
        }
        Event::Direct { from, topic, data } => {
            let text = String::from_utf8_lossy(&data).into_owned();
            out.line(
                json!({"event": "direct", "from": from.to_string(), "topic": topic, "data": text}),
                format!("message from {} [{topic}]: {text}", name(names, &from)),
            );
        }
        Event::Request {
            from,
            id,
            topic,
            data,
        } => {
            let text = String::from_utf8_lossy(&data).into_owned();
            out.line(
                json!({"event": "request", "from": from.to_string(), "topic": topic, "data": text}),
                format!("request from {} [{topic}]: {text}", name(names, &from)),
            );
            if echo {
                let _ = gossip.respond(from, id, data).await;
            }
        }
        _ => {}
    }
}

/// Runs one stdin command; returns false to stop.
async fn command(gossip: &Gossip, out: &Printer, line: &str) -> bool {
    let mut words = line.trim().splitn(2, ' ');
    let verb = words.next().unwrap_or("");
    let rest = words.next().unwrap_or("").trim();
    let split2 = |s: &str| -> Option<(String, String)> {
        s.split_once(' ')
            .map(|(a, b)| (a.to_owned(), b.trim().to_owned()))
    };
    let result: Result<(), String> = match verb {
        "" => Ok(()),
        "leave" => return false,
        "members" => match gossip.status().await {
            Ok(s) => {
                for m in &s.members {
                    out.line(
                        json!({"event": "member", "id": m.id, "name": m.name, "state": m.state, "addrs": m.addrs, "metadata": m.metadata}),
                        format!("{:>8} {} ({}) {}", m.state, m.name, m.short, m.addrs.join(" ")),
                    );
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        "meta" => match split2(rest) {
            Some((k, v)) => gossip.set_metadata(k, v).await.map_err(|e| e.to_string()),
            None => Err("usage: meta KEY VALUE".into()),
        },
        "unmeta" if !rest.is_empty() => gossip
            .remove_metadata(rest)
            .await
            .map_err(|e| e.to_string()),
        "broadcast" => match split2(rest) {
            Some((topic, text)) => gossip
                .broadcast(topic, text)
                .await
                .map_err(|e| e.to_string()),
            None => Err("usage: broadcast TOPIC TEXT".into()),
        },
        "send" | "request" => {
            let parsed = split2(rest).and_then(|(id, r)| {
                let id: NodeId = id.parse().ok()?;
                let (topic, text) = split2(&r)?;
                Some((id, topic, text))
            });
            match (verb, parsed) {
                ("send", Some((id, topic, text))) => gossip
                    .send(id, topic, text)
                    .await
                    .map_err(|e| e.to_string()),
                (_, Some((id, topic, text))) => {
                    match gossip
                        .request(id, topic, text, Duration::from_secs(5))
                        .await
                    {
                        Ok(data) => {
                            let text = String::from_utf8_lossy(&data).into_owned();
                            out.line(
                                json!({"event": "response", "from": id.to_string(), "data": text}),
                                format!("response from {}: {text}", id.short()),
                            );
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                _ => Err(format!("usage: {verb} ID TOPIC TEXT")),
            }
        }
        other => Err(format!("unknown command {other:?}")),
    };
    if let Err(e) = result {
        out.line(json!({"event": "error", "error": e}), format!("error: {e}"));
    }
    true
}
