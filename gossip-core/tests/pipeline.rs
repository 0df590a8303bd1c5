//! Properties of the packet pipeline: round trips, authentication, replay, limits, key rotation.

mod common;

use common::*;
use gossip_core::error::{
    EncodeError, Incompatible, Malformed, Replayed, TooLarge, Unauthenticated, WireError,
};
use gossip_core::message::{Broadcast, Gossip, MembershipMessage, Ping};
use gossip_core::wire::{ENCODING_LZ4, ENCODING_RAW, PREFIX_LEN};
use gossip_core::{Keyring, Limits, Message, ReplayConfig, Timestamp};

#[test]
fn every_kind_is_covered() {
    let mut covered: Vec<u8> = all_kinds().iter().map(|(_, m)| m.kind()).collect();
    covered.sort_unstable();
    let known: Vec<u8> = (0..=255u8).filter(|k| Message::is_known_kind(*k)).collect();
    assert_eq!(
        covered, known,
        "all_kinds() must hold one message of every kind"
    );
}

#[test]
fn every_kind_round_trips_encrypted_and_plain() {
    for (make_sender, make_receiver) in [
        (encrypted as fn(u8) -> _, encrypted as fn(u8) -> _),
        (plaintext, plaintext),
    ] {
        let sender = make_sender(1);
        let mut receiver = make_receiver(2);
        for (i, (name, msg)) in all_kinds().into_iter().enumerate() {
            let id = ts(i as u16);
            let frame = sender.encode(&mut CountingRng(0), id, 5, &msg).unwrap();
            let got = receiver
                .decode(&frame, NOW_MS)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.message, msg, "{name}");
            assert_eq!(got.origin(), identity(1).id(), "{name}");
            assert_eq!(got.id(), id, "{name}");
            assert_eq!(got.ttl, 5, "{name}");
        }
    }
}

#[test]
fn piggybacked_packets_verify_on_their_own() {
    let sender = encrypted(1);
    let mut receiver = encrypted(2);
    let items = vec![nested(3, 1), nested(4, 2)];
    let msg = Message::from(Gossip {
        items: items.clone(),
    });
    let frame = sender.encode(&mut CountingRng(0), ts(0), 0, &msg).unwrap();
    let Message::Membership(MembershipMessage::Gossip(got)) =
        receiver.decode(&frame, NOW_MS).unwrap().message
    else {
        panic!("not gossip")
    };
    for (item, origin) in got.items.iter().zip([3, 4]) {
        assert_eq!(item.origin(), identity(origin).id());
        receiver.accept(item, NOW_MS).unwrap();
        // Accepting an item twice is a replay, whoever carries it.
        assert_eq!(
            receiver.accept(item, NOW_MS),
            Err(Replayed::Duplicate.into())
        );
    }
    assert_eq!(got.items, items);
}

#[test]
fn forwarded_packet_keeps_origin_signature() {
    let origin = encrypted(1);
    let mut relay = encrypted(2);
    let mut far = encrypted(3);
    let msg = Message::from(Broadcast {
        topic: "t".into(),
        data: vec![1; 40].into(),
    });
    let frame = origin.encode(&mut CountingRng(0), ts(0), 3, &msg).unwrap();
    let hop = relay.decode(&frame, NOW_MS).unwrap();
    let forwarded = relay
        .seal(&mut CountingRng(9), hop.ttl - 1, &hop.packet)
        .unwrap();
    let got = far.decode(&forwarded, NOW_MS).unwrap();
    assert_eq!(got.origin(), identity(1).id());
    assert_eq!(got.ttl, 2);
    assert_eq!(got.message, msg);
}

