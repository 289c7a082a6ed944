//! Single-producer/single-consumer rings: the submission ring (operations in, back-pressure when
//! full) and the completion ring (results out, with an overflow list so no completion is ever
//! dropped).
//!
//! # What it does
//! The ring core is veridian-sync's [`spsc`](veridian_sync::spsc), re-exported here: a
//! power-of-two array of slots with two free-running counters (io_uring's layout: `tail`
//! advanced only by the producer, `head` only by the consumer), cache-padded, each end keeping
//! a private copy of the other end's counter, batch push/pop with one `Release` store per
//! batch. Its module docs give the guarantees and the memory orderings. What this module adds
//! is the heap ring's constructors reporting a bad capacity as [`IoError`]:
//!
//! - [`Ring`] (feature `alloc`) keeps its slots on the heap; [`channel`] creates one and splits
//!   it. A [`StaticRing<T, N>`] keeps `N` slots inline with a `const fn new` (no allocator at
//!   all); a [`SharedRing<T, N>`] is `repr(C)` memory two processes map (zeroed memory is an
//!   empty ring). All three hand out the same [`Producer`] and [`Consumer`].
//! - **Submission side: back-pressure.** [`Producer::push`] returns the entry in `Err` when the
//!   ring is full; nothing is queued and nothing is lost.
//! - **Completion side: overflow list.** A back-end cannot refuse a completion (the operation
//!   has already happened), so [`OverflowProducer`] keeps what does not fit in a private FIFO
//!   list (io_uring's `IORING_FEAT_NODROP` behaviour) and moves it into the ring, oldest first,
//!   before any newer entry; [`Consumer::overflow_pending`] says how many wait there.
//!   [`BatchedIo`](crate::BatchedIo) additionally never has more operations in flight than the
//!   completion ring holds, so with it the list stays empty.

#[cfg(feature = "alloc")]
use core::fmt;

#[cfg(feature = "alloc")]
use veridian_sync::spsc::SpscRing;
#[cfg(not(loom))]
pub use veridian_sync::spsc::StaticRing;
pub use veridian_sync::spsc::{Consumer, Producer, SharedRing};
#[cfg(feature = "alloc")]
pub use veridian_sync::spsc::{OverflowProducer, Pushed};

#[cfg(feature = "alloc")]
use crate::error::IoError;

/// The shared ring behind a [`Producer`]/[`Consumer`] pair, with its slots on the heap:
/// veridian-sync's [`SpscRing`] with this crate's error. Create it, then
/// [`split`](Self::split) it.
#[cfg(feature = "alloc")]
pub struct Ring<T>(SpscRing<T>);

/// Creates a ring of at least `capacity` entries (rounded up to a power of two) and returns its
/// two ends.
///
/// ```
/// let (mut tx, mut rx) = veridian_io::ring::channel(4).unwrap();
/// tx.push(1).unwrap();
/// assert_eq!(tx.push_iter([2, 3, 4, 5]), 3); // one slot was taken
/// let mut got = Vec::new();
/// assert_eq!(rx.pop_batch(usize::MAX, |v| got.push(v)), 4);
/// assert_eq!(got, [1, 2, 3, 4]);
/// ```
///
/// # Errors
/// [`IoError::InvalidArgument`] if `capacity` is 0 or larger than `usize::MAX / 4 + 1`.
#[cfg(feature = "alloc")]
pub fn channel<T>(capacity: usize) -> Result<(Producer<T>, Consumer<T>), IoError> {
    Ok(Ring::new(capacity)?.split())
}

#[cfg(feature = "alloc")]
impl<T> Ring<T> {
    /// Creates a ring of at least `capacity` entries, rounded up to a power of two so the slot
    /// index is a mask and the counters may wrap.
    ///
    /// # Errors
    /// [`IoError::InvalidArgument`] if `capacity` is 0 or larger than `usize::MAX / 4 + 1`.
    pub fn new(capacity: usize) -> Result<Self, IoError> {
        Self::with_start(capacity, 0)
    }

    /// [`new`](Self::new) with both counters starting at `start`, so tests can exercise the
    /// counters' wrap-around past `usize::MAX` without pushing 2^64 entries.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_start(capacity: usize, start: usize) -> Result<Self, IoError> {
        SpscRing::try_with_start(capacity, start)
            .map(Self)
            .map_err(|_| IoError::InvalidArgument)
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// Splits the ring into its producer and consumer ends.
    pub fn split(self) -> (Producer<T>, Consumer<T>) {
        self.0.split()
    }
}

#[cfg(feature = "alloc")]
impl<T> fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}
