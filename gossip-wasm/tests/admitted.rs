//! Least privilege of a browser member without the cluster key, in headless Chromium, against
//! a real native cluster (issue 14).
//!
//! Run by `cargo xtask test`, which starts the cluster (`tests/src/bin/wasm-cluster.rs`, whose
//! admission hook admits by the `user` query parameter) and compiles this test with its seeds,
//! key and token (`GOSSIP_WASM_*`).
//!
//! The JavaScript API cannot say anything a member may not, so the hostile tab here is built in
//! Rust from the core's own parts: it opens its WebSocket without the token (the hook admits it),
//! runs the link handshake, and signs and seals with its own identity and the link's key every
//! frame it sends, the forbidden ones included (what a modified page could send). A trusted
//! observer (a full member, as only a trusted client is) asks the servers what they see and
//! count. The keyless tabs an application creates (refused, revoked, expired) are in
//! `admitted.js`.

#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use gossip_core::hlc::Hlc;
use gossip_core::link::Handshake;
use gossip_core::message::{
    Ack, Alive, Broadcast, Dead, Direct, MembershipMessage, Message, PingReq, Relay, Request,
    Suspect, Sync, sync_phase,
};
use gossip_core::{
    Address, ClusterKey, Codec, Identity, Keyring, Limits, NodeId, ReplayConfig, SignedPacket,
};
use gossip_wasm::GossipNode;
use js_sys::{Array, ArrayBuffer, Function, Promise, Uint8Array};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/tests/admitted.js")]
extern "C" {
    #[wasm_bindgen(catch)]
    async fn sleep(ms: u32) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn observer(
        create: &Function,
        seeds: Array,
        key: &str,
        token: &str,
    ) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = nativesJson)]
    fn natives_json(node: &JsValue) -> String;
    #[wasm_bindgen(js_name = allNativesAlive)]
    fn all_natives_alive(node: &JsValue) -> bool;
    #[wasm_bindgen(catch)]
    async fn ctl(
        node: &JsValue,
        op: &str,
        member: &str,
        key: &str,
        value: &str,
    ) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn drops(node: &JsValue, reason: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = chatFrom)]
    fn chat_from(node: &JsValue, from: &str) -> Promise;
    #[wasm_bindgen(catch, js_name = keylessTabs)]
    async fn keyless_tabs(
        create: &Function,
        observer: &JsValue,
        seeds: Array,
    ) -> Result<JsValue, JsValue>;
}

/// The message of a JavaScript error.
fn describe(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|| format!("{e:?}"))
}

/// `ctl`, failing the test with the harness's detail.
async fn ask(obs: &JsValue, op: &str, member: &str, key: &str, value: &str) -> String {
    match ctl(obs, op, member, key, value).await {
        Ok(v) => v.as_string().unwrap_or_default(),
        Err(e) => panic!("{}", describe(e)),
    }
}

/// The drops for `reason` summed over the live servers.
async fn count(obs: &JsValue, reason: &str) -> u64 {
    let n = drops(obs, reason)
        .await
        .unwrap_or_else(|e| panic!("{}", describe(e)));
    n.as_f64().expect("a number") as u64
}

/// Waits until the servers counted `more` drops for `reason` over `base`.
async fn counted(obs: &JsValue, reason: &str, base: u64, more: u64) {
    let want = (base + more).to_string();
    ask(obs, "drops", "", reason, &want).await;
}

fn wall_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// What the hostile tab's socket handler and its test body share.
struct Core {
    ws: WebSocket,
    identity: Identity,
    /// Set once the handshake agreed the link's key.
    codec: Option<Codec>,
    hlc: Hlc,
    rng: ChaCha20Rng,
    handshake: Handshake,
    /// The server the handshake proved.
    server: Option<NodeId>,
    /// Frames the link key opened.
    opened: u32,
    /// Probes it answered.
    acks: u32,
    closed: Option<(u16, String)>,
    errors: Vec<String>,
    /// Frames its link key does not open, and why the last one did not.
    unopened: u32,
    unopened_reason: String,
}

