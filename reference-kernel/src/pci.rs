//! PCI enumeration over any configuration-space access: functions, BARs, capabilities.
//!
//! # What it does
//!
//! * [`enumerate`] walks bus 0 and every bus behind a PCI-to-PCI bridge (its secondary bus),
//!   each bus at most once, device 0..32, function 0 and (for multi-function devices) 1..8,
//!   and hands each present function to a callback as a [`PciFunction`]: ids, class, header
//!   type, [`Bar`]s and the capability list.
//! * BARs are sized by the write-ones method with memory and I/O decoding switched off in
//!   the command register meanwhile (restored afterwards, as are the BARs): 32-bit and 64-bit
//!   memory BARs and I/O BARs. A 64-bit BAR in the last slot (no upper half) is reported as
//!   [`PciIssue::BarNoUpperHalf`].
//! * The capability list is walked at most [`MAX_CAPABILITIES`] steps; a pointer outside
//!   `0x40..0x100`, misaligned, or back to an offset already seen ends the walk with
//!   [`PciIssue::CapabilityLoop`] / [`PciIssue::CapabilityPointer`] instead of hanging.
//! * [`check_bar`] refuses a memory BAR beyond the CPU's physical address width or overlapping
//!   RAM in the boot memory map.
//!
//! # What it relies on
//!
//! Only the caller's [`ConfigSpace`], which reads and writes 32-bit registers at
//! dword-aligned offsets below 256 and returns all ones for an absent function (what both
//! ECAM and the 0xCF8/0xCFC ports do). There is no `unsafe` code here.

use core::fmt;

use crate::bootinfo::{MemoryKind, MemoryRegion};

/// Most capabilities followed in one list (the 192 bytes above the header hold at most 48).
pub const MAX_CAPABILITIES: usize = 48;

/// A function's address: bus, device (`< 32`), function (`< 8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bdf {
    /// Bus number.
    pub bus: u8,
    /// Device number, `0..32`.
    pub device: u8,
    /// Function number, `0..8`.
    pub function: u8,
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// Access to PCI configuration space, 32 bits at a time.
pub trait ConfigSpace {
    /// Reads the register at `offset` (dword-aligned, `< 256`) of `bdf`; all ones if absent.
    fn read32(&self, bdf: Bdf, offset: u8) -> u32;
    /// Writes the register at `offset` (dword-aligned, `< 256`) of `bdf`.
    fn write32(&self, bdf: Bdf, offset: u8, value: u32);

    /// The 16-bit value at `offset` (2-byte aligned).
    fn read16(&self, bdf: Bdf, offset: u8) -> u16 {
        (self.read32(bdf, offset & !3) >> (u32::from(offset & 2) * 8)) as u16
    }

    /// The byte at `offset`.
    fn read8(&self, bdf: Bdf, offset: u8) -> u8 {
        (self.read32(bdf, offset & !3) >> (u32::from(offset & 3) * 8)) as u8
    }
}

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// Memory, 32-bit address.
    Memory32,
    /// Memory, 64-bit address (this BAR and the next one).
    Memory64,
    /// I/O ports.
    Io,
}

/// A sized, implemented base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// BAR index, `0..6` (the lower one of a 64-bit pair).
    pub index: u8,
    /// What it decodes.
    pub kind: BarKind,
    /// Assigned address (0 when firmware assigned none).
    pub address: u64,
    /// Size in bytes (a power of two).
    pub size: u64,
    /// Prefetchable memory.
    pub prefetchable: bool,
}

/// One capability in a function's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Capability id (0x05 MSI, 0x09 vendor-specific, 0x10 PCI Express, 0x11 MSI-X, ...).
    pub id: u8,
    /// Offset of the capability in configuration space.
    pub offset: u8,
}

