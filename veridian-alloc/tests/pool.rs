//! `ObjectPool`: reset exactly once per return, never the same object out twice (threads on the
//! hosted `ThreadSlots`, nodes from `System` and from veridian-alloc's `Heap`), the capacity
//! bound, every object dropped exactly once (on discard, `clear` and drop of the pool), panics in
//! the hooks, allocation failure, and a proptest against a bounded-stack model.

use std::alloc::System;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use proptest::prelude::*;
use veridian_alloc::allocator_api2::alloc::{AllocError, Allocator};
use veridian_alloc::hosted::{MmapPages, ThreadSlots};
use veridian_alloc::pool::{ObjectPool, PoolConfig, PoolConfigError, Pooled};
use veridian_alloc::{CpuLocal, Heap, SingleCpu};

/// What happened to every object, by id.
#[derive(Default)]
struct Log {
    next_id: AtomicU64,
    resets: Mutex<HashMap<u64, u32>>,
    drops: Mutex<HashMap<u64, u32>>,
    /// When set, the reset hook panics.
    panic_in_reset: AtomicBool,
}

impl Log {
    fn resets(&self, id: u64) -> u32 {
        self.resets.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
    fn drops(&self, id: u64) -> u32 {
        self.drops.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
    fn created(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed)
    }
    fn total_resets(&self) -> u64 {
        self.resets
            .lock()
            .unwrap()
            .values()
            .map(|&n| n as u64)
            .sum()
    }
    /// Asserts every object ever created was dropped exactly once.
    fn assert_all_dropped_once(&self) {
        let drops = self.drops.lock().unwrap();
        for id in 0..self.created() {
            assert_eq!(drops.get(&id).copied(), Some(1), "object {id} drop count");
        }
        assert_eq!(drops.len() as u64, self.created());
    }
}

struct Obj {
    id: u64,
    /// Set while a guard holds the object; checked on acquire, release and reset.
    in_use: AtomicBool,
    /// Which thread holds it (stress test).
    owner: AtomicU64,
    log: Arc<Log>,
}

impl Drop for Obj {
    fn drop(&mut self) {
        *self.log.drops.lock().unwrap().entry(self.id).or_default() += 1;
    }
}

fn create(log: &Arc<Log>) -> impl Fn() -> Obj + Send + Sync + use<> {
    let log = Arc::clone(log);
    move || Obj {
        id: log.next_id.fetch_add(1, Ordering::Relaxed),
        in_use: AtomicBool::new(false),
        owner: AtomicU64::new(u64::MAX),
        log: Arc::clone(&log),
    }
}

fn reset(log: &Arc<Log>) -> impl Fn(&mut Obj) + Send + Sync + use<> {
    let log = Arc::clone(log);
    move |o: &mut Obj| {
        // (Not while unwinding from a failed assertion, which drops the guards still held.)
        assert!(
            std::thread::panicking() || !o.in_use.load(Ordering::Relaxed),
            "reset of an object still marked in use"
        );
        *log.resets.lock().unwrap().entry(o.id).or_default() += 1;
        if log.panic_in_reset.load(Ordering::Relaxed) {
            panic!("reset hook panics (test)");
        }
    }
}

fn take(g: &Pooled<'_, Obj>) {
    assert!(
        !g.in_use.swap(true, Ordering::Relaxed),
        "object {} handed out while in use",
        g.id
    );
}

fn give_back(g: Pooled<'_, Obj>) {
    assert!(
        g.in_use.swap(false, Ordering::Relaxed),
        "object {} was not marked in use",
        g.id
    );
    drop(g);
}

fn single_cpu() -> SingleCpu {
    // SAFETY: every pool built with it in this file is used by one test thread only.
    unsafe { SingleCpu::new() }
}

#[test]
fn config_rejects_zero_magazine() {
    assert_eq!(PoolConfig::new(0, 4), Err(PoolConfigError::ZeroMagazine));
    let c = PoolConfig::new(3, 2).unwrap();
    assert_eq!((c.magazine(), c.depot_magazines()), (3, 2));
    assert_eq!(c.max_cached(2), 2 * 2 * 3 + 2 * 3);
    assert_eq!(
        PoolConfig::new(usize::MAX, usize::MAX)
            .unwrap()
            .max_cached(9),
        usize::MAX
    );
}

#[test]
fn reused_object_keeps_its_state_and_is_reset_once_per_return() {
    let log = Arc::new(Log::default());
    let pool: ObjectPool<_, _, _, _, _, 1> =
        ObjectPool::new(single_cpu(), System, create(&log), reset(&log));
    let a = pool.acquire().unwrap();
    let id = a.id;
    assert_eq!(log.resets(id), 0);
    drop(a);
    assert_eq!(log.resets(id), 1);
    for n in 2..=10 {
        let a = pool.acquire().unwrap();
        assert_eq!(a.id, id, "the cached object comes back");
        assert_eq!(log.resets(id), n - 1, "no reset on acquire");
        drop(a);
        assert_eq!(log.resets(id), n);
    }
    // `into_inner` is not a return: no reset, and the caller drops it.
    let a = pool.acquire().unwrap();
    let inner = Pooled::into_inner(a);
    assert_eq!(log.resets(id), 10);
    assert_eq!(log.drops(id), 0);
    drop(inner);
    assert_eq!(log.drops(id), 1);
    let s = pool.stats();
    assert_eq!((s.hits, s.misses, s.releases, s.detached), (10, 1, 10, 1));
    assert_eq!((s.live, s.cached), (0, 0));
    drop(pool);
    log.assert_all_dropped_once();
}

#[test]
fn capacity_bound_drops_objects_beyond_it() {
    let log = Arc::new(Log::default());
    let config = PoolConfig::new(4, 2).unwrap();
    let pool: ObjectPool<_, _, _, _, _, 1> =
        ObjectPool::with_config(config, single_cpu(), System, create(&log), reset(&log));
    assert_eq!(pool.max_cached(), 2 * 2 * 4 + 2 * 4);
    // One slot caches at most 2 magazines, the depot 2 more: 16 objects.
    let one_slot = 16;
    let held: Vec<_> = (0..50).map(|_| pool.acquire().unwrap()).collect();
    assert_eq!(pool.stats().misses, 50);
    drop(held);
    let s = pool.stats();
    assert_eq!(s.releases, 50);
    assert_eq!(s.cached, one_slot);
    assert_eq!(s.discarded, 50 - one_slot);
    let dropped: u32 = log.drops.lock().unwrap().values().sum();
    assert_eq!(
        dropped as u64,
        50 - one_slot,
        "discarded objects are dropped at once"
    );
    assert_eq!(log.total_resets(), 50, "discarded objects were reset too");
    // The cache serves `one_slot` acquisitions, then builds again.
    let again: Vec<_> = (0..20).map(|_| pool.acquire().unwrap()).collect();
    let s = pool.stats();
    assert_eq!((s.hits, s.misses), (one_slot, 54));
    assert_eq!(s.live, 20);
    drop(again);
    drop(pool);
    log.assert_all_dropped_once();
}

#[test]
fn clear_and_drop_drop_every_cached_object_once() {
    let log = Arc::new(Log::default());
    let config = PoolConfig::new(3, 5).unwrap();
    // Two per-CPU slots and more threads than that: objects end up in CPU magazines, the
    // shared slot and the depot.
    let mut pool: ObjectPool<_, _, _, _, _, 2> =
        ObjectPool::with_config(config, ThreadSlots, System, create(&log), reset(&log));
    std::thread::scope(|s| {
        for t in 0..4 {
            let pool = &pool;
            s.spawn(move || {
                let held: Vec<_> = (0..7 + t).map(|_| pool.acquire().unwrap()).collect();
                drop(held);
            });
        }
    });
    let s = pool.stats();
    assert_eq!(s.live, 0);
    assert!(s.cached > 0);
    let dropped_before: u32 = log.drops.lock().unwrap().values().sum();
    assert_eq!(dropped_before as u64, s.discarded);
    pool.clear();
    let dropped: u32 = log.drops.lock().unwrap().values().sum();
    assert_eq!(dropped as u64, log.created());
    log.assert_all_dropped_once();
    // Still usable after `clear`, and dropping it drops what it caches again.
    drop(pool.acquire().unwrap());
    drop(pool);
    log.assert_all_dropped_once();
}

#[test]
fn reset_panic_drops_the_object_and_the_pool_keeps_working() {
    let log = Arc::new(Log::default());
    let pool: ObjectPool<_, _, _, _, _, 1> =
        ObjectPool::new(single_cpu(), System, create(&log), reset(&log));
    let a = pool.acquire().unwrap();
    let id = a.id;
    log.panic_in_reset.store(true, Ordering::Relaxed);
    let r = catch_unwind(AssertUnwindSafe(|| drop(a)));
    assert!(r.is_err());
    log.panic_in_reset.store(false, Ordering::Relaxed);
    assert_eq!(log.resets(id), 1);
    assert_eq!(
        log.drops(id),
        1,
        "a half-reset object is dropped, not cached"
    );
    let s = pool.stats();
    assert_eq!((s.releases, s.discarded, s.live, s.cached), (1, 1, 0, 0));
    let b = pool.acquire().unwrap();
    assert_ne!(b.id, id);
    drop(b);
    assert_eq!(pool.stats().cached, 1);
    drop(pool);
    log.assert_all_dropped_once();
}

#[test]
fn constructor_panic_leaves_the_pool_consistent() {
    let calls = AtomicU64::new(0);
    let pool: ObjectPool<Vec<u8>, _, _, _, _, 1> = ObjectPool::new(
        single_cpu(),
        System,
        || {
            if calls.fetch_add(1, Ordering::Relaxed) == 0 {
                panic!("constructor panics (test)");
            }
            vec![1, 2, 3]
        },
        |v: &mut Vec<u8>| v.truncate(3),
    );
    assert!(catch_unwind(AssertUnwindSafe(|| pool.acquire().map(drop))).is_err());
    let v = pool.acquire().unwrap();
    assert_eq!(*v, [1, 2, 3]);
    drop(v);
    let s = pool.stats();
    assert_eq!((s.misses, s.failed, s.live, s.cached), (2, 1, 0, 1));
}

/// An allocator that refuses after `left` allocations (forwards to `System` until then).
struct Limited {
    left: AtomicU64,
}

// SAFETY: forwards to `System`, or fails.
unsafe impl Allocator for Limited {
    fn allocate(&self, layout: std::alloc::Layout) -> Result<NonNull<[u8]>, AllocError> {
        let left = self.left.load(Ordering::Relaxed);
        if left == 0 {
            return Err(AllocError);
        }
        self.left.store(left - 1, Ordering::Relaxed);
        System.allocate(layout)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: std::alloc::Layout) {
        // SAFETY: every block came from `System` with this layout.
        unsafe { System.deallocate(ptr, layout) }
    }
}

#[test]
fn out_of_memory_is_an_error_and_drops_the_new_value() {
    let log = Arc::new(Log::default());
    let alloc = Limited {
        left: AtomicU64::new(2),
    };
    let pool: ObjectPool<_, _, _, _, _, 1> =
        ObjectPool::new(single_cpu(), &alloc, create(&log), reset(&log));
    let a = pool.acquire().unwrap();
    let b = pool.acquire().unwrap();
    assert!(matches!(pool.acquire().map(drop), Err(AllocError)));
    assert_eq!(
        log.drops(2),
        1,
        "the value built for the failed node is dropped"
    );
    let s = pool.stats();
    assert_eq!((s.misses, s.failed, s.live), (3, 1, 2));
    drop((a, b));
    // Hits need no allocation.
    let a = pool.acquire().unwrap();
    let b = pool.acquire().unwrap();
    drop((a, b));
    drop(pool);
    log.assert_all_dropped_once();
}

/// Threads acquire, check, hand some guards to a neighbour thread (which releases them on its
/// own slot) and release; each object's `in_use` flag catches one handed out twice.
fn never_handed_out_twice<C, A, const CPUS: usize>(cpu: C, alloc: A, threads: u64, iters: u64)
where
    C: CpuLocal + Sync,
    A: Allocator + Sync,
{
    let log = Arc::new(Log::default());
    let config = PoolConfig::new(2, 3).unwrap();
    let pool: ObjectPool<_, _, _, C, A, CPUS> =
        ObjectPool::with_config(config, cpu, alloc, create(&log), reset(&log));
    let acquired = AtomicU64::new(0);
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| mpsc::channel::<Pooled<'_, Obj>>())
        .unzip();
    let leftovers: Vec<mpsc::Receiver<Pooled<'_, Obj>>> = std::thread::scope(|s| {
        let handles: Vec<_> = receivers
            .into_iter()
            .enumerate()
            .map(|(t, rx)| {
                let tx = senders[(t + 1) % threads as usize].clone();
                let (pool, acquired) = (&pool, &acquired);
                s.spawn(move || {
                    let t = t as u64;
                    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
                    let mut held = Vec::new();
                    for _ in 0..iters {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        for g in rx.try_iter() {
                            assert!(g.in_use.load(Ordering::Relaxed));
                            assert_ne!(g.owner.load(Ordering::Relaxed), t);
                            give_back(g);
                        }
                        for _ in 0..1 + rng % 4 {
                            let g = pool.acquire().unwrap();
                            take(&g);
                            g.owner.store(t, Ordering::Relaxed);
                            acquired.fetch_add(1, Ordering::Relaxed);
                            held.push(g);
                        }
                        for g in &held {
                            assert_eq!(g.owner.load(Ordering::Relaxed), t, "object shared");
                        }
                        if rng.is_multiple_of(8) {
                            tx.send(held.pop().unwrap()).unwrap();
                        }
                        for g in held.drain(..) {
                            give_back(g);
                        }
                    }
                    rx
                })
            })
            .collect();
        drop(senders);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for rx in leftovers {
        for g in rx.try_iter() {
            give_back(g);
        }
    }
    let s = pool.stats();
    let acquired = acquired.load(Ordering::Relaxed);
    assert_eq!(s.hits + s.misses, acquired);
    assert_eq!(s.releases, acquired);
    assert_eq!(s.live, 0);
    assert_eq!(s.misses, log.created());
    assert!(s.cached as usize <= pool.max_cached());
    assert_eq!(log.total_resets(), acquired, "one reset per return");
    assert!(
        s.hits > s.misses,
        "the cache serves most acquisitions: {s:?}"
    );
    drop(pool);
    log.assert_all_dropped_once();
}

const THREADS: u64 = 6;
const ITERS: u64 = if cfg!(debug_assertions) {
    3_000
} else {
    30_000
};

#[test]
fn threads_never_share_an_object_system_alloc() {
    never_handed_out_twice::<_, _, 64>(ThreadSlots, System, THREADS, ITERS);
}

#[test]
fn threads_never_share_an_object_heap_alloc_shared_slot() {
    // Two per-CPU slots for six threads: most threads go through the locked shared slot.
    static HEAP: Heap<MmapPages, ThreadSlots> = Heap::new(MmapPages, ThreadSlots);
    never_handed_out_twice::<_, _, 2>(ThreadSlots, &HEAP, THREADS, ITERS);
}

#[test]
fn threads_never_share_an_object_no_cpu_slots() {
    never_handed_out_twice::<_, _, 0>(ThreadSlots, System, 4, ITERS / 2);
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Release(usize),
    Detach(usize),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => Just(Op::Acquire),
        4 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Detach),
        1 => Just(Op::Clear),
    ]
}

