//! The System Resource Affinity Table (signature `SRAT`).
//!
//! After the 36-byte header: a reserved `u32` (1 for compatibility) and a reserved `u64`,
//! then entries `[type, length, ...]` from offset 48. Entry types understood (offsets
//! within the entry):
//!
//! | type | name                         | length | fields |
//! |------|------------------------------|--------|--------|
//! | 0    | processor local APIC affinity| 16 | 2: proximity domain bits 0..8, 3: APIC id, 4: flags (u32), 8: SAPIC EID, 9..12: proximity domain bits 8..32, 12: clock domain (u32) |
//! | 1    | memory affinity              | 40 | 2: proximity domain (u32), 8: base (u64), 16: length (u64), 28: flags (u32) |
//! | 2    | processor local x2APIC affinity | 24 | 4: proximity domain (u32), 8: x2APIC id (u32), 12: flags (u32), 16: clock domain (u32) |
//!
//! Flags bit 0 = enabled; entries without it are ignored. Memory flags bit 1 = hot
//! pluggable, bit 2 = non-volatile. The high bytes of a type-0 proximity domain are used
//! only for SRAT revision 2 and later (they were reserved in revision 1, which QEMU still
//! emits). Zero-length memory ranges are ignored. Other entry types are skipped by their
//! length.

use super::sdt::Sdt;
use super::{
    AcpiError, Entries, FixedVec, MAX_CPUS, MAX_MEMORY_RANGES, Signature, u8_at, u32_at, u64_at,
};

/// Offset of the first SRAT entry.
pub const SRAT_ENTRIES_OFFSET: usize = 48;

/// An enabled CPU affinity entry (types 0 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuAffinity {
    /// The local APIC id (x2APIC id for type-2 entries).
    pub apic_id: u32,
    /// The proximity domain.
    pub proximity_domain: u32,
    /// The clock domain.
    pub clock_domain: u32,
    /// Whether it came from an x2APIC affinity (type 2) entry.
    pub x2apic: bool,
}

/// An enabled, non-empty memory affinity entry (type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryAffinity {
    /// Physical base address.
    pub base: u64,
    /// Length in bytes (non-zero; `base + length` does not overflow).
    pub length: u64,
    /// The proximity domain.
    pub proximity_domain: u32,
    /// Flag bit 1: hot-pluggable memory.
    pub hot_pluggable: bool,
    /// Flag bit 2: non-volatile memory.
    pub non_volatile: bool,
}

impl MemoryAffinity {
    /// One past the last address of the range.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.length)
    }
}

/// The parsed SRAT: its enabled CPU and memory entries, in table order.
#[derive(Debug, Clone)]
pub struct Srat {
    revision: u8,
    cpus: FixedVec<CpuAffinity, MAX_CPUS>,
    memory: FixedVec<MemoryAffinity, MAX_MEMORY_RANGES>,
}

impl Srat {
    /// Parses a validated table, which must have signature `SRAT`.
    ///
    /// More than [`MAX_CPUS`] enabled CPU entries or [`MAX_MEMORY_RANGES`] enabled memory
    /// ranges is an error ([`AcpiError::TooManyEntries`]), as is a range whose end
    /// overflows.
    pub fn parse(table: &Sdt<'_>) -> Result<Self, AcpiError> {
        let sig = Signature::SRAT;
        table.expect(sig, SRAT_ENTRIES_OFFSET as u32)?;
        let revision = table.revision();
        let mut srat = Self {
            revision,
            cpus: FixedVec::new(CpuAffinity::default()),
            memory: FixedVec::new(MemoryAffinity::default()),
        };
        let too_many_cpus = AcpiError::TooManyEntries {
            sig,
            what: "enabled CPU affinity entries",
            max: MAX_CPUS,
        };
        for entry in Entries::new(sig, table.bytes(), SRAT_ENTRIES_OFFSET) {
            let entry = entry?;
            let e = entry.bytes;
            match entry.entry_type {
                0 => {
                    entry.need(sig, 16)?;
                    if u32_at(e, 4) & 1 == 0 {
                        continue;
                    }
                    let mut domain = u32::from(u8_at(e, 2));
                    if revision >= 2 {
                        domain |= u32::from(u8_at(e, 9)) << 8
                            | u32::from(u8_at(e, 10)) << 16
                            | u32::from(u8_at(e, 11)) << 24;
                    }
                    let cpu = CpuAffinity {
                        apic_id: u32::from(u8_at(e, 3)),
                        proximity_domain: domain,
                        clock_domain: u32_at(e, 12),
                        x2apic: false,
                    };
                    if !srat.cpus.push(cpu) {
                        return Err(too_many_cpus);
                    }
                }
                1 => {
                    entry.need(sig, 40)?;
                    let flags = u32_at(e, 28);
                    let (base, length) = (u64_at(e, 8), u64_at(e, 16));
                    if flags & 1 == 0 || length == 0 {
                        continue;
                    }
                    let proximity_domain = u32_at(e, 2);
                    if base.checked_add(length).is_none() {
                        return Err(AcpiError::MemoryRangeOverflow {
                            proximity_domain,
                            base,
                            length,
                        });
                    }
                    let range = MemoryAffinity {
                        base,
                        length,
                        proximity_domain,
                        hot_pluggable: flags & 2 != 0,
                        non_volatile: flags & 4 != 0,
                    };
                    if !srat.memory.push(range) {
                        return Err(AcpiError::TooManyEntries {
                            sig,
                            what: "enabled memory ranges",
                            max: MAX_MEMORY_RANGES,
                        });
                    }
                }
                2 => {
                    entry.need(sig, 24)?;
                    if u32_at(e, 12) & 1 == 0 {
                        continue;
                    }
                    let cpu = CpuAffinity {
                        apic_id: u32_at(e, 8),
                        proximity_domain: u32_at(e, 4),
                        clock_domain: u32_at(e, 16),
                        x2apic: true,
                    };
                    if !srat.cpus.push(cpu) {
                        return Err(too_many_cpus);
                    }
                }
                _ => {}
            }
        }
        Ok(srat)
    }

    /// The table revision (decides whether type-0 proximity domains use 8 or 32 bits).
    pub fn revision(&self) -> u8 {
        self.revision
    }

    /// The enabled CPU affinity entries.
    pub fn cpus(&self) -> &[CpuAffinity] {
        self.cpus.as_slice()
    }

    /// The enabled, non-empty memory ranges.
    pub fn memory(&self) -> &[MemoryAffinity] {
        self.memory.as_slice()
    }
}
