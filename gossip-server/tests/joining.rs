//! A failed join is loud: `Gossip::joined` says, per seed, what went wrong (issue 15).

mod common;

use std::time::Duration;

use common::*;
use gossip_server::{Gossip, GossipConfig, JoinError, SeedProblem};

/// How long a failing case waits: long enough for a first attempt on a loaded machine.
const FAIL_AFTER: Duration = Duration::from_secs(6);

async fn node(
    name: &str,
    seeds: Vec<String>,
    f: impl FnOnce(GossipConfig) -> GossipConfig,
) -> Gossip {
    watch_task_panics();
    let mut cfg = f(GossipConfig::new(fast(name)).with_bind(localhost()));
    cfg.seeds = seeds;
    Gossip::start(cfg).await.unwrap()
}

fn problems(e: &JoinError) -> Vec<SeedProblem> {
    match e {
        JoinError::NotJoined { attempts, .. } => {
            attempts.iter().map(|a| a.problem.clone()).collect()
        }
        other => panic!("expected NotJoined, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_way_a_join_fails_is_named() {
    // A seed with a token on its WebSocket, and the cluster key.
    let seed = node("seed", Vec::new(), |c| {
        c.with_key(key()).with_token("s3cret")
    })
    .await;
    let ws = seed.serve(localhost()).await.unwrap();
    let ws_url = format!("ws://{ws}/gossip/ws");
    let tcp_seed = seed_of(&seed);

    let other_key = "11".repeat(32).parse().unwrap();
    let (wrong_key, wrong_token, unreachable, unresolved, good) = tokio::join!(
        node("wrong-key", vec![tcp_seed.clone()], move |c| c
            .with_key(other_key)),
        node("wrong-token", vec![ws_url.clone()], |c| {
            let mut c = c.with_key(key());
            c.dial_token = Some("not-it".into());
            c
        }),
        node("unreachable", vec!["127.0.0.1:1".into()], |c| c
            .with_key(key())),
        node(
            "unresolved",
            vec!["no-such-host.invalid:7946".into()],
            |c| c.with_key(key())
        ),
        node("good", vec![tcp_seed.clone()], |c| c.with_key(key())),
    );
    let (k, t, u, r, g) = tokio::join!(
        wrong_key.joined(FAIL_AFTER),
        wrong_token.joined(FAIL_AFTER),
        unreachable.joined(FAIL_AFTER),
        unresolved.joined(FAIL_AFTER),
        good.joined(Duration::from_secs(20)),
    );
    assert_eq!(g, Ok(()), "the good node joins");
    let k = k.unwrap_err();
    assert!(problems(&k).contains(&SeedProblem::ClusterKey), "{k}");
    assert!(k.to_string().contains("cluster keys differ"), "{k}");
    let t = t.unwrap_err();
    assert!(problems(&t).contains(&SeedProblem::Unauthorized), "{t}");
    let u = u.unwrap_err();
    assert!(
        problems(&u)
            .iter()
            .any(|p| matches!(p, SeedProblem::Unreachable(_))),
        "{u}"
    );
    let r = r.unwrap_err();
    assert!(
        problems(&r)
            .iter()
            .any(|p| matches!(p, SeedProblem::Unresolved(_))),
        "{r}"
    );
    // Alone by design: no seed, nobody came.
    let alone = node("alone", Vec::new(), |c| c.with_key(key())).await;
    assert!(matches!(
        alone.joined(Duration::from_millis(200)).await,
        Err(JoinError::NoSeeds { .. })
    ));
    // The seed itself was joined by `good`: it knows someone now.
    assert_eq!(seed.joined(Duration::from_secs(5)).await, Ok(()));
    for n in [
        wrong_key,
        wrong_token,
        unreachable,
        unresolved,
        good,
        alone,
        seed,
    ] {
        n.shutdown().await;
    }
    assert_no_task_panicked();
}
