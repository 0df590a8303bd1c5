//! Named endpoints between real nodes on 127.0.0.1: register, resolve everywhere, a request by
//! name with each policy, a stream by name, a watch of the holders through an unregister and a
//! holder's crash, and typed refusals.

mod common;

use std::time::Duration;

use common::*;
use gossip_core::Event;
use gossip_core::NodeId;
use gossip_core::endpoints::{EndpointError, NameError, Policy};
use gossip_server::{Gossip, GossipError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(30);

/// Answers every request for `name` with this node's name, and echoes every stream.
fn serve(g: &Gossip, name: &'static str, answer: String) {
    let mut events = g.subscribe();
    let responder = g.clone();
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            if let Event::Request {
                from, id, topic, ..
            } = e
                && topic == name
            {
                let _ = responder.respond(from, id, answer.clone()).await;
            }
        }
    });
    let acceptor = g.clone();
    tokio::spawn(async move {
        while let Some(mut s) = acceptor.accept_stream().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

async fn holders(g: &Gossip, name: &str) -> Vec<NodeId> {
    g.resolve(name)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect()
}

fn sorted(mut v: Vec<NodeId>) -> Vec<NodeId> {
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_streams_by_name_with_each_policy() {
    let nodes = udp_cluster("ep", 4, T).await;
    let ids: Vec<NodeId> = nodes.iter().map(Gossip::id).collect();
    let client = &nodes[0];
    let mut watch = client.watch_endpoint("orders").await.unwrap();
    assert!(watch.holders.is_empty());
    for (i, g) in nodes.iter().enumerate().skip(1) {
        serve(g, "orders", format!("ep-{i}"));
    }
    assert_eq!(nodes[1].register_endpoint("orders").await, Ok(true));
    assert_eq!(nodes[2].register_endpoint("orders").await, Ok(true));
    assert_eq!(nodes[2].register_endpoint("orders").await, Ok(false));
    nodes[3].register_endpoint("orders").await.unwrap();
    let three = sorted(ids[1..].to_vec());
    for g in &nodes {
        eventually(T, "every node resolves the three holders", || async {
            holders(g, "orders").await == three
        })
        .await;
    }
    while watch.holders != three {
        tokio::time::timeout(T, watch.next())
            .await
            .expect("the watch reports the registrations")
            .expect("node running");
    }
    assert_eq!(client.endpoints().await.unwrap().get("orders"), Some(&3));

    let all = client
        .request_endpoint("orders", Policy::All, "count", T)
        .await
        .unwrap();
    let mut answers: Vec<(NodeId, String)> = all
        .into_iter()
        .map(|r| (r.from, String::from_utf8(r.result.unwrap()).unwrap()))
        .collect();
    answers.sort();
    let mut expected: Vec<(NodeId, String)> = (1..4).map(|i| (ids[i], format!("ep-{i}"))).collect();
    expected.sort();
    assert_eq!(answers, expected, "All asks every holder");

    let mut any_seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let r = client
            .request_endpoint("orders", Policy::Any, "x", T)
            .await
            .unwrap();
        assert_eq!(r.len(), 1);
        let text = String::from_utf8(r[0].result.clone().unwrap()).unwrap();
        assert_eq!(
            text,
            format!("ep-{}", ids.iter().position(|i| *i == r[0].from).unwrap())
        );
        any_seen.insert(r[0].from);
        if any_seen.len() == 3 {
            break;
        }
    }
    assert_eq!(any_seen.len(), 3, "Any spreads over the holders");

    eventually(
        T,
        "the client measured every holder's round trip",
        || async {
            client
                .resolve("orders")
                .await
                .unwrap()
                .iter()
                .all(|h| h.rtt_micros.is_some())
        },
    )
    .await;
    let nearest = client
        .request_endpoint("orders", Policy::Nearest, "x", T)
        .await
        .unwrap();
    assert_eq!(nearest.len(), 1);
    assert!(ids[1..].contains(&nearest[0].from));
    assert!(nearest[0].result.is_ok());

    let mut stream = client
        .open_stream_to_endpoint("orders", Policy::Nearest)
        .await
        .unwrap();
    assert!(ids[1..].contains(&stream.peer()));
    stream.write_all(b"hello by name").await.unwrap();
    let mut echo = [0u8; 13];
    tokio::time::timeout(T, stream.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"hello by name");
    assert_eq!(
        client
            .open_stream_to_endpoint("orders", Policy::All)
            .await
            .err(),
        Some(GossipError::Endpoint(EndpointError::NotOne))
    );

    // Unregister, then a crash: both leave the holders everywhere, and the watch says so.
    assert_eq!(nodes[1].unregister_endpoint("orders").await, Ok(true));
    nodes[3].kill().await;
    let one = vec![ids[2]];
    for g in &nodes[..3] {
        eventually(
            T,
            "the unregistered and the crashed holder are gone",
            || async { holders(g, "orders").await == one },
        )
        .await;
    }
    while watch.holders != one {
        tokio::time::timeout(T, watch.next())
            .await
            .expect("the watch reports the removals")
            .expect("node running");
    }
    let all = client
        .request_endpoint("orders", Policy::All, "count", T)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].from, ids[2]);

    assert_eq!(
        client
            .request_endpoint("nobody", Policy::Any, "x", T)
            .await
            .err(),
        Some(GossipError::Endpoint(EndpointError::NoHolder(
            "nobody".into()
        )))
    );
    assert_eq!(
        client.register_endpoint("bad name").await,
        Err(GossipError::Endpoint(EndpointError::Name(
            NameError::BadChar(' ')
        )))
    );
    for g in &nodes[..3] {
        g.shutdown().await;
    }
    assert_no_task_panicked();
}
