//! What the allocator needs from its environment: a source of memory and the current CPU.
//!
//! Both are traits the embedder implements (a kernel with its frame allocator and per-CPU data;
//! the `std` feature supplies hosted versions in `hosted`); [`PageSource`] is defined once for
//! all the Veridian crates in `veridian-embed` and re-exported here. Both are `unsafe` traits:
//! a wrong implementation breaks memory safety, so each method says what it must guarantee.
//!
//! # An embedder, as a `no_std` kernel writes one
//!
//! A page source carving chunks from a static arena (a kernel would ask its frame allocator
//! and return addresses in its direct map), and a per-CPU guard for a kernel with up to four
//! CPUs (here the CPU index and the interrupt flag are stand-ins: a kernel reads its per-CPU
//! block and disables interrupts while the guard lives):
//!
//! ```
//! use core::alloc::Layout;
//! use core::ptr::NonNull;
//! use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
//! use veridian_alloc::env::{CpuLocal, PageSource};
//! use veridian_alloc::{CHUNK_SIZE, Heap};
//!
//! /// Two chunks' worth of memory, aligned to the chunk size as the heap asks.
//! #[repr(C, align(4194304))]
//! struct Memory([u8; 2 * CHUNK_SIZE]);
//! static mut MEMORY: Memory = Memory([0; 2 * CHUNK_SIZE]);
//!
//! /// Hands out the arena front to back; released chunks are not reused in this sketch.
//! struct Arena {
//!     used: AtomicUsize,
//! }
//!
//! // SAFETY: each chunk is a distinct, aligned, writable part of `MEMORY`, handed out once
//! // (the compare-exchange claims it), and nothing else uses `MEMORY`.
//! unsafe impl PageSource for Arena {
//!     fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
//!         let base = (&raw mut MEMORY).cast::<u8>();
//!         let mut used = self.used.load(Ordering::Relaxed);
//!         loop {
//!             let start = used.checked_next_multiple_of(align)?;
//!             let end = start.checked_add(len)?;
//!             if end > 2 * CHUNK_SIZE {
//!                 return None;
//!             }
//!             match self.used.compare_exchange(used, end, Ordering::AcqRel, Ordering::Relaxed) {
//!                 // SAFETY: `start + len <= 2 * CHUNK_SIZE`: inside `MEMORY`.
//!                 Ok(_) => return NonNull::new(unsafe { base.add(start) }),
//!                 Err(now) => used = now,
//!             }
//!         }
//!     }
//!
//!     unsafe fn release_chunk(&self, _chunk: NonNull<u8>, _len: usize) {}
//! }
//!
//! /// Slot = CPU index; the guard stands for "interrupts off on this CPU".
//! struct Cpus;
//!
//! /// Whether a guard is out (one CPU in this sketch).
//! static IN_USE: AtomicBool = AtomicBool::new(false);
//!
//! struct Guard;
//! impl Drop for Guard {
//!     fn drop(&mut self) {
//!         IN_USE.store(false, Ordering::Release); // a kernel: restore the interrupt flag
//!     }
//! }
//!
//! fn this_cpu() -> usize {
//!     0 // a kernel: one `gs`-relative load of its per-CPU block
//! }
//!
//! // SAFETY: slot `i` is only handed out while no other guard of slot `i` lives (the flag
//! // here; a kernel: the guard keeps its CPU's interrupts off, so nothing else on that CPU
//! // runs meanwhile), and slots stay below `max_slots`.
//! unsafe impl CpuLocal for Cpus {
//!     type Guard = Guard;
//!     fn max_slots(&self) -> usize {
//!         4
//!     }
//!     fn enter(&self) -> Option<(usize, Guard)> {
//!         // A nested entry (an interrupt handler inside an allocation) gets no slot: the
//!         // heap then uses its shared, locked slot.
//!         if IN_USE.swap(true, Ordering::Acquire) {
//!             return None;
//!         }
//!         Some((this_cpu(), Guard))
//!     }
//! }
//!
//! // In a kernel: `#[global_allocator]` on this static.
//! static HEAP: Heap<Arena, Cpus, 4> = Heap::new(Arena { used: AtomicUsize::new(0) }, Cpus);
//!
//! let layout = Layout::from_size_align(64, 8).unwrap();
//! let p = HEAP.allocate(layout);
//! assert!(!p.is_null());
//! // SAFETY: allocated just above with `layout`.
//! unsafe { HEAP.deallocate(p, layout) };
//! ```

