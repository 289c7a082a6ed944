//! User address spaces: one PML4 per process sharing the kernel's upper half, a region map on
//! veridian-simd's `CacheBTree`, and demand paging.
//!
//! What it does:
//! - [`AddressSpace::new`] allocates a PML4 and copies the kernel's upper-half entries (256..512)
//!   into it; the kernel half is never changed through a process's table (new kernel mappings go
//!   into lower-level tables the entries already point at: `paging::init` creates every upper
//!   PML4 entry the kernel uses before the first process).
//! - Every user mapping belongs to a [`Region`] (program segment, stack, `mmap`), kept in a
//!   `CacheBTree` keyed by the region's end. Program segments are loaded eagerly (copied from
//!   the embedded image); stacks and `mmap` regions are backed on first touch
//!   ([`AddressSpace::handle_fault`]) by a zeroed frame from the faulting CPU's NUMA node.
//! - [`AddressSpace::munmap`] unmaps a whole `mmap` region and frees its frames; dropping the
//!   space frees every frame it holds (data and page tables) and reports the count.
//!
//! Concurrency: all state is behind one `IrqLock` (the page-fault handler takes it with
//! interrupts off). TLB: each space has a PCID where the CPU has them, and its tables stay
//! loaded lazily on a CPU its thread left (`arch::x86_64::tlb`). Every unmap (munmap, huge-page
//! promotion) goes through `TlbState::invalidate` before the frames are freed: this CPU
//! invalidates the pages, CPUs that cached them earlier flush when they load the space again,
//! and CPUs that have it loaded now get a shootdown IPI (only those). Teardown retires the
//! space (every CPU that still has it loaded switches to the kernel's tables) before it frees
//! the tables.
//!
//! Huge pages: a 2 MiB block that lies wholly in a demand-paged region and whose 512 pages have
//! all been touched is promoted to one 2 MiB page (its bytes copied into a 2 MiB frame from
//! veridian-alloc's buddy allocator, the 4 KiB frames and their page table freed); `munmap` and
//! teardown free such a page as one block. No promotion when no 2 MiB frame is free.
//!
//! Shared memory ([`AddressSpace::map_shared`]): a `Shared` region maps a shared-memory
//! object's frames when it is added; the space keeps the object alive and never frees or counts
//! its frames (unmapping clears the entries and invalidates them, then drops the reference).
//!
//! Not done: copy-on-write, file mappings.

use alloc::collections::BTreeMap;
use core::sync::atomic::{AtomicU64, Ordering};

use veridian_simd::btree::CacheBTree;
use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::structures::paging::mapper::UnmapError;
use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as F, Size2MiB, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use alloc::sync::Arc;

use super::frames::{self, FrameBlock};
use super::paging::{PHYS_OFFSET, phys_to_virt};
use super::shared::SharedMemory;
use crate::arch::x86_64::context::UserSpace;
use crate::arch::x86_64::layout;
use crate::arch::x86_64::tlb::TlbState;
use crate::sync::IrqLock;

/// End (exclusive) of the user half.
pub const USER_END: u64 = crate::arch::x86_64::user::USER_END;
/// The top page of the user half is never mapped (so the address after a `SYSCALL` is always
/// canonical: see `arch::x86_64::user`).
pub const USER_MAP_END: u64 = USER_END - 4096;

/// What a region is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// A program segment (loaded from the image; never demand-paged).
    Image,
    /// The main thread's stack (demand-paged).
    Stack,
    /// An anonymous `mmap` region (demand-paged).
    Anonymous,
    /// A mapping of a shared-memory object (mapped whole when added; its frames are the
    /// object's, not the space's).
    Shared,
}

/// A range of user addresses with one set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First address (page-aligned).
    pub start: u64,
    /// End (exclusive, page-aligned).
    pub end: u64,
    /// User code may write it.
    pub writable: bool,
    /// User code may execute it.
    pub executable: bool,
    /// What it is for.
    pub kind: RegionKind,
}

/// Why an address-space operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AspaceError {
    /// No frame (or heap memory for the region map) left.
    OutOfMemory,
    /// The range is empty, unaligned, outside the user half or overlaps a region.
    BadRange,
    /// No `mmap` region starts at the address with that length.
    NoSuchRegion,
}

