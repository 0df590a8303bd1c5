//! The driver: owns one core node, its WebSocket to a server, one timer, and the JavaScript
//! promises and listeners waiting on it.
//!
//! Everything runs on the page's single thread. The state sits in an `Rc<RefCell<State>>`;
//! every entry point (a socket event, the timer, a method call from JavaScript) borrows it
//! through [`with`], which collects what must reach JavaScript (events, promise settlements,
//! stream chunks) as [`Delivery`] values and hands them over only after the borrow ended. So no
//! JavaScript code ever runs while the node is borrowed, and a listener may call the node.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use gossip_core::groups::GroupId;
use gossip_core::link::route::{self, DialBudget, Links, Route};
use gossip_core::link::{
    CloseCode, Decision, Outbox, Session, SessionConfig, handshake::Dialer, is_handshake, relay,
};
use gossip_core::streams::{StreamKey, StreamOutput, close_code};
use gossip_core::{
    Address, Event, FailReason, Identity, Instant, Keyring, Node, NodeId, RequestId, Transmit,
};
use js_sys::{ArrayBuffer, Function, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BinaryType, CloseEvent, MessageEvent, ReadableStreamDefaultController, WebSocket};

use crate::api::{GossipNode, GossipStream, Message, MessageKind};
use crate::error::{ClusterError, GossipError, JoinError, UsageError};
use crate::js::{self, clear_timeout, console_error, set_timeout, to_js_error};
use crate::small_map::SmallMap;

pub(crate) type Shared = Rc<RefCell<State>>;

/// Bytes the browser may hold unsent on the socket before frames are dropped: the core
/// retransmits membership state, and streams are bounded by their windows, so dropping is safe
/// while an unbounded socket buffer is not.
const MAX_SOCKET_BUFFER: usize = 8 * 1024 * 1024;
/// Largest chunk handed to a `ReadableStream` at once.
const READ_CHUNK: usize = 64 * 1024;
/// How long `leave()` waits for the socket to flush the leave announcement.
const LEAVE_FLUSH_MS: u64 = 2_000;
/// Poll interval while waiting for that flush.
const LEAVE_POLL_MS: u64 = 20;
/// Longest pause between reconnection rounds.
const MAX_BACKOFF_MS: u64 = 5_000;

/// The event names `on()` accepts.
pub(crate) const NODE_EVENTS: &[&str] = &[
    "memberJoined",
    "memberAlive",
    "memberSuspect",
    "memberDead",
    "memberLeft",
    "metadata",
    "message",
    "request",
    "stream",
    "group",
    "connected",
    "disconnected",
    #[cfg(feature = "state")]
    "state",
    #[cfg(feature = "state")]
    "stateCleared",
];

/// A promise's settling functions.
pub(crate) struct Deferred {
    resolve: Function,
    reject: Function,
}

impl Deferred {
    /// A pending promise and the functions that settle it.
    pub(crate) fn new() -> (Promise, Deferred) {
        let mut slot = None;
        let promise =
            Promise::new(&mut |resolve, reject| slot = Some(Deferred { resolve, reject }));
        // The Promise constructor runs its executor synchronously, so the slot is filled.
        let deferred = slot.unwrap_or_else(|| Deferred {
            resolve: Function::new_no_args(""),
            reject: Function::new_no_args(""),
        });
        (promise, deferred)
    }
}

