//! `ArrayQueue` (MPMC) and the SPSC ring: sequential model tests against `VecDeque` (full and
//! empty edges, wrap-around), exactly-once drop accounting, panic safety of the SPSC batch
//! operations, and concurrent stress with real threads.
//!
//! Under Miri the sizes shrink (`cfg!(miri)`); under loom these tests are not built (the loom
//! models are in `loom_queues.rs`).

#![cfg(not(loom))]

use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::thread;

use proptest::prelude::*;
use veridian_sync::mpmc::{ArrayQueue, StaticArrayQueue};
use veridian_sync::spsc::{self, SpscRing};

/// Records how many times each tracked value was dropped.
#[derive(Debug, Default)]
struct DropLog(Mutex<Vec<u32>>);

impl DropLog {
    fn track(self: &Arc<Self>, id: usize) -> Tracked {
        let mut counts = self.0.lock().unwrap();
        if counts.len() <= id {
            counts.resize(id + 1, 0);
        }
        Tracked {
            id,
            log: Arc::clone(self),
        }
    }

    fn counts(&self) -> Vec<u32> {
        self.0.lock().unwrap().clone()
    }
}

/// A value whose drops are counted per id.
#[derive(Debug)]
struct Tracked {
    id: usize,
    log: Arc<DropLog>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.log.0.lock().unwrap()[self.id] += 1;
    }
}

