//! A binary buddy allocator over memory regions the allocator can read and write.
//!
//! # What it does
//!
//! [`BuddyAllocator`] hands out blocks of `PAGE_SIZE << order` bytes (4 KiB to 1 GiB), each
//! aligned to its own size in *absolute* address, from up to [`MAX_REGIONS`] regions that the
//! embedder adds. The heap uses it for slabs and large blocks; [`crate::frame::FrameAllocator`]
//! wraps it as the kernel's physical page-frame allocator.
//!
//! # What it relies on
//!
//! - The contract of [`BuddyAllocator::add_region`]: each region is memory the allocator may read
//!   and write, that nothing else uses, for as long as the allocator manages it. The allocator
//!   writes to that memory in two places only: the metadata it carves from the region's start,
//!   and the first 16 bytes of each *free* block (the free-list links).
//! - Provenance: every pointer the allocator writes through or hands out is derived from the
//!   region's start pointer given to [`BuddyAllocator::add_region`] (no integer-to-pointer
//!   cast). [`BuddyAllocator::add_region_addr`] takes an integer address instead, for kernels whose
//!   memory map gives them integers; it uses the exposed provenance of that address.
//! - The contract of [`BuddyAllocator::deallocate`]: the caller frees only blocks it owns. What
//!   can be detected without trusting allocated memory is detected (see below); what cannot is
//!   a free of a block that is allocated but belongs to someone else (e.g. the wrong order for
//!   a block whose neighbour is allocated too), and writes to a block after it was freed (they
//!   can corrupt its free-list links).
//!
//! # What it guarantees
//!
//! - A block returned by [`BuddyAllocator::allocate`]`(order)` is `PAGE_SIZE << order` bytes,
//!   aligned to that size, inside the allocatable part of one region, and overlaps no other
//!   block that is allocated or free.
//! - Out of memory is [`BuddyError::OutOfMemory`], never a panic. No operation panics on any
//!   input.
//! - `deallocate` rejects, with a specific error and without changing any state, orders above
//!   [`MAX_ORDER`], addresses outside every region, addresses misaligned for the order, and
//!   double frees: frees of a block of which any part is already free.
//! - Freed blocks coalesce with free buddies up to [`MAX_ORDER`]; once everything is free again,
//!   each region is back to exactly the blocks it had when it was added.
//! - `allocate` and `deallocate` cost O([`MAX_ORDER`]) bitmap operations plus a binary search
//!   over the regions (O(log [`MAX_REGIONS`])).
//!
//! # Design
//!
//! - **Absolute alignment.** A block of order `k` starts at a multiple of `PAGE_SIZE << k`, and
//!   its buddy is at `addr ^ (PAGE_SIZE << k)`. So a 2 MiB block is 2 MiB-aligned (a huge page
//!   can map it), and a caller finds the start of the block that holds an address by masking.
//!   Regions need only be page-aligned (they are trimmed to pages): when a region is added, its
//!   allocatable part is split into maximal naturally aligned blocks (at most two per order), so
//!   no byte of it is lost to alignment.
//! - **Free lists.** One intrusive doubly-linked list per order; the links live in the first
//!   16 bytes of the free block. Doubly linked so that coalescing removes a free buddy from the
//!   middle of its list in O(1).
//! - **Bitmaps, not block contents, say what is free.** Each region keeps, for every order `k`,
//!   two bitmaps with one bit per `k`-aligned slot that meets the region:
//!   - *free*: "a free block of order `k` starts here" — the test for a free buddy;
//!   - *free inside* (orders >= 1): "some free block of a smaller order lies strictly inside
//!     this slot" — kept up to date along the path to the root on every change (with an early
//!     stop once a bit does not change), so that a double free of a block that is only
//!     *partly* free is found in O(`MAX_ORDER`) instead of scanning its pages.
//!
//!   The bitmaps are carved from the start of the region itself (no allocation, no outside
//!   storage), and nothing the allocator decides depends on the contents of allocated memory:
//!   user data can never be mistaken for a free-list node.
//! - **Metadata overhead.** The *free* bitmaps take `1 + 1/2 + 1/4 + ...` ≈ 2 bits per page and
//!   the *free inside* bitmaps ≈ 1 bit per page: about **3 bits per 4 KiB page** (0.0092 % of the
//!   region), plus at most one 64-bit word of rounding per bitmap, the total rounded up to whole
//!   pages (the allocatable part must stay page-aligned). Measured in `tests/buddy.rs`: a 64 MiB
//!   region spends 2 pages (8 KiB, 0.012 %), a 1 GiB region 25 pages (100 KiB, 3.1 bits per
//!   page, 0.0095 %).

