//! Ring tests: a proptest model against `VecDeque` (single, batch, full/empty edges, counter
//! wrap-around), the completion ring's overflow list (never drops, keeps order), drop counting,
//! and a two-thread stress run.

#![cfg(not(loom))]

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use veridian_io::IoError;
use veridian_io::ring::{
    self, Consumer, OverflowProducer, Producer, Pushed, Ring, SharedRing, StaticRing,
};

#[derive(Debug, Clone)]
enum Action {
    Push,
    PushIter(usize),
    Pop,
    PopBatch(usize),
}

/// One action, uniformly: the kind and a count drawn as a pair of integers and mapped, which
/// generates the same distribution as `prop_oneof!` over the four kinds; under Miri,
/// `prop_oneof!` made generation the bulk of the run (2 cases of 1..50 actions: 138 s, against
/// 7 s for plain integers).
fn action() -> impl Strategy<Value = Action> {
    (0u8..4, 0usize..12).prop_map(|(kind, n)| match kind {
        0 => Action::Push,
        1 => Action::PushIter(n),
        2 => Action::Pop,
        _ => Action::PopBatch(n),
    })
}

/// Runs `actions` on the two ends of an empty ring, checking every answer against a bounded
/// `VecDeque`.
fn run_model(
    mut tx: Producer<u32>,
    mut rx: Consumer<u32>,
    actions: Vec<Action>,
) -> Result<(), TestCaseError> {
    let cap = tx.capacity();
    let mut model: VecDeque<u32> = VecDeque::new();
    let mut next = 0u32;
    for a in actions {
        match a {
            Action::Push => {
                let r = tx.push(next);
                if model.len() < cap {
                    prop_assert!(r.is_ok());
                    model.push_back(next);
                } else {
                    prop_assert_eq!(r, Err(next));
                }
                next += 1;
            }
            Action::PushIter(n) => {
                let mut it = next..next + n as u32;
                let pushed = tx.push_iter(&mut it);
                let expect = n.min(cap - model.len());
                prop_assert_eq!(pushed, expect);
                // The iterator is not advanced beyond what fitted.
                prop_assert_eq!(it.start, next + expect as u32);
                model.extend(next..next + expect as u32);
                next += expect as u32;
            }
            Action::Pop => prop_assert_eq!(rx.pop(), model.pop_front()),
            Action::PopBatch(n) => {
                let mut got = Vec::new();
                let count = rx.pop_batch(n, |v| got.push(v));
                let expect: Vec<u32> = model.drain(..n.min(model.len())).collect();
                prop_assert_eq!(count, expect.len());
                prop_assert_eq!(got, expect);
            }
        }
        prop_assert_eq!(tx.len(), model.len());
        prop_assert_eq!(rx.len(), model.len());
        prop_assert_eq!(tx.is_full(), model.len() == cap);
        prop_assert_eq!(rx.is_empty(), model.is_empty());
    }
    Ok(())
}

/// [`run_model`] on a fresh `StaticRing<u32, N>`. `split` wants `&'static self`: the ring is
/// a box turned into a raw pointer, freed again once both ends are gone (so Miri sees no leak).
fn on_static_ring<const N: usize>(actions: Vec<Action>) -> Result<(), TestCaseError> {
    let ring: *mut StaticRing<u32, N> = Box::into_raw(Box::new(StaticRing::new()));
    // SAFETY: the box stays allocated until the end of this function, after the ends that
    // borrow it are dropped (by `run_model`, which takes them by value).
    let (tx, rx) = unsafe { &*ring }.split().unwrap();
    let capacity = tx.capacity();
    let result = run_model(tx, rx, actions);
    // SAFETY: both ends are gone and nothing else refers to the ring; it came from
    // `Box::into_raw` above.
    drop(unsafe { Box::from_raw(ring) });
    prop_assert_eq!(capacity, N);
    result
}

