//! The authenticated per-connection handshake: each side signs the other's fresh nonce, and the
//! two agree a key for the link.
//!
//! A frame says who signed it, not whom it is for, so a frame captured on the wire and replayed as
//! the first frame of a new connection proves nothing about the peer at the other end. The route
//! of a connection (the member it is bound to) must therefore come from a proof made for this
//! connection only: each side draws 32 fresh random bytes (from the driver: the core has no RNG),
//! derives from them a public nonce and an ephemeral X25519 key pair, and signs the other side's
//! nonce and ephemeral key with its [`Identity`]. One signature, one verification and one X25519
//! agreement per side.
//!
//! Three binary messages, each one WebSocket message or one length-prefixed TCP message, before
//! any frame. They start with `G` (a frame starts with its version byte, 1), so a receiver tells
//! them from frames by the first byte:
//!
//! | message | from | bytes |
//! |---|---|---|
//! | challenge | acceptor, first | `GSPHELO3` (8) · acceptor id (32) · acceptor nonce (32) · acceptor X25519 key (32) · acceptor versions (8) = 112 |
//! | proof | dialer, after the challenge | `GSPAUTH3` (8) · dialer id (32) · dialer nonce (32) · dialer X25519 key (32) · dialer versions (8) · signature (64) = 176 |
//! | answer | acceptor, after the proof | `GSPACPT3` (8) · signature (64) = 72 |
//!
//! Both signatures are Ed25519 over [`HANDSHAKE_DOMAIN`] · role (1 byte: [`ROLE_DIALER`] or
//! [`ROLE_ACCEPTOR`]) · acceptor id · acceptor nonce · acceptor X25519 key · acceptor versions ·
//! dialer id · dialer nonce · dialer X25519 key · dialer versions. The domain keeps them from ever verifying as a frame signature (and
//! frames from verifying as these); the role byte keeps one side's proof from being reflected as
//! the other's; the nonces make every transcript unique, so a recorded proof fails on any other
//! connection.
//!
//! **Versions** ([`Versions`]): the protocol and application version ranges a side speaks, four
//! big-endian u16 (protocol min, max, application min, max). A link is made only when both
//! ranges overlap; the agreed versions are the highest in both ([`Versions::agree`]). The acceptor
//! refuses a proof whose ranges do not overlap its own with [`HandshakeError::Version`] (and the
//! driver closes with [`CloseCode::Version`](super::CloseCode::Version)); the dialer, which sent
//! its proof so that the acceptor can say why, refuses an answer that comes anyway, and
//! [`Handshake::refusal`] tells its driver why the acceptor closed. Both sides sign both ranges,
//! so nobody on the path can lower them; an empty range (min above max) overlaps nothing.
//!
//! **The link key** is the first 32 bytes of SHA-512 over [`LINK_KEY_DOMAIN`] · the X25519 shared
//! secret · the transcript (the six fields above). Only the two ends know it, it is new for every
//! connection (ephemeral keys: recording a link and later stealing an identity key does not open
//! it), and the signatures bind it to both identities. A link that carries a member without the
//! cluster key (an admitted member) is sealed with it instead of the cluster key.
//!
//! The acceptor binds the connection to the dialer when the proof verifies; the dialer binds it
//! to the acceptor when the answer verifies (and refuses an acceptor other than the member it
//! dialed for). Nothing else ever binds a connection; frames of other origins may still travel
//! over it (a server forwards the frames of the members it relays) without moving the route.

use curve25519_dalek::montgomery::MontgomeryPoint;
use ed25519_dalek::Signature;
use ed25519_dalek::ed25519::signature::MultipartVerifier;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use crate::identity::{Identity, NODE_ID_LEN, NodeId};
use crate::keyring::ClusterKey;

/// The link protocol this build speaks: the frame format and the messages of this crate.
pub const PROTOCOL_VERSION: u16 = 1;

/// Signature domain of the handshake, distinct from the frame signature domain.
pub const HANDSHAKE_DOMAIN: &[u8] = b"gossip/v1 link\0";
/// Hash domain of the link key.
pub const LINK_KEY_DOMAIN: &[u8] = b"gossip/v1 link key\0";
/// Hash domain that turns a side's fresh random bytes into its nonce and ephemeral secret.
const FRESH_DOMAIN: &[u8] = b"gossip/v1 link fresh\0";
/// Role byte signed by the dialer.
pub const ROLE_DIALER: u8 = 1;
/// Role byte signed by the acceptor.
pub const ROLE_ACCEPTOR: u8 = 2;
/// Bytes of a nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes of an X25519 public key.
pub const EPHEMERAL_LEN: usize = 32;
/// Bytes of a signature.
pub const SIGNATURE_LEN: usize = 64;
/// Bytes of the version ranges.
pub const VERSIONS_LEN: usize = 8;

/// First bytes of the acceptor's challenge.
pub const CHALLENGE_MAGIC: &[u8; 8] = b"GSPHELO3";
/// First bytes of the dialer's proof.
pub const PROOF_MAGIC: &[u8; 8] = b"GSPAUTH3";
/// First bytes of the acceptor's answer.
pub const ANSWER_MAGIC: &[u8; 8] = b"GSPACPT3";

/// Length of a challenge.
pub const CHALLENGE_LEN: usize = 8 + NODE_ID_LEN + NONCE_LEN + EPHEMERAL_LEN + VERSIONS_LEN;
/// Length of a proof.
pub const PROOF_LEN: usize =
    8 + NODE_ID_LEN + NONCE_LEN + EPHEMERAL_LEN + VERSIONS_LEN + SIGNATURE_LEN;
/// Length of an answer.
pub const ANSWER_LEN: usize = 8 + SIGNATURE_LEN;

