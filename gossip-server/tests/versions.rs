//! Version negotiation on join (issue 16): a member outside the seed's version ranges is refused
//! with a typed error on both sides, over TCP and over WebSocket, and one inside joins.

mod common;

use std::time::Duration;

use common::*;
use gossip_core::link::handshake::{VersionRange, Versions};
use gossip_server::{Gossip, GossipConfig, JoinError, SeedProblem};

const FAIL_AFTER: Duration = Duration::from_secs(6);
const T: Duration = Duration::from_secs(30);

async fn node(name: &str, seeds: Vec<String>, app: (u16, u16)) -> Gossip {
    watch_task_panics();
    let mut cfg = GossipConfig::new(fast(name))
        .with_key(key())
        .with_bind(localhost())
        .with_app_versions(app.0, app.1);
    cfg.seeds = seeds;
    Gossip::start(cfg).await.unwrap()
}

fn version_problems(e: &JoinError) -> Vec<(Versions, Versions)> {
    match e {
        JoinError::NotJoined { attempts, .. } => attempts
            .iter()
            .filter_map(|a| match a.problem {
                SeedProblem::Version { ours, theirs } => Some((ours, theirs)),
                _ => None,
            })
            .collect(),
        other => panic!("expected NotJoined, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_outside_the_version_range_is_refused_on_both_sides() {
    let seed = node("v-seed", Vec::new(), (2, 3)).await;
    let ws = seed.serve(localhost()).await.unwrap();
    let (tcp_seed, ws_seed) = (seed_of(&seed), format!("ws://{ws}/gossip/ws"));
    let (old, newer, ws_newer, fits) = tokio::join!(
        node("v-old", vec![tcp_seed.clone()], (0, 1)),
        node("v-newer", vec![tcp_seed.clone()], (4, 9)),
        node("v-ws-newer", vec![ws_seed], (4, 9)),
        node("v-fits", vec![tcp_seed.clone()], (3, 7)),
    );
    let (o, n, w, f) = tokio::join!(
        old.joined(FAIL_AFTER),
        newer.joined(FAIL_AFTER),
        ws_newer.joined(FAIL_AFTER),
        fits.joined(T),
    );
    assert_eq!(f, Ok(()), "an overlapping range joins");
    let seed_versions = Versions::app(2, 3);
    for (e, app) in [(o, (0, 1)), (n, (4, 9)), (w, (4, 9))] {
        let e = e.unwrap_err();
        assert_eq!(
            version_problems(&e),
            vec![(Versions::app(app.0, app.1), seed_versions)],
            "{e}"
        );
        assert!(e.to_string().contains("no common version"), "{e}");
    }
    // The refusing side counted each refusal under its own label (and logged it at WARN).
    eventually(T, "the seed counts the refusals", || async {
        drops(&seed, "handshake_version").await >= 3
    })
    .await;
    let ids = [seed.id(), fits.id()];
    eventually(T, "the seed sees only the member that fits", || {
        sees_alive(&seed, &ids)
    })
    .await;
    assert_no_task_panicked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_version_ranges_are_refused_without_harm() {
    let seed = node("v-seed2", Vec::new(), (0, 0)).await;
    let mut empty = GossipConfig::new(fast("v-empty"))
        .with_key(key())
        .with_bind(localhost());
    empty.versions.app = VersionRange::new(u16::MAX, 0);
    empty.seeds = vec![seed_of(&seed)];
    let mut future = GossipConfig::new(fast("v-future"))
        .with_key(key())
        .with_bind(localhost());
    future.versions.protocol = VersionRange::new(2, u16::MAX);
    future.seeds = vec![seed_of(&seed)];
    let (empty, future) = (
        Gossip::start(empty).await.unwrap(),
        Gossip::start(future).await.unwrap(),
    );
    let (e, f) = tokio::join!(empty.joined(FAIL_AFTER), future.joined(FAIL_AFTER));
    for e in [e.unwrap_err(), f.unwrap_err()] {
        assert_eq!(version_problems(&e).len(), 1, "{e}");
    }
    // The seed still serves a member that fits.
    let ok = node("v-ok", vec![seed_of(&seed)], (0, 5)).await;
    assert_eq!(ok.joined(T).await, Ok(()));
    assert_no_task_panicked();
}
