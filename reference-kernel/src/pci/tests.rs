//! Host tests for PCI enumeration over a fake configuration space that models BAR sizing
//! (only the size mask's bits are writable) and counts accesses.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::string::{String, ToString};
use std::vec::Vec;

use super::*;
use crate::bootinfo::{MemoryKind, MemoryRegion};

/// One fake function: 64 registers, and for each BAR register the bits a write may change.
#[derive(Clone)]
struct FakeFn {
    regs: [u32; 64],
    writable: [u32; 64],
}

impl FakeFn {
    fn new(vendor: u16, device: u16, class: u32, header: u8) -> Self {
        let mut regs = [0u32; 64];
        regs[0] = u32::from(vendor) | (u32::from(device) << 16);
        regs[2] = class << 8 | 1;
        regs[3] = u32::from(header) << 16;
        let mut writable = [0u32; 64];
        writable[1] = 0xffff;
        Self { regs, writable }
    }

    /// A memory BAR of `size` at `addr` in register `index` (64-bit: also `index + 1`).
    fn mem_bar(mut self, index: usize, addr: u64, size: u64, is_64: bool) -> Self {
        let mask = !(size - 1);
        let r = 4 + index;
        self.regs[r] = (addr as u32) | if is_64 { 0x4 | 0x8 } else { 0 };
        self.writable[r] = mask as u32 & !0xf;
        if is_64 {
            self.regs[r + 1] = (addr >> 32) as u32;
            self.writable[r + 1] = (mask >> 32) as u32;
        }
        self
    }

    fn io_bar(mut self, index: usize, port: u16, size: u16) -> Self {
        self.regs[4 + index] = u32::from(port) | 1;
        self.writable[4 + index] = u32::from(!(size - 1)) & 0xfffc;
        self
    }

    /// Capabilities `(offset, id, next)`; sets the status bit and the head pointer.
    fn caps(mut self, head: u8, list: &[(u8, u8, u8)]) -> Self {
        self.regs[1] |= 0x10 << 16;
        self.regs[0x34 / 4] = u32::from(head);
        for &(offset, id, next) in list {
            let r = usize::from(offset / 4);
            self.regs[r] = u32::from(id) | (u32::from(next) << 8);
        }
        self
    }

    fn secondary(mut self, bus: u8) -> Self {
        self.regs[0x18 / 4] = u32::from(bus) << 8;
        self
    }
}

#[derive(Default)]
struct FakeBus {
    fns: RefCell<BTreeMap<Bdf, FakeFn>>,
    reads: Cell<usize>,
    decoding_off_during_sizing: Cell<bool>,
}

fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
    Bdf {
        bus,
        device,
        function,
    }
}

impl FakeBus {
    fn add(self, at: Bdf, f: FakeFn) -> Self {
        self.fns.borrow_mut().insert(at, f);
        self
    }
}

impl ConfigSpace for FakeBus {
    fn read32(&self, at: Bdf, offset: u8) -> u32 {
        assert_eq!(offset % 4, 0);
        self.reads.set(self.reads.get() + 1);
        self.fns
            .borrow()
            .get(&at)
            .map_or(u32::MAX, |f| f.regs[usize::from(offset / 4)])
    }

    fn write32(&self, at: Bdf, offset: u8, value: u32) {
        assert_eq!(offset % 4, 0);
        let mut fns = self.fns.borrow_mut();
        let Some(f) = fns.get_mut(&at) else { return };
        let r = usize::from(offset / 4);
        if (4..10).contains(&r) && value == u32::MAX && f.regs[1] & 0x3 != 0 {
            self.decoding_off_during_sizing.set(false);
        }
        f.regs[r] = (f.regs[r] & !f.writable[r]) | (value & f.writable[r]);
    }
}

fn all(bus: &FakeBus) -> (Vec<PciFunction>, EnumSummary) {
    let mut found = Vec::new();
    let summary = enumerate(bus, 0..=255, |f| found.push(*f));
    (found, summary)
}