/// Something to hand to JavaScript once the node is no longer borrowed.
pub(crate) enum Delivery {
    Emit(&'static str, JsValue),
    EmitGroup(GroupId, &'static str, JsValue),
    Resolve(Deferred, JsValue),
    Reject(Deferred, GossipError),
    /// `GossipNode.create` completed: resolve with the node.
    Joined(Deferred),
    Enqueue(ReadableStreamDefaultController, Vec<u8>),
    /// End a readable stream: cleanly, or with an error.
    EndReadable(ReadableStreamDefaultController, Option<GossipError>),
}

/// Borrows the state, runs `f`, drains the node, then delivers to JavaScript.
pub(crate) fn with<R>(
    shared: &Shared,
    f: impl FnOnce(&mut State, &mut Vec<Delivery>) -> R,
) -> Result<R, GossipError> {
    let mut out = Vec::new();
    let r = {
        let Ok(mut s) = shared.try_borrow_mut() else {
            return Err(UsageError::Busy.into());
        };
        let r = f(&mut s, &mut out);
        s.flush(&mut out);
        r
    };
    deliver(shared, out);
    Ok(r)
}

fn call(f: &Function, arg: &JsValue) {
    if let Err(e) = f.call1(&JsValue::UNDEFINED, arg) {
        // A throwing listener must not stop the others or the driver.
        console_error("gossip-wasm: a listener threw", &e);
    }
}

fn listeners_of(shared: &Shared, group: Option<GroupId>, name: &str) -> Vec<Function> {
    let Ok(s) = shared.try_borrow() else {
        return Vec::new();
    };
    let set = match group {
        None => Some(&s.listeners),
        Some(g) => s.group_listeners.get(&g),
    };
    set.and_then(|l| l.get(name)).cloned().unwrap_or_default()
}

pub(crate) fn deliver(shared: &Shared, out: Vec<Delivery>) {
    for d in out {
        match d {
            Delivery::Emit(name, v) => {
                for f in listeners_of(shared, None, name) {
                    call(&f, &v);
                }
            }
            Delivery::EmitGroup(g, name, v) => {
                for f in listeners_of(shared, Some(g), name) {
                    call(&f, &v);
                }
            }
            Delivery::Resolve(d, v) => call(&d.resolve, &v),
            Delivery::Reject(d, e) => call(&d.reject, &to_js_error(&e)),
            Delivery::Joined(d) => {
                let node = GossipNode::wrap(shared.clone());
                call(&d.resolve, &node.into());
            }
            Delivery::Enqueue(ctrl, bytes) => {
                let chunk = Uint8Array::from(bytes.as_slice());
                // Throws only if the stream was closed or errored meanwhile: nothing to do.
                let _ = ctrl.enqueue_with_chunk(&chunk);
            }
            Delivery::EndReadable(ctrl, None) => {
                let _ = ctrl.close();
            }
            Delivery::EndReadable(ctrl, Some(e)) => ctrl.error_with_e(&to_js_error(&e)),
        }
    }
}

/// Listeners by event name. A short list searched in turn: `on()` accepts a dozen names, and a
/// map type would bring its own code into the browser build for them (docs/DESIGN.md, "Wasm
/// size").
#[derive(Debug, Default)]
pub(crate) struct Listeners(Vec<(String, Vec<Function>)>);

impl Listeners {
    pub(crate) fn get(&self, event: &str) -> Option<&Vec<Function>> {
        self.0.iter().find(|(e, _)| e == event).map(|(_, l)| l)
    }

    pub(crate) fn get_mut(&mut self, event: &str) -> Option<&mut Vec<Function>> {
        self.0.iter_mut().find(|(e, _)| e == event).map(|(_, l)| l)
    }

    /// Adds `f` to `event`'s listeners; the caller checked `event` against the accepted names.
    pub(crate) fn add(&mut self, event: &str, f: Function) {
        match self.get_mut(event) {
            Some(l) => l.push(f),
            None => self.0.push((event.to_owned(), vec![f])),
        }
    }
}

/// The listeners of each tracked group, as a short list for the same reason (the core caps
/// the number of groups).
#[derive(Debug, Default)]
pub(crate) struct GroupListeners(Vec<(GroupId, Listeners)>);

impl GroupListeners {
    pub(crate) fn get(&self, group: &GroupId) -> Option<&Listeners> {
        self.0.iter().find(|(g, _)| g == group).map(|(_, l)| l)
    }

    pub(crate) fn get_mut(&mut self, group: &GroupId) -> Option<&mut Listeners> {
        self.0.iter_mut().find(|(g, _)| g == group).map(|(_, l)| l)
    }

    /// Starts tracking `group` with no listeners (keeps those it has).
    pub(crate) fn track(&mut self, group: GroupId) {
        if self.get(&group).is_none() {
            self.0.push((group, Listeners::default()));
        }
    }

    pub(crate) fn remove(&mut self, group: &GroupId) {
        self.0.retain(|(g, _)| g != group);
    }
}

/// Where the node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `create()` is trying the seeds.
    Creating,
    /// Joined (or re-joining after its server went away).
    Running,
    /// `leave()` is flushing the announcement.
    Leaving,
    /// Left, or never joined: the driver does nothing more.
    Stopped,
}

/// The WebSocket to the server this node relays through.
struct Link {
    ws: WebSocket,
    /// The seed URL (without the token).
    url: String,
    generation: u64,
    /// The handshake with the server, until it proved who it is.
    handshake: Dialer,
    /// The link's rules: the handshake first, then its first verified frame (the join went
    /// through), both by the deadline (the connect timeout).
    session: Session,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Link {
    fn shut(&self, code: CloseCode, reason: &str) {
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        // Closing an already closing socket is a no-op, never an error worth reporting. The
        // session only closes with codes a browser may send (`CloseCode::browser_may_send`).
        let _ = self.ws.close_with_code_and_reason(code.code(), reason);
    }

    fn verified(&self) -> bool {
        self.session.verified().is_some()
    }
}

/// A browser's one connection, as the routing table sees it: every frame goes to its server,
/// which routes it on; no datagrams, no dials.
struct Uplink(bool);

impl Links for Uplink {
    type Conn = ();

    fn uplink(&self) -> Option<()> {
        self.0.then_some(())
    }

    fn bound(&self, _: &NodeId) -> Option<()> {
        None
    }

    fn open_to(&self, _: &Address) -> Option<()> {
        None
    }

