//! Tests of `veridian_alloc::buddy::BuddyAllocator` over hosted memory: alignment, containment,
//! no overlap, out of memory, complete coalescing, error detection without corruption,
//! unaligned regions, region removal, metadata overhead, and a proptest against a shadow model.

use std::alloc::{Layout, alloc, dealloc};
use std::collections::BTreeMap;
use std::ptr::NonNull;

use proptest::prelude::*;
use veridian_alloc::buddy::{
    BuddyAllocator, BuddyError, BuddyStats, MAX_ORDER, MAX_REGIONS, PAGE_SIZE,
};

const MIB: usize = 1 << 20;

/// Memory from the global allocator, freed on drop. Pages are mapped lazily by Linux, so only
/// the pages the test touches cost memory.
struct Backing {
    ptr: *mut u8,
    layout: Layout,
}

impl Backing {
    fn new(size: usize, align: usize) -> Self {
        let layout = Layout::from_size_align(size, align).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc(layout) };
        assert!(
            !ptr.is_null(),
            "cannot allocate {size:#x} bytes of test memory"
        );
        Self { ptr, layout }
    }

    fn addr(&self) -> usize {
        self.ptr.addr()
    }

    /// A pointer to `addr` with the backing's provenance (valid for access inside it).
    fn at(&self, addr: usize) -> *mut u8 {
        self.ptr.with_addr(addr)
    }

    fn len(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

fn size_of_order(order: usize) -> usize {
    PAGE_SIZE << order
}

/// A block pointer from an address: the buddy allocator uses only the address of the pointers
/// given to `deallocate`, `owns` and `is_free`.
fn block_at(addr: usize) -> NonNull<u8> {
    NonNull::new(std::ptr::without_provenance_mut(addr)).unwrap()
}

/// An address as a pointer without provenance, for `owns`.
fn address(addr: usize) -> *const u8 {
    std::ptr::without_provenance(addr)
}

/// `take_free_region` with the start as an address.
fn take_free(buddy: &mut BuddyAllocator) -> Option<(usize, usize)> {
    buddy
        .take_free_region()
        .map(|(start, len)| (start.addr(), len))
}

/// An allocator with one region `[start, start + len)` of `backing`.
fn allocator_over(backing: &Backing, offset: usize, len: usize) -> (BuddyAllocator, usize) {
    assert!(offset + len <= backing.len());
    let mut buddy = BuddyAllocator::new();
    // SAFETY: the range lies inside `backing`, which outlives the allocator in every test and is
    // used by nothing else.
    let bytes =
        unsafe { buddy.add_region(backing.ptr.wrapping_add(offset), len) }.expect("add_region");
    (buddy, bytes)
}

fn weighted_bytes(stats: &BuddyStats) -> usize {
    stats
        .free_blocks
        .iter()
        .enumerate()
        .map(|(k, n)| n * size_of_order(k))
        .sum()
}

/// Allocates with orders from `pattern` (cycling; a failing order moves on to the next one),
/// ending with order 0 until out of memory. Returns the blocks as `(addr, order)`.
fn exhaust(buddy: &mut BuddyAllocator, pattern: &[usize]) -> Vec<(usize, usize)> {
    let mut blocks = Vec::new();
    for &order in pattern.iter().cycle().take(pattern.len() * 64) {
        if let Ok(p) = buddy.allocate(order) {
            blocks.push((p.as_ptr() as usize, order));
        }
    }
    loop {
        match buddy.allocate(0) {
            Ok(p) => blocks.push((p.as_ptr() as usize, 0)),
            Err(e) => {
                assert_eq!(e, BuddyError::OutOfMemory { order: 0 });
                break;
            }
        }
    }
    blocks
}

/// Every block aligned to its size, owned, inside `[lo, hi)`, and no two overlapping.
fn check_blocks(buddy: &BuddyAllocator, blocks: &[(usize, usize)], lo: usize, hi: usize) {
    let mut sorted = blocks.to_vec();
    sorted.sort_unstable();
    for &(addr, order) in &sorted {
        let size = size_of_order(order);
        assert_eq!(
            addr % size,
            0,
            "block {addr:#x} of order {order} misaligned"
        );
        assert!(
            addr >= lo && addr + size <= hi,
            "block {addr:#x} of order {order} outside region"
        );
        assert!(buddy.owns(address(addr)));
        assert!(buddy.owns(address(addr + size - 1)));
    }
    for pair in sorted.windows(2) {
        let (a, ao) = pair[0];
        assert!(
            a + size_of_order(ao) <= pair[1].0,
            "blocks {a:#x} and {:#x} overlap",
            pair[1].0
        );
    }
}

fn free_all(buddy: &mut BuddyAllocator, blocks: &[(usize, usize)]) {
    for &(addr, order) in blocks {
        // SAFETY: each block came from `allocate(order)` and is freed once.
        unsafe { buddy.deallocate(block_at(addr), order) }.expect("free");
    }
}

/// A small deterministic shuffle (xorshift), so the tests need no `rand`.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

/// Everything still works: exhausting gives valid blocks covering exactly the free bytes, and
/// freeing them returns to `initial`.
fn assert_healthy(buddy: &mut BuddyAllocator, initial: &BuddyStats, lo: usize, hi: usize) {
    let before = buddy.stats();
    let blocks = exhaust(buddy, &[3, 0, 5, 1]);
    check_blocks(buddy, &blocks, lo, hi);
    let covered: usize = blocks.iter().map(|&(_, o)| size_of_order(o)).sum();
    assert_eq!(covered, before.free_bytes);
    free_all(buddy, &blocks);
    assert_eq!(buddy.stats().free_blocks, initial.free_blocks);
    assert_eq!(buddy.free_bytes(), before.free_bytes);
}

#[test]
fn order_for_picks_the_smallest_sufficient_order() {
    assert_eq!(BuddyAllocator::order_for(0, 1), Some(0));
    assert_eq!(BuddyAllocator::order_for(0, 0), Some(0));
    assert_eq!(BuddyAllocator::order_for(1, 8), Some(0));
    assert_eq!(BuddyAllocator::order_for(4096, 4096), Some(0));
    assert_eq!(BuddyAllocator::order_for(4097, 8), Some(1));
    assert_eq!(BuddyAllocator::order_for(100, 65536), Some(4));
    assert_eq!(BuddyAllocator::order_for(3 * 4096, 8), Some(2));
    assert_eq!(BuddyAllocator::order_for(2 * MIB, 2 * MIB), Some(9));
    assert_eq!(BuddyAllocator::order_for(1 << 30, 8), Some(MAX_ORDER));
    assert_eq!(BuddyAllocator::order_for((1 << 30) + 1, 8), None);
    assert_eq!(BuddyAllocator::order_for(8, 1 << 31), None);
    assert_eq!(BuddyAllocator::order_for(usize::MAX, 8), None);
    assert_eq!(
        BuddyAllocator::order_for(8, 3 * 4096),
        None,
        "alignment not a power of two"
    );
}

#[test]
fn empty_allocator_reports_out_of_memory() {
    let mut buddy = BuddyAllocator::new();
    assert_eq!(buddy.allocate(0), Err(BuddyError::OutOfMemory { order: 0 }));
    assert_eq!(
        buddy.allocate(MAX_ORDER),
        Err(BuddyError::OutOfMemory { order: MAX_ORDER })
    );
    assert_eq!(buddy.stats().failed_allocations, 2);
    assert!(!buddy.owns(std::ptr::null()));
    assert_eq!(take_free(&mut buddy), None);
}

#[test]
fn usable_in_a_static_behind_a_lock() {
    static ALLOCATOR: spin::Mutex<BuddyAllocator> = spin::Mutex::new(BuddyAllocator::new());
    let backing = Backing::new(4 * MIB, 2 * MIB);
    let mut buddy = ALLOCATOR.lock();
    // SAFETY: the backing outlives its use here; the region is taken back before it is freed.
    unsafe { buddy.add_region(backing.ptr, backing.len()) }.unwrap();
    let p = buddy.allocate(2).unwrap();
    // SAFETY: allocated just above.
    unsafe { buddy.deallocate(p, 2) }.unwrap();
    assert_eq!(take_free(&mut buddy), Some((backing.addr(), backing.len())));
}

/// The start `take_free_region` gives back is the pointer passed to `add_region`, provenance
/// included: the range can be written through it (under Miri's strict provenance too).
#[test]
fn take_free_region_returns_the_pointer_added() {
    let backing = Backing::new(4 * MIB, 2 * MIB);
    let mut buddy = BuddyAllocator::new();
    let start = backing.ptr.wrapping_add(PAGE_SIZE + 3);
    // SAFETY: inside `backing`, which outlives the allocator.
    unsafe { buddy.add_region(start, 2 * MIB) }.unwrap();
    let (taken, len) = buddy.take_free_region().unwrap();
    assert_eq!((taken, len), (start, 2 * MIB));
    // SAFETY: the range is no longer managed; it lies inside `backing`.
    unsafe { std::ptr::write_bytes(taken, 0x11, len) };
}

/// `add_region_addr`, the integer variant a kernel uses for RAM it maps itself, over memory
/// whose provenance was exposed.
#[test]
#[cfg_attr(
    miri,
    ignore = "exposed provenance (`add_region_addr`), which -Zmiri-strict-provenance rejects"
)]
fn add_region_addr_uses_the_exposed_provenance() {
    let backing = Backing::new(4 * MIB, 2 * MIB);
    let mut buddy = BuddyAllocator::new();
    let start = backing.ptr.expose_provenance();
    // SAFETY: `backing` is ours, outlives the allocator, and its provenance is exposed.
    let bytes = unsafe { buddy.add_region_addr(start, backing.len()) }.unwrap();
    let initial = buddy.stats();
    assert_eq!(bytes + initial.metadata_bytes, 4 * MIB);
    assert_healthy(&mut buddy, &initial, start, start + 4 * MIB);
    assert_eq!(take_free(&mut buddy), Some((start, 4 * MIB)));
}

