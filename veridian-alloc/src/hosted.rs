//! Hosted (Linux) implementations of the embedder traits, behind the `std` feature.
//!
//! - [`MmapPages`]: chunks from anonymous `mmap`, given back with `munmap`.
//! - [`MmapHugePages`]: the same, with transparent huge pages asked for (`MADV_HUGEPAGE`) on
//!   chunks of 2 MiB and more.
//! - [`SystemPages`]: naturally aligned chunks from the process's system allocator (useful
//!   under Miri, which does not model every `mmap` use).
//! - [`ThreadSlots`]: each thread claims a distinct slot (a stand-in for "the current CPU") the
//!   first time it allocates, keeps it until it exits, and frees it then. Claiming is one atomic
//!   operation per thread lifetime; after that, entering a slot is a thread-local read.
//!   [`flush_at_thread_exit`] registers a `'static` heap whose per-slot remote-free batches a
//!   thread sends to their owners as it exits, before it gives its slot up.

use core::alloc::GlobalAlloc;
use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::env::{CpuLocal, PageSource};

/// Chunks from anonymous private `mmap`, in 4 KiB pages (see [`MmapHugePages`] for the same
/// with transparent huge pages).
#[derive(Debug, Default, Clone, Copy)]
pub struct MmapPages;

// SAFETY: `allocate_chunk` returns exactly `len` bytes aligned to `align` that no one else maps
// (fresh anonymous mapping, trimmed with munmap), readable and writable; `release_chunk` unmaps
// exactly such a chunk. mmap/munmap are thread-safe.
unsafe impl PageSource for MmapPages {
    fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
        map_aligned(len, align)
    }

    unsafe fn release_chunk(&self, ptr: NonNull<u8>, len: usize) {
        // SAFETY: by the caller's contract this is exactly a chunk we mapped and nobody uses.
        unsafe { unmap(ptr, len) };
    }
}

/// The size of a transparent huge page on x86_64 (a PMD mapping).
pub const HUGE_PAGE_SIZE: usize = 2 << 20;

/// Chunks from anonymous private `mmap`, as [`MmapPages`], with transparent huge pages asked
/// for: a chunk of at least [`HUGE_PAGE_SIZE`] is mapped at a 2 MiB-aligned address (whatever
/// smaller alignment was asked) and marked `madvise(MADV_HUGEPAGE)`, so that with
/// `/sys/kernel/mm/transparent_hugepage/enabled` set to `madvise` or `always` the kernel backs
/// each 2 MiB-aligned part with one huge page on its first touch (one page fault instead of
/// 512, and fewer TLB misses). With `never` (or a kernel without THP) the advice is ignored
/// and it behaves as `MmapPages`.
///
/// The cost is memory: a 2 MiB page is resident as a whole once any byte of it is touched, so
/// a heap with little in use holds more RSS than on 4 KiB pages (the first 2 MiB of every chunk,
/// where the buddy allocator's metadata lives, is always resident). With
/// `transparent_hugepage/defrag` set to `madvise`, a fault in such a range may also compact
/// memory synchronously when no free huge page is at hand. That is why it is a separate page
/// source and not `MmapPages`' behaviour.
#[derive(Debug, Default, Clone, Copy)]
pub struct MmapHugePages;

// SAFETY: as for `MmapPages`: a fresh mapping of exactly `len` bytes aligned to at least `align`
// (a larger alignment is still a multiple of `align`, both being powers of two); `madvise` only
// changes how the kernel backs the range, not what it contains or who may use it.
unsafe impl PageSource for MmapHugePages {
    fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
        if len < HUGE_PAGE_SIZE || !align.is_power_of_two() {
            return map_aligned(len, align);
        }
        let chunk = map_aligned(len, align.max(HUGE_PAGE_SIZE))?;
        // SAFETY: the range is the mapping just made; MADV_HUGEPAGE changes no contents. Its
        // result is ignored: without THP support the chunk is simply backed by 4 KiB pages.
        unsafe { libc::madvise(chunk.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
        Some(chunk)
    }

    unsafe fn release_chunk(&self, ptr: NonNull<u8>, len: usize) {
        // SAFETY: by the caller's contract this is exactly a chunk we mapped and nobody uses.
        unsafe { unmap(ptr, len) };
    }
}

/// A fresh anonymous mapping of exactly `len` bytes aligned to `align`: `len + align` bytes
/// mapped, the unaligned head and the tail unmapped.
fn map_aligned(len: usize, align: usize) -> Option<NonNull<u8>> {
    // The alignment arithmetic below needs a power of two; an empty mapping is an error.
    if len == 0 || !align.is_power_of_two() {
        return None;
    }
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
    // Pointers into the mapping are derived from `base` (its provenance), never made from
    // integers: the crate's hosted code passes Miri with strict provenance.
    let base = base.cast::<u8>();
    let head = base.addr().wrapping_neg() & (align - 1);
    let tail = span - head - len;
    let aligned = base.wrapping_add(head);
    // SAFETY: both trimmed ranges are inside the mapping we just made and nothing uses them.
    unsafe {
        if head > 0 {
            libc::munmap(base.cast(), head);
        }
        if tail > 0 {
            libc::munmap(aligned.wrapping_add(len).cast(), tail);
        }
    }
    NonNull::new(aligned)
}

/// Unmaps a chunk.
///
/// # Safety
/// `ptr..ptr + len` is exactly a chunk `map_aligned` returned, not used afterwards.
unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: by the caller's contract nothing uses the range any more.
    unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
}

