//! The replicated state driven by hand through a tiny in-test network: spreading, anti-entropy,
//! tombstones, limits, and what a member holding the cluster key cannot do to another's keys.

mod common;

use common::*;
use gossip_core::message::Message;
use gossip_core::state::messages::{StateBatch, StateDigest, StateEntry, StateSync, batch_flags};
use gossip_core::state::{StateConfig, StateError, StateLimit};
use gossip_core::{Config, DropReason, Event, Instant, Keyring, Node, Transmit};

/// Delivers transmits between the nodes until none is left, except those `cut` refuses
/// (by sender index, receiver index).
fn pump(nodes: &mut [Node], now: Instant, cut: &dyn Fn(usize, usize) -> bool) -> usize {
    let mut bytes = 0;
    loop {
        let mut batch: Vec<(usize, Transmit)> = Vec::new();
        for (i, n) in nodes.iter_mut().enumerate() {
            while let Some(t) = n.poll_transmit() {
                batch.push((i, t));
            }
        }
        if batch.is_empty() {
            return bytes;
        }
        for (from, t) in batch {
            let to = nodes.iter().position(|n| n.local().addrs.contains(&t.to));
            if let Some(to) = to
                && !cut(from, to)
            {
                bytes += t.bytes.len();
                let from_addr = nodes[from].local().addrs[0].clone();
                let _ = nodes[to].handle_packet(now, from_addr, &t.bytes);
            }
        }
    }
}

fn run(nodes: &mut [Node], from_ms: u64, to_ms: u64, cut: &dyn Fn(usize, usize) -> bool) {
    for ms in (from_ms..to_ms).step_by(50) {
        let now = Instant::from_millis(ms);
        for n in nodes.iter_mut() {
            n.handle_timeout(now);
        }
        pump(nodes, now, cut);
    }
}

const OPEN: &dyn Fn(usize, usize) -> bool = &|_, _| false;

fn config(state: StateConfig) -> Config {
    Config {
        state,
        ..Config::lan()
    }
}

fn cluster(n: u8, config: Config) -> Vec<Node> {
    let mut nodes: Vec<Node> = (1..=n).map(|i| member(i, config.clone(), NOW_MS)).collect();
    let now = Instant::from_millis(1);
    for i in 1..nodes.len() {
        nodes[i].join(now, &[member_addr(1)]);
        pump(&mut nodes, now, OPEN);
    }
    run(&mut nodes, 100, 4_000, OPEN);
    for n in &nodes {
        assert_eq!(n.live_count(), nodes.len(), "{}", n.config().name);
    }
    nodes
}

fn events(n: &mut Node) -> Vec<Event> {
    std::iter::from_fn(|| n.poll_event()).collect()
}

fn value(n: &Node, owner: u8, key: &str) -> Option<Vec<u8>> {
    n.state_get(&member_id(owner), key).map(|v| v.value)
}

#[test]
fn a_write_spreads_and_watches_see_it_by_prefix() {
    let mut nodes = cluster(3, Config::lan());
    let watch = nodes[2].state_watch("svc/").unwrap();
    nodes[2].state_watch("other/").unwrap();
    events(&mut nodes[2]);
    let now = Instant::from_millis(4_000);
    assert_eq!(nodes[0].state_set(now, "svc/a", b"1".to_vec()), Ok(1));
    assert_eq!(nodes[0].state_set(now, "misc", b"2".to_vec()), Ok(2));
    pump(&mut nodes, now, OPEN);
    for n in &nodes {
        assert_eq!(value(n, 1, "svc/a"), Some(b"1".to_vec()));
        assert_eq!(value(n, 1, "misc"), Some(b"2".to_vec()));
    }
    let seen = events(&mut nodes[2]);
    assert_eq!(
        seen,
        vec![Event::StateChanged {
            owner: member_id(1),
            key: "svc/a".into(),
            version: 1,
            value: Some(b"1".to_vec()),
        }]
    );
    assert_eq!(nodes[0].state_delete(now, "svc/a"), Ok(Some(3)));
    assert_eq!(nodes[0].state_delete(now, "svc/a"), Ok(None));
    pump(&mut nodes, now, OPEN);
    assert_eq!(value(&nodes[2], 1, "svc/a"), None);
    assert!(events(&mut nodes[2]).contains(&Event::StateChanged {
        owner: member_id(1),
        key: "svc/a".into(),
        version: 3,
        value: None,
    }));
    assert!(nodes[2].state_unwatch(watch));
    assert!(!nodes[2].state_unwatch(watch));
}

