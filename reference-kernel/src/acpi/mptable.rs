//! The Intel MultiProcessor Specification (1.4) table, for machines without ACPI: the CPUs'
//! local APIC ids, the I/O APICs and the ISA interrupt routing, turned into a [`Platform`] with
//! one NUMA node.
//!
//! What it does: [`find_mp_platform`] looks for the 16-byte floating pointer structure
//! (`_MP_`, checksum) where the specification puts it (the first KiB of the EBDA, the last
//! KiB of base memory, the BIOS ROM at `0xF0000..0x100000`), validates the configuration table
//! it points to (`PCMP`, length, checksum, every entry's type and bounds), and writes what it
//! found into a synthetic MADT (processor, I/O APIC and interrupt source override entries,
//! with a correct checksum) that the kernel's own MADT parser then reads, so the rest of the
//! kernel sees the same [`Madt`] it would get from ACPI.
//!
//! What it guarantees: no panic and no trust in the input: a missing or malformed table is a
//! [`MpError`] naming the problem. Tables using the specification's "default configurations"
//! (no configuration table) are refused (they describe two-CPU machines of the 1990s).
//!
//! Limits: at most [`MAX_MP_CPUS`] processors and 8 I/O APICs; I/O APICs get consecutive GSI
//! bases of 24 pins each, in table order (the MP table has no GSI numbers).

use super::madt::Madt;
use super::rsdp::{BIOS_AREA_END, EBDA_POINTER};
use super::sdt::Sdt;
use super::{PhysMemory, Platform, byte_sum, read_phys, u8_at, u16_at, u32_at};

/// Processors taken from an MP table.
pub const MAX_MP_CPUS: usize = 255;
const MAX_IO_APICS: usize = 8;
const MAX_OVERRIDES: usize = 16;
/// Pins assumed per I/O APIC (for the GSI bases).
const PINS_PER_IO_APIC: u32 = 24;

const FLOATING_LEN: usize = 16;
const CONFIG_HEADER_LEN: usize = 44;
/// The ROM area the specification names.
const ROM_START: u64 = 0xF_0000;
/// The last KiB of 640 KiB of base memory.
const BASE_MEMORY_LAST_KIB: u64 = 0x9_FC00;

/// Why no platform could be read from an MP table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpError {
    /// No floating pointer structure with a valid checksum in the searched areas.
    NotFound,
    /// The floating pointer structure names a default configuration (no table).
    DefaultConfiguration(u8),
    /// The configuration table is unreadable, has a bad signature, length or checksum.
    BadTable {
        /// Its physical address.
        phys: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// An entry of unknown type (its length is then unknown) or running past the table.
    BadEntry {
        /// Index of the entry.
        index: usize,
        /// Its type byte.
        entry_type: u8,
    },
    /// No enabled processor.
    NoProcessor,
    /// The synthetic MADT was refused by the MADT parser (a bug).
    Madt,
}

impl core::fmt::Display for MpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotFound => write!(f, "no MP floating pointer structure found"),
            Self::DefaultConfiguration(n) => write!(
                f,
                "the MP table names default configuration {n}, which is not supported"
            ),
            Self::BadTable { phys, reason } => {
                write!(f, "MP configuration table at {phys:#x}: {reason}")
            }
            Self::BadEntry { index, entry_type } => write!(
                f,
                "MP configuration table entry {index}: unknown type {entry_type} or truncated"
            ),
            Self::NoProcessor => write!(f, "the MP table lists no enabled processor"),
            Self::Madt => write!(f, "the MADT made from the MP table was refused"),
        }
    }
}

/// Where the floating pointer structure is searched, in order.
fn search_areas<M: PhysMemory + ?Sized>(mem: &M) -> [(u64, u64); 3] {
    let ebda = match read_phys(mem, EBDA_POINTER, 2) {
        Ok(Some(b)) => u64::from(u16_at(b, 0)) << 4,
        _ => 0,
    };
    [
        (ebda, if ebda == 0 { 0 } else { 1024 }),
        (BASE_MEMORY_LAST_KIB, 1024),
        (ROM_START, BIOS_AREA_END - ROM_START),
    ]
}

/// The physical address of the configuration table named by a valid floating pointer
/// structure in the searched areas.
pub fn find_config_table<M: PhysMemory + ?Sized>(mem: &M) -> Result<u64, MpError> {
    for (start, len) in search_areas(mem) {
        let mut at = start;
        while at + FLOATING_LEN as u64 <= start + len {
            if let Ok(Some(b)) = read_phys(mem, at, FLOATING_LEN)
                && &b[..4] == b"_MP_"
                && u8_at(b, 8) == 1
                && byte_sum(b) == 0
            {
                let default = u8_at(b, 11);
                if default != 0 {
                    return Err(MpError::DefaultConfiguration(default));
                }
                let table = u64::from(u32_at(b, 4));
                if table == 0 {
                    return Err(MpError::DefaultConfiguration(0));
                }
                return Ok(table);
            }
            at += 16;
        }
    }
    Err(MpError::NotFound)
}

