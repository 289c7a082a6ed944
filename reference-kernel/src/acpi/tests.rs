//! Host tests for the ACPI parsers: synthetic tables from a small builder, the tables QEMU
//! 7.2 (SeaBIOS) really builds, rejection cases, and property tests that no input panics.
//!
//! The `testdata/*.tables` files are the RSDT and the tables it lists, copied byte for byte
//! from guest memory (`pmemsave` in the QEMU monitor after SeaBIOS had installed them);
//! `*.rsdp` are the 20-byte RSDPs. Machines:
//!
//! * `qemu_pc_numa` / `qemu_q35_numa`: `-machine pc|q35 -m 1G -smp 4
//!   -object memory-backend-ram,id=m0,size=512M -object memory-backend-ram,id=m1,size=512M
//!   -numa node,cpus=0-1,nodeid=0,memdev=m0 -numa node,cpus=2-3,nodeid=1,memdev=m1
//!   -numa dist,src=0,dst=1,val=20`
//! * `qemu_pc_smp1`: `-machine pc -m 256M -smp 1` (no SRAT, no SLIT).

use std::string::ToString;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::madt::{MADT_ENTRIES_OFFSET, Polarity, TriggerMode};
use super::mcfg::MAX_ECAM_REGIONS;
use super::rsdp::{BIOS_AREA_START, EBDA_POINTER};
use super::*;

// ---- fake physical memory -------------------------------------------------------------------

/// Physical memory made of separate readable chunks; everything else is unreadable.
#[derive(Clone, Debug, Default)]
struct Mem {
    chunks: Vec<(u64, Vec<u8>)>,
}

impl Mem {
    fn map(&mut self, base: u64, bytes: Vec<u8>) {
        self.chunks.push((base, bytes));
    }

    fn write(&mut self, phys: u64, data: &[u8]) {
        for (base, bytes) in &mut self.chunks {
            if phys >= *base && phys + data.len() as u64 <= *base + bytes.len() as u64 {
                let off = (phys - *base) as usize;
                bytes[off..off + data.len()].copy_from_slice(data);
                return;
            }
        }
        panic!("write outside the fake memory at {phys:#x}");
    }

    /// Adds 1 to the byte at `phys`.
    fn bump(&mut self, phys: u64) {
        let b = self.read(phys, 1).unwrap()[0];
        self.write(phys, &[b.wrapping_add(1)]);
    }

    fn chunk_mut(&mut self, base: u64) -> &mut Vec<u8> {
        &mut self.chunks.iter_mut().find(|(b, _)| *b == base).unwrap().1
    }
}

impl PhysMemory for Mem {
    fn read(&self, phys: u64, len: usize) -> Option<&[u8]> {
        self.chunks.iter().find_map(|(base, bytes)| {
            let off = usize::try_from(phys.checked_sub(*base)?).ok()?;
            bytes.get(off..off.checked_add(len)?)
        })
    }
}

// ---- table builders -------------------------------------------------------------------------

fn fix_checksum(table: &mut [u8]) {
    if table.len() > 9 {
        table[9] = 0;
        table[9] = 0u8.wrapping_sub(byte_sum(table));
    }
}

/// A table with a valid header (length and checksum set) around `body`.
fn table(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(sig);
    t.extend_from_slice(&(36 + body.len() as u32).to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(b"VERIDN");
    t.extend_from_slice(b"TESTTABL");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"VRDN");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    fix_checksum(&mut t);
    t
}

struct MadtBuilder {
    lapic: u32,
    flags: u32,
    entries: Vec<u8>,
}

impl MadtBuilder {
    fn new() -> Self {
        Self {
            lapic: 0xFEE0_0000,
            flags: 1,
            entries: Vec::new(),
        }
    }

    fn raw(mut self, bytes: &[u8]) -> Self {
        self.entries.extend_from_slice(bytes);
        self
    }

    fn lapic(self, uid: u8, id: u8, flags: u32) -> Self {
        let mut e = vec![0, 8, uid, id];
        e.extend_from_slice(&flags.to_le_bytes());
        self.raw(&e)
    }

    fn ioapic(self, id: u8, address: u32, gsi_base: u32) -> Self {
        let mut e = vec![1, 12, id, 0];
        e.extend_from_slice(&address.to_le_bytes());
        e.extend_from_slice(&gsi_base.to_le_bytes());
        self.raw(&e)
    }

    fn iso(self, source: u8, gsi: u32, flags: u16) -> Self {
        let mut e = vec![2, 10, 0, source];
        e.extend_from_slice(&gsi.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        self.raw(&e)
    }

    fn nmi(self, uid: u8, flags: u16, lint: u8) -> Self {
        let mut e = vec![4, 6, uid];
        e.extend_from_slice(&flags.to_le_bytes());
        e.push(lint);
        self.raw(&e)
    }

    fn lapic_override(self, address: u64) -> Self {
        let mut e = vec![5, 12, 0, 0];
        e.extend_from_slice(&address.to_le_bytes());
        self.raw(&e)
    }

    fn x2apic(self, id: u32, flags: u32, uid: u32) -> Self {
        let mut e = vec![9, 16, 0, 0];
        for v in [id, flags, uid] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        self.raw(&e)
    }

    fn x2nmi(self, flags: u16, uid: u32, lint: u8) -> Self {
        let mut e = vec![0xA, 12];
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(&uid.to_le_bytes());
        e.extend_from_slice(&[lint, 0, 0, 0]);
        self.raw(&e)
    }

    /// What QEMU's `pc` machine emits for `cpus` CPUs.
    fn qemu(cpus: u8) -> Self {
        let mut b = Self::new();
        for i in 0..cpus {
            b = b.lapic(i, i, 1);
        }
        b.ioapic(0, 0xFEC0_0000, 0)
            .iso(0, 2, 0)
            .iso(5, 5, 0xD)
            .iso(9, 9, 0xD)
            .iso(10, 10, 0xD)
            .iso(11, 11, 0xD)
            .nmi(0xFF, 0, 1)
    }

    fn build(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.lapic.to_le_bytes());
        body.extend_from_slice(&self.flags.to_le_bytes());
        body.extend_from_slice(&self.entries);
        table(b"APIC", 4, &body)
    }
}

struct SratBuilder {
    revision: u8,
    entries: Vec<u8>,
}

const ENABLED: u32 = 1;
const HOTPLUG: u32 = 2;
const NONVOLATILE: u32 = 4;

impl SratBuilder {
    fn new() -> Self {
        Self {
            revision: 3,
            entries: Vec::new(),
        }
    }

    fn raw(mut self, bytes: &[u8]) -> Self {
        self.entries.extend_from_slice(bytes);
        self
    }

    fn cpu(self, domain: u32, apic_id: u8, flags: u32) -> Self {
        let d = domain.to_le_bytes();
        let mut e = vec![0, 16, d[0], apic_id];
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(&[0, d[1], d[2], d[3]]);
        e.extend_from_slice(&0u32.to_le_bytes());
        self.raw(&e)
    }

    fn x2apic(self, domain: u32, id: u32, flags: u32) -> Self {
        let mut e = vec![2, 24, 0, 0];
        for v in [domain, id, flags, 0, 0] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        self.raw(&e)
    }

    fn mem(self, domain: u32, base: u64, length: u64, flags: u32) -> Self {
        let mut e = vec![1, 40];
        e.extend_from_slice(&domain.to_le_bytes());
        e.extend_from_slice(&[0, 0]);
        e.extend_from_slice(&base.to_le_bytes());
        e.extend_from_slice(&length.to_le_bytes());
        e.extend_from_slice(&0u32.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(&0u64.to_le_bytes());
        self.raw(&e)
    }

    /// QEMU's layout for 4 CPUs on 2 nodes with 512 MiB each.
    fn qemu_two_nodes() -> Self {
        Self::new()
            .cpu(0, 0, ENABLED)
            .cpu(0, 1, ENABLED)
            .cpu(1, 2, ENABLED)
            .cpu(1, 3, ENABLED)
            .mem(0, 0, 0xA_0000, ENABLED)
            .mem(0, 0x10_0000, 0x1FF0_0000, ENABLED)
            .mem(1, 0x2000_0000, 0x2000_0000, ENABLED)
            .mem(0, 0, 0, 0)
    }

    fn build(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&self.entries);
        table(b"SRAT", self.revision, &body)
    }
}

fn slit(count: u64, matrix: &[u8]) -> Vec<u8> {
    let mut body = count.to_le_bytes().to_vec();
    body.extend_from_slice(matrix);
    table(b"SLIT", 1, &body)
}

fn rsdp_v1(rsdt: u32) -> Vec<u8> {
    let mut r = b"RSD PTR ".to_vec();
    r.push(0);
    r.extend_from_slice(b"VERIDN");
    r.push(0);
    r.extend_from_slice(&rsdt.to_le_bytes());
    r[8] = 0u8.wrapping_sub(byte_sum(&r));
    r
}