use core::fmt;
use core::ptr::{self, NonNull};

/// The smallest block: one 4 KiB page, the base page size of x86_64 (and of most other MMUs).
pub const PAGE_SIZE: usize = 4096;

/// log2 of [`PAGE_SIZE`].
const PAGE_SHIFT: usize = PAGE_SIZE.trailing_zeros() as usize;

/// The largest order: blocks of `PAGE_SIZE << 18` = 1 GiB, the largest page an x86_64 page table
/// can map. Larger blocks could not back a single mapping and would only make every operation
/// walk more orders.
pub const MAX_ORDER: usize = 18;

/// The number of orders, 0 ..= [`MAX_ORDER`].
const ORDERS: usize = MAX_ORDER + 1;

/// How many regions one allocator manages. A fixed array keeps [`BuddyAllocator::new`] `const`
/// (usable in a `static`) and the allocator free of any allocation of its own; firmware memory
/// maps have a few dozen usable ranges at most, and the heap adds large chunks, so 64 suffices.
/// Each region descriptor costs about 200 bytes inside the allocator.
pub const MAX_REGIONS: usize = 64;

/// Bits in one bitmap word.
const WORD_BITS: usize = u64::BITS as usize;

/// Size of a block of `order` (which must be at most [`MAX_ORDER`]).
const fn block_size(order: usize) -> usize {
    PAGE_SIZE << order
}

// `PAGE_SIZE << MAX_ORDER` must fit a `usize` on every target the crate builds for.
const _: () = assert!(block_size(MAX_ORDER) == 1 << 30);

/// Errors of [`BuddyAllocator`]. Addresses are the ones the caller passed (or, for
/// `OutOfMemory`, the order it asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuddyError {
    /// No free block of the order or larger.
    OutOfMemory {
        /// The order asked for.
        order: usize,
    },
    /// The order is above [`MAX_ORDER`].
    OrderTooLarge {
        /// The order asked for.
        order: usize,
    },
    /// After trimming to pages and carving the metadata, no page of the region is left.
    RegionTooSmall {
        /// Start of the range as passed.
        start: usize,
        /// Length of the range as passed.
        len: usize,
    },
    /// The range overlaps a region already added.
    RegionOverlaps {
        /// Start of the range as passed.
        start: usize,
        /// Length of the range as passed.
        len: usize,
    },
    /// The range runs past the end of the address space (`start + len` overflows).
    RegionWraps {
        /// Start of the range as passed.
        start: usize,
        /// Length of the range as passed.
        len: usize,
    },
    /// [`MAX_REGIONS`] regions are already added.
    TooManyRegions,
    /// The block is not (entirely) inside the allocatable part of a region.
    NotOwned {
        /// The address passed.
        addr: usize,
    },
    /// The address is not a multiple of the block size of the order.
    Misaligned {
        /// The address passed.
        addr: usize,
        /// The order passed.
        order: usize,
    },
    /// The block, or some part of it, is already free.
    DoubleFree {
        /// The address passed.
        addr: usize,
        /// The order passed.
        order: usize,
    },
}

impl fmt::Display for BuddyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfMemory { order } => write!(
                f,
                "out of memory: no free block of order {order} ({} KiB) or larger",
                block_size(order.min(MAX_ORDER)) / 1024
            ),
            Self::OrderTooLarge { order } => {
                write!(
                    f,
                    "order {order} is above the maximum order {MAX_ORDER} (1 GiB blocks)"
                )
            }
            Self::RegionTooSmall { start, len } => write!(
                f,
                "region {start:#x}+{len:#x} is too small: no page is left after page alignment and \
                 the allocator's metadata"
            ),
            Self::RegionOverlaps { start, len } => {
                write!(
                    f,
                    "region {start:#x}+{len:#x} overlaps a region already added"
                )
            }
            Self::RegionWraps { start, len } => {
                write!(
                    f,
                    "region {start:#x}+{len:#x} runs past the end of the address space"
                )
            }
            Self::TooManyRegions => {
                write!(f, "too many regions: at most {MAX_REGIONS} can be added")
            }
            Self::NotOwned { addr } => {
                write!(
                    f,
                    "block at {addr:#x} is not inside the allocatable part of any region"
                )
            }
            Self::Misaligned { addr, order } => write!(
                f,
                "address {addr:#x} is not aligned to the {} KiB block size of order {order}",
                block_size(order.min(MAX_ORDER)) / 1024
            ),
            Self::DoubleFree { addr, order } => {
                write!(
                    f,
                    "double free: the order-{order} block at {addr:#x} is already (partly) free"
                )
            }
        }
    }
}

