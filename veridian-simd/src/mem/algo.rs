//! The size strategy, written once over a [`Vector`] type and instantiated per variant.
//!
//! **What it does** (glibc's `memmove-vec-unaligned-erms.S` and `memset-vec-unaligned-erms.S`,
//! with `V` = the vector size: 8 for the generic word, 32 for AVX2, 64 for AVX-512):
//!
//! | size `n` | copy (`memcpy` = `memmove`) | set |
//! |---|---|---|
//! | `<= V` | the variant's small path: overlapping pairs of the widest fitting access | same |
//! | `<= 2V`, `<= 4V`, `<= 8V` | 2, 4 or 8 unaligned vectors from both ends, all loaded before any store | 2 or 4 stores |
//! | larger, no overlap, `>= non_temporal` | head, 64-byte aligned non-temporal loop with prefetch, `sfence`, tail | same, `sfence` |
//! | larger, `>= rep_movsb` / `rep_stosb` (ERMS variants) | `rep movsb` | `rep stosb` |
//! | larger otherwise | head and last 4 vectors loaded first, then a 4-vector loop with *aligned* stores; backwards when `dst` is inside the source | same, forwards |
//!
//! The x86 SIMD variants follow the same table in inline assembly (`x86::simd`: on the
//! soft-float kernel target no vector value may exist in Rust code); this generic version runs
//! it for the general-purpose-register variants (generic and ERMS) with the 8-byte [`Vector`]
//! of `word`, and is the reference a future port (NEON, RVV) would instantiate.
//!
//! **Relies on**: the caller passing valid ranges.
//!
//! **Guarantees**: no byte outside `dst..dst + n` is written and none outside `src..src + n`
//! (`a`/`b` for compares) is read; overlapping copies are correct in both directions (every
//! path either loads all its data before storing or walks in the direction that never reads a
//! byte it already overwrote; see `copy_forward` and `copy_backward`).

use super::strings;
use super::thresholds::Thresholds;

/// One register's worth of bytes (today the 64-bit [`Word`](super::word::Word)) and the
/// operations the algorithms need.
pub(crate) trait Vector: Copy {
    /// Bytes per vector; a power of two.
    const SIZE: usize;
    /// Unaligned load.
    ///
    /// # Safety
    /// `p..p + SIZE` readable; the CPU has the variant's features.
    unsafe fn load(p: *const u8) -> Self;
    /// Unaligned store.
    ///
    /// # Safety
    /// `p..p + SIZE` writable; the CPU has the variant's features.
    unsafe fn store(p: *mut u8, v: Self);
    /// Aligned store.
    ///
    /// # Safety
    /// As [`Vector::store`], and `p` aligned to `SIZE`.
    unsafe fn store_aligned(p: *mut u8, v: Self);
    /// Non-temporal store (bypasses the caches); needs [`Vector::stream_fence`] afterwards.
    ///
    /// # Safety
    /// As [`Vector::store_aligned`].
    unsafe fn stream(p: *mut u8, v: Self);
    /// Orders earlier non-temporal stores before later stores (`sfence`).
    ///
    /// # Safety
    /// The CPU has the variant's features.
    unsafe fn stream_fence();
    /// `b` in every byte.
    ///
    /// # Safety
    /// The CPU has the variant's features.
    unsafe fn splat(b: u8) -> Self;
    /// Zero when `a == b`; otherwise its lowest set bit is the index of the first differing byte.
    ///
    /// # Safety
    /// The CPU has the variant's features.
    unsafe fn diff_mask(a: Self, b: Self) -> u64;
    /// Copies `n <= SIZE` bytes, loading everything before storing (overlap-safe).
    ///
    /// # Safety
    /// `src..src + n` readable, `dst..dst + n` writable, `n <= SIZE`, features present.
    unsafe fn copy_small(dst: *mut u8, src: *const u8, n: usize);
    /// Sets `n <= SIZE` bytes to `byte`.
    ///
    /// # Safety
    /// `dst..dst + n` writable, `n <= SIZE`, features present.
    unsafe fn set_small(dst: *mut u8, byte: u8, n: usize);
    /// Compares `n <= SIZE` bytes.
    ///
    /// # Safety
    /// `a..a + n`, `b..b + n` readable, `n <= SIZE`, features present.
    unsafe fn cmp_small(a: *const u8, b: *const u8, n: usize) -> i32;
}