/// Chunks from `std::alloc::System`.
///
/// `release_chunk` is not told the alignment a chunk was allocated with, and the system
/// allocator must be given back the exact `Layout`. So the layout is a function of `len` alone:
/// size `len`, alignment `len`'s largest power-of-two divisor (`len` itself for the power-of-two
/// lengths the [`PageSource`] contract asks for, so a chunk is naturally aligned, as a buddy
/// block is). A request whose `align` is larger than that (`align > len`, or a `len` that is not
/// a multiple of `align`) is refused (`None`), as is a zero `len` or an `align` that is not a
/// power of two. Natural alignment costs nothing for the heap, which asks for `align == len`;
/// for a chunk asked for with a smaller alignment it costs the system allocator at most `len`
/// bytes of padding (untouched address space for the large, `mmap`-served sizes), which is why
/// we chose it over a header before the chunk (that costs `align` bytes of the same kind on
/// every chunk) or a side table (which would itself allocate, and `SystemPages` may feed a
/// process's global allocator).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemPages;

impl SystemPages {
    /// The layout of every chunk of `len` bytes (see the type's documentation).
    fn chunk_layout(len: usize) -> Option<core::alloc::Layout> {
        if len == 0 {
            return None;
        }
        // `len & len.wrapping_neg()` is the lowest set bit: the largest power of two dividing it.
        core::alloc::Layout::from_size_align(len, len & len.wrapping_neg()).ok()
    }
}

/// The allocator `SystemPages` takes chunks from: `System`, or in this crate's unit tests a
/// wrapper that checks every block is freed with the layout it was allocated with.
#[cfg(not(test))]
const CHUNK_ALLOCATOR: std::alloc::System = std::alloc::System;
#[cfg(test)]
const CHUNK_ALLOCATOR: crate::testing::CheckedSystem = crate::testing::CheckedSystem;

