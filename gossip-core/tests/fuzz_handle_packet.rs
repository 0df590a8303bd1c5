//! Validly sealed, hostile frames never panic a node, and its invariants hold whatever arrives.
//!
//! A three-node cluster receives structure-aware generated frames (see `fuzz_support`): every
//! message kind with hostile field values, signed by members and strangers, sealed with the
//! cluster key or not, mutated before or after signing. CI runs a short bounded pass; longer runs
//! go through environment variables (`docs/FUZZING.md`):
//!
//! - `GOSSIP_FUZZ_FRAMES`: generated frames per seed (default below);
//! - `GOSSIP_FUZZ_SEED`: the first seed (default fixed, so CI is deterministic);
//! - `GOSSIP_FUZZ_SEEDS`: how many consecutive seeds to run (default 1);
//! - `GOSSIP_FUZZ_KEEP_GOING=1`: after a finding, record it, rebuild the cluster and go on, then
//!   fail at the end with every distinct finding (for long measuring runs).
//!
//! After the last frame of a seed the hostile input stops and the nodes run alone for a while:
//! they must then all see each other alive (`Harness::settle`).
//!
//! A finding prints its seed, frame index, how the frame was made and the frame in hex; rerun
//! with that seed and `GOSSIP_FUZZ_FRAMES=<index + 1>` to reproduce it.

mod fuzz_support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;
use std::time::Instant as WallClock;

use fuzz_support::frames::Rates;
use fuzz_support::source::Seeded;
use fuzz_support::{Harness, Step};

/// Frames per seed when `GOSSIP_FUZZ_FRAMES` is unset: a few seconds in the dev profile.
const DEFAULT_FRAMES: u64 = 12_000;
const DEFAULT_SEED: u64 = 0x5eed_0001;
/// Bytes of a frame printed in a report (frames run up to 256 KiB).
const HEX_MAX: usize = 4_096;

thread_local! {
    /// Set while this thread runs fuzzed input: the hook stores the panic here instead of printing.
    static CAPTURED: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let capturing = CAPTURED.with(|c| {
                let mut c = c.borrow_mut();
                match c.as_mut() {
                    Some(slot) => {
                        let msg = info
                            .payload()
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| info.payload().downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "<non-string panic>".into());
                        let at = info
                            .location()
                            .map(|l| format!("{}:{}", l.file(), l.line()))
                            .unwrap_or_default();
                        *slot = Some(format!("panic '{msg}' at {at}"));
                        true
                    }
                    None => false,
                }
            });
            if !capturing {
                previous(info);
            }
        }));
    });
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim().replace('_', "");
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

/// One finding: what went wrong and the first frame that showed it.
struct Finding {
    count: u64,
    seed: u64,
    index: u64,
    step: Option<Step>,
}

fn report(what: &str, f: &Finding) -> String {
    let mut s = format!(
        "{what}\n  seen {} time(s); first at seed {:#x}, {}\n",
        f.count,
        f.seed,
        match f.step {
            Some(_) => format!("frame index {}", f.index),
            None => format!("settling after frame {}", f.index),
        }
    );
    if let Some(step) = &f.step {
        let bytes = &step.frame.bytes;
        s.push_str(&format!(
            "  to node {}, signer {:?}, {}\n  frame ({} bytes{}): {}\n",
            step.target,
            step.frame.signer,
            step.frame.how,
            bytes.len(),
            if bytes.len() > HEX_MAX {
                format!(", first {HEX_MAX} shown")
            } else {
                String::new()
            },
            hex::encode(&bytes[..bytes.len().min(HEX_MAX)]),
        ));
    }
    s
}

/// Runs `f` capturing a panic as `Err(description)`.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    CAPTURED.with(|c| *c.borrow_mut() = Some(None));
    let result = catch_unwind(AssertUnwindSafe(f));
    let captured = CAPTURED.with(|c| c.borrow_mut().take()).flatten();
    result.map_err(|_| captured.unwrap_or_else(|| "panic".into()))
}

fn new_harness() -> Harness {
    Harness::new(3, 5_000, Rates::default())
}

