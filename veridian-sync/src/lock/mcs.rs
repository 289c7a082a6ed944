//! MCS queue lock, in the variant that fits a plain `lock()`/`unlock()` interface.
//!
//! What it does: lockers that find the lock held queue up in a linked list of nodes, and each
//! waiter spins on a flag in its *own* node, so a hand-off touches one waiter's cache line
//! instead of every waiter's (the weakness of ticket and test-and-set locks on many CPUs).
//! The queue is FIFO.
//!
//! # The variant, and why
//! In the classic MCS lock (Mellor-Crummey and Scott, 1991) every holder owns a queue node from
//! `lock` until `unlock`, and `unlock` needs that node. `lock_api::RawMutex` has no way to pass a
//! node from `lock` to `unlock`, and a node on the caller's stack tied to a guard is unsound in
//! Rust: safe code may `mem::forget` the guard and then reuse the stack slot while the node is
//! still in the queue. Per-CPU or per-thread node pools need a CPU index the lock does not have,
//! or a thread-local that `no_std` does not have.
//!
//! This lock uses instead the variant used in IBM's K42 kernel (described in Scott, *Shared-Memory
//! Synchronization*, 2nd ed., §4.3.2): the lock itself contains the holder's "next" pointer, and
//! a waiter's node lives on its stack only while it waits. When a waiter is granted the lock it
//! moves its successor pointer into the lock and (if it has no successor yet) swings the queue's
//! tail from its node back to a sentinel meaning "held, nobody waiting", waiting for a late
//! successor's link if that swing loses a race. After that nothing refers to its node, and
//! `lock` returns. So no node outlives `lock`, `unlock` takes no node, and forgetting a guard
//! only leaves the lock held (it can never leave a dangling node in the queue).
//!
//! The price, against the classic form: the lock is two words instead of one; a granted waiter
//! does one to three extra atomic operations (copying the successor, possibly a compare-exchange
//! on the tail); and an uncontended `unlock` is a compare-exchange rather than the plain store a
//! test-and-set or ticket lock uses. Local spinning and FIFO order are kept.
//!
//! # State
//! - `tail`: null when free; [`held`] (a sentinel address, never dereferenced) when held with no
//!   waiter; otherwise the last waiter's node.
//! - `next`: the first waiter behind the holder, or null when none has linked itself yet. Only
//!   the holder reads it; it is written by the holder (when granted) and by the one waiter that
//!   enqueues directly behind the sentinel.
//!
//! Invariant: when `tail` is null, `next` is null (a holder that frees the lock has seen `next`
//! null, and no waiter can link into `next` unless `tail` is the sentinel).
//!
//! The sentinel, not a pointer to the lock, marks "held": a pointer to the lock itself (as in the
//! textbook K42 code) would dangle if safe code moved the lock after forgetting a guard.
//!
//! Relies on: atomic compare-exchange and pointer-sized atomics. Guarantees: mutual exclusion,
//! FIFO among queued waiters, a happens-before chain through the critical sections.

use core::ptr;

use super::backoff::{Backoff, SpinWait};
use crate::primitives::{AtomicBool, AtomicPtr, Ordering};

/// A waiter's queue node; lives on the waiter's stack for the duration of its wait.
#[derive(Debug)]
struct Waiter {
    /// True until the previous holder grants this waiter the lock.
    waiting: AtomicBool,
    /// The waiter queued directly behind this one, once it has linked itself.
    next: AtomicPtr<Waiter>,
}

/// The `tail` value meaning "held, nobody waiting". Address 1 is not aligned for [`Waiter`]
/// (which holds a pointer), so no node can live there; it is only compared, never dereferenced.
#[inline(always)]
fn held() -> *mut Waiter {
    ptr::without_provenance_mut(1)
}

/// The raw MCS lock; use it through [`super::McsMutex`] (a `lock_api::Mutex`).
///
/// ```
/// use veridian_sync::lock::McsMutex;
///
/// let log = McsMutex::new(Vec::new());
/// log.lock().push(1);
/// assert_eq!(*log.lock(), [1]);
/// ```
#[derive(Debug)]
pub struct RawMcsLock {
    tail: AtomicPtr<Waiter>,
    next: AtomicPtr<Waiter>,
}

