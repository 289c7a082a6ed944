//! `SeqLock`: readers never see a torn value, writers never lose an update, the read variants
//! behave as documented, and sequential writes/reads round-trip any `Plain` data (proptest).
//!
//! Sizes shrink under Miri (`cfg!(miri)`), which checks the same code for data races and
//! uninitialised reads, and under the sanitizers (`VERIDIAN_STRESS_DIVISOR`, see `common`).
// The real-thread tests; the loom models are in `loom_*.rs`.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use veridian_sync::seqlock::{Plain, SeqLock};

mod common;
use common::scaled;

/// A 12-byte value with an internal invariant (`sum` is the sum of the others), so every chunk
/// size but `u16`/`u8` is exercised: one word and one `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
struct Checked {
    a: u32,
    b: u32,
    sum: u32,
}

// SAFETY: `repr(C)`, three `u32`s: no padding, no pointers.
unsafe impl Plain for Checked {}

impl Checked {
    fn new(i: u32) -> Self {
        let a = i.wrapping_mul(2_654_435_761);
        let b = !i;
        Self {
            a,
            b,
            sum: a.wrapping_add(b),
        }
    }

    fn is_consistent(&self) -> bool {
        self.a.wrapping_add(self.b) == self.sum
    }
}

/// Runs one writer writing `make(1..=writes)` and `readers` readers checking `ok` on every
/// value read (with `read`, or `try_read` when `use_try`) and that values never go backwards
/// (`key` must grow with the write index).
fn torn_read_stress<T: Plain + Send + std::fmt::Debug + 'static>(
    initial: T,
    writes: usize,
    readers: usize,
    use_try: bool,
    make: fn(usize) -> T,
    ok: fn(&T) -> bool,
    key: fn(&T) -> usize,
) {
    let lock = Arc::new(SeqLock::new(initial));
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(readers + 1));
    let reader_threads: Vec<_> = (0..readers)
        .map(|_| {
            let (lock, done, start) = (lock.clone(), done.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let (mut reads, mut last) = (0usize, 0usize);
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let value = if use_try {
                        lock.try_read()
                    } else {
                        Some(lock.read())
                    };
                    if let Some(value) = value {
                        assert!(ok(&value), "torn read: {value:?}");
                        let k = key(&value);
                        assert!(k >= last, "read went backwards: {k} after {last}");
                        last = k;
                        reads += 1;
                    }
                    if finished {
                        break;
                    }
                }
                (reads, last)
            })
        })
        .collect();
    start.wait();
    for i in 1..=writes {
        lock.write(make(i));
    }
    done.store(true, Ordering::Release);
    for reader in reader_threads {
        let (reads, last) = reader.join().unwrap();
        assert!(reads > 0);
        if !use_try {
            // The last read started after `done` was set, i.e. after the final write.
            assert_eq!(last, writes);
        }
    }
}

#[test]
fn readers_never_see_torn_u64x8() {
    torn_read_stress(
        [0u64; 8],
        scaled(200_000),
        3,
        false,
        |i| [i as u64; 8],
        |v| v.iter().all(|&x| x == v[0]),
        |v| v[0] as usize,
    );
}

#[test]
fn try_readers_never_see_torn_u64x8() {
    torn_read_stress(
        [0u64; 8],
        scaled(200_000),
        2,
        true,
        |i| [i as u64; 8],
        |v| v.iter().all(|&x| x == v[0]),
        |v| v[0] as usize,
    );
}

#[test]
fn readers_never_see_torn_odd_sized_struct() {
    torn_read_stress(
        Checked::new(0),
        scaled(200_000),
        3,
        false,
        |i| Checked::new(i as u32),
        Checked::is_consistent,
        |v| !v.b as usize,
    );
}

#[test]
fn readers_never_see_torn_15_bytes() {
    // 15 bytes: one word, one u32, one u16, one u8 chunk. Bytes 0..8 hold the write index,
    // bytes 8..15 repeat its low byte.
    torn_read_stress(
        [0u8; 15],
        scaled(100_000),
        2,
        false,
        |i| {
            core::array::from_fn(|b| {
                if b < 8 {
                    (i as u64).to_le_bytes()[b]
                } else {
                    i as u8
                }
            })
        },
        |v| v[8..].iter().all(|&x| x == v[0]),
        |v| u64::from_le_bytes(v[..8].try_into().unwrap()) as usize,
    );
}

