//! Boot-information parsing: turns what the boot loader left in physical memory into a
//! validated, self-contained [`BootInfo`].
//!
//! # What it does
//!
//! Two entry protocols are understood:
//!
//! * **PVH** ([`BootInfo::from_pvh`]): the Xen `hvm_start_info` structure whose physical
//!   address QEMU's `-kernel` loader passes in `%ebx` (see [`pvh`]).
//! * **Multiboot2** ([`BootInfo::from_multiboot2`]): the Multiboot2 information structure
//!   (MBI) passed by GRUB and other Multiboot2 loaders (see [`multiboot2`]).
//!
//! Both produce the same [`BootInfo`]: a memory map sorted by start address, the kernel
//! command line, the ACPI RSDP address, the boot modules, the boot loader's name (Multiboot2
//! only) and the physical ranges occupied by the boot structures themselves.
//!
//! # What it relies on
//!
//! Only on the caller's [`PhysMemory`] implementation, which maps a physical address range
//! to a byte slice (or says it cannot). The parsers never dereference raw pointers and
//! contain no `unsafe` code; all multi-byte fields are decoded with `from_le_bytes`, so
//! the code is portable and fully testable on the host with a fake memory.
//!
//! # What it guarantees
//!
//! * **No panics on any input**: every out-of-bounds, truncated, overflowing or
//!   inconsistent structure yields an `Err(`[`BootInfoError`]`)` whose `Display` is a
//!   one-line message naming the offending structure and value.
//! * **No allocation**: [`BootInfo`] is plain data with fixed-capacity arrays
//!   ([`MAX_MEMORY_REGIONS`], [`MAX_MODULES`], [`MAX_CMDLINE`], [`MAX_BOOTLOADER_NAME`]),
//!   holds no references, and can therefore be stored in a `static` once parsed.
//! * A successfully parsed memory map is non-empty, contains at least one
//!   [`MemoryKind::Usable`] region, has no zero-length regions, no region whose end
//!   overflows `u64`, is sorted by start address and has no two overlapping regions
//!   (adjacent regions are allowed; they are kept as reported, not merged).
//! * The command line and the boot loader name are valid UTF-8 without their NUL terminator;
//!   the command line has no control characters (a loader's malformed line is made so, not
//!   refused: see [`BootInfo::cmdline_fixups`]), the boot loader name is refused if malformed.

use core::fmt;

pub mod multiboot2;
pub mod pvh;

/// Read-only access to physical memory, as provided by the kernel (or a test fake).
pub trait PhysMemory {
    /// Returns the bytes at physical address `phys`, `len` long, or `None` if that range
    /// is not (entirely) readable.
    fn read(&self, phys: u64, len: usize) -> Option<&[u8]>;
}

/// Which boot protocol delivered the boot information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootProtocol {
    /// Xen PVH entry (`hvm_start_info`), as used by QEMU's `-kernel`.
    Pvh,
    /// Multiboot2 (GRUB and others).
    Multiboot2,
}

impl fmt::Display for BootProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pvh => "PVH",
            Self::Multiboot2 => "Multiboot2",
        })
    }
}

/// What a physical memory region may be used for (E820 / Multiboot2 memory types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// Ordinary RAM, free for the kernel to use (type 1).
    Usable,
    /// Reserved; must not be used (type 2, and the boot structures in
    /// [`BootInfo::boot_data`]).
    Reserved,
    /// Holds ACPI tables; reusable once they have been read (type 3).
    AcpiReclaimable,
    /// ACPI non-volatile storage; must be preserved (type 4).
    AcpiNvs,
    /// Defective RAM (type 5).
    Bad,
    /// Any other type value, as reported by the boot loader.
    Other(u32),
}

impl MemoryKind {
    /// Maps an E820-style type value (shared by PVH and Multiboot2) to a [`MemoryKind`].
    pub const fn from_e820(ty: u32) -> Self {
        match ty {
            1 => Self::Usable,
            2 => Self::Reserved,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::Bad,
            n => Self::Other(n),
        }
    }
}

