//! Single-producer single-consumer ring buffer with batch operations.
//!
//! # What it does
//! [`SpscRing`] is a power-of-two array of slots with two counters: `tail` (next position to
//! write, advanced only by the producer) and `head` (next position to read, advanced only by the
//! consumer). Position `p` lives in slot `p & mask`; the counters wrap around `usize::MAX`
//! (harmless, since the capacity divides `2^64`), and `tail - head` is the number of values.
//!
//! The ring is used through two handles, [`Producer`] and [`Consumer`], made by [`channel`] or
//! [`SpscRing::split`]. Neither is `Clone` and every operation takes `&mut self`, so the types
//! guarantee one producer and one consumer at a time; each handle is `Send` (when `T` is) and
//! can move to the thread that uses it.
//!
//! # What it relies on
//! Only atomics, one shared counter per side, each in its own [`CachePadded`] line. Each handle
//! also keeps a private copy of the *other* side's counter, refreshed only when the cached
//! value says full (producer) or empty (consumer): in steady state a push or pop touches only
//! its own cache line, and the other side's line moves across CPUs once per refresh instead of
//! once per operation.
//!
//! # What it guarantees
//! - FIFO, and wait-free: every operation finishes in a bounded number of its own steps.
//! - `Err`/`None`/a short batch mean the ring was full/empty at the moment of the check.
//! - Batch operations ([`Producer::push_iter`], [`Producer::push_slice`],
//!   [`Consumer::pop_batch`], [`Consumer::pop_into`]) publish the whole batch with one
//!   `Release` store and need at most one `Acquire` load, and stay consistent when a
//!   user-supplied iterator, `clone` or callback panics: what was transferred before the panic is
//!   published, nothing is lost or duplicated.
//! - Values still in the ring when both handles are gone are dropped exactly once.
//!
//! # Memory orderings
//! The producer writes a slot, then stores `tail` with `Release`; the consumer loads `tail` with
//! `Acquire` before reading slots below it. Symmetrically, the consumer moves values out, then
//! stores `head` with `Release`; the producer loads `head` with `Acquire` before overwriting
//! slots the consumer has freed. A side reads its own counter from its handle, never from the
//! shared atomic.

use alloc::boxed::Box;
use core::fmt;
use core::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::primitives::{AtomicUsize, Ordering, UnsafeCell};

// loom's `Arc` lets the model see the handles' reference counting (the last handle drops the
// ring, which drops the values left in it).
#[cfg(not(loom))]
use alloc::sync::Arc;
#[cfg(loom)]
use loom::sync::Arc;

/// The shared ring behind a [`Producer`]/[`Consumer`] pair.
///
/// It has no operations of its own: create it, then [`split`](Self::split) it.
pub struct SpscRing<T> {
    /// Next position to read; written by the consumer only.
    head: CachePadded<AtomicUsize>,
    /// Next position to write; written by the producer only.
    tail: CachePadded<AtomicUsize>,
    /// `capacity` slots; slot `p & mask` holds a value exactly when `head <= p < tail`.
    buffer: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// `capacity - 1`.
    mask: usize,
}

// SAFETY: each value is written by the producer and moved out by the consumer; no `&T` is
// shared, so the ring only sends `T`s between threads (`T: Send`).
unsafe impl<T: Send> Send for SpscRing<T> {}
// SAFETY: shared access goes through the handles, which admit one writer per slot at a time
// (the counter protocol above) and only move `T`s across threads.
unsafe impl<T: Send> Sync for SpscRing<T> {}

/// Creates a ring holding at least `capacity` values (rounded up to a power of two) and returns
/// its two ends.
///
/// ```
/// let (mut tx, mut rx) = veridian_sync::spsc::channel(4);
/// tx.push(1).unwrap();
/// assert_eq!(tx.push_iter([2, 3, 4, 5]), 3); // one slot was taken
/// let mut got = Vec::new();
/// assert_eq!(rx.pop_batch(usize::MAX, |v| got.push(v)), 4);
/// assert_eq!(got, [1, 2, 3, 4]);
/// ```
///
/// # Panics
/// If `capacity` is 0 or rounds to more than `isize::MAX` (memory runs out long before).
pub fn channel<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    SpscRing::new(capacity).split()
}

