//! Wire format of the replicated state: kinds 34 (`StateEntry`) and 35 (`StateSync`), see
//! `docs/PROTOCOL.md`. Decoded by the same size-checked MessagePack reader as every kind.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::TooLarge;
use crate::identity::NodeId;
use crate::limits::Limits;
use crate::wire::SignedPacket;

/// One key of a member's map, signed by that member (the packet's origin is the owner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    /// The owner's life: its incarnation when its node started. A higher life replaces the
    /// whole map (the owner restarted with an empty one).
    pub life: u64,
    /// The owner's version counter at this write: 1, 2, 3, ... within a life, one per write.
    pub version: u64,
    /// The key.
    pub key: String,
    /// The value, or nothing for a delete (a tombstone).
    pub value: Option<ByteBuf>,
}

/// One owner's line in a state digest: what the sender holds of that owner's map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDigest {
    /// The owner.
    pub owner: NodeId,
    /// The life the sender holds.
    pub life: u64,
    /// The highest version up to which the sender holds every write (or its successor).
    pub version: u64,
    /// A hash of the live `(key, version)` pairs, when the sender's copy is exactly the writes
    /// up to `version`; two holders at the same version with different hashes resync.
    pub hash: Option<u64>,
}

/// Flags of a [`StateBatch`].
pub mod batch_flags {
    /// A full copy: the receiver rebuilds the owner's map from it instead of patching its own
    /// (it fell behind a collected tombstone). Starts at version 0.
    pub const FULL: u8 = 1;
    /// Not cut: the batch reaches the sender's version for this owner.
    pub const DONE: u8 = 2;
}

/// Entries of one owner with versions in `(from, through]`, in version order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateBatch {
    /// The owner (every entry must be signed by it).
    pub owner: NodeId,
    /// The owner's life the entries belong to.
    pub life: u64,
    /// The receiver's version the batch continues from.
    pub from: u64,
    /// The sender holds nothing else of this owner's in `(from, through]`.
    pub through: u64,
    /// [`batch_flags`].
    pub flags: u8,
    /// Signed [`StateEntry`] records, ascending by version.
    pub entries: Vec<SignedPacket>,
}

/// State anti-entropy: a digest, and the batches the other side lacks. Phases as
/// [`crate::message::sync_phase`]: open (digest), answer (digest and batches), close (batches).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSync {
    /// One of `sync_phase::{OPEN, ANSWER, CLOSE}`.
    pub phase: u8,
    /// The sender's digest, one line per owner (empty when closing).
    pub digest: Vec<StateDigest>,
    /// Entries the receiver lacks, cut to the sync budget.
    pub batches: Vec<StateBatch>,
}

impl StateSync {
    /// Checks list lengths against `limits.max_items`, the entries of all batches together.
    pub fn validate(&self, limits: &Limits) -> Result<(), TooLarge> {
        let max = limits.max_items;
        let entries = self
            .batches
            .iter()
            .fold(0usize, |n, b| n.saturating_add(b.entries.len()));
        for (what, count) in [
            ("state_sync.digest", self.digest.len()),
            ("state_sync.batches", self.batches.len()),
            ("state_sync.entries", entries),
        ] {
            if count > max {
                return Err(TooLarge::Items { what, count, max });
            }
        }
        Ok(())
    }
}
