//! A member without the cluster key (a browser tab) admitted by a server: it joins and talks
//! over a link sealed with its handshake's key, and the server holds it to its grant.
//!
//! Three nodes: the server `S` and another full member `M` (both with the cluster key, on UDP
//! addresses), and the admitted member `P` (no address: relayed by `S`, whose link is the only
//! way in or out). Frames are delivered by hand with a virtual clock.

use gossip_core::link::Handshake;
use gossip_core::message::{Alive, Dead, Message, Relay, Suspect};
use gossip_core::{
    Address, ClusterKey, Codec, Config, DropReason, Event, Grant, Identity, Instant, Keyring,
    Limits, Node, NodeId, ReplayConfig, State, Transmit,
};

const S: usize = 0;
const M: usize = 1;
const P: usize = 2;
/// A second admitted member, connected to `M`.
const Q: usize = 3;
const WALL_MS: u64 = 1_700_000_000_000;

fn cluster_key() -> ClusterKey {
    ClusterKey::from_bytes([42; 32])
}

fn udp(i: u8) -> Address {
    Address::Udp(format!("10.0.0.{i}:7000").parse().unwrap())
}

/// The address `S` sees `P`'s frames arrive from (its WebSocket connection).
fn p_link() -> Address {
    Address::WebSocket("conn:7".into())
}

/// The address `P` dialed `S` at.
fn s_url() -> Address {
    Address::WebSocket("ws://s.test/gossip".into())
}

/// The address `M` sees `Q`'s frames arrive from, and the one `Q` dialed `M` at.
fn q_link() -> Address {
    Address::WebSocket("conn:8".into())
}

fn m_url() -> Address {
    Address::WebSocket("ws://m.test/gossip".into())
}

struct Net {
    nodes: Vec<Node>,
    ids: Vec<NodeId>,
    /// What `S` sent `P`, as it went on the wire.
    to_p: Vec<Vec<u8>>,
    now: Instant,
}

fn identity(i: usize) -> Identity {
    Identity::from_secret_bytes([i as u8 + 1; 32])
}

/// The link key `S` and `P` agree in their handshake.
fn handshake() -> ClusterKey {
    handshake_of(S, P)
}

fn handshake_of(server: usize, tab: usize) -> ClusterKey {
    let (mut acceptor, challenge) = Handshake::accept(&identity(server), [7; 32]);
    let mut dialer = Handshake::dial([8; 32], None);
    let proof = dialer.on_message(&identity(tab), &challenge).unwrap();
    let answer = acceptor
        .on_message(&identity(server), &proof.reply.unwrap())
        .unwrap();
    let done = dialer
        .on_message(&identity(tab), &answer.reply.unwrap())
        .unwrap();
    assert_eq!(answer.key, done.key);
    done.key.unwrap()
}

impl Net {
    fn new(grant: Grant) -> Net {
        Net::with_config(grant, Config::local())
    }

    /// [`Net::new`] with every node on `base` (named as usual).
    fn with_config(grant: Grant, base: Config) -> Net {
        let now = Instant::from_micros(0);
        let config = |name: &str| base.clone().with_name(name);
        let full = |i: usize, name: &str| {
            Node::new(
                config(name),
                identity(i),
                Keyring::new(cluster_key()),
                vec![udp(i as u8 + 1)],
                [i as u8; 32],
                now,
                WALL_MS,
            )
        };
        let link_key = handshake();
        let q_key = handshake_of(M, Q);
        let s = full(S, "server-s");
        let m = full(M, "server-m");
        // The tabs never see the cluster key: each one's only key is its link's.
        let tab = |i: usize, name: &str, key: &ClusterKey| {
            Node::new(
                config(name),
                identity(i),
                Keyring::new(key.clone()),
                Vec::new(),
                [i as u8; 32],
                now,
                WALL_MS,
            )
        };
        let mut p = tab(P, "tab-1", &link_key);
        let mut q = tab(Q, "tab-2", &q_key);
        let ids = vec![s.id(), m.id(), p.id(), q.id()];
        p.set_addresses(now, vec![Address::Relayed(ids[S])])
            .unwrap();
        q.set_addresses(now, vec![Address::Relayed(ids[M])])
            .unwrap();
        let mut net = Net {
            nodes: vec![s, m, p, q],
            ids,
            to_p: Vec::new(),
            now,
        };
        net.nodes[S].admit_link(now, p_link(), net.ids[P], link_key, grant.clone());
        net.nodes[M].admit_link(now, q_link(), net.ids[Q], q_key, grant);
        net.nodes[M].join(now, &[udp(1)]);
        net.nodes[P].join(now, &[s_url()]);
        net.nodes[Q].join(now, &[m_url()]);
        net
    }

    /// Where a frame from `from` goes, and the address it arrives from.
    fn route(&self, from: usize, t: &Transmit) -> Option<(usize, Address)> {
        match from {
            P => return Some((S, p_link())),
            Q => return Some((M, q_link())),
            _ => {}
        }
        let to = match t.node {
            Some(n) => self.ids.iter().position(|id| *id == n)?,
            None => (0..2).find(|&i| t.to == udp(i as u8 + 1))?,
        };
        match to {
            P if from == S => Some((P, s_url())),
            Q if from == M => Some((Q, m_url())),
            P | Q => None,
            to => Some((to, udp(from as u8 + 1))),
        }
    }

