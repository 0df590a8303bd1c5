//! The packet pipeline: serialize → compress → sign → encrypt, and its exact reverse.
//!
//! Byte layout and the order of checks are specified in `docs/PROTOCOL.md`; golden vectors in
//! `testdata/` pin them. A [`SignedPacket`] is the unit of authenticity: it can be sealed into a
//! frame on its own, forwarded by other members with its origin's signature intact, or carried
//! inside another message as piggybacked gossip.

use std::collections::HashMap;
use std::sync::Arc;

use chacha20poly1305::{AeadInOut, XNonce};
use ed25519_dalek::ed25519::signature::MultipartVerifier;
use ed25519_dalek::{Signature, VerifyingKey};
use rand_core::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{
    EncodeError, Incompatible, Malformed, Replayed, TooLarge, Unauthenticated, WireError,
};
use crate::hlc::Timestamp;
use crate::identity::{Identity, NODE_ID_LEN, NodeId};
use crate::keyring::Keyring;
use crate::limits::Limits;
use crate::message::Message;
use crate::replay::{ReplayConfig, ReplayGuard};
#[cfg(feature = "verify-cache")]
use crate::verified::VerifiedCache;

/// The protocol version this build speaks (frame byte 0).
pub const VERSION: u8 = 1;
/// Frame flag: the body is encrypted with the cluster key.
pub const FLAG_ENCRYPTED: u8 = 0b0000_0001;
/// Bytes before the body: version, flags, ttl.
pub const PREFIX_LEN: usize = 3;
/// XChaCha20 nonce length.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Ed25519 signature length.
pub const SIGNATURE_LEN: usize = 64;
/// Fixed header of a signed packet: signature, origin, id, kind, encoding.
pub const SIGNED_HEADER_LEN: usize = SIGNATURE_LEN + NODE_ID_LEN + 8 + 1 + 1;
/// Payload encoding: MessagePack as is.
pub const ENCODING_RAW: u8 = 0;
/// Payload encoding: lz4 block, preceded by the inflated length (u32, little-endian).
pub const ENCODING_LZ4: u8 = 1;
/// Domain separation for signatures, so they cannot be replayed into another protocol.
pub const SIGNATURE_DOMAIN: &[u8] = b"gossip/v1 packet\0";

/// Overhead of a frame around its signed packet's payload, encrypted mode.
pub const ENCRYPTED_OVERHEAD: usize = PREFIX_LEN + NONCE_LEN + TAG_LEN + SIGNED_HEADER_LEN;

/// Whether records of `kind` are a member's signed state, which precedence orders (alive,
/// suspect, dead, leave, metadata): a copy older than the replay window or than this node
/// changes nothing and is not refused for its age (see [`ReplayGuard::check_state`]).
pub fn is_state_kind(kind: u8) -> bool {
    matches!(kind, 6..=9 | 13)
}

/// Most verifying keys kept parsed (point decompression costs about a fifth of a verification).
const KEY_CACHE_CAPACITY: usize = 4096;
/// Most signed records remembered as verified (16 bytes each, allocated on first use): a few
/// records per member of a cluster of a thousand.
#[cfg(feature = "verify-cache")]
const VERIFIED_CACHE_CAPACITY: usize = 4096;
/// Fewer signatures than this are verified one by one: a batch's setup would cost more than it saves.
#[cfg(feature = "batch-verify")]
const MIN_BATCH: usize = 2;
/// Signatures per batch: one bad record makes its whole batch fall back to single checks.
#[cfg(feature = "batch-verify")]
const MAX_BATCH: usize = 64;

const ORIGIN_AT: usize = SIGNATURE_LEN;
const ID_AT: usize = ORIGIN_AT + NODE_ID_LEN;
const KIND_AT: usize = ID_AT + 8;
const ENCODING_AT: usize = KIND_AT + 1;

