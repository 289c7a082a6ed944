//! Slabs: one buddy block per slab, carved into equal objects of one size class.
//!
//! A slab is a naturally aligned block of `slab_bytes(class)` bytes (16..=256 KiB) from the buddy
//! allocator. Objects start at the slab's base, so an object of a class whose size is a multiple
//! of `align` is aligned to `align`; the [`SlabHeader`] occupies the last
//! [`SLAB_HEADER_SIZE`] bytes, and the slab containing an object is found by masking its address.
//!
//! Objects are handed out lazily: `bump` is the index of the first object never handed out, so
//! creating a slab touches only its header. A free object of a slab stores the link of the
//! slab's free list in its first word.
//!
//! A slab is owned by one CPU slot (`owner`), and **only the owner's guard holder touches its
//! header** except for `owner` and `class`, which are written once, before any object of the slab
//! is handed out, and only read by others (through the happens-before edge by which they got the
//! object). Other CPUs give objects back through the owner's remote queues (see `heap.rs`).
//!
//! All operations are O(1).

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, Ordering};

use crate::size_class::{CLASS_SIZES, SLAB_HEADER_SIZE, objects_per_slab, slab_bytes};

/// A free object: its first word links to the next one.
#[repr(C)]
pub(crate) struct FreeObject {
    pub(crate) next: *mut FreeObject,
}

const SLAB_MAGIC: u32 = 0x5EAB_0B1E;

/// Per-slab metadata, stored at the end of the slab.
#[repr(C)]
pub(crate) struct SlabHeader {
    /// Objects given back to the slab.
    free: *mut FreeObject,
    /// Neighbours in the owner's partial list of this class.
    pub(crate) prev: *mut SlabHeader,
    pub(crate) next: *mut SlabHeader,
    /// Objects `bump..capacity` have never been handed out.
    bump: u32,
    capacity: u32,
    /// Objects handed out (to callers or to a CPU cache) and not given back to the slab.
    pub(crate) in_use: u32,
    /// Owning CPU slot; written once at creation.
    owner: AtomicU32,
    magic: u32,
    class: u8,
    /// Whether the slab is on its owner's partial list.
    pub(crate) on_partial: bool,
}

const _: () = assert!(core::mem::size_of::<SlabHeader>() <= SLAB_HEADER_SIZE);

impl SlabHeader {
    /// Lays out a new, empty slab in `block` (a block of `slab_bytes(class)` bytes aligned to
    /// that size) and returns its header.
    ///
    /// # Safety
    /// `block` is such a block, exclusively owned by the caller.
    pub(crate) unsafe fn init(block: NonNull<u8>, class: usize, owner: u32) -> *mut SlabHeader {
        let header = header_of_base(block.as_ptr(), class);
        // SAFETY: the header lies in the last SLAB_HEADER_SIZE bytes of the block, which the
        // caller owns; it is 8-byte aligned (slab size and header size are multiples of 64).
        unsafe {
            header.write(SlabHeader {
                free: ptr::null_mut(),
                prev: ptr::null_mut(),
                next: ptr::null_mut(),
                bump: 0,
                capacity: objects_per_slab(class) as u32,
                in_use: 0,
                owner: AtomicU32::new(owner),
                magic: SLAB_MAGIC,
                class: class as u8,
                on_partial: false,
            })
        };
        header
    }

    /// Base address of the slab.
    pub(crate) fn base(this: *mut SlabHeader) -> *mut u8 {
        // SAFETY: reading `class` of a live header (written once at init).
        let class = unsafe { (*this).class } as usize;
        this.cast::<u8>()
            .wrapping_add(SLAB_HEADER_SIZE)
            .wrapping_sub(slab_bytes(class))
    }

