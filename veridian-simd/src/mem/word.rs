//! General-purpose-register building blocks: unaligned word access, the small-size paths every
//! variant shares (0..=16 bytes), and the portable 8-byte "vector" the generic variant runs the
//! common algorithm with.
//!
//! **Relies on** nothing but the pointer contracts of the callers. Unaligned words are read and
//! written through a `#[repr(C, packed)]` wrapper, which compiles to one plain load or store: no
//! `copy_nonoverlapping`, no `llvm.memcpy`, so nothing here can turn into a call to `memcpy`
//! (which would recurse when the crate exports that symbol; the crate is also `#![no_builtins]`,
//! so loops are never rewritten into such calls).
//!
//! **Guarantees**: every small path loads everything it needs before it stores anything, so it
//! is a correct `memmove` for overlapping ranges too, and no path touches a byte outside
//! `[ptr, ptr + n)`.

use super::algo::Vector;

/// An unaligned `T`, read or written as one access.
#[repr(C, packed)]
#[derive(Clone, Copy)]
struct Unaligned<T: Copy>(T);

/// Reads a `T` from a possibly unaligned address.
///
/// # Safety
/// `p..p + size_of::<T>()` must be readable.
#[inline(always)]
pub(crate) unsafe fn load<T: Copy>(p: *const u8) -> T {
    // SAFETY: the caller guarantees the bytes are readable; `Unaligned<T>` has alignment 1, so
    // any address is suitably aligned, and every bit pattern of the integer `T`s used is valid.
    unsafe { (*(p as *const Unaligned<T>)).0 }
}

/// Writes a `T` to a possibly unaligned address.
///
/// # Safety
/// `p..p + size_of::<T>()` must be writable.
#[inline(always)]
pub(crate) unsafe fn store<T: Copy>(p: *mut u8, v: T) {
    // SAFETY: the caller guarantees the bytes are writable; alignment 1 as in `load`.
    unsafe { (*(p as *mut Unaligned<T>)).0 = v }
}

/// Copies `n <= 16` bytes, overlapping allowed: two possibly overlapping loads of the largest
/// width that fits, both done before either store (glibc's small-size strategy).
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable, `n <= 16`.
#[inline(always)]
pub(crate) unsafe fn copy_le_16(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: in all branches, each access lies inside `[0, n)` of its buffer, because the second
    // access of a pair starts at `n - width` and the branch guarantees `n >= width`.
    unsafe {
        if n >= 8 {
            let a: u64 = load(src);
            let b: u64 = load(src.add(n - 8));
            store(dst, a);
            store(dst.add(n - 8), b);
        } else if n >= 4 {
            let a: u32 = load(src);
            let b: u32 = load(src.add(n - 4));
            store(dst, a);
            store(dst.add(n - 4), b);
        } else if n >= 2 {
            let a: u16 = load(src);
            let b: u16 = load(src.add(n - 2));
            store(dst, a);
            store(dst.add(n - 2), b);
        } else if n == 1 {
            *dst = *src;
        }
    }
}

/// Sets `n <= 16` bytes to the byte repeated in `word` (every byte of `word` equal).
///
/// # Safety
/// `dst..dst + n` writable, `n <= 16`.
#[inline(always)]
pub(crate) unsafe fn set_le_16(dst: *mut u8, word: u64, n: usize) {
    // SAFETY: in all branches, as in `copy_le_16`, every store lies inside `[0, n)`.
    unsafe {
        if n >= 8 {
            store(dst, word);
            store(dst.add(n - 8), word);
        } else if n >= 4 {
            store(dst, word as u32);
            store(dst.add(n - 4), word as u32);
        } else if n >= 2 {
            store(dst, word as u16);
            store(dst.add(n - 2), word as u16);
        } else if n == 1 {
            *dst = word as u8;
        }
    }
}

/// `byte` in every byte of a `u64`.
#[inline(always)]
pub(crate) const fn broadcast(byte: u8) -> u64 {
    (byte as u64).wrapping_mul(0x0101_0101_0101_0101)
}

