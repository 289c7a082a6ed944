//! The kernel heap: veridian-alloc's size-class [`Heap`] as the `#[global_allocator]`.
//!
//! What it does: small and medium objects come from the heap's slabs behind per-CPU magazines;
//! the heap's own buddy allocator gets its memory in chunks from [`FramePages`], which takes
//! naturally aligned blocks from the frame allocator ([`super::frames`]) and returns them on
//! [`Heap::trim`]. Out of memory is a null pointer, which `alloc`'s collections turn into
//! `handle_alloc_error` (a panic in this kernel, reported like any other).
//!
//! CPU slots: the kernel runs on one CPU with interrupts disabled and no handler allocates, so
//! the heap uses [`SingleCpu`] (slot 0, no atomics on the fast path). When application processors
//! and preemption arrive, this becomes a per-CPU guard (preemption off, index from GS).

use core::ptr::NonNull;

use veridian_alloc::buddy::{BuddyAllocator, PAGE_SIZE};
use veridian_alloc::env::{PageSource, SingleCpu};
use veridian_alloc::{Heap, HeapStats};

use super::frames;
use super::paging::PHYS_OFFSET;

/// Chunks for the heap, from the frame allocator through the direct map.
pub struct FramePages;

/// The block order that covers `len` bytes at alignment `align`.
fn order_of(len: usize, align: usize) -> Option<usize> {
    BuddyAllocator::order_for(len, align)
}

// SAFETY: a chunk is a naturally aligned block of `PAGE_SIZE << order >= len` bytes (so aligned
// to `align <= that size`) from the frame allocator, mapped writable by the direct map (the
// allocator only holds RAM the direct map reaches), and owned by the
// heap until released; the frame allocator's lock makes both methods callable from any CPU.
unsafe impl PageSource for FramePages {
    fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
        let order = order_of(len, align)?;
        if (PAGE_SIZE << order) != len {
            // The heap asks for power-of-two chunks; anything else would leak the tail.
            return None;
        }
        let phys = frames::allocate(order).ok()?;
        NonNull::new((PHYS_OFFSET + phys) as usize as *mut u8)
    }

    unsafe fn release_chunk(&self, ptr: NonNull<u8>, len: usize) {
        let Some(order) = order_of(len, PAGE_SIZE) else {
            log::error!("heap: released chunk of {len} bytes has no block order; leaked");
            return;
        };
        // SAFETY: the heap gives back exactly a chunk `allocate_chunk` returned (the
        // `PageSource` contract), which is the block `frames::allocate(order)` gave.
        if let Err(e) = unsafe { frames::free(ptr.as_ptr() as u64 - PHYS_OFFSET, order) } {
            log::error!("heap: releasing chunk {ptr:p}: {e}");
        }
    }
}

/// The kernel's global allocator.
#[global_allocator]
pub static HEAP: Heap<FramePages, SingleCpu, 1> =
    // SAFETY: one CPU, interrupts disabled, no allocation from interrupt handlers (module
    // documentation): only one execution context ever enters slot 0 at a time.
    Heap::new(FramePages, unsafe { SingleCpu::new() });

/// The heap's statistics.
pub fn stats() -> HeapStats {
    HEAP.stats()
}

/// Returns the heap's empty slabs and chunks to the frame allocator.
pub fn trim() {
    HEAP.trim();
}
