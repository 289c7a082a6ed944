//! The user-program ELF loader's parser: whatever the image, a parsed program has at most
//! `MAX_SEGMENTS` non-overlapping segments inside the user range, W^X, file bytes inside the
//! image and no larger than the memory size, and an entry point in an executable segment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reference_kernel::elf::{MAX_SEGMENTS, Program};

/// The kernel's user half: above the null page guard, below the canonical hole.
const USER: core::ops::Range<u64> = 0x40_0000..0x7fff_ffff_f000;

fuzz_target!(|image: &[u8]| {
    let Ok(program) = Program::parse(image, USER) else {
        return;
    };
    let segments = program.segments();
    assert!(!segments.is_empty() && segments.len() <= MAX_SEGMENTS);
    for (i, s) in segments.iter().enumerate() {
        let pages = s.pages();
        assert!(USER.start <= pages.start && pages.end <= USER.end, "{s:?}");
        assert!(!(s.writable && s.executable), "{s:?} is W+X");
        assert!(s.mem_size > 0 && s.file_size <= s.mem_size, "{s:?}");
        assert_eq!(s.file_bytes(image).len() as u64, s.file_size, "{s:?}");
        for t in &segments[i + 1..] {
            let other = t.pages();
            assert!(
                pages.end <= other.start || other.end <= pages.start,
                "{s:?} overlaps {t:?}"
            );
        }
    }
    let entry = program.entry();
    assert!(
        segments
            .iter()
            .any(|s| s.executable && s.vaddr <= entry && entry < s.vaddr + s.mem_size),
        "entry {entry:#x} outside executable segments"
    );
});
