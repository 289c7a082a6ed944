//! ACPI table parsing: just enough of ACPI to learn the machine's CPUs, interrupt
//! controllers and NUMA topology.
//!
//! # What it does
//!
//! * [`rsdp`]: validates the Root System Description Pointer (v1 and v2) and scans the
//!   BIOS areas for it ([`find_rsdp`]) when the boot loader did not pass one.
//! * [`sdt`]: validates System Description Table headers ([`Sdt`]: signature, length,
//!   checksum), walks the RSDT or XSDT and finds tables by signature ([`AcpiTables`]).
//! * [`madt`]: the Multiple APIC Description Table ("APIC"): local APIC address, CPUs
//!   (xAPIC and x2APIC entries), I/O APICs, interrupt source overrides, local APIC NMIs.
//! * [`srat`]: the System Resource Affinity Table ("SRAT"): CPU and memory proximity
//!   domains.
//! * [`slit`]: the System Locality Information Table ("SLIT"): the distance matrix.
//! * [`mcfg`]: the PCI Express memory-mapped configuration table ("MCFG"): ECAM regions.
//! * [`platform`]: combines the three into a [`Platform`] (CPUs with their node, nodes with
//!   their memory ranges, node distances), falling back to a single node with the reason
//!   ([`Platform::numa_fallback`]) when SRAT or SLIT are absent or rejected.
//!
//! Typical use by the kernel:
//!
//! ```ignore
//! let rsdp = match boot_info.rsdp() {
//!     Some(phys) => Rsdp::read(&mem, phys)?,
//!     None => find_rsdp(&mem)?,
//! };
//! let tables = AcpiTables::from_rsdp(&mem, rsdp)?;
//! let platform = Platform::from_tables(&tables)?; // Err only if the MADT is missing or bad
//! if let Some(why) = platform.numa_fallback() { /* print "one NUMA node: {why}" */ }
//! ```
//!
//! # What it relies on
//!
//! Only on the caller's [`PhysMemory`] (the same trait the boot-information parser uses),
//! which maps a physical address range to a byte slice or says it cannot. There is no
//! `unsafe` code; all fields are decoded with `from_le_bytes` from bounds-checked slices.
//!
//! # What it guarantees
//!
//! * **No panics on any input**: malformed, truncated or inconsistent tables yield an
//!   `Err(`[`AcpiError`]`)` whose `Display` is a one-line message saying what is wrong.
//! * **No allocation**: results use fixed-capacity arrays ([`MAX_CPUS`], [`MAX_NODES`],
//!   [`MAX_MEMORY_RANGES`], ...). The MADT lists are truncated at capacity and say so
//!   ([`Madt::dropped_cpus`], [`Madt::truncated`]); SRAT capacity overflows are errors.
//!   A [`Platform`] is plain data of about 14 KiB: build it where the stack allows, or
//!   keep it in a `static`.
//! * Every table returned by [`AcpiTables`] has a valid checksum, its declared signature
//!   and a length in `36..=`[`MAX_TABLE_LEN`] that was entirely readable.

use core::fmt;

pub use crate::bootinfo::PhysMemory;

pub mod madt;
pub mod mcfg;
pub mod mptable;
pub mod platform;
pub mod rsdp;
pub mod sdt;
pub mod slit;
pub mod srat;

#[cfg(test)]
mod tests;

pub use madt::{InterruptOverride, IoApic, LocalApicNmi, Madt, MadtCpu, Polarity, TriggerMode};
pub use mcfg::{EcamRegion, Mcfg};
pub use platform::{DistanceSource, NodeMemory, NumaInfo, Platform, PlatformCpu};
pub use rsdp::{Rsdp, find_rsdp, scan_for_rsdp};
pub use sdt::{AcpiTables, RootEntries, Sdt};
pub use slit::Slit;
pub use srat::{CpuAffinity, MemoryAffinity, Srat};