#[test]
fn concurrent_writers_lose_no_update() {
    let lock = Arc::new(SeqLock::new([0u64; 3]));
    let per_writer = scaled(50_000);
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let lock = lock.clone();
            thread::spawn(move || {
                for _ in 0..per_writer {
                    lock.write_with(|v| v[w] += 1);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(lock.read(), [per_writer as u64; 3]);
}

#[test]
fn try_read_fails_while_writes_are_in_progress() {
    // A writer that writes back to back keeps the sequence odd most of the time: a reader's
    // single attempts must fail (None) some of the time, and never return a torn value.
    let lock = Arc::new(SeqLock::new([0u64; 64]));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (lock, stop) = (lock.clone(), stop.clone());
        thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                lock.write([i; 64]);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut nones, mut somes) = (0usize, 0usize);
    while (nones < 10 || somes < 10) && Instant::now() < deadline {
        match lock.try_read() {
            None => nones += 1,
            Some(v) => {
                assert!(v.iter().all(|&x| x == v[0]), "torn read");
                somes += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        nones >= 10,
        "try_read never reported a write in progress ({somes} successes)"
    );
    assert!(somes >= 1);
}

#[test]
fn write_with_closure_does_not_block_readers_but_blocks_writers() {
    let lock = Arc::new(SeqLock::new(Checked::new(1)));
    let in_closure = Arc::new(Barrier::new(2));
    let release = Arc::new(AtomicBool::new(false));
    let first = {
        let (lock, in_closure, release) = (lock.clone(), in_closure.clone(), release.clone());
        thread::spawn(move || {
            lock.write_with(|v| {
                in_closure.wait();
                while !release.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                *v = Checked::new(2);
            });
        })
    };
    in_closure.wait();
    // The closure runs on a private copy before the sequence turns odd: readers get the old
    // value at once, even single-attempt ones.
    assert_eq!(lock.try_read(), Some(Checked::new(1)));
    assert_eq!(lock.read_with_limit(1), Some(Checked::new(1)));
    assert_eq!(lock.read(), Checked::new(1));
    // A second writer waits for the first (it holds the writer lock during its closure).
    let second_done = Arc::new(AtomicBool::new(false));
    let second = {
        let (lock, second_done) = (lock.clone(), second_done.clone());
        thread::spawn(move || {
            lock.write_with(|v| {
                assert_eq!(
                    *v,
                    Checked::new(2),
                    "second writer ran before the first finished"
                );
                *v = Checked::new(3);
            });
            second_done.store(true, Ordering::Release);
        })
    };
    thread::sleep(Duration::from_millis(if cfg!(miri) { 1 } else { 50 }));
    assert!(
        !second_done.load(Ordering::Acquire),
        "second writer did not wait"
    );
    assert_eq!(lock.try_read(), Some(Checked::new(1)));
    release.store(true, Ordering::Release);
    first.join().unwrap();
    second.join().unwrap();
    assert_eq!(lock.read(), Checked::new(3));
}

#[test]
fn panicking_write_with_leaves_value_and_releases_writer_lock() {
    let lock = SeqLock::new(7u32);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lock.write_with(|v| {
            *v = 99;
            panic!("writer closure fails");
        })
    }));
    assert!(result.is_err());
    assert_eq!(lock.read(), 7);
    lock.write(8); // would deadlock if the writer lock were still held
    assert_eq!(lock.read(), 8);
}

#[test]
fn read_variants_on_an_idle_lock() {
    let lock = SeqLock::new([1u16, 2, 3]);
    assert_eq!(lock.read_with_limit(0), None);
    assert_eq!(lock.read_with_limit(1), Some([1, 2, 3]));
    assert_eq!(lock.try_read(), Some([1, 2, 3]));
    assert_eq!(lock.read_or_lock(0), [1, 2, 3]);
    assert_eq!(lock.write_with(|v| std::mem::replace(&mut v[0], 9)), 1);
    assert_eq!(lock.read(), [9, 2, 3]);
    assert_eq!(format!("{lock:?}"), "SeqLock { value: [9, 2, 3] }");
}

#[test]
fn read_or_lock_completes_under_a_busy_writer() {
    let lock = Arc::new(SeqLock::new([0u64; 16]));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (lock, stop) = (lock.clone(), stop.clone());
        thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                lock.write([i; 16]);
            }
        })
    };
    let mut last = 0;
    for _ in 0..scaled(20_000) {
        // 0 optimistic attempts: always the locked path; 2: mixed.
        for attempts in [0, 2] {
            let v = lock.read_or_lock(attempts);
            assert!(v.iter().all(|&x| x == v[0]), "torn read");
            assert!(v[0] >= last);
            last = v[0];
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

#[test]
fn exclusive_access_and_statics() {
    static GLOBAL: SeqLock<u128> = SeqLock::new(5);
    GLOBAL.write(u128::MAX - 1);
    assert_eq!(GLOBAL.read(), u128::MAX - 1);

    let mut lock = SeqLock::<[u8; 5]>::default();
    lock.get_mut()[4] = 1;
    assert_eq!(lock.read(), [0, 0, 0, 0, 1]);
    lock.write([1, 2, 3, 4, 5]);
    assert_eq!(*lock.get_mut(), [1, 2, 3, 4, 5]);
    assert_eq!(lock.into_inner(), [1, 2, 3, 4, 5]);

    let unit = SeqLock::new(());
    unit.write(());
    unit.read();
}

#[test]
fn counter_of_reader_successes_is_shared() {
    // Readers do not write shared memory: many readers on an idle lock all succeed first time.
    let lock = Arc::new(SeqLock::new(42u64));
    let successes = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (lock, successes) = (lock.clone(), successes.clone());
            thread::spawn(move || {
                for _ in 0..scaled(10_000) {
                    if lock.try_read() == Some(42) {
                        successes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(successes.load(Ordering::Relaxed), 4 * scaled(10_000));
}

/// A sequential operation on a seqlock, checked against a plain variable.
#[derive(Debug, Clone)]
enum Op<T> {
    Write(T),
    XorWith(T),
    Read,
}

/// Checks a sequence of operations against the model for one `T`.
fn check_round_trip<T>(
    initial: T,
    ops: Vec<Op<T>>,
    xor: fn(&mut T, &T),
) -> Result<(), TestCaseError>
where
    T: Plain + PartialEq + std::fmt::Debug,
{
    let lock = SeqLock::new(initial);
    let mut model = initial;
    for op in ops {
        match op {
            Op::Write(v) => {
                lock.write(v);
                model = v;
            }
            Op::XorWith(mask) => {
                lock.write_with(|v| xor(v, &mask));
                xor(&mut model, &mask);
            }
            Op::Read => prop_assert_eq!(lock.read(), model),
        }
        prop_assert_eq!(lock.try_read(), Some(model));
    }
    prop_assert_eq!(lock.into_inner(), model);
    Ok(())
}

fn ops<T: std::fmt::Debug + Clone>(
    value: impl Strategy<Value = T> + Clone,
) -> impl Strategy<Value = Vec<Op<T>>> {
    prop::collection::vec(
        prop_oneof![
            value.clone().prop_map(Op::Write),
            value.prop_map(Op::XorWith),
            Just(Op::Read),
        ],
        0..if cfg!(miri) { 4 } else { 40 },
    )
}

fn xor_bytes<const N: usize>(v: &mut [u8; N], m: &[u8; N]) {
    v.iter_mut().zip(m).for_each(|(a, b)| *a ^= b);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 128 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn round_trip_u8(init: u8, ops in ops(any::<u8>())) {
        check_round_trip(init, ops, |a, b| *a ^= b)?;
    }

    #[test]
    fn round_trip_3_bytes(init: [u8; 3], ops in ops(any::<[u8; 3]>())) {
        check_round_trip(init, ops, xor_bytes)?;
    }

    #[test]
    fn round_trip_7_bytes(init: [u8; 7], ops in ops(any::<[u8; 7]>())) {
        check_round_trip(init, ops, xor_bytes)?;
    }

    #[test]
    fn round_trip_33_bytes(init: [u8; 32], tail: u8, ops in ops(any::<[u8; 32]>())) {
        // 33 bytes through an array of arrays, to cover a long run of words plus a byte.
        let init: [[u8; 33]; 1] = [core::array::from_fn(|i| if i < 32 { init[i] } else { tail })];
        let ops = ops.into_iter().map(|op| match op {
            Op::Write(v) => Op::Write([core::array::from_fn(|i| v[i % 32])]),
            Op::XorWith(v) => Op::XorWith([core::array::from_fn(|i| v[i % 32])]),
            Op::Read => Op::Read,
        }).collect();
        check_round_trip(init, ops, |a, b| xor_bytes(&mut a[0], &b[0]))?;
    }

    #[test]
    fn round_trip_u16x5(init: [u16; 5], ops in ops(any::<[u16; 5]>())) {
        check_round_trip(init, ops, |a, b| a.iter_mut().zip(b).for_each(|(x, y)| *x ^= y))?;
    }

    #[test]
    fn round_trip_u32x3(init: [u32; 3], ops in ops(any::<[u32; 3]>())) {
        check_round_trip(init, ops, |a, b| a.iter_mut().zip(b).for_each(|(x, y)| *x ^= y))?;
    }

    #[test]
    fn round_trip_u128(init: u128, ops in ops(any::<u128>())) {
        check_round_trip(init, ops, |a, b| *a ^= b)?;
    }

    #[test]
    fn round_trip_u64x5(init: [u64; 5], ops in ops(any::<[u64; 5]>())) {
        check_round_trip(init, ops, |a, b| a.iter_mut().zip(b).for_each(|(x, y)| *x ^= y))?;
    }
}
