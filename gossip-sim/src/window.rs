//! Running the nodes of one lookahead window on several threads, shared by [`Sim`](crate::Sim)
//! and [`OverlaySim`](crate::overlay::OverlaySim).
//!
//! No frame arrives sooner than the smallest link latency after it was sent, so within
//! `[t, t + latency)` no node's input depends on another node's output: each node can run its
//! own inputs of the window, in time order, on any thread. The simulators then feed what the
//! nodes sent into the network model in an order that does not depend on the threads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Whether [`run_all`] measures its threads (see [`critical_path_ns`]).
static MEASURE: AtomicBool = AtomicBool::new(false);
/// CPU time the longest thread of each measured window spent beyond the calling thread's, summed.
static WAITED_NS: AtomicU64 = AtomicU64::new(0);

/// Makes windows measure how long they would take alone (off by default: it reads a `/proc`
/// file per thread per window).
pub fn measure_critical_path(on: bool) {
    MEASURE.store(on, Ordering::Relaxed);
}

/// What the run so far would take alone on as many cores as it has threads, in CPU
/// nanoseconds, load aside: the calling thread's CPU time plus, for each window measured since
/// [`measure_critical_path`], how much longer its busiest thread ran than the calling thread
/// (the time the calling thread waited). Call it on the thread that runs the simulation. Linux
/// only (`/proc/thread-self/schedstat`); thread start-up is not counted.
pub fn critical_path_ns() -> Option<u64> {
    Some(thread_cpu_ns()? + WAITED_NS.load(Ordering::Relaxed))
}

/// The calling thread's CPU time in nanoseconds.
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

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
    let measure = MEASURE.load(Ordering::Relaxed);
    let claim = || {
        let started = if measure { thread_cpu_ns() } else { None };
        while let Some(slot) = work.get(next.fetch_add(1, Ordering::Relaxed)) {
            // A poisoned slot means a node panicked on another thread; the scope re-raises
            // that panic when it ends.
            if let Ok(mut item) = slot.lock() {
                run(&mut item);
            }
        }
        started.and_then(|s| Some(thread_cpu_ns()?.saturating_sub(s)))
    };
    std::thread::scope(|s| {
        let others: Vec<_> = (1..threads).map(|_| s.spawn(claim)).collect();
        let mine = claim();
        let longest = others
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .max();
        if let (Some(mine), Some(longest)) = (mine, longest) {
            WAITED_NS.fetch_add(longest.saturating_sub(mine), Ordering::Relaxed);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_critical_path_counts_the_time_waited_for_a_busier_thread() {
        if thread_cpu_ns().is_none() {
            // Not Linux: nothing to measure, and `critical_path_ns` says so.
            assert!(critical_path_ns().is_none());
            return;
        }
        measure_critical_path(true);
        let caller = std::thread::current().id();
        let worker_busy = AtomicBool::new(false);
        let before = critical_path_ns().expect("measurable");
        let mut items = [0u8, 1];
        // The calling thread's item burns no CPU: it waits for the other thread to take the
        // other item, which burns 100 ms of CPU. Only the wait accounting can see those.
        run_all(&mut items, 2, |_| {
            if std::thread::current().id() == caller {
                while !worker_busy.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            } else {
                worker_busy.store(true, Ordering::Relaxed);
                let start = thread_cpu_ns().expect("measurable");
                while thread_cpu_ns().expect("measurable") < start + 100_000_000 {
                    std::hint::spin_loop();
                }
            }
        });
        let after = critical_path_ns().expect("measurable");
        assert!(
            after - before >= 100_000_000,
            "the critical path grew by {} ns only",
            after - before
        );
    }
}
