//! A bump allocator over a static arena, for the examples whose crate needs a heap but does
//! not bring one (veridian-sched's queues, veridian-io's rings and buffers): an outsider's
//! kernel would use its own heap here. Included as `#[path = "../../boot/bump.rs"] mod bump;`.
//!
//! Allocation moves a pointer; freeing gives memory back only when the block is the last one
//! handed out (enough for these short runs, not for a kernel that runs long).

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of the arena.
const ARENA_SIZE: usize = 16 << 20;

/// The arena, 4 KiB-aligned.
#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; ARENA_SIZE]>);

// SAFETY: bytes of the arena are only reached through blocks `Bump` hands out, each to one
// owner at a time.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_SIZE]));

/// The allocator: `next` is the offset of the first free byte.
pub struct Bump {
    next: AtomicUsize,
}

impl Bump {
    pub const fn new() -> Self {
        Self {
            next: AtomicUsize::new(0),
        }
    }

    /// Bytes in use (up to the last block not freed).
    pub fn used(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }
}

// SAFETY: each block is a distinct range of the arena (claimed by the compare-exchange),
// aligned as asked, and the arena lives forever; a block is reclaimed only when it is the
// last one and its owner freed it.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = ARENA.0.get().cast::<u8>();
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let start = (base.addr() + next).next_multiple_of(layout.align()) - base.addr();
            let Some(end) = start
                .checked_add(layout.size())
                .filter(|&e| e <= ARENA_SIZE)
            else {
                return core::ptr::null_mut();
            };
            match self
                .next
                .compare_exchange(next, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                // SAFETY: `start + size <= ARENA_SIZE`: inside the arena.
                Ok(_) => return unsafe { base.add(start) },
                Err(now) => next = now,
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let start = ptr.addr() - ARENA.0.get().addr();
        // The last block: move the pointer back (fails harmlessly if another came after).
        let _ = self.next.compare_exchange(
            start + layout.size(),
            start,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}