    /// Owner of the slab `header`, the [`slab_of`] an object of class `class` (for the debug
    /// check's message).
    ///
    /// # Safety
    /// `header` is the slab of an object of class `class` currently handed out (so the slab is
    /// live).
    #[inline]
    pub(crate) unsafe fn owner(header: *mut SlabHeader, class: usize) -> u32 {
        // SAFETY: the slab is live while one of its objects is handed out; `owner` is atomic and
        // written before the object was first handed out.
        let h = unsafe { &*header };
        debug_assert_eq!(
            h.magic, SLAB_MAGIC,
            "slab header {header:p} is not a class-{class} slab's"
        );
        h.owner.load(Ordering::Relaxed)
    }

    /// Whether the slab can hand out another object.
    pub(crate) fn has_available(&self) -> bool {
        !self.free.is_null() || self.bump < self.capacity
    }

    /// Hands out up to `max` objects, linking them onto `*list`; returns how many.
    ///
    /// # Safety
    /// The caller is the owner's guard holder; `self` is a live slab of class `class` and `base`
    /// is [`SlabHeader::base`] of a pointer to it that is valid for the whole slab (a reference
    /// to the header only covers the header, so the caller computes `base` from its raw
    /// pointer).
    pub(crate) unsafe fn take(
        &mut self,
        base: *mut u8,
        class: usize,
        max: u32,
        list: &mut *mut FreeObject,
    ) -> u32 {
        let mut taken = 0;
        while taken < max && !self.free.is_null() {
            let obj = self.free;
            // SAFETY: objects on the slab's free list are free objects of this slab, whose first
            // word is the link.
            self.free = unsafe { (*obj).next };
            // SAFETY: `obj` is a free object we now own; we reuse its first word as the link.
            unsafe { (*obj).next = *list };
            *list = obj;
            taken += 1;
        }
        // Objects never handed out, `bump .. bump + fresh`, chained in ascending address order
        // (the lowest is handed out first) in one pass.
        let fresh = (max - taken).min(self.capacity - self.bump);
        if fresh > 0 {
            let size = CLASS_SIZES[class];
            let first = base.wrapping_add(self.bump as usize * size);
            let mut obj = first.cast::<FreeObject>();
            for _ in 1..fresh {
                let next = obj.cast::<u8>().wrapping_add(size).cast::<FreeObject>();
                // SAFETY: objects `bump .. bump + fresh` lie inside the slab, below the header
                // (`bump + fresh <= capacity`), and were never handed out.
                unsafe { (*obj).next = next };
                obj = next;
            }
            // SAFETY: as above, for the last of them.
            unsafe { (*obj).next = *list };
            *list = first.cast();
            self.bump += fresh;
            taken += fresh;
        }
        self.in_use += taken;
        taken
    }

    /// Gives `count` objects back to the slab: the chain `head ..= tail` (linked through
    /// their first words; `tail`'s link is overwritten).
    ///
    /// # Safety
    /// The caller is the owner's guard holder; the chain is `count` distinct objects of this
    /// slab that are handed out, and the caller gives up all use of them.
    pub(crate) unsafe fn give_back_chain(
        &mut self,
        head: *mut FreeObject,
        tail: *mut FreeObject,
        count: u32,
    ) {
        debug_assert!(self.in_use >= count);
        // SAFETY: `tail` is an object of this slab that the caller no longer uses.
        unsafe { (*tail).next = self.free };
        self.free = head;
        self.in_use -= count;
    }
}

#[inline]
fn header_of_base(base: *mut u8, class: usize) -> *mut SlabHeader {
    base.wrapping_add(slab_bytes(class) - SLAB_HEADER_SIZE)
        .cast()
}

/// Header of the slab containing `obj`, an object of class `class`. Keeps `obj`'s provenance
/// (the whole slab is one buddy block, so it covers the header).
#[inline]
pub(crate) fn slab_of(obj: *mut u8, class: usize) -> *mut SlabHeader {
    let mask = !(slab_bytes(class) - 1);
    header_of_base(obj.map_addr(|a| a & mask), class)
}
