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
///
/// # Example: a `no_std` embedder
///
/// A kernel whose per-CPU code marks a CPU's scheduler state as taken while one context (a
/// thread with preemption off, or the timer handler) works on it, with one flag per CPU. Only
/// `core` is used; a real kernel would also keep preemption and interrupts off while the guard
/// lives.
///
/// ```
/// use core::sync::atomic::{AtomicBool, Ordering};
///
/// use veridian_sched::CpuGuard;
///
/// const CPUS: usize = 4;
/// /// Whether a guard for each CPU exists.
/// static TAKEN: [AtomicBool; CPUS] = [const { AtomicBool::new(false) }; CPUS];
///
/// /// Exclusive use of one CPU's run queues, released on drop.
/// struct OwnCpu(usize);
///
/// impl OwnCpu {
///     /// The guard for `cpu`, or `None` while another context holds it.
///     fn try_take(cpu: usize) -> Option<Self> {
///         // Acquire: what the previous holder did happens before our use.
///         TAKEN[cpu]
///             .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
///             .ok()
///             .map(|_| Self(cpu))
///     }
/// }
///
/// impl Drop for OwnCpu {
///     fn drop(&mut self) {
///         // Release: our use happens before the next holder's.
///         TAKEN[self.0].store(false, Ordering::Release);
///     }
/// }
///
/// // SAFETY: `try_take` hands out at most one guard per CPU at a time (the flag is set by a
/// // compare-exchange and cleared only when that guard drops), and `cpu()` never changes.
/// unsafe impl CpuGuard for OwnCpu {
///     fn cpu(&self) -> usize {
///         self.0
///     }
/// }
///
/// let guard = OwnCpu::try_take(2).unwrap();
/// assert_eq!(guard.cpu(), 2);
/// assert!(OwnCpu::try_take(2).is_none(), "one owner per CPU");
/// drop(guard);
/// assert!(OwnCpu::try_take(2).is_some());
/// ```
pub unsafe trait CpuGuard {
    /// The CPU index this guard stands for.
    fn cpu(&self) -> usize;
}

/// A monotonic clock in nanoseconds for time slices (slice lengths in
/// [`SchedConfig`](crate::SchedConfig) are nanoseconds): the embedder trait of
/// `veridian-embed`, re-exported (a kernel that also embeds veridian-io or veridian-perf
/// implements it once). A kernel that counts timer ticks reports them scaled to nanoseconds;
/// a slice then ends at the first tick at least its length after it began.
pub use veridian_embed::Clock;

/// A [`Clock`] that only moves when told to: for tests, simulations, and kernels whose timer
/// interrupt calls [`ManualClock::advance`].
#[derive(Debug, Default)]
pub struct ManualClock {
    ns: AtomicU64,
}

impl ManualClock {
    /// A clock at 0 ns.
    pub const fn new() -> Self {
        Self {
            ns: AtomicU64::new(0),
        }
    }

    /// Advances the clock by `ns` nanoseconds.
    pub fn advance(&self, ns: u64) {
        // Relaxed: a time value, nothing else is published with it.
        self.ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.ns.load(Ordering::Relaxed)
    }
}
