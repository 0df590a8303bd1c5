//! The steps of the `leader_election` example: three nodes in one process elect one, it is
//! killed, the two others (still a majority of the three voters) elect one of themselves.
//! `tests/leader_election_example.rs` runs this same code.

use std::io::Write;
use std::time::Duration;

use gossip_core::election::ElectionConfig;
use gossip_core::{ClusterKey, Config, NodeId};
use gossip_server::{Gossip, GossipConfig, Leadership};

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

/// Waits until exactly one of `members` leads and returns its index and term.
async fn leader(members: &[(&str, Leadership)]) -> Result<(usize, u64), &'static str> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let leading: Vec<(usize, u64)> = members
            .iter()
            .enumerate()
            .filter_map(|(i, (_, l))| l.term().map(|t| (i, t)))
            .collect();
        // The library guarantees at most one; the example says so if it ever saw two.
        assert!(leading.len() <= 1, "two leaders: {leading:?}");
        if let Some(&found) = leading.first() {
            return Ok(found);
        }
        if tokio::time::Instant::now() > deadline {
            return Err("no leader within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the example, printing what happens to `out`.
pub async fn run(out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>> {
    let key = ClusterKey::from_bytes([7; 32]);
    let a = node("alpha", &key, vec![]).await?;
    let seed = a.tcp_addr().expect("bound on TCP").to_string();
    let b = node("bravo", &key, vec![seed.clone()]).await?;
    let c = node("charlie", &key, vec![seed]).await?;
    b.joined(Duration::from_secs(10)).await?;
    c.joined(Duration::from_secs(10)).await?;

    // The voter set is fixed up front: the same list on every member.
    let voters: Vec<NodeId> = [&a, &b, &c].iter().map(|g| g.id()).collect();
    let config = ElectionConfig::new("scheduler", voters).with_lease_ms(1_000);
    let nodes = [a, b, c];
    let mut members = Vec::new();
    for (name, g) in ["alpha", "bravo", "charlie"].into_iter().zip(&nodes) {
        members.push((name, g.elect(config.clone()).await?));
    }

    let (first, term) = leader(&members).await?;
    writeln!(out, "{} leads (term {term})", members[first].0)?;

    // The leader crashes: no leave, its lease simply stops being renewed.
    nodes[first].kill().await;
    let (name, crashed) = members.remove(first);
    drop(crashed);
    writeln!(out, "{name} crashed")?;
    let (second, term) = leader(&members).await?;
    writeln!(
        out,
        "{} leads (term {term}), elected by 2 of the 3 voters",
        members[second].0
    )?;

    for g in &nodes {
        g.shutdown().await;
    }
    Ok(())
}
