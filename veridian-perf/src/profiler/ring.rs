//! A bounded, lock-free single-producer single-consumer ring of fixed-size records, written
//! from interrupt context.
//!
//! **What it does.** The producer (the sampling interrupt of one CPU) copies a record into the
//! next free slot and publishes it; the consumer (a drain thread, possibly on another CPU)
//! copies records out in order. When the ring is full the *new* record is dropped and counted
//! ([`SampleRing::dropped`]); published records are never overwritten, so a record the consumer
//! reads is always one the producer wrote whole.
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
//!
//! **Orderings.** `tail` (next slot to write) is stored only by the producer, `head` (next slot
//! to read) only by the consumer; both count up forever (wrapping) and `index & (N - 1)` is the
//! slot.
//! - Producer: loads its own `tail` `Relaxed` (no one else writes it); loads `head` with
//!   `Acquire`, which synchronises with the consumer's `Release` store of `head` after it
//!   copied the slot out, so writing the slot again happens after that read; writes the slot;
//!   stores `tail + 1` with `Release`, publishing the slot's contents.
//! - Consumer: loads its own `head` `Relaxed`; loads `tail` with `Acquire` (pairs with the
//!   producer's `Release`, so the slot's contents are visible); copies the slot; stores
//!   `head + 1` with `Release` (handing the slot back, see above).
//! - `dropped` is a statistic read on its own: `Relaxed`.

use core::mem::MaybeUninit;

use crate::primitives::{AtomicBool, AtomicU64, AtomicUsize, Ordering, UnsafeCell};

/// Keeps the producer's and the consumer's index on different cache lines (128 bytes: the
/// adjacent-line prefetcher of recent Intel CPUs pulls lines in pairs).
#[repr(align(128))]
struct Padded<T>(T);

/// A bounded SPSC ring of `N` records of type `T` (module docs).
pub struct SampleRing<T: Copy, const N: usize> {
    head: Padded<AtomicUsize>,
    tail: Padded<AtomicUsize>,
    dropped: AtomicU64,
    split: AtomicBool,
    slots: [UnsafeCell<MaybeUninit<T>>; N],
}

// SAFETY: records move between threads by copy (`T: Send`); the slot protocol (module docs)
// gives each slot to exactly one side at a time, and the single-producer/single-consumer
// promise is enforced by `split` or by the callers of the unsafe methods.
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
    const CAPACITY_OK: () = assert!(
        N.is_power_of_two(),
        "SampleRing capacity must be a power of two"
    );

    /// An empty ring.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        let () = Self::CAPACITY_OK;
        Self {
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
            dropped: AtomicU64::new(0),
            split: AtomicBool::new(false),
            slots: [const { UnsafeCell::new(MaybeUninit::uninit()) }; N],
        }
    }

    /// An empty ring (loom's atomics cannot be built in a `const fn`).
    #[cfg(loom)]
    pub fn new() -> Self {
        let () = Self::CAPACITY_OK;
        Self {
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
            dropped: AtomicU64::new(0),
            split: AtomicBool::new(false),
            slots: core::array::from_fn(|_| UnsafeCell::new(MaybeUninit::uninit())),
        }
    }

    /// The producer and consumer handles: `Some` the first time, `None` after.
    pub fn split(&self) -> Option<(Producer<'_, T, N>, Consumer<'_, T, N>)> {
        // Relaxed: the flag only claims the handles; it protects no other data.
        if self.split.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some((Producer { ring: self }, Consumer { ring: self }))
    }

    /// Capacity in records.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Records published and not yet consumed (a snapshot).
    pub fn len(&self) -> usize {
        // Acquire on both: a consistent-enough snapshot; `head` never passes `tail`, and
        // reading `head` first keeps the difference from going negative.
        let head = self.head.0.load(Ordering::Acquire);
        let tail = self.tail.0.load(Ordering::Acquire);
        tail.wrapping_sub(head).min(N)
    }

    /// Whether no record is waiting (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Appends `record`; returns `false` (and counts a drop) when the ring is full.
    ///
    /// # Safety
    /// No other call of `push_unchecked` on this ring may run at the same time (one producer);
    /// in particular no [`Producer`] of it may exist.
    #[inline]
    pub unsafe fn push_unchecked(&self, record: &T) -> bool {
        let tail = self.tail.0.load(Ordering::Relaxed);
        let head = self.head.0.load(Ordering::Acquire);
        if tail.wrapping_sub(head) >= N {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.slots[tail & (N - 1)].with_mut(|p| {
            // SAFETY: the slot is free (the consumer released it, Acquire above) and only the
            // single producer (caller's promise) writes it until `tail` is published.
            unsafe { (*p).write(*record) };
        });
        self.tail.0.store(tail.wrapping_add(1), Ordering::Release);
        true
    }

    /// Takes the oldest record, if any.
    ///
    /// # Safety
    /// No other call of `pop_unchecked` on this ring may run at the same time (one consumer);
    /// in particular no [`Consumer`] of it may exist.
    #[inline]
    pub unsafe fn pop_unchecked(&self) -> Option<T> {
        let head = self.head.0.load(Ordering::Relaxed);
        let tail = self.tail.0.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let record = self.slots[head & (N - 1)].with(|p| {
            // SAFETY: `head != tail`, so the producer published this slot (Acquire above made
            // its write visible) and will not touch it until `head` moves past it.
            unsafe { (*p).assume_init() }
        });
        self.head.0.store(head.wrapping_add(1), Ordering::Release);
        Some(record)
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
    ring: &'a SampleRing<T, N>,
}

impl<T: Copy, const N: usize> Producer<'_, T, N> {
    /// Appends `record`; returns `false` (and counts a drop) when the ring is full.
    #[inline]
    pub fn push(&mut self, record: &T) -> bool {
        // SAFETY: this is the ring's only producer (`split` hands out one), and `&mut self`
        // keeps its calls from overlapping.
        unsafe { self.ring.push_unchecked(record) }
    }

    /// The ring.
    pub fn ring(&self) -> &SampleRing<T, N> {
        self.ring
    }
}

/// The reading end of a [`SampleRing`]; there is one.
#[derive(Debug)]
pub struct Consumer<'a, T: Copy, const N: usize> {
    ring: &'a SampleRing<T, N>,
}

impl<T: Copy, const N: usize> Consumer<'_, T, N> {
    /// Takes the oldest record, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        // SAFETY: this is the ring's only consumer (`split` hands out one), and `&mut self`
        // keeps its calls from overlapping.
        unsafe { self.ring.pop_unchecked() }
    }

    /// Takes every waiting record, oldest first, passing each to `f`; returns how many.
    pub fn drain(&mut self, mut f: impl FnMut(T)) -> usize {
        let mut n = 0;
        while let Some(r) = self.pop() {
            f(r);
            n += 1;
        }
        n
    }

    /// The ring.
    pub fn ring(&self) -> &SampleRing<T, N> {
        self.ring
    }
}
