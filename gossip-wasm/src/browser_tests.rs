//! Tests of the JavaScript boundary that need a JavaScript engine but no server (headless
//! Chromium through wasm-bindgen-test; `cargo xtask test` runs them).

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

use crate::api::GossipNode;
use crate::js::{data_to_bytes, from_value};
use crate::msgpack;

wasm_bindgen_test_configure!(run_in_browser);

fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

async fn create_error(options: JsValue) -> (String, String) {
    let promise: js_sys::Promise = GossipNode::create(options.unchecked_into()).unchecked_into();
    let err = JsFuture::from(promise)
        .await
        .expect_err("create must reject");
    let code = Reflect::get(&err, &"code".into())
        .unwrap()
        .as_string()
        .unwrap_or_default();
    let message = err.unchecked_ref::<js_sys::Error>().message().into();
    (code, message)
}

#[wasm_bindgen_test]
fn json_values_round_trip_through_messagepack() {
    let inner = Array::of3(&1.into(), &(-200).into(), &2.5.into());
    let value = obj(&[
        ("job", "resize".into()),
        ("ok", true.into()),
        ("none", JsValue::NULL),
        ("skipped", JsValue::UNDEFINED),
        ("nums", inner.into()),
        ("bytes", Uint8Array::from(&[1u8, 2, 3][..]).into()),
    ]);
    let bytes = data_to_bytes(&value).unwrap();
    let back = from_value(msgpack::decode(&bytes).unwrap());
    let json = js_sys::JSON::stringify(&back).unwrap().as_string().unwrap();
    assert_eq!(
        json,
        r#"{"job":"resize","ok":true,"none":null,"nums":[1,-200,2.5],"bytes":{"0":1,"1":2,"2":3}}"#
    );
    // Raw bytes go as they are.
    let raw = Uint8Array::from(&[9u8, 8, 7][..]);
    assert_eq!(data_to_bytes(&raw.into()).unwrap(), [9, 8, 7]);
}

#[wasm_bindgen_test]
fn hostile_keys_stay_plain_keys() {
    // {"__proto__": {"polluted": true}} from a peer must not change the object's prototype.
    let mut bytes = Vec::new();
    msgpack::encode(
        &msgpack::Value::Map(vec![(
            "__proto__".into(),
            msgpack::Value::Map(vec![("polluted".into(), msgpack::Value::Bool(true))]),
        )]),
        &mut bytes,
    );
    let v = from_value(msgpack::decode(&bytes).unwrap());
    assert!(Reflect::get(&v, &"polluted".into()).unwrap().is_undefined());
    assert!(Object::get_prototype_of(&v) == Object::get_prototype_of(&Object::new()));
    let keys = Object::keys(v.unchecked_ref::<Object>());
    assert_eq!(keys.get(0).as_string().as_deref(), Some("__proto__"));
}

#[wasm_bindgen_test]
fn cycles_and_functions_are_refused() {
    let cyclic = Object::new();
    Reflect::set(&cyclic, &"self".into(), &cyclic).unwrap();
    let err = data_to_bytes(&cyclic.into()).unwrap_err();
    assert_eq!(err.code(), "ENCODE");
    let f = js_sys::Function::new_no_args("return 1");
    assert_eq!(data_to_bytes(&f.into()).unwrap_err().code(), "ENCODE");
    assert_eq!(
        data_to_bytes(&JsValue::UNDEFINED).unwrap_err().code(),
        "INVALID_ARGUMENT"
    );
}

#[wasm_bindgen_test]
async fn bad_options_are_refused_with_a_code() {
    let (code, message) = create_error(obj(&[("seeds", Array::new().into())])).await;
    assert_eq!(code, "INVALID_OPTION");
    assert!(message.contains("seeds"), "{message}");
    let (code, _) = create_error(obj(&[("seeds", "http://127.0.0.1:1/".into())])).await;
    assert_eq!(code, "INVALID_OPTION");
    let (code, message) = create_error(obj(&[
        ("seeds", "ws://127.0.0.1:9/gossip/ws".into()),
        ("clusterKey", "not a key".into()),
    ]))
    .await;
    assert_eq!(code, "INVALID_OPTION");
    assert!(message.contains("clusterKey"), "{message}");
    let (code, _) = create_error(JsValue::from("not an object")).await;
    assert_eq!(code, "INVALID_OPTION");
}

#[wasm_bindgen_test]
async fn unreachable_seeds_are_reported() {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    let seeds = Array::of2(
        &"ws://127.0.0.1:9/gossip/ws".into(),
        &"ws://127.0.0.1:9/other".into(),
    );
    let (code, message) = create_error(obj(&[("seeds", seeds.into())])).await;
    assert_eq!(code, "CONNECT");
    assert!(message.contains("any seed"), "{message}");
    assert!(message.contains("127.0.0.1:9"), "{message}");
}

#[wasm_bindgen_test]
fn float_map_keys_are_spelled_as_javascript_does() {
    // {1.5: 1, 1e21: 2, inf: 3} with f64 keys (another language's encoder may write them).
    let mut bytes = vec![0x83];
    for (i, key) in [1.5f64, 1e21, f64::INFINITY].into_iter().enumerate() {
        bytes.push(0xcb);
        bytes.extend_from_slice(&key.to_be_bytes());
        bytes.push(i as u8 + 1);
    }
    let msgpack::Value::Map(entries) = msgpack::decode(&bytes).unwrap() else {
        panic!("not a map");
    };
    let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["1.5", "1e+21", "Infinity"]);
}
