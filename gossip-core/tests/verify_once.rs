//! Each signed record is verified once per node (the cache of verified records) and records that
//! arrive together are verified in one batch with their frame; neither path may let a forgery
//! through. gossip-core's tests run with `batch-verify` (and so `verify-cache`) on.

mod common;

use common::*;
use gossip_core::error::{Replayed, Unauthenticated, WireError};
use gossip_core::message::{Gossip, MembershipMessage, Sync, sync_phase};
use gossip_core::{Codec, Keyring, Message, SignedPacket};

/// `packet` with its body byte at `at` (counted from the end of the signature) flipped: the
/// signature is the original's.
fn with_body_byte_flipped(packet: &SignedPacket, at: usize) -> SignedPacket {
    let mut bytes = packet.as_bytes().to_vec();
    bytes[64 + at] ^= 1;
    SignedPacket::from_bytes(bytes).unwrap()
}

/// `packet` with a signature that does not verify (another key's over the same body).
fn with_foreign_signature(packet: &SignedPacket) -> SignedPacket {
    let forged = sign_raw(secret(77), &packet.as_bytes()[64..]);
    assert_eq!(forged.origin(), packet.origin(), "still claims the origin");
    forged
}

fn items_of(message: Message) -> Vec<SignedPacket> {
    match message {
        Message::Membership(MembershipMessage::Gossip(g)) => g.items,
        Message::Membership(MembershipMessage::Sync(s)) => s.states,
        other => panic!("not gossip or sync: {other:?}"),
    }
}

fn gossip_frame(sender: &Codec, logical: u16, items: Vec<SignedPacket>) -> Vec<u8> {
    sender
        .encode(
            &mut CountingRng(0),
            ts(logical),
            0,
            &Gossip { items }.into(),
        )
        .unwrap()
}

#[test]
fn a_record_is_verified_once_whichever_way_its_copies_arrive() {
    let sender = encrypted(1);
    let mut receiver = encrypted(2);
    let records = vec![nested(3, 1), nested(4, 2), nested(5, 3)];
    let frame = gossip_frame(&sender, 100, records.clone());
    let got = receiver.decode(&frame, NOW_MS).unwrap();
    // The frame and its three records, in one batch.
    assert_eq!(receiver.signature_checks(), 4);
    assert_eq!(receiver.verified_records(), 3);
    for item in items_of(got.message) {
        receiver.accept(&item, NOW_MS).unwrap();
    }
    // The same records again as push-pull state: no record is checked again, only the frame.
    let sync = Sync {
        phase: sync_phase::ANSWER,
        digest: Vec::new(),
        states: records.clone(),
    };
    let frame = sender
        .encode(&mut CountingRng(0), ts(101), 0, &sync.into())
        .unwrap();
    let got = receiver.decode(&frame, NOW_MS).unwrap();
    for state in items_of(got.message) {
        receiver.verify(&state).unwrap();
    }
    assert_eq!(receiver.signature_checks(), 5);
    // A record verified alone (a relayed one) is remembered too.
    let lone = nested(6, 4);
    receiver.verify(&lone).unwrap();
    receiver.verify(&lone).unwrap();
    assert_eq!(receiver.signature_checks(), 6);
}

#[test]
fn a_verified_signature_over_a_changed_body_is_refused() {
    let mut receiver = plaintext(2);
    let record = nested(3, 1);
    receiver.verify(&record).unwrap();
    assert_eq!(receiver.verified_records(), 1);
    // Every byte of the body, origin and id included, is covered: the cache keys the whole
    // packet, so none of these is "the record that verified".
    for at in 0..record.len() - 64 {
        let changed = with_body_byte_flipped(&record, at);
        let refused = receiver.verify(&changed);
        assert!(
            matches!(refused, Err(WireError::Unauthenticated(_)))
                || matches!(refused, Err(WireError::Incompatible(_))),
            "byte {at}: {refused:?}"
        );
    }
    // Through the replay-checked path too, under a fresh id so the replay window lets it by.
    let mut bytes = record.as_bytes().to_vec();
    bytes[64 + 32 + 7] ^= 1;
    let renumbered = SignedPacket::from_bytes(bytes).unwrap();
    assert_eq!(
        receiver.accept(&renumbered, NOW_MS),
        Err(Unauthenticated::Signature.into())
    );
    // And the verified body under somebody else's signature.
    assert_eq!(
        receiver.verify(&with_foreign_signature(&record)),
        Err(Unauthenticated::Signature.into())
    );
    // Nothing that failed was remembered.
    assert_eq!(receiver.verified_records(), 1);
    receiver.verify(&record).unwrap();
}

