//! DMA memory for devices: `virtio-drivers`' [`Hal`] over the frame allocator and the direct map.
//!
//! * `dma_alloc`: a zeroed block of frames (`4 KiB << order`, the smallest order holding the
//!   pages) from [`frames::allocate`]; the device address is the physical address (no IOMMU),
//!   the driver's pointer its direct-map alias.
//! * `mmio_phys_to_virt`: the direct-map alias of a BAR range. `drivers::pci` only hands a
//!   device to the virtio transport after checking every memory BAR it has lies in the direct
//!   map and clear of RAM, so the refusal here (a panic, which the trait allows) is not reached
//!   for a device that keeps its BARs where they were.
//! * `share`/`unshare` for a buffer in the direct map: its physical address, and nothing else.
//!   That is correct on x86 because DMA is cache-coherent (the device's reads and writes snoop
//!   the CPU caches, so no flush or invalidate is needed) and there is no IOMMU or encrypted
//!   memory (physical address = device address). For a buffer outside the direct map (the
//!   request header and status byte `virtio-drivers` keeps on the caller's stack; kernel stacks
//!   are mapped page by page from separate frames, so they are neither in the direct map nor
//!   physically contiguous), `share` copies it into a bounce block of frames and `unshare`
//!   copies a device-written buffer back and frees the block. The block driver's reads and
//!   writes pass data, header and status in DMA memory, so only its flush goes through a bounce.

use core::ptr::NonNull;

use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use super::frames;
use crate::arch::x86_64::layout::{PHYS_OFFSET, direct_map_end, phys_to_virt};

/// The kernel's [`Hal`] for `virtio-drivers`.
pub struct KernelHal;

/// Smallest order whose block holds `bytes`.
fn order_for(bytes: usize) -> usize {
    let pages = bytes.div_ceil(4096).max(1);
    pages.next_power_of_two().trailing_zeros() as usize
}

/// The physical address of `[virt, virt + len)` if it lies in the direct map.
fn direct_map_phys(virt: u64, len: usize) -> Option<u64> {
    let phys = virt.checked_sub(PHYS_OFFSET)?;
    (phys.checked_add(len as u64)? <= direct_map_end()).then_some(phys)
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned memory from the frame allocator that nothing
// else owns until `dma_dealloc` gives it back, reached through the direct map (so the pointer is
// valid for the whole block) with the block's physical address as device address.
// `mmio_phys_to_virt` returns the direct-map alias of the range or panics. `share` returns an
// address the device can use for exactly the buffer's bytes (its own in the direct map, or a
// bounce block holding a copy) and `unshare` makes the device's writes visible in the buffer.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let order = order_for(pages.saturating_mul(4096));
        let Ok(phys) = frames::allocate(order) else {
            // `virtio-drivers` reads a physical address of 0 as "out of DMA memory".
            return (0, NonNull::dangling());
        };
        let len = 4096u64 << order;
        let Some(virt) = phys_to_virt(phys, len) else {
            // SAFETY: just allocated with this order, not handed out.
            let _ = unsafe { frames::free(phys, order) };
            return (0, NonNull::dangling());
        };
        // SAFETY: the block is ours (just allocated) and mapped writable by the direct map for
        // its whole length (checked above).
        unsafe { core::ptr::write_bytes(virt as *mut u8, 0, len as usize) };
        match NonNull::new(virt as *mut u8) {
            Some(ptr) => (phys, ptr),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: the caller passes what `dma_alloc` returned for `pages`, which gives the same
        // order; the memory is not used after this.
        match unsafe { frames::free(paddr, order_for(pages.saturating_mul(4096))) } {
            Ok(()) => 0,
            Err(_) => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        phys_to_virt(paddr, size as u64)
            .and_then(|virt| NonNull::new(virt as *mut u8))
            .unwrap_or_else(|| {
                panic!("virtio: MMIO {paddr:#x}+{size:#x} outside the direct map (BARs were checked at enumeration)")
            })
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let len = buffer.len();
        let virt = buffer.cast::<u8>().as_ptr() as u64;
        if let Some(phys) = direct_map_phys(virt, len) {
            return phys;
        }
        let order = order_for(len);
        let phys = frames::allocate(order)
            .unwrap_or_else(|e| panic!("virtio: no frames for a {len}-byte bounce buffer: {e}"));
        let bounce = PHYS_OFFSET + phys;
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller guarantees `buffer` is valid for reads of `len` bytes; the
            // bounce block is ours, in the direct map (frames are), and at least `len` long.
            unsafe {
                core::ptr::copy_nonoverlapping(buffer.cast::<u8>().as_ptr(), bounce as *mut u8, len)
            };
        }
        phys
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let len = buffer.len();
        let virt = buffer.cast::<u8>().as_ptr() as u64;
        if direct_map_phys(virt, len).is_some() {
            return;
        }
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: `paddr` is the bounce block `share` made for this buffer (the caller's
            // contract), in the direct map; the caller guarantees `buffer` is valid for writes
            // and not accessed by anyone else meanwhile.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    (PHYS_OFFSET + paddr) as *const u8,
                    buffer.cast::<u8>().as_ptr(),
                    len,
                )
            };
        }
        // SAFETY: the block `share` allocated with this order for this buffer; the device is
        // done with it (the caller unshares after the request completed).
        if let Err(e) = unsafe { frames::free(paddr, order_for(len)) } {
            log::error!("virtio: freeing bounce block {paddr:#x} failed: {e}");
        }
    }
}

// SAFETY: `FramePages` hands out blocks of frames through the direct map (see its
// `PageSource` implementation), which is physically contiguous per block: the device address
// of a byte is its physical address (no IOMMU), the direct-map address minus `PHYS_OFFSET`,
// and `KernelHal::share` gives the same address for these buffers. The frame allocator's lock
// makes it callable from any CPU; the type has no state.
unsafe impl veridian_io::DmaSource for super::heap::FramePages {
    fn device_address(&self, ptr: NonNull<u8>) -> u64 {
        ptr.as_ptr() as u64 - PHYS_OFFSET
    }
}