impl core::fmt::Display for AspaceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfMemory => write!(f, "out of memory"),
            Self::BadRange => write!(f, "bad address range"),
            Self::NoSuchRegion => write!(f, "no such region"),
        }
    }
}

struct Inner {
    /// Regions by end address.
    regions: CacheBTree<u64, Region>,
    /// Where the next `mmap` region goes.
    next_mmap: u64,
    /// The region the last fault fell in (faults come in runs over one region): looked at
    /// before the map; cleared when a region is removed.
    last: Option<Region>,
    /// 4 KiB pages demand-mapped so far in each 2 MiB block that lies wholly in a demand-paged
    /// region (by block address): at 512 the block is promoted to one 2 MiB page.
    fills: BTreeMap<u64, u16>,
    /// The shared-memory objects mapped, by region end (each mapping keeps its object alive).
    shared: BTreeMap<u64, Arc<SharedMemory>>,
}

/// A process's address space.
pub struct AddressSpace {
    /// The PML4 (physical address), PCID and TLB bookkeeping. Boxed: CPUs refer to it by
    /// address while they have the space loaded, and the space itself may be moved (out of its
    /// `Arc`, say) before it is dropped.
    tlb: alloc::boxed::Box<TlbState>,
    inner: IrqLock<Inner>,
    /// Frames it holds now (data pages and page tables, PML4 included).
    frames: AtomicU64,
}

// SAFETY: `tlb` is the space's own state for its whole life; its root is a PML4 allocated by
// `new` whose upper half is a copy of the kernel's (which never changes at that level after
// `paging::init`), freed only in `drop`, after `TlbState::retire`.
unsafe impl UserSpace for AddressSpace {
    fn tlb(&self) -> &TlbState {
        &self.tlb
    }

    fn handle_fault(&self, addr: u64, error_code: u64) -> bool {
        AddressSpace::handle_fault(self, addr, error_code)
    }
}

/// Whether the CPU enforces no-execute (EFER.NXE); the NX bit is reserved otherwise.
fn nx() -> bool {
    Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE)
}

fn leaf_flags(region: &Region) -> F {
    let mut flags = F::PRESENT | F::USER_ACCESSIBLE;
    if region.writable {
        flags |= F::WRITABLE;
    }
    if !region.executable && nx() {
        flags |= F::NO_EXECUTE;
    }
    flags
}

const PARENT_FLAGS: F = F::PRESENT.union(F::WRITABLE).union(F::USER_ACCESSIBLE);

impl AddressSpace {
    /// An empty address space (the kernel half only). `None` without memory, before
    /// `paging::init`, or when every PCID is taken (4095 live spaces, where PCIDs are on).
    pub fn new() -> Option<Self> {
        let kernel = layout::kernel_root();
        if kernel == 0 {
            return None;
        }
        let mut block = FrameBlock::allocate(0).ok()?;
        let bytes = block.bytes_mut()?;
        bytes.fill(0);
        let kernel_virt = phys_to_virt(kernel, 4096)?;
        // SAFETY: the kernel's PML4, mapped by the direct map; its upper half is only read here
        // (and changes only at boot, before any process exists).
        let kernel_entries =
            unsafe { core::slice::from_raw_parts((kernel_virt + 2048) as *const u8, 2048) };
        bytes[2048..].copy_from_slice(kernel_entries);
        let root = block.into_raw();
        let Some(tlb) = TlbState::new(root).ok().and_then(super::heap::try_box) else {
            // SAFETY: the PML4 frame just allocated, used by nothing.
            let _ = unsafe { frames::free(root, 0) };
            return None;
        };
        Some(Self {
            tlb,
            inner: IrqLock::new(
                "mm::aspace::AddressSpace",
                Inner {
                    regions: CacheBTree::new(),
                    next_mmap: crate::process_abi::layout::MMAP_BASE,
                    last: None,
                    fills: BTreeMap::new(),
                    shared: BTreeMap::new(),
                },
            ),
            frames: AtomicU64::new(1),
        })
    }