impl PartialEq for Tracked {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const MAX_OPS: usize = if cfg!(miri) { 40 } else { 400 };

#[derive(Clone, Debug)]
enum MpmcOp {
    Push,
    Pop,
    Len,
}

/// Push, pop and len weighted 5:4:1: an integer mapped to an operation (the distribution of a
/// weighted `prop_oneof!`, which under Miri made generation the bulk of the run).
fn mpmc_op() -> impl Strategy<Value = MpmcOp> {
    (0u8..10).prop_map(|kind| match kind {
        0..=4 => MpmcOp::Push,
        5..=8 => MpmcOp::Pop,
        _ => MpmcOp::Len,
    })
}

#[derive(Clone, Debug)]
enum SpscOp {
    Push,
    Pop,
    PushIter(usize),
    PushSlice(usize),
    PopBatch(usize),
    PopInto(usize),
    Len,
}

/// Push, pop, the four batch operations (a count of 0..12) and len weighted 3:3:1:1:1:1:1: a
/// pair of integers mapped to an operation, as `mpmc_op`.
fn spsc_op() -> impl Strategy<Value = SpscOp> {
    (0u8..11, 0..12_usize).prop_map(|(kind, n)| match kind {
        0..=2 => SpscOp::Push,
        3..=5 => SpscOp::Pop,
        6 => SpscOp::PushIter(n),
        7 => SpscOp::PushSlice(n),
        8 => SpscOp::PopBatch(n),
        9 => SpscOp::PopInto(n),
        _ => SpscOp::Len,
    })
}

proptest! {
    #![proptest_config(config())]

    /// `ArrayQueue` behaves like a `VecDeque` bounded at the rounded capacity; small capacities
    /// and long runs exercise full, empty and many laps around the ring.
    #[test]
    fn mpmc_matches_vecdeque(requested in 1..9_usize, ops in proptest::collection::vec(mpmc_op(), 0..MAX_OPS)) {
        let q = ArrayQueue::new(requested);
        let capacity = requested.max(2).next_power_of_two();
        prop_assert_eq!(q.capacity(), capacity);
        let mut model = VecDeque::new();
        let mut next = 0_u32;
        for op in ops {
            match op {
                MpmcOp::Push => {
                    let result = q.push(next);
                    if model.len() < capacity {
                        prop_assert_eq!(result, Ok(()));
                        model.push_back(next);
                    } else {
                        prop_assert_eq!(result, Err(next));
                    }
                    next += 1;
                }
                MpmcOp::Pop => prop_assert_eq!(q.pop(), model.pop_front()),
                MpmcOp::Len => {}
            }
            prop_assert_eq!(q.len(), model.len());
            prop_assert_eq!(q.is_empty(), model.is_empty());
            prop_assert_eq!(q.is_full(), model.len() == capacity);
        }
        while let Some(v) = model.pop_front() {
            prop_assert_eq!(q.pop(), Some(v));
        }
        prop_assert_eq!(q.pop(), None);
    }

    /// The SPSC ring (single and batch operations) behaves like a bounded `VecDeque`.
    #[test]
    fn spsc_matches_vecdeque(requested in 1..9_usize, ops in proptest::collection::vec(spsc_op(), 0..MAX_OPS)) {
        let (mut tx, mut rx) = spsc::channel(requested);
        let capacity = requested.next_power_of_two();
        prop_assert_eq!(tx.capacity(), capacity);
        prop_assert_eq!(rx.capacity(), capacity);
        let mut model = VecDeque::new();
        let mut next = 0_u32;
        for op in ops {
            let free = capacity - model.len();
            match op {
                SpscOp::Push => {
                    let result = tx.push(next);
                    if free > 0 {
                        prop_assert_eq!(result, Ok(()));
                        model.push_back(next);
                    } else {
                        prop_assert_eq!(result, Err(next));
                    }
                    next += 1;
                }
                SpscOp::Pop => prop_assert_eq!(rx.pop(), model.pop_front()),
                SpscOp::PushIter(n) => {
                    let mut values = next..next + n as u32;
                    let pushed = tx.push_iter(&mut values);
                    prop_assert_eq!(pushed, n.min(free));
                    // Values that did not fit are still in the iterator.
                    prop_assert_eq!(values.next(), (pushed < n).then_some(next + pushed as u32));
                    model.extend(next..next + pushed as u32);
                    next += n as u32;
                }
                SpscOp::PushSlice(n) => {
                    let values: Vec<u32> = (next..next + n as u32).collect();
                    let pushed = tx.push_slice(&values);
                    prop_assert_eq!(pushed, n.min(free));
                    model.extend(&values[..pushed]);
                    next += n as u32;
                }
                SpscOp::PopBatch(max) => {
                    let mut got = Vec::new();
                    let popped = rx.pop_batch(max, |v| got.push(v));
                    prop_assert_eq!(popped, got.len());
                    let expected: Vec<u32> = model.drain(..max.min(model.len())).collect();
                    prop_assert_eq!(got, expected);
                }
                SpscOp::PopInto(n) => {
                    let mut out = vec![MaybeUninit::uninit(); n];
                    let popped = rx.pop_into(&mut out);
                    // SAFETY: `pop_into` initialised `out[..popped]`.
                    let got: Vec<u32> = out[..popped].iter().map(|v| unsafe { v.assume_init() }).collect();
                    let expected: Vec<u32> = model.drain(..n.min(model.len())).collect();
                    prop_assert_eq!(got, expected);
                }
                SpscOp::Len => {}
            }
            prop_assert_eq!(tx.len(), model.len());
            prop_assert_eq!(rx.len(), model.len());
            prop_assert_eq!(rx.is_empty(), model.is_empty());
            prop_assert_eq!(tx.is_full(), model.len() == capacity);
        }
        while let Some(v) = model.pop_front() {
            prop_assert_eq!(rx.pop(), Some(v));
        }
        prop_assert_eq!(rx.pop(), None);
    }

    /// Every value is dropped exactly once in the MPMC queue: popped ones by the caller,
    /// rejected ones by the caller (they come back in `Err`), the rest by the queue's `Drop`.
    #[test]
    fn mpmc_drops_exactly_once(requested in 1..9_usize, ops in proptest::collection::vec(mpmc_op(), 0..MAX_OPS)) {
        let log = Arc::new(DropLog::default());
        let mut next = 0;
        {
            let q = ArrayQueue::new(requested);
            for op in ops {
                match op {
                    MpmcOp::Push => {
                        if let Err(back) = q.push(log.track(next)) {
                            prop_assert_eq!(back.id, next);
                        }
                        next += 1;
                    }
                    MpmcOp::Pop => {
                        if let Some(v) = q.pop() {
                            prop_assert_eq!(log.counts()[v.id], 0);
                        }
                    }
                    MpmcOp::Len => {}
                }
            }
        }
        let counts = log.counts();
        prop_assert_eq!(counts.len(), next);
        prop_assert!(counts.iter().all(|&c| c == 1), "drop counts: {:?}", counts);
    }

    /// Same for the SPSC ring, with batch operations and the two handles dropped in either
    /// order.
    #[test]
    fn spsc_drops_exactly_once(
        requested in 1..9_usize,
        ops in proptest::collection::vec(spsc_op(), 0..MAX_OPS),
        producer_first in any::<bool>(),
    ) {
        let log = Arc::new(DropLog::default());
        let mut next = 0;
        {
            let (mut tx, mut rx) = SpscRing::new(requested).split();
            for op in ops {
                match op {
                    SpscOp::Push => {
                        if let Err(back) = tx.push(log.track(next)) {
                            prop_assert_eq!(back.id, next);
                        }
                        next += 1;
                    }
                    SpscOp::Pop => drop(rx.pop()),
                    SpscOp::PushIter(n) | SpscOp::PushSlice(n) => {
                        // Values that do not fit are dropped with the iterator.
                        let values: Vec<Tracked> = (next..next + n).map(|i| log.track(i)).collect();
                        next += n;
                        tx.push_iter(values);
                    }
                    SpscOp::PopBatch(max) => {
                        rx.pop_batch(max, drop);
                    }
                    SpscOp::PopInto(n) => {
                        let mut out: Vec<MaybeUninit<Tracked>> = (0..n).map(|_| MaybeUninit::uninit()).collect();
                        let popped = rx.pop_into(&mut out);
                        for v in &mut out[..popped] {
                            // SAFETY: initialised by `pop_into`; dropped once here.
                            unsafe { v.assume_init_drop() };
                        }
                    }
                    SpscOp::Len => {}
                }
            }
            if producer_first {
                drop(tx);
                drop(rx);
            } else {
                drop(rx);
                drop(tx);
            }
        }
        let counts = log.counts();
        prop_assert_eq!(counts.len(), next);
        prop_assert!(counts.iter().all(|&c| c == 1), "drop counts: {:?}", counts);
    }
}

#[test]
#[should_panic(expected = "capacity must be non-zero")]
fn mpmc_zero_capacity_panics() {
    let _ = ArrayQueue::<u8>::new(0);
}

#[test]
#[should_panic(expected = "capacity must be non-zero")]
fn spsc_zero_capacity_panics() {
    let _ = SpscRing::<u8>::new(0);
}

#[test]
fn capacity_rounds_up_to_power_of_two() {
    assert_eq!(ArrayQueue::<u8>::new(1).capacity(), 2); // the scheme needs 2 slots
    assert_eq!(ArrayQueue::<u8>::new(2).capacity(), 2);
    assert_eq!(ArrayQueue::<u8>::new(5).capacity(), 8);
    assert_eq!(ArrayQueue::<u8>::new(64).capacity(), 64);
    assert_eq!(SpscRing::<u8>::new(1).capacity(), 1);
    assert_eq!(SpscRing::<u8>::new(3).capacity(), 4);
    assert_eq!(SpscRing::<u8>::new(1000).capacity(), 1024);
}

/// A `StaticArrayQueue` made at compile time behaves like the heap one: FIFO, full at `N`, and
/// correct across many laps of its counters.
#[test]
fn static_queue_is_fifo_bounded_and_laps() {
    static QUEUE: StaticArrayQueue<u32, 4> = StaticArrayQueue::new();
    assert_eq!(QUEUE.capacity(), 4);
    let mut next_push = 0;
    let mut next_pop = 0;
    for _ in 0..50 {
        while QUEUE.push(next_push).is_ok() {
            next_push += 1;
        }
        assert!(QUEUE.is_full());
        assert_eq!(QUEUE.push(999), Err(999));
        for _ in 0..3 {
            assert_eq!(QUEUE.pop(), Some(next_pop));
            next_pop += 1;
        }
    }
    while let Some(v) = QUEUE.pop() {
        assert_eq!(v, next_pop);
        next_pop += 1;
    }
    assert_eq!(next_pop, next_push);
    assert!(QUEUE.is_empty());
}

/// Values left in a dropped `StaticArrayQueue` are dropped exactly once.
#[test]
fn static_queue_drops_leftovers_once() {
    let log = Arc::new(DropLog::default());
    {
        let queue = StaticArrayQueue::<Tracked, 8>::new();
        for id in 0..6 {
            queue.push(log.track(id)).unwrap();
        }
        drop(queue.pop());
    }
    assert_eq!(*log.0.lock().unwrap(), [1; 6]);
}

#[test]
fn send_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<ArrayQueue<Box<u8>>>();
    send_sync::<ArrayQueue<std::cell::Cell<u8>>>();
    send_sync::<StaticArrayQueue<Box<u8>, 2>>();
    send::<spsc::Producer<std::cell::Cell<u8>>>();
    send::<spsc::Consumer<Box<u8>>>();
}

