//! ELF loader front end: a real linker-produced executable, a builder-produced one, and
//! property tests (arbitrary and mutated images never panic; whatever is accepted satisfies
//! every documented invariant).

#[path = "common/elf_image.rs"]
mod elf_image;

/// The user ABI the kernel passes `Program::parse` its range from.
#[allow(dead_code)]
#[path = "../user/rt/src/abi.rs"]
mod abi;

use core::ops::Range;
use elf_image::*;
use proptest::prelude::*;
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

/// Strategy: a user range, usually the ABI's, sometimes narrow or empty or everything.
fn user_range() -> impl Strategy<Value = Range<u64>> {
    prop_oneof![
        4 => Just(USER),
        1 => Just(0..u64::MAX),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(a, b)| a..b),
        1 => (0u64..0x80_0000, 0u64..0x80_0000).prop_map(|(a, b)| a..b),
    ]
}

/// Applies `(index, byte, in_headers)` mutations to `bytes`, each within the first
/// `header_end` bytes when `in_headers`, then cuts the image to `cut`.
fn mutate(
    mut bytes: Vec<u8>,
    header_end: usize,
    muts: &[(usize, u8, bool)],
    cut: Option<usize>,
) -> Vec<u8> {
    let n = bytes.len();
    for &(i, b, in_headers) in muts {
        let span = if in_headers { header_end.min(n) } else { n };
        bytes[i % span] = b;
    }
    if let Some(c) = cut {
        bytes.truncate(c % (n + 1));
    }
    bytes
}

/// Strategy: one program header, with fields drawn near the valid image's so that some
/// combinations are accepted and many fail exactly one check.
fn phdr() -> impl Strategy<Value = Phdr> {
    let p_type = prop_oneof![
        8 => Just(PT_LOAD),
        1 => Just(PT_NOTE),
        1 => Just(PT_GNU_STACK),
        1 => any::<u32>(),
    ];
    let small = prop_oneof![4 => 0u64..0x3000, 1 => any::<u64>()];
    let vaddr = prop_oneof![
        6 => (0u64..32).prop_map(|page| BASE + page * 0x800),
        1 => (0u64..0x2000).prop_map(|off| BASE + off),
        1 => any::<u64>(),
    ];
    let file_size = prop_oneof![4 => 0u64..0x200, 1 => any::<u64>()];
    let align = prop_oneof![
        Just(0u64),
        Just(1),
        Just(0x1000),
        Just(0x20_0000),
        any::<u64>()
    ];
    (
        p_type,
        0u32..8,
        small.clone(),
        vaddr,
        file_size,
        small,
        align,
    )
        .prop_map(
            |(p_type, flags, offset, vaddr, file_size, mem_size, align)| Phdr {
                p_type,
                flags,
                offset,
                vaddr,
                file_size,
                mem_size,
                align,
            },
        )
}

