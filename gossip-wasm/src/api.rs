//! The JavaScript API: `GossipNode`, `Message`, `Group`, `GossipStream`.

use std::cell::{Ref, RefCell};
use std::rc::Weak;

use gossip_core::groups::{Criterion, GroupId, GroupSpec};
use gossip_core::streams::StreamKey;
use gossip_core::{Identity, Instant, Keyring, Node, NodeId, RequestId};
use js_sys::{Array, Function, Object, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{ReadableStream, ReadableStreamDefaultController, WritableStream};

use crate::driver::{Deferred, Delivery, NODE_EVENTS, Shared, State, deliver, with};
use crate::error::{GossipError, UsageError};
use crate::js::{self, Options, to_js_error};
use crate::msgpack;

type JsResult<T> = Result<T, JsValue>;

fn js_err(e: GossipError) -> JsValue {
    to_js_error(&e)
}

fn rejected(e: GossipError) -> Promise {
    Promise::reject(&to_js_error(&e))
}

pub(crate) fn topic_of(options: &JsValue) -> JsResult<String> {
    let t = js::get(options, "topic");
    if t.is_undefined() || t.is_null() {
        return Ok(String::new());
    }
    t.as_string().ok_or_else(|| {
        js_err(
            UsageError::InvalidArgument {
                argument: "options.topic",
                reason: "must be a string".into(),
            }
            .into(),
        )
    })
}

/// `options.timeoutMs` of a request (default 5000).
pub(crate) fn timeout_of(options: &JsValue) -> JsResult<u64> {
    let t = js::get(options, "timeoutMs");
    if t.is_undefined() {
        return Ok(5_000);
    }
    match t.as_f64() {
        Some(ms) if (0.0..=3_600_000.0).contains(&ms) => Ok(ms as u64),
        _ => Err(js_err(
            UsageError::InvalidArgument {
                argument: "options.timeoutMs",
                reason: "expected milliseconds between 0 and 3600000".into(),
            }
            .into(),
        )),
    }
}

/// Stream close code sent when JavaScript aborts or cancels a stream (the first application code:
/// the core's `close_code`s are below 16).
const CLOSE_ABORTED: u32 = 16;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = include_str!("types.d.ts");

#[wasm_bindgen]
extern "C" {
    /// `GossipNode.create` options (see the `.d.ts`).
    #[wasm_bindgen(typescript_type = "GossipOptions")]
    pub type GossipOptions;
    /// `request()` options.
    #[wasm_bindgen(typescript_type = "RequestOptions")]
    pub type RequestOptions;
    /// `send()` options.
    #[wasm_bindgen(typescript_type = "SendOptions")]
    pub type SendOptions;
    /// A group's criteria.
    #[wasm_bindgen(typescript_type = "GroupCriteria | string")]
    pub type GroupCriteria;
    /// Message data.
    #[wasm_bindgen(typescript_type = "Data")]
    pub type Data;
    /// A metadata value.
    #[wasm_bindgen(typescript_type = "string | Uint8Array | null")]
    pub type MetadataValue;
    /// A listener.
    #[wasm_bindgen(typescript_type = "(event: any) => void")]
    pub type Listener;
    /// An array of members.
    #[wasm_bindgen(typescript_type = "MemberInfo[]")]
    pub type MemberList;
    /// One member, or undefined.
    #[wasm_bindgen(typescript_type = "MemberInfo | undefined")]
    pub type MaybeMember;
    /// A promise of a node.
    #[wasm_bindgen(typescript_type = "Promise<GossipNode>")]
    pub type NodePromise;
    /// A promise of a reply.
    #[wasm_bindgen(typescript_type = "Promise<Message>")]
    pub type ReplyPromise;
    /// A promise of a stream.
    #[wasm_bindgen(typescript_type = "Promise<GossipStream>")]
    pub type StreamPromise;
    /// A promise of nothing.
    #[wasm_bindgen(typescript_type = "Promise<void>")]
    pub type VoidPromise;
    /// Driver counters.
    #[wasm_bindgen(typescript_type = "NodeStats")]
    pub type NodeStats;
}

/// A cluster member running in this page (or Node.js process).
#[wasm_bindgen]
pub struct GossipNode {
    shared: Shared,
}

impl GossipNode {
    pub(crate) fn wrap(shared: Shared) -> GossipNode {
        GossipNode { shared }
    }

    pub(crate) fn run<R>(
        &self,
        f: impl FnOnce(&mut State, &mut Vec<Delivery>) -> R,
    ) -> JsResult<R> {
        with(&self.shared, f).map_err(js_err)
    }

    pub(crate) fn state(&self) -> JsResult<Ref<'_, State>> {
        self.shared.try_borrow().map_err(|_| busy())
    }
}

