//! One-thread A/B driver for `alloc_free_pair` (one `alloc` and one `dealloc` of `size` bytes,
//! align 8, through `GlobalAlloc`), for a loaded machine: the allocators of `benches/alloc.rs`
//! (the same set-up, `benches/support/peers.rs`) run `ITERS` pairs each per round, taking turns
//! within a round (the first one rotates from round to round), and the driver prints each one's
//! median time per pair and the median over the rounds of our time / its time in that round
//! (below 1: ours is faster), with the min and max. A round that lost the CPU spoils one ratio,
//! not the median.
//!
//! ```sh
//! cargo run --release -p veridian-alloc --features std --example alloc_ab -- SIZE ITERS ROUNDS
//! ```

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::time::Instant;

#[path = "../benches/support/peers.rs"]
#[allow(dead_code, unused_macros, unused_imports)]
// `VERIDIAN_OWNER` and `each_allocator` serve the criterion bench.
mod peers;
use peers::{JEMALLOC, MIMALLOC, SYSTEM, VERIDIAN, buddy_system, linked_list, talc};

/// `iters` alloc + free pairs of `layout` on `a`; exits with a message if an allocation fails.
fn pairs(a: &dyn GlobalAlloc, name: &str, layout: Layout, iters: u64) {
    for _ in 0..iters {
        // SAFETY: `layout` has a non-zero size (checked in `main`); the block is freed at once
        // with the same layout.
        unsafe {
            let p = a.alloc(black_box(layout));
            if p.is_null() {
                eprintln!(
                    "alloc_ab: {name}: allocation of {} bytes failed",
                    layout.size()
                );
                std::process::exit(1);
            }
            a.dealloc(black_box(p), layout);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let parse = |i: usize| -> u64 {
        args.get(i).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            eprintln!("usage: alloc_ab SIZE ITERS ROUNDS");
            std::process::exit(2)
        })
    };
    let (size, iters, rounds) = (parse(1) as usize, parse(2), parse(3) as usize);
    let Some(layout) = Layout::from_size_align(size, 8)
        .ok()
        .filter(|l| l.size() > 0)
    else {
        eprintln!("alloc_ab: SIZE must be 1..=isize::MAX - 7");
        std::process::exit(2);
    };
    let sides: [(&str, &dyn GlobalAlloc); 7] = [
        ("veridian", &VERIDIAN),
        ("system", &SYSTEM),
        ("mimalloc", &MIMALLOC),
        ("jemalloc", &JEMALLOC),
        ("talc", talc()),
        ("linked_list", linked_list()),
        ("buddy_system", buddy_system()),
    ];
    let n = sides.len();
    let mut times = vec![0f64; n];
    let mut per_side = vec![Vec::with_capacity(rounds); n];
    let mut ratios = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        for k in 0..n {
            let side = (round + k) % n;
            let start = Instant::now();
            pairs(sides[side].1, sides[side].0, layout, iters);
            times[side] = start.elapsed().as_secs_f64() * 1e9 / iters as f64;
            per_side[side].push(times[side]);
        }
        for (peer, r) in ratios.iter_mut().enumerate().skip(1) {
            r.push(times[0] / times[peer]);
        }
    }
    for (side, t) in per_side.iter_mut().enumerate() {
        t.sort_by(f64::total_cmp);
        println!(
            "alloc_free_pair/{size}: {}: median {:.2} ns per pair",
            sides[side].0,
            t[t.len() / 2]
        );
    }
    for (peer, r) in ratios.iter_mut().enumerate().skip(1) {
        r.sort_by(f64::total_cmp);
        println!(
            "alloc_free_pair/{size}: veridian / {}: median {:.3} over {rounds} rounds (min {:.3}, max {:.3})",
            sides[peer].0,
            r[r.len() / 2],
            r[0],
            r[r.len() - 1]
        );
    }
}