fn rsdp_v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut r = rsdp_v1(rsdt);
    r[15] = 2;
    r[8] = 0;
    r[8] = 0u8.wrapping_sub(byte_sum(&r));
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&xsdt.to_le_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r[32] = 0u8.wrapping_sub(byte_sum(&r));
    r
}

fn rsdt(entries: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = entries
        .iter()
        .flat_map(|&e| (e as u32).to_le_bytes())
        .collect();
    table(b"RSDT", 1, &body)
}

fn xsdt(entries: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|&e| e.to_le_bytes()).collect();
    table(b"XSDT", 1, &body)
}

const TABLES_BASE: u64 = 0x7FE_0000;
const RSDP_ADDR: u64 = 0xF_5A00;
const EBDA: u64 = 0x9_FC00;

/// Low memory as SeaBIOS leaves it: the BDA with the EBDA segment at 0x40E, an empty EBDA
/// and the BIOS area 0xE0000..0x100000.
fn low_memory() -> Mem {
    let mut mem = Mem::default();
    let mut bda = vec![0; 0x1000];
    bda[EBDA_POINTER as usize..EBDA_POINTER as usize + 2]
        .copy_from_slice(&((EBDA >> 4) as u16).to_le_bytes());
    mem.map(0, bda);
    mem.map(EBDA, vec![0; 0x400]);
    mem.map(BIOS_AREA_START, vec![0; 0x2_0000]);
    mem
}

/// A machine with `tables` at [`TABLES_BASE`] (16-byte aligned), the RSDT after them,
/// and with `v2` also an XSDT and a revision-2 RSDP. Returns the memory and the table
/// addresses (the root tables last).
fn machine(tables: &[Vec<u8>], v2: bool) -> (Mem, Vec<u64>) {
    let mut mem = low_memory();
    let mut region = Vec::new();
    let mut addrs = Vec::new();
    for t in tables {
        addrs.push(TABLES_BASE + region.len() as u64);
        region.extend_from_slice(t);
        region.resize(region.len().next_multiple_of(16), 0);
    }
    let rsdt_addr = TABLES_BASE + region.len() as u64;
    let entries = addrs.clone();
    region.extend_from_slice(&rsdt(&entries));
    region.resize(region.len().next_multiple_of(16), 0);
    addrs.push(rsdt_addr);
    let rsdp = if v2 {
        let xsdt_addr = TABLES_BASE + region.len() as u64;
        region.extend_from_slice(&xsdt(&entries));
        addrs.push(xsdt_addr);
        rsdp_v2(rsdt_addr as u32, xsdt_addr)
    } else {
        rsdp_v1(rsdt_addr as u32)
    };
    mem.map(TABLES_BASE, region);
    mem.write(RSDP_ADDR, &rsdp);
    (mem, addrs)
}

fn qemu_numa_tables() -> Vec<Vec<u8>> {
    vec![
        MadtBuilder::qemu(4).build(),
        SratBuilder::qemu_two_nodes().build(),
        slit(2, &[10, 20, 20, 10]),
    ]
}

// ---- QEMU's own tables ----------------------------------------------------------------------

#[derive(Clone, Copy)]
struct QemuDump {
    rsdp: &'static [u8],
    rsdp_addr: u64,
    tables: &'static [u8],
    tables_addr: u64,
}

const QEMU_PC_NUMA: QemuDump = QemuDump {
    rsdp: include_bytes!("testdata/qemu_pc_numa.rsdp"),
    rsdp_addr: 0xF_59D0,
    tables: include_bytes!("testdata/qemu_pc_numa.tables"),
    tables_addr: 0x3FFE_1A6F,
};

const QEMU_Q35_NUMA: QemuDump = QemuDump {
    rsdp: include_bytes!("testdata/qemu_q35_numa.rsdp"),
    rsdp_addr: 0xF_59E0,
    tables: include_bytes!("testdata/qemu_q35_numa.tables"),
    tables_addr: 0x3FFE_21AB,
};

const QEMU_PC_SMP1: QemuDump = QemuDump {
    rsdp: include_bytes!("testdata/qemu_pc_smp1.rsdp"),
    rsdp_addr: 0xF_59D0,
    tables: include_bytes!("testdata/qemu_pc_smp1.tables"),
    tables_addr: 0xFFE_1958,
};

impl QemuDump {
    fn memory(&self) -> Mem {
        let mut mem = low_memory();
        mem.write(self.rsdp_addr, self.rsdp);
        mem.map(self.tables_addr, self.tables.to_vec());
        mem
    }
}

/// The checks "the kernel sees 4 CPUs and 2 nodes with QEMU's distances" relies on.
fn check_qemu_two_nodes(p: &Platform) {
    assert_eq!(p.numa_fallback(), None);
    assert_eq!(p.enabled_cpu_count(), 4);
    assert_eq!(p.node_count(), 2);
    let cpus: Vec<(u32, usize)> = p.enabled_cpus().map(|c| (c.apic_id, c.node)).collect();
    assert_eq!(cpus, [(0, 0), (1, 0), (2, 1), (3, 1)]);
    assert_eq!(p.cpus_on_node(0), 2);
    assert_eq!(p.cpus_on_node(1), 2);
    assert_eq!(p.distance(0, 0), Some(10));
    assert_eq!(p.distance(0, 1), Some(20));
    assert_eq!(p.distance(1, 0), Some(20));
    assert_eq!(p.distance(1, 1), Some(10));
    assert_eq!(p.distance(2, 0), None);
    assert_eq!(p.numa().distance_source(), DistanceSource::Slit);
    assert!(p.numa().distances_symmetric());
    assert_eq!(p.numa().cpus_without_affinity(), 0);
    let ranges: Vec<(usize, u64, u64)> = p
        .memory_ranges()
        .iter()
        .map(|m| (m.node, m.base, m.length))
        .collect();
    assert_eq!(
        ranges,
        [
            (0, 0, 0xA_0000),
            (0, 0x10_0000, 0x1FF0_0000),
            (1, 0x2000_0000, 0x2000_0000),
        ]
    );
    assert_eq!(p.node_memory_bytes(0), 0x2000_0000 - 0x6_0000);
    assert_eq!(p.node_memory_bytes(1), 0x2000_0000);
    assert_eq!(p.node_of_address(0x3000_0000), Some(1));
    assert_eq!(p.node_of_address(0xB_0000), None);
    assert_eq!(p.madt().local_apic_address(), 0xFEE0_0000);
    assert_eq!(
        p.madt().io_apics(),
        [IoApic {
            id: 0,
            address: 0xFEC0_0000,
            gsi_base: 0
        }]
    );
    assert_eq!(p.madt().isa_irq_to_gsi(0), (2, 0));
    assert_eq!(p.madt().isa_irq_to_gsi(4), (4, 0));
    assert_eq!(p.to_string(), "4 CPUs, 2 NUMA nodes");
}

#[test]
fn qemu_pc_numa_tables_give_4_cpus_on_2_nodes() {
    let mem = QEMU_PC_NUMA.memory();
    let rsdp = find_rsdp(&mem).unwrap();
    assert_eq!(rsdp.phys(), QEMU_PC_NUMA.rsdp_addr);
    assert_eq!(rsdp.revision(), 0);
    assert_eq!(&rsdp.oem_id(), b"BOCHS ");
    let tables = AcpiTables::from_rsdp(&mem, rsdp).unwrap();
    assert!(!tables.uses_xsdt());
    assert_eq!(tables.entries().count(), 6);
    let hpet = tables.find(Signature::HPET).unwrap().unwrap();
    assert_eq!(hpet.length(), 56);
    assert!(tables.find(Signature::MCFG).unwrap().is_none());
    assert!(tables.mcfg().unwrap().is_none());
    let p = Platform::from_tables(&tables).unwrap();
    check_qemu_two_nodes(&p);
    assert!(p.madt().pcat_compat());
    let nmi = p.madt().local_apic_nmis();
    assert_eq!(
        nmi,
        [LocalApicNmi {
            acpi_uid: None,
            flags: 0,
            lint: 1
        }]
    );
    let iso9 = p.madt().interrupt_overrides()[2];
    assert_eq!((iso9.source, iso9.gsi), (9, 9));
    assert_eq!(iso9.polarity(), Polarity::ActiveHigh);
    assert_eq!(iso9.trigger_mode(), TriggerMode::Level);
}

