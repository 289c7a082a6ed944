//! Criterion benchmarks: veridian-alloc's [`Heap`] against peer allocators.
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
//! - `alloc_free_pair/<a>/<size>`: one allocation and one free of `size` bytes (align 8).
//! - `batch_then_free/<a>/{lifo,random}`: 1000 blocks of a fixed seeded mix of 16..=512 bytes,
//!   then all freed in LIFO order or in a fixed random permutation.
//! - `cross_thread/<a>/2`: a producer thread allocates [`CROSS_BLOCKS`] blocks per iteration
//!   (mixed 16..=512 B) and hands each over an SPSC ring to a consumer thread that frees it.
//! - `larson/<a>/2`: two threads, each with [`LARSON_SLOTS`] slots, repeatedly free a random
//!   slot and allocate a random size (16..=1024 B) into it.
//!
//! The threaded groups use `iter_custom`: the two threads are spawned once per *sample* (not
//! per iteration), meet at a barrier, and the clock runs from the barrier to the last free, so
//! thread creation and exit are not measured. In `larson` the slots are filled by the main
//! thread before the workers start (untimed), so the workers' first frees are frees from
//! another thread, as in the original larson where threads inherit their predecessors' blocks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main,
};
use crossbeam_utils::CachePadded;
use veridian_alloc::Heap;
use veridian_alloc::hosted::{MmapPages, ThreadSlots};

static VERIDIAN: Heap<MmapPages, ThreadSlots> = Heap::new(MmapPages, ThreadSlots);
static SYSTEM: System = System;
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type Talc = talc::TalcLock<spinning_top::RawSpinlock, talc::source::Claim>;
type LinkedList = linked_list_allocator::LockedHeap;
type BuddySystem = buddy_system_allocator::LockedHeap<33>;

/// Size of each arena handed to the arena-based peers.
const ARENA_BYTES: usize = 512 << 20;

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

/// A fresh, untouched anonymous mapping of [`ARENA_BYTES`] (leaked).
fn arena() -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing has no
    // preconditions; the result is checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ARENA_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "mmap of the arena failed");
    p.cast()
}

fn talc() -> &'static Talc {
    static T: OnceLock<&'static Talc> = OnceLock::new();
    T.get_or_init(|| {
        // SAFETY: the arena is a fresh mapping of ARENA_BYTES that nothing else uses, leaked for
        // the life of the process, as `Talc::claim` requires.
        let source = unsafe { talc::source::Claim::new(arena(), ARENA_BYTES) };
        Box::leak(Box::new(Talc::new(source)))
    })
}

fn linked_list() -> &'static LinkedList {
    static L: OnceLock<&'static LinkedList> = OnceLock::new();
    L.get_or_init(|| {
        let heap: &'static LinkedList = Box::leak(Box::new(LinkedList::empty()));
        // SAFETY: the arena is a fresh, leaked mapping used by nothing else; init runs once.
        unsafe { heap.lock().init(arena(), ARENA_BYTES) };
        heap
    })
}

fn buddy_system() -> &'static BuddySystem {
    static B: OnceLock<&'static BuddySystem> = OnceLock::new();
    B.get_or_init(|| {
        let heap: &'static BuddySystem = Box::leak(Box::new(BuddySystem::new()));
        // SAFETY: the arena is a fresh, leaked mapping used by nothing else; init runs once.
        unsafe { heap.lock().init(arena() as usize, ARENA_BYTES) };
        heap
    })
}

/// Runs `$f(group, name, allocator)` for every allocator, in the same order everywhere.
macro_rules! each_allocator {
    ($f:ident, $group:expr) => {{
        $f($group, "veridian", &VERIDIAN);
        $f($group, "system", &SYSTEM);
        $f($group, "mimalloc", &MIMALLOC);
        $f($group, "jemalloc", &JEMALLOC);
        $f($group, "talc", talc());
        $f($group, "linked_list", linked_list());
        $f($group, "buddy_system", buddy_system());
    }};
}