/// How far ahead of the non-temporal loop the source is prefetched, in bytes.
const PREFETCH_AHEAD: usize = 512;

/// Cache-line size the non-temporal loop aligns its destination to: a streaming store of a
/// whole line avoids the read-for-ownership and partial-line write combining.
const LINE: usize = 64;

/// The "forward overlap distance" under which `rep movsb` is avoided: on many Intel parts a
/// `rep movsb` whose destination is less than 64 bytes below its source falls off the fast
/// path (glibc's `Avoid_Short_Distance_REP_MOVSB`).
const REP_MOVSB_MIN_DISTANCE: usize = 64;

/// `memmove` (and `memcpy`): any overlap allowed.
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable, the CPU has the features of `V`.
#[inline(always)]
pub(crate) unsafe fn copy<V: Vector>(
    dst: *mut u8,
    src: *const u8,
    n: usize,
    large: unsafe fn(*mut u8, *const u8, usize),
) {
    let v = V::SIZE;
    // SAFETY: every offset below is inside `[0, n)` of both buffers given the branch's bound on
    // `n`; every branch loads all its vectors before its first store (overlap-safe).
    unsafe {
        if n <= v {
            V::copy_small(dst, src, n);
        } else if n <= 2 * v {
            let a = V::load(src);
            let b = V::load(src.add(n - v));
            V::store(dst, a);
            V::store(dst.add(n - v), b);
        } else if n <= 4 * v {
            let a = V::load(src);
            let b = V::load(src.add(v));
            let c = V::load(src.add(n - 2 * v));
            let d = V::load(src.add(n - v));
            V::store(dst, a);
            V::store(dst.add(v), b);
            V::store(dst.add(n - 2 * v), c);
            V::store(dst.add(n - v), d);
        } else if n <= 8 * v {
            let a = V::load(src);
            let b = V::load(src.add(v));
            let c = V::load(src.add(2 * v));
            let d = V::load(src.add(3 * v));
            let e = V::load(src.add(n - 4 * v));
            let f = V::load(src.add(n - 3 * v));
            let g = V::load(src.add(n - 2 * v));
            let h = V::load(src.add(n - v));
            V::store(dst, a);
            V::store(dst.add(v), b);
            V::store(dst.add(2 * v), c);
            V::store(dst.add(3 * v), d);
            V::store(dst.add(n - 4 * v), e);
            V::store(dst.add(n - 3 * v), f);
            V::store(dst.add(n - 2 * v), g);
            V::store(dst.add(n - v), h);
        } else {
            large(dst, src, n);
        }
    }
}

/// The out-of-line part of [`copy`], for `n > 8 * V::SIZE`.
///
/// # Safety
/// As [`copy`], and `n > 8 * V::SIZE`.
#[inline(always)]
pub(crate) unsafe fn copy_large<V: Vector, const ERMS: bool, const NT: bool>(
    dst: *mut u8,
    src: *const u8,
    n: usize,
    t: &Thresholds,
) {
    let diff = (dst as usize).wrapping_sub(src as usize);
    if diff == 0 {
        return; // Same range: nothing to move.
    }
    // SAFETY: forwarded caller contract; each callee needs exactly that plus `n > 8V`.
    unsafe {
        if diff < n {
            // `dst` lies inside the source: only a backward walk never reads a byte it has
            // already overwritten.
            return copy_backward::<V>(dst, src, n);
        }
        let back_distance = (src as usize).wrapping_sub(dst as usize);
        let overlaps = back_distance < n;
        if NT && !overlaps && n >= t.non_temporal {
            return copy_non_temporal::<V>(dst, src, n);
        }
        if ERMS && n >= t.rep_movsb && (!overlaps || back_distance >= REP_MOVSB_MIN_DISTANCE) {
            // `rep movsb` copies byte by byte forwards (architecturally), so a destination
            // below the source is fine.
            return strings::rep_movsb(dst, src, n);
        }
        copy_forward::<V>(dst, src, n)
    }
}

