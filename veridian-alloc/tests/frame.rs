//! Tests of `veridian_alloc::frame::FrameAllocator` over hosted memory standing in for a direct
//! map: offsets, physical alignment of 2 MiB and 1 GiB frames, the huge-page mapping policy,
//! physical addresses in errors, and giving ranges back.

use std::alloc::{Layout, alloc, dealloc};

use veridian_alloc::buddy::{BuddyError, MAX_ORDER, PAGE_SIZE};
use veridian_alloc::frame::{FrameAllocator, FrameError, HugePageSize, PHYS_OFFSET_ALIGN};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Test memory freed on drop: `mmap(MAP_NORESERVE)` where available (the 1 GiB-page tests ask
/// for gigabytes of address space and touch only a few pages), the global allocator otherwise.
struct Backing {
    ptr: *mut u8,
    len: usize,
    #[cfg(not(all(feature = "std", unix)))]
    layout: Layout,
}

impl Backing {
    /// `len` bytes aligned to `align` (a power of two), or `None` if the system refuses.
    #[cfg(all(feature = "std", unix))]
    fn new(len: usize, align: usize) -> Option<Self> {
        let map_len = len + align;
        // SAFETY: an anonymous private mapping, no fixed address: touches nothing of ours.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let raw = raw.cast::<u8>();
        let aligned = (raw as usize).next_multiple_of(align);
        let head = aligned - raw as usize;
        let tail = map_len - head - len;
        // SAFETY: unmapping the unaligned head and the tail of our own fresh mapping.
        unsafe {
            if head > 0 {
                libc::munmap(raw.cast(), head);
            }
            if tail > 0 {
                libc::munmap(raw.add(head + len).cast(), tail);
            }
        }
        Some(Self {
            ptr: raw.with_addr(aligned),
            len,
        })
    }

    #[cfg(not(all(feature = "std", unix)))]
    fn new(len: usize, align: usize) -> Option<Self> {
        let layout = Layout::from_size_align(len, align).ok()?;
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc(layout) };
        (!ptr.is_null()).then_some(Self { ptr, len, layout })
    }

    fn addr(&self) -> usize {
        self.ptr.addr()
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        #[cfg(all(feature = "std", unix))]
        // SAFETY: our mapping of `len` bytes at `ptr`.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
        #[cfg(not(all(feature = "std", unix)))]
        {
            debug_assert_eq!(self.len, self.layout.size());
            // SAFETY: allocated in `new` with this layout.
            unsafe { dealloc(self.ptr, self.layout) };
        }
    }
}

/// A 2 MiB-aligned backing from the global allocator (used where mmap is not needed).
fn small_backing(len: usize) -> (*mut u8, Layout) {
    let layout = Layout::from_size_align(len, 2 << 20).unwrap();
    // SAFETY: non-zero size.
    let ptr = unsafe { alloc(layout) };
    assert!(!ptr.is_null());
    (ptr, layout)
}

/// A direct-map offset for hosted memory at `virt`: the 1 GiB boundary below it, so physical
/// addresses are small numbers and alignment is preserved.
fn offset_for(virt: usize) -> usize {
    virt & !(PHYS_OFFSET_ALIGN - 1)
}

/// A frame allocator whose direct map starts at `offset` with the provenance of `memory` (the
/// hosted memory standing in for RAM), so that it needs no exposed provenance.
fn frames_over(memory: *mut u8, offset: usize) -> FrameAllocator {
    FrameAllocator::with_direct_map(memory.with_addr(offset)).unwrap()
}

#[test]
fn new_checks_the_offset() {
    assert_eq!(
        FrameAllocator::new(4096).err(),
        Some(FrameError::OffsetMisaligned { offset: 4096 })
    );
    assert_eq!(
        FrameAllocator::new((GIB + 2 * MIB) as usize).err(),
        Some(FrameError::OffsetMisaligned {
            offset: (GIB + 2 * MIB) as usize
        })
    );
    assert!(FrameAllocator::new(0).is_ok());
    assert!(FrameAllocator::new(GIB as usize).is_ok());
    assert!(FrameAllocator::new(0xffff_8000_0000_0000).is_ok());
    let message = FrameError::OffsetMisaligned { offset: 4096 }.to_string();
    assert!(
        message.contains("1 GiB") && !message.contains('\n'),
        "{message}"
    );
}

