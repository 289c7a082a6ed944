//! The Root System Description Pointer (RSDP) and the BIOS-area scan that finds it.
//!
//! Layout (little-endian):
//!
//! | offset | size | field                                   |
//! |--------|------|-----------------------------------------|
//! | 0      | 8    | signature `"RSD PTR "`                  |
//! | 8      | 1    | checksum over bytes 0..20               |
//! | 9      | 6    | OEM id                                  |
//! | 15     | 1    | revision (0 = ACPI 1.0, 2 = ACPI 2.0+)  |
//! | 16     | 4    | RSDT physical address                   |
//! | 20     | 4    | length of the whole RSDP (rev >= 2)     |
//! | 24     | 8    | XSDT physical address (rev >= 2)        |
//! | 32     | 1    | extended checksum over `length` bytes   |
//! | 33     | 3    | reserved                                |
//!
//! On BIOS systems the RSDP lies on a 16-byte boundary in the first KiB of the Extended
//! BIOS Data Area (whose real-mode segment is the `u16` at physical `0x40E`) or in
//! `0xE0000..0x100000`. UEFI systems (and boot loaders) pass its address instead.

use super::{AcpiError, PhysMemory, byte_sum, read_phys, u8_at, u32_at, u64_at};

/// The RSDP signature.
pub const RSDP_SIGNATURE: [u8; 8] = *b"RSD PTR ";
/// Length of an ACPI 1.0 RSDP (and of the part covered by the first checksum).
pub const RSDP_V1_LEN: usize = 20;
/// Length of an ACPI 2.0+ RSDP.
pub const RSDP_V2_LEN: usize = 36;
/// Largest ACPI 2.0+ RSDP length accepted.
pub const RSDP_MAX_LEN: u32 = 4096;
/// Physical address of the BIOS Data Area word holding the EBDA's real-mode segment.
pub const EBDA_POINTER: u64 = 0x40E;
/// Bytes of the EBDA searched for the RSDP.
pub const EBDA_SEARCH_LEN: u64 = 1024;
/// Start of the BIOS read-only area searched for the RSDP.
pub const BIOS_AREA_START: u64 = 0xE_0000;
/// End (exclusive) of the BIOS read-only area searched for the RSDP.
pub const BIOS_AREA_END: u64 = 0x10_0000;

/// A validated RSDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rsdp {
    phys: u64,
    revision: u8,
    oem_id: [u8; 6],
    rsdt_address: u32,
    length: u32,
    xsdt_address: u64,
}

impl Rsdp {
    /// Validates an RSDP given as bytes that were found at physical address `phys`.
    ///
    /// Checks the signature and the checksum of the first 20 bytes; for revision 2 and
    /// later also the length (36..=4096, all present in `bytes`) and the extended checksum.
    pub fn from_bytes(phys: u64, bytes: &[u8]) -> Result<Self, AcpiError> {
        let v1 = bytes.get(..RSDP_V1_LEN).ok_or(AcpiError::RsdpUnreadable {
            phys,
            len: RSDP_V1_LEN as u64,
        })?;
        if v1.get(..8) != Some(&RSDP_SIGNATURE[..]) {
            return Err(AcpiError::RsdpBadSignature { phys });
        }
        let sum = byte_sum(v1);
        if sum != 0 {
            return Err(AcpiError::RsdpBadChecksum { phys, sum });
        }
        let mut oem_id = [0; 6];
        if let Some(src) = v1.get(9..15) {
            oem_id.copy_from_slice(src);
        }
        let revision = u8_at(v1, 15);
        let mut rsdp = Self {
            phys,
            revision,
            oem_id,
            rsdt_address: u32_at(v1, 16),
            length: RSDP_V1_LEN as u32,
            xsdt_address: 0,
        };
        if revision >= 2 {
            let length = match bytes.get(..RSDP_V2_LEN) {
                Some(v2) => u32_at(v2, 20),
                None => {
                    return Err(AcpiError::RsdpUnreadable {
                        phys,
                        len: RSDP_V2_LEN as u64,
                    });
                }
            };
            if !(RSDP_V2_LEN as u32..=RSDP_MAX_LEN).contains(&length) {
                return Err(AcpiError::RsdpBadLength { phys, length });
            }
            let full = bytes
                .get(..length as usize)
                .ok_or(AcpiError::RsdpUnreadable {
                    phys,
                    len: u64::from(length),
                })?;
            let sum = byte_sum(full);
            if sum != 0 {
                return Err(AcpiError::RsdpBadExtendedChecksum { phys, sum });
            }
            rsdp.length = length;
            rsdp.xsdt_address = u64_at(full, 24);
        }
        Ok(rsdp)
    }

