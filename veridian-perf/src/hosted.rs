//! Hosted (Linux) implementations of the embedder traits, for tests, benchmarks and programs
//! that use the crate in user space (feature `std`).
//!
//! - [`MonotonicClock`]: `CLOCK_MONOTONIC` as the reference [`Clock`] for TSC calibration (the
//!   kernel counterpart is the PIT, HPET or ACPI PM timer).
//! - [`SchedCpu`]: `sched_getcpu()` as the [`CpuIndex`].
//!
//! Performance counters in user space go through `perf_event_open`: see [`crate::linux`]. MSRs
//! are not reachable from user space, so there is no hosted [`crate::env::MsrAccess`].

use crate::clock::Clock;
use crate::env::CpuIndex;

/// `clock_gettime(CLOCK_MONOTONIC)` in nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux,
        // so the call cannot fail (and `ts` stays zero if it somehow did).
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    }
}

/// The CPU the calling thread runs on, from `sched_getcpu()` (0 if the kernel cannot say).
#[derive(Clone, Copy, Debug, Default)]
pub struct SchedCpu;

impl CpuIndex for SchedCpu {
    fn max_cpus(&self) -> usize {
        // SAFETY: sysconf takes a name constant and has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
        usize::try_from(n).unwrap_or(1).max(1)
    }

    fn current_cpu(&self) -> usize {
        // SAFETY: sched_getcpu takes no arguments and has no preconditions.
        let cpu = unsafe { libc::sched_getcpu() };
        usize::try_from(cpu).unwrap_or(0)
    }
}