#[test]
fn qemu_q35_numa_tables_give_4_cpus_on_2_nodes() {
    let mem = QEMU_Q35_NUMA.memory();
    let p = Platform::from_rsdp(&mem, QEMU_Q35_NUMA.rsdp_addr).unwrap();
    check_qemu_two_nodes(&p);
    let tables = AcpiTables::new(&mem, find_rsdp(&mem).unwrap().phys()).unwrap();
    let mcfg = tables.mcfg().unwrap().unwrap();
    assert_eq!(
        mcfg.regions(),
        [EcamRegion {
            base: 0xb000_0000,
            segment: 0,
            first_bus: 0,
            last_bus: 255
        }]
    );
    assert_eq!(mcfg.regions()[0].phys_range(), (0xb000_0000, 0xc000_0000));
    assert_eq!(
        mcfg.region_for(0, 0).unwrap().config_address(0, 3, 0),
        Some(0xb000_0000 + (3 << 15))
    );
    assert!(mcfg.region_for(1, 0).is_none());
    let srat = tables.srat().unwrap().unwrap();
    assert_eq!(srat.revision(), 1);
}

#[test]
fn qemu_smp1_without_numa_falls_back_to_one_node() {
    let mem = QEMU_PC_SMP1.memory();
    let p = Platform::from_rsdp(&mem, find_rsdp(&mem).unwrap().phys()).unwrap();
    assert_eq!(p.enabled_cpu_count(), 1);
    assert_eq!(p.node_count(), 1);
    assert_eq!(
        p.numa_fallback(),
        Some(&AcpiError::TableMissing {
            sig: Signature::SRAT
        })
    );
    assert_eq!(p.numa_fallback().unwrap().to_string(), "no ACPI SRAT table");
    assert_eq!(p.distance(0, 0), Some(10));
    assert_eq!(p.node_of_address(0x1234_5678), Some(0));
    assert!(p.memory_ranges().is_empty());
    assert_eq!(p.to_string(), "1 CPU, 1 NUMA node");
}

#[test]
fn qemu_tables_all_have_valid_checksums() {
    for dump in [QEMU_PC_NUMA, QEMU_Q35_NUMA, QEMU_PC_SMP1] {
        let mem = dump.memory();
        let tables = AcpiTables::new(&mem, dump.rsdp_addr).unwrap();
        for phys in tables.entries() {
            Sdt::read(&mem, phys, None).unwrap();
        }
    }
}

// ---- synthetic machines ---------------------------------------------------------------------

#[test]
fn synthetic_qemu_layout_with_rsdt() {
    let (mem, _) = machine(&qemu_numa_tables(), false);
    let p = Platform::from_rsdp(&mem, RSDP_ADDR).unwrap();
    check_qemu_two_nodes(&p);
}

#[test]
fn synthetic_qemu_layout_with_xsdt() {
    let (mem, _) = machine(&qemu_numa_tables(), true);
    let tables = AcpiTables::new(&mem, RSDP_ADDR).unwrap();
    assert!(tables.uses_xsdt());
    assert_eq!(tables.rsdp().revision(), 2);
    assert_eq!(tables.rsdp().length(), 36);
    assert!(tables.xsdt_error().is_none());
    check_qemu_two_nodes(&Platform::from_tables(&tables).unwrap());
}

#[test]
fn bad_xsdt_falls_back_to_rsdt() {
    let (mut mem, addrs) = machine(&qemu_numa_tables(), true);
    let xsdt_addr = *addrs.last().unwrap();
    mem.bump(xsdt_addr + 9); // break its checksum
    let tables = AcpiTables::new(&mem, RSDP_ADDR).unwrap();
    assert!(!tables.uses_xsdt());
    assert!(matches!(
        tables.xsdt_error(),
        Some(AcpiError::TableBadChecksum { sig, .. }) if *sig == Signature::XSDT
    ));
    check_qemu_two_nodes(&Platform::from_tables(&tables).unwrap());
}

#[test]
fn xsdt_only_rsdp_and_missing_root() {
    let (mut mem, addrs) = machine(&qemu_numa_tables(), true);
    let xsdt_addr = *addrs.last().unwrap();
    mem.write(RSDP_ADDR, &rsdp_v2(0, xsdt_addr));
    let tables = AcpiTables::new(&mem, RSDP_ADDR).unwrap();
    assert!(tables.uses_xsdt());
    mem.bump(xsdt_addr + 9);
    assert!(matches!(
        AcpiTables::new(&mem, RSDP_ADDR).unwrap_err(),
        AcpiError::TableBadChecksum { .. }
    ));
    mem.write(RSDP_ADDR, &rsdp_v2(0, 0));
    assert_eq!(
        AcpiTables::new(&mem, RSDP_ADDR).unwrap_err(),
        AcpiError::NoRootTable { revision: 2 }
    );
}

#[test]
fn find_skips_zero_and_unreadable_entries() {
    let madt = MadtBuilder::qemu(2).build();
    let mut mem = low_memory();
    mem.map(TABLES_BASE, madt);
    let root = rsdt(&[0, 0xDEAD_0000, TABLES_BASE]);
    mem.map(0x100_0000, root);
    mem.write(RSDP_ADDR, &rsdp_v1(0x100_0000));
    let tables = AcpiTables::new(&mem, RSDP_ADDR).unwrap();
    assert_eq!(
        tables.entries().collect::<Vec<_>>(),
        [0, 0xDEAD_0000, TABLES_BASE]
    );
    assert_eq!(tables.madt().unwrap().enabled_cpu_count(), 2);
    assert!(tables.srat().unwrap().is_none());
    assert!(tables.slit().unwrap().is_none());
    let p = Platform::from_tables(&tables).unwrap();
    assert_eq!(p.to_string(), "2 CPUs, 1 NUMA node");
}

#[test]
fn missing_madt_is_an_error() {
    let (mem, _) = machine(&[SratBuilder::qemu_two_nodes().build()], false);
    let err = Platform::from_rsdp(&mem, RSDP_ADDR).unwrap_err();
    assert_eq!(
        err,
        AcpiError::TableMissing {
            sig: Signature::MADT
        }
    );
    assert_eq!(err.to_string(), "no ACPI APIC table");
}

#[test]
fn root_table_with_partial_trailing_entry() {
    let mut body = TABLES_BASE.to_le_bytes()[..4].to_vec();
    body.extend_from_slice(&[1, 2]); // half an entry: ignored
    let root = table(b"RSDT", 1, &body);
    let mut mem = low_memory();
    mem.map(TABLES_BASE, MadtBuilder::qemu(1).build());
    mem.map(0x100_0000, root);
    mem.write(RSDP_ADDR, &rsdp_v1(0x100_0000));
    let tables = AcpiTables::new(&mem, RSDP_ADDR).unwrap();
    assert_eq!(tables.entries().collect::<Vec<_>>(), [TABLES_BASE]);
}

// ---- RSDP -----------------------------------------------------------------------------------

#[test]
fn rsdp_v1_and_v2_parse() {
    let r = Rsdp::from_bytes(0x1000, &rsdp_v1(0x1234_5678)).unwrap();
    assert_eq!(r.revision(), 0);
    assert_eq!(r.rsdt_address(), 0x1234_5678);
    assert_eq!(r.xsdt_address(), None);
    assert_eq!(r.length(), 20);
    let r = Rsdp::from_bytes(0x1000, &rsdp_v2(0x1234_5678, 0x1_0000_0000)).unwrap();
    assert_eq!(r.revision(), 2);
    assert_eq!(r.xsdt_address(), Some(0x1_0000_0000));
    assert_eq!(r.length(), 36);
    let r = Rsdp::from_bytes(0x1000, &rsdp_v2(0x1234_5678, 0)).unwrap();
    assert_eq!(r.xsdt_address(), None);
}

#[test]
fn rsdp_rejections() {
    let mut bad_sig = rsdp_v1(0x1000);
    bad_sig[3] = b'X';
    assert_eq!(
        Rsdp::from_bytes(0x10, &bad_sig),
        Err(AcpiError::RsdpBadSignature { phys: 0x10 })
    );

    let mut bad_sum = rsdp_v1(0x1000);
    bad_sum[16] ^= 1;
    let err = Rsdp::from_bytes(0x10, &bad_sum).unwrap_err();
    assert!(matches!(err, AcpiError::RsdpBadChecksum { phys: 0x10, .. }));
    assert!(err.to_string().contains("bad checksum"), "{err}");

    let mut bad_ext = rsdp_v2(0x1000, 0x2000);
    bad_ext[24] ^= 1; // XSDT address: covered only by the extended checksum
    let err = Rsdp::from_bytes(0x10, &bad_ext).unwrap_err();
    assert!(matches!(err, AcpiError::RsdpBadExtendedChecksum { .. }));
    assert!(err.to_string().contains("extended checksum"), "{err}");

    let mut bad_len = rsdp_v2(0x1000, 0x2000);
    bad_len[20] = 20;
    assert!(matches!(
        Rsdp::from_bytes(0x10, &bad_len),
        Err(AcpiError::RsdpBadLength { length: 20, .. })
    ));

    assert!(matches!(
        Rsdp::from_bytes(0x10, &rsdp_v2(0x1000, 0x2000)[..30]),
        Err(AcpiError::RsdpUnreadable { .. })
    ));

    let mut mem = low_memory();
    mem.write(RSDP_ADDR, &bad_sum);
    assert!(matches!(
        Rsdp::read(&mem, RSDP_ADDR),
        Err(AcpiError::RsdpBadChecksum { .. })
    ));
    assert!(matches!(
        Rsdp::read(&mem, 0x5000_0000),
        Err(AcpiError::RsdpUnreadable { .. })
    ));
    assert!(matches!(
        Rsdp::read(&mem, u64::MAX - 4),
        Err(AcpiError::RangeOverflow { .. })
    ));
    // Only the 20-byte part of a revision-2 RSDP is readable.
    let v1_part = rsdp_v2(0x1000, 0x2000);
    let mut probe = low_memory();
    probe.map(0x20_0000, v1_part[..20].to_vec());
    assert!(matches!(
        Rsdp::read(&probe, 0x20_0000),
        Err(AcpiError::RsdpUnreadable { len: 36, .. })
    ));
}

