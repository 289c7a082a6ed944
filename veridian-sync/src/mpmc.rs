//! Bounded multi-producer multi-consumer queue (Dmitry Vyukov's array queue with per-slot
//! sequence numbers).
//!
//! # What it does
//! [`ArrayQueue`] is a ring of slots. Producers claim positions by advancing `tail`, consumers by
//! advancing `head`; both counters only grow (wrapping at `usize::MAX`), and position `p` lives in
//! slot `p % capacity`. Each slot carries a sequence number that says whose turn it is:
//!
//! | `seq` of the slot for position `p` | meaning                                              |
//! |------------------------------------|------------------------------------------------------|
//! | `p`                                | empty, the producer of position `p` may write it     |
//! | `p + 1`                            | full, the consumer of position `p` may read it       |
//! | `p + capacity`                     | read; empty again for position `p + capacity`        |
//!
//! A producer whose slot still shows `p - capacity + 1` (last lap's value not yet consumed)
//! reports the queue full; a consumer whose slot still shows `p` reports it empty.
//!
//! # Capacity
//! The capacity is rounded **up to a power of two, and at least 2** ([`ArrayQueue::capacity`]
//! returns the rounded value). A power of two makes the slot index `position & mask` and lets
//! every counter wrap around `usize::MAX` without a discontinuity: `2^64` (or `2^32`) is a
//! multiple of the capacity. The cost is up to twice the memory for an unlucky request
//! (`capacity = 2^k + 1`). The minimum of 2 is inherent to the sequence-number scheme: with one
//! slot, "full with position `p`" (`seq = p + 1`) and "empty, waiting for position `p + 1`"
//! (`seq = p + 1`) would be the same number.
//!
//! # What it relies on
//! Only atomics: one CAS on `head` or `tail` per operation plus one load and one store of the
//! slot's sequence number. `head` and `tail` are [`CachePadded`] so producers and consumers do
//! not false-share. The slots are either one heap allocation made by [`ArrayQueue::new`]
//! (`alloc` feature) or an array inside the queue ([`StaticArrayQueue::new`], a `const fn`, so
//! the queue can be a `static` in a kernel without a heap).
//!
//! # What it guarantees
//! - Every pushed value is popped at most once and, if the queue is drained, exactly once; the
//!   values still inside when the queue is dropped are dropped exactly once.
//! - FIFO in position order: values are popped in the order their pushes claimed positions, so
//!   each consumer sees each producer's values in that producer's push order.
//! - Lock-free, and no operation ever waits for another thread. The price is that the answers
//!   "full" and "empty" are about the slot the caller is next in line for: a `pop` returns
//!   `None` while the push that claimed the oldest position is still writing its slot (even if
//!   later pushes have completed), and a `push` fails while the pop that claimed the oldest
//!   value is still reading it. Callers that must not lose a value retry (the value comes back
//!   in `Err`). In a kernel this is the right trade: an interrupted or preempted producer cannot
//!   make consumers on other CPUs spin. (crossbeam's `ArrayQueue` instead spins until the
//!   in-flight operation finishes, so its `None` means "empty".)
//!
//! # Memory orderings
//! The slot's sequence number is the synchronisation point: the writer of a slot's contents
//! stores `seq` with `Release` after writing, the next user loads it with `Acquire` before
//! touching the contents. `head` and `tail` only hand out positions, so their CASes are
//! `Relaxed` (a claimed position is used only after the `Acquire` load of the slot's `seq`
//! that proved it is our turn).

#[cfg(feature = "alloc")]
use alloc::boxed::Box;
use core::fmt;
use core::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::primitives::{AtomicUsize, Ordering, UnsafeCell, spin_loop};

/// One cell of the ring. Public only as the element type of the sealed [`Slots`] storages;
/// nothing outside this module can make or read one.
pub struct Slot<T> {
    /// Turn indicator, see the table in the [module docs](self).
    seq: AtomicUsize,
    /// The value; initialised exactly when `seq` is `position + 1` for this slot's position.
    value: UnsafeCell<MaybeUninit<T>>,
}

