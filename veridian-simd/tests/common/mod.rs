//! Shared test helpers: the variants this CPU can run, and the sweeps every routine goes through.
#![allow(dead_code)] // Each test binary uses a different subset.

use veridian_simd::{Routines, Variant};

/// Misalignments swept for each pointer (0..=63: every offset inside a cache line and a ZMM).
pub const OFFSETS: usize = 64;
/// Lengths swept: 0..=MAX_LEN.
pub const MAX_LEN: usize = 1024;
/// Value no source byte takes (sources use 0..=250), written around destinations.
pub const GUARD: u8 = 0xFF;

/// The routines of `v`, or `None` after printing why it is skipped.
pub fn routines_or_skip(v: Variant) -> Option<Routines> {
    match v.routines() {
        Some(r) => Some(r),
        None => {
            println!(
                "SKIP {}: this CPU lacks {:?} (detected {:?})",
                v.name(),
                v.required_features(),
                veridian_simd::cpu::features()
            );
            None
        }
    }
}

/// Byte `i` of the source pattern: never `GUARD`, and different from its neighbours at every
/// small shift, so a copy from a wrong offset shows.
pub fn pattern(i: usize) -> u8 {
    ((i * 131 + 7) % 251) as u8
}

/// Every length 0..=max × source offset × destination offset: `copy` lands exactly in
/// `dst[doff..doff + len]` with the source bytes, nothing else in the destination buffer changes.
/// `offsets` lists the offsets swept for each pointer.
pub fn sweep_copy(
    copy: unsafe fn(*mut u8, *const u8, usize) -> *mut u8,
    max: usize,
    offsets: &[usize],
    name: &str,
) {
    let size = OFFSETS + max + OFFSETS;
    let src: Vec<u8> = (0..size).map(pattern).collect();
    let guard = vec![GUARD; size];
    let mut dst = guard.clone();
    for len in 0..=max {
        for &soff in offsets {
            for &doff in offsets {
                // SAFETY: both ranges lie inside their buffers (offset < 64, len <= max), and the
                // buffers are distinct.
                let ret = unsafe { copy(dst.as_mut_ptr().add(doff), src.as_ptr().add(soff), len) };
                assert_eq!(
                    ret,
                    dst.as_mut_ptr().wrapping_add(doff),
                    "{name}: return value"
                );
                if dst[doff..doff + len] != src[soff..soff + len]
                    || dst[..doff] != guard[..doff]
                    || dst[doff + len..] != guard[doff + len..]
                {
                    panic!(
                        "{name}: wrong copy for len {len}, src offset {soff}, dst offset {doff}"
                    );
                }
                dst[doff..doff + len].fill(GUARD);
            }
        }
    }
}

/// Overlapping moves inside one buffer: every length × every pair of offsets (so the distance
/// runs from -63 to +63: both directions), checked against `<[u8]>::copy_within` on a copy.
pub fn sweep_move_near(
    mov: unsafe fn(*mut u8, *const u8, usize) -> *mut u8,
    max: usize,
    offsets: &[usize],
    name: &str,
) {
    let size = OFFSETS + max + OFFSETS;
    let original: Vec<u8> = (0..size).map(pattern).collect();
    let mut buf = original.clone();
    let mut expect = original.clone();
    for len in 0..=max {
        for &soff in offsets {
            for &doff in offsets {
                let p = buf.as_mut_ptr();
                // SAFETY: both ranges lie inside `buf`; the routine is a memmove.
                unsafe { mov(p.add(doff), p.add(soff), len) };
                expect.copy_within(soff..soff + len, doff);
                if buf != expect {
                    panic!(
                        "{name}: wrong move for len {len}, src offset {soff}, dst offset {doff}"
                    );
                }
                // Restore only what changed.
                buf[doff..doff + len].copy_from_slice(&original[doff..doff + len]);
                expect[doff..doff + len].copy_from_slice(&original[doff..doff + len]);
            }
        }
    }
}