/// Maximum number of CPU entries kept from the MADT or SRAT.
pub const MAX_CPUS: usize = 256;
/// Maximum number of NUMA nodes (distinct proximity domains).
pub const MAX_NODES: usize = 64;
/// Maximum number of enabled SRAT memory ranges.
pub const MAX_MEMORY_RANGES: usize = 64;
/// Maximum number of I/O APICs kept from the MADT.
pub const MAX_IO_APICS: usize = 16;
/// Maximum number of interrupt source overrides kept from the MADT.
pub const MAX_INTERRUPT_OVERRIDES: usize = 48;
/// Maximum number of local APIC NMI entries kept from the MADT.
pub const MAX_LOCAL_NMIS: usize = MAX_CPUS;
/// Largest table length accepted (4 MiB), so that a corrupt length field cannot make the
/// parser checksum gigabytes of memory.
pub const MAX_TABLE_LEN: u32 = 4 << 20;

/// A four-byte ACPI table signature such as `APIC` or `SRAT`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 4]);

impl Signature {
    /// Root System Description Table.
    pub const RSDT: Self = Self(*b"RSDT");
    /// Extended System Description Table.
    pub const XSDT: Self = Self(*b"XSDT");
    /// Multiple APIC Description Table.
    pub const MADT: Self = Self(*b"APIC");
    /// System Resource Affinity Table.
    pub const SRAT: Self = Self(*b"SRAT");
    /// System Locality Information Table.
    pub const SLIT: Self = Self(*b"SLIT");
    /// Fixed ACPI Description Table.
    pub const FADT: Self = Self(*b"FACP");
    /// High Precision Event Timer table.
    pub const HPET: Self = Self(*b"HPET");
    /// PCI Express memory-mapped configuration table.
    pub const MCFG: Self = Self(*b"MCFG");

    /// The raw signature bytes.
    pub const fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", char::from(b))?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(\"{self}\")")
    }
}

