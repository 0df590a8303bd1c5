//! The node state machine driven by hand: a few members wired through a tiny in-test network,
//! to check rules that must hold whatever the network does.

mod common;

use common::*;
use gossip_core::message::{Alive, Dead, Leave, Relay, Suspect};
use gossip_core::{
    Address, CommandError, Config, DropReason, Event, Instant, Keyring, Node, NodeId, State,
    Transmit,
};

fn addr(i: u8) -> Address {
    Address::Udp(format!("127.0.0.{i}:7946").parse().unwrap())
}

fn node(i: u8, config: Config) -> Node {
    Node::new(
        config.with_name(format!("n{i}")),
        identity(i),
        Keyring::new(key(1)),
        vec![addr(i)],
        [i; 32],
        Instant::from_millis(0),
        NOW_MS,
    )
}

/// Delivers every transmit between the nodes (by address) until none is left; returns them.
fn pump(nodes: &mut [Node], now: Instant) -> Vec<Transmit> {
    let mut all = Vec::new();
    loop {
        let mut batch = Vec::new();
        for (i, n) in nodes.iter_mut().enumerate() {
            while let Some(t) = n.poll_transmit() {
                batch.push((i, t));
            }
        }
        if batch.is_empty() {
            return all;
        }
        for (from, t) in batch {
            let to = nodes.iter().position(|n| n.local().addrs.contains(&t.to));
            if let Some(to) = to {
                let from_addr = nodes[from].local().addrs[0].clone();
                let _ = nodes[to].handle_packet(now, from_addr, &t.bytes);
            }
            all.push(t);
        }
    }
}

fn cluster(n: u8, config: Config) -> Vec<Node> {
    let mut nodes: Vec<Node> = (1..=n).map(|i| node(i, config.clone())).collect();
    let now = Instant::from_millis(1);
    for i in 1..nodes.len() {
        nodes[i].join(now, &[addr(1)]);
        pump(&mut nodes, now);
    }
    // Let the bootstrap push-pulls run so everyone knows everyone.
    for ms in (100..5_000).step_by(100) {
        let now = Instant::from_millis(ms);
        for n in nodes.iter_mut() {
            n.handle_timeout(now);
        }
        pump(&mut nodes, now);
    }
    for n in &nodes {
        assert_eq!(
            n.live_count(),
            nodes.len(),
            "{} knows {} members",
            n.config().name,
            n.live_count()
        );
    }
    nodes
}

fn events(n: &mut Node) -> Vec<Event> {
    std::iter::from_fn(|| n.poll_event()).collect()
}

#[test]
fn nobody_can_make_another_member_leave() {
    let mut nodes = cluster(3, Config::lan());
    let now = Instant::from_millis(6_000);
    // Node 3 signs a leave: it is about node 3 (the signer), never about anyone else.
    let inc = nodes[2].local().incarnation;
    let leave = codec(3, Keyring::new(key(1)))
        .encode(
            &mut CountingRng(1),
            ts(9),
            0,
            &Leave { incarnation: inc }.into(),
        )
        .unwrap();
    events(&mut nodes[0]);
    let _ = nodes[0].handle_packet(now, addr(3), &leave);
    assert_eq!(
        nodes[0].member(&identity(3).id()).unwrap().state,
        State::Left
    );
    assert_eq!(
        nodes[0].member(&identity(2).id()).unwrap().state,
        State::Alive
    );
    assert_eq!(
        events(&mut nodes[0]),
        vec![Event::MemberLeft {
            id: identity(3).id()
        }]
    );
}

