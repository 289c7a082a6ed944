//! `BuddyAllocator` against a shadow model: up to three regions carved (at fuzzer-chosen,
//! possibly unaligned or overlapping places) from one arena, then a fuzzer-chosen sequence of
//! allocations and frees. Checked: every block naturally aligned, inside a region that was
//! accepted, never overlapping a live block; its first and last bytes kept until freed; a
//! double free and an order above `MAX_ORDER` refused with an error; after freeing everything
//! the free bytes are back to their starting value and every region can be taken back.
#![no_main]

use std::alloc::{Layout, alloc};
use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use veridian_alloc::buddy::{BuddyAllocator, BuddyError, MAX_ORDER, PAGE_SIZE};

/// The arena the regions come from: allocated once, reused by every input (the allocator
/// initialises the metadata it carves from a region; the model writes every byte it checks).
/// Kept as an exposed address (`as usize`), so regions are added with `add_region_addr` and
/// the model reaches blocks by address.
const ARENA: usize = 8 << 20;

fn arena() -> usize {
    static ARENA_BASE: OnceLock<usize> = OnceLock::new();
    *ARENA_BASE.get_or_init(|| {
        let layout = Layout::from_size_align(ARENA, PAGE_SIZE).unwrap();
        // SAFETY: non-zero size. Never freed: every input uses it.
        let arena = unsafe { alloc(layout) };
        assert!(!arena.is_null());
        arena as usize
    })
}

#[derive(Arbitrary, Debug)]
struct Input {
    regions: [(u16, u16); 3],
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc {
        order: u8,
    },
    Free {
        pick: u16,
    },
    /// Frees a live block, then frees it again (must be refused as a double free).
    FreeTwice {
        pick: u16,
    },
    /// Frees a live block of order > 0 as its two halves.
    FreeHalves {
        pick: u16,
    },
}

/// Live blocks: address -> (order, fill byte).
type Live = BTreeMap<usize, (usize, u8)>;

fn check(a: &BuddyAllocator, live: &Live) {
    let live_bytes: usize = live.values().map(|&(o, _)| PAGE_SIZE << o).sum();
    assert_eq!(
        a.free_bytes() + live_bytes,
        a.stats().total_bytes,
        "bytes lost"
    );
}

fn fill(addr: usize, order: usize, byte: u8) {
    let size = PAGE_SIZE << order;
    let n = size.min(64);
    // SAFETY: the block `[addr, addr + size)` is live, owned by the model, inside the arena.
    unsafe {
        std::ptr::write_bytes(addr as *mut u8, byte, n);
        std::ptr::write_bytes((addr + size - n) as *mut u8, byte, n);
    }
}

fn verify(addr: usize, order: usize, byte: u8) {
    let size = PAGE_SIZE << order;
    let n = size.min(64);
    // SAFETY: as in `fill`.
    let (head, tail) = unsafe {
        (
            std::slice::from_raw_parts(addr as *const u8, n),
            std::slice::from_raw_parts((addr + size - n) as *const u8, n),
        )
    };
    assert!(
        head.iter().chain(tail).all(|&b| b == byte),
        "block {addr:#x} of order {order} overwritten while live"
    );
}

