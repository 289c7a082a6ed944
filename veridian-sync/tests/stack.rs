//! `TreiberStack`: sequential model test against `Vec`, exactly-once drop accounting, guard
//! checks, and concurrent stress with real threads.
//!
//! Under Miri the sizes shrink (`cfg!(miri)`), and under the sanitizers
//! (`VERIDIAN_STRESS_DIVISOR`, see `common`); under loom these tests are not built (the loom
//! models are in `loom_stack.rs`).

#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::Mutex;
use std::thread;

use proptest::prelude::*;
use veridian_sync::crossbeam_epoch::{self, Collector};
use veridian_sync::stack::TreiberStack;

mod common;
use common::stress;

/// Records how many times each tracked value was dropped.
#[derive(Default)]
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
struct Tracked {
    id: usize,
    log: Arc<DropLog>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.log.0.lock().unwrap()[self.id] += 1;
    }
}

#[derive(Clone, Debug)]
enum Op {
    Push(u16),
    PushBatch(Vec<u16>),
    Pop,
    IsEmpty,
}

/// Push, push-batch, pop and is-empty weighted 4:1:4:1: integers mapped to an operation (the
/// distribution of a weighted `prop_oneof!`, which under Miri made generation the bulk of the
/// run). A batch holds `len` (0..5) values counting up from `v`.
fn op() -> impl Strategy<Value = Op> {
    (0u8..10, any::<u16>(), 0u16..5).prop_map(|(kind, v, len)| match kind {
        0..=3 => Op::Push(v),
        4 => Op::PushBatch((0..len).map(|i| v.wrapping_add(i)).collect()),
        5..=8 => Op::Pop,
        _ => Op::IsEmpty,
    })
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any sequence of operations behaves like a `Vec` used as a stack.
    #[test]
    fn matches_vec_model(ops in proptest::collection::vec(op(), 0..if cfg!(miri) { 40 } else { 300 })) {
        let stack = TreiberStack::new();
        let handle = stack.register();
        let mut model = Vec::new();
        for op in ops {
            let guard = handle.pin();
            match op {
                Op::Push(v) => {
                    stack.push(v, &guard);
                    model.push(v);
                }
                Op::PushBatch(vs) => {
                    prop_assert_eq!(stack.push_batch(vs.iter().copied(), &guard), vs.len());
                    model.extend(vs);
                }
                Op::Pop => prop_assert_eq!(stack.pop(&guard), model.pop()),
                Op::IsEmpty => prop_assert_eq!(stack.is_empty(), model.is_empty()),
            }
        }
        let guard = handle.pin();
        while let Some(v) = model.pop() {
            prop_assert_eq!(stack.pop(&guard), Some(v));
        }
        prop_assert_eq!(stack.pop(&guard), None);
    }

    /// Every value is dropped exactly once: popped ones by the caller, the rest by the stack's
    /// `Drop`, and never again by the collector freeing popped nodes.
    #[test]
    fn drops_every_value_exactly_once(ops in proptest::collection::vec(op(), 0..if cfg!(miri) { 40 } else { 200 })) {
        let log = Arc::new(DropLog::default());
        let mut next_id = 0;
        {
            let stack = TreiberStack::new();
            let handle = stack.register();
            for op in ops {
                let guard = handle.pin();
                match op {
                    Op::Push(_) => {
                        stack.push(log.track(next_id), &guard);
                        next_id += 1;
                    }
                    Op::PushBatch(vs) => {
                        let batch: Vec<_> = (0..vs.len()).map(|i| log.track(next_id + i)).collect();
                        next_id += vs.len();
                        stack.push_batch(batch, &guard);
                    }
                    Op::Pop => {
                        if let Some(t) = stack.pop(&guard) {
                            // Not dropped yet while we hold it.
                            prop_assert_eq!(log.counts()[t.id], 0);
                        }
                    }
                    Op::IsEmpty => {}
                }
                // Push the deferred node destructions through the collector now and then.
                guard.flush();
            }
            // Dropping the handle and the stack (the collector's last owner) runs every deferred
            // destruction.
        }
        let counts = log.counts();
        prop_assert_eq!(counts.len(), next_id);
        prop_assert!(counts.iter().all(|&c| c == 1), "drop counts: {:?}", counts);
    }
}

