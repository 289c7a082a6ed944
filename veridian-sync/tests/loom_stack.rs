//! loom models of `TreiberStack`.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p veridian-sync --release --test loom_stack`
//! (exhaustive, no preemption bound, about a second). That checks the stack's own protocol (see
//! "What is checked") with crossbeam-epoch's reclamation running for real underneath.
//!
//! For the full model, where crossbeam-epoch's own atomics are modelled too and nodes are
//! reclaimed while the other threads still run, add crossbeam's loom switch (then preemption
//! bound 1 and one schedule by default, 30-55 s per model on a 2-core machine; see [`model`]):
//! `RUSTFLAGS="--cfg loom --cfg crossbeam_loom" cargo test -p veridian-sync --release
//! --features crossbeam-epoch/loom --test loom_stack`.
//!
//! # What is checked
//! - The interleavings and weak-memory outcomes loom explores for two pushers and a popper, a
//!   batch push racing a push and a popper, and two poppers racing a pusher: no value lost or
//!   duplicated, LIFO order within a batch, batches atomic.
//! - The publication of a node: loom tracks the node's `value` and `next` cells (`UnsafeCell`s)
//!   and reports a read that does not happen after the pusher's write (a `Relaxed` publishing
//!   CAS or a `Relaxed` head load in `pop` fails these models).
//! - Values dropped exactly once: the values are boxes, counted on drop.
//! - The free of a node: under loom the node's destructor writes both cells, so loom reports a
//!   free that is not ordered after every read of the node (freeing at once instead of deferring
//!   fails these models). With `--cfg loom` alone, crossbeam-epoch is not modelled and loom
//!   cannot see why a deferred free is safe, so [`defer_reclamation_to_end`] holds it back until
//!   the end of the model: the frees then run after every thread is joined, and the check is
//!   trivially met. With `crossbeam_loom` the collector is modelled, the `flush` calls make it
//!   advance the epoch and run deferred frees while other threads are still pinned and reading
//!   (observed: up to two nodes freed mid-model), and loom checks those frees.
//!
//! # What is not checked
//! - With `--cfg loom` alone, crossbeam-epoch's own guarantee (no deferred free while a guard
//!   that may see the node is alive); crossbeam model-checks that itself, and the
//!   `crossbeam_loom` run checks our use of it.
//! - Longer histories: the models are two or three operations per thread.
//!
//! # Two schedules per model
//! loom's DPOR remembers only the *last* access to each atomic, so a thread that loads a
//! location and then stores to it hides an earlier load by another thread: when the reader runs
//! first, loom may never try the writer first. Every model therefore runs twice, once with the
//! main thread's part first and once with the main thread yielding so the spawned threads run
//! first (`main_yields`); under `crossbeam_loom` only the second, for time.

#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering};

use loom::sync::Arc;
use loom::thread;
use veridian_sync::stack::TreiberStack;

/// Counts drops of one model run's values (a plain `std` atomic: loom runs its threads on one
/// OS thread, and the count is not part of what is being checked).
#[derive(Clone, Default)]
struct Drops(std::sync::Arc<AtomicUsize>);

impl Drops {
    fn value(&self, v: usize) -> Value {
        Value(Box::new(v), self.clone())
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// A heap value whose drops are counted: a double drop is a double free *and* a count mismatch.
struct Value(Box<usize>, Drops);

impl Drop for Value {
    fn drop(&mut self) {
        (self.1).0.fetch_add(1, Ordering::Relaxed);
    }
}

/// With `--cfg loom` alone, crossbeam-epoch's atomics are real, not loom's: loom cannot see the
/// synchronisation that makes a deferred free safe and would report every free that runs while
/// the model is still going as a race. So pin a guard for the whole model run: the global epoch
/// cannot advance twice past it, no deferred free runs until it is dropped at the end of the
/// model (after every thread is joined), and reclamation is effectively deferred to the end.
/// With `--cfg crossbeam_loom` the collector is modelled and reclamation stays live.
fn defer_reclamation_to_end<T>(stack: &TreiberStack<T>) -> Option<crossbeam_epoch::Guard> {
    // The guard keeps its participant registered after the handle is dropped.
    (!cfg!(crossbeam_loom)).then(|| stack.register().pin())
}

/// Runs `f` under loom twice: with the main thread's part first (`main_yields == false`) and
/// with the main thread yielding first (see "Two schedules per model"); only the second with
/// `crossbeam_loom`.
fn model(f: impl Fn(bool) + Sync + Send + 'static) {
    let f = std::sync::Arc::new(f);
    // With the collector modelled, every pin, unpin and collection adds loom operations: one
    // schedule (spawned threads first) with preemption bound 1 keeps each model under a minute
    // in release (both schedules take 50-90 s, bound 2 takes many minutes). Without
    // `crossbeam_loom` the models are small: both schedules, no preemption bound.
    let schedules: &[bool] = if cfg!(crossbeam_loom) {
        &[true]
    } else {
        &[false, true]
    };
    for &main_yields in schedules {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() && cfg!(crossbeam_loom) {
            builder.preemption_bound = Some(1);
        }
        let f = std::sync::Arc::clone(&f);
        builder.check(move || f(main_yields));
    }
}

/// Lets the spawned threads run before the main thread's part (see "Two schedules per model").
fn maybe_yield(main_yields: bool) {
    if main_yields {
        thread::yield_now();
    }
}

/// Two pushers and a popper; everything pushed is popped exactly once (by the popper or the
/// final drain), and each value is dropped exactly once.
#[test]
fn two_pushers_one_popper() {
    model(|main_yields| {
        let drops = Drops::default();
        let stack = Arc::new(TreiberStack::new());
        let deferred = defer_reclamation_to_end(&stack);
        let pushers: Vec<_> = (0..2)
            .map(|t| {
                let stack = Arc::clone(&stack);
                let drops = drops.clone();
                thread::spawn(move || {
                    let handle = stack.register();
                    stack.push(drops.value(t), &handle.pin());
                })
            })
            .collect();
        maybe_yield(main_yields);
        let handle = stack.register();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let guard = handle.pin();
            if let Some(v) = stack.pop(&guard) {
                seen.push(*v.0);
            }
            guard.flush();
        }
        for p in pushers {
            p.join().unwrap();
        }
        while let Some(v) = stack.pop(&handle.pin()) {
            seen.push(*v.0);
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1]);
        drop(handle);
        drop(stack);
        drop(deferred);
        assert_eq!(drops.count(), 2);
    });
}