#[test]
fn large_payloads_compress_only_when_it_pays() {
    let sender = plaintext(1);
    let mut receiver = plaintext(2);
    let text = "{\"role\":\"worker\",\"zone\":\"eu-west\"}".repeat(100);
    let compressible = Message::from(Broadcast {
        topic: "t".into(),
        data: text.into_bytes().into(),
    });
    let packet = sender.sign(ts(0), &compressible).unwrap();
    assert_eq!(packet.encoding(), ENCODING_LZ4);
    assert!(
        packet.len() < 1000,
        "3.4 KB of repetitive JSON compresses, got {}",
        packet.len()
    );
    assert_eq!(receiver.accept(&packet, NOW_MS).unwrap(), compressible);

    let mut noise = vec![0u8; 3000];
    let mut x: u32 = 12345;
    for b in &mut noise {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        *b = (x >> 16) as u8;
    }
    let incompressible = Message::from(Broadcast {
        topic: "t".into(),
        data: noise.into(),
    });
    let packet = sender.sign(ts(1), &incompressible).unwrap();
    assert_eq!(packet.encoding(), ENCODING_RAW);
    assert_eq!(receiver.accept(&packet, NOW_MS).unwrap(), incompressible);

    let small = Message::from(Broadcast {
        topic: "t".into(),
        data: vec![0; 100].into(),
    });
    assert_eq!(
        sender.sign(ts(2), &small).unwrap().encoding(),
        ENCODING_RAW,
        "under the threshold"
    );
}

#[test]
fn tampering_with_any_byte_of_an_encrypted_frame_is_rejected() {
    let sender = encrypted(1);
    let (_, msg) = &all_kinds()[0];
    let frame = sender.encode(&mut CountingRng(0), ts(0), 4, msg).unwrap();
    for at in 0..frame.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = frame.clone();
            bad[at] ^= flip;
            let err = encrypted(2)
                .decode(&bad, NOW_MS)
                .expect_err(&format!("byte {at} ^ {flip:#x}"));
            assert!(
                matches!(
                    err,
                    WireError::Unauthenticated(_)
                        | WireError::Incompatible(_)
                        | WireError::Malformed(_)
                ),
                "byte {at}: {err}"
            );
        }
    }
    // Truncation and extension are tampering too.
    for len in 0..frame.len() {
        assert!(
            encrypted(2).decode(&frame[..len], NOW_MS).is_err(),
            "truncated to {len}"
        );
    }
    let mut longer = frame.clone();
    longer.push(0);
    assert!(encrypted(2).decode(&longer, NOW_MS).is_err());
    encrypted(2).decode(&frame, NOW_MS).unwrap();
}

#[test]
fn tampering_with_a_plaintext_frame_is_rejected_except_the_hop_count() {
    let sender = plaintext(1);
    let (_, msg) = &all_kinds()[5];
    let frame = sender.encode(&mut CountingRng(0), ts(0), 4, msg).unwrap();
    for at in 0..frame.len() {
        let mut bad = frame.clone();
        bad[at] ^= 0x01;
        let result = plaintext(2).decode(&bad, NOW_MS);
        if at == PREFIX_LEN - 1 {
            // The TTL is deliberately outside the signature so relays can decrement it.
            assert_eq!(result.unwrap().ttl, 5);
        } else {
            assert!(result.is_err(), "byte {at} accepted");
        }
    }
}

#[test]
fn wrong_cluster_key_is_rejected() {
    let sender = encrypted(1);
    let mut receiver = codec(2, Keyring::new(key(7)));
    let frame = sender
        .encode(&mut CountingRng(0), ts(0), 0, &all_kinds()[1].1)
        .unwrap();
    assert_eq!(
        receiver.decode(&frame, NOW_MS),
        Err(Unauthenticated::Decrypt.into())
    );
}

#[test]
fn packet_signed_by_a_claiming_origin_b_is_rejected() {
    // A holds the cluster key, signs honestly, then rewrites the origin to B.
    let a = encrypted(1);
    let b = identity(2).id();
    let honest = a.sign(ts(0), &all_kinds()[8].1).unwrap();
    let mut bytes = honest.as_bytes().to_vec();
    bytes[64..96].copy_from_slice(b.as_bytes());
    let forged = gossip_core::SignedPacket::from_bytes(bytes).unwrap();
    assert_eq!(forged.origin(), b);
    let frame = a.seal(&mut CountingRng(0), 1, &forged).unwrap();
    assert_eq!(
        encrypted(3).decode(&frame, NOW_MS),
        Err(Unauthenticated::Signature.into())
    );
    // A signing the forged bytes with its own key still does not make it B's.
    let resigned = sign_raw(secret(1), &forged.as_bytes()[64..]);
    let frame = a.seal(&mut CountingRng(0), 1, &resigned).unwrap();
    assert_eq!(
        encrypted(3).decode(&frame, NOW_MS),
        Err(Unauthenticated::Signature.into())
    );
}