/// Why a handshake message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The message has the wrong length for its kind.
    #[error("handshake message of {0} bytes")]
    Length(usize),
    /// The message does not start with the expected magic.
    #[error("not the expected handshake message")]
    Magic,
    /// The peer claims this node's own id.
    #[error("the peer claims our own id")]
    OwnId,
    /// The id is not a usable public key, or the signature does not verify.
    #[error("handshake signature does not verify")]
    Signature,
    /// The acceptor proved to be another member than the one dialed.
    #[error("the peer is not the member dialed")]
    WrongPeer,
    /// A message arrived out of order (a second challenge, an answer before the proof).
    #[error("handshake message out of order")]
    OutOfOrder,
    /// A frame arrived before the handshake finished.
    #[error("a frame before the handshake")]
    FrameFirst,
    /// The peer's X25519 key is of low order: no secret could be agreed.
    #[error("the peer's key agreement is weak")]
    WeakKey,
    /// The two sides have no protocol or no application version in common. The message leaves
    /// the ranges out (it is also the close reason a browser gets, and the browser build pays for
    /// every formatter); drivers that log it show them from the fields.
    #[error("no common protocol or application version")]
    Version {
        /// This side's ranges.
        ours: Versions,
        /// The peer's, as it signed them.
        theirs: Versions,
    },
}

/// An inclusive range of versions; `min > max` is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRange {
    /// The oldest version spoken.
    pub min: u16,
    /// The newest.
    pub max: u16,
}

impl VersionRange {
    /// Versions `min` to `max`, both included.
    pub const fn new(min: u16, max: u16) -> VersionRange {
        VersionRange { min, max }
    }

    /// The newest version in both ranges, if they overlap.
    pub fn agree(self, other: VersionRange) -> Option<u16> {
        let low = self.min.max(other.min);
        let high = self.max.min(other.max);
        (low <= high).then_some(high)
    }
}

impl core::fmt::Display for VersionRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// The protocol and application versions a side speaks, announced and signed in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Versions {
    /// Link protocol versions ([`PROTOCOL_VERSION`] in this build).
    pub protocol: VersionRange,
    /// Application versions: what the application on top understands, its own business (0 when
    /// it never says).
    pub app: VersionRange,
}

/// The versions two sides agreed: the newest each range has in common.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Agreed {
    /// Link protocol.
    pub protocol: u16,
    /// Application.
    pub app: u16,
}

impl Versions {
    /// This build's protocol, application version 0.
    pub const DEFAULT: Versions = Versions::app(0, 0);

    /// This build's protocol, application versions `min` to `max`.
    pub const fn app(min: u16, max: u16) -> Versions {
        Versions {
            protocol: VersionRange::new(PROTOCOL_VERSION, PROTOCOL_VERSION),
            app: VersionRange::new(min, max),
        }
    }

    /// The versions both sides speak, or [`HandshakeError::Version`].
    pub fn agree(&self, theirs: &Versions) -> Result<Agreed, HandshakeError> {
        match (
            self.protocol.agree(theirs.protocol),
            self.app.agree(theirs.app),
        ) {
            (Some(protocol), Some(app)) => Ok(Agreed { protocol, app }),
            _ => Err(HandshakeError::Version {
                ours: *self,
                theirs: *theirs,
            }),
        }
    }

    fn to_bytes(self) -> [u8; VERSIONS_LEN] {
        let [a, b] = self.protocol.min.to_be_bytes();
        let [c, d] = self.protocol.max.to_be_bytes();
        let [e, f] = self.app.min.to_be_bytes();
        let [g, h] = self.app.max.to_be_bytes();
        [a, b, c, d, e, f, g, h]
    }

    fn from_bytes(b: &[u8; VERSIONS_LEN]) -> Versions {
        let u = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        Versions {
            protocol: VersionRange::new(u(0), u(2)),
            app: VersionRange::new(u(4), u(6)),
        }
    }
}

impl Default for Versions {
    fn default() -> Self {
        Versions::DEFAULT
    }
}

impl core::fmt::Display for Versions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "protocol {}, app {}", self.protocol, self.app)
    }
}

/// Whether a message is a handshake message rather than a frame (the magic's common prefix).
pub fn is_handshake(bytes: &[u8]) -> bool {
    bytes.starts_with(b"GSP")
}

/// What every side refuses before looking at a message: a frame, or anything once linked.
fn precheck(bytes: &[u8], linked: bool) -> Result<(), HandshakeError> {
    if !is_handshake(bytes) {
        return Err(HandshakeError::FrameFirst);
    }
    if linked {
        return Err(HandshakeError::OutOfOrder);
    }
    Ok(())
}

fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

fn check(bytes: &[u8], magic: &[u8; 8], len: usize) -> Result<(), HandshakeError> {
    if !bytes.starts_with(magic) {
        return Err(HandshakeError::Magic);
    }
    if bytes.len() != len {
        return Err(HandshakeError::Length(bytes.len()));
    }
    Ok(())
}

/// One side's fresh values for a connection: a public nonce and an ephemeral X25519 key pair,
/// all derived from 32 random bytes (hashed, so the nonce says nothing about the secret).
struct Fresh {
    nonce: [u8; NONCE_LEN],
    secret: Zeroizing<[u8; 32]>,
    public: [u8; EPHEMERAL_LEN],
}

impl Fresh {
    fn new(random: [u8; 32]) -> Fresh {
        let random = Zeroizing::new(random);
        let h = Zeroizing::new(fixed::<64>(
            &Sha512::new()
                .chain_update(FRESH_DOMAIN)
                .chain_update(random.as_slice())
                .finalize(),
        ));
        let nonce = fixed(&h[..32]);
        let secret = Zeroizing::new(fixed::<32>(&h[32..]));
        let public = MontgomeryPoint::mul_base_clamped(*secret).to_bytes();
        Fresh {
            nonce,
            secret,
            public,
        }
    }

