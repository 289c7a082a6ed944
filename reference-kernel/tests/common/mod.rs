//! Shared test helpers: a fake physical memory and builders for PVH and Multiboot2 boot
//! structures.

#![allow(dead_code)]

use reference_kernel::PhysMemory;

/// A fake physical memory: `bytes` mapped at physical address `base`; everything else is
/// unreadable.
#[derive(Clone, Debug)]
pub struct FakeMemory {
    pub base: u64,
    pub bytes: Vec<u8>,
}

impl FakeMemory {
    /// `size` zero bytes at `base`.
    pub fn new(base: u64, size: usize) -> Self {
        Self {
            base,
            bytes: vec![0; size],
        }
    }

    /// One past the last readable physical address.
    pub fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    /// Writes `data` at physical address `phys` (must lie inside the memory).
    pub fn write(&mut self, phys: u64, data: &[u8]) {
        let off = (phys - self.base) as usize;
        self.bytes[off..off + data.len()].copy_from_slice(data);
    }

    pub fn write_u32(&mut self, phys: u64, v: u32) {
        self.write(phys, &v.to_le_bytes());
    }

    pub fn write_u64(&mut self, phys: u64, v: u64) {
        self.write(phys, &v.to_le_bytes());
    }

    /// Drops everything from physical address `phys` on.
    pub fn truncate_at(&mut self, phys: u64) {
        self.bytes.truncate((phys - self.base) as usize);
    }
}

impl PhysMemory for FakeMemory {
    fn read(&self, phys: u64, len: usize) -> Option<&[u8]> {
        let off = usize::try_from(phys.checked_sub(self.base)?).ok()?;
        self.bytes.get(off..off.checked_add(len)?)
    }
}

// ---- PVH ---------------------------------------------------------------------------------

pub const PVH_MAGIC: u32 = 0x336e_c578;

/// Physical layout used by [`Pvh::build`].
pub const PVH_BASE: u64 = 0x1000;
pub const PVH_START_INFO: u64 = 0x1000;
pub const PVH_MODLIST: u64 = 0x1100;
pub const PVH_MEMMAP: u64 = 0x1400;
pub const PVH_CMDLINE: u64 = 0x3000;
pub const PVH_MEM_SIZE: usize = 0x3000;
/// Bytes between [`PVH_CMDLINE`] and the end of the default memory.
pub const PVH_CMDLINE_ROOM: usize = (PVH_BASE + PVH_MEM_SIZE as u64 - PVH_CMDLINE) as usize;

/// Offsets of `hvm_start_info` fields.
pub mod si {
    pub const MAGIC: u64 = 0;
    pub const VERSION: u64 = 4;
    pub const FLAGS: u64 = 8;
    pub const NR_MODULES: u64 = 12;
    pub const MODLIST_PADDR: u64 = 16;
    pub const CMDLINE_PADDR: u64 = 24;
    pub const RSDP_PADDR: u64 = 32;
    pub const MEMMAP_PADDR: u64 = 40;
    pub const MEMMAP_ENTRIES: u64 = 48;
}

/// Description of a PVH boot: what QEMU's PVH loader would put in memory.
#[derive(Clone, Debug)]
pub struct Pvh {
    pub magic: u32,
    pub version: u32,
    /// `(addr, size, type)` entries.
    pub memmap: Vec<(u64, u64, u32)>,
    /// Raw command-line bytes (a NUL is appended); `None` = `cmdline_paddr` 0.
    pub cmdline: Option<Vec<u8>>,
    pub rsdp: u64,
    /// `(paddr, size)` modules.
    pub modules: Vec<(u64, u64)>,
}

/// The e820 map QEMU 7.2 reports for a 128 MiB PC guest.
pub fn qemu_e820() -> Vec<(u64, u64, u32)> {
    vec![
        (0, 0x9fc00, 1),
        (0x9fc00, 0x400, 2),
        (0xf0000, 0x10000, 2),
        (0x100000, 0x7fe0000 - 0x100000, 1),
        (0xfffc0000, 0x40000, 2),
    ]
}