/// Why ACPI information could not be found or was rejected.
///
/// Every variant carries the offending value(s); `Display` renders a one-line message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiError {
    /// A physical range `[phys, phys + len)` does not fit in the address space (or `len`
    /// does not fit in `usize`).
    RangeOverflow {
        /// Physical start address.
        phys: u64,
        /// Length in bytes.
        len: u64,
    },
    /// The RSDP could not be read through [`PhysMemory`].
    RsdpUnreadable {
        /// Physical address of the RSDP.
        phys: u64,
        /// Bytes that were to be read.
        len: u64,
    },
    /// The RSDP does not start with `"RSD PTR "`.
    RsdpBadSignature {
        /// Physical address of the RSDP.
        phys: u64,
    },
    /// The first 20 bytes of the RSDP do not sum to zero.
    RsdpBadChecksum {
        /// Physical address of the RSDP.
        phys: u64,
        /// The byte sum actually found.
        sum: u8,
    },
    /// An ACPI 2.0+ RSDP declares a length outside `36..=4096`.
    RsdpBadLength {
        /// Physical address of the RSDP.
        phys: u64,
        /// The declared length.
        length: u32,
    },
    /// An ACPI 2.0+ RSDP's `length` bytes do not sum to zero.
    RsdpBadExtendedChecksum {
        /// Physical address of the RSDP.
        phys: u64,
        /// The byte sum actually found.
        sum: u8,
    },
    /// No valid RSDP in the EBDA's first KiB or in `0xE0000..0x100000`.
    RsdpNotFound {
        /// Candidates with the right signature that failed validation.
        rejected: u32,
    },
    /// The RSDP gives neither an RSDT nor an XSDT address.
    NoRootTable {
        /// The RSDP revision.
        revision: u8,
    },
    /// The 36-byte header of a table could not be read.
    HeaderUnreadable {
        /// The signature that was expected there, if any.
        expected: Option<Signature>,
        /// Physical address of the table.
        phys: u64,
    },
    /// A table's declared length runs past the readable memory (or past the bytes given).
    TableUnreadable {
        /// The table's signature.
        sig: Signature,
        /// Physical address of the table.
        phys: u64,
        /// The declared length.
        length: u32,
    },
    /// A table does not carry the expected signature.
    TableBadSignature {
        /// Physical address of the table.
        phys: u64,
        /// The signature that was expected.
        expected: Signature,
        /// The signature found.
        found: Signature,
    },
    /// A table's length field is outside `min..=max`.
    TableBadLength {
        /// The table's signature.
        sig: Signature,
        /// Physical address of the table.
        phys: u64,
        /// The declared length.
        length: u32,
        /// The smallest acceptable length for this table.
        min: u32,
        /// The largest acceptable length.
        max: u32,
    },
    /// A table's bytes do not sum to zero.
    TableBadChecksum {
        /// The table's signature.
        sig: Signature,
        /// Physical address of the table.
        phys: u64,
        /// The byte sum actually found.
        sum: u8,
    },
    /// A table the caller requires is not listed in the RSDT/XSDT.
    TableMissing {
        /// The signature that was looked for.
        sig: Signature,
    },
    /// An entry (MADT/SRAT sub-table) is shorter than its 2-byte header or than its type
    /// requires.
    EntryTooShort {
        /// The table's signature.
        sig: Signature,
        /// Offset of the entry from the start of the table.
        offset: usize,
        /// The entry's type.
        entry_type: u8,
        /// The entry's declared length.
        length: u8,
        /// The minimum length for this entry type.
        min: u8,
    },
    /// An entry runs past the end of its table.
    EntryPastEnd {
        /// The table's signature.
        sig: Signature,
        /// Offset of the entry from the start of the table.
        offset: usize,
        /// The entry's type.
        entry_type: u8,
        /// The entry's declared length (`None` if the length byte itself is missing).
        length: Option<u8>,
        /// The table's length.
        table_length: usize,
    },
    /// More entries of one kind than the fixed capacity allows.
    TooManyEntries {
        /// The table's signature.
        sig: Signature,
        /// What kind of entry.
        what: &'static str,
        /// The capacity.
        max: usize,
    },
    /// An SRAT memory range's `base + length` overflows `u64`.
    MemoryRangeOverflow {
        /// The range's proximity domain.
        proximity_domain: u32,
        /// Base address.
        base: u64,
        /// Length.
        length: u64,
    },
    /// Two enabled SRAT memory ranges overlap.
    OverlappingMemory {
        /// Base of the first range.
        first_base: u64,
        /// Length of the first range.
        first_length: u64,
        /// Proximity domain of the first range.
        first_domain: u32,
        /// Base of the second range.
        second_base: u64,
        /// Length of the second range.
        second_length: u64,
        /// Proximity domain of the second range.
        second_domain: u32,
    },
    /// The SRAT assigns a CPU whose APIC id the MADT does not list.
    SratUnknownApicId {
        /// The APIC id.
        apic_id: u32,
        /// The proximity domain the SRAT gave it.
        proximity_domain: u32,
    },
    /// The SRAT assigns one CPU to two different proximity domains.
    SratConflictingCpu {
        /// The APIC id.
        apic_id: u32,
        /// The first proximity domain.
        first: u32,
        /// The second proximity domain.
        second: u32,
    },
    /// The SRAT has no enabled CPU or memory entry.
    SratEmpty,
    /// More distinct proximity domains than [`MAX_NODES`].
    TooManyNodes {
        /// The capacity.
        max: usize,
    },
    /// The SLIT's locality count is zero or its matrix does not fit in the table.
    SlitBadLocalityCount {
        /// The declared number of localities.
        count: u64,
        /// The table's length.
        table_length: u32,
    },
    /// A SLIT diagonal entry (distance of a locality to itself) is not 10.
    SlitBadDiagonal {
        /// The locality.
        locality: usize,
        /// The value found.
        value: u8,
    },
    /// A SLIT off-diagonal entry is 10 or less.
    SlitBadDistance {
        /// Source locality.
        from: usize,
        /// Destination locality.
        to: usize,
        /// The value found.
        value: u8,
    },
    /// A proximity domain used by the SRAT has no row in the SLIT.
    SlitMissingDomain {
        /// The proximity domain.
        proximity_domain: u32,
        /// The SLIT's locality count.
        localities: usize,
    },
    /// The MCFG has no entry, or its body is not a whole number of 16-byte entries.
    McfgBadLength {
        /// The table's length.
        length: u32,
    },
    /// An MCFG entry's first bus is above its last bus.
    McfgBadBusRange {
        /// Index of the entry.
        index: usize,
        /// First bus.
        first_bus: u8,
        /// Last bus.
        last_bus: u8,
    },
    /// An MCFG entry's base address is not 1 MiB-aligned.
    McfgMisalignedBase {
        /// Index of the entry.
        index: usize,
        /// The base address.
        base: u64,
    },
    /// An MCFG entry's region runs past the end of the 64-bit address space.
    McfgRegionOverflow {
        /// Index of the entry.
        index: usize,
        /// The base address.
        base: u64,
        /// Last bus.
        last_bus: u8,
    },
    /// Two MCFG entries decode the same bus of the same segment.
    McfgOverlap {
        /// Index of the earlier entry.
        first: usize,
        /// Index of the later entry.
        second: usize,
        /// The segment.
        segment: u16,
    },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::RangeOverflow { phys, len } => write!(
                f,
                "ACPI structure at physical address {phys:#x} with length {len:#x} overflows the address space"
            ),
            Self::RsdpUnreadable { phys, len } => write!(
                f,
                "cannot read the ACPI RSDP: {len} bytes at physical address {phys:#x} are not readable"
            ),
            Self::RsdpBadSignature { phys } => write!(
                f,
                "no ACPI RSDP at physical address {phys:#x}: signature is not \"RSD PTR \""
            ),
            Self::RsdpBadChecksum { phys, sum } => write!(
                f,
                "ACPI RSDP at {phys:#x} has a bad checksum (first 20 bytes sum to {sum:#04x}, not 0)"
            ),
            Self::RsdpBadLength { phys, length } => write!(
                f,
                "ACPI 2.0 RSDP at {phys:#x} declares length {length}, outside 36..=4096"
            ),
            Self::RsdpBadExtendedChecksum { phys, sum } => write!(
                f,
                "ACPI 2.0 RSDP at {phys:#x} has a bad extended checksum (bytes sum to {sum:#04x}, not 0)"
            ),
            Self::RsdpNotFound { rejected } => write!(
                f,
                "no valid ACPI RSDP in the EBDA or the BIOS area 0xe0000..0xfffff ({rejected} candidates with a bad checksum or length)"
            ),
            Self::NoRootTable { revision } => write!(
                f,
                "ACPI RSDP (revision {revision}) gives neither an RSDT nor an XSDT address"
            ),
            Self::HeaderUnreadable {
                expected: Some(sig),
                phys,
            } => write!(
                f,
                "cannot read the 36-byte header of ACPI table {sig} at physical address {phys:#x}"
            ),
            Self::HeaderUnreadable {
                expected: None,
                phys,
            } => write!(
                f,
                "cannot read the 36-byte header of the ACPI table at physical address {phys:#x}"
            ),
            Self::TableUnreadable { sig, phys, length } => write!(
                f,
                "ACPI table {sig} at {phys:#x}: its length field ({length} bytes) runs past the readable memory"
            ),
            Self::TableBadSignature {
                phys,
                expected,
                found,
            } => write!(
                f,
                "ACPI table at {phys:#x} has signature \"{found}\", expected \"{expected}\""
            ),
            Self::TableBadLength {
                sig,
                phys,
                length,
                min,
                max,
            } => write!(
                f,
                "ACPI table {sig} at {phys:#x} has length {length}, outside {min}..={max}"
            ),
            Self::TableBadChecksum { sig, phys, sum } => write!(
                f,
                "ACPI table {sig} at {phys:#x} has a bad checksum (bytes sum to {sum:#04x}, not 0)"
            ),
            Self::TableMissing { sig } => write!(f, "no ACPI {sig} table"),
            Self::EntryTooShort {
                sig,
                offset,
                entry_type,
                length,
                min,
            } => write!(
                f,
                "{sig} entry of type {entry_type} at offset {offset:#x} has length {length}, less than the {min} bytes it needs"
            ),
            Self::EntryPastEnd {
                sig,
                offset,
                entry_type,
                length: Some(length),
                table_length,
            } => write!(
                f,
                "{sig} entry of type {entry_type} at offset {offset:#x} with length {length} runs past the table's end ({table_length} bytes)"
            ),
            Self::EntryPastEnd {
                sig,
                offset,
                entry_type,
                length: None,
                table_length,
            } => write!(
                f,
                "{sig} entry of type {entry_type} at offset {offset:#x} is cut off by the table's end ({table_length} bytes) before its length byte"
            ),
            Self::TooManyEntries { sig, what, max } => {
                write!(
                    f,
                    "{sig} has more than {max} {what} (the supported maximum)"
                )
            }
            Self::MemoryRangeOverflow {
                proximity_domain,
                base,
                length,
            } => write!(
                f,
                "SRAT memory range base {base:#x} length {length:#x} (proximity domain {proximity_domain}) overflows the 64-bit address space"
            ),
            Self::OverlappingMemory {
                first_base,
                first_length,
                first_domain,
                second_base,
                second_length,
                second_domain,
            } => write!(
                f,
                "SRAT memory ranges overlap: base {first_base:#x} length {first_length:#x} (domain {first_domain}) and base {second_base:#x} length {second_length:#x} (domain {second_domain})"
            ),
            Self::SratUnknownApicId {
                apic_id,
                proximity_domain,
            } => write!(
                f,
                "SRAT assigns APIC id {apic_id} to proximity domain {proximity_domain}, but the MADT lists no such CPU"
            ),
            Self::SratConflictingCpu {
                apic_id,
                first,
                second,
            } => write!(
                f,
                "SRAT assigns APIC id {apic_id} to two proximity domains ({first} and {second})"
            ),
            Self::SratEmpty => f.write_str("SRAT has no enabled CPU or memory entry"),
            Self::TooManyNodes { max } => write!(
                f,
                "SRAT names more than {max} proximity domains (the supported maximum)"
            ),
            Self::SlitBadLocalityCount {
                count,
                table_length,
            } => write!(
                f,
                "SLIT locality count {count} does not fit its table length {table_length} (needs 44 + count*count bytes, count >= 1)"
            ),
            Self::SlitBadDiagonal { locality, value } => write!(
                f,
                "SLIT distance from locality {locality} to itself is {value}, must be 10"
            ),
            Self::SlitBadDistance { from, to, value } => write!(
                f,
                "SLIT distance from locality {from} to {to} is {value}, must be greater than 10"
            ),
            Self::SlitMissingDomain {
                proximity_domain,
                localities,
            } => write!(
                f,
                "SLIT has {localities} localities, too few for SRAT proximity domain {proximity_domain}"
            ),
            Self::McfgBadLength { length } => write!(
                f,
                "MCFG length {length} is not 44 bytes plus one or more 16-byte entries"
            ),
            Self::McfgBadBusRange {
                index,
                first_bus,
                last_bus,
            } => write!(
                f,
                "MCFG entry {index} decodes buses {first_bus}..={last_bus}: first bus above last"
            ),
            Self::McfgMisalignedBase { index, base } => write!(
                f,
                "MCFG entry {index} has base {base:#x}, not 1 MiB-aligned"
            ),
            Self::McfgRegionOverflow {
                index,
                base,
                last_bus,
            } => write!(
                f,
                "MCFG entry {index} (base {base:#x}, last bus {last_bus}) overflows the 64-bit address space"
            ),
            Self::McfgOverlap {
                first,
                second,
                segment,
            } => write!(
                f,
                "MCFG entries {first} and {second} decode the same buses of segment {segment}"
            ),
        }
    }
}

