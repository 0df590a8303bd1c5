//! The authenticated per-connection handshake: each side signs the other's fresh nonce.
//!
//! A frame says who signed it, not whom it is for, so a frame captured on the wire and replayed as
//! the first frame of a new connection proves nothing about the peer at the other end. The route
//! of a connection (the member it is bound to) must therefore come from a proof made for this
//! connection only: each side picks a fresh 32-byte nonce (from the driver's RNG; the core has
//! none) and signs the other side's nonce with its [`Identity`]. One signature and one
//! verification per side.
//!
//! Three binary messages, each one WebSocket message or one length-prefixed TCP message, before
//! any frame. They start with `G` (a frame starts with its version byte, 1), so a receiver tells
//! them from frames by the first byte:
//!
//! | message | from | bytes |
//! |---|---|---|
//! | challenge | acceptor, first | `GSPHELO2` (8) · acceptor id (32) · acceptor nonce (32) = 72 |
//! | proof | dialer, after the challenge | `GSPAUTH2` (8) · dialer id (32) · dialer nonce (32) · signature (64) = 136 |
//! | answer | acceptor, after the proof | `GSPACPT2` (8) · signature (64) = 72 |
//!
//! Both signatures are Ed25519 over [`HANDSHAKE_DOMAIN`] · role (1 byte: [`ROLE_DIALER`] or
//! [`ROLE_ACCEPTOR`]) · acceptor id · acceptor nonce · dialer id · dialer nonce. The domain keeps
//! them from ever verifying as a frame signature (and frames from verifying as these); the role
//! byte keeps one side's proof from being reflected as the other's; the nonces make every
//! transcript unique, so a recorded proof fails on any other connection.
//!
//! The acceptor binds the connection to the dialer when the proof verifies; the dialer binds it
//! to the acceptor when the answer verifies (and refuses an acceptor other than the member it
//! dialed for). Nothing else ever binds a connection; frames of other origins may still travel
//! over it (a server forwards the frames of the members it relays) without moving the route.

use ed25519_dalek::Signature;
use ed25519_dalek::ed25519::signature::MultipartVerifier;

use crate::identity::{Identity, NODE_ID_LEN, NodeId};

/// Signature domain of the handshake, distinct from the frame signature domain.
pub const HANDSHAKE_DOMAIN: &[u8] = b"gossip/v1 link\0";
/// Role byte signed by the dialer.
pub const ROLE_DIALER: u8 = 1;
/// Role byte signed by the acceptor.
pub const ROLE_ACCEPTOR: u8 = 2;
/// Bytes of a nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes of a signature.
pub const SIGNATURE_LEN: usize = 64;

/// First bytes of the acceptor's challenge (version 2 of the hello: it carries a nonce).
pub const CHALLENGE_MAGIC: &[u8; 8] = b"GSPHELO2";
/// First bytes of the dialer's proof.
pub const PROOF_MAGIC: &[u8; 8] = b"GSPAUTH2";
/// First bytes of the acceptor's answer.
pub const ANSWER_MAGIC: &[u8; 8] = b"GSPACPT2";

/// Length of a challenge.
pub const CHALLENGE_LEN: usize = 8 + NODE_ID_LEN + NONCE_LEN;
/// Length of a proof.
pub const PROOF_LEN: usize = 8 + NODE_ID_LEN + NONCE_LEN + SIGNATURE_LEN;
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
}

/// Whether a message is a handshake message rather than a frame (the magic's common prefix).
pub fn is_handshake(bytes: &[u8]) -> bool {
    bytes.starts_with(b"GSP")
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

/// The ids and nonces of one connection: what both signatures cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Transcript {
    acceptor: NodeId,
    acceptor_nonce: [u8; NONCE_LEN],
    dialer: NodeId,
    dialer_nonce: [u8; NONCE_LEN],
}

impl Transcript {
    fn sign(&self, identity: &Identity, role: u8) -> [u8; SIGNATURE_LEN] {
        identity
            .sign(&[
                HANDSHAKE_DOMAIN,
                &[role],
                self.acceptor.as_bytes(),
                &self.acceptor_nonce,
                self.dialer.as_bytes(),
                &self.dialer_nonce,
            ])
            .to_bytes()
    }

    fn verify(
        &self,
        signer: &NodeId,
        role: u8,
        sig: &[u8; SIGNATURE_LEN],
    ) -> Result<(), HandshakeError> {
        let key = signer.verifying_key().ok_or(HandshakeError::Signature)?;
        key.multipart_verify(
            &[
                HANDSHAKE_DOMAIN,
                &[role],
                self.acceptor.as_bytes(),
                &self.acceptor_nonce,
                self.dialer.as_bytes(),
                &self.dialer_nonce,
            ],
            &Signature::from_bytes(sig),
        )
        .map_err(|_| HandshakeError::Signature)
    }
}

/// The accepting side of one connection.
#[derive(Debug, Clone)]
pub struct Acceptor {
    id: NodeId,
    nonce: [u8; NONCE_LEN],
    peer: Option<NodeId>,
}

