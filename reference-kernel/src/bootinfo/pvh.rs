//! PVH boot information: the Xen `hvm_start_info` structure.
//!
//! # What it does
//!
//! [`BootInfo::from_pvh`] reads the `hvm_start_info` whose physical address the PVH entry
//! point receives in `%ebx` (QEMU's `-kernel` loader uses this for ELF kernels carrying a
//! `XEN_ELFNOTE_PHYS32_ENTRY` note), then follows its pointers to the memory map, the
//! command line and the module list.
//!
//! Layout (little-endian, byte offsets):
//!
//! | offset | field           | type | notes                                        |
//! |-------:|-----------------|------|----------------------------------------------|
//! | 0      | `magic`         | u32  | [`PVH_MAGIC`] (`0x336ec578`)                  |
//! | 4      | `version`       | u32  | 0 or 1; the memory map fields need >= 1       |
//! | 8      | `flags`         | u32  | ignored                                      |
//! | 12     | `nr_modules`    | u32  |                                              |
//! | 16     | `modlist_paddr` | u64  | array of 32-byte `hvm_modlist_entry`         |
//! | 24     | `cmdline_paddr` | u64  | NUL-terminated string; 0 = none              |
//! | 32     | `rsdp_paddr`    | u64  | 0 = none                                     |
//! | 40     | `memmap_paddr`  | u64  | array of 24-byte `hvm_memmap_table_entry`    |
//! | 48     | `memmap_entries`| u32  |                                              |
//! | 52     | reserved        | u32  |                                              |
//!
//! `hvm_modlist_entry`: `paddr` u64, `size` u64, `cmdline_paddr` u64, reserved u64.
//! `hvm_memmap_table_entry`: `addr` u64, `size` u64, `type` u32 (E820 type), reserved u32.
//!
//! # What it relies on
//!
//! The [`PhysMemory`] passed in; nothing else. The command line is read one byte at a time
//! (at most [`MAX_CMDLINE`]` + 1` bytes), so a string ending right before unreadable memory
//! is handled.
//!
//! # What it guarantees
//!
//! Besides the guarantees listed in the [parent module](super), the parser rejects: a wrong
//! magic; a `start_info`, memory map or module list that cannot be read in full; a
//! version-0 `start_info` or one with zero memory map entries (there is no E820 fallback);
//! more than [`MAX_MODULES`] modules or a module whose end overflows; a command line pointer
//! that cannot be read at all. A command line longer than [`MAX_CMDLINE`] or running into
//! unreadable memory before its NUL is kept up to there, and invalid UTF-8 and control
//! characters become `?` ([`BootInfo::cmdline_fixups`] reports both), as Linux accepts both.
//! Module command lines and `flags` are ignored. [`BootInfo::boot_data`] lists the
//! `start_info`, the memory map array, the command line (with its NUL) and the module list.

use super::{
    BootInfo, BootInfoError, BootProtocol, MAX_CMDLINE, MAX_MODULES, MemoryKind, PhysMemory,
    read_struct, u32_at, u64_at,
};

/// The `hvm_start_info.magic` value (`XEN_HVM_START_MAGIC_VALUE`).
pub const PVH_MAGIC: u32 = 0x336e_c578;
/// Size of a version-0 `hvm_start_info` (without the memory map fields).
pub const START_INFO_V0_SIZE: u64 = 48;
/// Size of a version-1 `hvm_start_info`.
pub const START_INFO_V1_SIZE: u64 = 56;
/// Size of one `hvm_modlist_entry`.
pub const MODLIST_ENTRY_SIZE: u64 = 32;
/// Size of one `hvm_memmap_table_entry`.
pub const MEMMAP_ENTRY_SIZE: u64 = 24;

const START_INFO: &str = "PVH start_info";
const MEMMAP: &str = "PVH memory map";
const MODLIST: &str = "PVH module list";
const CMDLINE: &str = "kernel command line";

/// Decodes a `u32` field of structure `what`, reporting a short buffer as truncation.
fn field_u32(b: &[u8], off: usize, what: &'static str) -> Result<u32, BootInfoError> {
    u32_at(b, off).ok_or(BootInfoError::Truncated {
        what,
        offset: 0,
        needed: off as u64 + 4,
        available: b.len() as u64,
    })
}

/// Decodes a `u64` field of structure `what`, reporting a short buffer as truncation.
fn field_u64(b: &[u8], off: usize, what: &'static str) -> Result<u64, BootInfoError> {
    u64_at(b, off).ok_or(BootInfoError::Truncated {
        what,
        offset: 0,
        needed: off as u64 + 8,
        available: b.len() as u64,
    })
}

/// Size in bytes of `count` entries of `entry_size`, as a structure range length.
fn array_len(
    what: &'static str,
    phys: u64,
    count: u64,
    entry_size: u64,
) -> Result<u64, BootInfoError> {
    count
        .checked_mul(entry_size)
        .ok_or(BootInfoError::RangeOverflow {
            what,
            phys,
            len: u64::MAX,
        })
}

