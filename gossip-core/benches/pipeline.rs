//! Throughput of the wire pipeline (`Codec::encode` / `Codec::decode`) against raw Ed25519.
//!
//! Payloads (all sent as a `Message::Broadcast` with topic `"bench"`, encrypted mode with one
//! cluster key, default `Limits`):
//!
//! - `64B`: 64 bytes of seeded-RNG data, the "ping-sized" case. It is below the default
//!   compression threshold (256 bytes), so it goes out raw.
//! - `1KB`, `8KB`: 1024 / 8192 bytes of seeded-RNG data (incompressible: lz4 is tried and its
//!   output discarded, so that cost is included).
//! - `8KB_json`: 8192 bytes of repetitive JSON-like text; lz4 pays and the frame shrinks.
//!
//! For each payload: `encode` (serialize + compress + sign + encrypt), `decode` (decrypt + replay
//! check + verify + decompress + deserialize) and `round_trip` (both). The baseline is raw
//! ed25519-dalek `SigningKey::sign` + `VerifyingKey::verify` over the same bytes as the payload
//! data (`raw_sign_verify`), plus `raw_sign` and `raw_verify` alone for the 64-byte message.
//!
//! Every measured decode gets a frame it has never seen (distinct HLC ids, all inside the replay
//! window of the `wall_ms` passed to decode) and is unwrapped, so the error path (e.g. `Duplicate`)
//! can never be what is measured. The decoder's origin key is parsed once and then cached, as on
//! a live node; the raw baseline likewise uses an already parsed `VerifyingKey`.
//!
//! After each payload's group, a paired measurement alternates blocks of round trips and raw
//! sign + verify and prints the median throughput ratio: on a shared or noisy machine it is a
//! steadier figure than the ratio of two criterion estimates taken seconds apart.
//!
//! Run: `cargo bench -p gossip-core --bench pipeline`. Wire sizes are printed before the timings.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use gossip_core::message::{Broadcast, Message};
use gossip_core::{ClusterKey, Codec, Identity, Keyring, Limits, ReplayConfig, Timestamp};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

/// Wall clock at the start of the message ids.
const BASE_MS: u64 = 1_700_000_000_000;
/// The receiver's wall clock: one second after the first id, well inside the 60 s replay window.
const WALL_MS: u64 = BASE_MS + 1_000;
const TTL: u8 = 3;

/// The `i`-th distinct message id: logical counter first, carrying into the milliseconds
/// (65 536 ids per millisecond, so even millions of ids stay within a few ms of `BASE_MS`).
fn id(i: u64) -> Timestamp {
    Timestamp::new(BASE_MS + (i >> 16), (i & 0xffff) as u16)
}

fn random_bytes(rng: &mut ChaCha20Rng, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    data
}

/// Repetitive JSON-like text of exactly `len` bytes, like a batch of status records.
fn json_like(len: usize) -> Vec<u8> {
    let mut text = String::with_capacity(len + 128);
    text.push('[');
    let mut i = 0u32;
    while text.len() < len {
        text.push_str(&format!(
            r#"{{"id":{i},"name":"node-{:05}","status":"alive","incarnation":{},"tags":["eu-west","edge"]}},"#,
            i * 7 % 1000,
            i / 3
        ));
        i += 1;
    }
    let mut bytes = text.into_bytes();
    bytes.truncate(len);
    bytes
}

fn broadcast(data: Vec<u8>) -> Message {
    Message::from(Broadcast {
        topic: "bench".into(),
        data: data.into(),
    })
}

struct Setup {
    rng: ChaCha20Rng,
    sender: Codec,
    key: ClusterKey,
}

