//! The kernel's own 4-level page tables: a direct map of physical memory, the kernel image with
//! per-section permissions, and guard pages under the kernel stacks.
//!
//! What it does, in two steps:
//! - [`init_early`] (before anything needs physical memory) points PML4 slot 256 of the boot
//!   page tables at the same PDPT as slot 0, so the first 4 GiB of physical memory appear at
//!   [`PHYS_OFFSET`] from the start. The frame allocator and the heap use that address range
//!   from their first allocation, so nothing has to move when the final tables replace the boot
//!   ones.
//! - [`init`] (once the frame allocator has RAM) builds new tables with frames from it, through
//!   the `x86_64` crate's [`OffsetPageTable`]:
//!   - the direct map `[PHYS_OFFSET, PHYS_OFFSET + top)`, `top` = the end of the highest RAM
//!     region rounded up to 1 GiB (at least 4 GiB, so the MMIO hole is covered), with 1 GiB
//!     pages when the CPU has them (CPUID `pdpe1gb`) and 2 MiB pages otherwise; writable,
//!     never executable, global;
//!   - the kernel image at its link address with 4 KiB pages: `.text` read+execute, `.rodata`
//!     read-only no-execute, `.data`/`.bss` read+write no-execute, all global;
//!   - nothing at the low identity map any more (a null or small-integer dereference faults),
//!     and no mapping of the boot trampoline;
//!   - a missing (guard) page at the bottom of the bootstrap stack and of the double-fault and
//!     NMI stacks: running off the end faults instead of overwriting whatever lies below.
//!
//!   Then it loads CR3 and sets CR4.PGE so the global kernel mappings survive future CR3
//!   switches.
//!
//! Stack overflows: a push into a guard page raises #PF, whose delivery needs the same stack, so
//! the CPU raises #DF on its IST stack; the exception path asks [`guard_page_hit`] whether CR2 is
//! a guard page and reports "kernel stack overflow" with the stack's name.
//!
//! What it relies on: the boot tables of `arch::x86_64::boot` (PML4 slot 0 maps 0..4 GiB), the
//! linker script's section symbols (page-aligned section starts), EFER.NXE set by the
//! trampoline when the CPU has NX (the NX bit is only used then), CR0.WP set (read-only
//! mappings hold for the kernel too).

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use reference_kernel::BootInfo;
use reference_kernel::bootinfo::MemoryKind;
use spin::Once;
use x86_64::registers::control::{Cr3, Cr3Flags, Cr4, Cr4Flags};
use x86_64::structures::paging::mapper::MapToError;
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageSize, PageTable, PageTableFlags as F,
    PhysFrame, Size1GiB, Size2MiB, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use super::frames;
use crate::arch::x86_64::context::KernelStack;
use crate::arch::x86_64::layout;
use crate::arch::x86_64::{boot, gdt};
use crate::sync::PreemptLock;

pub use crate::arch::x86_64::layout::{PHYS_OFFSET, phys_to_virt};

/// A stack's guard page: its name and the page's virtual address.
#[derive(Clone, Copy, Debug)]
pub struct GuardPage {
    /// Which stack it protects.
    pub stack: &'static str,
    /// Virtual address of the unmapped page.
    pub page: u64,
}

/// Guard pages set up by [`init`].
static GUARDS: Once<[GuardPage; 3]> = Once::new();

/// What [`init`] built, for the boot report.
#[derive(Clone, Copy, Debug, Default)]
pub struct PagingReport {
    /// End of the direct map (physical).
    pub direct_map_bytes: u64,
    /// Page size used for the direct map.
    pub direct_map_page: u64,
    /// Page-table frames allocated.
    pub table_frames: u64,
    /// Kernel image pages mapped, per kind: text, rodata, data.
    pub kernel_pages: [u64; 3],
}

static REPORT: Once<PagingReport> = Once::new();

unsafe extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __kernel_end: u8;
}

/// The virtual address of a linker symbol.
macro_rules! sym {
    ($name:ident) => {
        core::ptr::addr_of!($name) as u64
    };
}

