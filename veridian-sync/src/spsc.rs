//! Single-producer/single-consumer rings: the one ring core of the Veridian crates
//! (veridian-io's submission/completion rings and veridian-perf's sample ring are layers on it).
//!
//! # What it does
//! A ring is a power-of-two array of slots with two free-running counters, io_uring's layout:
//! `tail` (next position to write, advanced only by the producer) and `head` (next position to
//! read, advanced only by the consumer). Position `p` lives in slot `p & mask`; the counters
//! wrap around `usize::MAX` (harmless: the capacity divides `2^usize::BITS`), and `tail - head`
//! is the number of entries. The ring is used through its two ends, [`Producer`] and
//! [`Consumer`].
//!
//! **Storage.** An [`SpscRing`] (feature `alloc`; [`channel`] makes one and splits it) keeps its
//! slots on the heap and its ends share it through an `Arc`. A [`StaticRing<T, N>`] keeps `N`
//! slots inline, has a `const fn new`, and is split once from a `static`: no allocator at all
//! (what a kernel without a heap, or an interrupt handler's ring, uses). A [`SharedRing<T, N>`]
//! is `repr(C)` memory that two parties reach by address (a region two processes map; zeroed
//! memory is an empty ring). All three hand out the same [`Producer`] and [`Consumer`]; each end
//! reaches the shared counters through a raw pointer (the `Arc`, where there is one, only keeps
//! the ring alive), so the three kinds run the same code. Neither end is `Clone` and every
//! operation takes `&mut self`, so the types guarantee one producer and one consumer; each end is
//! `Send` and can move to the thread (or CPU, or interrupt handler) that drives it.
//!
//! - **Back-pressure.** [`Producer::push`] returns the entry in `Err` when the ring is full;
//!   nothing is queued and nothing is lost.
//! - **Overflow list** (feature `alloc`). A producer that cannot refuse an entry (a completion
//!   ring: the operation has already happened) wraps its end in an [`OverflowProducer`], which
//!   keeps what does not fit in a private FIFO list (io_uring's `IORING_FEAT_NODROP`
//!   behaviour), counts it, advertises how many entries wait there
//!   ([`Consumer::overflow_pending`]), and moves them into the ring, oldest first, before any
//!   newer entry ([`OverflowProducer::flush`], also done by every push). Order is preserved and
//!   nothing is ever dropped; the price is an allocation when the list grows.
//!
//! # What it relies on
//! Atomics only. Each shared counter sits in its own [`CachePadded`] line, and each end keeps a
//! private copy of the *other* end's counter, refreshed only when the copy says full (producer)
//! or empty (consumer): in steady state an operation touches only its own line, and the other
//! end's line crosses CPUs once per refresh instead of once per operation.
//!
//! # What it guarantees
//! - FIFO and wait-free: every operation finishes in a bounded number of its own steps.
//! - `Err`/`None`/a short batch mean full/empty at the moment of the check.
//! - Batch operations ([`Producer::push_iter`], [`Producer::push_slice`],
//!   [`Consumer::pop_batch`], [`Consumer::pop_into`]) publish a whole batch with one `Release`
//!   store and at most one `Acquire` load; if the user's iterator, `clone` or callback panics,
//!   what was transferred before the panic is published (nothing lost or duplicated).
//! - Entries left in an [`SpscRing`] when both ends are gone are dropped exactly once (a
//!   `StaticRing` or `SharedRing` forgets them: it is never dropped, or holds `Copy` entries).
//!
//! # Memory orderings
//! The producer writes a slot, then stores `tail` with `Release`; the consumer loads `tail`
//! with `Acquire` before reading the slots below it: the slot write happens before the read.
//! Symmetrically the consumer moves entries out, then stores `head` with `Release`; the
//! producer loads `head` with `Acquire` before overwriting the slots below it: the read happens
//! before the next lap's write. Each end reads its *own* counter from its private copy, never
//! from the shared atomic, and nothing else needs ordering, so there is no `SeqCst` and no
//! read-modify-write instruction anywhere in the ring.

#[cfg(feature = "alloc")]
use alloc::boxed::Box;
#[cfg(feature = "alloc")]
use alloc::collections::VecDeque;
use core::fmt;
use core::mem::MaybeUninit;
use core::ops::Deref;
use core::ptr::NonNull;

use crossbeam_utils::CachePadded;

