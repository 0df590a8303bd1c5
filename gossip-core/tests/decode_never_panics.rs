//! Hostile input never panics the decoder: every outcome is a value or a typed error.

mod common;

use common::*;
use gossip_core::wire::{ENCODING_LZ4, ENCODING_RAW};
use gossip_core::{Keyring, Message, SignedPacket};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = encrypted(2).decode(&bytes, NOW_MS);
        let _ = plaintext(2).decode(&bytes, NOW_MS);
        if let Ok(packet) = SignedPacket::from_bytes(bytes) {
            let _ = plaintext(2).verify(&packet);
        }
    }

    #[test]
    fn plausible_plaintext_prefix(body in proptest::collection::vec(any::<u8>(), 0..2048), ttl: u8) {
        let mut frame = vec![1, 0, ttl];
        frame.extend_from_slice(&body);
        prop_assert!(plaintext(2).decode(&frame, NOW_MS).is_err());
    }

    #[test]
    fn mutated_valid_frames(case in 0usize..33, at in any::<prop::sample::Index>(), value: u8) {
        let msg = &all_kinds()[case].1;
        let mut frame = plaintext(1).encode(&mut CountingRng(0), ts(0), 1, msg).unwrap();
        let i = at.index(frame.len());
        frame[i] = value;
        let _ = plaintext(2).decode(&frame, NOW_MS);
    }

    // Validly signed garbage reaches the payload decoders: MessagePack and lz4 on arbitrary bytes.
    #[test]
    fn signed_garbage_payloads(
        kind in 0u8..16,
        lz4: bool,
        payload in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let encoding = if lz4 { ENCODING_LZ4 } else { ENCODING_RAW };
        let part = signed_part(identity(1).id(), ts(0), kind, encoding, &payload);
        let packet = sign_raw(secret(1), &part);
        let mut receiver = codec(2, Keyring::unencrypted());
        if let Ok(message) = receiver.accept(&packet, NOW_MS) {
            prop_assert_eq!(message.kind(), kind);
            prop_assert!(Message::is_known_kind(kind));
        }
    }
}
