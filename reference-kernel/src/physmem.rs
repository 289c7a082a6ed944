//! Which physical pages the frame allocator may manage: the boot memory map's usable RAM, page
//! aligned inward, minus every range something else still uses (the kernel image, the boot
//! structures, modules, the first MiB), up to a limit (what the kernel can currently address).
//!
//! What it does: [`plan_frames`] turns a validated [`MemoryRegion`] map (sorted, overlap-free:
//! [`crate::BootInfo`] checks that and rejects bad maps with a message) and a list of reserved
//! ranges into sorted, disjoint, page-aligned ranges of free RAM. Reserved ranges are widened
//! outward to whole pages (a page that is partly reserved is not handed out); usable regions are
//! narrowed inward. Reserved ranges may overlap each other and need not lie in usable RAM.
//!
//! What it guarantees: every page of the result lies inside a usable region, below the limit,
//! and outside every reserved range; every such page is in the result unless the fixed capacity
//! ran out, in which case the missing bytes are counted in [`FramePlan::dropped_bytes`] (never
//! silently lost). Above-limit bytes are counted in [`FramePlan::above_limit_bytes`].

use crate::bootinfo::{MemoryKind, MemoryRegion};

/// The page size the plan aligns to.
pub const PAGE_SIZE: u64 = 4096;

/// Most ranges a plan holds (usable regions split by reserved ranges).
pub const MAX_FRAME_RANGES: usize = 128;

/// A half-open physical range `[start, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl PhysRange {
    /// `[start, start + len)`, saturating at the top of the address space.
    pub const fn from_len(start: u64, len: u64) -> Self {
        Self {
            start,
            end: start.saturating_add(len),
        }
    }

    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Free RAM for the frame allocator; see the module documentation.
#[derive(Clone, Debug)]
pub struct FramePlan {
    ranges: [PhysRange; MAX_FRAME_RANGES],
    count: usize,
    /// Free bytes left out because the plan was full.
    pub dropped_bytes: u64,
    /// Usable bytes at or above the limit (not addressable yet).
    pub above_limit_bytes: u64,
    /// Usable bytes inside reserved ranges (kernel image, boot data, ...), page-widened.
    pub reserved_bytes: u64,
}

impl FramePlan {
    /// The free ranges, sorted by address, disjoint, page-aligned, non-empty.
    pub fn ranges(&self) -> &[PhysRange] {
        &self.ranges[..self.count]
    }

    /// Total bytes in [`ranges`](Self::ranges).
    pub fn total_bytes(&self) -> u64 {
        self.ranges().iter().map(PhysRange::len).sum()
    }

    fn push(&mut self, range: PhysRange) {
        if range.is_empty() {
            return;
        }
        match self.ranges.get_mut(self.count) {
            Some(slot) => {
                *slot = range;
                self.count += 1;
            }
            None => self.dropped_bytes = self.dropped_bytes.saturating_add(range.len()),
        }
    }
}

const fn align_up(x: u64) -> u64 {
    match x.checked_next_multiple_of(PAGE_SIZE) {
        Some(v) => v,
        None => u64::MAX - (PAGE_SIZE - 1),
    }
}

const fn align_down(x: u64) -> u64 {
    x - x % PAGE_SIZE
}

