//! Hosted (`std`) implementations of the environment traits, for tests, benchmarks and
//! programs running as ordinary processes.
//!
//! - [`ThreadCpuIndex`]: a [`CpuIndex`] that gives every thread a fixed "CPU" slot, assigned
//!   round-robin the first time the thread asks. It is not the CPU the thread runs on (the OS
//!   may move the thread at any time), but with as many threads as hardware threads each gets
//!   its own slot, which is what sharded structures want; [`CpuIndex`] only ever affects their
//!   speed, never their correctness.
//! - [`NoInterrupts`]: an [`InterruptControl`] that does nothing, because an ordinary process
//!   has no interrupt handlers. The nearest thing it has, signal handlers, are *not* blocked:
//!   hosted code must not take the crate's locks from a signal handler.
//!
//! These use `core`'s atomics directly, not the loom facade: they are environment, not
//! algorithms under test, and a `static` needs `const` atomics.

use core::sync::atomic::{AtomicUsize, Ordering};
use std::cell::Cell;

use crate::env::{CpuIndex, InterruptControl};

/// Hands out slots to threads in order of their first [`ThreadCpuIndex::current_cpu`] call.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// Cached `std::thread::available_parallelism()`; 0 until first computed.
static HARDWARE_THREADS: AtomicUsize = AtomicUsize::new(0);

std::thread_local! {
    /// This thread's slot (a counter value, reduced modulo `max_cpus` on use); `None` until
    /// assigned.
    static SLOT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// A thread-local "CPU index": each thread gets a fixed slot `0..max_cpus()`, assigned
/// round-robin at its first call to [`CpuIndex::current_cpu`].
///
/// `max_cpus()` is `std::thread::available_parallelism()` (1 if unknown) by default, or the
/// count given to [`ThreadCpuIndex::with_max_cpus`].
///
/// ```
/// use veridian_sync::CpuIndex;
/// use veridian_sync::hosted::ThreadCpuIndex;
///
/// let cpus = ThreadCpuIndex::new();
/// assert!(cpus.current_cpu() < cpus.max_cpus());
/// assert_eq!(cpus.current_cpu(), cpus.current_cpu()); // fixed per thread
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadCpuIndex {
    /// 0 means "the number of hardware threads".
    max_cpus: usize,
}

impl ThreadCpuIndex {
    /// Slots for as many CPUs as the machine has hardware threads.
    pub const fn new() -> Self {
        Self { max_cpus: 0 }
    }

    /// Slots for `max_cpus` CPUs (at least 1).
    pub const fn with_max_cpus(max_cpus: usize) -> Self {
        Self {
            max_cpus: if max_cpus == 0 { 1 } else { max_cpus },
        }
    }

    fn hardware_threads() -> usize {
        // Relaxed: a cache of a value every thread computes the same way; no data hangs off it.
        match HARDWARE_THREADS.load(Ordering::Relaxed) {
            0 => {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                HARDWARE_THREADS.store(n, Ordering::Relaxed);
                n
            }
            n => n,
        }
    }

    /// This thread's slot counter, assigned on first use.
    fn slot() -> usize {
        SLOT.with(|slot| {
            slot.get().unwrap_or_else(|| {
                // Relaxed: only uniqueness (RMW atomicity) matters, not ordering.
                let assigned = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
                slot.set(Some(assigned));
                assigned
            })
        })
    }
}

impl CpuIndex for ThreadCpuIndex {
    fn max_cpus(&self) -> usize {
        if self.max_cpus == 0 {
            Self::hardware_threads()
        } else {
            self.max_cpus
        }
    }

    fn current_cpu(&self) -> usize {
        Self::slot() % self.max_cpus()
    }
}

/// An [`InterruptControl`] for ordinary processes, which have no interrupt handlers: `disable`
/// and `restore` do nothing.
///
/// Signal handlers are not blocked; do not take the crate's locks in one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoInterrupts;

// SAFETY: in a hosted process no interrupt handler ever runs on the caller's thread, so the
// contract ("none runs between `disable` and `restore`") holds trivially, and restoring `()`
// in any order brings back the state `disable` found (there is none).
unsafe impl InterruptControl for NoInterrupts {
    type State = ();

    #[inline(always)]
    fn disable() -> Self::State {}

    #[inline(always)]
    unsafe fn restore(_state: Self::State) {}
}
