//! The partial-view overlay (HyParView + Plumtree) in the simulator. Every assertion names its
//! seed; rerun one with the same seed to reproduce it exactly.

use gossip_core::overlay::OverlayConfig;
use gossip_core::{Address, DropReason, Instant};
use gossip_sim::NetConfig;
use gossip_sim::VirtualTime;
use gossip_sim::overlay::OverlaySim;

/// `n` nodes joined 1 ms apart; asserts the structure converges within 30 s.
fn joined(n: usize, seed: u64, net: NetConfig) -> OverlaySim {
    let mut sim = OverlaySim::new(n, seed, OverlayConfig::for_cluster_size(n), net);
    sim.join_staggered(1_000);
    let t = sim.run_until_true(30_000, 100, OverlaySim::converged);
    let (min, mean, max) = sim.active_sizes();
    assert!(
        t.is_some(),
        "seed {seed}: {n} nodes did not converge: active sizes {min}/{mean:.2}/{max}, symmetric {}, connected {}",
        sim.symmetric(),
        sim.connected()
    );
    sim
}

/// Broadcasts from `origin`; asserts every running node receives it within `max_ms`.
fn reaches_all(sim: &mut OverlaySim, origin: usize, max_ms: u64) -> Vec<u64> {
    let seed = sim.seed();
    let at = sim.now;
    let id = sim.broadcast(origin, b"hello").expect("broadcast");
    let done = sim.run_until_true(max_ms, 10, |s| {
        let (others, got) = s.reach(origin, id, at);
        got.len() == others
    });
    let (others, got) = sim.reach(origin, id, at);
    assert!(
        done.is_some(),
        "seed {seed}: broadcast reached {}/{others} nodes",
        got.len()
    );
    got
}

#[test]
fn five_hundred_nodes_join_converge_and_broadcast_to_all() {
    for seed in 0..2 {
        let mut sim = joined(500, seed, NetConfig::default());
        // The first broadcast floods and prunes; the second follows the tree.
        reaches_all(&mut sim, 0, 2_000);
        let before: u64 = sim.nodes.iter().map(|n| n.node.stats().eager_sent).sum();
        let latencies = reaches_all(&mut sim, 7, 2_000);
        let eager: u64 = sim
            .nodes
            .iter()
            .map(|n| n.node.stats().eager_sent)
            .sum::<u64>()
            - before;
        assert!(
            eager < 500 + 500 / 10,
            "seed {seed}: a tree broadcast took {eager} full pushes for 500 nodes"
        );
        assert!(
            latencies.iter().all(|&ms| ms < 100),
            "seed {seed}: slow delivery {:?}",
            latencies.iter().max()
        );
        let received: u32 = sim.nodes.iter().map(|n| n.received).sum();
        assert_eq!(
            received,
            2 * 499,
            "seed {seed}: each delivered exactly once"
        );
    }
}

#[test]
fn broadcast_reaches_all_under_five_percent_loss() {
    let seed = 3;
    let net = NetConfig {
        loss: 0.05,
        ..NetConfig::default()
    };
    let mut sim = joined(300, seed, net);
    for origin in [0, 100, 200] {
        reaches_all(&mut sim, origin, 5_000);
    }
    let grafts: u64 = sim.nodes.iter().map(|n| n.node.stats().grafts_sent).sum();
    assert!(
        grafts > 0,
        "seed {seed}: loss on tree links is repaired by grafts"
    );
}

#[test]
fn overlay_repairs_after_ten_percent_crash() {
    let seed = 5;
    let mut sim = joined(300, seed, NetConfig::default());
    reaches_all(&mut sim, 0, 2_000);
    for i in (1..300).step_by(10) {
        sim.crash(i);
    }
    let repaired = sim.run_until_true(30_000, 100, OverlaySim::converged);
    let (min, mean, max) = sim.active_sizes();
    assert!(
        repaired.is_some(),
        "seed {seed}: no repair after crashes: sizes {min}/{mean:.2}/{max}, symmetric {}, connected {}",
        sim.symmetric(),
        sim.connected()
    );
    let failures: u32 = sim.nodes.iter().map(|n| n.failures_seen).sum();
    assert!(failures > 0, "seed {seed}: crashed neighbours detected");
    reaches_all(&mut sim, 2, 2_000);
}

#[test]
fn graceful_leave_is_repaired_without_failure_detection() {
    let seed = 8;
    let mut sim = joined(100, seed, NetConfig::default());
    let neighbors = sim.neighbors(10);
    sim.leave(10);
    sim.run_for(200);
    let gone = sim.id(10);
    for j in neighbors {
        assert!(
            !sim.nodes[j].node.active().contains(&gone),
            "seed {seed}: {j} still links to the leaver"
        );
        assert!(!sim.nodes[j].node.passive().contains(&gone));
    }
    assert!(
        sim.run_until_true(10_000, 100, OverlaySim::converged)
            .is_some()
    );
    let failures: u32 = sim.nodes.iter().map(|n| n.failures_seen).sum();
    assert_eq!(failures, 0, "seed {seed}: a leave is not a failure");
}