    fn has_udp(&self) -> bool {
        false
    }

    fn dial_budget(&self) -> DialBudget {
        DialBudget::Unsupported
    }
}

/// A stream as the driver tracks it next to the core's state.
#[derive(Default)]
pub(crate) struct Slot {
    ctrl: Option<ReadableStreamDefaultController>,
    /// A `pull()` waiting for bytes.
    pull: Option<Deferred>,
    /// Closed by the peer (or the core): code and reason. Buffered bytes stay readable.
    ended: Option<(u32, String)>,
    write: Option<PendingWrite>,
    /// `openStream()` waiting for the peer's accept.
    opening: Option<Deferred>,
}

struct PendingWrite {
    data: Outbox,
    done: Deferred,
}

/// Counters of what the driver itself dropped or did.
#[derive(Debug, Default, Clone)]
pub(crate) struct DriverStats {
    pub no_link: u64,
    pub socket_full: u64,
    pub send_errors: u64,
    pub reconnects: u64,
    pub unanswered_requests: u64,
    pub oversized: u64,
}

pub(crate) struct State {
    pub node: Node,
    me: Weak<RefCell<State>>,
    /// Signs this node's half of the handshake with its server.
    identity: Identity,
    /// It holds no cluster key: each link is sealed with the key its handshake agreed.
    admitted: bool,
    /// The cycle that keeps a joined node alive (as an open WebSocket keeps itself alive in
    /// JavaScript) until it leaves; every closure holds only a `Weak`.
    keepalive: Option<Shared>,
    origin_ms: f64,
    pub phase: Phase,
    seeds: Vec<String>,
    token: Option<String>,
    connect_timeout_ms: u64,
    next_seed: usize,
    /// Failed attempts since the last verified link.
    failures: usize,
    /// Why each seed failed while `create()` is pending.
    join_errors: Vec<JoinError>,
    link: Option<Link>,
    /// Links shut from inside their own handlers, dropped at the next timer tick.
    retired: Vec<Link>,
    generation: u64,
    retry_at: Option<Instant>,
    leave_by: Option<(Instant, Deferred)>,
    timer: Option<(JsValue, Instant)>,
    tick: Option<Closure<dyn FnMut()>>,
    creating: Option<Deferred>,
    pub listeners: Listeners,
    pub group_listeners: GroupListeners,
    requests: SmallMap<RequestId, Deferred>,
    quorums: SmallMap<gossip_core::QuorumId, Deferred>,
    streams: SmallMap<StreamKey, Slot>,
    pub stats: DriverStats,
}

/// `url` with the token as a query parameter (browsers cannot set an Authorization header).
fn with_token(url: &str, token: Option<&str>) -> String {
    match token {
        None => url.to_owned(),
        Some(t) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}token={}", js_sys::encode_uri_component(t))
        }
    }
}

impl State {
    /// A stopped driver around `node`; [`State::start`] connects it.
    pub(crate) fn new_shared(
        node: Node,
        identity: Identity,
        admitted: bool,
        origin_ms: f64,
        seeds: Vec<String>,
        token: Option<String>,
        connect_timeout_ms: u64,
    ) -> Shared {
        Rc::new_cyclic(|me| {
            RefCell::new(State {
                node,
                me: me.clone(),
                identity,
                admitted,
                keepalive: None,
                origin_ms,
                phase: Phase::Creating,
                seeds,
                token,
                connect_timeout_ms,
                next_seed: 0,
                failures: 0,
                join_errors: Vec::new(),
                link: None,
                retired: Vec::new(),
                generation: 0,
                retry_at: None,
                leave_by: None,
                timer: None,
                tick: None,
                creating: None,
                listeners: Listeners::default(),
                group_listeners: GroupListeners::default(),
                requests: SmallMap::default(),
                quorums: SmallMap::default(),
                streams: SmallMap::default(),
                stats: DriverStats::default(),
            })
        })
    }

    /// The driver's monotonic clock, from `performance.now()`.
    pub(crate) fn now(&self) -> Instant {
        let ms = (js::performance_now() - self.origin_ms).max(0.0);
        Instant::from_micros((ms * 1_000.0) as u64)
    }

    /// Starts joining; `done` settles when the first seed lets the node in or every seed failed.
    pub(crate) fn start(&mut self, done: Deferred, out: &mut Vec<Delivery>) {
        self.keepalive = self.me.upgrade();
        let me = self.me.clone();
        self.tick = Some(Closure::new(move || {
            if let Some(shared) = me.upgrade() {
                // A tick cannot be re-entered (timers run on an empty stack); Busy is impossible.
                let _ = with(&shared, |s, out| s.on_tick(out));
            }
        }));
        self.creating = Some(done);
        let now = self.now();
        self.connect(now, out);
    }

    // ----- the connection ------------------------------------------------------------------