// SAFETY: the system allocator returns exclusive, writable memory of the layout's size and
// alignment; `allocate_chunk` only hands out a chunk whose layout (a function of `len` alone)
// has an alignment of at least `align`, and `release_chunk` frees it with that same layout,
// recomputed from `len`.
unsafe impl PageSource for SystemPages {
    fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
        let layout = Self::chunk_layout(len)?;
        if !align.is_power_of_two() || align > layout.align() {
            return None;
        }
        // SAFETY: the layout has a non-zero size (`chunk_layout` refuses `len == 0`).
        NonNull::new(unsafe { GlobalAlloc::alloc(&CHUNK_ALLOCATOR, layout) })
    }

    unsafe fn release_chunk(&self, ptr: NonNull<u8>, len: usize) {
        // By the caller's contract `len` is a length `allocate_chunk` accepted, so this is the
        // layout the chunk was allocated with, whatever alignment was asked for.
        if let Some(layout) = Self::chunk_layout(len) {
            // SAFETY: by the caller's contract the chunk came from `allocate_chunk(len, _)`,
            // which allocated it from `CHUNK_ALLOCATOR` with exactly `layout`.
            unsafe { GlobalAlloc::dealloc(&CHUNK_ALLOCATOR, ptr.as_ptr(), layout) };
        }
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
        // While the thread still holds its slot: the registered heaps send what it batched.
        let hooks = *EXIT_HOOKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for hook in hooks.into_iter().flatten() {
            hook.flush_slot();
        }
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

/// Something a thread does with its [`ThreadSlots`] slot as it exits, before giving the slot
/// up (the slot is still the thread's: [`CpuLocal::enter`] returns it).
pub trait FlushAtThreadExit: Sync {
    /// Called on the exiting thread.
    fn flush_slot(&self);
}

impl<
    P: PageSource + Sync,
    C: CpuLocal + Sync,
    const CPUS: usize,
    L: lock_api::RawMutex + Sync,
    const OWNER_RETURN: bool,
> FlushAtThreadExit for crate::Heap<P, C, CPUS, L, OWNER_RETURN>
{
    /// Sends the remote frees the thread's slot batched to their owners
    /// ([`Heap::flush_remote_frees`](crate::Heap::flush_remote_frees)).
    fn flush_slot(&self) {
        self.flush_remote_frees();
    }
}

/// Most registrations [`flush_at_thread_exit`] takes.
pub const MAX_EXIT_HOOKS: usize = 8;

/// What every thread that claimed a slot does as it exits (a `std` mutex: no allocation).
static EXIT_HOOKS: std::sync::Mutex<[Option<&'static dyn FlushAtThreadExit>; MAX_EXIT_HOOKS]> =
    std::sync::Mutex::new([None; MAX_EXIT_HOOKS]);

/// Makes every thread that claims a [`ThreadSlots`] slot call `hook.flush_slot()` when it
/// exits, while it still holds the slot: for a heap with owner return (`Heap<.., true>`) on
/// `ThreadSlots`, so that an exiting thread's batched remote frees reach their owners at once
/// instead of waiting for the next thread to take the slot (`'static`: a thread may outlive
/// any shorter-lived heap). A program registers its global allocator once, from `main`.
/// Returns false when [`MAX_EXIT_HOOKS`] are registered already (then nothing changes);
/// registering the same heap twice makes it flush twice, which is harmless.
pub fn flush_at_thread_exit(hook: &'static dyn FlushAtThreadExit) -> bool {
    let mut hooks = EXIT_HOOKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match hooks.iter_mut().find(|h| h.is_none()) {
        Some(free) => {
            *free = Some(hook);
            true
        }
        None => false,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::bad_frees_at;

    /// Every (len, align) pair `allocate_chunk` accepts is freed with the layout it was
    /// allocated with (checked by `testing::CheckedSystem`), whatever the alignment asked for.
    #[test]
    fn system_pages_free_with_the_allocation_layout() {
        const PAGE: usize = 4096;
        for (len, align) in [
            (2 * PAGE, PAGE),
            (PAGE, PAGE),
            (16 * PAGE, 2 * PAGE),
            (16 * PAGE, 16 * PAGE),
            (3 * PAGE, PAGE),
        ] {
            let chunk = SystemPages
                .allocate_chunk(len, align)
                .unwrap_or_else(|| panic!("({len}, {align}) refused"));
            assert_eq!(chunk.as_ptr() as usize % align, 0, "({len}, {align})");
            // SAFETY: a fresh chunk of `len` writable bytes.
            unsafe { chunk.as_ptr().write_bytes(0xa5, len) };
            // SAFETY: the chunk was just allocated with this `len` and is not used again.
            unsafe { SystemPages.release_chunk(chunk, len) };
            let bad = bad_frees_at(chunk.as_ptr() as usize);
            assert!(
                bad.is_empty(),
                "({len}, {align}) freed with the wrong layout: {bad:?}"
            );
        }
    }

    /// The `VmFlags` line of the mapping starting at `addr` in `/proc/self/smaps`, if any.
    fn vm_flags_at(addr: usize) -> Option<std::string::String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut lines = smaps.lines();
        while let Some(line) = lines.next() {
            let start = line.split('-').next()?;
            if usize::from_str_radix(start, 16).ok() != Some(addr) {
                continue;
            }
            return lines
                .find_map(|l| l.strip_prefix("VmFlags:"))
                .map(std::string::ToString::to_string);
        }
        None
    }

    /// `MmapHugePages` maps chunks of 2 MiB and more at 2 MiB-aligned addresses and marks them
    /// `MADV_HUGEPAGE` (`hg` in the mapping's `VmFlags`, when the kernel supports THP); smaller
    /// ones are plain mappings at the alignment asked for.
    #[test]
    #[cfg_attr(miri, ignore = "mmap and /proc/self/smaps")]
    fn huge_page_source_advises_huge_pages_on_big_chunks() {
        const MIB: usize = 1 << 20;
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .is_ok_and(|mode| !mode.contains("[never]"));
        for (len, align, advised) in [
            (4 * MIB, 4 * MIB, true),
            (3 * MIB, 4096, true),
            (2 * MIB, 4096, true),
            (64 * 1024, 4096, false),
        ] {
            let chunk = MmapHugePages
                .allocate_chunk(len, align)
                .unwrap_or_else(|| panic!("({len}, {align}) refused"));
            let addr = chunk.as_ptr() as usize;
            assert_eq!(addr % align, 0);
            if advised {
                assert_eq!(addr % HUGE_PAGE_SIZE, 0, "({len}, {align}) at {addr:#x}");
            }
            // SAFETY: a fresh chunk of `len` writable bytes.
            unsafe { chunk.as_ptr().write_bytes(0x5a, len) };
            let flags = vm_flags_at(addr);
            if thp && let Some(flags) = &flags {
                let hg = flags.split_whitespace().any(|f| f == "hg");
                assert_eq!(hg, advised, "({len}, {align}): VmFlags {flags}");
            }
            // SAFETY: the chunk was just allocated with this `len` and is not used again.
            unsafe { MmapHugePages.release_chunk(chunk, len) };
        }
        assert!(MmapHugePages.allocate_chunk(0, 4096).is_none());
        assert!(MmapHugePages.allocate_chunk(4 * MIB, 3 * 4096).is_none());
    }

    /// Requests that no layout derived from `len` alone could serve are refused, not
    /// mis-served; the same goes for `MmapPages` and alignments that are not powers of two.
    #[test]
    fn unservable_chunk_requests_are_refused() {
        for (len, align) in [(0, 4096), (4096, 8192), (3 * 4096, 2 * 4096), (8192, 3)] {
            assert!(
                SystemPages.allocate_chunk(len, align).is_none(),
                "({len}, {align})"
            );
        }
        for (len, align) in [(0, 4096), (8192, 0), (8192, 3 * 4096)] {
            assert!(
                MmapPages.allocate_chunk(len, align).is_none(),
                "({len}, {align})"
            );
        }
    }
}