/// A message with its origin's signature: `signature ‖ origin ‖ id ‖ kind ‖ encoding ‖ payload`.
///
/// Holding one does not mean it verified; [`Codec::accept`] and [`Codec::verify`] do that.
/// Cloning shares the bytes: a packet is queued, piggybacked and forwarded many times.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SignedPacket(Arc<[u8]>);

impl SignedPacket {
    /// Wraps bytes received from the network, checking only that the fixed header is present.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, Malformed> {
        if bytes.len() < SIGNED_HEADER_LEN {
            return Err(Malformed::Truncated {
                needed: SIGNED_HEADER_LEN,
                have: bytes.len(),
            });
        }
        Ok(SignedPacket(bytes.into()))
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a packet has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The claimed origin (authentic only after verification).
    pub fn origin(&self) -> NodeId {
        let mut id = [0u8; NODE_ID_LEN];
        id.copy_from_slice(&self.0[ORIGIN_AT..ID_AT]);
        NodeId::from_bytes(id)
    }

    /// The origin's message id.
    pub fn id(&self) -> Timestamp {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&self.0[ID_AT..KIND_AT]);
        Timestamp::from_u64(u64::from_be_bytes(raw))
    }

    /// The message kind code.
    pub fn kind(&self) -> u8 {
        self.0[KIND_AT]
    }

    /// The payload encoding code.
    pub fn encoding(&self) -> u8 {
        self.0[ENCODING_AT]
    }

    /// The (possibly compressed) payload.
    pub fn payload(&self) -> &[u8] {
        &self.0[SIGNED_HEADER_LEN..]
    }

    fn signature(&self) -> Signature {
        let mut sig = [0u8; SIGNATURE_LEN];
        sig.copy_from_slice(&self.0[..SIGNATURE_LEN]);
        Signature::from_bytes(&sig)
    }

    fn signed_part(&self) -> &[u8] {
        &self.0[ORIGIN_AT..]
    }
}

impl core::fmt::Debug for SignedPacket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignedPacket")
            .field("origin", &self.origin())
            .field("id", &self.id())
            .field("kind", &self.kind())
            .field("len", &self.0.len())
            .finish()
    }
}

impl Serialize for SignedPacket {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SignedPacket {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?.into_vec();
        SignedPacket::from_bytes(bytes).map_err(serde::de::Error::custom)
    }
}

/// A frame that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// Hops left; a forwarder sends it on with `ttl - 1`.
    pub ttl: u8,
    /// The verified packet, to forward unchanged with [`Codec::seal`].
    pub packet: SignedPacket,
    /// Its decoded message.
    pub message: Message,
}

impl Inbound {
    /// The authenticated origin.
    pub fn origin(&self) -> NodeId {
        self.packet.origin()
    }

    /// The origin's message id.
    pub fn id(&self) -> Timestamp {
        self.packet.id()
    }
}

/// One node's end of the pipeline: its identity, cluster keys, limits and replay guard.
#[derive(Debug)]
pub struct Codec {
    identity: Identity,
    keyring: Keyring,
    limits: Limits,
    replay: ReplayGuard,
    keys: HashMap<NodeId, VerifyingKey>,
    key_cache_capacity: usize,
    /// Ed25519 signatures checked, alone or in a batch (counted with the cache it measures).
    #[cfg(feature = "verify-cache")]
    signature_checks: u64,
    /// Records (not frames: each frame is new) whose signature verified, by their exact bytes.
    #[cfg(feature = "verify-cache")]
    verified: VerifiedCache,
}

impl Codec {
    /// A codec that signs as `identity` and encrypts with `keyring`.
    pub fn new(identity: Identity, keyring: Keyring, limits: Limits, replay: ReplayConfig) -> Self {
        #[cfg(feature = "verify-cache")]
        let verified = VerifiedCache::new(&identity.secret_bytes(), VERIFIED_CACHE_CAPACITY);
        Codec {
            #[cfg(feature = "verify-cache")]
            verified,
            identity,
            keyring,
            limits,
            replay: ReplayGuard::new(replay),
            keys: HashMap::new(),
            key_cache_capacity: KEY_CACHE_CAPACITY,
            #[cfg(feature = "verify-cache")]
            signature_checks: 0,
        }
    }

