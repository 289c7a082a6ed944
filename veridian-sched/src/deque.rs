//! A bounded Chase–Lev work-stealing deque (the per-CPU run queue).
//!
//! # What it does
//! One owner pushes and pops at the *bottom* (LIFO, the most recently queued task is the one
//! whose data is still in cache); any number of thieves steal at the *top* (the oldest task).
//! The algorithm is Chase and Lev's ("Dynamic circular work-stealing deque", SPAA 2005) with the
//! C11 memory orderings proved correct by Lê, Pop, Cohen and Zappa Nardelli ("Correct and
//! efficient work-stealing for weak memory models", PPoPP 2013), on a fixed ring instead of a
//! growable buffer: a kernel run queue wants a bound (overflow goes to the scheduler's global
//! injector), and a fixed ring needs no memory reclamation, so no epoch handle.
//!
//! # Elements are words
//! A thief reads the slot at `top` *before* its compare-and-swap decides whether the element is
//! its own, and by then the owner may already be overwriting that slot with a new element (the
//! CAS then fails and the thief discards what it read). With a plain `T` in the slot that read
//! is a data race, undefined behaviour in Rust's memory model (crossbeam-deque reads with
//! `read_volatile` and relies on it working in practice). Here every slot is an
//! `AtomicPtr<()>`, so the racing read is a relaxed atomic load, and elements are anything that
//! converts to one pointer-sized word and back without loss ([`IntoWord`]: `Box<T>`, `Arc<T>`,
//! `&'static T`, `usize`): a thread control block pointer in a kernel. The word becomes a `T`
//! again only on the side that won the element.
//!
//! The word is a pointer (`*mut ()`), not a `usize`, so that a `Box` or `Arc` keeps its
//! provenance through the deque: the crate passes Miri's `-Zmiri-strict-provenance`, with no
//! integer-to-pointer cast. A `usize` element is stored as a pointer without provenance
//! ([`core::ptr::without_provenance_mut`]) and read back with its `addr()`; it is never
//! dereferenced.
//!
//! # Memory orderings (Lê et al., figure 1, adapted to a fixed ring)
//! - `push`: write the slot (`Relaxed`), then a `Release` fence, then publish by storing
//!   `bottom` (`Relaxed`). A thief's `Acquire` load of `bottom` that sees the new value thus
//!   also sees the slot. `top` is loaded with `Acquire` for the "full" check: the thief that
//!   advanced `top` past a slot read it before its CAS, so the owner's later overwrite of that
//!   slot is ordered after the read.
//! - `pop`: decrement `bottom` (`Relaxed`), `SeqCst` fence, load `top` (`Relaxed`). The fence
//!   pairs with the thieves' `SeqCst` fence between their loads of `top` and `bottom`: in the
//!   single total order of `SeqCst` fences, either the thief sees the decremented `bottom` (and
//!   backs off the element the owner is taking), or the owner sees the thief's advanced `top`.
//!   Taking the last element (`top == bottom`) races with thieves and is decided by a `SeqCst`
//!   CAS on `top`, after which `bottom` is restored.
//! - `steal`: load `top` (`Acquire`), `SeqCst` fence, load `bottom` (`Acquire`), read the slot
//!   (`Relaxed`), claim it with a `SeqCst` CAS of `top` from `t` to `t + 1`. A failed CAS means
//!   another thief or the owner took the element: the caller may retry ([`Steal::Retry`]).
//!
//! `top` only grows, so the CAS cannot suffer ABA (64-bit indices do not wrap in practice).
//!
//! # What it guarantees
//! Every pushed element is returned by exactly one `pop` or `steal`, or dropped exactly once
//! when the deque is dropped. `push` on a full deque gives the element back. Owner operations
//! are wait-free except the CAS for the last element; steals are lock-free.
//!
//! # Who is the owner
//! [`ChaseLev`]'s owner operations are `unsafe`: the caller promises that only one thread (in a
//! kernel: the CPU the queue belongs to, with preemption off) runs them at a time. The safe
//! split API, [`new`] giving a [`Worker`] (owner, `!Sync`, not `Clone`) and [`Stealer`]s, is
//! for standalone use; the scheduler uses [`ChaseLev`] directly under its CPU guard.