/// Makes the first 4 GiB of physical memory visible at [`PHYS_OFFSET`] through the boot page
/// tables. Call once, early, on the bootstrap processor.
pub fn init_early() {
    if layout::direct_map_end() != 0 {
        return;
    }
    let (pml4_frame, _) = Cr3::read();
    // The boot PML4 lives in the boot image's low pages, which the higher-half window of the
    // boot tables maps at `KERNEL_VMA + physical`.
    let pml4 = (boot::KERNEL_VMA + pml4_frame.start_address().as_u64()) as *mut PageTable;
    // SAFETY: CR3 holds the boot PML4, a page-aligned page in the first 2 GiB that the boot
    // tables map writable at `KERNEL_VMA + phys`; only this CPU runs and nothing else holds a
    // reference to it. Copying entry 0 into the unused entry 256 adds a second view of the same
    // PDPT (0..4 GiB, writable); no existing translation changes, so no TLB flush is needed for
    // correctness (the new slot was not present, so it cannot be cached).
    unsafe {
        let table = &mut *pml4;
        let entry = table[0].clone();
        table[256] = entry;
    }
    layout::set_direct_map_end(4 << 30);
}

/// The frame allocator as the `x86_64` crate wants it for page tables.
pub(super) struct TableFrames {
    pub(super) allocated: u64,
}

// SAFETY: every frame comes from the frame allocator (unused, ours from now on) and is zeroed
// through the direct map before it is returned.
unsafe impl FrameAllocator<Size4KiB> for TableFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let phys = frames::allocate(0).ok()?;
        let virt = phys_to_virt(phys, 4096)?;
        // SAFETY: the frame was just allocated (ours alone) and the direct map covers it
        // writable.
        unsafe { core::ptr::write_bytes(virt as *mut u8, 0, 4096) };
        self.allocated += 1;
        PhysFrame::from_start_address(PhysAddr::new(phys)).ok()
    }
}

/// Why [`init`] could not build the tables.
#[derive(Debug)]
pub enum PagingError {
    /// The frame allocator ran out while allocating page tables.
    OutOfFrames,
    /// The tables already held a mapping there (a layout bug).
    AlreadyMapped(u64),
    /// A linker symbol is not page-aligned.
    Misaligned(&'static str, u64),
}

impl core::fmt::Display for PagingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfFrames => write!(f, "out of frames for page tables"),
            Self::AlreadyMapped(a) => write!(f, "{a:#x} mapped twice"),
            Self::Misaligned(s, a) => write!(f, "section symbol {s} at {a:#x} not page-aligned"),
        }
    }
}

fn map_err<S: PageSize>(e: MapToError<S>, at: u64) -> PagingError {
    match e {
        MapToError::FrameAllocationFailed => PagingError::OutOfFrames,
        MapToError::ParentEntryHugePage | MapToError::PageAlreadyMapped(_) => {
            PagingError::AlreadyMapped(at)
        }
    }
}

/// End of the highest RAM-like region (usable, ACPI), rounded up to 1 GiB, at least 4 GiB.
fn direct_map_top(info: &BootInfo) -> u64 {
    let ram_end = info
        .memory_map()
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                MemoryKind::Usable | MemoryKind::AcpiReclaimable | MemoryKind::AcpiNvs
            )
        })
        .map(|r| r.start.saturating_add(r.len))
        .max()
        .unwrap_or(0);
    // Cap at 256 GiB of direct map: far more than the machines this kernel boots on, and a
    // bound on the page-table memory a corrupt map could make us spend.
    ram_end.clamp(4 << 30, 256 << 30).next_multiple_of(1 << 30)
}

/// Maps `[virt_start, virt_end)` of the kernel image to `virt - KERNEL_VMA`, with 4 KiB pages,
/// skipping `skip` pages (guard pages). Returns the pages mapped.
fn map_kernel_range(
    table: &mut OffsetPageTable<'_>,
    alloc: &mut TableFrames,
    (virt_start, virt_end): (u64, u64),
    flags: F,
    skip: &[u64],
) -> Result<u64, PagingError> {
    let mut mapped = 0;
    let mut virt = virt_start;
    while virt < virt_end {
        if !skip.contains(&virt) {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(virt));
            let frame = PhysFrame::containing_address(PhysAddr::new(virt - boot::KERNEL_VMA));
            // SAFETY: the frame is the kernel image's own page for this address (the image is
            // loaded at `virt - KERNEL_VMA`), so the new tables translate it exactly as the
            // boot tables do, with narrower permissions.
            unsafe {
                table
                    .map_to_with_table_flags(page, frame, flags, F::PRESENT | F::WRITABLE, alloc)
                    .map_err(|e| map_err(e, virt))?
                    .ignore();
            }
            mapped += 1;
        }
        virt += 4096;
    }
    Ok(mapped)
}

