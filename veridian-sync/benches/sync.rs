//! Criterion benchmarks: veridian-sync's structures and locks against their usual peers, side by
//! side in one run.
//!
//! Ids are `<group>/<implementation>/<parameter>`, the parameter being the number of threads
//! (for `seqlock_read`, the number of writer threads):
//!
//! - `stack_push_pop/<impl>/{1,2}`: one push and one pop per iteration and thread, every side
//!   paying its per-operation synchronisation for each of the two operations:
//!   - `veridian`: the Treiber stack through a `StackHandle` (`push`/`pop`), i.e. one epoch pin
//!     (and unpin) per operation, two per pair, with nodes recycled through the epoch in batches;
//!   - `veridian_no_recycling`: `push_with`/`pop_with`, the same pins, but a `Box` per push and
//!     one epoch deferral (then a free) per pop;
//!   - `crossbeam_segqueue`: `SegQueue::push` then `pop` (lock-free, no pinning; it is a FIFO,
//!     kept as the lock-free peer);
//!   - `std_mutex_vec`: a LIFO `Mutex<Vec<u64>>`, locked once for the push and once for the pop.
//!
//!   And the batched granularity, on the two sides that offer one (SegQueue does not):
//!   `veridian_pin_per_pair` pins once for the pair (one guard covers push and pop),
//!   `std_mutex_vec_lock_per_pair` locks once for the pair. Compare `veridian` with the first
//!   three and `veridian_pin_per_pair` with `std_mutex_vec_lock_per_pair`.
//! - `mpmc_queue/{veridian,crossbeam_arrayqueue}/{1,2}`: one push and one pop per iteration and
//!   thread on a bounded queue of [`QUEUE_CAPACITY`] slots.
//! - `spsc_ring/{veridian,rtrb,crossbeam_arrayqueue}/1`: a producer thread pushes and a consumer
//!   thread pops single values (no batch operations) through a ring of [`QUEUE_CAPACITY`] slots;
//!   one iteration is one value handed over. `rtrb` is the SPSC peer (its `Producer::push` and
//!   `Consumer::pop`, as shipped); crossbeam's MPMC `ArrayQueue` is used as an SPSC queue.
//! - `seqlock_read/{veridian,seqlock_crate,std_rwlock}/{0,1}`: one read of a 64-byte `Copy`
//!   struct; with `/1` a writer thread on the other core writes the struct once every
//!   [`WRITE_PERIOD`] (10 µs, paced by spinning on `Instant`; the achieved period is printed
//!   after each side) for as long as the reads run.
//! - `counter_increment/{veridian,atomic_u64}/{1,2}`: one increment per iteration and thread, of
//!   a `ShardedCounter<ThreadCpuIndex, 64>` or of one shared (cache-padded) `AtomicU64`.
//! - `counter_read_mostly/{veridian,atomic_u64}/{1,2}` and `counter_mixed/...`: per thread,
//!   operation `i` is an increment when `i % period == 0` and a read otherwise (period
//!   [`READ_MOSTLY_PERIOD`] = 64: 1 update in 64; period [`MIXED_PERIOD`] = 2: half and half).
//!   The read is `ShardedCounter::get` (a sum over all [`COUNTER_SLOTS`] slots) against
//!   `AtomicU64::load`, the update `inc` against `fetch_add(1, Relaxed)`.
//! - `lock_uncontended/{ticket,mcs,spin_mutex,parking_lot_mutex}/1`: lock, increment a `u64`,
//!   unlock.
//! - `lock_contended/{ticket,mcs,spin_mutex,parking_lot_mutex,std_mutex}/2`: two threads each
//!   looping lock, increment, unlock on one mutex.
//!
//! Single-threaded cases use `Bencher::iter` on the benchmark thread. Multi-threaded cases use
//! `iter_custom`: the threads are spawned once per *sample* (scoped threads), do their set-up
//! (registering with the epoch collector, claiming a CPU slot), meet at a spinning start gate,
//! and each runs the sample's whole iteration count; the time is from the first thread leaving
//! the gate to the last one finishing, so thread creation and exit are not measured. Every
//! thread does `iters` operations, so the reported time per iteration is the time in which
//! *each* thread completed one operation, and the throughput (`Throughput::Elements`, set to
//! the number of operating threads) is the total rate. Ratios within a group compare like
//! with like.
//!
//! The shared objects sit in `CachePadded` so that no benchmark's hot line is shared with
//! another object by accident.