/// Reads the MP table and returns a one-node [`Platform`] built from it.
pub fn find_mp_platform<M: PhysMemory + ?Sized>(mem: &M) -> Result<Platform, MpError> {
    let phys = find_config_table(mem)?;
    let bad = |reason| MpError::BadTable { phys, reason };
    let header = read_phys(mem, phys, CONFIG_HEADER_LEN)
        .ok()
        .flatten()
        .ok_or(bad("header unreadable"))?;
    if &header[..4] != b"PCMP" {
        return Err(bad("signature is not PCMP"));
    }
    let len = usize::from(u16_at(header, 4));
    if len < CONFIG_HEADER_LEN {
        return Err(bad("base table shorter than its header"));
    }
    let table = read_phys(mem, phys, len)
        .ok()
        .flatten()
        .ok_or(bad("table unreadable"))?;
    platform_from_config(phys, table)
}

/// A one-node [`Platform`] from the bytes of an MP configuration table found at `phys`.
pub fn platform_from_config(phys: u64, table: &[u8]) -> Result<Platform, MpError> {
    let bad = |reason| MpError::BadTable { phys, reason };
    if table.len() < CONFIG_HEADER_LEN || &table[..4] != b"PCMP" {
        return Err(bad("signature is not PCMP or the table is too short"));
    }
    let len = usize::from(u16_at(table, 4));
    let table = table.get(..len).ok_or(bad("shorter than its length"))?;
    if len < CONFIG_HEADER_LEN {
        return Err(bad("base table shorter than its header"));
    }
    if byte_sum(table) != 0 {
        return Err(bad("bad checksum"));
    }
    let entries = usize::from(u16_at(table, 34));
    let lapic = u32_at(table, 36);

    let mut madt = MadtBuilder::new(lapic);
    let mut io_apic_ids = [0u8; MAX_IO_APICS];
    let mut io_apics = 0usize;
    let mut isa_bus = None;
    let mut overrides = [(0u8, 0u8, 0u16); MAX_OVERRIDES];
    let mut override_count = 0usize;
    let mut cpus = 0usize;
    let mut enabled_cpus = 0usize;
    let mut at = CONFIG_HEADER_LEN;
    for index in 0..entries {
        let entry_type = u8_at(table, at);
        let size = match entry_type {
            0 => 20,
            1..=4 => 8,
            _ => return Err(MpError::BadEntry { index, entry_type }),
        };
        let e = at
            .checked_add(size)
            .and_then(|end| table.get(at..end))
            .ok_or(MpError::BadEntry { index, entry_type })?;
        match entry_type {
            0 if cpus < MAX_MP_CPUS => {
                let enabled = u8_at(e, 3) & 1 != 0;
                madt.cpu(cpus as u8, u8_at(e, 1), enabled);
                cpus += 1;
                enabled_cpus += usize::from(enabled);
            }
            1 if &e[2..5] == b"ISA" => isa_bus = Some(u8_at(e, 1)),
            2 if u8_at(e, 3) & 1 != 0 && io_apics < MAX_IO_APICS => {
                let id = u8_at(e, 1);
                madt.io_apic(id, u32_at(e, 4), io_apics as u32 * PINS_PER_IO_APIC);
                io_apic_ids[io_apics] = id;
                io_apics += 1;
            }
            // A vectored interrupt (type 0) from a bus to an I/O APIC pin.
            3 if u8_at(e, 1) == 0 && override_count < MAX_OVERRIDES => {
                overrides[override_count] = (u8_at(e, 4), u8_at(e, 5), u16_at(e, 2));
                // Resolved below, once every I/O APIC is known.
                madt.pending_override(override_count, u8_at(e, 6), u8_at(e, 7));
                override_count += 1;
            }
            _ => {}
        }
        at += size;
    }
    if enabled_cpus == 0 {
        return Err(MpError::NoProcessor);
    }
    // ISA interrupts routed to a pin other than their own number (or with non-default flags)
    // become interrupt source overrides, as an ACPI MADT would list them.
    for (i, &(bus, irq, flags)) in overrides.iter().take(override_count).enumerate() {
        if Some(bus) != isa_bus {
            continue;
        }
        let (dest, pin) = madt.pending[i];
        let Some(apic) = io_apic_ids[..io_apics].iter().position(|&id| id == dest) else {
            continue;
        };
        let gsi = apic as u32 * PINS_PER_IO_APIC + u32::from(pin);
        if gsi != u32::from(irq) || flags != 0 {
            madt.interrupt_override(irq, gsi, flags);
        }
    }
    madt.finish()
}