#[test]
fn hostile_frames_are_dropped_and_counted() {
    let seed = 9;
    let mut sim = joined(20, seed, NetConfig::default());
    let now = sim.now;
    let victim = 3;
    let from: Address = sim.addr(4);
    let before = sim.nodes[victim].node.wire_stats().drops.clone();
    let node = &mut sim.nodes[victim].node;
    // Garbage of every length, a bad version, reserved flags, and an unencrypted frame.
    for len in [0usize, 1, 2, 3, 50, 200, 2_000] {
        let junk: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        assert!(node.handle_packet(now, from.clone(), &junk).is_err());
    }
    assert!(
        node.handle_packet(now, from.clone(), &[9, 1, 0, 0])
            .is_err()
    );
    assert!(
        node.handle_packet(now, from.clone(), &[1, 0x80, 0])
            .is_err()
    );
    assert!(
        node.handle_packet(now, from.clone(), &[1, 0, 0, 1, 2])
            .is_err()
    );
    // A frame sealed with another cluster key (an outsider forging an origin).
    let mut outsider = OverlaySim::new(
        2,
        seed + 1000,
        OverlayConfig::default(),
        NetConfig::default(),
    );
    let forged = {
        let o = &mut outsider.nodes[0].node;
        o.join(Instant::from_millis(0), &[sim.addr(victim)])
            .unwrap();
        o.poll_transmit().unwrap().bytes
    };
    let node = &mut sim.nodes[victim].node;
    assert!(node.handle_packet(now, from.clone(), &forged).is_err());
    let after = node.wire_stats().drops.clone();
    let count =
        |d: &std::collections::BTreeMap<DropReason, u64>, r| d.get(&r).copied().unwrap_or(0);
    let total = |d: &std::collections::BTreeMap<DropReason, u64>| d.values().sum::<u64>();
    assert!(
        count(&after, DropReason::Malformed) > count(&before, DropReason::Malformed),
        "seed {seed}"
    );
    assert!(
        count(&after, DropReason::Incompatible) > count(&before, DropReason::Incompatible),
        "seed {seed}"
    );
    assert!(
        count(&after, DropReason::Unauthenticated)
            >= count(&before, DropReason::Unauthenticated) + 2,
        "seed {seed}"
    );
    assert!(total(&after) >= total(&before) + 11, "seed {seed}");
    // A captured frame replayed is refused as a duplicate.
    let frame = {
        let sender = &mut sim.nodes[4].node;
        sender.broadcast(now, "t", b"x".to_vec()).unwrap();
        sender.poll_transmit().unwrap()
    };
    let to = frame.node.and_then(|id| sim.index(&id)).unwrap();
    let node = &mut sim.nodes[to].node;
    assert!(node.handle_packet(now, from.clone(), &frame.bytes).is_ok());
    assert!(node.handle_packet(now, from, &frame.bytes).is_err());
    assert!(
        node.wire_stats().drops.get(&DropReason::Duplicate) > Some(&0),
        "seed {seed}"
    );
    // The overlay still works afterwards.
    assert!(
        sim.run_until_true(10_000, 100, OverlaySim::converged)
            .is_some()
    );
}

/// What a run leaves behind on each node: frames and bytes sent, broadcasts received, and its
/// active view.
fn fingerprint(sim: &OverlaySim) -> Vec<(u64, u64, u32, Vec<usize>)> {
    (0..sim.nodes.len())
        .map(|i| {
            let n = &sim.nodes[i];
            let mut view = sim.neighbors(i);
            view.sort_unstable();
            (n.sent_packets, n.sent_bytes, n.received, view)
        })
        .collect()
}

#[test]
fn a_run_is_the_same_on_one_thread_and_on_several() {
    let net = NetConfig {
        loss: 0.05,
        duplicate: 0.02,
        ..NetConfig::default()
    };
    for seed in 0..2 {
        let runs: Vec<_> = [1, 3]
            .into_iter()
            .map(|threads| {
                let mut sim = OverlaySim::new(300, seed, OverlayConfig::for_cluster_size(300), net);
                sim.set_threads(threads);
                sim.join_staggered(200);
                sim.run_for(3_000);
                sim.crash(11);
                sim.broadcast(5, b"same");
                sim.run_for(6_000);
                let parallel = sim.parallel_windows;
                (
                    fingerprint(&sim),
                    sim.delivered,
                    sim.dropped,
                    sim.now,
                    parallel,
                )
            })
            .collect();
        assert!(
            runs[1].4 > 100,
            "seed {seed}: only {} windows ran in parallel",
            runs[1].4
        );
        let busy = runs[0].0.iter().filter(|(sent, ..)| *sent > 0).count();
        assert_eq!(busy, 300, "seed {seed}: some nodes never sent");
        let (a, b) = (&runs[0], &runs[1]);
        assert!(
            (&a.0, a.1, a.2, a.3) == (&b.0, b.1, b.2, b.3),
            "seed {seed}: the run on 3 threads differs from the run on one"
        );
    }
}
