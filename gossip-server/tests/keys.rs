//! Cluster-key rotation in a live cluster, from the handle (issue 16): add the new key
//! everywhere, make it primary everywhere, remove the old one everywhere, and nobody is lost;
//! afterwards a node with only the old key cannot join.

mod common;

use std::time::Duration;

use common::*;
use gossip_core::error::KeyringError;
use gossip_core::{ClusterKey, Event};
use gossip_server::{Gossip, GossipConfig, GossipError, JoinError, SeedProblem};

const T: Duration = Duration::from_secs(30);

/// Every node publishes `step` in its metadata and waits until every node sees every other's:
/// frames went both ways between all of them with the keys of this step.
async fn exchange(nodes: &[&Gossip], step: &str) {
    for g in nodes {
        g.set_metadata("step", step.as_bytes().to_vec())
            .await
            .unwrap();
    }
    for g in nodes {
        eventually(
            T,
            &format!("every node sees step {step} of the others"),
            || async {
                status(g).await.members.iter().all(|m| {
                    m.state == "alive" && m.metadata.get("step").map(String::as_str) == Some(step)
                })
            },
        )
        .await;
    }
}

async fn node_with(name: &str, seeds: &[String], key: ClusterKey) -> Gossip {
    watch_task_panics();
    let mut cfg = GossipConfig::new(fast(name))
        .with_key(key)
        .with_bind(localhost());
    cfg.seeds = seeds.to_vec();
    Gossip::start(cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_in_a_live_cluster_loses_no_member() {
    let old = key();
    let new: ClusterKey = "77".repeat(32).parse().unwrap();
    let a = udp_node("rot-a", &[]).await;
    let b = udp_node("rot-b", &[seed_of(&a)]).await;
    let c = udp_node("rot-c", &[seed_of(&a)]).await;
    let nodes = [&a, &b, &c];
    let ids = [a.id(), b.id(), c.id()];
    for g in nodes {
        eventually(T, "all three see each other", || sees_alive(g, &ids)).await;
    }
    let mut events: Vec<_> = nodes.iter().map(|g| g.subscribe()).collect();
    exchange(&nodes, "0").await;

    for g in nodes {
        assert_eq!(g.add_key(new.clone()).await, Ok(2));
    }
    exchange(&nodes, "added").await;
    for g in nodes {
        assert_eq!(g.use_key(new.clone()).await, Ok(2));
    }
    exchange(&nodes, "primary").await;
    for g in nodes {
        assert_eq!(g.remove_key(old.clone()).await, Ok(1));
    }
    exchange(&nodes, "removed").await;
    // Some probe rounds on the new key alone (probes every 200 ms): a member whose frames
    // no longer opened would be suspected within them.
    let before: Vec<u64> = packets_in(&nodes).await;
    for (g, n) in nodes.iter().zip(before) {
        eventually(T, "probe traffic after the rotation", || async {
            status(g).await.counters.packets_in >= n + 40
        })
        .await;
    }
    for g in nodes {
        assert!(sees_alive(g, &ids).await);
    }
    for (rx, g) in events.iter_mut().zip(nodes) {
        while let Ok(e) = rx.try_recv() {
            assert!(
                !matches!(
                    e,
                    Event::MemberSuspect { .. }
                        | Event::MemberDead { .. }
                        | Event::MemberLeft { .. }
                ),
                "{} saw {e:?} during the rotation",
                g.id().short()
            );
        }
    }

    // Only the old key: refused, and told why. The new key: in (the same path succeeds).
    let stale = node_with("rot-stale", &[seed_of(&a)], old.clone()).await;
    let fresh = node_with("rot-fresh", &[seed_of(&a)], new.clone()).await;
    let (s, f) = tokio::join!(stale.joined(Duration::from_secs(6)), fresh.joined(T));
    assert_eq!(f, Ok(()));
    match s {
        Err(JoinError::NotJoined { attempts, .. }) => assert!(
            attempts
                .iter()
                .any(|a| a.problem == SeedProblem::ClusterKey),
            "{attempts:?}"
        ),
        other => panic!("the stale node joined or failed otherwise: {other:?}"),
    }
    assert_eq!(state_of(&a, &stale.id()).await, None, "never a member");
    assert_no_task_panicked();
}

async fn packets_in(nodes: &[&Gossip]) -> Vec<u64> {
    let mut out = Vec::new();
    for g in nodes {
        out.push(status(g).await.counters.packets_in);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyring_misuse_is_refused_and_changes_nothing() {
    let g = udp_node("ring", &[]).await;
    let other: ClusterKey = "12".repeat(32).parse().unwrap();
    assert_eq!(
        g.remove_key(key()).await,
        Err(GossipError::Keyring(KeyringError::RemovePrimary))
    );
    assert_eq!(
        g.remove_key(other.clone()).await,
        Err(GossipError::Keyring(KeyringError::UnknownKey))
    );
    assert_eq!(
        g.set_keys(Vec::new()).await,
        Err(GossipError::Keyring(KeyringError::RemovePrimary))
    );
    let nine: Vec<ClusterKey> = (1..=9u8).map(|i| ClusterKey::from_bytes([i; 32])).collect();
    assert_eq!(
        g.set_keys(nine).await,
        Err(GossipError::Keyring(KeyringError::Full(8)))
    );
    assert_eq!(
        g.key_count().await,
        Ok(1),
        "a refused change leaves the ring as it was"
    );
    assert_eq!(g.set_keys(vec![other.clone(), key()]).await, Ok(2));
    assert_eq!(
        g.remove_key(other).await,
        Err(GossipError::Keyring(KeyringError::RemovePrimary))
    );

    // A plain-text node cannot be given a key on the fly: it would cut itself off.
    let plain = Gossip::start(GossipConfig::new(fast("plain")).with_bind(localhost()))
        .await
        .unwrap();
    assert_eq!(plain.add_key(key()).await, Err(GossipError::Unencrypted));
    assert_eq!(plain.use_key(key()).await, Err(GossipError::Unencrypted));
    assert_eq!(plain.key_count().await, Ok(0));

    // Accepted keys at start: a node started mid-rotation.
    let cfg = GossipConfig::new(fast("mid"))
        .with_key(key())
        .with_accepted_key(ClusterKey::from_bytes([5; 32]))
        .with_bind(localhost());
    let mid = Gossip::start(cfg).await.unwrap();
    assert_eq!(mid.key_count().await, Ok(2));
    let mut cfg = GossipConfig::new(fast("bad")).with_accepted_key(key());
    cfg.udp = Some(localhost());
    assert!(
        Gossip::start(cfg).await.is_err(),
        "accepted keys need a primary"
    );
}
