//! The Multiple APIC Description Table (signature `APIC`).
//!
//! After the 36-byte header: the 32-bit local APIC address (offset 36) and flags (offset
//! 40, bit 0 = PC-AT compatible dual 8259s present), then entries `[type, length, ...]`
//! from offset 44. Entry types understood (offsets within the entry):
//!
//! | type | name                     | length | fields |
//! |------|--------------------------|--------|--------|
//! | 0    | processor local APIC     | 8  | 2: ACPI processor UID (u8), 3: APIC id (u8), 4: flags (u32) |
//! | 1    | I/O APIC                 | 12 | 2: id, 4: address (u32), 8: GSI base (u32) |
//! | 2    | interrupt source override| 10 | 2: bus, 3: source IRQ, 4: GSI (u32), 8: MPS INTI flags (u16) |
//! | 4    | local APIC NMI           | 6  | 2: ACPI processor UID (u8, 0xFF = all), 3: flags (u16), 5: LINT# |
//! | 5    | local APIC address override | 12 | 4: 64-bit local APIC address |
//! | 9    | processor local x2APIC   | 16 | 4: x2APIC id (u32), 8: flags (u32), 12: ACPI processor UID (u32) |
//! | 0xA  | local x2APIC NMI         | 12 | 2: flags (u16), 4: ACPI processor UID (u32, 0xFFFFFFFF = all), 8: LINT# |
//!
//! Processor flags: bit 0 = enabled, bit 1 = online capable (may be enabled later).
//! Other entry types are skipped by their length. An entry with a length below 2 (or below
//! what its type needs), or one running past the table's end, is an error.

use super::sdt::Sdt;
use super::{
    AcpiError, Entries, FixedVec, MAX_CPUS, MAX_INTERRUPT_OVERRIDES, MAX_IO_APICS, MAX_LOCAL_NMIS,
    Signature, u8_at, u16_at, u32_at, u64_at,
};

/// Offset of the first MADT entry (header, local APIC address, flags).
pub const MADT_ENTRIES_OFFSET: usize = 44;

/// A CPU listed in the MADT (processor local APIC or local x2APIC entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MadtCpu {
    /// The local APIC id (x2APIC id for type-9 entries).
    pub apic_id: u32,
    /// The ACPI processor UID.
    pub acpi_uid: u32,
    /// Flag bit 0: the processor is usable now.
    pub enabled: bool,
    /// Flag bit 1: a disabled processor that may be brought online later.
    pub online_capable: bool,
    /// Whether it came from a local x2APIC (type 9) entry.
    pub x2apic: bool,
}

impl MadtCpu {
    /// Whether the processor is present at all (enabled or online capable); entries with
    /// neither flag describe processors that do not exist.
    pub fn present(&self) -> bool {
        self.enabled || self.online_capable
    }
}

/// An I/O APIC (MADT type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoApic {
    /// The I/O APIC id.
    pub id: u8,
    /// Physical address of its registers.
    pub address: u32,
    /// The first global system interrupt it handles.
    pub gsi_base: u32,
}

/// Interrupt polarity from MPS INTI flags bits 0..2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    /// Conforms to the bus's default (ISA: active high).
    Conforming,
    /// Active high.
    ActiveHigh,
    /// Reserved value 2.
    Reserved,
    /// Active low.
    ActiveLow,
}

/// Interrupt trigger mode from MPS INTI flags bits 2..4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerMode {
    /// Conforms to the bus's default (ISA: edge).
    Conforming,
    /// Edge triggered.
    Edge,
    /// Reserved value 2.
    Reserved,
    /// Level triggered.
    Level,
}

fn polarity(flags: u16) -> Polarity {
    match flags & 3 {
        0 => Polarity::Conforming,
        1 => Polarity::ActiveHigh,
        2 => Polarity::Reserved,
        _ => Polarity::ActiveLow,
    }
}

fn trigger_mode(flags: u16) -> TriggerMode {
    match (flags >> 2) & 3 {
        0 => TriggerMode::Conforming,
        1 => TriggerMode::Edge,
        2 => TriggerMode::Reserved,
        _ => TriggerMode::Level,
    }
}