impl Core {
    fn id(&self) -> NodeId {
        self.identity.id()
    }

    fn codec(&self) -> &Codec {
        self.codec.as_ref().expect("linked")
    }

    /// Signs `message` as this tab's own.
    fn packet(&mut self, message: Message) -> SignedPacket {
        let id = self.hlc.now(wall_ms());
        self.codec().sign(id, &message).expect("signs")
    }

    /// Seals a signed packet with the link's key.
    fn seal(&mut self, packet: &SignedPacket) -> Vec<u8> {
        let codec = self.codec.as_ref().expect("linked");
        codec.seal(&mut self.rng, 0, packet).expect("seals")
    }

    fn send_frame(&mut self, frame: &[u8]) {
        if let Err(e) = self.ws.send_with_u8_array(frame) {
            self.errors.push(format!("send: {e:?}"));
        }
    }

    /// Signs, seals and sends `message`.
    fn send(&mut self, message: Message) {
        let packet = self.packet(message);
        let frame = self.seal(&packet);
        self.send_frame(&frame);
    }

    /// A frame from the server: the handshake first, then frames the link key opens. The tab
    /// answers its server's probes, as any member must to stay alive.
    fn on_bytes(&mut self, bytes: &[u8]) {
        if self.codec.is_none() {
            match self.handshake.on_message(&self.identity, bytes) {
                Ok(step) => {
                    if let Some(reply) = step.reply {
                        self.send_frame(&reply);
                    }
                    if let (Some(server), Some(key)) = (step.peer, step.key) {
                        self.link(server, key);
                    }
                }
                Err(e) => self.errors.push(format!("handshake: {e}")),
            }
            return;
        }
        let codec = self.codec.as_mut().expect("linked");
        match codec.decode(bytes, wall_ms()) {
            Ok(inbound) => {
                self.opened += 1;
                let prober = inbound.origin();
                if let Message::Membership(MembershipMessage::Ping(p)) = inbound.message
                    && p.target == self.id()
                {
                    self.acks += 1;
                    let ack = self.packet(
                        Ack {
                            seq: p.seq,
                            piggyback: Vec::new(),
                        }
                        .into(),
                    );
                    let ack = self.seal(&ack);
                    // Its only link is to its server: an answer to anyone else goes through it,
                    // as the browser driver sends it.
                    if Some(prober) == self.server {
                        self.send_frame(&ack);
                    } else {
                        self.send(
                            Relay {
                                to: prober,
                                frame: ack.into(),
                            }
                            .into(),
                        );
                    }
                }
            }
            // Opened with the link key: a copy already read, or a kind a browser build does not
            // decode (replicated state; the browser driver counts those the same way).
            Err(gossip_core::WireError::Replayed(_) | gossip_core::WireError::Incompatible(_)) => {
                self.opened += 1
            }
            // Not sealed with the link key (seen after a revocation, when the server has
            // forgotten the link's key): nothing the tab can read; counted.
            Err(e) => {
                self.unopened += 1;
                self.unopened_reason = e.to_string();
            }
        }
    }

    fn link(&mut self, server: NodeId, key: ClusterKey) {
        self.server = Some(server);
        self.codec = Some(Codec::new(
            self.identity.clone(),
            Keyring::new(key),
            Limits::default(),
            ReplayConfig::default(),
        ));
    }
}

