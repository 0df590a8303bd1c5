//! The chat server of `examples/chat`: one native member that serves a chat page, admits the
//! page's tabs as members without the cluster key, and takes part in the chat itself.
//! `tests/chat_example.rs` drives this same code on real sockets.
//!
//! Everything said goes by broadcast on the topic [`TOPIC`], as UTF-8 text: from a tab (the page
//! sends bytes, so nothing is MessagePack), from this server (a line on its stdin or a
//! `POST /api/say`), and the server's own notices when a member joins or leaves. A tab is admitted
//! by [`Admission::open`] with a grant that allows only names starting with [`TAB_PREFIX`] and only
//! the topic [`TOPIC`]: what a tab says on any other topic is dropped by this server and counted
//! (`forbidden`), and never reaches anyone.
//!
//! What a member says is hostile input: a line is printed and forwarded only after control
//! characters are removed (no terminal escapes on the operator's screen) and it is cut to
//! [`MAX_LINE`] bytes; the page shows text with `textContent`, never as HTML.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gossip_server::gossip_core::{ClusterKey, Config, Event, Grant, NodeId};
use gossip_server::{Admission, Gossip, GossipConfig, GossipError, StartError};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Tabs are admitted under names starting with this.
pub const TAB_PREFIX: &str = "tab-";
/// The one topic tabs may use.
pub const TOPIC: &str = "chat";
/// The server's member name.
pub const SERVER_NAME: &str = "chat-server";
/// Longest chat line kept, in bytes (longer ones are cut on a character boundary).
pub const MAX_LINE: usize = 1_000;
/// Longest member name shown, in bytes.
const MAX_NAME: usize = 64;
/// Frames per second (and burst) a tab may send: chat lines plus its share of the protocol
/// (pings, acks, syncs), far above what a person types and low enough to bound a flood.
const TAB_RATE: (u32, u32) = (200, 400);
/// Lines buffered for a slow reader of [`Chat::lines`] before it misses some.
const LINE_BUFFER: usize = 256;
/// Files the package may hold at most, and the largest one served.
const MAX_PACKAGE_FILES: usize = 64;
const MAX_PACKAGE_FILE: u64 = 16 * 1024 * 1024;
const INDEX: &str = include_str!("static/index.html");
const SCRIPT: &str = include_str!("static/chat.js");
const STYLE: &str = include_str!("static/chat.css");
const JS: &str = "text/javascript; charset=utf-8";

/// Why the chat server cannot start or a line cannot be said, by cause.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The `gossip-wasm` npm package the page loads is missing or unreadable.
    #[error(
        "the gossip-wasm package in {dir}: {reason} (build it with `cargo xtask wasm`, or run `cargo xtask chat`)"
    )]
    Package {
        /// The package folder.
        dir: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Where.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The member did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The member refused a command (it stopped, the line is too large for a broadcast...).
    #[error(transparent)]
    Gossip(#[from] GossipError),
    /// A line to say is empty once cleaned, or longer than [`MAX_LINE`].
    #[error("a chat line must be 1 to {MAX_LINE} bytes of text")]
    BadLine,
    /// The OS random generator failed.
    #[error("OS random generator: {0}")]
    Random(String),
}

/// What the server is started with.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address of the page, the WebSocket route and the member's UDP/TCP port (advertised to
    /// tabs, so not 0.0.0.0).
    pub bind: IpAddr,
    /// Port of the page and the WebSocket route (0: any free port).
    pub port: u16,
    /// The `gossip-wasm` npm package (`cargo xtask wasm` builds it in `gossip-wasm/pkg`).
    pub pkg_dir: PathBuf,
    /// The engine's timings; the page's node uses the preset named [`PRESET`].
    pub core: Config,
}

/// The timing preset of the tabs, matching [`Config::local`].
pub const PRESET: &str = "local";

/// A running chat server.
#[derive(Debug)]
pub struct Chat {
    gossip: Gossip,
    addr: SocketAddr,
    lines: broadcast::Sender<String>,
    stop: CancellationToken,
    http: JoinHandle<()>,
    events: JoinHandle<()>,
}

#[derive(Debug, Clone)]
struct AppState {
    gossip: Gossip,
    lines: broadcast::Sender<String>,
    package: Arc<Package>,
    seed: String,
}

