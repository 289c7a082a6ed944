//! Multiboot2 boot information: the MBI (Multiboot2 information structure).
//!
//! # What it does
//!
//! [`BootInfo::from_multiboot2`] checks the magic the loader passed in `%eax`
//! ([`MULTIBOOT2_MAGIC`]), reads the MBI at the physical address passed in `%ebx` and walks
//! its tags.
//!
//! Layout (little-endian): `u32 total_size`, `u32 reserved`, then tags starting at offset
//! 8, each aligned to 8 bytes relative to the MBI start: `u32 type`, `u32 size` (`size`
//! includes the 8-byte header but not the padding to the next 8-byte boundary). The list
//! ends with an end tag (type 0). Tags used:
//!
//! | type | tag                | payload after the header                                       |
//! |-----:|--------------------|----------------------------------------------------------------|
//! | 0    | end                | none                                                           |
//! | 1    | command line       | NUL-terminated UTF-8 string                                    |
//! | 2    | boot loader name   | NUL-terminated UTF-8 string                                    |
//! | 3    | module             | `u32 mod_start`, `u32 mod_end` (exclusive), string             |
//! | 6    | memory map         | `u32 entry_size`, `u32 entry_version`, entries of `entry_size`: `u64 base_addr`, `u64 length`, `u32 type`, `u32 reserved` |
//! | 14   | ACPI old RSDP      | copy of the RSDP v1 (20 bytes)                                 |
//! | 15   | ACPI new RSDP      | copy of the RSDP v2 (36 bytes)                                 |
//!
//! All other tags (basic meminfo 4, BIOS boot device 5, framebuffer 8, ...) are skipped.
//!
//! # What it relies on
//!
//! The [`PhysMemory`] passed in: the 8-byte header is read first, then the whole MBI in one
//! read of `total_size` bytes. The ACPI RSDP is not copied: [`BootInfo::rsdp`] is the
//! physical address of the copy *inside* the MBI (`info_phys + tag offset + 8`), so the MBI
//! (reported by [`BootInfo::boot_data`]) must stay intact while the kernel reads ACPI.
//!
//! # What it guarantees
//!
//! Besides the guarantees listed in the [parent module](super), the parser rejects: a wrong
//! magic; a `total_size` outside `16..=1 MiB` or not readable in full; a tag smaller than
//! its header or running past `total_size`; a tag list without an end tag; a module,
//! memory map or RSDP tag shorter than its fixed part; a memory map `entry_size` below 24
//! or not a multiple of 8; a missing memory map tag; more than [`MAX_MODULES`](super::MAX_MODULES) modules or
//! one whose `mod_end < mod_start`; a command line or boot loader name that is too long or
//! not UTF-8; a second occurrence of tag 1, 2, 6, 14 or 15 (ambiguous). Strings end at the
//! first NUL or at the end of their tag. The new RSDP (tag 15) is preferred over the old
//! one (tag 14). A memory map's trailing bytes that do not form a whole entry are ignored.

use super::{
    BootInfo, BootInfoError, BootProtocol, MemoryKind, PhysMemory, read_struct, u32_at, u64_at,
    until_nul,
};

/// The magic value a Multiboot2 loader passes in `%eax`.
pub const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;
/// Smallest accepted `total_size`: the 8-byte header plus an 8-byte end tag.
pub const MIN_TOTAL_SIZE: u32 = 16;
/// Largest accepted `total_size` (sanity limit, 1 MiB).
pub const MAX_TOTAL_SIZE: u32 = 1 << 20;

/// Tag type: end of the tag list.
pub const TAG_END: u32 = 0;
/// Tag type: kernel command line.
pub const TAG_CMDLINE: u32 = 1;
/// Tag type: boot loader name.
pub const TAG_BOOTLOADER_NAME: u32 = 2;
/// Tag type: boot module.
pub const TAG_MODULE: u32 = 3;
/// Tag type: basic memory information (ignored).
pub const TAG_BASIC_MEMINFO: u32 = 4;
/// Tag type: memory map.
pub const TAG_MMAP: u32 = 6;
/// Tag type: copy of the ACPI 1.0 RSDP.
pub const TAG_ACPI_OLD: u32 = 14;
/// Tag type: copy of the ACPI 2.0+ RSDP.
pub const TAG_ACPI_NEW: u32 = 15;

/// Size of the RSDP v1 structure.
const RSDP_V1_SIZE: usize = 20;
/// Size of the RSDP v2 structure.
const RSDP_V2_SIZE: usize = 36;
/// Size of a tag header (`type`, `size`).
const TAG_HEADER: usize = 8;

/// Which once-only tags have been seen.
#[derive(Default)]
struct Seen {
    cmdline: bool,
    name: bool,
    mmap: bool,
    acpi_old: Option<u64>,
    acpi_new: Option<u64>,
}