/// A tab that says what it likes, in frames it signs itself.
struct Hostile {
    core: Rc<RefCell<Core>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Hostile {
    /// Connects to `url` without the token and runs the handshake.
    async fn connect(url: &str, seed: u8) -> Hostile {
        let ws = WebSocket::new(url).expect("a WebSocket");
        ws.set_binary_type(BinaryType::Arraybuffer);
        let mut nonce = [0u8; 32];
        let fresh = (js_sys::Math::random() * 2f64.powi(52)) as u64 ^ wall_ms();
        nonce[..8].copy_from_slice(&fresh.to_le_bytes());
        nonce[8] = seed;
        let core = Rc::new(RefCell::new(Core {
            ws: ws.clone(),
            identity: Identity::from_secret_bytes([seed; 32]),
            codec: None,
            hlc: Hlc::new(60_000),
            rng: ChaCha20Rng::from_seed(nonce),
            handshake: Handshake::dial(nonce, None),
            server: None,
            opened: 0,
            acks: 0,
            closed: None,
            errors: Vec::new(),
            unopened: 0,
            unopened_reason: String::new(),
        }));
        let c = core.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            if let Some(buf) = ev.data().dyn_ref::<ArrayBuffer>() {
                c.borrow_mut().on_bytes(&Uint8Array::new(buf).to_vec());
            }
        });
        let c = core.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
            c.borrow_mut().closed = Some((ev.code(), ev.reason()));
        });
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        let hostile = Hostile {
            core,
            _on_message: on_message,
            _on_close: on_close,
        };
        hostile.until("the handshake", |c| c.codec.is_some()).await;
        hostile
    }

    fn with<T>(&self, f: impl FnOnce(&mut Core) -> T) -> T {
        f(&mut self.core.borrow_mut())
    }

    /// Waits (20 ms steps, 30 s at most) until `cond` holds; fails on any error of the link.
    async fn until(&self, what: &str, cond: impl Fn(&Core) -> bool) {
        let deadline = wall_ms() + 30_000;
        loop {
            {
                let c = self.core.borrow();
                assert!(c.errors.is_empty(), "{what}: {:?}", c.errors);
                if cond(&c) {
                    return;
                }
                assert!(wall_ms() < deadline, "timed out waiting: {what}");
            }
            let _ = sleep(20).await;
        }
    }

    /// Announces itself as `name`, reachable through its server (what its join says).
    fn alive(&self, name: &str, incarnation: u64) -> SignedPacket {
        self.with(|c| {
            let server = c.server.expect("linked");
            c.packet(
                Alive {
                    incarnation,
                    addrs: vec![Address::Relayed(server)],
                    name: name.into(),
                }
                .into(),
            )
        })
    }
}

