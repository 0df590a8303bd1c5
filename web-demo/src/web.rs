//! The dashboard's HTTP side: the page and its scripts (embedded in the binary), the npm package
//! of `gossip-wasm` (read from disk at start), the cluster description the page joins with, and
//! the demo-only controls that kill and restart native members.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::cluster::{Cluster, NativeView};
use crate::error::DemoError;

/// The page and its assets, compiled into the binary so that it serves them from anywhere.
const ASSETS: [(&str, &str, &str); 4] = [
    ("app.js", JS, include_str!("../static/app.js")),
    ("graph.js", JS, include_str!("../static/graph.js")),
    ("traffic.js", JS, include_str!("../static/traffic.js")),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../static/style.css"),
    ),
];
const INDEX: &str = include_str!("../static/index.html");
const JS: &str = "text/javascript; charset=utf-8";

/// Files the package may hold at most (it has a handful: JS glue, `.wasm`, typings, package.json).
const MAX_PACKAGE_FILES: usize = 64;
/// Largest package file served.
const MAX_PACKAGE_FILE: u64 = 16 * 1024 * 1024;

/// The files of the npm package built from `gossip-wasm`, held in memory.
#[derive(Debug)]
pub struct Package {
    files: HashMap<String, (&'static str, Bytes)>,
    entry: String,
}

impl Package {
    /// Reads every file under `dir` (the package root, with its `package.json`).
    pub fn load(dir: &Path) -> Result<Package, DemoError> {
        let fail = |reason: String| DemoError::Package {
            dir: dir.display().to_string(),
            reason,
        };
        let mut files = HashMap::new();
        let mut pending: Vec<(PathBuf, String)> = vec![(dir.to_path_buf(), String::new())];
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
                    return Err(fail(format!(
                        "{rel} is larger than {MAX_PACKAGE_FILE} bytes"
                    )));
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
        let entry = ["module", "browser", "main"]
            .iter()
            .find_map(|k| manifest.get(k).and_then(|v| v.as_str()))
            .ok_or_else(|| fail("package.json names no module, browser or main file".into()))?
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

    /// The URL of the package's ES module.
    pub fn entry_url(&self) -> String {
        format!("/pkg/{}", self.entry)
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js" | "mjs") => JS,
        Some("wasm") => "application/wasm",
        Some("json" | "map") => "application/json",
        Some("ts") => "text/plain; charset=utf-8",
        Some("md" | "txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The native members.
    pub cluster: Arc<Cluster>,
    /// The wasm package.
    pub package: Arc<Package>,
}

/// The routes of the dashboard.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(asset))
        .route("/pkg/{*path}", get(package_file))
        .route("/api/cluster", get(cluster))
        .route("/api/nodes/{name}/{action}", post(control))
        .with_state(state)
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

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

async fn asset(UrlPath(name): UrlPath<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ct, body)) => file(ct, *body),
        None => not_found(),
    }
}

async fn package_file(State(state): State<AppState>, UrlPath(path): UrlPath<String>) -> Response {
    // Only names read at start are served: nothing on disk is reachable through the URL.
    match state.package.files.get(&path) {
        Some((ct, body)) => file(ct, body.clone()),
        None => not_found(),
    }
}

/// Everything the page needs to join and to explain what it sees. No cluster key: tabs join as
/// admitted members. The token opens the natives' `/status` (the end-to-end test reads it); a tab
/// that presented it would be taken for a full member and fail without the key.
#[derive(Debug, Serialize)]
struct ClusterView {
    token: String,
    /// Tab names must start with this (the natives' admission grant).
    name_prefix: &'static str,
    /// The timing preset of the native members, for the page's own node.
    config: &'static str,
    package: PackageView,
    detection: Detection,
    seeds: Vec<String>,
    natives: Vec<NativeView>,
}

#[derive(Debug, Serialize)]
struct PackageView {
    entry: String,
}

/// How fast the native members detect a crash, from their settings.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Detection {
    probe_interval_ms: u64,
    probe_timeout_ms: u64,
    /// Each member probes the others in turn, one per interval: a crashed member is probed by
    /// every other within `n - 1` intervals (`n` members, browser tabs included), and a failed
    /// probe (direct, then indirect) takes one more interval. So some member suspects it within
    /// `n` intervals, and every member knows within one more [`Detection::spread_ms`].
    suspect_within_ms: u64,
    /// How long one update is gossiped (retransmissions times the gossip interval): the time
    /// the others take to learn a suspicion, a death or a rejoin.
    spread_ms: u64,
    /// The Lifeguard suspicion timeout, shortest (many independent confirmations) and longest.
    suspicion_min_ms: u64,
    suspicion_max_ms: u64,
    /// `suspect_within_ms + suspicion_max_ms`.
    pub(crate) dead_within_ms: u64,
    /// How long a dead member stays in the tables before it is forgotten.
    dead_retention_ms: u64,
}

