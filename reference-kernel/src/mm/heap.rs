//! The kernel heap: veridian-alloc's size-class [`Heap`] as the `#[global_allocator]`.
//!
//! What it does: small and medium objects come from the heap's slabs behind per-CPU magazines;
//! the heap's own buddy allocator gets its memory in chunks from [`FramePages`], which takes
//! naturally aligned blocks from the frame allocator ([`super::frames`]) and returns them on
//! [`Heap::trim`]. Out of memory is a null pointer, which `alloc`'s collections turn into
//! `handle_alloc_error` (a panic in this kernel, reported like any other).
//!
//! CPU slots: [`KernelCpus`] gives each CPU two slots. Thread context uses the CPU's thread
//! slot with only the preemption count raised for the length of one heap operation (no
//! interrupt-flag change: a `gs`-relative increment and decrement); interrupt and exception
//! handlers (`irq_depth` non-zero) use the CPU's interrupt slot, which needs interrupts off (as
//! handlers run; one that enabled them gets the heap's shared, locked slot). So neither
//! a preemption nor a handler that allocates while the interrupted thread is inside the heap
//! enters the slot in use, and the fast path needs no atomic instruction. The heap's internal
//! locks are taken with interrupts off ([`CpuLocal::lock_section`]), so a handler never spins
//! on a lock its own CPU's thread holds. The heap's fast paths find the thread slot through
//! [`CpuLocal::enter_slot`]: a pointer to it in the per-CPU block (`percpu::IrqDepth`), which
//! the interrupt entry nulls and the exit to depth zero restores, so a thread tests one pointer
//! and no interrupt depth, index or bounds.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use veridian_alloc::buddy::{BuddyAllocator, PAGE_SIZE};
use veridian_alloc::env::{CpuLocal, PageSource, SlotPtr};
use veridian_alloc::{Heap, HeapStats};

use super::frames;
use super::paging::PHYS_OFFSET;
use crate::arch::x86_64::percpu::{self, CpuGuard, MAX_CPUS, PreemptGuard};

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

/// The heap's CPU slots: two per CPU. Thread context (not inside an interrupt or exception
/// handler) uses slot `cpu`, pinned by the preemption count alone; handler context uses slot
/// `MAX_CPUS + cpu`, as handlers run, with interrupts off (a handler that enabled them gets the
/// shared slot). The heap's locks and page-source calls run with interrupts off in all cases
/// ([`CpuLocal::lock_section`]).
pub struct KernelCpus;

/// Slots of the kernel heap: a thread slot and an interrupt slot per CPU.
pub const HEAP_SLOTS: usize = 2 * MAX_CPUS;

// SAFETY: slot `i < MAX_CPUS` is handed out to thread context on CPU `i` only, with preemption
// disabled (the count is raised before the index is read, so the thread cannot migrate between
// the two, and the tick never switches threads while it is non-zero: no other thread runs on
// CPU `i` until the guard is dropped). Interrupt and exception handlers on CPU `i` see a
// non-zero `irq_depth` (the entry stub raises it before any Rust code runs) and never get slot
// `i`: with interrupts off (as every handler runs unless it enabled them) they get slot
// `MAX_CPUS + i`, and no other handler runs on CPU `i` until they return (the kernel's NMI
// handler does not allocate); with interrupts on they get slot `HEAP_SLOTS`, which the heap
// (`HEAP_SLOTS` per-CPU slots) serves from its shared slot, behind its lock. A thread that a
// handler interrupted sees `irq_depth` back at zero once the handler returned. Every slot is
// `<= HEAP_SLOTS < max_slots()`. `enter_slot` returns in `Ok` only the per-CPU block's heap slot
// pointer, which is null unless `enter_slow` set it to `HEAP.slot_ptr(i)` of this CPU `i`, and
// which the interrupt entry stub nulls while the depth is non-zero and the thread switch sets
// from the depth it restores (`percpu::IrqDepth`): so `Ok` is slot `i` in thread context on CPU
// `i` with preemption disabled, the same rule as `enter`'s. The lock
// section disables interrupts, so the heap's internal locks (and the frame allocator behind
// `FramePages`) are never held with interrupts on.
unsafe impl CpuLocal for KernelCpus {
    type Guard = PreemptGuard;

    fn max_slots(&self) -> usize {
        HEAP_SLOTS + 1
    }

    #[inline(always)]
    fn enter(&self) -> Option<(usize, PreemptGuard)> {
        let pin = PreemptGuard::new();
        if percpu::in_handler() {
            return Some((enter_handler(), pin));
        }
        Some((percpu::cpu_index(), pin))
    }

    #[inline]
    fn lock_section(&self) -> impl Sized {
        CpuGuard::enter().1
    }

    /// The heap's fast paths: with preemption disabled, the per-CPU block's heap slot pointer
    /// (one `gs`-relative load), which is this CPU's thread slot in thread context and null in
    /// a handler (the interrupt entry and exit keep it so, `percpu::IrqDepth`), so the thread
    /// path tests nothing about the interrupt depth. Null (a handler, or a CPU whose pointer
    /// is not set yet): [`enter_slow`].
    #[inline(always)]
    fn enter_slot(&self) -> Result<(SlotPtr, PreemptGuard), Option<(usize, PreemptGuard)>> {
        let pin = PreemptGuard::new();
        match SlotPtr::from_raw(percpu::heap_slot()) {
            Some(slot) => Ok((slot, pin)),
            None => Err(Some((enter_slow(), pin))),
        }
    }
}

/// [`KernelCpus::enter_slot`] when the per-CPU block has no heap slot pointer: in a handler,
/// [`enter_handler`]; in thread context (the first heap operation on this CPU), records this
/// CPU's thread slot in its block for the next operations and returns its index.
#[cold]
#[inline(never)]
fn enter_slow() -> usize {
    if percpu::in_handler() {
        return enter_handler();
    }
    let cpu = percpu::cpu_index();
    if let Some(slot) = HEAP.slot_ptr(cpu) {
        // SAFETY: `slot` is `HEAP`'s slot of this CPU's index, and `enter_slot`'s guard keeps
        // preemption disabled until after this returns.
        unsafe { percpu::init_heap_slot(slot.as_raw()) };
    }
    cpu
}

/// [`KernelCpus::enter`]'s slot in handler context: the CPU's interrupt slot while interrupts
/// are off (so no other handler enters it before this one returns), otherwise `HEAP_SLOTS`,
/// which the heap (`HEAP_SLOTS` per-CPU slots) serves from its shared, locked slot (a handler
/// that enabled interrupts could be interrupted by another that allocates). Always a slot, never
/// `None`: the thread path's code then does not test an `Option`.
#[cold]
#[inline(never)]
fn enter_handler() -> usize {
    if x86_64::instructions::interrupts::are_enabled() {
        return HEAP_SLOTS;
    }
    MAX_CPUS + percpu::cpu_index()
}

/// The kernel's global allocator.
#[global_allocator]
pub static HEAP: Heap<FramePages, KernelCpus, HEAP_SLOTS> = Heap::new(FramePages, KernelCpus);

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
