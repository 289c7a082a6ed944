//! ELF64 loader front end: validates a user program image and describes what to map.
//!
//! # What it does
//!
//! [`Program::parse`] reads an ELF64 image from a byte slice and returns its entry point and
//! its loadable (`PT_LOAD`) segments, sorted by virtual address, as [`Segment`]s: where each
//! goes in the user address space, which bytes of the image it starts with, and whether it
//! is writable or executable. The kernel then maps [`Segment::pages`] with those permissions,
//! copies [`Segment::file_bytes`] to [`Segment::vaddr`] and leaves the rest zeroed.
//!
//! Only what the kernel can run is accepted: **static, non-PIE x86-64 executables**
//! (`ET_EXEC`, `EM_X86_64`, ELFCLASS64, little-endian). Position-independent executables
//! (`ET_DYN`), programs that need an interpreter or a dynamic section, and programs with
//! thread-local storage are rejected, each with its own message.
//!
//! # What it relies on
//!
//! Nothing but the image bytes and the allowed user range. Every field is decoded with
//! `from_le_bytes` from bounds-checked subslices: no pointer casts, no `unsafe`, no heap.
//!
//! # What it guarantees
//!
//! * **No panics, no trust**: any malformed, truncated, overflowing or hostile image yields
//!   an `Err(`[`ElfError`]`)` whose `Display` is a one-line message with the offending values.
//! * For an accepted [`Program`]:
//!   * 1 to [`MAX_SEGMENTS`] segments, sorted by `vaddr`, each with `mem_size > 0` and
//!     `file_size <= mem_size`;
//!   * each segment's file range `file_offset..file_offset + file_size` lies inside the image
//!     (so [`Segment::file_bytes`] returns exactly those bytes);
//!   * each segment's page range ([`Segment::pages`], the 4 KiB pages covering
//!     `vaddr..vaddr + mem_size`) lies inside `user` and no address computation overflows;
//!   * no segment is both writable and executable (W^X);
//!   * no two segments share a page (a shared page would need two sets of permissions);
//!   * the entry point lies inside an executable segment.
//!
//! # Decisions
//!
//! * **Empty segments**: a `PT_LOAD` with `p_memsz == 0` (and therefore `p_filesz == 0`) maps
//!   nothing, so it is skipped: its address, offset, alignment and flags are not checked and
//!   it does not count towards [`MAX_SEGMENTS`].
//! * **Alignment**: the loader copies file bytes into fresh frames, so it never needs a
//!   segment's file offset to match its address. It requires only that `p_align` be 0, 1 or a
//!   power of two, and, when `p_align >= 4096` (the segment claims to be mappable page by
//!   page), that `p_vaddr` and `p_offset` be congruent modulo the 4 KiB page, as the ELF
//!   specification demands of such images. Larger alignments (2 MiB from some linkers) are not
//!   checked beyond that page, and `p_vaddr` itself need not be page-aligned.
//! * **Thread-local storage**: `PT_TLS` is rejected ("thread-local storage unsupported"): the
//!   kernel does not set up a TLS block or `FS` base for user programs.
//! * **Other program headers** (`PT_NULL`, `PT_NOTE`, `PT_PHDR`, `PT_GNU_STACK`,
//!   `PT_GNU_RELRO`, `PT_GNU_EH_FRAME`, ...) are ignored, as are the section headers,
//!   `e_flags`, `EI_OSABI` and `p_paddr`. The readable flag (`PF_R`) is not reported: every
//!   user page is readable on x86-64.
//! * `e_phnum` is taken as the count; extended numbering (`PN_XNUM`, 0xffff) is not followed.

use core::fmt;
use core::ops::Range;

/// Most loadable (non-empty `PT_LOAD`) segments a [`Program`] may have.
pub const MAX_SEGMENTS: usize = 16;

/// Page size the segment checks work in (x86-64 base pages).
const PAGE_SIZE: u64 = 4096;

/// Size of the ELF64 file header.
const EHDR_SIZE: usize = 64;
/// Size of one ELF64 program header (`e_phentsize` must equal it).
const PHDR_SIZE: u16 = 56;

const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u8 = 1;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_TLS: u32 = 7;

const PF_X: u32 = 1;
const PF_W: u32 = 2;

/// One loadable segment of a validated [`Program`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Virtual address of the segment's first byte (`p_vaddr`; need not be page-aligned).
    pub vaddr: u64,
    /// Size in memory (`p_memsz`, never 0 in a parsed program); bytes past `file_size` are
    /// zero.
    pub mem_size: u64,
    /// Offset of the segment's initial bytes in the image (`p_offset`).
    pub file_offset: u64,
    /// How many bytes to copy from the image (`p_filesz`, at most `mem_size`).
    pub file_size: u64,
    /// Mapped writable (`PF_W`).
    pub writable: bool,
    /// Mapped executable (`PF_X`); never together with `writable` in a parsed program.
    pub executable: bool,
}

impl Segment {
    /// The image bytes to copy to [`vaddr`](Self::vaddr): `image[file_offset..][..file_size]`.
    ///
    /// For a segment returned by [`Program::parse`] and the same `image`, this range was
    /// validated and is returned exactly. For a hand-built segment or another image whose
    /// length does not cover the range, the result is empty (never a panic).
    pub fn file_bytes<'a>(&self, image: &'a [u8]) -> &'a [u8] {
        file_range(self.file_offset, self.file_size, image.len())
            .and_then(|r| image.get(r))
            .unwrap_or(&[])
    }

    /// The page-aligned virtual range `[start, end)` covering `vaddr..vaddr + mem_size`
    /// (4 KiB pages).
    ///
    /// For a segment returned by [`Program::parse`] this never overflows and lies inside the
    /// `user` range it was parsed with; for a hand-built segment the end saturates at the last
    /// page boundary below 2^64.
    pub fn pages(&self) -> Range<u64> {
        let start = page_down(self.vaddr);
        let end = self
            .vaddr
            .checked_add(self.mem_size)
            .and_then(page_up)
            .unwrap_or(page_down(u64::MAX));
        start..end
    }
}