#[test]
fn weak_origin_keys_are_rejected() {
    let mut weak = [0u8; 32];
    weak[0] = 1; // the identity point: anyone could "sign" for it
    let part = signed_part(
        gossip_core::NodeId::from_bytes(weak),
        ts(0),
        9,
        ENCODING_RAW,
        &[0x91, 1],
    );
    let mut bytes = vec![0u8; 64];
    bytes.extend_from_slice(&part);
    let packet = gossip_core::SignedPacket::from_bytes(bytes).unwrap();
    assert_eq!(
        plaintext(2).accept(&packet, NOW_MS),
        Err(Unauthenticated::OriginKey.into())
    );
}

#[test]
fn replays_are_rejected_inside_and_after_the_window() {
    let sender = encrypted(1);
    let mut receiver = encrypted(2);
    let window = ReplayConfig::default().window_ms;
    let frame = sender
        .encode(&mut CountingRng(0), ts(0), 0, &all_kinds()[3].1)
        .unwrap();
    receiver.decode(&frame, NOW_MS).unwrap();
    assert_eq!(
        receiver.decode(&frame, NOW_MS + 10),
        Err(Replayed::Duplicate.into())
    );
    // Re-encrypted under a fresh nonce it is still the same message.
    let again = receiver.decode(&frame, NOW_MS).unwrap_err();
    assert_eq!(again, Replayed::Duplicate.into());
    let packet = sender.sign(ts(0), &all_kinds()[3].1).unwrap();
    let resealed = sender.seal(&mut CountingRng(77), 0, &packet).unwrap();
    assert_ne!(resealed, frame);
    assert_eq!(
        receiver.decode(&resealed, NOW_MS),
        Err(Replayed::Duplicate.into())
    );
    // After the window it is refused as too old, not accepted as new.
    let later = NOW_MS + window + 1;
    assert_eq!(
        receiver.decode(&frame, later),
        Err(Replayed::TooOld {
            age_ms: window + 1,
            window_ms: window
        }
        .into())
    );
    // A fresh receiver that never saw it refuses it too.
    assert!(matches!(
        encrypted(3).decode(&frame, later),
        Err(WireError::Replayed(Replayed::TooOld { .. }))
    ));
}

#[test]
fn messages_from_the_future_are_rejected() {
    let sender = encrypted(1);
    let ahead = ReplayConfig::default().max_future_ms + 1;
    let frame = sender
        .encode(
            &mut CountingRng(0),
            Timestamp::new(NOW_MS + ahead, 0),
            0,
            &all_kinds()[3].1,
        )
        .unwrap();
    assert!(matches!(
        encrypted(2).decode(&frame, NOW_MS),
        Err(WireError::Replayed(Replayed::FromFuture { .. }))
    ));
}

