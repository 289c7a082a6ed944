//! Multiboot2 (MBI) parsing tests.

mod common;

use common::*;
use reference_kernel::bootinfo::multiboot2::{MAX_TOTAL_SIZE, MIN_TOTAL_SIZE};
use reference_kernel::{
    BootInfo, BootInfoError, BootProtocol, MAX_CMDLINE, MAX_MODULES, MemoryKind, MemoryRegion,
    Module,
};

fn parse(m: &Mbi) -> Result<BootInfo, BootInfoError> {
    BootInfo::from_multiboot2(MB2_MAGIC, MBI_PHYS, &m.place(0))
}

fn region(start: u64, len: u64, kind: MemoryKind) -> MemoryRegion {
    MemoryRegion { start, len, kind }
}

/// An MBI with just a memory map plus the given extra tags, then the end tag.
fn minimal(extra: impl FnOnce(&mut Mbi)) -> Mbi {
    let mut m = Mbi::new();
    m.mmap(&qemu_e820());
    extra(&mut m);
    m.end_tag();
    m.finish();
    m
}

#[test]
fn grub_mbi_parses() {
    let mut m = Mbi::new();
    m.cmdline("console=ttyS0 root=/dev/vda");
    m.loader_name("GRUB 2.06");
    m.module(0x0200_0000, 0x0200_1234, "/boot/initrd");
    m.basic_meminfo(639, 130_048);
    m.tag(21, &0x0010_0000u32.to_le_bytes());
    m.mmap(&qemu_e820());
    let old = m.acpi_old();
    let new = m.acpi_new();
    m.end_tag();
    m.finish();
    assert_eq!(m.bytes, Mbi::grub().bytes);
    let info = parse(&m).expect("valid MBI");

    assert_eq!(info.protocol(), BootProtocol::Multiboot2);
    assert_eq!(info.protocol().to_string(), "Multiboot2");
    assert_eq!(info.cmdline(), "console=ttyS0 root=/dev/vda");
    assert_eq!(info.bootloader_name(), Some("GRUB 2.06"));
    assert_eq!(
        info.modules(),
        &[Module {
            start: 0x0200_0000,
            end: 0x0200_1234
        }]
    );
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
    assert_eq!(info.usable_bytes(), 0x9fc00 + 0x7fe0000 - 0x100000);
    // The new RSDP copy is preferred; its address is inside the MBI, after the tag header.
    assert_ne!(old, new);
    assert_eq!(info.rsdp(), Some(MBI_PHYS + new as u64 + 8));
    assert_eq!(
        info.boot_data(),
        &[region(MBI_PHYS, m.bytes.len() as u64, MemoryKind::Reserved)]
    );
}

#[test]
fn acpi_tag_order_and_old_only() {
    // New before old: still the new one.
    let mut new = 0;
    let m = minimal(|m| {
        new = m.acpi_new();
        m.acpi_old();
    });
    assert_eq!(parse(&m).unwrap().rsdp(), Some(MBI_PHYS + new as u64 + 8));

    let mut old = 0;
    let m = minimal(|m| old = m.acpi_old());
    assert_eq!(parse(&m).unwrap().rsdp(), Some(MBI_PHYS + old as u64 + 8));

    let m = minimal(|_| {});
    let info = parse(&m).unwrap();
    assert_eq!(info.rsdp(), None);
    assert_eq!(info.cmdline(), "");
    assert_eq!(info.bootloader_name(), None);
    assert!(info.modules().is_empty());
}

#[test]
fn acpi_tags_too_short() {
    let m = minimal(|m| {
        m.tag(15, &[0; 20]);
    });
    assert!(matches!(
        parse(&m).unwrap_err(),
        BootInfoError::Truncated {
            what: "Multiboot2 ACPI new RSDP tag",
            needed: 44,
            available: 28,
            ..
        }
    ));
    let m = minimal(|m| {
        m.tag(14, &[0; 8]);
    });
    assert!(matches!(
        parse(&m).unwrap_err(),
        BootInfoError::Truncated {
            what: "Multiboot2 ACPI old RSDP tag",
            ..
        }
    ));
}

