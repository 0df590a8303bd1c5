//! Named endpoints between three nodes in one process: two hold `"orders"` and answer requests
//! for it; the third resolves the name, asks one holder (nearest), asks them all, and opens a
//! stream by name.
//!
//! ```text
//! cargo run -p gossip-server --example endpoints
//! ```

use std::time::Duration;

use gossip_core::endpoints::Policy;
use gossip_core::{ClusterKey, Config, Event};
use gossip_server::{Gossip, GossipConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// A holder of `"orders"`: answers each request by name with its own name, and echoes streams.
async fn hold_orders(g: &Gossip, me: &'static str) -> Result<(), Box<dyn std::error::Error>> {
    let mut events = g.subscribe();
    let responder = g.clone();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            // A request by name carries the name as its topic.
            if let Event::Request {
                from, id, topic, ..
            } = event
                && topic == "orders"
            {
                let _ = responder
                    .respond(from, id, format!("{me}: 42 orders"))
                    .await;
            }
        }
    });
    let acceptor = g.clone();
    tokio::spawn(async move {
        while let Some(mut stream) = acceptor.accept_stream().await {
            let mut line = [0u8; 5];
            if stream.read_exact(&mut line).await.is_ok() {
                let _ = stream.write_all(&line).await;
            }
        }
    });
    g.register_endpoint("orders").await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = ClusterKey::from_bytes([7; 32]);
    let a = node("orders-1", &key, vec![]).await?;
    let seed = a.tcp_addr().expect("bound on TCP").to_string();
    let b = node("orders-2", &key, vec![seed.clone()]).await?;
    let gateway = node("gateway", &key, vec![seed]).await?;
    gateway.joined(Duration::from_secs(10)).await?;

    // Watch the name before anyone registers it: every change of its holders comes through.
    let mut watch = gateway.watch_endpoint("orders").await?;
    hold_orders(&a, "orders-1").await?;
    hold_orders(&b, "orders-2").await?;
    while watch.holders.len() < 2 {
        tokio::time::timeout(Duration::from_secs(10), watch.next()).await?;
    }
    for h in gateway.resolve("orders").await? {
        println!(
            "orders is held by {} ({:?}, rtt {:?} µs)",
            h.id.short(),
            h.state,
            h.rtt_micros
        );
    }

    let one = gateway
        .request_endpoint("orders", Policy::Nearest, "count", Duration::from_secs(5))
        .await?;
    println!(
        "nearest answered: {}",
        String::from_utf8_lossy(&one[0].result.clone()?)
    );
    for reply in gateway
        .request_endpoint("orders", Policy::All, "count", Duration::from_secs(5))
        .await?
    {
        println!(
            "{} answered: {:?}",
            reply.from.short(),
            reply.result.map(String::from_utf8)
        );
    }

    let mut stream = gateway
        .open_stream_to_endpoint("orders", Policy::Any)
        .await?;
    stream.write_all(b"hello").await?;
    let mut echo = [0u8; 5];
    stream.read_exact(&mut echo).await?;
    println!(
        "stream to {} echoed {:?}",
        stream.peer().short(),
        String::from_utf8_lossy(&echo)
    );

    // A holder that leaves drops out of every member's resolution.
    b.shutdown().await;
    while watch.holders.len() != 1 {
        tokio::time::timeout(Duration::from_secs(10), watch.next()).await?;
    }
    println!("after orders-2 left: {} holder", watch.holders.len());
    a.shutdown().await;
    gateway.shutdown().await;
    Ok(())
}