use crate::primitives::{AtomicUsize, Ordering, UnsafeCell};

// loom's `Arc` lets the model see the ends' reference counting (the last end drops the ring,
// which drops the entries left in it).
#[cfg(all(feature = "alloc", not(loom)))]
use alloc::sync::Arc;
#[cfg(all(feature = "alloc", loom))]
use loom::sync::Arc;

/// The producer's shared line: its counter and the overflow hint.
#[repr(C)]
struct ProducerLine {
    /// Next position to write; stored by the producer only.
    tail: AtomicUsize,
    /// Entries waiting in an [`OverflowProducer`]'s list (a hint for the consumer).
    overflow: AtomicUsize,
}

/// What both ends share besides the slots: the two counters, each in its own cache line.
/// `repr(C)`, all zero when empty at position 0: a [`SharedRing`] may be zeroed memory.
#[repr(C)]
struct Counters {
    /// Next position to read; stored by the consumer only.
    head: CachePadded<AtomicUsize>,
    /// The producer's counter and overflow hint.
    producer: CachePadded<ProducerLine>,
}

impl Counters {
    /// Both counters at 0 (the same bytes as zeroed memory).
    #[cfg(not(loom))]
    const fn empty() -> Self {
        Self {
            head: CachePadded::new(AtomicUsize::new(0)),
            producer: CachePadded::new(ProducerLine {
                tail: AtomicUsize::new(0),
                overflow: AtomicUsize::new(0),
            }),
        }
    }

    /// Both counters at 0 (loom's atomics cannot be built in a `const fn`).
    #[cfg(loom)]
    fn empty() -> Self {
        Self::new(0)
    }

    /// Both counters at `start`.
    #[cfg(any(feature = "alloc", loom))]
    fn new(start: usize) -> Self {
        Self {
            head: CachePadded::new(AtomicUsize::new(start)),
            producer: CachePadded::new(ProducerLine {
                tail: AtomicUsize::new(start),
                overflow: AtomicUsize::new(0),
            }),
        }
    }
}

/// How an end reaches the shared [`Counters`]: a raw pointer (the same load on every path,
/// whatever the storage) and, for a heap ring, the `Arc` that keeps the ring alive.
struct Shared<T> {
    /// The ring's counters: inside the `Arc`'s ring, a `'static` [`StaticRing`], or a
    /// [`SharedRing`] its user keeps valid.
    counters: NonNull<Counters>,
    /// Keeps a heap ring alive (`None` for the other storage kinds).
    #[cfg(feature = "alloc")]
    _owner: Option<Arc<SpscRing<T>>>,
    #[cfg(not(feature = "alloc"))]
    _owner: core::marker::PhantomData<T>,
}

impl<T> Shared<T> {
    /// Counters whose ring something other than an `Arc` keeps alive.
    fn unowned(counters: NonNull<Counters>) -> Self {
        Self {
            counters,
            #[cfg(feature = "alloc")]
            _owner: None,
            #[cfg(not(feature = "alloc"))]
            _owner: core::marker::PhantomData,
        }
    }
}

impl<T> Deref for Shared<T> {
    type Target = Counters;

    #[inline(always)]
    fn deref(&self) -> &Counters {
        // SAFETY: `counters` points into the ring `_owner` keeps alive, into a `'static`
        // `StaticRing`, or into a `SharedRing` whose user vouched for it (`SharedRing::producer`);
        // the counters are only accessed through atomics (shared access).
        unsafe { self.counters.as_ref() }
    }
}

/// Largest capacity accepted: counters must be able to tell full from empty, and the slot
/// array must be allocatable.
pub const MAX_CAPACITY: usize = 1 << (usize::BITS - 2);

/// A capacity an [`SpscRing`] cannot have: 0, or more than [`MAX_CAPACITY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapacityError;

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ring capacity must be between 1 and usize::MAX / 4 + 1")
    }
}

impl core::error::Error for CapacityError {}

/// The shared ring behind a [`Producer`]/[`Consumer`] pair, with its slots on the heap.
/// Create it, then [`split`](Self::split) it.
#[cfg(feature = "alloc")]
pub struct SpscRing<T> {
    /// The two counters.
    counters: Counters,
    /// `capacity` slots; slot `p & mask` holds an entry exactly when `head <= p < tail`.
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// `capacity - 1`.
    mask: usize,
}

