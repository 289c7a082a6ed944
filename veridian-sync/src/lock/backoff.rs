//! Waiting in spin loops: capped exponential backoff for retries, and patient spinning for
//! waiters.
//!
//! - [`Backoff`]: after a lost compare-exchange a thread waits `1, 2, 4, .., 64` spin-loop hints
//!   before retrying, which keeps the contended cache line quiet so the winner can finish; the
//!   cap keeps the retry latency bounded.
//! - [`SpinWait`] (crate-internal): a waiter that watches a flag or counter spins with single
//!   hints (the watched line is only read, so spinning on it costs nobody else anything, and a
//!   short wait keeps the hand-off latency low).
//!
//! Both behave differently in one respect under the `std` feature: after spinning for a long
//! while (see [`YIELD_AFTER`]) they call `std::thread::yield_now` between checks. A hosted
//! thread can be preempted by the OS while it holds a lock, or while it is the next in a FIFO
//! queue (ticket, MCS); with more threads than CPUs, a waiter that keeps spinning then burns the
//! time slice the preempted thread needs. In a kernel, where lock holders and waiters run with
//! preemption off, that cannot happen, and without `std` the waiters just keep spinning.
//!
//! Relies on: `spin_loop` (the `pause` instruction on x86_64) from [`crate::primitives`], which
//! under `cfg(loom)` is loom's yield point. Under loom every wait is a single yield: the waiting
//! time means nothing to the model checker, and extra yields would multiply the interleavings it
//! explores.

use crate::primitives::spin_loop;

/// Largest [`Backoff`] step: `2^SPIN_LIMIT` spin-loop hints per call. At 6 this is 64 hints,
/// roughly 0.3–4 µs depending on the CPU (a `pause` costs ~10 cycles before Skylake and ~140
/// since): long compared with one cache-line transfer (~100 ns across sockets), short compared
/// with anything a lock holder in a kernel should be doing.
const SPIN_LIMIT: u32 = 6;

/// Spin-loop hints after which hosted (`std`) waiters start yielding their time slice. 64 hints
/// are about 1–10 µs: well beyond a hand-off between running threads (a cache-line transfer and
/// a short critical section), so a waiter still waiting is likely waiting for a preempted
/// thread. Measured on a 2-CPU host with 3 writers contending for one FIFO lock: waiting 1024
/// rounds instead of 64 made the test 15 times slower (each preempted next-in-line waiter
/// stalled everybody for the whole spin), and counting hints rather than rounds (so that waiters
/// far back in a ticket queue, which wait many hints per round, yield sooner) made a 4-thread
/// ticket-lock test 4 times faster again. Yielding when nothing else is runnable costs only a
/// system call.
const YIELD_AFTER: u32 = 64;

/// Capped exponential backoff for retry loops: `spin` waits `1, 2, 4, .., 2^6` spin-loop hints.
///
/// ```
/// use veridian_sync::lock::Backoff;
/// use core::sync::atomic::{AtomicUsize, Ordering};
///
/// let word = AtomicUsize::new(0);
/// let mut backoff = Backoff::new();
/// while word.compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
///     backoff.spin();
/// }
/// ```
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    step: u32,
}

impl Backoff {
    /// A backoff at its shortest wait.
    #[inline]
    pub const fn new() -> Self {
        Self { step: 0 }
    }

    /// Starts over at the shortest wait (after progress was made).
    #[inline]
    pub fn reset(&mut self) {
        self.step = 0;
    }

    /// Waits `2^step` spin-loop hints, then lengthens the next wait (up to the cap).
    #[inline]
    pub fn spin(&mut self) {
        spin_n(1 << self.step.min(SPIN_LIMIT));
        if self.step <= SPIN_LIMIT {
            self.step += 1;
        }
    }

    /// Like [`Backoff::spin`] while the wait is short; once at the cap, yields the thread
    /// instead under the `std` feature (see the module documentation) and keeps spinning
    /// without it.
    #[inline]
    pub fn snooze(&mut self) {
        if self.step <= SPIN_LIMIT {
            self.spin();
        } else {
            yield_or_spin(1 << SPIN_LIMIT);
        }
    }

    /// Whether the wait has reached its cap.
    #[inline]
    pub fn is_completed(&self) -> bool {
        self.step > SPIN_LIMIT
    }
}

/// A waiter's spinning: `wait(n)` spins `n` hints; after [`YIELD_AFTER`] hints in all it yields
/// the thread under `std` (module documentation).
#[derive(Debug, Default)]
pub(crate) struct SpinWait {
    /// Spin-loop hints waited so far (saturating).
    spun: u32,
}

impl SpinWait {
    pub(crate) const fn new() -> Self {
        Self { spun: 0 }
    }

    /// Waits `hints` spin-loop hints (at least one), or yields once waited long (hosted).
    #[inline]
    pub(crate) fn wait(&mut self, hints: usize) {
        let hints = hints.max(1);
        if self.spun < YIELD_AFTER {
            self.spun = self
                .spun
                .saturating_add(u32::try_from(hints).unwrap_or(u32::MAX));
            spin_n(hints);
        } else {
            yield_or_spin(hints);
        }
    }
}

/// Waits `n` spin-loop hints (a single yield point under loom).
#[inline]
pub(crate) fn spin_n(n: usize) {
    #[cfg(loom)]
    {
        let _ = n;
        spin_loop();
    }
    #[cfg(not(loom))]
    for _ in 0..n {
        spin_loop();
    }
}

/// Yields the thread (hosted), or spins `n` hints (`no_std`, loom).
#[inline]
fn yield_or_spin(n: usize) {
    #[cfg(all(feature = "std", not(loom)))]
    {
        let _ = n;
        std::thread::yield_now();
    }
    #[cfg(not(all(feature = "std", not(loom))))]
    spin_n(n);
}
