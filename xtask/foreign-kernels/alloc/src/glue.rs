//! What a kernel supplies to veridian-alloc: frames (the PVH memory map into the crate's own
//! `FrameAllocator`, served to the heap as a `PageSource`) and a `CpuLocal` (one CPU; the guard
//! keeps interrupts off while the heap works).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use veridian_alloc::buddy::PAGE_SIZE;
use veridian_alloc::frame::FrameAllocator;
use veridian_alloc::lock_api::Mutex;
use veridian_alloc::{CpuLocal, PageSource, SpinLock};

/// Physical frames, reached through the boot stub's identity map (direct-map offset 0).
pub struct Frames {
    frames: Mutex<SpinLock, Option<FrameAllocator>>,
    /// Calls the heap made, for the example's checks.
    pub chunks_given: AtomicUsize,
    pub chunks_taken_back: AtomicUsize,
}

impl Frames {
    pub const fn new() -> Self {
        Self {
            frames: Mutex::new(None),
            chunks_given: AtomicUsize::new(0),
            chunks_taken_back: AtomicUsize::new(0),
        }
    }

    /// Gives the allocator every RAM range of the PVH memory map above the image and below
    /// 1 GiB (the identity map); returns the bytes added.
    pub fn init_from_pvh(&self, start_info: u64) -> u64 {
        unsafe extern "C" {
            static __image_end: u8;
        }
        let image_end = (&raw const __image_end) as u64;
        // SAFETY: a direct-map offset of 0 is a multiple of 1 GiB.
        let mut frames = FrameAllocator::new(0).expect("offset 0 is valid");
        let mut added = 0;
        let info = start_info as *const u8;
        // SAFETY: QEMU's PVH loader passes a valid `hvm_start_info` (version >= 1 has the
        // memory map): magic at 0, version at 4, memmap_paddr at 40, memmap_entries at 48;
        // each entry is { addr: u64, size: u64, type: u32, reserved: u32 }, type 1 = RAM.
        // All of it lies below 1 GiB, in the identity map.
        unsafe {
            assert_eq!(info.cast::<u32>().read(), 0x336e_c578, "no PVH start info");
            assert!(
                info.add(4).cast::<u32>().read() >= 1,
                "PVH start info without a memory map"
            );
            let map = info.add(40).cast::<u64>().read() as *const u64;
            for i in 0..info.add(48).cast::<u32>().read() as usize {
                let entry = map.add(i * 3);
                let (base, size, kind) = (
                    entry.read(),
                    entry.add(1).read(),
                    entry.add(2).read() as u32,
                );
                let start = base.max(image_end).next_multiple_of(PAGE_SIZE as u64);
                let end = (base + size).min(1 << 30) & !(PAGE_SIZE as u64 - 1);
                if kind == 1 && end > start {
                    // SAFETY: RAM by the memory map, above the image, identity-mapped and used by
                    // nothing else (the boot stub's tables and stack are inside the image).
                    added += frames
                        .add_range(start, end - start)
                        .expect("a valid RAM range");
                }
            }
        }
        *self.frames.lock() = Some(frames);
        added
    }

    /// Free bytes in the frame allocator.
    pub fn free_bytes(&self) -> usize {
        self.frames
            .lock()
            .as_ref()
            .map_or(0, FrameAllocator::free_bytes)
    }
}

/// The buddy order that covers `len` bytes at alignment `align` (blocks are naturally aligned).
fn order_for(len: usize, align: usize) -> usize {
    let bytes = len.max(align).max(PAGE_SIZE).next_power_of_two();
    (bytes / PAGE_SIZE).trailing_zeros() as usize
}

// SAFETY: every chunk is a whole buddy block of at least `len` bytes, naturally aligned to its
// size (so to `align`), RAM in the identity map that the frame allocator hands out once until
// it is freed; the lock serialises callers on any CPU.
unsafe impl PageSource for Frames {
    fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
        let phys = self
            .frames
            .lock()
            .as_mut()?
            .allocate(order_for(len, align))
            .ok()?;
        self.chunks_given.fetch_add(1, Ordering::Relaxed);
        NonNull::new(core::ptr::with_exposed_provenance_mut(phys as usize))
    }

    unsafe fn release_chunk(&self, chunk: NonNull<u8>, len: usize) {
        // The heap gives back the `len` it asked for; the block it got was `order_for(len, _)`
        // (the alignment never exceeds the rounded length for the heap's requests).
        let phys = chunk.as_ptr().addr() as u64;
        let mut frames = self.frames.lock();
        if let Some(frames) = frames.as_mut() {
            // SAFETY: the block came from `allocate_chunk` with the same order and the heap
            // no longer uses it (the caller's contract).
            let freed = unsafe { frames.free(phys, order_for(len, PAGE_SIZE)) };
            freed.expect("the heap gave back a chunk it was given");
            self.chunks_taken_back.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One CPU. The guard saves RFLAGS and clears IF, restoring it on drop, so no interrupt handler
/// can enter the heap while it works (a multi-CPU kernel would also return its CPU index).
pub struct ThisCpu;

/// Restores the interrupt flag `enter` found.
pub struct IrqGuard(bool);

impl Drop for IrqGuard {
    fn drop(&mut self) {
        if self.0 {
            // SAFETY: IF was set when the guard was made; `sti` only sets it back.
            unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
        }
    }
}

// SAFETY: there is one CPU and the guard keeps interrupts off while it lives, so no other
// context can hold slot 0 at the same time; `max_slots` is constant.
unsafe impl CpuLocal for ThisCpu {
    type Guard = IrqGuard;

    fn max_slots(&self) -> usize {
        1
    }

    fn enter(&self) -> Option<(usize, IrqGuard)> {
        let flags: u64;
        // SAFETY: reads RFLAGS and clears IF; touches no memory but the stack.
        unsafe { core::arch::asm!("pushfq", "pop {}", "cli", out(reg) flags, options(nomem)) };
        Some((0, IrqGuard(flags & (1 << 9) != 0)))
    }
}
