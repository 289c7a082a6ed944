//! ELF loader front end: a real linker-produced executable and a builder-produced one.

#[path = "common/elf_image.rs"]
mod elf_image;

/// The user ABI the kernel passes `Program::parse` its range from.
#[allow(dead_code)]
#[path = "../user/rt/src/abi.rs"]
mod abi;

use core::ops::Range;
use elf_image::*;
use reference_kernel::elf::{ElfError, MAX_SEGMENTS, Program, Segment};

/// A static x86-64 executable linked by `rust-lld` at `PROGRAM_BASE`: read-only data (with the
/// ELF and program headers), text, data + bss, plus `PT_PHDR`, `PT_GNU_EH_FRAME` and
/// `PT_GNU_STACK` headers. 1704 bytes, produced from `data/static_exec.rs` with rustc 1.95.0
/// (its bundled `rust-lld`), from `reference-kernel/tests/data/`:
///
/// ```text
/// rustc --edition 2024 --target x86_64-unknown-none -C opt-level=s -C panic=abort \
///     -C relocation-model=static -C strip=symbols -C link-arg=--image-base=0x400000 \
///     -C link-arg=--build-id=none -o static_exec.elf static_exec.rs
/// ```
///
/// (`relocation-model=static` makes it `ET_EXEC` rather than the target's default static
/// PIE; the build is reproducible: sha256 b3e543a7...1d36.)
const STATIC_EXEC: &[u8] = include_bytes!("data/static_exec.elf");

fn user() -> Range<u64> {
    abi::layout::USER_MIN..abi::layout::USER_END
}

/// Asserts every guarantee the module documents for an accepted program.
fn check_invariants(program: &Program, image: &[u8], user: &Range<u64>) {
    let segments = program.segments();
    assert!(!segments.is_empty() && segments.len() <= MAX_SEGMENTS);
    for s in segments {
        assert!(s.mem_size > 0 && s.file_size <= s.mem_size, "{s:?}");
        assert!(!(s.writable && s.executable), "W^X: {s:?}");
        let end = s.vaddr.checked_add(s.mem_size).expect("vaddr + mem_size");
        let pages = s.pages();
        assert!(pages.start % 4096 == 0 && pages.end % 4096 == 0, "{s:?}");
        assert!(pages.start <= s.vaddr && end <= pages.end && pages.end - end < 4096);
        assert!(
            user.start <= pages.start && pages.end <= user.end,
            "{s:?} {user:x?}"
        );
        let file_end = s.file_offset.checked_add(s.file_size).expect("file range");
        assert!(file_end <= image.len() as u64, "{s:?}");
        let expected = &image[s.file_offset as usize..file_end as usize];
        assert_eq!(s.file_bytes(image), expected);
    }
    for pair in segments.windows(2) {
        assert!(pair[0].vaddr <= pair[1].vaddr, "sorted");
        assert!(pair[0].pages().end <= pair[1].pages().start, "overlap");
    }
    let entry = program.entry();
    assert!(
        segments
            .iter()
            .any(|s| s.executable && entry >= s.vaddr && entry - s.vaddr < s.mem_size),
        "entry {entry:#x}"
    );
}

fn check_message(e: &ElfError) {
    let msg = e.to_string();
    assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
}

fn parse_and_check(image: &[u8], user: Range<u64>) -> Result<Program, ElfError> {
    let result = Program::parse(image, user.clone());
    match &result {
        Ok(program) => check_invariants(program, image, &user),
        Err(e) => check_message(e),
    }
    result
}

#[test]
fn test_layout_matches_the_abi() {
    assert_eq!(USER, user());
    assert_eq!(BASE, abi::layout::PROGRAM_BASE);
}

#[test]
fn linker_produced_executable_parses() {
    assert!(STATIC_EXEC.len() < 16 * 1024);
    let program = parse_and_check(STATIC_EXEC, user()).unwrap();
    assert_eq!(program.entry(), 0x40_11dc);
    // As `readelf -l` lists them.
    let expected = [
        Segment {
            vaddr: 0x40_0000,
            mem_size: 0x1dc,
            file_offset: 0,
            file_size: 0x1dc,
            writable: false,
            executable: false,
        },
        Segment {
            vaddr: 0x40_11dc,
            mem_size: 0x1a3,
            file_offset: 0x1dc,
            file_size: 0x1a3,
            writable: false,
            executable: true,
        },
        Segment {
            vaddr: 0x40_237f,
            mem_size: 0x21,
            file_offset: 0x37f,
            file_size: 0x18,
            writable: true,
            executable: false,
        },
    ];
    assert_eq!(program.segments(), &expected);
    let pages: Vec<_> = program.segments().iter().map(Segment::pages).collect();
    assert_eq!(
        pages,
        [
            0x40_0000..0x40_1000,
            0x40_1000..0x40_2000,
            0x40_2000..0x40_3000
        ]
    );
    // The first segment starts with the ELF header; the data holds the fixture's string.
    assert!(
        program.segments()[0]
            .file_bytes(STATIC_EXEC)
            .starts_with(b"\x7fELF")
    );
    assert_eq!(
        program.segments()[2].file_bytes(STATIC_EXEC),
        b"veridian elf fixture ok\n"
    );
}

#[test]
fn linker_produced_executable_outside_a_narrow_user_range_is_rejected() {
    let err = Program::parse(STATIC_EXEC, 0x40_0000..0x40_2000).unwrap_err();
    assert_eq!(
        err,
        ElfError::SegmentOutsideUser {
            index: 3,
            pages: 0x40_2000..0x40_3000,
            user: 0x40_0000..0x40_2000,
        }
    );
}

#[test]
fn every_truncation_of_the_linker_produced_executable_is_handled() {
    // The segments end at 0x397 (section headers follow); any shorter image cuts a segment.
    for len in 0..=STATIC_EXEC.len() {
        let result = parse_and_check(&STATIC_EXEC[..len], user());
        assert_eq!(result.is_ok(), len >= 0x397, "len {len}");
    }
}

#[test]
fn builder_produced_executable_parses() {
    let bytes = ElfImage::valid().build();
    let program = parse_and_check(&bytes, user()).unwrap();
    assert_eq!(program.entry(), BASE + 0x200);
    assert_eq!(program.segments().len(), 2);
    assert!(program.segments()[0].executable && !program.segments()[0].writable);
    assert!(program.segments()[1].writable && !program.segments()[1].executable);
}