#[test]
fn anti_entropy_brings_a_member_that_missed_every_push_up_to_date_in_several_rounds() {
    // A sync budget of about 20 entries: 300 keys take many batches.
    let mut c = config(StateConfig::default());
    c.max_sync_bytes = 4_000;
    let mut nodes = cluster(3, c);
    let deaf = |_: usize, to: usize| to == 2;
    let now = Instant::from_millis(4_000);
    for k in 0..300 {
        nodes[0]
            .state_set(now, &format!("k{k:03}"), vec![k as u8; 20])
            .unwrap();
    }
    // Node 3 hears nothing for 0.2 s (shorter than a probe period), then syncs.
    run(&mut nodes, 4_000, 4_200, &|_, to| deaf(0, to));
    assert!(nodes[2].state_entries(&member_id(1)).is_empty());
    run(&mut nodes, 4_200, 10_000, OPEN);
    for n in &nodes {
        assert_eq!(
            n.state_entries(&member_id(1)).len(),
            300,
            "{}",
            n.config().name
        );
        assert_eq!(n.state_version(&member_id(1)), Some((NOW_MS, 300)));
    }
}

#[test]
fn nobody_can_write_or_delete_another_members_keys() {
    let mut nodes = cluster(3, Config::lan());
    let now = Instant::from_millis(4_000);
    nodes[0].state_set(now, "leader", b"n1".to_vec()).unwrap();
    pump(&mut nodes, now, OPEN);
    let n3 = codec(3, Keyring::new(key(1)));
    let n1 = codec(1, Keyring::new(key(1)));
    let (life, _) = nodes[1].state_version(&member_id(1)).unwrap();

    // 1. Node 3 signs a write of "leader" and a delete: they land in node 3's own map.
    for (v, value) in [(1u64, Some(b"n3".to_vec())), (2, None)] {
        let e = StateEntry {
            life,
            version: v,
            key: "leader".into(),
            value: value.map(Into::into),
        };
        let frame = n3
            .encode(&mut CountingRng(1), ts(v as u16), 0, &e.into())
            .unwrap();
        let _ = nodes[1].handle_packet(now, member_addr(3), &frame);
    }
    assert_eq!(value(&nodes[1], 1, "leader"), Some(b"n1".to_vec()));

    // 2. Node 1's real record with its value changed no longer verifies.
    let real = StateEntry {
        life,
        version: 2,
        key: "leader".into(),
        value: None,
    };
    let signed = n1.sign(ts(50), &Message::from(real)).unwrap();
    let mut bytes = signed.as_bytes().to_vec();
    *bytes.last_mut().unwrap() ^= 1;
    let tampered = gossip_core::SignedPacket::from_bytes(bytes).unwrap();

    // 3. A sync batch for node 1 that carries node 3's entries, a tampered one, or claims a
    //    range it does not show: none changes node 1's map at node 2.
    let forged = n3
        .sign(
            ts(60),
            &Message::from(StateEntry {
                life,
                version: 2,
                key: "leader".into(),
                value: None,
            }),
        )
        .unwrap();
    let drops_before = nodes[1]
        .stats()
        .drops
        .get(&DropReason::StateForged)
        .copied();
    for entries in [vec![forged], vec![tampered], vec![]] {
        let sync = StateSync {
            phase: gossip_core::message::sync_phase::CLOSE,
            digest: vec![],
            batches: vec![StateBatch {
                owner: member_id(1),
                life,
                from: 0,
                through: u64::MAX,
                flags: batch_flags::DONE | batch_flags::FULL,
                entries,
            }],
        };
        let frame = n3
            .encode(&mut CountingRng(2), ts(70), 0, &sync.into())
            .unwrap();
        let _ = nodes[1].handle_packet(now, member_addr(3), &frame);
    }
    assert_eq!(value(&nodes[1], 1, "leader"), Some(b"n1".to_vec()));
    assert_eq!(nodes[1].state_version(&member_id(1)), Some((life, 1)));
    assert!(
        nodes[1]
            .stats()
            .drops
            .get(&DropReason::StateForged)
            .copied()
            > drops_before,
        "the forged batch is counted"
    );
    // The unsigned claim did not stop node 1's next write from arriving.
    nodes[0].state_set(now, "leader", b"n1-2".to_vec()).unwrap();
    pump(&mut nodes, now, OPEN);
    assert_eq!(value(&nodes[1], 1, "leader"), Some(b"n1-2".to_vec()));

    // 4. Replaying node 1's first write after its delete changes nothing.
    let first = n1
        .sign(
            ts(80),
            &Message::from(StateEntry {
                life,
                version: 1,
                key: "leader".into(),
                value: Some(b"n1".to_vec().into()),
            }),
        )
        .unwrap();
    let replay = StateSync {
        phase: gossip_core::message::sync_phase::CLOSE,
        digest: vec![],
        batches: vec![StateBatch {
            owner: member_id(1),
            life,
            from: 0,
            through: 1,
            flags: batch_flags::DONE,
            entries: vec![first],
        }],
    };
    let frame = n3
        .encode(&mut CountingRng(3), ts(90), 0, &replay.into())
        .unwrap();
    let _ = nodes[1].handle_packet(now, member_addr(3), &frame);
    assert_eq!(value(&nodes[1], 1, "leader"), Some(b"n1-2".to_vec()));
}

