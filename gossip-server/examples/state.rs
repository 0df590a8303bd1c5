//! Replicated state between two nodes in one process: one publishes where its services listen,
//! the other watches the `svc/` prefix and reads them back.
//!
//! ```text
//! cargo run -p gossip-server --example state
//! ```

use std::time::Duration;

use gossip_core::{ClusterKey, Config};
use gossip_server::{Gossip, GossipConfig, StateChange};

async fn node(
    name: &str,
    key: &ClusterKey,
    seeds: Vec<String>,
) -> Result<Gossip, Box<dyn std::error::Error>> {
    let mut config = GossipConfig::new(Config::local().with_name(name))
        .with_key(key.clone())
        .with_bind("127.0.0.1:0".parse()?);
    config.seeds = seeds;
    Ok(Gossip::start(config).await?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = ClusterKey::from_bytes([7; 32]);
    let a = node("orders-1", &key, vec![]).await?;
    let seed = a.tcp_addr().expect("bound on TCP").to_string();
    let b = node("gateway", &key, vec![seed]).await?;
    b.joined(Duration::from_secs(10)).await?;

    // The gateway watches every member's `svc/` keys before anything is written.
    let mut watch = b.state_watch("svc/").await?;
    a.state_set("svc/orders", "127.0.0.1:9001").await?;
    a.state_set("load", "0.25").await?; // not under svc/: not reported to this watch

    let change = tokio::time::timeout(Duration::from_secs(10), watch.next()).await?;
    if let Some(StateChange::Key {
        owner,
        key,
        value,
        version,
    }) = change
    {
        let value = String::from_utf8_lossy(value.as_deref().unwrap_or_default()).into_owned();
        println!("{} set {key} = {value} (version {version})", owner.short());
    }
    // Reads are local: whatever this node holds of the owner's map.
    let entry = b.state_get(a.id(), "svc/orders").await?;
    println!("gateway reads svc/orders: {entry:?}");

    a.state_delete("svc/orders").await?;
    if let Ok(Some(StateChange::Key {
        key, value: None, ..
    })) = tokio::time::timeout(Duration::from_secs(10), watch.next()).await
    {
        println!("{key} deleted");
    }
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