/// `a[k] - b[k]` as `i32`: the memcmp result at the first differing index `k`.
///
/// # Safety
/// `a + k` and `b + k` readable.
#[inline(always)]
pub(crate) unsafe fn byte_diff(a: *const u8, b: *const u8, k: usize) -> i32 {
    // SAFETY: the caller guarantees both bytes are readable.
    unsafe { i32::from(*a.add(k)) - i32::from(*b.add(k)) }
}

/// Compares `n <= 16` bytes; returns the memcmp result.
///
/// # Safety
/// `a..a + n` and `b..b + n` readable, `n <= 16`.
#[inline(always)]
pub(crate) unsafe fn cmp_le_16(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: in all branches, every access lies inside `[0, n)` of both buffers, as in
    // `copy_le_16`; `byte_diff` gets an index found inside the compared words.
    unsafe {
        if n >= 8 {
            let x = load::<u64>(a) ^ load::<u64>(b);
            if x != 0 {
                return byte_diff(a, b, (x.trailing_zeros() / 8) as usize);
            }
            let x = load::<u64>(a.add(n - 8)) ^ load::<u64>(b.add(n - 8));
            if x != 0 {
                return byte_diff(a, b, n - 8 + (x.trailing_zeros() / 8) as usize);
            }
            0
        } else if n >= 4 {
            let x = load::<u32>(a) ^ load::<u32>(b);
            if x != 0 {
                return byte_diff(a, b, (x.trailing_zeros() / 8) as usize);
            }
            let x = load::<u32>(a.add(n - 4)) ^ load::<u32>(b.add(n - 4));
            if x != 0 {
                return byte_diff(a, b, n - 4 + (x.trailing_zeros() / 8) as usize);
            }
            0
        } else {
            let mut k = 0;
            while k < n {
                let d = byte_diff(a, b, k);
                if d != 0 {
                    return d;
                }
                k += 1;
            }
            0
        }
    }
}

/// The portable "vector": one 64-bit word in a general-purpose register. The generic variant
/// runs the same size strategy as the SIMD variants with it (8-byte pieces, 32-byte loop).
#[derive(Clone, Copy)]
pub(crate) struct Word(u64);

impl Vector for Word {
    const SIZE: usize = 8;

    #[inline(always)]
    unsafe fn load(p: *const u8) -> Self {
        // SAFETY: forwarded caller contract (8 readable bytes).
        Word(unsafe { load(p) })
    }
    #[inline(always)]
    unsafe fn store(p: *mut u8, v: Self) {
        // SAFETY: forwarded caller contract (8 writable bytes).
        unsafe { store(p, v.0) }
    }
    #[inline(always)]
    unsafe fn store_aligned(p: *mut u8, v: Self) {
        // SAFETY: forwarded caller contract; an aligned address is also fine for `store`.
        unsafe { store(p, v.0) }
    }
    #[inline(always)]
    unsafe fn stream(p: *mut u8, v: Self) {
        // SAFETY: forwarded caller contract. There is no portable non-temporal store; the
        // generic variant never takes the non-temporal path anyway (its `NT` flag is off).
        unsafe { store(p, v.0) }
    }
    #[inline(always)]
    unsafe fn splat(b: u8) -> Self {
        Word(broadcast(b))
    }
    #[inline(always)]
    unsafe fn diff_mask(a: Self, b: Self) -> u64 {
        let x = a.0 ^ b.0;
        if x == 0 {
            0
        } else {
            1 << (x.trailing_zeros() / 8)
        }
    }
    #[inline(always)]
    unsafe fn copy_small(dst: *mut u8, src: *const u8, n: usize) {
        // SAFETY: forwarded caller contract, `n <= 8 <= 16`.
        unsafe { copy_le_16(dst, src, n) }
    }
    #[inline(always)]
    unsafe fn set_small(dst: *mut u8, byte: u8, n: usize) {
        // SAFETY: forwarded caller contract, `n <= 8 <= 16`.
        unsafe { set_le_16(dst, broadcast(byte), n) }
    }
    #[inline(always)]
    unsafe fn cmp_small(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: forwarded caller contract, `n <= 8 <= 16`.
        unsafe { cmp_le_16(a, b, n) }
    }
    #[inline(always)]
    unsafe fn stream_fence() {}
}
