//! PVH (`hvm_start_info`) parsing tests.

mod common;

use common::*;
use reference_kernel::bootinfo::pvh;
use reference_kernel::{
    BootInfo, BootInfoError, BootProtocol, MAX_CMDLINE, MAX_MEMORY_REGIONS, MAX_MODULES,
    MemoryKind, MemoryRegion, Module,
};

fn parse(p: &Pvh) -> Result<BootInfo, BootInfoError> {
    let (mem, phys) = p.build();
    BootInfo::from_pvh(phys, &mem)
}

fn region(start: u64, len: u64, kind: MemoryKind) -> MemoryRegion {
    MemoryRegion { start, len, kind }
}

#[test]
fn qemu_start_info_parses() {
    let info = parse(&Pvh::qemu()).expect("valid QEMU start_info");
    assert_eq!(info.protocol(), BootProtocol::Pvh);
    assert_eq!(info.protocol().to_string(), "PVH");
    assert_eq!(
        info.memory_map(),
        &[
            region(0, 0x9fc00, MemoryKind::Usable),
            region(0x9fc00, 0x400, MemoryKind::Reserved),
            region(0xf0000, 0x10000, MemoryKind::Reserved),
            region(0x100000, 0x7fe0000 - 0x100000, MemoryKind::Usable),
            region(0xfffc0000, 0x40000, MemoryKind::Reserved),
        ]
    );
    assert_eq!(info.memory_map()[4].end(), 0x1_0000_0000);
    assert_eq!(info.usable_bytes(), 0x9fc00 + 0x7fe0000 - 0x100000);
    assert_eq!(info.cmdline(), "console=ttyS0 loglevel=debug quiet");
    assert_eq!(info.rsdp(), Some(0xf52e0));
    assert_eq!(
        info.modules(),
        &[Module {
            start: 0x0200_0000,
            end: 0x0200_1234
        }]
    );
    assert_eq!(info.bootloader_name(), None);
    let cmdline_len = "console=ttyS0 loglevel=debug quiet".len() as u64 + 1;
    assert_eq!(
        info.boot_data(),
        &[
            region(PVH_START_INFO, 56, MemoryKind::Reserved),
            region(PVH_MEMMAP, 5 * 24, MemoryKind::Reserved),
            region(PVH_MODLIST, 32, MemoryKind::Reserved),
            region(PVH_CMDLINE, cmdline_len, MemoryKind::Reserved),
        ]
    );
}

#[test]
fn qemu_without_optional_parts() {
    let mut p = Pvh::qemu();
    p.cmdline = None;
    p.rsdp = 0;
    p.modules.clear();
    let info = parse(&p).unwrap();
    assert_eq!(info.cmdline(), "");
    assert_eq!(info.rsdp(), None);
    assert!(info.modules().is_empty());
    assert_eq!(info.boot_data().len(), 2);
}

#[test]
fn empty_cmdline_string() {
    let mut p = Pvh::qemu();
    p.cmdline = Some(Vec::new());
    let info = parse(&p).unwrap();
    assert_eq!(info.cmdline(), "");
    assert_eq!(
        info.boot_data()[3],
        region(PVH_CMDLINE, 1, MemoryKind::Reserved)
    );
}

#[test]
fn unsorted_map_is_sorted_and_unknown_types_kept() {
    let mut p = Pvh::qemu();
    p.memmap = vec![
        (0x100000, 0x1000_0000, 1),
        (0xfd00_0000, 0x1000, 12),
        (0, 0x9fc00, 1),
        (0x9fc00, 0x400, 3),
        (0xa0000, 0x100, 4),
        (0xb0000, 0x100, 5),
    ];
    let info = parse(&p).unwrap();
    let kinds: Vec<_> = info
        .memory_map()
        .iter()
        .map(|r| (r.start, r.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (0, MemoryKind::Usable),
            (0x9fc00, MemoryKind::AcpiReclaimable),
            (0xa0000, MemoryKind::AcpiNvs),
            (0xb0000, MemoryKind::Bad),
            (0x100000, MemoryKind::Usable),
            (0xfd00_0000, MemoryKind::Other(12)),
        ]
    );
}