#[test]
fn one_bad_record_in_a_batch_drops_only_itself() {
    let sender = encrypted(1);
    let mut receiver = encrypted(2);
    let bad = with_foreign_signature(&nested(4, 2));
    let items = vec![nested(3, 1), bad.clone(), nested(5, 3), nested(6, 4)];
    let frame = gossip_frame(&sender, 100, items);
    let got = receiver.decode(&frame, NOW_MS).unwrap();
    assert_eq!(got.origin(), identity(1).id(), "the frame itself is good");
    let results: Vec<_> = items_of(got.message)
        .iter()
        .map(|item| receiver.accept(item, NOW_MS).map(|_| item.origin()))
        .collect();
    assert_eq!(
        results,
        vec![
            Ok(identity(3).id()),
            Err(Unauthenticated::Signature.into()),
            Ok(identity(5).id()),
            Ok(identity(6).id()),
        ]
    );
    // The bad one never becomes "verified", however often it comes back.
    for logical in 101..104 {
        let frame = gossip_frame(&sender, logical, vec![bad.clone(), nested(7, logical)]);
        let got = receiver.decode(&frame, NOW_MS).unwrap();
        let items = items_of(got.message);
        assert_eq!(
            receiver.accept(&items[0], NOW_MS),
            Err(Unauthenticated::Signature.into())
        );
        assert_eq!(
            receiver.accept(&items[1], NOW_MS).map(|_| ()),
            Ok(()),
            "its good companion"
        );
    }
}

#[test]
fn a_forged_frame_is_refused_whatever_good_records_it_carries() {
    let mut receiver = encrypted(2);
    let good = vec![nested(3, 1), nested(4, 2)];
    // A frame whose own signature is forged, carrying genuine records.
    let honest = plaintext(1)
        .sign(
            ts(100),
            &Gossip {
                items: good.clone(),
            }
            .into(),
        )
        .unwrap();
    let forged = with_foreign_signature(&honest);
    let frame = encrypted(1).seal(&mut CountingRng(0), 0, &forged).unwrap();
    assert_eq!(
        receiver.decode(&frame, NOW_MS),
        Err(Unauthenticated::Signature.into())
    );
    // Refused before it was recorded: the honest frame under the same id is still accepted.
    let frame = encrypted(1).seal(&mut CountingRng(0), 0, &honest).unwrap();
    let got = receiver.decode(&frame, NOW_MS).unwrap();
    for item in items_of(got.message) {
        receiver.accept(&item, NOW_MS).unwrap();
        assert_eq!(
            receiver.accept(&item, NOW_MS),
            Err(Replayed::Duplicate.into())
        );
    }
}

#[test]
fn a_full_cache_still_verifies_everything_it_forgot() {
    let mut receiver = codec(2, Keyring::unencrypted());
    receiver.set_verified_cache_capacity(4);
    let records: Vec<SignedPacket> = (0..40u16).map(|i| nested(3 + (i % 5) as u8, i)).collect();
    for r in &records {
        receiver.verify(r).unwrap();
    }
    assert!(receiver.verified_records() <= 4);
    let before = receiver.signature_checks();
    for r in &records {
        receiver.verify(r).unwrap();
        assert!(receiver.verify(&with_foreign_signature(r)).is_err());
    }
    assert!(
        receiver.signature_checks() >= before + 36 + 40,
        "forgotten records and every forgery are checked again"
    );
    // Off: every copy is checked.
    receiver.set_verified_cache_capacity(0);
    let before = receiver.signature_checks();
    receiver.verify(&records[0]).unwrap();
    receiver.verify(&records[0]).unwrap();
    assert_eq!(receiver.signature_checks(), before + 2);
    assert_eq!(receiver.verified_records(), 0);
}

/// A gossip frame whose every record was accepted before changes nothing: it is dropped as
/// `Copies` before its own signature is checked, and its id is not remembered (it proves nothing
/// about its sender). One new record among the copies and the frame is verified as before.
#[test]
fn a_gossip_frame_of_copies_alone_is_dropped_unverified() {
    let sender = encrypted(1);
    let mut receiver = encrypted(2);
    let records = vec![nested(3, 1), nested(4, 2)];
    let got = receiver
        .decode(&gossip_frame(&sender, 100, records.clone()), NOW_MS)
        .unwrap();
    for item in items_of(got.message) {
        receiver.accept(&item, NOW_MS).unwrap();
    }
    let checks = receiver.signature_checks();
    let copies = gossip_frame(&sender, 101, records.clone());
    assert_eq!(
        receiver.decode(&copies, NOW_MS).unwrap_err(),
        WireError::Replayed(Replayed::Copies)
    );
    assert_eq!(receiver.signature_checks(), checks, "nothing was verified");
    assert!(!receiver.replay().has_seen(&sender.identity().id(), ts(101)));
    // A new record among them: the frame is checked (with the new record, in one batch).
    let mut more = records;
    more.push(nested(5, 3));
    let got = receiver
        .decode(&gossip_frame(&sender, 102, more), NOW_MS)
        .unwrap();
    assert_eq!(items_of(got.message).len(), 3);
    assert_eq!(receiver.signature_checks(), checks + 2);
    // An empty gossip frame is no copy of anything: verified like any frame.
    assert!(
        receiver
            .decode(&gossip_frame(&sender, 103, Vec::new()), NOW_MS)
            .is_ok()
    );
    assert_eq!(receiver.signature_checks(), checks + 3);
}
