//! The KV store's small page (`--serve ADDR`): a browser tab joins node 0 by admission (no
//! cluster key, a `tab-` name, allowed to write its own replicated state) and lists and sets the
//! store's keys with the JavaScript state API of `gossip-wasm-full`, in the encoding of
//! `store.rs` (`page.html` has the JavaScript side).
//!
//! Routes: `/` the page, `/pkg/...` the npm package built by `cargo xtask wasm --full`,
//! `/gossip/ws` node 0's WebSocket, `/api/keys?node=N` the live keys as node N sees them (JSON,
//! for the page's end-to-end test: a tab's write seen by a native node).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use gossip_core::Grant;
use gossip_server::{Admission, Gossip};

const PAGE: &str = include_str!("page.html");

/// Every tab is let in as a `tab-` member that may write its own state (a real service would
/// look the visitor's session up here), at a rate a person typing never reaches.
pub fn admission() -> Admission {
    Admission::open(
        Grant::new()
            .with_name_prefix("tab-")
            .with_state(true)
            .with_rate(200, 400),
    )
}

#[derive(Clone)]
struct App {
    nodes: Vec<Gossip>,
    pkg: PathBuf,
}

/// Serves the page on `addr`; returns the bound address. The server runs until the process
/// ends.
pub async fn serve(
    nodes: &[Gossip],
    addr: SocketAddr,
) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let first = nodes.first().ok_or("no nodes")?;
    let app = App {
        nodes: nodes.to_vec(),
        pkg: Path::new(env!("CARGO_MANIFEST_DIR")).join("../gossip-wasm/pkg-full"),
    };
    if !app.pkg.join("index.js").exists() {
        return Err(format!(
            "{} is missing: build it with `cargo xtask wasm --full`",
            app.pkg.display()
        )
        .into());
    }
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/pkg/{*path}", get(package_file))
        .route("/api/keys", get(keys))
        .with_state(app)
        .nest("/gossip", first.router());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(bound)
}

/// A file of the package; nothing outside it (no `..`, no absolute paths).
async fn package_file(State(app): State<App>, UrlPath(path): UrlPath<String>) -> Response {
    let rel = Path::new(&path);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let kind = match rel.extension().and_then(|e| e.to_str()) {
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("ts") => "text/plain",
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match tokio::fs::read(app.pkg.join(rel)).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, kind)], bytes).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The live keys as node `node` (default 0) sees them: `{ "key": "value", ... }`.
async fn keys(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> Response {
    let i: usize = q.get("node").and_then(|n| n.parse().ok()).unwrap_or(0);
    let Some(g) = app.nodes.get(i) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match crate::store::live(g).await {
        Ok(pairs) => {
            let map: serde_json::Map<String, serde_json::Value> = pairs
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned().into()))
                .collect();
            (
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::Value::Object(map).to_string(),
            )
                .into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