// SAFETY: each entry is written by the producer and moved out by the consumer; no `&T` is ever
// shared between them, so the ring only sends `T`s between threads (`T: Send`).
#[cfg(feature = "alloc")]
unsafe impl<T: Send> Send for SpscRing<T> {}
// SAFETY: all shared access goes through the two ends, which admit one accessor per slot at a
// time (the counter protocol in the module docs) and only move `T`s across threads.
#[cfg(feature = "alloc")]
unsafe impl<T: Send> Sync for SpscRing<T> {}

/// Creates a ring holding at least `capacity` entries (rounded up to a power of two) and
/// returns its two ends.
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
/// If `capacity` is 0 or larger than [`MAX_CAPACITY`] ([`SpscRing::try_new`] reports it
/// instead).
#[cfg(feature = "alloc")]
pub fn channel<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    SpscRing::new(capacity).split()
}

#[cfg(feature = "alloc")]
impl<T> SpscRing<T> {
    /// Creates a ring holding at least `capacity` entries, rounded up to a power of two so the
    /// slot index is a mask and the counters may wrap.
    ///
    /// # Panics
    /// If `capacity` is 0 or larger than [`MAX_CAPACITY`].
    pub fn new(capacity: usize) -> Self {
        match Self::try_new(capacity) {
            Ok(ring) => ring,
            Err(_) if capacity == 0 => panic!("SpscRing capacity must be non-zero"),
            Err(_) => panic!("SpscRing capacity too large"),
        }
    }

    /// [`new`](Self::new), reporting a bad capacity instead of panicking.
    ///
    /// # Errors
    /// [`CapacityError`] if `capacity` is 0 or larger than [`MAX_CAPACITY`].
    pub fn try_new(capacity: usize) -> Result<Self, CapacityError> {
        Self::try_with_start(capacity, 0)
    }

    /// [`try_new`](Self::try_new) with both counters starting at `start`, so tests can
    /// exercise the counters' wrap-around past `usize::MAX` without pushing 2^64 entries.
    ///
    /// # Errors
    /// As [`try_new`](Self::try_new).
    pub fn try_with_start(capacity: usize, start: usize) -> Result<Self, CapacityError> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(CapacityError);
        }
        let capacity = capacity.next_power_of_two();
        Ok(Self {
            counters: Counters::new(start),
            slots: (0..capacity)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            mask: capacity - 1,
        })
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Splits the ring into its producer and consumer ends.
    pub fn split(self) -> (Producer<T>, Consumer<T>) {
        // Relaxed: we own the ring; nothing to synchronise with.
        let start = self.counters.head.load(Ordering::Relaxed);
        let mask = self.mask;
        let ring = Arc::new(self);
        // The boxed slice does not move when the ring moves into the `Arc`; take its address
        // (and the counters') from there, once, for both ends.
        let slots = NonNull::from(&ring.slots[..]).cast::<UnsafeCell<MaybeUninit<T>>>();
        let counters = NonNull::from(&ring.counters);
        let producer = Shared {
            counters,
            _owner: Some(Arc::clone(&ring)),
        };
        let consumer = Shared {
            counters,
            _owner: Some(ring),
        };
        ends(producer, consumer, start, mask, slots)
    }

    /// The cell for `position`.
    #[inline(always)]
    fn slot(&self, position: usize) -> &UnsafeCell<MaybeUninit<T>> {
        // SAFETY: `mask == slots.len() - 1`, so `position & mask < slots.len()`.
        unsafe { self.slots.get_unchecked(position & self.mask) }
    }
}

#[cfg(feature = "alloc")]
impl<T> Drop for SpscRing<T> {
    fn drop(&mut self) {
        // `&mut self`: both ends are gone (they hold the `Arc`), each having published its
        // counter after its last operation. Relaxed: the `Arc` drop already synchronised us.
        let mut position = self.counters.head.load(Ordering::Relaxed);
        let tail = self.counters.producer.tail.load(Ordering::Relaxed);
        while position != tail {
            // SAFETY: positions `head..tail` were written and not read; each is dropped once.
            unsafe { self.slot(position).with_mut(|p| (*p).assume_init_drop()) };
            position = position.wrapping_add(1);
        }
    }
}

#[cfg(feature = "alloc")]
impl<T> fmt::Debug for SpscRing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpscRing")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

