//! The PCI Express memory-mapped configuration table (signature `MCFG`).
//!
//! After the 36-byte header: 8 reserved bytes, then 16-byte entries, one per ECAM region:
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0      | 8    | base address (the address of bus 0's configuration space, even when the region starts at a later bus) |
//! | 8      | 2    | PCI segment group |
//! | 10     | 1    | first bus decoded |
//! | 11     | 1    | last bus decoded |
//! | 12     | 4    | reserved |
//!
//! Each bus takes 1 MiB (32 devices x 8 functions x 4 KiB), so a region covers
//! `[base + first_bus << 20, base + (last_bus + 1) << 20)`. The parser rejects a table with
//! no entry, a body that is not a whole number of entries, a first bus above the last, a base
//! that is not 1 MiB-aligned, a region that overflows the address space, and two regions
//! decoding the same bus of the same segment.

use super::sdt::Sdt;
use super::{AcpiError, FixedVec, Signature, u8_at, u16_at, u64_at};

/// Offset of the first entry.
pub const MCFG_ENTRIES_OFFSET: usize = 44;
/// Size of one entry.
pub const MCFG_ENTRY_LEN: usize = 16;
/// Maximum number of ECAM regions kept.
pub const MAX_ECAM_REGIONS: usize = 16;
/// Configuration space per bus in an ECAM region (32 devices x 8 functions x 4 KiB).
pub const ECAM_BUS_SIZE: u64 = 1 << 20;

/// One ECAM region: the configuration space of buses `first_bus..=last_bus` of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamRegion {
    /// Physical address of bus 0's configuration space in this region's numbering.
    pub base: u64,
    /// PCI segment group.
    pub segment: u16,
    /// First bus decoded.
    pub first_bus: u8,
    /// Last bus decoded (inclusive).
    pub last_bus: u8,
}

impl EcamRegion {
    /// The physical range `[start, end)` this region decodes.
    pub fn phys_range(&self) -> (u64, u64) {
        // Cannot overflow: `Mcfg::parse` checked `base + (last_bus + 1) << 20`.
        let start = self.base + (u64::from(self.first_bus) << 20);
        let end = self.base + ((u64::from(self.last_bus) + 1) << 20);
        (start, end)
    }

    /// Physical address of the 4 KiB configuration space of `bus:device.function`, if the
    /// region decodes `bus` (`device < 32`, `function < 8`).
    pub fn config_address(&self, bus: u8, device: u8, function: u8) -> Option<u64> {
        if bus < self.first_bus || bus > self.last_bus || device >= 32 || function >= 8 {
            return None;
        }
        let offset =
            (u64::from(bus) << 20) | (u64::from(device) << 15) | (u64::from(function) << 12);
        Some(self.base + offset)
    }
}

/// A validated MCFG: its ECAM regions.
#[derive(Clone, Copy, Debug)]
pub struct Mcfg {
    regions: FixedVec<EcamRegion, MAX_ECAM_REGIONS>,
}

impl Mcfg {
    /// Parses and validates a table, which must have signature `MCFG` (see the module
    /// documentation for what is rejected).
    pub fn parse(table: &Sdt<'_>) -> Result<Self, AcpiError> {
        table.expect(Signature::MCFG, MCFG_ENTRIES_OFFSET as u32)?;
        let bytes = table.bytes();
        let body = bytes.get(MCFG_ENTRIES_OFFSET..).unwrap_or(&[]);
        if body.is_empty() || !body.len().is_multiple_of(MCFG_ENTRY_LEN) {
            return Err(AcpiError::McfgBadLength {
                length: table.length(),
            });
        }
        let mut regions = FixedVec::new(EcamRegion {
            base: 0,
            segment: 0,
            first_bus: 0,
            last_bus: 0,
        });
        for (index, entry) in body.chunks_exact(MCFG_ENTRY_LEN).enumerate() {
            let region = EcamRegion {
                base: u64_at(entry, 0),
                segment: u16_at(entry, 8),
                first_bus: u8_at(entry, 10),
                last_bus: u8_at(entry, 11),
            };
            check_region(index, &region)?;
            if let Some(other) = regions.as_slice().iter().position(|r: &EcamRegion| {
                r.segment == region.segment
                    && r.first_bus <= region.last_bus
                    && region.first_bus <= r.last_bus
            }) {
                return Err(AcpiError::McfgOverlap {
                    first: other,
                    second: index,
                    segment: region.segment,
                });
            }
            if !regions.push(region) {
                return Err(AcpiError::TooManyEntries {
                    sig: Signature::MCFG,
                    what: "ECAM regions",
                    max: MAX_ECAM_REGIONS,
                });
            }
        }
        Ok(Self { regions })
    }

    /// The ECAM regions, in table order.
    pub fn regions(&self) -> &[EcamRegion] {
        self.regions.as_slice()
    }

    /// The region decoding `bus` of `segment`, if any.
    pub fn region_for(&self, segment: u16, bus: u8) -> Option<&EcamRegion> {
        self.regions()
            .iter()
            .find(|r| r.segment == segment && (r.first_bus..=r.last_bus).contains(&bus))
    }
}

fn check_region(index: usize, region: &EcamRegion) -> Result<(), AcpiError> {
    if region.first_bus > region.last_bus {
        return Err(AcpiError::McfgBadBusRange {
            index,
            first_bus: region.first_bus,
            last_bus: region.last_bus,
        });
    }
    if !region.base.is_multiple_of(ECAM_BUS_SIZE) {
        return Err(AcpiError::McfgMisalignedBase {
            index,
            base: region.base,
        });
    }
    let size = (u64::from(region.last_bus) + 1) << 20;
    if region.base.checked_add(size).is_none() {
        return Err(AcpiError::McfgRegionOverflow {
            index,
            base: region.base,
            last_bus: region.last_bus,
        });
    }
    Ok(())
}
