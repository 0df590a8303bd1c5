//! Conversions at the JavaScript boundary: errors, message data, options, member records.

use gossip_core::{ClusterKey, Config, Member, NodeId};
use js_sys::{Array, ArrayBuffer, Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};

use crate::error::{GossipError, UsageError};
use crate::msgpack::{self, MAX_DEPTH, Value};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    pub(crate) fn performance_now() -> f64;
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buf: &mut [u8]) -> Result<(), JsValue>;
    // Node returns a Timeout object, browsers a number: kept as an opaque value.
    #[wasm_bindgen(js_name = setTimeout)]
    pub(crate) fn set_timeout(callback: &Function, ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    pub(crate) fn clear_timeout(handle: &JsValue);
    #[wasm_bindgen(js_name = queueMicrotask)]
    pub(crate) fn queue_microtask(callback: &JsValue);
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    pub(crate) fn console_error(message: &str, error: &JsValue);
}

/// 32 bytes from `crypto.getRandomValues`.
pub(crate) fn random_32() -> Result<[u8; 32], GossipError> {
    let mut buf = [0u8; 32];
    get_random_values(&mut buf).map_err(|e| UsageError::InvalidOption {
        option: "crypto",
        reason: format!("crypto.getRandomValues is unavailable: {}", describe(&e)),
    })?;
    Ok(buf)
}

/// A JavaScript `Error` with the driver's `code`.
pub(crate) fn to_js_error(e: &GossipError) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    err.set_name("GossipError");
    let _ = Reflect::set(&err, &"code".into(), &e.code().into());
    err.into()
}

/// Best-effort text of a thrown JavaScript value.
pub(crate) fn describe(v: &JsValue) -> String {
    v.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| v.as_string())
        .unwrap_or_else(|| format!("{v:?}"))
}

pub(crate) fn set(obj: &Object, key: &str, value: &JsValue) {
    // Setting a property on a fresh plain object cannot throw.
    let _ = Reflect::set(obj, &key.into(), value);
}

