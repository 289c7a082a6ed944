//! The kernel's physical page-frame allocator, with 2 MiB and 1 GiB huge pages.
//!
//! # What it does
//!
//! [`FrameAllocator`] is a [`BuddyAllocator`] over the kernel's *direct map*: the embedder maps
//! all RAM it hands over at `virtual = physical + phys_offset`, and the allocator takes and
//! returns physical addresses. It keeps its metadata in the RAM it manages (through the direct
//! map), so it needs no heap and can be the first allocator a kernel sets up.
//!
//! # What it relies on
//!
//! - `phys_offset` is a multiple of 1 GiB (checked by [`FrameAllocator::new`]). The buddy
//!   allocator aligns blocks in *virtual* address; with the offset a multiple of the largest
//!   block, a virtual block of order `k` is also physically aligned to `PAGE_SIZE << k`, so a
//!   2 MiB block can be mapped by one 2 MiB page and a 1 GiB block by one 1 GiB page.
//! - The contract of [`FrameAllocator::add_range`]: the range is RAM, mapped writable in the
//!   direct map, and used by nothing else.
//!
//! # What it guarantees
//!
//! Everything [`BuddyAllocator`] guarantees, in physical addresses: frames are naturally
//! aligned, never handed out twice, out of memory and bad frees are errors, never panics.
//! Addresses in errors ([`FrameError::Buddy`]) are physical too.
//!
//! # Huge-page policy
//!
//! [`FrameAllocator::allocate_for_mapping`] picks the page size for a mapping of `len` bytes:
//! a 1 GiB page when `len >= 1 GiB` and a 1 GiB block is free (one TLB entry for a gigabyte);
//! otherwise a 2 MiB page (the mapping's tail, or a large mapping when no 1 GiB block is left,
//! is rounded up to the page, as hugetlbfs does); otherwise [`FrameError::NoHugePage`], so the
//! caller can fall back to 4 KiB frames with [`FrameAllocator::allocate`]`(0)`. A 2 MiB request
//! never splits a 1 GiB block while smaller free blocks exist (the buddy takes the smallest
//! sufficient order), so 1 GiB blocks survive as long as possible.

use core::fmt;
use core::ptr::{self, NonNull};

use crate::buddy::{BuddyAllocator, BuddyError, BuddyStats, MAX_ORDER, PAGE_SIZE};

/// What `phys_offset` must be a multiple of: the largest block (1 GiB), so that virtual and
/// physical alignment agree for every order.
pub const PHYS_OFFSET_ALIGN: usize = PAGE_SIZE << MAX_ORDER;

/// A huge-page size of x86_64 (and of other 4 KiB-granule MMUs: AArch64, RISC-V Sv39/48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HugePageSize {
    /// 2 MiB: buddy order 9.
    Size2MiB,
    /// 1 GiB: buddy order 18 ([`MAX_ORDER`]).
    Size1GiB,
}

impl HugePageSize {
    /// The page size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size2MiB => 2 << 20,
            Self::Size1GiB => 1 << 30,
        }
    }

    /// The buddy order of a block of this size.
    pub const fn order(self) -> usize {
        match self {
            Self::Size2MiB => 9,
            Self::Size1GiB => 18,
        }
    }
}

// The orders above are the ones whose blocks have those sizes.
const _: () = {
    assert!((PAGE_SIZE << HugePageSize::Size2MiB.order()) as u64 == HugePageSize::Size2MiB.bytes());
    assert!((PAGE_SIZE << HugePageSize::Size1GiB.order()) as u64 == HugePageSize::Size1GiB.bytes());
    assert!(HugePageSize::Size1GiB.order() == MAX_ORDER);
};

