//! Key ownership between three real nodes on 127.0.0.1: every node names the same owners, a
//! watch streams the moves when a member is killed, and misuse is refused with typed errors.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use gossip_core::NodeId;
use gossip_core::ownership::OwnershipError;
use gossip_server::{Gossip, GossipError, OwnershipEvent};

const T: Duration = Duration::from_secs(30);

fn keys() -> Vec<Vec<u8>> {
    (0..50).map(|k| format!("shard/{k}").into_bytes()).collect()
}

async fn owners_of(g: &Gossip) -> BTreeMap<Vec<u8>, Vec<NodeId>> {
    let mut out = BTreeMap::new();
    for k in keys() {
        out.insert(k.clone(), g.owners(k, 2).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_on_owners_and_a_watch_streams_the_moves_of_a_death() {
    let nodes = udp_cluster("own", 3, T).await;
    let ids: Vec<NodeId> = nodes.iter().map(Gossip::id).collect();
    let before = owners_of(&nodes[0]).await;
    for g in &nodes[1..] {
        assert_eq!(
            owners_of(g).await,
            before,
            "every node names the same owners"
        );
    }
    assert!(before.values().all(|o| o.len() == 2));
    assert_eq!(
        nodes[1].owner("shard/7").await.unwrap().as_ref(),
        before[&b"shard/7"[..]].first()
    );
    let held = before.values().filter(|o| o.contains(&ids[2])).count();
    assert!(held > 0, "node 2 owns none of 50 keys");

    let mut watch = nodes[0].ownership_watch(keys(), 2, None).await.unwrap();
    let mut mirror: BTreeMap<Vec<u8>, Vec<NodeId>> = watch.initial.iter().cloned().collect();
    assert_eq!(mirror, before);

    nodes[2].kill().await;
    let survivors = &ids[..2];
    for g in &nodes[..2] {
        eventually(T * 2, "the killed node is buried", || {
            sees_alive(g, survivors)
        })
        .await;
    }
    let after = owners_of(&nodes[0]).await;
    assert_eq!(owners_of(&nodes[1]).await, after);
    assert!(after.values().all(|o| !o.contains(&ids[2]) && o.len() == 2));
    // Every move is reported with the owners reported before it; the keys node 2 held are
    // the ones it left (a false suspicion on a loaded machine may add moves that come back).
    let mut lost = BTreeSet::new();
    while mirror != after || lost.len() < held {
        match tokio::time::timeout(T, watch.next()).await {
            Ok(Some(OwnershipEvent::Moved(c))) => {
                assert_eq!(mirror[&c.key], c.old);
                if c.old.contains(&ids[2]) && !c.new.contains(&ids[2]) {
                    lost.insert(c.key.clone());
                }
                mirror.insert(c.key, c.new);
            }
            other => panic!("expected a move, got {other:?}"),
        }
    }
    let expected: BTreeSet<Vec<u8>> = before
        .iter()
        .filter(|(_, o)| o.contains(&ids[2]))
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(lost, expected, "exactly the keys node 2 held moved off it");

    // Misuse is refused with typed errors.
    assert_eq!(
        nodes[0].ownership_watch(keys(), 0, None).await.unwrap_err(),
        GossipError::Ownership(OwnershipError::BadOwnerCount { max: 64 })
    );
    let group = nodes[0]
        .with_node(|n, _| {
            let g = n.groups().define("role=none".parse().unwrap()).unwrap();
            n.groups().remove(g);
            g
        })
        .await
        .unwrap();
    assert_eq!(
        nodes[0].owners_in(group, "k", 1).await,
        Err(GossipError::Ownership(OwnershipError::UnknownGroup(group)))
    );
    drop(watch);
    for g in nodes {
        g.shutdown().await;
    }
}
