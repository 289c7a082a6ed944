//! Criterion benchmarks: veridian-alloc's [`Heap`] against peer allocators.
//!
//! `veridian` is `Heap<MmapPages, ThreadSlots>` (remote frees kept by the freeing slot, as in
//! the kernel); `veridian_owner` is the same with remote frees returned to their owner slot
//! (`Heap`'s `OWNER_RETURN` parameter `true`, as the `benches/` programs use).
//!
//! Every allocator is called through `GlobalAlloc` on a static or leaked instance (none of them
//! is this process's `#[global_allocator]`; the harness itself allocates from the system
//! allocator), through the same generic code, so the comparison is of the allocators alone.
//! Peers: `system` (glibc), `mimalloc`, `jemalloc` (tikv-jemallocator), and three allocators
//! over a 512 MiB `MAP_NORESERVE` arena: `talc` (`TalcLock` with `spinning_top`'s spin lock),
//! `linked_list` (`linked_list_allocator::LockedHeap`), `buddy_system`
//! (`buddy_system_allocator::LockedHeap<33>`).
//!
//! Groups (ids are `<group>/<allocator>/<parameter>`):
//! - `alloc_free_pair/<a>/<size>`: one allocation and one free of `size` bytes (align 8), for
//!   sizes 8 B to 16 KiB (16 KiB is above our slab classes: veridian-alloc's buddy path).
//! - `realloc_growth/<a>/<final>`: a block of 16 B grown by `realloc` to twice its size, again
//!   and again, until it is `final` bytes (4 KiB: 8 reallocs; 1 MiB: 16), the last byte written
//!   after each step as a growing `Vec` would, then freed. Each allocator's own
//!   `GlobalAlloc::realloc` (in place where it can; the trait's default alloc+copy+free where it
//!   has none).
//! - `batch_then_free/<a>/{lifo,random}`: 1000 blocks of a fixed seeded mix of 16..=512 bytes,
//!   then all freed in LIFO order or in a fixed random permutation.
//! - `cross_thread/<a>/2`: a producer thread allocates [`CROSS_BLOCKS`] blocks per iteration
//!   (mixed 16..=512 B) and hands each over an SPSC ring to a consumer thread that frees it.
//! - `larson/<a>/2`: two threads, each with [`LARSON_SLOTS`] slots, repeatedly free a random
//!   slot and allocate a random size (16..=1024 B) into it.
//!
//! The threaded groups use `iter_custom` on two *persistent* worker threads ([`Workers`]): each
//! allocator gets its own pair of threads, started before its first sample (warm-up included)
//! and kept until its last, so every allocator keeps its per-thread state (our `ThreadSlots`
//! slot and magazines, mimalloc's and jemalloc's thread caches, glibc's tcache and arena)
//! warm across samples alike. (Spawning the threads per sample, as before, favoured us: our
//! per-CPU caches outlive a thread in its slot, while mimalloc and jemalloc hand a thread's
//! caches back at thread exit.) In each sample the two threads meet at a barrier and the clock
//! runs from the barrier to the last free. In `larson` the slots are filled by the benchmark
//! thread before the workers start (untimed), so the workers' first frees are frees from
//! another thread, as in the original larson where threads inherit their predecessors' blocks.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main,
};
use crossbeam_utils::CachePadded;

#[path = "support/peers.rs"]
mod peers;
use peers::{
    JEMALLOC, MIMALLOC, SYSTEM, VERIDIAN, VERIDIAN_OWNER, buddy_system, each_allocator,
    linked_list, talc,
};

/// Blocks in one `batch_then_free` iteration.
const BATCH: usize = 1000;
/// Blocks handed from producer to consumer in one `cross_thread` iteration.
const CROSS_BLOCKS: u64 = 10_000;
/// Entries of the SPSC ring between producer and consumer (power of two).
const RING_CAPACITY: usize = 256;
/// Slots of each `larson` thread.
const LARSON_SLOTS: usize = 1000;
/// Free+allocate operations of each `larson` thread in one iteration.
const LARSON_OPS: u64 = 1000;

/// xorshift64* step, usable in `const` context.
const fn next(state: u64) -> u64 {
    let mut x = state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x
}

const fn output(state: u64) -> u64 {
    state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32
}

/// A fixed seeded sequence of `N` sizes in `min..=max`.
const fn sizes<const N: usize>(seed: u64, min: usize, max: usize) -> [usize; N] {
    let mut out = [0; N];
    let mut s = seed;
    let mut i = 0;
    while i < N {
        s = next(s);
        out[i] = min + (output(s) as usize) % (max - min + 1);
        i += 1;
    }
    out
}

