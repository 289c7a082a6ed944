//! MCS queue lock with a test-and-set fast path, in the variant that fits a plain
//! `lock()`/`unlock()` interface.
//!
//! What it does: a locker that finds the lock free and nobody queued takes it with one
//! compare-exchange, and `unlock` is one release store, as with a test-and-set lock. Lockers that
//! find it held queue up in a linked list of nodes: only the first of them (the queue head) spins
//! on the lock word; every other waiter spins on a flag in its *own* node, so a hand-off touches
//! the lock word and one waiter's cache line instead of every waiter's (the weakness of ticket
//! and test-and-set locks on many CPUs). The queue is FIFO.
//!
//! # The design, and why
//! In the classic MCS lock (Mellor-Crummey and Scott, 1991) every holder owns a queue node from
//! `lock` until `unlock`, and `unlock` needs that node. `lock_api::RawMutex` has no way to pass a
//! node from `lock` to `unlock`, and a node on the caller's stack tied to a guard is unsound in
//! Rust: safe code may `mem::forget` the guard and then reuse the stack slot while the node is
//! still in the queue. Per-CPU or per-thread node pools need a CPU index the lock does not have,
//! or a thread-local that `no_std` does not have. And a classic MCS lock+unlock is two atomic
//! read-modify-writes even when nobody else wants the lock.
//!
//! This lock follows Linux's qspinlock instead: the lock is a lock word (`locked`) plus the tail
//! of a queue of *waiters* (`tail`). The holder is not in the queue, so `unlock` needs no node:
//! it clears the lock word. A waiter's node lives on its stack only while it waits: once it is
//! the queue head and has taken the lock word, it hands the head position to its successor (or,
//! if it has none, swings `tail` from its node back to null, waiting for a late successor's link
//! if that swing loses a race) and returns. After that nothing refers to its node. So no node
//! outlives `lock`, and forgetting a guard only leaves the lock word set (it can never leave a
//! dangling node in the queue). The lock holds no pointer to itself, so it may be moved after a
//! guard was forgotten.
//!
//! Costs: uncontended, one compare-exchange to lock (after a plain load of `tail`) and one store
//! to unlock. A queued waiter does one swap to enqueue, a compare-exchange on the lock word once
//! it is free, and one compare-exchange on `tail` or a grant store to leave the queue.
//!
//! # Fairness
//! Waiters that are queued are served in FIFO order: only the head competes for the lock word,
//! and the next waiter becomes head only after it took it. A locker arriving later does not
//! queue if it finds the queue empty: it tries the lock word directly (`lock`'s fast path and
//! `try_lock` both do this, and both give up, to the queue or with `false`, when they see a
//! waiter). Between that check and its compare-exchange another locker may enqueue and become
//! head, and the new arrival may then take the lock word ahead of that queue head. It can only do
//! so if it found the queue empty, so a queued waiter is overtaken at most by lockers that looked
//! at `tail` before it was queued, each at most once (a `lock` whose fast path fails queues):
//! no unbounded starvation among `lock` callers. (A caller retrying `try_lock` may also win the
//! lock word in that window, once per retry that found the queue empty.)
//!
//! # State
//! - `locked`: true while the lock is held. Set by compare-exchange (fast path, `try_lock`, or
//!   the queue head), cleared by `unlock`.
//! - `tail`: null when nobody waits; otherwise the last waiter's node. The first node of the
//!   queue is the head's; each node's `next` points to the one behind it once that one has
//!   linked itself.
//!
//! Relies on: atomic compare-exchange and swap, pointer-sized atomics. Guarantees: mutual
//! exclusion, FIFO among queued waiters, a happens-before chain through the critical sections
//! (every acquisition is an Acquire compare-exchange on `locked` reading the previous holder's
//! Release store).

use core::ptr;

use super::backoff::SpinWait;
use crate::primitives::{AtomicBool, AtomicPtr, Ordering};

/// A waiter's queue node; lives on the waiter's stack for the duration of its wait.
#[derive(Debug)]
struct Waiter {
    /// True until the waiter ahead of this one (the previous queue head) makes it the head.
    waiting: AtomicBool,
    /// The waiter queued directly behind this one, once it has linked itself.
    next: AtomicPtr<Waiter>,
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
    /// The lock word: true while held.
    locked: AtomicBool,
    /// The last queued waiter, or null when none waits.
    tail: AtomicPtr<Waiter>,
}

impl RawMcsLock {
    /// An unlocked lock.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
            tail: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// An unlocked lock (loom's atomics have no `const fn new`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
            tail: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Acquires the lock, queueing behind the current waiters if it is held or anybody waits.
    #[inline]
    pub fn lock(&self) {
        if !self.try_lock() {
            self.lock_contended();
        }
    }