    /// The X25519 secret shared with the holder of `peer`, refused when it is all zeros (a
    /// low-order point chosen by the peer would make it predictable).
    fn agree(&self, peer: &[u8; EPHEMERAL_LEN]) -> Result<Zeroizing<[u8; 32]>, HandshakeError> {
        let shared = Zeroizing::new(MontgomeryPoint(*peer).mul_clamped(*self.secret).to_bytes());
        if shared.iter().all(|b| *b == 0) {
            return Err(HandshakeError::WeakKey);
        }
        Ok(shared)
    }
}

impl core::fmt::Debug for Fresh {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Fresh").finish_non_exhaustive()
    }
}

impl Clone for Fresh {
    fn clone(&self) -> Self {
        Fresh {
            nonce: self.nonce,
            secret: self.secret.clone(),
            public: self.public,
        }
    }
}

/// The ids, nonces and ephemeral keys of one connection: what both signatures cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Transcript {
    acceptor: NodeId,
    acceptor_nonce: [u8; NONCE_LEN],
    acceptor_key: [u8; EPHEMERAL_LEN],
    acceptor_versions: [u8; VERSIONS_LEN],
    dialer: NodeId,
    dialer_nonce: [u8; NONCE_LEN],
    dialer_key: [u8; EPHEMERAL_LEN],
    dialer_versions: [u8; VERSIONS_LEN],
}

impl Transcript {
    fn parts<'a>(&'a self, role: &'a [u8; 1]) -> [&'a [u8]; 10] {
        [
            HANDSHAKE_DOMAIN,
            role,
            self.acceptor.as_bytes(),
            &self.acceptor_nonce,
            &self.acceptor_key,
            &self.acceptor_versions,
            self.dialer.as_bytes(),
            &self.dialer_nonce,
            &self.dialer_key,
            &self.dialer_versions,
        ]
    }

    fn sign(&self, identity: &Identity, role: u8) -> [u8; SIGNATURE_LEN] {
        identity.sign(&self.parts(&[role])).to_bytes()
    }

    fn verify(
        &self,
        signer: &NodeId,
        role: u8,
        sig: &[u8; SIGNATURE_LEN],
    ) -> Result<(), HandshakeError> {
        let key = signer.verifying_key().ok_or(HandshakeError::Signature)?;
        key.multipart_verify(&self.parts(&[role]), &Signature::from_bytes(sig))
            .map_err(|_| HandshakeError::Signature)
    }

    /// The link key: both ends derive it from the shared secret and everything both signed.
    fn link_key(&self, shared: &[u8; 32]) -> ClusterKey {
        let mut h = Sha512::new()
            .chain_update(LINK_KEY_DOMAIN)
            .chain_update(shared);
        for part in &self.parts(&[0])[2..] {
            h.update(part);
        }
        let digest = Zeroizing::new(fixed::<64>(&h.finalize()));
        ClusterKey::from_bytes(fixed(&digest[..32]))
    }
}

/// The accepting side of one connection.
#[derive(Debug, Clone)]
pub struct Acceptor {
    id: NodeId,
    versions: Versions,
    fresh: Fresh,
    peer: Option<NodeId>,
    key: Option<ClusterKey>,
}

impl Acceptor {
    /// Starts the handshake with 32 fresh random bytes, speaking [`Versions::DEFAULT`]; send
    /// the returned challenge first.
    pub fn start(identity: &Identity, random: [u8; 32]) -> (Acceptor, Vec<u8>) {
        Acceptor::start_versioned(identity, Versions::DEFAULT, random)
    }

    /// [`Acceptor::start`], speaking `versions`.
    pub fn start_versioned(
        identity: &Identity,
        versions: Versions,
        random: [u8; 32],
    ) -> (Acceptor, Vec<u8>) {
        let id = identity.id();
        let fresh = Fresh::new(random);
        let mut msg = Vec::with_capacity(CHALLENGE_LEN);
        msg.extend_from_slice(CHALLENGE_MAGIC);
        msg.extend_from_slice(id.as_bytes());
        msg.extend_from_slice(&fresh.nonce);
        msg.extend_from_slice(&fresh.public);
        msg.extend_from_slice(&versions.to_bytes());
        (
            Acceptor {
                id,
                versions,
                fresh,
                peer: None,
                key: None,
            },
            msg,
        )
    }

    /// The dialer, once its proof verified.
    pub fn peer(&self) -> Option<NodeId> {
        self.peer
    }

    /// The link key, once the dialer's proof verified.
    pub fn link_key(&self) -> Option<&ClusterKey> {
        self.key.as_ref()
    }

    /// The dialer's proof arrived: its id (bind the connection to it) and the answer to send.
    pub fn on_proof(
        &mut self,
        identity: &Identity,
        bytes: &[u8],
    ) -> Result<(NodeId, Vec<u8>), HandshakeError> {
        if self.peer.is_some() {
            return Err(HandshakeError::OutOfOrder);
        }
        check(bytes, PROOF_MAGIC, PROOF_LEN)?;
        let dialer = NodeId::from_bytes(fixed(&bytes[8..]));
        if dialer == self.id {
            return Err(HandshakeError::OwnId);
        }
        let at = 8 + NODE_ID_LEN;
        let sig_at = at + NONCE_LEN + EPHEMERAL_LEN + VERSIONS_LEN;
        let t = Transcript {
            acceptor: self.id,
            acceptor_nonce: self.fresh.nonce,
            acceptor_key: self.fresh.public,
            acceptor_versions: self.versions.to_bytes(),
            dialer,
            dialer_nonce: fixed(&bytes[at..]),
            dialer_key: fixed(&bytes[at + NONCE_LEN..]),
            dialer_versions: fixed(&bytes[at + NONCE_LEN + EPHEMERAL_LEN..]),
        };
        t.verify(&dialer, ROLE_DIALER, &fixed(&bytes[sig_at..]))?;
        // Only after the signature: a refusal names a proven peer's own claim.
        self.versions
            .agree(&Versions::from_bytes(&t.dialer_versions))?;
        let shared = self.fresh.agree(&t.dialer_key)?;
        self.key = Some(t.link_key(&shared));
        self.peer = Some(dialer);
        let mut answer = Vec::with_capacity(ANSWER_LEN);
        answer.extend_from_slice(ANSWER_MAGIC);
        answer.extend_from_slice(&t.sign(identity, ROLE_ACCEPTOR));
        Ok((dialer, answer))
    }
}

