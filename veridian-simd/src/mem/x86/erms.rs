//! The ERMS variant: general-purpose registers for up to 64 bytes (overlapping word pairs, all
//! loads before stores), `rep movsb` / `rep stosb` above that, a backward word loop for
//! overlapping moves with the destination above the source. `memcmp` has no string-instruction
//! fast path (`repe cmpsb` is slow on every current core), so this variant's compare is the
//! generic word compare.
//!
//! **Why it exists beside AVX2**: it touches no vector register, so it is the variant for code
//! that runs where the vector state is not saved (an interrupt handler, a kernel that has not
//! enabled XSAVE yet). With FSRM the `rep movsb` start-up is cheap even for short copies.
//!
//! **Relies on** nothing beyond x86_64 (`rep movsb` works everywhere; ERMS only makes it fast).

use crate::mem::algo::{self, Vector};
use crate::mem::strings;
use crate::mem::thresholds::thresholds;
use crate::mem::word::{self, Word};

/// Bytes handled with register pairs before switching to the string instructions.
const SMALL: usize = 64;

/// `memmove` (also used as `memcpy`). Returns `dst`.
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable.
pub(crate) unsafe fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: forwarded caller contract. `algo::copy` with the word vector handles up to
    // 64 bytes (= 8 words) without a loop; above, `rep movsb` (a forward byte copy) is correct
    // unless the destination is inside the source, which the wrapping difference detects; then
    // `copy_large` walks backwards with words (or returns at once when `dst == src`).
    unsafe {
        if n <= SMALL {
            algo::copy::<Word>(dst, src, n, unreachable_large);
        } else if (dst as usize).wrapping_sub(src as usize) >= n {
            strings::rep_movsb(dst, src, n);
        } else {
            let t = thresholds();
            algo::copy_large::<Word, false, false>(dst, src, n, &t);
        }
    }
    dst
}

/// The large-copy hook of `algo::copy`, never reached for `n <= 8 * 8 = SMALL`.
///
/// # Safety
/// As [`memmove`].
unsafe fn unreachable_large(dst: *mut u8, src: *const u8, n: usize) {
    // Correct anyway should the sizes ever change: the generic large copy.
    let t = thresholds();
    // SAFETY: forwarded caller contract.
    unsafe { algo::copy_large::<Word, false, false>(dst, src, n, &t) }
}

/// `memset`. Returns `dst`.
///
/// # Safety
/// `dst..dst + n` writable.
pub(crate) unsafe fn memset(dst: *mut u8, byte: u8, n: usize) -> *mut u8 {
    // SAFETY: forwarded caller contract; every store lies in `[0, n)` (pairs from both ends).
    unsafe {
        if n <= 16 {
            word::set_le_16(dst, word::broadcast(byte), n);
        } else if n <= SMALL {
            let x = Word::splat(byte);
            Word::store(dst, x);
            Word::store(dst.add(8), x);
            Word::store(dst.add(n - 16), x);
            Word::store(dst.add(n - 8), x);
            if n > 32 {
                Word::store(dst.add(16), x);
                Word::store(dst.add(24), x);
                Word::store(dst.add(n - 32), x);
                Word::store(dst.add(n - 24), x);
            }
        } else {
            strings::rep_stosb(dst, byte, n);
        }
    }
    dst
}