/// A fixed seeded permutation of `0..N` (Fisher-Yates).
const fn permutation<const N: usize>(seed: u64) -> [usize; N] {
    let mut out = [0; N];
    let mut i = 0;
    while i < N {
        out[i] = i;
        i += 1;
    }
    let mut s = seed;
    let mut i = N;
    while i > 1 {
        s = next(s);
        let j = (output(s) as usize) % i;
        i -= 1;
        let t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
    out
}

static BATCH_SIZES: [usize; BATCH] = sizes(0x9E37_79B9_7F4A_7C15, 16, 512);
static BATCH_ORDER: [usize; BATCH] = permutation(0xD1B5_4A32_D192_ED03);
static CROSS_SIZES: [usize; 1024] = sizes(0x2545_F491_4F6C_DD1D, 16, 512);

/// Small runtime generator for the threaded workloads (same code for every allocator).
struct Rng(u64);

impl Rng {
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        self.0 = next(self.0);
        output(self.0) % n
    }
}

#[inline]
fn layout(size: usize) -> Layout {
    // 8 is a power of two and no size used here comes near isize::MAX.
    Layout::from_size_align(size, 8).expect("valid layout")
}

#[cold]
#[inline(never)]
fn out_of_memory(name: &str, size: usize) -> ! {
    panic!("{name}: allocation of {size} bytes failed")
}

/// Allocates `size` bytes from `a`, panicking on failure, and writes the first byte.
#[inline]
fn alloc_touch<A: GlobalAlloc>(a: &A, name: &str, size: usize, tag: u8) -> *mut u8 {
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { a.alloc(layout(size)) };
    if p.is_null() {
        out_of_memory(name, size);
    }
    // SAFETY: `p` points to at least `size >= 1` writable bytes we own.
    unsafe { p.write(tag) };
    p
}

// ---------------------------------------------------------------------------------------------
// alloc_free_pair

fn pair_one<A: GlobalAlloc + Sync>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &'static str,
    a: &'static A,
) {
    for size in [8usize, 16, 64, 256, 1024, 4096, 16 << 10] {
        let l = layout(size);
        g.bench_with_input(BenchmarkId::new(name, size), &l, |b, &l| {
            b.iter(|| {
                // SAFETY: non-zero size; the block is freed right away with the same layout.
                unsafe {
                    let p = a.alloc(black_box(l));
                    if p.is_null() {
                        out_of_memory(name, l.size());
                    }
                    a.dealloc(black_box(p), l);
                }
            });
        });
    }
}

fn alloc_free_pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_free_pair");
    g.throughput(Throughput::Elements(1));
    each_allocator!(pair_one, &mut g);
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// batch_then_free

fn batch_one<A: GlobalAlloc + Sync>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &'static str,
    a: &'static A,
) {
    let mut blocks: Vec<*mut u8> = vec![std::ptr::null_mut(); BATCH];
    for order in ["lifo", "random"] {
        g.bench_function(BenchmarkId::new(name, order), |b| {
            b.iter(|| {
                for (i, slot) in blocks.iter_mut().enumerate() {
                    *slot = alloc_touch(a, name, BATCH_SIZES[i], i as u8);
                }
                black_box(&mut blocks);
                if order == "lifo" {
                    for i in (0..BATCH).rev() {
                        // SAFETY: allocated above with this layout, freed once.
                        unsafe { a.dealloc(blocks[i], layout(BATCH_SIZES[i])) };
                    }
                } else {
                    for &i in &BATCH_ORDER {
                        // SAFETY: allocated above with this layout; a permutation frees each once.
                        unsafe { a.dealloc(blocks[i], layout(BATCH_SIZES[i])) };
                    }
                }
            });
        });
    }
}

fn batch_then_free(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch_then_free");
    g.throughput(Throughput::Elements(BATCH as u64));
    each_allocator!(batch_one, &mut g);
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// realloc_growth

/// Size a `realloc_growth` block starts at.
const GROWTH_START: usize = 16;

fn growth_one<A: GlobalAlloc + Sync>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &'static str,
    a: &'static A,
) {
    for last in [4usize << 10, 1 << 20] {
        g.bench_with_input(BenchmarkId::new(name, last), &last, |b, &last| {
            b.iter(|| {
                let mut size = GROWTH_START;
                let mut p = alloc_touch(a, name, size, 1);
                while size < last {
                    let new_size = size * 2;
                    // SAFETY: `p` is live, allocated with `layout(size)`; the new size is
                    // non-zero and far below isize::MAX.
                    p = unsafe { a.realloc(black_box(p), layout(size), new_size) };
                    if p.is_null() {
                        out_of_memory(name, new_size);
                    }
                    // SAFETY: `p` points to `new_size` writable bytes we own.
                    unsafe { p.add(new_size - 1).write(2) };
                    size = new_size;
                }
                // SAFETY: live block of `layout(size)`, freed once.
                unsafe { a.dealloc(black_box(p), layout(size)) };
            });
        });
    }
}