impl Acceptor {
    /// Starts the handshake with a fresh `nonce`; send the returned challenge first.
    pub fn start(identity: &Identity, nonce: [u8; NONCE_LEN]) -> (Acceptor, Vec<u8>) {
        let id = identity.id();
        let mut msg = Vec::with_capacity(CHALLENGE_LEN);
        msg.extend_from_slice(CHALLENGE_MAGIC);
        msg.extend_from_slice(id.as_bytes());
        msg.extend_from_slice(&nonce);
        (
            Acceptor {
                id,
                nonce,
                peer: None,
            },
            msg,
        )
    }

    /// The dialer, once its proof verified.
    pub fn peer(&self) -> Option<NodeId> {
        self.peer
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
        let t = Transcript {
            acceptor: self.id,
            acceptor_nonce: self.nonce,
            dialer,
            dialer_nonce: fixed(&bytes[8 + NODE_ID_LEN..]),
        };
        t.verify(
            &dialer,
            ROLE_DIALER,
            &fixed(&bytes[8 + NODE_ID_LEN + NONCE_LEN..]),
        )?;
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
    nonce: [u8; NONCE_LEN],
    expected: Option<NodeId>,
    sent: Option<Transcript>,
    peer: Option<NodeId>,
}

impl Dialer {
    /// A dial with a fresh `nonce`, for `expected` when it was dialed for a known member.
    pub fn new(nonce: [u8; NONCE_LEN], expected: Option<NodeId>) -> Dialer {
        Dialer {
            nonce,
            expected,
            sent: None,
            peer: None,
        }
    }

    /// The acceptor, once its answer verified.
    pub fn peer(&self) -> Option<NodeId> {
        self.peer
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
        let t = Transcript {
            acceptor,
            acceptor_nonce: fixed(&bytes[8 + NODE_ID_LEN..]),
            dialer: me,
            dialer_nonce: self.nonce,
        };
        self.sent = Some(t);
        let mut proof = Vec::with_capacity(PROOF_LEN);
        proof.extend_from_slice(PROOF_MAGIC);
        proof.extend_from_slice(me.as_bytes());
        proof.extend_from_slice(&self.nonce);
        proof.extend_from_slice(&t.sign(identity, ROLE_DIALER));
        Ok((acceptor, proof))
    }

    /// The acceptor's answer arrived: its id, proven (bind the connection to it).
    pub fn on_answer(&mut self, bytes: &[u8]) -> Result<NodeId, HandshakeError> {
        let t = match (self.sent, self.peer) {
            (Some(t), None) => t,
            _ => return Err(HandshakeError::OutOfOrder),
        };
        check(bytes, ANSWER_MAGIC, ANSWER_LEN)?;
        t.verify(&t.acceptor, ROLE_ACCEPTOR, &fixed(&bytes[8..]))?;
        self.peer = Some(t.acceptor);
        Ok(t.acceptor)
    }
}

/// What one handshake message led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The message to send back, if any.
    pub reply: Option<Vec<u8>>,
    /// The peer, once proven: bind the connection to it ([`super::Session::on_linked`]).
    pub peer: Option<NodeId>,
}

/// One side of a connection's handshake, whichever it is: what a driver holds from the moment a
/// connection opens until its peer is proven.
#[derive(Debug, Clone)]
pub enum Handshake {
    /// This node accepted the connection.
    Accepting(Acceptor),
    /// This node dialed it.
    Dialing(Dialer),
}

impl Handshake {
    /// An accepted connection: send the returned challenge before anything else.
    pub fn accept(identity: &Identity, nonce: [u8; NONCE_LEN]) -> (Handshake, Vec<u8>) {
        let (a, challenge) = Acceptor::start(identity, nonce);
        (Handshake::Accepting(a), challenge)
    }

    /// A dialed connection, for `expected` when it was dialed for a known member; it waits for
    /// the acceptor's challenge.
    pub fn dial(nonce: [u8; NONCE_LEN], expected: Option<NodeId>) -> Handshake {
        Handshake::Dialing(Dialer::new(nonce, expected))
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
        if !is_handshake(bytes) {
            return Err(HandshakeError::FrameFirst);
        }
        if self.peer().is_some() {
            return Err(HandshakeError::OutOfOrder);
        }
        match self {
            Handshake::Accepting(a) => {
                let (peer, answer) = a.on_proof(identity, bytes)?;
                Ok(Step {
                    reply: Some(answer),
                    peer: Some(peer),
                })
            }
            Handshake::Dialing(d) if bytes.starts_with(CHALLENGE_MAGIC) => {
                let (_, proof) = d.on_challenge(identity, bytes)?;
                Ok(Step {
                    reply: Some(proof),
                    peer: None,
                })
            }
            Handshake::Dialing(d) => Ok(Step {
                reply: None,
                peer: Some(d.on_answer(bytes)?),
            }),
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
        let doc = include_str!("../../../docs/PROTOCOL.md");
        let missing: Vec<String> = [
            ("challenge", &challenge),
            ("proof", &proof),
            ("answer", &answer),
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
        assert_eq!(
            done,
            Step {
                reply: None,
                peer: Some(acc_id.id())
            }
        );
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
}
