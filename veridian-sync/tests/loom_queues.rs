//! loom models of the bounded MPMC queue and the SPSC ring.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p veridian-sync --release --test loom_queues`.
//! Models use a preemption bound of 3 (2 for the 2×2 MPMC model, which takes minutes at 3)
//! unless `LOOM_MAX_PREEMPTIONS` is set.
//!
//! What is checked, in every interleaving and weak-memory outcome loom models: values neither
//! lost nor duplicated, FIFO order, full/empty answers consistent with what the other side has
//! done, and, through loom's `UnsafeCell` tracking of every slot, that each slot write happens
//! before the read of it and each read before the next lap's write (the `Acquire`/`Release`
//! pairs on the sequence numbers and counters). Capacity 2 with more values than slots makes
//! every model wrap around the ring. Values are boxes counted on drop, so a double drop or a
//! leak in the structures' `Drop` shows.

//!
//! # Two schedules per model
//! loom's DPOR remembers only the *last* access to each atomic, so a thread that loads a
//! location and then stores to it hides an earlier load by another thread: when the reader runs
//! first, loom may never try the writer first (a push and a pop on one slot came out as a
//! single execution). Every model therefore runs twice, once with the main thread's part first
//! and once with the main thread yielding so the spawned threads run first (`main_yields`).

#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering};

use loom::sync::Arc;
use loom::thread;
use veridian_sync::mpmc::ArrayQueue;
use veridian_sync::spsc;

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

/// A heap value whose drops are counted.
#[derive(Debug)]
struct Value(Box<usize>, Drops);