impl core::error::Error for AcpiError {}

// ---- helpers shared by the table parsers ----------------------------------------------------

/// A fixed-capacity list: pushes beyond capacity are counted, not stored.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FixedVec<T, const N: usize> {
    items: [T; N],
    len: usize,
    dropped: usize,
}

impl<T: Copy, const N: usize> FixedVec<T, N> {
    /// An empty list whose unused slots hold `fill`.
    pub(crate) const fn new(fill: T) -> Self {
        Self {
            items: [fill; N],
            len: 0,
            dropped: 0,
        }
    }

    /// Appends `value`; returns `false` (and counts it as dropped) when full.
    pub(crate) fn push(&mut self, value: T) -> bool {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = value;
                self.len += 1;
                true
            }
            None => {
                self.dropped = self.dropped.saturating_add(1);
                false
            }
        }
    }

    /// The stored items.
    pub(crate) fn as_slice(&self) -> &[T] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// The stored items, mutably.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        self.items.get_mut(..self.len).unwrap_or(&mut [])
    }

    /// How many pushes did not fit.
    pub(crate) fn dropped(&self) -> usize {
        self.dropped
    }
}

/// Byte at `off`, or `0` if out of bounds (callers check lengths first).
pub(crate) fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// Little-endian `u16` at `off`, or `0` if out of bounds (callers check lengths first).
pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    off.checked_add(2)
        .and_then(|end| b.get(off..end))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