// ---------------------------------------------------------------------------------------------
// alloc_free_pair

fn pair_one<A: GlobalAlloc + Sync>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &'static str,
    a: &'static A,
) {
    for size in [16usize, 64, 256, 1024, 4096] {
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

/// One sample of `cross_thread`: `blocks` blocks from a producer to a consumer.
fn cross_thread_run<A: GlobalAlloc + Sync>(
    name: &'static str,
    a: &'static A,
    blocks: u64,
) -> Duration {
    let ring = Arc::new(Ring::new());
    let barrier = Arc::new(Barrier::new(2));
    let producer = {
        let (ring, barrier) = (Arc::clone(&ring), Arc::clone(&barrier));
        thread::spawn(move || {
            // Claim the allocator's per-thread state before the clock starts.
            let warm = alloc_touch(a, name, 16, 0);
            // SAFETY: just allocated with this layout.
            unsafe { a.dealloc(warm, layout(16)) };
            barrier.wait();
            let start = Instant::now();
            let mut cached_head = 0;
            for i in 0..blocks {
                let size = CROSS_SIZES[i as usize % CROSS_SIZES.len()];
                let p = alloc_touch(a, name, size, i as u8);
                ring.push(&mut cached_head, (p as usize, size));
            }
            start
        })
    };
    let consumer = thread::spawn(move || {
        let warm = alloc_touch(a, name, 16, 0);
        // SAFETY: just allocated with this layout.
        unsafe { a.dealloc(warm, layout(16)) };
        barrier.wait();
        let mut cached_tail = 0;
        for _ in 0..blocks {
            let (p, size) = ring.pop(&mut cached_tail);
            // SAFETY: the producer allocated `p` with this layout and handed it over exactly
            // once; nobody else frees it.
            unsafe { a.dealloc(black_box(p as *mut u8), layout(size)) };
        }
        Instant::now()
    });
    let start = producer.join().expect("producer panicked");
    let end = consumer.join().expect("consumer panicked");
    end.duration_since(start)
}

fn cross_one<A: GlobalAlloc + Sync>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &'static str,
    a: &'static A,
) {
    g.bench_function(BenchmarkId::new(name, 2), |b| {
        b.iter_custom(|iters| cross_thread_run(name, a, iters * CROSS_BLOCKS));
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

/// One sample of `larson`: two threads, `ops` free+allocate operations each.
fn larson_run<A: GlobalAlloc + Sync>(name: &'static str, a: &'static A, ops: u64) -> Duration {
    const THREADS: usize = 2;
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let mut rng = Rng(0x5851_F42D_4C95_7F2D ^ (t as u64 + 1));
            // Filled by the main thread: the workers' first frees are remote frees.
            let mut slots: Vec<(usize, usize)> = (0..LARSON_SLOTS)
                .map(|i| {
                    let size = 16 + rng.below(1009) as usize;
                    (alloc_touch(a, name, size, i as u8) as usize, size)
                })
                .collect();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
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
            })
        })
        .collect();
    let mut first_start: Option<Instant> = None;
    let mut last_end: Option<Instant> = None;
    for w in workers {
        let (start, end, slots) = w.join().expect("larson worker panicked");
        first_start = Some(first_start.map_or(start, |s| s.min(start)));
        last_end = Some(last_end.map_or(end, |e| e.max(end)));
        for (p, size) in slots {
            // SAFETY: live blocks allocated with this layout, freed once (untimed).
            unsafe { a.dealloc(p as *mut u8, layout(size)) };
        }
    }
    last_end
        .expect("workers ran")
        .duration_since(first_start.expect("workers ran"))
}

fn larson_one<A: GlobalAlloc + Sync>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &'static str,
    a: &'static A,
) {
    g.bench_function(BenchmarkId::new(name, 2), |b| {
        b.iter_custom(|iters| larson_run(name, a, iters * LARSON_OPS));
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
    targets = alloc_free_pair, batch_then_free, cross_thread, larson
}
criterion_main!(benches);
