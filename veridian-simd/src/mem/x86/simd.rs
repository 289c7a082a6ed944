//! The AVX2 and AVX-512 variants, stamped out from one template.
//!
//! **What it does** (glibc's `memmove-vec-unaligned-erms` / `memset-vec-unaligned-erms`
//! strategy, `V` = 32 for AVX2, 64 for AVX-512):
//!
//! | size `n` | copy (`memcpy` = `memmove`) | set |
//! |---|---|---|
//! | `<= 16` | overlapping pairs of 8/4/2/1-byte words (general-purpose registers) | same |
//! | `<= 32`, `<= 64` | one pair of overlapping XMM (YMM) moves | same |
//! | `<= 2V`, `<= 4V`, `<= 8V` | 2, 4 or 8 vectors from both ends, all loaded before any store | 2, 4 or 8 stores |
//! | larger, no overlap, `>= non_temporal` | head line, 64-byte-aligned `vmovntdq` loop with `prefetcht0`, `sfence`, tail | same |
//! | larger, `>= rep_movsb` / `rep_stosb` | `rep movsb` (not when `dst` is inside the source or under 64 bytes below it) | `rep stosb` |
//! | larger otherwise | head and last 4 vectors loaded first, 4-vector loop with *aligned* stores (one pointer, the source addressed at a fixed offset from it, compared with a precomputed limit); backwards when `dst` is inside the source | forwards |
//!
//! `memcmp`: whole vectors compared to a bit mask (`vpcmpeqb`+`vpmovmskb`, or `vpcmpb` into a
//! mask register), 4 per iteration, the last vector overlapping; the first set bit is the
//! first difference. AVX-512 compares up to 64 bytes with masked loads (`vmovdqu8 {k}{z}`),
//! which cannot touch a byte past the end.
//!
//! **Relies on**: the variant's features being usable (CPUID + XCR0; the table is only handed
//! out then), the direction flag being clear (ABI), valid ranges from the caller.
//!
//! **Guarantees**: no byte outside `dst..dst + n` is written, none outside the sources read;
//! overlap is handled both ways (each small path loads everything before storing; the forward
//! loop runs only when `dst` is not inside the source, where its loads stay ahead of its
//! stores; the backward loop otherwise). AVX-512 uses `zmm16`-`zmm24`, which have no legacy-SSE
//! alias, so it needs no `vzeroupper`; AVX2 ends every YMM block with `vzeroupper`.
//! Everything is inline assembly (see `vasm`), so nothing here can become a call to `memcpy`.