/// A validated static executable: entry point and loadable segments.
///
/// Plain data of fixed size (no heap, no references to the image); see the
/// [module documentation](self) for what a parsed program guarantees.
#[derive(Debug, Clone)]
pub struct Program {
    entry: u64,
    segments: [Segment; MAX_SEGMENTS],
    count: usize,
}

const EMPTY_SEGMENT: Segment = Segment {
    vaddr: 0,
    mem_size: 0,
    file_offset: 0,
    file_size: 0,
    writable: false,
    executable: false,
};

impl Program {
    /// Parses and validates the ELF64 image `image`, whose segments must lie (page-rounded)
    /// inside the virtual range `user`.
    ///
    /// The checks, in order: file header (size, magic, class, byte order, versions, type,
    /// machine, program header entry size), program header table bounds, no `PT_INTERP`,
    /// `PT_DYNAMIC` or `PT_TLS` anywhere in the table, then each `PT_LOAD` in table order (file
    /// size vs memory size, then, unless it is empty, file range, address overflow, `user`
    /// range, alignment, W^X and room among the [`MAX_SEGMENTS`]), then at least one segment,
    /// no overlaps and the entry point. The first failing check is reported.
    pub fn parse(image: &[u8], user: Range<u64>) -> Result<Program, ElfError> {
        let header = Header::parse(image)?;
        let table = header.program_headers(image)?;

        // Types first, so a dynamically linked program is reported as such rather than by
        // whatever its loadable segments look like.
        for (index, ph) in program_headers(table) {
            match ph.p_type {
                PT_INTERP | PT_DYNAMIC => {
                    return Err(ElfError::DynamicLinking {
                        index,
                        p_type: ph.p_type,
                    });
                }
                PT_TLS => return Err(ElfError::ThreadLocalStorage { index }),
                _ => {}
            }
        }

        let mut program = Program {
            entry: header.entry,
            segments: [EMPTY_SEGMENT; MAX_SEGMENTS],
            count: 0,
        };
        // Program header index of each stored segment, for error messages.
        let mut indices = [0u16; MAX_SEGMENTS];
        for (index, ph) in program_headers(table) {
            if ph.p_type != PT_LOAD {
                continue;
            }
            let Some(segment) = ph.validate_load(index, image.len(), &user)? else {
                continue;
            };
            let (Some(slot), Some(slot_index)) = (
                program.segments.get_mut(program.count),
                indices.get_mut(program.count),
            ) else {
                return Err(ElfError::TooManySegments { max: MAX_SEGMENTS });
            };
            *slot = segment;
            *slot_index = index;
            program.count += 1;
        }
        if program.count == 0 {
            return Err(ElfError::NoLoadableSegment);
        }

        let count = program.count;
        sort_by_vaddr(&mut program.segments[..count], &mut indices[..count]);
        for (pair, index_pair) in program.segments().windows(2).zip(indices.windows(2)) {
            if let ([first, second], &[first_index, second_index]) = (pair, index_pair)
                && first.pages().end > second.pages().start
            {
                return Err(ElfError::OverlappingSegments {
                    first: first_index,
                    second: second_index,
                    page: second.pages().start,
                });
            }
        }

        let entry_ok = program.segments().iter().any(|s| {
            s.executable && header.entry >= s.vaddr && header.entry - s.vaddr < s.mem_size
        });
        if !entry_ok {
            return Err(ElfError::EntryNotExecutable {
                entry: header.entry,
            });
        }
        Ok(program)
    }

    /// The entry point (`e_entry`): where the program starts, inside an executable segment.
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// The loadable segments, sorted by [`Segment::vaddr`], non-overlapping at page
    /// granularity.
    pub fn segments(&self) -> &[Segment] {
        self.segments.get(..self.count).unwrap_or(&[])
    }
}

