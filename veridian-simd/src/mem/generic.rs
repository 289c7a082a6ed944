//! The generic variant: portable Rust, 64-bit words in general-purpose registers, the same
//! size strategy as the SIMD variants with an 8-byte "vector" (pairs from both ends up to
//! 64 bytes, then a 32-byte loop with aligned stores, backwards for overlapping moves with the
//! destination above the source). No string instruction, no non-temporal store.
//!
//! **Relies on** nothing: it is correct on every architecture and in every context (no vector
//! state). It is what the dispatch falls back to, and what runs while the dispatch itself is
//! detecting the CPU (so detection code that happens to call `memcpy` cannot recurse).

use super::algo;
use super::thresholds::thresholds;
use super::word::Word;

/// `memmove` (also used as `memcpy`). Returns `dst`.
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable.
pub(crate) unsafe fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: forwarded caller contract.
    unsafe { algo::copy::<Word>(dst, src, n, copy_large) };
    dst
}

/// The large part of [`memmove`].
///
/// # Safety
/// As [`memmove`], `n > 64`.
unsafe fn copy_large(dst: *mut u8, src: *const u8, n: usize) {
    let t = thresholds();
    // SAFETY: forwarded caller contract.
    unsafe { algo::copy_large::<Word, false, false>(dst, src, n, &t) }
}

/// `memset`. Returns `dst`.
///
/// # Safety
/// `dst..dst + n` writable.
pub(crate) unsafe fn memset(dst: *mut u8, byte: u8, n: usize) -> *mut u8 {
    // SAFETY: forwarded caller contract.
    unsafe { algo::set::<Word>(dst, byte, n, set_large) };
    dst
}

/// The large part of [`memset`].
///
/// # Safety
/// As [`memset`], `n > 32`.
unsafe fn set_large(dst: *mut u8, byte: u8, n: usize) {
    let t = thresholds();
    // SAFETY: forwarded caller contract.
    unsafe { algo::set_large::<Word, false, false>(dst, byte, n, &t) }
}

/// `memcmp`.
///
/// # Safety
/// `a..a + n`, `b..b + n` readable.
pub(crate) unsafe fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded caller contract.
    unsafe { algo::compare::<Word>(a, b, n) }
}