#[test]
fn devices_bars_and_capabilities() {
    let blk = FakeFn::new(0x1af4, 0x1001, 0x01_00_00, 0)
        .io_bar(0, 0xc000, 0x80)
        .mem_bar(1, 0xfebd_1000, 0x1000, false)
        .mem_bar(4, 0x8_0000_0000, 0x4000, true)
        .caps(
            0x98,
            &[(0x98, 0x11, 0x84), (0x84, 0x09, 0x70), (0x70, 0x09, 0)],
        );
    let mut with_decoding = blk.clone();
    with_decoding.regs[1] |= 0x3;
    let bus = FakeBus::default()
        .add(bdf(0, 0, 0), FakeFn::new(0x8086, 0x29c0, 0x06_00_00, 0))
        .add(bdf(0, 3, 0), with_decoding);
    bus.decoding_off_during_sizing.set(true);
    let before = bus.fns.borrow().get(&bdf(0, 3, 0)).unwrap().regs;
    let (found, summary) = all(&bus);
    assert_eq!(summary.functions, 2);
    assert_eq!(summary.buses, 1);
    let f = found[1];
    assert_eq!(f.bdf.to_string(), "00:03.0");
    assert_eq!((f.vendor, f.device, f.class), (0x1af4, 0x1001, [1, 0, 0]));
    assert_eq!(f.revision, 1);
    let bars: Vec<Bar> = f.bars().copied().collect();
    assert_eq!(
        bars,
        [
            Bar {
                index: 0,
                kind: BarKind::Io,
                address: 0xc000,
                size: 0x80,
                prefetchable: false
            },
            Bar {
                index: 1,
                kind: BarKind::Memory32,
                address: 0xfebd_1000,
                size: 0x1000,
                prefetchable: false
            },
            Bar {
                index: 4,
                kind: BarKind::Memory64,
                address: 0x8_0000_0000,
                size: 0x4000,
                prefetchable: true
            },
        ]
    );
    let ids: Vec<(u8, u8)> = f.capabilities().iter().map(|c| (c.id, c.offset)).collect();
    assert_eq!(ids, [(0x11, 0x98), (0x09, 0x84), (0x09, 0x70)]);
    assert_eq!(f.capability(0x09).unwrap().offset, 0x84);
    assert!(f.capability(0x05).is_none());
    assert_eq!(f.issue, None);
    // Sizing switched decoding off, and left every register as it found it.
    assert!(bus.decoding_off_during_sizing.get());
    assert_eq!(bus.fns.borrow().get(&bdf(0, 3, 0)).unwrap().regs, before);
}

#[test]
fn multi_function_and_bridges() {
    let mut mf = FakeFn::new(0x8086, 0x2918, 0x06_01_00, 0x80);
    mf.regs[3] |= 0x80 << 16;
    let bus = FakeBus::default()
        .add(bdf(0, 0, 0), FakeFn::new(0x8086, 0x29c0, 0x06_00_00, 0))
        .add(bdf(0, 0x1f, 0), mf)
        .add(bdf(0, 0x1f, 3), FakeFn::new(0x8086, 0x2930, 0x0c_05_00, 0))
        // Function 5 of a single-function device is not looked at.
        .add(bdf(0, 2, 0), FakeFn::new(0x1234, 0x1111, 0x03_00_00, 0))
        .add(bdf(0, 2, 5), FakeFn::new(0xdead, 0xbeef, 0, 0))
        .add(
            bdf(0, 4, 0),
            FakeFn::new(0x1b36, 0x000c, 0x06_04_00, 1).secondary(1),
        )
        .add(bdf(1, 0, 0), FakeFn::new(0x1af4, 0x1042, 0x01_00_00, 0))
        .add(
            bdf(1, 1, 0),
            FakeFn::new(0x1b36, 0x000c, 0x06_04_00, 1).secondary(2),
        )
        .add(bdf(2, 7, 0), FakeFn::new(0x1af4, 0x1041, 0x02_00_00, 0))
        // A bridge pointing back at bus 0 and one at a bus outside the walk.
        .add(
            bdf(2, 8, 0),
            FakeFn::new(0x1b36, 0x000c, 0x06_04_00, 1).secondary(0),
        )
        // Not reachable: no bridge leads to bus 9.
        .add(bdf(9, 0, 0), FakeFn::new(0x1af4, 0x1001, 0x01_00_00, 0));
    let (found, summary) = all(&bus);
    let addrs: Vec<String> = found.iter().map(|f| f.bdf.to_string()).collect();
    assert_eq!(
        addrs,
        [
            "00:00.0", "00:02.0", "00:04.0", "00:1f.0", "00:1f.3", "01:00.0", "01:01.0", "02:07.0",
            "02:08.0"
        ]
    );
    assert_eq!(summary.buses, 3);
    assert_eq!(summary.skipped_bridges, 1);
    assert_eq!(found[2].secondary_bus, Some(1));
    assert_eq!(found[2].header_type, 1);
    let mut limited = Vec::new();
    let s = enumerate(&bus, 0..=1, |f| limited.push(f.bdf));
    assert_eq!((s.buses, s.skipped_bridges, limited.len()), (2, 1, 7));
}