#[test]
fn usable_in_a_static() {
    static FRAMES: spin::Mutex<FrameAllocator> = spin::Mutex::new(match FrameAllocator::new(0) {
        Ok(f) => f,
        Err(_) => panic!("bad offset"),
    });
    let mut frames = FRAMES.lock();
    assert_eq!(frames.phys_offset(), 0);
    assert_eq!(
        frames.allocate(0),
        Err(FrameError::Buddy(BuddyError::OutOfMemory { order: 0 }))
    );
}

#[test]
fn physical_addresses_follow_the_offset() {
    let (ptr, layout) = small_backing(64 << 20);
    let virt = ptr as usize;
    let offset = offset_for(virt);
    let phys_base = (virt - offset) as u64;
    let mut frames = frames_over(ptr, offset);
    let start = phys_base + 3 * PAGE_SIZE as u64 + 5;
    let len = 40 * MIB;
    // SAFETY: the range is inside our backing, mapped at phys + offset.
    let bytes = unsafe { frames.add_range(start, len) }.unwrap();
    assert!(bytes > 39 * MIB);
    assert_eq!(frames.stats().total_bytes as u64, bytes);

    let mut held = Vec::new();
    for order in [0, 3, 0, 9, 5] {
        let phys = frames.allocate(order).unwrap();
        let size = (PAGE_SIZE << order) as u64;
        assert_eq!(phys % size, 0, "physically aligned");
        assert!(phys >= start && phys + size <= start + len);
        assert!(frames.owns(phys));
        // The frame is reachable through the direct map.
        let through_map = ptr.with_addr(phys as usize + offset).cast::<u64>();
        // SAFETY: our frame, mapped at phys + offset (inside the backing).
        unsafe {
            through_map.write(phys);
            assert_eq!(through_map.read(), phys);
        }
        held.push((phys, order));
    }
    for (phys, order) in held {
        // SAFETY: allocated above.
        unsafe { frames.free(phys, order) }.unwrap();
    }
    assert_eq!(frames.free_bytes() as u64, bytes);
    assert_eq!(frames.take_free_range(), Some((start, len)));
    // SAFETY: allocated in `small_backing`.
    unsafe { dealloc(ptr, layout) };
}

/// `is_free` answers what `free` would refuse as a double free: a free block, a block inside a
/// free one, a block with a free part; never an allocated block or one outside the ranges.
#[test]
fn is_free_matches_what_free_refuses() {
    let (ptr, layout) = small_backing(64 << 20);
    let virt = ptr as usize;
    let offset = offset_for(virt);
    let phys_base = (virt - offset) as u64;
    let mut frames = frames_over(ptr, offset);
    let start = phys_base.next_multiple_of(2 * MIB);
    // SAFETY: the range is inside our backing, mapped at phys + offset.
    unsafe { frames.add_range(start, 32 * MIB) }.unwrap();
    let big = frames.allocate(4).unwrap(); // 64 KiB
    assert!(!frames.is_free(big, 4), "allocated block");
    assert!(!frames.is_free(big, 0), "a frame of an allocated block");
    // Free one frame of it (the caller owns every frame of the block).
    // SAFETY: a frame of the block allocated above, not used.
    unsafe { frames.free(big + PAGE_SIZE as u64, 0) }.unwrap();
    assert!(frames.is_free(big + PAGE_SIZE as u64, 0), "freed frame");
    assert!(frames.is_free(big, 4), "a block with a free part");
    assert!(!frames.is_free(big, 0), "its other frames stay allocated");
    // SAFETY: as above: a double free, which `free` must refuse (and `is_free` predicts).
    assert!(unsafe { frames.free(big + PAGE_SIZE as u64, 0) }.is_err());
    assert!(!frames.is_free(big + 8, 0), "misaligned");
    assert!(
        !frames.is_free(phys_base + 200 * MIB, 0),
        "outside the ranges"
    );
    assert!(
        !frames.is_free(big, MAX_ORDER + 1),
        "order above the maximum"
    );
    let never = frames.allocate(0).unwrap();
    // SAFETY: allocated just above, not used.
    unsafe { frames.free(never, 0) }.unwrap();
    assert!(frames.is_free(never, 0), "a frame given back");
    // SAFETY: allocated in `small_backing`.
    unsafe { dealloc(ptr, layout) };
}

