//! The physical page-frame allocator.
//!
//! What it does: [`init`] plans the free RAM with [`plan_frames`] (usable regions of the boot
//! memory map minus the first MiB, the kernel image, the boot structures and the modules) and
//! hands each range to a veridian-alloc [`FrameAllocator`] (a buddy allocator whose free lists
//! live in the free memory itself, reached through the direct map at
//! [`PHYS_OFFSET`]). It runs in two steps because the direct map grows: [`init`] adds the RAM
//! below 4 GiB (what `paging::init_early` maps), and [`add_high`] the RAM above, once the
//! kernel's own tables map it. [`allocate`]/[`free`] serve naturally aligned blocks of
//! `4 KiB << order`, by physical address.
//!
//! What it relies on: the direct map covers every range handed over, writable; nothing but this
//! allocator touches the planned ranges. The first MiB stays out: it holds the BIOS data, and
//! the AP start-up trampoline will need a page below 1 MiB.
//!
//! Locking: one `spin::Mutex`; callers are the heap's chunk refills and page-table code, both
//! rare next to heap allocations (the heap takes 2 MiB chunks).

use reference_kernel::BootInfo;
use reference_kernel::physmem::{FramePlan, PhysRange, plan_frames};
use spin::Mutex;
use veridian_alloc::frame::{FrameAllocator, FrameError};

use super::paging::PHYS_OFFSET;
use crate::arch::x86_64::boot;

/// What the direct map reaches before the kernel's own page tables exist
/// (`paging::init_early`).
const EARLY_LIMIT: u64 = 4 << 30;

/// The first MiB: BIOS data area, EBDA, option ROMs; later the AP trampoline's page.
const LOW_MEMORY: PhysRange = PhysRange {
    start: 0,
    end: 0x10_0000,
};

static FRAMES: Mutex<FrameAllocator> =
    Mutex::new(match FrameAllocator::new(PHYS_OFFSET as usize) {
        Ok(frames) => frames,
        Err(_) => panic!("PHYS_OFFSET is 1 GiB-aligned"),
    });

/// What [`init`] did, for the boot report.
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameReport {
    /// Bytes handed to the allocator (after its own bitmaps).
    pub managed_bytes: u64,
    /// Ranges handed over.
    pub ranges: usize,
    /// Ranges the allocator refused (too small for its bitmaps, and so on).
    pub refused_ranges: usize,
    /// Usable RAM beyond the direct map (not addressable yet).
    pub above_limit_bytes: u64,
    /// Usable RAM held by the kernel image, boot structures, modules and the first MiB.
    pub reserved_bytes: u64,
}

static REPORT: Mutex<FrameReport> = Mutex::new(FrameReport {
    managed_bytes: 0,
    ranges: 0,
    refused_ranges: 0,
    above_limit_bytes: 0,
    reserved_bytes: 0,
});

unsafe extern "C" {
    /// End of the kernel image (linker script), virtual, in the higher half.
    static __kernel_end: u8;
}

/// The physical ranges nothing else may use: first MiB, kernel image, boot data, modules.
fn reserved_ranges(info: &BootInfo, out: &mut [PhysRange; 48]) -> usize {
    let kernel_end_virt = core::ptr::addr_of!(__kernel_end) as u64;
    let kernel = PhysRange {
        start: boot::KERNEL_PHYS,
        end: kernel_end_virt - boot::KERNEL_VMA,
    };
    let mut n = 0;
    let mut add = |r: PhysRange| {
        if let Some(slot) = out.get_mut(n) {
            *slot = r;
            n += 1;
        }
    };
    add(LOW_MEMORY);
    add(kernel);
    for r in info.boot_data() {
        add(PhysRange::from_len(r.start, r.len));
    }
    for m in info.modules() {
        add(PhysRange {
            start: m.start,
            end: m.end,
        });
    }
    n.min(out.len())
}

/// Hands the planned ranges to the allocator, counting into `report`.
fn add_plan(plan: &FramePlan, report: &mut FrameReport) {
    if plan.dropped_bytes > 0 {
        log::warn!(
            "frames: {} KiB of free RAM left out (more fragments than the plan holds)",
            plan.dropped_bytes >> 10
        );
    }
    let mut frames = FRAMES.lock();
    for range in plan.ranges() {
        // SAFETY: the plan holds only usable RAM below the direct map's current end (mapped
        // writable at PHYS_OFFSET), outside the kernel image, the boot structures, the modules
        // and the first MiB, so nothing else uses it; each range is handed over once (the two
        // steps plan disjoint parts) and never taken back.
        match unsafe { frames.add_range(range.start, range.len()) } {
            Ok(bytes) => {
                report.managed_bytes += bytes;
                report.ranges += 1;
            }
            Err(e) => {
                report.refused_ranges += 1;
                log::warn!(
                    "frames: [{:#x}, {:#x}) refused: {e}",
                    range.start,
                    range.end
                );
            }
        }
    }
}

/// Plans the free RAM below 4 GiB and gives it to the frame allocator. Once, on the bootstrap
/// processor, after `paging::init_early`.
pub fn init(info: &BootInfo) {
    let mut reserved = [PhysRange::default(); 48];
    let n = reserved_ranges(info, &mut reserved);
    let plan = plan_frames(info.memory_map(), &reserved[..n], EARLY_LIMIT);
    let mut report = FrameReport {
        above_limit_bytes: plan.above_limit_bytes,
        reserved_bytes: plan.reserved_bytes,
        ..FrameReport::default()
    };
    add_plan(&plan, &mut report);
    *REPORT.lock() = report;
}

/// Adds the free RAM in `[4 GiB, direct_map_end)`, once the kernel's page tables map it.
pub fn add_high(info: &BootInfo, direct_map_end: u64) {
    let mut reserved = [PhysRange::default(); 48];
    let mut n = reserved_ranges(info, &mut reserved);
    if n == reserved.len() {
        n -= 1;
    }
    reserved[n] = PhysRange {
        start: 0,
        end: EARLY_LIMIT,
    };
    let plan = plan_frames(info.memory_map(), &reserved[..=n], direct_map_end);
    let mut report = *REPORT.lock();
    report.above_limit_bytes = plan.above_limit_bytes;
    add_plan(&plan, &mut report);
    *REPORT.lock() = report;
}

/// What [`init`] did (all zero before it ran).
pub fn report() -> FrameReport {
    *REPORT.lock()
}

/// A naturally aligned block of `4 KiB << order`; its physical address (in the direct map at
/// `PHYS_OFFSET + phys`).
pub fn allocate(order: usize) -> Result<u64, FrameError> {
    FRAMES.lock().allocate(order)
}

/// Gives back a block from [`allocate`].
///
/// # Safety
/// `phys` and `order` are exactly a block [`allocate`] returned and not yet freed, and nothing
/// uses its memory afterwards.
pub unsafe fn free(phys: u64, order: usize) -> Result<(), FrameError> {
    // SAFETY: the caller's contract is `FrameAllocator::free`'s.
    unsafe { FRAMES.lock().free(phys, order) }
}

/// Free bytes now.
pub fn free_bytes() -> usize {
    FRAMES.lock().free_bytes()
}
