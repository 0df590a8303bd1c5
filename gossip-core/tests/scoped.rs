//! Scoped views (`ViewScope`): what a server tells each admitted member it serves.
//!
//! Two full members, `S` and `M`, and admitted members (tabs, without the cluster key, each on
//! its own link): on `S`, `A` (scope `All`), `N` (scope `None`), `G1`, `G2`, `G3` (scope `Groups`
//! over `room=blue`; `G1` and `G2` are in room blue, `G3` in room red), `K` (scope `None`, at
//! most 16 bytes of metadata); on `M`, `Q` (scope `All`, room blue). Every frame that reaches a
//! tab is opened with its link key and sorted by the path it came by: the hub's deliveries
//! (`Gossip`), push-pull and join answers (`Sync`: its records and its digest), probe and ack
//! piggyback (`Ping`, `Ack`), and anything else. A tab must never hear, on any path, of a member
//! its scope hides; the `All` tab shows that each path does carry other tabs' news, so a path
//! that ignored the scope would fail the test.

use std::collections::{BTreeMap, BTreeSet};

use gossip_core::groups::GroupSpec;
use gossip_core::link::Handshake;
use gossip_core::message::{MembershipMessage, Message, Ping, UpdateMessage};
use gossip_core::{
    Address, ClusterKey, Codec, Config, DropReason, Event, Grant, Identity, Instant, Keyring,
    Limits, Node, NodeId, ReplayConfig, SignedPacket, State, Transmit, ViewScope,
};

const S: usize = 0;
const M: usize = 1;
const A: usize = 2;
const N: usize = 3;
const G1: usize = 4;
const G2: usize = 5;
const G3: usize = 6;
const K: usize = 7;
const Q: usize = 8;
/// In the order they join: `A` last, so its join answer brings it the others.
const TABS: [usize; 7] = [N, G1, G2, G3, K, Q, A];
const WALL_MS: u64 = 1_700_000_000_000;

/// How a record reached a tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Path {
    Hub,
    SyncRecords,
    SyncDigest,
    /// A probe's piggyback.
    Probe,
    /// An ack's piggyback.
    Ack,
    Other,
}

fn identity(i: usize) -> Identity {
    Identity::from_secret_bytes([i as u8 + 1; 32])
}

fn udp(i: usize) -> Address {
    Address::Udp(format!("10.0.0.{}:7000", i + 1).parse().unwrap())
}

/// The address a server sees tab `i`'s frames arrive from.
fn link(i: usize) -> Address {
    Address::WebSocket(format!("conn:{i}"))
}

/// The address tab `i` dialed its server at.
fn url(server: usize) -> Address {
    Address::WebSocket(format!("ws://{server}.test/gossip"))
}

fn handshake(server: usize, tab: usize) -> ClusterKey {
    let (mut acceptor, challenge) = Handshake::accept(&identity(server), [7; 32]);
    let mut dialer = Handshake::dial([tab as u8; 32], None);
    let proof = dialer.on_message(&identity(tab), &challenge).unwrap();
    let answer = acceptor
        .on_message(&identity(server), &proof.reply.unwrap())
        .unwrap();
    let done = dialer
        .on_message(&identity(tab), &answer.reply.unwrap())
        .unwrap();
    done.key.unwrap()
}

fn blue() -> GroupSpec {
    "room=blue".parse().unwrap()
}

struct Net {
    nodes: Vec<Node>,
    ids: Vec<NodeId>,
    /// Each tab's server.
    server: BTreeMap<usize, usize>,
    /// Each tab's copy of what reached it: opened with its link key, outside its node.
    codecs: BTreeMap<usize, Codec>,
    /// Per tab, per path: the members the records that reached it were about.
    heard: BTreeMap<usize, BTreeMap<Path, Vec<NodeId>>>,
    now: Instant,
}

