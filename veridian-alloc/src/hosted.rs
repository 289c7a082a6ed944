//! Hosted (Linux) implementations of the embedder traits, behind the `std` feature.
//!
//! - [`MmapPages`]: chunks from anonymous `mmap`, given back with `munmap`.
//! - [`SystemPages`]: chunks from the process's system allocator (useful under Miri, which does
//!   not model every `mmap` use).
//! - [`ThreadSlots`]: each thread claims a distinct slot (a stand-in for "the current CPU") the
//!   first time it allocates, keeps it until it exits, and frees it then. Claiming is one atomic
//!   operation per thread lifetime; after that, entering a slot is a thread-local read.

use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::env::{CpuLocal, PageSource};

/// Chunks from anonymous private `mmap`.
#[derive(Debug, Default, Clone, Copy)]
pub struct MmapPages;

// SAFETY: `allocate_chunk` returns exactly `len` bytes aligned to `align` that no one else maps
// (fresh anonymous mapping, trimmed with munmap), readable and writable; `release_chunk` unmaps
// exactly such a chunk. mmap/munmap are thread-safe.
unsafe impl PageSource for MmapPages {
    fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
        let span = len.checked_add(align)?;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing has no
        // preconditions; the result is checked for MAP_FAILED.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let start = base as usize;
        let aligned = (start + align - 1) & !(align - 1);
        let head = aligned - start;
        let tail = span - head - len;
        // SAFETY: both trimmed ranges are inside the mapping we just made and nothing uses them.
        unsafe {
            if head > 0 {
                libc::munmap(base, head);
            }
            if tail > 0 {
                libc::munmap((aligned + len) as *mut libc::c_void, tail);
            }
        }
        NonNull::new(aligned as *mut u8)
    }

    unsafe fn release_chunk(&self, ptr: NonNull<u8>, len: usize) {
        // SAFETY: by the caller's contract this is exactly a chunk we mapped and nobody uses.
        unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
    }
}

/// Chunks from `std::alloc::System`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemPages;

// SAFETY: the system allocator returns exclusive, aligned, writable memory of the layout's size,
// and `release_chunk` frees it with the same layout.
unsafe impl PageSource for SystemPages {
    fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
        let layout = core::alloc::Layout::from_size_align(len, align).ok()?;
        // SAFETY: the layout has a non-zero size (len >= one page by the trait's contract).
        NonNull::new(unsafe { std::alloc::System.alloc_layout(layout) })
    }

    unsafe fn release_chunk(&self, ptr: NonNull<u8>, len: usize) {
        // The alignment used at allocation is not passed back; chunks are always allocated with
        // align == len by the heap, and the system allocator needs the same layout.
        if let Ok(layout) = core::alloc::Layout::from_size_align(len, len) {
            // SAFETY: by the caller's contract the chunk came from `allocate_chunk(len, len)`.
            unsafe { std::alloc::GlobalAlloc::dealloc(&std::alloc::System, ptr.as_ptr(), layout) };
        }
    }
}

trait SystemAllocExt {
    /// # Safety
    /// `layout` has a non-zero size.
    unsafe fn alloc_layout(&self, layout: core::alloc::Layout) -> *mut u8;
}

impl SystemAllocExt for std::alloc::System {
    unsafe fn alloc_layout(&self, layout: core::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { std::alloc::GlobalAlloc::alloc(self, layout) }
    }
}

/// Number of thread slots [`ThreadSlots`] can hand out.
pub const MAX_THREAD_SLOTS: usize = 256;

/// Slot bitmap shared by every `ThreadSlots` (a thread has one slot, like a CPU has one index).
static SLOTS_IN_USE: [AtomicU64; MAX_THREAD_SLOTS / 64] =
    [const { AtomicU64::new(0) }; MAX_THREAD_SLOTS / 64];

const UNCLAIMED: usize = usize::MAX;
const GONE: usize = usize::MAX - 1;

/// Releases the thread's slot when the thread exits.
struct SlotOwner;

impl Drop for SlotOwner {
    fn drop(&mut self) {
        let _ = SLOT.try_with(|s| {
            let index = s.replace(GONE);
            if index < MAX_THREAD_SLOTS {
                SLOTS_IN_USE[index / 64].fetch_and(!(1u64 << (index % 64)), Ordering::Release);
            }
        });
    }
}

std::thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(UNCLAIMED) };
    static OWNER: SlotOwner = const { SlotOwner };
}

fn claim() -> usize {
    for (word, bits) in SLOTS_IN_USE.iter().enumerate() {
        let mut current = bits.load(Ordering::Relaxed);
        while current != u64::MAX {
            let bit = (!current).trailing_zeros() as usize;
            match bits.compare_exchange_weak(
                current,
                current | (1 << bit),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return word * 64 + bit,
                Err(now) => current = now,
            }
        }
    }
    GONE
}

/// Per-thread slots for hosted use (see the module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadSlots;

/// Guard of a [`ThreadSlots`] slot: not `Send`, so it stays on the thread that owns the slot.
#[derive(Debug)]
pub struct ThreadSlotGuard(PhantomData<*const ()>);

// SAFETY: a slot index is claimed in the global bitmap by exactly one thread (CAS), stored in
// that thread's TLS, and released only by that thread's TLS destructor, after which the thread
// gets `None`. So two live guards for the same slot would need one thread to hold two, which
// happens only on re-entry (a signal handler allocating during an allocation), which Rust's
// global-allocator contract already excludes (allocation is not async-signal-safe).
unsafe impl CpuLocal for ThreadSlots {
    type Guard = ThreadSlotGuard;

    fn max_slots(&self) -> usize {
        MAX_THREAD_SLOTS
    }

    #[inline]
    fn enter(&self) -> Option<(usize, ThreadSlotGuard)> {
        let index = SLOT.try_with(|s| {
            let mut index = s.get();
            if index == UNCLAIMED {
                index = claim();
                s.set(index);
                // Registers the destructor that gives the slot back.
                let _ = OWNER.try_with(|_| ());
            }
            index
        });
        match index {
            Ok(i) if i < MAX_THREAD_SLOTS => Some((i, ThreadSlotGuard(PhantomData))),
            _ => None,
        }
    }
}
