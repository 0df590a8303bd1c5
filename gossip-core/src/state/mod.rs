//! Replicated per-member key-value state (the `state` feature).
//!
//! Every member owns one map. Each write gets the owner's next version (a counter per owner
//! and per life, see [`messages::StateEntry`]) and is signed by the owner, so whoever relays an
//! entry cannot alter it, and nobody but the owner can write or delete its keys. Fresh writes
//! ride the gossip backlog like metadata; anti-entropy (kind 35) exchanges one digest entry
//! per owner (its highest contiguous version) and sends only newer entries, cut to the sync
//! budget. Deletes are tombstones, collected after [`StateConfig::tombstone_grace_ms`]; a
//! replica that fell behind a collected tombstone is rebuilt from scratch rather than patched,
//! so a deleted key never comes back. See `docs/STATE.md`.

pub mod messages;
pub(crate) mod store;

pub use self::store::StateValue;

/// Settings of the replicated state: sizes, timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateConfig {
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes. With the key and the 150-odd bytes of a signed entry it must fit
    /// in `Config::max_sync_bytes`, or the entry could never be synced.
    pub max_value_bytes: usize,
    /// Keys per member, tombstones included until they are collected.
    pub max_keys_per_member: usize,
    /// Bytes of keys and values per member, tombstones (their keys) included.
    pub max_bytes_per_member: usize,
    /// Bytes of keys and values this node holds for the whole cluster.
    pub max_cluster_bytes: usize,
    /// How long a tombstone is kept after this node learned it, so that it reaches everyone
    /// before it is forgotten. A member away longer than this is resynced from scratch.
    pub tombstone_grace_ms: u64,
    /// Interval of the state anti-entropy round (one random live member per round).
    pub sync_interval_ms: u64,
    /// Watches a node may hold at once.
    pub max_watches: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            max_key_bytes: 256,
            max_value_bytes: 16 * 1024,
            max_keys_per_member: 4_096,
            max_bytes_per_member: 1024 * 1024,
            max_cluster_bytes: 256 * 1024 * 1024,
            tombstone_grace_ms: 60_000,
            sync_interval_ms: 1_000,
            max_watches: 1_024,
        }
    }
}

/// A write refused by a size limit (locally, before anything was signed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateLimit {
    /// The key is longer than [`StateConfig::max_key_bytes`].
    #[error("key of {len} bytes exceeds the {max} byte limit")]
    KeyTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is larger than [`StateConfig::max_value_bytes`].
    #[error("value of {len} bytes exceeds the {max} byte limit")]
    ValueTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The member would own more than [`StateConfig::max_keys_per_member`] keys.
    #[error("more than {max} keys for one member")]
    TooManyKeys {
        /// The limit.
        max: usize,
    },
    /// The member's map would exceed [`StateConfig::max_bytes_per_member`].
    #[error("member state of {size} bytes exceeds the {max} byte limit")]
    MemberBytes {
        /// The resulting size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// This node's copy of the cluster's state would exceed [`StateConfig::max_cluster_bytes`].
    #[error("cluster state of {size} bytes exceeds the {max} byte limit")]
    ClusterBytes {
        /// The resulting size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a state command was refused. Nothing was signed or sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A size limit.
    #[error(transparent)]
    Limit(#[from] StateLimit),
    /// The node has left the cluster.
    #[error("the node has left the cluster")]
    Left,
    /// This life's version counter is exhausted (2^64 writes).
    #[error("version counter exhausted")]
    VersionExhausted,
    /// [`StateConfig::max_watches`] watches are open.
    #[error("too many watches (at most {max})")]
    TooManyWatches {
        /// The limit.
        max: usize,
    },
    /// The entry could not be encoded.
    #[error(transparent)]
    Encode(#[from] crate::error::EncodeError),
}

/// A watch on keys by prefix, returned by `Node::state_watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchId(pub u64);