impl<T> Slot<T> {
    /// An empty slot whose turn indicator says `seq`.
    #[cfg(feature = "alloc")]
    fn empty(seq: usize) -> Self {
        Self {
            seq: AtomicUsize::new(seq),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }
}

mod sealed {
    /// The slice of slots behind a storage.
    pub trait Sealed<T> {
        /// The slots; their number is a power of two, at least 2, and never changes.
        fn slots(&self) -> &[super::Slot<T>];
    }
}

/// Where a [`Queue`]'s slots live: [`HeapSlots`] (allocated once, `alloc` feature) or
/// [`InlineSlots`] (inside the queue, so the queue can be a `static`). Sealed.
pub trait Slots<T>: sealed::Sealed<T> {}

/// Slots in one heap allocation, sized at run time ([`ArrayQueue::new`]).
#[cfg(feature = "alloc")]
pub struct HeapSlots<T>(Box<[Slot<T>]>);

#[cfg(feature = "alloc")]
impl<T> sealed::Sealed<T> for HeapSlots<T> {
    fn slots(&self) -> &[Slot<T>] {
        &self.0
    }
}

#[cfg(feature = "alloc")]
impl<T> Slots<T> for HeapSlots<T> {}

/// `N` slots inside the queue ([`StaticArrayQueue::new`], a `const fn`).
pub struct InlineSlots<T, const N: usize>([Slot<T>; N]);

impl<T, const N: usize> sealed::Sealed<T> for InlineSlots<T, N> {
    fn slots(&self) -> &[Slot<T>] {
        &self.0
    }
}

impl<T, const N: usize> Slots<T> for InlineSlots<T, N> {}

/// A bounded, lock-free multi-producer multi-consumer FIFO queue over the slot storage `S`.
/// Use it through [`ArrayQueue`] (heap slots, capacity chosen at run time) or
/// [`StaticArrayQueue`] (`N` slots inline, `const fn new`, no allocator).
pub struct Queue<T, S: Slots<T>> {
    /// Next position to pop (consumers' counter).
    head: CachePadded<AtomicUsize>,
    /// Next position to push (producers' counter).
    tail: CachePadded<AtomicUsize>,
    /// `capacity` slots, `capacity` a power of two.
    buffer: S,
    /// `capacity - 1`: position to slot index.
    mask: usize,
    _values: core::marker::PhantomData<T>,
}

/// A bounded, lock-free multi-producer multi-consumer FIFO queue, its slots allocated once on
/// the heap (`alloc` feature).
///
/// ```
/// use veridian_sync::mpmc::ArrayQueue;
///
/// let q = ArrayQueue::new(3); // rounded up to 4 (see "Capacity" in the module docs)
/// assert_eq!(q.capacity(), 4);
/// for i in 0..4 {
///     q.push(i).unwrap();
/// }
/// assert_eq!(q.push(4), Err(4)); // full: the value comes back
/// assert_eq!(q.pop(), Some(0));
/// assert_eq!(q.len(), 3);
/// ```
#[cfg(feature = "alloc")]
pub type ArrayQueue<T> = Queue<T, HeapSlots<T>>;

/// A bounded, lock-free multi-producer multi-consumer FIFO queue of `N` slots stored inline:
/// `new` is a `const fn`, so the queue can be a plain `static`, and no allocator is needed.
/// `N` must be a power of two, at least 2 (checked when `new` is evaluated).
///
/// ```
/// use veridian_sync::mpmc::StaticArrayQueue;
///
/// static EVENTS: StaticArrayQueue<u32, 8> = StaticArrayQueue::new();
///
/// EVENTS.push(7).unwrap();
/// assert_eq!(EVENTS.capacity(), 8);
/// assert_eq!(EVENTS.pop(), Some(7));
/// ```
pub type StaticArrayQueue<T, const N: usize> = Queue<T, InlineSlots<T, N>>;

// SAFETY: each value is written by one producer and moved out by one consumer (the slot's
// sequence number hands it over); no `&T` is ever shared. So sending or sharing the queue only
// sends `T`s between threads, which `T: Send` allows. The storage holds nothing but the slots.
unsafe impl<T: Send, S: Slots<T>> Send for Queue<T, S> {}
// SAFETY: as above; `&Queue` only allows moving `T`s in and out.
unsafe impl<T: Send, S: Slots<T>> Sync for Queue<T, S> {}

/// The initial turn indicator of slot `j` when both counters start at `start`: the first
/// position `>= start` that maps to it, `start + ((j - start) & mask)` (positions
/// `start..start + capacity` cover each slot once).
const fn initial_seq(j: usize, start: usize, mask: usize) -> usize {
    start.wrapping_add(j.wrapping_sub(start) & mask)
}

#[cfg(feature = "alloc")]
impl<T> Queue<T, HeapSlots<T>> {
    /// Creates an empty queue holding at least `capacity` values (rounded up to a power of two,
    /// at least 2; see the [module docs](self#capacity)).
    ///
    /// # Panics
    /// If `capacity` is 0 or rounds to more than `isize::MAX` (memory runs out long before).
    pub fn new(capacity: usize) -> Self {
        Self::with_start(capacity, 0)
    }