/// Plans the frame allocator's RAM: usable regions of `map` below `limit`, minus `reserved`.
/// See the module documentation for what the result guarantees.
pub fn plan_frames(map: &[MemoryRegion], reserved: &[PhysRange], limit: u64) -> FramePlan {
    let mut plan = FramePlan {
        ranges: [PhysRange::default(); MAX_FRAME_RANGES],
        count: 0,
        dropped_bytes: 0,
        above_limit_bytes: 0,
        reserved_bytes: 0,
    };
    let limit = align_down(limit);
    for region in map.iter().filter(|r| r.kind == MemoryKind::Usable) {
        let start = align_up(region.start);
        let end = align_down(region.start.saturating_add(region.len));
        if end <= start {
            continue;
        }
        if end > limit {
            plan.above_limit_bytes += end - start.max(limit);
        }
        let end = end.min(limit);
        if end <= start {
            continue;
        }
        // Walk the region from `cursor`, cutting out the reserved ranges in address order. The
        // reserved list is small and unsorted: each step picks the lowest reserved start that
        // reaches past `cursor`.
        let mut cursor = start;
        while cursor < end {
            let next_cut = reserved
                .iter()
                .filter(|r| !r.is_empty())
                .map(|r| PhysRange {
                    start: align_down(r.start),
                    end: align_up(r.end),
                })
                .filter(|r| r.end > cursor && r.start < end)
                .min_by_key(|r| r.start);
            match next_cut {
                None => {
                    plan.push(PhysRange { start: cursor, end });
                    cursor = end;
                }
                Some(cut) => {
                    if cut.start > cursor {
                        plan.push(PhysRange {
                            start: cursor,
                            end: cut.start,
                        });
                    }
                    let resume = cut.end.min(end);
                    plan.reserved_bytes += resume - cut.start.max(cursor);
                    cursor = resume;
                }
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn usable(start: u64, len: u64) -> MemoryRegion {
        MemoryRegion {
            start,
            len,
            kind: MemoryKind::Usable,
        }
    }

    #[test]
    fn qemu_like_map_loses_exactly_the_reserved_pages() {
        // QEMU's PVH map for -m 128M: low RAM, the BIOS hole, then RAM from 1 MiB.
        let map = [
            usable(0, 0x9fc00),
            MemoryRegion {
                start: 0x9fc00,
                len: 0x400,
                kind: MemoryKind::Reserved,
            },
            usable(0x10_0000, 0x7ee_0000),
        ];
        let reserved = [
            PhysRange::from_len(0, 0x10_0000),         // first MiB
            PhysRange::from_len(0x10_0000, 0x12_3456), // kernel image (unaligned end)
            PhysRange::from_len(0x7f0_0000, 0x10),     // boot data at the very end
        ];
        let plan = plan_frames(&map, &reserved, 4 << 30);
        assert_eq!(
            plan.ranges(),
            &[
                PhysRange {
                    start: 0x22_4000,
                    end: 0x7f0_0000,
                },
                PhysRange {
                    start: 0x7f0_1000,
                    end: 0x7fe_0000,
                },
            ]
        );
        assert_eq!(plan.dropped_bytes, 0);
        assert_eq!(plan.above_limit_bytes, 0);
        assert_eq!(plan.reserved_bytes, 0x9f000 + 0x12_4000 + 0x1000);
    }

    #[test]
    fn limit_cuts_and_counts() {
        let map = [usable(0x10_0000, 0x1_0000_0000)];
        let plan = plan_frames(&map, &[], 0x8000_0000);
        assert_eq!(
            plan.ranges(),
            &[PhysRange {
                start: 0x10_0000,
                end: 0x8000_0000
            }]
        );
        assert_eq!(plan.above_limit_bytes, 0x1_0010_0000 - 0x8000_0000);
    }

    #[test]
    fn full_plan_counts_dropped_bytes() {
        let map = [usable(0, PAGE_SIZE * 1000)];
        // Reserve every other page: 500 free single pages, more than the capacity.
        let reserved: Vec<PhysRange> = (0..500)
            .map(|i| PhysRange::from_len((2 * i + 1) * PAGE_SIZE, PAGE_SIZE))
            .collect();
        let plan = plan_frames(&map, &reserved, u64::MAX);
        assert_eq!(plan.ranges().len(), MAX_FRAME_RANGES);
        assert_eq!(
            plan.total_bytes() + plan.dropped_bytes,
            500 * PAGE_SIZE,
            "every free page is either planned or counted as dropped"
        );
    }

    #[test]
    fn region_at_the_top_of_the_address_space_does_not_overflow() {
        let map = [usable(u64::MAX - 3 * PAGE_SIZE, 3 * PAGE_SIZE)];
        let plan = plan_frames(&map, &[PhysRange::from_len(u64::MAX - 10, 100)], u64::MAX);
        assert!(plan.ranges().iter().all(|r| r.end < u64::MAX));
    }

    /// A map of up to 16 disjoint regions over pages 0..512, some usable, unaligned edges.
    fn arb_map() -> impl Strategy<Value = Vec<MemoryRegion>> {
        proptest::collection::vec((0u64..4096 * 32, 0u64..4096 * 32, any::<bool>()), 0..16)
            .prop_map(|parts| {
                let mut at = 0u64;
                let mut map = Vec::new();
                for (gap, len, is_usable) in parts {
                    at += gap;
                    if len > 0 {
                        map.push(MemoryRegion {
                            start: at,
                            len,
                            kind: if is_usable {
                                MemoryKind::Usable
                            } else {
                                MemoryKind::Reserved
                            },
                        });
                    }
                    at += len;
                }
                map
            })
    }

    proptest! {
        #[test]
        fn plan_matches_a_page_model(
            map in arb_map(),
            reserved in proptest::collection::vec((0u64..4096 * 600, 0u64..4096 * 8), 0..6),
            limit in 0u64..4096 * 600,
        ) {
            let reserved: Vec<PhysRange> =
                reserved.iter().map(|&(s, l)| PhysRange::from_len(s, l)).collect();
            let plan = plan_frames(&map, &reserved, limit);
            // Model: a page is free iff it lies wholly in a usable region, wholly below the
            // limit, and touches no reserved byte.
            let pages = 4096 * 600 / PAGE_SIZE + 64;
            for page in 0..pages {
                let (s, e) = (page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
                let in_usable = map.iter().any(|r| {
                    r.kind == MemoryKind::Usable && r.start <= s && e <= r.start + r.len
                });
                let touches_reserved =
                    reserved.iter().any(|r| !r.is_empty() && r.start < e && s < r.end);
                let expected = in_usable && e <= limit && !touches_reserved;
                let planned = plan.ranges().iter().any(|r| r.start <= s && e <= r.end);
                prop_assert_eq!(planned, expected, "page {:#x}", s);
            }
            let r = plan.ranges();
            for w in r.windows(2) {
                prop_assert!(w[0].end <= w[1].start, "sorted and disjoint");
            }
            for x in r {
                prop_assert!(x.start % PAGE_SIZE == 0 && x.end % PAGE_SIZE == 0 && x.start < x.end);
            }
            prop_assert_eq!(plan.dropped_bytes, 0);
        }
    }
}