pub(crate) fn get(obj: &JsValue, key: &str) -> JsValue {
    if !obj.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

/// Message data as bytes: a `Uint8Array` or `ArrayBuffer` as is, any other JSON-able value as
/// MessagePack (see [`crate::msgpack`]).
pub(crate) fn data_to_bytes(v: &JsValue) -> Result<Vec<u8>, GossipError> {
    if let Some(bytes) = raw_bytes(v) {
        return Ok(bytes);
    }
    if v.is_undefined() {
        return Err(UsageError::InvalidArgument {
            argument: "data",
            reason: "undefined cannot be sent (use null, a value or a Uint8Array)".into(),
        }
        .into());
    }
    let value = to_value(v, 0)?;
    let mut out = Vec::new();
    msgpack::encode(&value, &mut out);
    Ok(out)
}

/// The bytes of a `Uint8Array` or `ArrayBuffer`.
pub(crate) fn raw_bytes(v: &JsValue) -> Option<Vec<u8>> {
    if let Some(u) = v.dyn_ref::<Uint8Array>() {
        return Some(u.to_vec());
    }
    v.dyn_ref::<ArrayBuffer>()
        .map(|b| Uint8Array::new(b).to_vec())
}

const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

fn to_value(v: &JsValue, depth: usize) -> Result<Value, GossipError> {
    if depth > MAX_DEPTH {
        return Err(UsageError::Encode(format!(
            "nested deeper than {MAX_DEPTH} levels (a cycle?)"
        ))
        .into());
    }
    if v.is_null() || v.is_undefined() {
        return Ok(Value::Nil);
    }
    if let Some(b) = v.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Some(f) = v.as_f64() {
        return Ok(if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER {
            if f >= 0.0 {
                Value::UInt(f as u64)
            } else {
                Value::Int(f as i64)
            }
        } else {
            Value::F64(f)
        });
    }
    if let Some(s) = v.as_string() {
        return Ok(Value::Str(s));
    }
    if let Some(bytes) = raw_bytes(v) {
        return Ok(Value::Bin(bytes));
    }
    if Array::is_array(v) {
        let arr: &Array = v.unchecked_ref();
        let mut items = Vec::with_capacity(arr.length() as usize);
        for item in arr.iter() {
            items.push(to_value(&item, depth + 1)?);
        }
        return Ok(Value::Array(items));
    }
    if v.is_function() || v.is_symbol() || v.is_bigint() {
        let kind = v.js_typeof().as_string().unwrap_or_default();
        return Err(UsageError::Encode(format!("a {kind} is not a JSON-able value")).into());
    }
    // Dates and other objects with toJSON encode as JSON.stringify would show them.
    let to_json = get(v, "toJSON");
    if let Some(f) = to_json.dyn_ref::<Function>() {
        let shown = f
            .call0(v)
            .map_err(|e| UsageError::Encode(format!("toJSON threw: {}", describe(&e))))?;
        return to_value(&shown, depth + 1);
    }
    let obj: &Object = v.unchecked_ref();
    let mut entries = Vec::new();
    for pair in Object::entries(obj).iter() {
        let pair: Array = pair.unchecked_into();
        let value = pair.get(1);
        // As JSON.stringify: properties holding undefined or functions are left out.
        if value.is_undefined() || value.is_function() || value.is_symbol() {
            continue;
        }
        let key = pair.get(0).as_string().unwrap_or_default();
        entries.push((key, to_value(&value, depth + 1)?));
    }
    Ok(Value::Map(entries))
}

/// A decoded MessagePack value as JavaScript.
pub(crate) fn from_value(v: Value) -> JsValue {
    match v {
        Value::Nil => JsValue::NULL,
        Value::Bool(b) => b.into(),
        Value::Int(n) => (n as f64).into(),
        Value::UInt(n) => (n as f64).into(),
        Value::F64(f) => f.into(),
        Value::Str(s) => s.into(),
        Value::Bin(b) => Uint8Array::from(b.as_slice()).into(),
        Value::Array(items) => items.into_iter().map(from_value).collect::<Array>().into(),
        Value::Map(entries) => {
            // Object.fromEntries defines own properties, so a peer's "__proto__" key stays a
            // plain key instead of replacing the object's prototype.
            let pairs: Array = entries
                .into_iter()
                .map(|(k, v)| Array::of2(&k.into(), &from_value(v)))
                .collect();
            Object::from_entries(&pairs)
                .map(JsValue::from)
                .unwrap_or(JsValue::NULL)
        }
    }
}

/// Parsed `GossipNode.create` options.
pub(crate) struct Options {
    pub config: Config,
    pub seeds: Vec<String>,
    pub key: Option<ClusterKey>,
    pub token: Option<String>,
    pub metadata: Vec<(String, Vec<u8>)>,
    pub identity: Option<[u8; 32]>,
    pub connect_timeout_ms: u64,
}

/// Most seeds accepted (each is tried in turn when the current server dies).
const MAX_SEEDS: usize = 64;

fn bad(option: &'static str, reason: impl Into<String>) -> GossipError {
    UsageError::InvalidOption {
        option,
        reason: reason.into(),
    }
    .into()
}

fn opt_string(options: &JsValue, key: &'static str) -> Result<Option<String>, GossipError> {
    let v = get(options, key);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.as_string()
        .map(Some)
        .ok_or_else(|| bad(key, "must be a string"))
}

impl Options {
    pub(crate) fn parse(options: &JsValue) -> Result<Options, GossipError> {
        if !options.is_object() {
            return Err(bad("options", "expected an object `{ name, seeds, ... }`"));
        }
        let preset = opt_string(options, "config")?;
        let mut config = match preset.as_deref() {
            None | Some("lan") => Config::lan(),
            Some("wan") => Config::wan(),
            Some("local") => Config::local(),
            Some(other) => {
                return Err(bad(
                    "config",
                    format!("`{other}` is not one of \"lan\", \"wan\", \"local\""),
                ));
            }
        };
        config.name = opt_string(options, "name")?.unwrap_or_else(|| "browser".into());

        let seeds_js = get(options, "seeds");
        let seeds: Vec<String> = if let Some(s) = seeds_js.as_string() {
            vec![s]
        } else if Array::is_array(&seeds_js) {
            let arr: &Array = seeds_js.unchecked_ref();
            arr.iter()
                .map(|s| {
                    s.as_string()
                        .ok_or_else(|| bad("seeds", "must hold strings"))
                })
                .collect::<Result<_, _>>()?
        } else {
            return Err(bad(
                "seeds",
                "required: a WebSocket URL or an array of them",
            ));
        };
        if seeds.is_empty() || seeds.len() > MAX_SEEDS {
            return Err(bad("seeds", format!("give between 1 and {MAX_SEEDS} URLs")));
        }
        for s in &seeds {
            if !(s.starts_with("ws://") || s.starts_with("wss://")) {
                return Err(bad("seeds", format!("`{s}` is not a ws:// or wss:// URL")));
            }
        }

        let key_js = get(options, "clusterKey");
        let key =
            if key_js.is_undefined() || key_js.is_null() {
                None
            } else if let Some(s) = key_js.as_string() {
                Some(s.parse::<ClusterKey>().map_err(|_| {
                    bad("clusterKey", "expected 64 hex digits or base64 of 32 bytes")
                })?)
            } else if let Some(b) = raw_bytes(&key_js) {
                let b: [u8; 32] = b
                    .try_into()
                    .map_err(|_| bad("clusterKey", "a byte key must be 32 bytes"))?;
                Some(ClusterKey::from_bytes(b))
            } else {
                return Err(bad("clusterKey", "expected a string or a Uint8Array"));
            };

        let token = opt_string(options, "token")?;

        let meta_js = get(options, "metadata");
        let mut metadata = Vec::new();
        if meta_js.is_object() {
            for pair in Object::entries(meta_js.unchecked_ref()).iter() {
                let pair: Array = pair.unchecked_into();
                let k = pair.get(0).as_string().unwrap_or_default();
                let v = metadata_value(&pair.get(1)).ok_or_else(|| {
                    bad(
                        "metadata",
                        format!("value of `{k}` must be a string or a Uint8Array"),
                    )
                })?;
                metadata.push((k, v));
            }
        } else if !meta_js.is_undefined() && !meta_js.is_null() {
            return Err(bad("metadata", "expected an object of strings"));
        }

        let id_js = get(options, "identity");
        let identity = if id_js.is_undefined() || id_js.is_null() {
            None
        } else {
            let b = raw_bytes(&id_js)
                .ok_or_else(|| bad("identity", "expected the 32-byte secret as a Uint8Array"))?;
            Some(
                b.try_into()
                    .map_err(|_| bad("identity", "the secret must be 32 bytes"))?,
            )
        };

        let timeout_js = get(options, "connectTimeoutMs");
        let connect_timeout_ms = if timeout_js.is_undefined() {
            5_000
        } else {
            match timeout_js.as_f64() {
                Some(ms) if (1.0..=600_000.0).contains(&ms) => ms as u64,
                _ => {
                    return Err(bad(
                        "connectTimeoutMs",
                        "expected milliseconds between 1 and 600000",
                    ));
                }
            }
        };

        Ok(Options {
            config,
            seeds,
            key,
            token,
            metadata,
            identity,
            connect_timeout_ms,
        })
    }
}

/// A metadata value: a string as UTF-8, or raw bytes.
pub(crate) fn metadata_value(v: &JsValue) -> Option<Vec<u8>> {
    v.as_string()
        .map(String::into_bytes)
        .or_else(|| raw_bytes(v))
}

/// Parses a member id given by the caller.
pub(crate) fn parse_id(s: &str) -> Result<NodeId, GossipError> {
    s.parse::<NodeId>().map_err(|_| {
        UsageError::InvalidArgument {
            argument: "memberId",
            reason: format!("`{s}` is not a member id (52 base32 characters)"),
        }
        .into()
    })
}

/// A member as JavaScript sees it (the member record of docs/DRIVERS.md, camelCase).
pub(crate) fn member_object(m: &Member, me: NodeId) -> JsValue {
    let o = Object::new();
    set(&o, "id", &m.id.to_string().into());
    set(&o, "short", &m.id.short().into());
    set(&o, "name", &m.name.as_str().into());
    set(&o, "state", &m.state.as_str().into());
    set(&o, "self", &(m.id == me).into());
    let addrs: Array = m
        .addrs
        .iter()
        .map(|a| JsValue::from(a.to_string()))
        .collect();
    set(&o, "addrs", &addrs);
    set(
        &o,
        "relay",
        &m.relay().map_or(JsValue::NULL, |r| r.to_string().into()),
    );
    set(&o, "incarnation", &(m.incarnation as f64).into());
    set(&o, "metadata", &metadata_object(m));
    set(
        &o,
        "rttMs",
        &m.rtt_micros
            .map_or(JsValue::NULL, |us| (us as f64 / 1_000.0).into()),
    );
    o.into()
}

/// A member's metadata, values as UTF-8 (lossy, as the status JSON shows them).
pub(crate) fn metadata_object(m: &Member) -> JsValue {
    let o = Object::new();
    for (k, v) in &m.metadata {
        set(&o, k, &String::from_utf8_lossy(v).as_ref().into());
    }
    o.into()
}

/// An event about a member that may no longer be known in detail.
pub(crate) fn member_ref(id: NodeId, m: Option<&Member>, me: NodeId) -> JsValue {
    match m {
        Some(m) => member_object(m, me),
        None => {
            let o = Object::new();
            set(&o, "id", &id.to_string().into());
            set(&o, "short", &id.short().into());
            o.into()
        }
    }
}