/// Where the heap gets memory from: the workspace-wide embedder trait of `veridian-embed`,
/// re-exported (a kernel that also embeds veridian-io implements it once).
///
/// # What the heap asks for
///
/// Two kinds of chunk: buddy chunks, `len == align`, a power of two (the configured chunk
/// size, 4 MiB by default, or twice a large block that needs more), and direct blocks for
/// requests above half the chunk size, where `align` is a power of two of at least the page
/// size and `len` a multiple of `align` (the request's size rounded up, so a 3 MiB `Vec` asks
/// for 3 MiB at 4 KiB alignment). A source that can only hand out power-of-two blocks (a buddy
/// frame allocator) may round `len` up internally; `release_chunk` gets the same `len` back,
/// so it can round it the same way.
///
/// The heap calls both methods with its `CpuLocal` guard held and inside
/// [`CpuLocal::lock_section`], so in a kernel whose guard or lock section disables interrupts
/// they run with interrupts off.
pub use veridian_embed::PageSource;

use core::ptr::NonNull;

/// The current CPU, and a guard that keeps the caller on it.
///
/// # Locks
///
/// [`Heap`](crate::Heap) and [`ObjectPool`](crate::ObjectPool) take every internal lock (the
/// heap's buddy lock and shared-slot lock, the pool's depot and shared-slot locks) only while
/// they hold a guard from [`CpuLocal::enter`], and release it before dropping the guard; that
/// includes large allocations and frees, `stats` and `trim`, which take a guard only for that.
/// Each of those locks is also held inside [`CpuLocal::lock_section`]. So an embedder whose
/// guard disables interrupts, or whose lock section does (a kernel needs one of the two if its
/// interrupt handlers allocate), gets an allocator that interrupt handlers may use: no handler
/// can interrupt a holder of one of those locks on its own CPU and spin on it forever. When `enter`
/// returns `None` there is no guard to hold, and the heap takes its locks with whatever
/// interrupt state the caller has: an embedder that returns `None` must not allocate from
/// interrupt handlers (or must itself call the heap only with interrupts off).
///
/// # Safety
/// While a guard returned by [`CpuLocal::enter`] with slot `i` lives, no other execution
/// context may hold a guard for slot `i`: not another CPU or thread, and not an interrupt
/// handler on the same CPU (a kernel disables preemption, and, if interrupt handlers allocate,
/// either disables interrupts too or gives interrupt handlers slots of their own). Slots must
/// be `< max_slots()`, and `max_slots()` must never change.
/// The heap relies on this to touch its per-CPU caches without atomic read-modify-write
/// instructions.
///
/// An implementation that overrides [`CpuLocal::enter_slot`] must return in `Ok` only a
/// [`SlotPtr`] that [`Heap::slot_ptr`](crate::Heap::slot_ptr)`(i)` of the heap calling it
/// returned (so a value of such a type serves one heap), and the rule above holds for that
/// slot `i` while the guard returned with it lives.
pub unsafe trait CpuLocal {
    /// Held for the duration of one allocator operation; dropping it releases the slot.
    type Guard;

    /// Number of distinct slots `enter` can return.
    fn max_slots(&self) -> usize;

    /// Pins the caller to a slot, or returns `None` when no slot can be had (the heap then uses
    /// a shared, locked slot: slower, still correct; see "Locks" above for what `None` means for
    /// interrupt handlers).
    fn enter(&self) -> Option<(usize, Self::Guard)>;