impl core::error::Error for BuddyError {}

/// A snapshot of a [`BuddyAllocator`]'s state and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuddyStats {
    /// Regions managed.
    pub regions: usize,
    /// Allocatable bytes in all regions (excluding trimmed edges and metadata).
    pub total_bytes: usize,
    /// Bytes in free blocks.
    pub free_bytes: usize,
    /// Free blocks per order.
    pub free_blocks: [usize; MAX_ORDER + 1],
    /// Successful calls of [`BuddyAllocator::allocate`].
    pub allocations: u64,
    /// Calls of [`BuddyAllocator::allocate`] that found no free block (`OutOfMemory`).
    pub failed_allocations: u64,
    /// Bytes taken from the regions for the bitmaps (whole pages).
    pub metadata_bytes: usize,
}

/// The links stored in the first bytes of every free block.
#[repr(C)]
struct FreeNode {
    next: *mut FreeNode,
    prev: *mut FreeNode,
}

/// One intrusive doubly-linked list of free blocks per order.
///
/// Invariant: every node on list `k` is the start of a free block of order `k` inside a region,
/// a block the allocator owns and nothing else touches; its first bytes hold a valid
/// [`FreeNode`]; every pointer carries the provenance of its region.
struct FreeLists {
    heads: [*mut FreeNode; ORDERS],
    counts: [usize; ORDERS],
}

impl FreeLists {
    const fn new() -> Self {
        Self {
            heads: [ptr::null_mut(); ORDERS],
            counts: [0; ORDERS],
        }
    }

    /// Puts `node` at the head of list `order`.
    ///
    /// # Safety
    /// `node` is the start of a free block of `order` inside a region, owned by the allocator,
    /// valid for writes of a `FreeNode`, and on no list.
    unsafe fn push(&mut self, order: usize, node: *mut FreeNode) {
        let head = self.heads[order];
        // SAFETY: the caller guarantees `node` is writable, aligned (blocks are page-aligned) and
        // ours.
        unsafe {
            node.write(FreeNode {
                next: head,
                prev: ptr::null_mut(),
            })
        };
        if !head.is_null() {
            // SAFETY: list invariant: `head` is a valid free-block node.
            unsafe { (*head).prev = node };
        }
        self.heads[order] = node;
        self.counts[order] += 1;
    }

    /// Unlinks `node` from list `order`.
    ///
    /// # Safety
    /// `node` is on list `order`.
    unsafe fn remove(&mut self, order: usize, node: *mut FreeNode) {
        // SAFETY: list invariant: `node` (on the list, by the caller) is a valid free-block node.
        let FreeNode { next, prev } = unsafe { node.read() };
        if prev.is_null() {
            self.heads[order] = next;
        } else {
            // SAFETY: list invariant: `prev` is a valid node of the same list.
            unsafe { (*prev).next = next };
        }
        if !next.is_null() {
            // SAFETY: list invariant: `next` is a valid node of the same list.
            unsafe { (*next).prev = prev };
        }
        self.counts[order] -= 1;
    }
}

/// Which of a region's two bitmaps per order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Map {
    /// "A free block of this order starts here."
    Free,
    /// "Some free block of a smaller order lies strictly inside this slot" (orders >= 1).
    FreeInside,
}

/// The first and last index (`addr >> (PAGE_SHIFT + order)`) of the `order`-aligned slots that
/// meet `[base, end)`; `base < end`.
const fn slot_range(base: usize, end: usize, order: usize) -> (usize, usize) {
    let shift = PAGE_SHIFT + order;
    (base >> shift, (end - 1) >> shift)
}

/// Words of one bitmap of `order` for `[base, end)`.
const fn map_words(base: usize, end: usize, order: usize) -> usize {
    let (first, last) = slot_range(base, end, order);
    (last - first + 1).div_ceil(WORD_BITS)
}

