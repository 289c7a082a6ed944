//! veridian-simd's `memcpy`, `memmove`, `memset` and `memcmp`, every variant this CPU runs
//! (AVX-512, AVX2, ERMS, generic), against a byte loop: the fuzzer picks the buffer, the
//! offsets (any misalignment) and the lengths; every byte of the buffer is compared afterwards,
//! so a write outside the range shows, and the buffer is an exact-size heap allocation, so an
//! access outside it is an AddressSanitizer report.
#![no_main]

use std::cmp::Ordering;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use veridian_simd::Variant;

#[derive(Arbitrary, Debug)]
struct Input {
    op: Op,
    a: u16,
    b: u16,
    len: u16,
    byte: u8,
    buf: Vec<u8>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Copy,
    Move,
    Set,
    Compare,
}

fuzz_target!(|input: Input| {
    let n = input.buf.len();
    if n == 0 {
        return;
    }
    let len = usize::from(input.len) % (n + 1);
    let a = usize::from(input.a) % (n - len + 1);
    let b = usize::from(input.b) % (n - len + 1);
    for variant in Variant::ALL {
        let Some(r) = variant.routines() else {
            continue;
        };
        let mut got = input.buf.clone();
        let mut want = input.buf.clone();
        match input.op {
            Op::Copy => {
                // Non-overlapping source: a separate copy of the input.
                let src = input.buf.clone();
                r.copy(&mut got[a..a + len], &src[b..b + len]).unwrap();
                for i in 0..len {
                    want[a + i] = src[b + i];
                }
            }
            Op::Move => {
                r.copy_within(&mut got, b..b + len, a).unwrap();
                let snapshot = want.clone();
                for i in 0..len {
                    want[a + i] = snapshot[b + i];
                }
            }
            Op::Set => {
                r.fill(&mut got[a..a + len], input.byte);
                for byte in &mut want[a..a + len] {
                    *byte = input.byte;
                }
            }
            Op::Compare => {
                let x = &input.buf[a..a + len];
                let y = &input.buf[b..b + len];
                let expected = x.iter().zip(y).map(|(p, q)| p.cmp(q)).find(|o| o.is_ne());
                assert_eq!(
                    r.compare(x, y),
                    expected.unwrap_or(Ordering::Equal),
                    "{variant:?} memcmp len {len} at {a}/{b}"
                );
                // Also against a copy with one byte changed: the first difference decides.
                let mut z = y.to_vec();
                if let Some(last) = z.last_mut() {
                    *last = last.wrapping_add(input.byte | 1);
                    let expected = x.iter().zip(&z).map(|(p, q)| p.cmp(q)).find(|o| o.is_ne());
                    assert_eq!(r.compare(x, &z), expected.unwrap_or(Ordering::Equal));
                }
            }
        }
        assert!(
            got == want,
            "{variant:?} {:?} len {len} at {a}/{b}",
            input.op
        );
    }
});
