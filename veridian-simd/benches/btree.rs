//! `CacheBTree` against `std::collections::BTreeMap`, side by side, with `u64` keys and values;
//! and the measured examples for the hints.
//!
//! Groups (the parameter is the number of keys in the map):
//! - `btree_get/{veridian,std_btreemap}/{1000,65536,1048576}`: one lookup of a present key per
//!   iteration, keys random (a fixed-seed 64-bit generator), lookups in a random order.
//! - `btree_get_seq/...`: keys `0..n`, looked up in ascending order.
//! - `btree_insert/...`: building a map of `n` random keys from empty, per iteration (reported
//!   per element); the built maps are dropped outside the timed region.
//! - `btree_insert_seq/...`: the same with keys `0..n` in ascending order.
//! - `btree_search_variant/{avx512,avx2,scalar}/65536`: `btree_get` with each in-node search
//!   the CPU has, to separate the SIMD search from the layout.
//! - `hints/prefetch/{none,prefetch_t0}`: sum of a 64 MiB table read in a random order, without
//!   and with `prefetch_read` 16 steps ahead.
//! - `hints/branch/{none,unlikely}`: a checked sum whose rare error path is large, without and
//!   with `unlikely` on its condition.
//!
//! Maps are built once per size, outside the timed region; 1M-key groups run 10 samples.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};
use veridian_simd::btree::{CacheBTree, KeySearch, SearchVariant};
use veridian_simd::hint::{Locality, prefetch_read, unlikely};

const SIZES: [usize; 3] = [1000, 65536, 1 << 20];

#[path = "support/keys.rs"]
mod keys;
use keys::{Rng, random_keys, shuffled};

fn tune(g: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    g.sample_size(if n >= 1 << 20 { 10 } else { 50 });
}

fn get_group(c: &mut Criterion, name: &str, sequential: bool) {
    let mut g = c.benchmark_group(name);
    for n in SIZES {
        tune(&mut g, n);
        g.throughput(Throughput::Elements(1));
        let keys: Vec<u64> = if sequential {
            (0..n as u64).collect()
        } else {
            random_keys(n, 0x5EED ^ n as u64)
        };
        let probes = if sequential {
            keys.clone()
        } else {
            shuffled(&keys, 7)
        };
        let ours: CacheBTree<u64, u64> = keys.iter().map(|&k| (k, k)).collect();
        let std: BTreeMap<u64, u64> = keys.iter().map(|&k| (k, k)).collect();
        g.bench_with_input(BenchmarkId::new("veridian", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                let k = probes[i];
                i = if i + 1 == probes.len() { 0 } else { i + 1 };
                black_box(ours.get(black_box(&k)))
            })
        });
        g.bench_with_input(BenchmarkId::new("std_btreemap", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                let k = probes[i];
                i = if i + 1 == probes.len() { 0 } else { i + 1 };
                black_box(std.get(black_box(&k)))
            })
        });
    }
    g.finish();
}

fn insert_group(c: &mut Criterion, name: &str, sequential: bool) {
    let mut g = c.benchmark_group(name);
    for n in SIZES {
        tune(&mut g, n);
        g.throughput(Throughput::Elements(n as u64));
        let keys: Vec<u64> = if sequential {
            (0..n as u64).collect()
        } else {
            random_keys(n, 0xB0B ^ n as u64)
        };
        g.bench_with_input(BenchmarkId::new("veridian", n), &n, |b, _| {
            b.iter_with_large_drop(|| {
                let mut m = CacheBTree::new();
                for &k in &keys {
                    m.insert(k, k);
                }
                m
            })
        });
        g.bench_with_input(BenchmarkId::new("std_btreemap", n), &n, |b, _| {
            b.iter_with_large_drop(|| {
                let mut m = BTreeMap::new();
                for &k in &keys {
                    m.insert(k, k);
                }
                m
            })
        });
    }
    g.finish();
}