#[test]
fn bad_magic() {
    let m = Mbi::grub();
    let err = BootInfo::from_multiboot2(0x2BADB002, MBI_PHYS, &m.place(0)).unwrap_err();
    assert_eq!(
        err,
        BootInfoError::BadMagic {
            protocol: BootProtocol::Multiboot2,
            expected: MB2_MAGIC,
            found: 0x2BADB002
        }
    );
    assert!(err.to_string().contains("Multiboot2"), "{err}");
}

#[test]
fn total_size_too_small() {
    for size in [0, 8, 15] {
        let mut m = Mbi::grub();
        m.set_total_size(size);
        let err = parse(&m).unwrap_err();
        assert_eq!(
            err,
            BootInfoError::BadTotalSize {
                size,
                min: MIN_TOTAL_SIZE,
                max: MAX_TOTAL_SIZE
            }
        );
        assert!(
            err.to_string().contains(&format!("total_size {size} ")),
            "{err}"
        );
    }
}

#[test]
fn total_size_too_large() {
    let mut m = Mbi::grub();
    m.set_total_size(MAX_TOTAL_SIZE + 1);
    // Even if that much memory is readable.
    let mem = m.place(MAX_TOTAL_SIZE as usize + 16);
    let err = BootInfo::from_multiboot2(MB2_MAGIC, MBI_PHYS, &mem).unwrap_err();
    assert!(matches!(err, BootInfoError::BadTotalSize { size, .. } if size == MAX_TOTAL_SIZE + 1));
    m.set_total_size(u32::MAX);
    assert!(matches!(
        parse(&m).unwrap_err(),
        BootInfoError::BadTotalSize { .. }
    ));
}

#[test]
fn total_size_beyond_readable_memory() {
    let mut m = Mbi::grub();
    let len = m.bytes.len() as u64;
    m.set_total_size(len as u32 + 8);
    let err = parse(&m).unwrap_err();
    assert_eq!(
        err,
        BootInfoError::Unreadable {
            what: "Multiboot2 information",
            phys: MBI_PHYS,
            len: len + 8
        }
    );
    // MBI pointer outside memory / header not readable.
    let err = BootInfo::from_multiboot2(MB2_MAGIC, 0x4000_0000, &m.place(0)).unwrap_err();
    assert!(matches!(
        err,
        BootInfoError::Unreadable {
            phys: 0x4000_0000,
            len: 8,
            ..
        }
    ));
    let err = BootInfo::from_multiboot2(MB2_MAGIC, u64::MAX - 3, &m.place(0)).unwrap_err();
    assert!(matches!(err, BootInfoError::RangeOverflow { .. }), "{err}");
}

#[test]
fn tag_size_smaller_than_header() {
    for size in [0, 4, 7] {
        let mut m = Mbi::new();
        m.mmap(&qemu_e820());
        let off = m.raw_tag(21, size, &[0; 8]);
        m.end_tag();
        m.finish();
        let err = parse(&m).unwrap_err();
        assert_eq!(
            err,
            BootInfoError::TagTooSmall {
                tag_type: 21,
                offset: off as u64,
                size
            }
        );
    }
}

#[test]
fn tag_running_past_total_size() {
    let mut m = Mbi::new();
    m.mmap(&qemu_e820());
    let off = m.raw_tag(1, 200, b"abc\0");
    m.end_tag();
    m.finish();
    let total = m.bytes.len() as u32;
    // Memory beyond total_size is readable, but the tag must stay within the MBI.
    let mem = m.place(4096);
    let err = BootInfo::from_multiboot2(MB2_MAGIC, MBI_PHYS, &mem).unwrap_err();
    assert_eq!(
        err,
        BootInfoError::TagOutOfBounds {
            tag_type: 1,
            offset: off as u64,
            size: 200,
            total_size: total
        }
    );
    assert!(err.to_string().contains("runs past total_size"), "{err}");

    // A huge size must not overflow the offset arithmetic.
    let mut m = Mbi::new();
    m.raw_tag(6, u32::MAX, &[]);
    m.end_tag();
    m.finish();
    assert!(matches!(
        parse(&m).unwrap_err(),
        BootInfoError::TagOutOfBounds { size: u32::MAX, .. }
    ));
}

#[test]
fn missing_end_tag() {
    let mut m = Mbi::new();
    m.mmap(&qemu_e820());
    m.finish();
    let total = m.bytes.len() as u32;
    assert_eq!(
        parse(&m).unwrap_err(),
        BootInfoError::MissingEndTag { total_size: total }
    );
    // total_size cutting into the end tag's header.
    let mut m = Mbi::grub();
    let total = m.bytes.len() as u32 - 4;
    m.set_total_size(total);
    assert_eq!(
        parse(&m).unwrap_err(),
        BootInfoError::MissingEndTag { total_size: total }
    );
}