impl Chat {
    /// Starts the member and serves the page; returns once both listen.
    pub async fn start(options: Options) -> Result<Chat, ChatError> {
        let package = Arc::new(Package::load(&options.pkg_dir)?);
        let addr = SocketAddr::new(options.bind, options.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ChatError::Listen { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ChatError::Listen { addr, source })?;
        let grant = Grant::new()
            .with_name_prefix(TAB_PREFIX)
            .with_topics([TOPIC])
            .with_rate(TAB_RATE.0, TAB_RATE.1);
        // The key and token exist only in this process: no tab ever needs them. The token keeps
        // `/gossip/status` (members' names and addresses) closed; tabs go to the admission hook.
        let cfg = GossipConfig::new(options.core.with_name(SERVER_NAME))
            .with_key(ClusterKey::from_bytes(random_bytes()?))
            .with_token(hex(&random_bytes()?[..16]))
            .with_admission(Admission::open(grant))
            .with_bind(SocketAddr::new(options.bind, 0));
        let gossip = Gossip::start(cfg).await?;
        let seed = format!("ws://{addr}/gossip/ws");
        if let Err(e) = gossip.advertise_ws(seed.clone()).await {
            gossip.kill().await;
            return Err(e.into());
        }
        let (lines, _) = broadcast::channel(LINE_BUFFER);
        let events = tokio::spawn(follow(gossip.clone(), gossip.subscribe(), lines.clone()));
        let app = router(AppState {
            gossip: gossip.clone(),
            lines: lines.clone(),
            package,
            seed,
        });
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let http = tokio::spawn(async move {
            let server =
                axum::serve(listener, app).with_graceful_shutdown(stopped.cancelled_owned());
            if let Err(e) = server.await {
                warn!("chat http server: {e}");
            }
        });
        Ok(Chat {
            gossip,
            addr,
            lines,
            stop,
            http,
            events,
        })
    }

    /// The page's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The member (to read its status, or to stop it).
    pub fn gossip(&self) -> &Gossip {
        &self.gossip
    }

    /// Every chat line from now on, as printed: `name: text` for what a member said (`name
    /// [topic]: text` off the chat topic, which only another full member could send), and
    /// `* name joined` / `* name left` for membership.
    pub fn lines(&self) -> broadcast::Receiver<String> {
        self.lines.subscribe()
    }

    /// Says `text` as the server: broadcast on [`TOPIC`] and shown in [`Chat::lines`].
    pub async fn say(&self, text: &str) -> Result<(), ChatError> {
        say(&self.gossip, &self.lines, text).await
    }

    /// Leaves the cluster (every tab sees the server leave) and stops serving.
    pub async fn shutdown(self) {
        self.gossip.shutdown().await;
        self.events.abort();
        // Open page requests (and tabs' WebSockets, which the member closed) end first.
        self.stop.cancel();
        if let Err(e) = self.http.await {
            warn!("chat http task: {e}");
        }
    }
}

async fn say(
    gossip: &Gossip,
    lines: &broadcast::Sender<String>,
    text: &str,
) -> Result<(), ChatError> {
    let text = clean(text, MAX_LINE + 1);
    if text.is_empty() || text.len() > MAX_LINE {
        return Err(ChatError::BadLine);
    }
    gossip.broadcast(TOPIC, text.clone().into_bytes()).await?;
    // A broadcast does not come back to its sender: show it here.
    let _ = lines.send(format!("{SERVER_NAME}: {text}"));
    Ok(())
}

/// Follows the member's events: prints what is said, and announces joins and leaves.
async fn follow(
    gossip: Gossip,
    mut events: broadcast::Receiver<Event>,
    lines: broadcast::Sender<String>,
) {
    // Names of the members seen join, dropped when they go (so this stays as large as the
    // cluster). A member whose join this task missed is looked up in the member list.
    let mut names: HashMap<NodeId, String> = HashMap::new();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!("missed {n} events");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let notice = match event {
            Event::MemberJoined { id, name } => {
                let name = clean(&name, MAX_NAME);
                names.insert(id, name.clone());
                format!("* {name} joined")
            }
            Event::MemberLeft { id } => {
                format!("* {} left", take_name(&gossip, &mut names, id).await)
            }
            Event::MemberDead { id } => format!(
                "* {} left (connection lost)",
                take_name(&gossip, &mut names, id).await
            ),
            Event::Broadcast { from, topic, data } => {
                let name = name_of(&gossip, &names, from).await;
                let text = clean(&String::from_utf8_lossy(&data), MAX_LINE);
                let line = if topic == TOPIC {
                    format!("{name}: {text}")
                } else {
                    format!("{name} [{}]: {text}", clean(&topic, MAX_NAME))
                };
                let _ = lines.send(line);
                continue;
            }
            _ => continue,
        };
        let _ = lines.send(notice.clone());
        // Tell the tabs too: the notice is the server's own line.
        if let Err(e) = gossip.broadcast(TOPIC, notice.into_bytes()).await {
            debug!("cannot post a notice: {e}");
        }
    }
}

async fn name_of(gossip: &Gossip, names: &HashMap<NodeId, String>, id: NodeId) -> String {
    if let Some(name) = names.get(&id) {
        return name.clone();
    }
    let members = gossip.members().await.unwrap_or_default();
    members
        .iter()
        .find(|m| m.id == id)
        .map_or_else(|| id.short(), |m| clean(&m.name, MAX_NAME))
}

async fn take_name(gossip: &Gossip, names: &mut HashMap<NodeId, String>, id: NodeId) -> String {
    match names.remove(&id) {
        Some(name) => name,
        None => name_of(gossip, names, id).await,
    }
}