    fn connect(&mut self, now: Instant, out: &mut Vec<Delivery>) {
        let url = self.seeds[self.next_seed % self.seeds.len()].clone();
        self.next_seed = (self.next_seed + 1) % self.seeds.len();
        self.generation += 1;
        let generation = self.generation;
        let ws = match WebSocket::new(&with_token(&url, self.token.as_deref())) {
            Ok(ws) => ws,
            Err(e) => {
                let reason = js::describe(&e);
                return self.link_failed(now, JoinError::Connect { url, reason }, out);
            }
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        let me = self.me.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            if let Some(shared) = me.upgrade() {
                let _ = with(&shared, |s, out| s.on_message(generation, ev.data(), out));
            }
        });
        let me = self.me.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
            if let Some(shared) = me.upgrade() {
                let (code, reason) = (ev.code(), ev.reason());
                let _ = with(&shared, |s, out| s.on_close(generation, code, &reason, out));
            }
        });
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        let config = SessionConfig::default().with_verify_within_ms(self.connect_timeout_ms);
        let nonce = match js::random_32() {
            Ok(n) => n,
            Err(e) => {
                let reason = e.to_string();
                return self.link_failed(now, JoinError::Connect { url, reason }, out);
            }
        };
        self.link = Some(Link {
            ws,
            url,
            generation,
            handshake: Dialer::new(nonce, None),
            session: Session::dialed(now, config, None).with_deadline(now),
            _on_message: on_message,
            _on_close: on_close,
        });
    }

    fn current(&self, generation: u64) -> bool {
        self.link
            .as_ref()
            .is_some_and(|l| l.generation == generation)
    }

    /// Closes the current link ourselves and reports why.
    fn fail_link(
        &mut self,
        now: Instant,
        code: CloseCode,
        reason: &str,
        err: JoinError,
        out: &mut Vec<Delivery>,
    ) {
        if let Some(link) = &self.link {
            link.shut(code, reason);
        }
        self.link_failed(now, err, out);
    }

    /// The link is gone (closed by either side, or never opened): try the next seed.
    fn link_failed(&mut self, now: Instant, err: JoinError, out: &mut Vec<Delivery>) {
        let was_verified = self.link.as_ref().is_some_and(Link::verified);
        if let Some(link) = self.link.take() {
            self.retired.push(link);
        }
        match self.phase {
            Phase::Creating => {
                self.join_errors.push(err);
                if self.join_errors.len() >= self.seeds.len() {
                    let all = JoinError::all_failed(std::mem::take(&mut self.join_errors));
                    if let Some(d) = self.creating.take() {
                        out.push(Delivery::Reject(d, all.into()));
                    }
                    self.stop();
                } else {
                    self.connect(now, out);
                }
            }
            Phase::Running => {
                if was_verified {
                    let info = js_sys::Object::new();
                    js::set(&info, "reason", &err.to_string().into());
                    js::set(&info, "code", &err.code().into());
                    out.push(Delivery::Emit("disconnected", info.into()));
                }
                self.failures += 1;
                // One quick pass over the seeds, then exponential pauses between passes.
                let passes = self.failures / self.seeds.len();
                let delay = if passes == 0 {
                    0
                } else {
                    (250u64 << (passes - 1).min(5)).min(MAX_BACKOFF_MS)
                };
                self.retry_at = Some(now.plus_millis(delay));
            }
            Phase::Leaving | Phase::Stopped => {}
        }
    }

    fn on_close(&mut self, generation: u64, code: u16, reason: &str, out: &mut Vec<Delivery>) {
        if !self.current(generation) {
            return;
        }
        let url = self
            .link
            .as_ref()
            .map(|l| l.url.clone())
            .unwrap_or_default();
        let now = self.now();
        self.link_failed(now, JoinError::from_close(&url, code, reason), out);
    }

    fn on_message(&mut self, generation: u64, data: JsValue, out: &mut Vec<Delivery>) {
        if !self.current(generation) {
            return;
        }
        let now = self.now();
        let Some(buf) = data.dyn_ref::<ArrayBuffer>() else {
            let url = self
                .link
                .as_ref()
                .map(|l| l.url.clone())
                .unwrap_or_default();
            let reason = "the server sent a text message (binary only)".into();
            let code = CloseCode::BinaryOnly;
            return self.fail_link(
                now,
                code,
                code.reason(),
                JoinError::Protocol { url, reason },
                out,
            );
        };
        // The core refuses oversized frames too; checking first avoids copying them in.
        if buf.byte_length() as usize > self.node.config().limits.max_frame_bytes {
            self.stats.oversized += 1;
            return;
        }
        let bytes = Uint8Array::new(buf).to_vec();
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let decision = if link.session.linked().is_none() || is_handshake(&bytes) {
            match link.handshake.on_message(&self.identity, &bytes) {
                Ok(step) => {
                    if let Some(reply) = step.reply
                        && link.ws.send_with_u8_array(&reply).is_err()
                    {
                        self.stats.send_errors += 1;
                    }
                    match (step.peer, step.key) {
                        (Some(server), Some(key)) => {
                            if self.admitted {
                                *self.node.keyring_mut() = Keyring::new(key);
                            }
                            link.session.on_linked(server)
                        }
                        _ => Decision::Keep,
                    }
                }
                Err(e) => link.session.on_handshake_error(e),
            }
        } else {
            match link.session.admit_frame() {
                Decision::Keep => {
                    let from = Address::WebSocket(link.url.clone());
                    let result = self.node.handle_packet(now, from, &bytes);
                    let Some(link) = self.link.as_mut() else {
                        return;
                    };
                    let node = &self.node;
                    link.session
                        .on_frame(&result, |o| node.member(o).and_then(|m| m.relay()))
                }
                close => close,
            }
        };
        self.execute(now, decision, out);
    }

    /// Carries out what the link's session decided.
    fn execute(&mut self, now: Instant, decision: Decision, out: &mut Vec<Delivery>) {
        let Some(link) = self.link.as_ref() else {
            return;
        };
        let url = link.url.clone();
        match decision {
            Decision::Keep => {}
            Decision::Linked(server) => {
                // The previous relay's link is gone: this is the browser's only connection.
                let adopted = match relay::adopt(self.node.local(), server, |_| false) {
                    Some(r) => self
                        .node
                        .set_addresses(now, vec![Address::Relayed(r)])
                        .is_ok(),
                    None => true,
                };
                if adopted {
                    self.node.join(now, &[Address::WebSocket(url)]);
                }
            }
            Decision::Verified(_) => {
                self.failures = 0;
                self.on_joined(out);
            }
            Decision::Close(code, fault) => {
                let err = JoinError::from_fault(&url, fault, self.connect_timeout_ms);
                self.fail_link(now, code, &fault.to_string(), err, out);
            }
        }
    }

    fn on_joined(&mut self, out: &mut Vec<Delivery>) {
        match self.phase {
            Phase::Creating => {
                self.phase = Phase::Running;
                self.join_errors.clear();
                if let Some(d) = self.creating.take() {
                    out.push(Delivery::Joined(d));
                }
            }
            Phase::Running => {
                self.stats.reconnects += 1;
                let info = js_sys::Object::new();
                if let Some(link) = &self.link {
                    js::set(&info, "url", &link.url.as_str().into());
                    if let Some(server) = link.session.linked() {
                        js::set(&info, "server", &server.to_string().into());
                    }
                }
                out.push(Delivery::Emit("connected", info.into()));
            }
            Phase::Leaving | Phase::Stopped => {}
        }
    }

    /// The server this node currently relays through, once its join went through.
    pub(crate) fn server(&self) -> Option<(NodeId, &str)> {
        let link = self.link.as_ref().filter(|l| l.verified())?;
        Some((link.session.linked()?, link.url.as_str()))
    }

    // ----- time ----------------------------------------------------------------------------

    fn on_tick(&mut self, out: &mut Vec<Delivery>) {
        self.timer = None;
        self.retired.clear();
        let now = self.now();
        if let Some((by, _)) = &self.leave_by {
            let flushed = self
                .link
                .as_ref()
                .is_none_or(|l| l.ws.buffered_amount() == 0);
            if flushed || now >= *by {
                self.finish_leave(out);
            }
            return;
        }
        if let Some(link) = &self.link {
            let decision = link.session.on_timeout(now);
            self.execute(now, decision, out);
        }
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            self.connect(now, out);
        }
        if self.phase != Phase::Stopped && self.node.poll_timeout().is_some_and(|t| now >= t) {
            self.node.handle_timeout(now);
        }
    }

    /// Arms the one timer for the earliest of: the core's next timeout, the link's deadline, a
    /// reconnection, the leave flush.
    fn rearm(&mut self) {
        let now = self.now();
        let wake = match (&self.leave_by, self.phase) {
            (_, Phase::Stopped) => None,
            (Some(_), _) => Some(now.plus_millis(LEAVE_POLL_MS)),
            (None, _) => [
                self.node.poll_timeout(),
                self.link.as_ref().and_then(|l| l.session.deadline()),
                self.retry_at,
            ]
            .into_iter()
            .flatten()
            .min(),
        };
        if self.timer.as_ref().map(|(_, at)| *at) == wake {
            return;
        }
        if let Some((handle, _)) = self.timer.take() {
            clear_timeout(&handle);
        }
        let (Some(at), Some(tick)) = (wake, &self.tick) else {
            return;
        };
        // Round up: waking a little early would only find nothing due and re-arm.
        let ms = at.micros_since(now).div_ceil(1_000).min(i32::MAX as u64);
        let handle = set_timeout(tick.as_ref().unchecked_ref(), ms as f64);
        self.timer = Some((handle, at));
    }

    // ----- output --------------------------------------------------------------------------

    /// Sends what the node wants sent and turns its events into deliveries.
    pub(crate) fn flush(&mut self, out: &mut Vec<Delivery>) {
        loop {
            let mut idle = true;
            while let Some(t) = self.node.poll_transmit() {
                idle = false;
                self.transmit(&t);
            }
            while let Some(e) = self.node.poll_event() {
                idle = false;
                self.on_event(e, out);
            }
            if idle {
                break;
            }
        }
        self.rearm();
    }

    /// A browser has one connection: every frame goes to its server, which routes it.
    fn transmit(&mut self, t: &Transmit) {
        let link = self.link.as_ref().filter(|l| l.session.linked().is_some());
        let budget = self.node.config().udp_budget;
        let (Some(link), Route::Connection(())) =
            (link, route::route(t, &Uplink(link.is_some()), None, budget))
        else {
            self.stats.no_link += 1;
            return;
        };
        let bytes = t.bytes.as_slice();
        if link.ws.ready_state() != WebSocket::OPEN {
            self.stats.no_link += 1;
        } else if link.ws.buffered_amount() as usize + bytes.len() > MAX_SOCKET_BUFFER {
            self.stats.socket_full += 1;
        } else if link.ws.send_with_u8_array(bytes).is_err() {
            self.stats.send_errors += 1;
        }
    }

    fn member_js(&self, id: NodeId) -> JsValue {
        js::member_ref(id, self.node.member(&id), self.node.id())
    }

    fn on_event(&mut self, e: Event, out: &mut Vec<Delivery>) {
        match e {
            Event::MemberJoined { id, .. } => {
                out.push(Delivery::Emit("memberJoined", self.member_js(id)))
            }
            Event::MemberAlive { id } => {
                out.push(Delivery::Emit("memberAlive", self.member_js(id)))
            }
            Event::MemberSuspect { id } => {
                out.push(Delivery::Emit("memberSuspect", self.member_js(id)))
            }
            Event::MemberDead { id } => out.push(Delivery::Emit("memberDead", self.member_js(id))),
            Event::MemberLeft { id } => out.push(Delivery::Emit("memberLeft", self.member_js(id))),
            Event::MetadataChanged { id, version } => {
                let m = self.member_js(id);
                let _ = js_sys::Reflect::set(&m, &"version".into(), &(version as f64).into());
                out.push(Delivery::Emit("metadata", m));
            }
            Event::Broadcast { from, topic, data } => {
                let msg = Message::new(MessageKind::Broadcast, from, topic, data, None);
                out.push(Delivery::Emit("message", msg.into()));
            }
            Event::Direct { from, topic, data } => {
                let msg = Message::new(MessageKind::Direct, from, topic, data, None);
                out.push(Delivery::Emit("message", msg.into()));
            }
            Event::Request {
                from,
                id,
                topic,
                data,
            } => {
                if self.listeners.get("request").is_none_or(Vec::is_empty) {
                    // Nobody can answer: the requester times out, as with a native node
                    // that does not handle the topic.
                    self.stats.unanswered_requests += 1;
                    return;
                }
                let reply = Some((self.me.clone(), id));
                let msg = Message::new(MessageKind::Request, from, topic, data, reply);
                out.push(Delivery::Emit("request", msg.into()));
            }
            Event::Response { id, from, data } => {
                if let Some(d) = self.requests.remove(&id) {
                    let msg = Message::new(MessageKind::Response, from, String::new(), data, None);
                    out.push(Delivery::Resolve(d, msg.into()));
                }
            }
            Event::RequestFailed { id, to, reason } => {
                if let Some(d) = self.requests.remove(&id) {
                    let err = match reason {
                        FailReason::Timeout => ClusterError::Timeout(to.to_string()),
                        FailReason::MemberDown => ClusterError::MemberDown(to.to_string()),
                        _ => ClusterError::UnknownMember(to.to_string()),
                    };
                    out.push(Delivery::Reject(d, err.into()));
                }
            }
            Event::Group(g) => {
                use gossip_core::groups::GroupChange;
                let name = match g.change {
                    GroupChange::Added => "added",
                    GroupChange::Removed => "removed",
                    GroupChange::Updated => "updated",
                };
                let m = self.member_js(g.node);
                out.push(Delivery::EmitGroup(g.group, name, m.clone()));
                let ev = js_sys::Object::new();
                js::set(&ev, "group", &g.group.get().into());
                js::set(&ev, "change", &name.into());
                js::set(&ev, "member", &m);
                out.push(Delivery::Emit("group", ev.into()));
            }
            Event::Stream(s) => self.on_stream(s, out),
            Event::QuorumDone(o) => {
                if let Some(d) = self.quorums.remove(&o.id) {
                    crate::services::settle_quorum(d, o, out);
                }
            }
            #[cfg(feature = "state")]
            Event::StateChanged {
                owner,
                key,
                version,
                value,
            } => out.push(Delivery::Emit(
                "state",
                crate::services::change_js(owner, key, version, value),
            )),
            #[cfg(feature = "state")]
            Event::StateCleared { owner } => {
                let o = js_sys::Object::new();
                js::set(&o, "owner", &owner.to_string().into());
                out.push(Delivery::Emit("stateCleared", o.into()));
            }
            // Other events are new.
            _ => {}
        }
    }

    // ----- commands ------------------------------------------------------------------------

    /// Registers a request's promise (the core bounds how many are outstanding).
    pub(crate) fn track_request(&mut self, id: RequestId, d: Deferred) {
        self.requests.insert(id, d);
    }

    /// Registers a quorum request's promise (the core bounds its requests).
    pub(crate) fn track_quorum(&mut self, id: gossip_core::QuorumId, d: Deferred) {
        self.quorums.insert(id, d);
    }

    /// Leaves: announces it, flushes the socket (bounded), then stops.
    pub(crate) fn leave(&mut self, done: Deferred, out: &mut Vec<Delivery>) {
        match self.phase {
            Phase::Stopped => return out.push(Delivery::Resolve(done, JsValue::UNDEFINED)),
            Phase::Leaving => {
                return out.push(Delivery::Reject(done, ClusterError::Left.into()));
            }
            Phase::Creating | Phase::Running => {}
        }
        let now = self.now();
        self.phase = Phase::Leaving;
        self.node.leave(now);
        for d in self.requests.drain_values() {
            out.push(Delivery::Reject(d, ClusterError::Left.into()));
        }
        for d in self.quorums.drain_values() {
            out.push(Delivery::Reject(d, ClusterError::Left.into()));
        }
        if let Some(d) = self.creating.take() {
            out.push(Delivery::Reject(d, ClusterError::Left.into()));
        }
        let keys: Vec<StreamKey> = self.streams.keys().copied().collect();
        for key in keys {
            self.close_stream(key, close_code::PEER_GONE, "leaving", out);
        }
        self.leave_by = Some((now.plus_millis(LEAVE_FLUSH_MS), done));
    }

    fn finish_leave(&mut self, out: &mut Vec<Delivery>) {
        if let Some(link) = self.link.take() {
            link.shut(CloseCode::Normal, "leaving");
            self.retired.push(link);
        }
        if let Some((_, done)) = self.leave_by.take() {
            out.push(Delivery::Resolve(done, JsValue::UNDEFINED));
        }
        self.stop();
    }

    /// Stops for good: no timer, no socket, and the keep-alive cycle is broken.
    fn stop(&mut self) {
        self.phase = Phase::Stopped;
        if let Some(link) = self.link.take() {
            link.shut(CloseCode::Normal, "stopped");
            self.retired.push(link);
        }
        if let Some((handle, _)) = self.timer.take() {
            clear_timeout(&handle);
        }
        self.retry_at = None;
        self.keepalive = None;
    }

    // ----- streams -------------------------------------------------------------------------

    /// Registers a stream this node opened; `done` settles when the peer accepts or refuses.
    pub(crate) fn track_open(&mut self, key: StreamKey, done: Deferred) {
        self.streams.insert(
            key,
            Slot {
                opening: Some(done),
                ..Slot::default()
            },
        );
    }

    fn stream_js(&self, key: StreamKey) -> JsValue {
        GossipStream::make(self.me.clone(), key)
    }

    fn on_stream(&mut self, s: StreamOutput, out: &mut Vec<Delivery>) {
        let now = self.now();
        match s {
            StreamOutput::Incoming(key) => {
                let wanted = self.listeners.get("stream").is_some_and(|l| !l.is_empty());
                if !wanted {
                    let _ = self.node.streams().reject(
                        now,
                        key,
                        close_code::REJECTED,
                        "no stream listener",
                    );
                } else if self.node.streams().accept(now, key).is_ok() {
                    self.streams.insert(key, Slot::default());
                    out.push(Delivery::Emit("stream", self.stream_js(key)));
                }
            }
            StreamOutput::Opened(key) => {
                if let Some(d) = self.streams.get_mut(&key).and_then(|s| s.opening.take()) {
                    let js = self.stream_js(key);
                    out.push(Delivery::Resolve(d, js));
                }
            }
            StreamOutput::Readable(key) => self.feed(key, out),
            StreamOutput::Writable(key) => self.continue_write(key, out),
            StreamOutput::Closed {
                key, code, reason, ..
            } => {
                let Some(slot) = self.streams.get_mut(&key) else {
                    return;
                };
                let err = || -> GossipError {
                    ClusterError::StreamClosed {
                        code,
                        reason: reason.clone(),
                    }
                    .into()
                };
                if let Some(d) = slot.opening.take() {
                    out.push(Delivery::Reject(d, err()));
                    self.streams.remove(&key);
                    return;
                }
                if let Some(w) = slot.write.take() {
                    out.push(Delivery::Reject(w.done, err()));
                }
                slot.ended = Some((code, reason.clone()));
                self.feed(key, out);
            }
            // The node sends those itself.
            StreamOutput::Send(..) => {}
        }
    }

    /// Hands buffered bytes to a waiting `pull()`, or ends the readable side once the peer
    /// closed and nothing is left. Bytes nobody pulls stay in the core, which withholds credit:
    /// that is the back-pressure reaching the writer.
    fn feed(&mut self, key: StreamKey, out: &mut Vec<Delivery>) {
        let now = self.now();
        let Some(slot) = self.streams.get_mut(&key) else {
            return;
        };
        let (Some(ctrl), true) = (slot.ctrl.clone(), slot.pull.is_some()) else {
            return;
        };
        let readable = self.node.streams().readable(key).unwrap_or(0);
        if readable > 0 {
            if let Ok(data) = self.node.streams().read(now, key, readable.min(READ_CHUNK)) {
                out.push(Delivery::Enqueue(ctrl, data));
                if let Some(d) = slot.pull.take() {
                    out.push(Delivery::Resolve(d, JsValue::UNDEFINED));
                }
            }
        } else if let Some((code, reason)) = slot.ended.clone() {
            let err = (code != close_code::NORMAL)
                .then(|| ClusterError::StreamClosed { code, reason }.into());
            out.push(Delivery::EndReadable(ctrl, err));
            if let Some(d) = slot.pull.take() {
                out.push(Delivery::Resolve(d, JsValue::UNDEFINED));
            }
            self.streams.remove(&key);
        }
    }

    /// `ReadableStream` pull: resolves once a chunk was enqueued or the stream ended.
    pub(crate) fn pull(
        &mut self,
        key: StreamKey,
        ctrl: ReadableStreamDefaultController,
        out: &mut Vec<Delivery>,
    ) -> Promise {
        let (promise, d) = Deferred::new();
        match self.streams.get_mut(&key) {
            Some(slot) => {
                slot.ctrl = Some(ctrl);
                slot.pull = Some(d);
                self.feed(key, out);
            }
            None => {
                out.push(Delivery::EndReadable(ctrl, None));
                out.push(Delivery::Resolve(d, JsValue::UNDEFINED));
            }
        }
        promise
    }

    /// `WritableStream` write: resolves once the core took every byte (within the window).
    pub(crate) fn write(
        &mut self,
        key: StreamKey,
        data: Vec<u8>,
        out: &mut Vec<Delivery>,
    ) -> Promise {
        let (promise, done) = Deferred::new();
        let closed = || -> GossipError {
            ClusterError::StreamClosed {
                code: close_code::NORMAL,
                reason: "the stream is closed".into(),
            }
            .into()
        };
        let Some(slot) = self.streams.get_mut(&key) else {
            out.push(Delivery::Reject(done, closed()));
            return promise;
        };
        if let Some((code, reason)) = &slot.ended {
            let err = ClusterError::StreamClosed {
                code: *code,
                reason: reason.clone(),
            };
            out.push(Delivery::Reject(done, err.into()));
            return promise;
        }
        slot.write = Some(PendingWrite {
            data: Outbox::from(data),
            done,
        });
        self.continue_write(key, out);
        promise
    }

    fn continue_write(&mut self, key: StreamKey, out: &mut Vec<Delivery>) {
        let now = self.now();
        let Some(mut w) = self.streams.get_mut(&key).and_then(|s| s.write.take()) else {
            return;
        };
        let node = &mut self.node;
        if let Err(e) = w.data.flush(|chunk| node.streams().write(now, key, chunk)) {
            return out.push(Delivery::Reject(w.done, e.into()));
        }
        if w.data.is_empty() {
            out.push(Delivery::Resolve(w.done, JsValue::UNDEFINED));
        } else if let Some(slot) = self.streams.get_mut(&key) {
            slot.write = Some(w);
        }
    }

    /// Closes a stream from this side (a full close: the core has no half-close).
    pub(crate) fn close_stream(
        &mut self,
        key: StreamKey,
        code: u32,
        reason: &str,
        out: &mut Vec<Delivery>,
    ) {
        let now = self.now();
        let _ = self.node.streams().close(now, key, code, reason);
        let Some(slot) = self.streams.remove(&key) else {
            return;
        };
        let err = || -> GossipError {
            ClusterError::StreamClosed {
                code,
                reason: reason.to_owned(),
            }
            .into()
        };
        if let Some(w) = slot.write {
            out.push(Delivery::Reject(w.done, err()));
        }
        if let Some(d) = slot.opening {
            out.push(Delivery::Reject(d, err()));
        }
        if let Some(ctrl) = slot.ctrl {
            out.push(Delivery::EndReadable(ctrl, None));
        }
        if let Some(d) = slot.pull {
            out.push(Delivery::Resolve(d, JsValue::UNDEFINED));
        }
    }
}
