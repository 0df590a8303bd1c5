//! Mount a gossip node in your own axum service, beside your own routes.
//!
//! ```text
//! cargo run -p gossip-server --example embed -- 127.0.0.1:8080 [SEED...]
//! curl http://127.0.0.1:8080/gossip/status
//! ```

use gossip_core::Config;
use gossip_server::{Gossip, GossipConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let mut config = GossipConfig::new(Config::lan().with_name("embedded"))
        .with_bind("127.0.0.1:0".parse()?)
        .with_metadata("role", "api");
    config.seeds = args.collect();
    let gossip = Gossip::start(config).await?;

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    gossip
        .advertise_ws(format!("ws://{addr}/gossip/ws"))
        .await?;
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "my service" }))
        .nest("/gossip", gossip.router());
    println!("serving http://{addr}/ (gossip at ws://{addr}/gossip/ws)");
    let stop = gossip.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.shutdown().await;
        })
        .await?;
    Ok(())
}