use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main,
};
use veridian_sync::CachePadded;
use veridian_sync::CpuIndex;
use veridian_sync::counter::ShardedCounter;
use veridian_sync::hosted::ThreadCpuIndex;
use veridian_sync::lock::{McsMutex, TicketMutex};
use veridian_sync::mpmc::ArrayQueue as VeridianArrayQueue;
use veridian_sync::seqlock::{Plain, SeqLock as VeridianSeqLock};
use veridian_sync::spsc;
use veridian_sync::stack::TreiberStack;

/// Slots of every bounded queue and ring (MPMC and SPSC, ours and crossbeam's).
const QUEUE_CAPACITY: usize = 1024;

/// Slots of the sharded counter: more than the CPUs of this machine, as in a kernel built for
/// up to 64 CPUs. `ThreadCpuIndex` hands out indices `0..available_parallelism`.
const COUNTER_SLOTS: usize = 64;

// ---------------------------------------------------------------------------------------------
// Thread harness

/// A spinning start line: every thread arrives, then all leave together. Spinning rather than
/// `std::sync::Barrier` so that the threads start within nanoseconds of each other, not within
/// a futex wake-up of each other.
struct StartGate {
    arrived: AtomicUsize,
    threads: usize,
}

impl StartGate {
    /// Waits until all threads have arrived; returns the time at which this one left.
    fn wait(&self) -> Instant {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        while self.arrived.load(Ordering::Acquire) < self.threads {
            spin_loop();
        }
        Instant::now()
    }
}

/// Runs `body(thread_index, gate)` on `threads` scoped threads. Each body does its untimed
/// set-up, calls `gate.wait()` (whose result it returns) and does its timed work. Returns the
/// time from the first thread leaving the gate to the last thread finishing its body.
fn run_threads(threads: usize, body: impl Fn(usize, &StartGate) -> Instant + Sync) -> Duration {
    let gate = StartGate {
        arrived: AtomicUsize::new(0),
        threads,
    };
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (body, gate) = (&body, &gate);
                s.spawn(move || {
                    let start = body(t, gate);
                    (start, Instant::now())
                })
            })
            .collect();
        let spans: Vec<(Instant, Instant)> = handles
            .into_iter()
            .map(|h| h.join().expect("benchmark thread panicked"))
            .collect();
        let first = spans
            .iter()
            .map(|s| s.0)
            .min()
            .expect("at least one thread");
        let last = spans
            .iter()
            .map(|s| s.1)
            .max()
            .expect("at least one thread");
        last.duration_since(first)
    })
}

/// `threads` threads, each doing `setup()` untimed and then `op(&mut state, i)` for
/// `i in 0..iters`.
fn each_thread<S>(
    threads: usize,
    iters: u64,
    setup: impl Fn() -> S + Sync,
    op: impl Fn(&mut S, u64) + Sync,
) -> Duration {
    run_threads(threads, |_, gate| {
        let mut state = setup();
        let start = gate.wait();
        for i in 0..iters {
            op(&mut state, i);
        }
        start
    })
}

/// Benchmarks `op` (with per-thread state from `setup`) as `<name>/<threads>` in `g`: on the
/// benchmark thread for one thread, through [`each_thread`] otherwise.
fn bench_ops<S>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    threads: usize,
    setup: impl Fn() -> S + Sync,
    op: impl Fn(&mut S, u64) + Sync,
) {
    g.throughput(Throughput::Elements(threads as u64));
    g.bench_function(BenchmarkId::new(name, threads), |b| {
        if threads == 1 {
            let mut state = setup();
            let mut i = 0u64;
            b.iter(|| {
                op(&mut state, i);
                i = i.wrapping_add(1);
            });
        } else {
            b.iter_custom(|iters| each_thread(threads, iters, &setup, &op));
        }
    });
}

