//! A foreign kernel using veridian-simd alone: feature detection cross-checked against CPUID
//! and XCR0 read here, and every routine of every variant this CPU runs (the dispatched ones
//! and each `Variant`'s own) checked byte for byte, including the bytes around the
//! destination. The glue (`glue.rs`) enables the vector state.

#![no_std]
#![no_main]

#[macro_use]
#[path = "../../boot/boot.rs"]
mod boot;
mod glue;

use core::arch::x86_64::__cpuid_count;
use core::cell::UnsafeCell;
use core::cmp::Ordering;

use veridian_simd::{Features, Routines, Thresholds, Variant, cpu};

/// Bytes before and after every destination range that must stay untouched.
const PAD: usize = 64;
/// The value of those bytes.
const GUARD: u8 = 0xee;
/// Largest length checked.
const MAX_LEN: usize = (256 << 10) + 3;
const BUF: usize = MAX_LEN + 2 * PAD + 64;

/// A static buffer, borrowed once.
struct Buffer(UnsafeCell<[u8; BUF]>);
// SAFETY: one CPU; each buffer is borrowed once, in `kmain`.
unsafe impl Sync for Buffer {}
static SRC: Buffer = Buffer(UnsafeCell::new([0; BUF]));
static DST: Buffer = Buffer(UnsafeCell::new([0; BUF]));

/// The source pattern: byte `i` of the source buffer (not periodic within 64 KiB).
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(131) ^ (i >> 8).wrapping_mul(7) ^ (i >> 16)) as u8
}

/// Destination/source misalignments.
const OFFSETS: [(usize, usize); 6] = [(0, 0), (1, 0), (0, 1), (7, 13), (31, 33), (63, 1)];