#[test]
fn bad_magic() {
    let mut p = Pvh::qemu();
    p.magic = 0x1BADB002;
    let err = parse(&p).unwrap_err();
    assert_eq!(
        err,
        BootInfoError::BadMagic {
            protocol: BootProtocol::Pvh,
            expected: pvh::PVH_MAGIC,
            found: 0x1BADB002
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("0x336ec578") && msg.contains("0x1badb002"),
        "{msg}"
    );
}

#[test]
fn truncated_start_info() {
    let (mut mem, phys) = Pvh::qemu().build();
    mem.truncate_at(phys + 20);
    let err = BootInfo::from_pvh(phys, &mem).unwrap_err();
    assert_eq!(
        err,
        BootInfoError::Unreadable {
            what: "PVH start_info",
            phys,
            len: 48
        }
    );
    // The version-1 tail (memmap_entries) is missing.
    let (mut mem, phys) = Pvh::qemu().build();
    mem.truncate_at(phys + 50);
    let err = BootInfo::from_pvh(phys, &mem).unwrap_err();
    assert_eq!(
        err,
        BootInfoError::Unreadable {
            what: "PVH start_info",
            phys,
            len: 56
        }
    );
    // Pointer entirely outside memory.
    let err = BootInfo::from_pvh(0x10_0000, &mem).unwrap_err();
    assert!(matches!(
        err,
        BootInfoError::Unreadable {
            phys: 0x10_0000,
            ..
        }
    ));
    // Pointer whose range overflows.
    let err = BootInfo::from_pvh(u64::MAX - 8, &mem).unwrap_err();
    assert!(matches!(err, BootInfoError::RangeOverflow { .. }), "{err}");
}

#[test]
fn version_0_and_empty_memmap_rejected() {
    let mut p = Pvh::qemu();
    p.version = 0;
    let err = parse(&p).unwrap_err();
    assert_eq!(
        err,
        BootInfoError::NoMemoryMap {
            protocol: BootProtocol::Pvh
        }
    );
    assert_eq!(err.to_string(), "PVH start_info has no memory map");

    // Version 0 needs only 48 readable bytes to be diagnosed.
    let (mut mem, phys) = p.build();
    mem.truncate_at(phys + 48);
    assert_eq!(
        BootInfo::from_pvh(phys, &mem).unwrap_err(),
        BootInfoError::NoMemoryMap {
            protocol: BootProtocol::Pvh
        }
    );

    let mut p = Pvh::qemu();
    p.memmap.clear();
    assert_eq!(
        parse(&p).unwrap_err(),
        BootInfoError::NoMemoryMap {
            protocol: BootProtocol::Pvh
        }
    );
}

#[test]
fn newer_version_accepted() {
    let mut p = Pvh::qemu();
    p.version = 2;
    assert!(parse(&p).is_ok());
}

#[test]
fn memmap_pointer_outside_memory() {
    let (mut mem, phys) = Pvh::qemu().build();
    mem.write_u64(phys + si::MEMMAP_PADDR, 0x4000_0000);
    let err = BootInfo::from_pvh(phys, &mem).unwrap_err();
    assert_eq!(
        err,
        BootInfoError::Unreadable {
            what: "PVH memory map",
            phys: 0x4000_0000,
            len: 5 * 24
        }
    );
    assert!(err.to_string().contains("0x40000000"), "{err}");

    // The array starts inside memory but runs off its end.
    mem.write_u64(phys + si::MEMMAP_PADDR, mem.end() - 24 * 2);
    assert!(matches!(
        BootInfo::from_pvh(phys, &mem).unwrap_err(),
        BootInfoError::Unreadable {
            what: "PVH memory map",
            ..
        }
    ));

    // Address range wraps around.
    mem.write_u64(phys + si::MEMMAP_PADDR, u64::MAX - 16);
    assert!(matches!(
        BootInfo::from_pvh(phys, &mem).unwrap_err(),
        BootInfoError::RangeOverflow {
            what: "PVH memory map",
            ..
        }
    ));
}

#[test]
fn overlapping_entries_rejected() {
    let mut p = Pvh::qemu();
    p.memmap.push((0x7000_0000, 0x1000, 2));
    p.memmap.push((0x7fd0000, 0x20000, 2)); // overlaps the end of [0x100000, 0x7fe0000)
    let err = parse(&p).unwrap_err();
    assert_eq!(
        err,
        BootInfoError::OverlappingRegions {
            first: region(0x100000, 0x7fe0000 - 0x100000, MemoryKind::Usable),
            second: region(0x7fd0000, 0x20000, MemoryKind::Reserved),
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("[0x100000, 0x7fe0000)") && msg.contains("[0x7fd0000, 0x7ff0000)"),
        "{msg}"
    );
}

#[test]
fn contained_and_duplicate_entries_rejected() {
    let mut p = Pvh::qemu();
    p.memmap.push((0x200000, 0x1000, 2)); // inside the big RAM region
    assert!(matches!(
        parse(&p).unwrap_err(),
        BootInfoError::OverlappingRegions { .. }
    ));
    let mut p = Pvh::qemu();
    p.memmap.push((0, 0x9fc00, 1)); // exact duplicate
    assert!(matches!(
        parse(&p).unwrap_err(),
        BootInfoError::OverlappingRegions { .. }
    ));
}

#[test]
fn overflowing_entry_rejected() {
    let mut p = Pvh::qemu();
    p.memmap.push((0xffff_ffff_ffff_f000, 0x2000, 2));
    let err = parse(&p).unwrap_err();
    assert_eq!(
        err,
        BootInfoError::RegionOverflow {
            index: 5,
            start: 0xffff_ffff_ffff_f000,
            len: 0x2000
        }
    );
    assert!(err.to_string().contains("entry 5"), "{err}");
    // Ending exactly at 2^64 - 1 is fine.
    let mut p = Pvh::qemu();
    p.memmap.push((0xffff_ffff_ffff_f000, 0xfff, 2));
    assert!(parse(&p).is_ok());
}

/// `n` adjacent 4 KiB usable regions.
fn many_regions(n: usize) -> Vec<(u64, u64, u32)> {
    (0..n as u64).map(|i| (i * 0x1000, 0x1000, 1)).collect()
}

#[test]
fn too_many_entries_rejected() {
    let mut p = Pvh::qemu();
    p.memmap = many_regions(MAX_MEMORY_REGIONS + 1);
    let err = parse(&p).unwrap_err();
    assert_eq!(
        err,
        BootInfoError::TooManyRegions {
            max: MAX_MEMORY_REGIONS
        }
    );
    assert!(err.to_string().contains("128"), "{err}");
}

#[test]
fn max_entries_and_zero_length_entries_accepted() {
    let mut p = Pvh::qemu();
    p.memmap = many_regions(MAX_MEMORY_REGIONS);
    // Zero-length entries are skipped and do not count against the capacity.
    for i in 0..10 {
        p.memmap.insert(i * 7, (0x5000, 0, 2));
    }
    let info = parse(&p).unwrap();
    assert_eq!(info.memory_map().len(), MAX_MEMORY_REGIONS);
    assert!(info.memory_map().iter().all(|r| r.len > 0));
    assert_eq!(info.usable_bytes(), MAX_MEMORY_REGIONS as u64 * 0x1000);
}

#[test]
fn empty_or_unusable_map_rejected() {
    let mut p = Pvh::qemu();
    p.memmap = vec![(0, 0, 1), (0x1000, 0, 1)];
    assert_eq!(parse(&p).unwrap_err(), BootInfoError::EmptyMemoryMap);
    p.memmap = vec![(0, 0x1000, 2), (0x1000, 0x1000, 3)];
    assert_eq!(parse(&p).unwrap_err(), BootInfoError::NoUsableMemory);
}

#[test]
fn cmdline_too_long_rejected() {
    let mut p = Pvh::qemu();
    p.cmdline = Some(vec![b'a'; MAX_CMDLINE]);
    assert_eq!(parse(&p).unwrap().cmdline().len(), MAX_CMDLINE);

    p.cmdline = Some(vec![b'a'; MAX_CMDLINE + 1]);
    // Tolerant, as Linux: kept up to the limit, and the fix-up says a cut was made.
    let info = parse(&p).unwrap();
    assert_eq!(info.cmdline().len(), MAX_CMDLINE);
    assert!(info.cmdline_fixups().dropped >= 1);

    p.cmdline = Some(vec![b'a'; 3000]);
    let info = parse(&p).unwrap();
    assert_eq!(info.cmdline(), "a".repeat(MAX_CMDLINE));
    assert!(info.cmdline_fixups().any());
}

#[test]
fn cmdline_invalid_utf8_and_controls_replaced() {
    let mut p = Pvh::qemu();
    p.cmdline = Some(b"root=/dev/\xff\xfe mode=test \x1b[31m".to_vec());
    let info = parse(&p).unwrap();
    assert_eq!(info.cmdline(), "root=/dev/?? mode=test ?[31m");
    assert_eq!(
        info.cmdline_fixups(),
        reference_kernel::CmdlineFixups {
            dropped: 0,
            replaced: 3
        }
    );
}

#[test]
fn cmdline_unreadable_or_unterminated() {
    let (mut mem, phys) = Pvh::qemu().build();
    mem.write_u64(phys + si::CMDLINE_PADDR, 0x8000_0000);
    assert_eq!(
        BootInfo::from_pvh(phys, &mem).unwrap_err(),
        BootInfoError::Unreadable {
            what: "kernel command line",
            phys: 0x8000_0000,
            len: 1
        }
    );

    // A string running into the end of memory without a NUL: kept up to there (as Linux),
    // and the fix-up says it was cut.
    let (mut mem, phys) = Pvh::qemu().build();
    let end = mem.end();
    mem.write(end - 5, b"abcde");
    mem.write_u64(phys + si::CMDLINE_PADDR, end - 5);
    let info = BootInfo::from_pvh(phys, &mem).unwrap();
    assert_eq!(info.cmdline(), "abcde");
    assert_eq!(info.cmdline_fixups().dropped, 1);

    // A string whose NUL is the very last readable byte is fine.
    mem.write(end - 5, b"abcd\0");
    assert_eq!(BootInfo::from_pvh(phys, &mem).unwrap().cmdline(), "abcd");

    // A cmdline pointer at the top of the address space: unreadable at once, still an error.
    mem.write_u64(phys + si::CMDLINE_PADDR, u64::MAX);
    assert!(BootInfo::from_pvh(phys, &mem).is_err());
}

#[test]
fn modules_validated() {
    let mut p = Pvh::qemu();
    p.modules = (0..MAX_MODULES as u64)
        .map(|i| (0x100_0000 + i * 0x1000, 0x1000))
        .collect();
    assert_eq!(parse(&p).unwrap().modules().len(), MAX_MODULES);

    p.modules.push((0x200_0000, 0x10));
    let err = parse(&p).unwrap_err();
    assert_eq!(
        err,
        BootInfoError::TooManyModules {
            count: MAX_MODULES as u64 + 1,
            max: MAX_MODULES
        }
    );

    let mut p = Pvh::qemu();
    p.modules = vec![(0x100_0000, 0x10), (u64::MAX - 4, 0x10)];
    assert_eq!(
        parse(&p).unwrap_err(),
        BootInfoError::ModuleOverflow {
            index: 1,
            start: u64::MAX - 4,
            size: 0x10
        }
    );

    // Module list pointer outside memory.
    let (mut mem, phys) = Pvh::qemu().build();
    mem.write_u64(phys + si::MODLIST_PADDR, 0x9000_0000);
    assert_eq!(
        BootInfo::from_pvh(phys, &mem).unwrap_err(),
        BootInfoError::Unreadable {
            what: "PVH module list",
            phys: 0x9000_0000,
            len: 32
        }
    );

    // A huge nr_modules is rejected before anything is read.
    mem.write_u32(phys + si::NR_MODULES, u32::MAX);
    assert!(matches!(
        BootInfo::from_pvh(phys, &mem).unwrap_err(),
        BootInfoError::TooManyModules {
            count: 0xffff_ffff,
            ..
        }
    ));
}

#[test]
fn huge_memmap_count_is_an_error() {
    let (mut mem, phys) = Pvh::qemu().build();
    mem.write_u32(phys + si::MEMMAP_ENTRIES, u32::MAX);
    assert!(matches!(
        BootInfo::from_pvh(phys, &mem).unwrap_err(),
        BootInfoError::Unreadable {
            what: "PVH memory map",
            ..
        }
    ));
}

#[test]
fn boot_info_is_plain_data() {
    // Storable in a static: no lifetimes, Send + Sync.
    static INFO: std::sync::OnceLock<BootInfo> = std::sync::OnceLock::new();
    let stored = INFO.get_or_init(|| parse(&Pvh::qemu()).unwrap());
    let copy = stored.clone();
    assert_eq!(copy.cmdline(), "console=ttyS0 loglevel=debug quiet");
    assert_eq!(copy.memory_map(), stored.memory_map());
}
