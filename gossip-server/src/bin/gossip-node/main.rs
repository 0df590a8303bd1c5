//! `gossip-node`: one cluster member on UDP/TCP and/or WebSocket, printing membership as it changes.
//!
//! Reads commands on stdin, one per line (`help` lists them, see [`commands::HELP`]). Ctrl-C,
//! SIGTERM or `leave` leaves the cluster cleanly and exits. `gossip-node keygen` prints a new
//! cluster key.

mod commands;
mod key;
mod members;
mod payload;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use gossip_core::{Config, Event, NodeId};
use gossip_server::{Gossip, GossipConfig};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::commands::{Inbox, Next};
use crate::payload::{clean, show};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Preset {
    Lan,
    Wan,
    Local,
    /// LANs and data centres: crashes seen within about a second (`Config::fast()`).
    Fast,
}

#[derive(Debug, Parser)]
#[command(
    name = "gossip-node",
    version,
    about = "Run one gossip cluster member",
    after_help = commands::HELP,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Member name shown to the cluster.
    #[arg(long, default_value = "gossip-node")]
    name: String,
    /// UDP and TCP listen address (one port for both; port 0 picks one).
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// The IP other members dial, when `--bind` listens on every interface (0.0.0.0 or [::]).
    #[arg(long)]
    advertise: Option<std::net::IpAddr>,
    /// HTTP address of the WebSocket route (`/gossip/ws`) and status (`/gossip/status`).
    #[arg(long)]
    ws: Option<SocketAddr>,
    /// Seed to join through: host:port, tcp://, udp://, ws(s):// URL or srv+NAME (repeatable).
    #[arg(long = "join")]
    join: Vec<String>,
    /// Cluster key: 64 hex digits or base64 of 32 bytes (`gossip-node keygen` makes one).
    /// Repeat it during a key rotation: the first encrypts, the others are also accepted.
    /// Without a key, traffic is signed but not encrypted.
    #[arg(
        long,
        env = "GOSSIP_KEY",
        hide_env_values = true,
        conflicts_with = "key_file"
    )]
    key: Vec<String>,
    /// File holding the cluster keys, one per line as --key takes them (the first encrypts, the
    /// others are also accepted). SIGHUP re-reads it: how a key is rotated without a restart.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// File keeping this member's identity (its secret key), so a restart comes back with the
    /// same id: created with mode 0600 when missing, loaded afterwards. Without it every start
    /// is a new member.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Application versions this member understands: MIN-MAX, or one number (default 0). A peer
    /// whose range holds none of them is refused at the link handshake, and so is this member by
    /// such a peer.
    #[arg(long, value_name = "MIN-MAX", value_parser = parse_versions)]
    app_versions: Option<(u16, u16)>,
    /// Metadata entry KEY=VALUE (repeatable).
    #[arg(long = "meta", value_parser = parse_meta)]
    meta: Vec<(String, String)>,
    /// Endpoint name this node holds (repeatable): requests by name arrive as numbered requests.
    #[arg(long = "endpoint", value_name = "NAME")]
    endpoint: Vec<String>,
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a new random cluster key, in the form --key, --key-file and GOSSIP_KEY take.
    Keygen,
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))
}

fn parse_versions(s: &str) -> Result<(u16, u16), String> {
    let (min, max) = s.split_once('-').unwrap_or((s, s));
    let number = |t: &str| {
        t.trim()
            .parse::<u16>()
            .map_err(|_| format!("{s:?}: expected MIN-MAX or one version, each 0 to 65535"))
    };
    let (min, max) = (number(min)?, number(max)?);
    if min > max {
        return Err(format!("{s:?}: MIN is above MAX"));
    }
    Ok((min, max))
}