impl<T> SpscRing<T> {
    /// Creates a ring holding at least `capacity` values, rounded up to a power of two so the
    /// slot index is a mask and the counters may wrap.
    ///
    /// # Panics
    /// If `capacity` is 0 or rounds to more than `isize::MAX` (memory runs out long before).
    pub fn new(capacity: usize) -> Self {
        Self::with_start(capacity, 0)
    }

    /// [`new`](Self::new) with both counters at `start` (tests exercise counter wrap-around).
    fn with_start(capacity: usize, start: usize) -> Self {
        assert!(capacity > 0, "SpscRing capacity must be non-zero");
        let capacity = capacity
            .checked_next_power_of_two()
            .filter(|&c| c <= isize::MAX as usize)
            .expect("SpscRing capacity too large");
        Self {
            head: CachePadded::new(AtomicUsize::new(start)),
            tail: CachePadded::new(AtomicUsize::new(start)),
            buffer: (0..capacity)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            mask: capacity - 1,
        }
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Splits the ring into its producer and consumer ends.
    pub fn split(self) -> (Producer<T>, Consumer<T>) {
        // Relaxed: we own the ring; nothing to synchronise with.
        let start = self.head.load(Ordering::Relaxed);
        let mask = self.mask;
        let ring = Arc::new(self);
        (
            Producer {
                ring: Arc::clone(&ring),
                tail: start,
                cached_head: start,
                mask,
            },
            Consumer {
                ring,
                head: start,
                cached_tail: start,
                mask,
            },
        )
    }

    /// The cell for `position`.
    #[inline(always)]
    fn slot(&self, position: usize) -> &UnsafeCell<MaybeUninit<T>> {
        // SAFETY: `mask == buffer.len() - 1`, so `position & mask < buffer.len()`.
        unsafe { self.buffer.get_unchecked(position & self.mask) }
    }
}

impl<T> Drop for SpscRing<T> {
    fn drop(&mut self) {
        // `&mut self`: both handles are gone (they hold the `Arc`), and each published its
        // counter after its last operation. Relaxed: the `Arc`'s drop already synchronised us
        // with both handles.
        let mut position = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        while position != tail {
            // SAFETY: positions `head..tail` were written and not read; each is dropped once.
            unsafe { self.slot(position).with_mut(|p| (*p).assume_init_drop()) };
            position = position.wrapping_add(1);
        }
    }
}

impl<T> fmt::Debug for SpscRing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpscRing")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

/// The writing end of an [`SpscRing`].
pub struct Producer<T> {
    /// The shared ring.
    ring: Arc<SpscRing<T>>,
    /// Our counter (the ring's `tail` always equals it between operations).
    tail: usize,
    /// Last `head` we loaded; the consumer's real `head` is at least this.
    cached_head: usize,
    /// Copy of the ring's mask (saves a dependent load).
    mask: usize,
}

impl<T> Producer<T> {
    /// Free slots according to the cached `head`; refreshes it (one `Acquire` load) if that
    /// shows fewer than `wanted`. Returns the free count, which may still be below `wanted`.
    #[inline]
    fn free_slots(&mut self, wanted: usize) -> usize {
        let capacity = self.mask + 1;
        let free = capacity - self.tail.wrapping_sub(self.cached_head);
        if free >= wanted {
            return free;
        }
        // Acquire: pairs with the consumer's `Release` store of `head`, so its moves out of the
        // slots below `head` happen before we overwrite them.
        self.cached_head = self.ring.head.load(Ordering::Acquire);
        capacity - self.tail.wrapping_sub(self.cached_head)
    }

    /// Writes `value` into the slot for `position`.
    ///
    /// # Safety
    /// `position` is in `tail..cached_head + capacity` (free for the producer).
    #[inline(always)]
    unsafe fn write(&self, position: usize, value: T) {
        // SAFETY: the caller guarantees the slot is free: the consumer has moved its previous
        // value out (ordered before us by the `Acquire` load of `head`) and will not read it
        // until we publish a `tail` beyond `position`.
        unsafe {
            self.ring
                .slot(position)
                .with_mut(|p| p.write(MaybeUninit::new(value)))
        };
    }