fn create(options: &JsValue) -> Result<Promise, GossipError> {
    let opts = Options::parse(options)?;
    let secret = match opts.identity {
        Some(s) => s,
        None => js::random_32()?,
    };
    // Without the cluster key the tab joins as an admitted member: its only key is the one each
    // link's handshake agrees (set on every connection), and its server's hook decides.
    let admitted = opts.key.is_none();
    let keyring = opts.key.map_or_else(Keyring::unencrypted, Keyring::new);
    let origin_ms = js::performance_now();
    let identity = Identity::from_secret_bytes(secret);
    let mut node = Node::new(
        opts.config,
        identity.clone(),
        keyring,
        Vec::new(),
        js::random_32()?,
        Instant::from_micros(0),
        js_sys::Date::now() as u64,
    );
    for (k, v) in opts.metadata {
        node.set_metadata(Instant::from_micros(0), &k, Some(v))?;
    }
    let shared = State::new_shared(
        node,
        identity,
        admitted,
        origin_ms,
        opts.seeds,
        opts.token,
        opts.connect_timeout_ms,
    );
    let (promise, done) = Deferred::new();
    with(&shared, |s, out| s.start(done, out))?;
    Ok(promise)
}

#[wasm_bindgen]
impl GossipNode {
    /// Joins the cluster through the first seed that lets this node in; resolves once the
    /// server answered, rejects with a `GossipError` (`code` `CLUSTER_KEY`, `UNAUTHORIZED`,
    /// `CONNECT`...) when no seed did.
    pub fn create(options: GossipOptions) -> NodePromise {
        create(&options).unwrap_or_else(rejected).unchecked_into()
    }

