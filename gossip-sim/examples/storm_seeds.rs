//! A 100-member join storm over many seeds: virtual ms until every member knows every other
//! (`Sim::converged`), the same run as `a_join_storm_spreads_news_of_newcomers_by_random_push` in
//! `tests/cluster.rs`, whose bound (250 ms) holds for its five seeds; this shows the spread
//! behind it.
//!
//! `cargo run -p gossip-sim --example storm_seeds [FROM] [COUNT]` (defaults: seeds 0..72).

use gossip_core::Config;
use gossip_sim::{NetConfig, Sim, VirtualTime};

fn main() {
    let mut args = std::env::args().skip(1);
    let from: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let count: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(72);
    let mut times = Vec::new();
    for seed in from..from + count {
        let mut sim = Sim::new(100, seed, Config::lan(), NetConfig::default());
        sim.join_all();
        let ms = sim.run_until_true(5_000, 10, Sim::converged);
        println!("seed {seed}: {ms:?} ms");
        times.push(ms.unwrap_or(u64::MAX));
    }
    times.sort_unstable();
    let done: Vec<u64> = times.iter().copied().filter(|t| *t != u64::MAX).collect();
    let mean = done.iter().sum::<u64>() as f64 / done.len().max(1) as f64;
    println!(
        "{} seeds: mean {mean:.0} ms, median {} ms, max {} ms, over 250 ms: {}, not converged in 5 s: {}",
        times.len(),
        times.get(times.len() / 2).copied().unwrap_or(0),
        done.last().copied().unwrap_or(0),
        done.iter().filter(|t| **t > 250).count(),
        times.len() - done.len()
    );
}