/// Stamps out one SIMD variant module.
macro_rules! simd_variant {
    (
        features: $feat:literal,
        vec: $V:literal,
        ld: $ld:literal, sta: $sta:literal, vz: $vz:literal,
        regs: [$r0:literal, $r1:literal, $r2:literal, $r3:literal, $r4:literal,
               $r5:literal, $r6:literal, $r7:literal, $r8:literal],
        x: [$xld:literal, $x0:literal, $x1:literal],
        y: [$y0:literal, $y1:literal],
        splat: $splat:literal,
        clobbers: [$($c:tt),*],
        cmp_small: $cmp_small:ident,
        diff: [$($diff:literal),*], diff_inverted: $inv:literal,
    ) => {
        use crate::mem::strings;
        use crate::mem::thresholds;
        use crate::mem::word;
        use $crate::mem::x86::vasm::vasm;

        /// Bytes per vector.
        const V: usize = $V;
        /// See `algo`: `rep movsb` with the destination just below the source is slow.
        const REP_MOVSB_MIN_DISTANCE: usize = 64;

        /// `memmove` (also used as `memcpy`). Returns `dst`.
        ///
        /// # Safety
        /// `src..src + n` readable, `dst..dst + n` writable, the variant's features usable.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
            let e = src.wrapping_add(n);
            let de = dst.wrapping_add(n);
            // SAFETY: in every branch each access lies in `[0, n)` of its buffer (pairs start
            // at 0 and end at `n`, and the branch guarantees `n` covers their width); each block
            // loads everything before its first store, so overlap is fine; the features are
            // usable per the caller contract.
            unsafe {
                if n >= V {
                    // A vector and more first: two compares reach the 2-vector case (glibc's
                    // order; `n == V` stores the same vector twice).
                    if n <= 2 * V {
                        vasm!([
                            concat!($ld, " ", $r0, ", [{s}]"),
                            concat!($ld, " ", $r1, ", [{e} - {v}]"),
                            concat!($ld, " [{d}], ", $r0),
                            concat!($ld, " [{de} - {v}], ", $r1),
                            $vz,
                        ], [$($c),*], s = in(reg) src, e = in(reg) e, d = in(reg) dst, de = in(reg) de,
                           v = const V,);
                    } else if n <= 4 * V {
                        vasm!([
                            concat!($ld, " ", $r0, ", [{s}]"),
                            concat!($ld, " ", $r1, ", [{s} + {v}]"),
                            concat!($ld, " ", $r2, ", [{e} - {v2}]"),
                            concat!($ld, " ", $r3, ", [{e} - {v}]"),
                            concat!($ld, " [{d}], ", $r0),
                            concat!($ld, " [{d} + {v}], ", $r1),
                            concat!($ld, " [{de} - {v2}], ", $r2),
                            concat!($ld, " [{de} - {v}], ", $r3),
                            $vz,
                        ], [$($c),*], s = in(reg) src, e = in(reg) e, d = in(reg) dst, de = in(reg) de,
                           v = const V, v2 = const 2 * V,);
                    } else if n <= 8 * V {
                        vasm!([
                            concat!($ld, " ", $r0, ", [{s}]"),
                            concat!($ld, " ", $r1, ", [{s} + {v}]"),
                            concat!($ld, " ", $r2, ", [{s} + {v2}]"),
                            concat!($ld, " ", $r3, ", [{s} + {v3}]"),
                            concat!($ld, " ", $r4, ", [{e} - {v4}]"),
                            concat!($ld, " ", $r5, ", [{e} - {v3}]"),
                            concat!($ld, " ", $r6, ", [{e} - {v2}]"),
                            concat!($ld, " ", $r7, ", [{e} - {v}]"),
                            concat!($ld, " [{d}], ", $r0),
                            concat!($ld, " [{d} + {v}], ", $r1),
                            concat!($ld, " [{d} + {v2}], ", $r2),
                            concat!($ld, " [{d} + {v3}], ", $r3),
                            concat!($ld, " [{de} - {v4}], ", $r4),
                            concat!($ld, " [{de} - {v3}], ", $r5),
                            concat!($ld, " [{de} - {v2}], ", $r6),
                            concat!($ld, " [{de} - {v}], ", $r7),
                            $vz,
                        ], [$($c),*], s = in(reg) src, e = in(reg) e, d = in(reg) dst, de = in(reg) de,
                           v = const V, v2 = const 2 * V, v3 = const 3 * V, v4 = const 4 * V,);
                    } else {
                        copy_large(dst, src, n);
                    }
                } else if n <= 16 {
                    word::copy_le_16(dst, src, n);
                } else if n <= 32 {
                    vasm!([
                        concat!($xld, " ", $x0, ", [{s}]"),
                        concat!($xld, " ", $x1, ", [{e} - 16]"),
                        concat!($xld, " [{d}], ", $x0),
                        concat!($xld, " [{de} - 16], ", $x1),
                    ], [$($c),*], s = in(reg) src, e = in(reg) e, d = in(reg) dst, de = in(reg) de,);
                } else {
                    vasm!([
                        concat!($ld, " ", $y0, ", [{s}]"),
                        concat!($ld, " ", $y1, ", [{e} - 32]"),
                        concat!($ld, " [{d}], ", $y0),
                        concat!($ld, " [{de} - 32], ", $y1),
                        $vz,
                    ], [$($c),*], s = in(reg) src, e = in(reg) e, d = in(reg) dst, de = in(reg) de,);
                }
            }
            dst
        }

        /// The large part of [`memmove`]: picks the strategy (see the module table).
        ///
        /// # Safety
        /// As [`memmove`], and `n > 8 * V`.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn copy_large(dst: *mut u8, src: *const u8, n: usize) {
            let diff = (dst as usize).wrapping_sub(src as usize);
            if diff == 0 {
                return; // Same range: nothing to move.
            }
            // SAFETY: forwarded caller contract; each callee needs that plus `n > 8V` and the
            // overlap condition checked here.
            unsafe {
                if diff < n {
                    // `dst` is inside the source: only a backward walk never reads a byte it
                    // already overwrote.
                    return copy_backward(dst, src, n);
                }
                let back = (src as usize).wrapping_sub(dst as usize);
                let overlaps = back < n;
                if !overlaps && n >= thresholds::non_temporal() {
                    return copy_non_temporal(dst, src, n);
                }
                if n >= thresholds::rep_movsb() && (!overlaps || back >= REP_MOVSB_MIN_DISTANCE) {
                    // Forward byte order, so a destination below the source is correct.
                    return strings::rep_movsb(dst, src, n);
                }
                copy_forward(dst, src, n);
            }
        }

        /// Forward 4-vector loop with aligned stores; `dst` not inside `src + 1..src + n`.
        ///
        /// The first vector and the last four are loaded before any store. The loop stores
        /// `[p, p + 4V)` and afterwards loads only from `q + 4V..` where `q - p = src - dst`
        /// (positive or, without overlap, irrelevant), so no load reads a byte already written.
        ///
        /// # Safety
        /// As [`memmove`], `n > 8V`, no backward overlap.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn copy_forward(dst: *mut u8, src: *const u8, n: usize) {
            // SAFETY: `n > 8V`: the head and the four tail vectors lie inside both ranges; `p`
            // is `dst` rounded up to `V` (aligned stores) and `{t}` is `src - dst`, so `p + t`
            // is the matching source byte; the loop runs while more than `4V` bytes remain from
            // `p` (tested at its end: `p <= dst + V` and `n > 8V` leave more than `4V` for the
            // first block), and the tail vectors then cover `[p, dst + n)`.
            unsafe {
                vasm!([
                    concat!($ld, " ", $r4, ", [{s}]"),
                    concat!($ld, " ", $r5, ", [{e} - {v4}]"),
                    concat!($ld, " ", $r6, ", [{e} - {v3}]"),
                    concat!($ld, " ", $r7, ", [{e} - {v2}]"),
                    concat!($ld, " ", $r8, ", [{e} - {v}]"),
                    "mov {t}, {d}",
                    "and {t}, {vm}",
                    "neg {t}",
                    "add {t}, {v}",
                    "lea {p}, [{d} + {t}]",
                    "mov {t}, {s}",
                    "sub {t}, {d}",
                    "lea {l}, [{de} - {v4}]",
                    "2:",
                    concat!($ld, " ", $r0, ", [{p} + {t}]"),
                    concat!($ld, " ", $r1, ", [{p} + {t} + {v}]"),
                    concat!($ld, " ", $r2, ", [{p} + {t} + {v2}]"),
                    concat!($ld, " ", $r3, ", [{p} + {t} + {v3}]"),
                    concat!($sta, " [{p}], ", $r0),
                    concat!($sta, " [{p} + {v}], ", $r1),
                    concat!($sta, " [{p} + {v2}], ", $r2),
                    concat!($sta, " [{p} + {v3}], ", $r3),
                    "add {p}, {v4}",
                    "cmp {p}, {l}",
                    "jb 2b",
                    concat!($ld, " [{de} - {v4}], ", $r5),
                    concat!($ld, " [{de} - {v3}], ", $r6),
                    concat!($ld, " [{de} - {v2}], ", $r7),
                    concat!($ld, " [{de} - {v}], ", $r8),
                    concat!($ld, " [{d}], ", $r4),
                    $vz,
                ], [$($c),*],
                   s = in(reg) src, e = in(reg) src.add(n), d = in(reg) dst, de = in(reg) dst.add(n),
                   t = out(reg) _, p = out(reg) _, l = out(reg) _,
                   v = const V, v2 = const 2 * V, v3 = const 3 * V, v4 = const 4 * V, vm = const V - 1,);
            }
        }

        /// Backward 4-vector loop with aligned stores, for `src < dst < src + n`.
        ///
        /// The first four vectors and the last one are loaded before any store. Each iteration
        /// loads `[q - 4V, q)` and stores `[p - 4V, p)` with `p - q = dst - src > 0`, and every
        /// earlier store was at or above the previous `p`, so no load reads a byte already
        /// written.
        ///
        /// # Safety
        /// As [`memmove`], `n > 8V`.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn copy_backward(dst: *mut u8, src: *const u8, n: usize) {
            // SAFETY: mirror of `copy_forward`: `p` is `dst + n` rounded down to `V`, `{t}` is
            // `src - dst` (wrapping: the source lies below), the loop runs while more than `4V`
            // bytes remain below `p` (tested at its end: `p > dst + n - V` and `n > 8V` leave
            // more than `4V` for the first block), the first four vectors cover the rest at the
            // bottom and the last vector the unaligned top.
            unsafe {
                vasm!([
                    concat!($ld, " ", $r4, ", [{s}]"),
                    concat!($ld, " ", $r5, ", [{s} + {v}]"),
                    concat!($ld, " ", $r6, ", [{s} + {v2}]"),
                    concat!($ld, " ", $r7, ", [{s} + {v3}]"),
                    concat!($ld, " ", $r8, ", [{e} - {v}]"),
                    "mov {t}, {de}",
                    "and {t}, {vm}",
                    "mov {p}, {de}",
                    "sub {p}, {t}",
                    "mov {t}, {s}",
                    "sub {t}, {d}",
                    "lea {l}, [{d} + {v4}]",
                    "2:",
                    "sub {p}, {v4}",
                    concat!($ld, " ", $r0, ", [{p} + {t} + {v3}]"),
                    concat!($ld, " ", $r1, ", [{p} + {t} + {v2}]"),
                    concat!($ld, " ", $r2, ", [{p} + {t} + {v}]"),
                    concat!($ld, " ", $r3, ", [{p} + {t}]"),
                    concat!($sta, " [{p} + {v3}], ", $r0),
                    concat!($sta, " [{p} + {v2}], ", $r1),
                    concat!($sta, " [{p} + {v}], ", $r2),
                    concat!($sta, " [{p}], ", $r3),
                    "cmp {p}, {l}",
                    "ja 2b",
                    concat!($ld, " [{d}], ", $r4),
                    concat!($ld, " [{d} + {v}], ", $r5),
                    concat!($ld, " [{d} + {v2}], ", $r6),
                    concat!($ld, " [{d} + {v3}], ", $r7),
                    concat!($ld, " [{de} - {v}], ", $r8),
                    $vz,
                ], [$($c),*],
                   s = in(reg) src, e = in(reg) src.add(n), d = in(reg) dst, de = in(reg) dst.add(n),
                   t = out(reg) _, p = out(reg) _, l = out(reg) _,
                   v = const V, v2 = const 2 * V, v3 = const 3 * V, v4 = const 4 * V, vm = const V - 1,);
            }
        }

        /// Non-temporal copy for non-overlapping ranges above the cache-share threshold: the
        /// destination would only evict useful data, so the stores bypass the caches.
        ///
        /// # Safety
        /// As [`memmove`], `n > 8V` (so `n > 256 > 64 + 4V` for AVX2 and `n > 512` for AVX-512),
        /// no overlap at all.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn copy_non_temporal(dst: *mut u8, src: *const u8, n: usize) {
            // SAFETY: the first 64 bytes and the last `4V` lie inside both ranges (`n > 8V`);
            // `p` is `dst` rounded up to a 64-byte line (a multiple of `V`), so the streaming
            // stores are aligned; the loop stops when fewer than `4V` bytes remain, which the
            // tail covers. `prefetcht0` never faults. `sfence` orders the weakly-ordered
            // streaming stores before everything after the copy.
            unsafe {
                vasm!([
                    concat!($ld, " ", $r0, ", [{s}]"),
                    concat!($ld, " ", $r1, ", [{s} + {h}]"),
                    concat!($ld, " [{d}], ", $r0),
                    concat!($ld, " [{d} + {h}], ", $r1),
                    "mov {t}, {d}",
                    "and {t}, 63",
                    "neg {t}",
                    "add {t}, 64",
                    "lea {p}, [{d} + {t}]",
                    "lea {q}, [{s} + {t}]",
                    "2:",
                    "mov {t}, {de}",
                    "sub {t}, {p}",
                    "cmp {t}, {v4}",
                    "jb 3f",
                    "prefetcht0 [{q} + 512]",
                    concat!($ld, " ", $r0, ", [{q}]"),
                    concat!($ld, " ", $r1, ", [{q} + {v}]"),
                    concat!($ld, " ", $r2, ", [{q} + {v2}]"),
                    concat!($ld, " ", $r3, ", [{q} + {v3}]"),
                    concat!("vmovntdq [{p}], ", $r0),
                    concat!("vmovntdq [{p} + {v}], ", $r1),
                    concat!("vmovntdq [{p} + {v2}], ", $r2),
                    concat!("vmovntdq [{p} + {v3}], ", $r3),
                    "add {p}, {v4}",
                    "add {q}, {v4}",
                    "jmp 2b",
                    "3:",
                    "sfence",
                    concat!($ld, " ", $r0, ", [{e} - {v4}]"),
                    concat!($ld, " ", $r1, ", [{e} - {v3}]"),
                    concat!($ld, " ", $r2, ", [{e} - {v2}]"),
                    concat!($ld, " ", $r3, ", [{e} - {v}]"),
                    concat!($ld, " [{de} - {v4}], ", $r0),
                    concat!($ld, " [{de} - {v3}], ", $r1),
                    concat!($ld, " [{de} - {v2}], ", $r2),
                    concat!($ld, " [{de} - {v}], ", $r3),
                    $vz,
                ], [$($c),*],
                   s = in(reg) src, e = in(reg) src.add(n), d = in(reg) dst, de = in(reg) dst.add(n),
                   t = out(reg) _, p = out(reg) _, q = out(reg) _,
                   // Head: two moves of 32 bytes (AVX2) or two overlapping 64-byte moves.
                   h = const 64 - V,
                   v = const V, v2 = const 2 * V, v3 = const 3 * V, v4 = const 4 * V,);
            }
        }

        /// `memset`. Returns `dst`.
        ///
        /// # Safety
        /// `dst..dst + n` writable, the variant's features usable.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn memset(dst: *mut u8, byte: u8, n: usize) -> *mut u8 {
            let de = dst.wrapping_add(n);
            // SAFETY: every store lies in `[0, n)` given the branch's bound on `n`.
            unsafe {
                if n >= V {
                    if n <= 2 * V {
                        vasm!([
                            $splat,
                            concat!($ld, " [{d}], ", $r0),
                            concat!($ld, " [{de} - {v}], ", $r0),
                            $vz,
                        ], [$($c),*], b = in(reg) u32::from(byte), d = in(reg) dst, de = in(reg) de, v = const V,);
                    } else if n <= 4 * V {
                        vasm!([
                            $splat,
                            concat!($ld, " [{d}], ", $r0),
                            concat!($ld, " [{d} + {v}], ", $r0),
                            concat!($ld, " [{de} - {v2}], ", $r0),
                            concat!($ld, " [{de} - {v}], ", $r0),
                            $vz,
                        ], [$($c),*], b = in(reg) u32::from(byte), d = in(reg) dst, de = in(reg) de, v = const V,
                           v2 = const 2 * V,);
                    } else if n <= 8 * V {
                        vasm!([
                            $splat,
                            concat!($ld, " [{d}], ", $r0),
                            concat!($ld, " [{d} + {v}], ", $r0),
                            concat!($ld, " [{d} + {v2}], ", $r0),
                            concat!($ld, " [{d} + {v3}], ", $r0),
                            concat!($ld, " [{de} - {v4}], ", $r0),
                            concat!($ld, " [{de} - {v3}], ", $r0),
                            concat!($ld, " [{de} - {v2}], ", $r0),
                            concat!($ld, " [{de} - {v}], ", $r0),
                            $vz,
                        ], [$($c),*], b = in(reg) u32::from(byte), d = in(reg) dst, de = in(reg) de, v = const V,
                           v2 = const 2 * V, v3 = const 3 * V, v4 = const 4 * V,);
                    } else {
                        set_large(dst, byte, n);
                    }
                } else if n <= 16 {
                    word::set_le_16(dst, word::broadcast(byte), n);
                } else if n <= 32 {
                    vasm!([
                        $splat,
                        concat!($xld, " [{d}], ", $x0),
                        concat!($xld, " [{de} - 16], ", $x0),
                        $vz,
                    ], [$($c),*], b = in(reg) u32::from(byte), d = in(reg) dst, de = in(reg) de,);
                } else {
                    vasm!([
                        $splat,
                        concat!($ld, " [{d}], ", $y0),
                        concat!($ld, " [{de} - 32], ", $y0),
                        $vz,
                    ], [$($c),*], b = in(reg) u32::from(byte), d = in(reg) dst, de = in(reg) de,);
                }
            }
            dst
        }

        /// The large part of [`memset`] (`n > 8V`): non-temporal above the threshold, `rep
        /// stosb` in the middle, otherwise an aligned 4-vector loop.
        ///
        /// # Safety
        /// As [`memset`], `n > 8V`.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn set_large(dst: *mut u8, byte: u8, n: usize) {
            // SAFETY: `n > 8V >= 256`. The head store (one vector, or the first 64 bytes for the
            // non-temporal path) covers `[dst, p)`; the loops store whole blocks only while a
            // block (more than one, for the cached loop) remains before `dst + n` (the cached
            // loop tests at its end: `p <= dst + V` and `n > 8V` leave more than `4V` bytes for
            // its first block); the four tail stores cover the last `4V` bytes. `p` is aligned
            // to `V` (to 64 when streaming).
            unsafe {
                if n >= thresholds::non_temporal() && n >= 64 + 4 * V {
                    vasm!([
                        $splat,
                        concat!($ld, " [{d}], ", $r0),
                        concat!($ld, " [{d} + {h}], ", $r0),
                        "mov {p}, {d}",
                        "and {p}, -64",
                        "add {p}, 64",
                        "2:",
                        "mov {t}, {de}",
                        "sub {t}, {p}",
                        "cmp {t}, {v4}",
                        "jb 3f",
                        concat!("vmovntdq [{p}], ", $r0),
                        concat!("vmovntdq [{p} + {v}], ", $r0),
                        concat!("vmovntdq [{p} + {v2}], ", $r0),
                        concat!("vmovntdq [{p} + {v3}], ", $r0),
                        "add {p}, {v4}",
                        "jmp 2b",
                        "3:",
                        "sfence",
                        concat!($ld, " [{de} - {v4}], ", $r0),
                        concat!($ld, " [{de} - {v3}], ", $r0),
                        concat!($ld, " [{de} - {v2}], ", $r0),
                        concat!($ld, " [{de} - {v}], ", $r0),
                        $vz,
                    ], [$($c),*], b = in(reg) u32::from(byte), d = in(reg) dst, de = in(reg) dst.add(n),
                       t = out(reg) _, p = out(reg) _, h = const 64 - V,
                       v = const V, v2 = const 2 * V, v3 = const 3 * V, v4 = const 4 * V,);
                } else if n >= thresholds::rep_stosb() {
                    strings::rep_stosb(dst, byte, n);
                } else {
                    vasm!([
                        $splat,
                        concat!($ld, " [{d}], ", $r0),
                        "mov {p}, {d}",
                        "and {p}, {nm}",
                        "add {p}, {v}",
                        "lea {l}, [{de} - {v4}]",
                        "2:",
                        concat!($sta, " [{p}], ", $r0),
                        concat!($sta, " [{p} + {v}], ", $r0),
                        concat!($sta, " [{p} + {v2}], ", $r0),
                        concat!($sta, " [{p} + {v3}], ", $r0),
                        "add {p}, {v4}",
                        "cmp {p}, {l}",
                        "jb 2b",
                        concat!($ld, " [{de} - {v4}], ", $r0),
                        concat!($ld, " [{de} - {v3}], ", $r0),
                        concat!($ld, " [{de} - {v2}], ", $r0),
                        concat!($ld, " [{de} - {v}], ", $r0),
                        $vz,
                    ], [$($c),*], b = in(reg) u32::from(byte), d = in(reg) dst, de = in(reg) dst.add(n),
                       l = out(reg) _, p = out(reg) _, nm = const -($V as isize),
                       v = const V, v2 = const 2 * V, v3 = const 3 * V, v4 = const 4 * V,);
                }
            }
        }

        /// Bit `i` set where byte `i` of the `V` bytes at `a` and `b` differs.
        ///
        /// # Safety
        /// `a..a + V`, `b..b + V` readable; features usable.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn diff(a: *const u8, b: *const u8) -> u64 {
            let r: u64;
            // SAFETY: reads exactly `V` bytes from each pointer, per the caller contract.
            unsafe {
                vasm!([$($diff),*], [$($c),*], a = in(reg) a, b = in(reg) b, r = out(reg) r,);
            }
            if $inv { !r & (u64::MAX >> (64 - V)) } else { r }
        }

        /// `memcmp`: `a[k] - b[k]` at the first difference `k`, or 0.
        ///
        /// # Safety
        /// `a..a + n`, `b..b + n` readable; features usable.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
            // SAFETY: every compared vector lies in `[0, n)`: the loops run while whole vectors
            // fit and the final one starts at `n - V >= 0`; a mask's lowest set bit indexes a
            // byte inside its vector.
            unsafe {
                if n <= V {
                    return $cmp_small(a, b, n);
                }
                let mut i = 0;
                while i + 4 * V <= n {
                    let m0 = diff(a.add(i), b.add(i));
                    let m1 = diff(a.add(i + V), b.add(i + V));
                    let m2 = diff(a.add(i + 2 * V), b.add(i + 2 * V));
                    let m3 = diff(a.add(i + 3 * V), b.add(i + 3 * V));
                    if (m0 | m1 | m2 | m3) != 0 {
                        let (base, m) = if m0 != 0 {
                            (i, m0)
                        } else if m1 != 0 {
                            (i + V, m1)
                        } else if m2 != 0 {
                            (i + 2 * V, m2)
                        } else {
                            (i + 3 * V, m3)
                        };
                        return word::byte_diff(a, b, base + m.trailing_zeros() as usize);
                    }
                    i += 4 * V;
                }
                while i + V <= n {
                    let m = diff(a.add(i), b.add(i));
                    if m != 0 {
                        return word::byte_diff(a, b, i + m.trailing_zeros() as usize);
                    }
                    i += V;
                }
                if i < n {
                    // Overlaps bytes already found equal: its first difference is the first
                    // difference of the whole range.
                    let at = n - V;
                    let m = diff(a.add(at), b.add(at));
                    if m != 0 {
                        return word::byte_diff(a, b, at + m.trailing_zeros() as usize);
                    }
                }
                0
            }
        }
    };
}

