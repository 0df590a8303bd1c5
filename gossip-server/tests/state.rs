//! Replicated state between three real nodes on 127.0.0.1: set, delete, read from every node,
//! a prefix watch that sees the changes as a stream, and a typed refusal of an oversized key.

mod common;

use std::time::Duration;

use common::*;
use gossip_core::NodeId;
use gossip_core::state::{StateError, StateLimit};
use gossip_server::{Gossip, GossipError, StateChange};

const T: Duration = Duration::from_secs(30);

async fn value(g: &Gossip, owner: NodeId, key: &str) -> Option<Vec<u8>> {
    g.state_get(owner, key).await.unwrap().map(|v| v.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_state_and_stream_watched_changes() {
    let nodes = udp_cluster("state", 3, T).await;
    let ids: Vec<NodeId> = nodes.iter().map(Gossip::id).collect();
    let mut watch = nodes[2].state_watch("svc/").await.unwrap();
    assert!(watch.initial.is_empty());

    assert_eq!(nodes[0].state_set("svc/orders", "10.0.0.1:80").await, Ok(1));
    nodes[0].state_set("other", "x").await.unwrap();
    nodes[1]
        .state_set("svc/users", "10.0.0.2:80")
        .await
        .unwrap();
    for g in &nodes {
        eventually(T, "every node holds both writes", || async {
            value(g, ids[0], "svc/orders").await.as_deref() == Some(&b"10.0.0.1:80"[..])
                && value(g, ids[1], "svc/users").await.is_some()
                && value(g, ids[0], "other").await.is_some()
        })
        .await;
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(T, watch.next()).await {
            Ok(Some(StateChange::Key { owner, key, .. })) => seen.push((owner, key)),
            other => panic!("expected a change, got {other:?}"),
        }
    }
    seen.sort();
    let mut expected = vec![
        (ids[0], "svc/orders".to_string()),
        (ids[1], "svc/users".to_string()),
    ];
    expected.sort();
    assert_eq!(seen, expected, "only keys under the prefix");

    assert_eq!(nodes[0].state_delete("svc/orders").await, Ok(Some(3)));
    let deleted = tokio::time::timeout(T, watch.next()).await.unwrap();
    assert_eq!(
        deleted,
        Some(StateChange::Key {
            owner: ids[0],
            key: "svc/orders".into(),
            version: 3,
            value: None,
        })
    );
    for g in &nodes {
        eventually(T, "the delete reaches every node", || async {
            value(g, ids[0], "svc/orders").await.is_none()
        })
        .await;
    }
    let entries = nodes[1].state_entries(ids[0]).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].key, "other");

    let long = "k".repeat(300);
    assert_eq!(
        nodes[0].state_set(long, "v").await,
        Err(GossipError::State(StateError::Limit(
            StateLimit::KeyTooLong { len: 300, max: 256 }
        )))
    );
    let late = nodes[1].state_watch("svc/").await.unwrap();
    assert_eq!(late.initial.len(), 1, "the snapshot holds svc/users");
    for g in nodes {
        g.shutdown().await;
    }
}