extern crate alloc;

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::marker::PhantomData;
use core::ptr;

use veridian_sync::CachePadded;

use crate::primitives::{AtomicIsize, AtomicPtr, Ordering, fence};

/// A value that converts to one pointer-sized word and back without loss, so that the deque
/// can store it in an atomic slot (see the [module docs](self#elements-are-words)).
///
/// The word is a `*mut ()` so that a pointer keeps its provenance on the way through the deque;
/// implementations for pointers cast them (`<*mut T>::cast`) rather than going through
/// `usize`.
///
/// # Safety
/// `from_word(into_word(x))` must give back `x` (same ownership, same value), and a word that
/// is dropped without being turned back must only leak, never cause unsoundness. `into_word`
/// must not panic.
pub unsafe trait IntoWord: Send + Sized {
    /// Turns the value into a word, giving up ownership to it.
    fn into_word(self) -> *mut ();
    /// Turns a word made by [`IntoWord::into_word`] back into the value.
    ///
    /// # Safety
    /// `word` comes from `into_word` and is turned back at most once.
    unsafe fn from_word(word: *mut ()) -> Self;
}

// SAFETY: the word is a pointer whose address is the `usize` (no provenance: it is never
// dereferenced), and `addr` gives the `usize` back; there is no ownership to lose.
unsafe impl IntoWord for usize {
    #[inline(always)]
    fn into_word(self) -> *mut () {
        ptr::without_provenance_mut(self)
    }
    #[inline(always)]
    unsafe fn from_word(word: *mut ()) -> Self {
        word.addr()
    }
}

// SAFETY: `Box::into_raw`/`from_raw` round-trip ownership (the casts keep the provenance); a
// lost word leaks the box.
unsafe impl<T: Send> IntoWord for Box<T> {
    #[inline(always)]
    fn into_word(self) -> *mut () {
        Box::into_raw(self).cast()
    }
    #[inline(always)]
    unsafe fn from_word(word: *mut ()) -> Self {
        // SAFETY: `word` is `Box::into_raw` of a box turned back at most once (caller).
        unsafe { Box::from_raw(word.cast::<T>()) }
    }
}

// SAFETY: `Arc::into_raw`/`from_raw` round-trip one strong count (the casts keep the
// provenance); a lost word leaks it. `Arc<T>` is `Send` exactly when `T: Send + Sync`.
unsafe impl<T: Send + Sync> IntoWord for Arc<T> {
    #[inline(always)]
    fn into_word(self) -> *mut () {
        Arc::into_raw(self).cast_mut().cast()
    }
    #[inline(always)]
    unsafe fn from_word(word: *mut ()) -> Self {
        // SAFETY: `word` is `Arc::into_raw` of an `Arc` turned back at most once (caller).
        unsafe { Arc::from_raw(word.cast_const().cast::<T>()) }
    }
}

// SAFETY: a shared reference is a plain pointer (cast, not written through); `&'static T` is
// `Send` when `T: Sync`.
unsafe impl<T: Sync> IntoWord for &'static T {
    #[inline(always)]
    fn into_word(self) -> *mut () {
        ptr::from_ref(self).cast_mut().cast()
    }
    #[inline(always)]
    unsafe fn from_word(word: *mut ()) -> Self {
        // SAFETY: `word` came from a `&'static T` (caller), which is valid forever.
        unsafe { &*word.cast_const().cast::<T>() }
    }
}

/// The outcome of a steal.
#[derive(Debug, PartialEq, Eq)]
pub enum Steal<T> {
    /// The deque was empty.
    Empty,
    /// An element was stolen.
    Success(T),
    /// Lost a race with another thief or the owner; the deque may still hold elements.
    Retry,
}

impl<T> Steal<T> {
    /// The stolen element, if any.
    pub fn success(self) -> Option<T> {
        match self {
            Self::Success(t) => Some(t),
            _ => None,
        }
    }
}

