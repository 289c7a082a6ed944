//! The heap: per-CPU object caches in front of slabs, slabs and large blocks from a buddy
//! allocator, the buddy allocator fed in chunks by the embedder's [`PageSource`].
//!
//! # Paths
//!
//! - **Allocation fast path** (size class known, slot's magazine non-empty): enter the CPU slot,
//!   pop the magazine (a singly linked list of free objects), count. No atomic read-modify-write,
//!   no lock, no slab header touched.
//! - **Free fast path**: push onto the current slot's magazine. Also no atomic RMW. With owner
//!   return on (`Heap`'s `OWNER_RETURN` parameter, `true`), only an object of a slab the
//!   current slot owns goes there; an object of another slot's slab (a *remote free*) is linked
//!   onto the freeing slot's batch for its class and owner (no atomic RMW either), and the batch
//!   goes onto the owner's remote queue for that class with one compare-and-swap when a free
//!   finds it full (32 objects, fewer in classes over 256 B: `REMOTE_BATCH_LIMIT`), when a
//!   remote free of that class for another owner comes, on the freeing slot's next refill or
//!   magazine flush (any class), in [`Heap::trim`] and [`Heap::reclaim_all`], and when the
//!   embedder calls [`Heap::flush_remote_frees`] (at a thread's exit with
//!   `hosted::flush_at_thread_exit`). The freeing slot never hands a batched object out
//!   (as mimalloc's `xthread_free`): no cache line of the owner's objects
//!   moves into another CPU's allocations (passive false sharing), and a producer/consumer pair
//!   recycles the producer's memory instead of growing the consumer's caches. The check reads
//!   the owner in the object's slab header (a mask and one load of a line the owner writes on
//!   its slow paths). With it off (`false`, the default, the kernel's: as a run-time
//!   [`HeapConfig`] flag the check cost the kernel's `kalloc_free_64` 11 instructions on and 4
//!   off, 85 -> 96 and 89; a const parameter costs nothing off), every free goes to the current
//!   slot's magazine, whichever slot owns the object, and objects of other slots travel back
//!   in batches when a magazine overflows (below).
//! - **Refill** (magazine empty): with owner return, first send the slot's batches of remote
//!   frees to their owners; then take back objects other CPUs returned to this slot (one atomic
//!   swap per class: this is where the owner collects its remote frees; it walks the chain to
//!   count it), then take a batch from the slot's partial slabs, then create a slab from the
//!   buddy allocator (under the buddy lock).
//! - **Flush** (magazine over capacity): keep the most recently freed half, and return the older
//!   half to its slabs: objects of slabs this slot owns go back to the slab directly; objects
//!   owned by other slots are chained per owner and pushed onto the owner's remote queue for that
//!   class with one compare-and-swap per chain (the snmalloc/mimalloc idea: cross-CPU frees are
//!   batched messages to the owner, never a global lock).
//! - **Large** requests (> 8192 B or aligned to more than a page) go to the buddy allocator
//!   under its lock, and fully free chunks are given back to the page source. A freed block of
//!   4 KiB to 64 KiB (a large block or a slab) is kept whole on a short list per size (8
//!   blocks, at most 992 KiB in all), so the next request of that size takes it without
//!   splitting a larger block, and the free does not merge it; the lists are merged back into
//!   the buddy allocator when a request finds no free block, before free chunks go back to the
//!   page source, and in [`Heap::reclaim_all`] (`HeapStats::quick_bytes`).
//! - **Direct** requests: a large request whose buddy block would be more than half a chunk
//!   (over 2 MiB with the default 4 MiB chunks) is not served from the buddy allocator at all:
//!   the heap asks the page source for exactly its size rounded up to the page size (and to its
//!   alignment), and gives it back on free. So a 3 MiB `Vec` costs 3 MiB from the source, not a
//!   4 MiB buddy block in an 8 MiB chunk, and a 6 MiB block fits a 16 MiB arena.
//!
//! # Slots
//!
//! A slot is the per-CPU state; [`CpuLocal::enter`] says which one the caller may use
//! exclusively. When it returns `None` (or a slot beyond the heap's `CPUS`), the caller uses one
//! extra shared slot under a spin lock: slower, same algorithm.
//!
//! # Locks and the CPU guard
//!
//! Every internal lock (the buddy lock, the shared slot's lock) is taken while the caller holds
//! the guard `CpuLocal::enter` returned, and released before it (`crate::pinned` enforces this
//! in the types): large allocations and frees, [`Heap::stats`] and [`Heap::reclaim_all`] enter
//! a guard just for that, and a caller sent to the shared slot keeps the guard it was given
//! while it holds the slot's lock; each lock (and each page-source call) is also held inside
//! [`CpuLocal::lock_section`]. A kernel whose guard or lock section disables interrupts
//! therefore never holds one of these locks with interrupts on, and interrupt handlers may
//! allocate. (When `enter` returns `None` there is no guard; see [`CpuLocal`].) The fast paths
//! take no lock.
//!
//! # Empty slabs
//!
//! Each slot keeps at most [`EMPTY_SLABS_KEPT`] empty slabs per class (to absorb alloc/free
//! oscillation at a slab boundary); past that, an empty slab goes back to the buddy allocator at
//! once.
//!
//! # Free chunks (the retention policy)
//!
//! A chunk whose every page is free again is kept or given back to the page source by the
//! [`HeapConfig`]'s policy: while the heap holds more than `max(chunks_kept, peak × percent /
//! 100)` chunks, where `peak` is the most chunks it held at once since it was made or last
//! trimmed ([`HeapConfig::with_chunks_kept`], [`HeapConfig::with_peak_percent_kept`]), an
//! entirely free chunk goes back at once. [`Heap::trim`] gives back free chunks while more than
//! `chunks_kept` are held and restarts the peak from the chunks still held, so the memory kept
//! idle is bounded by the percentage of the last peak and returned on request.
//! [`HeapConfig::DEFAULT`] (the kernel's) keeps one chunk and 0 % of the peak: memory goes back
//! to the page source (a frame allocator other users share) at once. [`HeapConfig::HOSTED`]
//! keeps free chunks up to the whole peak: a program whose use rises and falls by tens of MiB
//! round after round (build a document, free it, build the next) finds its chunks still mapped
//! and faulted in, where giving them back means `munmap`, `mmap` and a page fault per page again
//! (measured in `docs/benchmarks/programs.md`).

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use lock_api::RawMutex;

use crate::buddy::{BuddyAllocator, BuddyStats, PAGE_SIZE};
use crate::env::{CpuLocal, PageSource, SlotPtr};
use crate::pinned::{Pinned, PinnedMutex, SpinLock};
use crate::size_class::{
    CLASS_SIZES, NUM_CLASSES, class_for, class_for_common, objects_per_slab, slab_bytes,
};
use crate::slab::{FreeObject, SlabHeader, slab_of};

/// Empty slabs a slot keeps per class before returning them to the buddy allocator.
pub const EMPTY_SLABS_KEPT: u32 = 1;

/// Chunks the heap keeps by default even when they are entirely free
/// ([`HeapConfig::with_chunks_kept`] changes it; see "Free chunks" in the module documentation
/// for the rest of the policy).
pub const CHUNKS_KEPT: usize = 1;

/// Default size (and alignment) of the chunks the heap asks its page source for
/// ([`HeapConfig::with_chunk_size`] changes it). 4 MiB: large enough that the per-chunk buddy
/// metadata (under 1 %) is noise, small enough to give memory back to the source in useful
/// pieces.
pub const CHUNK_SIZE: usize = 4 << 20;

/// Default number of per-CPU slots (`Heap`'s `CPUS`). Each slot costs [`SLOT_BYTES`] of the
/// `Heap` value, so the default heap is about 171 KiB (a `static`, never on a stack).
pub const DEFAULT_CPUS: usize = 64;

/// Bytes one per-CPU slot adds to the size of a [`Heap`]: one cache line per size class plus
/// the remote queues, cache-padded (2432 bytes on x86_64). A heap is `CPUS * SLOT_BYTES` plus
/// about 15 KiB (the shared slot, the buddy allocator's region table, counters): 171 KiB with
/// the default 64 slots, 35 KiB with 8 (`tests/embedder_config.rs` checks the per-slot cost).
pub const SLOT_BYTES: usize = core::mem::size_of::<CachePadded<Slot>>();

/// The heap's tunables besides the number of CPU slots (a const parameter, because it sizes
/// an array): the chunk size and how many free chunks are kept. `const`, so a configured heap
/// can still be a `static`:
///
/// ```
/// use veridian_alloc::HeapConfig;
/// // 1 MiB chunks: finer-grained give-back to the page source, direct blocks from 512 KiB up.
/// const CONFIG: HeapConfig = HeapConfig::DEFAULT.with_chunk_size(1 << 20).expect("valid size");
/// assert_eq!(CONFIG.chunk_size(), 1 << 20);
/// assert!(HeapConfig::DEFAULT.with_chunk_size(3 << 20).is_none()); // not a power of two
/// ```
///
/// # Costs
///
/// - **Chunk size** (a power of two, [`HeapConfig::MIN_CHUNK_SIZE`] ..= 1 GiB): the unit the
///   heap takes from and gives back to the page source, each aligned to its size. Every chunk
///   costs the buddy allocator's bitmaps (about 3 bits per 4 KiB page, at least one page) and one
///   of its 64 region entries, so the heap can hold at most 64 chunks at once: with 4 MiB chunks
///   256 MiB of small and medium objects (direct blocks do not count). Smaller chunks give memory
///   back sooner and need a less strict page source; larger chunks mean fewer calls to it and a
///   bigger ceiling. A large block whose buddy block is more than half a chunk is served
///   directly by the page source (one call per allocation and per free, no buddy rounding).
/// - **Chunks kept**: entirely free chunks kept instead of being given back, to absorb
///   alloc/free oscillation across a chunk boundary (each holds `chunk_size` bytes idle): they
///   are kept while the heap holds at most `chunks_kept` chunks, or `peak_percent_kept` % of the
///   most chunks held at once since the last [`Heap::trim`] if that is more (see "Free chunks"
///   in the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapConfig {
    chunk_size: usize,
    chunks_kept: usize,
    peak_percent_kept: usize,
}

impl HeapConfig {
    /// 4 MiB chunks ([`CHUNK_SIZE`]), one free chunk kept ([`CHUNKS_KEPT`]), none kept in
    /// proportion to the peak: every other chunk goes back to the page source as soon as it is
    /// entirely free. For a kernel, whose page source is a frame allocator that user memory and
    /// other subsystems draw on too (the reference kernel uses it).
    pub const DEFAULT: Self = Self {
        chunk_size: CHUNK_SIZE,
        chunks_kept: CHUNKS_KEPT,
        peak_percent_kept: 0,
    };

    /// [`DEFAULT`](Self::DEFAULT), but keeping entirely free chunks up to the peak (100 %): for
    /// a process on an `mmap` page source (`hosted::MmapPages`, feature `std`), where a chunk
    /// given back and taken again costs `munmap`, `mmap` and a page fault per page touched. The
    /// memory held stays under the peak the program reached since the last [`Heap::trim`];
    /// `trim` gives the free chunks back.
    pub const HOSTED: Self = Self::DEFAULT.with_peak_percent_kept(100);

    /// The smallest chunk size: twice the largest slab (256 KiB), so that a slab fits in the
    /// half of a chunk the buddy allocator's metadata leaves whole.
    pub const MIN_CHUNK_SIZE: usize = 512 << 10;

    /// The largest chunk size: one block of the buddy allocator's largest order (1 GiB).
    pub const MAX_CHUNK_SIZE: usize = crate::buddy::PAGE_SIZE << crate::buddy::MAX_ORDER;

    /// This configuration with chunks of `bytes`; `None` unless `bytes` is a power of two in
    /// [`MIN_CHUNK_SIZE`](Self::MIN_CHUNK_SIZE) ..= [`MAX_CHUNK_SIZE`](Self::MAX_CHUNK_SIZE).
    pub const fn with_chunk_size(self, bytes: usize) -> Option<Self> {
        if !bytes.is_power_of_two() || bytes < Self::MIN_CHUNK_SIZE || bytes > Self::MAX_CHUNK_SIZE
        {
            return None;
        }
        Some(Self {
            chunk_size: bytes,
            ..self
        })
    }

    /// This configuration keeping entirely free chunks while the heap holds at most `chunks`
    /// chunks (0, with no percentage of the peak: give every free chunk back at once).
    pub const fn with_chunks_kept(self, chunks: usize) -> Self {
        Self {
            chunks_kept: chunks,
            ..self
        }
    }

    /// This configuration keeping entirely free chunks while the heap holds at most `percent` %
    /// of the most chunks it held at once since it was made or last trimmed (rounded down;
    /// values above 100 act as 100, since the heap never holds more than its peak), or
    /// `chunks_kept` if that is more.
    pub const fn with_peak_percent_kept(self, percent: usize) -> Self {
        Self {
            peak_percent_kept: if percent > 100 { 100 } else { percent },
            ..self
        }
    }

    /// The chunk size.
    pub const fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Up to how many chunks held free chunks are kept whatever the peak.
    pub const fn chunks_kept(&self) -> usize {
        self.chunks_kept
    }

    /// The percentage of the peak chunks held up to which free chunks are kept.
    pub const fn peak_percent_kept(&self) -> usize {
        self.peak_percent_kept
    }