/// The AVX2 variant: YMM vectors, VEX encodings, `vzeroupper` after every YMM block.
pub(crate) mod avx2 {
    /// Bit `i` set where byte `i` of the 16 bytes at `p` and `q` differs.
    ///
    /// # Safety
    /// `p..p + 16`, `q..q + 16` readable, AVX2 usable.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn x16(p: *const u8, q: *const u8) -> u32 {
        let r: u32;
        // SAFETY: reads 16 bytes at each pointer (caller contract); VEX XMM instructions.
        unsafe {
            vasm!(["vmovdqu xmm0, [{p}]", "vpcmpeqb xmm0, xmm0, [{q}]", "vpmovmskb {r:e}, xmm0"],
                ["xmm0"], p = in(reg) p, q = in(reg) q, r = out(reg) r,);
        }
        !r & 0xffff
    }

    /// `n <= 32` bytes: words up to 16, two overlapping XMM compares above.
    ///
    /// # Safety
    /// `a..a + n`, `b..b + n` readable, AVX2 usable.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn cmp_small(a: *const u8, b: *const u8, n: usize) -> i32 {
        if n <= 16 {
            // SAFETY: forwarded caller contract, `n <= 16`.
            return unsafe { word::cmp_le_16(a, b, n) };
        }
        // SAFETY: `16 < n <= 32`: the first 16 bytes lie inside both ranges.
        let m = unsafe { x16(a, b) };
        if m != 0 {
            // SAFETY: the index is below 16 < n.
            return unsafe { word::byte_diff(a, b, m.trailing_zeros() as usize) };
        }
        // SAFETY: `n - 16 >= 1`, so both pointers stay inside the ranges.
        let (a2, b2) = unsafe { (a.add(n - 16), b.add(n - 16)) };
        // SAFETY: 16 bytes from `n - 16` end at `n`.
        let m = unsafe { x16(a2, b2) };
        if m != 0 {
            // SAFETY: the index is below n.
            return unsafe { word::byte_diff(a, b, n - 16 + m.trailing_zeros() as usize) };
        }
        0
    }

    simd_variant! {
        features: "avx2",
        vec: 32,
        ld: "vmovdqu", sta: "vmovdqa", vz: "vzeroupper",
        regs: ["ymm0", "ymm1", "ymm2", "ymm3", "ymm4", "ymm5", "ymm6", "ymm7", "ymm8"],
        x: ["vmovdqu", "xmm0", "xmm1"],
        y: ["ymm0", "ymm1"],
        splat: "vmovd xmm0, {b:e}\nvpbroadcastb ymm0, xmm0",
        clobbers: ["ymm0", "ymm1", "ymm2", "ymm3", "ymm4", "ymm5", "ymm6", "ymm7", "ymm8"],
        cmp_small: cmp_small,
        diff: ["vmovdqu ymm0, [{a}]", "vpcmpeqb ymm0, ymm0, [{b}]", "vpmovmskb {r:e}, ymm0", "vzeroupper"],
        diff_inverted: true,
    }
}