/// An interrupt source override (MADT type 2): ISA IRQ `source` is wired to `gsi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InterruptOverride {
    /// The bus (0 = ISA).
    pub bus: u8,
    /// The bus-relative interrupt source (ISA IRQ).
    pub source: u8,
    /// The global system interrupt it is connected to.
    pub gsi: u32,
    /// MPS INTI flags (polarity and trigger mode).
    pub flags: u16,
}

impl InterruptOverride {
    /// The polarity from [`flags`](Self::flags).
    pub fn polarity(&self) -> Polarity {
        polarity(self.flags)
    }

    /// The trigger mode from [`flags`](Self::flags).
    pub fn trigger_mode(&self) -> TriggerMode {
        trigger_mode(self.flags)
    }
}

/// A local APIC NMI connection (MADT types 4 and 0xA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalApicNmi {
    /// The ACPI processor UID it applies to; `None` for all processors.
    pub acpi_uid: Option<u32>,
    /// MPS INTI flags (polarity and trigger mode).
    pub flags: u16,
    /// The local APIC LINT input (0 or 1) the NMI is connected to.
    pub lint: u8,
}

impl LocalApicNmi {
    /// The polarity from [`flags`](Self::flags).
    pub fn polarity(&self) -> Polarity {
        polarity(self.flags)
    }

    /// The trigger mode from [`flags`](Self::flags).
    pub fn trigger_mode(&self) -> TriggerMode {
        trigger_mode(self.flags)
    }
}

/// The parsed MADT.
///
/// Lists beyond their capacity are truncated; the dropped counts say by how much
/// ([`truncated`](Self::truncated) is the summary). CPUs with an APIC id already listed are
/// skipped and counted ([`duplicate_cpus`](Self::duplicate_cpus)).
#[derive(Debug, Clone)]
pub struct Madt {
    local_apic_address: u64,
    flags: u32,
    cpus: FixedVec<MadtCpu, MAX_CPUS>,
    io_apics: FixedVec<IoApic, MAX_IO_APICS>,
    overrides: FixedVec<InterruptOverride, MAX_INTERRUPT_OVERRIDES>,
    nmis: FixedVec<LocalApicNmi, MAX_LOCAL_NMIS>,
    duplicate_cpus: usize,
    unknown_entries: usize,
}

impl Madt {
    /// Parses a validated table, which must have signature `APIC`.
    pub fn parse(table: &Sdt<'_>) -> Result<Self, AcpiError> {
        let sig = Signature::MADT;
        table.expect(sig, MADT_ENTRIES_OFFSET as u32)?;
        let bytes = table.bytes();
        let mut madt = Self {
            local_apic_address: u64::from(u32_at(bytes, 36)),
            flags: u32_at(bytes, 40),
            cpus: FixedVec::new(MadtCpu::default()),
            io_apics: FixedVec::new(IoApic::default()),
            overrides: FixedVec::new(InterruptOverride::default()),
            nmis: FixedVec::new(LocalApicNmi::default()),
            duplicate_cpus: 0,
            unknown_entries: 0,
        };
        for entry in Entries::new(sig, bytes, MADT_ENTRIES_OFFSET) {
            let entry = entry?;
            let e = entry.bytes;
            match entry.entry_type {
                0 => {
                    entry.need(sig, 8)?;
                    let flags = u32_at(e, 4);
                    madt.add_cpu(MadtCpu {
                        apic_id: u32::from(u8_at(e, 3)),
                        acpi_uid: u32::from(u8_at(e, 2)),
                        enabled: flags & 1 != 0,
                        online_capable: flags & 2 != 0,
                        x2apic: false,
                    });
                }
                1 => {
                    entry.need(sig, 12)?;
                    madt.io_apics.push(IoApic {
                        id: u8_at(e, 2),
                        address: u32_at(e, 4),
                        gsi_base: u32_at(e, 8),
                    });
                }
                2 => {
                    entry.need(sig, 10)?;
                    madt.overrides.push(InterruptOverride {
                        bus: u8_at(e, 2),
                        source: u8_at(e, 3),
                        gsi: u32_at(e, 4),
                        flags: u16_at(e, 8),
                    });
                }
                4 => {
                    entry.need(sig, 6)?;
                    let uid = u8_at(e, 2);
                    madt.nmis.push(LocalApicNmi {
                        acpi_uid: (uid != 0xFF).then_some(u32::from(uid)),
                        flags: u16_at(e, 3),
                        lint: u8_at(e, 5),
                    });
                }
                5 => {
                    entry.need(sig, 12)?;
                    madt.local_apic_address = u64_at(e, 4);
                }
                9 => {
                    entry.need(sig, 16)?;
                    let flags = u32_at(e, 8);
                    madt.add_cpu(MadtCpu {
                        apic_id: u32_at(e, 4),
                        acpi_uid: u32_at(e, 12),
                        enabled: flags & 1 != 0,
                        online_capable: flags & 2 != 0,
                        x2apic: true,
                    });
                }
                0xA => {
                    entry.need(sig, 12)?;
                    let uid = u32_at(e, 4);
                    madt.nmis.push(LocalApicNmi {
                        acpi_uid: (uid != u32::MAX).then_some(uid),
                        flags: u16_at(e, 2),
                        lint: u8_at(e, 8),
                    });
                }
                _ => madt.unknown_entries += 1,
            }
        }
        Ok(madt)
    }

