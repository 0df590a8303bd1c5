//! Cluster services from JavaScript: quorum requests (always), the replicated per-key state
//! (cargo feature `state`), key ownership (cargo feature `ownership`) and named endpoints (cargo
//! feature `endpoints`).
//!
//! The state and ownership code of the core is about 39 KB gzipped and endpoints about 9 KB more,
//! more than the default package's budget leaves, so those are built only into the larger
//! `pkg-full/` flavour (`cargo xtask wasm --full`); the default package has quorum requests only
//! (docs/STATE.md and docs/ENDPOINTS.md, "From JavaScript").

use gossip_core::{FailReason, NodeId, Quorum, QuorumOutcome};
use js_sys::{Array, Object, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};

use crate::api::{GossipNode, Message, MessageKind};
use crate::driver::{Deferred, Delivery};
use crate::error::{GossipError, UsageError};
use crate::js::{self, to_js_error};

type JsResult<T> = Result<T, JsValue>;

#[wasm_bindgen]
extern "C" {
    /// `quorumRequest()` options.
    #[wasm_bindgen(typescript_type = "QuorumOptions")]
    pub type QuorumOptions;
    /// A promise of a quorum outcome.
    #[wasm_bindgen(typescript_type = "Promise<QuorumOutcome>")]
    pub type QuorumPromise;
    /// Member ids.
    #[wasm_bindgen(typescript_type = "string[]")]
    pub type MemberIds;
}

fn invalid(argument: &'static str, reason: &str) -> JsValue {
    to_js_error(
        &UsageError::InvalidArgument {
            argument,
            reason: reason.into(),
        }
        .into(),
    )
}

/// Most members one quorum request may address (the core bounds outstanding requests too).
const MAX_QUORUM_MEMBERS: u32 = 1_024;

/// `options.quorum`: `"first"`, `"majority"` (default), `"all"`, or a number of answers.
fn quorum_of(v: &JsValue) -> JsResult<Quorum> {
    if v.is_undefined() {
        return Ok(Quorum::Majority);
    }
    match (v.as_string().as_deref(), v.as_f64()) {
        (Some("first"), _) => Ok(Quorum::First),
        (Some("majority"), _) => Ok(Quorum::Majority),
        (Some("all"), _) => Ok(Quorum::All),
        (_, Some(n)) if (1.0..=f64::from(MAX_QUORUM_MEMBERS)).contains(&n) && n.fract() == 0.0 => {
            Ok(Quorum::Threshold(n as usize))
        }
        _ => Err(invalid(
            "options.quorum",
            "expected \"first\", \"majority\", \"all\" or a whole number of answers",
        )),
    }
}