/// The dialing side of one connection.
#[derive(Debug, Clone)]
pub struct Dialer {
    versions: Versions,
    fresh: Fresh,
    expected: Option<NodeId>,
    sent: Option<(Transcript, ClusterKey)>,
    peer: Option<NodeId>,
}

impl Dialer {
    /// A dial with 32 fresh random bytes, for `expected` when it was dialed for a known member,
    /// speaking [`Versions::DEFAULT`].
    pub fn new(random: [u8; 32], expected: Option<NodeId>) -> Dialer {
        Dialer::versioned(Versions::DEFAULT, random, expected)
    }

    /// [`Dialer::new`], speaking `versions`.
    pub fn versioned(versions: Versions, random: [u8; 32], expected: Option<NodeId>) -> Dialer {
        Dialer {
            versions,
            fresh: Fresh::new(random),
            expected,
            sent: None,
            peer: None,
        }
    }

    /// The acceptor, once its answer verified.
    pub fn peer(&self) -> Option<NodeId> {
        self.peer
    }

    /// The link key, once the acceptor's answer verified.
    pub fn link_key(&self) -> Option<&ClusterKey> {
        self.peer.and(self.sent.as_ref().map(|(_, k)| k))
    }

    /// The acceptor's challenge arrived: the claimed acceptor id (a claim until the answer
    /// verifies) and the proof to send.
    pub fn on_challenge(
        &mut self,
        identity: &Identity,
        bytes: &[u8],
    ) -> Result<(NodeId, Vec<u8>), HandshakeError> {
        if self.sent.is_some() {
            return Err(HandshakeError::OutOfOrder);
        }
        check(bytes, CHALLENGE_MAGIC, CHALLENGE_LEN)?;
        let acceptor = NodeId::from_bytes(fixed(&bytes[8..]));
        let me = identity.id();
        if acceptor == me {
            return Err(HandshakeError::OwnId);
        }
        if self.expected.is_some_and(|e| e != acceptor) {
            return Err(HandshakeError::WrongPeer);
        }
        let at = 8 + NODE_ID_LEN;
        let t = Transcript {
            acceptor,
            acceptor_nonce: fixed(&bytes[at..]),
            acceptor_key: fixed(&bytes[at + NONCE_LEN..]),
            acceptor_versions: fixed(&bytes[at + NONCE_LEN + EPHEMERAL_LEN..]),
            dialer: me,
            dialer_nonce: self.fresh.nonce,
            dialer_key: self.fresh.public,
            dialer_versions: self.versions.to_bytes(),
        };
        let shared = self.fresh.agree(&t.acceptor_key)?;
        self.sent = Some((t, t.link_key(&shared)));
        let mut proof = Vec::with_capacity(PROOF_LEN);
        proof.extend_from_slice(PROOF_MAGIC);
        proof.extend_from_slice(me.as_bytes());
        proof.extend_from_slice(&self.fresh.nonce);
        proof.extend_from_slice(&self.fresh.public);
        proof.extend_from_slice(&t.dialer_versions);
        proof.extend_from_slice(&t.sign(identity, ROLE_DIALER));
        Ok((acceptor, proof))
    }

    /// [`Handshake::on_message`] for a driver that only ever dials (a browser).
    pub fn on_message(
        &mut self,
        identity: &Identity,
        bytes: &[u8],
    ) -> Result<Step, HandshakeError> {
        precheck(bytes, self.peer.is_some())?;
        if bytes.starts_with(CHALLENGE_MAGIC) {
            let (_, proof) = self.on_challenge(identity, bytes)?;
            return Ok(Step {
                reply: Some(proof),
                peer: None,
                key: None,
            });
        }
        let peer = self.on_answer(bytes)?;
        Ok(Step {
            reply: None,
            peer: Some(peer),
            key: self.link_key().cloned(),
        })
    }

    /// The acceptor's answer arrived: its id, proven (bind the connection to it).
    pub fn on_answer(&mut self, bytes: &[u8]) -> Result<NodeId, HandshakeError> {
        let t = match (&self.sent, self.peer) {
            (Some((t, _)), None) => *t,
            _ => return Err(HandshakeError::OutOfOrder),
        };
        check(bytes, ANSWER_MAGIC, ANSWER_LEN)?;
        t.verify(&t.acceptor, ROLE_ACCEPTOR, &fixed(&bytes[8..]))?;
        // An acceptor that answers although it should have refused is refused here.
        self.versions
            .agree(&Versions::from_bytes(&t.acceptor_versions))?;
        self.peer = Some(t.acceptor);
        Ok(t.acceptor)
    }

    /// Why the acceptor will refuse this dial, known from its challenge: the versions do not
    /// overlap. A driver whose connection closes before the answer reports it (over TCP no
    /// close code says so).
    pub fn refusal(&self) -> Option<HandshakeError> {
        let (t, _) = self.sent.as_ref()?;
        self.versions
            .agree(&Versions::from_bytes(&t.acceptor_versions))
            .err()
    }
}