    /// Up to how many chunks the heap holds while some of them are entirely free, when it held
    /// at most `peak` chunks at once since the last trim: `max(chunks_kept, peak × percent /
    /// 100)`. Past that, an entirely free chunk goes back to the page source.
    pub const fn chunks_held_kept(&self, peak: usize) -> usize {
        let by_peak = peak.saturating_mul(self.peak_percent_kept) / 100;
        if by_peak > self.chunks_kept {
            by_peak
        } else {
            self.chunks_kept
        }
    }
}

impl Default for HeapConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How a large layout is served (a function of the layout and the chunk size alone, so
/// `deallocate` finds the same answer as `allocate`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Large {
    /// A buddy block of this order.
    Buddy(usize),
    /// A chunk of exactly `len` bytes aligned to `align` straight from the page source
    /// (`len` a multiple of `align`, both multiples of the page size).
    Direct { len: usize, align: usize },
}

/// Magazine capacity of a class: about 16 KiB of objects, at least 16 and at most 256 objects.
/// Bigger magazines mean fewer refills and flushes; the bound keeps the memory a slot can hold
/// idle to a few hundred KiB over all classes.
const MAGAZINE_CAPACITY: [u32; NUM_CLASSES] = {
    let mut caps = [0; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        caps[c] = magazine_capacity(c);
        c += 1;
    }
    caps
};

const fn magazine_capacity(class: usize) -> u32 {
    let by_bytes = 16 * 1024 / CLASS_SIZES[class];
    let cap = if by_bytes < 16 {
        16
    } else if by_bytes > 256 {
        256
    } else {
        by_bytes
    };
    cap as u32
}

/// Objects moved from slabs into a magazine per refill: half its capacity, but no more than a
/// slab holds.
const fn refill_batch(class: usize) -> u32 {
    let half = MAGAZINE_CAPACITY[class] / 2;
    let per_slab = objects_per_slab(class) as u32;
    if half < per_slab { half } else { per_slab }
}

/// Distinct owners a flush batches at once; objects for further owners are sent one by one.
const FLUSH_OWNERS: usize = 8;

/// Per-class state of one slot, touched only by the slot's guard holder.
struct ClassCache {
    /// Free objects ready to hand out (they count as in use in their slabs).
    magazine: *mut FreeObject,
    magazine_len: u32,
    /// Slabs of this class owned by the slot that have objects available.
    partial: *mut SlabHeader,
    /// How many of the owned slabs are completely free.
    empty_slabs: u32,
}

impl ClassCache {
    const EMPTY: Self = Self {
        magazine: ptr::null_mut(),
        magazine_len: 0,
        partial: ptr::null_mut(),
        empty_slabs: 0,
    };
}

/// Counters of one class in one slot. Only the slot's guard holder writes them (with a plain
/// load and store, no read-modify-write); anyone may read them for statistics.
struct ClassCounters {
    allocs: AtomicU64,
    misses: AtomicU64,
    frees: AtomicU64,
    slabs: AtomicU64,
}

impl ClassCounters {
    const fn new() -> Self {
        Self {
            allocs: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            slabs: AtomicU64::new(0),
        }
    }
}

#[inline]
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

/// One class of one CPU: the cache and its counters side by side, in one cache line, so the
/// fast paths touch a single line.
#[repr(C, align(64))]
struct PerClass {
    local: UnsafeCell<ClassCache>,
    counters: ClassCounters,
}

/// Remote frees of one class waiting in the freeing slot to go to their owner together (owner
/// return only): a null-terminated chain `head ..= tail` of `count` objects, all of slabs slot
/// `owner` owns; empty when `count` is 0 (then `owner` is [`NO_OWNER`]).
struct RemoteBatch {
    head: *mut FreeObject,
    tail: *mut FreeObject,
    count: u32,
    owner: u32,
}

/// The owner of an empty [`RemoteBatch`]: no slot index (at most `CPUS`) is this.
const NO_OWNER: u32 = u32::MAX;

impl RemoteBatch {
    const EMPTY: Self = Self {
        head: ptr::null_mut(),
        tail: ptr::null_mut(),
        count: 0,
        owner: NO_OWNER,
    };
}

/// Objects a [`RemoteBatch`] of a class collects before it is sent to the owner with one
/// compare-and-swap: [`REMOTE_BATCH`], but no more than half the class's magazine (so a batch
/// holds at most 8 KiB of objects in classes up to 1 KiB, 8 objects in the larger ones, and the
/// owner takes at most half a magazine per batch).
const REMOTE_BATCH_LIMIT: [u32; NUM_CLASSES] = {
    let mut limits = [0; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        let half = MAGAZINE_CAPACITY[c] / 2;
        limits[c] = if half < REMOTE_BATCH {
            half
        } else {
            REMOTE_BATCH
        };
        c += 1;
    }
    limits
};

/// The most remote frees of one class a slot batches for one owner (see
/// [`REMOTE_BATCH_LIMIT`] for the per-class bound).
const REMOTE_BATCH: u32 = 32;

/// One CPU's state.
struct Slot {
    classes: [PerClass; NUM_CLASSES],
    /// Objects of slabs this slot owns, given back by other slots, per class.
    remote: [AtomicPtr<FreeObject>; NUM_CLASSES],
    /// Owner return: remote frees made on this slot, per class, not yet sent to their owner.
    /// Touched only by the slot's guard holder.
    batches: [UnsafeCell<RemoteBatch>; NUM_CLASSES],
    /// Bit `c` set: `batches[c]` is not empty. Touched only by the slot's guard holder.
    pending: UnsafeCell<u64>,
}

impl Slot {
    const fn new() -> Self {
        Self {
            classes: [const {
                PerClass {
                    local: UnsafeCell::new(ClassCache::EMPTY),
                    counters: ClassCounters::new(),
                }
            }; NUM_CLASSES],
            remote: [const { AtomicPtr::new(ptr::null_mut()) }; NUM_CLASSES],
            batches: [const { UnsafeCell::new(RemoteBatch::EMPTY) }; NUM_CLASSES],
            pending: UnsafeCell::new(0),
        }
    }
}

// `pending` has a bit per class.
const _: () = assert!(NUM_CLASSES <= 64);

/// Orders whose freed blocks may be kept whole in [`Backing`]'s quick lists (4 KiB to 64 KiB).
const QUICK_ORDERS: usize = 5;
/// Blocks kept per quick list: at most 8 x (4 + 8 + 16 + 32 + 64) KiB = 992 KiB held in all.
const QUICK_MAX: usize = 8;

/// The buddy allocator and how many chunks it holds.
struct Backing {
    buddy: BuddyAllocator,
    chunks: usize,
    /// The most chunks held at once since the heap was made or last trimmed.
    peak_chunks: usize,
    /// Per order below [`QUICK_ORDERS`], freed blocks kept whole instead of merged back into
    /// the buddy allocator, linked through their first word (null ends a list): a free and
    /// allocation of one size then reuse a block without splitting a chunk down and merging it
    /// up again each time. To the buddy allocator these blocks are still allocated.
    quick: [*mut u8; QUICK_ORDERS],
    /// Blocks on each quick list.
    quick_len: [usize; QUICK_ORDERS],
}

// SAFETY: the quick lists' pointers are blocks this heap owns; `Backing` is only reached through
// the heap's `PinnedMutex`, so they are touched by one thread at a time, like the buddy
// allocator's own lists (which is `Send` for the same reason).
unsafe impl Send for Backing {}

impl Backing {
    /// Pops a kept block of `order`, if any.
    fn quick_pop(&mut self, order: usize) -> Option<NonNull<u8>> {
        let head = NonNull::new(*self.quick.get(order)?)?;
        // SAFETY: a block on a quick list is ours, at least 4 KiB, and its first word holds the
        // next link (written by `quick_push`, not touched since: nobody else holds the block).
        self.quick[order] = unsafe { head.as_ptr().cast::<*mut u8>().read() };
        self.quick_len[order] -= 1;
        Some(head)
    }

    /// Keeps `block` of `order` whole if its list has room; false (and nothing kept) otherwise,
    /// and when the buddy allocator already holds part of it (a double free: the caller's
    /// `deallocate` then refuses it). True without keeping it when it is already on the list
    /// (a double free, refused here).
    ///
    /// # Safety
    /// `block` is an allocated buddy block of `order`, no longer used by anyone.
    unsafe fn quick_push(&mut self, order: usize, block: NonNull<u8>) -> bool {
        // The room check first: a block that cannot be kept pays no double-free test here
        // (`deallocate` makes its own).
        if order >= QUICK_ORDERS
            || self.quick_len[order] >= QUICK_MAX
            || self.buddy.is_free(block.as_ptr(), order)
        {
            return false;
        }
        let mut p = self.quick[order];
        while !p.is_null() {
            if p == block.as_ptr() {
                debug_assert!(false, "heap: double free of {block:p} (order {order})");
                return true;
            }
            // SAFETY: as in `quick_pop`: every block on the list holds its next link.
            p = unsafe { p.cast::<*mut u8>().read() };
        }
        // SAFETY: the caller gives the block up; its first word (a block is at least 4 KiB)
        // becomes the link.
        unsafe { block.as_ptr().cast::<*mut u8>().write(self.quick[order]) };
        self.quick[order] = block.as_ptr();
        self.quick_len[order] += 1;
        true
    }

    /// Gives every kept block back to the buddy allocator (merging as it goes), so that free
    /// chunks can be found whole.
    fn quick_drain(&mut self) {
        for order in 0..QUICK_ORDERS {
            while let Some(block) = self.quick_pop(order) {
                // SAFETY: the block was allocated from `buddy` at `order` and is unused (it was
                // on the quick list); a failure would mean a foreign block, never pushed here.
                let freed = unsafe { self.buddy.deallocate(block, order) };
                debug_assert!(
                    freed.is_ok(),
                    "heap: quick list held a bad block: {freed:?}"
                );
            }
        }
    }

    /// Bytes in the quick lists.
    fn quick_bytes(&self) -> usize {
        (0..QUICK_ORDERS)
            .map(|o| self.quick_len[o] * (PAGE_SIZE << o))
            .sum()
    }
}

/// A size-class heap with per-CPU caches; see the module documentation.
///
/// `P` supplies memory, `C` says which CPU slot the caller may use, `CPUS` is the number of
/// per-CPU slots (callers whose slot is `>= CPUS` share one locked slot; each slot costs
/// [`SLOT_BYTES`]), and `L` is the raw lock of the buddy allocator and the shared slot (any
/// [`lock_api::RawMutex`], [`SpinLock`] by default; it is only ever taken under the
/// `CpuLocal` guard, see the module documentation), and `OWNER_RETURN` says whether a free of
/// an object another slot owns goes to that slot's remote queue (`true`; for a process whose
/// threads share cache lines or hand blocks to each other) or to the freeing slot's magazine
/// (`false`, the default: the kernel's, whose free fast path it keeps as short as possible; see
/// "Free fast path" in the module documentation). The chunk size and the free chunks kept
/// are set by a [`HeapConfig`] ([`Heap::with_config`]).
pub struct Heap<
    P: PageSource,
    C: CpuLocal,
    const CPUS: usize = DEFAULT_CPUS,
    L: RawMutex = SpinLock,
    const OWNER_RETURN: bool = false,
> {
    pages: P,
    cpu: C,
    config: HeapConfig,
    slots: [CachePadded<Slot>; CPUS],
    shared: CachePadded<Slot>,
    shared_lock: PinnedMutex<(), L>,
    backing: PinnedMutex<Backing, L>,
    large_allocs: AtomicU64,
    large_frees: AtomicU64,
    large_live_bytes: AtomicUsize,
    direct_live: AtomicU64,
    direct_live_bytes: AtomicUsize,
    chunks_from_source: AtomicU64,
    chunks_released: AtomicU64,
    failed: AtomicU64,
}

// SAFETY: the per-slot `UnsafeCell`s are only accessed by the holder of that slot's `CpuLocal`
// guard (whose contract makes it exclusive) or under `shared_lock` for the shared slot, or
// through `&mut self`; slab headers are only touched by their owner slot's holder; everything
// else is atomic or behind a `Mutex`. Raw pointers in the state point into memory the heap owns.
unsafe impl<
    P: PageSource + Sync,
    C: CpuLocal + Sync,
    const CPUS: usize,
    L: RawMutex + Sync,
    const OWNER_RETURN: bool,
> Sync for Heap<P, C, CPUS, L, OWNER_RETURN>
{
}
// SAFETY: as above; moving the heap moves ownership of all its memory with it.
unsafe impl<
    P: PageSource + Send,
    C: CpuLocal + Send,
    const CPUS: usize,
    L: RawMutex + Send,
    const OWNER_RETURN: bool,
> Send for Heap<P, C, CPUS, L, OWNER_RETURN>
{
}

/// A slot the caller may use exclusively: whoever holds one holds the slot's `CpuLocal` guard,
/// or the shared slot's lock (under the guard `enter` gave, if any), or `&mut Heap`; `pinned`
/// lets it take the heap's other locks.
#[derive(Clone, Copy)]
struct Entered<'h> {
    slot: &'h Slot,
    pinned: Pinned<'h>,
}