// ---------------------------------------------------------------------------------------------
// stack_push_pop

fn stack_push_pop(c: &mut Criterion) {
    let mut g = c.benchmark_group("stack_push_pop");
    g.sampling_mode(SamplingMode::Flat);
    for threads in [1, 2] {
        // One pin per operation (`StackHandle::push`/`pop` pin and unpin around each), as a
        // caller that does one operation at a time pays: two pins per pair, like the two lock
        // acquisitions of `std_mutex_vec`. The handle recycles nodes through the epoch.
        let stack = CachePadded::new(TreiberStack::<u64>::new());
        bench_ops(
            &mut g,
            "veridian",
            threads,
            || stack.handle(),
            |handle, i| {
                handle.push(i);
                black_box(handle.pop());
            },
        );

        // The same without recycling: `push_with`/`pop_with`, a `Box` per push and one epoch
        // deferral per pop.
        let stack = CachePadded::new(TreiberStack::<u64>::new());
        bench_ops(
            &mut g,
            "veridian_no_recycling",
            threads,
            || stack.register(),
            |handle, i| {
                stack.push_with(i, handle);
                black_box(stack.pop_with(handle));
            },
        );

        let segqueue = CachePadded::new(crossbeam_queue::SegQueue::<u64>::new());
        bench_ops(
            &mut g,
            "crossbeam_segqueue",
            threads,
            || (),
            |(), i| {
                segqueue.push(i);
                black_box(segqueue.pop());
            },
        );

        let vec = CachePadded::new(std::sync::Mutex::new(Vec::<u64>::with_capacity(64)));
        bench_ops(
            &mut g,
            "std_mutex_vec",
            threads,
            || (),
            |(), i| {
                vec.lock().expect("not poisoned").push(i);
                black_box(vec.lock().expect("not poisoned").pop());
            },
        );

        // The batched granularity, on both sides that have one: one pin covers the push and
        // the pop (ours), one lock acquisition covers both (the `Mutex<Vec>`).
        let stack = CachePadded::new(TreiberStack::<u64>::new());
        bench_ops(
            &mut g,
            "veridian_pin_per_pair",
            threads,
            || stack.register(),
            |handle, i| {
                let guard = handle.pin();
                stack.push(i, &guard);
                black_box(stack.pop(&guard));
            },
        );

        let vec = CachePadded::new(std::sync::Mutex::new(Vec::<u64>::with_capacity(64)));
        bench_ops(
            &mut g,
            "std_mutex_vec_lock_per_pair",
            threads,
            || (),
            |(), i| {
                let mut v = vec.lock().expect("not poisoned");
                v.push(i);
                black_box(v.pop());
            },
        );
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// mpmc_queue

fn mpmc_queue(c: &mut Criterion) {
    let mut g = c.benchmark_group("mpmc_queue");
    g.sampling_mode(SamplingMode::Flat);
    for threads in [1, 2] {
        let ours = VeridianArrayQueue::<u64>::new(QUEUE_CAPACITY);
        bench_ops(
            &mut g,
            "veridian",
            threads,
            || (),
            |(), i| {
                // At most one value per thread is in the queue: a push never finds it full.
                let _ = black_box(ours.push(i));
                black_box(ours.pop());
            },
        );

        let theirs = crossbeam_queue::ArrayQueue::<u64>::new(QUEUE_CAPACITY);
        bench_ops(
            &mut g,
            "crossbeam_arrayqueue",
            threads,
            || (),
            |(), i| {
                let _ = black_box(theirs.push(i));
                black_box(theirs.pop());
            },
        );
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// spsc_ring

/// Spin-loop hints a waiting SPSC side gives before it starts yielding its CPU.
const SPINS_BEFORE_YIELD: u32 = 1000;

/// One wait of a side that found the ring full (producer) or empty (consumer): spin, and after
/// [`SPINS_BEFORE_YIELD`] fruitless tries yield the CPU, so that if the other side shares this
/// CPU (another process took the second core) it can run instead of waiting for a time slice.
/// On an idle two-core machine the other side is running and the spin is what gets measured.
fn wait_a_little(spins: &mut u32) {
    if *spins < SPINS_BEFORE_YIELD {
        *spins += 1;
        spin_loop();
    } else {
        thread::yield_now();
    }
}

/// One sample of `spsc_ring`: `items` values from a producer thread to a consumer thread.
/// `push` gives the value back when the ring is full, `pop` returns `None` when it is empty;
/// both sides wait with [`wait_a_little`] until they can go on.
fn spsc_run<P: Send, C: Send>(
    items: u64,
    producer: P,
    consumer: C,
    push: impl Fn(&mut P, u64) -> Result<(), u64> + Sync,
    pop: impl Fn(&mut C) -> Option<u64> + Sync,
) -> Duration {
    let producer = std::sync::Mutex::new(Some(producer));
    let consumer = std::sync::Mutex::new(Some(consumer));
    run_threads(2, |t, gate| {
        if t == 0 {
            let mut tx = producer
                .lock()
                .expect("not poisoned")
                .take()
                .expect("one producer");
            let start = gate.wait();
            for i in 0..items {
                let mut value = i;
                let mut spins = 0;
                while let Err(back) = push(&mut tx, value) {
                    value = back;
                    wait_a_little(&mut spins);
                }
            }
            start
        } else {
            let mut rx = consumer
                .lock()
                .expect("not poisoned")
                .take()
                .expect("one consumer");
            let start = gate.wait();
            for _ in 0..items {
                let mut spins = 0;
                loop {
                    if let Some(value) = pop(&mut rx) {
                        black_box(value);
                        break;
                    }
                    wait_a_little(&mut spins);
                }
            }
            start
        }
    })
}

fn spsc_ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc_ring");
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("veridian", 1), |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = spsc::channel::<u64>(QUEUE_CAPACITY);
            spsc_run(iters, tx, rx, |tx, v| tx.push(v), |rx| rx.pop())
        });
    });
    g.bench_function(BenchmarkId::new("rtrb", 1), |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = rtrb::RingBuffer::<u64>::new(QUEUE_CAPACITY);
            spsc_run(
                iters,
                tx,
                rx,
                |tx, v| tx.push(v).map_err(|rtrb::PushError::Full(back)| back),
                |rx| rx.pop().ok(),
            )
        });
    });
    g.bench_function(BenchmarkId::new("crossbeam_arrayqueue", 1), |b| {
        b.iter_custom(|iters| {
            let queue = crossbeam_queue::ArrayQueue::<u64>::new(QUEUE_CAPACITY);
            spsc_run(iters, &queue, &queue, |q, v| q.push(v), |q| q.pop())
        });
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// seqlock_read

/// The data behind the seqlocks: 64 bytes, `Copy`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Payload {
    words: [u64; 8],
}

// SAFETY: a `repr(C)` struct whose only field is a `[u64; 8]`: 64 initialised bytes, no padding,
// no pointers.
unsafe impl Plain for Payload {}

/// The three seqlock-like peers behind one interface.
trait Snapshot: Sync {
    fn read(&self) -> Payload;
    fn write(&self, value: Payload);
}

impl Snapshot for VeridianSeqLock<Payload> {
    #[inline]
    fn read(&self) -> Payload {
        VeridianSeqLock::read(self)
    }
    #[inline]
    fn write(&self, value: Payload) {
        VeridianSeqLock::write(self, value);
    }
}

impl Snapshot for seqlock::SeqLock<Payload> {
    #[inline]
    fn read(&self) -> Payload {
        seqlock::SeqLock::read(self)
    }
    #[inline]
    fn write(&self, value: Payload) {
        *self.lock_write() = value;
    }
}

impl Snapshot for std::sync::RwLock<Payload> {
    #[inline]
    fn read(&self) -> Payload {
        *std::sync::RwLock::read(self).expect("not poisoned")
    }
    #[inline]
    fn write(&self, value: Payload) {
        *std::sync::RwLock::write(self).expect("not poisoned") = value;
    }
}

/// Time between two writes of the `seqlock_read/*/1` writer: one write every 10 µs (100 000
/// writes per second), the same for every side. A reader at ~10 ns per read thus overlaps a write
/// a few times per thousand reads, the read-mostly regime a seqlock is for.
const WRITE_PERIOD: Duration = Duration::from_micros(10);

/// Writes done and time spent by the `seqlock_read/*/1` writer of the current implementation,
/// summed over samples: printed after the group as the rate achieved (a check that the writer
/// kept to [`WRITE_PERIOD`] on this machine).
static WRITES: AtomicU64 = AtomicU64::new(0);
static WRITER_NANOS: AtomicU64 = AtomicU64::new(0);

/// One sample of `seqlock_read/*/1`: `reads` reads on this thread while a writer thread writes
/// once every [`WRITE_PERIOD`], paced by spinning on `Instant::now()` (no sleep: a futex wake-up
/// would make the rate depend on the scheduler). A writer that falls behind does not catch up
/// with a burst: its next deadline is one period from the late write. The clock runs only over
/// the reads, which start once the writer has written.
fn read_with_writer<L: Snapshot>(lock: &L, reads: u64) -> Duration {
    let stop = AtomicBool::new(false);
    let writing = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            let began = Instant::now();
            let mut n = 0u64;
            let mut next = began;
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now < next {
                    spin_loop();
                    continue;
                }
                lock.write(Payload { words: [n; 8] });
                writing.store(true, Ordering::Relaxed);
                n = n.wrapping_add(1);
                next = now + WRITE_PERIOD;
            }
            WRITES.fetch_add(n, Ordering::Relaxed);
            let nanos = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
            WRITER_NANOS.fetch_add(nanos, Ordering::Relaxed);
        });
        while !writing.load(Ordering::Relaxed) {
            spin_loop();
        }
        let start = Instant::now();
        for _ in 0..reads {
            black_box(lock.read());
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        elapsed
    })
}