/// Something wrong with one function, found while reading it (the function is still reported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciIssue {
    /// A 64-bit memory BAR in the last slot, with no register for its upper half.
    BarNoUpperHalf {
        /// The BAR's index.
        index: u8,
    },
    /// A capability pointer outside `0x40..0x100` or not dword-aligned.
    CapabilityPointer {
        /// Where the pointer was read (0x34 for the list head).
        from: u8,
        /// The pointer.
        pointer: u8,
    },
    /// The capability list comes back to an offset it already visited.
    CapabilityLoop {
        /// The offset visited twice.
        offset: u8,
    },
}

impl fmt::Display for PciIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BarNoUpperHalf { index } => {
                write!(f, "BAR{index} is 64-bit but is the last BAR: ignored")
            }
            Self::CapabilityPointer { from, pointer } => write!(
                f,
                "capability pointer {pointer:#04x} at {from:#04x} is outside 0x40..0x100 or misaligned: list cut there"
            ),
            Self::CapabilityLoop { offset } => write!(
                f,
                "capability list loops back to {offset:#04x}: list cut there"
            ),
        }
    }
}

/// One present PCI function as [`enumerate`] found it.
#[derive(Clone, Copy, Debug)]
pub struct PciFunction {
    /// Its address.
    pub bdf: Bdf,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class, subclass, programming interface.
    pub class: [u8; 3],
    /// Revision id.
    pub revision: u8,
    /// Header type without the multi-function bit (0 device, 1 PCI-to-PCI bridge, 2 CardBus).
    pub header_type: u8,
    /// The secondary bus of a PCI-to-PCI bridge.
    pub secondary_bus: Option<u8>,
    /// Implemented BARs (index order; the upper half of a 64-bit BAR has no entry).
    pub bars: [Option<Bar>; 6],
    caps: [Capability; MAX_CAPABILITIES],
    cap_count: usize,
    /// The first problem found reading this function, if any.
    pub issue: Option<PciIssue>,
}

impl PciFunction {
    /// The capabilities, in list order (cut where the list was malformed; see `issue`).
    pub fn capabilities(&self) -> &[Capability] {
        self.caps.get(..self.cap_count).unwrap_or(&[])
    }

    /// The first capability with id `id`.
    pub fn capability(&self, id: u8) -> Option<Capability> {
        self.capabilities().iter().copied().find(|c| c.id == id)
    }

    /// The implemented BARs.
    pub fn bars(&self) -> impl Iterator<Item = &Bar> {
        self.bars.iter().flatten()
    }
}

/// What one [`enumerate`] walk covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnumSummary {
    /// Functions reported.
    pub functions: usize,
    /// Buses walked.
    pub buses: usize,
    /// Bridges whose secondary bus was already walked or outside `buses` (not walked again).
    pub skipped_bridges: usize,
}

/// Walks bus 0 and every bus behind a bridge (each at most once, only those in `buses`),
/// calling `found` for each present function. Sizing BARs writes to them (and restores them).
pub fn enumerate<C: ConfigSpace + ?Sized>(
    cfg: &C,
    buses: core::ops::RangeInclusive<u8>,
    mut found: impl FnMut(&PciFunction),
) -> EnumSummary {
    let mut summary = EnumSummary::default();
    let mut walked = [false; 256];
    let mut pending = [0u8; 256];
    let mut pending_len = 0;
    if buses.contains(buses.start()) {
        pending[0] = *buses.start();
        pending_len = 1;
        walked[usize::from(*buses.start())] = true;
    }
    while pending_len > 0 {
        pending_len -= 1;
        let bus = pending[pending_len];
        summary.buses += 1;
        for device in 0..32 {
            for function in 0..8 {
                let bdf = Bdf {
                    bus,
                    device,
                    function,
                };
                let id = cfg.read32(bdf, 0);
                if id as u16 == 0xffff {
                    if function == 0 {
                        break;
                    }
                    continue;
                }
                let raw_header = cfg.read8(bdf, 0x0e);
                let func = read_function(cfg, bdf, id, raw_header);
                summary.functions += 1;
                if let Some(secondary) = func.secondary_bus {
                    let slot = &mut walked[usize::from(secondary)];
                    if *slot || !buses.contains(&secondary) {
                        summary.skipped_bridges += 1;
                    } else {
                        *slot = true;
                        // At most 256 buses are ever marked walked, so this never overflows.
                        if let Some(p) = pending.get_mut(pending_len) {
                            *p = secondary;
                            pending_len += 1;
                        }
                    }
                }
                found(&func);
                if function == 0 && raw_header & 0x80 == 0 {
                    break;
                }
            }
        }
    }
    summary
}

