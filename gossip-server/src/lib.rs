//! The tokio driver of `gossip-core`: an axum WebSocket router to mount in your own service, a WebSocket client, UDP with TCP fallback, and the `gossip-node` CLI. Its implementation arrives with the native-driver milestone (issue 4); until then this crate has no items.

#![deny(missing_docs)]