/// Strategy: a valid program's headers (1 to `MAX_SEGMENTS` disjoint `PT_LOAD`s in random
/// order among ignored headers, no W+X, offsets congruent to addresses modulo the page), its
/// entry point, and the segments `Program::parse` must return for it.
fn valid_program() -> impl Strategy<Value = (Vec<Phdr>, u64, Vec<Segment>)> {
    let segment = (
        0u64..4,      // gap in pages before the segment
        0u64..0x1000, // offset of vaddr in its page
        1u64..0x3000, // mem_size
        any::<u64>(), // file_size (reduced to at most mem_size and a page)
        0u64..4,      // file page
        0usize..3,    // permissions
        prop_oneof![Just(0u64), Just(1), Just(0x1000), Just(0x20_0000)],
    );
    (
        prop::collection::vec(segment, 1..=MAX_SEGMENTS),
        any::<prop::sample::Index>(),
        any::<u64>(),
    )
        .prop_flat_map(|(specs, pick, entry_offset)| {
            let mut page = BASE / 0x1000;
            let mut phdrs = Vec::new();
            let mut segments = Vec::new();
            for (gap, in_page, mem_size, file_size, file_page, perms, align) in specs {
                page += gap;
                let vaddr = page * 0x1000 + in_page;
                let file_size = file_size % (mem_size.min(0x1000) + 1);
                let offset = file_page * 0x1000 + in_page;
                let flags = [PF_R, PF_R | PF_X, PF_R | PF_W][perms];
                phdrs.push(Phdr {
                    align,
                    ..Phdr::load(flags, offset, vaddr, file_size, mem_size)
                });
                segments.push(Segment {
                    vaddr,
                    mem_size,
                    file_offset: offset,
                    file_size,
                    writable: flags & PF_W != 0,
                    executable: flags & PF_X != 0,
                });
                page = (vaddr + mem_size).div_ceil(0x1000);
            }
            // Make sure some segment is executable, and put the entry in one.
            let text = pick.index(segments.len());
            segments[text].writable = false;
            segments[text].executable = true;
            phdrs[text].flags = PF_R | PF_X;
            let entry = segments[text].vaddr + entry_offset % segments[text].mem_size;
            phdrs.push(Phdr::other(PT_GNU_STACK));
            phdrs.push(Phdr::other(PT_NOTE));
            (Just(phdrs).prop_shuffle(), Just(entry), Just(segments))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_never_panic(
        mut bytes in prop::collection::vec(any::<u8>(), 0..800),
        patch_header in any::<bool>(),
        phnum in 0u16..12,
        user in user_range(),
    ) {
        if patch_header && bytes.len() >= 64 {
            // A valid file header pointing at program headers right after it, so the
            // arbitrary bytes reach the segment checks.
            let mut header = ElfImage::valid();
            header.phdrs.clear();
            header.phnum = Some(phnum);
            header.len = 64;
            bytes[..64].copy_from_slice(&header.build());
        }
        let _ = parse_and_check(&bytes, user);
    }

    #[test]
    fn mutated_builder_image_never_panics(
        muts in prop::collection::vec((any::<usize>(), any::<u8>(), any::<bool>()), 0..8),
        cut in prop::option::of(any::<usize>()),
        user in user_range(),
    ) {
        let bytes = mutate(ElfImage::valid().build(), 64 + 3 * 56, &muts, cut);
        let _ = parse_and_check(&bytes, user);
    }

    #[test]
    fn mutated_linker_image_never_panics(
        muts in prop::collection::vec((any::<usize>(), any::<u8>(), any::<bool>()), 0..8),
        cut in prop::option::of(any::<usize>()),
    ) {
        let bytes = mutate(STATIC_EXEC.to_vec(), 64 + 6 * 56, &muts, cut);
        let _ = parse_and_check(&bytes, user());
    }

    #[test]
    fn valid_programs_are_accepted_as_built((phdrs, entry, segments) in valid_program()) {
        let mut image = ElfImage::valid();
        image.phdrs = phdrs;
        image.entry = entry;
        image.len = 0x5000;
        let bytes = image.build();
        let program = parse_and_check(&bytes, USER).unwrap();
        prop_assert_eq!(program.entry(), entry);
        prop_assert_eq!(program.segments(), segments.as_slice());
    }

    /// Random program headers: an accepted program holds exactly the non-empty `PT_LOAD`
    /// segments, sorted, and satisfies every invariant.
    #[test]
    fn random_program_headers_are_validated(
        phdrs in prop::collection::vec(phdr(), 0..10),
        keep_text in any::<bool>(),
        entry in prop_oneof![Just(BASE + 0x200), any::<u64>()],
    ) {
        let mut image = ElfImage::valid();
        if !keep_text {
            image.phdrs.clear();
        }
        image.phdrs.extend(phdrs);
        image.entry = entry;
        let bytes = image.build();
        if let Ok(program) = parse_and_check(&bytes, USER) {
            let mut expected: Vec<Segment> = image
                .phdrs
                .iter()
                .filter(|ph| ph.p_type == PT_LOAD && ph.mem_size > 0)
                .map(|ph| Segment {
                    vaddr: ph.vaddr,
                    mem_size: ph.mem_size,
                    file_offset: ph.offset,
                    file_size: ph.file_size,
                    writable: ph.flags & PF_W != 0,
                    executable: ph.flags & PF_X != 0,
                })
                .collect();
            expected.sort_by_key(|s| s.vaddr);
            prop_assert_eq!(program.segments(), expected.as_slice());
        }
    }
}