/// Forward 4-vector loop with aligned stores. Correct when `dst` is not inside
/// `src + 1..src + n` (no overlap, or `dst < src`).
///
/// Why overlap with `dst < src` is safe: the first vector and the last four are loaded before
/// any store; the loop's stores to `[d, d + 4V)` are followed only by loads from `s + 4V..`,
/// and `s - d = src - dst > 0`, so no load reads a byte an earlier store wrote.
///
/// # Safety
/// As [`copy`], `n > 8V`, and no backward overlap.
#[inline(always)]
unsafe fn copy_forward<V: Vector>(dst: *mut u8, src: *const u8, n: usize) {
    let v = V::SIZE;
    // SAFETY: `n > 8v`, so the head vector and the four tail vectors lie inside the ranges; the
    // loop runs while more than `4v` bytes remain from `d`, so its four vectors end before
    // `dst + n`; `d` is `dst` rounded up to `v`, so the aligned stores are aligned.
    unsafe {
        let head = V::load(src);
        let t0 = V::load(src.add(n - 4 * v));
        let t1 = V::load(src.add(n - 3 * v));
        let t2 = V::load(src.add(n - 2 * v));
        let t3 = V::load(src.add(n - v));
        let skip = v - (dst as usize & (v - 1));
        let mut d = dst.add(skip);
        let mut s = src.add(skip);
        let mut rem = n - skip;
        while rem > 4 * v {
            let a = V::load(s);
            let b = V::load(s.add(v));
            let c = V::load(s.add(2 * v));
            let e = V::load(s.add(3 * v));
            V::store_aligned(d, a);
            V::store_aligned(d.add(v), b);
            V::store_aligned(d.add(2 * v), c);
            V::store_aligned(d.add(3 * v), e);
            d = d.add(4 * v);
            s = s.add(4 * v);
            rem -= 4 * v;
        }
        // `rem <= 4v`: the tail vectors cover `[d, dst + n)`; the head covers `[dst, dst + skip)`.
        V::store(dst.add(n - 4 * v), t0);
        V::store(dst.add(n - 3 * v), t1);
        V::store(dst.add(n - 2 * v), t2);
        V::store(dst.add(n - v), t3);
        V::store(dst, head);
    }
}

/// Backward 4-vector loop with aligned stores, for `src < dst < src + n`.
///
/// Why it is safe: the first four vectors and the last one are loaded before any store; each
/// iteration loads `[s - 4V, s)` and stores `[d - 4V, d)` with `d - s = dst - src > 0`, and
/// every earlier store was at or above the previous `d > s`, so no load reads a byte an earlier
/// store wrote.
///
/// # Safety
/// As [`copy`], `n > 8V`.
#[inline(always)]
unsafe fn copy_backward<V: Vector>(dst: *mut u8, src: *const u8, n: usize) {
    let v = V::SIZE;
    // SAFETY: as in `copy_forward`, mirrored: `de` is `dst + n` rounded down to `v`, the loop
    // runs while more than `4v` bytes remain below `de`, and the head/tail stores cover the rest.
    unsafe {
        let h0 = V::load(src);
        let h1 = V::load(src.add(v));
        let h2 = V::load(src.add(2 * v));
        let h3 = V::load(src.add(3 * v));
        let last = V::load(src.add(n - v));
        let dend = dst.add(n);
        let skip = dend as usize & (v - 1);
        let mut de = dend.sub(skip);
        let mut se = src.add(n - skip);
        let mut rem = n - skip;
        while rem > 4 * v {
            de = de.sub(4 * v);
            se = se.sub(4 * v);
            let a = V::load(se.add(3 * v));
            let b = V::load(se.add(2 * v));
            let c = V::load(se.add(v));
            let e = V::load(se);
            V::store_aligned(de.add(3 * v), a);
            V::store_aligned(de.add(2 * v), b);
            V::store_aligned(de.add(v), c);
            V::store_aligned(de, e);
            rem -= 4 * v;
        }
        V::store(dst, h0);
        V::store(dst.add(v), h1);
        V::store(dst.add(2 * v), h2);
        V::store(dst.add(3 * v), h3);
        V::store(dend.sub(v), last);
    }
}

