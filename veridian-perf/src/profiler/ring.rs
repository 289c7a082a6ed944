//! A bounded, lock-free single-producer single-consumer ring of fixed-size records, written
//! from interrupt context.
//!
//! **What it does.** The producer (the sampling interrupt of one CPU) copies a record into the
//! next free slot and publishes it; the consumer (a drain thread, possibly on another CPU)
//! copies records out in order. When the ring is full the *new* record is dropped and counted
//! ([`SampleRing::dropped`]); published records are never overwritten, so a record the consumer
//! reads is always one the producer wrote whole.
//!
//! **What it is built on.** The ring core is veridian-sync's [`SharedRing`] (`spsc`: inline
//! `repr(C)` slots, cache-padded counters, each end with a cached copy of the other end's
//! counter); this module adds the
//! drop count, the one-time [`SampleRing::split`] into ends that borrow the ring, and the
//! handle-free [`SampleRing::push_unchecked`] / [`SampleRing::pop_unchecked`]. The memory
//! orderings are the core's: the producer writes a slot, then stores `tail` with `Release`;
//! the consumer loads `tail` with `Acquire` before copying the slot out, then stores `head`
//! with `Release`, which the producer loads with `Acquire` before writing the slot again.
//! `dropped` is a statistic read on its own: `Relaxed`.
//!
//! **What it relies on.** Exactly one producer and one consumer at a time. [`SampleRing::split`]
//! hands out one [`Producer`] and one [`Consumer`] once (the types enforce the rest); the
//! `unsafe` [`SampleRing::push_unchecked`] / [`SampleRing::pop_unchecked`] put the promise on the
//! caller instead (for rings shared through `Arc`, as the loom model does). An interrupt
//! handler that pushes must not be re-entered by another pusher of the same ring (NMIs need a
//! ring of their own).
//!
//! **No allocation, no lock, no spin.** Push and pop are wait-free: a few loads and stores and
//! one copy of the record. The storage is an array inside the ring (capacity `N`, a power of
//! two, checked at compile time), so a ring can be a `static`.

use core::ptr::NonNull;

use veridian_sync::spsc::{self, SharedRing};

use crate::primitives::{AtomicBool, AtomicU64, Ordering};

/// A bounded SPSC ring of `N` records of type `T` (module docs).
pub struct SampleRing<T: Copy, const N: usize> {
    ring: SharedRing<T, N>,
    dropped: AtomicU64,
    split: AtomicBool,
}

// SAFETY: records move between threads by copy (`T: Send`); the slot protocol of the core gives
// each slot to exactly one side at a time, and the single-producer/single-consumer promise is
// enforced by `split` or by the callers of the unsafe methods.
unsafe impl<T: Copy + Send, const N: usize> Sync for SampleRing<T, N> {}
// SAFETY: as above; the ring owns its records.
unsafe impl<T: Copy + Send, const N: usize> Send for SampleRing<T, N> {}

impl<T: Copy, const N: usize> core::fmt::Debug for SampleRing<T, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SampleRing")
            .field("capacity", &N)
            .field("len", &self.len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl<T: Copy, const N: usize> SampleRing<T, N> {
    /// An empty ring. `N` must be a power of two (a compile error otherwise).
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            ring: SharedRing::new(),
            dropped: AtomicU64::new(0),
            split: AtomicBool::new(false),
        }
    }

    /// An empty ring (loom's atomics cannot be built in a `const fn`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            ring: SharedRing::new(),
            dropped: AtomicU64::new(0),
            split: AtomicBool::new(false),
        }
    }

    /// The address the core's ends are made from.
    fn core(&self) -> NonNull<SharedRing<T, N>> {
        NonNull::from(&self.ring)
    }

    /// The producer and consumer handles: `Some` the first time, `None` after.
    pub fn split(&self) -> Option<(Producer<'_, T, N>, Consumer<'_, T, N>)> {
        // Relaxed: the flag only claims the handles; it protects no other data.
        if self.split.swap(true, Ordering::Relaxed) {
            return None;
        }
        // SAFETY: `self.ring` is an initialised ring that outlives both ends (they borrow
        // `self` for `'_`), and the flag above hands out one producer and one consumer, ever.
        let (inner_p, inner_c) = unsafe {
            (
                SharedRing::producer(self.core()),
                SharedRing::consumer(self.core()),
            )
        };
        Some((
            Producer {
                inner: inner_p,
                ring: self,
            },
            Consumer {
                inner: inner_c,
                ring: self,
            },
        ))
    }

    /// Capacity in records.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Records published and not yet consumed (a snapshot).
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether no record is waiting (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Counts one record dropped because the ring was full.
    #[cold]
    fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends `record`; returns `false` (and counts a drop) when the ring is full.
    ///
    /// # Safety
    /// No other call of `push_unchecked` on this ring may run at the same time (one producer);
    /// in particular no [`Producer`] of it may exist.
    #[inline]
    pub unsafe fn push_unchecked(&self, record: &T) -> bool {
        // SAFETY: `self.ring` is initialised and outlives this call (the end is dropped
        // below); the caller promises no other producer meanwhile.
        let mut producer = unsafe { SharedRing::producer(self.core()) };
        let pushed = producer.push(*record).is_ok();
        if !pushed {
            self.count_drop();
        }
        pushed
    }

    /// Takes the oldest record, if any.
    ///
    /// # Safety
    /// No other call of `pop_unchecked` on this ring may run at the same time (one consumer);
    /// in particular no [`Consumer`] of it may exist.
    #[inline]
    pub unsafe fn pop_unchecked(&self) -> Option<T> {
        // SAFETY: as in `push_unchecked`, for the one consumer the caller promises.
        unsafe { SharedRing::consumer(self.core()) }.pop()
    }
}

#[cfg(not(loom))]
impl<T: Copy, const N: usize> Default for SampleRing<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The writing end of a [`SampleRing`]; there is one.
#[derive(Debug)]
pub struct Producer<'a, T: Copy, const N: usize> {
    /// The core's producer end (with its cached copy of the consumer's counter).
    inner: spsc::Producer<T>,
    ring: &'a SampleRing<T, N>,
}

impl<T: Copy, const N: usize> Producer<'_, T, N> {
    /// Appends `record`; returns `false` (and counts a drop) when the ring is full.
    #[inline]
    pub fn push(&mut self, record: &T) -> bool {
        let pushed = self.inner.push(*record).is_ok();
        if !pushed {
            self.ring.count_drop();
        }
        pushed
    }

    /// The ring.
    pub fn ring(&self) -> &SampleRing<T, N> {
        self.ring
    }
}

/// The reading end of a [`SampleRing`]; there is one.
#[derive(Debug)]
pub struct Consumer<'a, T: Copy, const N: usize> {
    /// The core's consumer end (with its cached copy of the producer's counter).
    inner: spsc::Consumer<T>,
    ring: &'a SampleRing<T, N>,
}

impl<T: Copy, const N: usize> Consumer<'_, T, N> {
    /// Takes the oldest record, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        self.inner.pop()
    }

    /// Takes every waiting record, oldest first, passing each to `f`; returns how many.
    pub fn drain(&mut self, f: impl FnMut(T)) -> usize {
        self.inner.pop_batch(usize::MAX, f)
    }

    /// The ring.
    pub fn ring(&self) -> &SampleRing<T, N> {
        self.ring
    }
}
