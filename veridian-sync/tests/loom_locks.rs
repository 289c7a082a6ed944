//! Loom models of the ticket and MCS locks: mutual exclusion and the happens-before chain
//! through critical sections (loom's `UnsafeCell` reports any access that is not ordered after
//! the previous holder's), for every interleaving loom explores.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" cargo test -p veridian-sync --release --test loom_locks`
//!
//! # Preemption bounds
//! loom 0.7.3 cannot check models in which two threads spin (with `spin_loop`/`yield_now`) at
//! the same time while a third, runnable thread is the one that would release them: beyond a
//! small preemption bound it explores a schedule in which the two spinners yield to each other
//! forever and the third never runs again, and it stops with "Model exceeded maximum number of
//! branches". No real scheduler produces that schedule. The smallest model showing it has no
//! lock at all: three threads passing a baton (`while turn.load(Acquire) != i { spin_loop() }
//! turn.store(i + 1, Release)`) pass at bound 1 and fail from bound 2 on. For the MCS lock, a
//! trace at bound 3 showed the granting thread paused just before its `waiting.store(false)`
//! while the granted waiter spun. So: the ticket lock (all waiters spin on one word) at bound
//! 1, the MCS lock (the second waiter reaches its spin later) at bound 2; the two-thread models,
//! which are not affected, at bounds 5–8.
//!
//! # Mutations these models catch
//! Each of these, applied alone, makes at least one model fail: a ticket `lock` that does not
//! wait; the ticket waiter's `serving` load Relaxed; the ticket `unlock` store Relaxed; the MCS
//! grant store Relaxed; the MCS link store Relaxed; MCS `try_lock` Relaxed; a granted MCS
//! waiter that does not wait for a late successor's link (use-after-free of its node, reported
//! by loom); an MCS `unlock` that frees the lock without looking for waiters (they spin forever;
//! loom stops on its branch limit).
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use veridian_sync::lock::{RawMcsLock, RawTicketLock};

/// Runs `f` under loom with at most `bound` preemptions per execution, unless
/// `LOOM_MAX_PREEMPTIONS` asks for another bound. Unbounded exploration of these models does
/// not finish in minutes; small bounds find most bugs in practice (the CHESS work on iterative
/// context bounding), and the bounds below were chosen so that each test finishes in seconds in
/// release mode while still catching the mutations listed at the top of this file.
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
    model(8, || mutual_exclusion::<RawTicketLock>(2, 2));
}

#[test]
fn ticket_try_lock() {
    model(8, try_lock_excludes::<RawTicketLock>);
}

#[test]
fn mcs_two_threads() {
    model(5, || mutual_exclusion::<RawMcsLock>(2, 2));
}

#[test]
fn mcs_try_lock() {
    model(8, try_lock_excludes::<RawMcsLock>);
}

#[test]
fn ticket_three_threads() {
    // Bound 1: see "Preemption bounds" at the top of this file.
    model(1, || mutual_exclusion::<RawTicketLock>(3, 1));
}

#[test]
fn mcs_three_threads() {
    // Three threads reach every queue shape: a waiter behind the sentinel, a waiter behind a
    // waiter, a granted waiter swinging the tail back or waiting for a late successor's link.
    // Bound 2: see "Preemption bounds" at the top of this file.
    model(2, || mutual_exclusion::<RawMcsLock>(3, 1));
}
