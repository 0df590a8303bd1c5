//! The live cluster dashboard: a small native cluster in this process, and a web page that joins
//! it as a browser member.
//!
//! `web-demo` starts `--members` native members (`native-1`..`native-N`, each a
//! [`gossip_server::Gossip`] with UDP, TCP and a WebSocket route on 127.0.0.1, fast local
//! timings, metadata `role` and `zone`), then serves on `--bind`:`--port`:
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the dashboard (HTML, ES modules and CSS compiled into the binary) |
//! | `GET /pkg/...` | the `gossip-wasm` npm package (`--pkg-dir`, read at start) |
//! | `GET /api/cluster` | seeds, the tab name prefix, detection times, each native member's status, the token for `/status` (never the cluster key) |
//! | `POST /api/nodes/{name}/kill` | demo only: stop a member at once, without a leave |
//! | `POST /api/nodes/{name}/restart` | demo only: start it again (same identity, name and ports) |
//!
//! It prints `dashboard: http://ADDR/` once everything listens. Ctrl-C (or SIGTERM): every
//! member leaves, then the process exits.

#![deny(missing_docs)]

mod cluster;
mod error;
mod observed;
mod web;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tracing::{error, info, warn};

use crate::cluster::{Cluster, ClusterOptions};
use crate::error::DemoError;
use crate::web::{AppState, Package};

/// How long open dashboard requests may take to finish once a stop was asked for.
const HTTP_DRAIN: Duration = Duration::from_secs(2);

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "web-demo", version, about = "Live gossip cluster dashboard")]
struct Args {
    /// Port of the dashboard (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address the dashboard and the native members listen on (and advertise: not 0.0.0.0).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// Number of native members.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=32))]
    members: u16,
    /// The gossip-wasm npm package (built by `cargo xtask wasm`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../gossip-wasm/pkg"))]
    pkg_dir: PathBuf,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,gossip_server=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), DemoError> {
    if args.bind.is_unspecified() {
        return Err(DemoError::UnspecifiedBind(args.bind));
    }
    let package = Arc::new(Package::load(&args.pkg_dir)?);
    let cluster = Arc::new(Cluster::new(ClusterOptions {
        members: usize::from(args.members),
        bind: args.bind,
        core: gossip_core::Config::local(),
        preset: "local",
    })?);
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DemoError::Listen { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| DemoError::Listen { addr, source })?;
    if let Err(e) = cluster.start_all().await {
        cluster.shutdown().await;
        return Err(e);
    }
    info!(members = args.members, "native members started");
    let app = web::router(AppState {
        cluster: cluster.clone(),
        package,
    });
    // The one line a user (or a test) looks for.
    println!("dashboard: http://{addr}/");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    stop_signal().await;
    info!("stopping: every member leaves");
    // A second Ctrl-C while members leave ends the process at once.
    tokio::spawn(async {
        stop_signal().await;
        warn!("second stop signal: exiting now");
        std::process::exit(130);
    });
    let _ = stop_tx.send(());
    cluster.shutdown().await;
    match tokio::time::timeout(HTTP_DRAIN, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!("dashboard server: {e}"),
        Ok(Err(e)) => warn!("dashboard server task: {e}"),
        Err(_) => warn!("dashboard requests still open after {HTTP_DRAIN:?}; leaving them"),
    }
    info!("stopped");
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn stop_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
