//! What the scheduler needs from its environment: the identity of the CPU it runs on (with a
//! guarantee that nothing else acts as that CPU meanwhile) and a clock for time slices.
//!
//! Both are traits the embedder implements; the `std` feature supplies hosted versions in
//! `hosted` (`ClaimedCpu`, `MonotonicClock`), and
//! [`ManualClock`] works everywhere (tests, simulations, a kernel that counts timer ticks
//! itself).

use core::sync::atomic::{AtomicU64, Ordering};

/// Proof that the caller acts as one CPU: the scheduler's per-CPU run queues have single-owner
/// operations (the owner end of the Chase–Lev deque), and the guard is what makes the caller
/// that owner.
///
/// In a kernel the guard is what the per-CPU data code hands out with preemption *and*
/// interrupts disabled (or with interrupt handlers that never call the scheduler's owner
/// operations); dropping it re-enables them.
///
/// # Safety
/// While a guard whose [`CpuGuard::cpu`] is `i` exists, no other guard answering `i` may be
/// used at the same time: not on another thread, not in an interrupt handler on this CPU.
/// `cpu()` must return the same value for the whole life of the guard. (A guard for the
/// *wrong* physical CPU is harmless to memory safety as long as it is exclusive; it only hurts
/// locality.)
pub unsafe trait CpuGuard {
    /// The CPU index this guard stands for.
    fn cpu(&self) -> usize;
}

/// A monotonic tick counter for time slices. The unit is the embedder's (timer ticks,
/// microseconds, TSC cycles); slice lengths in [`SchedConfig`](crate::SchedConfig) are in the
/// same unit.
pub trait Clock {
    /// The current tick count; never decreases.
    fn now(&self) -> u64;
}

/// A [`Clock`] that only moves when told to: for tests, simulations, and kernels whose timer
/// interrupt calls [`ManualClock::advance`].
#[derive(Debug, Default)]
pub struct ManualClock {
    ticks: AtomicU64,
}

impl ManualClock {
    /// A clock at tick 0.
    pub const fn new() -> Self {
        Self {
            ticks: AtomicU64::new(0),
        }
    }

    /// Advances the clock by `ticks`.
    pub fn advance(&self, ticks: u64) {
        // Relaxed: a time value, nothing else is published with it.
        self.ticks.fetch_add(ticks, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> u64 {
        (**self).now()
    }
}