/// Words of all bitmaps for `[base, end)`: a *free* map per order, a *free inside* map per
/// order from 1 on. Also fills `offsets` with where each order's maps start (the *free inside*
/// map follows the *free* map).
fn layout_maps(base: usize, end: usize, offsets: &mut [usize; ORDERS]) -> usize {
    let mut words = 0;
    for (order, offset) in offsets.iter_mut().enumerate() {
        *offset = words;
        let maps = if order == 0 { 1 } else { 2 };
        words += maps * map_words(base, end, order);
    }
    words
}

/// One region: its bitmaps and its geometry.
///
/// Invariants (set up by `add_region`):
/// - `start` is the pointer passed to `add_region`, with provenance for the whole range;
/// - `meta` points at the first whole page of the region (derived from `start`), and
///   `meta[0 .. layout_maps(base, end)]` are the bitmaps, owned by the allocator;
/// - `[base, end)` is the allocatable part: page-aligned, non-empty, after the bitmaps;
/// - a *free* bit is set exactly for the blocks on the free lists that belong to this region;
///   a *free inside* bit is set exactly for the slots that strictly contain such a block.
#[derive(Clone, Copy)]
struct Region {
    /// The range as added, returned by `take_free_region`.
    start: *mut u8,
    len: usize,
    meta: *mut u64,
    base: usize,
    end: usize,
    /// Word offset of each order's bitmaps from `meta`.
    map_offset: [usize; ORDERS],
    free_bytes: usize,
}

impl Region {
    const EMPTY: Self = Self {
        start: ptr::null_mut(),
        len: 0,
        meta: ptr::null_mut(),
        base: 0,
        end: 0,
        map_offset: [0; ORDERS],
        free_bytes: 0,
    };

    /// Word and bit of `addr`'s slot in a map of `order`, or `None` if the slot does not meet
    /// the region (or the map does not exist for order 0).
    fn bit_position(&self, map: Map, order: usize, addr: usize) -> Option<(usize, u32)> {
        if map == Map::FreeInside && order == 0 {
            return None;
        }
        let (first, last) = slot_range(self.base, self.end, order);
        let slot = addr >> (PAGE_SHIFT + order);
        if slot < first || slot > last {
            return None;
        }
        let index = slot - first;
        let mut word = self.map_offset[order] + index / WORD_BITS;
        if map == Map::FreeInside {
            word += map_words(self.base, self.end, order);
        }
        Some((word, (index % WORD_BITS) as u32))
    }

    /// Whether any part of the block of `order` at `addr` (aligned, inside the region) is
    /// free: the block itself or a free block containing it, or a free block inside it.
    fn any_free(&self, order: usize, addr: usize) -> bool {
        // A free block lies inside the region, so none is larger than the region: the orders
        // above the largest that fits need no test (a 4 MiB region: 10 of 19). The region
        // holds the block at `addr`, so `pages >= 1`.
        let pages = (self.end - self.base) / PAGE_SIZE;
        let top = ((usize::BITS - 1 - pages.leading_zeros()) as usize).min(MAX_ORDER);
        (order..=top).any(|k| self.test(Map::Free, k, addr & !(block_size(k) - 1)))
            || self.test(Map::FreeInside, order, addr)
    }

    /// Reads a bit; slots outside the region read as clear.
    fn test(&self, map: Map, order: usize, addr: usize) -> bool {
        let Some((word, bit)) = self.bit_position(map, order, addr) else {
            return false;
        };
        // SAFETY: `bit_position` yields word indices below `layout_maps(base, end)`, and the
        // region invariant makes those words the region's bitmaps, readable and ours.
        let value = unsafe { self.meta.add(word).read() };
        value >> bit & 1 != 0
    }

    /// Writes a bit; slots outside the region are ignored (they are never set).
    fn assign(&mut self, map: Map, order: usize, addr: usize, value: bool) {
        let Some((word, bit)) = self.bit_position(map, order, addr) else {
            return;
        };
        // SAFETY: as in `test`: an in-bounds word of the region's bitmaps, writable and ours.
        unsafe {
            let p = self.meta.add(word);
            let old = p.read();
            p.write(if value {
                old | 1 << bit
            } else {
                old & !(1 << bit)
            });
        }
    }

