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
//! - [`lockdep`]: the lock validator's hosted environment (per-thread contexts, fake interrupt
//!   state for tests, reports kept in memory).
//!
//! These use `core`'s atomics directly, not the loom facade: they are environment, not
//! algorithms under test, and a `static` needs `const` atomics.

use core::sync::atomic::{AtomicUsize, Ordering};
use std::cell::Cell;

use crate::env::{CpuIndex, InterruptControl};

pub mod lockdep;

/// Hands out slots to threads in order of their first [`ThreadCpuIndex::current_cpu`] call.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// Cached `std::thread::available_parallelism()`; 0 until first computed.
static HARDWARE_THREADS: AtomicUsize = AtomicUsize::new(0);

/// A thread's slot: the counter value it was assigned, and that value reduced modulo the last
/// `max_cpus` asked for (cached: a division costs more than the rest of an increment).
#[derive(Clone, Copy)]
struct Slot {
    /// `usize::MAX` until assigned.
    assigned: usize,
    /// The `max_cpus` that `index` was reduced for; 0 for none yet.
    reduced_for: usize,
    index: usize,
}

std::thread_local! {
    static SLOT: Cell<Slot> = const {
        Cell::new(Slot { assigned: usize::MAX, reduced_for: 0, index: 0 })
    };
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

    /// This thread's slot reduced modulo `max_cpus` (assigned on first use).
    #[inline]
    fn slot(max_cpus: usize) -> usize {
        SLOT.with(|cell| {
            let slot = cell.get();
            if slot.reduced_for == max_cpus {
                return slot.index;
            }
            let assigned = if slot.assigned == usize::MAX {
                // Relaxed: only uniqueness (RMW atomicity) matters, not ordering. (Wrapping to
                // `usize::MAX` would take 2^64 threads.)
                NEXT_SLOT.fetch_add(1, Ordering::Relaxed)
            } else {
                slot.assigned
            };
            let index = assigned % max_cpus;
            cell.set(Slot {
                assigned,
                reduced_for: max_cpus,
                index,
            });
            index
        })
    }
}

impl CpuIndex for ThreadCpuIndex {
    #[inline]
    fn max_cpus(&self) -> usize {
        if self.max_cpus == 0 {
            Self::hardware_threads()
        } else {
            self.max_cpus
        }
    }

    #[inline]
    fn current_cpu(&self) -> usize {
        Self::slot(self.max_cpus())
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