/// A `clone` that panics part-way through `push_slice`: the values cloned before it are
/// published, nothing is duplicated or lost, and drops stay exactly-once.
#[test]
fn spsc_push_slice_panicking_clone() {
    #[derive(Debug)]
    struct Bomb {
        tracked: Tracked,
        explode: bool,
    }
    impl Clone for Bomb {
        fn clone(&self) -> Self {
            assert!(!self.explode, "clone panics");
            Bomb {
                tracked: self.tracked.log.track(self.tracked.id + 100),
                explode: false,
            }
        }
    }
    let log = Arc::new(DropLog::default());
    let (mut tx, mut rx) = spsc::channel(8);
    let values: Vec<Bomb> = (0..5)
        .map(|i| Bomb {
            tracked: log.track(i),
            explode: i == 3,
        })
        .collect();
    let result = catch_unwind(AssertUnwindSafe(|| tx.push_slice(&values)));
    assert!(result.is_err());
    assert_eq!(tx.len(), 3);
    let mut got = Vec::new();
    assert_eq!(rx.pop_batch(10, |b| got.push(b.tracked.id)), 3);
    assert_eq!(got, [100, 101, 102]);
    assert_eq!(tx.push(values[4].clone()).map_err(drop), Ok(()));
    drop(values);
    drop((tx, rx));
    let counts = log.counts();
    assert!(counts[..5].iter().all(|&c| c == 1));
    assert_eq!(counts[100..], [1, 1, 1, 0, 1]); // 103 was never cloned
}