    /// This node's id (52 base32 characters).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> JsResult<String> {
        Ok(self.state()?.node.id().to_string())
    }

    /// This node's name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> JsResult<String> {
        Ok(self.state()?.node.local().name.clone())
    }

    /// The id of the server this node relays through (undefined while re-joining).
    #[wasm_bindgen(getter)]
    pub fn server(&self) -> JsResult<Option<String>> {
        Ok(self.state()?.server().map(|(id, _)| id.to_string()))
    }

    /// The WebSocket URL of that server.
    #[wasm_bindgen(getter, js_name = serverUrl)]
    pub fn server_url(&self) -> JsResult<Option<String>> {
        Ok(self.state()?.server().map(|(_, url)| url.to_owned()))
    }

    /// Adds a listener: `memberJoined`, `memberAlive`, `memberSuspect`, `memberDead`,
    /// `memberLeft`, `metadata`, `message`, `request`, `stream`, `group`, `connected`,
    /// `disconnected`. Typed in `types.d.ts` (an event map, so a misspelt name does not compile).
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, event: &str, listener: Listener) -> JsResult<()> {
        let f = check_listener(event, NODE_EVENTS, listener)?;
        let mut s = self.shared.try_borrow_mut().map_err(|_| busy())?;
        s.listeners.add(event, f);
        Ok(())
    }

    /// Removes a listener added with `on`. Typed in `types.d.ts`.
    #[wasm_bindgen(skip_typescript)]
    pub fn off(&self, event: &str, listener: Listener) -> JsResult<()> {
        let f: &JsValue = listener.as_ref();
        let mut s = self.shared.try_borrow_mut().map_err(|_| busy())?;
        if let Some(l) = s.listeners.get_mut(event) {
            l.retain(|g| JsValue::from(g.clone()) != *f);
        }
        Ok(())
    }

    /// Every member this node knows, itself included.
    pub fn members(&self) -> JsResult<MemberList> {
        let s = self.state()?;
        let me = s.node.id();
        let mut list: Vec<_> = s.node.members().collect();
        gossip_core::sort::stable_by(&mut list, |a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(list
            .into_iter()
            .map(|m| js::member_object(m, me))
            .collect::<Array>()
            .unchecked_into())
    }

    /// One member by id.
    pub fn member(&self, id: &str) -> JsResult<MaybeMember> {
        let id = js::parse_id(id).map_err(js_err)?;
        let s = self.state()?;
        Ok(s.node
            .member(&id)
            .map_or(JsValue::UNDEFINED, |m| js::member_object(m, s.node.id()))
            .unchecked_into())
    }

    /// Sets one metadata key (a string, or bytes); `null` removes it.
    #[wasm_bindgen(js_name = setMetadata)]
    pub fn set_metadata(&self, key: &str, value: MetadataValue) -> JsResult<()> {
        let value: &JsValue = value.as_ref();
        let bytes = if value.is_null() || value.is_undefined() {
            None
        } else {
            Some(js::metadata_value(value).ok_or_else(|| {
                js_err(
                    UsageError::InvalidArgument {
                        argument: "value",
                        reason: "must be a string, a Uint8Array or null".into(),
                    }
                    .into(),
                )
            })?)
        };
        self.run(|s, _| {
            let now = s.now();
            s.node.set_metadata(now, key, bytes)
        })?
        .map_err(|e| js_err(e.into()))
    }

    /// Broadcasts to every member (each receives it once, as a `message` event).
    pub fn broadcast(&self, topic: &str, data: Data) -> JsResult<()> {
        let bytes = js::data_to_bytes(data.as_ref()).map_err(js_err)?;
        self.run(|s, _| {
            let now = s.now();
            s.node.broadcast(now, topic, bytes)
        })?
        .map_err(|e| js_err(e.into()))
    }

    /// Sends a message to one member (`options.topic`, default "").
    pub fn send(&self, member: &str, data: Data, options: Option<SendOptions>) -> JsResult<()> {
        let to = js::parse_id(member).map_err(js_err)?;
        let bytes = js::data_to_bytes(data.as_ref()).map_err(js_err)?;
        let topic = topic_of(options.as_ref().map_or(&JsValue::UNDEFINED, |o| o.as_ref()))?;
        self.run(|s, _| {
            let now = s.now();
            s.node.send(now, to, &topic, bytes, true)
        })?
        .map_err(|e| js_err(e.into()))
    }

    /// Asks one member and resolves with its answer (`options.timeoutMs`, default 5000;
    /// `options.topic`, default ""). Rejects with `code` `TIMEOUT`, `MEMBER_DOWN` or
    /// `UNKNOWN_MEMBER`.
    pub fn request(
        &self,
        member: &str,
        data: Data,
        options: Option<RequestOptions>,
    ) -> ReplyPromise {
        self.request_inner(member, data.as_ref(), options.as_ref().map(|o| o.as_ref()))
            .unwrap_or_else(|e| Promise::reject(&e))
            .unchecked_into()
    }

    fn request_inner(
        &self,
        member: &str,
        data: &JsValue,
        options: Option<&JsValue>,
    ) -> JsResult<Promise> {
        let undefined = JsValue::UNDEFINED;
        let options = options.unwrap_or(&undefined);
        let to = js::parse_id(member).map_err(js_err)?;
        let bytes = js::data_to_bytes(data).map_err(js_err)?;
        let topic = topic_of(options)?;
        let timeout_ms = timeout_of(options)?;
        let (promise, done) = Deferred::new();
        self.run(|s, _| {
            let now = s.now();
            let id: RequestId = s.node.request(now, to, &topic, bytes, timeout_ms)?;
            s.track_request(id, done);
            Ok::<_, gossip_core::CommandError>(())
        })?
        .map_err(|e| js_err(e.into()))?;
        Ok(promise)
    }

    /// A live view of the members whose metadata matches: `{ role: "worker" }` (exact
    /// values), `{ gpu: true }` (key present), `{ zone: { prefix: "eu-" } }`,
    /// `{ tags: { contains: "ssd" } }`, or the text form `"role=worker, zone^eu-"`.
    pub fn group(&self, criteria: GroupCriteria) -> JsResult<Group> {
        let spec = group_spec(criteria.as_ref()).map_err(js_err)?;
        let mut pending = Vec::new();
        let id = {
            let mut s = self.shared.try_borrow_mut().map_err(|_| busy())?;
            let id = s.node.groups().define(spec).map_err(|e| js_err(e.into()))?;
            s.group_listeners.track(id);
            s.flush(&mut pending);
            id
        };
        // The group's first `added` events are delivered after this call returns, so
        // listeners added right away with `group.on("added", ...)` see the current members.
        let shared = self.shared.clone();
        let later = Closure::once_into_js(move || deliver(&shared, pending));
        js::queue_microtask(&later);
        Ok(Group {
            shared: self.shared.clone(),
            id,
        })
    }

    /// Opens a byte stream to a member; resolves once it accepted.
    #[wasm_bindgen(js_name = openStream)]
    pub fn open_stream(&self, member: &str) -> StreamPromise {
        let attempt = || -> JsResult<Promise> {
            let peer = js::parse_id(member).map_err(js_err)?;
            let (promise, done) = Deferred::new();
            self.run(|s, _| {
                let now = s.now();
                let key = s.node.streams().open(now, peer)?;
                s.track_open(key, done);
                Ok::<_, gossip_core::CommandError>(())
            })?
            .map_err(|e| js_err(e.into()))?;
            Ok(promise)
        };
        attempt()
            .unwrap_or_else(|e| Promise::reject(&e))
            .unchecked_into()
    }

    /// Leaves the cluster: announces it (signed by this node), waits for the socket to flush
    /// it (at most 2 s), closes the connection. The node is unusable afterwards.
    pub fn leave(&self) -> VoidPromise {
        let (promise, done) = Deferred::new();
        if let Err(e) = self.run(|s, out| s.leave(done, out)) {
            return Promise::reject(&e).unchecked_into();
        }
        promise.unchecked_into()
    }

    /// Counters of the core and the driver.
    pub fn stats(&self) -> JsResult<NodeStats> {
        let s = self.state()?;
        let core = s.node.stats();
        let o = Object::new();
        let n = |v: u64| JsValue::from(v as f64);
        js::set(&o, "packetsIn", &n(core.packets_in));
        js::set(&o, "packetsOut", &n(core.packets_out));
        js::set(&o, "bytesIn", &n(core.bytes_in));
        js::set(&o, "bytesOut", &n(core.bytes_out));
        let drops = Object::new();
        for (k, v) in &core.drops {
            js::set(&drops, k.as_str(), &n(*v));
        }
        js::set(&drops, "noLink", &n(s.stats.no_link));
        js::set(&drops, "socketFull", &n(s.stats.socket_full));
        js::set(&drops, "sendErrors", &n(s.stats.send_errors));
        js::set(&drops, "oversized", &n(s.stats.oversized));
        js::set(
            &drops,
            "unansweredRequests",
            &n(s.stats.unanswered_requests),
        );
        js::set(&o, "drops", &drops);
        js::set(&o, "reconnects", &n(s.stats.reconnects));
        Ok(o.unchecked_into())
    }
}