    /// Caps the parsed verifying keys kept (default 4,096, about 230 bytes each). A small cap
    /// suits nodes that talk to few peers (the overlay); 0 disables the cache.
    pub fn set_key_cache_capacity(&mut self, capacity: usize) {
        self.key_cache_capacity = capacity;
        while self.keys.len() > capacity {
            let Some(victim) = self.keys.keys().next().copied() else {
                break;
            };
            self.keys.remove(&victim);
        }
        self.keys.shrink_to_fit();
    }

    /// Caps the signed records remembered as verified (default 4,096, 16 bytes each), forgetting
    /// them all; 0 disables the cache. Without the `verify-cache` feature there is no cache.
    pub fn set_verified_cache_capacity(&mut self, capacity: usize) {
        #[cfg(feature = "verify-cache")]
        self.verified.set_capacity(capacity);
        #[cfg(not(feature = "verify-cache"))]
        let _ = capacity;
    }

    /// Ed25519 signatures checked so far, alone or in a batch (a record found in the cache of
    /// verified records is not checked again). With the `verify-cache` feature.
    #[cfg(feature = "verify-cache")]
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks
    }

    /// Signed records remembered as verified.
    pub fn verified_records(&self) -> usize {
        #[cfg(feature = "verify-cache")]
        return self.verified.len();
        #[cfg(not(feature = "verify-cache"))]
        0
    }

    /// The signing identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The cluster keys, for rotation.
    pub fn keyring_mut(&mut self) -> &mut Keyring {
        &mut self.keyring
    }

    /// Origins whose parsed verifying key is cached.
    pub fn cached_keys(&self) -> usize {
        self.keys.len()
    }

    /// The replay guard, for inspection.
    pub fn replay(&self) -> &ReplayGuard {
        &self.replay
    }

    /// Records (origin, id) as seen without a frame: a message this node originated itself.
    pub fn record_seen(&mut self, origin: NodeId, id: Timestamp) {
        self.replay.record(origin, id);
    }

    /// Refuses every message id at or below `floor` (see [`ReplayGuard::raise_floor`]).
    pub fn raise_replay_floor(&mut self, floor: Timestamp) {
        self.replay.raise_floor(floor);
    }

    /// Serializes, compresses (when it pays) and signs `message` as this node's message `id`.
    pub fn sign(&self, id: Timestamp, message: &Message) -> Result<SignedPacket, EncodeError> {
        message.validate(&self.limits)?;
        let mut out = Vec::with_capacity(SIGNED_HEADER_LEN + 128);
        out.resize(SIGNED_HEADER_LEN, 0);
        message
            .write_payload(&mut out)
            .map_err(|e| EncodeError::Serialize(e.to_string()))?;
        let raw_len = out.len() - SIGNED_HEADER_LEN;
        if raw_len > self.limits.max_payload_bytes {
            return Err(TooLarge::Payload {
                size: raw_len,
                max: self.limits.max_payload_bytes,
            }
            .into());
        }
        #[cfg_attr(not(feature = "compress"), allow(unused_mut))]
        let mut encoding = ENCODING_RAW;
        #[cfg(feature = "compress")]
        if raw_len > self.limits.compress_threshold {
            let compressed = lz4_flex::block::compress(&out[SIGNED_HEADER_LEN..]);
            if compressed.len() + 4 < raw_len {
                out.truncate(SIGNED_HEADER_LEN);
                // raw_len <= max_payload_bytes, which a u32 holds for any sane limit.
                out.extend_from_slice(&u32::try_from(raw_len).unwrap_or(u32::MAX).to_le_bytes());
                out.extend_from_slice(&compressed);
                encoding = ENCODING_LZ4;
            }
        }
        out[ORIGIN_AT..ID_AT].copy_from_slice(self.identity.id().as_bytes());
        out[ID_AT..KIND_AT].copy_from_slice(&id.to_u64().to_be_bytes());
        out[KIND_AT] = message.kind();
        out[ENCODING_AT] = encoding;
        let signature = self
            .identity
            .sign(&[SIGNATURE_DOMAIN, &[VERSION], &out[ORIGIN_AT..]]);
        out[..SIGNATURE_LEN].copy_from_slice(&signature.to_bytes());
        Ok(SignedPacket(out.into()))
    }

    /// Seals a signed packet (this node's or a forwarded one) into a frame with `ttl` hops left.
    pub fn seal<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        ttl: u8,
        packet: &SignedPacket,
    ) -> Result<Vec<u8>, EncodeError> {
        self.seal_with(&self.keyring, rng, ttl, packet)
    }

    /// Seals a signed packet with `keyring` instead of the cluster's (a link's own key).
    pub fn seal_with<R: CryptoRng + ?Sized>(
        &self,
        keyring: &Keyring,
        rng: &mut R,
        ttl: u8,
        packet: &SignedPacket,
    ) -> Result<Vec<u8>, EncodeError> {
        let cipher = keyring.primary();
        let size = PREFIX_LEN
            + packet.len()
            + if cipher.is_some() {
                NONCE_LEN + TAG_LEN
            } else {
                0
            };
        if size > self.limits.max_frame_bytes {
            return Err(TooLarge::Frame {
                size,
                max: self.limits.max_frame_bytes,
            }
            .into());
        }
        let mut out = Vec::with_capacity(size);
        let flags = if cipher.is_some() { FLAG_ENCRYPTED } else { 0 };
        out.extend_from_slice(&[VERSION, flags, ttl]);
        let Some(cipher) = cipher else {
            out.extend_from_slice(packet.as_bytes());
            return Ok(out);
        };
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(packet.as_bytes());
        let (head, body) = out.split_at_mut(PREFIX_LEN + NONCE_LEN);
        let tag = cipher
            .encrypt_inout_detached(&XNonce::from(nonce), &head[..PREFIX_LEN], body.into())
            .map_err(|_| TooLarge::Frame {
                size,
                max: self.limits.max_frame_bytes,
            })?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Signs and seals in one step.
    pub fn encode<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        id: Timestamp,
        ttl: u8,
        message: &Message,
    ) -> Result<Vec<u8>, EncodeError> {
        let packet = self.sign(id, message)?;
        self.seal(rng, ttl, &packet)
    }

    /// Opens, authenticates, replay-checks and decodes a frame. `wall_ms` is the local wall clock
    /// in milliseconds since the UNIX epoch.
    pub fn decode(&mut self, frame: &[u8], wall_ms: u64) -> Result<Inbound, WireError> {
        let (ttl, packet) = self.open(frame)?;
        let message = self.accept_frame(&packet, wall_ms)?;
        Ok(Inbound {
            ttl,
            packet,
            message,
        })
    }

    /// [`Codec::decode`] for a frame sealed with `keyring` (a link's own key) instead of the
    /// cluster's.
    pub fn decode_with(
        &mut self,
        keyring: &Keyring,
        frame: &[u8],
        wall_ms: u64,
    ) -> Result<Inbound, WireError> {
        let (ttl, packet) = self.open_with(keyring, frame)?;
        let message = self.accept_frame(&packet, wall_ms)?;
        Ok(Inbound {
            ttl,
            packet,
            message,
        })
    }

    /// Checks a signed record (piggybacked or forwarded) against the replay window, verifies its
    /// origin's signature (unless these exact bytes verified before), records it as seen, and
    /// decodes it.
    pub fn accept(&mut self, packet: &SignedPacket, wall_ms: u64) -> Result<Message, WireError> {
        self.accept_with(packet, wall_ms, true)
    }

    /// [`Codec::accept`] for a frame's own packet, which is never remembered as verified (each
    /// frame is signed afresh, so remembering it would only push records out of the cache).
    /// With `batch-verify`, a frame that carries records has its signature checked in one batch
    /// with theirs, which then find themselves verified when the node accepts them one by one.
    fn accept_frame(&mut self, packet: &SignedPacket, wall_ms: u64) -> Result<Message, WireError> {
        #[cfg(feature = "batch-verify")]
        {
            let kind = packet.kind();
            if !Message::is_known_kind(kind) {
                return Err(Incompatible::Kind(kind).into());
            }
            let origin = packet.origin();
            self.replay.check(&origin, packet.id(), wall_ms)?;
            // Decoded before its signature is checked, to find the records to batch with it. An
            // unverified payload is parsed under the same limits as any signed one (a member
            // holding the cluster key can sign anything); errors keep their usual precedence: a
            // bad signature is reported before a bad payload.
            let decoded = self.decode_payload(packet);
            if decoded
                .as_ref()
                .is_ok_and(|message| self.carries_only_copies(message, wall_ms))
            {
                return Err(Replayed::Copies.into());
            }
            let batched = decoded
                .as_ref()
                .is_ok_and(|message| self.verify_with_records(packet, message, wall_ms));
            if !batched {
                self.verify_signature(packet)?;
            }
            self.replay.record(origin, packet.id());
            decoded
        }
        #[cfg(not(feature = "batch-verify"))]
        self.accept_with(packet, wall_ms, false)
    }

    fn accept_with(
        &mut self,
        packet: &SignedPacket,
        wall_ms: u64,
        record: bool,
    ) -> Result<Message, WireError> {
        let kind = packet.kind();
        if !Message::is_known_kind(kind) {
            return Err(Incompatible::Kind(kind).into());
        }
        let origin = packet.origin();
        // Before the signature: most duplicates in gossip are honest, and this check is cheap.
        if record {
            self.check_record_replay(packet, wall_ms)?;
        } else {
            self.replay.check(&origin, packet.id(), wall_ms)?;
        }
        if record {
            self.verify_record(packet)?;
        } else {
            self.verify_signature(packet)?;
        }
        self.replay.record(origin, packet.id());
        self.decode_payload(packet)
    }

    /// The replay check of a record carried in a frame: signed state (see [`is_state_kind`]) is
    /// refused only as a copy already accepted or from the future, anything else (a broadcast,
    /// replicated state) like a frame.
    fn check_record_replay(&mut self, packet: &SignedPacket, wall_ms: u64) -> Result<(), Replayed> {
        let (origin, id) = (packet.origin(), packet.id());
        if is_state_kind(packet.kind()) {
            self.replay.check_state(&origin, id, wall_ms)
        } else {
            self.replay.check(&origin, id, wall_ms)
        }
    }

    /// Verifies and decodes a signed packet without the replay window: for signed *state*
    /// (a member's latest alive record, its metadata) that is legitimately old and is ordered by
    /// its own version instead.
    pub fn verify(&mut self, packet: &SignedPacket) -> Result<Message, WireError> {
        let kind = packet.kind();
        if !Message::is_known_kind(kind) {
            return Err(Incompatible::Kind(kind).into());
        }
        self.verify_record(packet)?;
        self.decode_payload(packet)
    }

    /// The origin a frame claims, after decryption but before any signature or replay check:
    /// enough for a relay to refuse forwarding someone else's frame, and nothing more (the
    /// recipient verifies it).
    pub fn peek_origin(&self, frame: &[u8]) -> Result<NodeId, WireError> {
        let (_, packet) = self.open(frame)?;
        Ok(packet.origin())
    }

    /// Opens a frame sealed with `from` (`None`: the cluster's keys) and seals its packet again
    /// with `to` (`None`: the cluster's primary key), keeping its hops: what a server does with a
    /// frame between a link that has its own key and the rest of the cluster. Nothing is
    /// verified; the recipient does that.
    pub fn reseal<R: CryptoRng + ?Sized>(
        &self,
        from: Option<&Keyring>,
        to: Option<&Keyring>,
        rng: &mut R,
        frame: &[u8],
    ) -> Result<(SignedPacket, Vec<u8>), WireError> {
        let (ttl, packet) = self.open_with(from.unwrap_or(&self.keyring), frame)?;
        let sealed = self
            .seal_with(to.unwrap_or(&self.keyring), rng, ttl, &packet)
            .map_err(|_| TooLarge::Frame {
                size: frame.len(),
                max: self.limits.max_frame_bytes,
            })?;
        Ok((packet, sealed))
    }

    fn open(&self, frame: &[u8]) -> Result<(u8, SignedPacket), WireError> {
        self.open_with(&self.keyring, frame)
    }

    fn open_with(&self, keyring: &Keyring, frame: &[u8]) -> Result<(u8, SignedPacket), WireError> {
        if frame.len() > self.limits.max_frame_bytes {
            return Err(TooLarge::Frame {
                size: frame.len(),
                max: self.limits.max_frame_bytes,
            }
            .into());
        }
        if frame.len() < PREFIX_LEN {
            return Err(Malformed::Truncated {
                needed: PREFIX_LEN,
                have: frame.len(),
            }
            .into());
        }
        let (version, flags, ttl) = (frame[0], frame[1], frame[2]);
        if version != VERSION {
            return Err(Incompatible::Version(version).into());
        }
        if flags & !FLAG_ENCRYPTED != 0 {
            return Err(Malformed::Flags(flags).into());
        }
        let encrypted = flags & FLAG_ENCRYPTED != 0;
        let body = match (encrypted, keyring.is_encrypted()) {
            (false, true) => return Err(Unauthenticated::PlaintextRefused.into()),
            (true, false) => return Err(Unauthenticated::NoClusterKey.into()),
            (false, false) => frame[PREFIX_LEN..].to_vec(),
            (true, true) => decrypt(keyring, frame)?,
        };
        Ok((ttl, SignedPacket::from_bytes(body)?))
    }

    /// [`Codec::verify_signature`] for a record, which may well have verified before.
    fn verify_record(&mut self, packet: &SignedPacket) -> Result<(), WireError> {
        #[cfg(feature = "verify-cache")]
        {
            let slot = self.verified.slot(packet.as_bytes());
            if let Some(slot) = slot
                && self.verified.hit(slot)
            {
                return Ok(());
            }
            self.verify_signature(packet)?;
            if let Some(slot) = slot {
                self.verified.insert(slot);
            }
            Ok(())
        }
        #[cfg(not(feature = "verify-cache"))]
        self.verify_signature(packet)
    }

    /// Verifies the frame `packet` together with the records `message` carries that the node
    /// will check next (those the replay window lets through, for piggybacked gossip) and have
    /// not verified before, remembering the records on success. False when there is nothing to
    /// batch with or the first batch fails: then the frame's signature is checked alone, and the
    /// records one by one as they are accepted, so a bad one drops only itself.
    #[cfg(feature = "batch-verify")]
    fn verify_with_records(
        &mut self,
        packet: &SignedPacket,
        message: &Message,
        wall_ms: u64,
    ) -> bool {
        use crate::message::MembershipMessage;
        let (records, wall) = match message {
            Message::Membership(MembershipMessage::Ping(p)) => (&p.piggyback, Some(wall_ms)),
            Message::Membership(MembershipMessage::Ack(a)) => (&a.piggyback, Some(wall_ms)),
            Message::Membership(MembershipMessage::Gossip(g)) => (&g.items, Some(wall_ms)),
            // Push-pull states are signed state, legitimately old: no replay window.
            Message::Membership(MembershipMessage::Sync(s)) => (&s.states, None),
            _ => return false,
        };
        if records.is_empty() {
            return false;
        }
        let Some(key) = self.key_of(&packet.origin()) else {
            return false;
        };
        let mut batch = vec![(None, packet, key)];
        let mut frame_verified = None;
        for record in records {
            if !Message::is_known_kind(record.kind()) {
                continue;
            }
            if let Some(wall) = wall
                && self.check_record_replay(record, wall).is_err()
            {
                continue;
            }
            let Some(slot) = self.verified.slot(record.as_bytes()) else {
                break;
            };
            if self.verified.contains(slot) {
                continue;
            }
            let Some(key) = self.key_of(&record.origin()) else {
                continue;
            };
            batch.push((Some(slot), record, key));
            if batch.len() == MAX_BATCH {
                let ok = self.verify_batch(&batch);
                frame_verified.get_or_insert(ok);
                batch.clear();
            }
        }
        let ok = self.verify_batch(&batch);
        frame_verified.unwrap_or(ok)
    }

    /// Whether `message` is a gossip envelope whose every record was accepted before (see
    /// [`Replayed::Copies`]). Accepting it would drop each record unverified as a duplicate and
    /// change nothing else, while checking its own signature costs as much as a new record's:
    /// in a join of 200 members, 9 of 10 gossip frames a member received were such copies, and
    /// their signatures were a third of the join's instructions.
    #[cfg(feature = "batch-verify")]
    fn carries_only_copies(&mut self, message: &Message, wall_ms: u64) -> bool {
        use crate::message::MembershipMessage;
        let Message::Membership(MembershipMessage::Gossip(g)) = message else {
            return false;
        };
        !g.items.is_empty()
            && g.items.iter().all(|r| {
                Message::is_known_kind(r.kind())
                    && self.check_record_replay(r, wall_ms) == Err(Replayed::Duplicate)
            })
    }

    /// The parsed key of `origin`, cached or parsed now (not cached until it verifies something).
    #[cfg(feature = "batch-verify")]
    fn key_of(&self, origin: &NodeId) -> Option<VerifyingKey> {
        match self.keys.get(origin) {
            Some(key) => Some(*key),
            None => origin.verifying_key(),
        }
    }

    /// Verifies `batch` in one go; on success remembers its records (entries with a slot) as
    /// verified and their keys as good. Fewer than [`MIN_BATCH`] are left to single checks.
    #[cfg(feature = "batch-verify")]
    fn verify_batch(
        &mut self,
        batch: &[(Option<crate::verified::Slot>, &SignedPacket, VerifyingKey)],
    ) -> bool {
        if batch.len() < MIN_BATCH {
            return false;
        }
        self.signature_checks += batch.len() as u64;
        let messages: Vec<Vec<u8>> = batch
            .iter()
            .map(|(_, packet, _)| {
                let signed = packet.signed_part();
                let mut m = Vec::with_capacity(SIGNATURE_DOMAIN.len() + 1 + signed.len());
                m.extend_from_slice(SIGNATURE_DOMAIN);
                m.push(VERSION);
                m.extend_from_slice(signed);
                m
            })
            .collect();
        let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let signatures: Vec<Signature> = batch.iter().map(|(_, p, _)| p.signature()).collect();
        let keys: Vec<VerifyingKey> = batch.iter().map(|(_, _, key)| *key).collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_err() {
            return false;
        }
        for (slot, packet, key) in batch {
            if let Some(slot) = slot {
                self.verified.insert(*slot);
            }
            self.remember_key(packet.origin(), *key);
        }
        true
    }

    fn verify_signature(&mut self, packet: &SignedPacket) -> Result<(), WireError> {
        let origin = packet.origin();
        let cached = self.keys.get(&origin).copied();
        let key = match cached {
            Some(key) => key,
            None => origin.verifying_key().ok_or(Unauthenticated::OriginKey)?,
        };
        #[cfg(feature = "verify-cache")]
        {
            self.signature_checks += 1;
        }
        key.multipart_verify(
            &[SIGNATURE_DOMAIN, &[VERSION], packet.signed_part()],
            &packet.signature(),
        )
        .map_err(|_| Unauthenticated::Signature)?;
        if cached.is_none() {
            self.remember_key(origin, key);
        }
        Ok(())
    }

    /// Caches the parsed key of an origin whose signature just verified: forgeries naming
    /// made-up origins must not be able to evict the keys of real members.
    fn remember_key(&mut self, origin: NodeId, key: VerifyingKey) {
        if self.key_cache_capacity == 0 || self.keys.contains_key(&origin) {
            return;
        }
        if self.keys.len() >= self.key_cache_capacity {
            // Any victim will do: a miss costs one point decompression, not correctness.
            if let Some(victim) = self.keys.keys().next().copied() {
                self.keys.remove(&victim);
            }
        }
        self.keys.insert(origin, key);
    }

    fn decode_payload(&self, packet: &SignedPacket) -> Result<Message, WireError> {
        let max = self.limits.max_payload_bytes;
        let message = match packet.encoding() {
            ENCODING_RAW => {
                let payload = packet.payload();
                if payload.len() > max {
                    return Err(TooLarge::Payload {
                        size: payload.len(),
                        max,
                    }
                    .into());
                }
                Message::read_payload(packet.kind(), payload)?
            }
            ENCODING_LZ4 => {
                let inflated = inflate(packet.payload(), max)?;
                Message::read_payload(packet.kind(), &inflated)?
            }
            other => return Err(Malformed::Encoding(other).into()),
        };
        message.validate(&self.limits)?;
        Ok(message)
    }
}