/// Why an ELF image was rejected. `index` fields are program header indices (from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// The image is shorter than the 64-byte ELF64 file header.
    TooShort {
        /// Length of the image in bytes.
        len: usize,
    },
    /// The image does not start with `\x7fELF`.
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// `EI_CLASS` is not ELFCLASS64 (2).
    NotElf64 {
        /// The `EI_CLASS` byte found.
        class: u8,
    },
    /// `EI_DATA` is not ELFDATA2LSB (1).
    NotLittleEndian {
        /// The `EI_DATA` byte found.
        data: u8,
    },
    /// `EI_VERSION` is not 1 (EV_CURRENT).
    BadIdentVersion {
        /// The `EI_VERSION` byte found.
        version: u8,
    },
    /// `e_version` is not 1 (EV_CURRENT).
    BadVersion {
        /// The `e_version` found.
        version: u32,
    },
    /// `e_type` is ET_DYN: a position-independent executable or a shared object.
    PositionIndependent,
    /// `e_type` is neither ET_EXEC nor ET_DYN (a relocatable object, core file, ...).
    NotExecutable {
        /// The `e_type` found.
        e_type: u16,
    },
    /// `e_machine` is not EM_X86_64 (62).
    WrongMachine {
        /// The `e_machine` found.
        machine: u16,
    },
    /// `e_phentsize` is not 56 (the size of an ELF64 program header).
    BadProgramHeaderSize {
        /// The `e_phentsize` found.
        size: u16,
    },
    /// The program header table does not lie inside the image.
    ProgramHeadersOutOfBounds {
        /// `e_phoff`.
        offset: u64,
        /// `e_phnum`.
        count: u16,
        /// Length of the image in bytes.
        image_len: usize,
    },
    /// More than [`MAX_SEGMENTS`] non-empty `PT_LOAD` segments.
    TooManySegments {
        /// [`MAX_SEGMENTS`].
        max: usize,
    },
    /// No non-empty `PT_LOAD` segment: nothing to run.
    NoLoadableSegment,
    /// A `PT_INTERP` or `PT_DYNAMIC` header: the program needs dynamic linking.
    DynamicLinking {
        /// Index of the offending program header.
        index: u16,
        /// Its type (3 for `PT_INTERP`, 2 for `PT_DYNAMIC`).
        p_type: u32,
    },
    /// A `PT_TLS` header: the kernel does not set up thread-local storage.
    ThreadLocalStorage {
        /// Index of the offending program header.
        index: u16,
    },
    /// A `PT_LOAD` with more file bytes than memory bytes.
    FileSizeExceedsMemSize {
        /// Index of the offending program header.
        index: u16,
        /// `p_filesz`.
        file_size: u64,
        /// `p_memsz`.
        mem_size: u64,
    },
    /// A `PT_LOAD` whose file range overflows or runs past the end of the image.
    SegmentOutsideImage {
        /// Index of the offending program header.
        index: u16,
        /// `p_offset`.
        offset: u64,
        /// `p_filesz`.
        file_size: u64,
        /// Length of the image in bytes.
        image_len: usize,
    },
    /// A `PT_LOAD` whose end (`p_vaddr + p_memsz`, rounded up to a page) overflows 64 bits.
    SegmentAddressOverflow {
        /// Index of the offending program header.
        index: u16,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_memsz`.
        mem_size: u64,
    },
    /// A `PT_LOAD` whose pages are not all inside the allowed user range.
    SegmentOutsideUser {
        /// Index of the offending program header.
        index: u16,
        /// The segment's page range (see [`Segment::pages`]).
        pages: Range<u64>,
        /// The allowed range passed to [`Program::parse`].
        user: Range<u64>,
    },
    /// A `PT_LOAD` whose `p_align` is neither 0, 1 nor a power of two.
    BadAlignment {
        /// Index of the offending program header.
        index: u16,
        /// `p_align`.
        align: u64,
    },
    /// A page-aligned (`p_align >= 4096`) `PT_LOAD` whose `p_vaddr` and `p_offset` differ
    /// modulo the page size.
    MisalignedSegment {
        /// Index of the offending program header.
        index: u16,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_offset`.
        offset: u64,
        /// `p_align`.
        align: u64,
    },
    /// A `PT_LOAD` that is both writable and executable (W^X).
    WriteAndExecute {
        /// Index of the offending program header.
        index: u16,
        /// `p_vaddr`.
        vaddr: u64,
    },
    /// Two `PT_LOAD` segments overlap or share a page.
    OverlappingSegments {
        /// Index of the lower segment's program header.
        first: u16,
        /// Index of the higher segment's program header.
        second: u16,
        /// The first page of the higher segment, which the lower one also covers.
        page: u64,
    },
    /// The entry point is not inside an executable segment.
    EntryNotExecutable {
        /// `e_entry`.
        entry: u64,
    },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => write!(
                f,
                "ELF image is {len} bytes, shorter than the {EHDR_SIZE}-byte ELF64 header"
            ),
            Self::BadMagic { found } => write!(
                f,
                "not an ELF image: magic is {found:02x?}, expected [7f, 45, 4c, 46] (\\x7fELF)"
            ),
            Self::NotElf64 { class } => {
                write!(
                    f,
                    "ELF class {class} is not ELFCLASS64 (2): not a 64-bit image"
                )
            }
            Self::NotLittleEndian { data } => write!(
                f,
                "ELF data encoding {data} is not ELFDATA2LSB (1): not a little-endian image"
            ),
            Self::BadIdentVersion { version } => {
                write!(f, "ELF identification version {version} is not 1")
            }
            Self::BadVersion { version } => write!(f, "ELF e_version {version} is not 1"),
            Self::PositionIndependent => f.write_str(
                "ELF type ET_DYN (position-independent executable or shared object) unsupported: \
                 only static non-PIE executables (ET_EXEC) are loaded",
            ),
            Self::NotExecutable { e_type } => {
                write!(f, "ELF type {e_type} is not an executable (ET_EXEC, 2)")
            }
            Self::WrongMachine { machine } => {
                write!(f, "ELF machine {machine} is not x86-64 (EM_X86_64, 62)")
            }
            Self::BadProgramHeaderSize { size } => {
                write!(f, "ELF program header entry size {size} is not {PHDR_SIZE}")
            }
            Self::ProgramHeadersOutOfBounds {
                offset,
                count,
                image_len,
            } => write!(
                f,
                "ELF program header table ({count} entries at offset {offset:#x}) does not fit \
                 in the {image_len}-byte image"
            ),
            Self::TooManySegments { max } => {
                write!(f, "ELF image has more than {max} loadable segments")
            }
            Self::NoLoadableSegment => f.write_str("ELF image has no non-empty PT_LOAD segment"),
            Self::DynamicLinking { index, p_type } => {
                let what = if *p_type == PT_INTERP {
                    "PT_INTERP"
                } else {
                    "PT_DYNAMIC"
                };
                write!(
                    f,
                    "ELF program header {index} is {what}: dynamic linking unsupported \
                     (only static executables are loaded)"
                )
            }
            Self::ThreadLocalStorage { index } => write!(
                f,
                "ELF program header {index} is PT_TLS: thread-local storage unsupported"
            ),
            Self::FileSizeExceedsMemSize {
                index,
                file_size,
                mem_size,
            } => write!(
                f,
                "ELF segment {index}: file size {file_size:#x} exceeds memory size {mem_size:#x}"
            ),
            Self::SegmentOutsideImage {
                index,
                offset,
                file_size,
                image_len,
            } => write!(
                f,
                "ELF segment {index}: file range at offset {offset:#x} with size {file_size:#x} \
                 runs past the end of the {image_len}-byte image"
            ),
            Self::SegmentAddressOverflow {
                index,
                vaddr,
                mem_size,
            } => write!(
                f,
                "ELF segment {index}: address {vaddr:#x} + memory size {mem_size:#x} overflows \
                 the 64-bit address space"
            ),
            Self::SegmentOutsideUser { index, pages, user } => write!(
                f,
                "ELF segment {index}: pages {:#x}..{:#x} are outside the user range {:#x}..{:#x}",
                pages.start, pages.end, user.start, user.end
            ),
            Self::BadAlignment { index, align } => write!(
                f,
                "ELF segment {index}: alignment {align:#x} is not a power of two"
            ),
            Self::MisalignedSegment {
                index,
                vaddr,
                offset,
                align,
            } => write!(
                f,
                "ELF segment {index}: address {vaddr:#x} and file offset {offset:#x} differ \
                 modulo the page size (alignment {align:#x})"
            ),
            Self::WriteAndExecute { index, vaddr } => write!(
                f,
                "ELF segment {index} at {vaddr:#x} is both writable and executable (W^X violation)"
            ),
            Self::OverlappingSegments {
                first,
                second,
                page,
            } => write!(
                f,
                "ELF segments {first} and {second} overlap or share the page at {page:#x}"
            ),
            Self::EntryNotExecutable { entry } => write!(
                f,
                "ELF entry point {entry:#x} is not inside an executable segment"
            ),
        }
    }
}