#[test]
fn data_after_end_tag_ignored() {
    let mut m = Mbi::grub();
    m.cmdline("ignored");
    m.finish();
    assert_eq!(parse(&m).unwrap().cmdline(), "console=ttyS0 root=/dev/vda");
}

#[test]
fn missing_mmap() {
    let mut m = Mbi::new();
    m.cmdline("x");
    m.basic_meminfo(639, 1024);
    m.end_tag();
    m.finish();
    let err = parse(&m).unwrap_err();
    assert_eq!(
        err,
        BootInfoError::NoMemoryMap {
            protocol: BootProtocol::Multiboot2
        }
    );
    assert!(err.to_string().contains("memory map"), "{err}");
}

#[test]
fn bad_entry_size() {
    for entry_size in [0u32, 16, 20, 28, 36] {
        let mut m = Mbi::new();
        // Payload: entry_size, version, one 24-byte entry.
        let mut p = Vec::new();
        p.extend_from_slice(&entry_size.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&[0; 24]);
        m.tag(6, &p);
        m.end_tag();
        m.finish();
        let err = parse(&m).unwrap_err();
        assert_eq!(err, BootInfoError::BadEntrySize { entry_size });
        assert!(err.to_string().contains(&entry_size.to_string()), "{err}");
    }
}

#[test]
fn larger_entry_size_accepted() {
    let mut m = Mbi::new();
    m.mmap_with_entry_size(32, &qemu_e820());
    m.end_tag();
    m.finish();
    let info = parse(&m).unwrap();
    assert_eq!(info.memory_map().len(), 5);
    assert_eq!(info.usable_bytes(), 0x9fc00 + 0x7fe0000 - 0x100000);
}

#[test]
fn mmap_tag_truncated_and_partial_entries() {
    let mut m = Mbi::new();
    m.tag(6, &24u32.to_le_bytes());
    m.end_tag();
    m.finish();
    assert!(matches!(
        parse(&m).unwrap_err(),
        BootInfoError::Truncated {
            what: "Multiboot2 memory map tag",
            ..
        }
    ));

    // Trailing bytes that do not form a whole entry are ignored.
    let mut p = Vec::new();
    p.extend_from_slice(&24u32.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    p.extend_from_slice(&0x1000u64.to_le_bytes());
    p.extend_from_slice(&0x2000u64.to_le_bytes());
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    p.extend_from_slice(&[0xff; 12]);
    let mut m = Mbi::new();
    m.tag(6, &p);
    m.end_tag();
    m.finish();
    assert_eq!(
        parse(&m).unwrap().memory_map(),
        &[region(0x1000, 0x2000, MemoryKind::Usable)]
    );
}

#[test]
fn overlapping_entries() {
    let mut map = qemu_e820();
    map.push((0x9f000, 0x2000, 2));
    let mut m = Mbi::new();
    m.mmap(&map);
    m.end_tag();
    m.finish();
    let err = parse(&m).unwrap_err();
    assert_eq!(
        err,
        BootInfoError::OverlappingRegions {
            first: region(0, 0x9fc00, MemoryKind::Usable),
            second: region(0x9f000, 0x2000, MemoryKind::Reserved),
        }
    );
    assert!(err.to_string().contains("[0x0, 0x9fc00)"), "{err}");
}

#[test]
fn memory_types_mapped() {
    let mut m = Mbi::new();
    m.mmap(&[
        (0x5000, 0x1000, 5),
        (0x4000, 0x1000, 4),
        (0x3000, 0x1000, 3),
        (0x2000, 0x1000, 2),
        (0x1000, 0x1000, 1),
        (0x6000, 0x1000, 0),
        (0x7000, 0x1000, 99),
        (0x8000, 0, 1),
    ]);
    m.end_tag();
    m.finish();
    let kinds: Vec<_> = parse(&m)
        .unwrap()
        .memory_map()
        .iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            MemoryKind::Usable,
            MemoryKind::Reserved,
            MemoryKind::AcpiReclaimable,
            MemoryKind::AcpiNvs,
            MemoryKind::Bad,
            MemoryKind::Other(0),
            MemoryKind::Other(99),
        ]
    );
}

