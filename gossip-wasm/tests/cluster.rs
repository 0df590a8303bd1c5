//! The browser member against a real native cluster, in headless Chromium.
//!
//! Run by `cargo xtask test`, which starts the cluster (`tests/src/bin/wasm-cluster.rs`) and
//! compiles this test with its seeds, key and token (`GOSSIP_WASM_*`); the scenario itself is
//! in `cluster.js`, written against the JavaScript API as an application would use it.

#![cfg(target_arch = "wasm32")]

use gossip_wasm::GossipNode;
use js_sys::{Array, Function};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/tests/cluster.js")]
extern "C" {
    #[wasm_bindgen(catch)]
    async fn scenario(
        create: &Function,
        seeds: Array,
        key: &str,
        token: &str,
    ) -> Result<JsValue, JsValue>;
}

#[wasm_bindgen_test]
async fn browser_member_of_a_native_cluster() {
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
    let seeds: Array = seeds.split(',').map(JsValue::from).collect();
    match scenario(create.as_ref().unchecked_ref(), seeds, key, token).await {
        Ok(v) => assert_eq!(v.as_string().as_deref(), Some("ok")),
        Err(e) => {
            let msg = e
                .dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
                .unwrap_or_else(|| format!("{e:?}"));
            panic!("scenario failed: {msg}");
        }
    }
}