impl Pvh {
    /// A version-1 start_info as QEMU 7.2 passes it, plus an RSDP pointer and one module.
    pub fn qemu() -> Self {
        Self {
            magic: PVH_MAGIC,
            version: 1,
            memmap: qemu_e820(),
            cmdline: Some(b"console=ttyS0 loglevel=debug quiet".to_vec()),
            rsdp: 0xf52e0,
            modules: vec![(0x0200_0000, 0x1234)],
        }
    }

    /// Lays the structures out in a fresh [`FakeMemory`]; returns it and the start_info
    /// address.
    pub fn build(&self) -> (FakeMemory, u64) {
        let extra = self
            .cmdline
            .as_ref()
            .map_or(0, |c| (c.len() + 1).saturating_sub(PVH_CMDLINE_ROOM));
        let mut mem = FakeMemory::new(PVH_BASE, PVH_MEM_SIZE + extra);
        let s = PVH_START_INFO;
        mem.write_u32(s + si::MAGIC, self.magic);
        mem.write_u32(s + si::VERSION, self.version);
        mem.write_u32(s + si::FLAGS, 0);
        mem.write_u32(s + si::NR_MODULES, self.modules.len() as u32);
        mem.write_u64(
            s + si::MODLIST_PADDR,
            if self.modules.is_empty() {
                0
            } else {
                PVH_MODLIST
            },
        );
        for (i, &(paddr, size)) in self.modules.iter().enumerate() {
            let e = PVH_MODLIST + 32 * i as u64;
            mem.write_u64(e, paddr);
            mem.write_u64(e + 8, size);
        }
        mem.write_u64(s + si::MEMMAP_PADDR, PVH_MEMMAP);
        mem.write_u32(s + si::MEMMAP_ENTRIES, self.memmap.len() as u32);
        for (i, &(addr, size, ty)) in self.memmap.iter().enumerate() {
            let e = PVH_MEMMAP + 24 * i as u64;
            mem.write_u64(e, addr);
            mem.write_u64(e + 8, size);
            mem.write_u32(e + 16, ty);
        }
        match &self.cmdline {
            Some(c) => {
                mem.write_u64(s + si::CMDLINE_PADDR, PVH_CMDLINE);
                mem.write(PVH_CMDLINE, c);
                mem.write(PVH_CMDLINE + c.len() as u64, &[0]);
            }
            None => mem.write_u64(s + si::CMDLINE_PADDR, 0),
        }
        mem.write_u64(s + si::RSDP_PADDR, self.rsdp);
        (mem, s)
    }
}

// ---- Multiboot2 --------------------------------------------------------------------------

pub const MB2_MAGIC: u32 = 0x36d7_6289;
/// Physical address where [`Mbi::place`] puts the MBI.
pub const MBI_PHYS: u64 = 0x0001_0000;

/// A Multiboot2 information structure under construction.
#[derive(Clone, Debug)]
pub struct Mbi {
    pub bytes: Vec<u8>,
}

impl Default for Mbi {
    fn default() -> Self {
        Self::new()
    }
}

impl Mbi {
    /// Just the 8-byte header (total_size is fixed up by [`Mbi::finish`]).
    pub fn new() -> Self {
        Self { bytes: vec![0; 8] }
    }

    /// Appends a tag with `payload`, declaring `size` = 8 + payload length, and pads to 8.
    /// Returns the tag's offset in the MBI.
    pub fn tag(&mut self, ty: u32, payload: &[u8]) -> usize {
        self.raw_tag(ty, 8 + payload.len() as u32, payload)
    }

    /// Appends a tag with an explicit (possibly wrong) declared size.
    pub fn raw_tag(&mut self, ty: u32, size: u32, payload: &[u8]) -> usize {
        let off = self.bytes.len();
        self.bytes.extend_from_slice(&ty.to_le_bytes());
        self.bytes.extend_from_slice(&size.to_le_bytes());
        self.bytes.extend_from_slice(payload);
        while !self.bytes.len().is_multiple_of(8) {
            self.bytes.push(0);
        }
        off
    }