fn busy() -> JsValue {
    js_err(UsageError::Busy.into())
}

fn check_listener(event: &str, known: &[&str], listener: Listener) -> JsResult<Function> {
    if !known.contains(&event) {
        return Err(js_err(
            UsageError::InvalidArgument {
                argument: "event",
                reason: format!("`{event}` is not one of {}", known.join(", ")),
            }
            .into(),
        ));
    }
    let v: JsValue = listener.into();
    v.dyn_into::<Function>().map_err(|_| {
        js_err(
            UsageError::InvalidArgument {
                argument: "listener",
                reason: "must be a function".into(),
            }
            .into(),
        )
    })
}

fn group_spec(criteria: &JsValue) -> Result<GroupSpec, GossipError> {
    let bad = |reason: String| -> GossipError {
        UsageError::InvalidArgument {
            argument: "criteria",
            reason,
        }
        .into()
    };
    if let Some(text) = criteria.as_string() {
        return text.parse::<GroupSpec>().map_err(|e| bad(e.to_string()));
    }
    if !criteria.is_object() {
        return Err(bad(
            "expected an object such as { role: \"worker\" } or a string".into(),
        ));
    }
    let mut spec = GroupSpec::default();
    for pair in Object::entries(criteria.unchecked_ref()).iter() {
        let pair: Array = pair.unchecked_into();
        let key = pair.get(0).as_string().unwrap_or_default();
        let v = pair.get(1);
        let c = if let Some(value) = js::metadata_value(&v) {
            Criterion::Equals { key, value }
        } else if v.as_bool() == Some(true) {
            Criterion::Exists { key }
        } else if let Some(prefix) = js::metadata_value(&js::get(&v, "prefix")) {
            Criterion::Prefix { key, prefix }
        } else if let Some(needle) = js::metadata_value(&js::get(&v, "contains")) {
            Criterion::Contains { key, needle }
        } else {
            return Err(bad(format!(
                "`{key}`: expected a string, true, {{ prefix }} or {{ contains }}"
            )));
        };
        spec.criteria.push(c);
    }
    Ok(spec)
}

