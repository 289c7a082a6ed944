//! What an embedder configures: the chunk size and free chunks kept (`HeapConfig`), the raw
//! lock (`Heap`'s `L`), the number of CPU slots; and what the page source is asked for, so that
//! requests near or above the chunk size are not doubled.

mod common;

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::RecordingPages;
use proptest::prelude::*;
use veridian_alloc::buddy::PAGE_SIZE;
use veridian_alloc::hosted::{MmapPages, ThreadSlots};
use veridian_alloc::lock_api::{GuardSend, RawMutex};
use veridian_alloc::{CHUNK_SIZE, Heap, HeapConfig, PageSource, SLOT_BYTES, SpinLock};

/// A fixed arena handed out front to back, freed space reused only when it is the last piece
/// (enough for the tests here), refusing what does not fit.
struct Arena {
    base: usize,
    len: usize,
    /// Live pieces, in address order: (start, len).
    pieces: Mutex<Vec<(usize, usize)>>,
}

impl Arena {
    fn new(len: usize) -> Self {
        let base = MmapPages.allocate_chunk(len, CHUNK_SIZE).unwrap();
        Self {
            base: base.as_ptr() as usize,
            len,
            pieces: Mutex::new(Vec::new()),
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the arena's own mapping, no longer used (the heap using it is gone).
        unsafe { MmapPages.release_chunk(NonNull::new(self.base as *mut u8).unwrap(), self.len) };
    }
}

// SAFETY: pieces are disjoint parts of the arena's own mapping (each placed after the last live
// one), handed out once until released.
unsafe impl PageSource for Arena {
    fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
        let mut pieces = self.pieces.lock().unwrap();
        let end = pieces.last().map_or(self.base, |&(s, l)| s + l);
        let start = end.checked_next_multiple_of(align)?;
        if start.checked_add(len)? > self.base + self.len {
            return None;
        }
        pieces.push((start, len));
        NonNull::new(start as *mut u8)
    }

    unsafe fn release_chunk(&self, ptr: NonNull<u8>, len: usize) {
        let mut pieces = self.pieces.lock().unwrap();
        let i = pieces
            .iter()
            .position(|&p| p == (ptr.as_ptr() as usize, len))
            .expect("released a piece that was never handed out");
        pieces.remove(i);
    }
}

#[test]
fn a_3_mib_vec_asks_the_source_for_3_mib_not_8() {
    let pages = RecordingPages::new(usize::MAX);
    let heap: Heap<&RecordingPages, ThreadSlots, 2> = Heap::new(&pages, ThreadSlots);
    let mut v: allocator_api2::vec::Vec<u8, _> =
        allocator_api2::vec::Vec::with_capacity_in(3 << 20, &heap);
    v.resize(3 << 20, 7);
    assert!(pages.contains(v.as_ptr() as usize, v.len()));
    assert_eq!(pages.asked(), [(3 << 20, PAGE_SIZE)]);
    assert_eq!(heap.stats().direct_live, 1);
    assert_eq!(heap.stats().direct_live_bytes, 3 << 20);
    drop(v);
    assert_eq!(pages.live_bytes(), 0, "the direct block goes straight back");
    assert_eq!(heap.stats().direct_live, 0);
}

#[test]
fn a_6_mib_block_fits_a_16_mib_arena() {
    let arena = Arena::new(16 << 20);
    let heap: Heap<&Arena, ThreadSlots, 2> = Heap::new(&arena, ThreadSlots);
    // Small objects first, so the heap already holds a 4 MiB chunk of the arena.
    let small = Layout::from_size_align(64, 8).unwrap();
    let s = heap.allocate(small);
    assert!(!s.is_null());
    let big = Layout::from_size_align(6 << 20, 8).unwrap();
    let p = heap.allocate(big);
    assert!(
        !p.is_null(),
        "6 MiB did not fit beside one 4 MiB chunk in 16 MiB"
    );
    // SAFETY: a fresh block of 6 MiB.
    unsafe { p.write_bytes(0xA5, big.size()) };
    // 8 MiB more does not fit (4 + 6 + 8 > 16): null, not a panic.
    assert!(
        heap.allocate(Layout::from_size_align(8 << 20, 8).unwrap())
            .is_null()
    );
    // SAFETY: live blocks of these layouts.
    unsafe {
        heap.deallocate(p, big);
        heap.deallocate(s, small);
    }
}