    /// Recomputes the *free inside* bits of the slots containing `addr`, from `from_order` up,
    /// stopping at the first bit that does not change (the ones above depend only on it).
    fn update_free_inside(&mut self, from_order: usize, addr: usize) {
        for order in from_order.max(1)..=MAX_ORDER {
            let slot = addr & !(block_size(order) - 1);
            let children = [Some(slot), slot.checked_add(block_size(order - 1))];
            let inside = children.into_iter().flatten().any(|child| {
                self.test(Map::Free, order - 1, child)
                    || self.test(Map::FreeInside, order - 1, child)
            });
            if self.test(Map::FreeInside, order, slot) == inside {
                break;
            }
            self.assign(Map::FreeInside, order, slot, inside);
        }
    }

    /// Sets or clears the *free* bit of a block and updates the *free inside* bits above it.
    fn mark_free(&mut self, order: usize, addr: usize, free: bool) {
        self.assign(Map::Free, order, addr, free);
        self.update_free_inside(order + 1, addr);
    }

    /// The free-list node of the block at `addr`, with the region's provenance.
    fn node(&self, addr: usize) -> *mut FreeNode {
        self.meta.with_addr(addr).cast()
    }

    /// The free blocks of the region in address order as `(addr, order)`, if every page is in
    /// one (the region is entirely free); `None` otherwise.
    fn for_each_free_block(&self, mut visit: impl FnMut(usize, usize)) -> bool {
        let mut addr = self.base;
        while addr < self.end {
            let Some(order) = (0..=MAX_ORDER)
                .rev()
                .find(|&k| self.test(Map::Free, k, addr))
            else {
                return false;
            };
            visit(addr, order);
            addr += block_size(order);
        }
        true
    }
}

/// A binary buddy allocator over up to [`MAX_REGIONS`] memory regions. See the
/// [module documentation](self) for the design and its guarantees.
pub struct BuddyAllocator {
    /// `regions[..region_count]`, sorted by address (their allocatable parts are disjoint).
    regions: [Region; MAX_REGIONS],
    region_count: usize,
    lists: FreeLists,
    total_bytes: usize,
    free_bytes: usize,
    metadata_bytes: usize,
    allocations: u64,
    failed_allocations: u64,
}

// SAFETY: the raw pointers in the allocator point into its regions, which `add_region`'s
// contract makes memory the allocator owns exclusively (nothing else uses it, from any thread);
// no pointer refers to thread-local state. Moving the allocator to another thread moves that
// ownership with it.
unsafe impl Send for BuddyAllocator {}

impl Default for BuddyAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for BuddyAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuddyAllocator")
            .field("stats", &self.stats())
            .finish()
    }
}

impl BuddyAllocator {
    /// An allocator with no regions (every allocation fails until one is added). `const`, so it
    /// can initialise a `static`.
    pub const fn new() -> Self {
        Self {
            regions: [Region::EMPTY; MAX_REGIONS],
            region_count: 0,
            lists: FreeLists::new(),
            total_bytes: 0,
            free_bytes: 0,
            metadata_bytes: 0,
            allocations: 0,
            failed_allocations: 0,
        }
    }