impl Net {
    fn new() -> Net {
        let now = Instant::from_micros(0);
        let config = |name: &str| Config::local().with_name(name);
        let mut nodes = Vec::new();
        for (i, name) in [(S, "server-s"), (M, "server-m")] {
            let mut config = config(name);
            // News stays in S's backlog for seconds (its only gossip target is M), so S's
            // probes of every tab carry piggyback: that path is exercised too.
            if i == S {
                config.retransmit_mult = 1_000;
            }
            nodes.push(Node::new(
                config,
                identity(i),
                Keyring::new(ClusterKey::from_bytes([42; 32])),
                vec![udp(i)],
                [i as u8; 32],
                now,
                WALL_MS,
            ));
        }
        let ids: Vec<NodeId> = (0..=Q).map(|i| identity(i).id()).collect();
        let mut net = Net {
            nodes,
            ids,
            server: BTreeMap::new(),
            codecs: BTreeMap::new(),
            heard: BTreeMap::new(),
            now,
        };
        net.nodes[M].join(now, &[udp(S)]);
        let groups = || Grant::new().with_scope(ViewScope::Groups(vec![blue()]));
        let tabs = [
            (A, S, Grant::new(), None),
            (N, S, Grant::new().with_scope(ViewScope::None), None),
            (G1, S, groups(), Some("blue")),
            (G2, S, groups(), Some("blue")),
            (G3, S, groups(), Some("red")),
            (
                K,
                S,
                Grant::new()
                    .with_scope(ViewScope::None)
                    .with_max_metadata_bytes(16),
                None,
            ),
            (Q, M, Grant::new(), Some("blue")),
        ];
        for (tab, server, grant, room) in tabs {
            let key = handshake(server, tab);
            let mut node = Node::new(
                config(&format!("tab-{tab}")),
                identity(tab),
                Keyring::new(key.clone()),
                vec![Address::Relayed(net.ids[server])],
                [tab as u8; 32],
                now,
                WALL_MS,
            );
            if let Some(room) = room {
                node.set_metadata(now, "room", Some(room.as_bytes().to_vec()))
                    .unwrap();
            }
            net.nodes.push(node);
            net.server.insert(tab, server);
            net.codecs.insert(
                tab,
                Codec::new(
                    identity(tab),
                    Keyring::new(key.clone()),
                    Limits::default(),
                    ReplayConfig::default(),
                ),
            );
            net.nodes[server].admit_link(now, link(tab), net.ids[tab], key, grant);
        }
        net
    }

    /// Tabs join one after another, so news of each is still being spread (piggybacked,
    /// delivered) while the next ones arrive.
    fn join_tabs(&mut self) {
        self.run(1_000);
        for tab in TABS {
            let server = self.server[&tab];
            self.nodes[tab].join(self.now, &[url(server)]);
            self.run(300);
        }
    }

    /// Where a frame from `from` goes, and the address it arrives from.
    fn route(&self, from: usize, t: &Transmit) -> Option<(usize, Address)> {
        if let Some(&server) = self.server.get(&from) {
            return Some((server, link(from)));
        }
        let to = match t.node {
            Some(n) => self.ids.iter().position(|id| *id == n)?,
            None => [S, M].into_iter().find(|&i| t.to == udp(i))?,
        };
        match self.server.get(&to) {
            Some(&server) if server == from => Some((to, url(from))),
            Some(_) => None,
            None => Some((to, udp(from))),
        }
    }

