//! Key ownership (`gossip_core::ownership`): how many keys move when one member joins or leaves,
//! and what a lookup and a watch update cost.
//!
//! First a movement table, counted (not timed): 10,000 keys (`key-0` ... `key-9999`) over
//! N = 100 members with random ids, for five seeds; one member joins (N = 101) or one leaves
//! (N = 99). `owner` is the fraction of keys whose first owner changed, `owners3` the fraction
//! whose `owners(key, 3)` list changed (as a set or in order); the ideal is the share of the
//! member that came or went: 1/101 (owner) and 3/101 (owners3) on a join, 1/100 and 3/100 on a
//! leave. `load` is the most keys any member owns divided by the mean (1.00 is perfect balance).
//!
//! Then criterion timings: `owner` and `owners(…, 3)` at N = 100 and 1,000, and the update of a
//! 10,000-key watch (n = 3, N = 1,000) when a member joins and when it leaves.
//!
//! Run: `cargo bench -p gossip-core --features ownership --bench ownership`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use gossip_core::NodeId;
use gossip_core::ownership::{Placement, Scope, Watches};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

const KEYS: usize = 10_000;

fn random_id(rng: &mut ChaCha20Rng) -> NodeId {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    NodeId::from_bytes(b)
}

fn keys() -> Vec<Vec<u8>> {
    (0..KEYS).map(|k| format!("key-{k}").into_bytes()).collect()
}

fn placement(rng: &mut ChaCha20Rng, n: usize) -> Placement {
    let mut p = Placement::new();
    while p.len() < n {
        p.insert(random_id(rng));
    }
    p
}

/// Fractions of `keys` whose owner and whose `owners(…, 3)` differ between `a` and `b`.
fn moved(a: &Placement, b: &Placement, keys: &[Vec<u8>]) -> (f64, f64) {
    let (mut one, mut three) = (0, 0);
    for k in keys {
        let (x, y) = (a.owners(k, 3), b.owners(k, 3));
        one += usize::from(x[0] != y[0]);
        three += usize::from(x != y);
    }
    (
        one as f64 / keys.len() as f64,
        three as f64 / keys.len() as f64,
    )
}

/// The most keys one member owns over the mean.
fn load(p: &Placement, keys: &[Vec<u8>]) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for k in keys {
        *counts.entry(p.owners(k, 1)[0]).or_insert(0usize) += 1;
    }
    let max = counts.values().copied().max().unwrap_or(0);
    max as f64 * p.len() as f64 / keys.len() as f64
}

fn movement_table() {
    let keys = keys();
    println!("ownership movement, {KEYS} keys, N = 100 (fractions of keys)");
    println!("seed  join:owner  join:owners3  leave:owner  leave:owners3  load(N=100)");
    let mut sums = [0f64; 5];
    for seed in 0..5u64 {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let base = placement(&mut rng, 100);
        let mut joined = base.clone();
        joined.insert(random_id(&mut rng));
        let mut left = base.clone();
        let gone = base.members()[(rng.next_u64() % 100) as usize].0;
        left.remove(&gone);
        let (j1, j3) = moved(&base, &joined, &keys);
        let (l1, l3) = moved(&base, &left, &keys);
        let lo = load(&base, &keys);
        println!("{seed:>4}  {j1:>10.4}  {j3:>12.4}  {l1:>11.4}  {l3:>13.4}  {lo:>11.2}");
        for (s, v) in sums.iter_mut().zip([j1, j3, l1, l3, lo]) {
            *s += v;
        }
    }
    let [j1, j3, l1, l3, lo] = sums.map(|s| s / 5.0);
    println!("mean  {j1:>10.4}  {j3:>12.4}  {l1:>11.4}  {l3:>13.4}  {lo:>11.2}");
    println!(
        "ideal {:>10.4}  {:>12.4}  {:>11.4}  {:>13.4}  {:>11.2}",
        1.0 / 101.0,
        3.0 / 101.0,
        1.0 / 100.0,
        3.0 / 100.0,
        1.0
    );
}

fn benches(c: &mut Criterion) {
    movement_table();
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    for n in [100, 1_000] {
        let p = placement(&mut rng, n);
        let mut i = 0u64;
        c.bench_function(&format!("owner/N={n}"), |b| {
            b.iter(|| {
                i += 1;
                black_box(p.owners(format!("key-{i}").as_bytes(), 1))
            })
        });
        c.bench_function(&format!("owners3/N={n}"), |b| {
            b.iter(|| {
                i += 1;
                black_box(p.owners(format!("key-{i}").as_bytes(), 3))
            })
        });
    }
    let base = placement(&mut rng, 1_000);
    let mut watches = Watches::new();
    watches
        .open(keys(), 3, Scope::All, base.members())
        .expect("within the bounds");
    c.bench_function("watch10k_n3/join/N=1000", |b| {
        b.iter_batched(
            || (watches.clone(), random_id(&mut rng)),
            |(mut w, id)| {
                let h = gossip_core::ownership::member_hash(&id);
                black_box(w.joined(Scope::All, id, h))
            },
            BatchSize::LargeInput,
        )
    });
    c.bench_function("watch10k_n3/leave/N=1000", |b| {
        b.iter_batched(
            || {
                let gone = base.members()[(rng.next_u64() % 1_000) as usize].0;
                let mut left = base.clone();
                left.remove(&gone);
                (watches.clone(), gone, left)
            },
            |(mut w, gone, left)| black_box(w.left(Scope::All, gone, left.members())),
            BatchSize::LargeInput,
        )
    });
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = ownership;
    config = config();
    targets = benches
}
criterion_main!(ownership);