    /// Frames held now (data and tables).
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// The page tables, for code holding the lock.
    ///
    /// # Safety
    /// The caller holds `self.inner`'s lock for as long as it uses the result (the tables are
    /// only changed under it).
    unsafe fn tables(&self) -> OffsetPageTable<'_> {
        let pml4 = (PHYS_OFFSET + self.tlb.root()) as *mut PageTable;
        // SAFETY: the PML4 frame is ours (allocated in `new`) and mapped by the direct map, and
        // so is every table frame below it; the caller's lock makes this the only reference.
        unsafe { OffsetPageTable::new(&mut *pml4, VirtAddr::new(PHYS_OFFSET)) }
    }

    fn check_range(start: u64, end: u64) -> Result<(), AspaceError> {
        if start >= end
            || !start.is_multiple_of(4096)
            || !end.is_multiple_of(4096)
            || end > USER_MAP_END
            || start < crate::process_abi::layout::USER_MIN
        {
            return Err(AspaceError::BadRange);
        }
        Ok(())
    }

    fn overlaps(inner: &Inner, start: u64, end: u64) -> bool {
        inner
            .regions
            .range((
                core::ops::Bound::Excluded(start),
                core::ops::Bound::Unbounded,
            ))
            .next()
            .is_some_and(|(_, r)| r.start < end)
    }

    fn insert(inner: &mut Inner, region: Region) -> Result<(), AspaceError> {
        inner
            .regions
            .try_insert(region.end, region)
            .map(|_| ())
            .map_err(|_| AspaceError::OutOfMemory)
    }

    fn find(inner: &Inner, addr: u64) -> Option<Region> {
        inner
            .regions
            .range((
                core::ops::Bound::Excluded(addr),
                core::ops::Bound::Unbounded,
            ))
            .next()
            .map(|(_, r)| *r)
            .filter(|r| r.start <= addr)
    }

    /// Maps `frame` at `page` with `flags`; with `owned` the frame is the space's from now on
    /// (counted, freed with it), else it belongs to a shared-memory object. Walks the tables
    /// directly (the demand-paging path), creating missing ones; refuses a page that is mapped
    /// already or lies under a huge page.
    ///
    /// # Safety
    /// The caller holds the lock; `page` is a user page of one of the regions; `frame` is an
    /// allocated frame nothing else uses (`owned`), or a frame of a shared-memory object this
    /// space keeps alive until it unmaps the page.
    unsafe fn map(&self, page: u64, frame: u64, flags: F, owned: bool) -> Result<(), AspaceError> {
        let mut table = self.tlb.root();
        for shift in [39u32, 30, 21] {
            // SAFETY: `table` is one of this space's table frames (the PML4, or a frame an
            // entry below points at), in the direct map; the caller's lock makes this the only
            // access. User pages index the lower half of the PML4 only.
            let tab = unsafe { &mut *((PHYS_OFFSET + table) as *mut PageTable) };
            let entry = &mut tab[((page >> shift) & 511) as usize];
            let entry_flags = entry.flags();
            if !entry_flags.contains(F::PRESENT) {
                let mut block = FrameBlock::allocate(0).map_err(|_| AspaceError::OutOfMemory)?;
                block.bytes_mut().ok_or(AspaceError::OutOfMemory)?.fill(0);
                entry.set_addr(PhysAddr::new(block.into_raw()), PARENT_FLAGS);
                // The new table is the space's (freed in `drop`).
                self.frames.fetch_add(1, Ordering::Relaxed);
            } else if entry_flags.contains(F::HUGE_PAGE) {
                return Err(AspaceError::BadRange);
            }
            table = entry.addr().as_u64();
        }
        // SAFETY: as above, the page table of `page`.
        let tab = unsafe { &mut *((PHYS_OFFSET + table) as *mut PageTable) };
        let entry = &mut tab[((page >> 12) & 511) as usize];
        if entry.flags().contains(F::PRESENT) {
            return Err(AspaceError::BadRange);
        }
        // A not-present entry is cached by no TLB: no flush.
        entry.set_addr(PhysAddr::new(frame), flags);
        if owned {
            self.frames.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Adds a program segment `[start, end)` and fills it: `bytes` at `start + offset` (the
    /// rest zero). Frames are allocated now.
    pub fn load(&self, region: Region, offset: u64, bytes: &[u8]) -> Result<(), AspaceError> {
        Self::check_range(region.start, region.end)?;
        if offset.saturating_add(bytes.len() as u64) > region.end - region.start {
            return Err(AspaceError::BadRange);
        }
        let mut inner = self.inner.lock();
        if Self::overlaps(&inner, region.start, region.end) {
            return Err(AspaceError::BadRange);
        }
        Self::insert(&mut inner, region)?;
        let flags = leaf_flags(&region);
        let mut page = region.start;
        while page < region.end {
            let mut block = FrameBlock::allocate(0).map_err(|_| AspaceError::OutOfMemory)?;
            let dst = block.bytes_mut().ok_or(AspaceError::OutOfMemory)?;
            dst.fill(0);
            // The part of `bytes` that lands in this page.
            let page_off = page - region.start;
            let from = offset.max(page_off);
            let to = (offset + bytes.len() as u64).min(page_off + 4096);
            if from < to {
                let src = &bytes[(from - offset) as usize..(to - offset) as usize];
                dst[(from - page_off) as usize..(to - page_off) as usize].copy_from_slice(src);
            }
            let phys = block.into_raw();
            // SAFETY: we hold the lock; the page is in the region just added (no overlap, so
            // unmapped); the frame is freshly allocated.
            if let Err(e) = unsafe { self.map(page, phys, flags, true) } {
                // SAFETY: not mapped (the mapping failed), ours.
                let _ = unsafe { frames::free(phys, 0) };
                return Err(e);
            }
            page += 4096;
        }
        Ok(())
    }

    /// Adds a demand-paged region (stack or anonymous memory) at `[start, end)`.
    pub fn reserve(&self, region: Region) -> Result<(), AspaceError> {
        Self::check_range(region.start, region.end)?;
        let mut inner = self.inner.lock();
        if Self::overlaps(&inner, region.start, region.end) {
            return Err(AspaceError::BadRange);
        }
        Self::insert(&mut inner, region)
    }

    /// A new anonymous region of `len` bytes (rounded up to 4 KiB), after the previous one with
    /// an unmapped page between them; its start.
    pub fn mmap(&self, len: u64, writable: bool) -> Result<u64, AspaceError> {
        if len == 0 || len > crate::process_abi::limits::MAX_MMAP {
            return Err(AspaceError::BadRange);
        }
        let mut inner = self.inner.lock();
        let region = Self::place(&mut inner, len, writable, RegionKind::Anonymous)?;
        Ok(region.start)
    }

    /// Adds a region of `len` bytes (rounded up to 4 KiB) of `kind` after the previous `mmap`
    /// region, with an unmapped page between them.
    fn place(
        inner: &mut Inner,
        len: u64,
        writable: bool,
        kind: RegionKind,
    ) -> Result<Region, AspaceError> {
        let len = len.next_multiple_of(4096);
        let start = inner.next_mmap;
        let end = start.checked_add(len).ok_or(AspaceError::OutOfMemory)?;
        if end
            > crate::process_abi::layout::STACK_TOP - crate::process_abi::layout::STACK_SIZE - 4096
        {
            return Err(AspaceError::OutOfMemory);
        }
        let region = Region {
            start,
            end,
            writable,
            executable: false,
            kind,
        };
        Self::insert(inner, region)?;
        inner.next_mmap = end + 4096;
        Ok(region)
    }

    /// Maps the whole of `memory` (read-write) at a new region; its start. The mapping keeps
    /// `memory` alive until it is removed (`munmap` of exactly the region, or the space's end).
    pub fn map_shared(&self, memory: Arc<SharedMemory>) -> Result<u64, AspaceError> {
        let mut inner = self.inner.lock();
        let region = Self::place(&mut inner, memory.len(), true, RegionKind::Shared)?;
        inner.shared.insert(region.end, memory.clone());
        let flags = leaf_flags(&region);
        for (i, &phys) in memory.frames().iter().enumerate() {
            // SAFETY: we hold the lock; the page lies in the region just placed (unmapped);
            // the frame is the object's, kept alive by the reference just stored.
            if let Err(e) = unsafe { self.map(region.start + i as u64 * 4096, phys, flags, false) }
            {
                drop(inner);
                let _ = self.munmap(region.start, region.end - region.start);
                return Err(e);
            }
        }
        Ok(region.start)
    }

    /// Removes the `mmap` region that starts at `addr` and is `len` bytes long (rounded up to
    /// 4 KiB), freeing its frames.
    pub fn munmap(&self, addr: u64, len: u64) -> Result<(), AspaceError> {
        let end = len
            .checked_next_multiple_of(4096)
            .and_then(|len| addr.checked_add(len))
            .ok_or(AspaceError::NoSuchRegion)?;
        let mut inner = self.inner.lock();
        match inner.regions.get(&end) {
            Some(r) if r.start == addr && r.kind == RegionKind::Anonymous => {}
            Some(r) if r.start == addr && r.kind == RegionKind::Shared => {
                inner.regions.remove(&end);
                inner.last = None;
                // SAFETY: we hold the lock.
                unsafe { self.unmap_shared(addr, end) };
                // The translations are gone everywhere: the object may go.
                let memory = inner.shared.remove(&end);
                drop(inner);
                drop(memory);
                return Ok(());
            }
            _ => return Err(AspaceError::NoSuchRegion),
        }
        inner.regions.remove(&end);
        inner.last = None;
        // SAFETY: we hold the lock.
        let mut table = unsafe { self.tables() };
        let fills: alloc::vec::Vec<u64> = inner.fills.range(addr..end).map(|(b, _)| *b).collect();
        for block in fills {
            inner.fills.remove(&block);
        }
        let mut batch = UnmapBatch::new();
        let mut page = addr;
        while page < end {
            match table.unmap(Page::<Size4KiB>::containing_address(VirtAddr::new(page))) {
                Ok((frame, flush)) => {
                    // Invalidated with the batch, before its frames are freed.
                    flush.ignore();
                    batch.push(self, page, 4096, frame.start_address().as_u64(), 0);
                }
                // A promoted block (2 MiB-aligned, wholly in the region).
                Err(UnmapError::ParentEntryHugePage) if page.is_multiple_of(HUGE) => {
                    let huge = Page::<Size2MiB>::containing_address(VirtAddr::new(page));
                    if let Ok((frame, flush)) = table.unmap(huge) {
                        flush.ignore();
                        batch.push(self, page, HUGE, frame.start_address().as_u64(), 9);
                    }
                    page += HUGE;
                    continue;
                }
                Err(_) => {}
            }
            page += 4096;
        }
        batch.finish(self);
        Ok(())
    }

    /// Demand paging: maps a zeroed frame at the page of `addr` if it lies in a demand-paged
    /// region that allows the access (`error_code` as the CPU pushed it: write bit 1,
    /// instruction fetch bit 4, present bit 0). False for anything else (the process faulted).
    pub fn handle_fault(&self, addr: u64, error_code: u64) -> bool {
        let mut inner = self.inner.lock();
        let cached = inner.last.filter(|r| r.start <= addr && addr < r.end);
        let Some(region) = cached.or_else(|| Self::find(&inner, addr)) else {
            return false;
        };
        inner.last = Some(region);
        let present = error_code & 1 != 0;
        let write = error_code & 2 != 0;
        let fetch = error_code & 0x10 != 0;
        if present
            || (write && !region.writable)
            || (fetch && !region.executable)
            || matches!(region.kind, RegionKind::Image | RegionKind::Shared)
        {
            return false;
        }
        let page = addr & !0xfff;
        let Ok(mut block) = FrameBlock::allocate(0) else {
            return false;
        };
        let Some(bytes) = block.bytes_mut() else {
            return false;
        };
        bytes.fill(0);
        let phys = block.into_raw();
        // SAFETY: we hold the lock; the page is in a region (a page mapped already, by a kernel
        // copy that raced with nothing, is refused by `map`); the frame is fresh.
        if unsafe { self.map(page, phys, leaf_flags(&region), true) }.is_err() {
            // SAFETY: not mapped, ours.
            let _ = unsafe { frames::free(phys, 0) };
            return false;
        }
        let block = page & !(HUGE - 1);
        if block >= region.start && block + HUGE <= region.end {
            let filled = inner.fills.entry(block).or_insert(0);
            *filled += 1;
            if usize::from(*filled) == 512 {
                inner.fills.remove(&block);
                // SAFETY: we hold the lock; the block lies wholly in `region`.
                unsafe { self.promote(block, &region) };
            }
        }
        true
    }

    /// Clears the entries of the shared mapping `[start, end)` (not freeing the frames, which
    /// are the object's) and invalidates them on every CPU.
    ///
    /// # Safety
    /// The caller holds the lock; `[start, end)` was a `Shared` region.
    unsafe fn unmap_shared(&self, start: u64, end: u64) {
        // SAFETY: the caller holds the lock.
        let mut table = unsafe { self.tables() };
        let mut page = start;
        while page < end {
            if let Ok((_, flush)) =
                table.unmap(Page::<Size4KiB>::containing_address(VirtAddr::new(page)))
            {
                // Invalidated below, for the whole range.
                flush.ignore();
            }
            page += 4096;
        }
        self.tlb.invalidate(start, end);
    }

    /// The page-directory entry for `addr` (the level that maps 2 MiB), if the levels above it
    /// exist and do not map a huge page themselves. A raw pointer: the tables are reached
    /// through the direct map, not through `self`.
    ///
    /// # Safety
    /// The caller holds the lock (the tables change only under it) and uses the pointer only
    /// while it does.
    unsafe fn pd_entry(
        &self,
        addr: u64,
    ) -> Option<*mut x86_64::structures::paging::page_table::PageTableEntry> {
        let table = |phys: u64| (PHYS_OFFSET + phys) as *mut PageTable;
        // SAFETY: the PML4 and every table below it are this space's frames, mapped by the
        // direct map; the lock makes this the only access.
        unsafe {
            let l4 = &*table(self.tlb.root());
            let e4 = &l4[((addr >> 39) & 511) as usize];
            if !e4.flags().contains(F::PRESENT) {
                return None;
            }
            let l3 = &*table(e4.addr().as_u64());
            let e3 = &l3[((addr >> 30) & 511) as usize];
            if !e3.flags().contains(F::PRESENT) || e3.flags().contains(F::HUGE_PAGE) {
                return None;
            }
            let l2 = &mut *table(e3.addr().as_u64());
            Some(&raw mut l2[((addr >> 21) & 511) as usize])
        }
    }

    /// Replaces the 512 mapped 4 KiB pages of the 2 MiB block at `block` with one 2 MiB page
    /// holding the same bytes (the huge-page policy: a block that filled up). Does nothing if
    /// no 2 MiB frame is free or the block is not fully mapped with 4 KiB pages.
    ///
    /// # Safety
    /// The caller holds the lock and the block lies wholly in `region`.
    unsafe fn promote(&self, block: u64, region: &Region) {
        let Ok(mut huge) = FrameBlock::allocate(9) else {
            return;
        };
        // SAFETY: the caller holds the lock, for as long as `pd` is used.
        let Some(pd) = (unsafe { self.pd_entry(block) }) else {
            return;
        };
        // SAFETY: a valid entry of this space's page directory (see `pd_entry`), only touched
        // under the lock the caller holds.
        let pd = unsafe { &mut *pd };
        if !pd.flags().contains(F::PRESENT) || pd.flags().contains(F::HUGE_PAGE) {
            return;
        }
        let pt_phys = pd.addr().as_u64();
        // SAFETY: the page table of this block, a frame of this space in the direct map.
        let pt = unsafe { &*((PHYS_OFFSET + pt_phys) as *const PageTable) };
        if pt.iter().any(|e| !e.flags().contains(F::PRESENT)) {
            return;
        }
        let Some(dst) = huge.bytes_mut() else {
            return;
        };
        for (i, entry) in pt.iter().enumerate() {
            let Some(src) = phys_to_virt(entry.addr().as_u64(), 4096) else {
                return;
            };
            // SAFETY: a data frame of this space (mapped by the entry), in the direct map; only
            // read, under the lock.
            let src = unsafe { core::slice::from_raw_parts(src as *const u8, 4096) };
            dst[i * 4096..(i + 1) * 4096].copy_from_slice(src);
        }
        let old: alloc::vec::Vec<u64> = pt.iter().map(|e| e.addr().as_u64()).collect();
        let huge_phys = huge.into_raw();
        pd.set_addr(PhysAddr::new(huge_phys), leaf_flags(region) | F::HUGE_PAGE);
        // The old translations (and the cached pointer to the old table) may be cached on any
        // CPU that ran the process: gone everywhere before the frames are freed.
        self.tlb.invalidate(block, block + HUGE);
        for phys in old {
            // SAFETY: the old frames are mapped nowhere now (and flushed): ours to free.
            let _ = unsafe { frames::free(phys, 0) };
        }
        // SAFETY: the old page table, referenced by nothing now.
        let _ = unsafe { frames::free(pt_phys, 0) };
        // 512 data frames and a table gave way to one 2 MiB block.
        self.frames.fetch_sub(512, Ordering::Relaxed);
        PROMOTIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Bytes of a 2 MiB page.
const HUGE: u64 = 2 << 20;

/// Frames unmapped from a space and not yet freed: their translations are invalidated on every
/// CPU (one shootdown per batch) before the frames go back.
struct UnmapBatch {
    frames: [(u64, u8); 64],
    len: usize,
    start: u64,
    end: u64,
}

impl UnmapBatch {
    fn new() -> Self {
        Self {
            frames: [(0, 0); 64],
            len: 0,
            start: u64::MAX,
            end: 0,
        }
    }

    /// Adds the block of `order` at `phys`, unmapped from `[page, page + len)` (the caller
    /// holds the space's lock, and the block is the space's alone).
    fn push(&mut self, space: &AddressSpace, page: u64, len: u64, phys: u64, order: u8) {
        if self.len == self.frames.len() {
            self.finish(space);
        }
        self.frames[self.len] = (phys, order);
        self.len += 1;
        self.start = self.start.min(page);
        self.end = self.end.max(page + len);
    }

    /// Invalidates the batch's range on every CPU, then frees its frames.
    fn finish(&mut self, space: &AddressSpace) {
        if self.len == 0 {
            return;
        }
        space.tlb.invalidate(self.start, self.end);
        for &(phys, order) in &self.frames[..self.len] {
            // SAFETY: unmapped from this space (the only place it was mapped) and no CPU can
            // use a translation of it any more (invalidated just above).
            let _ = unsafe { frames::free(phys, usize::from(order)) };
            space.frames.fetch_sub(1, Ordering::Relaxed);
        }
        *self = Self::new();
    }
}

/// 2 MiB blocks promoted so far, all address spaces.
static PROMOTIONS: AtomicU64 = AtomicU64::new(0);

/// How many 2 MiB blocks were promoted to huge pages since boot.
pub fn promotions() -> u64 {
    PROMOTIONS.load(Ordering::Relaxed)
}

impl Drop for AddressSpace {
    /// Frees every frame of the user half (data pages, then the tables) and the PML4, once no
    /// CPU has the space loaded (no thread of it runs any more; CPUs that keep it loaded
    /// lazily switch to the kernel's tables: `TlbState::retire`).
    fn drop(&mut self) {
        self.tlb.retire();
        // Shared mappings first: their frames are not the space's to free.
        let shared = core::mem::take(&mut self.inner.lock().shared);
        for (&end, memory) in &shared {
            // SAFETY: `&mut self`: nothing else uses the tables; the region ends at `end`.
            unsafe { self.unmap_shared(end - memory.len(), end) };
        }
        drop(shared);
        let freed = free_tables(self.tlb.root(), 4);
        self.frames.fetch_sub(freed, Ordering::Relaxed);
        if self.frames.load(Ordering::Relaxed) != 0 {
            log::warn!(
                "aspace: {} frames unaccounted for after teardown",
                self.frames.load(Ordering::Relaxed)
            );
        }
    }
}

/// Frees the table at `phys` of `level` (4: PML4, user half only) and everything below it;
/// the number of frames freed.
fn free_tables(phys: u64, level: u8) -> u64 {
    let Some(virt) = phys_to_virt(phys, 4096) else {
        return 0;
    };
    // SAFETY: a page-table frame of this space (no CPU uses the space any more, see `drop`),
    // mapped by the direct map; nothing else references it.
    let table = unsafe { &mut *(virt as *mut PageTable) };
    let entries = if level == 4 { 256 } else { 512 };
    let mut freed = 0;
    for entry in table.iter_mut().take(entries) {
        if !entry.flags().contains(F::PRESENT) {
            continue;
        }
        let child = entry.addr().as_u64();
        if level == 1 || entry.flags().contains(F::HUGE_PAGE) {
            let order = match level {
                1 => 0,
                2 => 9,
                _ => 18,
            };
            // SAFETY: a data frame (block of `order`) this space mapped and owns alone.
            let _ = unsafe { frames::free(child, order) };
            freed += 1;
        } else {
            freed += free_tables(child, level - 1);
        }
        entry.set_unused();
    }
    // SAFETY: the table frame itself, allocated for this space, referenced by nothing now.
    let _ = unsafe { frames::free(phys, 0) };
    freed + 1
}
