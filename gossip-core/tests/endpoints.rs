//! Named endpoints driven by hand through a tiny in-test network: registration spreads and is
//! resolvable everywhere, unregister, leave and a crash remove it everywhere, requests and streams
//! by name reach a holder, and what a member holding the cluster key can register is bounded.

mod common;

use common::*;
use gossip_core::endpoints::{EndpointConfig, EndpointError, NameError, Policy};
use gossip_core::state::{StateConfig, StateError};
use gossip_core::streams::StreamOutput;
use gossip_core::{Config, DropReason, Event, Instant, Node, NodeId, Transmit};

/// Delivers transmits until none is left; `down` nodes neither send nor receive (crashed).
fn pump(nodes: &mut [Node], now: Instant, down: &[usize]) {
    loop {
        let mut batch: Vec<(usize, Transmit)> = Vec::new();
        for (i, n) in nodes.iter_mut().enumerate() {
            while let Some(t) = n.poll_transmit() {
                if !down.contains(&i) {
                    batch.push((i, t));
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        for (from, t) in batch {
            let to = nodes.iter().position(|n| n.local().addrs.contains(&t.to));
            if let Some(to) = to.filter(|to| !down.contains(to)) {
                let from_addr = nodes[from].local().addrs[0].clone();
                let _ = nodes[to].handle_packet(now, from_addr, &t.bytes);
            }
        }
    }
}

fn run(nodes: &mut [Node], from_ms: u64, to_ms: u64, down: &[usize]) {
    for ms in (from_ms..to_ms).step_by(50) {
        let now = Instant::from_millis(ms);
        for (i, n) in nodes.iter_mut().enumerate() {
            if !down.contains(&i) {
                n.handle_timeout(now);
            }
        }
        pump(nodes, now, down);
    }
}

fn cluster(configs: Vec<Config>) -> Vec<Node> {
    let mut nodes: Vec<Node> = configs
        .into_iter()
        .enumerate()
        .map(|(i, c)| member(i as u8 + 1, c, NOW_MS))
        .collect();
    let now = Instant::from_millis(1);
    for i in 1..nodes.len() {
        nodes[i].join(now, &[member_addr(1)]);
        pump(&mut nodes, now, &[]);
    }
    run(&mut nodes, 100, 4_000, &[]);
    for n in &nodes {
        assert_eq!(n.live_count(), nodes.len(), "{}", n.config().name);
    }
    nodes
}

fn holders(n: &Node, name: &str) -> Vec<NodeId> {
    n.endpoint_holders(name)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect()
}

fn events(n: &mut Node) -> Vec<Event> {
    std::iter::from_fn(|| n.poll_event()).collect()
}

#[test]
fn a_registration_resolves_everywhere_and_unregister_removes_it() {
    let mut nodes = cluster(vec![Config::lan(); 4]);
    let now = Instant::from_millis(4_000);
    assert_eq!(nodes[1].endpoint_register(now, "orders"), Ok(true));
    assert_eq!(nodes[1].endpoint_register(now, "orders"), Ok(false));
    assert_eq!(nodes[2].endpoint_register(now, "orders"), Ok(true));
    nodes[3].endpoint_register(now, "billing").unwrap();
    run(&mut nodes, 4_000, 5_000, &[]);
    for n in &nodes {
        assert_eq!(
            holders(n, "orders"),
            sorted(vec![member_id(2), member_id(3)])
        );
        assert_eq!(holders(n, "billing"), vec![member_id(4)]);
        assert!(holders(n, "nobody").is_empty());
        let names = n.endpoint_names();
        assert_eq!(names.get("orders"), Some(&2));
        assert_eq!(names.get("billing"), Some(&1));
    }
    assert_eq!(nodes[1].endpoints_held(), vec!["orders".to_owned()]);
    // Probes measured the holders' round trips.
    run(&mut nodes, 5_000, 8_000, &[]);
    assert!(
        nodes[0]
            .endpoint_holders("orders")
            .unwrap()
            .iter()
            .all(|h| h.rtt_micros.is_some())
    );

    let now = Instant::from_millis(8_000);
    assert_eq!(nodes[1].endpoint_unregister(now, "orders"), Ok(true));
    assert_eq!(nodes[1].endpoint_unregister(now, "orders"), Ok(false));
    assert_eq!(nodes[0].endpoint_unregister(now, "never"), Ok(false));
    run(&mut nodes, 8_000, 9_000, &[]);
    for n in &nodes {
        assert_eq!(holders(n, "orders"), vec![member_id(3)]);
    }
    // The holder itself is never picked, so node 3 finds nobody else holding "orders".
    assert_eq!(
        nodes[2].endpoint_pick("orders", Policy::Any),
        Err(EndpointError::NoHolder("orders".into()))
    );
}

fn sorted(mut v: Vec<NodeId>) -> Vec<NodeId> {
    v.sort_unstable();
    v
}

#[test]
fn names_and_counts_are_limited_with_typed_errors() {
    let config = Config {
        endpoints: EndpointConfig {
            max_name_bytes: 8,
            max_names_per_member: 2,
        },
        ..Config::lan()
    };
    let mut n = member(1, config, NOW_MS);
    let now = Instant::from_millis(1);
    assert_eq!(
        n.endpoint_register(now, ""),
        Err(EndpointError::Name(NameError::Empty))
    );
    assert_eq!(
        n.endpoint_register(now, "123456789"),
        Err(EndpointError::Name(NameError::TooLong { len: 9, max: 8 }))
    );
    assert_eq!(
        n.endpoint_register(now, "a\nb"),
        Err(EndpointError::Name(NameError::BadChar('\n')))
    );
    n.endpoint_register(now, "a").unwrap();
    n.endpoint_register(now, "b").unwrap();
    assert_eq!(
        n.endpoint_register(now, "c"),
        Err(EndpointError::TooManyNames { max: 2 })
    );
    // Room again after an unregister.
    n.endpoint_unregister(now, "a").unwrap();
    assert_eq!(n.endpoint_register(now, "c"), Ok(true));
    assert!(matches!(
        n.endpoint_holders("bad name"),
        Err(EndpointError::Name(NameError::BadChar(' ')))
    ));
    n.endpoint_unregister(now, "b").unwrap();
    n.leave(now);
    assert_eq!(
        n.endpoint_register(now, "d"),
        Err(EndpointError::State(StateError::Left))
    );
}

#[test]
fn requests_and_streams_by_name_reach_the_picked_holders() {
    let mut nodes = cluster(vec![Config::lan(); 3]);
    let now = Instant::from_millis(4_000);
    nodes[1].endpoint_register(now, "orders").unwrap();
    nodes[2].endpoint_register(now, "orders").unwrap();
    run(&mut nodes, 4_000, 5_000, &[]);
    let now = Instant::from_millis(5_000);
    for n in nodes.iter_mut() {
        events(n);
    }

    let sent = nodes[0]
        .endpoint_request(now, "orders", Policy::All, b"count".to_vec(), 1_000)
        .unwrap();
    assert_eq!(
        sorted(sent.iter().map(|(to, _)| *to).collect()),
        sorted(vec![member_id(2), member_id(3)])
    );
    pump(&mut nodes, now, &[]);
    for (holder, node) in nodes.iter_mut().enumerate().take(3).skip(1) {
        let (from, req) = events(node)
            .into_iter()
            .find_map(|e| match e {
                Event::Request {
                    from,
                    id,
                    topic,
                    data,
                } if topic == "orders" && data == b"count" => Some((from, id)),
                _ => None,
            })
            .expect("the request by name arrived");
        assert_eq!(from, member_id(1));
        node.respond(now, from, req, vec![holder as u8]).unwrap();
    }
    pump(&mut nodes, now, &[]);
    let answered: Vec<NodeId> = events(&mut nodes[0])
        .into_iter()
        .filter_map(|e| match e {
            Event::Response { from, .. } => Some(from),
            _ => None,
        })
        .collect();
    assert_eq!(sorted(answered), sorted(vec![member_id(2), member_id(3)]));

    for policy in [Policy::Any, Policy::Nearest] {
        let sent = nodes[0]
            .endpoint_request(now, "orders", policy, vec![], 1_000)
            .unwrap();
        assert_eq!(sent.len(), 1, "{policy:?}");
        assert!([member_id(2), member_id(3)].contains(&sent[0].0));
    }
    // Any draws among the holders: over a few draws it picks both.
    let picked: std::collections::BTreeSet<NodeId> = (0..32)
        .map(|_| nodes[0].endpoint_pick("orders", Policy::Any).unwrap()[0])
        .collect();
    assert_eq!(picked.len(), 2);

    let (to, key) = nodes[0]
        .endpoint_open_stream(now, "orders", Policy::Nearest)
        .unwrap();
    assert_eq!(key.peer, to);
    pump(&mut nodes, now, &[]);
    let holder = if to == member_id(2) { 1 } else { 2 };
    assert!(
        events(&mut nodes[holder]).iter().any(
            |e| matches!(e, Event::Stream(StreamOutput::Incoming(k)) if k.peer == member_id(1))
        )
    );
    assert_eq!(
        nodes[0].endpoint_open_stream(now, "orders", Policy::All),
        Err(EndpointError::NotOne)
    );
    assert_eq!(
        nodes[0].endpoint_open_stream(now, "nobody", Policy::Any),
        Err(EndpointError::NoHolder("nobody".into()))
    );
}

#[test]
fn leave_and_crash_remove_a_holder_everywhere() {
    let mut nodes = cluster(vec![Config::lan(); 5]);
    let now = Instant::from_millis(4_000);
    nodes[3].endpoint_register(now, "orders").unwrap();
    nodes[4].endpoint_register(now, "orders").unwrap();
    run(&mut nodes, 4_000, 5_000, &[]);
    for n in &nodes {
        assert_eq!(
            holders(n, "orders"),
            sorted(vec![member_id(4), member_id(5)])
        );
    }
    nodes[3].leave(Instant::from_millis(5_000));
    // Its leave goes out; then it stops.
    pump(&mut nodes, Instant::from_millis(5_000), &[]);
    run(&mut nodes, 5_000, 6_000, &[3]);
    for n in &nodes[..3] {
        assert_eq!(
            holders(n, "orders"),
            vec![member_id(5)],
            "{}",
            n.config().name
        );
    }
    // Node 5 crashes: once it is declared dead, nobody resolves it.
    run(&mut nodes, 6_000, 30_000, &[3, 4]);
    for n in &nodes[..3] {
        assert!(holders(n, "orders").is_empty(), "{}", n.config().name);
        assert!(n.endpoint_names().is_empty());
    }
}

#[test]
fn what_a_key_holder_registers_is_bounded_by_the_receivers_state_limits() {
    // Node 1 plays a hostile key holder: its own limits are lifted, as if it bypassed them.
    let hostile = Config {
        endpoints: EndpointConfig {
            max_name_bytes: 200,
            max_names_per_member: 100_000,
        },
        ..Config::lan()
    };
    let strict = Config {
        state: StateConfig {
            max_keys_per_member: 50,
            ..StateConfig::default()
        },
        ..Config::lan()
    };
    let mut nodes = cluster(vec![hostile, Config::lan(), strict]);
    let now = Instant::from_millis(4_000);
    for i in 0..300 {
        nodes[0]
            .endpoint_register(now, &format!("flood-{i}"))
            .unwrap();
    }
    // Names the others' limits refuse: too long, and written straight into the state.
    nodes[0].endpoint_register(now, &"x".repeat(100)).unwrap();
    nodes[0]
        .state_set(now, "endpoint/with space", vec![])
        .unwrap();
    run(&mut nodes, 4_000, 8_000, &[]);
    let names = nodes[1].endpoint_names();
    assert_eq!(names.len(), 300, "the default limits hold the flood");
    assert!(!names.contains_key("with space"));
    assert!(!names.keys().any(|k| k.len() > 64));
    assert!(matches!(
        nodes[1].endpoint_holders(&"x".repeat(100)),
        Err(EndpointError::Name(NameError::TooLong { .. }))
    ));
    // The strict node holds no more than its per-member key limit, and says it dropped the rest.
    assert!(nodes[2].endpoint_names().len() <= 50);
    assert!(nodes[2].state_entries(&member_id(1)).len() <= 50);
    assert!(nodes[2].stats().drops.get(&DropReason::StateLimit).copied() > Some(0));
}