impl core::error::Error for ElfError {}

/// The fields of the ELF64 file header the loader uses.
struct Header {
    entry: u64,
    phoff: u64,
    phnum: u16,
}

impl Header {
    /// Decodes and checks the file header at the start of `image`.
    fn parse(image: &[u8]) -> Result<Header, ElfError> {
        let ehdr = image
            .get(..EHDR_SIZE)
            .ok_or(ElfError::TooShort { len: image.len() })?;
        let found: [u8; 4] = bytes_at(ehdr, 0);
        if found != ELF_MAGIC {
            return Err(ElfError::BadMagic { found });
        }
        let [class, data, ident_version] = bytes_at(ehdr, 4);
        if class != ELFCLASS64 {
            return Err(ElfError::NotElf64 { class });
        }
        if data != ELFDATA2LSB {
            return Err(ElfError::NotLittleEndian { data });
        }
        if ident_version != EV_CURRENT {
            return Err(ElfError::BadIdentVersion {
                version: ident_version,
            });
        }
        let version = u32_at(ehdr, 20);
        if version != u32::from(EV_CURRENT) {
            return Err(ElfError::BadVersion { version });
        }
        match u16_at(ehdr, 16) {
            ET_EXEC => {}
            ET_DYN => return Err(ElfError::PositionIndependent),
            e_type => return Err(ElfError::NotExecutable { e_type }),
        }
        let machine = u16_at(ehdr, 18);
        if machine != EM_X86_64 {
            return Err(ElfError::WrongMachine { machine });
        }
        let size = u16_at(ehdr, 54);
        if size != PHDR_SIZE {
            return Err(ElfError::BadProgramHeaderSize { size });
        }
        Ok(Header {
            entry: u64_at(ehdr, 24),
            phoff: u64_at(ehdr, 32),
            phnum: u16_at(ehdr, 56),
        })
    }

    /// The program header table: `phnum` entries of [`PHDR_SIZE`] bytes at `phoff`.
    fn program_headers<'a>(&self, image: &'a [u8]) -> Result<&'a [u8], ElfError> {
        let out_of_bounds = ElfError::ProgramHeadersOutOfBounds {
            offset: self.phoff,
            count: self.phnum,
            image_len: image.len(),
        };
        let size = u64::from(self.phnum) * u64::from(PHDR_SIZE);
        file_range(self.phoff, size, image.len())
            .and_then(|r| image.get(r))
            .ok_or(out_of_bounds)
    }
}

/// The fields of one program header the loader uses.
struct ProgramHeader {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    file_size: u64,
    mem_size: u64,
    align: u64,
}

/// The entries of a program header table, with their indices.
fn program_headers(table: &[u8]) -> impl Iterator<Item = (u16, ProgramHeader)> + '_ {
    (0u16..)
        .zip(table.chunks_exact(usize::from(PHDR_SIZE)))
        .map(|(index, ph)| {
            let header = ProgramHeader {
                p_type: u32_at(ph, 0),
                flags: u32_at(ph, 4),
                offset: u64_at(ph, 8),
                vaddr: u64_at(ph, 16),
                file_size: u64_at(ph, 32),
                mem_size: u64_at(ph, 40),
                align: u64_at(ph, 48),
            };
            (index, header)
        })
}

impl ProgramHeader {
    /// Checks `PT_LOAD` header `index` against an image of `image_len` bytes and the allowed
    /// `user` range; `Ok(None)` for an empty segment (skipped).
    fn validate_load(
        &self,
        index: u16,
        image_len: usize,
        user: &Range<u64>,
    ) -> Result<Option<Segment>, ElfError> {
        if self.file_size > self.mem_size {
            return Err(ElfError::FileSizeExceedsMemSize {
                index,
                file_size: self.file_size,
                mem_size: self.mem_size,
            });
        }
        if self.mem_size == 0 {
            return Ok(None);
        }
        if file_range(self.offset, self.file_size, image_len).is_none() {
            return Err(ElfError::SegmentOutsideImage {
                index,
                offset: self.offset,
                file_size: self.file_size,
                image_len,
            });
        }
        let Some(end_page) = self.vaddr.checked_add(self.mem_size).and_then(page_up) else {
            return Err(ElfError::SegmentAddressOverflow {
                index,
                vaddr: self.vaddr,
                mem_size: self.mem_size,
            });
        };
        let pages = page_down(self.vaddr)..end_page;
        if pages.start < user.start || pages.end > user.end {
            return Err(ElfError::SegmentOutsideUser {
                index,
                pages,
                user: user.clone(),
            });
        }
        if self.align > 1 && !self.align.is_power_of_two() {
            return Err(ElfError::BadAlignment {
                index,
                align: self.align,
            });
        }
        // Wrapping difference: 2^64 is a multiple of the page size, so the remainder is right
        // whichever of the two is larger.
        if self.align >= PAGE_SIZE
            && !self
                .vaddr
                .wrapping_sub(self.offset)
                .is_multiple_of(PAGE_SIZE)
        {
            return Err(ElfError::MisalignedSegment {
                index,
                vaddr: self.vaddr,
                offset: self.offset,
                align: self.align,
            });
        }
        let writable = self.flags & PF_W != 0;
        let executable = self.flags & PF_X != 0;
        if writable && executable {
            return Err(ElfError::WriteAndExecute {
                index,
                vaddr: self.vaddr,
            });
        }
        Ok(Some(Segment {
            vaddr: self.vaddr,
            mem_size: self.mem_size,
            file_offset: self.offset,
            file_size: self.file_size,
            writable,
            executable,
        }))
    }
}