/// On one slot the pool is a LIFO stack of at most `2M + depot × M` objects: a hit returns the
/// most recently returned object, a release beyond the bound drops the object.
fn run_model<const CPUS: usize>(magazine: usize, depot: usize, ops: &[Op]) {
    let log = Arc::new(Log::default());
    let config = PoolConfig::new(magazine, depot).unwrap();
    let mut pool: ObjectPool<_, _, _, _, _, CPUS> =
        ObjectPool::with_config(config, single_cpu(), System, create(&log), reset(&log));
    let bound = 2 * magazine + depot * magazine;
    let mut stack: Vec<u64> = Vec::new();
    let mut resets: HashMap<u64, u32> = HashMap::new();
    let mut drops: HashMap<u64, u32> = HashMap::new();
    let (mut hits, mut misses, mut releases, mut discarded, mut detached, mut cleared) =
        (0, 0, 0, 0, 0, 0);
    let mut held: Vec<Pooled<'_, Obj>> = Vec::new();
    for op in ops {
        match op {
            Op::Acquire => {
                let g = pool.acquire().unwrap();
                match stack.pop() {
                    Some(id) => {
                        assert_eq!(g.id, id, "LIFO reuse");
                        hits += 1;
                    }
                    None => {
                        assert_eq!(g.id, log.created() - 1, "a fresh object");
                        misses += 1;
                    }
                }
                take(&g);
                held.push(g);
            }
            Op::Release(i) | Op::Detach(i) if held.is_empty() => {
                let _ = i;
            }
            Op::Release(i) => {
                let g = held.remove(i % held.len());
                let id = g.id;
                give_back(g);
                *resets.entry(id).or_default() += 1;
                releases += 1;
                if stack.len() < bound {
                    stack.push(id);
                } else {
                    discarded += 1;
                    *drops.entry(id).or_default() += 1;
                }
            }
            Op::Detach(i) => {
                let g = held.remove(i % held.len());
                g.in_use.store(false, Ordering::Relaxed);
                let obj = Pooled::into_inner(g);
                detached += 1;
                *drops.entry(obj.id).or_default() += 1;
            }
            Op::Clear => {
                for g in held.drain(..) {
                    let id = g.id;
                    give_back(g);
                    *resets.entry(id).or_default() += 1;
                    releases += 1;
                    if stack.len() < bound {
                        stack.push(id);
                    } else {
                        discarded += 1;
                        *drops.entry(id).or_default() += 1;
                    }
                }
                drop(held);
                pool.clear();
                for id in stack.drain(..) {
                    *drops.entry(id).or_default() += 1;
                    cleared += 1;
                }
                held = Vec::new();
            }
        }
        assert_eq!(*log.resets.lock().unwrap(), resets);
        assert_eq!(*log.drops.lock().unwrap(), drops);
        let s = pool.stats();
        assert_eq!(
            (
                s.hits,
                s.misses,
                s.releases,
                s.discarded,
                s.detached,
                s.cleared
            ),
            (hits, misses, releases, discarded, detached, cleared)
        );
        assert_eq!(s.live, held.len() as u64);
        assert_eq!(s.cached, stack.len() as u64);
    }
    for g in held {
        give_back(g);
    }
    drop(pool);
    log.assert_all_dropped_once();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 200 } else { 1000 }))]

    #[test]
    fn model_one_cpu_slot(magazine in 1usize..5, depot in 0usize..4, ops in prop::collection::vec(op(), 0..200)) {
        run_model::<1>(magazine, depot, &ops);
    }

    #[test]
    fn model_shared_slot_only(magazine in 1usize..5, depot in 0usize..4, ops in prop::collection::vec(op(), 0..200)) {
        run_model::<0>(magazine, depot, &ops);
    }
}