#[test]
fn rsdp_scan_finds_ebda_first_then_bios_area() {
    let mut mem = low_memory();
    assert_eq!(
        find_rsdp(&mem),
        Err(AcpiError::RsdpNotFound { rejected: 0 })
    );
    mem.write(0xE_0010, &rsdp_v1(0x2222));
    assert_eq!(find_rsdp(&mem).unwrap().phys(), 0xE_0010);
    mem.write(EBDA + 0x100, &rsdp_v2(0x3333, 0x4444));
    let r = find_rsdp(&mem).unwrap();
    assert_eq!((r.phys(), r.rsdt_address()), (EBDA + 0x100, 0x3333));
}

#[test]
fn rsdp_scan_skips_bad_candidates_and_unaligned_ones() {
    let mut mem = low_memory();
    let mut bad = rsdp_v1(0x1111);
    bad[8] ^= 0xFF;
    mem.write(0xE_0000, &bad);
    mem.write(0xE_0028, &rsdp_v1(0x2222)); // not 16-byte aligned: ignored
    mem.write(0xF_FFF0, b"RSD PTR "); // cut off by the end of the area
    assert_eq!(
        find_rsdp(&mem),
        Err(AcpiError::RsdpNotFound { rejected: 2 })
    );
    mem.write(0xF_0000, &rsdp_v1(0x3333));
    assert_eq!(find_rsdp(&mem).unwrap().rsdt_address(), 0x3333);
}

#[test]
fn rsdp_scan_without_ebda_pointer() {
    let mut mem = Mem::default();
    mem.map(BIOS_AREA_START, vec![0; 0x2_0000]);
    mem.write(0xF_5A00, &rsdp_v1(0x1000));
    assert_eq!(find_rsdp(&mem).unwrap().phys(), 0xF_5A00);
    assert_eq!(scan_for_rsdp(&mem, 0xF_5A01, 0x10), Err(0));
    assert_eq!(scan_for_rsdp(&mem, u64::MAX - 3, 0x10), Err(0));
}

// ---- SDT ------------------------------------------------------------------------------------

#[test]
fn sdt_header_fields() {
    let t = MadtBuilder::qemu(1).build();
    let sdt = Sdt::from_bytes(0x1000, &t, Some(Signature::MADT)).unwrap();
    assert_eq!(sdt.signature(), Signature::MADT);
    assert_eq!(sdt.length() as usize, t.len());
    assert_eq!(sdt.revision(), 4);
    assert_eq!(&sdt.oem_id(), b"VERIDN");
    assert_eq!(&sdt.oem_table_id(), b"TESTTABL");
    assert_eq!(sdt.oem_revision(), 1);
    assert_eq!(sdt.creator_id(), u32::from_le_bytes(*b"VRDN"));
    assert_eq!(sdt.creator_revision(), 1);
    assert_eq!(sdt.body().len(), t.len() - 36);
    assert_eq!(sdt.phys(), 0x1000);
    // Extra bytes after the table are not part of it.
    let mut longer = t.clone();
    longer.extend_from_slice(&[0xAA; 7]);
    assert_eq!(Sdt::from_bytes(0, &longer, None).unwrap().bytes(), &t[..]);
}

#[test]
fn sdt_rejections() {
    let t = MadtBuilder::qemu(2).build();
    let mut bad_sum = t.clone();
    bad_sum[40] = bad_sum[40].wrapping_add(2);
    let err = Sdt::from_bytes(0x1000, &bad_sum, None).unwrap_err();
    assert!(matches!(err, AcpiError::TableBadChecksum { sig, .. } if sig == Signature::MADT));
    assert_eq!(
        err.to_string(),
        "ACPI table APIC at 0x1000 has a bad checksum (bytes sum to 0x02, not 0)"
    );

    let err = Sdt::from_bytes(0x1000, &t[..t.len() - 1], None).unwrap_err();
    assert!(matches!(err, AcpiError::TableUnreadable { .. }), "{err}");
    assert!(matches!(
        Sdt::from_bytes(0x1000, &t[..20], None),
        Err(AcpiError::HeaderUnreadable { .. })
    ));

    let err = Sdt::from_bytes(0x1000, &t, Some(Signature::SRAT)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ACPI table at 0x1000 has signature \"APIC\", expected \"SRAT\""
    );

    for bad_len in [0u32, 35, MAX_TABLE_LEN + 1, u32::MAX] {
        let mut t = t.clone();
        t[4..8].copy_from_slice(&bad_len.to_le_bytes());
        fix_checksum(&mut t);
        assert!(matches!(
            Sdt::from_bytes(0, &t, None),
            Err(AcpiError::TableBadLength { length, .. }) if length == bad_len
        ));
    }

    let mut odd_sig = t.clone();
    odd_sig[..4].copy_from_slice(&[b'A', 0, 0xFF, b'C']);
    let err = Sdt::from_bytes(0, &odd_sig, None).unwrap_err();
    assert!(err.to_string().contains("A\\x00\\xffC"), "{err}");
}

#[test]
fn table_length_larger_than_readable_region() {
    let mut madt = MadtBuilder::qemu(4).build();
    let full = madt.len() as u32;
    // Claims 64 bytes more than there are; the checksum would even be right for it.
    madt[4..8].copy_from_slice(&(full + 64).to_le_bytes());
    fix_checksum(&mut madt);
    let (mem, addrs) = machine(&[madt], false);
    let mut mem = mem;
    // Make the region end right after the MADT's real bytes.
    let region = mem.chunk_mut(TABLES_BASE);
    let root: Vec<u8> = region[(addrs[1] - TABLES_BASE) as usize..].to_vec();
    region.truncate(full as usize);
    mem.map(0x100_0000, root);
    mem.write(RSDP_ADDR, &rsdp_v1(0x100_0000));
    let tables = AcpiTables::new(&mem, RSDP_ADDR).unwrap();
    let err = tables.find(Signature::MADT).unwrap_err();
    assert_eq!(
        err,
        AcpiError::TableUnreadable {
            sig: Signature::MADT,
            phys: TABLES_BASE,
            length: full + 64
        }
    );
    assert!(err.to_string().contains("runs past the readable memory"));
    assert_eq!(Platform::from_tables(&tables).unwrap_err(), err);
}

// ---- MADT -----------------------------------------------------------------------------------

fn parse_madt(bytes: &[u8]) -> Result<Madt, AcpiError> {
    Madt::parse(&Sdt::from_bytes(0x1000, bytes, None)?)
}

