//! Replicated state with every member writing, in the simulator: N members each own K keys
//! (N x K keys in the cluster, every one held by every member). Measured in virtual time, with
//! the bytes all members sent (frames, encrypted) meanwhile:
//!
//! - load: all members write their K keys at once, until every member holds every map;
//! - one change: one member changes one key, until every member holds it;
//! - all change: every member changes one of its keys at once, until every member holds all;
//! - deletes: every member deletes one key at once, until every member applied them all, and
//!   until every tombstone is collected (`tombstone_grace_ms`, 60 s by default).
//!
//! `cargo run -p gossip-sim --example state_timing [SEEDS] [N] [K]`
//! (defaults: 1 seed, 100 members, 10 keys each; gossip-core and gossip-sim build at opt-level
//! 3 even in debug). Prints a markdown table, one row per seed.

use gossip_core::Config;
use gossip_sim::VirtualTime;
use gossip_sim::{NetConfig, Sim};

fn bytes_sent(sim: &Sim) -> u64 {
    sim.nodes.iter().map(|n| n.sent_bytes).sum()
}

/// Runs until `done`, checking every `check_ms`; returns the virtual ms and the bytes sent.
fn measure(sim: &mut Sim, check_ms: u64, done: impl FnMut(&Sim) -> bool) -> (Option<u64>, u64) {
    let before = bytes_sent(sim);
    let t = sim.run_until_true(300_000, check_ms, done);
    (t, bytes_sent(sim) - before)
}

fn show((t, bytes): (Option<u64>, u64)) -> String {
    match t {
        Some(ms) => format!("{ms} ms, {bytes} B"),
        None => format!("not within 300 s ({bytes} B)"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seeds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    // Keys 0-2 are changed and deleted below.
    let k: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(10)
        .max(3);
    println!(
        "N={n}, {k} keys per member ({} in all, 32-byte values), Config::lan(), NetConfig::default() (no loss); \
         virtual time (checked every 5 ms, 100 ms for collection), bytes sent by all members",
        n * k
    );
    println!();
    println!(
        "| seed | load: all write {k} keys | one member changes one key | every member changes one key | every member deletes one key | tombstones collected (after the deletes) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for seed in 0..seeds {
        let mut sim = Sim::new(n, seed, Config::lan(), NetConfig::default());
        sim.join_all();
        if sim.run_until_true(120_000, 100, Sim::converged).is_none() {
            println!("| {seed} | no membership convergence | | | | |");
            continue;
        }
        sim.run_for(10_000);
        for i in 0..n {
            sim.with_node(i, |node, now| {
                for key in 0..k {
                    node.state_set(now, &format!("key/{key:04}"), vec![key as u8; 32])
                        .expect("within the default limits");
                }
            });
        }
        let load = measure(&mut sim, 5, Sim::state_converged);
        // Let the load's gossip drain so each change is measured on a quiet cluster.
        sim.run_for(10_000);

        sim.with_node(n / 2, |node, now| {
            node.state_set(now, "key/0000", b"changed".to_vec())
        })
        .expect("within the limits");
        let one = measure(&mut sim, 5, Sim::state_converged);
        sim.run_for(10_000);

        for i in 0..n {
            sim.with_node(i, |node, now| {
                node.state_set(now, "key/0001", b"all".to_vec())
            })
            .expect("within the limits");
        }
        let all = measure(&mut sim, 5, Sim::state_converged);
        sim.run_for(10_000);

        for i in 0..n {
            sim.with_node(i, |node, now| {
                node.state_delete(now, "key/0002").expect("set above");
                // An owner's newest write is kept as proof of its version: end on a value.
                node.state_set(now, "key/0001", b"last".to_vec())
            })
            .expect("within the limits");
        }
        let deletes = measure(&mut sim, 5, Sim::state_converged);
        let before = bytes_sent(&sim);
        let collected = sim
            .run_until_true(300_000, 100, |s| s.state_tombstones() == 0)
            .map(|ms| ms + deletes.0.unwrap_or(0));
        let collect_bytes = bytes_sent(&sim) - before;
        println!(
            "| {seed} | {} | {} | {} | {} | {} |",
            show(load),
            show(one),
            show(all),
            show(deletes),
            show((collected, collect_bytes)),
        );
    }
}
