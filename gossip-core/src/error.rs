//! Typed errors of the wire pipeline, grouped by cause.
//!
//! Every way a frame can be refused maps to exactly one variant, so a driver can count drops by
//! [`WireError::reason`] without parsing messages. No decoder path panics: the proptest in
//! `tests/decode_never_panics.rs` and the fuzz target in `fuzz/` hold the decoder to that.
//! None of the decode errors changed node state, except where a variant says otherwise.

use thiserror::Error;

/// Why an inbound frame was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes do not form a valid frame. Nothing was recorded.
    #[error("malformed frame: {0}")]
    Malformed(#[from] Malformed),
    /// The frame could not be authenticated (cluster key or origin signature). Nothing was recorded.
    #[error("unauthenticated frame: {0}")]
    Unauthenticated(#[from] Unauthenticated),
    /// The frame was seen before, or its timestamp is outside the acceptance window. Nothing was recorded.
    #[error("replayed frame: {0}")]
    Replayed(#[from] Replayed),
    /// A size limit was exceeded. If the signature had already verified, the message id was
    /// recorded as seen, so the same oversized message is not decoded again.
    #[error("frame too large: {0}")]
    TooLarge(#[from] TooLarge),
    /// The frame was made by an incompatible protocol version or uses a kind this node does not know.
    /// Nothing was recorded.
    #[error("incompatible frame: {0}")]
    Incompatible(#[from] Incompatible),
}

impl WireError {
    /// A short, stable label for metrics (`drops{reason=...}`).
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::Malformed(_) => "malformed",
            WireError::Unauthenticated(_) => "unauthenticated",
            WireError::Replayed(Replayed::Duplicate) => "duplicate",
            WireError::Replayed(Replayed::Copies) => "copies",
            WireError::Replayed(_) => "replayed",
            WireError::TooLarge(_) => "too_large",
            WireError::Incompatible(_) => "incompatible",
        }
    }
}

/// The bytes are not a well-formed frame.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// The input ended before a fixed-size field was complete.
    #[error("truncated: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes the layout requires at this point.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// Reserved flag bits were set.
    #[error("reserved flag bits set: {0:#04x}")]
    Flags(u8),
    /// The payload encoding byte names no known encoding.
    #[error("unknown payload encoding {0}")]
    Encoding(u8),
    /// The compressed payload is corrupt or does not inflate to its declared size.
    #[error("corrupt compressed payload")]
    Compression,
    /// The payload does not decode as the message its kind announces.
    #[error("payload does not decode: {0}")]
    Payload(String),
}

/// The frame is not authentic.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unauthenticated {
    /// No key in the keyring opens the frame (wrong cluster key, or the bytes were altered).
    #[error("no cluster key opens the frame")]
    Decrypt,
    /// The frame is in plain text but this node requires encryption.
    #[error("plain-text frame refused: encryption is required")]
    PlaintextRefused,
    /// The frame is encrypted but this node has no cluster key.
    #[error("encrypted frame refused: this node has no cluster key")]
    NoClusterKey,
    /// The origin is not a valid Ed25519 public key, or is a weak (small-order) one.
    #[error("origin is not a valid public key")]
    OriginKey,
    /// The origin's signature does not verify.
    #[error("bad origin signature")]
    Signature,
}

/// The frame was accepted before, or is too old or too new to be checked against the seen-set.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replayed {
    /// The same (origin, message id) was already accepted inside the window.
    #[error("duplicate message")]
    Duplicate,
    /// The message is older than the acceptance window.
    #[error("message is {age_ms} ms old, older than the {window_ms} ms window")]
    TooOld {
        /// Age of the message against the local clock.
        age_ms: u64,
        /// The configured window.
        window_ms: u64,
    },
    /// The message claims a time too far ahead of the local clock.
    #[error("message is {ahead_ms} ms in the future, more than the allowed {max_ms} ms")]
    FromFuture {
        /// How far ahead of the local clock it is.
        ahead_ms: u64,
        /// The configured tolerance.
        max_ms: u64,
    },
    /// The seen-set was full and had to forget messages at least this old, so it refuses them.
    #[error("message is below the replay floor after seen-set eviction")]
    BelowFloor,
    /// A gossip frame whose every record was accepted before: it could change nothing, so its
    /// own signature was not checked and its id not remembered (it is no proof of its sender).
    #[error("gossip frame carries only records already accepted")]
    Copies,
}

/// A size limit was exceeded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TooLarge {
    /// The frame is larger than `Limits::max_frame_bytes`.
    #[error("frame of {size} bytes exceeds the {max} byte limit")]
    Frame {
        /// Actual size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// The payload is (or would inflate to) more than `Limits::max_payload_bytes`.
    #[error("payload of {size} bytes exceeds the {max} byte limit")]
    Payload {
        /// Declared or actual size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// A list in the message has more entries than `Limits::max_items`.
    #[error("{what} has {count} entries, more than the {max} allowed")]
    Items {
        /// Which field.
        what: &'static str,
        /// Entries found.
        count: usize,
        /// Limit.
        max: usize,
    },
}

/// The frame comes from an incompatible peer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Incompatible {
    /// The protocol version byte is not one this node speaks.
    #[error("protocol version {0} is not supported")]
    Version(u8),
    /// The message kind is unknown to this node (it is dropped, never relayed).
    #[error("unknown message kind {0}")]
    Kind(u8),
}

/// Why an outbound message could not be encoded. Nothing was sent and no state changed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The message or the resulting frame exceeds a configured limit.
    #[error("message too large: {0}")]
    TooLarge(#[from] TooLarge),
    /// The message could not be serialized.
    #[error("message does not serialize: {0}")]
    Serialize(String),
}

/// Misuse of the keyring API.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringError {
    /// The primary key cannot be removed; make another key primary first.
    #[error("the primary key cannot be removed")]
    RemovePrimary,
    /// The key is not in the keyring.
    #[error("key not in keyring")]
    UnknownKey,
    /// The keyring already holds the maximum number of keys.
    #[error("keyring is full ({0} keys)")]
    Full(usize),
    /// A key in text form could not be parsed (64 hex digits or base64 of 32 bytes expected).
    #[error("invalid cluster key text")]
    Parse,
}