/// Non-temporal copy for non-overlapping ranges larger than the last-level-cache share: the
/// destination would only evict useful data, so it bypasses the caches.
///
/// # Safety
/// As [`copy`], `n > 8V`, no overlap at all.
#[inline(always)]
unsafe fn copy_non_temporal<V: Vector>(dst: *mut u8, src: *const u8, n: usize) {
    let v = V::SIZE;
    let block = 4 * v;
    // SAFETY: `n > 8v >= LINE`, so the first line and the last `block` bytes lie inside both
    // ranges; `d` is `dst` rounded up to a line (a multiple of `v`), so streaming stores are
    // aligned; the loop stops when fewer than `block` bytes remain, which the tail covers. The
    // prefetch hint cannot fault, even past the end of `src`.
    unsafe {
        let mut k = 0;
        while k < LINE {
            V::store(dst.add(k), V::load(src.add(k)));
            k += v;
        }
        let skip = LINE - (dst as usize & (LINE - 1));
        let mut d = dst.add(skip);
        let mut s = src.add(skip);
        let mut rem = n - skip;
        while rem >= block {
            strings::prefetch(s.wrapping_add(PREFETCH_AHEAD));
            let a = V::load(s);
            let b = V::load(s.add(v));
            let c = V::load(s.add(2 * v));
            let e = V::load(s.add(3 * v));
            V::stream(d, a);
            V::stream(d.add(v), b);
            V::stream(d.add(2 * v), c);
            V::stream(d.add(3 * v), e);
            d = d.add(block);
            s = s.add(block);
            rem -= block;
        }
        // Non-temporal stores are weakly ordered: fence them before anything that follows
        // (another CPU reading the copy after a release store must see it).
        V::stream_fence();
        let mut k = block;
        while k > 0 {
            V::store(dst.add(n - k), V::load(src.add(n - k)));
            k -= v;
        }
    }
}

/// `memset`.
///
/// # Safety
/// `dst..dst + n` writable, the CPU has the features of `V`.
#[inline(always)]
pub(crate) unsafe fn set<V: Vector>(
    dst: *mut u8,
    byte: u8,
    n: usize,
    large: unsafe fn(*mut u8, u8, usize),
) {
    let v = V::SIZE;
    // SAFETY: every store lies inside `[0, n)` given the branch's bound on `n`.
    unsafe {
        if n <= v {
            V::set_small(dst, byte, n);
        } else if n <= 2 * v {
            let x = V::splat(byte);
            V::store(dst, x);
            V::store(dst.add(n - v), x);
        } else if n <= 4 * v {
            let x = V::splat(byte);
            V::store(dst, x);
            V::store(dst.add(v), x);
            V::store(dst.add(n - 2 * v), x);
            V::store(dst.add(n - v), x);
        } else {
            large(dst, byte, n);
        }
    }
}