fn realloc_growth(c: &mut Criterion) {
    let mut g = c.benchmark_group("realloc_growth");
    each_allocator!(growth_one, &mut g);
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Persistent worker threads

/// A job for one [`Workers`] thread.
type Job = Box<dyn FnOnce() + Send>;

/// Two threads that run one job each per sample and live as long as this value: one pair per
/// allocator and benchmark, so per-thread allocator state stays as warm for every allocator.
struct Workers {
    jobs: Vec<mpsc::Sender<Job>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Workers {
    fn new() -> Self {
        let (jobs, threads) = (0..2)
            .map(|_| {
                let (tx, rx) = mpsc::channel::<Job>();
                let t = thread::spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                });
                (tx, t)
            })
            .unzip();
        Self { jobs, threads }
    }

    /// Runs `f0` on the first thread and `f1` on the second, and waits for both results.
    fn run<R0, R1>(
        &self,
        f0: impl FnOnce() -> R0 + Send + 'static,
        f1: impl FnOnce() -> R1 + Send + 'static,
    ) -> (R0, R1)
    where
        R0: Send + 'static,
        R1: Send + 'static,
    {
        let (tx0, rx0) = mpsc::channel();
        let (tx1, rx1) = mpsc::channel();
        self.jobs[0]
            .send(Box::new(move || {
                let _ = tx0.send(f0());
            }))
            .expect("worker thread alive");
        self.jobs[1]
            .send(Box::new(move || {
                let _ = tx1.send(f1());
            }))
            .expect("worker thread alive");
        (
            rx0.recv().expect("worker 0 panicked"),
            rx1.recv().expect("worker 1 panicked"),
        )
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.jobs.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cross_thread

/// Bounded single-producer single-consumer ring of `(address, size)` pairs.
struct Ring {
    slots: Box<[UnsafeCell<(usize, usize)>]>,
    /// Next index the consumer reads.
    head: CachePadded<AtomicUsize>,
    /// Next index the producer writes.
    tail: CachePadded<AtomicUsize>,
}

// SAFETY: a slot is written only by the single producer while it is outside `head..tail`, and
// read only by the single consumer while it is inside; the Release store of `tail` (`head`)
// after the write (read) and the Acquire load on the other side order the accesses.
unsafe impl Sync for Ring {}

#[inline]
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        thread::yield_now();
    }
}