/// [`run_model`] on a `SharedRing<u32, N>` in zeroed memory (what a fresh shared region
/// holds), its ends taken through the raw constructors.
fn on_shared_ring<const N: usize>(actions: Vec<Action>) -> Result<(), TestCaseError> {
    // Zeroed bytes, not `SharedRing::new()`: the layout promise is that zeroes are an empty ring.
    let layout = std::alloc::Layout::new::<SharedRing<u32, N>>();
    // SAFETY: a non-zero-sized layout.
    let raw = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<SharedRing<u32, N>>();
    let ring = std::ptr::NonNull::new(raw).expect("allocation");
    // SAFETY: zeroed memory is an empty ring; it stays allocated until both ends are gone
    // (`run_model` takes them by value); one producer and one consumer.
    let (tx, rx) = unsafe { (SharedRing::producer(ring), SharedRing::consumer(ring)) };
    let capacity = tx.capacity();
    let result = run_model(tx, rx, actions);
    // SAFETY: allocated above with this layout; no end refers to it any more.
    unsafe { std::alloc::dealloc(raw.cast(), layout) };
    prop_assert_eq!(capacity, N);
    result
}

proptest! {
    /// The same model on a `SharedRing` in zeroed memory, `N` 1..=8.
    #[test]
    fn shared_ring_matches_vecdeque_model(
        log2 in 0u32..4,
        actions in proptest::collection::vec(action(), 1..200),
    ) {
        match log2 {
            0 => on_shared_ring::<1>(actions)?,
            1 => on_shared_ring::<2>(actions)?,
            2 => on_shared_ring::<4>(actions)?,
            _ => on_shared_ring::<8>(actions)?,
        }
    }

    /// Every sequence of operations behaves like a bounded `VecDeque`, also when the counters
    /// wrap around `usize::MAX` during the run.
    #[test]
    fn matches_vecdeque_model(
        capacity in 1usize..9,
        near_wrap in any::<bool>(),
        actions in proptest::collection::vec(action(), 1..200),
    ) {
        let start = if near_wrap { usize::MAX - 20 } else { 0 };
        let (tx, rx) = Ring::with_start(capacity, start).unwrap().split();
        prop_assert_eq!(tx.capacity(), capacity.next_power_of_two());
        run_model(tx, rx, actions)?;
    }

    /// The same model on a `StaticRing` (inline slots, no heap for the ring), `N` 1..=8.
    #[test]
    fn static_ring_matches_vecdeque_model(
        log2 in 0u32..4,
        actions in proptest::collection::vec(action(), 1..200),
    ) {
        match log2 {
            0 => on_static_ring::<1>(actions)?,
            1 => on_static_ring::<2>(actions)?,
            2 => on_static_ring::<4>(actions)?,
            _ => on_static_ring::<8>(actions)?,
        }
    }

    /// The overflow producer never drops and keeps push order, whatever the interleaving.
    #[test]
    fn overflow_keeps_everything_in_order(
        capacity in 1usize..5,
        steps in proptest::collection::vec((0usize..10, 0usize..10), 1..60),
    ) {
        let (tx, mut rx) = ring::channel::<u32>(capacity).unwrap();
        let mut tx = OverflowProducer::new(tx);
        let mut next = 0u32;
        let mut expected = 0u32;
        let mut overflowed = 0u64;
        for (pushes, pops) in steps {
            for _ in 0..pushes {
                if tx.push(next) == Pushed::Overflowed {
                    overflowed += 1;
                }
                next += 1;
            }
            prop_assert_eq!(rx.overflow_pending(), tx.overflow_pending());
            for _ in 0..pops {
                match rx.pop() {
                    Some(v) => {
                        prop_assert_eq!(v, expected);
                        expected += 1;
                    }
                    None => {
                        tx.flush();
                    }
                }
            }
        }
        while expected < next {
            tx.flush();
            rx.pop_batch(usize::MAX, |v| {
                assert_eq!(v, expected);
                expected += 1;
            });
        }
        prop_assert_eq!(tx.overflow_pending(), 0);
        prop_assert_eq!(rx.overflow_pending(), 0);
        prop_assert_eq!(tx.overflowed_total(), overflowed);
    }
}

#[test]
fn bad_capacity_is_an_error() {
    assert_eq!(Ring::<u8>::new(0).unwrap_err(), IoError::InvalidArgument);
    assert_eq!(
        Ring::<u8>::new(usize::MAX).unwrap_err(),
        IoError::InvalidArgument
    );
    assert_eq!(Ring::<u8>::new(5).unwrap().capacity(), 8);
}