/// A batch push races with a single push and a popper: the batch appears atomically (the popper
/// never sees its bottom value before its top one) and nothing is lost.
#[test]
fn batch_push_is_atomic() {
    model(|main_yields| {
        let drops = Drops::default();
        let stack = Arc::new(TreiberStack::new());
        let deferred = defer_reclamation_to_end(&stack);
        let batch = {
            let stack = Arc::clone(&stack);
            let drops = drops.clone();
            thread::spawn(move || {
                let handle = stack.register();
                stack.push_batch([drops.value(1), drops.value(2)], &handle.pin());
            })
        };
        let single = {
            let stack = Arc::clone(&stack);
            let drops = drops.clone();
            thread::spawn(move || {
                let handle = stack.register();
                stack.push(drops.value(9), &handle.pin());
            })
        };
        maybe_yield(main_yields);
        let handle = stack.register();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let guard = handle.pin();
            if let Some(v) = stack.pop(&guard) {
                seen.push(*v.0);
            }
            guard.flush();
        }
        // Among the batch, 2 (pushed last, on top) comes out before 1.
        let batch_order: Vec<_> = seen.iter().filter(|&&v| v != 9).collect();
        assert!(batch_order.is_empty() || batch_order[0] == &2, "{seen:?}");
        batch.join().unwrap();
        single.join().unwrap();
        while let Some(v) = stack.pop(&handle.pin()) {
            seen.push(*v.0);
        }
        seen.sort_unstable();
        assert_eq!(seen, [1, 2, 9]);
        drop(handle);
        drop(stack);
        drop(deferred);
        assert_eq!(drops.count(), 3);
    });
}

/// Two poppers race for the same nodes while a pusher adds one more: no value is popped twice,
/// and nodes freed by one popper are not read by the other afterwards (checked by loom's cell
/// tracking when the collector is modelled).
#[test]
fn two_poppers_one_pusher() {
    model(|main_yields| {
        let drops = Drops::default();
        let stack = Arc::new(TreiberStack::new());
        let deferred = defer_reclamation_to_end(&stack);
        {
            let handle = stack.register();
            stack.push_batch([drops.value(0), drops.value(1)], &handle.pin());
        }
        let popper = {
            let stack = Arc::clone(&stack);
            thread::spawn(move || {
                let handle = stack.register();
                let guard = handle.pin();
                let v = stack.pop(&guard).map(|v| *v.0);
                guard.flush();
                v
            })
        };
        let pusher = {
            let stack = Arc::clone(&stack);
            let drops = drops.clone();
            thread::spawn(move || {
                let handle = stack.register();
                stack.push(drops.value(2), &handle.pin());
            })
        };
        maybe_yield(main_yields);
        let handle = stack.register();
        let mut seen = Vec::new();
        {
            let guard = handle.pin();
            seen.extend(stack.pop(&guard).map(|v| *v.0));
            guard.flush();
        }
        seen.extend(popper.join().unwrap());
        pusher.join().unwrap();
        while let Some(v) = stack.pop(&handle.pin()) {
            seen.push(*v.0);
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2]);
        drop(handle);
        drop(stack);
        drop(deferred);
        assert_eq!(drops.count(), 3);
    });
}

/// `StackHandle` (node recycling; a retire batch is one node under loom): a thread pushes, pops
/// and pushes again through its handle, so its second push may reuse the node it popped, while
/// the main thread pops and pushes through its own handle. Every value is seen exactly once and
/// dropped exactly once; loom checks the reused node's cells are written only after every read
/// of its previous life (with `crossbeam_loom`, where batches become ready mid-model).
#[test]
fn handles_recycle_nodes() {
    model(|main_yields| {
        let drops = Drops::default();
        let stack = Arc::new(TreiberStack::new());
        let deferred = defer_reclamation_to_end(&stack);
        let worker = {
            let stack = Arc::clone(&stack);
            let drops = drops.clone();
            thread::spawn(move || {
                let mut handle = stack.handle();
                let mut seen = Vec::new();
                handle.push(drops.value(0));
                if let Some(v) = handle.pop() {
                    seen.push(*v.0);
                }
                handle.push(drops.value(1));
                seen
            })
        };
        maybe_yield(main_yields);
        let mut seen = Vec::new();
        {
            let mut handle = stack.handle();
            if let Some(v) = handle.pop() {
                seen.push(*v.0);
            }
            handle.push(drops.value(2));
        }
        seen.extend(worker.join().unwrap());
        {
            let mut handle = stack.handle();
            while let Some(v) = handle.pop() {
                seen.push(*v.0);
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2]);
        drop(deferred);
        drop(stack);
        assert_eq!(drops.count(), 3);
    });
}