    fn deliver(&mut self) {
        for _ in 0..8 {
            let mut moved = false;
            for from in 0..self.nodes.len() {
                while let Some(t) = self.nodes[from].poll_transmit() {
                    moved = true;
                    let Some((to, addr)) = self.route(from, &t) else {
                        continue;
                    };
                    if to == P {
                        self.to_p.push(t.bytes.clone());
                    }
                    let _ = self.nodes[to].handle_packet(self.now, addr, &t.bytes);
                }
            }
            if !moved {
                return;
            }
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

    fn drops(&self, at: usize, reason: DropReason) -> u64 {
        self.nodes[at]
            .stats()
            .drops
            .get(&reason)
            .copied()
            .unwrap_or(0)
    }

    fn events(&mut self, at: usize) -> Vec<Event> {
        std::iter::from_fn(|| self.nodes[at].poll_event()).collect()
    }

    /// A frame `P` signs and seals with its link key, sent to `S` over its link.
    fn say_as_p(&mut self, signer: &Identity, message: Message, link_key: &ClusterKey) -> u64 {
        let frame = sealed(signer, message, Keyring::new(link_key.clone()), self.now);
        let before = self.drops(S, DropReason::Forbidden);
        let _ = self.nodes[S].handle_packet(self.now, p_link(), &frame);
        self.deliver();
        self.drops(S, DropReason::Forbidden) - before
    }
}

fn sealed(signer: &Identity, message: Message, keyring: Keyring, now: Instant) -> Vec<u8> {
    let codec = Codec::new(
        signer.clone(),
        keyring,
        Limits::default(),
        ReplayConfig::default(),
    );
    // A fresh id per frame: the replay guard refuses a repeated one before any policy runs.
    static LOGICAL: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let logical = LOGICAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let wall = WALL_MS + now.micros_since(Instant::from_micros(0)) / 1_000;
    let id = gossip_core::Timestamp::new(wall, logical);
    let packet = codec.sign(id, &message).unwrap();
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed([9; 32]);
    codec.seal(&mut rng, 0, &packet).unwrap()
}

fn tab_grant() -> Grant {
    Grant::new()
        .with_name_prefix("tab-")
        .with_topics(["chat", "game/*"])
}

#[test]
fn an_admitted_member_joins_without_the_cluster_key() {
    let mut net = Net::new(tab_grant());
    net.run(3_000);
    for at in [S, M, P, Q] {
        for of in [S, M, P, Q] {
            assert_eq!(net.state(at, of), Some(State::Alive), "{at} sees {of}");
        }
    }
    // Everything S sent P is sealed with the link key: the cluster key opens none of it.
    assert!(!net.to_p.is_empty());
    let mut outsider = Codec::new(
        identity(5),
        Keyring::new(cluster_key()),
        Limits::default(),
        ReplayConfig::default(),
    );
    for frame in &net.to_p {
        assert!(outsider.decode(frame, WALL_MS + 3_000).is_err());
        assert!(!frame.windows(32).any(|w| w == cluster_key().as_bytes()));
    }
    // A broadcast on a topic it was granted reaches the other full member.
    net.nodes[P]
        .broadcast(net.now, "chat", b"hi from a tab".to_vec())
        .unwrap();
    net.run(1_000);
    let got = net.events(M).into_iter().any(|e| {
        matches!(e, Event::Broadcast { ref topic, ref data, .. } if topic == "chat" && data == b"hi from a tab")
    });
    assert!(got, "the granted broadcast reached M");
}

#[test]
fn what_the_grant_does_not_allow_is_refused_and_counted_and_the_cluster_is_unaffected() {
    let mut net = Net::new(tab_grant());
    let link_key = handshake();
    net.run(3_000);
    let p = identity(P);
    let (s_id, m_id) = (net.ids[S], net.ids[M]);
    let m_inc = net.nodes[S].member(&m_id).unwrap().incarnation;

    // Accusations, as a frame of their own.
    let suspect = Suspect {
        node: m_id,
        incarnation: m_inc,
    };
    assert_eq!(
        net.say_as_p(&p, suspect.clone().into(), &link_key),
        1,
        "suspect"
    );
    let dead = Dead {
        node: s_id,
        incarnation: 0,
    };
    assert_eq!(net.say_as_p(&p, dead.into(), &link_key), 1, "dead");
    // A name outside its grant, or an address of its own (others would dial it).
    let alive = |name: &str, addrs: Vec<Address>| -> Message {
        Alive {
            incarnation: WALL_MS + 10_000,
            addrs,
            name: name.into(),
        }
        .into()
    };
    let relayed = vec![Address::Relayed(s_id)];
    assert_eq!(
        net.say_as_p(&p, alive("server-x", relayed.clone()), &link_key),
        1,
        "name"
    );
    let dialable = vec![Address::WebSocket("ws://10.0.0.9/x".into())];
    assert_eq!(
        net.say_as_p(&p, alive("tab-1", dialable), &link_key),
        1,
        "address"
    );
    // A topic outside its grant.
    let admin = gossip_core::message::Broadcast {
        topic: "admin".into(),
        data: b"x".to_vec().into(),
    };
    assert_eq!(net.say_as_p(&p, admin.into(), &link_key), 1, "topic");
    // An indirect probe (the server would probe others on its word).
    let ping_req = gossip_core::message::PingReq {
        seq: 1,
        target: m_id,
        addrs: vec![udp(2)],
    };
    assert_eq!(net.say_as_p(&p, ping_req.into(), &link_key), 1, "ping_req");
    // Someone else's words over its link: another key's frame sealed with the link key.
    let other = identity(9);
    let before = net.drops(S, DropReason::Forbidden);
    let frame = sealed(
        &other,
        suspect.clone().into(),
        Keyring::new(link_key.clone()),
        net.now,
    );
    assert!(
        net.nodes[S]
            .handle_packet(net.now, p_link(), &frame)
            .is_err()
    );
    assert_eq!(
        net.drops(S, DropReason::Forbidden),
        before + 1,
        "another's frame"
    );
    // An accusation wrapped in a relay to M: opened, held to the grant, not carried.
    let inner = sealed(&p, suspect.into(), Keyring::new(link_key.clone()), net.now);
    let relay = Relay {
        to: m_id,
        frame: inner.into(),
    };
    assert_eq!(
        net.say_as_p(&p, relay.into(), &link_key),
        1,
        "relayed accusation"
    );

    // The cluster is unaffected: M and S stay alive everywhere, and the tab too.
    net.run(5_000);
    for (at, of) in [(S, M), (M, S), (M, P), (S, P), (P, M)] {
        assert_eq!(net.state(at, of), Some(State::Alive), "{at} sees {of}");
    }
    assert_eq!(
        net.drops(M, DropReason::Forbidden),
        0,
        "nothing forbidden got past S"
    );
    let admin_seen = net
        .events(M)
        .into_iter()
        .any(|e| matches!(e, Event::Broadcast { ref topic, .. } if topic == "admin"));
    assert!(!admin_seen);
}

#[test]
fn a_granted_relay_is_carried_and_a_flood_is_cut_at_the_rate() {
    let mut net = Net::new(tab_grant().with_rate(50, 100));
    let link_key = handshake();
    net.run(3_000);
    let p = identity(P);
    let m_id = net.ids[M];
    // A direct message to M on a granted topic, relayed by S and sealed again for the cluster.
    let direct = gossip_core::message::Direct {
        to: m_id,
        topic: "game/move".into(),
        data: b"e4".to_vec().into(),
    };
    let inner = sealed(&p, direct.into(), Keyring::new(link_key.clone()), net.now);
    let relay = Relay {
        to: m_id,
        frame: inner.into(),
    };
    assert_eq!(net.say_as_p(&p, relay.into(), &link_key), 0);
    let got = net.events(M).into_iter().any(|e| {
        matches!(e, Event::Direct { ref topic, ref data, .. } if topic == "game/move" && data == b"e4")
    });
    assert!(got, "the relayed message reached M");

    // 500 frames at once: the burst (100, less what the tab itself sent) passes, the rest is
    // dropped before any decryption.
    let frame = sealed(
        &p,
        gossip_core::message::Gossip { items: Vec::new() }.into(),
        Keyring::new(link_key),
        net.now,
    );
    let mut limited = 0;
    for _ in 0..500 {
        if let Err(r) = net.nodes[S].handle_packet(net.now, p_link(), &frame)
            && r.reason == DropReason::RateLimited
        {
            limited += 1;
        }
    }
    assert!(limited >= 400, "{limited} limited");
    assert_eq!(net.drops(S, DropReason::RateLimited), limited);
}

#[test]
fn tabs_on_different_servers_message_each_other() {
    let mut net = Net::new(tab_grant());
    net.run(3_000);
    let (p, q) = (net.ids[P], net.ids[Q]);
    net.nodes[P]
        .send(net.now, q, "chat", b"to q".to_vec(), true)
        .unwrap();
    net.nodes[Q]
        .send(net.now, p, "game/move", b"to p".to_vec(), true)
        .unwrap();
    net.run(500);
    let got = |events: Vec<Event>, from: NodeId, text: &[u8]| {
        events.into_iter().any(
            |e| matches!(e, Event::Direct { from: f, ref data, .. } if f == from && data == text),
        )
    };
    assert!(got(net.events(Q), p, b"to q"), "P's message reached Q");
    assert!(got(net.events(P), q, b"to p"), "Q's message reached P");
    // A topic outside the grant stops at the sender's server.
    net.nodes[P]
        .send(net.now, q, "admin", b"no".to_vec(), true)
        .unwrap();
    net.run(500);
    assert!(!got(net.events(Q), p, b"no"));
    assert!(net.drops(S, DropReason::Forbidden) >= 1);
}

#[test]
fn a_revoked_admission_is_honoured_everywhere() {
    let mut net = Net::new(tab_grant());
    net.run(3_000);
    let (p, m) = (net.ids[P], net.ids[M]);
    assert!(!net.nodes[S].revoke(net.now, &m), "only its own admissions");
    assert!(!net.nodes[M].revoke(net.now, &p), "P is S's, not M's");
    assert!(net.nodes[S].revoke(net.now, &p));
    assert!(net.nodes[S].grant(&p).is_none());
    // At once at S, and as fast as gossip carries the revocation elsewhere: no detection time.
    assert_eq!(net.state(S, P), Some(State::Left));
    net.run(300);
    assert_eq!(net.state(M, P), Some(State::Left));
    assert_eq!(net.nodes[M].admission_of(&p), Some((net.ids[S], 0)));
    assert_eq!(net.state(M, S), Some(State::Alive));
    // Q, a tab, decodes no admissions: its server tells it.
    assert!(net.state(Q, P).is_some_and(State::is_down));
}

#[test]
fn a_released_link_opens_nothing_more() {
    let mut net = Net::new(Grant::new());
    let link_key = handshake();
    net.run(2_000);
    assert_eq!(net.state(S, P), Some(State::Alive));
    assert!(net.nodes[S].grant(&net.ids[P]).is_some());
    net.nodes[S].release_link(&net.ids[P]);
    assert!(net.nodes[S].grant(&net.ids[P]).is_none());
    let frame = sealed(
        &identity(P),
        gossip_core::message::Gossip { items: Vec::new() }.into(),
        Keyring::new(link_key),
        net.now,
    );
    let refused = net.nodes[S]
        .handle_packet(net.now, p_link(), &frame)
        .unwrap_err();
    assert_eq!(refused.reason, DropReason::Unauthenticated);
}

// ----- admissions every member checks -----

use gossip_core::admission::{ADMISSION_TTL_MS, MAX_ADMISSION_MS};
use gossip_core::message::{Admission, Broadcast, Gossip, Sync};
use gossip_core::{SignedPacket, Timestamp};

/// A member that holds the cluster key and nothing else here (no member knows it).
const K: usize = 9;

impl Net {
    fn wall(&self) -> u64 {
        WALL_MS + self.now.micros_since(Instant::from_micros(0)) / 1_000
    }

    /// A frame `K` seals with the cluster key and hands straight to `to`, past every server.
    fn key_holder_sends(
        &mut self,
        to: usize,
        signer: &Identity,
        message: Message,
    ) -> Result<NodeId, gossip_core::Refused> {
        let frame = sealed(signer, message, Keyring::new(cluster_key()), self.now);
        let r = self.nodes[to].handle_packet(self.now, udp(K as u8), &frame);
        self.deliver();
        r
    }

    /// `items` as a gossip envelope from `K`, handed straight to `to`.
    fn key_holder_gossips(&mut self, to: usize, items: Vec<SignedPacket>) {
        let _ = self.key_holder_sends(to, &identity(K), Gossip { items }.into());
    }

    /// `items` as push-pull states (no replay window: ordered by their own versions).
    fn key_holder_syncs(&mut self, to: usize, items: Vec<SignedPacket>) {
        let sync = Sync {
            phase: gossip_core::message::sync_phase::CLOSE,
            digest: Vec::new(),
            states: items,
        };
        let _ = self.key_holder_sends(to, &identity(K), sync.into());
    }
}

/// `message` signed by `signer` with the id it would have had at `wall_ms`.
fn signed_at(signer: &Identity, message: Message, wall_ms: u64, logical: u16) -> SignedPacket {
    let codec = Codec::new(
        signer.clone(),
        Keyring::new(cluster_key()),
        Limits::default(),
        ReplayConfig::default(),
    );
    codec
        .sign(Timestamp::new(wall_ms, logical), &message)
        .unwrap()
}

fn admission(member: NodeId, expires: u64, name: &str) -> Message {
    Admission {
        member,
        expires,
        name: name.into(),
        topics: None,
        state: false,
    }
    .into()
}

#[test]
fn every_member_holds_the_servers_signed_admission_and_renewals_keep_a_connected_member() {
    let mut net = Net::new(tab_grant());
    net.run(3_000);
    let (s, p) = (net.ids[S], net.ids[P]);
    let (issuer, first) = net.nodes[M]
        .admission_of(&p)
        .expect("M holds P's admission");
    assert_eq!(issuer, s);
    assert!(first > net.wall() && first <= net.wall() + ADMISSION_TTL_MS);
    // Full members have none.
    assert_eq!(net.nodes[M].admission_of(&s), None);
    // Three lifetimes later P is still alive everywhere: its server renewed it.
    net.run(3 * ADMISSION_TTL_MS);
    let (_, later) = net.nodes[M].admission_of(&p).unwrap();
    assert!(later > first + 2 * ADMISSION_TTL_MS, "{later} vs {first}");
    for at in [S, M, Q] {
        assert_eq!(net.state(at, P), Some(State::Alive), "{at} sees P");
    }
    assert_eq!(net.drops(M, DropReason::NotAdmitted), 0);
    assert_eq!(net.drops(M, DropReason::AdmissionTooSoon), 0);
}

#[test]
fn an_expired_admission_is_honoured_everywhere() {
    // The grant's lifetime caps the admission: nobody renews it past that.
    let lifetime = std::time::Duration::from_secs(5);
    let mut net = Net::new(tab_grant().with_lifetime(lifetime));
    net.run(3_000);
    assert_eq!(net.state(M, P), Some(State::Alive));
    let (_, expires) = net.nodes[M].admission_of(&net.ids[P]).unwrap();
    assert_eq!(expires, WALL_MS + 5_000);
    // Within a tick of the expiry, without any message about it, at every full member; the
    // tabs hear it from their servers.
    net.run(3_100);
    for at in [S, M] {
        assert_eq!(net.state(at, P), Some(State::Left), "{at} sees P");
    }
    assert!(net.state(Q, P).is_some_and(State::is_down), "Q sees P");
    // What P says from now on is refused everywhere, even when a key holder hands it over.
    let hello = Broadcast {
        topic: "chat".into(),
        data: b"still here".to_vec().into(),
    };
    let r = net.key_holder_sends(M, &identity(P), hello.into());
    assert_eq!(r.unwrap_err().reason, DropReason::NotAdmitted);
    let alive = Alive {
        incarnation: WALL_MS + 60_000,
        addrs: vec![Address::Relayed(net.ids[S])],
        name: "tab-1".into(),
    };
    let r = net.key_holder_sends(M, &identity(P), alive.into());
    assert_eq!(r.unwrap_err().reason, DropReason::NotAdmitted);
    assert_eq!(net.state(M, P), Some(State::Left));
    assert_eq!(net.state(M, S), Some(State::Alive));
}

#[test]
fn a_servers_members_leave_with_it() {
    let mut net = Net::new(tab_grant());
    net.run(3_000);
    assert_eq!(net.state(M, P), Some(State::Alive));
    net.nodes[S].leave(net.now);
    net.run(500);
    assert_eq!(net.state(M, S), Some(State::Left));
    assert_eq!(net.state(M, P), Some(State::Left), "P left with its server");
    assert!(net.state(Q, P).is_some_and(State::is_down));
    // An admission signed with the departed server's key is refused, and P stays left.
    let late = signed_at(
        &identity(S),
        admission(net.ids[P], net.wall() + 30_000, "tab-"),
        net.wall(),
        1,
    );
    let before = net.drops(M, DropReason::AdmissionRefused);
    net.key_holder_gossips(M, vec![late]);
    assert_eq!(net.drops(M, DropReason::AdmissionRefused), before + 1);
    assert_eq!(net.state(M, P), Some(State::Left));
}

#[test]
fn forged_and_overreaching_admissions_are_refused_and_counted() {
    let mut net = Net::new(tab_grant());
    net.run(3_000);
    let (s, m, p, q) = (net.ids[S], net.ids[M], net.ids[P], net.ids[Q]);
    let refused = |net: &Net, at: usize| net.drops(at, DropReason::AdmissionRefused);
    let far = net.wall() + 30_000;

    // An admitted member admits a newcomer, or itself with any name: at its server's door...
    let newcomer = identity(11).id();
    let link_key = handshake();
    assert_eq!(
        net.say_as_p(&identity(P), admission(newcomer, far, ""), &link_key),
        1
    );
    // ... and everywhere else, when a key holder hands it over: an admitted member may not.
    let before = net.drops(M, DropReason::Forbidden);
    for (logical, item) in [
        (2, admission(newcomer, far, "")),
        (3, admission(p, far, "")),
    ] {
        let packet = signed_at(&identity(P), item, net.wall(), logical);
        net.key_holder_gossips(M, vec![packet]);
    }
    assert_eq!(
        net.drops(M, DropReason::Forbidden),
        before + 2,
        "issued by an admitted member"
    );
    // A key holder nobody knows admits someone.
    let before = refused(&net, M);
    let _ = net.key_holder_sends(M, &identity(K), admission(newcomer, far, ""));
    assert_eq!(refused(&net, M), before + 1, "issued by a stranger");
    // A full member admits itself, or claims an expiry past the bound.
    let before = refused(&net, S);
    let _ = net.key_holder_sends(S, &identity(M), admission(m, far, ""));
    let forever = net.wall() + MAX_ADMISSION_MS + 1;
    let _ = net.key_holder_sends(S, &identity(M), admission(newcomer, forever, ""));
    assert_eq!(refused(&net, S), before + 2, "self and too long");
    // A full member tries to demote another full member by admitting it.
    let before = refused(&net, M);
    let _ = net.key_holder_sends(M, &identity(S), admission(m, far, "x-"));
    assert_eq!(
        refused(&net, M),
        before + 1,
        "a full member cannot be admitted"
    );
    assert_eq!(net.nodes[M].admission_of(&m), None);
    // A changed byte in a genuine admission breaks its signature.
    let mut bytes = signed_at(&identity(S), admission(p, far, ""), net.wall(), 4)
        .as_bytes()
        .to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let before = net.drops(M, DropReason::Unauthenticated);
    net.key_holder_gossips(M, vec![SignedPacket::from_bytes(bytes).unwrap()]);
    assert_eq!(net.drops(M, DropReason::Unauthenticated), before + 1);

    // Nothing changed: P and Q keep their servers' admissions, and everyone is alive.
    assert_eq!(net.nodes[M].admission_of(&p).map(|a| a.0), Some(s));
    assert_eq!(net.nodes[S].admission_of(&q).map(|a| a.0), Some(m));
    assert_eq!(net.nodes[M].admission_of(&newcomer), None);
    net.run(2_000);
    for at in [S, M] {
        for of in [S, M, P, Q] {
            assert_eq!(net.state(at, of), Some(State::Alive), "{at} sees {of}");
        }
    }
}

#[test]
fn an_admitted_member_is_held_to_its_admission_by_every_member() {
    // A key holder (or a server gone wrong) hands P's words straight to M, past S's door: M
    // holds them to the admission S signed.
    let mut net = Net::new(tab_grant());
    net.run(3_000);
    let (s, m) = (net.ids[S], net.ids[M]);
    let p = identity(P);
    let forbidden = |net: &Net| net.drops(M, DropReason::Forbidden);
    let mut tries = 0;
    let mut refuse = |net: &mut Net, message: Message, what: &str| {
        let before = forbidden(net);
        let r = net.key_holder_sends(M, &p, message);
        assert_eq!(r.unwrap_err().reason, DropReason::Forbidden, "{what}");
        assert_eq!(forbidden(net), before + 1, "{what}");
        tries += 1;
    };
    let alive = |name: &str, addrs: Vec<Address>| -> Message {
        Alive {
            incarnation: WALL_MS + 20_000,
            addrs,
            name: name.into(),
        }
        .into()
    };
    refuse(
        &mut net,
        alive("server-9", vec![Address::Relayed(s)]),
        "another prefix",
    );
    refuse(
        &mut net,
        alive("tab-1", vec![udp(9)]),
        "an address of its own",
    );
    refuse(
        &mut net,
        alive("tab-1", vec![Address::Relayed(m)]),
        "another relay",
    );
    let admin = Broadcast {
        topic: "admin".into(),
        data: b"x".to_vec().into(),
    };
    refuse(&mut net, admin.into(), "topic");
    let dead = Dead {
        node: s,
        incarnation: net.nodes[M].member(&s).unwrap().incarnation,
    };
    refuse(&mut net, dead.into(), "accusation");
    let relay = Relay {
        to: net.ids[Q],
        frame: vec![1, 2, 3].into(),
    };
    refuse(&mut net, relay.into(), "relay");
    let direct = gossip_core::message::Direct {
        to: m,
        topic: "admin".into(),
        data: b"x".to_vec().into(),
    };
    refuse(&mut net, direct.into(), "message topic");
    assert_eq!(tries, 7);
    // What the admission allows still passes.
    let chat = Broadcast {
        topic: "chat".into(),
        data: b"ok".to_vec().into(),
    };
    assert!(net.key_holder_sends(M, &p, chat.into()).is_ok());
    net.run(3_000);
    for of in [S, M, P] {
        assert_eq!(net.state(M, of), Some(State::Alive), "M sees {of}");
    }
    assert_eq!(net.nodes[M].member(&net.ids[P]).unwrap().name, "tab-1");
}

#[test]
fn an_old_admission_replayed_after_a_revocation_changes_nothing() {
    let mut net = Net::new(tab_grant());
    let start = net.wall();
    net.run(3_000);
    let p = net.ids[P];
    // An admission S signed early on, as a key holder may have kept it.
    let old = signed_at(
        &identity(S),
        admission(p, start + 50_000, "tab-"),
        start + 500,
        1,
    );
    assert!(net.nodes[S].revoke(net.now, &p));
    net.run(300);
    assert_eq!(net.state(M, P), Some(State::Left));
    // Replayed as gossip and as push-pull state: older than the revocation, so ignored.
    net.key_holder_gossips(M, vec![old.clone()]);
    net.key_holder_syncs(M, vec![old]);
    net.run(1_000);
    assert_eq!(net.nodes[M].admission_of(&p), Some((net.ids[S], 0)));
    assert_eq!(net.state(M, P), Some(State::Left));
}

#[test]
fn a_flood_of_renewals_is_refused_and_not_passed_on() {
    let mut net = Net::new(tab_grant());
    net.run(3_000);
    let p = net.ids[P];
    let (_, held) = net.nodes[M].admission_of(&p).unwrap();
    let pending = net.nodes[M].pending_updates();
    // S's key (a server gone wrong) signs 100 renewals a millisecond apart.
    let wall = net.wall();
    let flood: Vec<SignedPacket> = (0..100u16)
        .map(|i| {
            let expires = wall + 30_000 + u64::from(i);
            signed_at(
                &identity(S),
                admission(p, expires, "tab-"),
                wall + u64::from(i),
                1,
            )
        })
        .collect();
    let before = net.drops(M, DropReason::AdmissionTooSoon);
    net.key_holder_gossips(M, flood);
    // The first replaces the held one (S's last renewal is seconds old); the other 99 are too
    // soon after it, refused and never queued to spread.
    assert_eq!(net.drops(M, DropReason::AdmissionTooSoon), before + 99);
    let (_, now_held) = net.nodes[M].admission_of(&p).unwrap();
    assert_eq!(now_held, wall + 30_000);
    assert_ne!(now_held, held);
    assert!(net.nodes[M].pending_updates() <= pending + 1);
    // The tab cannot ask for renewals either: its admissions are refused at its server's door,
    // and the rest of a flood is cut at its rate.
    assert_eq!(net.state(M, P), Some(State::Alive));
}

// ----- replicated state of an admitted member ------------------------------------------------

use gossip_core::message::MembershipMessage;
use gossip_core::state::messages::{StateBatch, StateEntry, StateSync, batch_flags};

/// `P`'s write of `key`, signed by `P` as its own node would sign it.
fn p_entry(net: &Net, version: u64, key: &str, value: &[u8]) -> SignedPacket {
    let entry = StateEntry {
        life: net.nodes[P].state_life(),
        version,
        key: key.into(),
        value: Some(value.to_vec().into()),
    };
    signed_at(&identity(P), entry.into(), net.wall(), 900 + version as u16)
}

/// A state sync from `P` to `S` whose one batch carries `P`'s `entries`: the path that bypasses
/// the update frames (and their admission check).
fn p_state_sync(net: &Net, entries: Vec<SignedPacket>) -> Message {
    let through = entries.len() as u64;
    let sync = StateSync {
        phase: gossip_core::message::sync_phase::OPEN,
        digest: Vec::new(),
        batches: vec![StateBatch {
            owner: net.ids[P],
            life: net.nodes[P].state_life(),
            from: 0,
            through,
            flags: batch_flags::DONE,
            entries,
        }],
    };
    Message::Membership(MembershipMessage::StateSync(sync))
}

/// A frame `P` signs with an id its own node never uses (logical `0xF000 + n`: `sealed` counts
/// from 1, as `P`'s clock does, so their ids could meet and the copy be dropped as a replay),
/// sealed with its link key and handed to `S`; returns how many frames `S` refused as forbidden
/// meanwhile.
fn say_as_p_once(net: &mut Net, message: Message, n: u16) -> u64 {
    let codec = Codec::new(
        identity(P),
        Keyring::new(handshake()),
        Limits::default(),
        ReplayConfig::default(),
    );
    let id = Timestamp::new(net.wall(), 0xF000 + n);
    let packet = codec.sign(id, &message).unwrap();
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed([n as u8; 32]);
    let frame = codec.seal(&mut rng, 0, &packet).unwrap();
    let before = net.drops(S, DropReason::Forbidden);
    let _ = net.nodes[S].handle_packet(net.now, p_link(), &frame);
    net.deliver();
    net.drops(S, DropReason::Forbidden) - before
}

#[test]
fn an_admitted_members_state_is_refused_without_the_grant_by_gossip_and_by_sync() {
    let mut net = Net::new(tab_grant());
    net.run(3_000);
    let p = net.ids[P];
    // Its own node writes (gossip, then the state rounds' syncs for 10 s).
    let now = net.now;
    net.nodes[P]
        .state_set(now, "cart", b"3 apples".to_vec())
        .unwrap();
    net.run(10_000);
    for at in [S, M, Q] {
        assert_eq!(net.nodes[at].state_get(&p, "cart"), None, "node {at}");
    }
    let refused = net.drops(S, DropReason::Forbidden);
    assert!(refused > 0, "S counts the refused writes");
    // The regression: a batch of its own entries in a state sync, which no update frame carries.
    let entries = vec![p_entry(&net, 1, "sneaky", b"x")];
    let sync = p_state_sync(&net, entries);
    let forbidden = say_as_p_once(&mut net, sync, 1);
    // Refused (and again if S's answer makes P's own node send its map back).
    assert!(forbidden >= 1, "the sync's batch is refused and counted");
    net.run(2_000);
    for at in [S, M, Q] {
        assert_eq!(net.nodes[at].state_get(&p, "sneaky"), None, "node {at}");
        assert_eq!(net.nodes[at].state_entries(&p), Vec::new(), "node {at}");
    }
    // Refused words cost it nothing else: it stays a member everywhere.
    for at in [S, M, Q] {
        assert_eq!(net.state(at, P), Some(State::Alive), "node {at}");
    }
}

#[test]
fn an_admitted_member_granted_state_writes_its_own_keys_and_every_member_checks_it() {
    let mut net = Net::new(tab_grant().with_state(true));
    net.run(3_000);
    let (p, q) = (net.ids[P], net.ids[Q]);
    let now = net.now;
    net.nodes[P]
        .state_set(now, "cart", b"3 apples".to_vec())
        .unwrap();
    net.nodes[Q]
        .state_set(now, "cart", b"pears".to_vec())
        .unwrap();
    net.run(5_000);
    // M holds P's write on the word of the admission S signed (state allowed), and S holds Q's
    // on M's; each tab reads the other's through its server.
    for at in [S, M, Q] {
        let got = net.nodes[at].state_get(&p, "cart").map(|v| v.value);
        assert_eq!(got.as_deref(), Some(&b"3 apples"[..]), "node {at}");
    }
    for at in [S, M, P] {
        let got = net.nodes[at].state_get(&q, "cart").map(|v| v.value);
        assert_eq!(got.as_deref(), Some(&b"pears"[..]), "node {at}");
    }
    // A delete travels the same way.
    let now = net.now;
    assert!(net.nodes[P].state_delete(now, "cart").unwrap().is_some());
    net.run(3_000);
    for at in [S, M, Q] {
        assert_eq!(net.nodes[at].state_get(&p, "cart"), None, "node {at}");
    }
    // Still only its own keys: an entry of M's map signed by P is refused as forged, as from any
    // member.
    let forged = {
        let entry = StateEntry {
            life: net.nodes[M].state_life(),
            version: 99,
            key: "cart".into(),
            value: Some(b"mine".to_vec().into()),
        };
        signed_at(&identity(P), entry.into(), net.wall(), 77)
    };
    let before = net.drops(S, DropReason::StateForged);
    let sync = StateSync {
        phase: gossip_core::message::sync_phase::OPEN,
        digest: Vec::new(),
        batches: vec![StateBatch {
            owner: net.ids[M],
            life: net.nodes[M].state_life(),
            from: 0,
            through: 99,
            flags: batch_flags::DONE,
            entries: vec![forged],
        }],
    };
    say_as_p_once(
        &mut net,
        Message::Membership(MembershipMessage::StateSync(sync)),
        2,
    );
    assert_eq!(
        net.drops(S, DropReason::StateForged),
        before + 1,
        "{:?}",
        net.nodes[S].stats().drops
    );
    assert_eq!(net.nodes[S].state_get(&net.ids[M], "cart"), None);
}

/// `message` signed by `P` with an id its own node never uses (as [`say_as_p_once`]) and sealed
/// with its link key: the inner frame of a relay `P` asks `S` to carry.
fn p_sealed_once(net: &Net, message: Message, n: u16) -> Vec<u8> {
    let codec = Codec::new(
        identity(P),
        Keyring::new(handshake()),
        Limits::default(),
        ReplayConfig::default(),
    );
    let packet = codec
        .sign(Timestamp::new(net.wall(), 0xF000 + n), &message)
        .unwrap();
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed([n as u8; 32]);
    codec.seal(&mut rng, 0, &packet).unwrap()
}

#[test]
fn a_relayed_state_sync_carrying_a_map_its_grant_forbids_stops_at_the_server() {
    // A browser build checks no admission (it trusts its server), so a tab's map must not reach
    // another tab in a state sync the server relays: what P's own node sends when a tab opens a
    // state sync with it, carrying its endpoint registration.
    let mut net = Net::new(tab_grant());
    net.run(3_000);
    let (p, q) = (net.ids[P], net.ids[Q]);
    let sync = p_state_sync(&net, vec![p_entry(&net, 1, "endpoint/orders", b"")]);
    let relay = Relay {
        to: q,
        frame: p_sealed_once(&net, sync, 5).into(),
    };
    let q_before = net.drops(Q, DropReason::Forbidden);
    assert_eq!(say_as_p_once(&mut net, relay.into(), 6), 1, "S refuses it");
    net.run(1_000);
    // Q (built with the admission checks here) would refuse it too, and count it: it never came.
    assert_eq!(
        net.drops(Q, DropReason::Forbidden),
        q_before,
        "nothing reached Q"
    );
    assert_eq!(net.nodes[Q].state_get(&p, "endpoint/orders"), None);

    // With the grant, the same relay is carried and Q takes the registration in.
    let mut net = Net::new(tab_grant().with_state(true));
    net.run(3_000);
    let (p, q) = (net.ids[P], net.ids[Q]);
    let sync = p_state_sync(&net, vec![p_entry(&net, 1, "endpoint/orders", b"")]);
    let relay = Relay {
        to: q,
        frame: p_sealed_once(&net, sync, 7).into(),
    };
    assert_eq!(say_as_p_once(&mut net, relay.into(), 8), 0);
    net.run(1_000);
    assert!(net.nodes[Q].state_get(&p, "endpoint/orders").is_some());
}

/// Alive records of `n` identities nobody has heard of (a key holder's mint), each self-signed.
fn minted(n: usize, from: u8) -> Vec<gossip_core::SignedPacket> {
    (0..n)
        .map(|k| {
            let who = Identity::from_secret_bytes([from.wrapping_add(k as u8); 32]);
            let alive = Alive {
                incarnation: 1,
                addrs: vec![udp(100 + k as u8)],
                name: format!("mint-{from}-{k}"),
            };
            signed_at(&who, alive.into(), WALL_MS, 1)
        })
        .collect()
}

#[test]
fn a_tab_takes_all_its_server_delivers_but_caps_any_other_sender() {
    let mut config = Config::local();
    config.max_new_members_per_sender = 4;
    config.max_new_members_per_frame = 6;
    let mut net = Net::with_config(tab_grant(), config);
    net.run(3_000);
    assert_eq!(net.state(P, S), Some(State::Alive));
    let known = |net: &Net| net.nodes[P].members().count();
    let before = known(&net);

    // M, a full member but not P's server, pushes 20 members at P through S's relay (the only
    // way to reach a relayed member): the frame reaches P resealed with its link key, still
    // signed by M, and P holds M to the caps (per frame, then per sender and window).
    let refused_before = net.drops(P, DropReason::TooManyMembers);
    for batch in minted(20, 100).chunks(10) {
        let inner = sealed(
            &identity(M),
            gossip_core::message::Gossip {
                items: batch.to_vec(),
            }
            .into(),
            Keyring::new(cluster_key()),
            net.now,
        );
        let relay = Relay {
            to: net.ids[P],
            frame: inner.into(),
        };
        let outer = sealed(
            &identity(M),
            relay.into(),
            Keyring::new(cluster_key()),
            net.now,
        );
        let _ = net.nodes[S].handle_packet(net.now, udp(M as u8 + 1), &outer);
        net.deliver();
    }
    assert_eq!(
        known(&net),
        before + 4,
        "M introduced only its per-sender share"
    );
    assert_eq!(
        net.drops(P, DropReason::TooManyMembers) - refused_before,
        16
    );

    // The same kind of news from P's own server, S (as its hub delivers it), is all taken: S
    // decides P's view and capped its own intake already.
    let refused_before = net.drops(P, DropReason::TooManyMembers);
    let frame = sealed(
        &identity(S),
        gossip_core::message::Gossip {
            items: minted(20, 200),
        }
        .into(),
        Keyring::new(handshake()),
        net.now,
    );
    let _ = net.nodes[P].handle_packet(net.now, s_url(), &frame);
    assert_eq!(known(&net), before + 4 + 20);
    assert_eq!(net.drops(P, DropReason::TooManyMembers), refused_before);
}