    /// Adds the `len` bytes at `start`. The range is trimmed to [`PAGE_SIZE`] alignment (and
    /// page 0, the null page, is left out); the allocator carves its metadata (per-order
    /// bitmaps, about 3 bits per page, rounded up to whole pages) from the start of the range
    /// and splits the rest into maximal naturally aligned free blocks. Returns the bytes made
    /// allocatable.
    ///
    /// Every pointer the allocator makes into the range (its bitmaps, the free-list links, the
    /// blocks it returns, the start [`take_free_region`](Self::take_free_region) gives back) is
    /// derived from `start`, so `start` must carry provenance for the whole range.
    ///
    /// Errors, with nothing changed: [`BuddyError::RegionWraps`] if the range runs past the
    /// end of the address space, [`BuddyError::RegionOverlaps`] if it overlaps a region already
    /// added, [`BuddyError::TooManyRegions`], [`BuddyError::RegionTooSmall`] if no page is left
    /// for blocks. The memory is not touched when an error is returned. Addresses in errors are
    /// `start`'s address.
    ///
    /// # Safety
    /// The range is valid for reads and writes through `start` (and pointers derived from it),
    /// not used by anything else, and stays so for the allocator's lifetime (or until
    /// [`take_free_region`](Self::take_free_region) returns it).
    pub unsafe fn add_region(&mut self, start: *mut u8, len: usize) -> Result<usize, BuddyError> {
        let (start_ptr, start) = (start, start.addr());
        let Some(limit) = start.checked_add(len) else {
            return Err(BuddyError::RegionWraps { start, len });
        };
        let regions = &self.regions[..self.region_count];
        if len > 0
            && regions
                .iter()
                .any(|r| start < r.start.addr() + r.len && r.start.addr() < limit)
        {
            return Err(BuddyError::RegionOverlaps { start, len });
        }
        if self.region_count == MAX_REGIONS {
            return Err(BuddyError::TooManyRegions);
        }
        let too_small = BuddyError::RegionTooSmall { start, len };
        // Page 0 is never used: its address is the null pointer, which can be neither written
        // through nor returned (it matters for identity-mapped physical RAM from address 0).
        let first_page = start
            .checked_next_multiple_of(PAGE_SIZE)
            .ok_or(too_small)?
            .max(PAGE_SIZE);
        let end = limit & !(PAGE_SIZE - 1);
        if first_page >= end {
            return Err(too_small);
        }
        // Size the bitmaps for the whole trimmed range (an upper bound for the part that is
        // left after them), in whole pages so that the allocatable part stays page-aligned.
        let mut offsets = [0; ORDERS];
        let reserved_words = layout_maps(first_page, end, &mut offsets);
        let metadata_bytes = (reserved_words * size_of::<u64>()).next_multiple_of(PAGE_SIZE);
        let base = first_page + metadata_bytes;
        if base >= end {
            return Err(too_small);
        }
        let words = layout_maps(base, end, &mut offsets);
        let meta = start_ptr.with_addr(first_page).cast::<u64>();
        // SAFETY: by the caller's contract `[start, start + len)` is ours to write, and
        // `[first_page, first_page + words * 8)` lies inside it (`words <= reserved_words`, whose
        // bytes fit before `base < end <= start + len`); `first_page` is page-aligned, so
        // aligned for `u64`.
        unsafe { ptr::write_bytes(meta, 0, words) };

        let mut region = Region {
            start: start_ptr,
            len,
            meta,
            base,
            end,
            map_offset: offsets,
            free_bytes: 0,
        };
        let mut addr = base;
        while addr < end {
            // The largest block that is aligned at `addr` and fits before `end`; order 0 always
            // fits since both are page-aligned.
            let mut order = MAX_ORDER.min(addr.trailing_zeros() as usize - PAGE_SHIFT);
            while addr.checked_add(block_size(order)).is_none_or(|e| e > end) {
                order -= 1;
            }
            // SAFETY: `[addr, addr + block_size(order))` lies in the allocatable part of the new
            // region, which is ours, and is on no list yet.
            unsafe { self.lists.push(order, region.node(addr)) };
            region.mark_free(order, addr, true);
            addr += block_size(order);
        }
        let bytes = end - base;
        region.free_bytes = bytes;

        let index = self.regions[..self.region_count].partition_point(|r| r.base < base);
        self.regions
            .copy_within(index..self.region_count, index + 1);
        self.regions[index] = region;
        self.region_count += 1;
        self.total_bytes += bytes;
        self.free_bytes += bytes;
        self.metadata_bytes += metadata_bytes;
        Ok(bytes)
    }

    /// [`add_region`](Self::add_region) for a range known by its address only, such as RAM
    /// from a firmware memory map seen through a kernel's direct map: the allocator's pointers
    /// into it are made with [`ptr::with_exposed_provenance_mut`], so they carry the
    /// provenance that was exposed for those addresses. Code that holds a pointer to the memory
    /// should call [`add_region`](Self::add_region) instead: it keeps that pointer's provenance,
    /// which is what Miri checks under `-Zmiri-strict-provenance` (where this function's
    /// pointers cannot be used).
    ///
    /// # Safety
    /// As for [`add_region`](Self::add_region); in addition, the range's provenance has been
    /// exposed (e.g. by `expose_provenance` or a `ptr as usize` cast), or the range is memory
    /// that the Rust abstract machine did not allocate (such as RAM that a kernel maps itself).
    pub unsafe fn add_region_addr(
        &mut self,
        start: usize,
        len: usize,
    ) -> Result<usize, BuddyError> {
        // SAFETY: forwarded contract; the pointer has the exposed provenance of the range.
        unsafe { self.add_region(ptr::with_exposed_provenance_mut(start), len) }
    }

