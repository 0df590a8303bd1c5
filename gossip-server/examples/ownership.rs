//! Key ownership between three nodes in one process: each names the same owner for every key;
//! one watches a few keys and prints where they move when another member leaves.
//!
//! ```text
//! cargo run -p gossip-server --example ownership
//! ```

use std::time::Duration;

use gossip_core::{ClusterKey, Config};
use gossip_server::{Gossip, GossipConfig, OwnershipEvent};

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
    let a = node("store-a", &key, vec![]).await?;
    let seed = a.tcp_addr().expect("bound on TCP").to_string();
    let b = node("store-b", &key, vec![seed.clone()]).await?;
    let c = node("store-c", &key, vec![seed]).await?;
    let names = [
        (a.id(), "store-a"),
        (b.id(), "store-b"),
        (c.id(), "store-c"),
    ];
    let name = |id| {
        names
            .iter()
            .find(|(n, _)| *n == id)
            .map_or("?", |(_, s)| *s)
    };

    // Wait until every node sees all three: owners are computed from each node's own view.
    tokio::time::timeout(Duration::from_secs(10), async {
        while a.owners("x", 3).await.map_or(0, |o| o.len()) < 3
            || b.owners("x", 3).await.map_or(0, |o| o.len()) < 3
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;

    let keys: Vec<Vec<u8>> = (0..6).map(|k| format!("shard/{k}").into_bytes()).collect();
    // Two owners per key (a primary and a replica), followed from node a.
    let mut watch = a.ownership_watch(keys.clone(), 2, None).await?;
    for (k, owners) in &watch.initial {
        let on_b = b.owners(k.clone(), 2).await?;
        assert_eq!(&on_b, owners, "same view, same owners");
        let shown: Vec<&str> = owners.iter().map(|o| name(*o)).collect();
        println!("{}: {}", String::from_utf8_lossy(k), shown.join(", "));
    }
    let held = watch
        .initial
        .iter()
        .filter(|(_, o)| o.contains(&c.id()))
        .count();

    // store-c leaves: only the keys it held move, each to the next member in its ranking.
    c.shutdown().await;
    for _ in 0..held {
        match tokio::time::timeout(Duration::from_secs(10), watch.next()).await? {
            Some(OwnershipEvent::Moved(m)) => {
                let old: Vec<&str> = m.old.iter().map(|o| name(*o)).collect();
                let new: Vec<&str> = m.new.iter().map(|o| name(*o)).collect();
                println!(
                    "{} moved: {} -> {}",
                    String::from_utf8_lossy(&m.key),
                    old.join(", "),
                    new.join(", ")
                );
            }
            Some(OwnershipEvent::Lagged) => println!("missed some moves: ask owners() again"),
            None => break,
        }
    }
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