/// `text` without control characters (terminal escapes, newlines that would forge a line),
/// cut to at most `max` bytes on a character boundary.
pub fn clean(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out.trim().to_string()
}

fn router(state: AppState) -> Router {
    let gossip = state.gossip.clone();
    Router::new()
        .route(
            "/",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route("/chat.js", get(|| async { file(JS, SCRIPT) }))
        .route(
            "/chat.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
        .route("/pkg/{*path}", get(package_file))
        .route("/api/config", get(config))
        .route("/api/status", get(status))
        .route(
            "/api/say",
            // A little more than a line, so an overlong one is refused as such, not cut off.
            post(say_handler).layer(DefaultBodyLimit::max(MAX_LINE * 4)),
        )
        .with_state(state)
        .nest("/gossip", gossip.router())
}

fn file(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.into(),
    )
        .into_response()
}

async fn package_file(State(state): State<AppState>, UrlPath(path): UrlPath<String>) -> Response {
    // Only the names read at start are served: nothing else on disk is reachable.
    match state.package.files.get(&path) {
        Some((ct, body)) => file(ct, body.clone()),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// What the page joins with: no cluster key and no token, only where and as what.
async fn config(State(state): State<AppState>) -> Response {
    axum::Json(serde_json::json!({
        "seeds": [state.seed],
        "name_prefix": TAB_PREFIX,
        "topic": TOPIC,
        "config": PRESET,
        "package": format!("/pkg/{}", state.package.entry),
        "server": SERVER_NAME,
        "max_line": MAX_LINE,
    }))
    .into_response()
}

/// Who is in the chat and what the server refused (counts only), for the page's curious user
/// and the end-to-end test.
async fn status(State(state): State<AppState>) -> Response {
    match state.gossip.status().await {
        Ok(s) => {
            let members: Vec<_> = s
                .members
                .iter()
                .map(|m| serde_json::json!({ "name": m.name, "state": m.state }))
                .collect();
            axum::Json(serde_json::json!({
                "members": members,
                "forbidden": s.counters.drops.get("forbidden").copied().unwrap_or(0),
                "rate_limited": s.counters.drops.get("rate_limited").copied().unwrap_or(0),
            }))
            .into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn say_handler(State(state): State<AppState>, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "the body must be UTF-8 text").into_response();
    };
    match say(&state.gossip, &state.lines, text).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e @ ChatError::BadLine) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// The files of the npm package, read once at start and held in memory.
#[derive(Debug)]
struct Package {
    files: HashMap<String, (&'static str, Bytes)>,
    /// The browser entry (`package.json`'s `browser`, else `module`, else `main`).
    entry: String,
}

impl Package {
    fn load(dir: &Path) -> Result<Package, ChatError> {
        let fail = |reason: String| ChatError::Package {
            dir: dir.display().to_string(),
            reason,
        };
        let mut files = HashMap::new();
        let mut pending = vec![(dir.to_path_buf(), String::new())];
        while let Some((path, prefix)) = pending.pop() {
            let entries =
                std::fs::read_dir(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
            for entry in entries {
                let entry = entry.map_err(|e| fail(e.to_string()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let meta = entry.metadata().map_err(|e| fail(e.to_string()))?;
                let rel = format!("{prefix}{name}");
                if meta.is_dir() {
                    if name != "node_modules"
                        && !name.starts_with('.')
                        && prefix.matches('/').count() < 3
                    {
                        pending.push((entry.path(), format!("{rel}/")));
                    }
                    continue;
                }
                if files.len() == MAX_PACKAGE_FILES {
                    return Err(fail(format!("more than {MAX_PACKAGE_FILES} files")));
                }
                if meta.len() > MAX_PACKAGE_FILE {
                    return Err(fail(format!("{rel} is over {MAX_PACKAGE_FILE} bytes")));
                }
                let bytes = std::fs::read(entry.path()).map_err(|e| fail(format!("{rel}: {e}")))?;
                files.insert(rel, (content_type(&name), Bytes::from(bytes)));
            }
        }
        let manifest = files
            .get("package.json")
            .ok_or_else(|| fail("no package.json".into()))?;
        let manifest: serde_json::Value =
            serde_json::from_slice(&manifest.1).map_err(|e| fail(format!("package.json: {e}")))?;
        let entry = ["browser", "module", "main"]
            .iter()
            .find_map(|k| manifest.get(k).and_then(|v| v.as_str()))
            .ok_or_else(|| fail("package.json names no browser, module or main file".into()))?
            .trim_start_matches("./")
            .to_string();
        if !files.contains_key(&entry) {
            return Err(fail(format!(
                "package.json names {entry}, which is missing"
            )));
        }
        if !files.keys().any(|f| f.ends_with(".wasm")) {
            return Err(fail("no .wasm file".into()));
        }
        Ok(Package { files, entry })
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js" | "mjs") => JS,
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

fn random_bytes() -> Result<[u8; 32], ChatError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ChatError::Random(e.to_string()))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