/// Errors of [`FrameAllocator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// An error of the underlying buddy allocator; its addresses are physical.
    Buddy(BuddyError),
    /// `phys_offset` is not a multiple of [`PHYS_OFFSET_ALIGN`] (1 GiB).
    OffsetMisaligned {
        /// The offset passed.
        offset: usize,
    },
    /// `phys + len`, or its direct-map address, does not fit the address space.
    RangeOverflow {
        /// The physical address passed.
        phys: u64,
        /// The length passed (for a free: the block size).
        len: u64,
    },
    /// Neither a 1 GiB nor a 2 MiB block is free for a mapping.
    NoHugePage {
        /// The mapping length asked for.
        requested: u64,
    },
    /// A mapping of 0 bytes needs no page.
    EmptyMapping,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Buddy(e) => write!(f, "frame allocator: {e}"),
            Self::OffsetMisaligned { offset } => write!(
                f,
                "direct-map offset {offset:#x} is not a multiple of 1 GiB, so physical and virtual \
                 block alignment would disagree"
            ),
            Self::RangeOverflow { phys, len } => write!(
                f,
                "physical range {phys:#x}+{len:#x} does not fit the address space of the direct map"
            ),
            Self::NoHugePage { requested } => write!(
                f,
                "no 1 GiB or 2 MiB frame is free for a mapping of {requested:#x} bytes; use 4 KiB \
                 frames or free memory"
            ),
            Self::EmptyMapping => write!(f, "a mapping of 0 bytes needs no huge page"),
        }
    }
}

impl core::error::Error for FrameError {}

/// The physical page-frame allocator: a [`BuddyAllocator`] over the direct map. See the
/// [module documentation](self).
pub struct FrameAllocator {
    buddy: BuddyAllocator,
    phys_offset: usize,
    /// The direct map's base (address `phys_offset`) with provenance for all of it, when the
    /// embedder gave one ([`FrameAllocator::with_direct_map`]); `None`: pointers into the
    /// direct map take the exposed provenance of their address ([`FrameAllocator::new`]).
    direct_map: Option<*mut u8>,
}

// SAFETY: `direct_map` is only used to derive pointers into the ranges added, which
// `add_range`'s contract makes memory the allocator owns exclusively, from any thread (as for
// the `BuddyAllocator` inside, which is `Send` for the same reason).
unsafe impl Send for FrameAllocator {}

impl fmt::Debug for FrameAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameAllocator")
            .field("phys_offset", &format_args!("{:#x}", self.phys_offset))
            .field("stats", &self.stats())
            .finish()
    }
}

impl FrameAllocator {
    /// An allocator with no RAM yet, for a direct map at `virtual = physical + phys_offset`.
    /// `const`, so a `static` can hold it (unwrap with a `match` in the initialiser, which fails
    /// the build on a bad constant offset). The direct map is known by its address only: its
    /// pointers take exposed provenance (see [`add_range`](Self::add_range)), what a kernel
    /// that maps RAM itself has.
    ///
    /// Errors: [`FrameError::OffsetMisaligned`] unless `phys_offset` is a multiple of 1 GiB.
    pub const fn new(phys_offset: usize) -> Result<Self, FrameError> {
        if !phys_offset.is_multiple_of(PHYS_OFFSET_ALIGN) {
            return Err(FrameError::OffsetMisaligned {
                offset: phys_offset,
            });
        }
        Ok(Self {
            buddy: BuddyAllocator::new(),
            phys_offset,
            direct_map: None,
        })
    }

    /// An allocator with no RAM yet, for a direct map whose base (the address of physical 0,
    /// `phys_offset` = `direct_map.addr()`) is `direct_map`: every pointer the allocator makes
    /// into the RAM added is derived from it, so it must carry provenance for all of that RAM
    /// (its address may lie outside it). For embedders that hold the direct map as a pointer,
    /// such as hosted tests over allocated memory; it is what Miri can check under
    /// `-Zmiri-strict-provenance`.
    ///
    /// Errors: [`FrameError::OffsetMisaligned`] unless the address is a multiple of 1 GiB.
    pub fn with_direct_map(direct_map: *mut u8) -> Result<Self, FrameError> {
        let mut frames = Self::new(direct_map.addr())?;
        frames.direct_map = Some(direct_map);
        Ok(frames)
    }

    /// The direct-map offset.
    pub const fn phys_offset(&self) -> usize {
        self.phys_offset
    }

