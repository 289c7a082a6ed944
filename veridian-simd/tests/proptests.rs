//! Random large lengths, offsets and overlaps for every supported variant, checked against the
//! standard library (`copy_from_slice`, `copy_within`, `fill`, `<[u8]>::cmp`).

mod common;

use std::cmp::Ordering;

use common::routines_or_skip;
use proptest::prelude::*;
use veridian_simd::Variant;

const MAX: usize = 300 * 1024;

fn supported() -> Vec<veridian_simd::Routines> {
    Variant::ALL
        .into_iter()
        .filter_map(routines_or_skip)
        .collect()
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn copy_matches_std(len in 0..MAX, soff in 0usize..64, doff in 0usize..64, seed: u64) {
        let src = data(len + soff, seed);
        for r in supported() {
            let mut dst = vec![0xEEu8; len + doff + 64];
            let mut want = dst.clone();
            want[doff..doff + len].copy_from_slice(&src[soff..]);
            r.copy(&mut dst[doff..doff + len], &src[soff..]).unwrap();
            prop_assert!(dst == want, "{} copy len {len}", r.variant().name());
        }
    }

    #[test]
    fn move_matches_std(len in 0..MAX, soff in 0usize..8192, doff in 0usize..8192, seed: u64) {
        let original = data(len + 8192, seed);
        for r in supported() {
            let mut buf = original.clone();
            let mut want = original.clone();
            want.copy_within(soff..soff + len, doff);
            r.copy_within(&mut buf, soff..soff + len, doff).unwrap();
            prop_assert!(buf == want, "{} move len {len} {soff}->{doff}", r.variant().name());
        }
    }

    #[test]
    fn fill_matches_std(len in 0..MAX, off in 0usize..64, byte: u8) {
        for r in supported() {
            let mut buf = vec![!byte; len + off + 64];
            let mut want = buf.clone();
            want[off..off + len].fill(byte);
            r.fill(&mut buf[off..off + len], byte);
            prop_assert!(buf == want, "{} fill len {len}", r.variant().name());
        }
    }

    #[test]
    fn compare_matches_std(len in 0..MAX, diff_at in any::<prop::sample::Index>(), extra in 0usize..3, seed: u64) {
        let a = data(len, seed);
        let mut b = a.clone();
        b.extend(std::iter::repeat_n(7u8, extra));
        if len > 0 && seed % 3 != 0 {
            let k = diff_at.index(len);
            b[k] = b[k].wrapping_add(1 + (seed % 255) as u8);
        }
        let want: Ordering = a.as_slice().cmp(b.as_slice());
        for r in supported() {
            prop_assert_eq!(r.compare(&a, &b), want, "{}", r.variant().name());
            prop_assert_eq!(r.compare(&b, &a), want.reverse(), "{}", r.variant().name());
        }
        prop_assert_eq!(veridian_simd::compare(&a, &b), want);
        prop_assert_eq!(veridian_simd::equal(&a, &b), want == Ordering::Equal);
    }
}