/// The AVX-512 variant: ZMM vectors in `zmm16`-`zmm24` (EVEX only: no `vzeroupper` needed),
/// masked loads for small compares.
pub(crate) mod avx512 {
    /// `n <= 64` bytes: words up to 16, one masked 64-byte compare above.
    ///
    /// # Safety
    /// `a..a + n`, `b..b + n` readable, AVX-512F/BW/VL usable.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn cmp_small(a: *const u8, b: *const u8, n: usize) -> i32 {
        if n <= 16 {
            // SAFETY: forwarded caller contract, `n <= 16`.
            return unsafe { word::cmp_le_16(a, b, n) };
        }
        let mask = u64::MAX >> (64 - n);
        let m: u64;
        // SAFETY: the mask selects exactly bytes `0..n`, which are readable; masked-off bytes
        // are not accessed (fault suppression), so nothing past the end is touched.
        unsafe {
            vasm!([
                "kmovq k1, {mask}",
                "vmovdqu8 zmm16 {{k1}} {{z}}, [{a}]",
                "vmovdqu8 zmm17 {{k1}} {{z}}, [{b}]",
                "vpcmpb k2, zmm16, zmm17, 4",
                "kmovq {m}, k2",
            ], ["zmm16", "zmm17", "k1", "k2"], mask = in(reg) mask, a = in(reg) a, b = in(reg) b,
               m = out(reg) m,);
        }
        if m == 0 {
            0
        } else {
            // SAFETY: the mask only has bits below `n`.
            unsafe { word::byte_diff(a, b, m.trailing_zeros() as usize) }
        }
    }

    simd_variant! {
        features: "avx512f,avx512bw,avx512vl",
        vec: 64,
        ld: "vmovdqu64", sta: "vmovdqa64", vz: "",
        regs: ["zmm16", "zmm17", "zmm18", "zmm19", "zmm20", "zmm21", "zmm22", "zmm23", "zmm24"],
        x: ["vmovdqu64", "xmm16", "xmm17"],
        y: ["ymm16", "ymm17"],
        splat: "vpbroadcastb zmm16, {b:e}",
        clobbers: ["zmm16", "zmm17", "zmm18", "zmm19", "zmm20", "zmm21", "zmm22", "zmm23", "zmm24", "k1"],
        cmp_small: cmp_small,
        diff: ["vmovdqu64 zmm16, [{a}]", "vpcmpb k1, zmm16, [{b}], 4", "kmovq {r}, k1"],
        diff_inverted: false,
    }
}