/// Sorts `segments` by `vaddr`, moving `indices` along (insertion sort: at most
/// [`MAX_SEGMENTS`] entries, usually already sorted).
fn sort_by_vaddr(segments: &mut [Segment], indices: &mut [u16]) {
    for i in 1..segments.len().min(indices.len()) {
        let mut j = i;
        while j > 0 && segments[j - 1].vaddr > segments[j].vaddr {
            segments.swap(j - 1, j);
            indices.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// `offset..offset + size` as a `usize` range if it lies inside `len` bytes.
fn file_range(offset: u64, size: u64, len: usize) -> Option<Range<usize>> {
    let end = offset.checked_add(size)?;
    let (start, end) = (usize::try_from(offset).ok()?, usize::try_from(end).ok()?);
    (end <= len).then_some(start..end)
}

/// `addr` rounded down to a page boundary.
const fn page_down(addr: u64) -> u64 {
    addr & !(PAGE_SIZE - 1)
}

/// `addr` rounded up to a page boundary, or `None` if that overflows.
const fn page_up(addr: u64) -> Option<u64> {
    match addr.checked_add(PAGE_SIZE - 1) {
        Some(a) => Some(page_down(a)),
        None => None,
    }
}

/// `N` bytes at `offset` in `bytes`; zeros where `bytes` is too short (never the case for the
/// fixed-size header and program header slices this module reads).
fn bytes_at<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0; N];
    if let Some(src) = offset.checked_add(N).and_then(|end| bytes.get(offset..end)) {
        out.copy_from_slice(src);
    }
    out
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes(bytes_at(bytes, offset))
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes_at(bytes, offset))
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes_at(bytes, offset))
}

#[cfg(test)]
#[path = "../tests/common/elf_image.rs"]
mod elf_image;

#[cfg(test)]
mod tests {
    use super::elf_image::*;
    use super::{ElfError, MAX_SEGMENTS, Program, Segment};
    use std::string::ToString;
    use std::vec::Vec;

    fn parse(image: &ElfImage) -> Result<Program, ElfError> {
        Program::parse(&image.build(), USER)
    }

    /// The valid image with its data segment (header 1) replaced.
    fn with_data(ph: Phdr) -> ElfImage {
        let mut image = ElfImage::valid();
        image.phdrs[1] = ph;
        image
    }

    #[test]
    fn valid_image_parses() {
        let image = ElfImage::valid();
        let bytes = image.build();
        let program = Program::parse(&bytes, USER).unwrap();
        assert_eq!(program.entry(), BASE + 0x200);
        let text = Segment {
            vaddr: BASE,
            mem_size: 0x1000,
            file_offset: 0,
            file_size: 0x1000,
            writable: false,
            executable: true,
        };
        let data = Segment {
            vaddr: BASE + 0x1000,
            mem_size: 0x3000,
            file_offset: 0x1000,
            file_size: 0x180,
            writable: true,
            executable: false,
        };
        assert_eq!(program.segments(), &[text, data]);
        assert_eq!(text.pages(), BASE..BASE + 0x1000);
        assert_eq!(data.pages(), BASE + 0x1000..BASE + 0x4000);
        assert_eq!(text.file_bytes(&bytes), &bytes[..0x1000]);
        assert_eq!(data.file_bytes(&bytes), &bytes[0x1000..0x1180]);
    }

    #[test]
    fn program_is_small() {
        assert!(core::mem::size_of::<Program>() < 1024);
    }

    #[test]
    fn segments_are_sorted_and_unaligned_ones_rounded_to_pages() {
        let mut image = ElfImage::valid();
        image.phdrs.swap(0, 1);
        image.phdrs[0].vaddr = BASE + 0x1234;
        image.phdrs[0].offset = 0x1034;
        image.phdrs[0].file_size = 0x80;
        image.phdrs[0].align = 8;
        let program = parse(&image).unwrap();
        let vaddrs: Vec<u64> = program.segments().iter().map(|s| s.vaddr).collect();
        assert_eq!(vaddrs, [BASE, BASE + 0x1234]);
        assert_eq!(program.segments()[1].pages(), BASE + 0x1000..BASE + 0x5000);
    }

    #[test]
    fn other_program_headers_are_ignored() {
        let mut image = ElfImage::valid();
        for p_type in [
            PT_NULL,
            PT_NOTE,
            PT_PHDR,
            PT_GNU_RELRO,
            0x6000_0000,
            0xffff_ffff,
        ] {
            let mut ph = Phdr::other(p_type);
            // Garbage that would fail every PT_LOAD check.
            ph.flags = PF_W | PF_X;
            ph.offset = u64::MAX;
            ph.vaddr = u64::MAX;
            ph.file_size = u64::MAX;
            ph.align = 3;
            image.phdrs.push(ph);
        }
        assert_eq!(parse(&image).unwrap().segments().len(), 2);
    }

