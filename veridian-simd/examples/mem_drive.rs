//! A small `memcpy` / `memset` / `memmove` driver against glibc, for instruction counts
//! (`valgrind --tool=callgrind`) and A/B timings on a loaded machine: both sides alternate in
//! one process, round by round, on the same page-aligned buffers, and each round prints both
//! times and their ratio (glibc time / ours; above 1: ours is faster). glibc is reached as in
//! `benches/mem.rs` (`copy_from_slice`, `fill`, `copy_within`).
//!
//! ```sh
//! cargo run --release -p veridian-simd --features std --example mem_drive -- MODE N ITERS ROUNDS [SIDES]
//! # MODE: cpy | set | move (move: n bytes up by n / 2 inside one buffer, as the bench);
//! # N bytes; ITERS calls per side per round; SIDES: both (default) | ours | glibc.
//! ```
//!
//! Instructions per call: run `callgrind` at two `ITERS` with one side and divide the
//! difference of the totals by the difference of the call counts.

use std::hint::black_box;
use std::time::Instant;

/// `len` bytes at a page-aligned offset inside a larger `Vec`.
fn aligned(len: usize, fill: u8) -> (Vec<u8>, usize) {
    let buf = vec![fill; len + 4096];
    let off = buf.as_ptr().align_offset(4096);
    (buf, off)
}

fn ours(mode: &str, dst: &mut [u8], src: &[u8], n: usize, iters: usize) {
    for _ in 0..iters {
        let d = black_box(dst.as_mut_ptr());
        let n = black_box(n);
        // SAFETY: `dst` and `src` hold at least `n + n / 2` bytes each (see `main`); `move`
        // stays inside `dst`.
        unsafe {
            match mode {
                "cpy" => veridian_simd::memcpy(d, black_box(src.as_ptr()), n),
                "set" => veridian_simd::memset(d, black_box(0x5a), n),
                _ => veridian_simd::memmove(d.add(n / 2), d, n),
            };
        }
    }
}

fn glibc(mode: &str, dst: &mut [u8], src: &[u8], n: usize, iters: usize) {
    for _ in 0..iters {
        let n = black_box(n);
        let d = black_box(&mut *dst);
        match mode {
            "cpy" => d[..n].copy_from_slice(black_box(&src[..n])),
            "set" => d[..n].fill(black_box(0x5a)),
            _ => d.copy_within(..n, n / 2),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: mem_drive cpy|set|move N ITERS ROUNDS [both|ours|glibc]");
        std::process::exit(2);
    }
    let mode = args[1].as_str();
    if !matches!(mode, "cpy" | "set" | "move") {
        eprintln!("mem_drive: unknown mode {mode}");
        std::process::exit(2);
    }
    let parse = |s: &str| -> usize {
        s.parse().unwrap_or_else(|_| {
            eprintln!("mem_drive: not a number: {s}");
            std::process::exit(2)
        })
    };
    let (n, iters, rounds) = (parse(&args[2]), parse(&args[3]), parse(&args[4]));
    let sides = args.get(5).map_or("both", String::as_str);
    let len = n + n / 2;
    let (mut dbuf, doff) = aligned(len, 0);
    let (sbuf, soff) = aligned(len, 0xa5);
    let dst = &mut dbuf[doff..doff + len];
    let src = &sbuf[soff..soff + len];
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let mut t = [0.0f64; 2];
        // Alternate which side goes first, so neither always runs on a warmer cache.
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let start = Instant::now();
            match (side, sides) {
                (0, "both" | "ours") => ours(mode, dst, src, n, iters),
                (1, "both" | "glibc") => glibc(mode, dst, src, n, iters),
                _ => {}
            }
            t[side] = start.elapsed().as_secs_f64() * 1e9 / iters.max(1) as f64;
        }
        if sides == "both" {
            ratios.push(t[1] / t[0]);
            println!(
                "round {round}: ours {:.2} ns, glibc {:.2} ns, glibc/ours {:.3}",
                t[0],
                t[1],
                t[1] / t[0]
            );
        }
    }
    if !ratios.is_empty() {
        ratios.sort_by(f64::total_cmp);
        println!(
            "{mode} {n}: median glibc/ours {:.3} over {} rounds (min {:.3}, max {:.3})",
            ratios[ratios.len() / 2],
            ratios.len(),
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
}