impl Drop for Value {
    fn drop(&mut self) {
        (self.1).0.fetch_add(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Drops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Drops")
    }
}

/// Runs `f` under loom twice: with the main thread's part first (`main_yields == false`) and
/// with the main thread yielding first (see "Two schedules per model").
fn model(preemptions: usize, f: impl Fn(bool) + Sync + Send + 'static) {
    let f = std::sync::Arc::new(f);
    for main_yields in [false, true] {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(preemptions);
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

/// Tries to push `value` up to `tries` times, yielding to the other threads in between; gives
/// the value back if the queue stayed full.
///
/// Retries are bounded on purpose: with two threads spinning (a producer on "full", the consumer
/// on "empty") loom also explores the unfair schedules where they only ever yield to each other
/// while the thread whose push is in flight never runs again, and such a path never ends.
fn push_tries(q: &ArrayQueue<Value>, mut value: Value, tries: usize) -> Result<(), Value> {
    for _ in 1..tries {
        match q.push(value) {
            Ok(()) => return Ok(()),
            Err(back) => value = back,
        }
        thread::yield_now();
    }
    q.push(value)
}

/// Tries to pop up to `tries` times, yielding in between (bounded for the same reason).
fn pop_tries(q: &ArrayQueue<Value>, tries: usize) -> Option<usize> {
    for _ in 1..tries {
        if let Some(v) = q.pop() {
            return Some(*v.0);
        }
        thread::yield_now();
    }
    q.pop().map(|v| *v.0)
}

/// Two producers and one consumer on a 2-slot queue whose counters start one lap in (so the
/// pushes wrap around the ring); three values for two slots, so pushes can meet a full queue.
/// Every value is given back by `push` or popped exactly once, in FIFO order per producer.
#[test]
fn mpmc_two_producers_one_consumer_wrap() {
    model(3, |main_yields| {
        let drops = Drops::default();
        let q = Arc::new(ArrayQueue::new(2));
        // Move the counters to position 1: the next pushes use slots 1, 0, 1.
        q.push(drops.value(100)).unwrap();
        assert_eq!(q.pop().map(|v| *v.0), Some(100));
        let producers: Vec<_> = [vec![0, 1], vec![10]]
            .into_iter()
            .map(|values| {
                let q = Arc::clone(&q);
                let drops = drops.clone();
                thread::spawn(move || {
                    values
                        .into_iter()
                        .filter_map(|v| push_tries(&q, drops.value(v), 2).err().map(|b| *b.0))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        maybe_yield(main_yields);
        let mut popped: Vec<usize> = (0..3).filter_map(|_| pop_tries(&q, 2)).collect();
        let mut rejected = Vec::new();
        for p in producers {
            rejected.extend(p.join().unwrap());
        }
        while let Some(v) = q.pop() {
            popped.push(*v.0);
        }
        // Producer 0's values in its push order.
        let zero_one: Vec<_> = popped.iter().filter(|&&v| v < 10).collect();
        assert!(zero_one.windows(2).all(|w| w[0] < w[1]), "{popped:?}");
        let mut all = [popped, rejected].concat();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 10]);
        drop(q);
        assert_eq!(drops.count(), 4);
    });
}

/// Two producers and two consumers on a 2-slot queue. The counters start one lap in
/// (wrap-around). Each producer pushes two values without retrying, so pushes may meet a full
/// queue: every value is then either given back by `push` or popped exactly once (by a consumer
/// or the final drain). Leftovers are dropped by the queue.
#[test]
fn mpmc_two_by_two() {
    model(2, |main_yields| {
        let drops = Drops::default();
        let q = Arc::new(ArrayQueue::new(2));
        q.push(drops.value(100)).unwrap();
        assert_eq!(q.pop().map(|v| *v.0), Some(100));
        let producers: Vec<_> = (0..2)
            .map(|t| {
                let q = Arc::clone(&q);
                let drops = drops.clone();
                thread::spawn(move || {
                    [t, 10 + t]
                        .into_iter()
                        .filter_map(|v| q.push(drops.value(v)).err().map(|back| *back.0))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let consumer = {
            let q = Arc::clone(&q);
            thread::spawn(move || q.pop().map(|v| *v.0))
        };
        maybe_yield(main_yields);
        let mut seen: Vec<usize> = q.pop().map(|v| *v.0).into_iter().collect();
        let mut rejected = Vec::new();
        for p in producers {
            rejected.extend(p.join().unwrap());
        }
        seen.extend(consumer.join().unwrap());
        assert!(q.len() <= 2);
        while let Some(v) = q.pop() {
            seen.push(*v.0);
        }
        // At most two values are in the queue before any pop, so at most two are rejected.
        assert!(
            rejected.len() <= 2 && seen.len() >= 2,
            "{seen:?} {rejected:?}"
        );
        let mut all = [seen, rejected].concat();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 10, 11]);
        drop(q);
        assert_eq!(drops.count(), 5);
    });
}

/// The queue is dropped with values still inside, after concurrent pushes: each is dropped once,
/// and loom checks the drop's slot accesses against the pushes' writes.
#[test]
fn mpmc_drop_with_values_inside() {
    model(3, |main_yields| {
        let drops = Drops::default();
        let q = Arc::new(ArrayQueue::new(2));
        let producer = {
            let q = Arc::clone(&q);
            let drops = drops.clone();
            thread::spawn(move || {
                drop(q.push(drops.value(1)));
                drop(q.push(drops.value(2)));
            })
        };
        maybe_yield(main_yields);
        let got = q.pop().map(|v| *v.0);
        assert!(matches!(got, None | Some(1)));
        producer.join().unwrap();
        drop(q);
        assert_eq!(drops.count(), 2);
    });
}

/// Producer pushes 0..5 one by one into a 2-slot ring (wrapping twice), consumer pops them one
/// by one: exactly `0..5` in order.
#[test]
fn spsc_single_ops_wrap() {
    model(3, |main_yields| {
        let (mut tx, mut rx) = spsc::channel::<usize>(2);
        let producer = thread::spawn(move || {
            for i in 0..5 {
                let mut v = i;
                while let Err(back) = tx.push(v) {
                    v = back;
                    thread::yield_now();
                }
            }
        });
        maybe_yield(main_yields);
        for i in 0..5 {
            let v = loop {
                if let Some(v) = rx.pop() {
                    break v;
                }
                thread::yield_now();
            };
            assert_eq!(v, i);
        }
        producer.join().unwrap();
        assert_eq!(rx.pop(), None);
    });
}

/// Batch operations across the wrap: the producer pushes 0..5 with `push_iter`/`push_slice`,
/// the consumer takes them with `pop_batch`/`pop_into`; order and count are exact.
#[test]
fn spsc_batch_ops_wrap() {
    model(3, |main_yields| {
        let (mut tx, mut rx) = spsc::channel::<usize>(2);
        let producer = thread::spawn(move || {
            let mut next = 0;
            let mut round = 0;
            while next < 5 {
                let end = (next + 3).min(5);
                let pushed = if round % 2 == 0 {
                    tx.push_iter(next..end)
                } else {
                    tx.push_slice(&(next..end).collect::<Vec<_>>())
                };
                next += pushed;
                round += 1;
                if pushed == 0 {
                    thread::yield_now();
                }
            }
        });
        maybe_yield(main_yields);
        let mut got = Vec::new();
        let mut round = 0;
        while got.len() < 5 {
            let n = if round % 2 == 0 {
                rx.pop_batch(3, |v| got.push(v))
            } else {
                let mut out = [std::mem::MaybeUninit::uninit(); 2];
                let n = rx.pop_into(&mut out);
                // SAFETY: `pop_into` initialised `out[..n]`.
                got.extend(out[..n].iter().map(|v| unsafe { v.assume_init() }));
                n
            };
            round += 1;
            if n == 0 {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(got, [0, 1, 2, 3, 4]);
    });
}

/// Each side drops its handle on its own thread with values still in the ring: the last drop
/// (whichever it is) drops the leftovers exactly once, and loom checks it against both sides'
/// slot accesses.
#[test]
fn spsc_drop_handles_on_both_threads() {
    model(3, |main_yields| {
        let drops = Drops::default();
        let (mut tx, mut rx) = spsc::channel::<Value>(2);
        let producer = {
            let drops = drops.clone();
            move || {
                drop(tx.push(drops.value(0)));
                let _pushed = tx.push_iter([drops.value(1), drops.value(2)]);
                drop(tx); // on this thread, explicitly
            }
        };
        let consumer = move || {
            let first = rx.pop().map(|v| *v.0);
            assert!(matches!(first, None | Some(0)));
            drop(rx);
        };
        // Both spawn orders (no main-thread part here).
        let threads = if main_yields {
            let c = thread::spawn(consumer);
            [thread::spawn(producer), c]
        } else {
            let p = thread::spawn(producer);
            [p, thread::spawn(consumer)]
        };
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(drops.count(), 3);
    });
}