    #[cold]
    fn lock_contended(&self) {
        let waiter = Waiter {
            waiting: AtomicBool::new(true),
            next: AtomicPtr::new(ptr::null_mut()),
        };
        let me = ptr::from_ref(&waiter).cast_mut();
        // AcqRel. Release: publishes the initialisation of `waiter` to the next waiter, which
        // gets `me` from its own swap and writes `waiter.next` through it. Acquire: the same,
        // the other way round, for the node `prev` we are about to write to (the swap reads the
        // value `prev`'s owner stored with its own swap: a compare-exchange that took `prev` out
        // of `tail` would have made `tail` something else).
        let prev = self.tail.swap(me, Ordering::AcqRel);

        if !prev.is_null() {
            // Link behind the predecessor. Release: its owner reads this pointer (Acquire) and
            // then writes `waiter.waiting`; our node's initialisation must happen-before that.
            // SAFETY: `prev` is a waiter's node and is alive: its owner stays in
            // `lock_contended` until it has read its `next` (set here) or swung `tail` away
            // from `prev` (impossible now that `tail` is no longer `prev`).
            unsafe { (*prev).next.store(me, Ordering::Release) };

            // Local spinning on our own node until we are the queue head. Acquire: pairs with
            // the predecessor's Release grant store, so that store happens-before our node goes
            // out of scope when we return.
            let mut wait = SpinWait::new();
            while waiter.waiting.load(Ordering::Acquire) {
                wait.wait(1);
            }
        }

        // We are the queue head: only we, and lockers that found the queue empty, compete for
        // the lock word now (see "Fairness" in the module documentation).
        let mut wait = SpinWait::new();
        loop {
            // Relaxed load: only a hint, so the head spins on a shared line instead of writing
            // it. Acquire compare-exchange: pairs with the Release store in `unlock`, so the
            // previous critical section happens-before ours. Relaxed on failure: we retry.
            if !self.locked.load(Ordering::Relaxed)
                && self
                    .locked
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break;
            }
            wait.wait(1);
        }

        // We hold the lock; leave the queue. Acquire: the successor's node initialisation
        // (published by its Release link store) must happen-before our write to it.
        let mut successor = waiter.next.load(Ordering::Acquire);
        if successor.is_null() {
            // Nobody linked behind us: try to empty the queue. Relaxed on success: nothing is
            // published through `tail` to the next waiter (it finds null and becomes head with
            // nothing to read from us; the critical sections are ordered through `locked`), and
            // no other thread can refer to our node any more (any that read `me` from `tail`
            // would have made this exchange fail). Relaxed on failure: the Acquire load of
            // `waiter.next` below orders what we need.
            if self
                .tail
                .compare_exchange(me, ptr::null_mut(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
            // A successor swung `tail` from us but has not linked yet: wait for the link.
            let mut wait = SpinWait::new();
            loop {
                successor = waiter.next.load(Ordering::Acquire);
                if !successor.is_null() {
                    break;
                }
                wait.wait(1);
            }
        }
        // Make the successor the queue head. Release: this store touches the successor's node,
        // so it must happen-before the successor's node goes out of scope (pairs with its
        // Acquire load of `waiting`).
        // SAFETY: `successor` is a waiting node: its owner spins in `lock_contended` until this
        // store and does not free the node before. We do not touch it afterwards.
        unsafe { (*successor).waiting.store(false, Ordering::Release) };
    }

    /// Takes the lock if nobody holds it and nobody waits for it; never waits.
    #[inline]
    pub fn try_lock(&self) -> bool {
        // Relaxed load of `tail`: only a hint that keeps lockers from overtaking queued waiters
        // (see "Fairness" in the module documentation); mutual exclusion rests on the
        // compare-exchange alone. Acquire compare-exchange: pairs with the Release store in
        // `unlock` that freed the lock. Relaxed on failure: we take nothing.
        self.tail.load(Ordering::Relaxed).is_null()
            && self
                .locked
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Releases the lock; the queue head (if any) or a new arrival takes it next.
    ///
    /// # Safety
    /// The lock is held, and the caller is its holder.
    #[inline]
    pub unsafe fn unlock(&self) {
        // Release: publishes the critical section to the next holder's Acquire compare-exchange.
        self.locked.store(false, Ordering::Release);
    }

    /// Whether the lock is held (a snapshot).
    #[inline]
    pub fn is_locked(&self) -> bool {
        // Relaxed: a snapshot; it orders nothing.
        self.locked.load(Ordering::Relaxed)
    }
}

impl Default for RawMcsLock {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: a context holds the lock from its successful compare-exchange of `locked` from false to
// true (`try_lock`, the fast path of `lock`, or the queue head in `lock_contended`) until its
// `unlock` stores false; compare-exchange lets only one context at a time change false to true,
// so there is at most one holder. `unlock` touches no node and does not depend on which thread
// calls it, hence `GuardSend`.
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