#[test]
fn hostile_sealed_frames_never_panic_a_node() {
    install_hook();
    let frames = env_u64("GOSSIP_FUZZ_FRAMES").unwrap_or(DEFAULT_FRAMES);
    let first_seed = env_u64("GOSSIP_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let seeds = env_u64("GOSSIP_FUZZ_SEEDS").unwrap_or(1).max(1);
    let keep_going = std::env::var("GOSSIP_FUZZ_KEEP_GOING").is_ok_and(|v| v == "1");

    let mut findings: BTreeMap<String, Finding> = BTreeMap::new();
    let mut generated = 0u64;
    let mut fed = 0u64;
    let started = WallClock::now();
    for seed in first_seed..first_seed + seeds {
        let mut src = Seeded::new(seed);
        let mut h = new_harness();
        let mut accepted = 0u64;
        for index in 0..frames {
            let mut step = None;
            let outcome = guarded(|| {
                let s = h.next(&mut src);
                step = Some(s.clone());
                let before = h.nodes[s.target].stats().drops.values().sum::<u64>();
                let result = h.feed(&mut src, &s);
                let after = h.nodes[s.target].stats().drops.values().sum::<u64>();
                (result, before == after)
            });
            generated += 1;
            let problem = match outcome {
                Ok((Ok(()), clean)) => {
                    accepted += u64::from(clean);
                    None
                }
                Ok((Err(violation), _)) => Some(format!("invariant: {violation}")),
                Err(panic) => Some(panic),
            };
            let Some(what) = problem else { continue };
            let finding = findings.entry(what.clone()).or_insert(Finding {
                count: 0,
                seed,
                index,
                step,
            });
            finding.count += 1;
            if !keep_going {
                panic!("{}", report(&what, finding));
            }
            if finding.count == 1 {
                eprintln!("new finding: {}", report(&what, finding));
            }
            fed += h.fed;
            h = new_harness();
        }
        // The hostile input stops: the honest nodes must recover a correct view of each other.
        let settled = match guarded(|| h.settle()) {
            Ok(Ok(())) => None,
            Ok(Err(violation)) => Some(format!("invariant: {violation}")),
            Err(panic) => Some(format!("{panic} (while settling)")),
        };
        if let Some(what) = settled {
            let finding = findings.entry(what.clone()).or_insert(Finding {
                count: 0,
                seed,
                index: frames,
                step: None,
            });
            finding.count += 1;
            if !keep_going {
                panic!("{}", report(&what, finding));
            }
            if finding.count == 1 {
                eprintln!("new finding: {}", report(&what, finding));
            }
        }
        fed += h.fed;
        eprintln!(
            "seed {seed:#x}: {frames} frames, {accepted} left node stats without a drop, {:.1} s since start; node 0 drops: {:?}",
            started.elapsed().as_secs_f64(),
            h.nodes[0].stats().drops
        );
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{generated} generated frames ({fed} handled by nodes incl. delivered traffic) over {seeds} seed(s) in {secs:.1} s: {:.0} generated frames/s",
        generated as f64 / secs
    );
    if !findings.is_empty() {
        let all: Vec<String> = findings.iter().map(|(w, f)| report(w, f)).collect();
        panic!(
            "{} distinct finding(s):\n{}",
            findings.len(),
            all.join("\n")
        );
    }
}

/// The generator is only as good as what gets past the receiver's checks: unmutated, it must
/// produce every message kind, and most of its frames must decode.
#[test]
fn generator_covers_every_kind_and_its_frames_decode() {
    let clean = Rates {
        mutate: 0,
        resign: 0,
        wrong_seal: 0,
        replay: 0,
    };
    let mut generator = fuzz_support::frames::Generator::new(&[1, 2, 3], clean);
    let receiver = gossip_core::Identity::from_secret_bytes([1; 32]);
    let mut decoder = gossip_core::Codec::new(
        receiver.clone(),
        gossip_core::Keyring::new(gossip_core::ClusterKey::from_bytes(
            fuzz_support::frames::CLUSTER_KEY,
        )),
        gossip_core::Limits::default(),
        gossip_core::ReplayConfig::default(),
    );
    let view = fuzz_support::frames::View {
        wall_ms: fuzz_support::WALL_MS,
        receiver: receiver.id(),
        members: vec![(receiver.id(), fuzz_support::WALL_MS, 0)],
        addrs: vec![fuzz_support::addr(1)],
    };
    let mut src = Seeded::new(7);
    let mut kinds = std::collections::BTreeSet::new();
    let frames = 3_000;
    let mut decoded = 0;
    for _ in 0..frames {
        let frame = generator.frame(&mut src, &view);
        assert_ne!(
            frame.signer,
            Some(receiver.id()),
            "nobody holds the receiver's key"
        );
        kinds.insert(frame.kind);
        if let Ok(inbound) = decoder.decode(&frame.bytes, view.wall_ms) {
            assert_eq!(inbound.message.kind(), frame.kind);
            decoded += 1;
        }
    }
    let all: std::collections::BTreeSet<u8> = (1..=33).collect();
    assert_eq!(kinds, all, "every message kind is generated");
    assert!(
        decoded * 10 >= frames * 7,
        "only {decoded} of {frames} clean frames decoded"
    );
}
