//! Golden vectors: fixed keys, nonce and timestamps must produce these exact bytes.
//!
//! A failure here means the wire format changed. If that was intended, bump or document it in
//! docs/PROTOCOL.md and regenerate with `GOSSIP_BLESS=1 cargo test -p gossip-core --test golden`.

mod common;

use std::path::PathBuf;

use common::*;
use gossip_core::message::Broadcast;
use gossip_core::{Keyring, Message};

struct Case {
    name: String,
    encrypted: bool,
    ttl: u8,
    message: Message,
}

fn cases() -> Vec<Case> {
    // The overlay, state and admission kinds come last, after the two extra cases, so that every older vector keeps
    // its id (the case index) and stays byte-identical.
    let overlay = overlay_kinds().len() + state_kinds().len() + admission_kinds().len();
    let mut older = all_kinds();
    let newer = older.split_off(older.len() - overlay);
    let encrypted = |(name, message): (&str, Message)| Case {
        name: format!("{name}.encrypted"),
        encrypted: true,
        ttl: 3,
        message,
    };
    let mut cases: Vec<Case> = older
        .into_iter()
        .map(|(name, message)| Case {
            name: format!("{name}.encrypted"),
            encrypted: true,
            ttl: 3,
            message,
        })
        .collect();
    cases.push(Case {
        name: "direct.plaintext".into(),
        encrypted: false,
        ttl: 0,
        message: all_kinds()
            .into_iter()
            .find(|(n, _)| *n == "direct")
            .unwrap()
            .1,
    });
    cases.push(Case {
        name: "broadcast_lz4.encrypted".into(),
        encrypted: true,
        ttl: 7,
        message: Broadcast {
            topic: "metrics".into(),
            data: b"cpu=0.25;".repeat(64).into(),
        }
        .into(),
    });
    cases.extend(newer.into_iter().map(encrypted));
    cases
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/golden")
}

#[test]
fn frames_match_golden_bytes() {
    let bless = std::env::var_os("GOSSIP_BLESS").is_some();
    let mut seen = Vec::new();
    for (i, case) in cases().into_iter().enumerate() {
        let keyring = if case.encrypted {
            Keyring::new(key(1))
        } else {
            Keyring::unencrypted()
        };
        let sender = codec(1, keyring.clone());
        let id = ts(i as u16);
        let frame = sender
            .encode(&mut CountingRng(0), id, case.ttl, &case.message)
            .unwrap();
        let path = dir().join(format!("{}.hex", case.name));
        seen.push(path.clone());
        if bless {
            std::fs::write(&path, format!("{}\n", hex::encode(&frame))).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (bless with GOSSIP_BLESS=1)", path.display()));
        let want = hex::decode(want.trim()).unwrap();
        assert_eq!(
            hex::encode(&frame),
            hex::encode(&want),
            "{}: wire bytes changed",
            case.name
        );
        // And the stored bytes still decode to the same message.
        let got = codec(2, keyring).decode(&want, NOW_MS).unwrap();
        assert_eq!(got.message, case.message, "{}", case.name);
        assert_eq!((got.id(), got.ttl), (id, case.ttl), "{}", case.name);
    }
    // No stale vector lingers for a case that no longer exists.
    let mut stored: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    stored.sort();
    seen.sort();
    assert_eq!(stored, seen);
}

#[test]
fn layout_matches_protocol_md() {
    // Spot-check of the documented offsets on the plaintext vector, independent of the codec.
    let frame = hex::decode(
        std::fs::read_to_string(dir().join("direct.plaintext.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(&frame[..3], &[1, 0, 0], "version 1, no flags, ttl 0");
    let body = &frame[3..];
    assert_eq!(&body[64..96], identity(1).id().as_bytes(), "origin");
    let id = u64::from_be_bytes(body[96..104].try_into().unwrap());
    assert_eq!(id >> 16, NOW_MS, "id: milliseconds in the top 48 bits");
    assert_eq!(body[104], 11, "kind: direct");
    assert_eq!(body[105], 0, "encoding: raw");
    assert_eq!(body[106], 0x93, "payload: a 3-element MessagePack array");
    assert_eq!(
        sign_raw(secret(1), &body[64..]).as_bytes(),
        body,
        "signature over domain ‖ version ‖ rest"
    );
}