/// Both ends of a ring whose counters start at `start`.
#[cfg(any(feature = "alloc", not(loom)))]
fn ends<T>(
    producer: Shared<T>,
    consumer: Shared<T>,
    start: usize,
    mask: usize,
    slots: NonNull<UnsafeCell<MaybeUninit<T>>>,
) -> (Producer<T>, Consumer<T>) {
    (
        Producer {
            ring: producer,
            tail: start,
            cached_head: start,
            mask,
            slots,
        },
        Consumer {
            ring: consumer,
            head: start,
            cached_tail: start,
            mask,
            slots,
        },
    )
}

/// A ring of `N` slots stored inline (`N` a power of two), with a `const fn new`, for a
/// `static`: no allocator needed. [`split`](Self::split) hands out its two ends once.
///
/// ```
/// use veridian_sync::spsc::StaticRing;
///
/// static EVENTS: StaticRing<u32, 8> = StaticRing::new();
///
/// let (mut tx, mut rx) = EVENTS.split().expect("first split");
/// assert!(EVENTS.split().is_none()); // one producer, one consumer, ever
/// tx.push(7).unwrap();
/// assert_eq!(rx.pop(), Some(7));
/// ```
///
/// A static is never dropped, so entries still in the ring when both ends are gone are not
/// dropped either (they are forgotten, as `core::mem::forget` would).
#[cfg(not(loom))]
pub struct StaticRing<T, const N: usize> {
    /// The two counters.
    counters: Counters,
    /// Whether the ends were handed out.
    split: core::sync::atomic::AtomicBool,
    /// The slots; slot `p & (N - 1)` holds an entry exactly when `head <= p < tail`.
    slots: [UnsafeCell<MaybeUninit<T>>; N],
}

// SAFETY: as for `SpscRing`: the slots are only reached through the two ends (handed out
// once), which admit one accessor per slot at a time and only move `T`s across threads.
#[cfg(not(loom))]
unsafe impl<T: Send, const N: usize> Sync for StaticRing<T, N> {}

#[cfg(not(loom))]
impl<T, const N: usize> StaticRing<T, N> {
    /// An empty ring. `N` must be a power of two (so the slot index is a mask and the
    /// counters may wrap) and at most [`MAX_CAPACITY`]; any other `N` is a compile error.
    pub const fn new() -> Self {
        const {
            assert!(
                N.is_power_of_two() && N <= MAX_CAPACITY,
                "StaticRing: N must be a power of two, at most usize::MAX / 4 + 1"
            );
        }
        Self {
            counters: Counters::empty(),
            split: core::sync::atomic::AtomicBool::new(false),
            slots: [const { UnsafeCell::new(MaybeUninit::uninit()) }; N],
        }
    }

    /// The number of slots.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The producer and consumer ends, the first time; `None` afterwards (a ring has one
    /// producer and one consumer, ever).
    pub fn split(&'static self) -> Option<(Producer<T>, Consumer<T>)> {
        // Relaxed: the flag only decides who gets the ends; the counters are still at their
        // initial values, which every thread sees.
        if self.split.swap(true, core::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let slots = NonNull::from(&self.slots[..]).cast::<UnsafeCell<MaybeUninit<T>>>();
        let counters = NonNull::from(&self.counters);
        Some(ends(
            Shared::unowned(counters),
            Shared::unowned(counters),
            0,
            N - 1,
            slots,
        ))
    }
}

#[cfg(not(loom))]
impl<T, const N: usize> Default for StaticRing<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(not(loom))]
impl<T, const N: usize> fmt::Debug for StaticRing<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticRing")
            .field("capacity", &N)
            .finish_non_exhaustive()
    }
}

