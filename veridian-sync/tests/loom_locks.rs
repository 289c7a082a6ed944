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
//! turn.store(i + 1, Release)`) pass at bound 1 and fail from bound 2 on. The MCS lock's
//! three-thread model (a queue head spinning on the lock word and a second waiter spinning on its
//! node while the holder runs) passes at bound 2 and stops on the branch limit from bound 3 on.
//! So: the ticket lock (all waiters spin on one word) at bound 1, the MCS three-thread model at
//! bound 2, the MCS `try_lock`-against-the-queue model at bound 4; the two-thread models, which
//! are not affected, at bounds 5–8.
//!
//! # Mutations these models catch
//! Each of these, applied alone, makes at least one model fail: a ticket `lock` that does not
//! wait; the ticket waiter's `serving` load Relaxed; the ticket `unlock` store Relaxed; the MCS
//! `unlock` store Relaxed; the MCS queue head's lock-word compare-exchange Relaxed; MCS
//! `try_lock` Relaxed; the MCS link store Relaxed; the MCS enqueue swap Relaxed (both reported as
//! a store racing the node's creation); an MCS queue head that takes the lock without waiting
//! for the lock word; an MCS queue head that leaves without waiting for a late successor's link
//! (that successor then writes into a dead node, reported by loom). Not caught: the MCS grant
//! store Relaxed (its Release only orders that store before the granted waiter's stack frame is
//! reused, which loom does not model).
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

/// Two threads queue up with `lock` while the main thread, arriving at any point, uses
/// `try_lock` (and takes the lock word if it finds the lock free and the queue empty: the MCS
/// lock's only way past a queue head, see its module documentation).
fn try_lock_races_queue<L: Raw>() {
    let shared = Arc::new(Shared {
        lock: L::new(),
        counter: UnsafeCell::new(0),
    });
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let shared = shared.clone();
            thread::spawn(move || increment(&*shared))
        })
        .collect();
    let took = shared.lock.try_lock();
    if took {
        // SAFETY: lock held.
        shared.counter.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: locked by the successful try_lock.
        unsafe { shared.lock.unlock() };
    }
    for handle in handles {
        handle.join().unwrap();
    }
    // SAFETY: all other threads joined.
    assert_eq!(shared.counter.with(|p| unsafe { *p }), 2 + took as usize);
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
    // Three threads reach every queue shape: a fast-path holder with a queue head spinning on
    // the lock word, a waiter behind the head, a fast-path arrival overtaking a new head, a head
    // swinging the tail back to null or waiting for a late successor's link before granting.
    // Bound 2: see "Preemption bounds" at the top of this file.
    model(2, || mutual_exclusion::<RawMcsLock>(3, 1));
}

#[test]
fn mcs_try_lock_races_queue() {
    // A `try_lock` (the same code as `lock`'s fast path) racing a queue head for the lock word.
    // Bound 4: see "Preemption bounds" at the top of this file.
    model(4, try_lock_races_queue::<RawMcsLock>);
}