/// What kind of message a [`Message`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageKind {
    Broadcast,
    Direct,
    Request,
    Response,
}

/// A received broadcast, direct message, request or response.
#[wasm_bindgen]
pub struct Message {
    kind: MessageKind,
    from: NodeId,
    topic: String,
    data: Vec<u8>,
    reply: Option<(Weak<RefCell<State>>, RequestId)>,
}

impl Message {
    pub(crate) fn new(
        kind: MessageKind,
        from: NodeId,
        topic: String,
        data: Vec<u8>,
        reply: Option<(Weak<RefCell<State>>, RequestId)>,
    ) -> Message {
        Message {
            kind,
            from,
            topic,
            data,
            reply,
        }
    }
}

#[wasm_bindgen]
impl Message {
    /// `"broadcast"`, `"direct"`, `"request"` or `"response"`.
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        match self.kind {
            MessageKind::Broadcast => "broadcast",
            MessageKind::Direct => "direct",
            MessageKind::Request => "request",
            MessageKind::Response => "response",
        }
        .into()
    }

    /// The sender's id.
    #[wasm_bindgen(getter)]
    pub fn from(&self) -> String {
        self.from.to_string()
    }

    /// The topic ("" for responses).
    #[wasm_bindgen(getter)]
    pub fn topic(&self) -> String {
        self.topic.clone()
    }

    /// The raw bytes.
    #[wasm_bindgen(getter)]
    pub fn data(&self) -> Vec<u8> {
        self.data.clone()
    }

    /// The bytes as UTF-8 text (invalid sequences replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The value a sender passed as non-bytes data (decoded from MessagePack); throws
    /// `DECODE` if the data is not MessagePack. Typed in `types.d.ts` (`value<T = unknown>()`).
    #[wasm_bindgen(skip_typescript)]
    pub fn value(&self) -> JsResult<JsValue> {
        msgpack::decode(&self.data)
            .map(js::from_value)
            .map_err(|e| js_err(UsageError::Decode(e.to_string()).into()))
    }

    /// Answers a request (a `Uint8Array` or any JSON-able value).
    pub fn respond(&self, data: Data) -> JsResult<()> {
        let Some((state, id)) = &self.reply else {
            return Err(js_err(
                UsageError::InvalidArgument {
                    argument: "message",
                    reason: "only a request can be answered".into(),
                }
                .into(),
            ));
        };
        let shared = state
            .upgrade()
            .ok_or_else(|| js_err(crate::error::ClusterError::Left.into()))?;
        let bytes = js::data_to_bytes(data.as_ref()).map_err(js_err)?;
        let (to, id) = (self.from, *id);
        with(&shared, |s, _| {
            let now = s.now();
            s.node.respond(now, to, id, bytes)
        })
        .map_err(js_err)?
        .map_err(|e| js_err(e.into()))
    }
}