/// Also the path a kernel takes: `new` and integer addresses, so the direct map's pointers take
/// exposed provenance.
#[test]
#[cfg_attr(
    miri,
    ignore = "exposed provenance (`FrameAllocator::new`), which -Zmiri-strict-provenance rejects"
)]
fn identity_map_offset_zero() {
    let (ptr, layout) = small_backing(8 << 20);
    let mut frames = FrameAllocator::new(0).unwrap();
    // SAFETY: our backing; with offset 0 physical = virtual.
    unsafe { frames.add_range(ptr as u64, 8 * MIB) }.unwrap();
    let phys = frames.allocate_huge(HugePageSize::Size2MiB).unwrap();
    assert_eq!(phys % (2 * MIB), 0);
    assert!(phys >= ptr as u64 && phys + 2 * MIB <= ptr as u64 + 8 * MIB);
    // SAFETY: allocated above.
    unsafe { frames.free(phys, 9) }.unwrap();
    assert!(frames.take_free_range().is_some());
    // SAFETY: allocated in `small_backing`.
    unsafe { dealloc(ptr, layout) };
}

#[test]
fn two_mib_frames_are_physically_aligned_until_out_of_memory() {
    let (ptr, layout) = small_backing(32 << 20);
    let offset = offset_for(ptr as usize);
    let phys_base = (ptr as usize - offset) as u64;
    let mut frames = frames_over(ptr, offset);
    // SAFETY: inside our backing.
    unsafe { frames.add_range(phys_base, 32 * MIB) }.unwrap();
    let mut huge = Vec::new();
    loop {
        match frames.allocate_huge(HugePageSize::Size2MiB) {
            Ok(phys) => {
                assert_eq!(phys % (2 * MIB), 0);
                assert_eq!(
                    (phys as usize + offset) % (2 << 20),
                    0,
                    "virtual alignment agrees"
                );
                huge.push(phys);
            }
            Err(e) => {
                assert_eq!(e, FrameError::Buddy(BuddyError::OutOfMemory { order: 9 }));
                break;
            }
        }
    }
    // 16 blocks of 2 MiB, less the one that holds the metadata.
    assert_eq!(huge.len(), 15);
    assert_eq!(
        frames.allocate_for_mapping(4 * MIB),
        Err(FrameError::NoHugePage { requested: 4 * MIB })
    );
    // 4 KiB frames are still there.
    let small = frames.allocate(0).unwrap();
    // SAFETY: allocated above.
    unsafe { frames.free(small, 0) }.unwrap();
    for phys in huge {
        // SAFETY: allocated above.
        unsafe { frames.free(phys, HugePageSize::Size2MiB.order()) }.unwrap();
    }
    assert_eq!(frames.take_free_range(), Some((phys_base, 32 * MIB)));
    // SAFETY: allocated in `small_backing`.
    unsafe { dealloc(ptr, layout) };
}

#[test]
fn mapping_policy_without_any_huge_frame() {
    let (ptr, layout) = small_backing(4 << 20);
    let offset = offset_for(ptr as usize);
    let phys_base = (ptr as usize - offset) as u64;
    let mut frames = frames_over(ptr, offset);
    // 1.5 MiB: no 2 MiB block can exist.
    // SAFETY: inside our backing.
    unsafe { frames.add_range(phys_base, 3 * MIB / 2) }.unwrap();
    let stats = frames.stats();
    for len in [1, 2 * MIB, GIB, 5 * GIB] {
        let err = frames.allocate_for_mapping(len).unwrap_err();
        assert_eq!(err, FrameError::NoHugePage { requested: len });
        let message = err.to_string();
        assert!(message.contains("2 MiB") && message.contains("1 GiB") && !message.contains('\n'));
    }
    assert_eq!(
        frames.allocate_for_mapping(0),
        Err(FrameError::EmptyMapping)
    );
    assert_eq!(frames.stats(), stats, "failed policy calls change nothing");
    assert_eq!(
        frames.allocate_huge(HugePageSize::Size1GiB),
        Err(FrameError::Buddy(BuddyError::OutOfMemory {
            order: MAX_ORDER
        }))
    );
    assert!(frames.take_free_range().is_some());
    // SAFETY: allocated in `small_backing`.
    unsafe { dealloc(ptr, layout) };
}