#[test]
fn fresh_region_is_split_into_maximal_aligned_blocks() {
    let backing = Backing::new(64 * MIB, 2 * MIB);
    let (buddy, bytes) = allocator_over(&backing, 0, 64 * MIB);
    let stats = buddy.stats();
    assert_eq!(stats.regions, 1);
    assert_eq!(stats.total_bytes, bytes);
    assert_eq!(stats.free_bytes, bytes);
    assert_eq!(bytes + stats.metadata_bytes, 64 * MIB);
    assert_eq!(weighted_bytes(&stats), bytes);
    // A 2 MiB-aligned 64 MiB region minus two metadata pages: the two metadata pages leave
    // blocks of order 1, 2, ..., 8 in the first 2 MiB, then 2 MiB, 4, 8, 16 MiB blocks and
    // 32 MiB or smaller ones depending on the backing's alignment; at most two blocks per order.
    assert_eq!(stats.metadata_bytes, 2 * PAGE_SIZE);
    assert!(stats.free_blocks.iter().all(|&n| n <= 2), "{stats:?}");
    assert!(!buddy.owns(backing.ptr), "metadata is not allocatable");
    assert!(buddy.owns(address(backing.addr() + stats.metadata_bytes)));
    assert!(!buddy.owns(address(backing.addr() + 64 * MIB)));
}