    #[test]
    fn empty_load_segments_are_skipped() {
        let mut image = ElfImage::valid();
        let mut empty = Phdr::load(PF_R | PF_W | PF_X, u64::MAX, 0, 0, 0);
        empty.align = 3;
        image.phdrs.push(empty);
        assert_eq!(parse(&image).unwrap().segments().len(), 2);
        // They do not count towards MAX_SEGMENTS.
        for _ in 0..MAX_SEGMENTS {
            image.phdrs.push(empty);
        }
        assert_eq!(parse(&image).unwrap().segments().len(), 2);
    }

    #[test]
    fn too_short() {
        let bytes = ElfImage::valid().build();
        for len in [0, 1, 4, 63] {
            assert_eq!(
                Program::parse(&bytes[..len], USER).unwrap_err(),
                ElfError::TooShort { len }
            );
        }
    }

    /// Asserts that the valid image, changed by `edit`, is rejected with `expected`.
    fn assert_rejects(edit: impl FnOnce(&mut ElfImage), expected: ElfError) {
        let mut image = ElfImage::valid();
        edit(&mut image);
        assert_eq!(parse(&image).unwrap_err(), expected);
    }

    #[test]
    fn bad_magic() {
        let found = *b"\x7fELG";
        assert_rejects(|i| i.ident[3] = b'G', ElfError::BadMagic { found });
    }

    #[test]
    fn not_elf64() {
        assert_rejects(|i| i.ident[4] = 1, ElfError::NotElf64 { class: 1 });
    }

    #[test]
    fn not_little_endian() {
        assert_rejects(|i| i.ident[5] = 2, ElfError::NotLittleEndian { data: 2 });
    }

    #[test]
    fn bad_ident_version() {
        let expected = ElfError::BadIdentVersion { version: 0 };
        assert_rejects(|i| i.ident[6] = 0, expected);
    }

    #[test]
    fn bad_version() {
        assert_rejects(|i| i.version = 2, ElfError::BadVersion { version: 2 });
    }

    #[test]
    fn position_independent_rejected() {
        assert_rejects(|i| i.e_type = 3, ElfError::PositionIndependent);
    }

    #[test]
    fn not_executable() {
        for e_type in [0, 1, 4, 0xfe00] {
            assert_rejects(|i| i.e_type = e_type, ElfError::NotExecutable { e_type });
        }
    }

    #[test]
    fn wrong_machine() {
        assert_rejects(|i| i.machine = 3, ElfError::WrongMachine { machine: 3 });
    }

    #[test]
    fn bad_program_header_size() {
        for size in [0, 32, 55, 57, 64] {
            let expected = ElfError::BadProgramHeaderSize { size };
            assert_rejects(|i| i.phentsize = size, expected);
        }
    }

    #[test]
    fn program_headers_out_of_bounds() {
        let valid = ElfImage::valid();
        let len = valid.len;
        let cases = [
            (u64::MAX, None),                // offset + size overflows
            (u64::MAX - 100, None),          // still overflows
            (len as u64, None),              // starts at the end
            (len as u64 - 56 * 3 + 1, None), // one byte short
            (64, Some(u16::MAX)),            // count too large
            (64, Some((len / 56) as u16)),   // just too many
        ];
        for (phoff, phnum) in cases {
            let mut image = valid.clone();
            image.phoff = phoff;
            image.phnum = phnum;
            assert_eq!(
                parse(&image).unwrap_err(),
                ElfError::ProgramHeadersOutOfBounds {
                    offset: phoff,
                    count: phnum.unwrap_or(3),
                    image_len: len,
                },
                "phoff {phoff:#x}, phnum {phnum:?}"
            );
        }
        // The table ending exactly at the end of the image is fine.
        let mut image = valid.clone();
        image.phoff = len as u64 - 56 * 3;
        assert!(parse(&image).is_ok());
        // A truncated image cuts the table.
        let bytes = valid.build();
        assert_eq!(
            Program::parse(&bytes[..64 + 56], USER).unwrap_err(),
            ElfError::ProgramHeadersOutOfBounds {
                offset: 64,
                count: 3,
                image_len: 64 + 56,
            }
        );
    }

    /// The valid image's text plus `n` one-page read-only segments after it.
    fn with_extra_segments(n: u64) -> ElfImage {
        let mut image = ElfImage::valid();
        image.phdrs.truncate(1);
        for i in 0..n {
            let vaddr = BASE + 0x1000 * (i + 1);
            image
                .phdrs
                .push(Phdr::load(PF_R, 0x1000, vaddr, 0x10, 0x1000));
        }
        image
    }

    #[test]
    fn too_many_segments() {
        let most = with_extra_segments(MAX_SEGMENTS as u64 - 1);
        assert_eq!(parse(&most).unwrap().segments().len(), MAX_SEGMENTS);
        assert_eq!(
            parse(&with_extra_segments(MAX_SEGMENTS as u64)).unwrap_err(),
            ElfError::TooManySegments { max: MAX_SEGMENTS }
        );
    }

    #[test]
    fn no_loadable_segment() {
        let mut image = ElfImage::valid();
        image.phdrs.retain(|ph| ph.p_type != PT_LOAD);
        assert_eq!(parse(&image).unwrap_err(), ElfError::NoLoadableSegment);
        image.phdrs.clear();
        assert_eq!(parse(&image).unwrap_err(), ElfError::NoLoadableSegment);
        image.phdrs.push(Phdr::load(PF_R | PF_X, 0, BASE, 0, 0));
        assert_eq!(parse(&image).unwrap_err(), ElfError::NoLoadableSegment);
    }

    #[test]
    fn dynamic_linking_rejected() {
        for p_type in [PT_INTERP, PT_DYNAMIC] {
            // Reported even after an invalid PT_LOAD.
            let mut image = ElfImage::valid();
            image.phdrs[0].flags |= PF_W;
            image.phdrs.push(Phdr::other(p_type));
            assert_eq!(
                parse(&image).unwrap_err(),
                ElfError::DynamicLinking { index: 3, p_type }
            );
        }
    }