/// The bounded Chase–Lev deque. See the [module docs](self).
pub struct ChaseLev<T: IntoWord> {
    /// Index of the oldest element; advanced by thieves (and by the owner for the last one).
    top: CachePadded<AtomicIsize>,
    /// One past the newest element; written only by the owner.
    bottom: CachePadded<AtomicIsize>,
    /// `capacity` slots, a power of two; index `i` lives in `i & mask`.
    slots: Box<[AtomicPtr<()>]>,
    mask: usize,
    _marker: PhantomData<T>,
}

// SAFETY: elements are moved between threads as words and turned back into a `T` by exactly one
// thread (the winner of the element), so sharing the deque only sends `T`s, which `T: Send`
// (required by `IntoWord`) allows.
unsafe impl<T: IntoWord> Send for ChaseLev<T> {}
// SAFETY: as above; `&ChaseLev` only moves `T`s in and out.
unsafe impl<T: IntoWord> Sync for ChaseLev<T> {}

impl<T: IntoWord> ChaseLev<T> {
    /// An empty deque of at least `capacity` elements (rounded up to a power of two, at least
    /// 2; capped at 2^30).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(2, 1 << 30).next_power_of_two();
        let slots = (0..capacity)
            .map(|_| AtomicPtr::new(ptr::null_mut()))
            .collect();
        Self {
            top: CachePadded::new(AtomicIsize::new(0)),
            bottom: CachePadded::new(AtomicIsize::new(0)),
            slots,
            mask: capacity - 1,
            _marker: PhantomData,
        }
    }

    /// The capacity (a power of two).
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// The number of elements at the time of the two loads (exact when nobody else operates).
    pub fn len(&self) -> usize {
        let b = self.bottom.load(Ordering::Relaxed);
        let t = self.top.load(Ordering::Relaxed);
        // A pop in flight may leave `bottom` one below `top` for a moment.
        b.wrapping_sub(t).max(0) as usize
    }

    /// Whether the deque looked empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline(always)]
    fn slot(&self, index: isize) -> &AtomicPtr<()> {
        // SAFETY: `index as usize & mask < slots.len()`.
        unsafe { self.slots.get_unchecked(index as usize & self.mask) }
    }

    /// Pushes `value` at the bottom, or gives it back if the deque is full.
    ///
    /// # Safety
    /// The caller is the deque's only owner: no other thread runs `push`, `pop` or
    /// `steal_half_into` as destination on this deque at the same time.
    pub unsafe fn push(&self, value: T) -> Result<(), T> {
        // Relaxed: only the owner writes `bottom`.
        let b = self.bottom.load(Ordering::Relaxed);
        // Acquire: a thief read the slot we may overwrite before its CAS advanced `top`.
        let t = self.top.load(Ordering::Acquire);
        if b.wrapping_sub(t) >= self.capacity() as isize {
            return Err(value);
        }
        self.slot(b).store(value.into_word(), Ordering::Relaxed);
        // Release fence: the slot write is visible to whoever acquires the new `bottom`.
        fence(Ordering::Release);
        self.bottom.store(b.wrapping_add(1), Ordering::Relaxed);
        Ok(())
    }

    /// Pops the newest element from the bottom.
    ///
    /// # Safety
    /// As for [`ChaseLev::push`]: the caller is the only owner.
    pub unsafe fn pop(&self) -> Option<T> {
        let b = self.bottom.load(Ordering::Relaxed);
        // Empty without the fence: thieves only move `top` up and only the owner pushes, so
        // a `top` at or past `bottom` (even a stale, smaller one) means nothing is left.
        if b.wrapping_sub(self.top.load(Ordering::Relaxed)) <= 0 {
            return None;
        }
        let b = b.wrapping_sub(1);
        self.bottom.store(b, Ordering::Relaxed);
        // SeqCst fence: orders the `bottom` store before the `top` load against the thieves'
        // fence between their `top` and `bottom` loads (see the module docs).
        fence(Ordering::SeqCst);
        let t = self.top.load(Ordering::Relaxed);
        let size = b.wrapping_sub(t);
        if size < 0 {
            // Empty: restore `bottom`.
            self.bottom.store(b.wrapping_add(1), Ordering::Relaxed);
            return None;
        }
        let word = self.slot(b).load(Ordering::Relaxed);
        if size > 0 {
            // More than one element: thieves stop at `b` (they saw the decremented bottom, or
            // they see `top` past it); the element is ours.
            // SAFETY: the slot holds the word pushed at index `b`, owned by nobody else now.
            return Some(unsafe { T::from_word(word) });
        }
        // The last element: race the thieves for it.
        let won = self
            .top
            .compare_exchange(t, t.wrapping_add(1), Ordering::SeqCst, Ordering::Relaxed)
            .is_ok();
        self.bottom.store(b.wrapping_add(1), Ordering::Relaxed);
        if won {
            // SAFETY: our CAS claimed index `t == b`; no thief can claim it any more.
            Some(unsafe { T::from_word(word) })
        } else {
            None
        }
    }

    /// Steals the oldest element from the top. Safe from any thread, including the owner (which
    /// the scheduler uses to take its own oldest task for fairness).
    pub fn steal(&self) -> Steal<T> {
        // Acquire: pairs with the CAS of a previous thief, so the slot values we read are at
        // least as new as what it saw.
        let t = self.top.load(Ordering::Acquire);
        // SeqCst fence: see `pop`.
        fence(Ordering::SeqCst);
        // Acquire: pairs with the owner's Release fence in `push`, making the slot visible.
        let b = self.bottom.load(Ordering::Acquire);
        if b.wrapping_sub(t) <= 0 {
            return Steal::Empty;
        }
        // Relaxed atomic read; may race with an overwrite, in which case the CAS below fails.
        let word = self.slot(t).load(Ordering::Relaxed);
        if self
            .top
            .compare_exchange(t, t.wrapping_add(1), Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            return Steal::Retry;
        }
        // SAFETY: our CAS claimed index `t`; its slot held the word pushed there (the owner
        // cannot overwrite it before `top > t`, which only our CAS made true).
        Steal::Success(unsafe { T::from_word(word) })
    }

    /// Steals up to half of the elements (rounded up, at most `max`): the first is returned,
    /// the others are pushed into `dest`. Elements are taken one CAS at a time: a single CAS
    /// over a batch would race with the owner's CAS-free pops at the bottom.
    ///
    /// Returns the first element and how many more were moved to `dest`. If `dest` fills up,
    /// the element that did not fit is handed to `overflow`.
    ///
    /// # Safety
    /// The caller is `dest`'s only owner (see [`ChaseLev::push`]); `dest` is not `self`.
    pub unsafe fn steal_half_into(
        &self,
        dest: &ChaseLev<T>,
        max: usize,
        mut overflow: impl FnMut(T),
    ) -> Option<(T, usize)> {
        let want = self.len().div_ceil(2).clamp(1, max.max(1));
        let first = loop {
            match self.steal() {
                Steal::Success(t) => break t,
                Steal::Empty => return None,
                Steal::Retry => core::hint::spin_loop(),
            }
        };
        let mut moved = 0;
        while moved + 1 < want {
            match self.steal() {
                Steal::Success(t) => {
                    // SAFETY: the caller owns `dest`.
                    if let Err(t) = unsafe { dest.push(t) } {
                        overflow(t);
                    }
                    moved += 1;
                }
                Steal::Empty | Steal::Retry => break,
            }
        }
        Some((first, moved))
    }
}

