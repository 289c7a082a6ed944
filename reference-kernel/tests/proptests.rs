//! Property tests: the parsers never panic on arbitrary input, and valid memory maps
//! round-trip through both protocols.

mod common;

use common::*;
use proptest::prelude::*;
use reference_kernel::{BootInfo, BootInfoError, BootProtocol, MemoryKind, MemoryRegion};

const FUZZ_BASE: u64 = 0x8000;

/// Parses `bytes` at every interesting address with both protocols; only checks that the
/// calls return and that successful results satisfy the documented invariants.
fn parse_everything(mem: &FakeMemory, phys: u64) {
    for result in [
        BootInfo::from_pvh(phys, mem),
        BootInfo::from_multiboot2(MB2_MAGIC, phys, mem),
    ] {
        match result {
            Ok(info) => check_invariants(&info),
            Err(e) => check_message(&e),
        }
    }
}

fn check_invariants(info: &BootInfo) {
    let map = info.memory_map();
    assert!(!map.is_empty());
    assert!(
        map.iter()
            .all(|r| r.len > 0 && r.start.checked_add(r.len).is_some())
    );
    assert!(map.windows(2).all(|w| w[0].end() <= w[1].start));
    assert!(info.usable_bytes() > 0);
    assert!(info.modules().iter().all(|m| m.start <= m.end));
    assert!(info.cmdline().len() <= reference_kernel::MAX_CMDLINE);
}

fn check_message(e: &BootInfoError) {
    let msg = e.to_string();
    assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
}

/// A byte buffer placed in memory, with pointer-sized fields patched to point back into
/// it so the parsers get past the first checks.
fn fuzz_memory(mut bytes: Vec<u8>, patch_pvh: bool, patch_mb2: bool, ptrs: &[u16]) -> FakeMemory {
    let len = bytes.len();
    let mut put = |off: usize, v: &[u8]| {
        if off + v.len() <= len {
            bytes[off..off + v.len()].copy_from_slice(v);
        }
    };
    if patch_pvh {
        put(0, &PVH_MAGIC.to_le_bytes());
        put(4, &1u32.to_le_bytes());
        // modlist, cmdline, rsdp, memmap pointers into the buffer.
        for (i, field) in [16usize, 24, 32, 40].into_iter().enumerate() {
            let p = ptrs.get(i).copied().unwrap_or(0) as u64 % (len as u64 + 1);
            put(field, &(FUZZ_BASE + p).to_le_bytes());
        }
    } else if patch_mb2 {
        let total = ptrs.first().copied().unwrap_or(0) as u32 % (len as u32 + 1);
        put(0, &total.to_le_bytes());
    }
    FakeMemory {
        base: FUZZ_BASE,
        bytes,
    }
}

/// Applies `(index, byte)` mutations to a buffer.
fn mutate(mut bytes: Vec<u8>, muts: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let n = bytes.len();
    for &(i, b) in muts {
        bytes[i % n] = b;
    }
    if let Some(c) = cut {
        bytes.truncate(c % (n + 1));
    }
    bytes
}

/// Memory kinds as raw E820 types (0..=6 covers all named kinds and some `Other`).
fn kind_of(ty: u32) -> MemoryKind {
    MemoryKind::from_e820(ty)
}

/// Strategy: a valid memory map as `(start, len, type)` entries in shuffled order, with at
/// least one usable entry.
fn valid_map() -> impl Strategy<Value = Vec<(u64, u64, u32)>> {
    prop::collection::vec((0u64..0x1_0000_0000, 1u64..0x1_0000_0000, 0u32..8), 1..=128)
        .prop_map(|spec| {
            let mut start = 0u64;
            let mut out = Vec::new();
            for (i, (gap, len, ty)) in spec.into_iter().enumerate() {
                // Allow adjacent entries (gap 0) fairly often.
                let gap = if gap % 3 == 0 { 0 } else { gap };
                start += gap;
                out.push((start, len, if i == 0 { 1 } else { ty }));
                start += len;
            }
            out
        })
        .prop_shuffle()
}