#[test]
fn a_member_away_longer_than_the_grace_period_is_rebuilt_without_resurrecting_deletes() {
    let grace = 1_000;
    let mut nodes = cluster(
        3,
        config(StateConfig {
            tombstone_grace_ms: grace,
            ..StateConfig::default()
        }),
    );
    let now = Instant::from_millis(4_000);
    for k in ["a", "b", "c"] {
        nodes[0].state_set(now, k, b"v".to_vec()).unwrap();
    }
    run(&mut nodes, 4_000, 5_000, OPEN);
    assert_eq!(nodes[2].state_entries(&member_id(1)).len(), 3);
    nodes[2].state_watch("").unwrap();
    // Node 3 is cut off (for less than a suspicion lasts) while "a" and "b" are deleted and
    // their tombstones collected everywhere else.
    let away = |from: usize, to: usize| from == 2 || to == 2;
    let t = Instant::from_millis(5_000);
    nodes[0].state_delete(t, "a").unwrap();
    nodes[0].state_delete(t, "b").unwrap();
    nodes[0].state_set(t, "d", b"v".to_vec()).unwrap();
    run(&mut nodes, 5_000, 7_500, &away);
    assert_eq!(nodes[0].state_stats().tombstones, 0);
    assert_eq!(nodes[1].state_stats().tombstones, 0);
    assert_eq!(
        nodes[2].state_entries(&member_id(1)).len(),
        3,
        "still the old map"
    );
    events(&mut nodes[2]);
    run(&mut nodes, 7_500, 10_000, OPEN);
    let keys: Vec<String> = nodes[2]
        .state_entries(&member_id(1))
        .into_iter()
        .map(|v| v.key)
        .collect();
    assert_eq!(keys, ["c", "d"]);
    // Rebuilt from a full copy (two peers may both send one in the same round: harmless).
    assert!(nodes[2].state_stats().rebuilds >= 1);
    let gone: Vec<String> = events(&mut nodes[2])
        .into_iter()
        .filter_map(|e| match e {
            Event::StateChanged {
                key, value: None, ..
            } => Some(key),
            _ => None,
        })
        .collect();
    assert_eq!(gone, ["a", "b"]);
    // And node 3 did not hand "a" or "b" back to anyone.
    for n in &nodes {
        assert_eq!(
            n.state_entries(&member_id(1)).len(),
            2,
            "{}",
            n.config().name
        );
    }
}

