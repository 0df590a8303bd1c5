//! Named endpoints at N=100 in the simulator: virtual time from a registration to every running
//! member resolving it, and from a holder's crash (or leave) to every member dropping it.
//!
//! `cargo run -p gossip-sim --example endpoint_timing [SEEDS] [N] [LOSS]`
//! (defaults: 5 seeds, 100 members, no loss; gossip-core and gossip-sim build at opt-level 3
//! even in debug). Prints a markdown table, one row per seed.

use gossip_core::{Config, NodeId};
use gossip_sim::VirtualTime;
use gossip_sim::{NetConfig, Sim};

fn resolves(sim: &Sim, name: &str, holders: &[NodeId]) -> bool {
    sim.up().into_iter().all(|i| {
        sim.nodes[i]
            .node
            .endpoint_holders(name)
            .map(|hs| hs.iter().map(|h| h.id).eq(holders.iter().copied()))
            .unwrap_or(false)
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seeds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let loss: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0.0);
    println!(
        "N={n}, loss {loss}, Config::lan(), NetConfig::default() otherwise; virtual ms, checked every 10 ms"
    );
    println!();
    println!(
        "| seed | register → resolvable everywhere | crash → removed everywhere | leave → removed everywhere |"
    );
    println!("|---:|---:|---:|---:|");
    let show = |t: Option<u64>| t.map_or("not within 120 s".to_owned(), |ms| format!("{ms}"));
    for seed in 0..seeds {
        let net = NetConfig {
            loss,
            ..NetConfig::default()
        };
        let mut sim = Sim::new(n, seed, Config::lan(), net);
        sim.join_all();
        if sim.run_until_true(120_000, 100, Sim::converged).is_none() {
            println!("| {seed} | no membership convergence | | |");
            continue;
        }
        // Let the join's updates drain so the registration is measured on a quiet cluster.
        sim.run_for(10_000);
        let (a, b) = (n / 3, 2 * n / 3);
        sim.with_node(a, |node, now| node.endpoint_register(now, "orders"))
            .expect("register");
        let one = [sim.id(a)];
        let register = sim.run_until_true(120_000, 10, |s| resolves(s, "orders", &one));
        sim.with_node(b, |node, now| node.endpoint_register(now, "billing"))
            .expect("register");
        let other = [sim.id(b)];
        sim.run_until_true(120_000, 10, |s| resolves(s, "billing", &other));
        sim.run_for(5_000);

        sim.crash(a);
        let crash = sim.run_until_true(120_000, 10, |s| resolves(s, "orders", &[]));
        sim.with_node(b, |node, now| node.leave(now));
        let leave = sim.run_until_true(120_000, 10, |s| {
            s.up().into_iter().filter(|&i| i != b).all(|i| {
                s.nodes[i]
                    .node
                    .endpoint_holders("billing")
                    .is_ok_and(|h| h.is_empty())
            })
        });
        println!(
            "| {seed} | {} | {} | {} |",
            show(register),
            show(crash),
            show(leave)
        );
    }
}