/// Builds the kernel's page tables and switches to them. Returns what it built; on error the
/// boot tables stay active (and the error says why).
pub fn init(info: &BootInfo) -> Result<PagingReport, PagingError> {
    if let Some(report) = REPORT.get() {
        return Ok(*report);
    }
    for (name, addr) in [
        ("__text_start", sym!(__text_start)),
        ("__rodata_start", sym!(__rodata_start)),
        ("__data_start", sym!(__data_start)),
        ("__kernel_end", sym!(__kernel_end)),
    ] {
        if !addr.is_multiple_of(4096) {
            return Err(PagingError::Misaligned(name, addr));
        }
    }
    let mut alloc = TableFrames { allocated: 0 };
    let pml4_frame = alloc.allocate_frame().ok_or(PagingError::OutOfFrames)?;
    let pml4_virt = PHYS_OFFSET + pml4_frame.start_address().as_u64();
    // SAFETY: a freshly allocated, zeroed frame, mapped writable at `pml4_virt` by the direct
    // map (`init_early`); nothing else refers to it. The direct map reaches every frame the
    // allocator hands out (it only manages RAM below 4 GiB, mapped since `init_early`), which is
    // what `OffsetPageTable` needs.
    let mut table = unsafe {
        OffsetPageTable::new(
            &mut *(pml4_virt as *mut PageTable),
            VirtAddr::new(PHYS_OFFSET),
        )
    };

    let top = direct_map_top(info);
    let huge_1g = raw_cpuid::CpuId::new()
        .get_extended_processor_and_feature_identifiers()
        .is_some_and(|f| f.has_1gib_pages());
    let data = F::PRESENT | F::WRITABLE | F::NO_EXECUTE | F::GLOBAL;
    let parents = F::PRESENT | F::WRITABLE;
    let step = if huge_1g {
        Size1GiB::SIZE
    } else {
        Size2MiB::SIZE
    };
    let mut phys = 0;
    while phys < top {
        let virt = VirtAddr::new(PHYS_OFFSET + phys);
        // SAFETY: the direct map aliases physical memory at a fixed offset in the higher half,
        // a range nothing else maps; creating the alias changes no existing translation.
        unsafe {
            if huge_1g {
                let page = Page::<Size1GiB>::containing_address(virt);
                let frame = PhysFrame::<Size1GiB>::containing_address(PhysAddr::new(phys));
                table
                    .map_to_with_table_flags(page, frame, data, parents, &mut alloc)
                    .map_err(|e| map_err(e, virt.as_u64()))?
                    .ignore();
            } else {
                let page = Page::<Size2MiB>::containing_address(virt);
                let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(phys));
                table
                    .map_to_with_table_flags(page, frame, data, parents, &mut alloc)
                    .map_err(|e| map_err(e, virt.as_u64()))?
                    .ignore();
            }
        }
        phys += step;
    }

    let guards = [
        GuardPage {
            stack: "bootstrap CPU",
            page: (&raw const boot::BSP_STACK) as u64,
        },
        GuardPage {
            stack: "double-fault IST",
            page: gdt::double_fault_stack_bottom(),
        },
        GuardPage {
            stack: "NMI IST",
            page: gdt::nmi_stack_bottom(),
        },
    ];
    let skip = guards.map(|g| g.page);
    let text = map_kernel_range(
        &mut table,
        &mut alloc,
        (sym!(__text_start), sym!(__text_end)),
        F::PRESENT | F::GLOBAL,
        &skip,
    )?;
    let rodata = map_kernel_range(
        &mut table,
        &mut alloc,
        (sym!(__rodata_start), sym!(__rodata_end)),
        F::PRESENT | F::NO_EXECUTE | F::GLOBAL,
        &skip,
    )?;
    let data_pages = map_kernel_range(
        &mut table,
        &mut alloc,
        (sym!(__data_start), sym!(__kernel_end)),
        data,
        &skip,
    )?;

    // Every upper-half PML4 entry the kernel will use exists before the first process copies
    // the upper half (the kernel-stack region's; the direct map's and the image's are above):
    // later kernel mappings then only change tables that processes share.
    {
        let pml4 = table.level_4_table_mut();
        let slot = &mut pml4[((STACK_REGION >> 39) & 511) as usize];
        if slot.is_unused() {
            let frame = alloc.allocate_frame().ok_or(PagingError::OutOfFrames)?;
            slot.set_frame(frame, F::PRESENT | F::WRITABLE);
        }
    }
    GUARDS.call_once(|| guards);
    // SAFETY: the new tables map everything the kernel touches from here on: its image (code,
    // constants, data, the stacks minus their guard pages) at the same addresses, and physical
    // memory at PHYS_OFFSET where the frame allocator, the heap and the page tables themselves
    // are reached. The boot trampoline and the identity map are not used after entry. CR4.PGE
    // only makes the GLOBAL kernel mappings survive CR3 reloads.
    unsafe {
        Cr3::write(pml4_frame, Cr3Flags::empty());
        Cr4::update(|f| f.insert(Cr4Flags::PAGE_GLOBAL));
    }
    layout::set_kernel_root(pml4_frame.start_address().as_u64());
    layout::set_direct_map_end(top);
    layout::set_guard_lookup(|addr| guard_page_hit(addr).map(|g| g.stack));
    layout::set_stack_lookup(kernel_stack_bounds);
    let report = PagingReport {
        direct_map_bytes: top,
        direct_map_page: step,
        table_frames: alloc.allocated,
        kernel_pages: [text, rodata, data_pages],
    };
    Ok(*REPORT.call_once(|| report))
}