impl Ring {
    fn new() -> Self {
        Self {
            slots: (0..RING_CAPACITY)
                .map(|_| UnsafeCell::new((0, 0)))
                .collect(),
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// Producer side; `cached_head` is the producer's last view of `head`.
    #[inline]
    fn push(&self, cached_head: &mut usize, value: (usize, usize)) {
        let tail = self.tail.load(Ordering::Relaxed);
        let mut spins = 0;
        while tail.wrapping_sub(*cached_head) == RING_CAPACITY {
            *cached_head = self.head.load(Ordering::Acquire);
            if tail.wrapping_sub(*cached_head) == RING_CAPACITY {
                backoff(&mut spins);
            }
        }
        // SAFETY: only the producer calls push; the slot is outside head..tail (not full), so
        // the consumer does not touch it until the Release store below publishes it.
        unsafe { *self.slots[tail % RING_CAPACITY].get() = value };
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
    }

    /// Consumer side; `cached_tail` is the consumer's last view of `tail`.
    #[inline]
    fn pop(&self, cached_tail: &mut usize) -> (usize, usize) {
        let head = self.head.load(Ordering::Relaxed);
        let mut spins = 0;
        while *cached_tail == head {
            *cached_tail = self.tail.load(Ordering::Acquire);
            if *cached_tail == head {
                backoff(&mut spins);
            }
        }
        // SAFETY: only the consumer calls pop; the slot is inside head..tail, published by the
        // producer's Release store that our Acquire load observed.
        let value = unsafe { *self.slots[head % RING_CAPACITY].get() };
        self.head.store(head.wrapping_add(1), Ordering::Release);
        value
    }
}

/// One sample of `cross_thread` on `workers`: `blocks` blocks from a producer to a consumer.
fn cross_thread_run<A: GlobalAlloc + Sync>(
    workers: &Workers,
    name: &'static str,
    a: &'static A,
    blocks: u64,
) -> Duration {
    let ring = Arc::new(Ring::new());
    let barrier = Arc::new(Barrier::new(2));
    let producer = {
        let (ring, barrier) = (Arc::clone(&ring), Arc::clone(&barrier));
        move || {
            barrier.wait();
            let start = Instant::now();
            let mut cached_head = 0;
            for i in 0..blocks {
                let size = CROSS_SIZES[i as usize % CROSS_SIZES.len()];
                let p = alloc_touch(a, name, size, i as u8);
                ring.push(&mut cached_head, (p as usize, size));
            }
            start
        }
    };
    let consumer = move || {
        barrier.wait();
        let mut cached_tail = 0;
        for _ in 0..blocks {
            let (p, size) = ring.pop(&mut cached_tail);
            // SAFETY: the producer allocated `p` with this layout and handed it over exactly
            // once; nobody else frees it.
            unsafe { a.dealloc(black_box(p as *mut u8), layout(size)) };
        }
        Instant::now()
    };
    let (start, end) = workers.run(producer, consumer);
    end.duration_since(start)
}

fn cross_one<A: GlobalAlloc + Sync>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &'static str,
    a: &'static A,
) {
    let mut workers = None;
    g.bench_function(BenchmarkId::new(name, 2), |b| {
        // Started on the first call (warm-up), only if the filter kept this benchmark.
        let workers = workers.get_or_insert_with(Workers::new);
        b.iter_custom(|iters| cross_thread_run(workers, name, a, iters * CROSS_BLOCKS));
    });
}

fn cross_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_thread");
    g.throughput(Throughput::Elements(CROSS_BLOCKS));
    g.sampling_mode(SamplingMode::Flat);
    each_allocator!(cross_one, &mut g);
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// larson

/// One sample of `larson` on `workers`: two threads, `ops` free+allocate operations each.
fn larson_run<A: GlobalAlloc + Sync>(
    workers: &Workers,
    name: &'static str,
    a: &'static A,
    ops: u64,
) -> Duration {
    let barrier = Arc::new(Barrier::new(2));
    let worker = |t: u64| {
        let mut rng = Rng(0x5851_F42D_4C95_7F2D ^ (t + 1));
        // Filled by the benchmark thread: the workers' first frees are remote frees.
        let mut slots: Vec<(usize, usize)> = (0..LARSON_SLOTS)
            .map(|i| {
                let size = 16 + rng.below(1009) as usize;
                (alloc_touch(a, name, size, i as u8) as usize, size)
            })
            .collect();
        let barrier = Arc::clone(&barrier);
        move || {
            barrier.wait();
            let start = Instant::now();
            for i in 0..ops {
                let slot = &mut slots[rng.below(LARSON_SLOTS as u64) as usize];
                // SAFETY: every slot holds a live block allocated with this layout.
                unsafe { a.dealloc(slot.0 as *mut u8, layout(slot.1)) };
                let size = 16 + rng.below(1009) as usize;
                *slot = (alloc_touch(a, name, size, i as u8) as usize, size);
            }
            (start, Instant::now(), slots)
        }
    };
    let (w0, w1) = (worker(0), worker(1));
    let ((s0, e0, slots0), (s1, e1, slots1)) = workers.run(w0, w1);
    for (p, size) in slots0.into_iter().chain(slots1) {
        // SAFETY: live blocks allocated with this layout, freed once (untimed).
        unsafe { a.dealloc(p as *mut u8, layout(size)) };
    }
    e0.max(e1).duration_since(s0.min(s1))
}

fn larson_one<A: GlobalAlloc + Sync>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &'static str,
    a: &'static A,
) {
    let mut workers = None;
    g.bench_function(BenchmarkId::new(name, 2), |b| {
        // Started on the first call (warm-up), only if the filter kept this benchmark.
        let workers = workers.get_or_insert_with(Workers::new);
        b.iter_custom(|iters| larson_run(workers, name, a, iters * LARSON_OPS));
    });
}

fn larson(c: &mut Criterion) {
    let mut g = c.benchmark_group("larson");
    g.throughput(Throughput::Elements(2 * LARSON_OPS));
    g.sampling_mode(SamplingMode::Flat);
    each_allocator!(larson_one, &mut g);
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
}

criterion_group! {
    name = benches;
    config = config();
    targets = alloc_free_pair, batch_then_free, realloc_growth, cross_thread, larson
}
criterion_main!(benches);
