//! What the binary watches while a scenario runs: failure-detector events, convergence, traffic.
//!
//! Free functions over `Sim`, so the simulator library itself stays untouched.

use gossip_sim::VirtualTime;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant as WallClock;

use gossip_core::{Event, Instant, NodeId};
use gossip_sim::Sim;

/// Whether long runs report their progress on stderr (`--progress`).
pub static PROGRESS: AtomicBool = AtomicBool::new(false);
/// Wall-clock seconds between progress lines.
const PROGRESS_EVERY_S: u64 = 10;

/// A failure-detector verdict one node reached about another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `Event::MemberSuspect`.
    Suspect,
    /// `Event::MemberDead`.
    Dead,
}

/// One verdict, with the virtual time it was reported at.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// When the observer reported it.
    pub at: Instant,
    /// The observer's index.
    pub observer: usize,
    /// The member it is about.
    pub member: NodeId,
    /// Suspect or dead.
    pub verdict: Verdict,
}

/// Verdicts collected from the nodes' event queues. Absorbing empties `SimNode::events`, which
/// otherwise grow by one `MemberJoined` per (observer, member) pair: the harness, not the engine,
/// would then dominate the memory of a large run.
#[derive(Debug, Default)]
pub struct Log {
    /// Every suspect and dead verdict seen so far.
    pub entries: Vec<Entry>,
}

impl Log {
    /// Moves the verdicts out of every node's event list and clears those lists.
    pub fn absorb(&mut self, sim: &mut Sim) {
        for (observer, n) in sim.nodes.iter_mut().enumerate() {
            for (at, e) in n.events.drain(..) {
                let (member, verdict) = match e {
                    Event::MemberSuspect { id } => (id, Verdict::Suspect),
                    Event::MemberDead { id } => (id, Verdict::Dead),
                    _ => continue,
                };
                self.entries.push(Entry {
                    at,
                    observer,
                    member,
                    verdict,
                });
            }
        }
    }

    /// Verdicts of a kind reported at or after `since`, about members `wrongly` says were up.
    pub fn count(
        &self,
        verdict: Verdict,
        since: Instant,
        wrongly: impl Fn(&NodeId) -> bool,
    ) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.verdict == verdict && e.at >= since && wrongly(&e.member))
            .count() as u64
    }
}

/// Like `Sim::run_until_true`, absorbing events into `log` after every slice. Returns the
/// virtual milliseconds it took, or None when `max_ms` passed first.
pub fn run_until_true(
    sim: &mut Sim,
    log: &mut Log,
    max_ms: u64,
    check_ms: u64,
    mut done: impl FnMut(&Sim, &Log) -> bool,
) -> Option<u64> {
    let start = sim.now;
    let end = start.plus_millis(max_ms);
    let mut last_report = WallClock::now();
    loop {
        log.absorb(sim);
        if PROGRESS.load(Ordering::Relaxed) && last_report.elapsed().as_secs() >= PROGRESS_EVERY_S {
            last_report = WallClock::now();
            report_progress(sim);
        }
        if done(sim, log) {
            return Some(sim.now.micros_since(start) / 1_000);
        }
        if sim.now >= end {
            return None;
        }
        let next = sim.now.plus_millis(check_ms).min(end);
        sim.run_until(next);
    }
}

fn report_progress(sim: &Sim) {
    let known: Vec<usize> = sim
        .nodes
        .iter()
        .filter(|n| n.up)
        .map(|n| n.node.members().size_hint().0)
        .collect();
    let min = known.iter().min().copied().unwrap_or(0);
    let mean = known.iter().sum::<usize>() as f64 / known.len().max(1) as f64;
    eprintln!(
        "[progress] virtual {:.3} s, {} up, records held per node min {min} mean {mean:.1}, peak RSS {:?} KiB",
        sim.now.as_micros() as f64 / 1e6,
        known.len(),
        crate::report::peak_rss_kb()
    );
}

/// Runs `ms` virtual milliseconds in `slice_ms` slices, absorbing events after each.
pub fn run_for(sim: &mut Sim, log: &mut Log, ms: u64, slice_ms: u64) {
    run_until_true(sim, log, ms, slice_ms, |_, _| false);
}

/// `Sim::converged`, with a cheap first test: a node that holds fewer records than there are
/// running nodes cannot see them all alive. Keeps checks affordable at 10,000 nodes.
pub fn converged(sim: &Sim) -> bool {
    let up = sim.nodes.iter().filter(|n| n.up).count();
    let enough = sim
        .nodes
        .iter()
        .filter(|n| n.up)
        .all(|n| n.node.members().size_hint().0 >= up);
    enough && sim.converged()
}

/// Frames and bytes sent so far, summed over all nodes.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// When it was taken.
    pub at: Instant,
    /// Frames.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Sent {
    /// The counters now.
    pub fn take(sim: &Sim) -> Sent {
        let packets = sim.nodes.iter().map(|n| n.sent_packets).sum();
        let bytes = sim.nodes.iter().map(|n| n.sent_bytes).sum();
        Sent {
            at: sim.now,
            packets,
            bytes,
        }
    }
}

/// Per-node send rates between two snapshots.
#[derive(Debug, Clone, Copy)]
pub struct Traffic {
    /// Bytes per node per virtual second.
    pub bytes_per_node_per_s: f64,
    /// Frames per node per virtual second.
    pub msgs_per_node_per_s: f64,
    /// Length of the window in virtual milliseconds.
    pub window_ms: u64,
}

impl Traffic {
    /// Rates from `from` to now, divided by all `n` nodes (crashed ones included).
    pub fn since(sim: &Sim, from: Sent) -> Option<Traffic> {
        let to = Sent::take(sim);
        let micros = to.at.micros_since(from.at);
        if micros == 0 || sim.nodes.is_empty() {
            return None;
        }
        let per = sim.nodes.len() as f64 * micros as f64 / 1e6;
        Some(Traffic {
            bytes_per_node_per_s: (to.bytes - from.bytes) as f64 / per,
            msgs_per_node_per_s: (to.packets - from.packets) as f64 / per,
            window_ms: micros / 1_000,
        })
    }
}

/// Nearest-rank percentile (`p` in 0..=100) of unsorted values.
pub fn percentile(values: &[u64], p: u64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = (p as usize * v.len()).div_ceil(100).max(1);
    Some(v[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 50), Some(7));
        assert_eq!(percentile(&[4, 1, 3, 2], 50), Some(2));
        assert_eq!(percentile(&[5, 1, 4, 2, 3], 50), Some(3));
        assert_eq!(percentile(&[5, 1, 4, 2, 3], 100), Some(5));
    }
}