pub fn kmain(_start_info: u64) {
    let xcr0 = glue::enable_vector_state();

    // Detection against what this kernel sees itself.
    let features = cpu::features();
    let leaf1 = __cpuid_count(1, 0);
    let leaf7 = __cpuid_count(7, 0);
    println!("simd: XCR0 {xcr0:#x}, detected {features:?}");
    assert!(features.contains(Features::SSE2));
    assert_eq!(
        features.contains(Features::SSE4_2),
        leaf1.ecx & (1 << 20) != 0
    );
    assert_eq!(features.contains(Features::ERMS), leaf7.ebx & (1 << 9) != 0);
    let avx_state = xcr0 & 0b110 == 0b110;
    assert_eq!(
        features.contains(Features::AVX),
        leaf1.ecx & (1 << 28) != 0 && avx_state
    );
    assert_eq!(
        features.contains(Features::AVX2),
        leaf7.ebx & (1 << 5) != 0 && avx_state
    );
    let best = Variant::best_for(features);
    assert_eq!(veridian_simd::selected_variant(), best);
    println!("simd: dispatch chose {}", best.name());

    // SAFETY: the only references to the two buffers, made once here.
    let (src, dst) = unsafe { (&mut *SRC.0.get(), &mut *DST.0.get()) };
    for (i, byte) in src.iter_mut().enumerate() {
        *byte = pattern(i);
    }

    let lengths = (0..=300).chain([1000, 2047, 2048, 2049, 4095, 4097, 0x4040, 65541, MAX_LEN]);
    for variant in Variant::ALL {
        let Some(routines) = variant.routines() else {
            println!("simd: {} not supported here", variant.name());
            continue;
        };
        let cases = check_routines(&routines, src, dst, lengths.clone());
        println!(
            "simd: {}: memcpy/memmove/memset/memcmp, {cases} cases, byte for byte",
            variant.name()
        );
    }

    // The size strategies' other paths: `rep movsb`/`rep stosb` and non-temporal stores from
    // small sizes on (every threshold is correct, only speed changes).
    veridian_simd::set_thresholds(Thresholds {
        rep_movsb: 256,
        rep_stosb: 256,
        non_temporal: 0x4040,
    });
    for variant in Variant::ALL {
        if let Some(routines) = variant.routines() {
            check_routines(
                &routines,
                src,
                dst,
                [255, 256, 257, 4096, 0x4040, 65541, MAX_LEN].into_iter(),
            );
        }
    }
    veridian_simd::set_thresholds(Thresholds::DEFAULT);
    println!("simd: every variant again with rep-string and non-temporal thresholds lowered");

    // The slice functions through the dispatch.
    let mut a = [0u8; 100];
    veridian_simd::copy(&mut a, &src[..100]).unwrap();
    assert!(a.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    assert!(
        veridian_simd::copy(&mut a, &src[..99]).is_err(),
        "lengths differ"
    );
    veridian_simd::copy_within(&mut a, 0..60, 40).unwrap();
    assert!((0..60).all(|i| a[40 + i] == pattern(i)));
    assert!(veridian_simd::copy_within(&mut a, 50..101, 0).is_err());
    veridian_simd::fill(&mut a, 9);
    assert!(a.iter().all(|&b| b == 9));
    assert_eq!(veridian_simd::compare(&a, &[9; 100]), Ordering::Equal);
    println!("simd: copy, copy_within, fill, compare (dispatched slices), bad ranges refused");
}

/// Checks memcpy, memmove (both directions, overlapping), memset and memcmp of `routines`
/// for every length and every misalignment; returns the cases run.
fn check_routines(
    routines: &Routines,
    src: &[u8],
    dst: &mut [u8],
    lengths: impl Iterator<Item = usize>,
) -> usize {
    let mut cases = 0;
    for n in lengths {
        let offsets = if n > 4096 {
            &OFFSETS[..3]
        } else {
            &OFFSETS[..]
        };
        for &(d, s) in offsets {
            let at = PAD + d;
            // memcpy: dst[at..at + n] = src[s..s + n], nothing else touched.
            dst[at - PAD..at + n + PAD].fill(GUARD);
            // SAFETY: both ranges lie inside their buffers (BUF leaves room for PAD and the
            // offsets) and do not overlap (two buffers).
            unsafe { routines.memcpy(dst.as_mut_ptr().add(at), src.as_ptr().add(s), n) };
            check(
                dst,
                at,
                n,
                |i| pattern(s + i),
                "memcpy",
                routines,
                n,
                (d, s),
            );
            // memcmp: equal, then the last byte made larger.
            // SAFETY: both ranges are inside their buffers.
            let equal = unsafe { routines.memcmp(dst.as_ptr().add(at), src.as_ptr().add(s), n) };
            assert_eq!(equal, 0, "memcmp of equal ranges, n={n}");
            if n > 0 {
                dst[at + n - 1] = dst[at + n - 1].wrapping_add(1) | 1;
                let a = dst[at + n - 1];
                let b = src[s + n - 1];
                // SAFETY: as above.
                let cmp = unsafe { routines.memcmp(dst.as_ptr().add(at), src.as_ptr().add(s), n) };
                assert_eq!(
                    cmp.signum(),
                    i32::from(a).cmp(&i32::from(b)) as i32,
                    "memcmp sign, n={n}"
                );
            }
            // memset.
            dst[at - PAD..at + n + PAD].fill(GUARD);
            // SAFETY: inside the buffer.
            unsafe { routines.memset(dst.as_mut_ptr().add(at), 0x5a, n) };
            check(dst, at, n, |_| 0x5a, "memset", routines, n, (d, s));
            // memmove inside one buffer, overlapping by all but `shift` bytes, both ways.
            let shift = 1 + s;
            for (from, to) in [(at, at + shift), (at + shift, at)] {
                let span = at - PAD..at + n + shift + PAD;
                for i in span.clone() {
                    dst[i] = pattern(i);
                }
                // SAFETY: both ranges lie inside the buffer; memmove allows overlap.
                unsafe { routines.memmove(dst.as_mut_ptr().add(to), dst.as_ptr().add(from), n) };
                for i in span {
                    let expected = if (to..to + n).contains(&i) {
                        pattern(from + i - to)
                    } else {
                        pattern(i)
                    };
                    assert_eq!(
                        dst[i],
                        expected,
                        "{} memmove n={n} from {from} to {to}: byte {i}",
                        routines.variant().name()
                    );
                }
            }
            cases += 1;
        }
    }
    cases
}

/// `dst[at..at + n]` holds `expected(i)` at `at + i`, and the `PAD` bytes on each side `GUARD`.
#[allow(clippy::too_many_arguments)]
fn check(
    dst: &[u8],
    at: usize,
    n: usize,
    expected: impl Fn(usize) -> u8,
    what: &str,
    routines: &Routines,
    len: usize,
    offsets: (usize, usize),
) {
    let name = routines.variant().name();
    for i in 0..n {
        assert_eq!(
            dst[at + i],
            expected(i),
            "{name} {what} n={len} offsets={offsets:?}: byte {i}"
        );
    }
    for i in (at - PAD..at).chain(at + n..at + n + PAD) {
        assert_eq!(
            dst[i], GUARD,
            "{name} {what} n={len} offsets={offsets:?}: wrote outside at {i}"
        );
    }
}