#[test]
#[cfg_attr(
    miri,
    ignore = "maps 2 GiB with MAP_NORESERVE, which Miri's mmap does not support"
)]
fn one_gib_frames_and_the_mapping_policy() {
    // 2 GiB + 64 MiB of address space aligned to 1 GiB, mapped lazily: the first GiB loses its
    // metadata pages, the second is one free 1 GiB block.
    let len = (2 * GIB + 64 * MIB) as usize;
    let Some(backing) = Backing::new(len, GIB as usize) else {
        println!("skipped: cannot map {len:#x} bytes aligned to 1 GiB on this machine");
        return;
    };
    let offset = offset_for(backing.addr());
    // Physical addresses start at 3 GiB, so the test also checks a non-zero physical base.
    let offset = offset - 3 * GIB as usize;
    let phys_base = (backing.addr() - offset) as u64;
    assert_eq!(phys_base % GIB, 0);
    let mut frames = frames_over(backing.ptr, offset);
    // SAFETY: our mapping, `len` bytes at phys_base + offset.
    unsafe { frames.add_range(phys_base, len as u64) }.unwrap();
    assert_eq!(frames.stats().free_blocks[MAX_ORDER], 1);

    // Below 1 GiB: 2 MiB, and the 1 GiB block is not split.
    let (small, size) = frames.allocate_for_mapping(GIB - 1).unwrap();
    assert_eq!(size, HugePageSize::Size2MiB);
    assert_eq!(small % (2 * MIB), 0);
    assert_eq!(frames.stats().free_blocks[MAX_ORDER], 1);
    // 1 GiB or more with a 1 GiB block free: 1 GiB, physically aligned.
    let (giant, size) = frames.allocate_for_mapping(3 * GIB).unwrap();
    assert_eq!(size, HugePageSize::Size1GiB);
    assert_eq!(giant % GIB, 0);
    assert_eq!(giant, phys_base + GIB);
    // No 1 GiB block left: 2 MiB pages for the rest of a large mapping.
    let (next, size) = frames.allocate_for_mapping(2 * GIB).unwrap();
    assert_eq!(size, HugePageSize::Size2MiB);
    assert_eq!(next % (2 * MIB), 0);
    assert_eq!(
        frames.allocate_huge(HugePageSize::Size1GiB),
        Err(FrameError::Buddy(BuddyError::OutOfMemory {
            order: MAX_ORDER
        }))
    );
    // SAFETY: allocated above with these sizes.
    unsafe {
        frames.free(giant, HugePageSize::Size1GiB.order()).unwrap();
        frames.free(small, 9).unwrap();
        frames.free(next, 9).unwrap();
    }
    let again = frames.allocate_huge(HugePageSize::Size1GiB).unwrap();
    assert_eq!(again, giant, "the 1 GiB block coalesced back");
    // SAFETY: allocated above.
    unsafe { frames.free(again, MAX_ORDER) }.unwrap();
    assert_eq!(frames.take_free_range(), Some((phys_base, len as u64)));
}

#[test]
fn errors_carry_physical_addresses_and_change_nothing() {
    let (ptr, layout) = small_backing(8 << 20);
    let offset = offset_for(ptr as usize);
    let phys_base = (ptr as usize - offset) as u64;
    let mut frames = frames_over(ptr, offset);
    // SAFETY: inside our backing.
    unsafe { frames.add_range(phys_base + 2 * MIB, 4 * MIB) }.unwrap();
    let frame = frames.allocate(1).unwrap();
    let stats = frames.stats();
    // SAFETY: (all calls below) each is rejected before anything is written.
    unsafe {
        assert_eq!(
            frames.add_range(phys_base + 3 * MIB, MIB),
            Err(FrameError::Buddy(BuddyError::RegionOverlaps {
                start: (phys_base + 3 * MIB) as usize,
                len: MIB as usize
            }))
        );
        assert_eq!(
            frames.add_range(phys_base + 7 * MIB, 4096),
            Err(FrameError::Buddy(BuddyError::RegionTooSmall {
                start: (phys_base + 7 * MIB) as usize,
                len: 4096
            }))
        );
        assert_eq!(
            frames.add_range(u64::MAX - 4096, 8192),
            Err(FrameError::RangeOverflow {
                phys: u64::MAX - 4096,
                len: 8192
            })
        );
        let outside = phys_base + 7 * MIB;
        assert_eq!(
            frames.free(outside, 0),
            Err(FrameError::Buddy(BuddyError::NotOwned {
                addr: outside as usize
            }))
        );
        assert_eq!(
            frames.free(frame + 4096, 1),
            Err(FrameError::Buddy(BuddyError::Misaligned {
                addr: (frame + 4096) as usize,
                order: 1
            }))
        );
        assert_eq!(
            frames.free(frame, MAX_ORDER + 1),
            Err(FrameError::Buddy(BuddyError::OrderTooLarge {
                order: MAX_ORDER + 1
            }))
        );
        assert_eq!(frames.stats(), stats);
        frames.free(frame, 1).unwrap();
        assert_eq!(
            frames.free(frame, 1),
            Err(FrameError::Buddy(BuddyError::DoubleFree {
                addr: frame as usize,
                order: 1
            }))
        );
    }
    let message = FrameError::Buddy(BuddyError::DoubleFree {
        addr: 0x1000,
        order: 1,
    })
    .to_string();
    assert!(
        message.contains("double free") && message.contains("0x1000"),
        "{message}"
    );
    assert!(!frames.owns(phys_base), "outside the added range");
    assert!(frames.owns(phys_base + 5 * MIB));
    assert!(!frames.owns(u64::MAX));
    assert!(frames.take_free_range().is_some());
    // SAFETY: allocated in `small_backing`.
    unsafe { dealloc(ptr, layout) };
}