#[test]
fn every_order_is_naturally_aligned_and_inside() {
    let backing = Backing::new(64 * MIB, 2 * MIB);
    let (mut buddy, _) = allocator_over(&backing, 0, 64 * MIB);
    let initial = buddy.stats();
    let mut blocks = Vec::new();
    for order in 0..=11 {
        for _ in 0..2 {
            let p = buddy.allocate(order).unwrap();
            blocks.push((p.as_ptr() as usize, order));
        }
    }
    check_blocks(&buddy, &blocks, backing.addr(), backing.addr() + 64 * MIB);
    assert_eq!(buddy.stats().allocations, blocks.len() as u64);
    free_all(&mut buddy, &blocks);
    assert_eq!(buddy.stats().free_blocks, initial.free_blocks);
}

#[test]
fn exhausting_covers_exactly_the_free_bytes_and_freeing_in_any_order_restores_the_state() {
    let backing = Backing::new(16 * MIB, 2 * MIB);
    // 9 rounds of exhausting the region page by page: under Miri (which ran past 4 minutes on
    // 11 MiB) a region of 1 MiB and 3 pages.
    let len = if cfg!(miri) { MIB } else { 11 * MIB } + 3 * PAGE_SIZE;
    let (mut buddy, bytes) = allocator_over(&backing, 5 * PAGE_SIZE, len);
    let initial = buddy.stats();
    for (round, pattern) in [&[0usize][..], &[4, 1, 9, 0, 2], &[12, 6, 3]]
        .iter()
        .enumerate()
    {
        for free_order in 0..3 {
            let mut blocks = exhaust(&mut buddy, pattern);
            check_blocks(
                &buddy,
                &blocks,
                backing.addr(),
                backing.addr() + backing.len(),
            );
            let covered: usize = blocks.iter().map(|&(_, o)| size_of_order(o)).sum();
            assert_eq!(covered, bytes, "blocks cover the allocatable bytes exactly");
            assert_eq!(buddy.free_bytes(), 0);
            assert_eq!(buddy.stats().free_blocks, [0; MAX_ORDER + 1]);
            for order in 0..=MAX_ORDER {
                assert_eq!(
                    buddy.allocate(order),
                    Err(BuddyError::OutOfMemory { order })
                );
                assert!(!buddy.can_allocate(order));
            }
            match free_order {
                0 => {}
                1 => blocks.reverse(),
                _ => shuffle(&mut blocks, 0x9E37_79B9_7F4A_7C15 ^ round as u64),
            }
            free_all(&mut buddy, &blocks);
            let after = buddy.stats();
            assert_eq!(
                after.free_blocks, initial.free_blocks,
                "round {round}/{free_order}"
            );
            assert_eq!(after.free_bytes, initial.free_bytes);
        }
    }
}

#[test]
fn data_in_blocks_survives_other_operations() {
    let backing = Backing::new(8 * MIB, 2 * MIB);
    let (mut buddy, _) = allocator_over(&backing, 0, 8 * MIB);
    let initial = buddy.stats();
    let mut blocks = exhaust(&mut buddy, &[2, 0, 1, 5]);
    // Fill every block with a pattern that looks like pointers into the region: the allocator
    // must not read it as free-list links.
    // Written and compared a page at a time (memcpy, memcmp): fast under Miri too.
    let fake_page = |addr: usize| {
        let fake = (backing.addr() + (addr / PAGE_SIZE % 7) * PAGE_SIZE) as u64;
        vec![fake; PAGE_SIZE / 8]
    };
    for &(addr, order) in &blocks {
        let words = size_of_order(order) / 8;
        let page = fake_page(addr);
        // SAFETY: the block is ours, `size_of_order(order)` bytes, page-aligned.
        let data = unsafe { std::slice::from_raw_parts_mut(backing.at(addr).cast::<u64>(), words) };
        for chunk in data.chunks_exact_mut(page.len()) {
            chunk.copy_from_slice(&page);
        }
    }
    shuffle(&mut blocks, 7);
    let (freed, kept) = blocks.split_at(blocks.len() / 2);
    free_all(&mut buddy, freed);
    let again = exhaust(&mut buddy, &[0, 3]);
    for &(addr, order) in kept {
        {
            let words = size_of_order(order) / 8;
            let page = fake_page(addr);
            // SAFETY: still allocated to us.
            let data = unsafe { std::slice::from_raw_parts(backing.at(addr).cast::<u64>(), words) };
            assert!(
                data.chunks_exact(page.len()).all(|c| c == page.as_slice()),
                "block {addr:#x} was overwritten"
            );
        }
    }
    free_all(&mut buddy, kept);
    free_all(&mut buddy, &again);
    assert_eq!(buddy.stats().free_blocks, initial.free_blocks);
}

