//! Ticket lock: a FIFO spin lock.
//!
//! What it does: a locker takes the next ticket with one `fetch_add` and waits until the
//! "now serving" counter reaches its ticket; unlocking advances the counter by one. Lockers are
//! therefore served strictly in the order in which their `fetch_add`s hit the ticket counter
//! (FIFO), and no waiter can be overtaken.
//!
//! What it relies on: the atomicity of `fetch_add` (every ticket is handed out once) and the
//! facts that only the holder ever writes `serving`, and that fewer than `usize::MAX` lockers
//! wait at once (counters wrap; comparisons are made with wrapping arithmetic). On 64-bit
//! targets the counters never wrap in practice; on 32-bit targets they wrap after 2^32
//! acquisitions, which matters only to [`RawTicketLock::try_lock`] (see there).
//!
//! What it guarantees: mutual exclusion; FIFO order among lockers that reached `lock`; the
//! critical sections form a chain of happens-before edges (each unlock's `Release` store is read
//! by the next holder's `Acquire` load). It does not guarantee scalability: all waiters spin on
//! one cache line, so every hand-off invalidates it in every waiter's cache. Waiters back off in
//! proportion to their distance from the head of the queue, which keeps that traffic down;
//! under heavy contention on many CPUs prefer [`super::RawMcsLock`].

use super::backoff::SpinWait;
use crate::primitives::{AtomicUsize, Ordering};

/// Spin-loop hints a waiter waits per locker ahead of it before it looks at `serving` again.
/// A hand-off costs about one cache-line transfer and a short critical section some hundred
/// cycles, i.e. a few `pause`s; 8 per locker ahead keeps far-back waiters off the line without
/// delaying the next-in-line waiter, which always checks after a single hint.
const SPINS_PER_WAITER_AHEAD: usize = 8;

/// Cap on one proportional wait (hints), so a waiter far back still notices progress.
const MAX_SPINS: usize = 512;

/// The raw ticket lock; use it through [`super::TicketMutex`] (a `lock_api::Mutex`).
///
/// ```
/// use veridian_sync::lock::TicketMutex;
///
/// let counter = TicketMutex::new(0u64);
/// *counter.lock() += 1;
/// assert_eq!(*counter.lock(), 1);
/// ```
#[derive(Debug)]
pub struct RawTicketLock {
    /// The next ticket to hand out.
    next: AtomicUsize,
    /// The ticket allowed into the critical section; equal to `next` when the lock is free.
    serving: AtomicUsize,
}

impl RawTicketLock {
    /// An unlocked lock.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            next: AtomicUsize::new(0),
            serving: AtomicUsize::new(0),
        }
    }

    /// An unlocked lock (loom's atomics have no `const fn new`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            next: AtomicUsize::new(0),
            serving: AtomicUsize::new(0),
        }
    }

    /// Takes a ticket and spins until it is served.
    #[inline]
    pub fn lock(&self) {
        // Relaxed: taking a ticket publishes nothing and needs to see nothing; the atomicity of
        // the RMW alone makes the ticket unique. Ordering with the previous holder comes from
        // the Acquire load of `serving` below.
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let mut wait = SpinWait::new();
        loop {
            // Acquire: reading the previous holder's Release store in `unlock` makes its
            // critical section happen-before ours.
            let serving = self.serving.load(Ordering::Acquire);
            if serving == ticket {
                return;
            }
            let ahead = ticket.wrapping_sub(serving);
            wait.wait(
                (ahead - 1)
                    .saturating_mul(SPINS_PER_WAITER_AHEAD)
                    .saturating_add(1)
                    .min(MAX_SPINS),
            );
        }
    }

    /// Takes the lock if it is free right now (no holder and no waiter); never waits.
    ///
    /// On 32-bit targets a thread that stalls between its two atomic operations here for 2^32
    /// acquisitions by others could take a ticket that is not being served; 64-bit counters
    /// make that impossible in practice (2^64 acquisitions).
    #[inline]
    pub fn try_lock(&self) -> bool {
        // Acquire: as in `lock`, synchronises with the unlock that made `serving` this value.
        let serving = self.serving.load(Ordering::Acquire);
        // Taking ticket `serving` succeeds only if it is the next ticket, i.e. nobody holds or
        // waits for the lock; holding ticket `serving` while `serving` shows it is exactly the
        // condition under which `lock` enters. Relaxed for the same reason as the `fetch_add`
        // in `lock`.
        self.next
            .compare_exchange(
                serving,
                serving.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Releases the lock to the next ticket.
    ///
    /// # Safety
    /// The lock is held, and the caller is its holder (it acquired it with `lock` or a
    /// successful `try_lock` and has not released it since).
    #[inline]
    pub unsafe fn unlock(&self) {
        // Relaxed: only the holder writes `serving`, and the holder has already read its current
        // value (its own ticket) when it acquired the lock, so this load sees that value.
        let serving = self.serving.load(Ordering::Relaxed);
        // Release: publishes the critical section to the next holder's Acquire load.
        self.serving
            .store(serving.wrapping_add(1), Ordering::Release);
    }

    /// Whether the lock is held (a snapshot that may be stale by the time it returns).
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.queued() != 0
    }

    /// How many lockers hold or wait for the lock: tickets handed out minus tickets served (a
    /// snapshot). `0` when free, `1` when held without waiters.
    #[inline]
    pub fn queued(&self) -> usize {
        // Relaxed: a statistic; it orders nothing.
        let serving = self.serving.load(Ordering::Relaxed);
        let next = self.next.load(Ordering::Relaxed);
        next.wrapping_sub(serving)
    }
}

impl Default for RawTicketLock {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: `lock` and a successful `try_lock` return only to the holder of the ticket equal to
// `serving`; tickets are unique (RMWs on `next`), and `serving` advances only in `unlock`, which
// the holder alone may call. So at most one context holds the lock. Unlocking from another
// thread is fine (no thread identity is involved), hence `GuardSend`.
#[cfg(not(loom))]
unsafe impl lock_api::RawMutex for RawTicketLock {
    #[allow(
        clippy::declare_interior_mutable_const,
        reason = "lock_api's initialiser pattern"
    )]
    const INIT: Self = Self::new();
    type GuardMarker = lock_api::GuardSend;

    #[inline]
    fn lock(&self) {
        RawTicketLock::lock(self);
    }

    #[inline]
    fn try_lock(&self) -> bool {
        RawTicketLock::try_lock(self)
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: lock_api's contract for `RawMutex::unlock` is ours: the lock is held in the
        // current context.
        unsafe { RawTicketLock::unlock(self) }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        RawTicketLock::is_locked(self)
    }
}
