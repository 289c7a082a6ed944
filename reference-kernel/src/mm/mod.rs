//! Memory management: the physical page-frame allocator and the kernel heap.
//!
//! - [`frames`]: the boot memory map, minus what is in use, handed to veridian-alloc's buddy
//!   [`FrameAllocator`](veridian_alloc::frame::FrameAllocator).
//! - [`heap`]: veridian-alloc's size-class [`Heap`](veridian_alloc::Heap) as the
//!   `#[global_allocator]`, taking its chunks from the frame allocator.
//!
//! Addressing: until the kernel builds its own page tables, physical memory is reached through
//! the boot page tables' identity map of the first 4 GiB, so the frame allocator's direct-map
//! offset is 0 and RAM at or above 4 GiB is counted but not managed yet.

pub mod frames;
pub mod heap;

use reference_kernel::BootInfo;

/// Brings up the frame allocator and the heap from the boot memory map. Call once, on the
/// bootstrap processor, before anything allocates.
pub fn init(info: &BootInfo) {
    frames::init(info);
}
