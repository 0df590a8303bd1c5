//! Fuzzes the inbound side of the wire pipeline. Nothing here may panic, whatever the bytes.
//!
//! Each input goes through three paths, with fresh codecs every run (so a crash reproduces from
//! its input alone; the identities and keys are fixed and built once):
//!
//! 1. as a frame: `Codec::decode` on an encrypted codec and on a plain-text codec;
//! 2. as a signed packet: `SignedPacket::from_bytes` then `Codec::verify`;
//! 3. re-signed: the input is taken as `id ‖ kind ‖ encoding ‖ payload`, given a valid signature
//!    by a fixed identity, then verified, sealed (encrypted) and decoded. Random bytes almost never
//!    carry a valid signature or AEAD tag, so without this path the fuzzer would never reach the
//!    payload decoder (lz4 inflation, MessagePack, nested signed packets).
//!
//! Checked properties besides "no panic": a frame accepted once is refused when replayed, a
//! correctly signed packet never fails on its signature, `decode` and `verify` agree, and a decoded
//! message re-encodes (`Codec::sign`) to a packet that decodes to the same message.

#![no_main]

use std::sync::OnceLock;

use ed25519_dalek::{Signer, SigningKey};
use gossip_core::error::{Unauthenticated, WireError};
use gossip_core::identity::NODE_ID_LEN;
use gossip_core::wire::{SIGNATURE_DOMAIN, SIGNATURE_LEN, VERSION};
use gossip_core::{ClusterKey, Codec, Identity, Keyring, Limits, ReplayConfig, SignedPacket};
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

/// The receiver's wall clock for path 1 (2023-11-14).
const WALL_MS: u64 = 1_700_000_000_000;
const RECEIVER_SECRET: [u8; 32] = [1; 32];
const SENDER_SECRET: [u8; 32] = [2; 32];
const CLUSTER_KEY: [u8; 32] = [42; 32];

struct Fixed {
    receiver: Identity,
    sender: Identity,
    sender_key: SigningKey,
    encrypted: Keyring,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| Fixed {
        receiver: Identity::from_secret_bytes(RECEIVER_SECRET),
        sender: Identity::from_secret_bytes(SENDER_SECRET),
        sender_key: SigningKey::from_bytes(&SENDER_SECRET),
        encrypted: Keyring::new(ClusterKey::from_bytes(CLUSTER_KEY)),
    })
}

fn codec(identity: &Identity, keyring: &Keyring) -> Codec {
    Codec::new(
        identity.clone(),
        keyring.clone(),
        Limits::default(),
        ReplayConfig::default(),
    )
}

/// Decodes `frame` twice: once accepted, it must be refused as a replay.
fn decode_twice(codec: &mut Codec, frame: &[u8], wall_ms: u64) {
    if codec.decode(frame, wall_ms).is_ok() {
        assert!(
            codec.decode(frame, wall_ms).is_err(),
            "a replayed frame was accepted"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    let mut encrypted = codec(&f.receiver, &f.encrypted);
    let mut plain = codec(&f.receiver, &Keyring::unencrypted());

    // 1. The input as a frame.
    decode_twice(&mut encrypted, data, WALL_MS);
    decode_twice(&mut plain, data, WALL_MS);

    // 2. The input as a signed packet (e.g. piggybacked gossip).
    if let Ok(packet) = SignedPacket::from_bytes(data.to_vec()) {
        let _ = plain.verify(&packet);
    }

    // 3. The input as the signed part of a packet from the sender, with a valid signature.
    let origin = f.sender.id();
    let mut bytes = Vec::with_capacity(SIGNATURE_LEN + NODE_ID_LEN + data.len());
    bytes.resize(SIGNATURE_LEN, 0);
    bytes.extend_from_slice(origin.as_bytes());
    bytes.extend_from_slice(data);
    let mut signed = Vec::with_capacity(SIGNATURE_DOMAIN.len() + 1 + bytes.len() - SIGNATURE_LEN);
    signed.extend_from_slice(SIGNATURE_DOMAIN);
    signed.push(VERSION);
    signed.extend_from_slice(&bytes[SIGNATURE_LEN..]);
    let signature = f.sender_key.sign(&signed);
    bytes[..SIGNATURE_LEN].copy_from_slice(&signature.to_bytes());
    let Ok(packet) = SignedPacket::from_bytes(bytes) else {
        return; // shorter than id ‖ kind ‖ encoding
    };
    let verified = codec(&f.receiver, &f.encrypted).verify(&packet);
    assert!(
        !matches!(
            verified,
            Err(WireError::Unauthenticated(Unauthenticated::Signature))
        ),
        "a correctly signed packet failed verification"
    );
    // Seal it as the sender would and decode it at the packet's own time, inside the replay window.
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    let sender = codec(&f.sender, &f.encrypted);
    if let Ok(frame) = sender.seal(&mut rng, 3, &packet) {
        let wall_ms = packet.id().millis();
        let mut receiver = codec(&f.receiver, &f.encrypted);
        match (receiver.decode(&frame, wall_ms), &verified) {
            (Ok(inbound), Ok(message)) => {
                assert_eq!(&inbound.message, message, "decode and verify disagree");
                assert!(
                    receiver.decode(&frame, wall_ms).is_err(),
                    "a replayed frame was accepted"
                );
            }
            (Err(_), Err(_)) => {}
            (accepted, verified) => {
                panic!("decode and verify disagree: {accepted:?} vs {verified:?}")
            }
        }
    }
    // What decodes re-encodes to the same message.
    if let Ok(message) = &verified {
        let again = sender
            .sign(packet.id(), message)
            .expect("a decoded message re-encodes");
        let decoded = codec(&f.receiver, &f.encrypted)
            .verify(&again)
            .expect("a re-encoded message verifies");
        assert_eq!(&decoded, message, "message changed across a re-encode");
    }
});