fuzz_target!(|input: Input| {
    let base = arena();
    let mut a = BuddyAllocator::new();
    let mut accepted: Vec<(usize, usize)> = Vec::new();
    for &(offset, len) in &input.regions {
        // Offsets and lengths in 256-byte steps: unaligned edges get trimmed.
        let offset = usize::from(offset) * 256 % (ARENA / 2);
        let len = (usize::from(len) * 256).min(ARENA - offset);
        let start = base + offset;
        let overlaps = accepted
            .iter()
            .any(|&(s, l)| start < s + l && s < start + len);
        // SAFETY: inside the arena, which outlives the allocator, nothing else uses, and whose
        // provenance `arena` exposed.
        match unsafe { a.add_region_addr(start, len) } {
            Ok(_) => {
                assert!(!overlaps, "overlapping region accepted");
                accepted.push((start, len));
            }
            Err(BuddyError::RegionOverlaps { .. }) => {
                assert!(
                    overlaps,
                    "{start:#x}+{len:#x} refused as overlapping {accepted:x?}"
                )
            }
            Err(_) => {}
        }
    }
    let initial_free = a.free_bytes();
    assert_eq!(initial_free, a.stats().total_bytes);
    let mut live = Live::new();
    let mut next_fill = 0u8;
    for op in input.ops.iter().take(1000) {
        match *op {
            Op::Alloc { order } => {
                let order = usize::from(order) % (MAX_ORDER + 2);
                match a.allocate(order) {
                    Ok(p) => {
                        assert!(order <= MAX_ORDER);
                        let addr = p.as_ptr() as usize;
                        let size = PAGE_SIZE << order;
                        assert_eq!(addr % size, 0, "{addr:#x} misaligned for order {order}");
                        assert!(
                            accepted
                                .iter()
                                .any(|&(s, l)| s <= addr && addr + size <= s + l),
                            "{addr:#x}+{size:#x} outside the regions"
                        );
                        if let Some((&b, &(o, _))) = live.range(..=addr).next_back() {
                            assert!(b + (PAGE_SIZE << o) <= addr, "overlaps {b:#x}");
                        }
                        if let Some((&b, _)) = live.range(addr..).next() {
                            assert!(addr + size <= b, "overlaps {b:#x}");
                        }
                        next_fill = next_fill.wrapping_add(1);
                        fill(addr, order, next_fill);
                        live.insert(addr, (order, next_fill));
                    }
                    Err(BuddyError::OrderTooLarge { .. }) => assert!(order > MAX_ORDER),
                    Err(BuddyError::OutOfMemory { .. }) => {
                        assert!(order <= MAX_ORDER);
                        assert!(!a.can_allocate(order));
                    }
                    Err(e) => panic!("allocate({order}): unexpected {e}"),
                }
            }
            Op::Free { pick } | Op::FreeTwice { pick } | Op::FreeHalves { pick } => {
                if live.is_empty() {
                    continue;
                }
                let (&addr, &(order, byte)) =
                    live.iter().nth(usize::from(pick) % live.len()).unwrap();
                verify(addr, order, byte);
                live.remove(&addr);
                let ptr = std::ptr::NonNull::new(addr as *mut u8).unwrap();
                if matches!(op, Op::FreeHalves { .. }) && order > 0 {
                    let half = PAGE_SIZE << (order - 1);
                    let upper = std::ptr::NonNull::new((addr + half) as *mut u8).unwrap();
                    // SAFETY: both halves of a block this allocator gave and the model owns.
                    unsafe {
                        a.deallocate(upper, order - 1).unwrap();
                        a.deallocate(ptr, order - 1).unwrap();
                    }
                } else {
                    // SAFETY: a live block of this order from this allocator.
                    unsafe { a.deallocate(ptr, order).unwrap() };
                }
                if matches!(op, Op::FreeTwice { .. }) {
                    assert!(a.is_free(addr as *const u8, order));
                    // SAFETY: refused without any change (the block is free).
                    let again = unsafe { a.deallocate(ptr, order) };
                    assert!(
                        matches!(again, Err(BuddyError::DoubleFree { .. })),
                        "double free of {addr:#x} order {order}: {again:?}"
                    );
                }
            }
        }
        check(&a, &live);
    }
    for (&addr, &(order, byte)) in &live {
        verify(addr, order, byte);
        // SAFETY: a live block of this order from this allocator.
        unsafe {
            a.deallocate(std::ptr::NonNull::new(addr as *mut u8).unwrap(), order)
                .unwrap()
        };
    }
    assert_eq!(a.free_bytes(), initial_free, "memory not all back");
    let mut taken = 0;
    while let Some((start, len)) = a.take_free_region() {
        let start = start.addr();
        assert!(
            accepted.contains(&(start, len)),
            "took back {start:#x}+{len:#x}"
        );
        taken += 1;
    }
    assert_eq!(
        taken,
        accepted.len(),
        "a region stayed in use after every block was freed"
    );
});