#[test]
fn double_free_is_detected_without_corruption() {
    // One metadata page just below a 2 MiB boundary: the allocatable part starts 2 MiB-aligned.
    let backing = Backing::new(8 * MIB, 2 * MIB);
    let (mut buddy, _) = allocator_over(&backing, 2 * MIB - PAGE_SIZE, 6 * MIB + PAGE_SIZE);
    assert_eq!(buddy.stats().metadata_bytes, PAGE_SIZE);
    let initial = buddy.stats();
    let (lo, hi) = (backing.addr() + 2 * MIB, backing.addr() + 8 * MIB);

    let a = buddy.allocate(3).unwrap();
    let b = buddy.allocate(3).unwrap();
    let addr = a.as_ptr() as usize;
    // SAFETY: `a` came from `allocate(3)`.
    unsafe { buddy.deallocate(a, 3) }.unwrap();
    let snapshot = buddy.stats();
    // The block again, a page inside it, and a larger block containing it (the other half of
    // which, `b`, is allocated).
    let outer = addr & !(size_of_order(4) - 1);
    for (at, order) in [(addr, 3), (addr + 2 * PAGE_SIZE, 0), (outer, 4)] {
        let p = block_at(at);
        // SAFETY: a double free, rejected before anything is written (the error under test).
        let r = unsafe { buddy.deallocate(p, order) };
        assert_eq!(r, Err(BuddyError::DoubleFree { addr: at, order }));
    }
    assert_eq!(buddy.stats(), snapshot, "rejected frees change nothing");

    // Part of `b` freed (the caller owns all of `b`), then all of `b`: part of it is free.
    let b_addr = b.as_ptr() as usize;
    let b_page = block_at(b_addr + 5 * PAGE_SIZE);
    // SAFETY: a page of `b`, which we own.
    unsafe { buddy.deallocate(b_page, 0) }.unwrap();
    let snapshot = buddy.stats();
    // SAFETY: rejected before anything is written (the error under test).
    let r = unsafe { buddy.deallocate(b, 3) };
    assert_eq!(
        r,
        Err(BuddyError::DoubleFree {
            addr: b_addr,
            order: 3
        })
    );
    assert_eq!(buddy.stats(), snapshot);
    // Free the rest of `b` page by page (all owned by us): everything coalesces.
    for page in (0..8).filter(|&p| p != 5) {
        let p = block_at(b_addr + page * PAGE_SIZE);
        // SAFETY: a page of `b`, which we own, freed once.
        unsafe { buddy.deallocate(p, 0) }.unwrap();
    }
    assert_eq!(buddy.stats().free_blocks, initial.free_blocks);
    assert_healthy(&mut buddy, &initial, lo, hi);

    // After everything is free, any block is a double free.
    let any = block_at(lo + 4 * MIB);
    // SAFETY: rejected before anything is written (the error under test).
    let r = unsafe { buddy.deallocate(any, 9) };
    assert_eq!(
        r,
        Err(BuddyError::DoubleFree {
            addr: lo + 4 * MIB,
            order: 9
        })
    );
    assert_healthy(&mut buddy, &initial, lo, hi);
}

#[test]
fn blocks_formed_by_smaller_allocations_can_be_freed_as_one() {
    let backing = Backing::new(4 * MIB, 2 * MIB);
    let (mut buddy, _) = allocator_over(&backing, 0, 4 * MIB);
    let initial = buddy.stats();
    // Use up the free order-0 blocks; then two order-0 allocations split one block: buddies.
    let mut singles = Vec::new();
    while buddy.stats().free_blocks[0] > 0 {
        singles.push((buddy.allocate(0).unwrap().as_ptr() as usize, 0));
    }
    let a = buddy.allocate(0).unwrap().as_ptr() as usize;
    let b = buddy.allocate(0).unwrap().as_ptr() as usize;
    assert_eq!(a ^ b, PAGE_SIZE);
    let pair = block_at(a.min(b));
    // SAFETY: we own both pages of the order-1 block.
    unsafe { buddy.deallocate(pair, 1) }.unwrap();
    free_all(&mut buddy, &singles);
    assert_eq!(buddy.stats().free_blocks, initial.free_blocks);
}

#[test]
fn foreign_and_misaligned_frees_are_rejected() {
    let backing = Backing::new(8 * MIB, 2 * MIB);
    let (mut buddy, _) = allocator_over(&backing, 0, 7 * MIB);
    let initial = buddy.stats();
    let (lo, hi) = (backing.addr(), backing.addr() + 7 * MIB);
    let block = buddy.allocate(2).unwrap();
    let addr = block.as_ptr() as usize;
    let snapshot = buddy.stats();

    let mut local = 0u64;
    let foreign = NonNull::from(&mut local).cast::<u8>();
    let metadata = NonNull::new(backing.ptr).unwrap();
    let past_end = block_at(hi);
    // SAFETY: (all frees below) each is rejected before anything is written.
    unsafe {
        assert_eq!(
            buddy.deallocate(foreign, 0),
            Err(BuddyError::NotOwned {
                addr: foreign.as_ptr() as usize
            })
        );
        assert_eq!(
            buddy.deallocate(metadata, 0),
            Err(BuddyError::NotOwned { addr: lo })
        );
        assert_eq!(
            buddy.deallocate(past_end, 0),
            Err(BuddyError::NotOwned { addr: hi })
        );
        // A 2 MiB-aligned block that starts inside the region but runs past its end.
        let last_mib = block_at(hi - MIB);
        assert_eq!(
            buddy.deallocate(last_mib, 9),
            Err(BuddyError::NotOwned { addr: hi - MIB })
        );

        let off_by_page = block_at(addr + PAGE_SIZE);
        assert_eq!(
            buddy.deallocate(off_by_page, 2),
            Err(BuddyError::Misaligned {
                addr: addr + PAGE_SIZE,
                order: 2
            })
        );
        let off_by_byte = block_at(addr + 1);
        assert_eq!(
            buddy.deallocate(off_by_byte, 0),
            Err(BuddyError::Misaligned {
                addr: addr + 1,
                order: 0
            })
        );
        assert_eq!(
            buddy.deallocate(block, MAX_ORDER + 1),
            Err(BuddyError::OrderTooLarge {
                order: MAX_ORDER + 1
            })
        );
        assert_eq!(
            buddy.deallocate(block, usize::MAX),
            Err(BuddyError::OrderTooLarge { order: usize::MAX })
        );
    }
    assert_eq!(buddy.stats(), snapshot, "rejected frees change nothing");
    // SAFETY: `block` came from `allocate(2)`.
    unsafe { buddy.deallocate(block, 2) }.unwrap();
    assert_healthy(&mut buddy, &initial, lo, hi);
}