impl Detection {
    pub(crate) fn new(core: &gossip_core::Config, members: usize) -> Detection {
        let (min, max) = core.suspicion_timeout_ms(members);
        let spread_ms = core.gossip_interval_ms * u64::from(core.retransmit_limit(members));
        let suspect_within_ms = core.probe_interval_ms * members.max(1) as u64 + spread_ms;
        Detection {
            probe_interval_ms: core.probe_interval_ms,
            probe_timeout_ms: core.probe_timeout_ms,
            suspect_within_ms,
            spread_ms,
            suspicion_min_ms: min,
            suspicion_max_ms: max,
            dead_within_ms: suspect_within_ms + max,
            dead_retention_ms: core.dead_retention_ms,
        }
    }
}

async fn cluster(State(state): State<AppState>) -> Json<ClusterView> {
    let natives = state.cluster.view().await;
    let secrets = state.cluster.secrets();
    // Browser tabs are members too, and every member is probed in turn: size the bounds by the
    // largest membership a native member reports.
    let members = natives
        .iter()
        .filter_map(|n| n.status.as_ref()?["members"].as_array().map(Vec::len))
        .max()
        .unwrap_or(0)
        .max(natives.len());
    Json(ClusterView {
        token: secrets.token.clone(),
        name_prefix: crate::cluster::TAB_PREFIX,
        config: state.cluster.preset(),
        package: PackageView {
            entry: state.package.entry_url(),
        },
        detection: Detection::new(state.cluster.core(), members),
        seeds: state.cluster.seeds().await,
        natives,
    })
}

