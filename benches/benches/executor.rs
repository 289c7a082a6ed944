//! Criterion benchmarks: the fork-join executor of `veridian_benches::executor` (veridian-sched
//! deques and topology, veridian-sync queue and padding, veridian-alloc as the global
//! allocator) against `rayon` on the same number of worker threads ([`THREADS`]).
//!
//! Both sides run the same code (`veridian_benches::executor::tasks`, generic over the `join`
//! function) inside their own pool's `install`, from the benchmark thread, which waits meanwhile
//! (parked on our side, blocked on a latch on rayon's); one iteration is one `install`. Both
//! pools exist for the whole run; an idle pool's workers park once they found no work for a
//! while (ours after 64 spins and 64 yields, rayon's after its own rounds of yielding), so the
//! pool that is not measured does not keep the CPUs busy. Veridian-alloc's `Heap` is this
//! process's global allocator, for both sides.
//!
//! Groups (ids are `<group>/<veridian|rayon>/<parameter>`; `cargo xtask bench-ratios
//! fork_join` prints our median, rayon's and the ratio):
//! - `fork_join_install/<side>/empty`: one `install` of a closure that returns a number: the
//!   fixed cost of handing work to the pool and waiting for it.
//! - `fork_join_fib/<side>/<n>`: Fibonacci number `n` by recursive `join` down to
//!   [`FIB_CUTOFF`], sequential below.
//! - `fork_join_sum/<side>/<len>`: the sum of a `Vec<u64>` of `len` elements, split in halves
//!   down to [`SUM_CUTOFF`] elements.
//! - `fork_join_quicksort/<side>/<len>`: a quicksort of `len` `u32`s (a fixed pseudo-random
//!   permutation, copied back into place before each iteration, untimed) whose partitions are
//!   sorted in parallel down to [`SORT_CUTOFF`] elements.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use veridian_alloc::Heap;
use veridian_alloc::hosted::{MmapPages, ThreadSlots};
use veridian_benches::executor::Pool;
use veridian_benches::executor::tasks::{self, Join, Veridian};
use veridian_benches::workloads::Rng;

#[global_allocator]
static HEAP: Heap<MmapPages, ThreadSlots> = Heap::new(MmapPages, ThreadSlots);

/// Worker threads on each side (the machine's CPU count when the figures were taken).
const THREADS: usize = 2;
/// Below this `n`, `fib` recurses sequentially.
const FIB_CUTOFF: u32 = 16;
/// Slices of at most this many elements are summed sequentially.
const SUM_CUTOFF: usize = 4096;
/// Slices of at most this many elements are sorted sequentially.
const SORT_CUTOFF: usize = 2048;

/// `rayon::join` behind the same trait as ours.
struct Rayon;

impl Join for Rayon {
    fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
    where
        A: FnOnce() -> RA + Send,
        B: FnOnce() -> RB + Send,
        RA: Send,
        RB: Send,
    {
        rayon::join(a, b)
    }
}

fn benches(c: &mut Criterion) {
    let ours = Pool::new(THREADS);
    let theirs = rayon::ThreadPoolBuilder::new()
        .num_threads(THREADS)
        .build()
        .expect("rayon pool");

    // The fixed cost of one `install` of an empty closure: the injector push or rayon's
    // injection, waking a worker, the caller's wait.
    let mut group = c.benchmark_group("fork_join_install");
    group.bench_function(BenchmarkId::new("veridian", "empty"), |b| {
        b.iter(|| ours.install(|| black_box(1u64)))
    });
    group.bench_function(BenchmarkId::new("rayon", "empty"), |b| {
        b.iter(|| theirs.install(|| black_box(1u64)))
    });
    group.finish();

    let mut group = c.benchmark_group("fork_join_fib");
    for n in [25u32, 30] {
        let expected = tasks::fib_sequential(n);
        assert_eq!(
            ours.install(|| tasks::fib::<Veridian>(n, FIB_CUTOFF)),
            expected
        );
        assert_eq!(
            theirs.install(|| tasks::fib::<Rayon>(n, FIB_CUTOFF)),
            expected
        );
        group.bench_function(BenchmarkId::new("veridian", n), |b| {
            b.iter(|| ours.install(|| tasks::fib::<Veridian>(black_box(n), FIB_CUTOFF)))
        });
        group.bench_function(BenchmarkId::new("rayon", n), |b| {
            b.iter(|| theirs.install(|| tasks::fib::<Rayon>(black_box(n), FIB_CUTOFF)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("fork_join_sum");
    for len in [1usize << 20, 1 << 24] {
        let values: Vec<u64> = (0..len as u64).collect();
        let expected = values.iter().fold(0u64, |a, &v| a.wrapping_add(v));
        assert_eq!(
            ours.install(|| tasks::sum::<Veridian>(&values, SUM_CUTOFF)),
            expected
        );
        assert_eq!(
            theirs.install(|| tasks::sum::<Rayon>(&values, SUM_CUTOFF)),
            expected
        );
        group.bench_function(BenchmarkId::new("veridian", len), |b| {
            b.iter(|| ours.install(|| tasks::sum::<Veridian>(black_box(&values), SUM_CUTOFF)))
        });
        group.bench_function(BenchmarkId::new("rayon", len), |b| {
            b.iter(|| theirs.install(|| tasks::sum::<Rayon>(black_box(&values), SUM_CUTOFF)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("fork_join_quicksort");
    for len in [1usize << 16, 1 << 20] {
        let mut rng = Rng::new(5);
        let input: Vec<u32> = (0..len).map(|_| rng.next_u64() as u32).collect();
        let mut sorted = input.clone();
        sorted.sort_unstable();
        let mut check = input.clone();
        ours.install(|| tasks::quicksort::<Veridian, _>(&mut check, SORT_CUTOFF));
        assert_eq!(check, sorted);
        check.copy_from_slice(&input);
        theirs.install(|| tasks::quicksort::<Rayon, _>(&mut check, SORT_CUTOFF));
        assert_eq!(check, sorted);
        let mut work = input.clone();
        group.bench_function(BenchmarkId::new("veridian", len), |b| {
            b.iter_custom(|iters| {
                sort_timed(iters, &input, &mut work, |w| {
                    ours.install(|| tasks::quicksort::<Veridian, _>(w, SORT_CUTOFF))
                })
            })
        });
        group.bench_function(BenchmarkId::new("rayon", len), |b| {
            b.iter_custom(|iters| {
                sort_timed(iters, &input, &mut work, |w| {
                    theirs.install(|| tasks::quicksort::<Rayon, _>(w, SORT_CUTOFF))
                })
            })
        });
    }
    group.finish();
}

/// `iters` sorts of `input`'s copy in `work`, timing only the sorts.
fn sort_timed(iters: u64, input: &[u32], work: &mut [u32], sort: impl Fn(&mut [u32])) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        work.copy_from_slice(input);
        let start = Instant::now();
        sort(black_box(&mut *work));
        total += start.elapsed();
    }
    total
}

criterion_group!(executor, benches);
criterion_main!(executor);