    #[test]
    fn thread_local_storage_rejected() {
        let mut image = ElfImage::valid();
        image.phdrs.insert(1, Phdr::other(PT_TLS));
        let err = parse(&image).unwrap_err();
        assert_eq!(err, ElfError::ThreadLocalStorage { index: 1 });
        assert!(err.to_string().contains("thread-local storage unsupported"));
    }

    #[test]
    fn file_size_exceeds_mem_size() {
        let image = with_data(Phdr::load(PF_R | PF_W, 0x1000, BASE + 0x1000, 0x181, 0x180));
        assert_eq!(
            parse(&image).unwrap_err(),
            ElfError::FileSizeExceedsMemSize {
                index: 1,
                file_size: 0x181,
                mem_size: 0x180
            }
        );
    }

    #[test]
    fn segment_outside_image() {
        let len = ElfImage::valid().len;
        for (offset, file_size) in [
            (0x1000, 0x181),        // one byte past the end
            (len as u64, 1),        // starts at the end
            (u64::MAX, 2),          // offset + size overflows
            (0x10, u64::MAX - 0x8), // likewise
        ] {
            let image = with_data(Phdr {
                align: 0,
                ..Phdr::load(PF_R | PF_W, offset, BASE + 0x1000, file_size, u64::MAX)
            });
            assert_eq!(
                parse(&image).unwrap_err(),
                ElfError::SegmentOutsideImage {
                    index: 1,
                    offset,
                    file_size,
                    image_len: len
                }
            );
        }
        // Empty file ranges anywhere inside (or at the end of) the image are fine.
        let image = with_data(Phdr::load(PF_R | PF_W, len as u64, BASE + 0x1180, 0, 0x10));
        assert!(parse(&image).is_ok());
    }

    #[test]
    fn segment_address_overflow() {
        for (vaddr, mem_size) in [
            (u64::MAX - 0xfff, 0x1000), // vaddr + memsz overflows
            (u64::MAX - 0xfff, 0xffe),  // ends inside the last page: rounding up overflows
            (0x1000, u64::MAX),         // huge size
        ] {
            let image = with_data(Phdr::load(PF_R | PF_W, 0x1000, vaddr, 0, mem_size));
            assert_eq!(
                parse(&image).unwrap_err(),
                ElfError::SegmentAddressOverflow {
                    index: 1,
                    vaddr,
                    mem_size
                }
            );
        }
    }

    #[test]
    fn segment_outside_user() {
        for (vaddr, mem_size, pages) in [
            (0, 0x1000, 0..0x1000),                               // null page
            (USER.start - 1, 1, USER.start - 0x1000..USER.start), // one byte below
            (
                USER.start - 0x10,
                0x20,
                USER.start - 0x1000..USER.start + 0x1000,
            ), // straddles
            (
                USER.end - 0x1000,
                0x1001,
                USER.end - 0x1000..USER.end + 0x1000,
            ), // one byte past
            (USER.end, 1, USER.end..USER.end + 0x1000),           // above
            (
                0xffff_8000_0000_0000,
                0x1000,
                0xffff_8000_0000_0000..0xffff_8000_0000_1000,
            ), // kernel
        ] {
            let image = with_data(Phdr::load(PF_R | PF_W, vaddr & 0xfff, vaddr, 0, mem_size));
            assert_eq!(
                parse(&image).unwrap_err(),
                ElfError::SegmentOutsideUser {
                    index: 1,
                    pages,
                    user: USER
                },
                "vaddr {vaddr:#x}"
            );
        }
        // The very first and last user pages are fine.
        for vaddr in [USER.start, USER.end - 0x1000] {
            let image = with_data(Phdr::load(PF_R | PF_W, 0, vaddr, 0, 0x1000));
            assert!(parse(&image).is_ok(), "vaddr {vaddr:#x}");
        }
        // An empty user range admits nothing.
        assert!(matches!(
            Program::parse(&ElfImage::valid().build(), BASE..BASE),
            Err(ElfError::SegmentOutsideUser { index: 0, .. })
        ));
    }

    #[test]
    fn bad_alignment() {
        for align in [3, 0x1800, u64::MAX] {
            let image = with_data(Phdr {
                align,
                ..Phdr::load(PF_R | PF_W, 0x1000, BASE + 0x1000, 0x180, 0x3000)
            });
            assert_eq!(
                parse(&image).unwrap_err(),
                ElfError::BadAlignment { index: 1, align }
            );
        }
        // 0, 1 and small powers of two impose nothing on a copying loader.
        for align in [0, 1, 2, 16, 0x800] {
            let image = with_data(Phdr {
                align,
                ..Phdr::load(PF_R | PF_W, 0x1001, BASE + 0x1000, 0x17f, 0x3000)
            });
            assert!(parse(&image).is_ok(), "align {align:#x}");
        }
    }

    #[test]
    fn misaligned_segment() {
        for align in [0x1000, 0x20_0000, 1 << 63] {
            let image = with_data(Phdr {
                align,
                ..Phdr::load(PF_R | PF_W, 0x1010, BASE + 0x1000, 0x100, 0x3000)
            });
            assert_eq!(
                parse(&image).unwrap_err(),
                ElfError::MisalignedSegment {
                    index: 1,
                    vaddr: BASE + 0x1000,
                    offset: 0x1010,
                    align
                }
            );
        }
        // Congruent modulo the page is enough, whatever the alignment claims (GNU ld's 2 MiB),
        // and the offset may exceed the address.
        for (offset, vaddr) in [(0x1010, BASE + 0x1010), (0x1010, BASE + 0x20_1010)] {
            let image = with_data(Phdr {
                align: 0x20_0000,
                ..Phdr::load(PF_R | PF_W, offset, vaddr, 0x100, 0x3000)
            });
            assert!(parse(&image).is_ok(), "vaddr {vaddr:#x}");
        }
        let image = with_data(Phdr::load(PF_R | PF_W, 0x1000, USER.start, 0x100, 0x1000));
        assert!(Program::parse(&image.build(), USER).is_ok());
    }