fn btree_get(c: &mut Criterion) {
    get_group(c, "btree_get", false);
    get_group(c, "btree_get_seq", true);
}

fn btree_insert(c: &mut Criterion) {
    insert_group(c, "btree_insert", false);
    insert_group(c, "btree_insert_seq", true);
}

fn btree_search_variant(c: &mut Criterion) {
    let mut g = c.benchmark_group("btree_search_variant");
    let n = 65536;
    let keys = random_keys(n, 0x5EED ^ n as u64);
    let probes = shuffled(&keys, 7);
    for v in SearchVariant::ALL {
        let Ok(s) = KeySearch::new(v) else {
            println!("SKIP {}: this CPU lacks it", v.name());
            continue;
        };
        let mut t = CacheBTree::with_search(s);
        for &k in &keys {
            t.insert(k, k);
        }
        g.bench_with_input(BenchmarkId::new(v.name(), n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                let k = probes[i];
                i = if i + 1 == probes.len() { 0 } else { i + 1 };
                black_box(t.get(black_box(&k)))
            })
        });
    }
    g.finish();
}

fn hints_prefetch(c: &mut Criterion) {
    const N: usize = 8 << 20; // 64 MiB of u64
    const AHEAD: usize = 16;
    const WALK: usize = 1 << 16;
    let table: Vec<u64> = (0..N as u64).collect();
    let mut rng = Rng(99);
    let idx: Vec<usize> = (0..WALK + AHEAD)
        .map(|_| (rng.next() % N as u64) as usize)
        .collect();
    let mut g = c.benchmark_group("hints/prefetch");
    g.throughput(Throughput::Elements(WALK as u64));
    g.bench_function("none", |b| {
        b.iter(|| {
            let mut s = 0u64;
            for i in 0..WALK {
                s = s.wrapping_add(table[idx[i]]);
            }
            black_box(s)
        })
    });
    g.bench_function("prefetch_t0", |b| {
        b.iter(|| {
            let mut s = 0u64;
            for i in 0..WALK {
                prefetch_read(table.as_ptr().wrapping_add(idx[i + AHEAD]), Locality::T0);
                s = s.wrapping_add(table[idx[i]]);
            }
            black_box(s)
        })
    });
    g.finish();
}

/// The rare path: enough code that where the compiler puts it matters.
#[inline(always)]
fn report(x: u32, acc: &mut u64) {
    let mut h = u64::from(x);
    for r in 0..8 {
        h = h.rotate_left(r * 7 + 3) ^ 0x9E37_79B9_7F4A_7C15;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    }
    *acc ^= h;
}

fn hints_branch(c: &mut Criterion) {
    let mut rng = Rng(5);
    // About one element in 4096 takes the rare path.
    let data: Vec<u32> = (0..1 << 16)
        .map(|_| {
            let r = rng.next();
            if r.is_multiple_of(4096) {
                u32::MAX
            } else {
                (r >> 40) as u32
            }
        })
        .collect();
    let mut g = c.benchmark_group("hints/branch");
    g.throughput(Throughput::Elements(data.len() as u64));
    g.bench_function("none", |b| {
        b.iter(|| {
            let (mut s, mut acc) = (0u64, 0u64);
            for &x in black_box(&data) {
                if x == u32::MAX {
                    report(x, &mut acc);
                } else {
                    s = s.wrapping_add(u64::from(x));
                }
            }
            black_box((s, acc))
        })
    });
    g.bench_function("unlikely", |b| {
        b.iter(|| {
            let (mut s, mut acc) = (0u64, 0u64);
            for &x in black_box(&data) {
                if unlikely(x == u32::MAX) {
                    report(x, &mut acc);
                } else {
                    s = s.wrapping_add(u64::from(x));
                }
            }
            black_box((s, acc))
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    btree_get,
    btree_insert,
    btree_search_variant,
    hints_prefetch,
    hints_branch
);
criterion_main!(benches);