/// Prints (and resets) the writer's achieved period for `name`, if it wrote at all (a filter may
/// have skipped the `/1` case).
fn report_writer_rate(name: &str) {
    let writes = WRITES.swap(0, Ordering::Relaxed);
    let nanos = WRITER_NANOS.swap(0, Ordering::Relaxed);
    if writes > 0 {
        eprintln!(
            "seqlock_read/{name}/1: writer made {writes} writes, one per {:.2} µs (target {} µs)",
            nanos as f64 / writes as f64 / 1000.0,
            WRITE_PERIOD.as_micros()
        );
    }
}

fn seqlock_one<L: Snapshot>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, lock: &L) {
    g.bench_function(BenchmarkId::new(name, 0), |b| {
        b.iter(|| black_box(lock.read()))
    });
    g.bench_function(BenchmarkId::new(name, 1), |b| {
        b.iter_custom(|iters| read_with_writer(lock, iters));
    });
    report_writer_rate(name);
}

fn seqlock_read(c: &mut Criterion) {
    let mut g = c.benchmark_group("seqlock_read");
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(1));
    seqlock_one(
        &mut g,
        "veridian",
        &*CachePadded::new(VeridianSeqLock::new(Payload::default())),
    );
    seqlock_one(
        &mut g,
        "seqlock_crate",
        &*CachePadded::new(seqlock::SeqLock::new(Payload::default())),
    );
    seqlock_one(
        &mut g,
        "std_rwlock",
        &*CachePadded::new(std::sync::RwLock::new(Payload::default())),
    );
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// counter_increment