fn read_function<C: ConfigSpace + ?Sized>(
    cfg: &C,
    bdf: Bdf,
    id: u32,
    raw_header: u8,
) -> PciFunction {
    let class_rev = cfg.read32(bdf, 0x08);
    let header_type = raw_header & 0x7f;
    let mut func = PciFunction {
        bdf,
        vendor: id as u16,
        device: (id >> 16) as u16,
        class: [
            (class_rev >> 24) as u8,
            (class_rev >> 16) as u8,
            (class_rev >> 8) as u8,
        ],
        revision: class_rev as u8,
        header_type,
        secondary_bus: (header_type == 1).then(|| cfg.read8(bdf, 0x19)),
        bars: [None; 6],
        caps: [Capability { id: 0, offset: 0 }; MAX_CAPABILITIES],
        cap_count: 0,
        issue: None,
    };
    let bar_count = match header_type {
        0 => 6,
        1 => 2,
        _ => 0,
    };
    if bar_count > 0 {
        let issue = size_bars(cfg, bdf, bar_count, &mut func.bars);
        func.issue = func.issue.or(issue);
    }
    // Status bit 4: the function has a capability list.
    if header_type <= 1 && cfg.read16(bdf, 0x06) & 0x10 != 0 {
        let issue = walk_capabilities(cfg, bdf, &mut func.caps, &mut func.cap_count);
        func.issue = func.issue.or(issue);
    }
    func
}

/// Sizes `count` BARs with decoding off; returns the first issue.
fn size_bars<C: ConfigSpace + ?Sized>(
    cfg: &C,
    bdf: Bdf,
    count: u8,
    bars: &mut [Option<Bar>; 6],
) -> Option<PciIssue> {
    let command = cfg.read32(bdf, 0x04);
    // Memory space and I/O space decoding off while the BARs hold all ones.
    cfg.write32(bdf, 0x04, command & !0x3);
    let mut issue = None;
    let mut index = 0u8;
    while index < count {
        let offset = 0x10 + index * 4;
        let original = cfg.read32(bdf, offset);
        cfg.write32(bdf, offset, u32::MAX);
        let mask = cfg.read32(bdf, offset);
        cfg.write32(bdf, offset, original);
        let this = index;
        index += 1;
        if original & 1 == 1 {
            // I/O: bits 31..2 are the address; devices may leave the upper 16 bits zero.
            let bits = mask & !0x3;
            if bits != 0 {
                bars[usize::from(this)] = Some(Bar {
                    index: this,
                    kind: BarKind::Io,
                    address: u64::from(original & !0x3),
                    size: u64::from((!(bits | 0xffff_0000)).wrapping_add(1)),
                    prefetchable: false,
                });
            }
            continue;
        }
        let prefetchable = original & 0x8 != 0;
        let is_64 = (original >> 1) & 0x3 == 0x2;
        let (address, size_mask) = if is_64 {
            if index >= count {
                issue.get_or_insert(PciIssue::BarNoUpperHalf { index: this });
                continue;
            }
            let high_offset = offset + 4;
            let original_high = cfg.read32(bdf, high_offset);
            cfg.write32(bdf, high_offset, u32::MAX);
            let mask_high = cfg.read32(bdf, high_offset);
            cfg.write32(bdf, high_offset, original_high);
            index += 1;
            (
                (u64::from(original_high) << 32) | u64::from(original & !0xf),
                (u64::from(mask_high) << 32) | u64::from(mask & !0xf),
            )
        } else {
            (
                u64::from(original & !0xf),
                0xffff_ffff_0000_0000 | u64::from(mask & !0xf),
            )
        };
        // A BAR that reads back zero after the write of ones is not implemented.
        let implemented = if is_64 {
            size_mask != 0
        } else {
            size_mask as u32 != 0
        };
        if implemented {
            let size = (!size_mask).wrapping_add(1);
            if size != 0 {
                bars[usize::from(this)] = Some(Bar {
                    index: this,
                    kind: if is_64 {
                        BarKind::Memory64
                    } else {
                        BarKind::Memory32
                    },
                    address,
                    size,
                    prefetchable,
                });
            }
        }
    }
    cfg.write32(bdf, 0x04, command);
    issue
}