/// A ring of `N` slots (`N` a power of two) laid out in memory that two parties reach by
/// address rather than through one owner: a region two processes map, each at its own address,
/// or a ring whose ends borrow it for a lifetime the embedder tracks (veridian-perf's sample
/// ring). `repr(C)`, no pointers inside, and all-zero bytes are an empty ring, so freshly
/// zeroed shared memory is a ring already. Each party takes its end with
/// [`SharedRing::producer`] or [`SharedRing::consumer`]; the ends are the same [`Producer`] and
/// [`Consumer`] as the other rings', so the same code (and the same `Release`/`Acquire`
/// protocol) runs on both sides.
///
/// `T: Copy`: entries are never dropped (an entry left behind is forgotten), and a party must
/// not rely on the other for anything but the bytes it writes. A peer that writes nonsense into
/// the counters can make this side read stale or garbage entries (always inside the slot array,
/// whatever the counters say), never reach memory outside the ring: use a `T` for which every
/// bit pattern is valid (integers, arrays of them) when the peer is not trusted.
///
/// ```
/// use core::ptr::NonNull;
/// use veridian_sync::spsc::SharedRing;
///
/// // Here one address space; in a kernel, a region mapped into two processes.
/// let mut memory = Box::new(SharedRing::<u64, 16>::new());
/// let ring = NonNull::from(&mut *memory);
/// // SAFETY: `memory` outlives both ends, which are the ring's only producer and consumer.
/// let (mut tx, mut rx) = unsafe { (SharedRing::producer(ring), SharedRing::consumer(ring)) };
/// tx.push(5).unwrap();
/// assert_eq!(rx.pop(), Some(5));
/// ```
#[repr(C)]
pub struct SharedRing<T, const N: usize> {
    /// The two counters.
    counters: Counters,
    /// The slots; slot `p & (N - 1)` holds an entry exactly when `head <= p < tail`.
    slots: [UnsafeCell<MaybeUninit<T>>; N],
}

// SAFETY: the slots are only reached through the ends, which admit one accessor per slot at a
// time and only move `T`s across threads.
unsafe impl<T: Send, const N: usize> Sync for SharedRing<T, N> {}

impl<T: Copy, const N: usize> SharedRing<T, N> {
    /// Rejects any `N` that is not a power of two at most [`MAX_CAPACITY`] (a compile error).
    const CAPACITY_OK: () = assert!(
        N.is_power_of_two() && N <= MAX_CAPACITY,
        "SharedRing: N must be a power of two, at most usize::MAX / 4 + 1"
    );

    /// An empty ring (the same bytes as zeroed memory). `N` must be a power of two, at most
    /// [`MAX_CAPACITY`]; any other `N` is a compile error.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        let () = Self::CAPACITY_OK;
        Self {
            counters: Counters::empty(),
            slots: [const { UnsafeCell::new(MaybeUninit::uninit()) }; N],
        }
    }

    /// An empty ring (loom's atomics cannot be built in a `const fn`).
    #[cfg(loom)]
    pub fn new() -> Self {
        let () = Self::CAPACITY_OK;
        Self {
            counters: Counters::empty(),
            slots: core::array::from_fn(|_| UnsafeCell::new(MaybeUninit::uninit())),
        }
    }

    /// The number of slots.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Entries published and not yet consumed: a snapshot (`Acquire` loads of both counters,
    /// `head` first, so the difference never goes negative).
    pub fn len(&self) -> usize {
        let head = self.counters.head.load(Ordering::Acquire);
        let tail = self.counters.producer.tail.load(Ordering::Acquire);
        tail.wrapping_sub(head).min(N)
    }

    /// Whether no entry is waiting (a snapshot, see [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn parts(ring: NonNull<Self>) -> (NonNull<Counters>, NonNull<UnsafeCell<MaybeUninit<T>>>) {
        // Field addresses only (no reference to the whole ring, which the peer writes).
        let base = ring.as_ptr();
        // SAFETY: an in-bounds field projection of the ring the caller vouches for; non-null as
        // a field of a non-null pointer.
        let counters = unsafe { NonNull::new_unchecked(&raw mut (*base).counters) };
        // SAFETY: as above, the slot array.
        let slots = unsafe { NonNull::new_unchecked(&raw mut (*base).slots) };
        (counters, slots.cast())
    }

    /// The producer end of the ring at `ring`, continuing from its current `tail`.
    ///
    /// # Safety
    /// `ring` points to an initialised `SharedRing<T, N>` ([`new`](Self::new)'s bytes, zeroed
    /// memory, or a ring earlier ends used) that stays valid for reads and writes while the
    /// end lives, and no other producer end of this ring exists meanwhile (in any address space).
    #[inline]
    pub unsafe fn producer(ring: NonNull<Self>) -> Producer<T> {
        let (counters, slots) = Self::parts(ring);
        let shared = Shared::unowned(counters);
        // Acquire: as the producer's refresh of `head` (the consumer's moves out come first).
        let tail = shared.producer.tail.load(Ordering::Relaxed);
        let cached_head = shared.head.load(Ordering::Acquire);
        Producer {
            ring: shared,
            tail,
            cached_head,
            mask: N - 1,
            slots,
        }
    }

    /// The consumer end of the ring at `ring`, continuing from its current `head`.
    ///
    /// # Safety
    /// As [`producer`](Self::producer), for the consumer: the ring stays valid while the end
    /// lives, and no other consumer end of it exists meanwhile.
    #[inline]
    pub unsafe fn consumer(ring: NonNull<Self>) -> Consumer<T> {
        let (counters, slots) = Self::parts(ring);
        let shared = Shared::unowned(counters);
        let head = shared.head.load(Ordering::Relaxed);
        Consumer {
            ring: shared,
            head,
            // Refreshed (with `Acquire`) on the first pop.
            cached_tail: head,
            mask: N - 1,
            slots,
        }
    }
}

