//! `BatchProcessor`: flush on size, on `flush`, on drop and on time (fake clock); processors
//! that take part of a batch; panics in the processor (no item lost, the rest stays queued);
//! proptest that every pushed item is processed exactly once and in order.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

use proptest::prelude::*;
use veridian_io::batch_processor::{
    BatchError, BatchProcessor, Clock, MonotonicClock, drain_in_order,
};

/// A clock the test moves by hand.
#[derive(Default)]
struct FakeClock(Cell<u64>);

impl FakeClock {
    fn advance(&self, ns: u64) {
        self.0.set(self.0.get() + ns);
    }
}

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        self.0.get()
    }
}

/// Every batch the processor saw.
type Batches = RefCell<Vec<Vec<u32>>>;

fn take_all(batches: &Batches) -> impl FnMut(&mut Vec<u32>) + '_ {
    move |batch: &mut Vec<u32>| batches.borrow_mut().push(std::mem::take(batch))
}

#[test]
fn zero_batch_is_an_error() {
    let r = BatchProcessor::new(0, |_: &mut Vec<u8>| {});
    assert_eq!(r.err(), Some(BatchError::ZeroBatch));
    let r = BatchProcessor::new(usize::MAX, |_: &mut Vec<u64>| {});
    assert_eq!(r.err(), Some(BatchError::OutOfMemory));
}

