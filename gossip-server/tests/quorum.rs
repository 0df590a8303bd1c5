//! Quorum requests from the server handle, on real sockets (issue 16).

mod common;

use std::time::Duration;

use common::*;
use gossip_core::requests::FailReason;
use gossip_core::{Event, Identity, Quorum};
use gossip_server::Gossip;

const T: Duration = Duration::from_secs(30);

/// Answers every request with this node's name, until the node stops.
fn answer_with(g: &Gossip, name: &'static str) {
    let mut events = g.subscribe();
    let g = g.clone();
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            if let Event::Request { from, id, .. } = e {
                let _ = g.respond(from, id, name).await;
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_request_returns_its_outcome() {
    let a = udp_node("q-a", &[]).await;
    let b = udp_node("q-b", &[seed_of(&a)]).await;
    let c = udp_node("q-c", &[seed_of(&a)]).await;
    let ids = [a.id(), b.id(), c.id()];
    for g in [&a, &b, &c] {
        eventually(T, "all three see each other", || sees_alive(g, &ids)).await;
    }
    answer_with(&b, "b");
    answer_with(&c, "c");

    let all = a
        .quorum_request(vec![b.id(), c.id()], "vote", b"x".to_vec(), Quorum::All, T)
        .await
        .unwrap();
    assert!(all.reached, "{all:?}");
    let mut got: Vec<_> = all.answered.clone();
    got.sort();
    let mut want = vec![(b.id(), b"b".to_vec()), (c.id(), b"c".to_vec())];
    want.sort();
    assert_eq!(got, want);
    assert!(
        all.failed.is_empty() && all.unanswered.is_empty(),
        "{all:?}"
    );

    // A member nobody knows fails at once; a majority of three is still two answers.
    let stranger = Identity::from_secret_bytes([9; 32]).id();
    let maj = a
        .quorum_request(
            vec![b.id(), c.id(), stranger],
            "vote",
            Vec::new(),
            Quorum::Majority,
            T,
        )
        .await
        .unwrap();
    assert!(maj.reached, "{maj:?}");
    assert_eq!(maj.failed, vec![(stranger, FailReason::Unreachable)]);

    // More answers than members can never come: decided without waiting for the timeout.
    let started = tokio::time::Instant::now();
    let never = a
        .quorum_request(vec![b.id()], "vote", Vec::new(), Quorum::Threshold(2), T)
        .await
        .unwrap();
    assert!(!never.reached, "{never:?}");
    assert!(started.elapsed() < T);

    // A member that stopped answering (killed, not yet declared dead): the quorum of all fails
    // at the timeout, naming it.
    c.kill().await;
    let short = Duration::from_millis(500);
    let lost = a
        .quorum_request(vec![b.id(), c.id()], "vote", Vec::new(), Quorum::All, short)
        .await
        .unwrap();
    assert!(!lost.reached, "{lost:?}");
    assert_eq!(
        lost.answered.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![b.id()]
    );
    let silent: Vec<_> = lost
        .failed
        .iter()
        .map(|(id, _)| *id)
        .chain(lost.unanswered.iter().copied())
        .collect();
    assert!(silent.contains(&c.id()), "{lost:?}");

    a.shutdown().await;
    assert!(matches!(
        a.quorum_request(vec![b.id()], "vote", Vec::new(), Quorum::First, T)
            .await,
        Err(gossip_server::GossipError::Stopped)
    ));
    assert_no_task_panicked();
}