fn expected_regions(map: &[(u64, u64, u32)]) -> Vec<MemoryRegion> {
    let mut v: Vec<_> = map
        .iter()
        .map(|&(start, len, ty)| MemoryRegion {
            start,
            len,
            kind: kind_of(ty),
        })
        .collect();
    v.sort_by_key(|r| r.start);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        offset in 0u64..700,
        patch_pvh in any::<bool>(),
        patch_mb2 in any::<bool>(),
        ptrs in prop::collection::vec(any::<u16>(), 4),
    ) {
        let mem = fuzz_memory(bytes, patch_pvh, patch_mb2, &ptrs);
        parse_everything(&mem, FUZZ_BASE + offset);
        parse_everything(&mem, FUZZ_BASE);
        parse_everything(&mem, offset);
        parse_everything(&mem, u64::MAX - offset);
    }

    #[test]
    fn mutated_mbi_never_panics(
        muts in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in prop::option::of(any::<usize>()),
        slack in 0usize..64,
    ) {
        let bytes = mutate(Mbi::grub().bytes, &muts, cut);
        let mut mem = FakeMemory::new(MBI_PHYS, bytes.len() + slack);
        mem.write(MBI_PHYS, &bytes);
        let result = BootInfo::from_multiboot2(MB2_MAGIC, MBI_PHYS, &mem);
        match result {
            Ok(info) => check_invariants(&info),
            Err(e) => check_message(&e),
        }
    }

    #[test]
    fn mutated_pvh_never_panics(
        muts in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in prop::option::of(any::<usize>()),
    ) {
        let (mem, phys) = Pvh::qemu().build();
        let bytes = mutate(mem.bytes, &muts, cut);
        let mem = FakeMemory { base: mem.base, bytes };
        match BootInfo::from_pvh(phys, &mem) {
            Ok(info) => check_invariants(&info),
            Err(e) => check_message(&e),
        }
    }

    #[test]
    fn valid_maps_round_trip(map in valid_map()) {
        let expected = expected_regions(&map);
        let usable: u64 = expected
            .iter()
            .filter(|r| r.kind == MemoryKind::Usable)
            .map(|r| r.len)
            .sum();

        let mut p = Pvh::qemu();
        p.memmap = map.clone();
        let (mem, phys) = p.build();
        let info = BootInfo::from_pvh(phys, &mem).unwrap();
        prop_assert_eq!(info.protocol(), BootProtocol::Pvh);
        prop_assert_eq!(info.memory_map(), expected.as_slice());
        prop_assert_eq!(info.usable_bytes(), usable);

        let mut m = Mbi::new();
        m.mmap(&map);
        m.end_tag();
        m.finish();
        let info = BootInfo::from_multiboot2(MB2_MAGIC, MBI_PHYS, &m.place(0)).unwrap();
        prop_assert_eq!(info.protocol(), BootProtocol::Multiboot2);
        prop_assert_eq!(info.memory_map(), expected.as_slice());
        prop_assert_eq!(info.usable_bytes(), usable);
    }

    #[test]
    fn any_overlap_is_detected(map in valid_map(), pick in any::<prop::sample::Index>(), shrink in 1u64..0x1000) {
        // Extend one entry so it reaches into the next one (in address order).
        let mut sorted = map.clone();
        sorted.sort_by_key(|e| e.0);
        let i = pick.index(sorted.len());
        prop_assume!(i + 1 < sorted.len());
        let (s, _, t) = sorted[i];
        let next = sorted[i + 1];
        let new_len = next.0 + next.1.min(shrink) - s;
        sorted[i] = (s, new_len, t);
        let mut p = Pvh::qemu();
        p.memmap = sorted;
        let (mem, phys) = p.build();
        let is_overlap = matches!(
            BootInfo::from_pvh(phys, &mem),
            Err(BootInfoError::OverlappingRegions { .. })
        );
        prop_assert!(is_overlap);
    }

    #[test]
    fn zero_length_entries_are_dropped(map in valid_map(), zeros in prop::collection::vec(any::<u64>(), 0..10)) {
        let expected = expected_regions(&map);
        let mut with_zeros = map.clone();
        for z in zeros {
            with_zeros.push((z, 0, 1));
        }
        let mut m = Mbi::new();
        m.mmap(&with_zeros);
        m.end_tag();
        m.finish();
        let info = BootInfo::from_multiboot2(MB2_MAGIC, MBI_PHYS, &m.place(0)).unwrap();
        prop_assert_eq!(info.memory_map(), expected.as_slice());
    }
}

#[test]
fn every_error_message_is_one_line() {
    let region = MemoryRegion {
        start: 0x1000,
        len: 0x1000,
        kind: MemoryKind::Usable,
    };
    let errors = [
        BootInfoError::BadMagic {
            protocol: BootProtocol::Pvh,
            expected: 1,
            found: 2,
        },
        BootInfoError::Unreadable {
            what: "x",
            phys: 1,
            len: 2,
        },
        BootInfoError::RangeOverflow {
            what: "x",
            phys: u64::MAX,
            len: 2,
        },
        BootInfoError::Truncated {
            what: "x",
            offset: 8,
            needed: 16,
            available: 12,
        },
        BootInfoError::NoMemoryMap {
            protocol: BootProtocol::Multiboot2,
        },
        BootInfoError::RegionOverflow {
            index: 3,
            start: u64::MAX,
            len: 1,
        },
        BootInfoError::TooManyRegions { max: 128 },
        BootInfoError::OverlappingRegions {
            first: region,
            second: MemoryRegion {
                start: u64::MAX,
                len: 9,
                kind: MemoryKind::Other(7),
            },
        },
        BootInfoError::EmptyMemoryMap,
        BootInfoError::NoUsableMemory,
        BootInfoError::TooManyModules { count: 17, max: 16 },
        BootInfoError::ModuleEndBeforeStart {
            index: 0,
            start: 2,
            end: 1,
        },
        BootInfoError::ModuleOverflow {
            index: 0,
            start: u64::MAX,
            size: 1,
        },
        BootInfoError::StringTooLong { what: "x", max: 1 },
        BootInfoError::InvalidUtf8 {
            what: "x",
            valid_up_to: 0,
        },
        BootInfoError::UnterminatedString {
            what: "x",
            phys: 0,
            read: 3,
        },
        BootInfoError::BadTotalSize {
            size: 0,
            min: 16,
            max: 1 << 20,
        },
        BootInfoError::TagTooSmall {
            tag_type: 1,
            offset: 8,
            size: 4,
        },
        BootInfoError::TagOutOfBounds {
            tag_type: 1,
            offset: 8,
            size: 400,
            total_size: 64,
        },
        BootInfoError::DuplicateTag {
            tag_type: 6,
            offset: 64,
        },
        BootInfoError::MissingEndTag { total_size: 64 },
        BootInfoError::BadEntrySize { entry_size: 20 },
    ];
    for e in &errors {
        check_message(e);
        let _: &dyn core::error::Error = e;
    }
    // Overlap messages name both ranges, even one whose end would overflow.
    let msg = errors[7].to_string();
    assert!(
        msg.contains("[0x1000, 0x2000)") && msg.contains("[0xffffffffffffffff, +0x9)"),
        "{msg}"
    );
}