    pub fn string_tag(&mut self, ty: u32, s: &[u8]) -> usize {
        let mut p = s.to_vec();
        p.push(0);
        self.tag(ty, &p)
    }

    pub fn cmdline(&mut self, s: &str) -> usize {
        self.string_tag(1, s.as_bytes())
    }

    pub fn loader_name(&mut self, s: &str) -> usize {
        self.string_tag(2, s.as_bytes())
    }

    pub fn module(&mut self, start: u32, end: u32, s: &str) -> usize {
        let mut p = Vec::new();
        p.extend_from_slice(&start.to_le_bytes());
        p.extend_from_slice(&end.to_le_bytes());
        p.extend_from_slice(s.as_bytes());
        p.push(0);
        self.tag(3, &p)
    }

    pub fn basic_meminfo(&mut self, lower_kib: u32, upper_kib: u32) -> usize {
        let mut p = Vec::new();
        p.extend_from_slice(&lower_kib.to_le_bytes());
        p.extend_from_slice(&upper_kib.to_le_bytes());
        self.tag(4, &p)
    }

    /// Memory map tag with `entry_size` (>= 24 to hold the fields; bigger pads with 0xAA).
    pub fn mmap_with_entry_size(&mut self, entry_size: u32, entries: &[(u64, u64, u32)]) -> usize {
        let mut p = Vec::new();
        p.extend_from_slice(&entry_size.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        for &(base, len, ty) in entries {
            let mut e = Vec::new();
            e.extend_from_slice(&base.to_le_bytes());
            e.extend_from_slice(&len.to_le_bytes());
            e.extend_from_slice(&ty.to_le_bytes());
            e.extend_from_slice(&0u32.to_le_bytes());
            e.resize(entry_size as usize, 0xAA);
            p.extend_from_slice(&e);
        }
        self.tag(6, &p)
    }

    pub fn mmap(&mut self, entries: &[(u64, u64, u32)]) -> usize {
        self.mmap_with_entry_size(24, entries)
    }

    /// ACPI old RSDP tag (type 14) holding a 20-byte RSDP v1.
    pub fn acpi_old(&mut self) -> usize {
        let mut r = b"RSD PTR ".to_vec();
        r.resize(20, 0);
        self.tag(14, &r)
    }

    /// ACPI new RSDP tag (type 15) holding a 36-byte RSDP v2.
    pub fn acpi_new(&mut self) -> usize {
        let mut r = b"RSD PTR ".to_vec();
        r.resize(36, 0);
        r[15] = 2;
        self.tag(15, &r)
    }

    pub fn end_tag(&mut self) -> usize {
        self.tag(0, &[])
    }

    /// Sets total_size to the current length.
    pub fn finish(&mut self) -> &mut Self {
        let n = self.bytes.len() as u32;
        self.set_total_size(n)
    }

    pub fn set_total_size(&mut self, n: u32) -> &mut Self {
        self.bytes[0..4].copy_from_slice(&n.to_le_bytes());
        self
    }

    /// A fake memory holding the MBI at [`MBI_PHYS`], followed by `slack` zero bytes.
    pub fn place(&self, slack: usize) -> FakeMemory {
        let mut mem = FakeMemory::new(MBI_PHYS, self.bytes.len() + slack);
        mem.write(MBI_PHYS, &self.bytes);
        mem
    }

    /// A GRUB-like MBI: cmdline, loader name, basic meminfo, one module, the QEMU e820
    /// map, both ACPI tags and an unknown tag (21, load base address).
    pub fn grub() -> Self {
        let mut m = Mbi::new();
        m.cmdline("console=ttyS0 root=/dev/vda");
        m.loader_name("GRUB 2.06");
        m.module(0x0200_0000, 0x0200_1234, "/boot/initrd");
        m.basic_meminfo(639, 130_048);
        m.tag(21, &0x0010_0000u32.to_le_bytes());
        m.mmap(&qemu_e820());
        m.acpi_old();
        m.acpi_new();
        m.end_tag();
        m.finish();
        m
    }
}
