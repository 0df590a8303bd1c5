//! Replicated state in the simulator: every running member converges to each owner's latest
//! map under loss, across a healed partition, through crashes and restarts, and after being
//! away longer than the tombstone grace period. Every assertion names its seed.

use gossip_core::Config;
use gossip_core::state::StateConfig;
use gossip_sim::VirtualTime;
use gossip_sim::{NetConfig, Sim};

/// A short grace (shorter than a suspicion lasts at this size) so that tombstones are
/// collected within the test, and a member can be away longer than it without being declared
/// dead.
const GRACE_MS: u64 = 2_000;

fn config() -> Config {
    Config {
        state: StateConfig {
            tombstone_grace_ms: GRACE_MS,
            ..StateConfig::default()
        },
        ..Config::lan()
    }
}

/// Each node in `nodes` writes `keys` keys, then deletes every third and rewrites the last
/// (so the newest write of every owner is a value, and every tombstone can be collected).
fn write(sim: &mut Sim, nodes: &[usize], keys: usize, tag: &str) {
    for &i in nodes {
        sim.with_node(i, |n, now| {
            for k in 0..keys {
                n.state_set(now, &format!("{tag}/{k}"), format!("{i}:{k}").into_bytes())
                    .unwrap();
            }
            for k in (0..keys).step_by(3) {
                n.state_delete(now, &format!("{tag}/{k}")).unwrap();
            }
            n.state_set(now, &format!("{tag}/last"), vec![i as u8])
                .unwrap();
        });
    }
}

fn converge(sim: &mut Sim, seed: u64, what: &str) {
    let ms = sim.run_until_true(30_000, 100, Sim::state_converged);
    assert!(ms.is_some(), "seed {seed}: state did not converge ({what})");
    let ms = sim.run_until_true(4 * GRACE_MS + 10_000, 100, |s| s.state_tombstones() == 0);
    assert!(
        ms.is_some(),
        "seed {seed}: {} tombstones left ({what})",
        sim.state_tombstones()
    );
    assert!(
        sim.state_converged(),
        "seed {seed}: diverged after collection ({what})"
    );
}

#[test]
fn state_converges_under_loss() {
    for seed in 0..3 {
        let mut sim = Sim::joined(12, seed, config(), NetConfig::lossy(0.1));
        let all: Vec<usize> = (0..12).collect();
        write(&mut sim, &all, 30, "a");
        converge(&mut sim, seed, "10 % loss");
    }
}

#[test]
fn state_converges_across_a_healed_partition() {
    for seed in 0..3 {
        let mut sim = Sim::joined(10, seed, config(), NetConfig::lossy(0.0));
        write(&mut sim, &[0, 9], 10, "before");
        sim.run_until_true(10_000, 100, Sim::state_converged);
        sim.partition((0..10).map(|i| u8::from(i >= 5)).collect());
        // Both sides write, delete, and (after the grace) collect while apart.
        write(&mut sim, &[1, 8], 20, "apart");
        write(&mut sim, &[0, 9], 10, "before");
        sim.run_for(20_000);
        sim.heal();
        let back = sim.run_until_true(120_000, 100, Sim::converged);
        assert!(back.is_some(), "seed {seed}: membership did not heal");
        converge(&mut sim, seed, "healed partition");
    }
}

#[test]
fn crashes_drop_the_crashed_members_map_and_a_restart_starts_empty() {
    for seed in 0..3 {
        let mut sim = Sim::joined(10, seed, config(), NetConfig::lossy(0.05));
        let all: Vec<usize> = (0..10).collect();
        write(&mut sim, &all, 10, "k");
        converge(&mut sim, seed, "before the crash");
        sim.crash(3);
        let dead = sim.run_until_true(60_000, 100, |s| s.buried_by_all(3));
        assert!(dead.is_some(), "seed {seed}: crash not detected");
        converge(&mut sim, seed, "after the crash");
        let id3 = sim.id(3);
        assert!(
            sim.up()
                .iter()
                .all(|&i| sim.nodes[i].node.state_version(&id3).is_none()),
            "seed {seed}: the crashed member's map is still held"
        );
        sim.restart(3, &[0]);
        sim.with_node(3, |n, now| {
            n.state_set(now, "fresh", b"1".to_vec()).unwrap()
        });
        let back = sim.run_until_true(60_000, 100, Sim::converged);
        assert!(back.is_some(), "seed {seed}: the restart did not rejoin");
        converge(&mut sim, seed, "after the restart");
        assert_eq!(
            sim.nodes[0].node.state_entries(&id3).len(),
            1,
            "seed {seed}"
        );
    }
}

#[test]
fn a_member_away_longer_than_the_grace_is_rebuilt_without_resurrections() {
    for seed in 0..3 {
        let mut sim = Sim::joined(10, seed, config(), NetConfig::lossy(0.0));
        write(&mut sim, &[0], 30, "k");
        converge(&mut sim, seed, "before");
        // Node 9 is cut off for 3 s (longer than the grace, shorter than a suspicion lasts
        // here) while node 0 deletes 10 keys and everyone else collects the tombstones.
        for j in 0..9 {
            sim.cut(9, j);
        }
        sim.with_node(0, |n, now| {
            for k in 1..11 {
                n.state_delete(now, &format!("k/{k}")).unwrap_or_default();
            }
            n.state_set(now, "k/last", vec![1]).unwrap();
        });
        sim.run_for(3_000);
        for j in 0..9 {
            sim.restore(9, j);
        }
        let id0 = sim.id(0);
        assert!(
            sim.nodes[9].node.state_get(&id0, "k/2").is_some(),
            "seed {seed}: node 9 should still hold the old map"
        );
        assert!(
            sim.nodes[9]
                .node
                .member(&id0)
                .is_some_and(|m| !m.state.is_down()),
            "seed {seed}: node 0 was declared down at node 9: not the case under test"
        );
        converge(&mut sim, seed, "after the absence");
        for i in sim.up() {
            assert!(
                sim.nodes[i].node.state_get(&id0, "k/2").is_none(),
                "seed {seed}: k/2 came back at node {i}"
            );
        }
    }
}