#[test]
fn madt_all_entry_types() {
    let t = MadtBuilder::new()
        .lapic(0, 0, 1)
        .lapic(1, 1, 2) // online capable, not enabled
        .lapic(2, 7, 0) // not present
        .x2apic(300, 1, 3)
        .x2apic(0xFFFF_FFFF, 2, 4)
        .ioapic(1, 0xFEC0_0000, 0)
        .ioapic(2, 0xFEC0_1000, 24)
        .iso(0, 2, 0)
        .iso(9, 9, 0xF)
        .nmi(0xFF, 5, 1)
        .nmi(3, 0, 0)
        .x2nmi(0, 0xFFFF_FFFF, 1)
        .x2nmi(0, 300, 0)
        .raw(&[0x7F, 4, 1, 2]) // unknown: skipped
        .raw(&[3, 8, 0, 0, 9, 0, 0, 0]) // NMI source: not interpreted
        .lapic_override(0x1_FEE0_0000)
        .build();
    let madt = parse_madt(&t).unwrap();
    assert_eq!(madt.local_apic_address(), 0x1_FEE0_0000);
    assert_eq!(madt.flags(), 1);
    assert_eq!(madt.cpus().len(), 5);
    assert_eq!(madt.enabled_cpu_count(), 2);
    assert_eq!(
        madt.cpus()[1],
        MadtCpu {
            apic_id: 1,
            acpi_uid: 1,
            enabled: false,
            online_capable: true,
            x2apic: false
        }
    );
    assert!(!madt.cpus()[2].present());
    assert_eq!(
        madt.cpus()[3],
        MadtCpu {
            apic_id: 300,
            acpi_uid: 3,
            enabled: true,
            online_capable: false,
            x2apic: true
        }
    );
    assert_eq!(madt.io_apics().len(), 2);
    assert_eq!(madt.io_apics()[1].gsi_base, 24);
    assert_eq!(
        madt.interrupt_overrides()[1].polarity(),
        Polarity::ActiveLow
    );
    assert_eq!(
        madt.interrupt_overrides()[1].trigger_mode(),
        TriggerMode::Level
    );
    assert_eq!(
        madt.interrupt_overrides()[0].polarity(),
        Polarity::Conforming
    );
    let nmis = madt.local_apic_nmis();
    assert_eq!(nmis.len(), 4);
    assert_eq!(nmis[0].acpi_uid, None);
    assert_eq!(nmis[0].polarity(), Polarity::ActiveHigh);
    assert_eq!(nmis[0].trigger_mode(), TriggerMode::Edge);
    assert_eq!(nmis[1].acpi_uid, Some(3));
    assert_eq!(nmis[2].acpi_uid, None);
    assert_eq!((nmis[3].acpi_uid, nmis[3].lint), (Some(300), 0));
    assert_eq!(madt.unknown_entries(), 2);
    assert!(!madt.truncated());

    // The platform only lists present CPUs.
    let p = Platform::new(madt, Ok(None), Ok(None));
    let ids: Vec<u32> = p.cpus().map(|c| c.apic_id).collect();
    assert_eq!(ids, [0, 1, 300, 0xFFFF_FFFF]);
    assert_eq!(p.enabled_cpu_count(), 2);
    assert_eq!(p.cpu_by_apic_id(300).unwrap().acpi_uid, 3);
    assert!(p.cpu_by_apic_id(7).is_none());
}

#[test]
fn madt_duplicates_and_capacity() {
    let madt = parse_madt(
        &MadtBuilder::new()
            .lapic(0, 0, 1)
            .lapic(1, 0, 1)
            .x2apic(0, 1, 2)
            .build(),
    )
    .unwrap();
    assert_eq!(madt.cpus().len(), 1);
    assert_eq!(madt.duplicate_cpus(), 2);

    let mut b = MadtBuilder::new();
    for i in 0..300u32 {
        b = b.x2apic(i, 1, i);
    }
    let madt = parse_madt(&b.build()).unwrap();
    assert_eq!(madt.cpus().len(), MAX_CPUS);
    assert_eq!(madt.dropped_cpus(), 300 - MAX_CPUS);
    assert!(madt.truncated());
}

#[test]
fn madt_rejections() {
    let zero_len = MadtBuilder::qemu(1).raw(&[0, 0, 0, 0]).build();
    let err = parse_madt(&zero_len).unwrap_err();
    assert!(matches!(
        err,
        AcpiError::EntryTooShort {
            length: 0,
            min: 2,
            ..
        }
    ));
    assert!(err.to_string().contains("has length 0"), "{err}");

    let one_len = MadtBuilder::new().raw(&[9, 1]).build();
    assert!(matches!(
        parse_madt(&one_len),
        Err(AcpiError::EntryTooShort { length: 1, .. })
    ));

    let short = MadtBuilder::new().raw(&[0, 6, 0, 0, 1, 0]).build();
    let err = parse_madt(&short).unwrap_err();
    assert_eq!(
        err,
        AcpiError::EntryTooShort {
            sig: Signature::MADT,
            offset: MADT_ENTRIES_OFFSET,
            entry_type: 0,
            length: 6,
            min: 8
        }
    );
    assert_eq!(
        err.to_string(),
        "APIC entry of type 0 at offset 0x2c has length 6, less than the 8 bytes it needs"
    );

    let past_end = MadtBuilder::new()
        .lapic(0, 0, 1)
        .raw(&[1, 12, 0, 0])
        .build();
    let err = parse_madt(&past_end).unwrap_err();
    assert!(matches!(
        err,
        AcpiError::EntryPastEnd {
            offset: 52,
            length: Some(12),
            ..
        }
    ));
    assert!(
        err.to_string().contains("runs past the table's end"),
        "{err}"
    );

    let lone_type = MadtBuilder::new().raw(&[0]).build();
    let err = parse_madt(&lone_type).unwrap_err();
    assert!(matches!(err, AcpiError::EntryPastEnd { length: None, .. }));
    assert!(err.to_string().contains("before its length byte"), "{err}");

    let no_fixed_part = table(b"APIC", 1, &[0, 0, 0xE0, 0xFE]);
    assert!(matches!(
        parse_madt(&no_fixed_part),
        Err(AcpiError::TableBadLength { min: 44, .. })
    ));

    let srat = SratBuilder::new().build();
    assert!(matches!(
        parse_madt(&srat),
        Err(AcpiError::TableBadSignature { .. })
    ));
}

// ---- SRAT -----------------------------------------------------------------------------------

fn parse_srat(bytes: &[u8]) -> Result<Srat, AcpiError> {
    Srat::parse(&Sdt::from_bytes(0x2000, bytes, None)?)
}