/// A live view of the members matching some metadata criteria.
#[wasm_bindgen]
pub struct Group {
    shared: Shared,
    id: GroupId,
}

const GROUP_EVENTS: &[&str] = &["added", "removed", "updated"];

#[wasm_bindgen]
impl Group {
    /// The group's number.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> u32 {
        self.id.get()
    }

    /// The matching members (this node included when it matches).
    pub fn members(&self) -> JsResult<MemberList> {
        let s = self.shared.try_borrow().map_err(|_| busy())?;
        let me = s.node.id();
        Ok(s.node
            .group_view()
            .members(self.id)
            .into_iter()
            .flatten()
            .filter_map(|id| s.node.member(&id))
            .map(|m| js::member_object(m, me))
            .collect::<Array>()
            .unchecked_into())
    }

    /// How many members match.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> JsResult<usize> {
        let s = self.shared.try_borrow().map_err(|_| busy())?;
        Ok(s.node.group_view().len(self.id).unwrap_or(0))
    }

    /// Adds a listener: `added`, `removed`, `updated` (called with the member). Typed in
    /// `types.d.ts`.
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, event: &str, listener: Listener) -> JsResult<()> {
        let f = check_listener(event, GROUP_EVENTS, listener)?;
        let mut s = self.shared.try_borrow_mut().map_err(|_| busy())?;
        if let Some(l) = s.group_listeners.get_mut(&self.id) {
            l.add(event, f);
        }
        Ok(())
    }

    /// Sends a message to every member of the group but this node; returns how many.
    pub fn send(&self, data: Data, options: Option<SendOptions>) -> JsResult<usize> {
        let bytes = js::data_to_bytes(data.as_ref()).map_err(js_err)?;
        let topic = topic_of(options.as_ref().map_or(&JsValue::UNDEFINED, |o| o.as_ref()))?;
        let group = self.id;
        with(&self.shared, |s, _| {
            let now = s.now();
            s.node.groups().send(now, group, &topic, bytes, true)
        })
        .map_err(js_err)?
        .map_err(|e| js_err(e.into()))
    }

    /// Stops tracking the group.
    pub fn remove(&self) {
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            s.node.groups().remove(self.id);
            s.group_listeners.remove(&self.id);
        }
    }
}

/// A byte stream with another member: WHATWG `readable` and `writable` sides.
///
/// Closing (the `writable` side's `close()`, or `close()` here) ends the whole stream, as the
/// core has no half-close: read what you expect before closing.
#[wasm_bindgen]
pub struct GossipStream {
    state: Weak<RefCell<State>>,
    key: StreamKey,
    readable: ReadableStream,
    writable: WritableStream,
}

impl GossipStream {
    /// The JavaScript object for a stream the driver tracks.
    pub(crate) fn make(state: Weak<RefCell<State>>, key: StreamKey) -> JsValue {
        let source: JsValue = StreamSource {
            state: state.clone(),
            key,
        }
        .into();
        let sink: JsValue = StreamSink {
            state: state.clone(),
            key,
        }
        .into();
        // Neither object has a `start` method, so the constructors never call back into the
        // (possibly borrowed) driver; they cannot fail for such a source and sink.
        let (Ok(readable), Ok(writable)) = (
            ReadableStream::new_with_underlying_source(source.unchecked_ref()),
            WritableStream::new_with_underlying_sink(sink.unchecked_ref()),
        ) else {
            return JsValue::NULL;
        };
        GossipStream {
            state,
            key,
            readable,
            writable,
        }
        .into()
    }
}