#[test]
fn ranges_beyond_the_direct_map_are_rejected() {
    // A higher-half direct map: physical addresses from 2^47 up have no virtual address.
    let offset = 0xffff_8000_0000_0000;
    let mut frames = FrameAllocator::new(offset).unwrap();
    let high = 1u64 << 47;
    // SAFETY: (all calls below) rejected before any memory is touched.
    unsafe {
        assert_eq!(
            frames.add_range(high, GIB),
            Err(FrameError::RangeOverflow {
                phys: high,
                len: GIB
            })
        );
        assert_eq!(
            frames.add_range(high - MIB, 2 * MIB),
            Err(FrameError::RangeOverflow {
                phys: high - MIB,
                len: 2 * MIB
            })
        );
        assert_eq!(
            frames.free(u64::MAX, 0),
            Err(FrameError::RangeOverflow {
                phys: u64::MAX,
                len: PAGE_SIZE as u64
            })
        );
        assert_eq!(
            frames.free(0x1000, 0),
            Err(FrameError::Buddy(BuddyError::NotOwned { addr: 0x1000 }))
        );
    }
    assert!(!frames.owns(high));
    let message = FrameError::RangeOverflow {
        phys: high,
        len: GIB,
    }
    .to_string();
    assert!(
        message.contains("0x800000000000") && !message.contains('\n'),
        "{message}"
    );
}

#[test]
fn take_free_range_gives_back_physical_ranges() {
    let (ptr, layout) = small_backing(16 << 20);
    let offset = offset_for(ptr as usize);
    let phys_base = (ptr as usize - offset) as u64;
    let mut frames = frames_over(ptr, offset);
    let a = (phys_base + 4096 + 3, 5 * MIB);
    let b = (phys_base + 8 * MIB, 8 * MIB);
    // SAFETY: disjoint ranges inside our backing.
    unsafe {
        frames.add_range(a.0, a.1).unwrap();
        frames.add_range(b.0, b.1).unwrap();
    }
    // A 4 MiB block can only come from b (a has no aligned 4 MiB block).
    let busy = frames.allocate(10).unwrap();
    assert!(busy >= b.0 && busy < b.0 + b.1);
    assert_eq!(frames.take_free_range(), Some(a));
    assert_eq!(frames.take_free_range(), None);
    assert_eq!(frames.stats().regions, 1);
    // SAFETY: allocated above.
    unsafe { frames.free(busy, 10) }.unwrap();
    assert_eq!(frames.take_free_range(), Some(b));
    let stats = frames.stats();
    assert_eq!(
        (stats.regions, stats.total_bytes, stats.free_bytes),
        (0, 0, 0)
    );
    // SAFETY: allocated in `small_backing`.
    unsafe { dealloc(ptr, layout) };
}

#[test]
fn huge_page_sizes() {
    assert_eq!(HugePageSize::Size2MiB.bytes(), 2 * MIB);
    assert_eq!(HugePageSize::Size1GiB.bytes(), GIB);
    assert_eq!(
        (PAGE_SIZE as u64) << HugePageSize::Size2MiB.order(),
        2 * MIB
    );
    assert_eq!((PAGE_SIZE as u64) << HugePageSize::Size1GiB.order(), GIB);
}