impl Setup {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let key = ClusterKey::from_bytes([42; 32]);
        let sender = Codec::new(
            Identity::generate(&mut rng),
            Keyring::new(key.clone()),
            Limits::default(),
            ReplayConfig::default(),
        );
        Setup { rng, sender, key }
    }

    /// A fresh receiver whose replay set never evicts during a run, so no id falls below the floor.
    fn receiver(&mut self) -> Codec {
        Codec::new(
            Identity::generate(&mut self.rng),
            Keyring::new(self.key.clone()),
            Limits::default(),
            ReplayConfig {
                capacity: 1 << 22,
                ..ReplayConfig::default()
            },
        )
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

fn bench_payload(c: &mut Criterion, name: &str, data: Vec<u8>, seed: u64) {
    let mut setup = Setup::new(seed);
    let raw_data = data.clone();
    let data_len = data.len();
    let msg = broadcast(data);

    // Wire size, and a sanity check that the pipeline works for this payload at all.
    {
        let frame = setup
            .sender
            .encode(&mut setup.rng, id(0), TTL, &msg)
            .unwrap();
        let mut rx = setup.receiver();
        let inbound = rx.decode(&frame, WALL_MS).unwrap();
        assert_eq!(inbound.message, msg);
        let encoding = match inbound.packet.encoding() {
            0 => "raw",
            1 => "lz4",
            _ => "?",
        };
        println!(
            "wire size {name}: data {data_len} B -> signed packet {} B ({encoding}) -> frame {} B",
            inbound.packet.len(),
            frame.len()
        );
    }

    let mut group = c.benchmark_group(format!("pipeline/{name}"));
    group.throughput(Throughput::Elements(1));

    group.bench_function("encode", |b| {
        let Setup { rng, sender, .. } = &mut setup;
        b.iter(|| {
            sender
                .encode(rng, black_box(id(1)), TTL, black_box(&msg))
                .unwrap()
        })
    });

    group.bench_function("decode", |b| {
        let mut rx = setup.receiver();
        let Setup { rng, sender, .. } = &mut setup;
        let mut next = 1u64;
        b.iter_batched(
            || {
                // Not timed: a frame this receiver has never seen.
                next += 1;
                sender.encode(rng, id(next), TTL, &msg).unwrap()
            },
            |frame| rx.decode(black_box(&frame), WALL_MS).unwrap(),
            BatchSize::SmallInput,
        )
    });

    group.bench_function("round_trip", |b| {
        let mut rx = setup.receiver();
        let Setup { rng, sender, .. } = &mut setup;
        let mut next = 1u64;
        b.iter(|| {
            next += 1;
            let frame = sender.encode(rng, id(next), TTL, black_box(&msg)).unwrap();
            rx.decode(black_box(&frame), WALL_MS).unwrap()
        })
    });

    // Baseline: raw Ed25519 over the same bytes as the message data.
    let signing = SigningKey::from_bytes(&[7; 32]);
    let verifying = signing.verifying_key();
    group.bench_function("raw_sign_verify", |b| {
        b.iter(|| {
            let sig = signing.sign(black_box(&raw_data));
            verifying.verify(black_box(&raw_data), &sig).unwrap()
        })
    });
    if data_len == 64 {
        let sig = signing.sign(&raw_data);
        group.bench_function("raw_sign", |b| {
            b.iter(|| signing.sign(black_box(&raw_data)))
        });
        group.bench_function("raw_verify", |b| {
            b.iter(|| {
                verifying
                    .verify(black_box(&raw_data), black_box(&sig))
                    .unwrap()
            })
        });
    }
    group.finish();

    if paired_wanted(name) {
        let (median, low, high) = paired_ratio(&mut setup, &msg, &raw_data, &signing);
        println!(
            "paired {name}: round_trip throughput / raw_sign_verify throughput = {:.1}% \
             (median of {PAIRED_ROUNDS} interleaved rounds of {PAIRED_OPS} ops; quartiles {:.1}%..{:.1}%)",
            median * 100.0,
            low * 100.0,
            high * 100.0
        );
    }
}

const PAIRED_ROUNDS: usize = 41;
const PAIRED_OPS: u64 = 100;

/// Whether to run the paired measurement: not in `--test` / `--list` mode, and only when no
/// name filter is given or one of them is a plain substring of `pipeline/<name>/paired`.
fn paired_wanted(name: &str) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--test" || a == "--list") {
        return false;
    }
    let id = format!("pipeline/{name}/paired");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    filters.is_empty() || filters.iter().any(|f| id.contains(f.as_str()))
}

/// Round trip against raw sign + verify, measured in alternating blocks so that machine noise
/// (other processes, frequency changes) hits both sides alike. Returns the median and quartiles
/// of the per-round throughput ratio.
fn paired_ratio(
    setup: &mut Setup,
    msg: &Message,
    raw: &[u8],
    signing: &SigningKey,
) -> (f64, f64, f64) {
    let verifying = signing.verifying_key();
    let mut rx = setup.receiver();
    let mut next = 1u64;
    let mut ratios = Vec::with_capacity(PAIRED_ROUNDS);
    for _ in 0..PAIRED_ROUNDS {
        let start = Instant::now();
        for _ in 0..PAIRED_OPS {
            next += 1;
            let frame = setup
                .sender
                .encode(&mut setup.rng, id(next), TTL, black_box(msg))
                .unwrap();
            black_box(rx.decode(black_box(&frame), WALL_MS).unwrap());
        }
        let round_trip = start.elapsed();
        let start = Instant::now();
        for _ in 0..PAIRED_OPS {
            let sig = signing.sign(black_box(raw));
            verifying.verify(black_box(raw), &sig).unwrap();
        }
        let raw_time = start.elapsed();
        ratios.push(raw_time.as_secs_f64() / round_trip.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    (ratios[n / 2], ratios[n / 4], ratios[3 * n / 4])
}

fn benches(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    bench_payload(c, "64B", random_bytes(&mut rng, 64), 10);
    bench_payload(c, "1KB", random_bytes(&mut rng, 1024), 11);
    bench_payload(c, "8KB", random_bytes(&mut rng, 8192), 12);
    bench_payload(c, "8KB_json", json_like(8192), 13);
}

criterion_group! {
    name = pipeline;
    config = config();
    targets = benches
}
criterion_main!(pipeline);