/// Inflates an lz4 block whose first four bytes declare its size, refusing to allocate more than `max`.
fn inflate(compressed: &[u8], max: usize) -> Result<Vec<u8>, WireError> {
    let Some((declared, block)) = compressed.split_first_chunk::<4>() else {
        return Err(Malformed::Truncated {
            needed: 4,
            have: compressed.len(),
        }
        .into());
    };
    let size = u32::from_le_bytes(*declared) as usize;
    if size > max {
        return Err(TooLarge::Payload { size, max }.into());
    }
    let mut out = vec![0u8; size];
    match lz4_flex::block::decompress_into(block, &mut out) {
        Ok(n) if n == size => Ok(out),
        _ => Err(Malformed::Compression.into()),
    }
}

/// Opens an encrypted frame with any key of `keyring`.
fn decrypt(keyring: &Keyring, frame: &[u8]) -> Result<Vec<u8>, WireError> {
    let needed = PREFIX_LEN + NONCE_LEN + TAG_LEN;
    if frame.len() < needed {
        return Err(Malformed::Truncated {
            needed,
            have: frame.len(),
        }
        .into());
    }
    let aad = &frame[..PREFIX_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&frame[PREFIX_LEN..PREFIX_LEN + NONCE_LEN]);
    let nonce = XNonce::from(nonce);
    let (ciphertext, tag) = frame[PREFIX_LEN + NONCE_LEN..].split_at(frame.len() - needed);
    let tag = chacha20poly1305::Tag::try_from(tag).map_err(|_| Unauthenticated::Decrypt)?;
    let mut body = ciphertext.to_vec();
    for cipher in keyring.ciphers() {
        if cipher
            .decrypt_inout_detached(&nonce, aad, body.as_mut_slice().into(), &tag)
            .is_ok()
        {
            return Ok(body);
        }
        // A failed attempt leaves the buffer untouched (the tag is checked first); restore anyway
        // so the next key sees the original ciphertext whatever the implementation does.
        body.copy_from_slice(ciphertext);
    }
    Err(Unauthenticated::Decrypt.into())
}
