//! System Description Tables: the common 36-byte header, the RSDT/XSDT and table lookup.
//!
//! Header layout (little-endian):
//!
//! | offset | size | field            |
//! |--------|------|------------------|
//! | 0      | 4    | signature        |
//! | 4      | 4    | length (header included) |
//! | 8      | 1    | revision         |
//! | 9      | 1    | checksum (all `length` bytes sum to 0) |
//! | 10     | 6    | OEM id           |
//! | 16     | 8    | OEM table id     |
//! | 24     | 4    | OEM revision     |
//! | 28     | 4    | creator id       |
//! | 32     | 4    | creator revision |
//!
//! The RSDT's body is an array of 32-bit table addresses, the XSDT's of 64-bit ones. A
//! trailing partial entry (a body length that is not a multiple of the entry size) is
//! ignored, as other operating systems do.

use super::{
    AcpiError, MAX_TABLE_LEN, PhysMemory, Signature, byte_sum, read_phys, u8_at, u32_at, u64_at,
};
use super::{madt::Madt, mcfg::Mcfg, rsdp::Rsdp, slit::Slit, srat::Srat};

/// Length of the common table header.
pub const SDT_HEADER_LEN: usize = 36;

/// A validated ACPI table: signature as expected, length in `36..=`[`MAX_TABLE_LEN`] and
/// entirely present, bytes summing to zero.
#[derive(Debug, Clone, Copy)]
pub struct Sdt<'a> {
    phys: u64,
    bytes: &'a [u8],
}

impl<'a> Sdt<'a> {
    /// Validates a table given as bytes found at physical address `phys` (used only in
    /// messages). `bytes` may be longer than the table; the table is its first `length`
    /// bytes. With `expected`, the signature must match.
    pub fn from_bytes(
        phys: u64,
        bytes: &'a [u8],
        expected: Option<Signature>,
    ) -> Result<Self, AcpiError> {
        let header = bytes
            .get(..SDT_HEADER_LEN)
            .ok_or(AcpiError::HeaderUnreadable { expected, phys })?;
        let (sig, length) = check_header(phys, header, expected)?;
        let table = bytes
            .get(..length as usize)
            .ok_or(AcpiError::TableUnreadable { sig, phys, length })?;
        let sum = byte_sum(table);
        if sum != 0 {
            return Err(AcpiError::TableBadChecksum { sig, phys, sum });
        }
        Ok(Self { phys, bytes: table })
    }

    /// Reads and validates the table at physical address `phys`: first its header, then
    /// `length` bytes. With `expected`, the signature must match.
    pub fn read<M: PhysMemory + ?Sized>(
        mem: &'a M,
        phys: u64,
        expected: Option<Signature>,
    ) -> Result<Self, AcpiError> {
        let header = read_phys(mem, phys, SDT_HEADER_LEN)?
            .ok_or(AcpiError::HeaderUnreadable { expected, phys })?;
        let (sig, length) = check_header(phys, header, expected)?;
        let table = read_phys(mem, phys, length as usize)?.ok_or(AcpiError::TableUnreadable {
            sig,
            phys,
            length,
        })?;
        Self::from_bytes(phys, table, expected)
    }

    /// Physical address of the table.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// The table's signature.
    pub fn signature(&self) -> Signature {
        signature_of(self.bytes)
    }

    /// The table's length in bytes (header included).
    pub fn length(&self) -> u32 {
        u32_at(self.bytes, 4)
    }

    /// The table's revision.
    pub fn revision(&self) -> u8 {
        u8_at(self.bytes, 8)
    }

    /// The OEM id (six bytes, usually space-padded ASCII).
    pub fn oem_id(&self) -> [u8; 6] {
        let mut id = [0; 6];
        if let Some(src) = self.bytes.get(10..16) {
            id.copy_from_slice(src);
        }
        id
    }

