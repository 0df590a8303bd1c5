//! The full-membership simulator's lookahead windows: a run on several threads is the run one
//! step at a time gives, random draws of the network model included.

use gossip_core::{Config, State};
use gossip_sim::{NetConfig, Sim, VirtualTime};

/// Everything a run leaves behind that its randomness could change.
fn fingerprint(sim: &Sim) -> Vec<String> {
    let mut out: Vec<String> = sim
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let view: Vec<Option<State>> = (0..sim.nodes.len()).map(|j| sim.view(i, j)).collect();
            format!(
                "{i} up {} sent {} {} recv {} {} events {:?} view {view:?}",
                n.up, n.sent_packets, n.sent_bytes, n.recv_packets, n.recv_bytes, n.events
            )
        })
        .collect();
    out.extend(
        sim.tapped()
            .iter()
            .map(|t| format!("tap {:?} {} {} {:?}", t.at, t.from, t.to, t.bytes)),
    );
    out.push(format!(
        "delivered {} dropped {} now {:?}",
        sim.delivered, sim.dropped, sim.now
    ));
    out
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
                let mut sim = Sim::new(60, seed, Config::lan(), net);
                sim.set_threads(threads);
                sim.tap(200);
                sim.join_all();
                sim.run_for(3_000);
                sim.crash(7);
                sim.set_link_loss(1, 2, 0.3);
                sim.run_for(15_000);
                assert!(
                    sim.buried_by_all(7),
                    "seed {seed}, {threads} threads: the crash was not detected"
                );
                (fingerprint(&sim), sim.parallel_windows)
            })
            .collect();
        assert_eq!(
            runs[0].1, 0,
            "seed {seed}: one thread ran windows in parallel"
        );
        assert!(
            runs[1].1 > 100,
            "seed {seed}: only {} windows ran in parallel",
            runs[1].1
        );
        let (a, b) = (&runs[0].0, &runs[1].0);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!(
                x == y,
                "seed {seed}: the run on 3 threads differs from the run on one:\n{x}\n{y}"
            );
        }
    }
}