/// Follows the capability list from 0x34, bounded; returns the issue that cut it, if any.
fn walk_capabilities<C: ConfigSpace + ?Sized>(
    cfg: &C,
    bdf: Bdf,
    caps: &mut [Capability; MAX_CAPABILITIES],
    count: &mut usize,
) -> Option<PciIssue> {
    let mut seen = [false; 64];
    let mut from = 0x34u8;
    let mut pointer = cfg.read8(bdf, 0x34) & !0x3;
    while pointer != 0 {
        if pointer < 0x40 {
            return Some(PciIssue::CapabilityPointer { from, pointer });
        }
        let slot = &mut seen[usize::from(pointer / 4)];
        if *slot {
            return Some(PciIssue::CapabilityLoop { offset: pointer });
        }
        *slot = true;
        let header = cfg.read16(bdf, pointer);
        // At most 48 distinct offsets in 0x40..0x100, so this always has room.
        if let Some(c) = caps.get_mut(*count) {
            *c = Capability {
                id: header as u8,
                offset: pointer,
            };
            *count += 1;
        }
        from = pointer + 1;
        pointer = ((header >> 8) as u8) & !0x3;
    }
    None
}

/// Why a memory BAR is not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarError {
    /// The firmware assigned no address.
    Unassigned,
    /// The BAR's end lies beyond the CPU's physical address width (or overflows).
    BeyondPhysicalLimit {
        /// The BAR's end (exclusive; 0 if it overflows).
        end: u64,
        /// The CPU's physical address limit.
        limit: u64,
    },
    /// The BAR overlaps RAM in the boot memory map.
    OverlapsRam {
        /// Start of the RAM region.
        start: u64,
        /// Its length.
        len: u64,
    },
}

impl fmt::Display for BarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unassigned => f.write_str("no address assigned"),
            Self::BeyondPhysicalLimit { end, limit } => write!(
                f,
                "ends at {end:#x}, beyond the CPU's physical address limit {limit:#x}"
            ),
            Self::OverlapsRam { start, len } => write!(
                f,
                "overlaps RAM {start:#x}..{:#x} from the memory map",
                start.saturating_add(len)
            ),
        }
    }
}

/// Checks a memory BAR may be mapped: assigned, below `1 << phys_bits`, and clear of every
/// RAM region (usable, ACPI, NVS or bad memory) in `memory_map`. I/O BARs always pass.
pub fn check_bar(bar: &Bar, phys_bits: u8, memory_map: &[MemoryRegion]) -> Result<(), BarError> {
    if bar.kind == BarKind::Io {
        return Ok(());
    }
    if bar.address == 0 {
        return Err(BarError::Unassigned);
    }
    let limit = 1u64.checked_shl(u32::from(phys_bits)).unwrap_or(u64::MAX);
    let end = bar.address.checked_add(bar.size);
    match end {
        Some(end) if end <= limit => {}
        _ => {
            return Err(BarError::BeyondPhysicalLimit {
                end: end.unwrap_or(0),
                limit,
            });
        }
    }
    let end = end.unwrap_or(u64::MAX);
    for r in memory_map {
        let ram = matches!(
            r.kind,
            MemoryKind::Usable
                | MemoryKind::AcpiReclaimable
                | MemoryKind::AcpiNvs
                | MemoryKind::Bad
        );
        if ram && r.start < end && bar.address < r.start.saturating_add(r.len) {
            return Err(BarError::OverlapsRam {
                start: r.start,
                len: r.len,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