#[test]
fn flushes_on_size() {
    let batches = Batches::default();
    let mut b = BatchProcessor::new(4, take_all(&batches)).unwrap();
    let mut taken = Vec::new();
    for x in 0..10 {
        taken.push(b.push(x));
    }
    assert_eq!(taken, [0, 0, 0, 4, 0, 0, 0, 4, 0, 0]);
    assert_eq!(*batches.borrow(), [vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
    assert_eq!(b.queued(), [8, 9]);
    let s = b.stats();
    assert_eq!(
        (s.pushed, s.calls, s.processed, s.size_flushes),
        (10, 2, 8, 2)
    );
    assert_eq!(b.take_queued(), [8, 9]);
}

#[test]
fn explicit_flush_and_empty_flush() {
    let batches = Batches::default();
    let mut b = BatchProcessor::new(100, take_all(&batches)).unwrap();
    assert_eq!(b.flush(), 0);
    assert!(batches.borrow().is_empty(), "no call on an empty queue");
    b.push(1);
    b.push(2);
    assert_eq!(b.flush(), 2);
    assert!(b.is_empty());
    b.push(3);
    assert_eq!(b.flush(), 1);
    assert_eq!(*batches.borrow(), [vec![1, 2], vec![3]]);
    assert_eq!(b.stats().calls, 2);
}

#[test]
fn drop_flushes_everything() {
    let batches = Batches::default();
    {
        let mut b = BatchProcessor::new(3, take_all(&batches)).unwrap();
        for x in 0..5 {
            b.push(x);
        }
    }
    assert_eq!(*batches.borrow(), [vec![0, 1, 2], vec![3, 4]]);
}

#[test]
fn drop_keeps_calling_a_processor_that_takes_part() {
    let seen = RefCell::new(Vec::new());
    {
        let mut b = BatchProcessor::new(10, |batch: &mut Vec<u32>| {
            // Takes at most two items per call (a device with two free slots).
            let n = batch.len().min(2);
            seen.borrow_mut().extend(batch.drain(..n));
        })
        .unwrap();
        for x in 0..7 {
            b.push(x);
        }
        assert_eq!(b.flush(), 2);
        assert_eq!(
            b.queued(),
            [2, 3, 4, 5, 6],
            "the rest stays queued in order"
        );
    }
    assert_eq!(*seen.borrow(), [0, 1, 2, 3, 4, 5, 6]);
}

/// Counts its drops.
struct Tracked(u32, Rc<Cell<u32>>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.1.set(self.1.get() + 1);
    }
}

#[test]
fn refused_items_come_back_from_finish_or_are_dropped_on_drop() {
    let drops = Rc::new(Cell::new(0));
    let mut b = BatchProcessor::new(10, |_: &mut Vec<Tracked>| {}).unwrap();
    for x in 0..3 {
        b.push(Tracked(x, Rc::clone(&drops)));
    }
    let left = b.finish();
    assert_eq!(left.iter().map(|t| t.0).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(drops.get(), 0);
    drop(left);
    assert_eq!(drops.get(), 3);

    let calls = Cell::new(0);
    let mut b = BatchProcessor::new(10, |_: &mut Vec<Tracked>| calls.set(calls.get() + 1)).unwrap();
    b.push(Tracked(9, Rc::clone(&drops)));
    drop(b);
    assert_eq!(calls.get(), 1, "drop offers the items once more");
    assert_eq!(drops.get(), 4, "then drops what the processor refused");
}

#[test]
fn time_bound_with_a_fake_clock() {
    let clock = FakeClock::default();
    let batches = Batches::default();
    let mut b = BatchProcessor::with_time_bound(100, 10, &clock, take_all(&batches)).unwrap();
    assert_eq!(b.deadline_ns(), None);
    assert_eq!(b.poll(), 0);
    clock.advance(5);
    b.push(1); // oldest arrives at 5
    assert_eq!(b.deadline_ns(), Some(15));
    clock.advance(9);
    assert_eq!(b.push(2), 0, "oldest is 9 ns old");
    assert_eq!(b.poll(), 0);
    clock.advance(1);
    assert_eq!(b.poll(), 2, "oldest is 10 ns old: flushed without a push");
    assert_eq!(b.deadline_ns(), None);
    b.push(3); // at 15
    clock.advance(20);
    assert_eq!(
        b.push(4),
        2,
        "push flushes when the oldest is past the bound"
    );
    assert_eq!(*batches.borrow(), [vec![1, 2], vec![3, 4]]);
    let s = b.stats();
    assert_eq!((s.time_flushes, s.size_flushes), (2, 0));
    // The size bound still applies with a clock.
    let mut c = BatchProcessor::with_time_bound(2, u64::MAX, &clock, take_all(&batches)).unwrap();
    c.push(5);
    assert_eq!(c.push(6), 2);
    assert_eq!(c.deadline_ns(), None);
    c.push(7);
    assert_eq!(c.deadline_ns(), Some(u64::MAX), "saturates");
}

#[test]
fn time_bound_is_kept_early_after_a_partial_flush() {
    let clock = FakeClock::default();
    let seen = RefCell::new(Vec::new());
    let mut b = BatchProcessor::with_time_bound(100, 10, &clock, |batch: &mut Vec<u32>| {
        seen.borrow_mut().push(batch.remove(0));
    })
    .unwrap();
    b.push(1); // at 0
    clock.advance(8);
    b.push(2); // at 8
    clock.advance(2);
    assert_eq!(b.poll(), 1);
    // Item 2 arrived at 8, but the age is still measured from 0: the next poll flushes.
    assert_eq!(b.deadline_ns(), Some(10));
    assert_eq!(b.poll(), 1);
    assert_eq!(*seen.borrow(), [1, 2]);
    assert_eq!(b.deadline_ns(), None);
}

#[test]
fn monotonic_clock_runs_forward() {
    let clock = MonotonicClock::new();
    let a = clock.now_ns();
    let b = clock.now_ns();
    assert!(b >= a);
    let mut p = BatchProcessor::with_time_bound(8, 0, clock, |b: &mut Vec<u8>| b.clear()).unwrap();
    assert_eq!(p.push(1), 1, "a zero time bound flushes on every push");
}

#[test]
fn panic_in_the_processor_loses_nothing() {
    let seen = RefCell::new(Vec::new());
    let poison = Cell::new(Some(5u32));
    let mut b = BatchProcessor::new(8, |batch: &mut Vec<u32>| {
        drain_in_order(batch, |x| {
            seen.borrow_mut().push(x);
            if poison.get() == Some(x) {
                poison.set(None);
                panic!("processor panics on {x} (test)");
            }
        })
    })
    .unwrap();
    for x in 0..7 {
        b.push(x);
    }
    let r = catch_unwind(AssertUnwindSafe(|| b.push(7)));
    assert!(r.is_err());
    assert_eq!(*seen.borrow(), [0, 1, 2, 3, 4, 5]);
    assert_eq!(
        b.queued(),
        [6, 7],
        "items not handed over stay queued, in order"
    );
    let s = b.stats();
    assert_eq!((s.calls, s.processed, s.panics), (1, 6, 1));
    b.push(8);
    assert_eq!(b.flush(), 3);
    assert_eq!(
        *seen.borrow(),
        (0..9).collect::<Vec<_>>(),
        "exactly once, in order"
    );
    assert_eq!(b.stats().panics, 1);
}

#[test]
fn panic_with_vec_drain_keeps_what_the_processor_left() {
    // A processor that panics before touching the batch leaves all of it queued.
    let mut b = BatchProcessor::new(3, |batch: &mut Vec<u32>| {
        if batch.len() == 3 {
            panic!("refuses full batches (test)");
        }
        batch.clear();
    })
    .unwrap();
    b.push(1);
    b.push(2);
    assert!(catch_unwind(AssertUnwindSafe(|| b.push(3))).is_err());
    assert_eq!(b.queued(), [1, 2, 3]);
    assert_eq!(b.take_queued(), [1, 2, 3]);
    assert_eq!(b.stats().processed, 0);
}

#[test]
fn drop_after_a_panic_does_not_call_the_processor_again() {
    let calls = Rc::new(Cell::new(0));
    let drops = Rc::new(Cell::new(0));
    // The batch processor lives inside the panicking closure: unwinding drops it. Calling the
    // processor again there would panic during unwinding and abort.
    let r = catch_unwind(AssertUnwindSafe(|| {
        let calls = Rc::clone(&calls);
        let mut b = BatchProcessor::new(2, move |_: &mut Vec<Tracked>| {
            calls.set(calls.get() + 1);
            panic!("always panics (test)");
        })
        .unwrap();
        b.push(Tracked(0, Rc::clone(&drops)));
        b.push(Tracked(1, Rc::clone(&drops)));
    }));
    assert!(r.is_err());
    assert_eq!(calls.get(), 1);
    assert_eq!(drops.get(), 2, "the queued items were dropped with it");

    // Outside an unwinding, a processor that panicked last time is not called by drop either.
    let calls2 = Cell::new(0);
    let mut b = BatchProcessor::new(2, |_: &mut Vec<u32>| {
        calls2.set(calls2.get() + 1);
        panic!("always panics (test)");
    })
    .unwrap();
    b.push(0);
    assert!(catch_unwind(AssertUnwindSafe(|| b.push(1))).is_err());
    drop(b);
    assert_eq!(calls2.get(), 1);
}

#[derive(Debug, Clone)]
enum Op {
    Push,
    Flush,
    Poll,
    Advance(u64),
    /// The processor's next call takes at most this many items.
    Limit(usize),
    /// The processor's next call panics after handing over this many items.
    PanicAfter(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => Just(Op::Push),
        1 => Just(Op::Flush),
        1 => Just(Op::Poll),
        2 => (0u64..30).prop_map(Op::Advance),
        1 => (0usize..5).prop_map(Op::Limit),
        1 => (0usize..5).prop_map(Op::PanicAfter),
    ]
}

proptest! {
    #[test]
    fn every_item_processed_exactly_once_in_order(
        max_batch in 1usize..10,
        max_age in 0u64..50,
        ops in prop::collection::vec(op(), 0..200),
    ) {
        let clock = FakeClock::default();
        let seen = RefCell::new(Vec::new());
        let limit = Cell::new(usize::MAX);
        let panic_after = Cell::new(None::<usize>);
        let refused = Cell::new(false);
        let mut pushed = 0u32;
        {
            let mut b = BatchProcessor::with_time_bound(max_batch, max_age, &clock, |batch: &mut Vec<u32>| {
                let limit = limit.replace(usize::MAX);
                let panic_at = panic_after.take();
                if limit >= batch.len() {
                    // Takes everything through `drain_in_order`; a panic leaves the items not
                    // yet handed over (the one in hand was recorded: it was delivered).
                    let mut handed = 0;
                    drain_in_order(batch, |x| {
                        seen.borrow_mut().push(x);
                        handed += 1;
                        if panic_at == Some(handed) {
                            batch_panic();
                        }
                    });
                } else {
                    refused.set(true);
                    // Takes `limit` items by index, removing what it handled before it panics.
                    for i in 0..limit {
                        if panic_at == Some(i) {
                            batch.drain(..i);
                            batch_panic();
                        }
                        seen.borrow_mut().push(batch[i]);
                    }
                    batch.drain(..limit);
                }
            })
            .unwrap();
            for op in &ops {
                refused.set(false);
                let r = catch_unwind(AssertUnwindSafe(|| match op {
                    Op::Push => {
                        b.push(pushed);
                    }
                    Op::Flush => {
                        b.flush();
                    }
                    Op::Poll => {
                        b.poll();
                    }
                    Op::Advance(dt) => clock.advance(*dt),
                    Op::Limit(k) => limit.set(*k),
                    Op::PanicAfter(k) => panic_after.set(Some(*k)),
                }));
                if matches!(op, Op::Push) {
                    pushed += 1;
                }
                // The time bound: after a push or poll that returned, and in which the
                // processor took all it was offered, the oldest item is younger than the bound.
                if r.is_ok() && matches!(op, Op::Push | Op::Poll) && !refused.get() {
                    prop_assert!(b.deadline_ns().is_none_or(|d| d > clock.now_ns()));
                }
                let seen = seen.borrow();
                // Processed items are exactly a prefix of the pushed ones, and the queue holds
                // the rest, in order.
                let expected: Vec<u32> = (0..pushed).collect();
                prop_assert_eq!(&seen[..], &expected[..seen.len()]);
                prop_assert_eq!(b.queued(), &expected[seen.len()..]);
                let s = b.stats();
                prop_assert_eq!(s.processed, seen.len() as u64);
                prop_assert_eq!(s.pushed, u64::from(pushed));
                // The size bound: a push that fills the queue calls the processor.
                if matches!(op, Op::Push) && b.len() >= max_batch {
                    prop_assert!(s.size_flushes > 0);
                }
            }
            // `finish` would hand back refusals; here the processor takes everything at the
            // end unless its last call panicked.
            limit.set(usize::MAX);
            panic_after.set(None);
            b.flush();
        }
        let expected: Vec<u32> = (0..pushed).collect();
        prop_assert_eq!(&*seen.borrow(), &expected);
    }
}

fn batch_panic() -> ! {
    panic!("processor panics (test)");
}