#[test]
fn oversize_frames_are_refused_both_ways() {
    let limits = Limits {
        max_frame_bytes: 512,
        ..Limits::default()
    };
    let small = gossip_core::Codec::new(
        identity(1),
        Keyring::new(key(1)),
        limits,
        ReplayConfig::default(),
    );
    let big = Message::from(Broadcast {
        topic: "t".into(),
        data: vec![7; 600].into(),
    });
    // Repetitive data compresses under the limit; only incompressible data must be refused.
    let noise: Vec<u8> = (0..600u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let noisy = Message::from(Broadcast {
        topic: "t".into(),
        data: noise.into(),
    });
    small.encode(&mut CountingRng(0), ts(0), 0, &big).unwrap();
    assert!(matches!(
        small.encode(&mut CountingRng(0), ts(1), 0, &noisy),
        Err(EncodeError::TooLarge(TooLarge::Frame { max: 512, .. }))
    ));
    let frame = encrypted(2)
        .encode(&mut CountingRng(0), ts(2), 0, &noisy)
        .unwrap();
    let mut receiver = gossip_core::Codec::new(
        identity(3),
        Keyring::new(key(1)),
        limits,
        ReplayConfig::default(),
    );
    assert_eq!(
        receiver.decode(&frame, NOW_MS),
        Err(TooLarge::Frame {
            size: frame.len(),
            max: 512
        }
        .into())
    );
}

#[test]
fn decompression_bombs_are_refused_before_allocating() {
    let max = Limits::default().max_payload_bytes;
    // A real bomb: 64 MiB of zeros compresses to about 250 KB.
    let zeros = vec![0u8; 64 << 20];
    let mut payload = ((64u32) << 20).to_le_bytes().to_vec();
    payload.extend_from_slice(&lz4_flex::block::compress(&zeros));
    let part = signed_part(identity(1).id(), ts(0), 10, ENCODING_LZ4, &payload);
    let bomb = sign_raw(secret(1), &part);
    assert_eq!(
        plaintext(2).accept(&bomb, NOW_MS),
        Err(TooLarge::Payload {
            size: 64 << 20,
            max
        }
        .into())
    );
    // A declared size that lies about the block is corrupt, not a buffer overrun.
    let mut liar = 16u32.to_le_bytes().to_vec();
    liar.extend_from_slice(&lz4_flex::block::compress(&[1u8; 4096]));
    let part = signed_part(identity(1).id(), ts(1), 10, ENCODING_LZ4, &liar);
    assert_eq!(
        plaintext(2).accept(&sign_raw(secret(1), &part), NOW_MS),
        Err(Malformed::Compression.into())
    );
    // Over-long raw payloads are refused too.
    let limits = Limits {
        max_payload_bytes: 64,
        ..Limits::default()
    };
    let mut tight = gossip_core::Codec::new(
        identity(2),
        Keyring::unencrypted(),
        limits,
        ReplayConfig::default(),
    );
    let long = plaintext(1).sign(ts(2), &all_kinds()[5].1).unwrap();
    assert!(matches!(
        tight.accept(&long, NOW_MS),
        Err(WireError::TooLarge(TooLarge::Payload { .. }))
    ));
}

#[test]
fn too_many_items_are_refused() {
    let limits = Limits {
        max_items: 2,
        ..Limits::default()
    };
    let mut strict = gossip_core::Codec::new(
        identity(2),
        Keyring::unencrypted(),
        limits,
        ReplayConfig::default(),
    );
    let msg = Message::from(Ping {
        seq: 1,
        target: identity(9).id(),
        piggyback: vec![nested(3, 1), nested(3, 2), nested(3, 3)],
    });
    let packet = plaintext(1).sign(ts(0), &msg).unwrap();
    assert_eq!(
        strict.accept(&packet, NOW_MS),
        Err(TooLarge::Items {
            what: "ping.piggyback",
            count: 3,
            max: 2
        }
        .into())
    );
    let lenient = gossip_core::Codec::new(
        identity(1),
        Keyring::unencrypted(),
        limits,
        ReplayConfig::default(),
    );
    assert!(matches!(
        lenient.sign(ts(1), &msg),
        Err(EncodeError::TooLarge(TooLarge::Items { .. }))
    ));
}

#[test]
fn unknown_versions_kinds_and_flags_are_typed_errors() {
    let frame = plaintext(1)
        .encode(&mut CountingRng(0), ts(0), 0, &all_kinds()[3].1)
        .unwrap();
    let mut v2 = frame.clone();
    v2[0] = 2;
    assert_eq!(
        plaintext(2).decode(&v2, NOW_MS),
        Err(Incompatible::Version(2).into())
    );
    let mut flags = frame.clone();
    flags[1] = 0x40;
    assert_eq!(
        plaintext(2).decode(&flags, NOW_MS),
        Err(Malformed::Flags(0x40).into())
    );
    let part = signed_part(identity(1).id(), ts(0), 200, ENCODING_RAW, &[0x90]);
    assert_eq!(
        plaintext(2).accept(&sign_raw(secret(1), &part), NOW_MS),
        Err(Incompatible::Kind(200).into())
    );
    let part = signed_part(identity(1).id(), ts(0), 4, 9, &[0x91, 1]);
    assert_eq!(
        plaintext(2).accept(&sign_raw(secret(1), &part), NOW_MS),
        Err(Malformed::Encoding(9).into())
    );
    let part = signed_part(identity(1).id(), ts(1), 4, ENCODING_RAW, &[0xc1]);
    assert!(matches!(
        plaintext(2).accept(&sign_raw(secret(1), &part), NOW_MS),
        Err(WireError::Malformed(Malformed::Payload(_)))
    ));
}

#[test]
fn plaintext_and_encrypted_nodes_do_not_mix() {
    let plain = plaintext(1)
        .encode(&mut CountingRng(0), ts(0), 0, &all_kinds()[3].1)
        .unwrap();
    assert_eq!(
        encrypted(2).decode(&plain, NOW_MS),
        Err(Unauthenticated::PlaintextRefused.into())
    );
    let sealed = encrypted(1)
        .encode(&mut CountingRng(0), ts(1), 0, &all_kinds()[3].1)
        .unwrap();
    assert_eq!(
        plaintext(2).decode(&sealed, NOW_MS),
        Err(Unauthenticated::NoClusterKey.into())
    );
}

#[test]
fn keyring_rotation_without_downtime() {
    let msg = all_kinds()[3].1.clone();
    let mut a = encrypted(1);
    let mut b = encrypted(2);
    let mut n = 0u16;
    let mut send = |from: &gossip_core::Codec, to: &mut gossip_core::Codec| {
        n += 1;
        let frame = from
            .encode(&mut CountingRng(n as u8), ts(n), 0, &msg)
            .unwrap();
        to.decode(&frame, NOW_MS).map(|_| ())
    };
    // Step 1: everyone accepts the new key; still sending with the old one.
    a.keyring_mut().add(key(2)).unwrap();
    b.keyring_mut().add(key(2)).unwrap();
    send(&a, &mut b).unwrap();
    // Step 2: a switches first; b, not yet switched, still reads a, and a still reads b.
    a.keyring_mut().use_primary(key(2)).unwrap();
    send(&a, &mut b).unwrap();
    send(&b, &mut a).unwrap();
    // Step 3: b switches; the old key is still accepted until removed.
    b.keyring_mut().use_primary(key(2)).unwrap();
    let old_sender = encrypted(3);
    send(&old_sender, &mut a).unwrap();
    // Step 4: remove the old key: frames under it are now rejected.
    a.keyring_mut().remove(&key(1)).unwrap();
    assert_eq!(
        send(&old_sender, &mut a),
        Err(Unauthenticated::Decrypt.into())
    );
    send(&b, &mut a).unwrap();
}

#[test]
fn forged_packets_do_not_enter_the_key_cache() {
    let mut receiver = plaintext(2);
    for i in 0..50u8 {
        // A made-up origin (a valid point: another node's key) with a signature that does not verify.
        let part = signed_part(
            identity(100 + i).id(),
            ts(u16::from(i)),
            10,
            ENCODING_RAW,
            &[0x92, 0xa0, 0xc4, 0],
        );
        let mut bytes = vec![0u8; 64];
        bytes.extend_from_slice(&part);
        let forged = gossip_core::SignedPacket::from_bytes(bytes).unwrap();
        assert_eq!(
            receiver.accept(&forged, NOW_MS),
            Err(Unauthenticated::Signature.into())
        );
    }
    assert_eq!(receiver.cached_keys(), 0);
    let honest = plaintext(1).sign(ts(999), &all_kinds()[3].1).unwrap();
    receiver.accept(&honest, NOW_MS).unwrap();
    assert_eq!(receiver.cached_keys(), 1);
}
