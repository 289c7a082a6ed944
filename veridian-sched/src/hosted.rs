//! Hosted (`std`) implementations of the environment traits, for tests, benchmarks and
//! programs running as ordinary processes.
//!
//! - [`CpuSlots`] / [`ClaimedCpu`]: a [`CpuGuard`] for OS threads that play CPUs. Each slot
//!   can be claimed by one holder at a time (an atomic flag), so the guard's exclusivity, the
//!   trait's safety contract, is enforced at run time instead of being assumed.
//! - [`MonotonicClock`]: a [`Clock`], nanoseconds since its creation.
//! - [`green`] (Linux on x86_64): green threads on the crate's context-switch routine, with
//!   stacks from `mmap` below a guard page, so the switch can be tested and measured natively.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, Ordering};
use std::boxed::Box;
use std::time::Instant;

use crate::env::{Clock, CpuGuard};

/// A set of CPU slots `0..n` that OS threads claim to act as those CPUs.
#[derive(Debug)]
pub struct CpuSlots {
    claimed: Box<[AtomicBool]>,
}

impl CpuSlots {
    /// Slots for CPUs `0..n`.
    pub fn new(n: usize) -> Self {
        Self {
            claimed: (0..n).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Claims slot `cpu`; `None` if it is out of range or already claimed.
    pub fn claim(&self, cpu: usize) -> Option<ClaimedCpu<'_>> {
        let flag = self.claimed.get(cpu)?;
        // Acquire: pairs with the Release in `ClaimedCpu::drop`, so whatever the previous
        // holder did as this CPU happens before what we do.
        if flag.swap(true, Ordering::Acquire) {
            return None;
        }
        Some(ClaimedCpu {
            slots: self,
            cpu,
            _not_sync: PhantomData,
        })
    }
}

/// An exclusive claim on one slot of [`CpuSlots`]; released on drop. `Send` (a claim may move
/// to another thread) but not `Sync` (two threads must not use it at once).
#[derive(Debug)]
pub struct ClaimedCpu<'a> {
    slots: &'a CpuSlots,
    cpu: usize,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: `CpuSlots::claim` hands out at most one `ClaimedCpu` per slot at a time (atomic
// swap), the type is `!Sync` so only one thread uses it at a time, and `cpu` never changes.
// Hosted processes have no interrupt handlers that could use it behind the holder's back.
unsafe impl CpuGuard for ClaimedCpu<'_> {
    fn cpu(&self) -> usize {
        self.cpu
    }
}

impl Drop for ClaimedCpu<'_> {
    fn drop(&mut self) {
        // Release: see `claim`.
        self.slots.claimed[self.cpu].store(false, Ordering::Release);
    }
}

/// A [`Clock`] counting nanoseconds since it was created (`std::time::Instant`).
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    start: Instant,
}

impl MonotonicClock {
    /// A clock starting at 0 now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod green;