    fn deliver(&mut self) {
        for _ in 0..16 {
            let mut moved = false;
            for from in 0..self.nodes.len() {
                while let Some(t) = self.nodes[from].poll_transmit() {
                    moved = true;
                    let Some((to, addr)) = self.route(from, &t) else {
                        continue;
                    };
                    if self.server.contains_key(&to) {
                        self.record(to, &t.bytes);
                    }
                    let _ = self.nodes[to].handle_packet(self.now, addr, &t.bytes);
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Opens a frame that reached `tab` and notes what each record in it was about.
    fn record(&mut self, tab: usize, frame: &[u8]) {
        let wall = WALL_MS + self.now.micros_since(Instant::from_micros(0)) / 1_000;
        let codec = self.codecs.get_mut(&tab).unwrap();
        let inbound = codec
            .decode(frame, wall)
            .expect("every frame to a tab opens with its link key");
        let mut notes: Vec<(Path, NodeId)> = Vec::new();
        let mut items = |path: Path, items: &[SignedPacket], codec: &mut Codec| {
            for item in items {
                let message = codec.verify(item).expect("a signed record");
                notes.push((path, subject(item, &message)));
            }
        };
        match &inbound.message {
            Message::Membership(MembershipMessage::Gossip(g)) => items(Path::Hub, &g.items, codec),
            Message::Membership(MembershipMessage::Sync(s)) => {
                items(Path::SyncRecords, &s.states, codec);
                notes.extend(s.digest.iter().map(|e| (Path::SyncDigest, e.node)));
            }
            Message::Membership(MembershipMessage::Ping(p)) => {
                items(Path::Probe, &p.piggyback, codec)
            }
            Message::Membership(MembershipMessage::Ack(a)) => items(Path::Ack, &a.piggyback, codec),
            m @ Message::Update(_) => notes.push((Path::Other, subject(&inbound.packet, m))),
            _ => {}
        }
        let heard = self.heard.entry(tab).or_default();
        for (path, id) in notes {
            heard.entry(path).or_default().push(id);
        }
    }

    fn run(&mut self, ms: u64) {
        let end = self.now.plus_millis(ms);
        while self.now < end {
            self.now = self.now.plus_millis(10);
            for n in &mut self.nodes {
                if n.poll_timeout().is_some_and(|t| t <= self.now) {
                    n.handle_timeout(self.now);
                }
            }
            self.deliver();
        }
    }

    fn state(&self, at: usize, of: usize) -> Option<State> {
        self.nodes[at].member(&self.ids[of]).map(|m| m.state)
    }

    /// The members `at` knows of, by index.
    fn known(&self, at: usize) -> BTreeSet<usize> {
        (0..self.nodes.len())
            .filter(|&of| self.state(at, of).is_some())
            .collect()
    }

    /// What reached `tab` by `path` about members outside `visible`.
    fn leaks(&self, tab: usize, visible: &[usize]) -> BTreeMap<Path, usize> {
        let visible: Vec<NodeId> = visible.iter().map(|&i| self.ids[i]).collect();
        let mut out = BTreeMap::new();
        for (path, ids) in self.heard.get(&tab).into_iter().flatten() {
            let n = ids.iter().filter(|id| !visible.contains(id)).count();
            if n > 0 {
                out.insert(*path, n);
            }
        }
        out
    }

    /// `tab` pings its server with a frame of its own making: the ack carries piggyback from
    /// the server's backlog as it is now.
    fn ping_from(&mut self, tab: usize) {
        let server = self.server[&tab];
        let ping = Ping {
            seq: 7,
            target: self.ids[server],
            piggyback: Vec::new(),
        };
        let key = handshake(server, tab);
        let frame = sealed(&identity(tab), ping.into(), Keyring::new(key), self.now);
        let _ = self.nodes[server].handle_packet(self.now, link(tab), &frame);
        self.deliver();
    }

    fn drops(&self, at: usize, reason: DropReason) -> u64 {
        self.nodes[at]
            .stats()
            .drops
            .get(&reason)
            .copied()
            .unwrap_or(0)
    }
}

/// A frame `signer` signs and seals with `keyring`, with a fresh id (the replay guard refuses a
/// repeated one).
fn sealed(signer: &Identity, message: Message, keyring: Keyring, now: Instant) -> Vec<u8> {
    let codec = Codec::new(
        signer.clone(),
        keyring,
        Limits::default(),
        ReplayConfig::default(),
    );
    static LOGICAL: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let logical = LOGICAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let wall = WALL_MS + now.micros_since(Instant::from_micros(0)) / 1_000;
    let packet = codec
        .sign(gossip_core::Timestamp::new(wall, logical), &message)
        .unwrap();
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed([9; 32]);
    codec.seal(&mut rng, 0, &packet).unwrap()
}

/// The member a record is about: its origin, or for an accusation the accused.
fn subject(packet: &SignedPacket, message: &Message) -> NodeId {
    match message {
        Message::Update(UpdateMessage::Suspect(s)) => s.node,
        Message::Update(UpdateMessage::Dead(d)) => d.node,
        Message::Update(UpdateMessage::Admission(a)) => a.member,
        _ => packet.origin(),
    }
}

fn set(members: &[usize]) -> BTreeSet<usize> {
    members.iter().copied().collect()
}

#[test]
fn each_scope_sees_exactly_what_it_should_on_every_path() {
    let mut net = Net::new();
    net.join_tabs();
    net.run(5_000);
    // News of G1 fresh in S's backlog: the tabs ping S (the acks' piggyback is the backlog as
    // it stands), and S probes each tab while the news is still queued.
    net.nodes[G1]
        .broadcast(net.now, "chat", b"from G1".to_vec())
        .unwrap();
    net.deliver();
    for tab in [N, K, G3, A] {
        net.ping_from(tab);
    }
    net.run(10_000);
    let all: Vec<usize> = (0..=Q).collect();
    // The full members see everyone.
    for at in [S, M] {
        assert_eq!(net.known(at), set(&all), "full member {at}");
    }
    assert_eq!(net.known(A), set(&all), "scope all");
    assert_eq!(net.known(Q), set(&all), "scope all, on M");
    assert_eq!(net.known(N), set(&[S, M, N]), "scope none");
    assert_eq!(net.known(K), set(&[S, M, K]), "scope none");
    // Room blue: the two blue tabs on S and the blue tab on M, not the red one.
    assert_eq!(net.known(G1), set(&[S, M, G1, G2, Q]), "groups, blue");
    assert_eq!(net.known(G2), set(&[S, M, G1, G2, Q]), "groups, blue");
    assert_eq!(net.known(G3), set(&[S, M, G3]), "groups, red");
    for tab in TABS {
        for of in net.known(tab) {
            assert_eq!(net.state(tab, of), Some(State::Alive), "{tab} sees {of}");
        }
    }

    // On no path did a limited tab hear of a member its scope hides.
    assert_eq!(net.leaks(N, &[S, M, N]), BTreeMap::new(), "scope none");
    assert_eq!(net.leaks(K, &[S, M, K]), BTreeMap::new(), "scope none");
    assert_eq!(net.leaks(G1, &[S, M, G1, G2, Q]), BTreeMap::new(), "groups");
    assert_eq!(net.leaks(G3, &[S, M, G3]), BTreeMap::new(), "groups, red");
    // Each of those paths did carry other tabs' news to the tab that sees everything: the
    // assertions above would catch a path that ignored the scope.
    let to_all = net.leaks(A, &[S, M, A]);
    for path in [
        Path::Hub,
        Path::SyncRecords,
        Path::SyncDigest,
        Path::Probe,
        Path::Ack,
    ] {
        assert!(
            to_all.get(&path).is_some_and(|&n| n > 0),
            "{path:?} carried no other tab's news: {to_all:?}"
        );
    }
}

#[test]
fn a_groups_view_follows_metadata_and_hears_of_departures() {
    let mut net = Net::new();
    net.join_tabs();
    net.run(3_000);
    assert_eq!(net.known(G3), set(&[S, M, G3]));
    // G3 moves to room blue: its server syncs it, and it comes to see the blue tabs.
    net.nodes[G3]
        .set_metadata(net.now, "room", Some(b"blue".to_vec()))
        .unwrap();
    net.run(3_000);
    assert_eq!(net.known(G3), set(&[S, M, G1, G2, G3, Q]), "G3 moved in");
    assert_eq!(
        net.known(G1),
        set(&[S, M, G1, G2, G3, Q]),
        "G1 sees G3 arrive"
    );
    // G2 moves out, then leaves: G1, which was shown G2, still hears that it left.
    net.nodes[G2]
        .set_metadata(net.now, "room", Some(b"green".to_vec()))
        .unwrap();
    net.run(1_000);
    net.nodes[G2].leave(net.now);
    net.run(3_000);
    assert_eq!(net.state(G1, G2), Some(State::Left), "G1 heard G2 leave");
    assert_eq!(net.state(S, G2), Some(State::Left));
    // The tab that sees nothing never heard of any of it.
    assert_eq!(net.known(N), set(&[S, M, N]));
    assert_eq!(net.leaks(N, &[S, M, N]), BTreeMap::new());
}

#[test]
fn a_tab_answers_a_member_its_view_leaves_out() {
    let mut net = Net::new();
    net.join_tabs();
    net.run(3_000);
    assert_eq!(net.state(N, Q), None, "N does not see Q");
    // Q, on another server, asks N; N answers though it has never heard of Q.
    let req = net.nodes[Q]
        .request(net.now, net.ids[N], "chat", b"ping".to_vec(), 2_000)
        .unwrap();
    net.run(200);
    let asked = std::iter::from_fn(|| net.nodes[N].poll_event()).find_map(|e| match e {
        Event::Request { from, id, data, .. } if data == b"ping" => Some((from, id)),
        _ => None,
    });
    let (from, id) = asked.expect("the request reached N");
    assert_eq!(from, net.ids[Q]);
    net.nodes[N]
        .respond(net.now, from, id, b"pong".to_vec())
        .unwrap();
    net.run(200);
    let answered = std::iter::from_fn(|| net.nodes[Q].poll_event())
        .any(|e| matches!(e, Event::Response { id, ref data, .. } if id == req && data == b"pong"));
    assert!(answered, "the answer reached Q");
    // A direct message too.
    net.nodes[N]
        .send(net.now, net.ids[Q], "chat", b"hello".to_vec(), true)
        .unwrap();
    net.run(200);
    let got = std::iter::from_fn(|| net.nodes[Q].poll_event())
        .any(|e| matches!(e, Event::Direct { ref data, .. } if data == b"hello"));
    assert!(got, "the message reached Q");
    assert_eq!(net.state(N, Q), None, "writing did not widen N's view");
}

#[test]
fn metadata_past_the_grant_is_refused_and_counted() {
    let mut net = Net::new();
    net.join_tabs();
    net.run(2_000);
    let before = net.drops(S, DropReason::MetadataTooLarge);
    // 4 + 12 = 16 bytes: within K's limit.
    net.nodes[K]
        .set_metadata(net.now, "name", Some(b"twelve bytes".to_vec()))
        .unwrap();
    net.run(1_000);
    let meta = |net: &Net, at: usize| {
        net.nodes[at]
            .member(&net.ids[K])
            .and_then(|m| m.metadata.get("name").cloned())
    };
    assert_eq!(meta(&net, M), Some(b"twelve bytes".to_vec()));
    assert_eq!(net.drops(S, DropReason::MetadataTooLarge), before);
    // 17 bytes: refused at its server, counted, and nobody else holds it.
    net.nodes[K]
        .set_metadata(net.now, "name", Some(b"thirteen byte".to_vec()))
        .unwrap();
    net.run(1_000);
    assert!(net.drops(S, DropReason::MetadataTooLarge) > before);
    assert_eq!(meta(&net, S), Some(b"twelve bytes".to_vec()));
    assert_eq!(meta(&net, M), Some(b"twelve bytes".to_vec()));
    // A tab without a limit is held only to the cluster's.
    net.nodes[A]
        .set_metadata(net.now, "name", Some(vec![b'x'; 200]))
        .unwrap();
    net.run(1_000);
    assert_eq!(
        net.nodes[M]
            .member(&net.ids[A])
            .and_then(|m| m.metadata.get("name").map(Vec::len)),
        Some(200)
    );
}