impl<T: IntoWord> Drop for ChaseLev<T> {
    fn drop(&mut self) {
        // `&mut self`: no other thread can touch the deque any more.
        let t = self.top.load(Ordering::Relaxed);
        let b = self.bottom.load(Ordering::Relaxed);
        let mut i = t;
        while i.wrapping_sub(b) < 0 {
            let word = self.slot(i).load(Ordering::Relaxed);
            // SAFETY: indices `top..bottom` hold words pushed and never taken.
            drop(unsafe { T::from_word(word) });
            i = i.wrapping_add(1);
        }
    }
}

impl<T: IntoWord> fmt::Debug for ChaseLev<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaseLev")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// A new deque of at least `capacity` elements, split into its owner and a thief handle.
///
/// ```
/// let (worker, stealer) = veridian_sched::deque::new::<usize>(4);
/// worker.push(1).unwrap();
/// worker.push(2).unwrap();
/// assert_eq!(stealer.steal().success(), Some(1)); // thieves take the oldest
/// assert_eq!(worker.pop(), Some(2)); // the owner the newest
/// ```
pub fn new<T: IntoWord>(capacity: usize) -> (Worker<T>, Stealer<T>) {
    let deque = Arc::new(ChaseLev::new(capacity));
    (
        Worker {
            deque: Arc::clone(&deque),
            _not_sync: PhantomData,
        },
        Stealer { deque },
    )
}