/// Little-endian `u32` at `off`, or `0` if out of bounds (callers check lengths first).
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    off.checked_add(4)
        .and_then(|end| b.get(off..end))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// Little-endian `u64` at `off`, or `0` if out of bounds (callers check lengths first).
pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    off.checked_add(8)
        .and_then(|end| b.get(off..end))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The byte sum of `bytes` modulo 256 (zero for a valid ACPI checksum).
pub(crate) fn byte_sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, &b| acc.wrapping_add(b))
}

/// Reads `len` bytes at `phys`, checking that the range fits the address space; `None` if
/// the memory is not readable (a short slice from a misbehaving [`PhysMemory`] counts as
/// unreadable).
pub(crate) fn read_phys<M: PhysMemory + ?Sized>(
    mem: &M,
    phys: u64,
    len: usize,
) -> Result<Option<&[u8]>, AcpiError> {
    let len64 = len as u64;
    if phys.checked_add(len64).is_none() {
        return Err(AcpiError::RangeOverflow { phys, len: len64 });
    }
    Ok(mem
        .read(phys, len)
        .filter(|b| b.len() >= len)
        .and_then(|b| b.get(..len)))
}

/// One MADT/SRAT entry (sub-table): `[type, length, ...]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry<'a> {
    /// Offset of the entry from the start of the table.
    pub(crate) offset: usize,
    /// The entry type.
    pub(crate) entry_type: u8,
    /// The whole entry, header included (`length` bytes).
    pub(crate) bytes: &'a [u8],
}