    /// A block of `PAGE_SIZE << order` bytes, aligned to its size: taken from the smallest
    /// non-empty order `>= order`, split down as needed (the upper halves stay free).
    ///
    /// Errors: [`BuddyError::OrderTooLarge`] above [`MAX_ORDER`], [`BuddyError::OutOfMemory`]
    /// when no block of that order or larger is free.
    pub fn allocate(&mut self, order: usize) -> Result<NonNull<u8>, BuddyError> {
        if order > MAX_ORDER {
            return Err(BuddyError::OrderTooLarge { order });
        }
        let found = (order..=MAX_ORDER).find(|&k| !self.lists.heads[k].is_null());
        let Some(mut from) = found else {
            self.failed_allocations += 1;
            return Err(BuddyError::OutOfMemory { order });
        };
        let node = self.lists.heads[from];
        let addr = node.addr();
        let Some(r) = self.region_index(addr) else {
            // Unreachable while the free-list invariant holds (every listed block lies in a
            // region); reported as out of memory rather than by a panic.
            self.failed_allocations += 1;
            return Err(BuddyError::OutOfMemory { order });
        };
        let region = &mut self.regions[r];
        // SAFETY: `node` is the head of list `from`.
        unsafe { self.lists.remove(from, node) };
        region.mark_free(from, addr, false);
        while from > order {
            from -= 1;
            let upper = addr + block_size(from);
            // SAFETY: the upper half of the block just taken off a list: inside the region,
            // ours, on no list.
            unsafe { self.lists.push(from, region.node(upper)) };
            region.mark_free(from, upper, true);
        }
        let size = block_size(order);
        region.free_bytes -= size;
        self.free_bytes -= size;
        self.allocations += 1;
        // SAFETY: `node` is the non-null head checked by the search above.
        Ok(unsafe { NonNull::new_unchecked(node.cast::<u8>()) })
    }

    /// Frees the block of `order` at `ptr` and coalesces it with free buddies up to
    /// [`MAX_ORDER`].
    ///
    /// Errors, with nothing changed: [`BuddyError::OrderTooLarge`], [`BuddyError::NotOwned`]
    /// (the block is not entirely inside a region's allocatable part),
    /// [`BuddyError::Misaligned`], [`BuddyError::DoubleFree`] (the block or any part of it is
    /// already free).
    ///
    /// Only `ptr`'s address is used: the allocator writes through pointers derived from the
    /// region's, so `ptr` need not carry provenance (a frame allocator may pass an address).
    ///
    /// # Safety
    /// `ptr` was returned by `allocate(order)` of this allocator, or is a naturally aligned
    /// block of `order` inside one of its regions all of whose pages the caller owns (e.g. part
    /// of a larger block it allocated, or several smaller allocated blocks that together form
    /// it); and the block is not used after this call.
    pub unsafe fn deallocate(&mut self, ptr: NonNull<u8>, order: usize) -> Result<(), BuddyError> {
        if order > MAX_ORDER {
            return Err(BuddyError::OrderTooLarge { order });
        }
        let addr = ptr.as_ptr().addr();
        let Some(r) = self.region_index(addr) else {
            return Err(BuddyError::NotOwned { addr });
        };
        let size = block_size(order);
        if addr & (size - 1) != 0 {
            return Err(BuddyError::Misaligned { addr, order });
        }
        let region = &mut self.regions[r];
        if addr.checked_add(size).is_none_or(|e| e > region.end) {
            return Err(BuddyError::NotOwned { addr });
        }
        if region.any_free(order, addr) {
            return Err(BuddyError::DoubleFree { addr, order });
        }

        // Coalesce. Each merged slot loses its "free inside" bit (the merged block is free as a
        // whole, nothing is free strictly inside it); the slots above are updated at the end.
        let mut addr = addr;
        let mut order = order;
        while order < MAX_ORDER {
            let buddy = addr ^ block_size(order);
            if !region.test(Map::Free, order, buddy) {
                break;
            }
            // SAFETY: the bitmap says a free block of `order` starts at `buddy` in this region,
            // so (region invariant) it is on list `order`.
            unsafe { self.lists.remove(order, region.node(buddy)) };
            region.assign(Map::Free, order, buddy, false);
            addr &= !block_size(order);
            order += 1;
            region.assign(Map::FreeInside, order, addr, false);
        }
        // SAFETY: `[addr, addr + block_size(order))` is the freed block merged with free buddies
        // just taken off their lists: inside the region, ours, on no list.
        unsafe { self.lists.push(order, region.node(addr)) };
        region.mark_free(order, addr, true);
        region.free_bytes += size;
        self.free_bytes += size;
        Ok(())
    }