    /// Appends `value`, or gives it back in `Err` if the ring is full.
    pub fn push(&mut self, value: T) -> Result<(), T> {
        if self.free_slots(1) == 0 {
            return Err(value);
        }
        // SAFETY: `free_slots` found room for `tail`.
        unsafe { self.write(self.tail, value) };
        self.tail = self.tail.wrapping_add(1);
        // Release: publishes the value written above to the consumer's `Acquire` load.
        self.ring.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Moves values from `values` into the ring until it is full or the iterator ends; returns
    /// how many were pushed. Values the ring had no room for stay in the iterator: it is never
    /// advanced beyond the free space (pass `&mut iter` to keep the rest).
    ///
    /// One `Release` store publishes the whole batch; the consumer's `head` is reloaded (one
    /// `Acquire` load) only if the cached value shows less room than the iterator's lower size
    /// bound. If the iterator panics, the values it yielded before the panic are published.
    pub fn push_iter<I: IntoIterator<Item = T>>(&mut self, values: I) -> usize {
        let mut values = values.into_iter();
        let free = self.free_slots(values.size_hint().0.max(1));
        let start = self.tail;
        let mut batch = PublishTail {
            producer: self,
            end: start,
        };
        for _ in 0..free {
            let Some(value) = values.next() else { break };
            // SAFETY: `end` stays below `tail + free`, inside the free space.
            unsafe { batch.producer.write(batch.end, value) };
            batch.end = batch.end.wrapping_add(1);
        }
        let end = batch.end;
        drop(batch);
        end.wrapping_sub(start)
    }

    /// Clones values from the front of `values` into the ring until it is full; returns how many
    /// were pushed (the first `n` of `values`). One `Release` store for the whole batch; if a
    /// `clone` panics, the values cloned before it are published.
    pub fn push_slice(&mut self, values: &[T]) -> usize
    where
        T: Clone,
    {
        self.push_iter(values.iter().cloned())
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Values in the ring (exact for the producer's own pushes; the consumer may have popped
    /// more since).
    pub fn len(&self) -> usize {
        // Relaxed: a statistic; `head` only grows and never passes our `tail`.
        self.tail
            .wrapping_sub(self.ring.head.load(Ordering::Relaxed))
            .min(self.capacity())
    }

    /// Whether the ring is empty (see [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the ring is full (see [`len`](Self::len)).
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }
}

/// Publishes the producer's batch (`tail = end`) when dropped, on success or on a panic in the
/// user's iterator or `clone`.
struct PublishTail<'a, T> {
    /// The producer whose batch this is.
    producer: &'a mut Producer<T>,
    /// One past the last slot written.
    end: usize,
}

impl<T> Drop for PublishTail<'_, T> {
    fn drop(&mut self) {
        if self.end != self.producer.tail {
            self.producer.tail = self.end;
            // Release: publishes every slot written in the batch.
            self.producer.ring.tail.store(self.end, Ordering::Release);
        }
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

/// The reading end of an [`SpscRing`].
pub struct Consumer<T> {
    /// The shared ring.
    ring: Arc<SpscRing<T>>,
    /// Our counter (the ring's `head` always equals it between operations).
    head: usize,
    /// Last `tail` we loaded; the producer's real `tail` is at least this.
    cached_tail: usize,
    /// Copy of the ring's mask.
    mask: usize,
}

impl<T> Consumer<T> {
    /// Values available according to the cached `tail`; refreshes it (one `Acquire` load) if
    /// that shows fewer than `wanted`.
    #[inline]
    fn available(&mut self, wanted: usize) -> usize {
        let available = self.cached_tail.wrapping_sub(self.head);
        if available >= wanted {
            return available;
        }
        // Acquire: pairs with the producer's `Release` store of `tail`, so its writes of the
        // slots below `tail` happen before our reads.
        self.cached_tail = self.ring.tail.load(Ordering::Acquire);
        self.cached_tail.wrapping_sub(self.head)
    }

    /// Moves the value out of the slot for `position`.
    ///
    /// # Safety
    /// `position` is in `head..cached_tail` (published, not yet read), and the caller advances
    /// past it so it is read once.
    #[inline(always)]
    unsafe fn read(&self, position: usize) -> T {
        // SAFETY: the caller guarantees the slot was published (write ordered before us by the
        // `Acquire` load of `tail`) and not yet read; the producer will not touch it until we
        // publish a `head` beyond it.
        unsafe { self.ring.slot(position).with(|p| p.read().assume_init()) }
    }

    /// Removes the oldest value, or returns `None` if the ring is empty.
    pub fn pop(&mut self) -> Option<T> {
        if self.available(1) == 0 {
            return None;
        }
        // SAFETY: `available` found a published value at `head`; we advance past it below.
        let value = unsafe { self.read(self.head) };
        self.head = self.head.wrapping_add(1);
        // Release: our move out of the slot happens before the producer reuses it.
        self.ring.head.store(self.head, Ordering::Release);
        Some(value)
    }

    /// Removes up to `max` values, oldest first, handing each to `f`; returns how many.
    ///
    /// One `Acquire` load at most (only if the cached `tail` shows fewer than `max`) and one
    /// `Release` store for the whole batch. If `f` panics, the values handed out before (and
    /// including) the one it panicked on count as removed.
    pub fn pop_batch(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        let count = self.available(max).min(max);
        let start = self.head;
        let mut batch = PublishHead {
            consumer: self,
            end: start,
        };
        for _ in 0..count {
            // SAFETY: `end` stays below `head + available`; it advances before `f` runs, so a
            // panic in `f` never leaves a moved-out slot unpublished.
            let value = unsafe { batch.consumer.read(batch.end) };
            batch.end = batch.end.wrapping_add(1);
            f(value);
        }
        drop(batch);
        count
    }

    /// Moves up to `out.len()` values into the front of `out`, oldest first; returns how many
    /// (`out[..n]` is initialised). One `Acquire` load at most and one `Release` store.
    pub fn pop_into(&mut self, out: &mut [MaybeUninit<T>]) -> usize {
        let mut slots = out.iter_mut();
        // `pop_batch` hands out at most `out.len()` values, so `next()` never runs dry.
        self.pop_batch(slots.len(), |value| {
            if let Some(slot) = slots.next() {
                slot.write(value);
            }
        })
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Values in the ring (at least this many; the producer may have pushed more since).
    pub fn len(&self) -> usize {
        // Relaxed: a statistic; `tail` never runs more than `capacity` ahead of our `head`.
        self.ring
            .tail
            .load(Ordering::Relaxed)
            .wrapping_sub(self.head)
            .min(self.capacity())
    }

    /// Whether the ring is empty (see [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the ring is full (see [`len`](Self::len)).
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }
}

/// Publishes the consumer's batch (`head = end`) when dropped, on success or on a panic in the
/// user's callback.
struct PublishHead<'a, T> {
    /// The consumer whose batch this is.
    consumer: &'a mut Consumer<T>,
    /// One past the last slot read.
    end: usize,
}

impl<T> Drop for PublishHead<'_, T> {
    fn drop(&mut self) {
        if self.end != self.consumer.head {
            self.consumer.head = self.end;
            // Release: every move out of the batch's slots happens before the producer reuses
            // them.
            self.consumer.ring.head.store(self.end, Ordering::Release);
        }
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::SpscRing;

    /// Counters that wrap around `usize::MAX` in the middle of the run, single and batch ops.
    #[test]
    fn counters_wrap_around() {
        for capacity in [1, 2, 4] {
            let (mut tx, mut rx) = SpscRing::with_start(capacity, usize::MAX - 6).split();
            let mut next_push = 0_u32;
            let mut next_pop = 0_u32;
            for round in 0..20_u32 {
                if round % 2 == 0 {
                    while tx.push(next_push).is_ok() {
                        next_push += 1;
                    }
                } else {
                    let n = tx.push_iter(next_push..next_push + 3) as u32;
                    next_push += n;
                }
                assert!(tx.len() <= capacity);
                let mut got = alloc::vec::Vec::new();
                rx.pop_batch(1 + round as usize % capacity, |v| got.push(v));
                for v in got {
                    assert_eq!(v, next_pop);
                    next_pop += 1;
                }
            }
            while let Some(v) = rx.pop() {
                assert_eq!(v, next_pop);
                next_pop += 1;
            }
            assert_eq!(next_pop, next_push);
        }
    }
}