#[test]
fn suspicion_of_ourselves_is_refuted_with_a_higher_incarnation() {
    let mut nodes = cluster(3, Config::lan());
    let now = Instant::from_millis(6_000);
    let before = nodes[0].local().incarnation;
    let me = nodes[0].id();
    let accusation = codec(2, Keyring::new(key(1)))
        .encode(
            &mut CountingRng(1),
            ts(9),
            0,
            &Suspect {
                node: me,
                incarnation: before,
            }
            .into(),
        )
        .unwrap();
    let _ = nodes[0].handle_packet(now, addr(2), &accusation);
    assert_eq!(nodes[0].local().incarnation, before + 1);
    pump(&mut nodes, now);
    for ms in (6_100..7_000).step_by(50) {
        let now = Instant::from_millis(ms);
        nodes.iter_mut().for_each(|n| n.handle_timeout(now));
        pump(&mut nodes, now);
    }
    for n in &nodes[1..] {
        let m = n.member(&me).unwrap();
        assert_eq!((m.state, m.incarnation), (State::Alive, before + 1));
    }
}

#[test]
fn alive_records_are_only_accepted_from_the_member_itself() {
    let mut nodes = cluster(2, Config::lan());
    let now = Instant::from_millis(6_000);
    // Node 2 tries to refute on behalf of node 1 with a higher incarnation: it can only sign as
    // itself, so the record is about node 2 and node 1's entry is untouched.
    let victim = identity(9).id();
    let forged = codec(2, Keyring::new(key(1)))
        .encode(
            &mut CountingRng(1),
            ts(9),
            0,
            &Alive {
                incarnation: u64::MAX,
                addrs: vec![addr(9)],
                name: "n9".into(),
            }
            .into(),
        )
        .unwrap();
    let _ = nodes[0].handle_packet(now, addr(2), &forged);
    assert!(nodes[0].member(&victim).is_none());
    assert_eq!(
        nodes[0].member(&identity(2).id()).unwrap().incarnation,
        u64::MAX
    );
}

#[test]
fn relays_refuse_strangers() {
    let mut nodes = cluster(3, Config::lan());
    let now = Instant::from_millis(6_000);
    let inner = vec![1, 1, 0, 0];
    let relay = codec(2, Keyring::new(key(1)))
        .encode(
            &mut CountingRng(1),
            ts(9),
            0,
            &Relay {
                to: identity(3).id(),
                frame: inner.into(),
            }
            .into(),
        )
        .unwrap();
    let _ = nodes[0].handle_packet(now, addr(2), &relay);
    assert_eq!(nodes[0].poll_transmit(), None, "nothing forwarded");
    assert_eq!(
        nodes[0].stats().drops.get(&DropReason::RelayRefused),
        Some(&1)
    );
}

#[test]
fn commands_are_checked() {
    let mut nodes = cluster(
        2,
        Config {
            max_metadata_bytes: 16,
            ..Config::lan()
        },
    );
    let now = Instant::from_millis(6_000);
    let stranger = NodeId::from_bytes([7; 32]);
    assert_eq!(
        nodes[0].send(now, stranger, "t", vec![], false),
        Err(CommandError::UnknownMember(stranger))
    );
    assert!(matches!(
        nodes[0].request(now, stranger, "t", vec![], 10),
        Err(CommandError::UnknownMember(_))
    ));
    assert_eq!(
        nodes[0].set_metadata(now, "k", Some(vec![0; 32])),
        Err(CommandError::MetadataTooLarge { size: 33, max: 16 })
    );
    nodes[0].set_metadata(now, "k", Some(vec![0; 8])).unwrap();
    nodes[0].leave(now);
    assert_eq!(
        nodes[0].broadcast(now, "t", vec![]),
        Err(CommandError::Left)
    );
    assert_eq!(
        nodes[0].poll_timeout(),
        None,
        "a node that left has no timers"
    );
}

