//! Fuzzes `Node::handle_packet` with validly sealed, hostile frames. Nothing may panic and the
//! harness's invariants must hold (see `gossip-core/tests/fuzz_support`, shared with the stable
//! harness `tests/fuzz_handle_packet.rs`).
//!
//! The input is not a frame: it is the stream of the generator's choices (which kind, which
//! signer, which hostile field values, whether and how to mutate the sealed frame, how far time
//! moves, which traffic is delivered), read a few bytes per choice. So libFuzzer's mutations of the
//! input become structural changes of validly signed and encrypted frames, which random bytes
//! would never produce. Each input builds a fresh two-node cluster (a crash reproduces from its
//! input alone) and feeds it up to `MAX_FRAMES` frames, until the input is used up; then the nodes
//! run alone for a while and must all see each other alive again.

#![no_main]

#[path = "../../tests/fuzz_support/mod.rs"]
mod fuzz_support;

use fuzz_support::Harness;
use fuzz_support::frames::Rates;
use fuzz_support::source::Bytes;
use libfuzzer_sys::fuzz_target;

/// Frames per input: enough for a few exchanges to build on each other, few enough to keep
/// executions fast.
const MAX_FRAMES: usize = 16;
/// Virtual time the cluster runs before the first frame (it converges after the join push-pull).
const CONVERGE_MS: u64 = 1_500;

fuzz_target!(|data: &[u8]| {
    let mut src = Bytes::new(data);
    let mut h = Harness::new(2, CONVERGE_MS, Rates::default());
    for _ in 0..MAX_FRAMES {
        if src.is_exhausted() {
            break;
        }
        let step = h.next(&mut src);
        if let Err(violation) = h.feed(&mut src, &step) {
            panic!(
                "invariant: {violation}\n  to node {}, {}\n  frame: {}",
                step.target,
                step.frame.how,
                step.frame
                    .bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
        }
    }
    if let Err(violation) = h.settle() {
        panic!("invariant: {violation}");
    }
});