/// A physical memory range `[start, start + len)` of one [`MemoryKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First physical address of the region.
    pub start: u64,
    /// Length of the region in bytes.
    pub len: u64,
    /// What the region may be used for.
    pub kind: MemoryKind,
}

impl MemoryRegion {
    /// One past the last physical address of the region (`start + len`).
    ///
    /// For regions produced by the parsers this never overflows (it is validated during
    /// parsing); for hand-built regions the result saturates at `u64::MAX`.
    pub const fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// A boot module (e.g. an initial ramdisk) loaded by the boot loader: the physical range
/// `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Module {
    /// First physical address of the module.
    pub start: u64,
    /// One past the last physical address of the module (exclusive end).
    pub end: u64,
}

/// Maximum number of (non-empty) memory map entries a [`BootInfo`] can hold.
pub const MAX_MEMORY_REGIONS: usize = 128;
/// Maximum number of boot modules a [`BootInfo`] can hold.
pub const MAX_MODULES: usize = 16;
/// Maximum length in bytes of the kernel command line, excluding its NUL terminator.
pub const MAX_CMDLINE: usize = 1024;
/// Maximum length in bytes of the boot loader name, excluding its NUL terminator.
pub const MAX_BOOTLOADER_NAME: usize = 128;
/// Maximum number of boot-structure ranges reported by [`BootInfo::boot_data`].
pub const MAX_BOOT_DATA: usize = 4;

