//! The scale targets, run as tests: 1,000 members converge on join and on a metadata
//! update, and a 100-member cluster at 10% loss has no false deaths over 30 simulated minutes.

use gossip_core::{Config, Event};
use gossip_sim::VirtualTime;
use gossip_sim::{NetConfig, Sim};

#[test]
fn thousand_members_join_and_spread_metadata() {
    for seed in [1, 2] {
        let mut sim = Sim::new(1_000, seed, Config::lan(), NetConfig::default());
        sim.join_all();
        let ms = sim.run_until_true(5_000, 100, Sim::converged);
        assert!(
            ms.is_some(),
            "seed {seed}: 1,000 members did not all know each other within 5 s (knowledge {:.5})",
            sim.knowledge()
        );
        sim.with_node(500, |n, now| {
            n.set_metadata(now, "role", Some(b"leader".to_vec()))
        })
        .unwrap();
        let id = sim.id(500);
        let ms = sim.run_until_true(5_000, 1, |s| {
            s.nodes.iter().all(|n| {
                n.node
                    .member(&id)
                    .is_some_and(|m| m.metadata.contains_key("role"))
            })
        });
        assert!(
            ms.is_some(),
            "seed {seed}: metadata did not reach all 1,000 members"
        );
    }
}

#[test]
fn no_false_deaths_for_thirty_minutes_at_ten_percent_loss() {
    let seed = 7;
    let mut sim = Sim::new(
        100,
        seed,
        Config::lan(),
        NetConfig {
            loss: 0.1,
            ..NetConfig::default()
        },
    );
    sim.join_all();
    sim.run_until_true(30_000, 100, Sim::converged)
        .unwrap_or_else(|| panic!("seed {seed}: no convergence"));
    sim.run_for(30 * 60_000);
    let deaths: usize = sim
        .nodes
        .iter()
        .map(|n| {
            n.events
                .iter()
                .filter(|(_, e)| matches!(e, Event::MemberDead { .. }))
                .count()
        })
        .sum();
    assert_eq!(deaths, 0, "seed {seed}: {deaths} false deaths");
    assert!(sim.converged(), "seed {seed}");
}