    /// The smallest order whose block holds `size` bytes aligned to `align` (blocks are aligned
    /// to their size). `size` 0 gives order 0, `align` 0 counts as 1. `None` if the block would
    /// be larger than 1 GiB or `align` is not a power of two.
    pub fn order_for(size: usize, align: usize) -> Option<usize> {
        if align != 0 && !align.is_power_of_two() {
            return None;
        }
        let bytes = size.max(align);
        if bytes > block_size(MAX_ORDER) {
            return None;
        }
        let pages = bytes.div_ceil(PAGE_SIZE).max(1);
        Some(pages.next_power_of_two().trailing_zeros() as usize)
    }

    /// Whether `allocate(order)` would succeed now.
    pub fn can_allocate(&self, order: usize) -> bool {
        order <= MAX_ORDER && self.lists.heads[order..].iter().any(|h| !h.is_null())
    }

    /// A snapshot of the allocator's state and counters.
    pub fn stats(&self) -> BuddyStats {
        BuddyStats {
            regions: self.region_count,
            total_bytes: self.total_bytes,
            free_bytes: self.free_bytes,
            free_blocks: self.lists.counts,
            allocations: self.allocations,
            failed_allocations: self.failed_allocations,
            metadata_bytes: self.metadata_bytes,
        }
    }

    /// Whether any part of the naturally aligned block of `order` at `ptr` is free (the block
    /// itself, a free block containing it, or a free block inside it): what
    /// [`deallocate`](Self::deallocate) refuses as a double free. False for a block outside the
    /// allocator's regions, misaligned, or of an order above the maximum. For callers that keep
    /// allocated blocks in caches of their own and must still refuse a double free.
    pub fn is_free(&self, ptr: *const u8, order: usize) -> bool {
        if order > MAX_ORDER {
            return false;
        }
        let addr = ptr.addr();
        let size = block_size(order);
        let Some(r) = self.region_index(addr) else {
            return false;
        };
        let region = &self.regions[r];
        if addr & (size - 1) != 0 || addr.checked_add(size).is_none_or(|e| e > region.end) {
            return false;
        }
        region.any_free(order, addr)
    }

    /// Whether `ptr` lies in the allocatable part of a region (not its metadata or trimmed
    /// edges).
    pub fn owns(&self, ptr: *const u8) -> bool {
        self.region_index(ptr.addr()).is_some()
    }

    /// Bytes in free blocks.
    pub fn free_bytes(&self) -> usize {
        self.free_bytes
    }

    /// Removes a region that is entirely free again and returns the range originally passed to
    /// [`add_region`](Self::add_region): its start pointer (the one passed, with its
    /// provenance) and length, for page sources that can unmap it. `None` if no region is
    /// entirely free.
    pub fn take_free_region(&mut self) -> Option<(*mut u8, usize)> {
        for index in 0..self.region_count {
            let region = self.regions[index];
            let bytes = region.end - region.base;
            // Check before changing anything that every page is in a free block.
            if region.free_bytes != bytes || !region.for_each_free_block(|_, _| ()) {
                continue;
            }
            let lists = &mut self.lists;
            region.for_each_free_block(|addr, order| {
                // SAFETY: the region's bitmap says a free block of `order` starts at `addr`, so
                // it is on list `order`.
                unsafe { lists.remove(order, region.node(addr)) };
            });
            self.regions
                .copy_within(index + 1..self.region_count, index);
            self.region_count -= 1;
            self.total_bytes -= bytes;
            self.free_bytes -= bytes;
            self.metadata_bytes -= region.base - region.meta.addr();
            return Some((region.start, region.len));
        }
        None
    }

    /// The region whose allocatable part holds `addr`.
    fn region_index(&self, addr: usize) -> Option<usize> {
        let regions = &self.regions[..self.region_count];
        let index = regions.partition_point(|r| r.end <= addr);
        (index < regions.len() && regions[index].base <= addr).then_some(index)
    }
}