/// What [`init`] built (`None` before it ran or if it failed).
pub fn report() -> Option<PagingReport> {
    REPORT.get().copied()
}

/// Start of the kernel-stack region (PML4 slot 510): stacks for APs and kernel threads, each in
/// a [`STACK_STRIDE`]-byte slot whose lowest page is never mapped (its guard page).
pub const STACK_REGION: u64 = 0xffff_ff00_0000_0000;
/// Bytes of virtual space per kernel stack slot (guard page included).
pub const STACK_STRIDE: u64 = 128 * 1024;
/// Slots in the region handed out so far.
static STACK_SLOTS: AtomicU64 = AtomicU64::new(0);
/// Pages mapped in each of the first [`SLOT_RECORDS`] stack slots (0: none or not yet), for
/// [`kernel_stack_bounds`]; written once per slot, after its pages are mapped.
static SLOT_PAGES: [AtomicU8; SLOT_RECORDS] = [const { AtomicU8::new(0) }; SLOT_RECORDS];
/// Slots whose size is recorded (later slots' stacks are not known to the bounds lookup).
const SLOT_RECORDS: usize = 4096;
/// Serialises changes to the active page tables (only threads and boot code change them).
static TABLE_LOCK: PreemptLock<()> = PreemptLock::new("mm::paging::TABLE_LOCK", ());

