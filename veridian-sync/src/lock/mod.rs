//! Spin locks for kernels: a FIFO ticket lock, an MCS queue lock, and interrupt-safe versions of
//! both (of any `lock_api` raw lock, in fact).
//!
//! [`Mutex<R, T>`] is the mutex to use in a kernel: a `lock_api` mutex over any raw lock that
//! also carries a lock-class name, checked by the lock validator ([`crate::lockdep`]) when the
//! `lockdep` feature is on and free of any cost when it is off. [`SpinLock<T>`] and
//! [`IrqSpinLock<I, T>`] are it over the ticket lock and its interrupt-safe version.
//!
//! Each raw lock implements [`lock_api::RawMutex`], so the usual RAII API comes from `lock_api`:
//! [`TicketMutex<T>`] and [`McsMutex<T>`] are `lock_api::Mutex`es, `lock()` returns a guard that
//! unlocks on drop, `try_lock()` never waits. [`IrqMutex<R, I, T>`] additionally disables
//! interrupts through the embedder's
//! [`InterruptControl`](crate::env::InterruptControl) for as long as its guard lives.
//!
//! Choosing:
//! - [`TicketMutex`]: one `fetch_add` to lock and a plain store to unlock, strictly FIFO; all
//!   waiters spin on the same cache line, so hand-offs get slower as waiters are added. Good for
//!   locks with few contenders.
//! - [`McsMutex`]: waiters queue and spin on their own nodes (only the queue head watches the
//!   lock word), so a hand-off costs the same however many wait; uncontended, one
//!   compare-exchange to lock and a store to unlock, like a test-and-set lock. Good for locks
//!   contended by many CPUs.
//! - `Irq*` variants: for any lock an interrupt handler also takes.
//!
//! Spinning uses `core::hint::spin_loop`, with a capped exponential [`Backoff`] after lost
//! compare-exchanges; under the `std` feature a waiter that has spun for a while (64 hints, a
//! few µs) yields its time slice between checks, because a hosted lock holder or next-in-line
//! waiter may have been preempted by the OS (see [`Backoff`]'s module). None of these locks is
//! reentrant; taking one twice on one CPU deadlocks.
//!
//! The `lock_api` implementations and the mutex aliases are absent under `cfg(loom)`
//! (`lock_api` needs a `const` initialiser, which loom's atomics lack); the loom models use the
//! raw locks' inherent methods, which are the same code.

mod backoff;
#[cfg(not(loom))]
mod irq;
mod mcs;
#[cfg(not(loom))]
mod mutex;
mod ticket;

pub use backoff::Backoff;
pub(crate) use backoff::SpinWait;
#[cfg(not(loom))]
pub use irq::RawIrqLock;
pub use mcs::RawMcsLock;
#[cfg(not(loom))]
pub use mutex::{Mutex, MutexGuard};
pub use ticket::RawTicketLock;

#[cfg(not(loom))]
pub use aliases::*;

#[cfg(not(loom))]
mod aliases {
    use super::{Mutex, MutexGuard, RawIrqLock, RawMcsLock, RawTicketLock};

    /// A named ticket lock: the spin lock to use for state only tasks touch. Its name is its
    /// class for the lock validator ([`crate::lockdep`]).
    pub type SpinLock<T> = Mutex<RawTicketLock, T>;
    /// The guard of a [`SpinLock`]; unlocks on drop.
    pub type SpinLockGuard<'a, T> = MutexGuard<'a, RawTicketLock, T>;

    /// A named interrupt-safe ticket lock (interrupts off through `I` while held): the lock to
    /// use for state that interrupt handlers also touch.
    pub type IrqSpinLock<I, T> = Mutex<RawIrqLock<RawTicketLock, I>, T>;
    /// The guard of an [`IrqSpinLock`]: unlocks, then restores the interrupt state, on drop.
    pub type IrqSpinLockGuard<'a, I, T> = MutexGuard<'a, RawIrqLock<RawTicketLock, I>, T>;

    /// A mutex on the [`RawTicketLock`] (FIFO, single shared cache line).
    pub type TicketMutex<T> = lock_api::Mutex<RawTicketLock, T>;
    /// The guard of a [`TicketMutex`]; unlocks on drop.
    pub type TicketMutexGuard<'a, T> = lock_api::MutexGuard<'a, RawTicketLock, T>;

    /// A mutex on the [`RawMcsLock`] (FIFO queue, local spinning).
    pub type McsMutex<T> = lock_api::Mutex<RawMcsLock, T>;
    /// The guard of an [`McsMutex`]; unlocks on drop.
    pub type McsMutexGuard<'a, T> = lock_api::MutexGuard<'a, RawMcsLock, T>;

    /// A mutex on any raw lock `R` whose guard keeps interrupts off through `I` (see
    /// [`RawIrqLock`]).
    pub type IrqMutex<R, I, T> = lock_api::Mutex<RawIrqLock<R, I>, T>;
    /// The guard of an [`IrqMutex`]: unlocks, then restores the interrupt state, on drop.
    pub type IrqMutexGuard<'a, R, I, T> = lock_api::MutexGuard<'a, RawIrqLock<R, I>, T>;

    /// An interrupt-safe [`TicketMutex`].
    pub type IrqTicketMutex<I, T> = IrqMutex<RawTicketLock, I, T>;
    /// An interrupt-safe [`McsMutex`].
    pub type IrqMcsMutex<I, T> = IrqMutex<RawMcsLock, I, T>;
}