#[cfg(not(loom))]
impl<T: Copy, const N: usize> Default for SharedRing<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> fmt::Debug for SharedRing<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRing")
            .field("capacity", &N)
            .finish_non_exhaustive()
    }
}

/// The writing end of an [`SpscRing`], [`StaticRing`] or [`SharedRing`] (for a submission
/// ring: the side that queues operations).
pub struct Producer<T> {
    /// The shared counters (and what keeps the ring alive).
    ring: Shared<T>,
    /// Our counter (the ring's `tail` equals it between operations).
    tail: usize,
    /// The last `head` we loaded; the consumer's real `head` is at least this.
    cached_head: usize,
    /// Copy of the ring's mask (saves a dependent load).
    mask: usize,
    /// Copy of the ring's slot array address (saves two dependent loads per operation).
    slots: NonNull<UnsafeCell<MaybeUninit<T>>>,
}

// SAFETY: the producer end only moves `T`s into the ring (`T: Send`); `slots` points into the
// ring its `Arc`, a `'static` `StaticRing` or a `SharedRing`'s user keeps alive, and the counter
// protocol keeps its accesses apart from the consumer's.
unsafe impl<T: Send> Send for Producer<T> {}

impl<T> Producer<T> {
    /// Free slots by the cached `head`, refreshed (one `Acquire` load) when that shows fewer
    /// than `wanted`. The result may still be below `wanted`.
    #[inline(always)]
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
        // SAFETY: `slots` is the slot array our `Arc`, a static or a `SharedRing`'s user keeps
        // alive (whole-slice provenance) and `position & mask` is inside it. The caller
        // guarantees the slot is free: the consumer moved its previous entry out (ordered before us by the `Acquire` load of
        // `head`) and will not read it until we publish a `tail` beyond `position`.
        unsafe {
            self.slots
                .add(position & self.mask)
                .as_ref()
                .with_mut(|p| p.write(MaybeUninit::new(value)))
        };
    }

    /// Appends `value`, or gives it back in `Err` when the ring is full (back-pressure).
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), T> {
        if self.free_slots(1) == 0 {
            return Err(value);
        }
        // SAFETY: `free_slots` found room at `tail`.
        unsafe { self.write(self.tail, value) };
        self.tail = self.tail.wrapping_add(1);
        // Release: publishes the slot written above to the consumer's `Acquire` load.
        self.ring.producer.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Moves entries from `values` into the ring until it is full or the iterator ends, and
    /// returns how many were pushed. The iterator is never advanced beyond the free space (pass
    /// `&mut iter` to keep the rest). One `Release` store publishes the whole batch.
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

    /// Copies entries from the front of `values` until the ring is full; returns how many (the
    /// first `n` of `values`). One `Release` store for the batch.
    pub fn push_slice(&mut self, values: &[T]) -> usize
    where
        T: Clone,
    {
        self.push_iter(values.iter().cloned())
    }

    /// Free slots now (refreshes the cached `head` if it shows the ring less than empty).
    pub fn free(&mut self) -> usize {
        self.free_slots(self.mask + 1)
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Entries in the ring (exact for our own pushes; the consumer may have popped more).
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

/// Publishes the producer's batch (`tail = end`) when dropped: on success, and on a panic in
/// the user's iterator or `clone`.
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
            self.producer
                .ring
                .producer
                .tail
                .store(self.end, Ordering::Release);
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

/// The reading end of an [`SpscRing`], [`StaticRing`] or [`SharedRing`] (for a completion
/// ring: the side that collects results).
pub struct Consumer<T> {
    /// The shared counters (and what keeps the ring alive).
    ring: Shared<T>,
    /// Our counter (the ring's `head` equals it between operations).
    head: usize,
    /// The last `tail` we loaded; the producer's real `tail` is at least this.
    cached_tail: usize,
    /// Copy of the ring's mask.
    mask: usize,
    /// Copy of the ring's slot array address.
    slots: NonNull<UnsafeCell<MaybeUninit<T>>>,
}

// SAFETY: the consumer end only moves `T`s out of the ring (`T: Send`); `slots` points into the
// ring its `Arc`, a `'static` `StaticRing` or a `SharedRing`'s user keeps alive, and the counter
// protocol keeps its accesses apart from the producer's.
unsafe impl<T: Send> Send for Consumer<T> {}

impl<T> Consumer<T> {
    /// Entries available by the cached `tail`, refreshed (one `Acquire` load) when that shows
    /// fewer than `wanted`.
    #[inline(always)]
    fn available(&mut self, wanted: usize) -> usize {
        let available = self.cached_tail.wrapping_sub(self.head);
        if available >= wanted {
            return available;
        }
        // Acquire: pairs with the producer's `Release` store of `tail`, so its writes of the
        // slots below `tail` happen before our reads.
        self.cached_tail = self.ring.producer.tail.load(Ordering::Acquire);
        self.cached_tail.wrapping_sub(self.head)
    }

    /// Moves the entry out of the slot for `position`.
    ///
    /// # Safety
    /// `position` is in `head..cached_tail` (published, not yet read), and the caller advances
    /// past it so it is read once.
    #[inline(always)]
    unsafe fn read(&self, position: usize) -> T {
        // SAFETY: `slots` is the slot array our `Arc`, a static or a `SharedRing`'s user
        // keeps alive, `position & mask` inside it. The caller guarantees the slot was
        // published (its write ordered before us by the `Acquire` load of `tail`) and not yet
        // read; the producer will not touch it until we publish a `head` beyond it.
        unsafe {
            self.slots
                .add(position & self.mask)
                .as_ref()
                .with(|p| p.read().assume_init())
        }
    }

    /// Removes the oldest entry, or returns `None` when the ring is empty.
    ///
    /// Entries larger than two words are moved out by an out-of-line function that writes the
    /// `Option<T>` straight into the caller's return slot. Inlined, LLVM copies a large entry
    /// into the `Option` in pieces split around its discriminant (for veridian-io's `Sqe`, the
    /// opcode byte is the niche), with overlapping stores that a later load of the whole value
    /// cannot be forwarded from: a stall of about ten cycles per pop when the caller keeps the entry in
    /// memory (veridian-io's `ring_nop` benchmark). Small entries stay inlined.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if size_of::<T>() > 2 * size_of::<usize>() {
            self.pop_outlined()
        } else {
            self.pop_inline()
        }
    }

    /// [`pop`](Self::pop) for large entries (see there).
    #[inline(never)]
    fn pop_outlined(&mut self) -> Option<T> {
        self.pop_inline()
    }

    /// The body of [`pop`](Self::pop).
    #[inline(always)]
    fn pop_inline(&mut self) -> Option<T> {
        if self.available(1) == 0 {
            return None;
        }
        // SAFETY: `available` found a published entry at `head`; we advance past it below.
        let value = unsafe { self.read(self.head) };
        self.head = self.head.wrapping_add(1);
        // Release: our move out of the slot happens before the producer reuses it.
        self.ring.head.store(self.head, Ordering::Release);
        Some(value)
    }

    /// Removes up to `max` entries, oldest first, handing each to `f`; returns how many.
    ///
    /// At most one `Acquire` load (only if the cached `tail` shows fewer than `max`) and one
    /// `Release` store for the whole batch. If `f` panics, the entries handed out before and
    /// including the one it panicked on count as removed.
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

    /// Moves up to `out.len()` entries into the front of `out`, oldest first; returns how many
    /// (`out[..n]` is initialised). One `Acquire` load at most and one `Release` store.
    pub fn pop_into(&mut self, out: &mut [MaybeUninit<T>]) -> usize {
        let mut slots = out.iter_mut();
        // `pop_batch` hands out at most `out.len()` entries, so `next()` never runs dry.
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

    /// Entries in the ring (at least this many; the producer may have pushed more since).
    pub fn len(&self) -> usize {
        // Relaxed: a statistic; `tail` never runs more than `capacity` ahead of our `head`.
        self.ring
            .producer
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

    /// Entries the producer holds in its overflow list because the ring was full (0 for a
    /// plain [`Producer`]). They reach this end, in order, once there is room and the
    /// producer flushes: a hint to drain the ring and let the producer run.
    pub fn overflow_pending(&self) -> usize {
        // Relaxed: a hint only; the entries themselves travel through the slots, ordered by
        // the `tail`/`head` protocol.
        self.ring.producer.overflow.load(Ordering::Relaxed)
    }
}

/// Publishes the consumer's batch (`head = end`) when dropped: on success, and on a panic in
/// the user's callback.
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

/// What [`OverflowProducer::push`] did with an entry.
#[cfg(feature = "alloc")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// The entry is in the ring.
    Ring,
    /// The ring was full (or older entries were still waiting): the entry went to the overflow
    /// list and reaches the ring, in order, on a later push or [`flush`](OverflowProducer::flush).
    Overflowed,
}

/// The writing end of a completion ring: a [`Producer`] that never refuses an entry.
///
/// What does not fit goes to a private FIFO list; every push and every
/// [`flush`](Self::flush) first moves the list's oldest entries into the ring, so the consumer
/// sees entries in push order. See the module docs for the policy.
#[cfg(feature = "alloc")]
pub struct OverflowProducer<T> {
    /// The ring end.
    inner: Producer<T>,
    /// Entries that did not fit, oldest first.
    overflow: VecDeque<T>,
    /// Entries that ever went to the list.
    overflowed_total: u64,
}

#[cfg(feature = "alloc")]
impl<T> OverflowProducer<T> {
    /// Wraps a ring's producer end.
    pub fn new(inner: Producer<T>) -> Self {
        Self {
            inner,
            overflow: VecDeque::new(),
            overflowed_total: 0,
        }
    }

    /// Appends `value` to the ring, or to the overflow list if the ring is full. Never drops.
    #[inline]
    pub fn push(&mut self, value: T) -> Pushed {
        if self.overflow.is_empty() || self.flush() == 0 {
            match self.inner.push(value) {
                Ok(()) => return Pushed::Ring,
                Err(value) => self.overflow.push_back(value),
            }
        } else {
            self.overflow.push_back(value);
        }
        self.overflowed_total += 1;
        self.publish_overflow();
        Pushed::Overflowed
    }

    /// Moves as many overflowed entries into the ring as fit, oldest first; returns how many
    /// are still waiting.
    pub fn flush(&mut self) -> usize {
        if !self.overflow.is_empty() {
            let room = self.inner.free().min(self.overflow.len());
            self.inner.push_iter(self.overflow.drain(..room));
            self.publish_overflow();
        }
        self.overflow.len()
    }

    /// Tells the consumer how many entries wait in the list.
    fn publish_overflow(&self) {
        // Relaxed: a hint (see `Consumer::overflow_pending`).
        self.inner
            .ring
            .producer
            .overflow
            .store(self.overflow.len(), Ordering::Relaxed);
    }

    /// Entries waiting in the overflow list.
    pub fn overflow_pending(&self) -> usize {
        self.overflow.len()
    }

    /// Entries that ever went to the overflow list (each reached or will reach the ring).
    pub fn overflowed_total(&self) -> u64 {
        self.overflowed_total
    }

    /// Free slots in the ring now.
    pub fn free(&mut self) -> usize {
        self.inner.free()
    }

    /// The number of slots of the ring.
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

#[cfg(feature = "alloc")]
impl<T> fmt::Debug for OverflowProducer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverflowProducer")
            .field("ring", &self.inner)
            .field("overflow_pending", &self.overflow.len())
            .field("overflowed_total", &self.overflowed_total)
            .finish()
    }
}

#[cfg(all(test, feature = "alloc", not(loom)))]
mod tests {
    use super::SpscRing;

    /// Counters that wrap around `usize::MAX` in the middle of the run, single and batch ops.
    #[test]
    fn counters_wrap_around() {
        for capacity in [1, 2, 4] {
            let (mut tx, mut rx) = SpscRing::try_with_start(capacity, usize::MAX - 6)
                .unwrap()
                .split();
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