    /// Called by the heap and the pool, under what `enter` returned, just before they take one
    /// of their internal locks or call the [`PageSource`]; the value returned is dropped just
    /// after the lock is released (or the call returned). The default does nothing, which is
    /// right when the guard itself already disables interrupts (or nothing allocates from
    /// interrupt handlers).
    ///
    /// For an embedder whose guard only pins the caller (a kernel's preemption count, so that
    /// the fast path costs no interrupt-flag changes) while interrupt handlers allocate too,
    /// with slots of their own: return a guard that disables interrupts on this CPU until
    /// dropped, so that no handler interrupts a lock holder on its own CPU and spins on that
    /// lock forever (see "Locks" above).
    #[inline(always)]
    fn lock_section(&self) -> impl Sized {}

    /// What the heap's small-object fast paths call instead of [`CpuLocal::enter`]: `Ok` with
    /// the pinned slot as a pointer the embedder keeps (a kernel: in its per-CPU block,
    /// switched by its interrupt entry and exit, so that the thread path tests nothing else),
    /// or `Err` with what `enter` returns. The default is `Err(self.enter())`, which the
    /// compiler folds away: the heap then works exactly as through `enter`. See the trait's
    /// safety section for what `Ok` must hold.
    #[inline(always)]
    #[allow(clippy::type_complexity)]
    fn enter_slot(&self) -> Result<(SlotPtr, Self::Guard), Option<(usize, Self::Guard)>> {
        Err(self.enter())
    }
}

/// One of a [`Heap`](crate::Heap)'s per-CPU slots, as [`Heap::slot_ptr`](crate::Heap::slot_ptr)
/// gives it: an address an embedder keeps in its per-CPU data and hands back from
/// [`CpuLocal::enter_slot`], so that the heap's fast path finds the slot with one load instead
/// of an index, a bounds check and a multiplication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotPtr(NonNull<u8>);

impl SlotPtr {
    /// A pointer from the heap (`crate::Heap::slot_ptr`).
    pub(crate) const fn new(ptr: NonNull<u8>) -> Self {
        Self(ptr)
    }

    /// The address, to keep (in per-CPU data, say) and turn back with [`SlotPtr::from_raw`].
    pub const fn as_raw(self) -> *mut u8 {
        self.0.as_ptr()
    }

    /// The slot pointer whose [`SlotPtr::as_raw`] was `ptr`; `None` for null. (Any other
    /// address is no slot: the `unsafe impl` of [`CpuLocal`] answers for what `enter_slot`
    /// returns.)
    #[inline(always)]
    pub const fn from_raw(ptr: *mut u8) -> Option<Self> {
        match NonNull::new(ptr) {
            Some(p) => Some(Self(p)),
            None => None,
        }
    }

    /// The pointer.
    #[inline(always)]
    pub(crate) const fn get(self) -> NonNull<u8> {
        self.0
    }
}

/// A [`CpuLocal`] for single-CPU environments with no preemption and no allocation from
/// interrupt handlers (early boot, simple embedded uses): always slot 0.
#[derive(Debug)]
pub struct SingleCpu {
    _private: (),
}

impl SingleCpu {
    /// The single slot.
    ///
    /// # Safety
    /// The heap using it must only ever be entered from one execution context at a time: one
    /// CPU, no threads, no allocation from interrupt handlers that can interrupt an allocation.
    pub const unsafe fn new() -> Self {
        Self { _private: () }
    }
}

// SAFETY: `SingleCpu::new`'s contract (one execution context, no re-entry from interrupts)
// means only one guard for slot 0 can exist at a time.
unsafe impl CpuLocal for SingleCpu {
    type Guard = ();

    fn max_slots(&self) -> usize {
        1
    }

    #[inline]
    fn enter(&self) -> Option<(usize, ())> {
        Some((0, ()))
    }
}