    /// The OEM table id (eight bytes, usually space-padded ASCII).
    pub fn oem_table_id(&self) -> [u8; 8] {
        let mut id = [0; 8];
        if let Some(src) = self.bytes.get(16..24) {
            id.copy_from_slice(src);
        }
        id
    }

    /// The OEM revision.
    pub fn oem_revision(&self) -> u32 {
        u32_at(self.bytes, 24)
    }

    /// The creator (ASL compiler) id.
    pub fn creator_id(&self) -> u32 {
        u32_at(self.bytes, 28)
    }

    /// The creator revision.
    pub fn creator_revision(&self) -> u32 {
        u32_at(self.bytes, 32)
    }

    /// The whole table, header included.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The table's body (everything after the 36-byte header).
    pub fn body(&self) -> &'a [u8] {
        self.bytes.get(SDT_HEADER_LEN..).unwrap_or(&[])
    }

    /// Checks the table is `sig` and at least `min` bytes long (for a table-specific fixed
    /// part after the header).
    pub(crate) fn expect(&self, sig: Signature, min: u32) -> Result<(), AcpiError> {
        let found = self.signature();
        if found != sig {
            return Err(AcpiError::TableBadSignature {
                phys: self.phys,
                expected: sig,
                found,
            });
        }
        let length = self.length();
        if length < min {
            return Err(AcpiError::TableBadLength {
                sig,
                phys: self.phys,
                length,
                min,
                max: MAX_TABLE_LEN,
            });
        }
        Ok(())
    }
}

fn signature_of(bytes: &[u8]) -> Signature {
    Signature([
        u8_at(bytes, 0),
        u8_at(bytes, 1),
        u8_at(bytes, 2),
        u8_at(bytes, 3),
    ])
}

/// Checks signature and length bounds of a 36-byte header; returns both.
fn check_header(
    phys: u64,
    header: &[u8],
    expected: Option<Signature>,
) -> Result<(Signature, u32), AcpiError> {
    let sig = signature_of(header);
    if let Some(expected) = expected
        && expected != sig
    {
        return Err(AcpiError::TableBadSignature {
            phys,
            expected,
            found: sig,
        });
    }
    let length = u32_at(header, 4);
    if !(SDT_HEADER_LEN as u32..=MAX_TABLE_LEN).contains(&length) {
        return Err(AcpiError::TableBadLength {
            sig,
            phys,
            length,
            min: SDT_HEADER_LEN as u32,
            max: MAX_TABLE_LEN,
        });
    }
    Ok((sig, length))
}

/// The physical addresses listed in an RSDT or XSDT (zero entries included).
#[derive(Debug, Clone)]
pub struct RootEntries<'a> {
    body: &'a [u8],
    entry_size: usize,
    index: usize,
}

impl Iterator for RootEntries<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let off = self.index.checked_mul(self.entry_size)?;
        let end = off.checked_add(self.entry_size)?;
        let entry = self.body.get(off..end)?;
        self.index += 1;
        Some(if self.entry_size == 8 {
            u64_at(entry, 0)
        } else {
            u64::from(u32_at(entry, 0))
        })
    }
}

/// The ACPI tables reachable from an RSDP: a validated root table (the XSDT when the RSDP
/// has revision >= 2 and a non-zero XSDT address, else the RSDT) and lookup by signature.
#[derive(Debug)]
pub struct AcpiTables<'m, M: PhysMemory + ?Sized> {
    mem: &'m M,
    rsdp: Rsdp,
    root: Sdt<'m>,
    xsdt_error: Option<AcpiError>,
}

impl<'m, M: PhysMemory + ?Sized> AcpiTables<'m, M> {
    /// Reads the RSDP at `rsdp_phys` and its root table.
    pub fn new(mem: &'m M, rsdp_phys: u64) -> Result<Self, AcpiError> {
        Self::from_rsdp(mem, Rsdp::read(mem, rsdp_phys)?)
    }

