//! Loom models of the ticket and MCS locks: mutual exclusion and the happens-before chain
//! through critical sections (loom's `UnsafeCell` reports any access that is not ordered after
//! the previous holder's), for every interleaving loom explores.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" cargo test -p veridian-sync --release --test loom_locks`
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use veridian_sync::lock::{RawMcsLock, RawTicketLock};

/// Runs `f` under loom with at most `bound` preemptions per execution, unless
/// `LOOM_MAX_PREEMPTIONS` asks for another bound. Unbounded exploration of these models does
/// not finish in minutes; bounds of 2–3 find most bugs in practice (the loom and CHESS papers),
/// and the bounds below were chosen so that each test finishes in well under a minute in
/// release mode while still catching the mutations listed in the crate's test notes.
fn model(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(bound);
    }
    builder.check(f);
}

/// The raw-lock interface both locks share (their inherent methods; `lock_api` is not available
/// under loom).
trait Raw: Send + Sync + 'static {
    fn new() -> Self;
    fn lock(&self);
    fn try_lock(&self) -> bool;
    /// # Safety
    /// Held by the caller.
    unsafe fn unlock(&self);
}

impl Raw for RawTicketLock {
    fn new() -> Self {
        RawTicketLock::new()
    }
    fn lock(&self) {
        RawTicketLock::lock(self)
    }
    fn try_lock(&self) -> bool {
        RawTicketLock::try_lock(self)
    }
    unsafe fn unlock(&self) {
        // SAFETY: forwarded contract.
        unsafe { RawTicketLock::unlock(self) }
    }
}

impl Raw for RawMcsLock {
    fn new() -> Self {
        RawMcsLock::new()
    }
    fn lock(&self) {
        RawMcsLock::lock(self)
    }
    fn try_lock(&self) -> bool {
        RawMcsLock::try_lock(self)
    }
    unsafe fn unlock(&self) {
        // SAFETY: forwarded contract.
        unsafe { RawMcsLock::unlock(self) }
    }
}

struct Shared<L> {
    lock: L,
    counter: UnsafeCell<usize>,
}

// SAFETY: `counter` is only accessed with `lock` held (and loom checks exactly that).
unsafe impl<L: Sync> Sync for Shared<L> {}

fn increment<L: Raw>(shared: &Shared<L>) {
    shared.lock.lock();
    // SAFETY: lock held; loom reports a violation if another access is concurrent.
    shared.counter.with_mut(|p| unsafe { *p += 1 });
    // SAFETY: locked just above.
    unsafe { shared.lock.unlock() };
}

/// `threads` threads (the main one included) each take the lock `rounds` times.
fn mutual_exclusion<L: Raw>(threads: usize, rounds: usize) {
    let shared = Arc::new(Shared {
        lock: L::new(),
        counter: UnsafeCell::new(0),
    });
    let handles: Vec<_> = (1..threads)
        .map(|_| {
            let shared = shared.clone();
            thread::spawn(move || {
                for _ in 0..rounds {
                    increment(&*shared);
                }
            })
        })
        .collect();
    for _ in 0..rounds {
        increment(&*shared);
    }
    for handle in handles {
        handle.join().unwrap();
    }
    // SAFETY: all other threads joined.
    assert_eq!(shared.counter.with(|p| unsafe { *p }), threads * rounds);
}

/// One thread uses `try_lock`, the other `lock`.
fn try_lock_excludes<L: Raw>() {
    let shared = Arc::new(Shared {
        lock: L::new(),
        counter: UnsafeCell::new(0),
    });
    let other = {
        let shared = shared.clone();
        thread::spawn(move || increment(&*shared))
    };
    let took = shared.lock.try_lock();
    if took {
        // SAFETY: lock held.
        shared.counter.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: locked by the successful try_lock.
        unsafe { shared.lock.unlock() };
    }
    other.join().unwrap();
    // SAFETY: the other thread has been joined.
    assert_eq!(shared.counter.with(|p| unsafe { *p }), 1 + took as usize);
}

#[test]
fn ticket_two_threads() {
    model(3, || mutual_exclusion::<RawTicketLock>(2, 2));
}

#[test]
fn ticket_try_lock() {
    model(3, try_lock_excludes::<RawTicketLock>);
}

#[test]
fn mcs_two_threads() {
    model(3, || mutual_exclusion::<RawMcsLock>(2, 2));
}

#[test]
fn mcs_try_lock() {
    model(3, try_lock_excludes::<RawMcsLock>);
}

#[test]
fn mcs_three_threads() {
    // Three threads reach every queue shape: a waiter behind the sentinel, a waiter behind a
    // waiter, a granted waiter swinging the tail back or waiting for a late successor's link.
    model(2, || mutual_exclusion::<RawMcsLock>(3, 1));
}