#[test]
fn chunk_size_is_configurable_and_validated() {
    for bad in [0, 1, 4096, 256 << 10, (1 << 20) + 4096, 3 << 20, 2 << 30] {
        assert_eq!(HeapConfig::DEFAULT.with_chunk_size(bad), None, "{bad}");
    }
    let config = HeapConfig::DEFAULT
        .with_chunk_size(1 << 20)
        .unwrap()
        .with_chunks_kept(0);
    let pages = RecordingPages::new(usize::MAX);
    let heap: Heap<&RecordingPages, ThreadSlots, 2> =
        Heap::with_config(&pages, ThreadSlots, config);
    // A medium object: one 1 MiB chunk for its slab.
    let l = Layout::from_size_align(4096, 8).unwrap();
    let p = heap.allocate(l);
    assert!(!p.is_null());
    assert_eq!(pages.asked(), [(1 << 20, 1 << 20)]);
    // 768 KiB is more than half a 1 MiB chunk: direct, 768 KiB at page alignment.
    let d = Layout::from_size_align(768 << 10, 64).unwrap();
    let q = heap.allocate(d);
    assert!(!q.is_null());
    assert_eq!(pages.asked()[1], (768 << 10, PAGE_SIZE));
    // SAFETY: live blocks of these layouts.
    unsafe {
        heap.deallocate(q, d);
        heap.deallocate(p, l);
    }
    heap.trim();
    // Chunks kept: 0, so the chunk went back as soon as it was free.
    assert_eq!(pages.live_bytes(), 0);
    assert_eq!(heap.stats().chunks_held, 0);
}

#[test]
fn slot_cost_is_what_the_docs_say() {
    type H<const N: usize> = Heap<MmapPages, ThreadSlots, N>;
    let per_slot = (size_of::<H<8>>() - size_of::<H<0>>()) / 8;
    assert_eq!(per_slot, SLOT_BYTES);
    assert!(size_of::<H<64>>() < 66 * SLOT_BYTES + 16 * 1024);
}

/// Acquisitions of [`CountingLock`], over all instances.
static LOCKS: AtomicUsize = AtomicUsize::new(0);

/// A `RawMutex` of the embedder's own: the default spin lock, counting acquisitions.
struct CountingLock(SpinLock);