/// `counter_read_mostly`: one update in [`READ_MOSTLY_PERIOD`] operations, the rest reads.
const READ_MOSTLY_PERIOD: u64 = 64;
/// `counter_mixed`: one update in [`MIXED_PERIOD`] operations (half updates, half reads).
const MIXED_PERIOD: u64 = 2;

/// A group in which operation `i` of each thread is an increment when `i % PERIOD == 0` and a
/// read otherwise (the same branch on every side; `PERIOD` is a constant, so with `PERIOD` 1
/// the branch folds away and every operation is an increment): `ShardedCounter::inc` against
/// `AtomicU64::fetch_add(1, Relaxed)`, `ShardedCounter::get` (sums all [`COUNTER_SLOTS`] slots)
/// against one `AtomicU64::load`.
fn counter_group<const PERIOD: u64>(c: &mut Criterion, group: &str) {
    let mut g = c.benchmark_group(group);
    g.sampling_mode(SamplingMode::Flat);
    for threads in [1, 2] {
        let sharded = ShardedCounter::<ThreadCpuIndex, COUNTER_SLOTS>::new(ThreadCpuIndex::new());
        bench_ops(
            &mut g,
            "veridian",
            threads,
            // Claims this thread's slot untimed (the first `current_cpu` call assigns it).
            || black_box(sharded.cpu_index().current_cpu()),
            |_, i| {
                if i % PERIOD == 0 {
                    sharded.inc();
                } else {
                    black_box(sharded.get());
                }
            },
        );

        let shared = CachePadded::new(AtomicU64::new(0));
        bench_ops(
            &mut g,
            "atomic_u64",
            threads,
            || (),
            |(), i| {
                if i % PERIOD == 0 {
                    shared.fetch_add(1, Ordering::Relaxed);
                } else {
                    black_box(shared.load(Ordering::Relaxed));
                }
            },
        );
    }
    g.finish();
}