    /// [`new`](Self::new) with both counters starting at `start` (tests use a start close to
    /// `usize::MAX` to exercise counter wrap-around).
    fn with_start(capacity: usize, start: usize) -> Self {
        assert!(capacity > 0, "ArrayQueue capacity must be non-zero");
        // Sequence differences and lengths are handled as `isize`, so the capacity must fit in
        // one; `checked_next_power_of_two` returning `None` means far above it anyway.
        let capacity = capacity
            .max(2)
            .checked_next_power_of_two()
            .filter(|&c| c <= isize::MAX as usize)
            .expect("ArrayQueue capacity too large");
        let mask = capacity - 1;
        let buffer = (0..capacity)
            .map(|j| Slot::empty(initial_seq(j, start, mask)))
            .collect::<Box<[_]>>();
        Self {
            head: CachePadded::new(AtomicUsize::new(start)),
            tail: CachePadded::new(AtomicUsize::new(start)),
            buffer: HeapSlots(buffer),
            mask,
            _values: core::marker::PhantomData,
        }
    }
}

#[cfg(not(loom))]
impl<T, const N: usize> Queue<T, InlineSlots<T, N>> {
    /// Creates an empty queue of `N` slots, at compile time where used in a `static` or `const`.
    ///
    /// # Panics
    /// If `N` is not a power of two or is below 2 (a compile error when evaluated in a
    /// `static`; see the [module docs](self#capacity) for why).
    pub const fn new() -> Self {
        assert!(
            N >= 2 && N.is_power_of_two() && N <= isize::MAX as usize,
            "StaticArrayQueue: N must be a power of two, at least 2"
        );
        let mask = N - 1;
        let mut slots = MaybeUninit::<[Slot<T>; N]>::uninit();
        let first = slots.as_mut_ptr().cast::<Slot<T>>();
        let mut j = 0;
        while j < N {
            let slot = Slot {
                seq: AtomicUsize::new(initial_seq(j, 0, mask)),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            };
            // SAFETY: `j < N`, so `first + j` is inside the array; writing an uninitialised
            // element drops nothing.
            unsafe { first.add(j).write(slot) };
            j += 1;
        }
        // SAFETY: the loop initialised all `N` elements.
        let slots = unsafe { slots.assume_init() };
        Self {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            buffer: InlineSlots(slots),
            mask,
            _values: core::marker::PhantomData,
        }
    }
}

#[cfg(not(loom))]
impl<T, const N: usize> Default for Queue<T, InlineSlots<T, N>> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, S: Slots<T>> Queue<T, S> {
    /// The slot for `position`.
    #[inline(always)]
    fn slot(&self, position: usize) -> &Slot<T> {
        // SAFETY: `mask == buffer.len() - 1`, so `position & mask < buffer.len()`.
        unsafe { self.buffer.slots().get_unchecked(position & self.mask) }
    }