/// Writes a MADT into a fixed buffer.
struct MadtBuilder {
    buf: [u8; 4096],
    len: usize,
    /// Destination (I/O APIC id, pin) of each pending override, by index.
    pending: [(u8, u8); MAX_OVERRIDES],
}

impl MadtBuilder {
    fn new(local_apic: u32) -> Self {
        let mut b = Self {
            buf: [0; 4096],
            len: 44,
            pending: [(0, 0); MAX_OVERRIDES],
        };
        b.buf[..4].copy_from_slice(b"APIC");
        b.buf[8] = 3; // revision
        b.buf[10..16].copy_from_slice(b"VRDNMP");
        b.buf[16..24].copy_from_slice(b"MPTABLE ");
        b.buf[36..40].copy_from_slice(&local_apic.to_le_bytes());
        b.buf[40..44].copy_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT: 8259s present
        b
    }

    fn push(&mut self, entry: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.len..self.len + entry.len()) {
            dst.copy_from_slice(entry);
            self.len += entry.len();
        }
    }

    fn cpu(&mut self, uid: u8, apic_id: u8, enabled: bool) {
        self.push(&[0, 8, uid, apic_id, u8::from(enabled), 0, 0, 0]);
    }

    fn io_apic(&mut self, id: u8, address: u32, gsi_base: u32) {
        let a = address.to_le_bytes();
        let g = gsi_base.to_le_bytes();
        self.push(&[1, 12, id, 0, a[0], a[1], a[2], a[3], g[0], g[1], g[2], g[3]]);
    }

    fn pending_override(&mut self, index: usize, dest: u8, pin: u8) {
        if let Some(p) = self.pending.get_mut(index) {
            *p = (dest, pin);
        }
    }

    fn interrupt_override(&mut self, irq: u8, gsi: u32, flags: u16) {
        let g = gsi.to_le_bytes();
        let f = flags.to_le_bytes();
        self.push(&[2, 10, 0, irq, g[0], g[1], g[2], g[3], f[0], f[1]]);
    }

    /// Sets the length and checksum and parses the result with the kernel's MADT parser.
    fn finish(mut self) -> Result<Platform, MpError> {
        let len = self.len as u32;
        self.buf[4..8].copy_from_slice(&len.to_le_bytes());
        self.buf[9] = 0;
        self.buf[9] = 0u8.wrapping_sub(byte_sum(&self.buf[..self.len]));
        let sdt = Sdt::from_bytes(0, &self.buf[..self.len], None).map_err(|_| MpError::Madt)?;
        let madt = Madt::parse(&sdt).map_err(|_| MpError::Madt)?;
        Ok(Platform::new(madt, Ok(None), Ok(None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Physical memory: one byte vector from address 0.
    struct Mem(Vec<u8>);

    impl PhysMemory for Mem {
        fn read(&self, phys: u64, len: usize) -> Option<&[u8]> {
            let start = usize::try_from(phys).ok()?;
            self.0.get(start..start.checked_add(len)?)
        }
    }

    /// An MP table as QEMU's SeaBIOS writes one: `cpus` processors (the second disabled when
    /// `disable_second`), an ISA bus, one I/O APIC, ISA IRQ 0 on pin 2 and IRQ 4 on pin 4.
    fn machine(cpus: u8, disable_second: bool) -> Mem {
        let mut mem = Mem(std::vec![0u8; 0x10_0000]);
        let table_at = 0x9_FC00 + 0x40;
        let mut t = Vec::new();
        t.extend_from_slice(b"PCMP");
        t.extend_from_slice(&[0, 0, 4, 0]); // length (below), revision, checksum
        t.extend_from_slice(b"BOCHSCPU");
        t.extend_from_slice(b"0.1         ");
        t.extend_from_slice(&[0; 6]); // OEM table pointer and size
        let count = u16::from(cpus) + 4;
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
        t.extend_from_slice(&[0; 4]);
        for i in 0..cpus {
            let enabled = !(disable_second && i == 1);
            let mut e = [0u8; 20];
            e[1] = i;
            e[2] = 0x14;
            e[3] = u8::from(enabled) | if i == 0 { 2 } else { 0 };
            t.extend_from_slice(&e);
        }
        t.extend_from_slice(&[1, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
        t.extend_from_slice(&[2, cpus, 0x11, 1, 0x00, 0x00, 0xc0, 0xfe]);
        t.extend_from_slice(&[3, 0, 0, 0, 0, 0, cpus, 2]);
        t.extend_from_slice(&[3, 0, 0, 0, 0, 4, cpus, 4]);
        let len = t.len() as u16;
        t[4..6].copy_from_slice(&len.to_le_bytes());
        t[7] = 0u8.wrapping_sub(byte_sum(&t));
        mem.0[table_at..table_at + t.len()].copy_from_slice(&t);
        let fp_at = 0xF_5A00;
        let mut fp = [0u8; 16];
        fp[..4].copy_from_slice(b"_MP_");
        fp[4..8].copy_from_slice(&(table_at as u32).to_le_bytes());
        fp[8] = 1;
        fp[9] = 4;
        fp[10] = 0u8.wrapping_sub(byte_sum(&fp));
        mem.0[fp_at..fp_at + 16].copy_from_slice(&fp);
        mem
    }

    #[test]
    fn qemu_like_table_gives_cpus_io_apic_and_overrides() {
        let p = find_mp_platform(&machine(4, false)).unwrap();
        assert_eq!(p.enabled_cpu_count(), 4);
        let ids: Vec<u32> = p.enabled_cpus().map(|c| c.apic_id).collect();
        assert_eq!(ids, [0, 1, 2, 3]);
        assert_eq!(p.node_count(), 1);
        let madt = p.madt();
        assert_eq!(madt.local_apic_address(), 0xfee0_0000);
        assert_eq!(madt.io_apics().len(), 1);
        assert_eq!(madt.io_apics()[0].id, 4);
        assert_eq!(madt.io_apics()[0].address, 0xfec0_0000);
        // IRQ 0 on pin 2 is an override; IRQ 4 on pin 4 is the default.
        let overrides: Vec<(u8, u32)> = madt
            .interrupt_overrides()
            .iter()
            .map(|o| (o.source, o.gsi))
            .collect();
        assert_eq!(overrides, [(0, 2)]);
    }

    #[test]
    fn disabled_processors_are_kept_disabled() {
        let p = find_mp_platform(&machine(3, true)).unwrap();
        assert_eq!(p.enabled_cpu_count(), 2);
    }

    #[test]
    fn malformed_tables_are_refused_by_name() {
        assert_eq!(
            find_mp_platform(&Mem(std::vec![0u8; 0x10_0000])).unwrap_err(),
            MpError::NotFound
        );
        // A bad checksum in the configuration table.
        let mut m = machine(2, false);
        m.0[0x9_FC00 + 0x40 + 60] ^= 0xff;
        assert!(matches!(
            find_mp_platform(&m).unwrap_err(),
            MpError::BadTable {
                reason: "bad checksum",
                ..
            }
        ));
        // An unknown entry type.
        let mut m = machine(2, false);
        let at = 0x9_FC00 + 0x40;
        m.0[at + 44] = 9;
        m.0[at + 7] = m.0[at + 7].wrapping_sub(9);
        assert!(matches!(
            find_mp_platform(&m).unwrap_err(),
            MpError::BadEntry {
                index: 0,
                entry_type: 9
            }
        ));
        // No enabled processor.
        let mut m = machine(1, false);
        m.0[at + 44 + 3] = 0;
        m.0[at + 7] = m.0[at + 7].wrapping_add(3);
        assert_eq!(find_mp_platform(&m).unwrap_err(), MpError::NoProcessor);
        // A default configuration.
        let mut m = machine(2, false);
        let fp = 0xF_5A00;
        m.0[fp + 11] = 5;
        m.0[fp + 10] = m.0[fp + 10].wrapping_sub(5);
        assert_eq!(
            find_mp_platform(&m).unwrap_err(),
            MpError::DefaultConfiguration(5)
        );
        for e in [
            MpError::NotFound,
            MpError::DefaultConfiguration(1),
            MpError::BadTable {
                phys: 1,
                reason: "x",
            },
            MpError::BadEntry {
                index: 1,
                entry_type: 9,
            },
            MpError::NoProcessor,
            MpError::Madt,
        ] {
            assert!(!std::format!("{e}").contains('\n'));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for round in 0..200 {
            let mut m = machine(4, false);
            let at = 0x9_FC00 + 0x40;
            for _ in 0..(round % 16 + 1) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = at + (seed as usize % 140);
                m.0[i] = (seed >> 32) as u8;
            }
            let _ = find_mp_platform(&m);
        }
    }
}
