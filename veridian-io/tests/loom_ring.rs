//! loom model of the SPSC ring (the real code, through `src/primitives.rs`).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release -p veridian-io --test loom_ring`.
//!
//! Checked in every interleaving and weak-memory outcome loom explores (preemption bound 3
//! unless `LOOM_MAX_PREEMPTIONS` is set): values neither lost nor duplicated, FIFO order,
//! full/empty answers consistent with the other side, and, through loom's tracking of every
//! slot's `UnsafeCell`, that each slot write happens before its read and each read before the
//! next lap's write (the `Release`/`Acquire` pairs on `tail` and `head`). Capacity 2 with more
//! values than slots makes every model wrap around the ring; one model also starts the
//! counters just below `usize::MAX` so they wrap too.
//!
//! loom's DPOR remembers only the last access to each atomic, so each model runs twice: once
//! with the main thread's part first, once with it yielding so the spawned thread runs first.

#![cfg(loom)]

use loom::thread;
use veridian_io::ring::{OverflowProducer, Ring};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Producer pushes 3 values one by one into 2 slots; consumer pops until it has all 3.
fn single_ops(start: usize, main_yields: bool) {
    model(move || {
        let (mut tx, mut rx) = Ring::with_start(2, start).unwrap().split();
        let producer = thread::spawn(move || {
            let mut next = 0u32;
            while next < 3 {
                if tx.push(next).is_ok() {
                    next += 1;
                } else {
                    thread::yield_now();
                }
            }
        });
        if main_yields {
            thread::yield_now();
        }
        let mut expected = 0u32;
        while expected < 3 {
            match rx.pop() {
                Some(v) => {
                    assert_eq!(v, expected);
                    expected += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(rx.pop(), None);
    });
}

#[test]
fn single_ops_wrap_slots() {
    single_ops(0, false);
    single_ops(0, true);
}

#[test]
fn single_ops_wrap_counters() {
    single_ops(usize::MAX - 1, false);
    single_ops(usize::MAX - 1, true);
}

/// Batch push and batch pop across the wrap.
fn batches(main_yields: bool) {
    model(move || {
        let (mut tx, mut rx) = Ring::with_start(2, 1).unwrap().split();
        let producer = thread::spawn(move || {
            let mut next = 0u32;
            while next < 4 {
                let n = tx.push_iter(next..4);
                next += n as u32;
                if n == 0 {
                    thread::yield_now();
                }
            }
        });
        if main_yields {
            thread::yield_now();
        }
        let mut expected = 0u32;
        while expected < 4 {
            let n = rx.pop_batch(2, |v| {
                assert_eq!(v, expected);
                expected += 1;
            });
            if n == 0 {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
    });
}

#[test]
fn batch_push_pop_wrap() {
    batches(false);
    batches(true);
}

/// The completion side: an overflow producer never drops; the consumer sees every value once,
/// in order.
fn overflow(main_yields: bool) {
    model(move || {
        let (tx, mut rx) = Ring::new(2).unwrap().split();
        let producer = thread::spawn(move || {
            let mut tx = OverflowProducer::new(tx);
            for v in 0..3u32 {
                tx.push(v);
            }
            while tx.flush() > 0 {
                thread::yield_now();
            }
        });
        if main_yields {
            thread::yield_now();
        }
        let mut expected = 0u32;
        while expected < 3 {
            match rx.pop() {
                Some(v) => {
                    assert_eq!(v, expected);
                    expected += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
    });
}

#[test]
fn overflow_list_never_drops() {
    overflow(false);
    overflow(true);
}
