//! Key ownership in the simulator: once membership has converged, every running member names
//! the same owners for every key, under loss, after a crash, after a leave and across a healed
//! partition; ownership watches report every move (a mirror built from the watch's initial
//! owners and its events always equals a fresh computation). Every assertion names its seed.

use std::collections::BTreeMap;

use gossip_core::groups::GroupSpec;
use gossip_core::ownership::WatchId;
use gossip_core::{Config, Event, NodeId, State};
use gossip_sim::VirtualTime;
use gossip_sim::{NetConfig, Sim};

const N: usize = 12;
const REPLICAS: usize = 3;

fn keys() -> Vec<Vec<u8>> {
    (0..200).map(|k| format!("key-{k}").into_bytes()).collect()
}

/// Every running member's owners of every key are the same; returns them.
fn agreed(sim: &Sim, seed: u64, what: &str) -> BTreeMap<Vec<u8>, Vec<NodeId>> {
    let up = sim.up();
    let reference: BTreeMap<Vec<u8>, Vec<NodeId>> = keys()
        .into_iter()
        .map(|k| {
            let o = sim.nodes[up[0]].node.owners(&k, REPLICAS);
            (k, o)
        })
        .collect();
    for &i in &up[1..] {
        for (k, want) in &reference {
            assert_eq!(
                &sim.nodes[i].node.owners(k, REPLICAS),
                want,
                "seed {seed}: node {i} disagrees with node {} on {k:?} ({what})",
                up[0]
            );
        }
    }
    let live: Vec<NodeId> = up.iter().map(|&i| sim.id(i)).collect();
    for owners in reference.values() {
        assert_eq!(
            owners.len(),
            REPLICAS.min(live.len()),
            "seed {seed} ({what})"
        );
        assert!(
            owners.iter().all(|o| live.contains(o)),
            "seed {seed}: a member that is not running owns a key ({what})"
        );
    }
    reference
}

/// A watch's view: its initial owners, then every event it reported on node `i` from event
/// index `from` on. Asserts each event's `old` matched the mirror.
struct Mirror {
    node: usize,
    watch: WatchId,
    from: usize,
    owners: BTreeMap<Vec<u8>, Vec<NodeId>>,
    moves: usize,
}

impl Mirror {
    fn open(sim: &mut Sim, node: usize, group: Option<gossip_core::groups::GroupId>) -> Mirror {
        let from = sim.nodes[node].events.len();
        let (watch, initial) = sim.with_node(node, |n, _| {
            n.ownership_watch(keys(), REPLICAS, group).unwrap()
        });
        Mirror {
            node,
            watch,
            from,
            owners: initial.into_iter().collect(),
            moves: 0,
        }
    }

    /// Applies the events reported since the last call; returns the keys that moved.
    fn catch_up(&mut self, sim: &Sim, seed: u64) -> Vec<(Vec<u8>, Vec<NodeId>, Vec<NodeId>)> {
        let mut moved = Vec::new();
        for (_, e) in &sim.nodes[self.node].events[self.from..] {
            if let Event::OwnershipChanged { watch, changes } = e
                && *watch == self.watch
            {
                for c in changes {
                    assert_eq!(
                        self.owners[&c.key], c.old,
                        "seed {seed}: an event's old owners are not the ones reported before"
                    );
                    self.owners.insert(c.key.clone(), c.new.clone());
                    moved.push((c.key.clone(), c.old.clone(), c.new.clone()));
                }
            }
        }
        self.from = sim.nodes[self.node].events.len();
        self.moves += moved.len();
        moved
    }
}

#[test]
fn members_agree_on_owners_through_loss_a_crash_and_a_healed_partition() {
    for seed in 0..3 {
        let mut sim = Sim::joined(N, seed, Config::lan(), NetConfig::lossy(0.05));
        let before = agreed(&sim, seed, "after the join");
        let mut mirror = Mirror::open(&mut sim, 0, None);
        assert_eq!(mirror.owners, before, "seed {seed}: initial owners");

        // A crash: once everyone has buried node 3, it owns nothing and its keys moved.
        let id3 = sim.id(3);
        let held: Vec<&Vec<u8>> = before
            .iter()
            .filter(|(_, o)| o.contains(&id3))
            .map(|(k, _)| k)
            .collect();
        assert!(
            !held.is_empty(),
            "seed {seed}: node 3 owns none of 200 keys"
        );
        sim.crash(3);
        let dead = sim.run_until_true(60_000, 100, |s| s.buried_by_all(3));
        assert!(dead.is_some(), "seed {seed}: crash not detected");
        let after = agreed(&sim, seed, "after the crash");
        let moved = mirror.catch_up(&sim, seed);
        assert_eq!(mirror.owners, after, "seed {seed}: the watch missed a move");
        assert_eq!(
            moved.len(),
            held.len(),
            "seed {seed}: exactly the keys node 3 held moved"
        );
        assert!(
            moved
                .iter()
                .all(|(_, old, new)| old.contains(&id3) && !new.contains(&id3)),
            "seed {seed}"
        );
        for (k, owners) in &before {
            if !owners.contains(&id3) {
                assert_eq!(&after[k], owners, "seed {seed}: {k:?} moved without cause");
            }
        }

        // A partition: each side ranks only its own members, then they agree again.
        sim.partition((0..N).map(|i| u8::from(i >= 6)).collect());
        sim.run_for(30_000);
        let left_side = sim.nodes[0].node.owners(b"key-0", N);
        assert!(
            left_side.iter().all(|o| (0..6).any(|i| sim.id(i) == *o)),
            "seed {seed}: node 0 still ranks members it cannot reach after 30 s"
        );
        sim.heal();
        let back = sim.run_until_true(120_000, 100, Sim::converged);
        assert!(back.is_some(), "seed {seed}: membership did not heal");
        let healed = agreed(&sim, seed, "after the partition healed");
        mirror.catch_up(&sim, seed);
        assert_eq!(
            mirror.owners, healed,
            "seed {seed}: the watch missed a move"
        );
        assert_eq!(healed, after, "seed {seed}: same members, same owners");
    }
}