fn counter_increment(c: &mut Criterion) {
    counter_group::<1>(c, "counter_increment");
}

fn counter_read_mostly(c: &mut Criterion) {
    counter_group::<READ_MOSTLY_PERIOD>(c, "counter_read_mostly");
}

fn counter_mixed(c: &mut Criterion) {
    counter_group::<MIXED_PERIOD>(c, "counter_mixed");
}

// ---------------------------------------------------------------------------------------------
// lock_uncontended, lock_contended

/// A mutex over a `u64`, behind one interface.
trait LockedCounter: Sync {
    /// Locks, increments, unlocks.
    fn bump(&self);
}

impl<R: lock_api::RawMutex + Sync> LockedCounter for lock_api::Mutex<R, u64> {
    #[inline]
    fn bump(&self) {
        *self.lock() += 1;
    }
}

impl LockedCounter for spin::Mutex<u64> {
    #[inline]
    fn bump(&self) {
        *self.lock() += 1;
    }
}

impl LockedCounter for std::sync::Mutex<u64> {
    #[inline]
    fn bump(&self) {
        *self.lock().expect("not poisoned") += 1;
    }
}

fn lock_one(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    threads: usize,
    lock: &impl LockedCounter,
) {
    bench_ops(g, name, threads, || (), |(), _| lock.bump());
}

fn lock_uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("lock_uncontended");
    lock_one(
        &mut g,
        "ticket",
        1,
        &*CachePadded::new(TicketMutex::new(0u64)),
    );
    lock_one(&mut g, "mcs", 1, &*CachePadded::new(McsMutex::new(0u64)));
    lock_one(
        &mut g,
        "spin_mutex",
        1,
        &*CachePadded::new(spin::Mutex::new(0u64)),
    );
    lock_one(
        &mut g,
        "parking_lot_mutex",
        1,
        &*CachePadded::new(parking_lot::Mutex::new(0u64)),
    );
    g.finish();
}

fn lock_contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("lock_contended");
    g.sampling_mode(SamplingMode::Flat);
    lock_one(
        &mut g,
        "ticket",
        2,
        &*CachePadded::new(TicketMutex::new(0u64)),
    );
    lock_one(&mut g, "mcs", 2, &*CachePadded::new(McsMutex::new(0u64)));
    lock_one(
        &mut g,
        "spin_mutex",
        2,
        &*CachePadded::new(spin::Mutex::new(0u64)),
    );
    lock_one(
        &mut g,
        "parking_lot_mutex",
        2,
        &*CachePadded::new(parking_lot::Mutex::new(0u64)),
    );
    lock_one(
        &mut g,
        "std_mutex",
        2,
        &*CachePadded::new(std::sync::Mutex::new(0u64)),
    );
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
    targets = stack_push_pop, mpmc_queue, spsc_ring, seqlock_read, counter_increment,
        counter_read_mostly, counter_mixed,
        lock_uncontended, lock_contended
}
criterion_main!(benches);