impl Entry<'_> {
    /// Checks the entry is at least `min` bytes long.
    pub(crate) fn need(&self, sig: Signature, min: u8) -> Result<(), AcpiError> {
        if self.bytes.len() < usize::from(min) {
            return Err(AcpiError::EntryTooShort {
                sig,
                offset: self.offset,
                entry_type: self.entry_type,
                length: u8::try_from(self.bytes.len()).unwrap_or(u8::MAX),
                min,
            });
        }
        Ok(())
    }
}

/// Iterates over the `[type, length]`-prefixed entries of `table` from offset `start`;
/// yields one error and then stops if an entry is malformed.
pub(crate) struct Entries<'a> {
    sig: Signature,
    table: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Entries<'a> {
    /// Entries of `table` (the whole table, header included) starting at `start`.
    pub(crate) fn new(sig: Signature, table: &'a [u8], start: usize) -> Self {
        Self {
            sig,
            table,
            pos: start,
            failed: false,
        }
    }

    fn fail(&mut self, e: AcpiError) -> Option<Result<Entry<'a>, AcpiError>> {
        self.failed = true;
        Some(Err(e))
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, AcpiError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let offset = self.pos;
        let rest = self.table.get(offset..).filter(|r| !r.is_empty())?;
        let entry_type = u8_at(rest, 0);
        let Some(&length) = rest.get(1) else {
            return self.fail(AcpiError::EntryPastEnd {
                sig: self.sig,
                offset,
                entry_type,
                length: None,
                table_length: self.table.len(),
            });
        };
        if length < 2 {
            return self.fail(AcpiError::EntryTooShort {
                sig: self.sig,
                offset,
                entry_type,
                length,
                min: 2,
            });
        }
        let Some(bytes) = rest.get(..usize::from(length)) else {
            return self.fail(AcpiError::EntryPastEnd {
                sig: self.sig,
                offset,
                entry_type,
                length: Some(length),
                table_length: self.table.len(),
            });
        };
        self.pos = offset.saturating_add(usize::from(length));
        Some(Ok(Entry {
            offset,
            entry_type,
            bytes,
        }))
    }
}