/// Parses the MBI at `info_phys`; see [`BootInfo::from_multiboot2`].
pub(crate) fn parse<M: PhysMemory>(
    magic: u32,
    info_phys: u64,
    mem: &M,
) -> Result<BootInfo, BootInfoError> {
    if magic != MULTIBOOT2_MAGIC {
        return Err(BootInfoError::BadMagic {
            protocol: BootProtocol::Multiboot2,
            expected: MULTIBOOT2_MAGIC,
            found: magic,
        });
    }
    let head = read_struct(mem, "Multiboot2 information header", info_phys, 8)?;
    let total_size = u32_at(head, 0).ok_or(BootInfoError::Truncated {
        what: "Multiboot2 information header",
        offset: 0,
        needed: 8,
        available: head.len() as u64,
    })?;
    if !(MIN_TOTAL_SIZE..=MAX_TOTAL_SIZE).contains(&total_size) {
        return Err(BootInfoError::BadTotalSize {
            size: total_size,
            min: MIN_TOTAL_SIZE,
            max: MAX_TOTAL_SIZE,
        });
    }
    let mbi = read_struct(mem, "Multiboot2 information", info_phys, total_size.into())?;

    let mut info = BootInfo::empty(BootProtocol::Multiboot2);
    info.add_boot_data(info_phys, total_size.into());
    let mut seen = Seen::default();
    let mut module_index = 0usize;
    let mut off = TAG_HEADER;
    loop {
        let (Some(tag_type), Some(size)) = (u32_at(mbi, off), u32_at(mbi, off + 4)) else {
            return Err(BootInfoError::MissingEndTag { total_size });
        };
        let offset = off as u64;
        if (size as usize) < TAG_HEADER {
            return Err(BootInfoError::TagTooSmall {
                tag_type,
                offset,
                size,
            });
        }
        let data = off
            .checked_add(size as usize)
            .and_then(|end| mbi.get(off + TAG_HEADER..end));
        let Some(data) = data else {
            return Err(BootInfoError::TagOutOfBounds {
                tag_type,
                offset,
                size,
                total_size,
            });
        };
        let duplicate = BootInfoError::DuplicateTag { tag_type, offset };
        let truncated = |what: &'static str, needed: usize| BootInfoError::Truncated {
            what,
            offset,
            needed: needed as u64,
            available: size.into(),
        };
        match tag_type {
            TAG_END => break,
            TAG_CMDLINE => {
                if core::mem::replace(&mut seen.cmdline, true) {
                    return Err(duplicate);
                }
                info.set_cmdline(until_nul(data));
            }
            TAG_BOOTLOADER_NAME => {
                if core::mem::replace(&mut seen.name, true) {
                    return Err(duplicate);
                }
                info.set_bootloader_name(until_nul(data))?;
            }
            TAG_MODULE => {
                let what = "Multiboot2 module tag";
                let (Some(start), Some(end)) = (u32_at(data, 0), u32_at(data, 4)) else {
                    return Err(truncated(what, TAG_HEADER + 8));
                };
                info.push_module(module_index, start.into(), end.into())?;
                module_index += 1;
            }
            TAG_MMAP => {
                if core::mem::replace(&mut seen.mmap, true) {
                    return Err(duplicate);
                }
                let what = "Multiboot2 memory map tag";
                let (Some(entry_size), Some(entries)) = (u32_at(data, 0), data.get(8..)) else {
                    return Err(truncated(what, TAG_HEADER + 8));
                };
                if entry_size < 24 || !entry_size.is_multiple_of(8) {
                    return Err(BootInfoError::BadEntrySize { entry_size });
                }
                for (index, entry) in entries.chunks_exact(entry_size as usize).enumerate() {
                    let (Some(base), Some(len), Some(ty)) =
                        (u64_at(entry, 0), u64_at(entry, 8), u32_at(entry, 16))
                    else {
                        // Unreachable: entry_size >= 24 was checked above.
                        return Err(BootInfoError::BadEntrySize { entry_size });
                    };
                    info.push_region(index, base, len, MemoryKind::from_e820(ty))?;
                }
            }
            TAG_ACPI_OLD | TAG_ACPI_NEW => {
                let (slot, what, needed) = if tag_type == TAG_ACPI_NEW {
                    (
                        &mut seen.acpi_new,
                        "Multiboot2 ACPI new RSDP tag",
                        RSDP_V2_SIZE,
                    )
                } else {
                    (
                        &mut seen.acpi_old,
                        "Multiboot2 ACPI old RSDP tag",
                        RSDP_V1_SIZE,
                    )
                };
                if slot.is_some() {
                    return Err(duplicate);
                }
                if data.len() < needed {
                    return Err(truncated(what, TAG_HEADER + needed));
                }
                // info_phys + total_size was checked not to overflow by `read_struct`.
                *slot = Some(info_phys.saturating_add(offset + TAG_HEADER as u64));
            }
            _ => {}
        }
        // `off + size <= total_size <= 1 MiB`, so this cannot overflow.
        off = (off + size as usize + 7) & !7;
    }

    if !seen.mmap {
        return Err(BootInfoError::NoMemoryMap {
            protocol: BootProtocol::Multiboot2,
        });
    }
    if let Some(rsdp) = seen.acpi_new.or(seen.acpi_old) {
        info.set_rsdp(rsdp);
    }
    info.finish_memory_map()?;
    Ok(info)
}