/// Why boot information could not be parsed.
///
/// Every variant carries the offending value(s); `Display` renders a one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootInfoError {
    /// The protocol's magic value did not match.
    BadMagic {
        /// Protocol whose magic was checked.
        protocol: BootProtocol,
        /// Magic value the protocol requires.
        expected: u32,
        /// Magic value actually found.
        found: u32,
    },
    /// A structure could not be read through [`PhysMemory`].
    Unreadable {
        /// Which structure.
        what: &'static str,
        /// Physical address of the attempted read.
        phys: u64,
        /// Length of the attempted read in bytes.
        len: u64,
    },
    /// A structure's physical range `[phys, phys + len)` does not fit in the 64-bit
    /// address space (or its length does not fit in `usize`).
    RangeOverflow {
        /// Which structure.
        what: &'static str,
        /// Physical start address.
        phys: u64,
        /// Length in bytes (saturated at `u64::MAX` if it overflowed itself).
        len: u64,
    },
    /// A structure is shorter than its fixed part.
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Offset of the structure (inside the enclosing structure, e.g. the MBI).
        offset: u64,
        /// Bytes the fixed part needs.
        needed: u64,
        /// Bytes the structure declares or has available.
        available: u64,
    },
    /// The boot information carries no memory map.
    NoMemoryMap {
        /// Protocol whose boot information lacked the map.
        protocol: BootProtocol,
    },
    /// A memory map entry's `start + len` overflows `u64`.
    RegionOverflow {
        /// Index of the entry in the boot loader's map.
        index: usize,
        /// Start address of the entry.
        start: u64,
        /// Length of the entry.
        len: u64,
    },
    /// The memory map has more than [`MAX_MEMORY_REGIONS`] non-empty entries.
    TooManyRegions {
        /// The capacity that was exceeded.
        max: usize,
    },
    /// Two memory map entries overlap (ranges are half-open `[start, end)`).
    OverlappingRegions {
        /// The entry with the lower (or equal) start address.
        first: MemoryRegion,
        /// The entry that starts inside `first`.
        second: MemoryRegion,
    },
    /// The memory map has no non-empty entries.
    EmptyMemoryMap,
    /// The memory map has no [`MemoryKind::Usable`] region.
    NoUsableMemory,
    /// More boot modules than [`MAX_MODULES`].
    TooManyModules {
        /// Number of modules declared or found (a lower bound for Multiboot2).
        count: u64,
        /// The capacity that was exceeded.
        max: usize,
    },
    /// A boot module ends before it starts.
    ModuleEndBeforeStart {
        /// Index of the module.
        index: usize,
        /// Declared start address.
        start: u64,
        /// Declared end address.
        end: u64,
    },
    /// A boot module's `start + size` overflows `u64`.
    ModuleOverflow {
        /// Index of the module.
        index: usize,
        /// Declared start address.
        start: u64,
        /// Declared size.
        size: u64,
    },
    /// A string is longer than its fixed-capacity buffer.
    StringTooLong {
        /// Which string.
        what: &'static str,
        /// Capacity in bytes (excluding the NUL terminator).
        max: usize,
    },
    /// A string is not valid UTF-8.
    InvalidUtf8 {
        /// Which string.
        what: &'static str,
        /// Byte offset of the first invalid byte.
        valid_up_to: usize,
    },
    /// A NUL-terminated string runs into unreadable memory before its terminator.
    UnterminatedString {
        /// Which string.
        what: &'static str,
        /// Physical address of the string.
        phys: u64,
        /// Bytes read before memory ended.
        read: usize,
    },
    /// The Multiboot2 `total_size` is outside the accepted range.
    BadTotalSize {
        /// The declared `total_size`.
        size: u32,
        /// Smallest accepted value.
        min: u32,
        /// Largest accepted value.
        max: u32,
    },
    /// A Multiboot2 tag's size is smaller than the 8-byte tag header.
    TagTooSmall {
        /// Tag type.
        tag_type: u32,
        /// Offset of the tag in the MBI.
        offset: u64,
        /// Declared tag size.
        size: u32,
    },
    /// A Multiboot2 tag extends past the MBI's `total_size`.
    TagOutOfBounds {
        /// Tag type.
        tag_type: u32,
        /// Offset of the tag in the MBI.
        offset: u64,
        /// Declared tag size.
        size: u32,
        /// The MBI's `total_size`.
        total_size: u32,
    },
    /// A Multiboot2 tag type that must appear at most once appeared again.
    DuplicateTag {
        /// Tag type.
        tag_type: u32,
        /// Offset of the second occurrence in the MBI.
        offset: u64,
    },
    /// The Multiboot2 tag list ended without an end tag (type 0).
    MissingEndTag {
        /// The MBI's `total_size`.
        total_size: u32,
    },
    /// The Multiboot2 memory map's `entry_size` is invalid.
    BadEntrySize {
        /// The declared `entry_size`.
        entry_size: u32,
    },
}