/// The out-of-line part of [`set`], for `n > 4 * V::SIZE`.
///
/// # Safety
/// As [`set`], and `n > 4 * V::SIZE`.
#[inline(always)]
pub(crate) unsafe fn set_large<V: Vector, const ERMS: bool, const NT: bool>(
    dst: *mut u8,
    byte: u8,
    n: usize,
    t: &Thresholds,
) {
    let v = V::SIZE;
    // SAFETY: `n > 4v`. The head store covers `[dst, d)`; the loops store whole vectors only
    // while more than (or, non-temporal, at least) a block remains before `dst + n`; the tail
    // stores cover the last `4v` bytes. `d` is aligned to `v` (or to `LINE`, a multiple of `v`,
    // and `n > 4v >= LINE` for the SIMD vectors; the generic word never streams).
    unsafe {
        let x = V::splat(byte);
        let end = dst.add(n);
        if NT && n >= t.non_temporal && 4 * v >= LINE {
            let mut k = 0;
            while k < LINE {
                V::store(dst.add(k), x);
                k += v;
            }
            let mut d = dst.add(LINE - (dst as usize & (LINE - 1)));
            while end as usize - d as usize >= 4 * v {
                V::stream(d, x);
                V::stream(d.add(v), x);
                V::stream(d.add(2 * v), x);
                V::stream(d.add(3 * v), x);
                d = d.add(4 * v);
            }
            V::stream_fence();
        } else if ERMS && n >= t.rep_stosb {
            return strings::rep_stosb(dst, byte, n);
        } else {
            V::store(dst, x);
            let mut d = dst.add(v - (dst as usize & (v - 1)));
            while end as usize - d as usize > 4 * v {
                V::store_aligned(d, x);
                V::store_aligned(d.add(v), x);
                V::store_aligned(d.add(2 * v), x);
                V::store_aligned(d.add(3 * v), x);
                d = d.add(4 * v);
            }
        }
        V::store(end.sub(4 * v), x);
        V::store(end.sub(3 * v), x);
        V::store(end.sub(2 * v), x);
        V::store(end.sub(v), x);
    }
}

/// `memcmp`: the difference of the first differing bytes (as unsigned), or 0.
///
/// # Safety
/// `a..a + n` and `b..b + n` readable, the CPU has the features of `V`.
#[inline(always)]
pub(crate) unsafe fn compare<V: Vector>(a: *const u8, b: *const u8, n: usize) -> i32 {
    let v = V::SIZE;
    // SAFETY: every load lies inside `[0, n)`: the loops run while whole vectors fit, and the
    // final vector starts at `n - v >= 0` (the `n <= v` case returned earlier). A mask's lowest
    // set bit is a byte index inside the vector it came from.
    unsafe {
        if n <= v {
            return V::cmp_small(a, b, n);
        }
        let mut i = 0;
        while i + 4 * v <= n {
            let m0 = V::diff_mask(V::load(a.add(i)), V::load(b.add(i)));
            let m1 = V::diff_mask(V::load(a.add(i + v)), V::load(b.add(i + v)));
            let m2 = V::diff_mask(V::load(a.add(i + 2 * v)), V::load(b.add(i + 2 * v)));
            let m3 = V::diff_mask(V::load(a.add(i + 3 * v)), V::load(b.add(i + 3 * v)));
            if (m0 | m1 | m2 | m3) != 0 {
                let (base, m) = if m0 != 0 {
                    (i, m0)
                } else if m1 != 0 {
                    (i + v, m1)
                } else if m2 != 0 {
                    (i + 2 * v, m2)
                } else {
                    (i + 3 * v, m3)
                };
                return crate::mem::word::byte_diff(a, b, base + m.trailing_zeros() as usize);
            }
            i += 4 * v;
        }
        while i + v <= n {
            let m = V::diff_mask(V::load(a.add(i)), V::load(b.add(i)));
            if m != 0 {
                return crate::mem::word::byte_diff(a, b, i + m.trailing_zeros() as usize);
            }
            i += v;
        }
        if i < n {
            // The last vector overlaps bytes already found equal, so its first difference is
            // the first difference of the whole range.
            let at = n - v;
            let m = V::diff_mask(V::load(a.add(at)), V::load(b.add(at)));
            if m != 0 {
                return crate::mem::word::byte_diff(a, b, at + m.trailing_zeros() as usize);
            }
        }
        0
    }
}
