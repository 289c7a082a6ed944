//! The validator reads the caller's held-lock context only while the environment has the
//! caller pinned (`LockdepEnv::pin`): in a kernel a task preempted and migrated between
//! reading its context (its CPU) and checking it would check another CPU's held locks and
//! report a recursion or an inversion that never happened (seen once in 100 boots of the
//! reference kernel's thread stress test). In a file (so a process) of its own: it installs
//! its own environment. Run with `cargo test -p veridian-sync --features lockdep`.
#![cfg(all(feature = "lockdep", not(loom)))]

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use veridian_sync::lock::SpinLock;
use veridian_sync::lockdep::{self, LockdepEnv, Report};

thread_local! {
    /// How deep this thread is pinned.
    static PINNED: Cell<u32> = const { Cell::new(0) };
}

/// `context()` calls made while not pinned.
static UNPINNED_READS: AtomicUsize = AtomicUsize::new(0);
/// All `context()` calls.
static READS: AtomicUsize = AtomicUsize::new(0);
static REPORTS: AtomicUsize = AtomicUsize::new(0);

struct Env;

impl LockdepEnv for Env {
    fn context(&self) -> usize {
        READS.fetch_add(1, Ordering::Relaxed);
        if PINNED.with(Cell::get) == 0 {
            UNPINNED_READS.fetch_add(1, Ordering::Relaxed);
        }
        0
    }
    fn interrupt_depth(&self) -> u32 {
        0
    }
    fn interrupts_enabled(&self) -> bool {
        true
    }
    fn report(&self, _report: &Report) {
        REPORTS.fetch_add(1, Ordering::Relaxed);
    }
    fn pin(&self) -> u64 {
        PINNED.with(|p| p.set(p.get() + 1));
        7
    }
    fn unpin(&self, state: u64) {
        assert_eq!(state, 7, "unpin gets what pin returned");
        PINNED.with(|p| p.set(p.get() - 1));
    }
}

#[test]
fn every_context_read_happens_pinned() {
    static ENV: Env = Env;
    assert!(lockdep::install(&ENV));
    static A: SpinLock<u32> = SpinLock::new("pin.A", 0);
    static B: SpinLock<u32> = SpinLock::new("pin.B", 0);
    {
        let _a = A.lock();
        let _b = B.lock();
        assert_eq!(lockdep::held_count(), 2);
        drop(B.try_lock());
    }
    lockdep::assert_no_locks_held();
    assert!(
        READS.load(Ordering::Relaxed) > 0,
        "the validator never asked"
    );
    assert_eq!(
        UNPINNED_READS.load(Ordering::Relaxed),
        0,
        "the validator read the context without pinning the caller"
    );
    assert_eq!(PINNED.with(Cell::get), 0, "pin and unpin are paired");
    assert_eq!(REPORTS.load(Ordering::Relaxed), 0);
}
