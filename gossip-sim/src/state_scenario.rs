//! `--scenario state`: replicated-state convergence and tombstone collection.
//!
//! After the join, node 0 writes `STATE_KEYS` keys (32-byte values) and the cluster converges
//! (every node holds node 0's whole map). Then, measured: (1) one key changes: time until every
//! node holds the new value, and the bytes all nodes sent meanwhile; (2) 100 keys are deleted:
//! time until every node has applied the deletes, then until every tombstone is collected
//! (`StateConfig::tombstone_grace_ms`, 60 s by default, is most of it).

use serde_json::json;

use gossip_core::NodeId;
use gossip_sim::Sim;

use crate::observe::{Log, Sent, Traffic, run_until_true};
use crate::report::Outcome;

/// Keys node 0 owns.
const STATE_KEYS: usize = 1_000;
/// Keys deleted in the second phase.
const DELETED: usize = 100;

fn holds(sim: &Sim, owner: &NodeId, key: &str, value: Option<&[u8]>) -> bool {
    sim.up().iter().all(|&i| {
        sim.nodes[i]
            .node
            .state_get(owner, key)
            .map(|v| v.value)
            .as_deref()
            == value
    })
}

fn bytes_sent(sim: &Sim) -> u64 {
    sim.nodes.iter().map(|n| n.sent_bytes).sum()
}

pub fn run(sim: &mut Sim, log: &mut Log, join_ms: Option<u64>) -> Outcome {
    let owner = sim.id(0);
    sim.with_node(0, |n, now| {
        for k in 0..STATE_KEYS {
            n.state_set(now, &format!("key/{k:04}"), vec![k as u8; 32])
                .expect("within the default limits");
        }
    });
    let (start, before) = (sim.now, bytes_sent(sim));
    let load_ms = run_until_true(sim, log, 300_000, 100, |s, _| s.state_converged());
    let load_bytes = bytes_sent(sim) - before;
    // Let the initial load's gossip drain so the change is measured alone.
    run_until_true(sim, log, 10_000, 100, |_, _| false);

    let (sent, before) = (Sent::take(sim), bytes_sent(sim));
    let t0 = sim.now;
    sim.with_node(0, |n, now| {
        n.state_set(now, "key/0500", b"changed".to_vec())
    })
    .expect("within the limits");
    let change_ms = run_until_true(sim, log, 60_000, 1, |s, _| {
        holds(s, &owner, "key/0500", Some(b"changed"))
    });
    let change_bytes = bytes_sent(sim) - before;
    let traffic = Traffic::since(sim, sent);

    sim.with_node(0, |n, now| {
        for k in 0..DELETED {
            n.state_delete(now, &format!("key/{k:04}"))
                .expect("set above");
        }
        // The newest write of an owner is kept as proof of its version: end on a value.
        n.state_set(now, "key/0999", b"last".to_vec())
            .expect("within the limits");
    });
    let t1 = sim.now;
    let delete_ms = run_until_true(sim, log, 60_000, 10, |s, _| {
        holds(s, &owner, &format!("key/{:04}", DELETED - 1), None)
    });
    let collect_ms = run_until_true(sim, log, 600_000, 100, |s, _| s.state_tombstones() == 0)
        .map(|ms| ms + delete_ms.unwrap_or(0));
    let ok = load_ms.is_some() && change_ms.is_some() && collect_ms.is_some();
    let _ = (start, t0, t1);
    let mut o = Outcome {
        ok,
        converged: ok && sim.state_converged(),
        join_ms,
        sim_ms_to_converge: change_ms,
        traffic,
        ..Outcome::default()
    };
    let n = sim.up().len() as f64;
    for (k, v) in [
        ("state_keys", json!(STATE_KEYS)),
        ("state_load_ms", json!(load_ms)),
        ("state_load_bytes", json!(load_bytes)),
        ("state_change_ms", json!(change_ms)),
        ("state_change_bytes", json!(change_bytes)),
        (
            "state_change_bytes_per_node",
            json!((change_bytes as f64 / n).round()),
        ),
        ("state_delete_ms", json!(delete_ms)),
        ("state_tombstones_collected_ms", json!(collect_ms)),
    ] {
        o.extra.insert(k.into(), v);
    }
    o.notes.push(format!(
        "{STATE_KEYS} keys of node 0 at every node after {load_ms:?} ms ({load_bytes} B sent by all); \
         one change everywhere after {change_ms:?} ms ({change_bytes} B sent by all); \
         {DELETED} deletes applied after {delete_ms:?} ms, tombstones collected after {collect_ms:?} ms"
    ));
    o
}