#[wasm_bindgen_test]
async fn an_admitted_tab_may_only_speak_for_itself() {
    let (Some(seeds), Some(key), Some(token)) = (
        option_env!("GOSSIP_WASM_SEEDS"),
        option_env!("GOSSIP_WASM_KEY"),
        option_env!("GOSSIP_WASM_TOKEN"),
    ) else {
        panic!("run through `cargo xtask test`, which starts the native cluster");
    };
    let create = Closure::<dyn Fn(JsValue) -> JsValue>::new(|options: JsValue| {
        GossipNode::create(options.unchecked_into()).into()
    });
    let create: &Function = create.as_ref().unchecked_ref();
    let seed_list: Vec<&str> = seeds.split(',').collect();
    let to_array = || {
        seed_list
            .iter()
            .map(|s| JsValue::from(*s))
            .collect::<Array>()
    };
    let obs = observer(create, to_array(), key, token)
        .await
        .unwrap_or_else(|e| panic!("the observer joins: {}", describe(e)));
    let natives: Vec<(String, NodeId, u64)> = {
        let parsed = js_sys::JSON::parse(&natives_json(&obs)).expect("JSON");
        Array::from(&parsed)
            .iter()
            .map(|n| {
                let get = |k: &str| js_sys::Reflect::get(&n, &k.into()).expect(k);
                let name = get("name").as_string().expect("name");
                let id = get("id").as_string().expect("id").parse().expect("an id");
                (name, id, get("incarnation").as_f64().unwrap_or(0.0) as u64)
            })
            .collect()
    };
    assert_eq!(natives.len(), 3, "{natives:?}");

    // The hostile tab: admitted by the hook (no token, no key), joined as `tab-hostile`.
    let tab = Hostile::connect(&format!("{}?user=hostile1", seed_list[0]), 61).await;
    let (me, server) = tab.with(|c| (c.id(), c.server.expect("linked")));
    let other = natives
        .iter()
        .find(|n| n.1 != server)
        .expect("another server");
    let own = natives.iter().find(|n| n.1 == server).expect("its server");
    let join = tab.with(|c| {
        let alive = c.packet(
            Alive {
                incarnation: wall_ms(),
                addrs: vec![Address::Relayed(server)],
                name: "tab-hostile".into(),
            }
            .into(),
        );
        let sync = c.packet(
            Sync {
                phase: sync_phase::JOIN,
                digest: Vec::new(),
                states: vec![alive],
            }
            .into(),
        );
        c.seal(&sync)
    });
    tab.with(|c| c.send_frame(&join));
    let me_s = me.to_string();
    ask(&obs, "state", &me_s, "", "alive").await;
    ask(&obs, "admitted", &me_s, "", &server.to_string()).await;
    tab.until("its server probes it and it answers", |c| c.acks >= 1)
        .await;
    // What it may do works: its broadcast on its topic reaches the observer.
    let heard = chat_from(&obs, &me_s);
    tab.with(|c| {
        c.send(
            Broadcast {
                topic: "chat".into(),
                data: b"hello from a keyless tab".to_vec().into(),
            }
            .into(),
        )
    });
    let text = JsFuture::from(heard)
        .await
        .unwrap_or_else(|e| panic!("{}", describe(e)));
    assert_eq!(
        text.as_string().as_deref(),
        Some("hello from a keyless tab")
    );

    // 1. Accuse a server: suspect another, declare its own dead. Refused and counted.
    let forbidden = count(&obs, "forbidden").await;
    tab.with(|c| {
        c.send(
            Suspect {
                node: other.1,
                incarnation: other.2,
            }
            .into(),
        );
        c.send(
            Dead {
                node: other.1,
                incarnation: other.2,
            }
            .into(),
        );
        c.send(
            Dead {
                node: own.1,
                incarnation: own.2,
            }
            .into(),
        );
        // Nor may it make a server probe others on its word (an indirect probe).
        c.send(
            PingReq {
                seq: 1,
                target: other.1,
                addrs: Vec::new(),
            }
            .into(),
        );
    });
    counted(&obs, "forbidden", forbidden, 4).await;

    // 2. Take a server's name (and an address of its own): refused; every server still knows
    //    one member of that name, the server itself, and the tab by its own name.
    let forbidden = count(&obs, "forbidden").await;
    let squat = tab.alive(&other.0, wall_ms() + 1);
    let dialable = tab.with(|c| {
        c.packet(
            Alive {
                incarnation: wall_ms() + 2,
                addrs: vec![Address::Udp("127.0.0.1:9".parse().expect("an address"))],
                name: "tab-hostile".into(),
            }
            .into(),
        )
    });
    tab.with(|c| {
        for p in [&squat, &dialable] {
            let frame = c.seal(p);
            c.send_frame(&frame);
        }
    });
    counted(&obs, "forbidden", forbidden, 2).await;
    ask(&obs, "named", &other.1.to_string(), &other.0, "").await;
    ask(&obs, "named", &me_s, "tab-hostile", "").await;

    // 3. Relay: another member's frame (a puppet identity it holds) to another server, and a
    //    relay inside a relay. Refused and counted.
    let forged = count(&obs, "relay_forged").await;
    let forbidden = count(&obs, "forbidden").await;
    tab.with(|c| {
        let puppet = Codec::new(
            Identity::from_secret_bytes([62; 32]),
            Keyring::new(ClusterKey::from_bytes([0; 32])),
            Limits::default(),
            ReplayConfig::default(),
        );
        let words = Broadcast {
            topic: "chat".into(),
            data: b"not mine".to_vec().into(),
        };
        let puppet_packet = puppet
            .sign(c.hlc.now(wall_ms()), &words.into())
            .expect("signs");
        // Sealed with the link key, as its server expects relayed frames.
        let inner = c.seal(&puppet_packet);
        c.send(
            Relay {
                to: other.1,
                frame: inner.into(),
            }
            .into(),
        );
        let own_frame = {
            let p = c.packet(
                Broadcast {
                    topic: "chat".into(),
                    data: b"wrapped twice".to_vec().into(),
                }
                .into(),
            );
            c.seal(&p)
        };
        let nested = c.packet(
            Relay {
                to: other.1,
                frame: own_frame.into(),
            }
            .into(),
        );
        let nested = c.seal(&nested);
        c.send(
            Relay {
                to: other.1,
                frame: nested.into(),
            }
            .into(),
        );
    });
    counted(&obs, "relay_forged", forged, 1).await;
    counted(&obs, "forbidden", forbidden, 1).await;

    // 4. Publish outside its topics: a broadcast, a message to its server, a request relayed to
    //    another server. Refused and counted.
    let forbidden = count(&obs, "forbidden").await;
    tab.with(|c| {
        c.send(
            Broadcast {
                topic: "admin".into(),
                data: b"rm -rf".to_vec().into(),
            }
            .into(),
        );
        c.send(
            Direct {
                to: server,
                topic: "admin".into(),
                data: b"rm -rf".to_vec().into(),
            }
            .into(),
        );
        let request = c.packet(
            Request {
                req: 1,
                to: other.1,
                topic: "ctl".into(),
                data: Vec::<u8>::new().into(),
            }
            .into(),
        );
        let request = c.seal(&request);
        c.send(
            Relay {
                to: other.1,
                frame: request.into(),
            }
            .into(),
        );
    });
    counted(&obs, "forbidden", forbidden, 3).await;

    // 5. Exceed its rate (20 frames a second, 40 at once): the excess is dropped and counted
    //    before anything is decrypted, and the link stays up.
    let limited = count(&obs, "rate_limited").await;
    tab.with(|c| {
        for i in 0..200u32 {
            c.send(
                Direct {
                    to: server,
                    topic: "chat".into(),
                    data: i.to_be_bytes().to_vec().into(),
                }
                .into(),
            );
        }
    });
    counted(&obs, "rate_limited", limited, 100).await;
    let acks = tab.with(|c| c.acks);
    tab.until("the link stays up: it is still probed", |c| {
        c.acks > acks && c.closed.is_none()
    })
    .await;

    // The cluster is unaffected: every server alive in every server's view and in the
    // observer's, each name still its own.
    for (name, id, _) in &natives {
        let id = id.to_string();
        ask(&obs, "state", &id, "", "alive").await;
        ask(&obs, "named", &id, name, "").await;
    }
    assert!(all_natives_alive(&obs), "{}", natives_json(&obs));

    // Revoked: its link is closed with the code the JS API maps to NOT_ADMITTED, and every
    // server sees it left.
    ask(&obs, "revoke", &me_s, "hostile1", "").await;
    tab.until("its server closes the link", |c| c.closed.is_some())
        .await;
    let (code, reason, unopened, why) = tab.with(|c| {
        let (code, reason) = c.closed.clone().expect("closed");
        (code, reason, c.unopened, c.unopened_reason.clone())
    });
    assert_eq!(
        code, 4406,
        "{reason} ({unopened} frames not sealed with the link key: {why})"
    );
    ask(&obs, "state", &me_s, "", "left").await;

    // The keyless tabs an application makes: refused, revoked, expired.
    match keyless_tabs(create, &obs, to_array()).await {
        Ok(v) => assert_eq!(v.as_string().as_deref(), Some("ok")),
        Err(e) => panic!("keyless tabs: {}", describe(e)),
    }
    assert!(all_natives_alive(&obs), "{}", natives_json(&obs));
}