#[wasm_bindgen]
impl GossipStream {
    /// The member at the other end.
    #[wasm_bindgen(getter)]
    pub fn peer(&self) -> String {
        self.key.peer.to_string()
    }

    /// Bytes from the peer, as `Uint8Array` chunks.
    #[wasm_bindgen(getter, unchecked_return_type = "ReadableStream<Uint8Array>")]
    pub fn readable(&self) -> ReadableStream {
        self.readable.clone()
    }

    /// Bytes to the peer: write `Uint8Array`s.
    #[wasm_bindgen(getter, unchecked_return_type = "WritableStream<Uint8Array>")]
    pub fn writable(&self) -> WritableStream {
        self.writable.clone()
    }

    /// Closes the whole stream (code 0 unless given).
    pub fn close(&self, code: Option<u32>, reason: Option<String>) {
        if let Some(shared) = self.state.upgrade() {
            let key = self.key;
            let _ = with(&shared, |s, out| {
                s.close_stream(key, code.unwrap_or(0), reason.as_deref().unwrap_or(""), out)
            });
        }
    }
}

/// The underlying source of a [`GossipStream`]'s `readable` (called by the stream machinery).
#[wasm_bindgen(skip_typescript)]
pub struct StreamSource {
    state: Weak<RefCell<State>>,
    key: StreamKey,
}

#[wasm_bindgen]
impl StreamSource {
    /// Called by the `ReadableStream` when it wants a chunk.
    pub fn pull(&self, controller: ReadableStreamDefaultController) -> Promise {
        let Some(shared) = self.state.upgrade() else {
            let _ = controller.close();
            return Promise::resolve(&JsValue::UNDEFINED);
        };
        let key = self.key;
        with(&shared, |s, out| s.pull(key, controller, out)).unwrap_or_else(rejected)
    }

    /// Called when the reader cancels: closes the whole stream.
    pub fn cancel(&self, reason: JsValue) {
        if let Some(shared) = self.state.upgrade() {
            let key = self.key;
            let reason = js::describe(&reason);
            let _ = with(&shared, |s, out| {
                s.close_stream(key, CLOSE_ABORTED, &reason, out)
            });
        }
    }
}

/// The underlying sink of a [`GossipStream`]'s `writable` (called by the stream machinery).
#[wasm_bindgen(skip_typescript)]
pub struct StreamSink {
    state: Weak<RefCell<State>>,
    key: StreamKey,
}

#[wasm_bindgen]
impl StreamSink {
    /// Called by the `WritableStream` for each chunk.
    pub fn write(&self, chunk: JsValue) -> Promise {
        let Some(bytes) = js::raw_bytes(&chunk) else {
            return rejected(
                UsageError::InvalidArgument {
                    argument: "chunk",
                    reason: "write Uint8Array chunks".into(),
                }
                .into(),
            );
        };
        let Some(shared) = self.state.upgrade() else {
            return rejected(crate::error::ClusterError::Left.into());
        };
        let key = self.key;
        with(&shared, |s, out| s.write(key, bytes, out)).unwrap_or_else(rejected)
    }

    /// Called once every write completed: closes the whole stream normally.
    pub fn close(&self) {
        if let Some(shared) = self.state.upgrade() {
            let key = self.key;
            let _ = with(&shared, |s, out| s.close_stream(key, 0, "", out));
        }
    }

    /// Called when the writer aborts: closes the whole stream.
    pub fn abort(&self, reason: JsValue) {
        if let Some(shared) = self.state.upgrade() {
            let key = self.key;
            let reason = js::describe(&reason);
            let _ = with(&shared, |s, out| {
                s.close_stream(key, CLOSE_ABORTED, &reason, out)
            });
        }
    }
}

// Debug output names what JavaScript would see, never the driver's internals.
impl std::fmt::Debug for GossipNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("GossipNode");
        if let Ok(s) = self.shared.try_borrow() {
            d.field("id", &s.node.id());
        }
        d.finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("kind", &self.kind)
            .field("from", &self.from)
            .field("topic", &self.topic)
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for GossipStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipStream")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for StreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSource")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for StreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSink")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}
