//! The node state machine driven by hand: a few members wired through a tiny in-test network,
//! to check rules that must hold whatever the network does.

mod common;

use common::*;
use gossip_core::message::{Alive, Dead, Gossip, Leave, Message, Nack, PingReq, Relay, Suspect};
use gossip_core::{
    Address, Codec, CommandError, Config, DropReason, Event, Identity, Instant, Keyring, Limits,
    Node, NodeId, ReplayConfig, SignedPacket, State, Transmit,
};

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
    let mut nodes: Vec<Node> = (1..=n).map(|i| member(i, config.clone(), NOW_MS)).collect();
    let now = Instant::from_millis(1);
    for i in 1..nodes.len() {
        nodes[i].join(now, &[member_addr(1)]);
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
    let _ = nodes[0].handle_packet(now, member_addr(3), &leave);
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
    let _ = nodes[0].handle_packet(now, member_addr(2), &accusation);
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
                addrs: vec![member_addr(9)],
                name: "n9".into(),
            }
            .into(),
        )
        .unwrap();
    let _ = nodes[0].handle_packet(now, member_addr(2), &forged);
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
    let _ = nodes[0].handle_packet(now, member_addr(2), &relay);
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
fn unchanged_metadata_is_not_signed_again() {
    let mut nodes = cluster(2, Config::lan());
    let now = Instant::from_millis(6_000);
    let me = nodes[0].id();
    let version = |n: &Node| n.members().find(|m| m.id == me).unwrap().meta_version;
    nodes[0].set_metadata(now, "k", Some(vec![1])).unwrap();
    let first = version(&nodes[0]);
    assert!(first > 0);
    while nodes[0].poll_transmit().is_some() {}
    nodes[0].set_metadata(now, "k", Some(vec![1])).unwrap();
    nodes[0].set_metadata(now, "absent", None).unwrap();
    assert_eq!(version(&nodes[0]), first, "no new version");
    assert!(nodes[0].poll_transmit().is_none(), "nothing to spread");
    nodes[0].set_metadata(now, "k", Some(vec![2])).unwrap();
    assert!(version(&nodes[0]) > first, "a real change is a new version");
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

// ----- hostile members: they hold the cluster key and sign what they like -------------------

/// A frame signed by the member `signer` (any key holder), sealed with the cluster key.
fn signed_by(signer: &Identity, logical: u16, message: Message) -> Vec<u8> {
    Codec::new(
        signer.clone(),
        Keyring::new(key(1)),
        Limits::default(),
        ReplayConfig::default(),
    )
    .encode(&mut CountingRng(logical as u8), ts(logical), 0, &message)
    .unwrap()
}

fn alive_record(signer: &Identity, name: &str, incarnation: u64) -> SignedPacket {
    let alive = Alive {
        incarnation,
        addrs: vec![Address::Udp("127.0.0.99:7946".parse().unwrap())],
        name: name.into(),
    };
    Codec::new(
        signer.clone(),
        Keyring::new(key(1)),
        Limits::default(),
        ReplayConfig::default(),
    )
    .sign(ts(incarnation as u16), &alive.into())
    .unwrap()
}

fn minted(i: u32) -> Identity {
    let mut secret = [0xaa; 32];
    secret[..4].copy_from_slice(&i.to_le_bytes());
    Identity::from_secret_bytes(secret)
}

fn drops(n: &Node, reason: DropReason) -> u64 {
    n.stats().drops.get(&reason).copied().unwrap_or(0)
}

/// Runs the cluster's timers for `ms` of virtual time from `from_ms`.
fn run(nodes: &mut [Node], from_ms: u64, ms: u64) {
    for t in (from_ms..from_ms + ms).step_by(50) {
        let now = Instant::from_millis(t);
        nodes.iter_mut().for_each(|n| n.handle_timeout(now));
        pump(nodes, now);
    }
}

#[test]
fn an_accusation_above_the_incarnation_the_member_signed_is_refused_everywhere() {
    let mut nodes = cluster(3, Config::lan());
    let now = Instant::from_millis(6_000);
    let victim = nodes[2].id();
    let inc = nodes[2].local().incarnation;
    // A key holder that is not even a member buries node 3 at an incarnation it never signed,
    // and accuses node 1 to its face at u64::MAX.
    let liar = minted(1);
    let dead = signed_by(
        &liar,
        9,
        Dead {
            node: victim,
            incarnation: u64::MAX,
        }
        .into(),
    );
    let suspect_me = signed_by(
        &liar,
        10,
        Suspect {
            node: nodes[0].id(),
            incarnation: u64::MAX,
        }
        .into(),
    );
    let mine = nodes[0].local().incarnation;
    let _ = nodes[0].handle_packet(now, member_addr(9), &dead);
    let _ = nodes[0].handle_packet(now, member_addr(9), &suspect_me);
    assert_eq!(nodes[0].member(&victim).unwrap().state, State::Alive);
    assert_eq!(nodes[0].member(&victim).unwrap().incarnation, inc);
    assert_eq!(nodes[0].local().incarnation, mine, "nothing to refute");
    assert_eq!(drops(&nodes[0], DropReason::AccusationAhead), 2);
    pump(&mut nodes, now);
    run(&mut nodes, 6_050, 3_000);
    for n in &nodes {
        let m = n.member(&victim).unwrap();
        assert_eq!(
            (m.state, m.incarnation),
            (State::Alive, inc),
            "{}",
            n.config().name
        );
    }
    // An accusation at the incarnation the member signed is still heard, and refuted.
    let honest = signed_by(
        &liar,
        11,
        Suspect {
            node: victim,
            incarnation: inc,
        }
        .into(),
    );
    let _ = nodes[0].handle_packet(Instant::from_millis(9_100), member_addr(9), &honest);
    assert_eq!(nodes[0].member(&victim).unwrap().state, State::Suspect);
    pump(&mut nodes, Instant::from_millis(9_100));
    run(&mut nodes, 9_150, 2_000);
    for n in &nodes {
        let m = n.member(&victim).unwrap();
        assert_eq!(
            (m.state, m.incarnation),
            (State::Alive, inc + 1),
            "{}",
            n.config().name
        );
    }
}

#[test]
fn a_live_members_name_cannot_be_taken_by_another_key() {
    let mut nodes = cluster(3, Config::lan());
    let now = Instant::from_millis(6_000);
    let holder = nodes[2].id();
    let squatter = minted(2);
    let claim = alive_record(&squatter, "n3", u64::MAX - 1);
    let frame = signed_by(&squatter, 9, Gossip { items: vec![claim] }.into());
    let _ = nodes[0].handle_packet(now, member_addr(9), &frame);
    assert!(nodes[0].member(&squatter.id()).is_none());
    assert_eq!(nodes[0].member(&holder).unwrap().state, State::Alive);
    assert_eq!(drops(&nodes[0], DropReason::NameTaken), 1);
    // This node's own name is not free either.
    let mine = alive_record(&minted(3), "n1", 5);
    let _ = nodes[0].handle_packet(
        now,
        member_addr(9),
        &signed_by(&minted(3), 10, Gossip { items: vec![mine] }.into()),
    );
    assert!(nodes[0].member(&minted(3).id()).is_none());
    // Once the holder has left, the name is free for a new identity.
    nodes[2].leave(now);
    pump(&mut nodes, now);
    assert_eq!(nodes[0].member(&holder).unwrap().state, State::Left);
    let claim = alive_record(&squatter, "n3", 7);
    let frame = signed_by(&squatter, 11, Gossip { items: vec![claim] }.into());
    let _ = nodes[0].handle_packet(Instant::from_millis(6_100), member_addr(9), &frame);
    assert_eq!(nodes[0].member(&squatter.id()).unwrap().state, State::Alive);
}

#[test]
fn an_indirect_probe_of_a_stranger_dials_nothing() {
    let mut nodes = cluster(2, Config::lan());
    let now = Instant::from_millis(6_000);
    let trap = Address::WebSocket("ws://127.0.0.1:9/x".into());
    let req = signed_by(
        &identity(2),
        9,
        PingReq {
            seq: 77,
            target: minted(4).id(),
            addrs: vec![trap.clone()],
        }
        .into(),
    );
    let _ = nodes[0].handle_packet(now, member_addr(2), &req);
    let mut sent: Vec<Transmit> = std::iter::from_fn(|| nodes[0].poll_transmit()).collect();
    nodes[0].handle_timeout(Instant::from_millis(7_000));
    sent.extend(std::iter::from_fn(|| nodes[0].poll_transmit()));
    assert!(sent.iter().all(|t| t.to != trap), "dialed {trap}");
    assert_eq!(drops(&nodes[0], DropReason::UnknownProbeTarget), 1);
    // The requester still hears back in time (a nack), so its own health is not blamed.
    assert!(sent.iter().any(|t| t.to == member_addr(2)));
}

#[test]
fn minted_identities_cannot_fill_the_member_table() {
    let config = Config {
        max_new_members_per_frame: 50,
        max_new_members_per_sender: 80,
        ..Config::lan()
    };
    let mut nodes = cluster(3, config);
    let sender = identity(2);
    // Three frames of 300 members each, every record validly signed by its minted identity.
    for (f, logical) in (0..3u32).zip(20u16..) {
        let items = (0..300)
            .map(|i| alive_record(&minted(1_000 + f * 300 + i), "", 1))
            .collect();
        let frame = signed_by(&sender, logical, Gossip { items }.into());
        let _ = nodes[0].handle_packet(Instant::from_millis(6_000), member_addr(2), &frame);
    }
    // 50 + 30: the frame cap, then the sender's share for the window.
    assert_eq!(nodes[0].members().count(), 3 + 80);
    assert_eq!(drops(&nodes[0], DropReason::TooManyMembers), 900 - 80);
    // A member introducing itself costs its sender nothing: joins still work.
    let newcomer = minted(9_999);
    let own = alive_record(&newcomer, "late", 1);
    let frame = signed_by(&newcomer, 30, Gossip { items: vec![own] }.into());
    let _ = nodes[0].handle_packet(Instant::from_millis(6_001), member_addr(9), &frame);
    assert!(nodes[0].member(&newcomer.id()).is_some());
    // After the window, the sender may introduce members again.
    let later = (0..10)
        .map(|i| alive_record(&minted(5_000 + i), "", 1))
        .collect();
    let frame = signed_by(&sender, 31, Gossip { items: later }.into());
    let _ = nodes[0].handle_packet(Instant::from_millis(16_001), member_addr(2), &frame);
    assert_eq!(nodes[0].members().count(), 3 + 80 + 1 + 10);
}

#[test]
fn the_member_table_has_a_hard_bound() {
    let config = Config {
        max_members: 20,
        ..Config::lan()
    };
    let mut nodes = cluster(3, config);
    events(&mut nodes[0]);
    for i in 0..40u32 {
        let id = minted(i);
        let own = alive_record(&id, "", 1);
        let frame = signed_by(&id, 9, Gossip { items: vec![own] }.into());
        let _ = nodes[0].handle_packet(Instant::from_millis(6_000), member_addr(9), &frame);
    }
    // Self-introductions share one voucher (nobody): the newest make room by forgetting the
    // oldest, so the table never grows past its bound and still takes the next newcomer.
    assert_eq!(nodes[0].members().count(), 20);
    assert_eq!(nodes[0].stats().members_evicted, 23);
    assert!(nodes[0].member(&minted(0).id()).is_none());
    assert!(nodes[0].member(&minted(39).id()).is_some());
    let left = events(&mut nodes[0])
        .into_iter()
        .filter(|e| matches!(e, Event::MemberLeft { .. }))
        .count();
    assert_eq!(left, 23);
}

#[test]
fn a_full_table_keeps_room_for_members_an_honest_member_vouches_for() {
    let config = Config {
        max_members: 20,
        ..Config::lan()
    };
    let mut nodes = cluster(3, config);
    let (holder, honest) = (identity(2), identity(3));
    assert!(nodes[0].is_confirmed(&holder.id()) && nodes[0].is_confirmed(&honest.id()));
    let introduce = |node: &mut Node, by: &Identity, from: u8, logical: u16, ids: Vec<u32>| {
        let items = ids
            .into_iter()
            .map(|i| alive_record(&minted(i), "", 1))
            .collect();
        let frame = signed_by(by, logical, Gossip { items }.into());
        let _ = node.handle_packet(Instant::from_millis(6_000), member_addr(from), &frame);
    };
    // A key holder that answers probes mints 40: its own mint makes room for the rest.
    introduce(&mut nodes[0], &holder, 2, 20, (0..40).collect());
    assert_eq!(nodes[0].members().count(), 20);
    assert!(nodes[0].member(&minted(39).id()).is_some());
    // An honest member introduces a genuine newcomer: the holder's share gives way.
    introduce(&mut nodes[0], &honest, 3, 21, vec![500]);
    assert!(nodes[0].member(&minted(500).id()).is_some());
    // More minting never evicts it: the holder's share is the larger, so the holder pays.
    introduce(&mut nodes[0], &holder, 2, 22, (100..160).collect());
    introduce(&mut nodes[0], &holder, 2, 23, (200..260).collect());
    assert!(nodes[0].member(&minted(500).id()).is_some());
    assert!(nodes[0].member(&minted(259).id()).is_some());
    assert_eq!(nodes[0].members().count(), 20);
    for id in [holder.id(), honest.id(), nodes[0].id()] {
        assert!(nodes[0].member(&id).is_some(), "confirmed members stay");
    }
    // A real newcomer joins through the honest member: node 1 hears it from node 3, probes it
    // before the mint waiting in its unconfirmed lane, and so confirms it within a few probe
    // intervals (a random place among the minted would take up to twice their number).
    std::iter::from_fn(|| nodes[0].poll_transmit()).for_each(drop);
    nodes.push(member(4, nodes[0].config().clone(), NOW_MS));
    let fresh = nodes[3].id();
    let start = Instant::from_millis(6_000);
    nodes[3].join(start, &[member_addr(3)]);
    pump(&mut nodes, start);
    assert!(
        nodes[0].member(&fresh).is_some(),
        "node 1 learned the newcomer"
    );
    let interval = nodes[0].config().probe_interval_ms;
    let mut confirmed_at = None;
    for ms in (6_100..6_000 + 4 * interval).step_by(100) {
        let now = Instant::from_millis(ms);
        for n in nodes.iter_mut() {
            n.handle_timeout(now);
        }
        pump(&mut nodes, now);
        if nodes[0].is_confirmed(&fresh) {
            confirmed_at = Some(ms);
            break;
        }
    }
    assert!(
        confirmed_at.is_some(),
        "the vouched newcomer was not probed within 4 probe intervals"
    );
    assert!(nodes[0].member(&fresh).is_some());
}

#[test]
fn a_relay_carries_only_frames_its_requester_signed() {
    let mut nodes = cluster(3, Config::lan());
    let now = Instant::from_millis(6_000);
    // A browser-like member relayed through node 1.
    let leaf = minted(7);
    let alive = Alive {
        incarnation: 1,
        addrs: vec![Address::Relayed(nodes[0].id())],
        name: "leaf".into(),
    };
    let _ = nodes[0].handle_packet(now, member_addr(9), &signed_by(&leaf, 9, alive.into()));
    assert!(nodes[0].member(&leaf.id()).is_some());
    std::iter::from_fn(|| nodes[0].poll_transmit()).for_each(drop);
    // Node 2 asks node 1 to hand the leaf a frame node 3 signed: refused.
    let forged_inner = signed_by(&identity(3), 10, Nack { seq: 1 }.into());
    let relay = |inner: Vec<u8>, logical| {
        signed_by(
            &identity(2),
            logical,
            Relay {
                to: leaf.id(),
                frame: inner.into(),
            }
            .into(),
        )
    };
    let _ = nodes[0].handle_packet(now, member_addr(2), &relay(forged_inner, 11));
    assert_eq!(nodes[0].poll_transmit(), None);
    assert_eq!(drops(&nodes[0], DropReason::RelayForged), 1);
    // Its own frame is carried.
    let own_inner = signed_by(&identity(2), 12, Nack { seq: 2 }.into());
    let _ = nodes[0].handle_packet(now, member_addr(2), &relay(own_inner.clone(), 13));
    let t = nodes[0].poll_transmit().expect("relayed");
    assert_eq!((t.to, t.bytes), (Address::Relayed(leaf.id()), own_inner));
}

#[test]
fn a_frame_captured_before_a_restart_is_refused_after_it() {
    let mut nodes = cluster(2, Config::lan());
    let now = Instant::from_millis(6_000);
    nodes[1].broadcast(now, "t", b"once".to_vec()).unwrap();
    let captured: Vec<Transmit> = std::iter::from_fn(|| nodes[1].poll_transmit()).collect();
    assert!(!captured.is_empty());
    // Node 1 restarts 1 s later with the same identity; its replay memory is gone.
    let later = Instant::from_millis(7_000);
    let mut restarted = Node::new(
        Config::lan().with_name("n1"),
        identity(1),
        Keyring::new(key(1)),
        vec![member_addr(1)],
        [42; 32],
        later,
        NOW_MS + 7_000,
    );
    for t in &captured {
        assert!(
            restarted
                .handle_packet(later, member_addr(2), &t.bytes)
                .is_err()
        );
    }
    assert!(
        !events(&mut restarted)
            .iter()
            .any(|e| matches!(e, Event::Broadcast { .. })),
        "the replayed broadcast was delivered again"
    );
    assert_eq!(
        drops(&restarted, DropReason::Replayed),
        captured.len() as u64
    );
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
            let _ = nodes[n].handle_packet(now, member_addr(2), &accusation);
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
        .set_addresses(Instant::from_millis(96_000), vec![member_addr(1)])
        .unwrap();
}

/// A member's alive record is signed when it starts: one that started (or joined) before this
/// node must still reach it by gossip. Refusing it as older than this node's start (the replay
/// floor) left late starters waiting for a push-pull to learn the members that started first
/// (a join of 100 nodes started one after another in a process counted 21,780 such drops).
#[test]
fn state_signed_before_this_node_started_still_spreads_by_gossip() {
    let later_ms = NOW_MS + 5_000;
    let mut late = member(2, Config::lan(), later_ms);
    let now = Instant::from_millis(100);
    // Signed at NOW_MS, 5 s before `late` started; carried by a fresh frame of another member.
    let early = alive_record(&identity(1), "n1", 1);
    let old_broadcast = Codec::new(
        identity(1),
        Keyring::new(key(1)),
        Limits::default(),
        ReplayConfig::default(),
    )
    .sign(
        ts(2),
        &gossip_core::message::Broadcast {
            topic: "t".into(),
            data: b"old".to_vec().into(),
        }
        .into(),
    )
    .unwrap();
    let frame = Codec::new(
        identity(3),
        Keyring::new(key(1)),
        Limits::default(),
        ReplayConfig::default(),
    )
    .encode(
        &mut CountingRng(3),
        gossip_core::hlc::Timestamp::new(later_ms + 100, 0),
        0,
        &Gossip {
            items: vec![early.clone(), old_broadcast],
        }
        .into(),
    )
    .unwrap();
    assert!(late.handle_packet(now, member_addr(3), &frame).is_ok());
    let m = late.member(&member_id(1)).expect("learned by gossip");
    assert_eq!(m.state, State::Alive);
    // A message (a broadcast) from before the start is still refused as a replay.
    assert!(
        !events(&mut late)
            .iter()
            .any(|e| matches!(e, Event::Broadcast { .. }))
    );
    assert_eq!(drops(&late, DropReason::Replayed), 1);
    // A second copy, alone in a frame, is a duplicate: the frame carries nothing new and is
    // dropped before its signature is checked.
    let again = Codec::new(
        identity(3),
        Keyring::new(key(1)),
        Limits::default(),
        ReplayConfig::default(),
    )
    .encode(
        &mut CountingRng(4),
        gossip_core::hlc::Timestamp::new(later_ms + 100, 1),
        0,
        &Gossip { items: vec![early] }.into(),
    )
    .unwrap();
    let refused = late.handle_packet(now, member_addr(3), &again).unwrap_err();
    assert_eq!(refused.reason, DropReason::Copies);
    assert_eq!(drops(&late, DropReason::Copies), 1);
}

/// Like `pump`, but drops every transmit between node `cut` and the nodes in `from`.
fn pump_except(nodes: &mut [Node], now: Instant, cut: usize, from: &[usize]) {
    let blocked =
        |a: usize, b: usize| (a == cut && from.contains(&b)) || (b == cut && from.contains(&a));
    loop {
        let mut batch = Vec::new();
        for (i, n) in nodes.iter_mut().enumerate() {
            while let Some(t) = n.poll_transmit() {
                batch.push((i, t));
            }
        }
        if batch.is_empty() {
            return;
        }
        for (from, t) in batch {
            let to = nodes.iter().position(|n| n.local().addrs.contains(&t.to));
            if let Some(to) = to
                && !blocked(from, to)
            {
                let from_addr = nodes[from].local().addrs[0].clone();
                let _ = nodes[to].handle_packet(now, from_addr, &t.bytes);
            }
        }
    }
}

/// Minted member `i` introduces itself to `node` at `ms`, from an address nobody knows: a
/// distinct frame each (the nonce comes from `logical`).
fn introduce_minted(node: &mut Node, i: u32, ms: u64) {
    let me = minted(i);
    let items = vec![alive_record(&me, "", 1)];
    let frame = signed_by(&me, 1 + i as u16, Gossip { items }.into());
    let stranger = Address::Udp("127.0.0.99:7946".parse().unwrap());
    let _ = node.handle_packet(Instant::from_millis(ms), stranger, &frame);
}

/// Under a mint (probes show that most members nobody vouches for never answer), a member keeps
/// news of such a member to itself until the member answers its probe, and then passes it on at
/// once: a genuine newcomer reaches the others from the member that heard it answer, and the
/// mint is not amplified by every honest member (issue 13).
#[test]
fn news_of_an_unvouched_member_waits_for_its_answer_under_a_mint() {
    let mut nodes = cluster(3, Config::lan());
    // Fifty members introduce themselves to node 1 and never answer its probes.
    for i in 0..50 {
        introduce_minted(&mut nodes[0], i, 5_000);
    }
    assert_eq!(
        nodes[0].stats().news_withheld,
        0,
        "no evidence of a mint yet"
    );
    run(&mut nodes, 5_000, 10_000);
    // Probes of them failed: the next self-introduction is kept back.
    introduce_minted(&mut nodes[0], 50, 15_000);
    assert_eq!(
        nodes[0].stats().news_withheld,
        1,
        "news of a likely fake was passed on"
    );
    assert!(
        nodes[0].member(&minted(50).id()).is_some(),
        "it is still a member"
    );

    // A genuine newcomer joins through node 1 and can reach nobody else itself: nodes 2 and 3
    // can only hear of it from node 1.
    nodes.push(member(4, nodes[0].config().clone(), NOW_MS));
    let fresh = nodes[3].id();
    let start = 15_000;
    nodes[3].join(Instant::from_millis(start), &[member_addr(1)]);
    pump_except(&mut nodes, Instant::from_millis(start), 3, &[1, 2]);
    assert!(nodes[0].member(&fresh).is_some(), "node 1 took the joiner");
    assert_eq!(
        nodes[0].stats().news_withheld,
        2,
        "the joiner's own news was kept back"
    );
    let interval = nodes[0].config().probe_interval_ms;
    let (mut confirmed_at, mut known_at) = (None, None);
    for ms in (start + 50..start + 10 * interval).step_by(50) {
        let now = Instant::from_millis(ms);
        nodes.iter_mut().for_each(|n| n.handle_timeout(now));
        pump_except(&mut nodes, now, 3, &[1, 2]);
        if confirmed_at.is_none() && nodes[0].is_confirmed(&fresh) {
            confirmed_at = Some(ms);
        }
        let known = nodes[1..3].iter().any(|n| n.member(&fresh).is_some());
        if known {
            assert!(
                confirmed_at.is_some(),
                "news of the joiner left node 1 before it answered"
            );
            known_at = Some(ms);
            break;
        }
    }
    let confirmed_at = confirmed_at.expect("node 1 probed the joiner first");
    let known_at = known_at.expect("node 2 or 3 learned the joiner");
    // Passed on by gossip once it answered, not left to the next push-pull. (They withhold it
    // in turn: they hold the mint node 1 passed on before the evidence, and cannot probe it.)
    assert!(
        known_at - confirmed_at < nodes[0].config().push_pull_interval_ms / 4,
        "confirmed at {confirmed_at} ms, passed on at {known_at} ms"
    );
}

/// A failed probe is evidence of a mint only when the node handled its deadline on time. A
/// starved process (a join storm of 100 nodes in one process) handles probe stages hundreds of
/// ms late: its probes fail because it is behind, not because the targets never answer, and
/// one such failure against a table full of unconfirmed joiners made a seed withhold every
/// joiner from its join answers. The same probes run on time still count.
#[test]
fn a_probe_that_failed_while_the_node_was_behind_is_no_evidence_of_a_mint() {
    let mut nodes = cluster(3, Config::fast());
    // Fifty members introduce themselves to node 1; none of them answers.
    for i in 0..50 {
        introduce_minted(&mut nodes[0], i, 5_000);
    }
    // Node 1's loop comes round every 500 ms (fast: 100 ms periods, 40 ms timeouts): each
    // probe's stages run late, its deadline hundreds of ms after it passed.
    for ms in (5_500..10_000).step_by(500) {
        let now = Instant::from_millis(ms);
        nodes.iter_mut().for_each(|n| n.handle_timeout(now));
        pump(&mut nodes, now);
    }
    assert!(nodes[0].health_score() > 0, "the node knows it was late");
    introduce_minted(&mut nodes[0], 50, 10_000);
    assert_eq!(
        nodes[0].stats().news_withheld,
        0,
        "probes that failed while the node was behind were taken as evidence of a mint"
    );
    // On time, the same silence is evidence: the next self-introduction is kept back.
    run(&mut nodes, 10_000, 5_000);
    introduce_minted(&mut nodes[0], 51, 15_000);
    assert_eq!(
        nodes[0].stats().news_withheld,
        1,
        "probes that failed on time were not counted"
    );
}

/// Nor is a failed probe from a node in doubt about itself (Lifeguard's health score above 0),
/// even with the deadline handled on time: here the node's loop comes round every 100 ms while
/// it is healthy (fast: 40 ms timeouts), so a stage runs late and raises its score, and exactly
/// on time while the score is up. No failed probe of the silent members counts, so nothing is
/// withheld.
#[test]
fn a_probe_that_failed_while_the_node_was_unhealthy_is_no_evidence_of_a_mint() {
    let mut nodes = cluster(3, Config::fast());
    for i in 0..50 {
        introduce_minted(&mut nodes[0], i, 5_000);
    }
    let (mut now, mut on_time_while_unhealthy) = (Instant::from_millis(5_000), 0);
    while now < Instant::from_millis(10_000) {
        now = if nodes[0].health_score() == 0 {
            now.plus_millis(100)
        } else {
            on_time_while_unhealthy += 1;
            nodes[0].poll_timeout().expect("a probe timer").max(now)
        };
        nodes.iter_mut().for_each(|n| n.handle_timeout(now));
        pump(&mut nodes, now);
    }
    assert!(on_time_while_unhealthy > 0, "the node never ran unhealthy");
    introduce_minted(&mut nodes[0], 50, 10_000);
    assert_eq!(
        nodes[0].stats().news_withheld,
        0,
        "probes that failed while the node was unhealthy were taken as evidence of a mint"
    );
}

/// Nor is a failed probe that no helper corroborated: a seed that has confirmed nobody yet (the
/// first moments of a join storm through it) has no helper whose nack it could expect, and
/// Lifeguard then blames the node itself. Its first failed probes here run on time, from a
/// healthy node, and still prove nothing.
#[test]
fn a_probe_failure_no_helper_corroborated_is_no_evidence_of_a_mint() {
    let mut seed = member(1, Config::fast(), NOW_MS);
    for i in 0..50 {
        introduce_minted(&mut seed, i, 5_000);
    }
    run(std::slice::from_mut(&mut seed), 5_000, 1_000);
    introduce_minted(&mut seed, 50, 6_000);
    assert_eq!(
        seed.stats().news_withheld,
        0,
        "an uncorroborated failed probe was taken as evidence of a mint"
    );
}

/// A driver busy with other work handles a probe's stages late. Its helpers still get their
/// whole window from when the ping-reqs actually leave (before, the deadline had passed by then,
/// so the next turn of the loop suspected the target before any answer could be read), and the
/// lateness counts against the node's own health, so its next probes wait longer.
#[test]
fn a_probe_handled_late_gives_its_helpers_their_window_and_counts_against_local_health() {
    let mut nodes = cluster(3, Config::fast());
    let suspects = |n: &Node| n.members().filter(|m| m.state == State::Suspect).count();
    assert_eq!((nodes[0].health_score(), suspects(&nodes[0])), (0, 0));
    // 5,000 ms: node 1 starts a probe; its ping is lost.
    nodes[0].handle_timeout(Instant::from_millis(5_000));
    std::iter::from_fn(|| nodes[0].poll_transmit()).for_each(drop);
    // The loop comes back 500 ms later (fast: 40 ms timeout, 100 ms period): the indirect
    // stage goes out now, and the node knows it was late.
    nodes[0].handle_timeout(Instant::from_millis(5_500));
    assert_eq!(nodes[0].health_score(), 1, "lateness not counted");
    // Its next turn, before it read anything: the helper has had no time to answer.
    nodes[0].handle_timeout(Instant::from_millis(5_501));
    assert_eq!(
        suspects(&nodes[0]),
        0,
        "suspected before the helper could answer"
    );
    // Nothing is left due: a driver that waits for `poll_timeout` does not spin.
    assert!(nodes[0].poll_timeout() > Some(Instant::from_millis(5_501)));
    // The helper's answer arrives within the window: nobody is suspected, and the ack
    // brings the node's health back.
    pump(&mut nodes, Instant::from_millis(5_510));
    nodes[0].handle_timeout(Instant::from_millis(5_560));
    pump(&mut nodes, Instant::from_millis(5_560));
    assert_eq!(suspects(&nodes[0]), 0);
    assert!(
        events(&mut nodes[0])
            .iter()
            .all(|e| !matches!(e, Event::MemberSuspect { .. }))
    );
    assert_eq!(nodes[0].health_score(), 0);
}

// ----- pushes held across a driver's backlog --------------------------------------------------

/// `count` broadcasts signed by member `i` at logical times from `from`, `size` incompressible
/// bytes each.
fn broadcasts(i: u8, from: u16, count: u16, size: usize) -> Vec<SignedPacket> {
    let codec = Codec::new(
        identity(i),
        Keyring::new(key(1)),
        Limits::default(),
        ReplayConfig::default(),
    );
    (from..from + count)
        .map(|l| {
            let mut x = u32::from(l).wrapping_mul(2_654_435_761) | 1;
            let data: Vec<u8> = (0..size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let msg = gossip_core::message::Broadcast {
                topic: "t".into(),
                data: data.into(),
            };
            codec.sign(ts(l), &msg.into()).unwrap()
        })
        .collect()
}

/// A gossip frame of `items` sent by member `i` (frames sign at logical times from 2,000 on,
/// apart from the records they carry).
fn gossip_frame(i: u8, logical: u16, items: Vec<SignedPacket>) -> Vec<u8> {
    signed_by(&identity(i), 2_000 + logical, Gossip { items }.into())
}

fn transmits(n: &mut Node) -> Vec<Transmit> {
    std::iter::from_fn(|| n.poll_transmit()).collect()
}

/// Delivers `ts` to the members of `nodes` they are addressed to, as from member `from`.
fn deliver(nodes: &mut [Node], from: usize, ts: &[Transmit], now: Instant) {
    let from_addr = nodes[from].local().addrs[0].clone();
    for t in ts {
        if let Some(to) = nodes.iter().position(|n| n.local().addrs.contains(&t.to)) {
            nodes[to]
                .handle_packet(now, from_addr.clone(), &t.bytes)
                .unwrap();
        }
    }
}

fn broadcasts_seen(n: &mut Node) -> usize {
    events(n)
        .iter()
        .filter(|e| matches!(e, Event::Broadcast { .. }))
        .count()
}

/// The first member (other than the origin, member 2) that pushes member 2's news on: with a
/// ring of 8 some members are leaves of member 2's push tree.
fn pusher(nodes: &mut [Node], now: Instant) -> usize {
    (0..nodes.len())
        .filter(|&k| k != 1)
        .find(|&k| {
            let frame = gossip_frame(2, 900 + k as u16, broadcasts(2, 900 + k as u16, 1, 40));
            nodes[k].handle_packet(now, member_addr(2), &frame).unwrap();
            !transmits(&mut nodes[k]).is_empty()
        })
        .expect("member 2's push tree has an inner member")
}

#[test]
fn news_held_across_frames_is_pushed_once_and_reaches_the_same_members() {
    let mut nodes = cluster(8, Config::lan());
    let now = Instant::from_millis(5_000);
    let k = pusher(&mut nodes, now);
    nodes.iter_mut().for_each(|n| drop(events(n)));

    // Not held: every frame's news is pushed on its own.
    for (logical, items) in [
        (10, broadcasts(2, 10, 2, 40)),
        (12, broadcasts(2, 12, 2, 40)),
    ] {
        let frame = gossip_frame(2, logical, items);
        nodes[k].handle_packet(now, member_addr(2), &frame).unwrap();
    }
    let one_by_one = transmits(&mut nodes[k]);

    // Held: nothing goes out until the release, then one push carries both frames' news.
    nodes[k].hold_pushes();
    for (logical, items) in [
        (20, broadcasts(2, 20, 2, 40)),
        (22, broadcasts(2, 22, 2, 40)),
    ] {
        let frame = gossip_frame(2, logical, items);
        nodes[k].handle_packet(now, member_addr(2), &frame).unwrap();
        assert!(transmits(&mut nodes[k]).is_empty(), "a held push went out");
    }
    nodes[k].release_pushes(now);
    let held = transmits(&mut nodes[k]);

    assert!(!held.is_empty());
    assert_eq!(
        one_by_one.len(),
        2 * held.len(),
        "one push per frame, one held"
    );
    let targets = |ts: &[Transmit]| {
        let mut t: Vec<Address> = ts.iter().map(|t| t.to.clone()).collect();
        t.sort_by_key(ToString::to_string);
        t.dedup();
        t
    };
    assert_eq!(targets(&one_by_one), targets(&held), "the same members");
    assert!(
        !held.iter().any(|t| t.to == member_addr(2)),
        "pushed back to the one sender"
    );
    // Each target gets all four broadcasts from the held push.
    nodes.iter_mut().for_each(|n| drop(events(n)));
    deliver(&mut nodes, k, &held, now);
    for t in targets(&held) {
        let to = nodes
            .iter()
            .position(|n| n.local().addrs.contains(&t))
            .unwrap();
        assert_eq!(broadcasts_seen(&mut nodes[to]), 4, "member {to}");
    }
    // Released: the next frame's news is pushed at once again.
    let frame = gossip_frame(2, 30, broadcasts(2, 30, 1, 40));
    nodes[k].handle_packet(now, member_addr(2), &frame).unwrap();
    assert_eq!(transmits(&mut nodes[k]).len(), held.len());
}

#[test]
fn held_news_goes_out_in_datagrams() {
    let mut nodes = cluster(8, Config::lan());
    let now = Instant::from_millis(5_000);
    let k = pusher(&mut nodes, now);
    let budget = nodes[k].config().udp_budget;

    // 40 broadcasts of 150 bytes in one frame: pushed as it came, in one batch over the budget.
    let frame = gossip_frame(2, 10, broadcasts(2, 10, 40, 150));
    nodes[k].handle_packet(now, member_addr(2), &frame).unwrap();
    let whole = transmits(&mut nodes[k]);
    assert!(whole.iter().all(|t| t.bytes.len() > budget));

    // Held, the same amount of news is cut to fit datagrams, and all of it arrives.
    nodes.iter_mut().for_each(|n| drop(events(n)));
    nodes[k].hold_pushes();
    let frame = gossip_frame(2, 60, broadcasts(2, 60, 40, 150));
    nodes[k].handle_packet(now, member_addr(2), &frame).unwrap();
    nodes[k].release_pushes(now);
    let held = transmits(&mut nodes[k]);
    assert!(held.len() > whole.len());
    assert!(
        held.iter().all(|t| t.bytes.len() <= budget && !t.reliable),
        "sizes {:?}",
        held.iter().map(|t| t.bytes.len()).collect::<Vec<_>>()
    );
    let targets = |ts: &[Transmit]| -> std::collections::BTreeSet<String> {
        ts.iter().map(|t| t.to.to_string()).collect()
    };
    assert_eq!(targets(&held), targets(&whole), "the same members");
    deliver(&mut nodes, k, &held, now);
    let mut reached: Vec<usize> = held
        .iter()
        .map(|t| {
            nodes
                .iter()
                .position(|n| n.local().addrs.contains(&t.to))
                .unwrap()
        })
        .collect();
    reached.sort_unstable();
    reached.dedup();
    for to in reached {
        assert_eq!(broadcasts_seen(&mut nodes[to]), 40, "member {to}");
    }
}

#[test]
fn held_news_goes_out_before_the_release_once_there_is_enough() {
    let mut nodes = cluster(8, Config::lan());
    let now = Instant::from_millis(5_000);
    let k = pusher(&mut nodes, now);
    nodes[k].hold_pushes();
    // Below the bound: held.
    let frame = gossip_frame(2, 10, broadcasts(2, 10, 63, 10));
    nodes[k].handle_packet(now, member_addr(2), &frame).unwrap();
    assert!(transmits(&mut nodes[k]).is_empty());
    // At it: pushed without waiting for the release; holding goes on.
    let frame = gossip_frame(2, 80, broadcasts(2, 80, 1, 10));
    nodes[k].handle_packet(now, member_addr(2), &frame).unwrap();
    assert!(!transmits(&mut nodes[k]).is_empty());
    let frame = gossip_frame(2, 90, broadcasts(2, 90, 1, 10));
    nodes[k].handle_packet(now, member_addr(2), &frame).unwrap();
    assert!(transmits(&mut nodes[k]).is_empty(), "still holding");
    nodes[k].release_pushes(now);
    assert!(!transmits(&mut nodes[k]).is_empty());
}