#[test]
fn overflowing_entry() {
    let mut m = Mbi::new();
    m.mmap(&[(0x1000, 0x1000, 1), (u64::MAX, 2, 2)]);
    m.end_tag();
    m.finish();
    assert_eq!(
        parse(&m).unwrap_err(),
        BootInfoError::RegionOverflow {
            index: 1,
            start: u64::MAX,
            len: 2
        }
    );
}

#[test]
fn modules_validated() {
    let m = minimal(|m| {
        m.module(0x2000, 0x1000, "backwards");
    });
    let err = parse(&m).unwrap_err();
    assert_eq!(
        err,
        BootInfoError::ModuleEndBeforeStart {
            index: 0,
            start: 0x2000,
            end: 0x1000
        }
    );
    assert!(err.to_string().contains("boot module 0"), "{err}");

    let m = minimal(|m| {
        for i in 0..MAX_MODULES as u32 {
            m.module(0x100_0000 + i * 0x1000, 0x100_1000 + i * 0x1000, "");
        }
    });
    assert_eq!(parse(&m).unwrap().modules().len(), MAX_MODULES);

    let m = minimal(|m| {
        for i in 0..=MAX_MODULES as u32 {
            m.module(0x100_0000 + i * 0x1000, 0x100_1000 + i * 0x1000, "");
        }
    });
    assert_eq!(
        parse(&m).unwrap_err(),
        BootInfoError::TooManyModules {
            count: MAX_MODULES as u64 + 1,
            max: MAX_MODULES
        }
    );

    let m = minimal(|m| {
        m.tag(3, &[0; 6]);
    });
    assert!(matches!(
        parse(&m).unwrap_err(),
        BootInfoError::Truncated {
            what: "Multiboot2 module tag",
            ..
        }
    ));
}

#[test]
fn strings_validated() {
    let long = "a".repeat(MAX_CMDLINE + 1);
    let m = minimal(|m| {
        m.cmdline(&long);
    });
    // The command line is kept up to the limit (as Linux), the fix-up says so.
    let info = parse(&m).unwrap();
    assert_eq!(info.cmdline(), &long[..MAX_CMDLINE]);
    assert_eq!(info.cmdline_fixups().dropped, 1);

    let exact = "b".repeat(MAX_CMDLINE);
    let m = minimal(|m| {
        m.cmdline(&exact);
    });
    assert_eq!(parse(&m).unwrap().cmdline(), exact);
    assert!(!parse(&m).unwrap().cmdline_fixups().any());

    let m = minimal(|m| {
        m.string_tag(1, b"ok \xc3\x28");
    });
    let info = parse(&m).unwrap();
    assert_eq!(info.cmdline(), "ok ?(");
    assert_eq!(info.cmdline_fixups().replaced, 1);

    let m = minimal(|m| {
        m.string_tag(2, b"\xff");
    });
    assert!(matches!(
        parse(&m).unwrap_err(),
        BootInfoError::InvalidUtf8 {
            what: "boot loader name",
            ..
        }
    ));

    let name = "n".repeat(200);
    let m = minimal(|m| {
        m.loader_name(&name);
    });
    assert!(matches!(
        parse(&m).unwrap_err(),
        BootInfoError::StringTooLong {
            what: "boot loader name",
            ..
        }
    ));

    // A string without NUL ends with its tag.
    let m = minimal(|m| {
        m.tag(1, b"no-nul");
    });
    assert_eq!(parse(&m).unwrap().cmdline(), "no-nul");
}

#[test]
fn duplicate_tags_rejected() {
    for ty in [1u32, 2, 6, 14, 15] {
        let mut m = Mbi::grub();
        m.bytes.truncate(m.bytes.len() - 8); // drop the end tag
        let off = match ty {
            1 => m.cmdline("again"),
            2 => m.loader_name("again"),
            6 => m.mmap(&[(0x1_0000_0000, 0x1000, 1)]),
            14 => m.acpi_old(),
            _ => m.acpi_new(),
        };
        m.end_tag();
        m.finish();
        assert_eq!(
            parse(&m).unwrap_err(),
            BootInfoError::DuplicateTag {
                tag_type: ty,
                offset: off as u64
            }
        );
    }
}
