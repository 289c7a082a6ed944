//! A small `CacheBTree` / `BTreeMap` driver for instruction counts (`valgrind --tool=callgrind`)
//! and quick A/B timings on a loaded machine: both sides alternate in one process, round by
//! round, and each round prints both times and their ratio (`BTreeMap` time / ours; above 1:
//! ours is faster). Same keys as `benches/btree.rs` (random distinct `u64`s from a fixed-seed
//! xorshift, looked up in a shuffled order).
//!
//! ```sh
//! cargo run --release -p veridian-simd --example btree_drive -- MODE N ITERS ROUNDS [SIDES]
//! # MODE: get | getseq | insert | insertseq; N keys; ITERS lookups per round (insert: about
//! # ITERS / N builds of N keys per round); SIDES: both (default) | ours | std.
//! # VERIDIAN_BTREE_SEARCH=avx512|avx2|scalar forces our in-node search.
//! ```
//!
//! Instructions per operation: run `callgrind` at two `ITERS` with `SIDES` = `ours` (or `std`)
//! and divide the difference of the totals by the difference of the operation counts.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use veridian_simd::btree::{CacheBTree, KeySearch, SearchVariant};

#[path = "../benches/support/keys.rs"]
mod keys;
use keys::{random_keys, shuffled};

fn empty_tree() -> CacheBTree<u64, u64> {
    let variant = match std::env::var("VERIDIAN_BTREE_SEARCH").as_deref() {
        Ok("avx512") => SearchVariant::Avx512,
        Ok("avx2") => SearchVariant::Avx2,
        Ok("scalar") => SearchVariant::Scalar,
        _ => return CacheBTree::new(),
    };
    match KeySearch::new(variant) {
        Ok(s) => CacheBTree::with_search(s),
        Err(e) => panic!("{e}"),
    }
}

/// Nanoseconds per operation of `f` (`ops` operations); what `f` returns is dropped after the
/// clock stops (built maps: their drop is not timed, as in the criterion bench).
fn time<R>(ops: usize, f: impl FnOnce() -> R) -> f64 {
    let t = Instant::now();
    let r = f();
    let ns = t.elapsed().as_nanos() as f64 / ops as f64;
    drop(black_box(r));
    ns
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let mode = args.get(1).map_or("get", String::as_str).to_owned();
    let (n, iters, rounds) = (arg(2, 65536), arg(3, 2_000_000), arg(4, 5).max(1));
    let sides = args.get(5).map_or("both", String::as_str);
    let (ours_on, std_on) = (sides != "std", sides != "ours");
    let seq = mode.ends_with("seq");
    let keys: Vec<u64> = if seq {
        (0..n as u64).collect()
    } else {
        random_keys(n, 0x5EED ^ n as u64)
    };
    let lookups = mode.starts_with("get");
    let probes = if seq || !lookups {
        keys.clone()
    } else {
        shuffled(&keys, 7)
    };
    let mut ours = empty_tree();
    let mut std_map = BTreeMap::new();
    if lookups {
        for &k in &keys {
            if ours_on {
                ours.insert(k, k);
            }
            if std_on {
                std_map.insert(k, k);
            }
        }
    }
    eprintln!("{mode} n={n}: our search {:?}", ours.key_search().variant());
    let builds = (iters / n.max(1)).max(1);
    let mut ratios = Vec::new();
    for _ in 0..rounds {
        let (mut a, mut b) = (f64::NAN, f64::NAN);
        if lookups {
            let walk = |get: &dyn Fn(&u64) -> Option<u64>| {
                let mut i = 0;
                for _ in 0..iters {
                    let k = probes[i];
                    i = if i + 1 == probes.len() { 0 } else { i + 1 };
                    black_box(get(black_box(&k)));
                }
            };
            if ours_on {
                a = time(iters, || walk(&|k| ours.get(k).copied()));
            }
            if std_on {
                b = time(iters, || walk(&|k| std_map.get(k).copied()));
            }
        } else {
            if ours_on {
                a = time(builds * n, || {
                    let mut built = Vec::with_capacity(builds);
                    for _ in 0..builds {
                        let mut m = empty_tree();
                        for &k in &keys {
                            m.insert(k, k);
                        }
                        built.push(m);
                    }
                    built
                });
            }
            if std_on {
                b = time(builds * n, || {
                    let mut built = Vec::with_capacity(builds);
                    for _ in 0..builds {
                        let mut m = BTreeMap::new();
                        for &k in &keys {
                            m.insert(k, k);
                        }
                        built.push(m);
                    }
                    built
                });
            }
        }
        println!(
            "{mode} n={n}: ours {a:.1} ns/op, BTreeMap {b:.1} ns/op, ratio {:.2}",
            b / a
        );
        ratios.push(b / a);
    }
    if ours_on && std_on {
        ratios.sort_by(f64::total_cmp);
        println!(
            "{mode} n={n}: median ratio {:.2} (min {:.2}, max {:.2}, {rounds} rounds)",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
}