#[test]
fn looping_and_bad_capability_lists_end() {
    let looped = FakeFn::new(1, 1, 0, 0).caps(0x40, &[(0x40, 0x05, 0x50), (0x50, 0x11, 0x40)]);
    let self_loop = FakeFn::new(1, 2, 0, 0).caps(0xfc, &[(0xfc, 0x09, 0xfc)]);
    let low = FakeFn::new(1, 3, 0, 0).caps(0x40, &[(0x40, 0x10, 0x20)]);
    let low_head = FakeFn::new(1, 4, 0, 0).caps(0x3c, &[]);
    // Pointer bits 1:0 are reserved and ignored.
    let unaligned = FakeFn::new(1, 5, 0, 0).caps(0x43, &[(0x40, 0x10, 0x00)]);
    let bus = FakeBus::default()
        .add(bdf(0, 0, 0), looped)
        .add(bdf(0, 1, 0), self_loop)
        .add(bdf(0, 2, 0), low)
        .add(bdf(0, 3, 0), low_head)
        .add(bdf(0, 4, 0), unaligned);
    let (found, _) = all(&bus);
    assert_eq!(found[0].capabilities().len(), 2);
    assert_eq!(
        found[0].issue,
        Some(PciIssue::CapabilityLoop { offset: 0x40 })
    );
    assert_eq!(
        found[0].issue.unwrap().to_string(),
        "capability list loops back to 0x40: list cut there"
    );
    assert_eq!(
        found[1].issue,
        Some(PciIssue::CapabilityLoop { offset: 0xfc })
    );
    assert_eq!(
        found[2].issue,
        Some(PciIssue::CapabilityPointer {
            from: 0x41,
            pointer: 0x20
        })
    );
    assert_eq!(
        found[3].issue,
        Some(PciIssue::CapabilityPointer {
            from: 0x34,
            pointer: 0x3c
        })
    );
    assert_eq!(found[4].issue, None);
    assert_eq!(found[4].capabilities()[0].offset, 0x40);
    // A full chain of 48 distinct capabilities is read to its end, each once.
    let chain: Vec<(u8, u8, u8)> = (0..48u8)
        .map(|i| {
            let off = 0x40 + i * 4;
            (off, 0x09, if i == 47 { 0 } else { off + 4 })
        })
        .collect();
    let bus = FakeBus::default().add(bdf(0, 0, 0), FakeFn::new(1, 1, 0, 0).caps(0x40, &chain));
    let (found, _) = all(&bus);
    assert_eq!(found[0].capabilities().len(), MAX_CAPABILITIES);
    assert_eq!(found[0].issue, None);
}

#[test]
fn bar_in_the_last_slot_cannot_be_64_bit() {
    let mut f = FakeFn::new(1, 1, 0, 0).mem_bar(5, 0xfe00_0000, 0x1000, false);
    f.regs[9] |= 0x4;
    let bus = FakeBus::default().add(bdf(0, 0, 0), f);
    let (found, _) = all(&bus);
    assert!(found[0].bars[5].is_none());
    assert_eq!(found[0].issue, Some(PciIssue::BarNoUpperHalf { index: 5 }));
}

#[test]
fn bars_checked_against_limits_and_ram() {
    let map = [
        MemoryRegion {
            start: 0,
            len: 0x9_fc00,
            kind: MemoryKind::Usable,
        },
        MemoryRegion {
            start: 0x10_0000,
            len: 0x7fe0_0000,
            kind: MemoryKind::Usable,
        },
        MemoryRegion {
            start: 0xb000_0000,
            len: 0x1000_0000,
            kind: MemoryKind::Reserved,
        },
    ];
    let bar = |address, size| Bar {
        index: 0,
        kind: BarKind::Memory64,
        address,
        size,
        prefetchable: false,
    };
    assert_eq!(check_bar(&bar(0xfebd_0000, 0x1000), 40, &map), Ok(()));
    assert_eq!(check_bar(&bar(0xb000_0000, 0x1000), 40, &map), Ok(()));
    assert_eq!(
        check_bar(&bar(0x4000_0000, 0x1000), 40, &map),
        Err(BarError::OverlapsRam {
            start: 0x10_0000,
            len: 0x7fe0_0000
        })
    );
    assert_eq!(
        check_bar(&bar(0x7fef_f000, 0x2000), 40, &map)
            .unwrap_err()
            .to_string(),
        "overlaps RAM 0x100000..0x7ff00000 from the memory map"
    );
    assert_eq!(
        check_bar(&bar(0xff_ffff_f000, 0x2000), 40, &map),
        Err(BarError::BeyondPhysicalLimit {
            end: 0x100_0000_1000,
            limit: 0x100_0000_0000
        })
    );
    assert!(matches!(
        check_bar(&bar(u64::MAX - 0xfff, 0x2000), 52, &map),
        Err(BarError::BeyondPhysicalLimit { end: 0, .. })
    ));
    assert_eq!(
        check_bar(&bar(0, 0x1000), 40, &map),
        Err(BarError::Unassigned)
    );
    let io = Bar {
        kind: BarKind::Io,
        ..bar(0x60, 4)
    };
    assert_eq!(check_bar(&io, 40, &map), Ok(()));
}

#[test]
fn absent_devices_cost_one_read_each() {
    let bus = FakeBus::default();
    let (found, summary) = all(&bus);
    assert!(found.is_empty());
    assert_eq!(summary.buses, 1);
    assert_eq!(bus.reads.get(), 32);
}
