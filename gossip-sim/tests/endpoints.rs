//! Named endpoints in the simulator, under loss: a registration becomes resolvable on every
//! running member, and a holder that crashes, unregisters or leaves disappears from every
//! member's resolution. Every assertion names its seed.

use gossip_core::endpoints::Policy;
use gossip_core::{Config, NodeId};
use gossip_sim::VirtualTime;
use gossip_sim::{NetConfig, Sim};

const N: usize = 12;

/// Whether every running member other than the holders themselves resolves `name` to exactly
/// `holders` (sorted).
fn everyone_resolves(sim: &Sim, name: &str, holders: &[NodeId]) -> bool {
    sim.up().into_iter().all(|i| {
        let got: Vec<NodeId> = sim.nodes[i]
            .node
            .endpoint_holders(name)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect();
        got == holders
    })
}

fn sorted(mut v: Vec<NodeId>) -> Vec<NodeId> {
    v.sort_unstable();
    v
}

#[test]
fn holders_appear_and_disappear_everywhere_under_loss() {
    for seed in 0..3 {
        let mut sim = Sim::joined(N, seed, Config::lan(), NetConfig::lossy(0.1));
        let (a, b, c) = (3, 5, 8);
        for i in [a, b, c] {
            sim.with_node(i, |n, now| n.endpoint_register(now, "orders"))
                .unwrap();
        }
        let all = sorted(vec![sim.id(a), sim.id(b), sim.id(c)]);
        let t = sim.run_until_true(20_000, 50, |s| everyone_resolves(s, "orders", &all));
        assert!(
            t.is_some(),
            "seed {seed}: registrations not resolvable everywhere"
        );

        // A request by name with each policy reaches a holder.
        for policy in [Policy::Any, Policy::Nearest, Policy::All] {
            let sent = sim
                .with_node(0, |n, now| {
                    n.endpoint_request(now, "orders", policy, b"ping".to_vec(), 2_000)
                })
                .unwrap_or_else(|e| panic!("seed {seed}: {policy:?}: {e}"));
            let want = if policy == Policy::All { 3 } else { 1 };
            assert_eq!(sent.len(), want, "seed {seed}: {policy:?}");
            assert!(sent.iter().all(|(to, _)| all.contains(to)), "seed {seed}");
        }

        // Crash: removed everywhere once detected.
        sim.crash(b);
        let two = sorted(vec![sim.id(a), sim.id(c)]);
        let t = sim.run_until_true(60_000, 100, |s| everyone_resolves(s, "orders", &two));
        assert!(
            t.is_some(),
            "seed {seed}: the crashed holder is still resolved"
        );

        // Unregister.
        assert!(
            sim.with_node(a, |n, now| n.endpoint_unregister(now, "orders"))
                .unwrap()
        );
        let one = vec![sim.id(c)];
        let t = sim.run_until_true(20_000, 50, |s| everyone_resolves(s, "orders", &one));
        assert!(
            t.is_some(),
            "seed {seed}: the unregistered holder is still resolved"
        );

        // Leave: the leaver stops running; the others drop it.
        sim.with_node(c, |n, now| n.leave(now));
        sim.run_for(1_000);
        sim.crash(c);
        let t = sim.run_until_true(20_000, 50, |s| everyone_resolves(s, "orders", &[]));
        assert!(
            t.is_some(),
            "seed {seed}: the holder that left is still resolved"
        );
        assert!(
            sim.up()
                .into_iter()
                .all(|i| sim.nodes[i].node.endpoint_names().is_empty()),
            "seed {seed}: names left over"
        );
    }
}