fn main() -> std::process::ExitCode {
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    if let Some(Command::Keygen) = args.command {
        return match key::generate() {
            Ok(k) => {
                println!("{k}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                error(&format!("cannot get random bytes: {e}"));
                std::process::ExitCode::FAILURE
            }
        };
    }
    // The key's source decides what an error about it names: the flag, the variable or the file.
    let key_source = match (args.key.first(), &args.key_file) {
        (Some(k), _) if matches.value_source("key") == Some(ValueSource::EnvVariable) => {
            Some(key::Source::Env(k.clone()))
        }
        (Some(_), _) => Some(key::Source::Flag(args.key.clone())),
        (None, Some(path)) => Some(key::Source::File(path.clone())),
        (None, None) => None,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error(&format!("cannot start the runtime: {e}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, key_source)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error(&e.to_string());
            std::process::ExitCode::FAILURE
        }
    }
}

/// `label: message` on stderr, the label coloured only when stderr is a terminal.
fn report(colour: &str, label: &str, message: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("\x1b[{colour}m{label}\x1b[0m: {message}");
    } else {
        eprintln!("{label}: {message}");
    }
}

fn error(message: &str) {
    report("1;31", "gossip-node: error", message);
}

fn warning(message: &str) {
    report("1;33", "gossip-node: warning", message);
}

async fn run(
    args: Args,
    key_source: Option<key::Source>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut keys = key_source
        .as_ref()
        .map(key::load)
        .transpose()?
        .unwrap_or_default()
        .into_iter();
    let key = keys.next();
    if args.bind.is_none() && args.ws.is_none() {
        return Err("nothing to listen on: give --bind and/or --ws".into());
    }
    if key.is_none() {
        warning(
            "no cluster key (--key, --key-file or GOSSIP_KEY): traffic is signed but plain text, \
             readable by anyone on the path; `gossip-node keygen` makes a key",
        );
    }
    let core = match args.config {
        Preset::Lan => Config::lan(),
        Preset::Wan => Config::wan(),
        Preset::Local => Config::local(),
        Preset::Fast => Config::fast(),
    }
    .with_name(args.name.clone());
    let mut config = GossipConfig::new(core);
    config.cluster_key = key;
    config.accepted_keys = keys.collect();
    config.identity_file = args.identity.clone();
    if let Some((min, max)) = args.app_versions {
        config = config.with_app_versions(min, max);
    }
    config.udp = args.bind;
    config.tcp = args.bind;
    config.advertise = args.advertise;
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
        config = config
            .with_tls_roots_pem(&pem)
            .map_err(|e| format!("--tls-ca {}: {e}", path.display()))?;
    }
    let gossip = Gossip::start(config).await?;
    // The node joins inside `start`: a plain `subscribe` here would miss the joins that already
    // happened. `watch` gives the members known now and every event after them.
    let watch = gossip.watch().await?;
    let mut events = watch.events;
    for name in &args.endpoint {
        gossip
            .register_endpoint(name.as_str())
            .await
            .map_err(|e| format!("--endpoint {name}: {e}"))?;
    }
    if !args.join.is_empty() {
        // A join that fails says why, instead of leaving the node alone without a word.
        let g = gossip.clone();
        tokio::spawn(async move {
            if let Err(e) = g.joined(std::time::Duration::from_secs(10)).await {
                warning(&format!("{e} (still trying)"));
            }
        });
    }
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
            "ready: {} ({}) at {}{}; type `help` for commands",
            args.name,
            gossip.id().short(),
            status.addrs.join(" "),
            http.map(|a| format!(" ws://{a}/gossip/ws"))
                .unwrap_or_default()
        ),
    );
    let mut names: HashMap<NodeId, String> = HashMap::from([(gossip.id(), args.name.clone())]);
    let mut inbox = Inbox::default();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut terminate = terminate_signal()?;
    let mut hangup = hangup_signal()?;
    // Members that joined before the watch began are reported like any later join.
    let early = watch.members.into_iter().filter(|m| m.id != gossip.id());
    for m in early.filter(|m| !m.state.is_down()) {
        let joined = Event::MemberJoined {
            id: m.id,
            name: m.name,
        };
        on_event(&gossip, out, &mut names, &mut inbox, args.echo, joined).await;
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => key::reload(&gossip, out, key_source.as_ref()).await,
            event = events.recv() => match event {
                Ok(e) => on_event(&gossip, out, &mut names, &mut inbox, args.echo, e).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    out.line(json!({"event": "lagged", "missed": n}), format!("(missed {n} events)"));
                }
                Err(_) => break,
            },
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if commands::run(&gossip, out, &mut inbox, &line).await == Next::Leave {
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

/// SIGHUP re-reads the key file.
#[cfg(unix)]
fn hangup_signal() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

#[cfg(not(unix))]
fn terminate_signal() -> std::io::Result<NeverSignal> {
    Ok(NeverSignal)
}

#[cfg(not(unix))]
fn hangup_signal() -> std::io::Result<NeverSignal> {
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

/// Prints one line per event: text for people, or one JSON object with `--json`.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    json: bool,
}

impl Printer {
    pub fn line(&self, value: serde_json::Value, text: String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }
}

async fn on_event(
    gossip: &Gossip,
    out: Printer,
    names: &mut HashMap<NodeId, String>,
    inbox: &mut Inbox,
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
            format!("{kind:>8} {} ({})", clean(&n), id.short()),
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
                format!("metadata {}: {meta:?}", clean(&n)),
            );
        }
        Event::Broadcast { from, topic, data } => {
            let (encoding, text) = show(&data);
            let n = name(names, &from);
            out.line(
                json!({"event": "broadcast", "from": from.to_string(), "name": n, "topic": topic, "data": text, "encoding": encoding.as_str()}),
                format!("broadcast from {} [{}]: {}", clean(&n), clean(&topic), clean(&text)),
            );
        }
        Event::Direct { from, topic, data } => {
            let (encoding, text) = show(&data);
            let n = name(names, &from);
            out.line(
                json!({"event": "direct", "from": from.to_string(), "name": n, "topic": topic, "data": text, "encoding": encoding.as_str()}),
                format!("message from {} [{}]: {}", clean(&n), clean(&topic), clean(&text)),
            );
        }
        Event::Request {
            from,
            id,
            topic,
            data,
        } => {
            let (encoding, text) = show(&data);
            let n = name(names, &from);
            if echo {
                out.line(
                    json!({"event": "request", "from": from.to_string(), "name": n, "topic": topic, "data": text, "encoding": encoding.as_str()}),
                    format!("request from {} [{}]: {} (echoed)", clean(&n), clean(&topic), clean(&text)),
                );
                if let Err(e) = gossip.respond(from, id, data).await {
                    out.line(
                        json!({"event": "error", "error": e.to_string()}),
                        format!("error: echo: {e}"),
                    );
                }
            } else {
                let number = inbox.add(from, n.clone(), id);
                out.line(
                    json!({"event": "request", "request": number, "from": from.to_string(), "name": n, "topic": topic, "data": text, "encoding": encoding.as_str()}),
                    format!(
                        "request #{number} from {} [{}]: {} (answer with: respond {number} TEXT)",
                        clean(&n),
                        clean(&topic),
                        clean(&text)
                    ),
                );
            }
        }
        _ => {}
    }
}