/// The owner side of a deque: push and pop at the bottom. `Send` but not `Sync` or `Clone`, so
/// exactly one thread at a time can use it.
pub struct Worker<T: IntoWord> {
    deque: Arc<ChaseLev<T>>,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

impl<T: IntoWord> Worker<T> {
    /// Pushes at the bottom, or gives the value back if full.
    pub fn push(&self, value: T) -> Result<(), T> {
        // SAFETY: `Worker` is the only owner handle and is `!Sync` and not `Clone`, so only
        // one thread at a time can call this.
        unsafe { self.deque.push(value) }
    }

    /// Pops the newest element.
    pub fn pop(&self) -> Option<T> {
        // SAFETY: as in `push`.
        unsafe { self.deque.pop() }
    }

    /// Number of elements (approximate under concurrency).
    pub fn len(&self) -> usize {
        self.deque.len()
    }

    /// Whether the deque looked empty.
    pub fn is_empty(&self) -> bool {
        self.deque.is_empty()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.deque.capacity()
    }

    /// A further thief handle.
    pub fn stealer(&self) -> Stealer<T> {
        Stealer {
            deque: Arc::clone(&self.deque),
        }
    }
}

impl<T: IntoWord> fmt::Debug for Worker<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Worker").field(&self.deque).finish()
    }
}

/// A thief handle: steals at the top. `Clone`, `Send` and `Sync`.
pub struct Stealer<T: IntoWord> {
    deque: Arc<ChaseLev<T>>,
}

impl<T: IntoWord> Clone for Stealer<T> {
    fn clone(&self) -> Self {
        Self {
            deque: Arc::clone(&self.deque),
        }
    }
}

impl<T: IntoWord> Stealer<T> {
    /// Steals the oldest element.
    pub fn steal(&self) -> Steal<T> {
        self.deque.steal()
    }

    /// Steals up to half (at most `max`) into `dest`'s deque, returning the first; see
    /// [`ChaseLev::steal_half_into`]. Elements that do not fit into `dest` go to `overflow`.
    pub fn steal_half_into(
        &self,
        dest: &Worker<T>,
        max: usize,
        overflow: impl FnMut(T),
    ) -> Option<(T, usize)> {
        if Arc::ptr_eq(&self.deque, &dest.deque) {
            return self.deque.steal().success().map(|t| (t, 0));
        }
        // SAFETY: `dest` is a `Worker`, the unique owner handle of its deque, borrowed here, so
        // this thread is its only owner for the call; it is a different deque (checked above).
        unsafe { self.deque.steal_half_into(&dest.deque, max, overflow) }
    }

    /// Number of elements (approximate under concurrency).
    pub fn len(&self) -> usize {
        self.deque.len()
    }

    /// Whether the deque looked empty.
    pub fn is_empty(&self) -> bool {
        self.deque.is_empty()
    }
}

impl<T: IntoWord> fmt::Debug for Stealer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Stealer").field(&self.deque).finish()
    }
}