#[test]
fn empty_stack() {
    let stack = TreiberStack::<u8>::default();
    let handle = stack.register();
    assert!(stack.is_empty());
    assert_eq!(stack.pop_with(&handle), None);
    assert_eq!(stack.push_batch(std::iter::empty(), &handle.pin()), 0);
    assert!(stack.is_empty());
    stack.push_with(7, &handle);
    assert!(!stack.is_empty());
    assert!(format!("{stack:?}").contains("TreiberStack"));
}

#[test]
fn shared_collector_serves_several_stacks() {
    let collector = Collector::new();
    let a = TreiberStack::with_collector(collector.clone());
    let b = TreiberStack::with_collector(collector.clone());
    let handle = collector.register();
    let guard = handle.pin();
    a.push("a", &guard);
    b.push("b", &guard);
    assert_eq!(a.pop(&guard), Some("a"));
    assert_eq!(b.pop(&guard), Some("b"));
    assert!(a.collector() == &collector);
}

#[test]
#[should_panic(expected = "guard is not pinned on this stack's collector")]
fn guard_from_another_collector_is_rejected() {
    let stack = TreiberStack::new();
    let other = Collector::new();
    let handle = other.register();
    stack.push(1, &handle.pin());
}

#[test]
#[should_panic(expected = "guard is not pinned on this stack's collector")]
fn unprotected_guard_is_rejected() {
    let stack = TreiberStack::<u8>::new();
    // SAFETY: the stack is local to this thread; the call must panic before using the guard.
    let guard = unsafe { crossbeam_epoch::unprotected() };
    let _ = stack.pop(guard);
}

/// If the iterator feeding `push_batch` panics, the values it produced are dropped (once) and
/// nothing is pushed.
#[test]
fn push_batch_panicking_iterator() {
    let log = Arc::new(DropLog::default());
    let stack = TreiberStack::new();
    let handle = stack.register();
    stack.push(log.track(0), &handle.pin());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let guard = handle.pin();
        stack.push_batch(
            (1..10).map(|i| {
                assert!(i < 4, "iterator panics");
                log.track(i)
            }),
            &guard,
        );
    }));
    assert!(result.is_err());
    assert_eq!(log.counts(), [0, 1, 1, 1]);
    let top = stack.pop_with(&handle).unwrap();
    assert_eq!(top.id, 0);
    assert!(stack.is_empty());
}

#[test]
fn send_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<TreiberStack<Box<u8>>>();
    send_sync::<TreiberStack<std::cell::Cell<u8>>>(); // `Sync` needs only `T: Send`: no `&T` shared
}

const THREADS: usize = 4;
/// Values each thread pushes in the stress tests.
fn per_thread() -> usize {
    stress(100_000, 50)
}

/// Pushers and poppers at once: every pushed value is popped exactly once.
#[test]
fn concurrent_push_pop_exactly_once() {
    let per_thread = per_thread();
    let stack = Arc::new(TreiberStack::new());
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let stack = Arc::clone(&stack);
            thread::spawn(move || {
                let handle = stack.register();
                let mut popped = Vec::new();
                let base = t * per_thread;
                let mut i = 0;
                while i < per_thread {
                    let guard = handle.pin();
                    // Mix single and batch pushes, and pop roughly as often as we push.
                    if i % 7 == 0 && i + 3 <= per_thread {
                        stack.push_batch(base + i..base + i + 3, &guard);
                        i += 3;
                    } else {
                        stack.push(base + i, &guard);
                        i += 1;
                    }
                    if let Some(v) = stack.pop(&guard) {
                        popped.push(v);
                    }
                }
                popped
            })
        })
        .collect();
    let mut all: Vec<usize> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let handle = stack.register();
    while let Some(v) = stack.pop_with(&handle) {
        all.push(v);
    }
    all.sort_unstable();
    assert_eq!(all.len(), THREADS * per_thread);
    assert!(
        all.iter().enumerate().all(|(i, &v)| i == v),
        "lost or duplicated values"
    );
}