    /// Appends `value` at the back, or gives it back in `Err` if the slot for the next position
    /// is still occupied (the queue is full, or the pop of the oldest value is still in flight;
    /// see the [module docs](self#what-it-guarantees)).
    pub fn push(&self, value: T) -> Result<(), T> {
        // Relaxed: a position claim only; the slot's `seq` (Acquire below) decides whether we
        // may use it.
        let mut tail = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(tail);
            // Acquire: pairs with the consumer's `Release` store of `seq = tail` (last lap's
            // value read), so its read of the slot happens before our write below.
            let seq = slot.seq.load(Ordering::Acquire);
            // Wrapping difference read as signed: counters wrap, the distance stays small.
            let diff = seq.wrapping_sub(tail) as isize;
            if diff == 0 {
                // Our turn if we win position `tail`. Relaxed: see the module docs (positions
                // carry no data; the slot's `seq` does).
                match self.tail.compare_exchange_weak(
                    tail,
                    tail.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: winning the CAS for position `tail` while `seq == tail` makes
                        // us the only thread allowed to touch this slot until we bump `seq`;
                        // the slot is empty (its last value was moved out), so overwriting it
                        // drops nothing.
                        unsafe { slot.value.with_mut(|p| p.write(MaybeUninit::new(value))) };
                        // Release: publishes the value to the consumer whose `Acquire` load
                        // sees `seq == tail + 1`.
                        slot.seq.store(tail.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(current) => tail = current,
                }
            } else if diff < 0 {
                // The slot still holds the value from one lap ago: full.
                return Err(value);
            } else {
                // Another producer already took `tail`; catch up.
                spin_loop();
                tail = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Removes the value at the front, or returns `None` if the slot for the next position holds
    /// no value yet (the queue is empty, or the push of that position is still in flight; see
    /// the [module docs](self#what-it-guarantees)).
    pub fn pop(&self) -> Option<T> {
        // Relaxed: a position claim only, like `push`.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(head);
            // Acquire: pairs with the producer's `Release` store of `seq = head + 1`, so its
            // write of the value happens before our read.
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(head.wrapping_add(1)) as isize;
            if diff == 0 {
                // Relaxed: as in `push`.
                match self.head.compare_exchange_weak(
                    head,
                    head.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: winning position `head` while `seq == head + 1` makes us the
                        // only reader of this slot, and the producer initialised it (its write
                        // happens before our Acquire load). Moving the value out leaves the slot
                        // logically empty; the `seq` store below says so.
                        let value = unsafe { slot.value.with(|p| p.read().assume_init()) };
                        // Release: our read of the slot happens before the next lap's producer
                        // (which loads `seq` with Acquire) overwrites it.
                        slot.seq
                            .store(head.wrapping_add(self.mask + 1), Ordering::Release);
                        return Some(value);
                    }
                    Err(current) => head = current,
                }
            } else if diff < 0 {
                // Not written for this lap yet: empty (or the push is in flight).
                return None;
            } else {
                // Another consumer already took `head`; catch up.
                spin_loop();
                head = self.head.load(Ordering::Relaxed);
            }
        }
    }

    /// The number of slots (the requested capacity rounded up to a power of two, at least 2).
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// The number of values in the queue, counting pushes and pops that have claimed their
    /// position but not finished. Exact when no operation is in flight; otherwise a snapshot in
    /// `0..=capacity`.
    pub fn len(&self) -> usize {
        loop {
            // Relaxed throughout: a statistic, not a synchronisation point. Re-reading `tail`
            // retries when a push claimed a position in between, so the pair is usually a
            // consistent snapshot.
            let tail = self.tail.load(Ordering::Relaxed);
            let head = self.head.load(Ordering::Relaxed);
            if self.tail.load(Ordering::Relaxed) == tail {
                // Relaxed loads of two different counters are not ordered with each other, so
                // `head` may be staler than `tail` (difference above the capacity) or, in the
                // abstract memory model, newer (negative difference): clamp to `0..=capacity`.
                let len = tail.wrapping_sub(head) as isize;
                return len.clamp(0, self.capacity() as isize) as usize;
            }
        }
    }

    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`len`](Self::len) equals the capacity.
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }
}

impl<T, S: Slots<T>> Drop for Queue<T, S> {
    fn drop(&mut self) {
        // `&mut self`: no operation is in flight, so exactly the positions `head..tail` hold
        // values. Relaxed: exclusive access, already synchronised by whoever handed us `&mut`.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        let mut position = head;
        while position != tail {
            let slot = self.slot(position);
            // SAFETY: positions in `head..tail` were pushed and not popped, so their slots hold
            // initialised values; each is dropped once, here.
            unsafe { slot.value.with_mut(|p| (*p).assume_init_drop()) };
            position = position.wrapping_add(1);
        }
    }
}

impl<T, S: Slots<T>> fmt::Debug for Queue<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayQueue")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "alloc", not(loom)))]
mod tests {
    use super::ArrayQueue;

    /// Counters that wrap around `usize::MAX` in the middle of the run.
    #[test]
    fn counters_wrap_around() {
        for requested in [1, 2, 4] {
            let q = ArrayQueue::with_start(requested, usize::MAX - 5);
            let capacity = q.capacity();
            let mut next_push = 0_u32;
            let mut next_pop = 0_u32;
            for round in 0..20 {
                // Fill to capacity, check full, drain partly.
                while q.push(next_push).is_ok() {
                    next_push += 1;
                    assert!(q.len() <= capacity, "pushed past capacity");
                }
                assert_eq!(q.len(), capacity);
                assert!(q.is_full());
                for _ in 0..=(round % capacity) {
                    assert_eq!(q.pop(), Some(next_pop));
                    next_pop += 1;
                }
            }
            while let Some(v) = q.pop() {
                assert_eq!(v, next_pop);
                next_pop += 1;
            }
            assert_eq!(next_pop, next_push);
            assert!(q.is_empty());
        }
    }
}