#[test]
fn order_above_max_is_rejected_by_allocate() {
    let backing = Backing::new(4 * MIB, 2 * MIB);
    let (mut buddy, _) = allocator_over(&backing, 0, 4 * MIB);
    let initial = buddy.stats();
    assert_eq!(
        buddy.allocate(MAX_ORDER + 1),
        Err(BuddyError::OrderTooLarge {
            order: MAX_ORDER + 1
        })
    );
    assert_eq!(
        buddy.allocate(usize::MAX),
        Err(BuddyError::OrderTooLarge { order: usize::MAX })
    );
    assert!(!buddy.can_allocate(MAX_ORDER + 1));
    assert_eq!(
        buddy.allocate(MAX_ORDER),
        Err(BuddyError::OutOfMemory { order: MAX_ORDER })
    );
    assert_eq!(
        buddy.stats().failed_allocations,
        1,
        "only out-of-memory counts as a failure"
    );
    assert_healthy(
        &mut buddy,
        &initial,
        backing.addr(),
        backing.addr() + 4 * MIB,
    );
}

#[test]
fn bad_regions_are_rejected_without_touching_them() {
    let backing = Backing::new(8 * MIB, 2 * MIB);
    let base = backing.addr();
    // Fill with a marker so we can see that rejected ranges are not written.
    // SAFETY: the backing is ours.
    unsafe { std::ptr::write_bytes(backing.ptr, 0xA5, backing.len()) };
    let (mut buddy, _) = allocator_over(&backing, 2 * MIB, 2 * MIB);
    let initial = buddy.stats();
    // SAFETY: (all calls below) ranges inside `backing` (or rejected before any access).
    unsafe {
        let overlapping = [
            (2 * MIB, 2 * MIB),
            (MIB, 2 * MIB),
            (3 * MIB, 2 * MIB),
            (2 * MIB + PAGE_SIZE, PAGE_SIZE),
            (0, 8 * MIB),
        ];
        for (off, len) in overlapping {
            assert_eq!(
                buddy.add_region(backing.at(base + off), len),
                Err(BuddyError::RegionOverlaps {
                    start: base + off,
                    len
                })
            );
        }
        let too_small = [
            (0, 0),
            (0, PAGE_SIZE - 1),
            (1, PAGE_SIZE),
            (PAGE_SIZE + 1, 2 * PAGE_SIZE),
            (0, PAGE_SIZE),
            (5 * PAGE_SIZE, PAGE_SIZE + 4095),
        ];
        for (off, len) in too_small {
            assert_eq!(
                buddy.add_region(backing.at(base + off), len),
                Err(BuddyError::RegionTooSmall {
                    start: base + off,
                    len
                })
            );
        }
        assert_eq!(
            buddy.add_region(std::ptr::without_provenance_mut(usize::MAX - 10), 100),
            Err(BuddyError::RegionWraps {
                start: usize::MAX - 10,
                len: 100
            })
        );
        assert_eq!(
            buddy.add_region(
                std::ptr::without_provenance_mut(usize::MAX & !(PAGE_SIZE - 1)),
                100
            ),
            Err(BuddyError::RegionTooSmall {
                start: usize::MAX & !(PAGE_SIZE - 1),
                len: 100
            })
        );
    }
    let untouched = |from: usize, to: usize| {
        // SAFETY: inside the backing.
        let bytes = unsafe { std::slice::from_raw_parts(backing.ptr.add(from), to - from) };
        // memcmp against a buffer of the marker: fast under Miri too, unlike a byte loop.
        bytes == vec![0xA5; bytes.len()].as_slice()
    };
    assert!(untouched(0, 2 * MIB) && untouched(4 * MIB, 8 * MIB));
    assert_eq!(buddy.stats(), initial);
    assert_healthy(&mut buddy, &initial, base + 2 * MIB, base + 4 * MIB);

    // The smallest region: one metadata page and one allocatable page; adjacent regions are
    // fine.
    // SAFETY: inside `backing`, disjoint from the first region.
    let smallest = unsafe { buddy.add_region(backing.at(base + 4 * MIB), 2 * PAGE_SIZE) };
    assert_eq!(smallest, Ok(PAGE_SIZE));
    // SAFETY: inside `backing`, ends where the first region starts.
    let adjacent =
        unsafe { buddy.add_region(backing.at(base + 2 * MIB - 3 * PAGE_SIZE), 3 * PAGE_SIZE) };
    assert_eq!(adjacent, Ok(2 * PAGE_SIZE));
    assert_eq!(buddy.stats().regions, 3);
    let grown = buddy.stats();
    assert_healthy(&mut buddy, &grown, base, base + 8 * MIB);
}