#[test]
fn limits_refuse_locally_with_typed_errors_and_drop_on_receipt() {
    let small = StateConfig {
        max_key_bytes: 8,
        max_value_bytes: 8,
        max_keys_per_member: 2,
        ..StateConfig::default()
    };
    // Node 3 is stricter than the others: what they may write it refuses to hold.
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| {
            let s = if i == 3 {
                small
            } else {
                StateConfig::default()
            };
            member(i, config(s), NOW_MS)
        })
        .collect();
    let t = Instant::from_millis(1);
    for i in 1..3 {
        nodes[i].join(t, &[member_addr(1)]);
        pump(&mut nodes, t, OPEN);
    }
    run(&mut nodes, 100, 4_000, OPEN);
    let now = Instant::from_millis(4_000);
    assert_eq!(
        nodes[2].state_set(now, "much-too-long", vec![]),
        Err(StateError::Limit(StateLimit::KeyTooLong {
            len: 13,
            max: 8
        }))
    );
    assert_eq!(
        nodes[2].state_set(now, "k", vec![0; 9]),
        Err(StateError::Limit(StateLimit::ValueTooLarge {
            len: 9,
            max: 8
        }))
    );
    nodes[2].state_set(now, "a", vec![]).unwrap();
    nodes[2].state_set(now, "b", vec![]).unwrap();
    assert_eq!(
        nodes[2].state_set(now, "c", vec![]),
        Err(StateError::Limit(StateLimit::TooManyKeys { max: 2 }))
    );
    for k in ["x", "y", "z"] {
        nodes[0].state_set(now, k, vec![1]).unwrap();
    }
    nodes[0].state_set(now, "big", vec![0; 100]).unwrap();
    run(&mut nodes, 4_000, 6_000, OPEN);
    assert_eq!(nodes[1].state_entries(&member_id(1)).len(), 4);
    assert_eq!(nodes[2].state_entries(&member_id(1)).len(), 2);
    assert!(nodes[2].stats().drops.get(&DropReason::StateLimit).copied() > Some(0));
}

#[test]
fn a_departed_members_state_is_dropped_and_a_restart_starts_empty() {
    let mut nodes = cluster(3, Config::lan());
    let now = Instant::from_millis(4_000);
    nodes[1].state_set(now, "x", b"1".to_vec()).unwrap();
    nodes[2].state_set(now, "y", b"1".to_vec()).unwrap();
    pump(&mut nodes, now, OPEN);
    assert!(value(&nodes[0], 2, "x").is_some());
    nodes[0].state_watch("").unwrap();
    nodes[1].leave(now);
    run(&mut nodes, 4_000, 6_000, OPEN);
    assert_eq!(nodes[0].state_get(&member_id(2), "x"), None);
    assert!(nodes[0].state_version(&member_id(2)).is_none());
    assert!(events(&mut nodes[0]).contains(&Event::StateCleared {
        owner: member_id(2)
    }));

    // Node 3 restarts (same identity, a later life) before anyone declares it dead: its new
    // life's digest, signed by itself, empties its map everywhere.
    let restarted = member(3, Config::lan(), NOW_MS + 6_000);
    let later = Instant::from_millis(6_000);
    nodes[2] = restarted;
    nodes[2].join(later, &[member_addr(1)]);
    run(&mut nodes, 6_000, 10_000, OPEN);
    assert_eq!(value(&nodes[0], 3, "y"), None);
    assert_eq!(
        nodes[0].state_version(&member_id(3)).map(|(life, _)| life),
        Some(NOW_MS + 6_000)
    );
}

#[test]
fn oversized_sync_messages_are_refused_by_the_decoder() {
    let limits = gossip_core::Limits {
        max_items: 4,
        ..Default::default()
    };
    let digest = (0..5)
        .map(|i| StateDigest {
            owner: member_id(i),
            life: 1,
            version: 1,
            hash: None,
        })
        .collect();
    let sync = StateSync {
        phase: 0,
        digest,
        batches: vec![],
    };
    assert!(sync.validate(&limits).is_err());
    let nested = StateSync {
        phase: 0,
        digest: vec![],
        batches: (0..2)
            .map(|_| StateBatch {
                owner: member_id(1),
                life: 1,
                from: 0,
                through: 1,
                flags: 0,
                entries: (0..3).map(|l| nested(1, l)).collect(),
            })
            .collect(),
    };
    assert!(
        nested.validate(&limits).is_err(),
        "entries are counted across batches"
    );
}