    /// Adds the RAM `[phys, phys + len)`, trimmed to pages; the bitmaps (about 3 bits per
    /// page) come from its start. Returns the bytes made allocatable.
    ///
    /// Errors: [`FrameError::RangeOverflow`] if the range or its direct-map image does not fit
    /// the address space; the buddy allocator's region errors (`RegionTooSmall`,
    /// `RegionOverlaps`, `TooManyRegions`) in [`FrameError::Buddy`].
    ///
    /// # Safety
    /// `[phys, phys + len)` is RAM, mapped writable at `phys + phys_offset`, unused by anything
    /// else, for the allocator's lifetime (or until [`take_free_range`](Self::take_free_range)
    /// returns it). For an allocator made by [`new`](Self::new), the range's provenance at
    /// `phys + phys_offset` is exposed, or it is memory the Rust abstract machine did not
    /// allocate, as [`BuddyAllocator::add_region_addr`] requires (a kernel's own direct map is
    /// such memory); for one made by [`with_direct_map`](Self::with_direct_map), the direct-map
    /// pointer carries provenance for the range.
    pub unsafe fn add_range(&mut self, phys: u64, len: u64) -> Result<u64, FrameError> {
        let overflow = FrameError::RangeOverflow { phys, len };
        let (Ok(start), Ok(bytes)) = (usize::try_from(phys), usize::try_from(len)) else {
            return Err(overflow);
        };
        let Some(virt) = start.checked_add(self.phys_offset) else {
            return Err(overflow);
        };
        if phys.checked_add(len).is_none() || virt.checked_add(bytes).is_none() {
            return Err(overflow);
        }
        let added = match self.direct_map {
            // SAFETY: the caller guarantees the range is RAM mapped writable at `virt`, ours
            // alone, for the allocator's lifetime, and that `base` carries its provenance:
            // `add_region`'s contract.
            Some(base) => unsafe { self.buddy.add_region(base.with_addr(virt), bytes) },
            // SAFETY: as above, with the range's provenance exposed: `add_region_addr`'s
            // contract.
            None => unsafe { self.buddy.add_region_addr(virt, bytes) },
        };
        added.map(|b| b as u64).map_err(|e| self.physical(e))
    }

    /// A naturally aligned block of `PAGE_SIZE << order` bytes; returns its physical address.
    ///
    /// Errors: [`BuddyError::OrderTooLarge`], [`BuddyError::OutOfMemory`] in
    /// [`FrameError::Buddy`].
    pub fn allocate(&mut self, order: usize) -> Result<u64, FrameError> {
        match self.buddy.allocate(order) {
            Ok(block) => Ok((block.as_ptr().addr() - self.phys_offset) as u64),
            Err(e) => Err(self.physical(e)),
        }
    }

    /// Frees the block of `order` at physical address `phys` (coalescing with free buddies).
    ///
    /// Errors, with nothing changed: those of [`BuddyAllocator::deallocate`] in
    /// [`FrameError::Buddy`] (with physical addresses), [`FrameError::RangeOverflow`] if
    /// `phys` has no direct-map address.
    ///
    /// # Safety
    /// As [`BuddyAllocator::deallocate`]: the block came from `allocate(order)` (or
    /// `allocate_huge` / `allocate_for_mapping` of that order) of this allocator, or is a
    /// naturally aligned block all of whose frames the caller owns; it is not used after.
    pub unsafe fn free(&mut self, phys: u64, order: usize) -> Result<(), FrameError> {
        if order > MAX_ORDER {
            return Err(FrameError::Buddy(BuddyError::OrderTooLarge { order }));
        }
        let len = (PAGE_SIZE << order) as u64;
        let virt = usize::try_from(phys)
            .ok()
            .and_then(|p| p.checked_add(self.phys_offset));
        let Some(virt) = virt else {
            return Err(FrameError::RangeOverflow { phys, len });
        };
        // The buddy allocator only reads the address; its writes go through its own pointers.
        let Some(block) = NonNull::new(ptr::without_provenance_mut::<u8>(virt)) else {
            return Err(self.physical(BuddyError::NotOwned { addr: virt }));
        };
        // SAFETY: forwarded contract (the caller owns the block and no longer uses it).
        let freed = unsafe { self.buddy.deallocate(block, order) };
        freed.map_err(|e| self.physical(e))
    }