#[test]
fn large_frames_ask_for_a_reliable_link() {
    let mut nodes = cluster(2, Config::lan());
    let now = Instant::from_millis(6_000);
    let peer = nodes[1].id();
    // Incompressible, so lz4 cannot bring it under the budget.
    let noise: Vec<u8> = (0..4_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    nodes[0].send(now, peer, "big", noise, false).unwrap();
    nodes[0]
        .send(now, peer, "small", vec![7; 10], false)
        .unwrap();
    let sent: Vec<Transmit> = std::iter::from_fn(|| nodes[0].poll_transmit()).collect();
    let big = sent
        .iter()
        .find(|t| t.bytes.len() > 1_400)
        .expect("the big one");
    assert!(big.reliable);
    assert!(sent.iter().any(|t| t.bytes.len() < 1_400 && !t.reliable));
}

#[test]
fn queues_are_bounded() {
    let mut nodes = cluster(
        2,
        Config {
            max_queue: 8,
            ..Config::lan()
        },
    );
    let now = Instant::from_millis(6_000);
    let peer = nodes[1].id();
    for _ in 0..100 {
        nodes[0].send(now, peer, "x", vec![], false).unwrap();
    }
    let queued = std::iter::from_fn(|| nodes[0].poll_transmit()).count();
    assert_eq!(queued, 8);
    assert_eq!(nodes[0].stats().transmits_dropped, 92);
}

#[test]
fn typed_messages_round_trip_between_nodes() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Job {
        name: String,
        shards: Vec<u16>,
    }
    let mut nodes = cluster(2, Config::lan());
    let now = Instant::from_millis(6_000);
    let peer = nodes[1].id();
    let job = Job {
        name: "reindex".into(),
        shards: vec![1, 4, 9],
    };
    nodes[0].send_typed(now, peer, "job", &job, true).unwrap();
    let id = nodes[0]
        .request_typed(now, peer, "count", &3u32, 1_000)
        .unwrap();
    pump(&mut nodes, now);
    let mut request = None;
    for e in events(&mut nodes[1]) {
        match e {
            Event::Direct { topic, data, .. } if topic == "job" => {
                assert_eq!(gossip_core::typed::from_bytes::<Job>(&data).unwrap(), job);
            }
            Event::Request { from, id, data, .. } => request = Some((from, id, data)),
            _ => {}
        }
    }
    let (from, rid, data) = request.expect("request arrived");
    let n: u32 = gossip_core::typed::from_bytes(&data).unwrap();
    nodes[1]
        .respond_typed(now, from, rid, &vec!["a"; n as usize])
        .unwrap();
    pump(&mut nodes, now);
    let answer = events(&mut nodes[0]).into_iter().find_map(|e| match e {
        Event::Response { id: got, data, .. } if got == id => Some(data),
        _ => None,
    });
    let answer: Vec<String> = gossip_core::typed::from_bytes(&answer.expect("response")).unwrap();
    assert_eq!(answer, vec!["a", "a", "a"]);
}

/// Found by `tests/fuzz_handle_packet.rs`: an accusation at incarnation `u64::MAX` must neither
/// panic the accused (refute adds one) nor bury it for good (no refutation can outrank it), and
/// the accused's later commands must not overflow either.
#[test]
fn an_accusation_at_the_largest_incarnation_cannot_bury_a_live_member() {
    let mut nodes = cluster(3, Config::lan());
    let now = Instant::from_millis(6_000);
    let victim = nodes[0].id();
    for (i, message) in [
        Suspect {
            node: victim,
            incarnation: u64::MAX,
        }
        .into(),
        Dead {
            node: victim,
            incarnation: u64::MAX,
        }
        .into(),
    ]
    .into_iter()
    .enumerate()
    {
        let accusation = codec(2, Keyring::new(key(1)))
            .encode(&mut CountingRng(1), ts(9 + i as u16), 0, &message)
            .unwrap();
        for n in [0usize, 2] {
            let _ = nodes[n].handle_packet(now, addr(2), &accusation);
        }
    }
    pump(&mut nodes, now);
    for ms in (6_100..96_000).step_by(100) {
        let now = Instant::from_millis(ms);
        nodes.iter_mut().for_each(|n| n.handle_timeout(now));
        pump(&mut nodes, now);
    }
    for n in &nodes[1..] {
        let seen = n.member(&victim).map(|m| m.state);
        assert_eq!(
            seen,
            Some(State::Alive),
            "{} sees the victim {seen:?}",
            n.config().name
        );
    }
    nodes[0]
        .set_addresses(Instant::from_millis(96_000), vec![addr(1)])
        .unwrap();
}