/// Parses the `hvm_start_info` at `phys`; see [`BootInfo::from_pvh`].
pub(crate) fn parse<M: PhysMemory>(phys: u64, mem: &M) -> Result<BootInfo, BootInfoError> {
    let head = read_struct(mem, START_INFO, phys, START_INFO_V0_SIZE)?;
    let magic = field_u32(head, 0, START_INFO)?;
    if magic != PVH_MAGIC {
        return Err(BootInfoError::BadMagic {
            protocol: BootProtocol::Pvh,
            expected: PVH_MAGIC,
            found: magic,
        });
    }
    let version = field_u32(head, 4, START_INFO)?;
    if version == 0 {
        // Version 0 has no memmap fields, and we have no E820 fallback.
        return Err(BootInfoError::NoMemoryMap {
            protocol: BootProtocol::Pvh,
        });
    }
    let si = read_struct(mem, START_INFO, phys, START_INFO_V1_SIZE)?;
    let nr_modules = field_u32(si, 12, START_INFO)?;
    let modlist_paddr = field_u64(si, 16, START_INFO)?;
    let cmdline_paddr = field_u64(si, 24, START_INFO)?;
    let rsdp_paddr = field_u64(si, 32, START_INFO)?;
    let memmap_paddr = field_u64(si, 40, START_INFO)?;
    let memmap_entries = field_u32(si, 48, START_INFO)?;
    if memmap_entries == 0 {
        return Err(BootInfoError::NoMemoryMap {
            protocol: BootProtocol::Pvh,
        });
    }

    let mut info = BootInfo::empty(BootProtocol::Pvh);
    info.add_boot_data(phys, START_INFO_V1_SIZE);

    // Memory map.
    let memmap_len = array_len(
        MEMMAP,
        memmap_paddr,
        memmap_entries.into(),
        MEMMAP_ENTRY_SIZE,
    )?;
    let memmap = read_struct(mem, MEMMAP, memmap_paddr, memmap_len)?;
    info.add_boot_data(memmap_paddr, memmap_len);
    for (index, entry) in memmap.chunks_exact(MEMMAP_ENTRY_SIZE as usize).enumerate() {
        let addr = field_u64(entry, 0, MEMMAP)?;
        let size = field_u64(entry, 8, MEMMAP)?;
        let ty = field_u32(entry, 16, MEMMAP)?;
        info.push_region(index, addr, size, MemoryKind::from_e820(ty))?;
    }

    // Modules.
    if nr_modules as usize > MAX_MODULES {
        return Err(BootInfoError::TooManyModules {
            count: nr_modules.into(),
            max: MAX_MODULES,
        });
    }
    if nr_modules > 0 {
        let modlist_len = array_len(
            MODLIST,
            modlist_paddr,
            nr_modules.into(),
            MODLIST_ENTRY_SIZE,
        )?;
        let modlist = read_struct(mem, MODLIST, modlist_paddr, modlist_len)?;
        info.add_boot_data(modlist_paddr, modlist_len);
        for (index, entry) in modlist
            .chunks_exact(MODLIST_ENTRY_SIZE as usize)
            .enumerate()
        {
            let start = field_u64(entry, 0, MODLIST)?;
            let size = field_u64(entry, 8, MODLIST)?;
            let end = start
                .checked_add(size)
                .ok_or(BootInfoError::ModuleOverflow { index, start, size })?;
            info.push_module(index, start, end)?;
        }
    }

    // Command line.
    if cmdline_paddr != 0 {
        let mut buf = [0u8; MAX_CMDLINE];
        // Tolerant, as Linux: a line longer than the buffer, or one that runs into unreadable
        // memory, is kept up to there (and the banner says so).
        let (len, cut) = match read_cstring(mem, CMDLINE, cmdline_paddr, &mut buf) {
            Ok(len) => (len, false),
            Err(BootInfoError::StringTooLong { .. }) => (MAX_CMDLINE, true),
            Err(BootInfoError::UnterminatedString { read, .. }) => (read.min(MAX_CMDLINE), true),
            Err(e) => return Err(e),
        };
        info.set_cmdline(buf.get(..len).unwrap_or(&[]));
        if cut {
            info.note_cmdline_cut(1);
        }
        // `len <= MAX_CMDLINE`, so `len + 1` (the NUL, or the first byte not read) cannot
        // overflow.
        info.add_boot_data(cmdline_paddr, len as u64 + 1);
    }

    if rsdp_paddr != 0 {
        info.set_rsdp(rsdp_paddr);
    }

    info.finish_memory_map()?;
    Ok(info)
}

/// Reads the NUL-terminated string `what` at `phys` into `buf`, one byte at a time, and
/// returns its length (without the NUL). Fails if the string does not fit in `buf` or
/// memory becomes unreadable before the terminator.
fn read_cstring<M: PhysMemory>(
    mem: &M,
    what: &'static str,
    phys: u64,
    buf: &mut [u8],
) -> Result<usize, BootInfoError> {
    // Up to `buf.len()` string bytes plus the terminator.
    for i in 0..=buf.len() {
        let byte = phys
            .checked_add(i as u64)
            .and_then(|addr| mem.read(addr, 1))
            .and_then(|b| b.first().copied());
        match byte {
            None if i == 0 => {
                return Err(BootInfoError::Unreadable { what, phys, len: 1 });
            }
            None => {
                return Err(BootInfoError::UnterminatedString {
                    what,
                    phys,
                    read: i,
                });
            }
            Some(0) => return Ok(i),
            Some(b) => match buf.get_mut(i) {
                Some(slot) => *slot = b,
                None => break,
            },
        }
    }
    Err(BootInfoError::StringTooLong {
        what,
        max: buf.len(),
    })
}