/// Formats a memory region as `[start, end)` (or `[start, +len)` if the end overflows).
struct Range(u64, u64);

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.checked_add(self.1) {
            Some(end) => write!(f, "[{:#x}, {:#x})", self.0, end),
            None => write!(f, "[{:#x}, +{:#x})", self.0, self.1),
        }
    }
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadMagic {
                protocol,
                expected,
                found,
            } => write!(
                f,
                "bad {protocol} magic: expected {expected:#010x}, found {found:#010x}"
            ),
            Self::Unreadable { what, phys, len } => write!(
                f,
                "cannot read {what}: {len} bytes at physical address {phys:#x} are not readable"
            ),
            Self::RangeOverflow { what, phys, len } => write!(
                f,
                "{what} at physical address {phys:#x} with length {len:#x} overflows the address space"
            ),
            Self::Truncated {
                what,
                offset,
                needed,
                available,
            } => write!(
                f,
                "truncated {what} at offset {offset:#x}: needs {needed} bytes, only {available} available"
            ),
            Self::NoMemoryMap {
                protocol: BootProtocol::Pvh,
            } => f.write_str("PVH start_info has no memory map"),
            Self::NoMemoryMap {
                protocol: BootProtocol::Multiboot2,
            } => f.write_str("Multiboot2 information has no memory map tag (type 6)"),
            Self::RegionOverflow { index, start, len } => write!(
                f,
                "memory map entry {index} (start {start:#x}, length {len:#x}) overflows the 64-bit address space"
            ),
            Self::TooManyRegions { max } => {
                write!(f, "memory map has more than {max} non-empty entries")
            }
            Self::OverlappingRegions { first, second } => write!(
                f,
                "memory map entries overlap: {} ({:?}) and {} ({:?})",
                Range(first.start, first.len),
                first.kind,
                Range(second.start, second.len),
                second.kind
            ),
            Self::EmptyMemoryMap => f.write_str("memory map has no non-empty entries"),
            Self::NoUsableMemory => f.write_str("memory map has no usable RAM region"),
            Self::TooManyModules { count, max } => {
                write!(
                    f,
                    "too many boot modules: {count} (at most {max} supported)"
                )
            }
            Self::ModuleEndBeforeStart { index, start, end } => write!(
                f,
                "boot module {index} ends ({end:#x}) before it starts ({start:#x})"
            ),
            Self::ModuleOverflow { index, start, size } => write!(
                f,
                "boot module {index} (start {start:#x}, size {size:#x}) overflows the 64-bit address space"
            ),
            Self::StringTooLong { what, max } => {
                write!(f, "{what} is longer than {max} bytes")
            }
            Self::InvalidUtf8 { what, valid_up_to } => write!(
                f,
                "{what} is not valid UTF-8 (invalid byte at offset {valid_up_to})"
            ),
            Self::UnterminatedString { what, phys, read } => write!(
                f,
                "{what} at physical address {phys:#x} has no NUL terminator before unreadable memory ({read} bytes read)"
            ),
            Self::BadTotalSize { size, min, max } => write!(
                f,
                "Multiboot2 total_size {size} is out of range (must be {min}..={max})"
            ),
            Self::TagTooSmall {
                tag_type,
                offset,
                size,
            } => write!(
                f,
                "Multiboot2 tag type {tag_type} at offset {offset:#x} has size {size}, smaller than its 8-byte header"
            ),
            Self::TagOutOfBounds {
                tag_type,
                offset,
                size,
                total_size,
            } => write!(
                f,
                "Multiboot2 tag type {tag_type} at offset {offset:#x} with size {size} runs past total_size {total_size}"
            ),
            Self::DuplicateTag { tag_type, offset } => write!(
                f,
                "Multiboot2 tag type {tag_type} appears more than once (again at offset {offset:#x})"
            ),
            Self::MissingEndTag { total_size } => write!(
                f,
                "Multiboot2 tag list has no end tag within total_size {total_size}"
            ),
            Self::BadEntrySize { entry_size } => write!(
                f,
                "Multiboot2 memory map entry_size {entry_size} is invalid (must be >= 24 and a multiple of 8)"
            ),
        }
    }
}

impl core::error::Error for BootInfoError {}

const EMPTY_REGION: MemoryRegion = MemoryRegion {
    start: 0,
    len: 0,
    kind: MemoryKind::Reserved,
};
const EMPTY_MODULE: Module = Module { start: 0, end: 0 };

/// How the kernel command line was made usable (see [`BootInfo::cmdline_fixups`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CmdlineFixups {
    /// Bytes dropped because the line is longer than [`MAX_CMDLINE`] (at least this many).
    pub dropped: usize,
    /// Bytes replaced by `?`: invalid UTF-8 or control characters.
    pub replaced: usize,
}

impl CmdlineFixups {
    /// Whether anything was changed.
    pub fn any(&self) -> bool {
        self.dropped != 0 || self.replaced != 0
    }
}