/// A callback that panics part-way through `pop_batch`: the values handed out (including the
/// one it panicked on) count as removed; the rest stay in the ring, in order.
#[test]
fn spsc_pop_batch_panicking_callback() {
    let log = Arc::new(DropLog::default());
    let (mut tx, mut rx) = spsc::channel(8);
    assert_eq!(tx.push_iter((0..6).map(|i| log.track(i))), 6);
    let mut seen = Vec::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        rx.pop_batch(10, |t| {
            seen.push(t.id);
            assert!(t.id < 2, "callback panics");
        })
    }));
    assert!(result.is_err());
    assert_eq!(seen, [0, 1, 2]);
    assert_eq!(log.counts()[..3], [1, 1, 1]);
    assert_eq!(rx.len(), 3);
    assert_eq!(rx.pop().map(|t| t.id), Some(3));
    drop((tx, rx));
    assert!(log.counts().iter().all(|&c| c == 1));
}

const THREADS: usize = 4;
const PER_THREAD: usize = if cfg!(miri) { 50 } else { 100_000 };

/// 4 producers and 4 consumers on a small queue: every value popped exactly once, and each
/// consumer sees each producer's values in push order.
#[test]
fn mpmc_concurrent_exactly_once_and_fifo_per_producer() {
    let q = Arc::new(ArrayQueue::new(64));
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let mut v = t * PER_THREAD + i;
                    while let Err(back) = q.push(v) {
                        v = back;
                        thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let total = THREADS * PER_THREAD;
    let popped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let consumers: Vec<_> = (0..THREADS)
        .map(|_| {
            let q = Arc::clone(&q);
            let popped = Arc::clone(&popped);
            thread::spawn(move || {
                let mut got = Vec::new();
                let mut last = [None; THREADS];
                while popped.load(std::sync::atomic::Ordering::Relaxed) < total {
                    match q.pop() {
                        Some(v) => {
                            let producer = v / PER_THREAD;
                            assert!(last[producer] < Some(v), "per-producer order broken");
                            last[producer] = Some(v);
                            got.push(v);
                            popped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        None => thread::yield_now(),
                    }
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut all: Vec<usize> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all.len(), total);
    assert!(
        all.iter().enumerate().all(|(i, &v)| i == v),
        "lost or duplicated values"
    );
    assert!(q.is_empty());
}

/// Drop-counted values through the MPMC queue with concurrent producers and consumers, some
/// left inside at the end.
#[test]
fn mpmc_concurrent_drops_exactly_once() {
    let per_thread = PER_THREAD / 10;
    let log = Arc::new(DropLog::default());
    let q = Arc::new(ArrayQueue::new(16));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let q = Arc::clone(&q);
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for i in 0..per_thread {
                    // Rejected values come back and are dropped here.
                    let _ = q.push(log.track(t * per_thread + i));
                    if t % 2 == 1 {
                        drop(q.pop());
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    drop(q);
    let counts = log.counts();
    assert_eq!(counts.len(), THREADS * per_thread);
    assert!(
        counts.iter().all(|&c| c == 1),
        "a value was dropped twice or never"
    );
}

/// One producer, one consumer, mixing single and batch operations on a small ring: the
/// consumer receives exactly `0..N` in order.
#[test]
fn spsc_concurrent_in_order() {
    let total = THREADS * PER_THREAD;
    let (mut tx, mut rx) = spsc::channel(64);
    let producer = thread::spawn(move || {
        let mut next = 0;
        while next < total {
            let pushed = if next % 3 == 0 {
                let end = (next + 5).min(total);
                tx.push_iter(next..end)
            } else {
                usize::from(tx.push(next).is_ok())
            };
            if pushed == 0 {
                thread::yield_now();
            }
            next += pushed;
        }
    });
    let consumer = thread::spawn(move || {
        let mut expected = 0;
        let mut buf = [MaybeUninit::uninit(); 7];
        while expected < total {
            let got = match expected % 3 {
                0 => rx.pop_batch(4, |v| {
                    assert_eq!(v, expected);
                    expected += 1;
                }),
                1 => {
                    let n = rx.pop_into(&mut buf);
                    for v in &buf[..n] {
                        // SAFETY: initialised by `pop_into`.
                        assert_eq!(unsafe { v.assume_init() }, expected);
                        expected += 1;
                    }
                    n
                }
                _ => rx.pop().map_or(0, |v| {
                    assert_eq!(v, expected);
                    expected += 1;
                    1
                }),
            };
            if got == 0 {
                thread::yield_now();
            }
        }
        rx
    });
    producer.join().unwrap();
    let mut rx = consumer.join().unwrap();
    assert_eq!(rx.pop(), None);
}

/// Drop-counted values through the SPSC ring across threads, some left inside at the end and
/// the handles dropped on different threads.
#[test]
fn spsc_concurrent_drops_exactly_once() {
    let total = PER_THREAD / 5;
    let log = Arc::new(DropLog::default());
    let (mut tx, mut rx) = spsc::channel(32);
    let producer = {
        let log = Arc::clone(&log);
        thread::spawn(move || {
            for i in 0..total {
                let _ = tx.push(log.track(i));
            }
        })
    };
    let consumer = thread::spawn(move || {
        for _ in 0..total / 2 {
            rx.pop_batch(3, drop);
        }
    });
    producer.join().unwrap();
    consumer.join().unwrap();
    let counts = log.counts();
    assert_eq!(counts.len(), total);
    assert!(
        counts.iter().all(|&c| c == 1),
        "a value was dropped twice or never"
    );
}