impl RawMcsLock {
    /// An unlocked lock.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            tail: AtomicPtr::new(ptr::null_mut()),
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// An unlocked lock (loom's atomics have no `const fn new`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            tail: AtomicPtr::new(ptr::null_mut()),
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Acquires the lock, queueing behind the current holder and waiters if needed.
    #[inline]
    pub fn lock(&self) {
        if !self.try_lock() {
            self.lock_contended();
        }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut backoff = Backoff::new();
        loop {
            // Relaxed: only a hint for which compare-exchange to try; each one checks again.
            let tail = self.tail.load(Ordering::Relaxed);
            if tail.is_null() {
                if self.try_lock() {
                    return;
                }
                backoff.snooze();
                continue;
            }

            let waiter = Waiter {
                waiting: AtomicBool::new(true),
                next: AtomicPtr::new(ptr::null_mut()),
            };
            let me = ptr::from_ref(&waiter).cast_mut();
            // AcqRel on success. Release: publishes the initialisation of `waiter` to the next
            // locker, which will write `waiter.next` through the pointer. Acquire: the same,
            // the other way round, for the node `prev` we are about to write to.
            // Relaxed on failure: we retry from scratch.
            let prev =
                match self
                    .tail
                    .compare_exchange(tail, me, Ordering::AcqRel, Ordering::Relaxed)
                {
                    // Use the value the exchange returned, not `tail`: they compare equal, but the
                    // returned one is the pointer now stored (if the node at this address was freed
                    // and another allocated there since our load, only the new one may be used).
                    Ok(prev) => prev,
                    Err(_) => {
                        backoff.snooze();
                        continue;
                    }
                };

            // Link behind the predecessor. Release: the grantor reads this pointer and then
            // writes `waiter.waiting`; it must see the node initialised first.
            if prev == held() {
                self.next.store(me, Ordering::Release);
            } else {
                // SAFETY: `prev` is a waiter's node and is alive: its owner stays in
                // `lock_contended` until it has read its `next` (set here) or swung `tail` away
                // from `prev` (impossible now that `tail` is `me`).
                unsafe { (*prev).next.store(me, Ordering::Release) };
            }

            // Local spinning on our own node. Acquire: pairs with the grantor's Release store
            // in `unlock`, so its critical section happens-before ours.
            let mut wait = SpinWait::new();
            while waiter.waiting.load(Ordering::Acquire) {
                wait.wait(1);
            }

            // We hold the lock. Move our successor (if any) into the lock so `unlock` finds it
            // without our node. Acquire: the successor's node initialisation (published by its
            // Release link store) must happen-before `unlock` writes to it.
            let mut successor = waiter.next.load(Ordering::Acquire);
            if successor.is_null() {
                // Relaxed: only the holder (us, or whoever we hand the lock to, after our
                // Release hand-off) reads `next`; the Release exchange below orders this store
                // before the link store of any waiter that enqueues behind the sentinel.
                self.next.store(ptr::null_mut(), Ordering::Relaxed);
                // Release: see above (pairs with the AcqRel enqueue exchange of the next waiter).
                // Relaxed on failure: the Acquire load of `waiter.next` below orders what we need.
                if self
                    .tail
                    .compare_exchange(me, held(), Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                // A successor swung `tail` from us but has not linked yet: wait for the link,
                // which it writes into our node (its `prev` is `me`, not the sentinel).
                let mut wait = SpinWait::new();
                loop {
                    successor = waiter.next.load(Ordering::Acquire);
                    if !successor.is_null() {
                        break;
                    }
                    wait.wait(1);
                }
            }
            // Relaxed: read only by the holder (us, in `unlock`).
            self.next.store(successor, Ordering::Relaxed);
            return;
        }
    }

    /// Takes the lock if nobody holds it; never waits.
    #[inline]
    pub fn try_lock(&self) -> bool {
        // Acquire: pairs with the Release exchange in `unlock` that freed the lock.
        self.tail
            .compare_exchange(
                ptr::null_mut(),
                held(),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Releases the lock, granting it to the first waiter if there is one.
    ///
    /// # Safety
    /// The lock is held, and the caller is its holder.
    #[inline]
    pub unsafe fn unlock(&self) {
        // Acquire: the successor's node initialisation must happen-before our write to it
        // (pairs with the Release link store, or with the Relaxed store the granted holder made
        // in `lock`, which this context has already seen).
        let mut successor = self.next.load(Ordering::Acquire);
        if successor.is_null() {
            // Nobody linked: try to free the lock. Release: publishes the critical section to
            // the next `try_lock`. Fails if a waiter swung `tail` from the sentinel.
            if self
                .tail
                .compare_exchange(
                    held(),
                    ptr::null_mut(),
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return;
            }
            // A waiter enqueued behind the sentinel; it links itself into `self.next`.
            let mut wait = SpinWait::new();
            loop {
                successor = self.next.load(Ordering::Acquire);
                if !successor.is_null() {
                    break;
                }
                wait.wait(1);
            }
        }
        // Release: publishes the critical section to the granted waiter's Acquire load.
        // SAFETY: `successor` is a waiting node: its owner spins in `lock_contended` until this
        // store and does not free the node before. We do not touch it afterwards.
        unsafe { (*successor).waiting.store(false, Ordering::Release) };
    }

    /// Whether the lock is held (a snapshot).
    #[inline]
    pub fn is_locked(&self) -> bool {
        // Relaxed: a snapshot; it orders nothing.
        !self.tail.load(Ordering::Relaxed).is_null()
    }
}

impl Default for RawMcsLock {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: a context holds the lock after it changed `tail` from null to the sentinel
// (`try_lock`), or after the holder granted it through its node's `waiting` flag. Each holder
// grants at most once, in `unlock`, and only when it does not free the lock; so there is at
// most one holder at a time (see the module documentation for the queue protocol). `unlock`
// does not depend on which thread calls it, hence `GuardSend`.
#[cfg(not(loom))]
unsafe impl lock_api::RawMutex for RawMcsLock {
    #[allow(
        clippy::declare_interior_mutable_const,
        reason = "lock_api's initialiser pattern"
    )]
    const INIT: Self = Self::new();
    type GuardMarker = lock_api::GuardSend;

    #[inline]
    fn lock(&self) {
        RawMcsLock::lock(self);
    }

    #[inline]
    fn try_lock(&self) -> bool {
        RawMcsLock::try_lock(self)
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: lock_api's contract for `RawMutex::unlock` is ours: the lock is held in the
        // current context.
        unsafe { RawMcsLock::unlock(self) }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        RawMcsLock::is_locked(self)
    }
}