fn member_ids(v: &JsValue) -> JsResult<Vec<NodeId>> {
    if !Array::is_array(v) {
        return Err(invalid("members", "expected an array of member ids"));
    }
    let arr: &Array = v.unchecked_ref();
    if arr.length() == 0 || arr.length() > MAX_QUORUM_MEMBERS {
        return Err(invalid("members", "give between 1 and 1024 member ids"));
    }
    let mut ids = Vec::with_capacity(arr.length() as usize);
    for m in arr.iter() {
        let s = m
            .as_string()
            .ok_or_else(|| invalid("members", "must hold strings"))?;
        let id = js::parse_id(&s).map_err(|e| to_js_error(&e))?;
        // The same member twice would count its answer twice.
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn reason_text(r: FailReason) -> &'static str {
    match r {
        FailReason::Timeout => "timeout",
        FailReason::MemberDown => "memberDown",
        FailReason::Unreachable => "unreachable",
    }
}

/// A quorum outcome as JavaScript sees it: answers as `Message`s (kind "response").
pub(crate) fn outcome_js(o: QuorumOutcome) -> JsValue {
    let out = Object::new();
    js::set(&out, "reached", &o.reached.into());
    let answered: Array = o
        .answered
        .into_iter()
        .map(|(from, data)| {
            JsValue::from(Message::new(
                MessageKind::Response,
                from,
                String::new(),
                data,
                None,
            ))
        })
        .collect();
    js::set(&out, "answered", &answered);
    let failed: Array = o
        .failed
        .into_iter()
        .map(|(id, why)| {
            let f = Object::new();
            js::set(&f, "member", &id.to_string().into());
            js::set(&f, "reason", &reason_text(why).into());
            JsValue::from(f)
        })
        .collect();
    js::set(&out, "failed", &failed);
    let unanswered: Array = o
        .unanswered
        .into_iter()
        .map(|id| JsValue::from(id.to_string()))
        .collect();
    js::set(&out, "unanswered", &unanswered);
    out.into()
}

#[wasm_bindgen]
impl GossipNode {
    /// Sends the same request to each of `members` and resolves once `options.quorum` answers
    /// arrived (`reached: true`) or can no longer arrive (`reached: false`); never rejects for
    /// members that fail (they are listed in `failed`), only for bad arguments or a node that
    /// left.
    #[wasm_bindgen(js_name = quorumRequest)]
    pub fn quorum_request(
        &self,
        members: MemberIds,
        data: crate::api::Data,
        options: Option<QuorumOptions>,
    ) -> QuorumPromise {
        self.quorum_inner(
            members.as_ref(),
            data.as_ref(),
            options.as_ref().map(|o| o.as_ref()),
        )
        .unwrap_or_else(|e| Promise::reject(&e))
        .unchecked_into()
    }

    fn quorum_inner(
        &self,
        members: &JsValue,
        data: &JsValue,
        options: Option<&JsValue>,
    ) -> JsResult<Promise> {
        let undefined = JsValue::UNDEFINED;
        let options = options.unwrap_or(&undefined);
        let ids = member_ids(members)?;
        let bytes = js::data_to_bytes(data).map_err(|e| to_js_error(&e))?;
        let topic = crate::api::topic_of(options)?;
        let timeout_ms = crate::api::timeout_of(options)?;
        let quorum = quorum_of(&js::get(options, "quorum"))?;
        let (promise, done) = Deferred::new();
        self.run(|s, _| {
            let now = s.now();
            let id = s
                .node
                .quorum_request(now, &ids, &topic, bytes, quorum, timeout_ms)?;
            // The outcome may already be queued (no member reachable): it is read after this.
            s.track_quorum(id, done);
            Ok::<_, gossip_core::CommandError>(())
        })?
        .map_err(|e| to_js_error(&GossipError::from(e)))?;
        Ok(promise)
    }
}

/// Queues a quorum's settlement.
pub(crate) fn settle_quorum(d: Deferred, o: QuorumOutcome, out: &mut Vec<Delivery>) {
    out.push(Delivery::Resolve(d, outcome_js(o)));
}

#[cfg(feature = "state")]
mod state {
    use gossip_core::state::StateValue;
    use js_sys::{Array, Object, Uint8Array};
    use wasm_bindgen::prelude::*;

    use super::{JsResult, invalid};
    use crate::api::{GossipNode, MetadataValue};
    use crate::error::GossipError;
    use crate::js::{self, to_js_error};

    #[wasm_bindgen(typescript_custom_section)]
    const TS_STATE_TYPES: &'static str = include_str!("types-state.d.ts");

    #[wasm_bindgen]
    extern "C" {
        /// One key of a member's state, or undefined.
        #[wasm_bindgen(typescript_type = "StateValue | undefined")]
        pub type MaybeStateValue;
        /// Keys of a member's state.
        #[wasm_bindgen(typescript_type = "StateValue[]")]
        pub type StateValues;
        /// A write's version, or null.
        #[wasm_bindgen(typescript_type = "number | null")]
        pub type MaybeVersion;
    }

    fn err(e: gossip_core::state::StateError) -> JsValue {
        to_js_error(&GossipError::from(e))
    }

    /// `{ key, value, text, version }` (text: the value as UTF-8, invalid sequences replaced).
    fn value_js(v: StateValue) -> JsValue {
        let o = Object::new();
        js::set(&o, "key", &v.key.as_str().into());
        js::set(
            &o,
            "text",
            &String::from_utf8_lossy(&v.value).as_ref().into(),
        );
        js::set(&o, "value", &Uint8Array::from(v.value.as_slice()).into());
        js::set(&o, "version", &(v.version as f64).into());
        o.into()
    }

    /// A `state` event: `{ owner, key, version, value, text }` (value and text null: deleted).
    pub(crate) fn change_js(
        owner: gossip_core::NodeId,
        key: String,
        version: u64,
        value: Option<Vec<u8>>,
    ) -> JsValue {
        let o = Object::new();
        js::set(&o, "owner", &owner.to_string().into());
        js::set(&o, "key", &key.into());
        js::set(&o, "version", &(version as f64).into());
        match value {
            Some(v) => {
                js::set(&o, "text", &String::from_utf8_lossy(&v).as_ref().into());
                js::set(&o, "value", &Uint8Array::from(v.as_slice()).into());
            }
            None => {
                js::set(&o, "text", &JsValue::NULL);
                js::set(&o, "value", &JsValue::NULL);
            }
        }
        o.into()
    }

    #[wasm_bindgen]
    impl GossipNode {
        /// Sets `key` in this member's replicated state (a string or bytes); returns the
        /// write's version. Throws `STATE_LIMIT` when a size limit refuses it.
        #[wasm_bindgen(js_name = setState)]
        pub fn set_state(&self, key: &str, value: MetadataValue) -> JsResult<f64> {
            let bytes = js::metadata_value(value.as_ref())
                .ok_or_else(|| invalid("value", "must be a string or a Uint8Array"))?;
            self.run(|s, _| {
                let now = s.now();
                s.node.state_set(now, key, bytes)
            })?
            .map(|v| v as f64)
            .map_err(err)
        }

        /// Deletes `key` from this member's state; returns the deletion's version, or null
        /// when the key was not set.
        #[wasm_bindgen(js_name = deleteState)]
        pub fn delete_state(&self, key: &str) -> JsResult<MaybeVersion> {
            self.run(|s, _| {
                let now = s.now();
                s.node.state_delete(now, key)
            })?
            .map(|v| {
                v.map_or(JsValue::NULL, |v| (v as f64).into())
                    .unchecked_into()
            })
            .map_err(err)
        }

        /// The live value of `key` in `member`'s state, as this node holds it.
        #[wasm_bindgen(js_name = getState)]
        pub fn get_state(&self, member: &str, key: &str) -> JsResult<MaybeStateValue> {
            let owner = js::parse_id(member).map_err(|e| to_js_error(&e))?;
            let s = self.state()?;
            Ok(s.node
                .state_get(&owner, key)
                .map_or(JsValue::UNDEFINED, value_js)
                .unchecked_into())
        }

        /// Every live key of `member`'s state, in key order.
        #[wasm_bindgen(js_name = stateEntries)]
        pub fn state_entries(&self, member: &str) -> JsResult<StateValues> {
            let owner = js::parse_id(member).map_err(|e| to_js_error(&e))?;
            let s = self.state()?;
            Ok(s.node
                .state_entries(&owner)
                .into_iter()
                .map(value_js)
                .collect::<Array>()
                .unchecked_into())
        }

        /// Starts reporting changes of keys starting with `prefix` as `state` events (and
        /// dropped maps as `stateCleared`); returns the watch's number for `unwatchState`.
        /// `watchState(prefix, listener)` in the package wraps both.
        #[wasm_bindgen(js_name = watchStateRaw, skip_typescript)]
        pub fn watch_state_raw(&self, prefix: &str) -> JsResult<f64> {
            self.run(|s, _| s.node.state_watch(prefix))?
                .map(|w| w.0 as f64)
                .map_err(err)
        }

        /// Stops a watch started by `watchStateRaw`.
        #[wasm_bindgen(js_name = unwatchStateRaw, skip_typescript)]
        pub fn unwatch_state_raw(&self, watch: f64) -> JsResult<bool> {
            let id = gossip_core::state::WatchId(watch as u64);
            self.run(|s, _| s.node.state_unwatch(id))
        }
    }
}

#[cfg(feature = "state")]
pub(crate) use state::change_js;

#[cfg(feature = "ownership")]
mod ownership {
    use js_sys::Array;
    use wasm_bindgen::prelude::*;

    use super::{JsResult, invalid};
    use crate::api::{GossipNode, MetadataValue};
    use crate::js;

    /// Most owners one `owners()` call returns.
    const MAX_OWNERS: f64 = 1_024.0;

    fn key_bytes(key: &MetadataValue) -> JsResult<Vec<u8>> {
        js::metadata_value(key.as_ref())
            .ok_or_else(|| invalid("key", "must be a string or a Uint8Array"))
    }

    #[wasm_bindgen]
    impl GossipNode {
        /// The member that owns `key` among the live members (rendezvous hashing: every member
        /// with the same view gives the same answer); undefined after this node left.
        pub fn owner(&self, key: MetadataValue) -> JsResult<Option<String>> {
            let key = key_bytes(&key)?;
            let s = self.state()?;
            Ok(s.node.owner(&key).map(|id| id.to_string()))
        }

        /// The `n` owners of `key` among the live members, best first (all of them, ranked,
        /// when fewer are live).
        pub fn owners(&self, key: MetadataValue, n: f64) -> JsResult<super::MemberIds> {
            let key = key_bytes(&key)?;
            if !(1.0..=MAX_OWNERS).contains(&n) || n.fract() != 0.0 {
                return Err(invalid("n", "expected a whole number between 1 and 1024"));
            }
            let s = self.state()?;
            Ok(s.node
                .owners(&key, n as usize)
                .into_iter()
                .map(|id| JsValue::from(id.to_string()))
                .collect::<Array>()
                .unchecked_into())
        }
    }
}

#[cfg(feature = "endpoints")]
mod endpoints {
    use gossip_core::endpoints::{EndpointError, Holder, Policy};
    use js_sys::{Array, JsString, Object, Promise};
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::{JsCast, JsValue};

    use super::{JsResult, invalid};
    use crate::api::{GossipNode, StreamPromise};
    use crate::driver::Deferred;
    use crate::error::GossipError;
    use crate::js::{self, to_js_error};

    #[wasm_bindgen(typescript_custom_section)]
    const TS_ENDPOINT_TYPES: &'static str = include_str!("types-endpoints.d.ts");

    #[wasm_bindgen]
    extern "C" {
        /// The live holders of a name.
        #[wasm_bindgen(typescript_type = "EndpointHolder[]")]
        pub type EndpointHolders;
        /// Every held name with its number of holders.
        #[wasm_bindgen(typescript_type = "EndpointName[]")]
        pub type EndpointNames;
        /// `openStreamToEndpoint()` options.
        #[wasm_bindgen(typescript_type = "EndpointStreamOptions")]
        pub type EndpointStreamOptions;
    }

    /// Longest name copied out of JavaScript, in UTF-16 units. Far above what the core's
    /// `check_name` accepts (64 bytes by default), which then decides; checked first so that a
    /// caller's huge string is refused without being copied into the module's memory.
    const MAX_NAME_UNITS: u32 = 1_024;

    fn err(e: EndpointError) -> JsValue {
        to_js_error(&GossipError::from(e))
    }

    /// A name from JavaScript: a string of bounded length (the core checks the rest).
    fn name_of(v: &JsValue) -> JsResult<String> {
        let s = v
            .dyn_ref::<JsString>()
            .ok_or_else(|| invalid("name", "must be a string"))?;
        if s.length() > MAX_NAME_UNITS {
            return Err(invalid("name", "longer than 1024 characters"));
        }
        Ok(String::from(s))
    }

    /// `options.policy`: `"any"` (the default), `"nearest"` or `"all"`.
    fn policy_of(options: &JsValue) -> JsResult<Policy> {
        let p = js::get(options, "policy");
        if p.is_undefined() {
            return Ok(Policy::Any);
        }
        match p.as_string().as_deref() {
            Some("any") => Ok(Policy::Any),
            Some("nearest") => Ok(Policy::Nearest),
            Some("all") => Ok(Policy::All),
            _ => Err(invalid(
                "options.policy",
                "expected \"any\", \"nearest\" or \"all\"",
            )),
        }
    }

    /// `{ id, state, rttMicros }`.
    fn holder_js(h: Holder) -> JsValue {
        let o = Object::new();
        js::set(&o, "id", &h.id.to_string().into());
        js::set(&o, "state", &h.state.as_str().into());
        js::set(
            &o,
            "rttMicros",
            &h.rtt_micros.map_or(JsValue::NULL, |us| (us as f64).into()),
        );
        o.into()
    }

    #[wasm_bindgen]
    impl GossipNode {
        /// Holds `name` (1 to 64 ASCII letters, digits and `-_.:/`): every member resolves it
        /// to this node within a few gossip rounds, until `unregisterEndpoint`, this node's
        /// death or its leave. `false` if it already held it. Requests by name arrive as
        /// `request` events whose topic is the name; streams by name as `stream` events.
        #[wasm_bindgen(js_name = registerEndpoint)]
        pub fn register_endpoint(
            &self,
            #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
        ) -> JsResult<bool> {
            let name = name_of(&name)?;
            self.run(|s, _| {
                let now = s.now();
                s.node.endpoint_register(now, &name)
            })?
            .map_err(err)
        }

        /// Stops holding `name`; `false` if this node did not hold it.
        #[wasm_bindgen(js_name = unregisterEndpoint)]
        pub fn unregister_endpoint(
            &self,
            #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
        ) -> JsResult<bool> {
            let name = name_of(&name)?;
            self.run(|s, _| {
                let now = s.now();
                s.node.endpoint_unregister(now, &name)
            })?
            .map_err(err)
        }

        /// The live holders of `name` as this node sees them (itself included if it holds
        /// it), in id order.
        pub fn resolve(
            &self,
            #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
        ) -> JsResult<EndpointHolders> {
            let name = name_of(&name)?;
            let s = self.state()?;
            Ok(s.node
                .endpoint_holders(&name)
                .map_err(err)?
                .into_iter()
                .map(holder_js)
                .collect::<Array>()
                .unchecked_into())
        }

        /// Every name a live member holds, with its number of holders, in name order.
        pub fn endpoints(&self) -> JsResult<EndpointNames> {
            let s = self.state()?;
            Ok(s.node
                .endpoint_names()
                .into_iter()
                .map(|(name, n)| {
                    let o = Object::new();
                    js::set(&o, "name", &name.into());
                    js::set(&o, "holders", &(n as f64).into());
                    JsValue::from(o)
                })
                .collect::<Array>()
                .unchecked_into())
        }

        /// Sends one request by name (the core's `endpoint_request`: topic the name, the
        /// request limits) and returns `[holderId, Promise<Message>]` pairs.
        /// `requestEndpoint(name, data, options)` in the package gathers them.
        #[wasm_bindgen(js_name = requestEndpointRaw, skip_typescript)]
        pub fn request_endpoint_raw(
            &self,
            name: JsValue,
            data: JsValue,
            options: JsValue,
        ) -> JsResult<Array> {
            let name = name_of(&name)?;
            let bytes = js::data_to_bytes(&data).map_err(|e| to_js_error(&e))?;
            let policy = policy_of(&options)?;
            let timeout_ms = crate::api::timeout_of(&options)?;
            self.run(|s, _| {
                let now = s.now();
                let sent = s
                    .node
                    .endpoint_request(now, &name, policy, bytes, timeout_ms)?;
                let pending = Array::new();
                for (to, id) in sent {
                    // Tracked before the node is drained: a request that fails at once settles
                    // its promise like any other.
                    let (promise, done) = Deferred::new();
                    s.track_request(id, done);
                    pending.push(&Array::of2(&to.to_string().into(), &promise));
                }
                Ok::<_, EndpointError>(pending)
            })?
            .map_err(err)
        }

        /// Opens a byte stream to the holder of `name` picked by `options.policy` (`"any"`, the
        /// default, or `"nearest"`; `"all"` is refused with `NOT_ONE`); resolves once it
        /// accepted.
        #[wasm_bindgen(js_name = openStreamToEndpoint)]
        pub fn open_stream_to_endpoint(
            &self,
            #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
            options: Option<EndpointStreamOptions>,
        ) -> StreamPromise {
            let attempt = || -> JsResult<Promise> {
                let name = name_of(&name)?;
                let policy =
                    policy_of(options.as_ref().map_or(&JsValue::UNDEFINED, |o| o.as_ref()))?;
                let (promise, done) = Deferred::new();
                self.run(|s, _| {
                    let now = s.now();
                    let (_, key) = s.node.endpoint_open_stream(now, &name, policy)?;
                    s.track_open(key, done);
                    Ok::<_, EndpointError>(())
                })?
                .map_err(err)?;
                Ok(promise)
            };
            attempt()
                .unwrap_or_else(|e| Promise::reject(&e))
                .unchecked_into()
        }
    }
}