/// Same with drop-counted values, separate pusher and popper threads, and values left in the
/// stack at the end: all dropped exactly once.
#[test]
fn concurrent_drops_exactly_once() {
    let per_thread = per_thread() / 10;
    let log = Arc::new(DropLog::default());
    let stack = Arc::new(TreiberStack::new());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let stack = Arc::clone(&stack);
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let handle = stack.register();
                for i in 0..per_thread {
                    if t % 2 == 0 {
                        stack.push_with(log.track(t * per_thread + i), &handle);
                    } else {
                        // Popper threads also push, so the stack is rarely empty.
                        stack.push_with(log.track(t * per_thread + i), &handle);
                        drop(stack.pop_with(&handle));
                        drop(stack.pop_with(&handle));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    drop(stack);
    let counts = log.counts();
    assert_eq!(counts.len(), THREADS * per_thread);
    assert!(
        counts.iter().all(|&c| c == 1),
        "a value was dropped twice or never"
    );
}

/// `StackHandle` (node recycling): a long single-thread run pushes and pops through many retire
/// batches, mixed with the guard API on the same stack; the order is a stack's, and nodes come
/// back for reuse (values stay intact across reuse).
#[test]
fn handle_matches_vec_model_across_recycling() {
    let stack = TreiberStack::new();
    let mut handle = stack.handle();
    let plain = stack.register();
    let mut model = Vec::new();
    let rounds = stress(20_000, 300);
    for i in 0..rounds {
        // Grow and shrink the stack in waves so both the free list and fresh nodes are used.
        let wave = (i / 50) % 3;
        if wave == 0 || (wave == 1 && i % 2 == 0) {
            handle.push(i);
            model.push(i);
        } else if i % 5 == 0 {
            stack.push_with(i, &plain);
            model.push(i);
        } else {
            assert_eq!(handle.pop(), model.pop());
        }
        if i % 64 == 0 {
            // Let the collector run the batch deferrals.
            plain.pin().flush();
        }
    }
    while let Some(v) = model.pop() {
        assert_eq!(stack.pop_with(&plain), Some(v));
    }
    assert_eq!(handle.pop(), None);
}

/// Values pushed and popped through handles on several threads are all seen exactly once, and
/// every value is dropped exactly once (popped, left in the stack, or after recycling).
#[test]
fn handles_concurrent_exactly_once_and_drops() {
    let per_thread = stress(100_000 / 4, 40);
    let log = Arc::new(DropLog::default());
    let stack = Arc::new(TreiberStack::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let stack = Arc::clone(&stack);
            let log = Arc::clone(&log);
            let seen = Arc::clone(&seen);
            thread::spawn(move || {
                let mut handle = stack.handle();
                let mut popped = Vec::new();
                for i in 0..per_thread {
                    handle.push(log.track(t * per_thread + i));
                    // Odd threads pop twice per push (they drain what even threads leave).
                    for _ in 0..1 + t % 2 {
                        if let Some(v) = handle.pop() {
                            popped.push(v.id);
                        }
                    }
                }
                seen.lock().unwrap().extend(popped);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut seen = std::mem::take(&mut *seen.lock().unwrap());
    {
        let mut handle = stack.handle();
        while let Some(v) = handle.pop() {
            seen.push(v.id);
        }
    }
    seen.sort_unstable();
    assert_eq!(seen.len(), THREADS * per_thread);
    assert!(
        seen.iter().enumerate().all(|(i, &v)| i == v),
        "lost or duplicated values"
    );
    drop(stack);
    let counts = log.counts();
    assert!(
        counts.iter().all(|&c| c == 1),
        "a value was dropped twice or never"
    );
}

/// A handle dropped with nodes in every state (free, retiring, in flight) and values left in the
/// stack: the stack still drops each remaining value once.
#[test]
fn handle_dropped_mid_way() {
    let log = Arc::new(DropLog::default());
    let stack = TreiberStack::new();
    let n = 200;
    {
        let mut handle = stack.handle();
        for i in 0..n {
            handle.push(log.track(i));
        }
        for _ in 0..n / 2 {
            drop(handle.pop());
        }
        stack.register().pin().flush();
        for _ in 0..n / 4 {
            let t = handle.pop().unwrap();
            handle.push(t);
        }
    }
    drop(stack);
    let counts = log.counts();
    assert_eq!(counts.len(), n);
    assert!(counts.iter().all(|&c| c == 1), "drop counts: {counts:?}");
}
