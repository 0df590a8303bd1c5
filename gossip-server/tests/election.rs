//! Leader election between three real nodes on 127.0.0.1: one leads, never two at once as far
//! as the test can sample, and when the leader is killed the two others elect one of
//! themselves; resigning ends a lease at once.

mod common;

use std::time::Duration;

use common::*;
use gossip_core::NodeId;
use gossip_core::election::{ElectionConfig, ElectionError};
use gossip_server::{ElectError, Gossip, Leadership};

const T: Duration = Duration::from_secs(30);

/// Polls every 10 ms until exactly one of `members` leads, asserting on the way that no two do.
async fn one_leader(members: &[&Leadership]) -> usize {
    let start = tokio::time::Instant::now();
    loop {
        let leading: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].is_leader())
            .collect();
        assert!(leading.len() <= 1, "two leaders at once: {leading:?}");
        if let [one] = leading[..] {
            return one;
        }
        assert!(start.elapsed() < T, "no leader within {T:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_leader_and_replace_a_killed_one() {
    let nodes = udp_cluster("elect", 3, T).await;
    let voters: Vec<NodeId> = nodes.iter().map(Gossip::id).collect();
    let config = ElectionConfig::new("jobs", voters).with_lease_ms(500);
    let mut members = Vec::new();
    for g in &nodes {
        members.push(g.elect(config.clone()).await.unwrap());
    }
    let first = one_leader(&members.iter().collect::<Vec<_>>()).await;
    let term = members[first].term().unwrap();

    nodes[first].kill().await;
    let crashed = members.remove(first);
    let up: Vec<usize> = (0..3).filter(|&i| i != first).collect();
    let second = one_leader(&members.iter().collect::<Vec<_>>()).await;
    assert!(
        members[second].term().unwrap() > term,
        "a later leader has a higher term"
    );
    drop(crashed);

    // Resigning deletes the leader's bid, which the other node sees go; the remaining voter
    // alone is not a majority of three, so it does not lead.
    let (leader, other) = (up[second], up[1 - second]);
    let bid = "election/jobs/bid";
    let leader_id = nodes[leader].id();
    assert!(
        nodes[other]
            .state_get(leader_id, bid)
            .await
            .unwrap()
            .is_some(),
        "the leader's bid is replicated"
    );
    let follower = members.remove(1 - second);
    members.remove(0).resign().await;
    eventually(
        T,
        "the resigned leader's bid is deleted everywhere",
        || async {
            nodes[other]
                .state_get(leader_id, bid)
                .await
                .unwrap()
                .is_none()
        },
    )
    .await;
    assert!(!follower.is_leader());
    for g in &nodes {
        g.shutdown().await;
    }
    assert_no_task_panicked();
}

#[tokio::test]
async fn a_bad_configuration_is_refused_with_its_reason() {
    let g = udp_node("elect-bad", &[]).await;
    let err = g
        .elect(ElectionConfig::new("jobs", vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ElectError::Config(ElectionError::Voters(0))),
        "{err:?}"
    );
    let err = g
        .elect(ElectionConfig::new("a/b", vec![g.id()]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ElectError::Config(ElectionError::Name)),
        "{err:?}"
    );
    g.shutdown().await;
}