/// Overlapping moves with distances beyond one vector (both signs), a few alignments.
pub fn sweep_move_far(
    mov: unsafe fn(*mut u8, *const u8, usize) -> *mut u8,
    max: usize,
    name: &str,
) {
    const DISTANCES: [usize; 12] = [64, 65, 96, 127, 128, 129, 255, 256, 257, 511, 513, 1000];
    let size = 2048 + max;
    let original: Vec<u8> = (0..size).map(pattern).collect();
    let mut buf = original.clone();
    let mut expect = original.clone();
    for len in 0..=max {
        for &dist in &DISTANCES {
            for &align in &[0usize, 1, 31, 33] {
                for forward in [false, true] {
                    let (soff, doff) = if forward {
                        (align + dist, align)
                    } else {
                        (align, align + dist)
                    };
                    let p = buf.as_mut_ptr();
                    // SAFETY: both ranges lie inside `buf` (offsets + len < 2048 + max).
                    unsafe { mov(p.add(doff), p.add(soff), len) };
                    expect.copy_within(soff..soff + len, doff);
                    if buf != expect {
                        panic!("{name}: wrong move for len {len}, src {soff}, dst {doff}");
                    }
                    buf[doff..doff + len].copy_from_slice(&original[doff..doff + len]);
                    expect[doff..doff + len].copy_from_slice(&original[doff..doff + len]);
                }
            }
        }
    }
}

/// Every length × destination offset: exactly `dst[off..off + len]` becomes the value.
pub fn sweep_set(set: unsafe fn(*mut u8, u8, usize) -> *mut u8, max: usize, name: &str) {
    let size = OFFSETS + max + OFFSETS;
    let guard = vec![GUARD; size];
    let mut dst = guard.clone();
    for len in 0..=max {
        let value = pattern(len);
        let want = vec![value; len];
        for off in 0..OFFSETS {
            // SAFETY: the range lies inside `dst`.
            let ret = unsafe { set(dst.as_mut_ptr().add(off), value, len) };
            assert_eq!(
                ret,
                dst.as_mut_ptr().wrapping_add(off),
                "{name}: return value"
            );
            if dst[off..off + len] != want[..]
                || dst[..off] != guard[..off]
                || dst[off + len..] != guard[off + len..]
            {
                panic!("{name}: wrong fill for len {len}, offset {off}");
            }
            dst[off..off + len].fill(GUARD);
        }
    }
}

/// `memcmp` against the definition: equal ranges at every length × offset pair give 0; a
/// difference at position `k` (with a later difference too) gives exactly `a[k] - b[k]`.
pub fn sweep_compare(
    cmp: unsafe fn(*const u8, *const u8, usize) -> i32,
    max: usize,
    offsets: &[usize],
    name: &str,
) {
    let size = OFFSETS + max + OFFSETS;
    let a: Vec<u8> = (0..size).map(pattern).collect();
    let mut b = vec![0u8; size];
    for len in 0..=max {
        for &aoff in offsets {
            for &boff in offsets {
                b[boff..boff + len].copy_from_slice(&a[aoff..aoff + len]);
                // SAFETY: both ranges lie inside their buffers.
                let r = unsafe { cmp(a.as_ptr().add(aoff), b.as_ptr().add(boff), len) };
                assert_eq!(
                    r, 0,
                    "{name}: equal ranges, len {len}, offsets {aoff}/{boff}"
                );
            }
        }
        // Differences: every position for short lengths, a spread of positions for long ones.
        let positions: Vec<usize> = if len <= 160 {
            (0..len).collect()
        } else {
            [
                0,
                1,
                15,
                16,
                31,
                32,
                63,
                64,
                65,
                127,
                128,
                255,
                256,
                len / 2,
                len - 65,
                len - 64,
                len - 2,
                len - 1,
            ]
            .into_iter()
            .filter(|&k| k < len)
            .collect()
        };
        let (aoff, boff) = (len % OFFSETS, (len * 7) % OFFSETS);
        b[boff..boff + len].copy_from_slice(&a[aoff..aoff + len]);
        for k in positions {
            let original = b[boff + k];
            for delta in [1u8, 128, 250] {
                b[boff + k] = original.wrapping_add(delta);
                if k + 1 < len {
                    b[boff + len - 1] ^= 0x55; // a later difference that must not win
                }
                let want = i32::from(a[aoff + k]) - i32::from(b[boff + k]);
                // SAFETY: both ranges lie inside their buffers.
                let r = unsafe { cmp(a.as_ptr().add(aoff), b.as_ptr().add(boff), len) };
                assert_eq!(r, want, "{name}: len {len}, first difference at {k}");
                // SAFETY: as above, arguments swapped.
                let r = unsafe { cmp(b.as_ptr().add(boff), a.as_ptr().add(aoff), len) };
                assert_eq!(
                    r, -want,
                    "{name}: swapped, len {len}, first difference at {k}"
                );
                if k + 1 < len {
                    b[boff + len - 1] ^= 0x55;
                }
            }
            b[boff + k] = original;
        }
    }
}

/// All offsets 0..64.
pub fn all_offsets() -> Vec<usize> {
    (0..OFFSETS).collect()
}