impl<P: PageSource, C: CpuLocal, const CPUS: usize, L: RawMutex, const OWNER_RETURN: bool>
    Heap<P, C, CPUS, L, OWNER_RETURN>
{
    /// A heap that takes memory from `pages` and CPU slots from `cpu`, with the default
    /// [`HeapConfig`]. `const`, so it can be a `static` (`#[global_allocator]`).
    pub const fn new(pages: P, cpu: C) -> Self {
        Self::with_config(pages, cpu, HeapConfig::DEFAULT)
    }

    /// A heap with the chunk size and free chunks kept of `config`. `const`, as [`Heap::new`].
    pub const fn with_config(pages: P, cpu: C, config: HeapConfig) -> Self {
        Self {
            pages,
            cpu,
            config,
            slots: [const { CachePadded::new(Slot::new()) }; CPUS],
            shared: CachePadded::new(Slot::new()),
            shared_lock: PinnedMutex::new(()),
            backing: PinnedMutex::new(Backing {
                buddy: BuddyAllocator::new(),
                chunks: 0,
                peak_chunks: 0,
                quick: [ptr::null_mut(); QUICK_ORDERS],
                quick_len: [0; QUICK_ORDERS],
            }),
            large_allocs: AtomicU64::new(0),
            large_frees: AtomicU64::new(0),
            large_live_bytes: AtomicUsize::new(0),
            direct_live: AtomicU64::new(0),
            direct_live_bytes: AtomicUsize::new(0),
            chunks_from_source: AtomicU64::new(0),
            chunks_released: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Runs `f` on the caller's slot, holding its guard (or the shared slot's lock, taken
    /// while still holding the guard `enter` returned, if it returned one).
    #[inline(always)]
    fn with_slot<R>(&self, f: impl FnOnce(Entered<'_>) -> R) -> R {
        let entered = match self.cpu.enter_slot() {
            Ok((ptr, guard)) => {
                // SAFETY: the `CpuLocal` contract: `ptr` is what `self.slot_ptr(i)` returned,
                // the address of `self.slots[i]` (the heap is not moved while it is shared),
                // and the caller holds slot `i` while `guard` lives.
                let slot = unsafe { ptr.get().cast::<CachePadded<Slot>>().as_ref() };
                return f(Entered {
                    slot,
                    pinned: Pinned::held(&guard),
                });
            }
            Err(entered) => entered,
        };
        let pinned = Pinned::new(&entered);
        if let Some((index, _)) = entered
            && index < CPUS
        {
            return f(Entered {
                slot: &self.slots[index],
                pinned,
            });
        }
        // Declared after `entered`, so dropped (unlocked) before the guard.
        let _lock = self.shared_lock.lock(pinned, self.cpu.lock_section());
        f(Entered {
            slot: &self.shared,
            pinned,
        })
    }

    /// Slot `index`'s address, for an embedder that keeps it in its per-CPU data and returns
    /// it from [`CpuLocal::enter_slot`]; `None` for `index >= CPUS` (the shared slot is never
    /// handed out this way: it needs its lock). Valid while the heap is not moved (a `static`).
    pub fn slot_ptr(&self, index: usize) -> Option<SlotPtr> {
        let slot: &CachePadded<Slot> = self.slots.get(index)?;
        Some(SlotPtr::new(NonNull::from(slot).cast()))
    }

    /// The index of `slot` (one of `self.slots`, or `CPUS` for the shared slot), for the slow
    /// paths that record a slab's owner.
    fn slot_index(&self, slot: &Slot) -> usize {
        let addr = ptr::from_ref(slot) as usize;
        let base = self.slots.as_ptr() as usize;
        let index = addr.wrapping_sub(base) / SLOT_BYTES;
        if index < CPUS { index } else { CPUS }
    }

    fn slot(&self, index: usize) -> &Slot {
        if index < CPUS {
            &self.slots[index]
        } else {
            &self.shared
        }
    }

    /// Allocates memory for `layout`; null when out of memory or when the layout cannot be
    /// served (over 1 GiB). A zero-size layout gets a real, minimal allocation.
    #[inline(always)]
    pub fn allocate(&self, layout: Layout) -> *mut u8 {
        if let Some(class) = class_for_common(layout.size(), layout.align()) {
            // SAFETY: a class from the table is `< NUM_CLASSES`.
            return unsafe { self.allocate_small(class) };
        }
        self.allocate_uncommon(layout)
    }

    /// [`Heap::allocate`] for what `class_for_common` does not answer.
    #[inline(never)]
    fn allocate_uncommon(&self, layout: Layout) -> *mut u8 {
        match class_for(layout.size(), layout.align()) {
            // SAFETY: `class_for` answers classes `< NUM_CLASSES`.
            Some(class) => unsafe { self.allocate_small(class) },
            None => self.allocate_large(layout),
        }
    }

    /// Frees memory from [`Heap::allocate`].
    ///
    /// # Safety
    /// `ptr` was returned by `allocate` (or `reallocate`) of this heap with this `layout` and is
    /// not used afterwards.
    #[inline(always)]
    pub unsafe fn deallocate(&self, ptr: *mut u8, layout: Layout) {
        if let Some(class) = class_for_common(layout.size(), layout.align()) {
            // SAFETY: forwarded contract: `ptr` is a handed-out object of this class (which the
            // table answers `< NUM_CLASSES`).
            return unsafe { self.free_small(ptr, class) };
        }
        // SAFETY: forwarded contract.
        unsafe { self.deallocate_uncommon(ptr, layout) }
    }

    /// [`Heap::deallocate`] for what `class_for_common` does not answer.
    ///
    /// # Safety
    /// As [`Heap::deallocate`].
    #[inline(never)]
    unsafe fn deallocate_uncommon(&self, ptr: *mut u8, layout: Layout) {
        match class_for(layout.size(), layout.align()) {
            // SAFETY: forwarded contract: `ptr` is a handed-out object of this class.
            Some(class) => unsafe { self.free_small(ptr, class) },
            // SAFETY: forwarded contract: `ptr` is a large block of this layout.
            None => unsafe { self.free_large(ptr, layout) },
        }
    }

    /// Resizes in place when the new size keeps the same size class (or the same buddy block),
    /// otherwise allocates, copies and frees. Null (and the old block untouched) on failure.
    ///
    /// # Safety
    /// As [`Heap::deallocate`] for `ptr` and `layout`; `new_size` rounded up to `layout.align()`
    /// must not overflow `isize`.
    pub unsafe fn reallocate(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        match (
            class_for(layout.size(), layout.align()),
            class_for(new_size, layout.align()),
        ) {
            (Some(a), Some(b)) if a == b => return ptr,
            (None, None) => {
                let old = self.large_kind(layout.size(), layout.align());
                let new = self.large_kind(new_size, layout.align());
                if old.is_some() && old == new {
                    self.large_live_bytes.fetch_add(new_size, Ordering::Relaxed);
                    self.large_live_bytes
                        .fetch_sub(layout.size(), Ordering::Relaxed);
                    return ptr;
                }
            }
            _ => {}
        }
        let new = self.allocate(new_layout);
        if !new.is_null() {
            // SAFETY: both blocks are valid for min(old, new) bytes and distinct allocations.
            unsafe { ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: forwarded contract.
            unsafe { self.deallocate(ptr, layout) };
        }
        new
    }

    /// # Safety
    /// `class < NUM_CLASSES` (every class `class_for` answers is).
    #[inline(always)]
    unsafe fn allocate_small(&self, class: usize) -> *mut u8 {
        debug_assert!(class < NUM_CLASSES);
        self.with_slot(|entered| {
            // SAFETY: `class < NUM_CLASSES` (the caller's contract): no bounds check needed.
            let per_class = unsafe { entered.slot.classes.get_unchecked(class) };
            // SAFETY: `entered` proves exclusive use of the slot's local state.
            let cache = unsafe { &mut *per_class.local.get() };
            bump(&per_class.counters.allocs, 1);
            let obj = cache.magazine;
            if obj.is_null() {
                // SAFETY: we hold the slot, and `cache` is its cache of `class`.
                return unsafe { self.allocate_slow(entered, cache, class) };
            }
            // SAFETY: magazine objects are free objects whose first word is the link.
            cache.magazine = unsafe { (*obj).next };
            cache.magazine_len -= 1;
            obj.cast()
        })
    }

    /// The magazine is empty: refill it and allocate, or fail.
    ///
    /// # Safety
    /// We hold the slot `entered`, and `cache` is its cache of `class`.
    #[cold]
    #[inline(never)]
    unsafe fn allocate_slow(
        &self,
        entered: Entered<'_>,
        cache: &mut ClassCache,
        class: usize,
    ) -> *mut u8 {
        let counters = &entered.slot.classes[class].counters;
        // Counting the misses (rare) rather than the hits keeps a store off the fast path.
        bump(&counters.misses, 1);
        // SAFETY: forwarded contract.
        if unsafe { self.refill(entered, cache, class) } {
            let obj = cache.magazine;
            // SAFETY: refill left at least one object in the magazine.
            cache.magazine = unsafe { (*obj).next };
            cache.magazine_len -= 1;
            obj.cast()
        } else {
            bump(&counters.allocs, u64::MAX); // undo: nothing was allocated
            bump(&counters.misses, u64::MAX);
            self.failed.fetch_add(1, Ordering::Relaxed);
            ptr::null_mut()
        }
    }

    /// # Safety
    /// `ptr` is a handed-out object of class `class` of this heap (so `class < NUM_CLASSES`).
    #[inline(always)]
    unsafe fn free_small(&self, ptr: *mut u8, class: usize) {
        debug_assert!(class < NUM_CLASSES);
        self.with_slot(|entered| {
            // SAFETY: `class < NUM_CLASSES` (the caller's contract): no bounds check needed.
            let per_class = unsafe { entered.slot.classes.get_unchecked(class) };
            // SAFETY: `entered` proves exclusive use of the slot's local state.
            let cache = unsafe { &mut *per_class.local.get() };
            bump(&per_class.counters.frees, 1);
            let obj = ptr.cast::<FreeObject>();
            // SAFETY: we hold the slot; forwarded contract: `obj` is a handed-out object of
            // `class`.
            if OWNER_RETURN && unsafe { self.free_to_owner(entered, obj, class) } {
                return;
            }
            // SAFETY: the caller gives the object up; its first word becomes the link.
            unsafe { (*obj).next = cache.magazine };
            cache.magazine = obj;
            cache.magazine_len += 1;
            // SAFETY: as above, `class < NUM_CLASSES`.
            if cache.magazine_len > unsafe { *MAGAZINE_CAPACITY.get_unchecked(class) } {
                // SAFETY: we hold the slot.
                unsafe { self.flush_cold(entered, cache, class) };
            }
        })
    }

    /// Owner return: when another slot owns `obj`'s slab, adds `obj` to the entered slot's
    /// batch of remote frees for `class` (sent to the owner with one compare-and-swap when it is
    /// full, when a free for another owner comes, or on the slot's next slow path) and returns
    /// true; returns false (and does nothing) when the entered slot owns it.
    ///
    /// # Safety
    /// We hold the slot `entered`; `obj` is a handed-out object of `class` of this heap (so
    /// `class < NUM_CLASSES`), given up by the caller if this returns true.
    #[inline(always)]
    unsafe fn free_to_owner(
        &self,
        entered: Entered<'_>,
        obj: *mut FreeObject,
        class: usize,
    ) -> bool {
        let slab = slab_of(obj.cast(), class);
        // SAFETY: `obj` is handed out, so `slab` is its live slab.
        let owner = unsafe { SlabHeader::owner(slab, class) };
        // The entered slot is named by its address (`CpuLocal::enter_slot`), so compare the
        // owner's slot address with it (a multiply, not the division of `slot_index`).
        if ptr::eq(self.slot(owner as usize), entered.slot) {
            return false;
        }
        // SAFETY: `class < NUM_CLASSES` (the caller's contract); we hold the slot, so its
        // batches are ours.
        let batch = unsafe { &mut *entered.slot.batches.get_unchecked(class).get() };
        // SAFETY: as above.
        if batch.owner == owner && batch.count < unsafe { *REMOTE_BATCH_LIMIT.get_unchecked(class) }
        {
            // SAFETY: the caller gives `obj` up; its first word becomes the batch's link.
            unsafe { (*obj).next = batch.head };
            batch.head = obj;
            batch.count += 1;
            return true;
        }
        // SAFETY: forwarded contract; `owner` owns `obj`'s slab; `batch` is the slot's batch
        // of `class`.
        unsafe { self.start_batch(entered, batch, owner, class, obj) };
        true
    }

    /// The remote-free fast path's other branch: sends `batch` (full, or for another owner) to
    /// its owner and starts a new one with `obj`.
    ///
    /// # Safety
    /// We hold the slot `entered` and `batch` is its batch of `class`; `obj` is a handed-out
    /// object of `class` in a slab owned by slot `owner` (not the entered slot), given up by the
    /// caller.
    #[cold]
    #[inline(never)]
    unsafe fn start_batch(
        &self,
        entered: Entered<'_>,
        batch: &mut RemoteBatch,
        owner: u32,
        class: usize,
        obj: *mut FreeObject,
    ) {
        if batch.count > 0 {
            // SAFETY: a batch holds a chain of objects of `class` its owner owns, given up.
            unsafe { self.send_remote(batch.owner, class, batch.head, batch.tail) };
        }
        // SAFETY: the caller gives `obj` up.
        unsafe { (*obj).next = ptr::null_mut() };
        *batch = RemoteBatch {
            head: obj,
            tail: obj,
            count: 1,
            owner,
        };
        // SAFETY: we hold the slot.
        unsafe { *entered.slot.pending.get() |= 1 << class };
    }

    /// Sends every non-empty batch of remote frees of the entered slot to its owner.
    ///
    /// # Safety
    /// We hold the slot `entered`.
    unsafe fn send_batches(&self, entered: Entered<'_>) {
        // SAFETY: we hold the slot.
        let pending = unsafe { &mut *entered.slot.pending.get() };
        while *pending != 0 {
            let class = pending.trailing_zeros() as usize;
            *pending &= *pending - 1;
            // SAFETY: we hold the slot; a bit is set only for a class below `NUM_CLASSES`.
            let batch = unsafe { &mut *entered.slot.batches[class].get() };
            if batch.count > 0 {
                // SAFETY: a batch holds a chain of objects of `class` its owner owns, given up.
                unsafe { self.send_remote(batch.owner, class, batch.head, batch.tail) };
            }
            *batch = RemoteBatch::EMPTY;
        }
    }

    /// Sends the remote frees the caller's slot holds in batches (owner return, `Heap`'s
    /// `OWNER_RETURN` parameter) to the slots that own them; nothing without owner return. A
    /// slot's batches also go on its own slow paths (refill, magazine overflow, [`Heap::trim`])
    /// and in [`Heap::reclaim_all`]; an embedder calls this where a slot stops being used
    /// for a while (a thread's exit: `hosted::flush_at_thread_exit` does it for `ThreadSlots`;
    /// a CPU going offline), so the owners are not kept waiting for those objects.
    pub fn flush_remote_frees(&self) {
        if OWNER_RETURN {
            // SAFETY: `with_slot` holds the slot.
            self.with_slot(|entered| unsafe { self.send_batches(entered) });
        }
    }

    /// # Safety
    /// As `flush`.
    #[cold]
    #[inline(never)]
    unsafe fn flush_cold(&self, entered: Entered<'_>, cache: &mut ClassCache, class: usize) {
        if OWNER_RETURN {
            // A slow path: the slot's remote frees go to their owners (bounds how long a batch
            // waits in a slot that frees its own objects too).
            // SAFETY: forwarded contract.
            unsafe { self.send_batches(entered) };
        }
        // SAFETY: forwarded contract.
        unsafe { self.flush(entered, cache, class, MAGAZINE_CAPACITY[class] / 2) };
    }

    /// Fills an empty magazine. Returns false when no memory can be had.
    ///
    /// # Safety
    /// `entered` is held and `cache` is its slot's cache of `class`.
    unsafe fn refill(&self, entered: Entered<'_>, cache: &mut ClassCache, class: usize) -> bool {
        if OWNER_RETURN {
            // 0. A slow path: the slot's remote frees go to their owners (bounds how long a
            //    batch waits in a slot that also allocates).
            // SAFETY: we hold the slot.
            unsafe { self.send_batches(entered) };
        }
        // 1. Objects other slots returned to us: they are already counted as in use in our slabs,
        //    so they go straight into the magazine.
        let returned = entered.slot.remote[class].swap(ptr::null_mut(), Ordering::Acquire);
        if !returned.is_null() {
            let mut n = 0;
            let mut last = returned;
            // SAFETY: the remote list is a chain of free objects pushed by other slots with
            // Release; our Acquire swap took the whole chain.
            unsafe {
                n += 1;
                while !(*last).next.is_null() {
                    last = (*last).next;
                    n += 1;
                }
                (*last).next = cache.magazine;
            }
            cache.magazine = returned;
            cache.magazine_len += n;
            if cache.magazine_len > MAGAZINE_CAPACITY[class] {
                let keep = MAGAZINE_CAPACITY[class] / 2;
                // SAFETY: we hold the slot.
                unsafe { self.flush(entered, cache, class, keep) };
            }
            return true;
        }
        // 2. A partial slab, or 3. a new one.
        loop {
            let slab = cache.partial;
            if slab.is_null() {
                // SAFETY: we hold the slot.
                match unsafe { self.new_slab(entered, cache, class) } {
                    true => continue,
                    false => return false,
                }
            }
            let base = SlabHeader::base(slab);
            // SAFETY: slabs on our partial list are live slabs we own.
            let s = unsafe { &mut *slab };
            if s.in_use == 0 {
                cache.empty_slabs -= 1;
            }
            // SAFETY: we own the slab; `base` comes from the slab's raw pointer.
            let n = unsafe { s.take(base, class, refill_batch(class), &mut cache.magazine) };
            cache.magazine_len += n;
            if !s.has_available() {
                unlink_partial(cache, slab);
            }
            if n > 0 {
                return true;
            }
        }
    }

    /// Creates a slab for `class` owned by the entered slot and puts it on the partial list.
    ///
    /// # Safety
    /// As `refill`.
    unsafe fn new_slab(&self, entered: Entered<'_>, cache: &mut ClassCache, class: usize) -> bool {
        let bytes = slab_bytes(class);
        let order = (bytes / PAGE_SIZE).trailing_zeros() as usize;
        let Some(block) = self.buddy_allocate(entered.pinned, order) else {
            return false;
        };
        // SAFETY: a fresh buddy block of the slab's size, naturally aligned, ours alone.
        let slab = unsafe { SlabHeader::init(block, class, self.slot_index(entered.slot) as u32) };
        link_partial(cache, slab);
        cache.empty_slabs += 1;
        bump(&entered.slot.classes[class].counters.slabs, 1);
        true
    }

    /// Returns the oldest objects of the magazine to their slabs, keeping the `keep` most
    /// recently freed.
    ///
    /// # Safety
    /// As `refill`.
    unsafe fn flush(&self, entered: Entered<'_>, cache: &mut ClassCache, class: usize, keep: u32) {
        // Split the magazine after `keep` objects.
        let mut rest = cache.magazine;
        let mut prev: *mut FreeObject = ptr::null_mut();
        for _ in 0..keep {
            if rest.is_null() {
                return;
            }
            prev = rest;
            // SAFETY: magazine objects are linked free objects.
            rest = unsafe { (*rest).next };
        }
        if prev.is_null() {
            cache.magazine = ptr::null_mut();
        } else {
            // SAFETY: `prev` is a magazine object.
            unsafe { (*prev).next = ptr::null_mut() };
        }
        cache.magazine_len = keep.min(cache.magazine_len);

        // Chains for other owners: (owner, head, tail).
        let mut chains: [(u32, *mut FreeObject, *mut FreeObject); FLUSH_OWNERS] =
            [(0, ptr::null_mut(), ptr::null_mut()); FLUSH_OWNERS];
        let mut nchains = 0;
        let me = self.slot_index(entered.slot) as u32;
        // Objects of one of our slabs met one after another (a magazine often holds runs of
        // neighbours), given back to it together: (slab, head, tail, count).
        let mut run: (*mut SlabHeader, *mut FreeObject, *mut FreeObject, u32) =
            (ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), 0);
        while !rest.is_null() {
            let obj = rest;
            // SAFETY: as above.
            rest = unsafe { (*obj).next };
            let slab = slab_of(obj.cast(), class);
            if slab == run.0 {
                // SAFETY: prepend `obj` to the run; `obj` is ours to link.
                unsafe { (*obj).next = run.1 };
                run.1 = obj;
                run.3 += 1;
                continue;
            }
            // SAFETY: `obj` is a handed-out object of `class` (magazine objects are), so `slab`
            // is its live slab.
            let owner = unsafe { SlabHeader::owner(slab, class) };
            if owner == me {
                if run.3 > 0 {
                    // SAFETY: the run is `run.3` objects of our slab `run.0`, given up.
                    unsafe { self.give_back_to_slab(entered, cache, class, run) };
                }
                run = (slab, obj, obj, 1);
            } else if let Some(chain) = chains[..nchains].iter_mut().find(|c| c.0 == owner) {
                // SAFETY: prepend `obj` to the chain; `obj` is ours to link.
                unsafe { (*obj).next = chain.1 };
                chain.1 = obj;
            } else if nchains < FLUSH_OWNERS {
                // SAFETY: as above.
                unsafe { (*obj).next = ptr::null_mut() };
                chains[nchains] = (owner, obj, obj);
                nchains += 1;
            } else {
                // SAFETY: a one-object chain.
                unsafe { (*obj).next = ptr::null_mut() };
                // SAFETY: a chain of objects of `class` owned by `owner`.
                unsafe { self.send_remote(owner, class, obj, obj) };
            }
        }
        if run.3 > 0 {
            // SAFETY: as above.
            unsafe { self.give_back_to_slab(entered, cache, class, run) };
        }
        for &(owner, head, tail) in &chains[..nchains] {
            // SAFETY: each chain holds objects of `class` owned by `owner`.
            unsafe { self.send_remote(owner, class, head, tail) };
        }
    }

    /// Pushes a chain of objects onto their owner's remote queue with one CAS loop.
    ///
    /// # Safety
    /// `head..=tail` is a null-terminated chain of objects of `class` owned by slot `owner`,
    /// given up by the caller.
    unsafe fn send_remote(
        &self,
        owner: u32,
        class: usize,
        head: *mut FreeObject,
        tail: *mut FreeObject,
    ) {
        let queue = &self.slot(owner as usize).remote[class];
        let mut current = queue.load(Ordering::Relaxed);
        loop {
            // SAFETY: `tail` is ours until the CAS publishes the chain.
            unsafe { (*tail).next = current };
            match queue.compare_exchange_weak(current, head, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
    }

    /// Gives an object back to its slab, owned by the entered slot.
    ///
    /// # Safety
    /// We hold the slot; `obj` is a handed-out object of `class` in a slab this slot owns.
    unsafe fn give_back_local(
        &self,
        entered: Entered<'_>,
        cache: &mut ClassCache,
        class: usize,
        obj: *mut FreeObject,
    ) {
        let slab = slab_of(obj.cast(), class);
        // SAFETY: forwarded contract; `slab` is `obj`'s slab.
        unsafe { self.give_back_to_slab(entered, cache, class, (slab, obj, obj, 1)) };
    }

    /// Gives a run of objects back to their slab, owned by the entered slot: `(slab, head,
    /// tail, count)`.
    ///
    /// # Safety
    /// We hold the slot; `head ..= tail` is a chain of `count` handed-out objects of `class`,
    /// all in `slab`, a slab this slot owns, and the caller gives them up.
    #[inline]
    unsafe fn give_back_to_slab(
        &self,
        entered: Entered<'_>,
        cache: &mut ClassCache,
        class: usize,
        (slab, head, tail, count): (*mut SlabHeader, *mut FreeObject, *mut FreeObject, u32),
    ) {
        // SAFETY: we own the live slab.
        let s = unsafe { &mut *slab };
        // SAFETY: forwarded contract.
        unsafe { s.give_back_chain(head, tail, count) };
        if !s.on_partial {
            link_partial(cache, slab);
        }
        if s.in_use == 0 {
            if cache.empty_slabs >= EMPTY_SLABS_KEPT {
                unlink_partial(cache, slab);
                bump(&entered.slot.classes[class].counters.slabs, u64::MAX);
                let order = (slab_bytes(class) / PAGE_SIZE).trailing_zeros() as usize;
                // SAFETY: the slab has no object in use, so the whole block is ours to free; it
                // came from `buddy_allocate(order)`.
                unsafe {
                    self.buddy_free(
                        entered.pinned,
                        NonNull::new_unchecked(SlabHeader::base(slab)),
                        order,
                    )
                };
            } else {
                cache.empty_slabs += 1;
            }
        }
    }

    /// How a large request of `size` bytes aligned to `align` is served: from the buddy
    /// allocator when its block is at most half a chunk (so it fits beside the buddy metadata
    /// in one chunk), otherwise directly from the page source, rounded up only to the page size
    /// and the alignment. `None`: the request cannot be served (over 1 GiB, or a bad alignment).
    fn large_kind(&self, size: usize, align: usize) -> Option<Large> {
        let order = BuddyAllocator::order_for(size, align)?;
        if (PAGE_SIZE << order) <= self.config.chunk_size / 2 {
            return Some(Large::Buddy(order));
        }
        // `order_for` accepted it, so `align` is a power of two <= 1 GiB and `size` <= 1 GiB:
        // the rounding cannot overflow.
        let align = align.max(PAGE_SIZE);
        let len = size.max(1).next_multiple_of(align);
        Some(Large::Direct { len, align })
    }

    fn allocate_large(&self, layout: Layout) -> *mut u8 {
        let block = match self.large_kind(layout.size(), layout.align()) {
            Some(Large::Buddy(order)) => {
                // The buddy lock is taken under the CPU guard (see `crate::pinned`); the slot
                // itself is not used.
                let entered = self.cpu.enter();
                self.buddy_allocate(Pinned::new(&entered), order)
            }
            Some(Large::Direct { len, align }) => {
                // The page source is called under the CPU guard and in the lock section too
                // (as for chunks).
                let _entered = self.cpu.enter();
                let block = {
                    let _section = self.cpu.lock_section();
                    self.pages.allocate_chunk(len, align)
                };
                if block.is_some() {
                    self.direct_live.fetch_add(1, Ordering::Relaxed);
                    self.direct_live_bytes.fetch_add(len, Ordering::Relaxed);
                }
                block
            }
            None => None,
        };
        match block {
            Some(block) => {
                self.large_allocs.fetch_add(1, Ordering::Relaxed);
                self.large_live_bytes
                    .fetch_add(layout.size(), Ordering::Relaxed);
                block.as_ptr()
            }
            None => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                ptr::null_mut()
            }
        }
    }

    /// # Safety
    /// `ptr` came from `allocate_large(layout)` of this heap.
    unsafe fn free_large(&self, ptr: *mut u8, layout: Layout) {
        let Some(kind) = self.large_kind(layout.size(), layout.align()) else {
            return; // no such block was ever handed out
        };
        let Some(p) = NonNull::new(ptr) else {
            return;
        };
        self.large_frees.fetch_add(1, Ordering::Relaxed);
        self.large_live_bytes
            .fetch_sub(layout.size(), Ordering::Relaxed);
        // As in `allocate_large`: the buddy lock and the page source only under the CPU guard.
        let entered = self.cpu.enter();
        match kind {
            // SAFETY: forwarded contract.
            Large::Buddy(order) => unsafe { self.buddy_free(Pinned::new(&entered), p, order) },
            Large::Direct { len, .. } => {
                self.direct_live.fetch_sub(1, Ordering::Relaxed);
                self.direct_live_bytes.fetch_sub(len, Ordering::Relaxed);
                let _section = self.cpu.lock_section();
                // SAFETY: `allocate_large` got exactly this chunk (`len` is a function of the
                // layout and the configuration, the same now) from the page source; the caller
                // no longer uses it.
                unsafe { self.pages.release_chunk(p, len) };
            }
        }
    }

    /// A block from the buddy allocator, growing it from the page source when needed.
    fn buddy_allocate(&self, pinned: Pinned<'_>, order: usize) -> Option<NonNull<u8>> {
        let mut backing = self.backing.lock(pinned, self.cpu.lock_section());
        if let Some(block) = backing.quick_pop(order) {
            return Some(block);
        }
        if let Ok(block) = backing.buddy.allocate(order) {
            return Some(block);
        }
        // Blocks kept whole may be what stops a larger allocation: merge them back first.
        backing.quick_drain();
        if let Ok(block) = backing.buddy.allocate(order) {
            return Some(block);
        }
        // A chunk of twice the block (at least CHUNK_SIZE), aligned to its size: after the buddy
        // carves its metadata from the start, the upper half is still an aligned free block.
        let block_bytes = PAGE_SIZE << order;
        let len = self.config.chunk_size.max(block_bytes.checked_mul(2)?);
        let chunk = self.pages.allocate_chunk(len, len)?;
        self.chunks_from_source.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the page source guarantees the chunk is ours, readable and writable, until we
        // release it, which we only do after the buddy allocator gives it back.
        match unsafe { backing.buddy.add_region(chunk.as_ptr(), len) } {
            Ok(_) => {
                backing.chunks += 1;
                backing.peak_chunks = backing.peak_chunks.max(backing.chunks);
            }
            Err(_) => {
                // SAFETY: the chunk was just obtained and is not referenced anywhere.
                unsafe { self.pages.release_chunk(chunk, len) };
                self.chunks_released.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        backing.buddy.allocate(order).ok()
    }

    /// # Safety
    /// `block` came from `buddy_allocate(order)` and is no longer used.
    unsafe fn buddy_free(&self, pinned: Pinned<'_>, block: NonNull<u8>, order: usize) {
        let mut backing = self.backing.lock(pinned, self.cpu.lock_section());
        // Kept whole if its order's quick list has room (no merge now, no split at the next
        // allocation of this order). A block that is already free in the buddy allocator is a
        // double free: `quick_push` declines it and `deallocate` refuses it.
        // SAFETY: forwarded contract: an allocated block of `order`, no longer used.
        if unsafe { backing.quick_push(order, block) } {
            return;
        }
        // SAFETY: forwarded contract. A failure here means the caller broke it (double free or
        // foreign pointer); the buddy allocator detects that without corrupting itself, and the
        // block is then simply not freed.
        let freed = unsafe { backing.buddy.deallocate(block, order) };
        debug_assert!(
            freed.is_ok(),
            "heap: bad free of {block:p} (order {order}): {freed:?}"
        );
        let keep = self.config.chunks_held_kept(backing.peak_chunks);
        self.release_free_chunks(&mut backing, keep);
    }

    /// Gives entirely free chunks back to the page source while more than `keep` chunks are
    /// held.
    fn release_free_chunks(&self, backing: &mut Backing, keep: usize) {
        if backing.chunks > keep {
            // Kept blocks would pin their chunks: merge them back before looking for free ones.
            backing.quick_drain();
        }
        while backing.chunks > keep {
            let Some((start, len)) = backing.buddy.take_free_region() else {
                break;
            };
            backing.chunks -= 1;
            // SAFETY: the buddy allocator no longer manages the range and nothing is allocated
            // in it; it is exactly a chunk we got from the page source (so `start`, the chunk's
            // pointer as we added it, is not null).
            unsafe { self.pages.release_chunk(NonNull::new_unchecked(start), len) };
            self.chunks_released.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Gives memory back from the current slot: flushes its magazines, takes back objects other
    /// slots returned to it, and returns every empty slab it owns (including the ones normally
    /// kept to absorb oscillation) to the buddy allocator; then gives every entirely free chunk
    /// beyond [`HeapConfig::chunks_kept`] back to the page source (whatever percentage of the
    /// peak the configuration keeps) and restarts the peak from the chunks still held.
    pub fn trim(&self) {
        self.with_slot(|entered| {
            for class in 0..NUM_CLASSES {
                // SAFETY: `entered` proves exclusive use of the slot's local state.
                let cache = unsafe { &mut *entered.slot.classes[class].local.get() };
                // SAFETY: we hold the slot.
                unsafe { self.trim_class(entered, cache, class) };
            }
            let mut backing = self.backing.lock(entered.pinned, self.cpu.lock_section());
            self.release_free_chunks(&mut backing, self.config.chunks_kept);
            backing.peak_chunks = backing.chunks;
        })
    }

    /// # Safety
    /// We hold the slot; `cache` is its cache of `class`.
    unsafe fn trim_class(&self, entered: Entered<'_>, cache: &mut ClassCache, class: usize) {
        // Everything in the magazine goes back (ours to slabs, others' to their owners), and
        // so do the slot's batches of remote frees ...
        // SAFETY: we hold the slot.
        unsafe { self.flush(entered, cache, class, 0) };
        // SAFETY: we hold the slot.
        unsafe { self.send_batches(entered) };
        // ... and so does everything returned to us ...
        let mut returned = entered.slot.remote[class].swap(ptr::null_mut(), Ordering::Acquire);
        while !returned.is_null() {
            let obj = returned;
            // SAFETY: a chain of objects of our slabs, taken whole by the swap.
            returned = unsafe { (*obj).next };
            // SAFETY: objects on our remote queue belong to slabs we own.
            unsafe { self.give_back_local(entered, cache, class, obj) };
        }
        // ... and every empty slab.
        let mut slab = cache.partial;
        while !slab.is_null() {
            // SAFETY: a live slab on the slot's partial list.
            let (next, in_use) = unsafe { ((*slab).next, (*slab).in_use) };
            if in_use == 0 {
                unlink_partial(cache, slab);
                cache.empty_slabs -= 1;
                bump(&entered.slot.classes[class].counters.slabs, u64::MAX);
                let order = (slab_bytes(class) / PAGE_SIZE).trailing_zeros() as usize;
                // SAFETY: no object of the slab is in use; the block came from the buddy.
                unsafe {
                    self.buddy_free(
                        entered.pinned,
                        NonNull::new_unchecked(SlabHeader::base(slab)),
                        order,
                    )
                };
            }
            slab = next;
        }
    }

    /// Returns every cached object to its slab and every empty slab to the buddy allocator, in
    /// all slots, and every free chunk to the page source. Needs exclusive access (no
    /// allocation can be in flight), for instance at the end of a test or when a subsystem that
    /// owned the heap shuts down.
    pub fn reclaim_all(&mut self) {
        // `&mut self` rules out every other user, but the buddy lock is still only taken under
        // a CPU guard (see `crate::pinned`).
        let cpu = self.cpu.enter();
        let pinned = Pinned::new(&cpu);
        // First pass: magazines out (objects of other owners land in their remote queues);
        // second pass: remote queues in. Objects only move toward their owner, so two passes
        // settle everything.
        for _pass in 0..2 {
            for index in 0..=CPUS {
                let slot = self.slot(index);
                let entered = Entered { slot, pinned };
                for class in 0..NUM_CLASSES {
                    // SAFETY: `&mut self` means no guard holder or lock holder exists: we may
                    // act as every slot in turn.
                    let cache = unsafe { &mut *slot.classes[class].local.get() };
                    // SAFETY: as above.
                    unsafe { self.trim_class(entered, cache, class) };
                }
            }
        }
        let _section = self.cpu.lock_section();
        let backing = self.backing.get_mut();
        backing.quick_drain();
        while let Some((start, len)) = backing.buddy.take_free_region() {
            backing.chunks -= 1;
            // SAFETY: the range is entirely free and no longer managed: a whole chunk of ours
            // (so `start`, the chunk's pointer as we added it, is not null).
            unsafe { self.pages.release_chunk(NonNull::new_unchecked(start), len) };
            self.chunks_released.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A snapshot of the heap's statistics. Counters of other CPUs are read without stopping
    /// them, so a snapshot taken during activity is approximate (each number is one that was
    /// true recently); at rest it is exact.
    pub fn stats(&self) -> HeapStats {
        let mut classes = [ClassStats::default(); NUM_CLASSES];
        for (class, stats) in classes.iter_mut().enumerate() {
            stats.size = CLASS_SIZES[class];
            stats.slab_bytes = slab_bytes(class);
            let mut frees = 0u64;
            for index in 0..=CPUS {
                let c = &self.slot(index).classes[class].counters;
                stats.allocations = stats
                    .allocations
                    .wrapping_add(c.allocs.load(Ordering::Relaxed));
                let allocs = c.allocs.load(Ordering::Relaxed);
                let misses = c.misses.load(Ordering::Relaxed);
                stats.cache_hits = stats.cache_hits.wrapping_add(allocs.wrapping_sub(misses));
                frees = frees.wrapping_add(c.frees.load(Ordering::Relaxed));
                stats.slabs = stats.slabs.wrapping_add(c.slabs.load(Ordering::Relaxed));
            }
            stats.live_objects = stats.allocations.wrapping_sub(frees);
        }
        // The buddy lock only under the CPU guard (see `crate::pinned`).
        let entered = self.cpu.enter();
        let backing = self
            .backing
            .lock(Pinned::new(&entered), self.cpu.lock_section());
        HeapStats {
            classes,
            large_live: self
                .large_allocs
                .load(Ordering::Relaxed)
                .wrapping_sub(self.large_frees.load(Ordering::Relaxed)),
            large_live_bytes: self.large_live_bytes.load(Ordering::Relaxed),
            direct_live: self.direct_live.load(Ordering::Relaxed),
            direct_live_bytes: self.direct_live_bytes.load(Ordering::Relaxed),
            chunks_held: backing.chunks,
            chunks_peak: backing.peak_chunks,
            chunks_from_source: self.chunks_from_source.load(Ordering::Relaxed),
            chunks_released: self.chunks_released.load(Ordering::Relaxed),
            failed_allocations: self.failed.load(Ordering::Relaxed),
            buddy: backing.buddy.stats(),
            quick_bytes: backing.quick_bytes(),
        }
    }
}

fn link_partial(cache: &mut ClassCache, slab: *mut SlabHeader) {
    // SAFETY: `slab` and the list's slabs are live slabs owned by the caller's slot.
    unsafe {
        (*slab).prev = ptr::null_mut();
        (*slab).next = cache.partial;
        if !cache.partial.is_null() {
            (*cache.partial).prev = slab;
        }
        (*slab).on_partial = true;
    }
    cache.partial = slab;
}

fn unlink_partial(cache: &mut ClassCache, slab: *mut SlabHeader) {
    // SAFETY: `slab` is on the caller's partial list; all slabs on it are live and owned.
    unsafe {
        let (prev, next) = ((*slab).prev, (*slab).next);
        if prev.is_null() {
            cache.partial = next;
        } else {
            (*prev).next = next;
        }
        if !next.is_null() {
            (*next).prev = prev;
        }
        (*slab).prev = ptr::null_mut();
        (*slab).next = ptr::null_mut();
        (*slab).on_partial = false;
    }
}

/// Statistics of one size class, summed over all slots.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClassStats {
    /// Object size of the class.
    pub size: usize,
    /// Size of each of its slabs.
    pub slab_bytes: usize,
    /// Objects handed out and not freed.
    pub live_objects: u64,
    /// Slabs held by all slots.
    pub slabs: u64,
    /// Allocations served.
    pub allocations: u64,
    /// Allocations served straight from a per-CPU magazine.
    pub cache_hits: u64,
}

impl ClassStats {
    /// Fraction of allocations served from the per-CPU cache (0 when there were none).
    pub fn hit_rate(&self) -> f64 {
        if self.allocations == 0 {
            0.0
        } else {
            self.cache_hits as f64 / self.allocations as f64
        }
    }
}

/// A snapshot of [`Heap::stats`].
#[derive(Debug, Clone, Copy)]
pub struct HeapStats {
    /// Per size class.
    pub classes: [ClassStats; NUM_CLASSES],
    /// Large blocks handed out and not freed.
    pub large_live: u64,
    /// Bytes requested by those large blocks.
    pub large_live_bytes: usize,
    /// Large blocks served directly by the page source (more than half a chunk), live.
    pub direct_live: u64,
    /// Bytes the page source gave for those blocks (their sizes rounded up to the page size).
    pub direct_live_bytes: usize,
    /// Chunks currently held from the page source (for the buddy allocator; direct blocks are
    /// not counted here).
    pub chunks_held: usize,
    /// The most chunks held at once since the heap was made or last trimmed (what the
    /// configuration's percentage of the peak applies to).
    pub chunks_peak: usize,
    /// Chunks obtained from the page source so far.
    pub chunks_from_source: u64,
    /// Chunks given back to the page source so far.
    pub chunks_released: u64,
    /// Allocations that returned null.
    pub failed_allocations: u64,
    /// The buddy allocator's own statistics. Freed blocks kept whole for reuse
    /// ([`HeapStats::quick_bytes`]) count as allocated there.
    pub buddy: BuddyStats,
    /// Bytes of freed buddy blocks (4 KiB to 64 KiB) kept whole for the next allocation of
    /// their size instead of being merged back; at most 992 KiB. They go back to the buddy
    /// allocator before free chunks are returned to the page source, and on `reclaim_all`.
    pub quick_bytes: usize,
}

impl HeapStats {
    /// Bytes of live small objects (class size, not requested size).
    pub fn live_small_bytes(&self) -> u64 {
        self.classes
            .iter()
            .map(|c| c.live_objects * c.size as u64)
            .sum()
    }
}

// SAFETY: `allocate` returns null or a block of at least `layout.size()` bytes aligned to
// `layout.align()` that no other live allocation overlaps (size classes and buddy blocks are
// disjoint, and an object is handed out only from a free list it was removed from);
// `dealloc`/`realloc` forward their contracts.
unsafe impl<P: PageSource, C: CpuLocal, const CPUS: usize, L: RawMutex, const OWNER_RETURN: bool>
    GlobalAlloc for Heap<P, C, CPUS, L, OWNER_RETURN>
{
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocate(layout)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's contract is ours.
        unsafe { self.deallocate(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc's contract is ours.
        unsafe { self.reallocate(ptr, layout, new_size) }
    }
}

// SAFETY: blocks are valid until deallocated and do not move; zero-size requests get a dangling,
// aligned pointer that `deallocate` ignores; `grow`/`shrink` use the provided defaults, built on
// `allocate`/`deallocate`, which uphold the same guarantees as the `GlobalAlloc` impl.
unsafe impl<P: PageSource, C: CpuLocal, const CPUS: usize, L: RawMutex, const OWNER_RETURN: bool>
    allocator_api2::alloc::Allocator for &Heap<P, C, CPUS, L, OWNER_RETURN>
{
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        if layout.size() == 0 {
            // SAFETY: alignment is a non-zero power of two, so this pointer is non-null.
            let dangling =
                unsafe { NonNull::new_unchecked(ptr::without_provenance_mut(layout.align())) };
            return Ok(NonNull::slice_from_raw_parts(dangling, 0));
        }
        let ptr = Heap::allocate(self, layout);
        NonNull::new(ptr)
            .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(allocator_api2::alloc::AllocError)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: Allocator's contract: `ptr` was allocated by us with `layout`.
            unsafe { Heap::deallocate(self, ptr.as_ptr(), layout) }
        }
    }
}

/// Small, fast unit tests: also the ones run under Miri (see the README), with the system
/// allocator as the page source.
#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::hosted::{SystemPages, ThreadSlots};
    use std::vec::Vec;

    type SmallHeap = Heap<SystemPages, ThreadSlots, 2>;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn alloc_write_free_across_classes_and_large() {
        let mut heap = SmallHeap::new(SystemPages, ThreadSlots);
        let sizes = [1, 8, 24, 200, 300, 5000, 8192, 9000, 70_000];
        let mut live = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let l = layout(size, 1 << (i % 7));
            let p = heap.allocate(l);
            assert!(!p.is_null());
            assert_eq!(p as usize % l.align(), 0);
            // SAFETY: a fresh block of `size` bytes.
            unsafe { ptr::write_bytes(p, i as u8, size) };
            live.push((p, l, i as u8));
        }
        for (p, l, fill) in live {
            // SAFETY: live blocks written above.
            let bytes = unsafe { core::slice::from_raw_parts(p, l.size()) };
            assert!(bytes.iter().all(|&b| b == fill));
            // SAFETY: a live block of this layout.
            unsafe { heap.deallocate(p, l) };
        }
        heap.reclaim_all();
        let stats = heap.stats();
        assert_eq!(stats.chunks_held, 0);
        assert!(
            stats
                .classes
                .iter()
                .all(|c| c.live_objects == 0 && c.slabs == 0)
        );
    }

    /// Allocates `n` blocks of 2 MiB (each needs a chunk of its own: half of a 4 MiB chunk, the
    /// other half holds the buddy metadata), returns them.
    fn two_mib_blocks(heap: &SmallHeap, n: usize) -> Vec<*mut u8> {
        (0..n)
            .map(|_| {
                let p = heap.allocate(layout(2 << 20, 8));
                assert!(!p.is_null());
                p
            })
            .collect()
    }

    fn free_all(heap: &SmallHeap, blocks: Vec<*mut u8>) {
        for p in blocks {
            // SAFETY: live blocks of this layout from `two_mib_blocks`.
            unsafe { heap.deallocate(p, layout(2 << 20, 8)) };
        }
    }

    #[test]
    fn default_config_gives_free_chunks_back_at_once() {
        let mut heap = SmallHeap::new(SystemPages, ThreadSlots);
        let blocks = two_mib_blocks(&heap, 5);
        assert_eq!(heap.stats().chunks_held, 5);
        assert_eq!(heap.stats().chunks_peak, 5);
        free_all(&heap, blocks);
        let stats = heap.stats();
        assert_eq!(stats.chunks_held, CHUNKS_KEPT, "{stats:?}");
        assert_eq!(stats.chunks_released, (5 - CHUNKS_KEPT) as u64);
        heap.reclaim_all();
    }

    #[test]
    fn hosted_config_keeps_free_chunks_up_to_the_peak_until_trim() {
        let mut heap = SmallHeap::with_config(SystemPages, ThreadSlots, HeapConfig::HOSTED);
        let blocks = two_mib_blocks(&heap, 5);
        free_all(&heap, blocks);
        let stats = heap.stats();
        assert_eq!(
            (stats.chunks_held, stats.chunks_released),
            (5, 0),
            "{stats:?}"
        );
        // The next round of the same size takes no chunk from the page source ...
        let blocks = two_mib_blocks(&heap, 5);
        assert_eq!(heap.stats().chunks_from_source, 5);
        free_all(&heap, blocks);
        // ... and one that needs more raises the peak; what is held never exceeds it.
        let blocks = two_mib_blocks(&heap, 7);
        let stats = heap.stats();
        assert_eq!((stats.chunks_held, stats.chunks_peak), (7, 7), "{stats:?}");
        free_all(&heap, blocks);
        assert_eq!(heap.stats().chunks_held, 7);
        // `trim` gives back every free chunk beyond `chunks_kept` and restarts the peak.
        heap.trim();
        let stats = heap.stats();
        assert_eq!(
            (stats.chunks_held, stats.chunks_peak),
            (CHUNKS_KEPT, CHUNKS_KEPT)
        );
        assert_eq!(stats.chunks_released, (7 - CHUNKS_KEPT) as u64);
        // After the trim a smaller round sets the bound: 2 chunks at most are kept.
        let blocks = two_mib_blocks(&heap, 2);
        free_all(&heap, blocks);
        assert_eq!(heap.stats().chunks_held, 2);
        heap.reclaim_all();
        assert_eq!(heap.stats().chunks_held, 0);
    }

    #[test]
    fn freed_mid_size_blocks_are_kept_whole_and_reused() {
        let mut heap = SmallHeap::new(SystemPages, ThreadSlots);
        let l = layout(16 << 10, 8);
        let n = QUICK_MAX + 2;
        let blocks: Vec<*mut u8> = (0..n).map(|_| heap.allocate(l)).collect();
        assert!(blocks.iter().all(|p| !p.is_null()));
        let free_before = heap.stats().buddy.free_bytes;
        for &p in &blocks {
            // SAFETY: live blocks of this layout.
            unsafe { heap.deallocate(p, l) };
        }
        // The first `QUICK_MAX` freed wait whole (the buddy allocator still counts them); the
        // last two found the list full and went back to the buddy allocator.
        let stats = heap.stats();
        assert_eq!(stats.quick_bytes, QUICK_MAX * (16 << 10), "{stats:?}");
        assert_eq!(
            stats.buddy.free_bytes,
            free_before + 2 * (16 << 10),
            "{stats:?}"
        );
        // The next allocations of that size get exactly those blocks, newest first.
        let again: Vec<*mut u8> = (0..QUICK_MAX).map(|_| heap.allocate(l)).collect();
        let mut kept: Vec<*mut u8> = blocks[..QUICK_MAX].to_vec();
        kept.reverse();
        assert_eq!(again, kept);
        assert_eq!(heap.stats().quick_bytes, 0);
        // A block of another order does not come from them (the two 16 KiB blocks the buddy
        // allocator merged may serve it).
        let other = heap.allocate(layout(32 << 10, 8));
        assert!(!other.is_null() && !again.contains(&other));
        for p in again {
            // SAFETY: live blocks of this layout.
            unsafe { heap.deallocate(p, l) };
        }
        // SAFETY: a live block of this layout.
        unsafe { heap.deallocate(other, layout(32 << 10, 8)) };
        assert_eq!(
            heap.stats().quick_bytes,
            QUICK_MAX * (16 << 10) + (32 << 10)
        );
        // `reclaim_all` merges the kept blocks back and gives every chunk up.
        heap.reclaim_all();
        let stats = heap.stats();
        assert_eq!((stats.chunks_held, stats.quick_bytes), (0, 0), "{stats:?}");
    }

    #[test]
    fn kept_blocks_do_not_stop_free_chunks_from_going_back() {
        let mut heap = SmallHeap::with_config(SystemPages, ThreadSlots, HeapConfig::HOSTED);
        let l = layout(16 << 10, 8);
        let small: Vec<*mut u8> = (0..4).map(|_| heap.allocate(l)).collect();
        let big = two_mib_blocks(&heap, 3);
        for &p in &small {
            // SAFETY: live blocks of this layout.
            unsafe { heap.deallocate(p, l) };
        }
        free_all(&heap, big);
        let stats = heap.stats();
        assert_eq!(stats.quick_bytes, 4 * (16 << 10), "{stats:?}");
        let held = stats.chunks_held;
        assert!(held > CHUNKS_KEPT, "{stats:?}");
        // Every chunk is free once the kept blocks are merged back: `trim` does that first.
        heap.trim();
        let stats = heap.stats();
        assert_eq!(
            (stats.chunks_held, stats.quick_bytes, stats.chunks_released),
            (CHUNKS_KEPT, 0, (held - CHUNKS_KEPT) as u64),
            "{stats:?}"
        );
        // An allocation that no free buddy block can serve merges the kept blocks back first.
        // The one chunk left: a 2 MiB block and 2 MiB less the metadata page in smaller free
        // blocks (1 MiB down to 4 KiB). `hold` takes the 2 MiB block; 127 blocks of 16 KiB take
        // the rest, smallest free block first, so the last 64 come from the 1 MiB block.
        let hold = heap.allocate(layout(2 << 20, 8));
        let fill: Vec<*mut u8> = (0..127).map(|_| heap.allocate(l)).collect();
        assert!(!hold.is_null() && fill.iter().all(|p| !p.is_null()));
        let from_source = heap.stats().chunks_from_source;
        // Freed newest first: the 8 kept whole lie in the 1 MiB block, which cannot merge.
        for &p in fill.iter().rev() {
            // SAFETY: live blocks of this layout.
            unsafe { heap.deallocate(p, l) };
        }
        assert_eq!(heap.stats().quick_bytes, QUICK_MAX * (16 << 10));
        let mib = heap.allocate(layout(1 << 20, 8));
        assert!(!mib.is_null());
        let stats = heap.stats();
        assert_eq!(
            (stats.chunks_from_source, stats.quick_bytes),
            (from_source, 0),
            "{stats:?}"
        );
        // SAFETY: live blocks of these layouts.
        unsafe {
            heap.deallocate(mib, layout(1 << 20, 8));
            heap.deallocate(hold, layout(2 << 20, 8));
        }
        heap.reclaim_all();
        assert_eq!(heap.stats().chunks_held, 0);
    }

    #[test]
    fn a_percentage_of_the_peak_bounds_the_free_chunks_kept() {
        let config = HeapConfig::DEFAULT.with_peak_percent_kept(50);
        let mut heap = SmallHeap::with_config(SystemPages, ThreadSlots, config);
        let blocks = two_mib_blocks(&heap, 8);
        free_all(&heap, blocks);
        // Half of the peak of 8 is held; the other free chunks went back.
        let stats = heap.stats();
        assert_eq!(
            (stats.chunks_held, stats.chunks_released),
            (4, 4),
            "{stats:?}"
        );
        // With blocks live, free chunks go while more than the bound are held: 6 held, 3 of
        // them freed, leaves 4 (3 live + 1 free).
        let blocks = two_mib_blocks(&heap, 6);
        let stats = heap.stats();
        assert_eq!((stats.chunks_held, stats.chunks_peak), (6, 8));
        let (live, freed): (Vec<_>, Vec<_>) = blocks
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        free_all(&heap, freed.into_iter().map(|(_, p)| p).collect());
        assert_eq!(heap.stats().chunks_held, 4);
        free_all(&heap, live.into_iter().map(|(_, p)| p).collect());
        assert_eq!(heap.stats().chunks_held, 4);
        heap.reclaim_all();
    }

    #[test]
    fn retention_bound_arithmetic() {
        let c = HeapConfig::DEFAULT;
        assert_eq!((c.chunks_held_kept(0), c.chunks_held_kept(100)), (1, 1));
        let c = HeapConfig::HOSTED;
        assert_eq!((c.chunks_held_kept(0), c.chunks_held_kept(37)), (1, 37));
        let c = HeapConfig::DEFAULT
            .with_chunks_kept(3)
            .with_peak_percent_kept(25);
        assert_eq!((c.chunks_held_kept(8), c.chunks_held_kept(20)), (3, 5));
        assert_eq!(
            HeapConfig::DEFAULT
                .with_peak_percent_kept(250)
                .peak_percent_kept(),
            100
        );
        assert_eq!(
            HeapConfig::HOSTED.chunks_held_kept(usize::MAX),
            usize::MAX / 100
        );
    }

    /// A `CpuLocal` whose `enter_slot` returns the slot pointer in `PTR_SLOT` (null: `enter`,
    /// slot 1), as a kernel keeps one in its per-CPU data.
    struct PtrCpu;

    static PTR_SLOT: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());
    static PTR_HEAP: Heap<SystemPages, PtrCpu, 2> = Heap::new(SystemPages, PtrCpu);

    // SAFETY: only `slot_pointers_from_enter_slot_serve_the_fast_paths` uses `PTR_HEAP` (the
    // only heap with this `CpuLocal`), from one thread; `PTR_SLOT` holds null or
    // `PTR_HEAP.slot_ptr(1)`, the slot `enter` names too.
    unsafe impl CpuLocal for PtrCpu {
        type Guard = ();

        fn max_slots(&self) -> usize {
            2
        }

        fn enter(&self) -> Option<(usize, ())> {
            Some((1, ()))
        }

        fn enter_slot(&self) -> Result<(SlotPtr, ()), Option<(usize, ())>> {
            match SlotPtr::from_raw(PTR_SLOT.load(Ordering::Relaxed)) {
                Some(slot) => Ok((slot, ())),
                None => Err(self.enter()),
            }
        }
    }

    #[test]
    fn slot_pointers_from_enter_slot_serve_the_fast_paths() {
        let heap = &PTR_HEAP;
        for i in 0..2 {
            let slot = heap.slot_ptr(i).unwrap();
            // SAFETY: a pointer to `heap.slots[i]`.
            let slot = unsafe { slot.get().cast::<CachePadded<Slot>>().as_ref() };
            assert_eq!(heap.slot_index(slot), i);
        }
        assert!(heap.slot_ptr(2).is_none());
        assert_eq!(heap.slot_index(&heap.shared), 2);

        let l = layout(64, 8);
        let class = class_for(64, 8).unwrap();
        let n = 3 * magazine_capacity(class) as usize;
        PTR_SLOT.store(heap.slot_ptr(1).unwrap().as_raw(), Ordering::Relaxed);
        let ptrs: Vec<_> = (0..n).map(|_| heap.allocate(l)).collect();
        for (i, &p) in ptrs.iter().enumerate() {
            assert!(!p.is_null());
            // SAFETY: a fresh block of 64 bytes.
            unsafe { ptr::write_bytes(p, i as u8, 64) };
            // SAFETY: a handed-out object of `class`.
            let owner = unsafe { SlabHeader::owner(slab_of(p, class), class) };
            assert_eq!(owner, 1, "slabs made through the pointer belong to slot 1");
        }
        assert_eq!(heap.stats().classes[class].live_objects, n as u64);
        // Half back through the pointer, half through `enter`'s index: the same slot.
        for (i, &p) in ptrs.iter().enumerate() {
            // SAFETY: a live block of 64 bytes that nothing else wrote.
            let bytes = unsafe { core::slice::from_raw_parts(p, 64) };
            assert!(bytes.iter().all(|&b| b == i as u8));
            if i == n / 2 {
                PTR_SLOT.store(ptr::null_mut(), Ordering::Relaxed);
            }
            // SAFETY: live blocks of this layout.
            unsafe { heap.deallocate(p, l) };
        }
        assert_eq!(heap.stats().classes[class].live_objects, 0);
        heap.trim();
    }

    #[test]
    fn magazine_overflow_returns_objects_to_slabs() {
        let mut heap = SmallHeap::new(SystemPages, ThreadSlots);
        let l = layout(64, 8);
        let n = 3 * magazine_capacity(class_for(64, 8).unwrap()) as usize;
        let ptrs: Vec<_> = (0..n).map(|_| heap.allocate(l)).collect();
        for &p in &ptrs {
            // SAFETY: live blocks of this layout.
            unsafe { heap.deallocate(p, l) };
        }
        assert_eq!(
            heap.stats().classes[class_for(64, 8).unwrap()].live_objects,
            0
        );
        heap.reclaim_all();
        assert_eq!(heap.stats().chunks_held, 0);
    }

    #[test]
    fn frees_from_another_thread_go_back_to_the_owner() {
        let mut heap = SmallHeap::new(SystemPages, ThreadSlots);
        let l = layout(32, 8);
        // `AtomicPtr` to send the pointers (with their provenance) to the other thread.
        let ptrs: Vec<AtomicPtr<u8>> = (0..600).map(|_| AtomicPtr::new(heap.allocate(l))).collect();
        std::thread::scope(|s| {
            let heap = &heap;
            s.spawn(move || {
                for p in ptrs {
                    // SAFETY: live blocks handed over by the allocating thread.
                    unsafe { heap.deallocate(p.into_inner(), l) };
                }
                heap.trim();
            });
        });
        // The owner takes the returned objects back on its next refill.
        let again: Vec<_> = (0..600).map(|_| heap.allocate(l)).collect();
        for p in again {
            // SAFETY: live blocks of this layout.
            unsafe { heap.deallocate(p, l) };
        }
        heap.reclaim_all();
        let stats = heap.stats();
        assert_eq!(stats.chunks_held, 0, "{stats:?}");
    }

    std::thread_local! {
        /// The slot [`TestSlots`] gives this thread (set by [`on_slot`]).
        static TEST_SLOT: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
    }

    /// A `CpuLocal` whose slot each test thread is given by [`on_slot`], so a test decides
    /// which thread owns which slot, and that a new thread takes over the slot of one that
    /// exited (as `ThreadSlots` hands a freed index to the next thread that claims one).
    struct TestSlots;

    // SAFETY: the tests below run one thread at a time (each `on_slot` thread is joined before
    // the next starts), so no two guards of a slot coexist; slots are 0, 1 or 2, below
    // `max_slots`.
    unsafe impl CpuLocal for TestSlots {
        type Guard = ();

        fn max_slots(&self) -> usize {
            3
        }

        fn enter(&self) -> Option<(usize, ())> {
            Some((TEST_SLOT.with(core::cell::Cell::get), ()))
        }
    }

    type SlotHeap<const OWNER_RETURN: bool> =
        Heap<SystemPages, TestSlots, 3, SpinLock, OWNER_RETURN>;

    /// A block pointer handed from one test thread to another.
    #[derive(Clone, Copy)]
    struct Block(*mut u8);
    // SAFETY: the block is only used by one thread at a time (threads are joined in turn).
    unsafe impl Send for Block {}
    // SAFETY: a shared `&Block` only gives its address; freeing through it is `unsafe` and the
    // tests free each block once, from one thread.
    unsafe impl Sync for Block {}

    /// Runs `f` on a new thread that uses slot `slot`, and waits for it.
    fn on_slot<R: Send>(slot: usize, f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|s| {
            s.spawn(move || {
                TEST_SLOT.with(|c| c.set(slot));
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// Objects on slot `slot`'s remote queue of `class` (no thread may be using the heap).
    fn remote_len<const O: bool>(heap: &SlotHeap<O>, slot: usize, class: usize) -> usize {
        let mut n = 0;
        let mut obj = heap.slots[slot].remote[class].load(Ordering::Acquire);
        while !obj.is_null() {
            n += 1;
            // SAFETY: a chain of free objects; nobody uses the heap meanwhile.
            obj = unsafe { (*obj).next };
        }
        n
    }

    /// Slot 0 allocates `n` blocks of `l`, slot 1 frees them and then allocates `n`: the
    /// blocks slot 1 got, and those it freed.
    fn free_on_slot_1_then_allocate<const O: bool>(
        heap: &SlotHeap<O>,
        l: Layout,
        n: usize,
    ) -> (Vec<Block>, std::collections::HashSet<usize>) {
        let blocks: Vec<Block> = on_slot(0, || (0..n).map(|_| Block(heap.allocate(l))).collect());
        assert!(blocks.iter().all(|b| !b.0.is_null()));
        let freed = blocks.iter().map(|b| b.0.addr()).collect();
        let got = on_slot(1, || {
            for b in blocks {
                // SAFETY: live blocks of this layout handed over by slot 0's thread.
                unsafe { heap.deallocate(b.0, l) };
            }
            (0..n).map(|_| Block(heap.allocate(l))).collect()
        });
        (got, freed)
    }

    #[test]
    fn remote_frees_go_back_to_the_owner_not_to_the_freeing_slot() {
        let l = layout(32, 8);
        let class = class_for(32, 8).unwrap();
        let n = 2 * MAGAZINE_CAPACITY[class] as usize;
        let mut heap = SlotHeap::<true>::new(SystemPages, TestSlots);
        let (got, freed) = free_on_slot_1_then_allocate(&heap, l, n);
        // None of slot 1's allocations is a block it freed: they all went to slot 0's queue.
        assert!(got.iter().all(|b| !freed.contains(&b.0.addr())));
        assert_eq!(remote_len(&heap, 0, class), n);
        // SAFETY: slot 1's magazine is only touched by slot 1's thread, which has exited.
        assert!(unsafe { (*heap.slots[1].classes[class].local.get()).magazine_len } < n as u32);
        // The owner collects them when its magazine runs dry, with no new slab.
        let slabs = heap.stats().classes[class].slabs;
        let again: Vec<Block> = on_slot(0, || (0..n).map(|_| Block(heap.allocate(l))).collect());
        assert_eq!(remote_len(&heap, 0, class), 0);
        assert_eq!(heap.stats().classes[class].slabs, slabs);
        assert!(again.iter().any(|b| freed.contains(&b.0.addr())));
        on_slot(0, || {
            for b in again {
                // SAFETY: live blocks of this layout.
                unsafe { heap.deallocate(b.0, l) };
            }
        });
        on_slot(1, || {
            for b in got {
                // SAFETY: live blocks of this layout.
                unsafe { heap.deallocate(b.0, l) };
            }
        });
        heap.reclaim_all();
        let stats = heap.stats();
        assert_eq!(
            (stats.chunks_held, stats.classes[class].live_objects),
            (0, 0)
        );

        // Without owner return the freeing slot hands the owner's blocks out again (what the
        // test above rules out).
        let mut heap = SlotHeap::<false>::new(SystemPages, TestSlots);
        let (got, freed) = free_on_slot_1_then_allocate(&heap, l, n);
        assert!(got.iter().any(|b| freed.contains(&b.0.addr())));
        on_slot(1, || {
            for b in got {
                // SAFETY: live blocks of this layout.
                unsafe { heap.deallocate(b.0, l) };
            }
        });
        heap.reclaim_all();
        assert_eq!(heap.stats().chunks_held, 0);
    }

    #[test]
    fn remote_frees_to_a_slot_whose_thread_exited_are_adopted_or_reclaimed() {
        let l = layout(100, 8);
        let class = class_for(100, 8).unwrap();
        let n = 3 * MAGAZINE_CAPACITY[class] as usize;
        let mut heap = SlotHeap::<true>::new(SystemPages, TestSlots);
        // Slot 0's thread allocates and exits; slot 1's thread frees its blocks.
        let blocks: Vec<Block> = on_slot(0, || (0..n).map(|_| Block(heap.allocate(l))).collect());
        on_slot(1, || {
            for b in blocks {
                // SAFETY: live blocks of this layout from slot 0's (exited) thread.
                unsafe { heap.deallocate(b.0, l) };
            }
            // What a thread's exit does (`hosted::flush_at_thread_exit`): the last batch goes.
            assert!(remote_len(&heap, 0, class) < n);
            heap.flush_remote_frees();
        });
        assert_eq!(remote_len(&heap, 0, class), n);
        assert_eq!(heap.stats().classes[class].live_objects, 0);
        // The next thread on slot 0 takes the queue over: its allocations reuse them, no slab
        // is created, and freeing them on the same slot leaves nothing queued.
        let slabs = heap.stats().classes[class].slabs;
        on_slot(0, || {
            let again: Vec<_> = (0..n).map(|_| heap.allocate(l)).collect();
            for p in again {
                // SAFETY: live blocks of this layout.
                unsafe { heap.deallocate(p, l) };
            }
        });
        assert_eq!(remote_len(&heap, 0, class), 0);
        assert_eq!(heap.stats().classes[class].slabs, slabs);
        // A slot nobody takes again: `reclaim_all` drains its queue, and every chunk goes back.
        let blocks: Vec<Block> = on_slot(1, || (0..n).map(|_| Block(heap.allocate(l))).collect());
        on_slot(0, || {
            for b in blocks {
                // SAFETY: live blocks of this layout from slot 1's (exited) thread.
                unsafe { heap.deallocate(b.0, l) };
            }
        });
        // This time the last batch stays in slot 0 (no flush at exit): `reclaim_all` sends it.
        let batched = n - remote_len(&heap, 1, class);
        assert!(batched > 0 && batched <= REMOTE_BATCH_LIMIT[class] as usize);
        heap.reclaim_all();
        let stats = heap.stats();
        assert_eq!(remote_len(&heap, 1, class), 0);
        assert_eq!(
            (stats.chunks_held, stats.classes[class].live_objects),
            (0, 0),
            "{stats:?}"
        );
    }

    /// Slot `slot` allocates `n` blocks of `l`.
    fn allocate_on<const O: bool>(
        heap: &SlotHeap<O>,
        slot: usize,
        l: Layout,
        n: usize,
    ) -> Vec<Block> {
        let blocks: Vec<Block> =
            on_slot(slot, || (0..n).map(|_| Block(heap.allocate(l))).collect());
        assert!(blocks.iter().all(|b| !b.0.is_null()));
        blocks
    }

    #[test]
    fn remote_frees_are_batched_per_owner_and_sent_when_full() {
        let l = layout(48, 8);
        let class = class_for(48, 8).unwrap();
        let limit = REMOTE_BATCH_LIMIT[class] as usize;
        assert!(limit > 1);
        let mut heap = SlotHeap::<true>::new(SystemPages, TestSlots);
        let mut blocks = allocate_on(&heap, 0, l, 2 * limit + 1);
        let last = blocks.pop().unwrap();
        // No object may be lost or sent twice: the owner's queue must hold exactly these.
        let mut freed: Vec<usize> = blocks.iter().chain([&last]).map(|b| b.0.addr()).collect();
        let heap_ref = &heap;
        on_slot(1, move || {
            let heap = heap_ref;
            for (i, b) in blocks.iter().enumerate() {
                // SAFETY: live blocks of this layout from slot 0.
                unsafe { heap.deallocate(b.0, l) };
                // The batch is only sent when the next free finds it full.
                let expected = if i < limit { 0 } else { limit };
                assert_eq!(
                    remote_len(heap, 0, class),
                    expected,
                    "after {} frees",
                    i + 1
                );
            }
            // A third full batch waits in slot 1 until a free finds it full ...
            // SAFETY: as above.
            // (`{ last }`: the closure takes the `Block`, which is `Send`, not its pointer.)
            unsafe { heap.deallocate({ last }.0, l) };
            assert_eq!(remote_len(heap, 0, class), 2 * limit);
            // ... or the slot's next slow path (a refill, here of another class).
            let other = layout(500, 8);
            let p = heap.allocate(other);
            assert_eq!(remote_len(heap, 0, class), 2 * limit + 1);
            // SAFETY: just allocated with this layout.
            unsafe { heap.deallocate(p, other) };
        });
        let mut queued = Vec::new();
        let mut obj = heap.slots[0].remote[class].load(Ordering::Acquire);
        while !obj.is_null() {
            queued.push(obj.addr());
            // SAFETY: a chain of free objects; nobody uses the heap meanwhile.
            obj = unsafe { (*obj).next };
        }
        queued.sort_unstable();
        freed.sort_unstable();
        assert_eq!(queued, freed);
        heap.reclaim_all();
        let stats = heap.stats();
        assert_eq!(
            (stats.chunks_held, stats.classes[class].live_objects),
            (0, 0)
        );
    }

    #[test]
    fn a_remote_free_for_another_owner_sends_the_batch() {
        let l = layout(64, 8);
        let class = class_for(64, 8).unwrap();
        let mut heap = SlotHeap::<true>::new(SystemPages, TestSlots);
        let of_0 = allocate_on(&heap, 0, l, 4);
        let of_2 = allocate_on(&heap, 2, l, 2);
        on_slot(1, || {
            let free = |b: &Block| {
                // SAFETY: live blocks of this layout, each freed once.
                unsafe { heap.deallocate(b.0, l) }
            };
            of_0[..3].iter().for_each(free);
            assert_eq!(
                (remote_len(&heap, 0, class), remote_len(&heap, 2, class)),
                (0, 0)
            );
            free(&of_2[0]);
            assert_eq!(
                (remote_len(&heap, 0, class), remote_len(&heap, 2, class)),
                (3, 0)
            );
            free(&of_0[3]);
            assert_eq!(
                (remote_len(&heap, 0, class), remote_len(&heap, 2, class)),
                (3, 1)
            );
            free(&of_2[1]);
            assert_eq!(
                (remote_len(&heap, 0, class), remote_len(&heap, 2, class)),
                (4, 1)
            );
            heap.flush_remote_frees();
            assert_eq!(
                (remote_len(&heap, 0, class), remote_len(&heap, 2, class)),
                (4, 2)
            );
            // Flushing again sends nothing twice.
            heap.flush_remote_frees();
            assert_eq!(
                (remote_len(&heap, 0, class), remote_len(&heap, 2, class)),
                (4, 2)
            );
        });
        heap.reclaim_all();
        let stats = heap.stats();
        assert_eq!(
            (stats.chunks_held, stats.classes[class].live_objects),
            (0, 0)
        );
    }

    /// A `'static` heap on `ThreadSlots` registered with `hosted::flush_at_thread_exit`.
    static EXIT_HEAP: Heap<SystemPages, ThreadSlots, 8, SpinLock, true> =
        Heap::new(SystemPages, ThreadSlots);

    #[test]
    fn an_exiting_thread_sends_its_batches_when_registered() {
        assert!(crate::hosted::flush_at_thread_exit(&EXIT_HEAP));
        let l = layout(80, 8);
        let class = class_for(80, 8).unwrap();
        // An owner thread allocates and stays alive; another frees 5 of its blocks and exits.
        let (to_owner, owner_waits) = std::sync::mpsc::channel::<()>();
        let (blocks_tx, blocks_rx) = std::sync::mpsc::channel::<Vec<Block>>();
        let owner_thread = std::thread::spawn(move || {
            let blocks: Vec<Block> = (0..5).map(|_| Block(EXIT_HEAP.allocate(l))).collect();
            blocks_tx.send(blocks).unwrap();
            owner_waits.recv().unwrap();
        });
        let blocks = blocks_rx.recv().unwrap();
        // SAFETY: a handed-out object of `class`.
        let owner = unsafe { SlabHeader::owner(slab_of(blocks[0].0, class), class) } as usize;
        let queued = move |heap: &Heap<SystemPages, ThreadSlots, 8, SpinLock, true>| {
            let mut n = 0;
            let mut obj = heap.slot(owner).remote[class].load(Ordering::Acquire);
            while !obj.is_null() {
                n += 1;
                // SAFETY: a chain of free objects; the owner thread does not allocate now.
                obj = unsafe { (*obj).next };
            }
            n
        };
        let exiting = std::thread::spawn(move || {
            for b in blocks {
                // SAFETY: live blocks of this layout, handed over by the owner thread.
                unsafe { EXIT_HEAP.deallocate(b.0, l) };
            }
            // Still batched here: fewer than a full batch.
            queued(&EXIT_HEAP)
        });
        let before_exit = exiting.join().unwrap();
        assert_eq!((before_exit, queued(&EXIT_HEAP)), (0, 5));
        to_owner.send(()).unwrap();
        owner_thread.join().unwrap();
    }

    /// Every operation that takes an internal lock, one at a time, on a heap whose `CpuLocal`
    /// guard "disables interrupts" (`testing::FakeCpu`): each lock and each call into the page
    /// source must happen with the guard held, and no slot may be entered twice.
    ///
    /// With `pin_only`, the guard only pins and the lock section "disables interrupts"
    /// (`FakeCpu::pin_only`): then each lock and page-source call must be inside the section.
    fn check_locks_under_guard(slot: usize, pin_only: bool) {
        use crate::testing::{CheckedPages, FakeCpu, LockReport};

        let pages = CheckedPages::default();
        let cpu = if pin_only {
            FakeCpu::pin_only(Some(slot))
        } else {
            FakeCpu::new(Some(slot))
        };
        let mut heap: Heap<&CheckedPages, FakeCpu, 2> = Heap::new(&pages, cpu);
        let _ = LockReport::take();
        // `what` must take at least one internal lock unless it is the fast path of a free or a
        // direct block (no lock: its page-source calls are checked for the guard instead).
        let check = |what: &str, op: &mut dyn FnMut(&Heap<&CheckedPages, FakeCpu, 2>)| {
            let enters = heap.cpu.enters();
            op(&heap);
            let report = LockReport::take();
            assert!(
                report.locks > 0 || what == "small free" || what.starts_with("direct"),
                "{what}: took no lock, so checked nothing"
            );
            assert_eq!(
                report.unguarded, 0,
                "{what}: lock taken without the CPU guard"
            );
            assert_eq!(report.nested_enters, 0, "{what}: slot entered twice");
            assert!(
                heap.cpu.enters() > enters,
                "{what}: never entered the CPU slot"
            );
            assert!(!crate::testing::interrupts_off(), "{what}: guard leaked");
        };
        // Large blocks of 2 MiB: each needs its own 4 MiB chunk from the page source, and
        // freeing both gives one back (one chunk is kept).
        let big = layout(2 << 20, 8);
        let mut blocks = [ptr::null_mut(); 2];
        check("large allocation", &mut |h| blocks[0] = h.allocate(big));
        check("large allocation (new chunk)", &mut |h| {
            blocks[1] = h.allocate(big)
        });
        assert!(blocks.iter().all(|b| !b.is_null()));
        // SAFETY: live large blocks of this layout.
        check("large free", &mut |h| unsafe {
            h.deallocate(blocks[0], big)
        });
        // SAFETY: as above.
        check("large free (chunk released)", &mut |h| unsafe {
            h.deallocate(blocks[1], big)
        });
        // A direct block (over half a chunk): straight from the page source and back.
        let direct = layout(3 << 20, 8);
        let mut d = ptr::null_mut();
        check("direct allocation", &mut |h| d = h.allocate(direct));
        assert!(!d.is_null());
        assert_eq!(heap.stats().direct_live, 1);
        let calls = pages.calls.load(Ordering::Relaxed);
        // SAFETY: a live block of this layout.
        check("direct free", &mut |h| unsafe { h.deallocate(d, direct) });
        assert_eq!(pages.calls.load(Ordering::Relaxed), calls + 1);
        assert_eq!(heap.stats().direct_live_bytes, 0);
        // Realloc small -> medium -> large -> small: every step allocates and frees in another
        // class (or the buddy allocator).
        let mut p = ptr::null_mut();
        let mut l = layout(48, 8);
        check("small allocation", &mut |h| p = h.allocate(l));
        for new_size in [4000, 100_000, 16] {
            check("realloc across classes", &mut |h| {
                // SAFETY: `p` is live with layout `l`.
                p = unsafe { h.reallocate(p, l, new_size) }
            });
            assert!(!p.is_null());
            l = layout(new_size, 8);
        }
        // SAFETY: `p` is live with layout `l`.
        check("small free", &mut |h| unsafe { h.deallocate(p, l) });
        check("stats", &mut |h| {
            h.stats();
        });
        check("trim", &mut |h| h.trim());
        heap.reclaim_all();
        let report = LockReport::take();
        assert_eq!(
            (report.unguarded, report.nested_enters),
            (0, 0),
            "reclaim_all"
        );
        assert!(
            pages.calls.load(Ordering::Relaxed) >= 4,
            "page source barely used"
        );
        assert_eq!(
            pages.unguarded_calls.load(Ordering::Relaxed),
            0,
            "page source called without the CPU guard"
        );
    }

    #[test]
    fn internal_locks_are_taken_under_the_cpu_guard() {
        check_locks_under_guard(0, false);
    }

    #[test]
    fn shared_slot_lock_is_taken_under_the_cpu_guard() {
        // Slot 5 of a 2-slot heap: everything goes through the shared, locked slot.
        check_locks_under_guard(5, false);
    }

    #[test]
    fn internal_locks_are_taken_in_the_lock_section() {
        check_locks_under_guard(0, true);
        check_locks_under_guard(5, true);
    }

    #[test]
    fn no_cpu_slot_still_works() {
        use crate::testing::{CheckedPages, FakeCpu};
        // `enter` returns `None`: there is no guard to hold, the shared slot's lock alone
        // serialises (the embedder's choice, documented on `CpuLocal::enter`).
        let pages = CheckedPages::default();
        let mut heap: Heap<&CheckedPages, FakeCpu, 2> = Heap::new(&pages, FakeCpu::new(None));
        for size in [8, 3000, 50_000] {
            let l = layout(size, 8);
            let p = heap.allocate(l);
            assert!(!p.is_null());
            // SAFETY: a live block of this layout.
            unsafe { heap.deallocate(p, l) };
        }
        heap.trim();
        heap.reclaim_all();
        assert_eq!(heap.stats().chunks_held, 0);
    }
}