    /// A huge page: a block of order 9 (2 MiB) or 18 (1 GiB), physically aligned to its size.
    ///
    /// Errors: [`BuddyError::OutOfMemory`] in [`FrameError::Buddy`] when no block of that size
    /// (or larger, for 2 MiB) is free.
    pub fn allocate_huge(&mut self, size: HugePageSize) -> Result<u64, FrameError> {
        self.allocate(size.order())
    }

    /// One page for a mapping of `len` bytes, by the huge-page policy in the
    /// [module documentation](self): 1 GiB when `len >= 1 GiB` and a 1 GiB block is free, else
    /// 2 MiB. Returns the physical address and size of *one* page; the caller loops over a
    /// multi-page mapping, passing what is left to map.
    ///
    /// Errors: [`FrameError::NoHugePage`] when no 2 MiB or larger block is free,
    /// [`FrameError::EmptyMapping`] for `len == 0`.
    pub fn allocate_for_mapping(&mut self, len: u64) -> Result<(u64, HugePageSize), FrameError> {
        if len == 0 {
            return Err(FrameError::EmptyMapping);
        }
        let giant = HugePageSize::Size1GiB;
        if len >= giant.bytes() && self.buddy.can_allocate(giant.order()) {
            return Ok((self.allocate_huge(giant)?, giant));
        }
        let huge = HugePageSize::Size2MiB;
        if self.buddy.can_allocate(huge.order()) {
            return Ok((self.allocate_huge(huge)?, huge));
        }
        Err(FrameError::NoHugePage { requested: len })
    }

    /// Whether any frame of the block of `order` at `phys` is free (see
    /// [`BuddyAllocator::is_free`]).
    pub fn is_free(&self, phys: u64, order: usize) -> bool {
        let virt = usize::try_from(phys)
            .ok()
            .and_then(|p| p.checked_add(self.phys_offset));
        virt.is_some_and(|v| self.buddy.is_free(ptr::without_provenance(v), order))
    }

    /// Whether the frame at `phys` lies in the allocatable part of a range added.
    pub fn owns(&self, phys: u64) -> bool {
        let virt = usize::try_from(phys)
            .ok()
            .and_then(|p| p.checked_add(self.phys_offset));
        virt.is_some_and(|v| self.buddy.owns(ptr::without_provenance(v)))
    }

    /// Bytes in free frames.
    pub fn free_bytes(&self) -> usize {
        self.buddy.free_bytes()
    }

    /// Removes a range that is entirely free again and returns it, in physical addresses, as
    /// originally passed to [`add_range`](Self::add_range) (for hot-unplug or handing RAM back
    /// to a hypervisor). `None` if no range is entirely free.
    pub fn take_free_range(&mut self) -> Option<(u64, u64)> {
        let (start, len) = self.buddy.take_free_region()?;
        Some(((start.addr() - self.phys_offset) as u64, len as u64))
    }

    /// A snapshot of the buddy allocator's state and counters.
    pub fn stats(&self) -> BuddyStats {
        self.buddy.stats()
    }

    /// `e` with its addresses turned from direct-map to physical ones.
    fn physical(&self, e: BuddyError) -> FrameError {
        let phys = |virt: usize| virt.wrapping_sub(self.phys_offset);
        FrameError::Buddy(match e {
            BuddyError::RegionTooSmall { start, len } => BuddyError::RegionTooSmall {
                start: phys(start),
                len,
            },
            BuddyError::RegionOverlaps { start, len } => BuddyError::RegionOverlaps {
                start: phys(start),
                len,
            },
            BuddyError::RegionWraps { start, len } => BuddyError::RegionWraps {
                start: phys(start),
                len,
            },
            BuddyError::NotOwned { addr } => BuddyError::NotOwned { addr: phys(addr) },
            BuddyError::Misaligned { addr, order } => BuddyError::Misaligned {
                addr: phys(addr),
                order,
            },
            BuddyError::DoubleFree { addr, order } => BuddyError::DoubleFree {
                addr: phys(addr),
                order,
            },
            other @ (BuddyError::OutOfMemory { .. }
            | BuddyError::OrderTooLarge { .. }
            | BuddyError::TooManyRegions) => other,
        })
    }
}