// SAFETY: forwards to `SpinLock`, a correct `RawMutex`.
unsafe impl RawMutex for CountingLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self(SpinLock::INIT);
    type GuardMarker = GuardSend;

    fn lock(&self) {
        LOCKS.fetch_add(1, Ordering::Relaxed);
        RawMutex::lock(&self.0);
    }

    fn try_lock(&self) -> bool {
        let ok = RawMutex::try_lock(&self.0);
        if ok {
            LOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    unsafe fn unlock(&self) {
        // SAFETY: forwarded contract (the lock is held in this context).
        unsafe { RawMutex::unlock(&self.0) }
    }
}

#[test]
fn the_embedders_lock_serialises_the_slow_paths() {
    static HEAP: Heap<MmapPages, ThreadSlots, 2, CountingLock> = Heap::new(MmapPages, ThreadSlots);
    let before = LOCKS.load(Ordering::Relaxed);
    // Four threads on two slots: two share the locked slot; large blocks take the buddy lock.
    std::thread::scope(|s| {
        for t in 0..4u8 {
            s.spawn(move || {
                for i in 0..200usize {
                    let l = Layout::from_size_align(16 + (i * 97) % 20_000, 8).unwrap();
                    let p = HEAP.allocate(l);
                    assert!(!p.is_null());
                    // SAFETY: a fresh block of `l.size()` bytes.
                    unsafe { p.write_bytes(t, l.size()) };
                    // SAFETY: just written.
                    assert_eq!(unsafe { *p.add(l.size() - 1) }, t);
                    // SAFETY: a live block of this layout.
                    unsafe { HEAP.deallocate(p, l) };
                }
            });
        }
    });
    assert!(
        LOCKS.load(Ordering::Relaxed) > before,
        "the embedder's lock was never taken"
    );
}

fn pow2(lo: u32, hi: u32) -> impl Strategy<Value = usize> {
    (lo..=hi).prop_map(|s| 1usize << s)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the chunk size, a large request never makes the heap ask the page source for
    /// more than one chunk or the request rounded up to its alignment (no doubling), the block
    /// is aligned, usable and inside what the source gave, and with no chunk kept everything
    /// goes back after the frees and a `trim` (a small request's empty slab stays cached in the
    /// slot until then: `EMPTY_SLABS_KEPT`).
    #[test]
    fn large_requests_are_not_doubled(
        chunk in pow2(19, 24),
        reqs in prop::collection::vec((1usize..=(20 << 20), 0u32..=22), 1..6),
    ) {
        let config = HeapConfig::DEFAULT.with_chunk_size(chunk).unwrap().with_chunks_kept(0);
        let pages = RecordingPages::new(usize::MAX);
        let heap: Heap<&RecordingPages, ThreadSlots, 1> = Heap::with_config(&pages, ThreadSlots, config);
        let mut live = Vec::new();
        for &(size, align_log2) in &reqs {
            let align = 1usize << align_log2;
            let l = Layout::from_size_align(size, align).unwrap();
            let before = pages.asked().len();
            let p = heap.allocate(l);
            prop_assert!(!p.is_null());
            prop_assert_eq!(p as usize % align, 0);
            prop_assert!(pages.contains(p as usize, size));
            // SAFETY: a fresh block of `size` bytes.
            unsafe { p.write_bytes(align_log2 as u8, size) };
            let rounded = size.next_multiple_of(align.max(PAGE_SIZE));
            for &(len, a) in &pages.asked()[before..] {
                prop_assert!(len <= chunk.max(rounded), "asked {len} for {size} (chunk {chunk})");
                prop_assert!(a <= chunk.max(align.max(PAGE_SIZE)));
            }
            live.push((p, l));
        }
        for (p, l) in live {
            // SAFETY: a live block of this layout, written above.
            prop_assert_eq!(unsafe { *p.add(l.size() - 1) }, l.align().trailing_zeros() as u8);
            // SAFETY: as above.
            unsafe { heap.deallocate(p, l) };
        }
        heap.trim();
        prop_assert_eq!(pages.live_bytes(), 0);
    }
}

/// The case proptest found (chunk 512 KiB, one 1-byte request): the slab's chunk is kept while
/// the slot caches the empty slab, and goes back with `trim`.
#[test]
fn a_small_request_s_chunk_goes_back_after_trim() {
    let config = HeapConfig::DEFAULT
        .with_chunk_size(1 << 19)
        .unwrap()
        .with_chunks_kept(0);
    let pages = RecordingPages::new(usize::MAX);
    let heap: Heap<&RecordingPages, ThreadSlots, 1> =
        Heap::with_config(&pages, ThreadSlots, config);
    let l = Layout::from_size_align(1, 1).unwrap();
    let p = heap.allocate(l);
    assert!(!p.is_null());
    // SAFETY: the block just allocated, with its layout.
    unsafe { heap.deallocate(p, l) };
    assert_eq!(pages.live_bytes(), 1 << 19, "the empty slab is cached");
    heap.trim();
    assert_eq!(pages.live_bytes(), 0, "trim gives the chunk back");
}