    /// Reads the root table of an already validated RSDP: the XSDT if the RSDP gives one;
    /// if that XSDT is invalid but an RSDT address is present, the RSDT (the XSDT's error
    /// is kept in [`xsdt_error`](Self::xsdt_error)).
    pub fn from_rsdp(mem: &'m M, rsdp: Rsdp) -> Result<Self, AcpiError> {
        let mut xsdt_error = None;
        if let Some(xsdt) = rsdp.xsdt_address() {
            match Sdt::read(mem, xsdt, Some(Signature::XSDT)) {
                Ok(root) => {
                    return Ok(Self {
                        mem,
                        rsdp,
                        root,
                        xsdt_error,
                    });
                }
                Err(e) if rsdp.rsdt_address() == 0 => return Err(e),
                Err(e) => xsdt_error = Some(e),
            }
        }
        if rsdp.rsdt_address() == 0 {
            return Err(AcpiError::NoRootTable {
                revision: rsdp.revision(),
            });
        }
        let root = Sdt::read(mem, u64::from(rsdp.rsdt_address()), Some(Signature::RSDT))?;
        Ok(Self {
            mem,
            rsdp,
            root,
            xsdt_error,
        })
    }

    /// The RSDP.
    pub fn rsdp(&self) -> &Rsdp {
        &self.rsdp
    }

    /// The root table in use (RSDT or XSDT).
    pub fn root(&self) -> &Sdt<'m> {
        &self.root
    }

    /// Whether the root table is the XSDT.
    pub fn uses_xsdt(&self) -> bool {
        self.root.signature() == Signature::XSDT
    }

    /// Why the XSDT was rejected in favour of the RSDT, if it was.
    pub fn xsdt_error(&self) -> Option<&AcpiError> {
        self.xsdt_error.as_ref()
    }

    /// The table addresses listed in the root table, in order.
    pub fn entries(&self) -> RootEntries<'m> {
        RootEntries {
            body: self.root.body(),
            entry_size: if self.uses_xsdt() { 8 } else { 4 },
            index: 0,
        }
    }

    /// Finds the table with signature `sig`.
    ///
    /// Entries that are zero or whose header cannot be read are skipped. Returns the first
    /// valid table with that signature; `Ok(None)` if no entry has it; the error of the
    /// first one if every entry with that signature is invalid (bad length, checksum,
    /// length running past readable memory).
    pub fn find(&self, sig: Signature) -> Result<Option<Sdt<'m>>, AcpiError> {
        let mut first_error = None;
        for phys in self.entries().filter(|&p| p != 0) {
            let Ok(Some(header)) = read_phys(self.mem, phys, SDT_HEADER_LEN) else {
                continue;
            };
            if signature_of(header) != sig {
                continue;
            }
            match Sdt::read(self.mem, phys, Some(sig)) {
                Ok(table) => return Ok(Some(table)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// Finds and parses the MADT; its absence is an error ([`AcpiError::TableMissing`]).
    pub fn madt(&self) -> Result<Madt, AcpiError> {
        let table = self.find(Signature::MADT)?.ok_or(AcpiError::TableMissing {
            sig: Signature::MADT,
        })?;
        Madt::parse(&table)
    }

    /// Finds and parses the SRAT, if present.
    pub fn srat(&self) -> Result<Option<Srat>, AcpiError> {
        self.find(Signature::SRAT)?
            .map(|t| Srat::parse(&t))
            .transpose()
    }

    /// Finds and parses the SLIT, if present.
    pub fn slit(&self) -> Result<Option<Slit<'m>>, AcpiError> {
        self.find(Signature::SLIT)?
            .map(|t| Slit::parse(&t))
            .transpose()
    }

    /// Finds and parses the MCFG (PCI Express ECAM regions), if present.
    pub fn mcfg(&self) -> Result<Option<Mcfg>, AcpiError> {
        self.find(Signature::MCFG)?
            .map(|t| Mcfg::parse(&t))
            .transpose()
    }
}
