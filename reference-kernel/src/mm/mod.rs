//! Memory management: page tables, the physical page-frame allocator and the kernel heap.
//!
//! - [`paging`]: the direct map of physical memory at [`paging::PHYS_OFFSET`], the kernel's own
//!   page tables with per-section permissions and stack guard pages.
//! - [`frames`]: the boot memory map, minus what is in use, handed to veridian-alloc's buddy
//!   [`FrameAllocator`](veridian_alloc::frame::FrameAllocator).
//! - [`dma`]: DMA memory for devices (`virtio-drivers`' `Hal`: frames, direct map, bounces).
//! - [`heap`]: veridian-alloc's size-class [`Heap`](veridian_alloc::Heap) as the
//!   `#[global_allocator]`, taking its chunks from the frame allocator.
//!
//! Order at boot: [`paging::init_early`] (direct map of the first 4 GiB through the boot
//! tables), then [`init`]: frames below 4 GiB, the kernel's page tables (built from those
//! frames), then the frames above 4 GiB that the new direct map reaches.

pub mod aspace;
pub mod dma;
pub mod frames;
pub mod heap;
pub mod paging;
pub mod selftest;
pub mod shared;

use reference_kernel::BootInfo;
use reference_kernel::acpi::Platform;

/// Brings up the frame allocator, the kernel's page tables and the heap's memory source. Call
/// once, on the bootstrap processor, after [`paging::init_early`] and before anything allocates.
/// A failure to build the page tables is reported and leaves the boot tables in place.
pub fn init(info: &BootInfo, platform: Option<&Platform>) {
    if let Some(p) = platform {
        frames::set_numa(p);
    }
    frames::init(info);
    match paging::init(info) {
        Ok(report) => frames::add_high(info, report.direct_map_bytes),
        Err(e) => log::error!("paging: kernel page tables not built, boot tables kept: {e}"),
    }
}