#[test]
fn srat_entries() {
    let srat = parse_srat(
        &SratBuilder::new()
            .cpu(0x0102_0304, 5, ENABLED)
            .cpu(9, 6, 0) // disabled: ignored
            .x2apic(7, 400, ENABLED)
            .x2apic(7, 401, 0)
            .mem(3, 0x1000, 0x2000, ENABLED | HOTPLUG | NONVOLATILE)
            .mem(3, 0x10_0000, 0, ENABLED) // empty: ignored
            .mem(3, 0x20_0000, 0x1000, 0) // disabled: ignored
            .raw(&[3, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) // GICC: skipped
            .build(),
    )
    .unwrap();
    assert_eq!(srat.revision(), 3);
    assert_eq!(
        srat.cpus(),
        [
            CpuAffinity {
                apic_id: 5,
                proximity_domain: 0x0102_0304,
                clock_domain: 0,
                x2apic: false
            },
            CpuAffinity {
                apic_id: 400,
                proximity_domain: 7,
                clock_domain: 0,
                x2apic: true
            }
        ]
    );
    assert_eq!(
        srat.memory(),
        [MemoryAffinity {
            base: 0x1000,
            length: 0x2000,
            proximity_domain: 3,
            hot_pluggable: true,
            non_volatile: true
        }]
    );
    assert_eq!(srat.memory()[0].end(), 0x3000);

    // Revision 1: only the low byte of a type-0 proximity domain counts.
    let mut b = SratBuilder::new().cpu(0x0102_0304, 5, ENABLED);
    b.revision = 1;
    assert_eq!(
        parse_srat(&b.build()).unwrap().cpus()[0].proximity_domain,
        4
    );
}

#[test]
fn srat_rejections() {
    let overflow = SratBuilder::new()
        .mem(0, u64::MAX - 10, 100, ENABLED)
        .build();
    let err = parse_srat(&overflow).unwrap_err();
    assert!(matches!(err, AcpiError::MemoryRangeOverflow { .. }));
    assert!(err.to_string().contains("overflows"), "{err}");

    let short_mem = SratBuilder::new().raw(&[1, 24]).raw(&[0; 22]).build();
    assert!(matches!(
        parse_srat(&short_mem),
        Err(AcpiError::EntryTooShort { min: 40, .. })
    ));

    let mut b = SratBuilder::new();
    for i in 0..=MAX_MEMORY_RANGES as u64 {
        b = b.mem(0, i * 0x1000, 0x1000, ENABLED);
    }
    let err = parse_srat(&b.build()).unwrap_err();
    assert!(matches!(
        err,
        AcpiError::TooManyEntries {
            max: MAX_MEMORY_RANGES,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "SRAT has more than 64 enabled memory ranges (the supported maximum)"
    );

    let mut b = SratBuilder::new();
    for i in 0..=MAX_CPUS as u32 {
        b = b.x2apic(0, i, ENABLED);
    }
    assert!(matches!(
        parse_srat(&b.build()),
        Err(AcpiError::TooManyEntries { max: MAX_CPUS, .. })
    ));

    let zero = SratBuilder::new().cpu(0, 0, ENABLED).raw(&[0, 0]).build();
    assert!(matches!(
        parse_srat(&zero),
        Err(AcpiError::EntryTooShort { length: 0, .. })
    ));
}

// ---- SLIT -----------------------------------------------------------------------------------

fn parse_slit(bytes: &[u8]) -> Result<Slit<'_>, AcpiError> {
    Slit::parse(&Sdt::from_bytes(0x3000, bytes, None)?)
}

#[test]
fn slit_matrix() {
    let t = slit(3, &[10, 20, 30, 21, 10, 255, 30, 255, 10]);
    let s = parse_slit(&t).unwrap();
    assert_eq!(s.localities(), 3);
    assert_eq!(s.distance(0, 1), Some(20));
    assert_eq!(s.distance(1, 0), Some(21));
    assert_eq!(s.distance(1, 2), Some(255));
    assert_eq!(s.distance(3, 0), None);
    assert!(!s.is_symmetric());
    assert!(
        parse_slit(&slit(2, &[10, 20, 20, 10]))
            .unwrap()
            .is_symmetric()
    );
    // Trailing bytes after the matrix are allowed.
    assert_eq!(parse_slit(&slit(1, &[10, 0, 0])).unwrap().localities(), 1);
}

#[test]
fn slit_rejections() {
    let err = parse_slit(&slit(2, &[10, 20, 20, 11 - 2])).unwrap_err();
    assert_eq!(
        err,
        AcpiError::SlitBadDiagonal {
            locality: 1,
            value: 9
        }
    );
    assert_eq!(
        err.to_string(),
        "SLIT distance from locality 1 to itself is 9, must be 10"
    );

    let err = parse_slit(&slit(2, &[10, 10, 20, 10])).unwrap_err();
    assert_eq!(
        err,
        AcpiError::SlitBadDistance {
            from: 0,
            to: 1,
            value: 10
        }
    );
    assert!(err.to_string().contains("must be greater than 10"), "{err}");

    for count in [0u64, 3, u64::MAX, 1 << 32] {
        let err = parse_slit(&slit(count, &[10, 20, 20, 10])).unwrap_err();
        assert!(
            matches!(err, AcpiError::SlitBadLocalityCount { count: c, .. } if c == count),
            "{err}"
        );
    }
    assert!(matches!(
        parse_slit(&table(b"SLIT", 1, &[1, 0, 0])),
        Err(AcpiError::TableBadLength { min: 44, .. })
    ));
}

// ---- MCFG -----------------------------------------------------------------------------------

/// An MCFG with the given `(base, segment, first_bus, last_bus)` entries.
fn mcfg(entries: &[(u64, u16, u8, u8)]) -> Vec<u8> {
    let mut body = vec![0u8; 8];
    for &(base, segment, first, last) in entries {
        body.extend_from_slice(&base.to_le_bytes());
        body.extend_from_slice(&segment.to_le_bytes());
        body.push(first);
        body.push(last);
        body.extend_from_slice(&[0; 4]);
    }
    table(b"MCFG", 1, &body)
}

fn parse_mcfg(bytes: &[u8]) -> Result<Mcfg, AcpiError> {
    Mcfg::parse(&Sdt::from_bytes(0x4000, bytes, None)?)
}

#[test]
fn mcfg_regions() {
    let m = parse_mcfg(&mcfg(&[
        (0xe000_0000, 0, 0, 63),
        (0x40_0000_0000, 1, 16, 31),
        (0xf000_0000, 0, 64, 64),
    ]))
    .unwrap();
    assert_eq!(m.regions().len(), 3);
    let r = m.region_for(1, 20).unwrap();
    assert_eq!(r.base, 0x40_0000_0000);
    assert_eq!(r.phys_range(), (0x40_0100_0000, 0x40_0200_0000));
    assert_eq!(
        r.config_address(31, 31, 7),
        Some(0x40_0000_0000 + (31 << 20) + (31 << 15) + (7 << 12))
    );
    assert_eq!(r.config_address(15, 0, 0), None);
    assert_eq!(r.config_address(16, 32, 0), None);
    assert_eq!(r.config_address(16, 0, 8), None);
    assert!(m.region_for(1, 15).is_none());
    assert_eq!(m.region_for(0, 64).unwrap().base, 0xf000_0000);
    assert!(m.region_for(0, 65).is_none());
    // A region ending just below 2^64 fits; one ending at 2^64 does not (its end is not a u64).
    let base = 0xffff_ffff_e000_0000;
    let m = parse_mcfg(&mcfg(&[(base, 0, 0, 255)])).unwrap();
    assert_eq!(m.regions()[0].phys_range(), (base, 0xffff_ffff_f000_0000));
    assert!(matches!(
        parse_mcfg(&mcfg(&[(0xffff_ffff_f000_0000, 0, 0, 255)])),
        Err(AcpiError::McfgRegionOverflow { .. })
    ));
}

#[test]
fn mcfg_rejections() {
    let cases: Vec<(Vec<u8>, AcpiError, &str)> = vec![
        (
            mcfg(&[]),
            AcpiError::McfgBadLength { length: 44 },
            "MCFG length 44 is not 44 bytes plus one or more 16-byte entries",
        ),
        (
            {
                let mut body = mcfg(&[(0xb000_0000, 0, 0, 255)])[36..].to_vec();
                body.push(0);
                table(b"MCFG", 1, &body)
            },
            AcpiError::McfgBadLength { length: 61 },
            "MCFG length 61 is not 44 bytes plus one or more 16-byte entries",
        ),
        (
            mcfg(&[(0xb000_0000, 0, 0, 255), (0xc000_0000, 0, 9, 8)]),
            AcpiError::McfgBadBusRange {
                index: 1,
                first_bus: 9,
                last_bus: 8,
            },
            "MCFG entry 1 decodes buses 9..=8: first bus above last",
        ),
        (
            mcfg(&[(0xb008_0000, 0, 0, 255)]),
            AcpiError::McfgMisalignedBase {
                index: 0,
                base: 0xb008_0000,
            },
            "MCFG entry 0 has base 0xb0080000, not 1 MiB-aligned",
        ),
        (
            mcfg(&[(0xffff_ffff_fff0_0000, 0, 0, 0)]),
            AcpiError::McfgRegionOverflow {
                index: 0,
                base: 0xffff_ffff_fff0_0000,
                last_bus: 0,
            },
            "MCFG entry 0 (base 0xfffffffffff00000, last bus 0) overflows the 64-bit address space",
        ),
        (
            mcfg(&[(0xb000_0000, 0, 0, 15), (0xc000_0000, 0, 15, 31)]),
            AcpiError::McfgOverlap {
                first: 0,
                second: 1,
                segment: 0,
            },
            "MCFG entries 0 and 1 decode the same buses of segment 0",
        ),
    ];
    for (bytes, expected, message) in cases {
        let err = parse_mcfg(&bytes).unwrap_err();
        assert_eq!(err, expected);
        assert_eq!(err.to_string(), message);
    }
    // The same buses on another segment are fine.
    assert!(parse_mcfg(&mcfg(&[(0xb000_0000, 0, 0, 15), (0xc000_0000, 1, 0, 15)])).is_ok());
    let many: Vec<_> = (0..=MAX_ECAM_REGIONS as u64)
        .map(|i| (0x1_0000_0000 * (i + 1), i as u16, 0, 0))
        .collect();
    assert!(matches!(
        parse_mcfg(&mcfg(&many)),
        Err(AcpiError::TooManyEntries {
            max: MAX_ECAM_REGIONS,
            ..
        })
    ));
    assert!(matches!(
        parse_mcfg(&table(b"MCFG", 1, &[0; 4])),
        Err(AcpiError::TableBadLength { min: 44, .. })
    ));
    assert!(matches!(
        parse_mcfg(&slit(1, &[10])),
        Err(AcpiError::TableBadSignature { .. })
    ));
}

// ---- platform -------------------------------------------------------------------------------

fn platform(tables: &[Vec<u8>]) -> Platform {
    let (mem, _) = machine(tables, true);
    Platform::from_rsdp(&mem, RSDP_ADDR).unwrap()
}

#[test]
fn sparse_proximity_domains_become_dense_nodes() {
    let p = platform(&[
        MadtBuilder::qemu(4).build(),
        SratBuilder::new()
            .cpu(9, 0, ENABLED)
            .cpu(9, 1, ENABLED)
            .cpu(5, 2, ENABLED)
            .cpu(5, 3, ENABLED)
            .mem(9, 0x4000_0000, 0x4000_0000, ENABLED)
            .mem(5, 0, 0x4000_0000, ENABLED)
            .mem(12, 0x8000_0000, 0x1000_0000, ENABLED | HOTPLUG)
            .build(),
    ]);
    assert_eq!(p.numa_fallback(), None);
    assert_eq!(p.node_count(), 3);
    assert_eq!(p.numa().proximity_domain(0), Some(5));
    assert_eq!(p.numa().proximity_domain(1), Some(9));
    assert_eq!(p.numa().proximity_domain(2), Some(12));
    assert_eq!(p.numa().proximity_domain(3), None);
    assert_eq!(p.numa().node_of_domain(12), Some(2));
    assert_eq!(p.numa().node_of_domain(6), None);
    let nodes: Vec<usize> = p.enabled_cpus().map(|c| c.node).collect();
    assert_eq!(nodes, [1, 1, 0, 0]);
    // Sorted by base; no SLIT: default distances.
    assert_eq!(p.memory_ranges()[0].node, 0);
    assert_eq!(p.memory_ranges()[1].node, 1);
    assert!(p.memory_ranges()[2].hot_pluggable);
    assert_eq!(p.node_memory_bytes(2), 0);
    assert_eq!(p.node_memory(2).count(), 1);
    assert_eq!(p.numa().distance_source(), DistanceSource::Default);
    assert_eq!(p.distance(0, 2), Some(20));
    assert_eq!(p.distance(2, 2), Some(10));
    assert_eq!(p.cpus_on_node(2), 0);
}

#[test]
fn slit_indexed_by_proximity_domain_and_asymmetry_reported() {
    let p = platform(&[
        MadtBuilder::qemu(2).build(),
        SratBuilder::new()
            .cpu(0, 0, ENABLED)
            .cpu(2, 1, ENABLED)
            .build(),
        slit(3, &[10, 15, 21, 15, 10, 25, 22, 25, 10]),
    ]);
    assert_eq!(p.numa_fallback(), None);
    assert_eq!(p.node_count(), 2);
    assert_eq!(p.distance(0, 1), Some(21));
    assert_eq!(p.distance(1, 0), Some(22));
    assert!(!p.numa().distances_symmetric());
}

#[test]
fn cpus_missing_from_srat_go_to_node_0() {
    let p = platform(&[
        MadtBuilder::qemu(4).build(),
        SratBuilder::new()
            .cpu(1, 0, ENABLED)
            .cpu(1, 1, ENABLED)
            .cpu(3, 2, ENABLED)
            .build(),
    ]);
    assert_eq!(p.numa_fallback(), None);
    assert_eq!(p.numa().cpus_without_affinity(), 1);
    let nodes: Vec<usize> = p.enabled_cpus().map(|c| c.node).collect();
    assert_eq!(nodes, [0, 0, 1, 0]);
}

/// Builds the QEMU two-node machine with `srat`/`slit` replaced and checks that NUMA falls
/// back to one node with `expected` as the reason.
fn assert_fallback(srat: Option<Vec<u8>>, slit_table: Option<Vec<u8>>, expected: &AcpiError) {
    let mut tables = vec![MadtBuilder::qemu(4).build()];
    tables.extend(srat);
    tables.extend(slit_table);
    let p = platform(&tables);
    assert_eq!(p.numa_fallback(), Some(expected));
    assert_eq!(p.node_count(), 1);
    assert_eq!(p.enabled_cpu_count(), 4);
    assert!(p.enabled_cpus().all(|c| c.node == 0));
    assert_eq!(p.numa().distance_source(), DistanceSource::SingleNode);
    assert_eq!(p.distance(0, 0), Some(10));
    assert_eq!(p.distance(0, 1), None);
    assert!(p.memory_ranges().is_empty());
    assert_eq!(p.to_string(), "4 CPUs, 1 NUMA node");
}

#[test]
fn srat_with_unknown_apic_id_is_rejected() {
    let srat = SratBuilder::qemu_two_nodes().cpu(1, 9, ENABLED).build();
    let expected = AcpiError::SratUnknownApicId {
        apic_id: 9,
        proximity_domain: 1,
    };
    assert_eq!(
        expected.to_string(),
        "SRAT assigns APIC id 9 to proximity domain 1, but the MADT lists no such CPU"
    );
    assert_fallback(Some(srat), Some(slit(2, &[10, 20, 20, 10])), &expected);
}

#[test]
fn srat_rejections_fall_back_to_one_node() {
    let slit_ok = || Some(slit(2, &[10, 20, 20, 10]));
    assert_fallback(
        None,
        slit_ok(),
        &AcpiError::TableMissing {
            sig: Signature::SRAT,
        },
    );

    let conflicting = SratBuilder::qemu_two_nodes().cpu(1, 0, ENABLED).build();
    assert_fallback(
        Some(conflicting),
        slit_ok(),
        &AcpiError::SratConflictingCpu {
            apic_id: 0,
            first: 0,
            second: 1,
        },
    );

    let overlapping = SratBuilder::qemu_two_nodes()
        .mem(1, 0x1000_0000, 0x1000, ENABLED)
        .build();
    assert_fallback(
        Some(overlapping),
        slit_ok(),
        &AcpiError::OverlappingMemory {
            first_base: 0x10_0000,
            first_length: 0x1FF0_0000,
            first_domain: 0,
            second_base: 0x1000_0000,
            second_length: 0x1000,
            second_domain: 1,
        },
    );

    let empty = SratBuilder::new().cpu(0, 0, 0).build();
    assert_fallback(Some(empty), None, &AcpiError::SratEmpty);

    let mut b = SratBuilder::new();
    for d in 0..=MAX_NODES as u64 {
        b = b.mem(d as u32, d << 30, 1 << 20, ENABLED);
    }
    // 65 ranges exceed the memory capacity before the node count is checked.
    let mut tables_err = parse_srat(&b.build()).unwrap_err();
    assert!(matches!(tables_err, AcpiError::TooManyEntries { .. }));
    let mut b = SratBuilder::new();
    for d in 0..=MAX_NODES as u32 {
        b = b.x2apic(d, d, ENABLED);
    }
    let mut madt = MadtBuilder::new();
    for d in 0..=MAX_NODES as u32 {
        madt = madt.x2apic(d, 1, d);
    }
    let (mem, _) = machine(&[madt.build(), b.build()], false);
    let p = Platform::from_rsdp(&mem, RSDP_ADDR).unwrap();
    tables_err = *p.numa_fallback().unwrap();
    assert_eq!(tables_err, AcpiError::TooManyNodes { max: MAX_NODES });

    let mut bad_checksum = SratBuilder::qemu_two_nodes().build();
    bad_checksum[9] = bad_checksum[9].wrapping_add(1);
    let (mem, addrs) = machine(
        &[
            MadtBuilder::qemu(4).build(),
            bad_checksum,
            slit_ok().unwrap(),
        ],
        false,
    );
    let p = Platform::from_rsdp(&mem, RSDP_ADDR).unwrap();
    assert_eq!(
        p.numa_fallback(),
        Some(&AcpiError::TableBadChecksum {
            sig: Signature::SRAT,
            phys: addrs[1],
            sum: 1
        })
    );
}

#[test]
fn slit_rejections_fall_back_to_one_node() {
    let srat = || Some(SratBuilder::qemu_two_nodes().build());
    assert_fallback(
        srat(),
        Some(slit(2, &[10, 20, 20, 20])),
        &AcpiError::SlitBadDiagonal {
            locality: 1,
            value: 20,
        },
    );
    assert_fallback(
        srat(),
        Some(slit(1, &[10])),
        &AcpiError::SlitMissingDomain {
            proximity_domain: 1,
            localities: 1,
        },
    );
    let mut truncated = slit(2, &[10, 20, 20, 10]);
    truncated[36] = 3; // 3x3 matrix does not fit
    fix_checksum(&mut truncated);
    assert_fallback(
        srat(),
        Some(truncated),
        &AcpiError::SlitBadLocalityCount {
            count: 3,
            table_length: 48,
        },
    );
}

#[test]
fn srat_cpu_beyond_a_truncated_madt_is_tolerated() {
    let mut madt = MadtBuilder::new();
    for i in 0..300u32 {
        madt = madt.x2apic(i, 1, i);
    }
    // APIC id 299 is beyond the MADT's capacity: not an "unknown APIC id".
    let srat = SratBuilder::new()
        .x2apic(0, 0, ENABLED)
        .x2apic(1, 255, ENABLED)
        .x2apic(1, 299, ENABLED);
    let (mem, _) = machine(&[madt.build(), srat.build()], true);
    let p = Platform::from_rsdp(&mem, RSDP_ADDR).unwrap();
    assert_eq!(p.madt().dropped_cpus(), 300 - MAX_CPUS);
    assert_eq!(p.numa_fallback(), None);
    assert_eq!(p.enabled_cpu_count(), MAX_CPUS);
    assert_eq!(p.node_count(), 2);
    assert_eq!(p.cpus_on_node(1), 1);
    assert_eq!(p.numa().cpus_without_affinity(), MAX_CPUS - 2);
}

#[test]
fn single_cpu_without_numa() {
    let p = platform(&[MadtBuilder::qemu(1).build()]);
    assert_eq!(p.to_string(), "1 CPU, 1 NUMA node");
    assert_eq!(p.cpus().next().unwrap().node, 0);
}

// ---- error messages -------------------------------------------------------------------------

#[test]
fn every_error_has_a_one_line_message() {
    let sig = Signature::MADT;
    let errors = [
        AcpiError::RangeOverflow { phys: 1, len: 2 },
        AcpiError::RsdpUnreadable { phys: 1, len: 20 },
        AcpiError::RsdpBadSignature { phys: 1 },
        AcpiError::RsdpBadChecksum { phys: 1, sum: 3 },
        AcpiError::RsdpBadLength { phys: 1, length: 3 },
        AcpiError::RsdpBadExtendedChecksum { phys: 1, sum: 3 },
        AcpiError::RsdpNotFound { rejected: 2 },
        AcpiError::NoRootTable { revision: 2 },
        AcpiError::HeaderUnreadable {
            expected: Some(sig),
            phys: 1,
        },
        AcpiError::HeaderUnreadable {
            expected: None,
            phys: 1,
        },
        AcpiError::TableUnreadable {
            sig,
            phys: 1,
            length: 99,
        },
        AcpiError::TableBadSignature {
            phys: 1,
            expected: sig,
            found: Signature::SRAT,
        },
        AcpiError::TableBadLength {
            sig,
            phys: 1,
            length: 2,
            min: 36,
            max: 99,
        },
        AcpiError::TableBadChecksum {
            sig,
            phys: 1,
            sum: 2,
        },
        AcpiError::TableMissing { sig },
        AcpiError::EntryTooShort {
            sig,
            offset: 44,
            entry_type: 0,
            length: 0,
            min: 2,
        },
        AcpiError::EntryPastEnd {
            sig,
            offset: 44,
            entry_type: 0,
            length: Some(8),
            table_length: 48,
        },
        AcpiError::EntryPastEnd {
            sig,
            offset: 44,
            entry_type: 0,
            length: None,
            table_length: 45,
        },
        AcpiError::TooManyEntries {
            sig,
            what: "things",
            max: 3,
        },
        AcpiError::MemoryRangeOverflow {
            proximity_domain: 1,
            base: 2,
            length: 3,
        },
        AcpiError::OverlappingMemory {
            first_base: 1,
            first_length: 2,
            first_domain: 3,
            second_base: 4,
            second_length: 5,
            second_domain: 6,
        },
        AcpiError::SratUnknownApicId {
            apic_id: 1,
            proximity_domain: 2,
        },
        AcpiError::SratConflictingCpu {
            apic_id: 1,
            first: 2,
            second: 3,
        },
        AcpiError::SratEmpty,
        AcpiError::TooManyNodes { max: 64 },
        AcpiError::SlitBadLocalityCount {
            count: 1,
            table_length: 2,
        },
        AcpiError::SlitBadDiagonal {
            locality: 1,
            value: 2,
        },
        AcpiError::SlitBadDistance {
            from: 1,
            to: 2,
            value: 3,
        },
        AcpiError::SlitMissingDomain {
            proximity_domain: 1,
            localities: 1,
        },
    ];
    let mut seen = std::collections::BTreeSet::new();
    for e in errors {
        let msg = e.to_string();
        assert!(msg.len() > 15 && !msg.contains('\n'), "{msg:?}");
        assert!(seen.insert(msg.clone()), "duplicate message {msg:?}");
    }
    assert_eq!(std::format!("{:?}", Signature::SLIT), "Signature(\"SLIT\")");
}

// ---- property tests -------------------------------------------------------------------------

fn check_error(e: &AcpiError) {
    let msg = e.to_string();
    assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
}

fn check_platform(p: &Platform) {
    let n = p.node_count();
    assert!((1..=MAX_NODES).contains(&n));
    assert!(p.cpus().all(|c| c.node < n));
    assert!(p.cpus().count() <= MAX_CPUS);
    for i in 0..n {
        assert_eq!(p.distance(i, i), Some(10));
        for j in 0..n {
            let d = p.distance(i, j).unwrap();
            assert!(i == j || d > 10);
        }
    }
    assert_eq!(p.distance(n, 0), None);
    let ranges = p.memory_ranges();
    assert!(ranges.iter().all(|m| m.node < n && m.length > 0));
    assert!(ranges.windows(2).all(|w| w[0].end() <= w[1].base));
    if let Some(e) = p.numa_fallback() {
        check_error(e);
        assert_eq!(n, 1);
    }
    let _ = p.to_string();
}

/// Parses `bytes` as each table type, directly and wrapped in a valid header.
fn parse_all(bytes: &[u8]) {
    for result in [
        Rsdp::from_bytes(0, bytes).map(|_| ()),
        Sdt::from_bytes(0, bytes, None).map(|_| ()),
    ] {
        if let Err(e) = result {
            check_error(&e);
        }
    }
    for sig in [b"APIC", b"SRAT", b"SLIT", b"MCFG"] {
        for rev in [1, 3] {
            let t = table(sig, rev, bytes);
            let sdt = Sdt::from_bytes(0, &t, None).unwrap();
            let results = [
                Madt::parse(&sdt).map(|_| ()),
                Srat::parse(&sdt).map(|_| ()),
                Slit::parse(&sdt).map(|_| ()),
                Mcfg::parse(&sdt).map(|_| ()),
            ];
            for e in results.iter().filter_map(|r| r.err()) {
                check_error(&e);
            }
        }
    }
}

fn mutate(mut bytes: Vec<u8>, muts: &[(usize, u8)], cut: Option<usize>, fix: bool) -> Vec<u8> {
    let n = bytes.len();
    for &(i, b) in muts {
        bytes[i % n] = b;
    }
    if let Some(c) = cut {
        bytes.truncate(c % (n + 1));
    }
    if fix {
        fix_checksum(&mut bytes);
    }
    bytes
}

/// Runs everything the kernel would run over `mem`.
fn parse_machine(mem: &Mem, rsdp_phys: u64) {
    if let Err(e) = find_rsdp(mem) {
        check_error(&e);
    }
    match Platform::from_rsdp(mem, rsdp_phys) {
        Ok(p) => check_platform(&p),
        Err(e) => check_error(&e),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        parse_all(&bytes);
    }

    #[test]
    fn random_entries_never_panic(
        entries in proptest::collection::vec(
            (0u8..12, 0u8..48, proptest::collection::vec(any::<u8>(), 0..46)),
            0..24,
        ),
    ) {
        // Plausible entries with random lengths and contents.
        let mut body = vec![0u8; 12];
        for (ty, len, data) in entries {
            body.push(ty);
            body.push(len);
            body.extend_from_slice(&data);
        }
        parse_all(&body);
        parse_all(&body[4..]);
    }

    #[test]
    fn mutated_tables_never_panic(
        which in 0usize..3,
        muts in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in proptest::option::of(any::<usize>()),
        fix in any::<bool>(),
    ) {
        let mut tables = qemu_numa_tables();
        let t = mutate(tables[which].clone(), &muts, cut, fix);
        parse_all(&t);
        tables[which] = t;
        let (mem, _) = machine(&tables, which == 0);
        parse_machine(&mem, RSDP_ADDR);
    }

    #[test]
    fn mutated_qemu_dump_never_panics(
        dump in 0usize..3,
        muts in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..12),
        fix in any::<bool>(),
    ) {
        let dump = [QEMU_PC_NUMA, QEMU_Q35_NUMA, QEMU_PC_SMP1][dump];
        let mut mem = dump.memory();
        let original = AcpiTables::new(&mem, dump.rsdp_addr).unwrap();
        let mut offsets: Vec<u64> = original.entries().collect();
        offsets.push(original.root().phys());
        let chunk = mem.chunk_mut(dump.tables_addr);
        let n = chunk.len();
        for &(i, b) in &muts {
            chunk[i % n] = b;
        }
        if fix {
            // Re-checksum every table by its (possibly mutated) length so that parsing
            // gets past the checksums.
            for phys in offsets {
                let off = (phys - dump.tables_addr) as usize;
                let len = u32::from_le_bytes(chunk[off + 4..off + 8].try_into().unwrap());
                let end = (off + len as usize).min(n);
                if end > off + 9 {
                    fix_checksum(&mut chunk[off..end]);
                }
            }
        }
        parse_machine(&mem, dump.rsdp_addr);
    }

    #[test]
    fn bios_area_scan_never_panics(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        sigs in proptest::collection::vec(0usize..255, 0..6),
        ebda in any::<u16>(),
        rev in any::<u8>(),
    ) {
        let mut mem = Mem::default();
        mem.map(EBDA_POINTER, ebda.to_le_bytes().to_vec());
        let mut area = data;
        area.resize(4096, 0);
        for s in sigs {
            let off = s * 16;
            area[off..off + 8].copy_from_slice(b"RSD PTR ");
            area[off + 15] = rev;
            area[off + 8] = 0;
            let sum = byte_sum(&area[off..off + 20]);
            area[off + 8] = 0u8.wrapping_sub(sum);
        }
        mem.map(0xF_F000, area);
        match find_rsdp(&mem) {
            Ok(r) => {
                prop_assert_eq!(byte_sum(mem.read(r.phys(), 20).unwrap()), 0);
                prop_assert!(r.phys() % 16 == 0);
                if let Err(e) = AcpiTables::new(&mem, r.phys()) {
                    check_error(&e);
                }
            }
            Err(e) => check_error(&e),
        }
    }
}