/// Validated boot information, independent of the protocol that delivered it.
///
/// Plain data (no references), about 5 KiB; see the [module documentation](self) for the
/// guarantees a successfully parsed value gives.
#[derive(Debug, Clone)]
pub struct BootInfo {
    protocol: BootProtocol,
    regions: [MemoryRegion; MAX_MEMORY_REGIONS],
    region_count: usize,
    modules: [Module; MAX_MODULES],
    module_count: usize,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
    cmdline_fixups: CmdlineFixups,
    loader_name: [u8; MAX_BOOTLOADER_NAME],
    loader_name_len: Option<usize>,
    rsdp: Option<u64>,
    boot_data: [MemoryRegion; MAX_BOOT_DATA],
    boot_data_count: usize,
}

impl BootInfo {
    /// An empty value for `protocol`, filled in by the parsers.
    pub(crate) const fn empty(protocol: BootProtocol) -> Self {
        Self {
            protocol,
            regions: [EMPTY_REGION; MAX_MEMORY_REGIONS],
            region_count: 0,
            modules: [EMPTY_MODULE; MAX_MODULES],
            module_count: 0,
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
            cmdline_fixups: CmdlineFixups {
                dropped: 0,
                replaced: 0,
            },
            loader_name: [0; MAX_BOOTLOADER_NAME],
            loader_name_len: None,
            rsdp: None,
            boot_data: [EMPTY_REGION; MAX_BOOT_DATA],
            boot_data_count: 0,
        }
    }

    /// Parses a PVH `hvm_start_info` at physical address `start_info_phys` (the value QEMU
    /// passes in `%ebx`). See [`pvh`] for the layout and the checks.
    pub fn from_pvh(
        start_info_phys: u64,
        mem: &impl PhysMemory,
    ) -> Result<BootInfo, BootInfoError> {
        pvh::parse(start_info_phys, mem)
    }

    /// Parses a Multiboot2 information structure at physical address `info_phys` (`%ebx`),
    /// after checking the `magic` value the loader passed in `%eax`. See [`multiboot2`].
    pub fn from_multiboot2(
        magic: u32,
        info_phys: u64,
        mem: &impl PhysMemory,
    ) -> Result<BootInfo, BootInfoError> {
        multiboot2::parse(magic, info_phys, mem)
    }

    /// The boot protocol that delivered this information.
    pub fn protocol(&self) -> BootProtocol {
        self.protocol
    }

    /// The memory map: non-empty, non-overlapping regions sorted by start address.
    pub fn memory_map(&self) -> &[MemoryRegion] {
        self.regions.get(..self.region_count).unwrap_or(&[])
    }