/// What one handshake message led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The message to send back, if any.
    pub reply: Option<Vec<u8>>,
    /// The peer, once proven: bind the connection to it ([`super::Session::on_linked`]).
    pub peer: Option<NodeId>,
    /// The link key, with the peer.
    pub key: Option<ClusterKey>,
}

/// One side of a connection's handshake, whichever it is: what a driver holds from the moment a
/// connection opens until its peer is proven.
#[derive(Debug, Clone)]
// The dialer holds the transcript it signed (with both sides' versions) until the answer; one
// value per connection, for one round trip: not worth an allocation to even out.
#[allow(clippy::large_enum_variant)]
pub enum Handshake {
    /// This node accepted the connection.
    Accepting(Acceptor),
    /// This node dialed it.
    Dialing(Dialer),
}

impl Handshake {
    /// An accepted connection, with 32 fresh random bytes: send the returned challenge before
    /// anything else. Speaks [`Versions::DEFAULT`].
    pub fn accept(identity: &Identity, random: [u8; 32]) -> (Handshake, Vec<u8>) {
        Handshake::accept_versioned(identity, Versions::DEFAULT, random)
    }

    /// [`Handshake::accept`], speaking `versions`.
    pub fn accept_versioned(
        identity: &Identity,
        versions: Versions,
        random: [u8; 32],
    ) -> (Handshake, Vec<u8>) {
        let (a, challenge) = Acceptor::start_versioned(identity, versions, random);
        (Handshake::Accepting(a), challenge)
    }

    /// A dialed connection, with 32 fresh random bytes, for `expected` when it was dialed for a
    /// known member; it waits for the acceptor's challenge. Speaks [`Versions::DEFAULT`].
    pub fn dial(random: [u8; 32], expected: Option<NodeId>) -> Handshake {
        Handshake::dial_versioned(Versions::DEFAULT, random, expected)
    }

    /// [`Handshake::dial`], speaking `versions`.
    pub fn dial_versioned(
        versions: Versions,
        random: [u8; 32],
        expected: Option<NodeId>,
    ) -> Handshake {
        Handshake::Dialing(Dialer::versioned(versions, random, expected))
    }

    /// Why the peer will refuse this connection, when this side knows it before being told
    /// ([`Dialer::refusal`]); `None` on the accepting side.
    pub fn refusal(&self) -> Option<HandshakeError> {
        match self {
            Handshake::Dialing(d) => d.refusal(),
            Handshake::Accepting(_) => None,
        }
    }

    /// The link key, once the peer is proven.
    pub fn link_key(&self) -> Option<&ClusterKey> {
        match self {
            Handshake::Accepting(a) => a.link_key(),
            Handshake::Dialing(d) => d.link_key(),
        }
    }

    /// The proven peer, once the handshake is done.
    pub fn peer(&self) -> Option<NodeId> {
        match self {
            Handshake::Accepting(a) => a.peer(),
            Handshake::Dialing(d) => d.peer(),
        }
    }

