//! The physical page-frame allocator.
//!
//! What it does: [`init`] plans the free RAM with [`plan_frames`] (usable regions of the boot
//! memory map below the identity map's 4 GiB, minus the first MiB, the kernel image, the boot
//! structures and the modules) and hands each range to a veridian-alloc [`FrameAllocator`]
//! (a buddy allocator whose free lists live in the free memory itself, reached through the
//! identity map). [`allocate`]/[`free`] serve naturally aligned blocks of `4 KiB << order`.
//!
//! What it relies on: the boot page tables map `[0, 4 GiB)` writable at the same virtual
//! address (see `arch::x86_64::boot`), and nothing but this allocator touches the planned
//! ranges. The first MiB stays out: it holds the BIOS data, and the AP start-up trampoline will
//! need a page below 1 MiB.
//!
//! Locking: one `spin::Mutex`; callers are the heap's chunk refills and page-table code, both
//! rare next to heap allocations (the heap caches chunks of 2 MiB).

use reference_kernel::BootInfo;
use reference_kernel::physmem::{FramePlan, PhysRange, plan_frames};
use spin::Mutex;
use veridian_alloc::frame::{FrameAllocator, FrameError};

use crate::arch::x86_64::boot;

/// What the boot page tables identity-map, so what the allocator can address.
const IDENTITY_LIMIT: u64 = 4 << 30;

/// The first MiB: BIOS data area, EBDA, option ROMs; later the AP trampoline's page.
const LOW_MEMORY: PhysRange = PhysRange {
    start: 0,
    end: 0x10_0000,
};

static FRAMES: Mutex<FrameAllocator> = Mutex::new(match FrameAllocator::new(0) {
    Ok(frames) => frames,
    Err(_) => panic!("0 is a valid direct-map offset"),
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
    /// Usable RAM at or above 4 GiB, not addressable through the boot page tables.
    pub above_limit_bytes: u64,
    /// Usable RAM held by the kernel image, boot structures, modules and the first MiB.
    pub reserved_bytes: u64,
}

static REPORT: spin::Once<FrameReport> = spin::Once::new();

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

/// Plans free RAM and gives it to the frame allocator; prints nothing (see [`report`]).
pub fn init(info: &BootInfo) {
    REPORT.call_once(|| {
        let mut reserved = [PhysRange::default(); 48];
        let n = reserved_ranges(info, &mut reserved);
        let plan: FramePlan = plan_frames(info.memory_map(), &reserved[..n], IDENTITY_LIMIT);
        if plan.dropped_bytes > 0 {
            log::warn!(
                "frames: {} KiB of free RAM left out (more fragments than the plan holds)",
                plan.dropped_bytes >> 10
            );
        }
        let mut report = FrameReport {
            above_limit_bytes: plan.above_limit_bytes,
            reserved_bytes: plan.reserved_bytes,
            ..FrameReport::default()
        };
        let mut frames = FRAMES.lock();
        for range in plan.ranges() {
            // SAFETY: the plan holds only usable RAM below 4 GiB (identity-mapped writable by
            // the boot page tables, at direct-map offset 0), outside the kernel image, the boot
            // structures, the modules and the first MiB, so nothing else uses it; it is handed
            // over once and never taken back.
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
        report
    });
}

/// What [`init`] did (all zero before it ran).
pub fn report() -> FrameReport {
    REPORT.get().copied().unwrap_or_default()
}

/// A naturally aligned block of `4 KiB << order`; its physical address (identity-mapped).
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