#[test]
fn at_most_max_regions() {
    let backing = Backing::new((MAX_REGIONS + 1) * 4 * PAGE_SIZE, PAGE_SIZE);
    let mut buddy = BuddyAllocator::new();
    let mut slots: Vec<usize> = (0..=MAX_REGIONS).collect();
    shuffle(&mut slots, 0x1234_5678);
    for (i, &slot) in slots.iter().enumerate() {
        let start = backing.addr() + slot * 4 * PAGE_SIZE;
        // SAFETY: disjoint 3-page ranges inside `backing`.
        let added = unsafe { buddy.add_region(backing.at(start), 3 * PAGE_SIZE) };
        if i < MAX_REGIONS {
            assert_eq!(added, Ok(2 * PAGE_SIZE));
        } else {
            assert_eq!(added, Err(BuddyError::TooManyRegions));
        }
    }
    let initial = buddy.stats();
    assert_eq!(initial.regions, MAX_REGIONS);
    assert_healthy(
        &mut buddy,
        &initial,
        backing.addr(),
        backing.addr() + backing.len(),
    );
    // Take them all back (each entirely free) and the allocator is empty.
    let mut taken = Vec::new();
    while let Some(r) = take_free(&mut buddy) {
        taken.push(r);
    }
    assert_eq!(taken.len(), MAX_REGIONS);
    let stats = buddy.stats();
    assert_eq!(
        (
            stats.regions,
            stats.total_bytes,
            stats.free_bytes,
            stats.metadata_bytes
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(stats.free_blocks, [0; MAX_ORDER + 1]);
}

#[test]
fn unaligned_regions_are_trimmed_and_blocks_stay_inside() {
    let backing = Backing::new(16 * MIB, 2 * MIB);
    // SAFETY: ours.
    unsafe { std::ptr::write_bytes(backing.ptr, 0x5A, backing.len()) };
    let start = backing.addr() + 3 * PAGE_SIZE + 123;
    let len = 9 * MIB + 7 * PAGE_SIZE + 77;
    let mut buddy = BuddyAllocator::new();
    // SAFETY: inside `backing`.
    let bytes = unsafe { buddy.add_region(backing.at(start), len) }.unwrap();
    let first_page = start.next_multiple_of(PAGE_SIZE);
    let end = (start + len) & !(PAGE_SIZE - 1);
    let stats = buddy.stats();
    assert_eq!(bytes + stats.metadata_bytes, end - first_page);
    assert_eq!(weighted_bytes(&stats), bytes);
    let initial = stats;

    let blocks = exhaust(&mut buddy, &[9, 4, 0, 2]);
    check_blocks(&buddy, &blocks, first_page + stats.metadata_bytes, end);
    let covered: usize = blocks.iter().map(|&(_, o)| size_of_order(o)).sum();
    assert_eq!(covered, bytes);
    assert!(
        blocks.iter().any(|&(_, o)| o == 9),
        "a 2 MiB block exists in a 9 MiB region"
    );
    for &(addr, order) in &blocks {
        // SAFETY: our block.
        unsafe { std::ptr::write_bytes(backing.at(addr), 0xC3, size_of_order(order)) };
    }
    // Nothing outside [start, start + len) was written, by the allocator or through its blocks.
    // SAFETY: inside the backing.
    let outside = unsafe {
        let head = std::slice::from_raw_parts(backing.ptr, start - backing.addr());
        let tail_from = start + len - backing.addr();
        let tail =
            std::slice::from_raw_parts(backing.ptr.add(tail_from), backing.len() - tail_from);
        // memcmp against buffers of the marker: fast under Miri too, unlike a byte loop.
        head == vec![0x5A; head.len()].as_slice() && tail == vec![0x5A; tail.len()].as_slice()
    };
    assert!(outside, "memory outside the region was written");
    free_all(&mut buddy, &blocks);
    assert_eq!(buddy.stats().free_blocks, initial.free_blocks);
    assert_eq!(take_free(&mut buddy), Some((start, len)));
}

#[test]
fn several_regions_allocate_and_coalesce_independently() {
    let backing = Backing::new(32 * MIB, 2 * MIB);
    let mut buddy = BuddyAllocator::new();
    let ranges = [
        (17 * MIB + PAGE_SIZE, 5 * MIB),
        (3 * PAGE_SIZE, 6 * MIB + 5 * PAGE_SIZE),
        (8 * MIB, 8 * MIB),
    ];
    for (off, len) in ranges {
        // SAFETY: disjoint ranges inside `backing`.
        unsafe { buddy.add_region(backing.ptr.wrapping_add(off), len) }.unwrap();
    }
    let initial = buddy.stats();
    assert_eq!(initial.regions, 3);
    // Adjacent regions never merge across their boundary: every block is inside one range.
    let blocks = exhaust(&mut buddy, &[10, 7, 1]);
    for &(addr, order) in &blocks {
        let inside = ranges.iter().any(|&(off, len)| {
            let lo = backing.addr() + off;
            addr >= lo && addr + size_of_order(order) <= lo + len
        });
        assert!(inside, "block {addr:#x} order {order} straddles regions");
    }
    assert_healthy_after(&mut buddy, blocks, &initial);
}

fn assert_healthy_after(
    buddy: &mut BuddyAllocator,
    mut blocks: Vec<(usize, usize)>,
    initial: &BuddyStats,
) {
    shuffle(&mut blocks, 99);
    free_all(buddy, &blocks);
    assert_eq!(buddy.stats().free_blocks, initial.free_blocks);
    assert_eq!(buddy.free_bytes(), initial.free_bytes);
}

#[test]
fn take_free_region_returns_only_entirely_free_regions() {
    let backing = Backing::new(16 * MIB, 2 * MIB);
    let mut buddy = BuddyAllocator::new();
    let a = (backing.addr() + PAGE_SIZE + 7, 4 * MIB);
    let b = (backing.addr() + 8 * MIB, 6 * MIB + 5);
    // SAFETY: disjoint ranges inside `backing`.
    let (bytes_a, _) = unsafe {
        (
            buddy.add_region(backing.at(a.0), a.1).unwrap(),
            buddy.add_region(backing.at(b.0), b.1).unwrap(),
        )
    };
    let in_a = |p: usize| p >= a.0 && p < a.0 + a.1;
    // Allocate until a block lands in region a.
    let mut held = Vec::new();
    loop {
        let p = buddy.allocate(0).unwrap().as_ptr() as usize;
        held.push(p);
        if in_a(p) {
            break;
        }
    }
    // Region b may be partly used too; free what is in b so only a is busy.
    for &p in held.iter().filter(|&&p| !in_a(p)) {
        // SAFETY: allocated above.
        unsafe { buddy.deallocate(block_at(p), 0) }.unwrap();
    }
    held.retain(|&p| in_a(p));
    assert_eq!(take_free(&mut buddy), Some(b));
    assert_eq!(take_free(&mut buddy), None, "region a holds an allocation");
    let stats = buddy.stats();
    assert_eq!((stats.regions, stats.total_bytes), (1, bytes_a));
    assert!(!buddy.owns(address(b.0 + MIB)));
    for &p in &held {
        // SAFETY: allocated above.
        unsafe { buddy.deallocate(block_at(p), 0) }.unwrap();
    }
    assert_eq!(take_free(&mut buddy), Some(a));
    assert_eq!(buddy.allocate(0), Err(BuddyError::OutOfMemory { order: 0 }));
    // The range can be added again.
    // SAFETY: as above; the allocator no longer uses it.
    let again = unsafe { buddy.add_region(backing.at(a.0), a.1) };
    assert_eq!(again, Ok(bytes_a));
}

/// Bits of metadata per page for a region of `len` bytes.
fn measure_overhead(backing: &Backing, len: usize) -> (usize, f64) {
    let (buddy, bytes) = allocator_over(backing, 0, len);
    let meta = buddy.stats().metadata_bytes;
    let pages = (bytes + meta) / PAGE_SIZE;
    (meta, (meta * 8) as f64 / pages as f64)
}

#[test]
fn metadata_overhead_is_about_three_bits_per_page() {
    // 1 GiB of lazily mapped memory: only the metadata and the free-list links are touched.
    let backing = Backing::new(1 << 30, 2 * MIB);
    for (len, expect_pages) in [(4 * MIB, 1), (64 * MIB, 2), (256 * MIB, 7), (1 << 30, 25)] {
        let (meta, bits_per_page) = measure_overhead(&backing, len);
        let pages = len / PAGE_SIZE;
        println!(
            "metadata for {} MiB: {meta} bytes ({} pages), {bits_per_page:.2} bits/page, {:.4} %",
            len / MIB,
            meta / PAGE_SIZE,
            meta as f64 * 100.0 / len as f64
        );
        assert_eq!(meta, expect_pages * PAGE_SIZE);
        // 3 bits per page, plus per-map rounding (37 maps of at most one extra word and slot),
        // rounded up to a page.
        let bound = (3 * pages + 37 * 128)
            .div_ceil(8)
            .next_multiple_of(PAGE_SIZE);
        assert!(meta <= bound, "{meta} > {bound}");
        // Whole-page rounding dominates small regions; large ones approach 3 bits per page.
        if len >= 256 * MIB {
            assert!(bits_per_page <= 3.5, "{bits_per_page} bits per page");
        }
        if len >= 1 << 30 {
            assert!(bits_per_page < 3.2, "{bits_per_page} bits per page");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Model test: random interleavings against a shadow map of live blocks.

#[derive(Debug, Clone)]
enum Op {
    Allocate(usize),
    /// Free the live block at this index (modulo the number of live blocks).
    Free(usize),
    /// Free a block freed earlier (modulo their number) again, unless it is entirely
    /// re-allocated: must be `DoubleFree` and change nothing.
    FreeAgain(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => prop_oneof![4 => 0usize..=3, 2 => 4usize..=7, 1 => 8usize..=10].prop_map(Op::Allocate),
        4 => any::<usize>().prop_map(Op::Free),
        1 => any::<usize>().prop_map(Op::FreeAgain),
    ]
}

struct Live {
    order: usize,
    pattern: u8,
}

fn check_pattern(backing: &Backing, addr: usize, order: usize, pattern: u8) {
    let size = size_of_order(order);
    // SAFETY: the block is live, ours, and inside `backing`.
    let data = unsafe { std::slice::from_raw_parts(backing.at(addr), size) };
    // Compare with a buffer of the pattern (memcmp), fast even in debug builds.
    assert!(
        data == vec![pattern; size].as_slice(),
        "block {addr:#x} (order {order}) was corrupted"
    );
}

proptest! {
    // Under Miri, the cases `PROPTEST_CASES` asks for (`cargo xtask check-extra` sets 8).
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { ProptestConfig::default().cases } else { 256 }))]

    #[test]
    fn random_operations_match_the_shadow_model(
        start_page in 0usize..16,
        start_byte in 0usize..PAGE_SIZE,
        len_pages in 2usize..2048,
        len_byte in 0usize..PAGE_SIZE,
        second_len in prop_oneof![Just(0usize), 1usize..4 * MIB],
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let backing = Backing::new(16 * MIB, 2 * MIB);
        let start = backing.addr() + start_page * PAGE_SIZE + start_byte;
        let len = len_pages * PAGE_SIZE + len_byte;
        let mut buddy = BuddyAllocator::new();
        // SAFETY: inside `backing`.
        let added = unsafe { buddy.add_region(backing.at(start), len) };
        let Ok(mut bytes) = added else {
            prop_assert_eq!(added, Err(BuddyError::RegionTooSmall { start, len }));
            return Ok(());
        };
        // Trimmed ranges of the regions (blocks must lie inside one of them).
        let mut ranges = vec![(start.next_multiple_of(PAGE_SIZE), (start + len) & !(PAGE_SIZE - 1))];
        prop_assert_eq!(bytes + buddy.stats().metadata_bytes, ranges[0].1 - ranges[0].0);
        let mut given = vec![(start, len)];
        // Optionally a second region right after the first (adjacent, so a block straddling
        // the boundary would be caught).
        if second_len > 0 {
            let second = start + len;
            // SAFETY: inside `backing` (at most 8 MiB + 64 KiB + 4 MiB from its start).
            match unsafe { buddy.add_region(backing.at(second), second_len) } {
                Ok(more) => {
                    bytes += more;
                    given.push((second, second_len));
                    ranges.push((second.next_multiple_of(PAGE_SIZE), (second + second_len) & !(PAGE_SIZE - 1)));
                }
                Err(e) => prop_assert_eq!(e, BuddyError::RegionTooSmall { start: second, len: second_len }),
            }
        }
        let initial = buddy.stats();
        prop_assert_eq!(initial.free_bytes, bytes);
        let mut live: BTreeMap<usize, Live> = BTreeMap::new();
        let mut freed: Vec<(usize, usize)> = Vec::new();
        let mut serial = 0u8;

        for op in ops {
            match op {
                Op::Allocate(order) => match buddy.allocate(order) {
                    Ok(p) => {
                        let addr = p.as_ptr() as usize;
                        let size = size_of_order(order);
                        prop_assert_eq!(addr % size, 0);
                        prop_assert!(ranges.iter().any(|&(lo, hi)| addr >= lo && addr + size <= hi));
                        prop_assert!(buddy.owns(p.as_ptr()));
                        if let Some((&prev, block)) = live.range(..addr).next_back() {
                            prop_assert!(prev + size_of_order(block.order) <= addr, "overlap");
                        }
                        if let Some((&next, _)) = live.range(addr..).next() {
                            prop_assert!(addr + size <= next, "overlap");
                        }
                        serial = serial.wrapping_add(1).max(1);
                        // SAFETY: a fresh block of `size` bytes.
                        unsafe { std::ptr::write_bytes(p.as_ptr(), serial, size) };
                        live.insert(addr, Live { order, pattern: serial });
                    }
                    Err(e) => {
                        prop_assert_eq!(e, BuddyError::OutOfMemory { order });
                        prop_assert!(buddy.stats().free_blocks[order..].iter().all(|&n| n == 0));
                    }
                },
                Op::Free(i) => {
                    if live.is_empty() {
                        continue;
                    }
                    let addr = *live.keys().nth(i % live.len()).unwrap();
                    let block = live.remove(&addr).unwrap();
                    check_pattern(&backing, addr, block.order, block.pattern);
                    // SAFETY: a live block from `allocate(order)`.
                    let r = unsafe { buddy.deallocate(block_at(addr), block.order) };
                    prop_assert_eq!(r, Ok(()));
                    freed.push((addr, block.order));
                }
                Op::FreeAgain(i) => {
                    if freed.is_empty() {
                        continue;
                    }
                    let (addr, order) = freed[i % freed.len()];
                    let end = addr + size_of_order(order);
                    let covered: usize = live
                        .range(..end)
                        .filter(|&(&a, b)| a + size_of_order(b.order) > addr)
                        .map(|(&a, b)| (a + size_of_order(b.order)).min(end) - a.max(addr))
                        .sum();
                    if covered == end - addr {
                        continue; // entirely re-allocated: freeing it would be legal
                    }
                    let before = buddy.stats();
                    // SAFETY: rejected as a double free before anything is written.
                    let r = unsafe { buddy.deallocate(block_at(addr), order) };
                    prop_assert_eq!(r, Err(BuddyError::DoubleFree { addr, order }));
                    prop_assert_eq!(buddy.stats(), before);
                }
            }
            let live_bytes: usize = live.values().map(|b| size_of_order(b.order)).sum();
            let stats = buddy.stats();
            prop_assert_eq!(stats.free_bytes + live_bytes, bytes);
            prop_assert_eq!(weighted_bytes(&stats), stats.free_bytes);
        }

        for (&addr, block) in &live {
            check_pattern(&backing, addr, block.order, block.pattern);
            // SAFETY: a live block from `allocate(order)`.
            let r = unsafe { buddy.deallocate(block_at(addr), block.order) };
            prop_assert_eq!(r, Ok(()));
        }
        let end = buddy.stats();
        prop_assert_eq!(end.free_blocks, initial.free_blocks, "coalescing is complete");
        prop_assert_eq!(end.free_bytes, initial.free_bytes);
        let mut taken = Vec::new();
        while let Some(region) = take_free(&mut buddy) {
            taken.push(region);
        }
        taken.sort_unstable();
        prop_assert_eq!(taken, given);
        prop_assert_eq!(buddy.stats().total_bytes, 0);
    }
}