/// Counts drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn every_entry_dropped_exactly_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (mut tx, mut rx) = ring::channel(4).unwrap();
    for _ in 0..3 {
        assert!(tx.push(Counted(drops.clone())).is_ok());
    }
    drop(rx.pop()); // one dropped by us
    assert_eq!(drops.load(Ordering::Relaxed), 1);
    let overflow_drops = Arc::new(AtomicUsize::new(0));
    {
        let (otx, orx) = ring::channel(1).unwrap();
        let mut otx = OverflowProducer::new(otx);
        otx.push(Counted(overflow_drops.clone()));
        otx.push(Counted(overflow_drops.clone()));
        assert_eq!(orx.overflow_pending(), 1);
    }
    assert_eq!(overflow_drops.load(Ordering::Relaxed), 2);
    drop(tx);
    drop(rx); // two left in the ring
    assert_eq!(drops.load(Ordering::Relaxed), 3);
}

#[test]
fn panicking_callback_keeps_the_ring_consistent() {
    let (mut tx, mut rx) = ring::channel(8).unwrap();
    tx.push_iter(0..6u32);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rx.pop_batch(6, |v| assert!(v < 2, "stop"));
    }));
    assert!(r.is_err());
    // 0, 1 and 2 (the one it panicked on) count as removed.
    assert_eq!(rx.pop(), Some(3));
    assert_eq!(rx.len(), 2);
}

/// One producer and one consumer thread, batches of varying size: every value arrives once,
/// in order.
#[test]
fn two_threads_transfer_everything_in_order() {
    let (tx, rx) = ring::channel::<u64>(64).unwrap();
    transfer_in_order(tx, rx);
}

/// The same through a `static` `StaticRing`, split once.
#[test]
fn two_threads_through_a_static_ring() {
    static RING: StaticRing<u64, 64> = StaticRing::new();
    let (tx, rx) = RING.split().unwrap();
    assert!(RING.split().is_none(), "a static ring is split once");
    transfer_in_order(tx, rx);
}

/// Ends of a `SharedRing` taken again (a party that restarted) continue where the old ends
/// stopped; two threads then move everything through it in order.
#[test]
fn shared_ring_ends_continue_and_transfer() {
    let mut memory = Box::new(SharedRing::<u64, 64>::new());
    let ring = std::ptr::NonNull::from(&mut *memory);
    {
        // SAFETY: `memory` outlives the ends; one producer and one consumer at a time.
        let (mut tx, mut rx) = unsafe { (SharedRing::producer(ring), SharedRing::consumer(ring)) };
        assert_eq!(tx.push_iter(0..10), 10);
        assert_eq!(rx.pop(), Some(0));
    }
    // SAFETY: as above; the earlier ends are gone.
    let (mut tx, mut rx) = unsafe { (SharedRing::producer(ring), SharedRing::consumer(ring)) };
    assert_eq!(
        rx.len(),
        9,
        "the entries the old producer published are still there"
    );
    assert_eq!(tx.push(10), Ok(()));
    let mut got = Vec::new();
    rx.pop_batch(64, |v| got.push(v));
    assert_eq!(got, (1..=10).collect::<Vec<u64>>());
    transfer_in_order(tx, rx);
    drop(memory);
}

/// Sends 0..N from a producer thread to this thread in batches of varying size; checks that
/// every value arrives once, in order. Under Miri N is 1 000 (the 64-entry ring still wraps
/// 15 times), so that the test finishes there in seconds rather than hours.
fn transfer_in_order(mut tx: Producer<u64>, mut rx: Consumer<u64>) {
    const N: u64 = if cfg!(miri) {
        1_000
    } else if cfg!(debug_assertions) {
        200_000
    } else {
        2_000_000
    };
    let producer = std::thread::spawn(move || {
        let mut next = 0u64;
        while next < N {
            let batch = 1 + (next % 7);
            let end = (next + batch).min(N);
            let pushed = tx.push_iter(next..end);
            next += pushed as u64;
            if pushed == 0 {
                std::thread::yield_now();
            }
        }
    });
    let mut expected = 0u64;
    while expected < N {
        let got = rx.pop_batch(1 + (expected % 5) as usize, |v| {
            assert_eq!(v, expected);
            expected += 1;
        });
        if got == 0 {
            std::thread::yield_now();
        }
    }
    producer.join().unwrap();
    assert_eq!(rx.pop(), None);
}