async fn control(
    State(state): State<AppState>,
    UrlPath((name, action)): UrlPath<(String, String)>,
) -> Result<Json<serde_json::Value>, DemoError> {
    match action.as_str() {
        "kill" => state.cluster.kill(&name).await?,
        "restart" => state.cluster.restart(&name).await?,
        _ => return Err(DemoError::UnknownAction(action)),
    }
    Ok(Json(
        serde_json::json!({ "name": name, "action": action, "ok": true }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterOptions;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A package directory with a module, its wasm, typings and a snippet subfolder.
    fn fake_package(tag: &str, manifest: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("web-demo-pkg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("snippets/x")).unwrap();
        std::fs::write(dir.join("package.json"), manifest).unwrap();
        std::fs::write(
            dir.join("gossip_wasm.js"),
            "export default async function init() {}",
        )
        .unwrap();
        std::fs::write(dir.join("gossip_wasm_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
        std::fs::write(dir.join("gossip_wasm.d.ts"), "export class GossipNode {}").unwrap();
        std::fs::write(dir.join("snippets/x/inline0.js"), "export const x = 1;").unwrap();
        dir
    }

    const MANIFEST: &str =
        r#"{"name":"gossip-wasm","module":"./gossip_wasm.js","main":"other.js"}"#;

    #[test]
    fn package_is_read_with_its_entry_and_content_types() {
        let dir = fake_package("ok", MANIFEST);
        let package = Package::load(&dir).unwrap();
        assert_eq!(package.entry_url(), "/pkg/gossip_wasm.js");
        assert_eq!(package.files["gossip_wasm_bg.wasm"].0, "application/wasm");
        assert_eq!(package.files["gossip_wasm.js"].0, JS);
        assert_eq!(package.files["snippets/x/inline0.js"].0, JS);
        assert_eq!(&package.files["gossip_wasm_bg.wasm"].1[..4], b"\0asm");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn package_without_its_entry_or_manifest_is_refused() {
        let dir = fake_package("noentry", r#"{"module":"missing.js"}"#);
        let err = Package::load(&dir).unwrap_err().to_string();
        assert!(err.contains("missing.js"), "{err}");
        std::fs::remove_file(dir.join("package.json")).unwrap();
        let err = Package::load(&dir).unwrap_err().to_string();
        assert!(err.contains("no package.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        let err = Package::load(&dir).unwrap_err().to_string();
        assert!(err.contains("cargo xtask wasm"), "{err}");
    }

    #[test]
    fn detection_bounds_follow_the_settings() {
        let core = gossip_core::Config::local();
        let d = Detection::new(&core, 5);
        let (min, max) = core.suspicion_timeout_ms(5);
        let spread = core.gossip_interval_ms * u64::from(core.retransmit_limit(5));
        assert_eq!(d.spread_ms, spread);
        assert_eq!(d.suspect_within_ms, 5 * core.probe_interval_ms + spread);
        assert_eq!((d.suspicion_min_ms, d.suspicion_max_ms), (min, max));
        assert_eq!(d.dead_within_ms, 5 * core.probe_interval_ms + spread + max);
        assert!(min < max);
    }

    /// One HTTP/1.1 request over a fresh connection: (status, content type, body).
    async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, Vec<u8>) {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).await.unwrap();
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

    /// The dashboard's routes over a cluster whose members are not started (no gossip traffic).
    async fn serve_unstarted(tag: &str) -> (SocketAddr, PathBuf) {
        let dir = fake_package(tag, MANIFEST);
        let cluster = Cluster::new(ClusterOptions {
            members: 2,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            core: gossip_core::Config::local(),
            preset: "local",
        })
        .unwrap();
        let state = AppState {
            cluster: Arc::new(cluster),
            package: Arc::new(Package::load(&dir).unwrap()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        (addr, dir)
    }

    #[tokio::test]
    async fn serves_the_page_its_assets_and_the_package_only() {
        let (addr, dir) = serve_unstarted("routes").await;
        let (status, ct, body) = http(addr, "GET", "/").await;
        assert_eq!((status, ct.as_str()), (200, "text/html; charset=utf-8"));
        assert!(String::from_utf8_lossy(&body).contains("/assets/app.js"));
        for (name, _, _) in ASSETS {
            let (status, _, body) = http(addr, "GET", &format!("/assets/{name}")).await;
            assert_eq!(status, 200, "{name}");
            assert!(!body.is_empty(), "{name}");
            // Tabs join as admitted members: no page script asks for the cluster key.
            assert!(
                !String::from_utf8_lossy(&body).contains("clusterKey"),
                "{name}"
            );
        }
        let (status, ct, _) = http(addr, "GET", "/pkg/gossip_wasm_bg.wasm").await;
        assert_eq!((status, ct.as_str()), (200, "application/wasm"));
        let (status, _, _) = http(addr, "GET", "/pkg/snippets/x/inline0.js").await;
        assert_eq!(status, 200);
        for path in [
            "/assets/nope.js",
            "/pkg/../Cargo.toml",
            "/pkg/%2e%2e/Cargo.toml",
            "/favicon.ico",
        ] {
            assert_eq!(http(addr, "GET", path).await.0, 404, "{path}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The forms a secret could be served in: raw, hex (either case), base64 (standard and URL
    /// alphabets) at each alignment inside a longer base64 text.
    fn key_forms(secret: &[u8]) -> Vec<Vec<u8>> {
        const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let mut forms = vec![
            secret.to_vec(),
            hex.clone().into_bytes(),
            hex.to_uppercase().into_bytes(),
        ];
        for alphabet in [STD, URL] {
            for shift in 0..3usize {
                let mut bytes = vec![0u8; shift];
                bytes.extend_from_slice(secret);
                let text = base64(&bytes, alphabet);
                // Only the characters made of the secret's own bits.
                let skip = (shift * 8).div_ceil(6);
                forms.push(text.as_bytes()[skip..text.len() - 1].to_vec());
            }
        }
        forms
    }

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

    fn holds(body: &[u8], forms: &[Vec<u8>]) -> bool {
        forms
            .iter()
            .any(|f| body.windows(f.len()).any(|w| w == f.as_slice()))
    }

    #[test]
    fn the_key_scan_finds_the_key_in_each_form() {
        let key = [0x5au8; 7]
            .iter()
            .chain(&[1, 2, 3, 250, 251, 252, 99, 100, 42])
            .copied()
            .cycle()
            .take(32)
            .collect::<Vec<u8>>();
        let forms = key_forms(&key);
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        for shift in 0..3 {
            let mut carried = vec![1u8; shift];
            carried.extend_from_slice(&key);
            carried.push(0);
            let b64 = format!(
                "{{\"k\":\"{}\"}}",
                base64(
                    &carried,
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                )
            );
            assert!(holds(b64.as_bytes(), &forms), "{b64}");
            assert!(holds(&carried, &forms));
        }
        assert!(holds(
            format!("key={}", hex.to_uppercase()).as_bytes(),
            &forms
        ));
        assert!(!holds(b"nothing secret here, not even 5a5a5a5a5a", &forms));
    }

    /// Everything the dashboard serves (the page, its scripts, the cluster description with the
    /// running natives' statuses, every package file) is free of the cluster key in any form.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_served_byte_holds_the_cluster_key() {
        let dir = fake_package("nokey", MANIFEST);
        let cluster = Arc::new(
            Cluster::new(ClusterOptions {
                members: 2,
                bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
                core: gossip_core::Config::local(),
                preset: "local",
            })
            .unwrap(),
        );
        cluster.start_all().await.unwrap();
        let package = Arc::new(Package::load(&dir).unwrap());
        let files: Vec<String> = package.files.keys().cloned().collect();
        let state = AppState {
            cluster: cluster.clone(),
            package,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        // The description carries the natives' statuses once both run and see each other.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let description = loop {
            let (status, _, body) = http(addr, "GET", "/api/cluster").await;
            assert_eq!(status, 200);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let both = v["natives"].as_array().unwrap().iter().all(|n| {
                n["status"]["members"]
                    .as_array()
                    .is_some_and(|m| m.len() == 2)
            });
            if both {
                break body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the natives did not see each other: {v}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let forms = key_forms(cluster.secrets().key.as_bytes());
        assert!(!holds(&description, &forms), "/api/cluster holds the key");
        let mut paths = vec!["/".to_string()];
        paths.extend(ASSETS.iter().map(|(n, _, _)| format!("/assets/{n}")));
        paths.extend(files.iter().map(|f| format!("/pkg/{f}")));
        for path in &paths {
            let (status, _, body) = http(addr, "GET", path).await;
            assert_eq!(status, 200, "{path}");
            assert!(!holds(&body, &forms), "{path} holds the cluster key");
        }
        assert!(paths.len() >= 10, "{paths:?}");
        cluster.shutdown().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn cluster_description_and_control_errors() {
        let (addr, dir) = serve_unstarted("api").await;
        let (status, ct, body) = http(addr, "GET", "/api/cluster").await;
        assert_eq!((status, ct.as_str()), (200, "application/json"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            v.get("cluster_key").is_none(),
            "the page never gets the cluster key"
        );
        assert_eq!(v["name_prefix"], "tab-");
        assert_eq!(v["token"].as_str().unwrap().len(), 32);
        assert_eq!(v["package"]["entry"], "/pkg/gossip_wasm.js");
        assert_eq!(v["config"], "local");
        assert_eq!(v["seeds"].as_array().unwrap().len(), 0, "nothing runs yet");
        let natives = v["natives"].as_array().unwrap();
        let names: Vec<_> = natives
            .iter()
            .map(|n| n["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["native-1", "native-2"]);
        assert_eq!(natives[0]["running"], false);
        assert_eq!(natives[0]["metadata"]["role"], "api");
        assert_eq!(natives[1]["metadata"]["role"], "worker");
        assert!(natives[0]["status"].is_null());
        assert!(v["detection"]["dead_within_ms"].as_u64().unwrap() > 0);

        assert_eq!(http(addr, "POST", "/api/nodes/native-9/kill").await.0, 404);
        assert_eq!(
            http(addr, "POST", "/api/nodes/native-1/explode").await.0,
            404
        );
        let (status, _, body) = http(addr, "POST", "/api/nodes/native-1/kill").await;
        assert_eq!(status, 409);
        assert!(String::from_utf8_lossy(&body).contains("not running"));
        assert_eq!(http(addr, "GET", "/api/nodes/native-1/kill").await.0, 405);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
