//! The kernel heap: veridian-alloc's size-class [`Heap`] as the `#[global_allocator]`.
//!
//! What it does: small and medium objects come from the heap's slabs behind per-CPU magazines;
//! the heap's own buddy allocator gets its memory in chunks from [`FramePages`], which takes
//! naturally aligned blocks from the frame allocator ([`super::frames`]) and returns them on
//! [`Heap::trim`]. Out of memory is a null pointer, which `alloc`'s collections turn into
//! `handle_alloc_error` (a panic in this kernel, reported like any other).
//!
//! CPU slots: [`KernelCpus`] gives each CPU its own slot (its per-CPU index, read through GS) and
//! holds interrupts off for the length of one heap operation, so neither an interrupt handler
//! nor a preemption (which needs the timer interrupt) can enter the same slot meanwhile. The
//! fast path then needs no atomic instruction.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use veridian_alloc::buddy::{BuddyAllocator, PAGE_SIZE};
use veridian_alloc::env::{CpuLocal, PageSource};
use veridian_alloc::{Heap, HeapStats};

use super::frames;
use super::paging::PHYS_OFFSET;
use crate::arch::x86_64::percpu::{CpuGuard, MAX_CPUS};

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
        // The heap's `len` is a multiple of `align` (the `PageSource` contract), so the block
        // order of `len` alone, which `release_chunk` recomputes, also meets `align`. A direct
        // block of a size that is not a power of two is rounded up to one here (the frame
        // allocator is a buddy allocator).
        let order = order_of(len, align)?;
        if order_of(len, PAGE_SIZE) != Some(order) {
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

/// The heap's CPU slots: this CPU's index, interrupts off while a slot is in use.
pub struct KernelCpus;

// SAFETY: a guard disables interrupts on this CPU until dropped, so no interrupt handler and
// no preemption (there is none without the timer interrupt) runs on this CPU meanwhile; the
// index is this CPU's own (per-CPU data installed before the CPU first allocates; before that
// only the bootstrap processor runs, with index 0), so no other CPU holds the same slot.
unsafe impl CpuLocal for KernelCpus {
    type Guard = CpuGuard;

    fn max_slots(&self) -> usize {
        MAX_CPUS
    }

    #[inline]
    fn enter(&self) -> Option<(usize, CpuGuard)> {
        Some(CpuGuard::enter())
    }
}

/// The kernel's global allocator.
#[global_allocator]
pub static HEAP: Heap<FramePages, KernelCpus, MAX_CPUS> = Heap::new(FramePages, KernelCpus);

/// Raw memory of any layout from the kernel heap, freed when dropped: for code that needs a
/// layout `Box` cannot express (an alignment above the size, a bare allocation with no value
/// in it, as the heap's tests use) without `unsafe` at the call site.
#[derive(Debug)]
pub struct RawBlock {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl RawBlock {
    /// Allocates `layout` (`None` for a zero size or when the heap cannot serve it; the heap
    /// counts the failure). The memory is uninitialised.
    #[inline]
    pub fn new(layout: Layout) -> Option<Self> {
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: the size is non-zero; the block is freed with the same layout in `drop`.
        let ptr = NonNull::new(unsafe { HEAP.alloc(layout) })?;
        Some(Self { ptr, layout })
    }

    /// Start of the block (aligned as the layout asked).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for RawBlock {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: allocated by `HEAP` with `self.layout` in `new`, freed once, here.
        unsafe { HEAP.dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// Allocates `layout` on the kernel heap and frees it at once; whether the allocation
/// succeeded. The body of `mode=bench`'s heap pair: the bare `GlobalAlloc::alloc` and
/// `dealloc`, with the pointer passed through `black_box` in between.
#[inline]
pub fn alloc_free_pair(layout: Layout) -> bool {
    if layout.size() == 0 {
        return false;
    }
    // SAFETY: non-zero size (checked above); freed at once with the same layout.
    let p = unsafe { HEAP.alloc(layout) };
    core::hint::black_box(p);
    if p.is_null() {
        return false;
    }
    // SAFETY: allocated just above with `layout`, not used since.
    unsafe { HEAP.dealloc(p, layout) };
    true
}

/// The heap's statistics.
pub fn stats() -> HeapStats {
    HEAP.stats()
}

/// Returns the heap's empty slabs and chunks to the frame allocator.
pub fn trim() {
    HEAP.trim();
}

/// `Box::new` that returns `None` when the heap is exhausted instead of panicking (stable Rust
/// has no `Box::try_new`).
pub fn try_box<T>(value: T) -> Option<alloc::boxed::Box<T>> {
    let layout = core::alloc::Layout::new::<T>();
    if layout.size() == 0 {
        return Some(alloc::boxed::Box::new(value));
    }
    // SAFETY: a layout of non-zero size (checked).
    let ptr = unsafe { alloc::alloc::alloc(layout) }.cast::<T>();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` is a fresh allocation of `T`'s layout from the global allocator, which is
    // what `Box::from_raw` needs once it holds an initialised `T` (written just before).
    unsafe {
        ptr.write(value);
        Some(alloc::boxed::Box::from_raw(ptr))
    }
}