    #[test]
    fn write_and_execute_rejected() {
        let image = with_data(Phdr::load(
            PF_R | PF_W | PF_X,
            0x1000,
            BASE + 0x1000,
            0x180,
            0x3000,
        ));
        assert_eq!(
            parse(&image).unwrap_err(),
            ElfError::WriteAndExecute {
                index: 1,
                vaddr: BASE + 0x1000
            }
        );
    }

    #[test]
    fn overlapping_segments() {
        // Shares the text's only page without overlapping a byte.
        let image = with_data(Phdr::load(PF_R | PF_W, 0xff0, BASE + 0xff0, 0x10, 0x10));
        assert_eq!(
            parse(&image).unwrap_err(),
            ElfError::OverlappingSegments {
                first: 0,
                second: 1,
                page: BASE
            }
        );
        // Overlaps bytes, listed first (reported in address order).
        let mut image = with_data(Phdr::load(PF_R, 0x800, BASE + 0x800, 0x100, 0x2000));
        image.phdrs.swap(0, 1);
        assert_eq!(
            parse(&image).unwrap_err(),
            ElfError::OverlappingSegments {
                first: 1,
                second: 0,
                page: BASE
            }
        );
        // Contains a segment beyond its neighbour.
        let mut image = ElfImage::valid();
        image.phdrs[0].mem_size = 0x10_0000;
        assert_eq!(
            parse(&image).unwrap_err(),
            ElfError::OverlappingSegments {
                first: 0,
                second: 1,
                page: BASE + 0x1000
            }
        );
        // Same address twice.
        let mut image = ElfImage::valid();
        let text = image.phdrs[0];
        image.phdrs.push(text);
        assert!(matches!(
            parse(&image),
            Err(ElfError::OverlappingSegments { page: BASE, .. })
        ));
    }

    #[test]
    fn entry_not_executable() {
        for entry in [
            0,
            BASE - 1,
            BASE + 0x1000, // one past the text
            BASE + 0x1100, // in the data
            BASE + 0x3fff, // in the bss
            u64::MAX,
        ] {
            let mut image = ElfImage::valid();
            image.entry = entry;
            assert_eq!(
                parse(&image).unwrap_err(),
                ElfError::EntryNotExecutable { entry },
                "entry {entry:#x}"
            );
        }
        for entry in [BASE, BASE + 0xfff] {
            let mut image = ElfImage::valid();
            image.entry = entry;
            assert_eq!(parse(&image).unwrap().entry(), entry);
        }
    }

    #[test]
    fn hand_built_segments_never_panic() {
        let image = [0u8; 16];
        let wild = Segment {
            vaddr: u64::MAX - 10,
            mem_size: u64::MAX,
            file_offset: u64::MAX,
            file_size: 2,
            writable: false,
            executable: false,
        };
        assert_eq!(wild.file_bytes(&image), &[] as &[u8]);
        assert_eq!(wild.pages(), u64::MAX - 0xfff..u64::MAX - 0xfff);
        let past_end = Segment {
            file_offset: 8,
            file_size: 9,
            ..wild
        };
        assert_eq!(past_end.file_bytes(&image), &[] as &[u8]);
        let inside = Segment {
            file_offset: 8,
            file_size: 8,
            ..wild
        };
        assert_eq!(inside.file_bytes(&image), &[0u8; 8]);
    }

    #[test]
    fn every_message_is_one_line() {
        let errors = [
            ElfError::TooShort { len: 3 },
            ElfError::BadMagic {
                found: *b"MZ\x90\0",
            },
            ElfError::NotElf64 { class: 1 },
            ElfError::NotLittleEndian { data: 2 },
            ElfError::BadIdentVersion { version: 0 },
            ElfError::BadVersion { version: 7 },
            ElfError::PositionIndependent,
            ElfError::NotExecutable { e_type: 1 },
            ElfError::WrongMachine { machine: 183 },
            ElfError::BadProgramHeaderSize { size: 32 },
            ElfError::ProgramHeadersOutOfBounds {
                offset: 64,
                count: 9,
                image_len: 100,
            },
            ElfError::TooManySegments { max: MAX_SEGMENTS },
            ElfError::NoLoadableSegment,
            ElfError::DynamicLinking {
                index: 1,
                p_type: PT_INTERP,
            },
            ElfError::DynamicLinking {
                index: 5,
                p_type: PT_DYNAMIC,
            },
            ElfError::ThreadLocalStorage { index: 2 },
            ElfError::FileSizeExceedsMemSize {
                index: 0,
                file_size: 2,
                mem_size: 1,
            },
            ElfError::SegmentOutsideImage {
                index: 0,
                offset: 1,
                file_size: 2,
                image_len: 2,
            },
            ElfError::SegmentAddressOverflow {
                index: 0,
                vaddr: u64::MAX,
                mem_size: 1,
            },
            ElfError::SegmentOutsideUser {
                index: 0,
                pages: 0..0x1000,
                user: USER,
            },
            ElfError::BadAlignment { index: 0, align: 3 },
            ElfError::MisalignedSegment {
                index: 0,
                vaddr: 0x1000,
                offset: 1,
                align: 0x1000,
            },
            ElfError::WriteAndExecute {
                index: 0,
                vaddr: BASE,
            },
            ElfError::OverlappingSegments {
                first: 0,
                second: 1,
                page: BASE,
            },
            ElfError::EntryNotExecutable { entry: 0 },
        ];
        let mut messages = Vec::new();
        for e in &errors {
            let msg = e.to_string();
            assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
            assert!(!msg.contains("  "), "{msg:?}");
            messages.push(msg);
        }
        messages.sort();
        messages.dedup();
        assert_eq!(messages.len(), errors.len(), "messages must differ");
        assert!(ElfError::PositionIndependent.to_string().contains("ET_DYN"));
        assert!(
            ElfError::WriteAndExecute { index: 0, vaddr: 0 }
                .to_string()
                .contains("W^X")
        );
    }
}