    /// Reads and validates the RSDP at physical address `phys` (e.g. the address from
    /// [`BootInfo::rsdp`](crate::BootInfo::rsdp)).
    pub fn read<M: PhysMemory + ?Sized>(mem: &M, phys: u64) -> Result<Self, AcpiError> {
        let unreadable = |len: usize| AcpiError::RsdpUnreadable {
            phys,
            len: len as u64,
        };
        let v1 = read_phys(mem, phys, RSDP_V1_LEN)?.ok_or(unreadable(RSDP_V1_LEN))?;
        // Validate the v1 part first so that a wrong address is reported as such; for
        // revision >= 2 this succeeds up to the missing v2 fields (reported as unreadable).
        match Self::from_bytes(phys, v1) {
            Err(AcpiError::RsdpUnreadable { .. }) => {}
            other => return other,
        }
        let v2 = read_phys(mem, phys, RSDP_V2_LEN)?.ok_or(unreadable(RSDP_V2_LEN))?;
        let length = u32_at(v2, 20);
        if !(RSDP_V2_LEN as u32..=RSDP_MAX_LEN).contains(&length) {
            return Err(AcpiError::RsdpBadLength { phys, length });
        }
        let full = read_phys(mem, phys, length as usize)?.ok_or(unreadable(length as usize))?;
        Self::from_bytes(phys, full)
    }

    /// Physical address the RSDP was found at.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// The revision: 0 for ACPI 1.0, 2 or more for ACPI 2.0 and later.
    pub fn revision(&self) -> u8 {
        self.revision
    }

    /// The OEM id (six bytes, usually space-padded ASCII).
    pub fn oem_id(&self) -> [u8; 6] {
        self.oem_id
    }

    /// The RSDT physical address (may be 0 on 64-bit-only firmware).
    pub fn rsdt_address(&self) -> u32 {
        self.rsdt_address
    }

    /// The XSDT physical address: `Some` only for revision >= 2 with a non-zero address.
    pub fn xsdt_address(&self) -> Option<u64> {
        (self.revision >= 2 && self.xsdt_address != 0).then_some(self.xsdt_address)
    }

    /// The RSDP's length: 20 for revision < 2, else its length field.
    pub fn length(&self) -> u32 {
        self.length
    }
}

/// Scans `[start, start + len)` on 16-byte boundaries (`start` rounded up) for a valid
/// RSDP. Returns the first valid one, or else `Err` with the number of candidates that had
/// the signature but failed validation.
pub fn scan_for_rsdp<M: PhysMemory + ?Sized>(mem: &M, start: u64, len: u64) -> Result<Rsdp, u32> {
    let mut rejected = 0u32;
    let Some(mut addr) = start.checked_add(15).map(|a| a & !15) else {
        return Err(0);
    };
    let end = start.saturating_add(len);
    while addr < end {
        let is_candidate = matches!(
            read_phys(mem, addr, RSDP_SIGNATURE.len()),
            Ok(Some(sig)) if sig == RSDP_SIGNATURE
        );
        if is_candidate {
            match Rsdp::read(mem, addr) {
                Ok(rsdp) => return Ok(rsdp),
                Err(_) => rejected = rejected.saturating_add(1),
            }
        }
        let Some(next) = addr.checked_add(16) else {
            break;
        };
        addr = next;
    }
    Err(rejected)
}

/// Finds the RSDP the BIOS way: first in the first KiB of the EBDA (whose segment is read
/// from physical `0x40E`; skipped if that word is unreadable or zero), then in
/// `0xE0000..0x100000`.
pub fn find_rsdp<M: PhysMemory + ?Sized>(mem: &M) -> Result<Rsdp, AcpiError> {
    let mut rejected = 0u32;
    let ebda_segment = match read_phys(mem, EBDA_POINTER, 2) {
        Ok(Some(b)) => u16::from_le_bytes([u8_at(b, 0), u8_at(b, 1)]),
        _ => 0,
    };
    if ebda_segment != 0 {
        match scan_for_rsdp(mem, u64::from(ebda_segment) << 4, EBDA_SEARCH_LEN) {
            Ok(rsdp) => return Ok(rsdp),
            Err(n) => rejected = rejected.saturating_add(n),
        }
    }
    match scan_for_rsdp(mem, BIOS_AREA_START, BIOS_AREA_END - BIOS_AREA_START) {
        Ok(rsdp) => Ok(rsdp),
        Err(n) => Err(AcpiError::RsdpNotFound {
            rejected: rejected.saturating_add(n),
        }),
    }
}
