//! The browser driver of `gossip-core` (wasm-bindgen, packaged for npm). Its implementation arrives with the browser milestone (issue 5); until then this crate has no items.

#![deny(missing_docs)]