    /// A message arrived before the peer was proven. Anything but the next handshake message
    /// (a frame, a message out of order, one that does not verify) is an error: close the
    /// connection with [`super::Fault::Handshake`].
    pub fn on_message(
        &mut self,
        identity: &Identity,
        bytes: &[u8],
    ) -> Result<Step, HandshakeError> {
        match self {
            Handshake::Accepting(a) => {
                precheck(bytes, a.peer.is_some())?;
                let (peer, answer) = a.on_proof(identity, bytes)?;
                Ok(Step {
                    reply: Some(answer),
                    peer: Some(peer),
                    key: a.link_key().cloned(),
                })
            }
            Handshake::Dialing(d) => d.on_message(identity, bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn pair() -> (Identity, Identity) {
        (
            Identity::from_secret_bytes([1; 32]),
            Identity::from_secret_bytes([2; 32]),
        )
    }

    #[test]
    fn both_sides_prove_themselves_and_bind_each_other() {
        let (acc_id, dial_id) = pair();
        let (mut acc, challenge) = Acceptor::start(&acc_id, [0xa1; NONCE_LEN]);
        let mut dial = Dialer::new([0xd1; NONCE_LEN], Some(acc_id.id()));
        let (claimed, proof) = dial.on_challenge(&dial_id, &challenge).unwrap();
        assert_eq!(claimed, acc_id.id());
        assert_eq!(dial.peer(), None, "a challenge is only a claim");
        let (dialer, answer) = acc.on_proof(&acc_id, &proof).unwrap();
        assert_eq!(dialer, dial_id.id());
        assert_eq!(acc.peer(), Some(dial_id.id()));
        assert_eq!(dial.on_answer(&answer), Ok(acc_id.id()));
        assert_eq!(dial.peer(), Some(acc_id.id()));
        // Nothing after the end.
        assert_eq!(dial.on_answer(&answer), Err(HandshakeError::OutOfOrder));
        assert_eq!(
            acc.on_proof(&acc_id, &proof).map(|_| ()),
            Err(HandshakeError::OutOfOrder)
        );
    }

    #[test]
    fn a_recorded_proof_or_answer_fails_on_another_connection() {
        let (acc_id, dial_id) = pair();
        let (_, challenge) = Acceptor::start(&acc_id, [0xa1; NONCE_LEN]);
        let mut dial = Dialer::new([0xd1; NONCE_LEN], None);
        let (_, recorded_proof) = dial.on_challenge(&dial_id, &challenge).unwrap();
        // Replayed to a new connection of the same acceptor: a new nonce, so it fails.
        let (mut fresh, _) = Acceptor::start(&acc_id, [0xa2; NONCE_LEN]);
        assert_eq!(
            fresh.on_proof(&acc_id, &recorded_proof).map(|_| ()),
            Err(HandshakeError::Signature)
        );
        assert_eq!(fresh.peer(), None);

        // An answer recorded from one connection does not prove the acceptor on another.
        let (mut acc, challenge) = Acceptor::start(&acc_id, [0xa1; NONCE_LEN]);
        let mut d1 = Dialer::new([0xd1; NONCE_LEN], None);
        let (_, proof) = d1.on_challenge(&dial_id, &challenge).unwrap();
        let (_, recorded_answer) = acc.on_proof(&acc_id, &proof).unwrap();
        let mut d2 = Dialer::new([0xd2; NONCE_LEN], None);
        d2.on_challenge(&dial_id, &challenge).unwrap();
        assert_eq!(
            d2.on_answer(&recorded_answer),
            Err(HandshakeError::Signature)
        );
        assert_eq!(d2.peer(), None);
    }

    #[test]
    fn a_proof_cannot_be_reflected_or_claim_another_id() {
        let (acc_id, dial_id) = pair();
        let (mut acc, challenge) = Acceptor::start(&acc_id, [0xa1; NONCE_LEN]);
        let mut dial = Dialer::new([0xd1; NONCE_LEN], None);
        let (_, proof) = dial.on_challenge(&dial_id, &challenge).unwrap();
        // The same signature under a victim's id.
        let victim = Identity::from_secret_bytes([3; 32]).id();
        let mut forged = proof.clone();
        forged[8..8 + NODE_ID_LEN].copy_from_slice(victim.as_bytes());
        assert_eq!(
            acc.on_proof(&acc_id, &forged).map(|_| ()),
            Err(HandshakeError::Signature)
        );
        // The dialer's signature sent back as the acceptor's answer (reflection).
        let mut reflected = ANSWER_MAGIC.to_vec();
        reflected.extend_from_slice(&proof[PROOF_LEN - SIGNATURE_LEN..]);
        assert_eq!(dial.on_answer(&reflected), Err(HandshakeError::Signature));
        // Claiming the acceptor's own id.
        let (mut acc2, challenge2) = Acceptor::start(&acc_id, [0xa3; NONCE_LEN]);
        let mut me = Dialer::new([0xd3; NONCE_LEN], None);
        assert_eq!(
            me.on_challenge(&acc_id, &challenge2).map(|_| ()),
            Err(HandshakeError::OwnId)
        );
        let (_, p) = Dialer::new([0xd3; NONCE_LEN], None)
            .on_challenge(&dial_id, &challenge2)
            .unwrap();
        let mut own = p;
        own[8..8 + NODE_ID_LEN].copy_from_slice(acc_id.id().as_bytes());
        assert_eq!(
            acc2.on_proof(&acc_id, &own).map(|_| ()),
            Err(HandshakeError::OwnId)
        );
    }

    #[test]
    fn malformed_and_misdirected_messages_are_typed_errors() {
        let (acc_id, dial_id) = pair();
        let (mut acc, challenge) = Acceptor::start(&acc_id, [0xa1; NONCE_LEN]);
        let mut wrong = Dialer::new([0xd1; NONCE_LEN], Some(dial_id.id()));
        assert_eq!(
            wrong.on_challenge(&Identity::from_secret_bytes([4; 32]), &challenge),
            Err(HandshakeError::WrongPeer)
        );
        let mut dial = Dialer::new([0xd1; NONCE_LEN], None);
        assert_eq!(
            dial.on_answer(&[0; ANSWER_LEN]),
            Err(HandshakeError::OutOfOrder)
        );
        for bad in [&challenge[..CHALLENGE_LEN - 1], &[][..], b"GSPHELO1xxxx"] {
            assert!(dial.clone().on_challenge(&dial_id, bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            dial.clone().on_challenge(&dial_id, &challenge[..70]),
            Err(HandshakeError::Length(70))
        );
        let (_, proof) = dial.on_challenge(&dial_id, &challenge).unwrap();
        assert_eq!(
            acc.on_proof(&acc_id, &proof[..PROOF_LEN - 1]).map(|_| ()),
            Err(HandshakeError::Length(PROOF_LEN - 1))
        );
        assert_eq!(
            acc.on_proof(&acc_id, &challenge).map(|_| ()),
            Err(HandshakeError::Magic)
        );
        // A proof naming a point that is no usable key.
        let mut weak = proof.clone();
        weak[8..8 + NODE_ID_LEN].copy_from_slice(&{
            let mut w = [0u8; NODE_ID_LEN];
            w[0] = 1;
            w
        });
        assert_eq!(
            acc.on_proof(&acc_id, &weak).map(|_| ()),
            Err(HandshakeError::Signature)
        );
        assert!(is_handshake(&challenge) && is_handshake(&proof));
        assert!(!is_handshake(&[1, b'G', b'S', b'P']));
    }

    /// The bytes of docs/PROTOCOL.md's example: acceptor secret [1; 32] with nonce [0xa1; 32],
    /// dialer secret [2; 32] with nonce [0xd1; 32]. Ed25519 is deterministic, so they are fixed.
    #[test]
    fn golden_vector() {
        let (acc_id, dial_id) = pair();
        let (mut acc, challenge) = Acceptor::start(&acc_id, [0xa1; NONCE_LEN]);
        let mut dial = Dialer::new([0xd1; NONCE_LEN], None);
        let (_, proof) = dial.on_challenge(&dial_id, &challenge).unwrap();
        let (_, answer) = acc.on_proof(&acc_id, &proof).unwrap();
        dial.on_answer(&answer).unwrap();
        let key = acc.link_key().unwrap().as_bytes().to_vec();
        assert_eq!(dial.link_key().unwrap().as_bytes().as_slice(), key);
        let doc = include_str!("../../../docs/PROTOCOL.md");
        let missing: Vec<String> = [
            ("challenge", &challenge),
            ("proof", &proof),
            ("answer", &answer),
            ("link key", &key),
        ]
        .iter()
        .map(|(what, bytes)| format!("{what}: {}", hex(bytes)))
        .filter(|line| !doc.contains(line.as_str()))
        .collect();
        assert!(
            missing.is_empty(),
            "docs/PROTOCOL.md misses the golden vector:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn the_wrapper_runs_both_sides_and_refuses_frames_and_extra_messages() {
        let (acc_id, dial_id) = pair();
        let (mut acceptor, challenge) = Handshake::accept(&acc_id, [0x11; NONCE_LEN]);
        let mut dialer = Handshake::dial([0x22; NONCE_LEN], Some(acc_id.id()));
        // A frame (version byte 1) where a handshake message belongs.
        assert_eq!(
            dialer.clone().on_message(&dial_id, &[1, 2, 3]),
            Err(HandshakeError::FrameFirst)
        );
        let proof = dialer.on_message(&dial_id, &challenge).unwrap();
        assert_eq!(proof.peer, None);
        let proof = proof.reply.unwrap();
        let answer = acceptor.on_message(&acc_id, &proof).unwrap();
        assert_eq!(answer.peer, Some(dial_id.id()));
        assert_eq!(acceptor.peer(), Some(dial_id.id()));
        let done = dialer.on_message(&dial_id, &answer.reply.unwrap()).unwrap();
        assert_eq!(done.reply, None);
        assert_eq!(done.peer, Some(acc_id.id()));
        assert!(done.key.is_some());
        assert_eq!(done.key.as_ref(), acceptor.link_key());
        assert_eq!(dialer.peer(), Some(acc_id.id()));
        // Once linked, any further handshake message is out of order, on both sides.
        assert_eq!(
            dialer.on_message(&dial_id, &challenge),
            Err(HandshakeError::OutOfOrder)
        );
        assert_eq!(
            acceptor.on_message(&acc_id, &proof),
            Err(HandshakeError::OutOfOrder)
        );
        // A dialer waiting for a challenge is handed an answer.
        let mut early = Handshake::dial([0x33; NONCE_LEN], None);
        let mut answer = ANSWER_MAGIC.to_vec();
        answer.extend_from_slice(&[0; SIGNATURE_LEN]);
        assert_eq!(
            early.on_message(&dial_id, &answer),
            Err(HandshakeError::OutOfOrder)
        );
    }

    #[test]
    fn both_ends_agree_a_key_no_other_connection_shares() {
        let (acc_id, dial_id) = pair();
        let run = |a: u8, d: u8| {
            let (mut acc, challenge) = Acceptor::start(&acc_id, [a; 32]);
            let mut dial = Dialer::new([d; 32], None);
            assert!(dial.link_key().is_none());
            let (_, proof) = dial.on_challenge(&dial_id, &challenge).unwrap();
            assert!(
                dial.link_key().is_none(),
                "no key before the answer proves the peer"
            );
            let (_, answer) = acc.on_proof(&acc_id, &proof).unwrap();
            dial.on_answer(&answer).unwrap();
            let k = acc.link_key().unwrap().clone();
            assert_eq!(dial.link_key(), Some(&k));
            k
        };
        let k1 = run(1, 2);
        assert_ne!(k1, run(1, 3), "a new dialer nonce, a new key");
        assert_ne!(k1, run(4, 2), "a new acceptor nonce, a new key");
        assert_eq!(k1, run(1, 2), "deterministic in the random bytes");
    }

    #[test]
    fn version_ranges_agree_on_the_newest_common_version() {
        // Every pair of small ranges, empty ones included, against a brute-force overlap.
        for (a, b, c, d) in (0..5u16).flat_map(|a| {
            (0..5u16).flat_map(move |b| {
                (0..5u16).flat_map(move |c| (0..5u16).map(move |d| (a, b, c, d)))
            })
        }) {
            let (x, y) = (VersionRange::new(a, b), VersionRange::new(c, d));
            let both = (0..5u16)
                .filter(|v| (a..=b).contains(v) && (c..=d).contains(v))
                .max();
            assert_eq!(x.agree(y), both, "{x} {y}");
            assert_eq!(y.agree(x), both, "{x} {y}");
        }
        let extreme = VersionRange::new(u16::MAX, 0);
        assert_eq!(extreme.agree(VersionRange::new(0, u16::MAX)), None);
        let all = Versions {
            protocol: VersionRange::new(0, u16::MAX),
            app: VersionRange::new(0, u16::MAX),
        };
        assert_eq!(Versions::from_bytes(&all.to_bytes()), all);
        // A peer claiming everything gets what this side speaks at most: no upgrade to a
        // version this build does not have, no downgrade below what both have.
        assert_eq!(
            Versions::app(2, 5).agree(&all),
            Ok(Agreed {
                protocol: PROTOCOL_VERSION,
                app: 5
            })
        );
    }

    /// Runs a handshake between an acceptor and a dialer speaking these versions, as far as it
    /// goes: the acceptor's result and the dialer's [`Dialer::refusal`] after the challenge.
    fn versioned(
        acc: Versions,
        dial: Versions,
    ) -> (Result<NodeId, HandshakeError>, Option<HandshakeError>) {
        let (acc_id, dial_id) = pair();
        let (mut a, challenge) = Acceptor::start_versioned(&acc_id, acc, [0xa1; 32]);
        let mut d = Dialer::versioned(dial, [0xd1; 32], None);
        let (_, proof) = d.on_challenge(&dial_id, &challenge).unwrap();
        let refusal = d.refusal();
        (a.on_proof(&acc_id, &proof).map(|(id, _)| id), refusal)
    }

    #[test]
    fn disjoint_versions_are_refused_by_both_sides_with_both_ranges() {
        let (acc, dial) = (Versions::app(2, 3), Versions::app(4, 9));
        let refused = HandshakeError::Version {
            ours: acc,
            theirs: dial,
        };
        assert_eq!(
            versioned(acc, dial),
            (
                Err(refused),
                Some(HandshakeError::Version {
                    ours: dial,
                    theirs: acc
                })
            )
        );
        assert_eq!(acc.to_string(), "protocol 1-1, app 2-3");
        // The close reason fits a WebSocket close frame (123 bytes) whatever the numbers.
        let widest = VersionRange::new(u16::MAX, u16::MAX);
        let widest = Versions {
            protocol: widest,
            app: widest,
        };
        let reason = crate::link::Fault::Handshake(HandshakeError::Version {
            ours: widest,
            theirs: widest,
        })
        .to_string();
        assert!(reason.len() <= 123, "{} bytes: {reason}", reason.len());
        // Overlapping: linked, no refusal.
        let (linked, refusal) = versioned(Versions::app(2, 3), Versions::app(3, 9));
        assert!(linked.is_ok() && refusal.is_none());
        // Absurd ranges from a peer: an empty protocol range, a protocol this build lacks.
        for theirs in [
            Versions {
                protocol: VersionRange::new(u16::MAX, 0),
                app: VersionRange::new(0, u16::MAX),
            },
            Versions {
                protocol: VersionRange::new(PROTOCOL_VERSION + 1, u16::MAX),
                app: VersionRange::new(0, 0),
            },
            Versions {
                protocol: VersionRange::new(0, PROTOCOL_VERSION - 1),
                app: VersionRange::new(0, 0),
            },
        ] {
            let (got, _) = versioned(Versions::DEFAULT, theirs);
            assert!(
                matches!(got, Err(HandshakeError::Version { .. })),
                "{theirs}"
            );
        }
    }

    #[test]
    fn an_answer_despite_disjoint_versions_is_refused_by_the_dialer() {
        let (acc_id, dial_id) = pair();
        let (_, challenge) = Acceptor::start_versioned(&acc_id, Versions::app(7, 7), [0xa1; 32]);
        let mut d = Dialer::new([0xd1; 32], None);
        d.on_challenge(&dial_id, &challenge).unwrap();
        // An acceptor that skips its check signs the answer anyway.
        let (t, _) = d.sent.clone().unwrap();
        let mut answer = ANSWER_MAGIC.to_vec();
        answer.extend_from_slice(&t.sign(&acc_id, ROLE_ACCEPTOR));
        assert!(matches!(
            d.on_answer(&answer),
            Err(HandshakeError::Version { .. })
        ));
        assert_eq!(d.peer(), None);
        assert_eq!(d.link_key(), None);
    }

    #[test]
    fn versions_changed_on_the_path_break_the_signatures() {
        let (acc_id, dial_id) = pair();
        let at = 8 + NODE_ID_LEN + NONCE_LEN + EPHEMERAL_LEN;
        // The dialer's ranges lowered in its proof.
        let (mut a, challenge) = Acceptor::start_versioned(&acc_id, Versions::app(0, 9), [1; 32]);
        let mut d = Dialer::versioned(Versions::app(5, 9), [2; 32], None);
        let (_, mut proof) = d.on_challenge(&dial_id, &challenge).unwrap();
        proof[at..at + VERSIONS_LEN].copy_from_slice(&Versions::app(0, 0).to_bytes());
        assert_eq!(
            a.on_proof(&acc_id, &proof).map(|_| ()),
            Err(HandshakeError::Signature)
        );
        // The acceptor's ranges lowered in its challenge: the dialer signs what it saw, which
        // the acceptor does not verify.
        let (mut a, mut challenge) =
            Acceptor::start_versioned(&acc_id, Versions::app(5, 9), [1; 32]);
        challenge[at..at + VERSIONS_LEN].copy_from_slice(&Versions::app(0, 9).to_bytes());
        let (_, proof) = Dialer::versioned(Versions::app(0, 9), [2; 32], None)
            .on_challenge(&dial_id, &challenge)
            .unwrap();
        assert_eq!(
            a.on_proof(&acc_id, &proof).map(|_| ()),
            Err(HandshakeError::Signature)
        );
    }

    #[test]
    fn a_low_order_key_is_refused() {
        let (acc_id, dial_id) = pair();
        let (mut acc, challenge) = Acceptor::start(&acc_id, [1; 32]);
        // The all-zero point makes every shared secret zero.
        let mut weak = challenge.clone();
        weak[8 + NODE_ID_LEN + NONCE_LEN..8 + NODE_ID_LEN + NONCE_LEN + EPHEMERAL_LEN].fill(0);
        assert_eq!(
            Dialer::new([2; 32], None)
                .on_challenge(&dial_id, &weak)
                .map(|_| ()),
            Err(HandshakeError::WeakKey)
        );
        // A dialer that signs a zero key of its own (it holds its identity key) gets no link.
        let mut dial = Dialer::new([2; 32], None);
        dial.fresh.public = [0; EPHEMERAL_LEN];
        let (_, proof) = dial.on_challenge(&dial_id, &challenge).unwrap();
        assert_eq!(
            acc.on_proof(&acc_id, &proof).map(|_| ()),
            Err(HandshakeError::WeakKey)
        );
        assert_eq!(acc.peer(), None);
    }
}