#[test]
fn group_owners_are_group_members_and_leaves_move_keys() {
    for seed in 0..3 {
        let mut sim = Sim::joined(N, seed, Config::lan(), NetConfig::lossy(0.0));
        // Even nodes are stores.
        for i in (0..N).step_by(2) {
            sim.with_node(i, |n, now| {
                n.set_metadata(now, "role", Some(b"store".to_vec()))
                    .unwrap()
            });
        }
        let spec: GroupSpec = "role=store".parse().unwrap();
        let groups: Vec<_> = (0..N)
            .map(|i| sim.with_node(i, |n, _| n.groups().define(spec.clone()).unwrap()))
            .collect();
        let stores: Vec<NodeId> = (0..N).step_by(2).map(|i| sim.id(i)).collect();
        let all_see_stores = sim.run_until_true(10_000, 100, |s| {
            (0..N).all(|i| s.nodes[i].node.group_view().len(groups[i]) == Some(N / 2))
        });
        assert!(
            all_see_stores.is_some(),
            "seed {seed}: metadata did not spread"
        );
        let mut mirror = Mirror::open(&mut sim, 1, Some(groups[1]));
        for k in keys() {
            let want = sim.nodes[0]
                .node
                .owners_in(groups[0], &k, REPLICAS)
                .unwrap();
            assert!(want.iter().all(|o| stores.contains(o)), "seed {seed}");
            for (i, &group) in groups.iter().enumerate().skip(1) {
                assert_eq!(
                    sim.nodes[i].node.owners_in(group, &k, REPLICAS).unwrap(),
                    want,
                    "seed {seed}: node {i}"
                );
            }
            assert_eq!(mirror.owners[&k], want, "seed {seed}");
        }

        // A store stops being one: it no longer owns group keys, though it is still live.
        sim.with_node(4, |n, now| n.set_metadata(now, "role", None).unwrap());
        // Another store leaves the cluster.
        sim.with_node(6, |n, now| n.leave(now));
        let id4 = sim.id(4);
        let id6 = sim.id(6);
        let settled = sim.run_until_true(10_000, 100, |s| {
            (0..N).filter(|&i| i != 6).all(|i| {
                s.view(i, 6) == Some(State::Left)
                    && s.nodes[i].node.group_view().len(groups[i]) == Some(N / 2 - 2)
            })
        });
        assert!(
            settled.is_some(),
            "seed {seed}: the leave or the role change did not spread"
        );
        sim.crash(6);
        let moved = mirror.catch_up(&sim, seed);
        assert!(!moved.is_empty(), "seed {seed}: no group key moved");
        for k in keys() {
            let want = sim.nodes[0]
                .node
                .owners_in(groups[0], &k, REPLICAS)
                .unwrap();
            assert!(!want.contains(&id4) && !want.contains(&id6), "seed {seed}");
            assert_eq!(
                mirror.owners[&k], want,
                "seed {seed}: the watch missed a move"
            );
            // Cluster-wide ownership still counts node 4 (live) but not node 6 (left).
            let all = sim.nodes[0].node.owners(&k, N);
            assert!(all.contains(&id4) && !all.contains(&id6), "seed {seed}");
        }

        // Removing the group closes its watches: no more events for it.
        sim.with_node(1, |n, _| n.groups().remove(groups[1]));
        sim.with_node(2, |n, now| n.set_metadata(now, "role", None).unwrap());
        sim.run_for(5_000);
        assert!(mirror.catch_up(&sim, seed).is_empty(), "seed {seed}");
        assert!(
            !sim.with_node(1, |n, _| n.ownership_unwatch(mirror.watch)),
            "seed {seed}: the watch outlived its group"
        );
    }
}