    /// The kernel command line without its NUL terminator; `""` if there is none.
    pub fn cmdline(&self) -> &str {
        self.cmdline
            .get(..self.cmdline_len)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// What was changed to make the loader's command line usable (nothing for a well-formed
    /// one).
    pub fn cmdline_fixups(&self) -> CmdlineFixups {
        self.cmdline_fixups
    }

    /// Physical address of the ACPI RSDP, if the boot loader provided one.
    pub fn rsdp(&self) -> Option<u64> {
        self.rsdp
    }

    /// The boot modules, in the order the boot loader listed them.
    pub fn modules(&self) -> &[Module] {
        self.modules.get(..self.module_count).unwrap_or(&[])
    }

    /// The boot loader's name (Multiboot2 tag 2), if provided.
    pub fn bootloader_name(&self) -> Option<&str> {
        let len = self.loader_name_len?;
        core::str::from_utf8(self.loader_name.get(..len)?).ok()
    }

    /// Total bytes of [`MemoryKind::Usable`] regions in the memory map.
    ///
    /// Note that the usable regions may contain the kernel image, the modules and the
    /// ranges in [`boot_data`](Self::boot_data).
    pub fn usable_bytes(&self) -> u64 {
        self.memory_map()
            .iter()
            .filter(|r| r.kind == MemoryKind::Usable)
            .fold(0u64, |acc, r| acc.saturating_add(r.len))
    }

    /// Physical ranges holding the boot structures this information was parsed from
    /// (kind [`MemoryKind::Reserved`]): PVH `start_info`, memory map array, command line
    /// and module list, or the whole Multiboot2 MBI. The kernel must not reuse them while
    /// it still reads them (e.g. the ACPI RSDP copy inside the MBI). In discovery order;
    /// ranges may be adjacent or overlap.
    pub fn boot_data(&self) -> &[MemoryRegion] {
        self.boot_data.get(..self.boot_data_count).unwrap_or(&[])
    }

    // ---- builders used by the protocol parsers -------------------------------------------

    /// Records a boot-structure range; zero-length ranges are ignored.
    pub(crate) fn add_boot_data(&mut self, start: u64, len: u64) {
        if len == 0 {
            return;
        }
        if let Some(slot) = self.boot_data.get_mut(self.boot_data_count) {
            *slot = MemoryRegion {
                start,
                len,
                kind: MemoryKind::Reserved,
            };
            self.boot_data_count += 1;
        }
    }

    /// Adds memory map entry number `index` (as numbered by the boot loader). Zero-length
    /// entries are skipped without counting against the capacity.
    pub(crate) fn push_region(
        &mut self,
        index: usize,
        start: u64,
        len: u64,
        kind: MemoryKind,
    ) -> Result<(), BootInfoError> {
        if len == 0 {
            return Ok(());
        }
        if start.checked_add(len).is_none() {
            return Err(BootInfoError::RegionOverflow { index, start, len });
        }
        let slot =
            self.regions
                .get_mut(self.region_count)
                .ok_or(BootInfoError::TooManyRegions {
                    max: MAX_MEMORY_REGIONS,
                })?;
        *slot = MemoryRegion { start, len, kind };
        self.region_count += 1;
        Ok(())
    }

    /// Sorts the memory map by start address and checks it is non-empty, overlap-free and
    /// contains usable RAM.
    pub(crate) fn finish_memory_map(&mut self) -> Result<(), BootInfoError> {
        let count = self.region_count.min(MAX_MEMORY_REGIONS);
        let map = &mut self.regions[..count];
        if map.is_empty() {
            return Err(BootInfoError::EmptyMemoryMap);
        }
        // Stable insertion sort by start address (at most MAX_MEMORY_REGIONS entries).
        for i in 1..map.len() {
            let mut j = i;
            while j > 0 && map[j - 1].start > map[j].start {
                map.swap(j - 1, j);
                j -= 1;
            }
        }
        // With the map sorted by start, any overlap implies an overlap of two neighbours.
        for pair in map.windows(2) {
            if let [first, second] = *pair
                && second.start < first.end()
            {
                return Err(BootInfoError::OverlappingRegions { first, second });
            }
        }
        if !map.iter().any(|r| r.kind == MemoryKind::Usable) {
            return Err(BootInfoError::NoUsableMemory);
        }
        Ok(())
    }

    /// Adds boot module number `index` with range `[start, end)`.
    pub(crate) fn push_module(
        &mut self,
        index: usize,
        start: u64,
        end: u64,
    ) -> Result<(), BootInfoError> {
        if end < start {
            return Err(BootInfoError::ModuleEndBeforeStart { index, start, end });
        }
        let slot =
            self.modules
                .get_mut(self.module_count)
                .ok_or(BootInfoError::TooManyModules {
                    count: (self.module_count as u64).saturating_add(1),
                    max: MAX_MODULES,
                })?;
        *slot = Module { start, end };
        self.module_count += 1;
        Ok(())
    }

    /// Stores the command line (bytes without NUL terminator), tolerantly as Linux does: what
    /// does not fit in [`MAX_CMDLINE`] bytes is dropped (at a character boundary), and each
    /// byte of an invalid UTF-8 sequence and each control character (which could drive the
    /// console) becomes `?`. [`BootInfo::cmdline_fixups`] says what was changed.
    pub(crate) fn set_cmdline(&mut self, bytes: &[u8]) {
        let mut len = 0;
        let mut fixups = CmdlineFixups {
            dropped: 0,
            replaced: 0,
        };
        let mut full = false;
        for chunk in bytes.utf8_chunks() {
            for c in chunk.valid().chars() {
                let mut utf8 = [0u8; 4];
                let encoded: &[u8] = if c.is_control() {
                    fixups.replaced += c.len_utf8();
                    b"?"
                } else {
                    c.encode_utf8(&mut utf8).as_bytes()
                };
                if full || len + encoded.len() > MAX_CMDLINE {
                    full = true;
                    fixups.dropped += c.len_utf8();
                    continue;
                }
                self.cmdline[len..len + encoded.len()].copy_from_slice(encoded);
                len += encoded.len();
            }
            for _ in chunk.invalid() {
                if full || len >= MAX_CMDLINE {
                    full = true;
                    fixups.dropped += 1;
                    continue;
                }
                self.cmdline[len] = b'?';
                len += 1;
                fixups.replaced += 1;
            }
        }
        self.cmdline_len = len;
        self.cmdline_fixups = fixups;
    }

    /// Records that the loader's command line went on past what was read (`extra` bytes at
    /// least, or unreadable memory before its end).
    pub(crate) fn note_cmdline_cut(&mut self, extra: usize) {
        self.cmdline_fixups.dropped += extra;
    }

    /// Stores the boot loader name (bytes without NUL terminator).
    pub(crate) fn set_bootloader_name(&mut self, bytes: &[u8]) -> Result<(), BootInfoError> {
        self.loader_name_len = Some(store_str(&mut self.loader_name, bytes, "boot loader name")?);
        Ok(())
    }

    /// Records the RSDP physical address.
    pub(crate) fn set_rsdp(&mut self, phys: u64) {
        self.rsdp = Some(phys);
    }
}

/// Validates `bytes` as UTF-8 that fits in `buf`, copies it there and returns its length.
fn store_str(buf: &mut [u8], bytes: &[u8], what: &'static str) -> Result<usize, BootInfoError> {
    let max = buf.len();
    let dst = buf
        .get_mut(..bytes.len())
        .ok_or(BootInfoError::StringTooLong { what, max })?;
    if let Err(e) = core::str::from_utf8(bytes) {
        return Err(BootInfoError::InvalidUtf8 {
            what,
            valid_up_to: e.valid_up_to(),
        });
    }
    dst.copy_from_slice(bytes);
    Ok(bytes.len())
}

/// The bytes of `bytes` before the first NUL (all of them if there is none).
pub(crate) fn until_nul(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(n) => bytes.get(..n).unwrap_or(bytes),
        None => bytes,
    }
}

/// Little-endian `u32` at `off` in `b`, or `None` if out of bounds.
pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(4)?;
    let arr: [u8; 4] = b.get(off..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(arr))
}

/// Little-endian `u64` at `off` in `b`, or `None` if out of bounds.
pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let end = off.checked_add(8)?;
    let arr: [u8; 8] = b.get(off..end)?.try_into().ok()?;
    Some(u64::from_le_bytes(arr))
}

/// Reads `len` bytes of structure `what` at `phys`, checking the range first.
pub(crate) fn read_struct<'m, M: PhysMemory>(
    mem: &'m M,
    what: &'static str,
    phys: u64,
    len: u64,
) -> Result<&'m [u8], BootInfoError> {
    let Some(len_usize) = usize::try_from(len)
        .ok()
        .filter(|_| phys.checked_add(len).is_some())
    else {
        return Err(BootInfoError::RangeOverflow { what, phys, len });
    };
    match mem.read(phys, len_usize) {
        // A misbehaving PhysMemory returning a short slice is treated as unreadable.
        Some(b) if b.len() >= len_usize => Ok(b.get(..len_usize).unwrap_or(b)),
        _ => Err(BootInfoError::Unreadable { what, phys, len }),
    }
}
