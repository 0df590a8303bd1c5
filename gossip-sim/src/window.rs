//! Running the nodes of one lookahead window on several threads, shared by [`Sim`](crate::Sim)
//! and [`OverlaySim`](crate::overlay::OverlaySim).
//!
//! No frame arrives sooner than the smallest link latency after it was sent, so within
//! `[t, t + latency)` no node's input depends on another node's output: each node can run its
//! own inputs of the window, in time order, on any thread. The simulators then feed what the
//! nodes sent into the network model in an order that does not depend on the threads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Below this many busy nodes, a window runs on the calling thread: starting threads would
/// cost more than it saves.
pub(crate) const MIN_PARALLEL_JOBS: usize = 16;

/// Mutable references to the elements of `slice` at `sorted` (strictly increasing) indices.
pub(crate) fn disjoint_mut<'a, T>(mut slice: &'a mut [T], sorted: &[usize]) -> Vec<&'a mut T> {
    let mut out = Vec::with_capacity(sorted.len());
    let mut base = 0;
    for &i in sorted {
        let (_, rest) = std::mem::take(&mut slice).split_at_mut(i - base);
        let Some((item, rest)) = rest.split_first_mut() else {
            break;
        };
        out.push(item);
        slice = rest;
        base = i + 1;
    }
    out
}

/// Runs `run` on every item of `work`, on `threads` threads (the calling one included).
///
/// Each thread claims the next unclaimed item: the cost of a node's inputs varies (a signature
/// here, five there), so fixed shares would leave a thread idle. Callers put the busiest items
/// first, so that the window does not end with one thread finishing a long node while the
/// others wait. The threads end with the window: a pool's idle threads would spin on the cores
/// the serial part between windows needs. Items must not depend on the order they run in.
pub(crate) fn run_all<T: Send>(work: &mut [T], threads: usize, run: impl Fn(&mut T) + Sync) {
    let work: Vec<Mutex<&mut T>> = work.iter_mut().map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let claim = || {
        while let Some(slot) = work.get(next.fetch_add(1, Ordering::Relaxed)) {
            // A poisoned slot means a node panicked on another thread; the scope re-raises
            // that panic when it ends.
            if let Ok(mut item) = slot.lock() {
                run(&mut item);
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(claim);
        }
        claim();
    });
}