/// Maps a kernel stack of `pages` 4 KiB pages (at most `STACK_STRIDE / 4096 - 1`) in the
/// kernel-stack region, below an unmapped guard page; its top is 16-byte aligned.
/// The stack is never unmapped (threads that exit give their stacks to a free list in `task`).
/// A slot is used up even when mapping fails part-way; the pages mapped by then are unmapped
/// and their frames freed, so a failure leaks nothing and later calls can still succeed.
pub fn alloc_kernel_stack(pages: usize) -> Result<KernelStack, PagingError> {
    if pages == 0 || pages as u64 >= STACK_STRIDE / 4096 || REPORT.get().is_none() {
        return Err(PagingError::OutOfFrames);
    }
    let _lock = TABLE_LOCK.lock();
    let slot = STACK_SLOTS.load(Ordering::Relaxed);
    if slot >= 512 * 1024 * 1024 * 1024 / STACK_STRIDE {
        return Err(PagingError::OutOfFrames);
    }
    // The slot is consumed whatever happens below (its virtual range is never reused).
    STACK_SLOTS.store(slot + 1, Ordering::Release);
    let guard = STACK_REGION + slot * STACK_STRIDE;
    // The kernel's own PML4, not CR3: a thread of a process runs on the process's tables.
    let pml4 = (PHYS_OFFSET + layout::kernel_root()) as *mut PageTable;
    // SAFETY: the kernel's PML4 (built by `init`, checked above), reached through the direct
    // map; `TABLE_LOCK` makes this the only code changing the tables, and the frames the
    // mapper walks are all page tables the direct map covers.
    let mut table = unsafe { OffsetPageTable::new(&mut *pml4, VirtAddr::new(PHYS_OFFSET)) };
    let mut alloc = TableFrames { allocated: 0 };
    let flags = F::PRESENT | F::WRITABLE | F::NO_EXECUTE | F::GLOBAL;
    let mut mapped = 0u64;
    let mut failure = None;
    for i in 1..=pages as u64 {
        let virt = guard + i * 4096;
        let Ok(phys) = frames::allocate(0) else {
            failure = Some(PagingError::OutOfFrames);
            break;
        };
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(virt));
        let frame = PhysFrame::containing_address(PhysAddr::new(phys));
        // SAFETY: a fresh frame mapped at an address of the stack region that nothing maps yet
        // (slots are handed out once); the TLB cannot hold the page (never mapped before).
        let result = unsafe {
            table.map_to_with_table_flags(page, frame, flags, F::PRESENT | F::WRITABLE, &mut alloc)
        };
        match result {
            Ok(flush) => {
                flush.ignore();
                mapped = i;
            }
            Err(e) => {
                // SAFETY: the frame was just allocated and is mapped nowhere.
                let _ = unsafe { frames::free(phys, 0) };
                failure = Some(map_err(e, virt));
                break;
            }
        }
    }
    if let Some(e) = failure {
        for i in 1..=mapped {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(guard + i * 4096));
            if let Ok((frame, flush)) = table.unmap(page) {
                flush.flush();
                // SAFETY: the frame was allocated above for this page, which no longer maps it;
                // the stack was never handed out, so nothing uses it.
                let _ = unsafe { frames::free(frame.start_address().as_u64(), 0) };
            }
        }
        return Err(e);
    }
    let top = guard + (pages as u64 + 1) * 4096;
    if let Some(record) = SLOT_PAGES.get(slot as usize) {
        // Release: a reader that sees the count also sees the mappings made above (fewer than
        // 32 pages fit a slot, checked at the top, so the count fits a byte).
        record.store(pages as u8, Ordering::Release);
    }
    // SAFETY: `[guard + 4096, top)` was just mapped writable with fresh frames in a slot
    // nothing else uses; the caller gets it exclusively. `top` is page-aligned.
    Ok(unsafe { KernelStack::new(guard + 4096, top) })
}

/// The mapped bounds `[bottom, top)` of the kernel stack containing `addr`: the bootstrap CPU's
/// stack (above its guard page) or a stack of the kernel-stack region (stacks there are never
/// unmapped). `None` elsewhere, on guard pages and in slots past [`SLOT_RECORDS`].
pub fn kernel_stack_bounds(addr: u64) -> Option<(u64, u64)> {
    let bsp = (&raw const boot::BSP_STACK) as u64;
    let bsp_range = (bsp + 4096, bsp + boot::BSP_STACK_SIZE as u64);
    if (bsp_range.0..bsp_range.1).contains(&addr) {
        return Some(bsp_range);
    }
    let offset = addr.checked_sub(STACK_REGION)?;
    let slot = offset / STACK_STRIDE;
    if slot >= STACK_SLOTS.load(Ordering::Acquire) {
        return None;
    }
    let pages = u64::from(SLOT_PAGES.get(slot as usize)?.load(Ordering::Acquire));
    let bottom = STACK_REGION + slot * STACK_STRIDE + 4096;
    let top = bottom + pages * 4096;
    (bottom..top).contains(&addr).then_some((bottom, top))
}

/// The guard page containing `addr`, if any (a fault there is a stack overflow).
pub fn guard_page_hit(addr: u64) -> Option<GuardPage> {
    if (STACK_REGION..STACK_REGION + STACK_SLOTS.load(Ordering::Acquire) * STACK_STRIDE)
        .contains(&addr)
        && (addr - STACK_REGION) % STACK_STRIDE < 4096
    {
        return Some(GuardPage {
            stack: "kernel (AP or thread)",
            page: addr & !0xfff,
        });
    }
    GUARDS
        .get()?
        .iter()
        .copied()
        .find(|g| addr >= g.page && addr < g.page + 4096)
}

/// The guard pages (empty before [`init`]).
pub fn guard_pages() -> &'static [GuardPage] {
    GUARDS.get().map_or(&[], |g| &g[..])
}