    fn add_cpu(&mut self, cpu: MadtCpu) {
        if self
            .cpus
            .as_slice()
            .iter()
            .any(|c| c.apic_id == cpu.apic_id)
        {
            self.duplicate_cpus += 1;
        } else {
            self.cpus.push(cpu);
        }
    }

    /// The local APIC's physical address (from the type-5 override when present).
    pub fn local_apic_address(&self) -> u64 {
        self.local_apic_address
    }

    /// The MADT flags (bit 0: PC-AT compatible dual 8259 PICs present).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Whether legacy 8259 PICs are present (and must be masked before using the APICs).
    pub fn pcat_compat(&self) -> bool {
        self.flags & 1 != 0
    }

    /// Every CPU entry, in table order, including those with neither the enabled nor the
    /// online-capable flag (see [`MadtCpu::present`]).
    pub fn cpus(&self) -> &[MadtCpu] {
        self.cpus.as_slice()
    }

    /// The CPUs usable now (enabled flag set).
    pub fn enabled_cpus(&self) -> impl Iterator<Item = &MadtCpu> + '_ {
        self.cpus().iter().filter(|c| c.enabled)
    }

    /// The number of CPUs usable now.
    pub fn enabled_cpu_count(&self) -> usize {
        self.enabled_cpus().count()
    }

    /// The I/O APICs.
    pub fn io_apics(&self) -> &[IoApic] {
        self.io_apics.as_slice()
    }

    /// The interrupt source overrides.
    pub fn interrupt_overrides(&self) -> &[InterruptOverride] {
        self.overrides.as_slice()
    }

    /// The GSI that ISA IRQ `irq` is connected to, with its flags (identity mapping, flags
    /// 0, if no override names it).
    pub fn isa_irq_to_gsi(&self, irq: u8) -> (u32, u16) {
        self.interrupt_overrides()
            .iter()
            .find(|o| o.bus == 0 && o.source == irq)
            .map_or((u32::from(irq), 0), |o| (o.gsi, o.flags))
    }

    /// The local APIC NMI entries.
    pub fn local_apic_nmis(&self) -> &[LocalApicNmi] {
        self.nmis.as_slice()
    }

    /// CPU entries beyond [`MAX_CPUS`] that were dropped.
    pub fn dropped_cpus(&self) -> usize {
        self.cpus.dropped()
    }

    /// Whether any list (CPUs, I/O APICs, overrides, NMIs) was truncated at its capacity.
    pub fn truncated(&self) -> bool {
        self.cpus.dropped() > 0
            || self.io_apics.dropped() > 0
            || self.overrides.dropped() > 0
            || self.nmis.dropped() > 0
    }

    /// CPU entries skipped because their APIC id was already listed.
    pub fn duplicate_cpus(&self) -> usize {
        self.duplicate_cpus
    }

    /// Entries of types this parser does not interpret (skipped by their length).
    pub fn unknown_entries(&self) -> usize {
        self.unknown_entries
    }
}
