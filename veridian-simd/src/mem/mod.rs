//! The memory routines: the variants, the tables that group them, and the slice helpers.
//!
//! A [`Variant`] names one implementation family; [`Variant::routines`] hands out its
//! [`Routines`] table only when the running CPU supports it, so the table's safe methods (and
//! the `unsafe` raw-pointer methods, given valid pointers) never execute an instruction the CPU
//! lacks. The dispatched functions at the crate root go through [`dispatch`].
//!
//! Every variant's `memcpy` is its `memmove` (as in glibc): the overlap check costs one
//! subtraction on the large path only, and a `memcpy` called with overlapping ranges then still
//! produces the `memmove` result instead of garbage.

use core::cmp::Ordering;
use core::ops::Range;

use crate::cpu::{self, Features};

pub(crate) mod algo;
pub(crate) mod dispatch;
pub(crate) mod generic;
pub(crate) mod strings;
pub mod thresholds;
pub(crate) mod word;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// `memcpy`/`memmove` signature: `(dst, src, n) -> dst`.
pub type CopyFn = unsafe fn(*mut u8, *const u8, usize) -> *mut u8;
/// `memset` signature: `(dst, byte, n) -> dst`.
pub type SetFn = unsafe fn(*mut u8, u8, usize) -> *mut u8;
/// `memcmp` signature: `(a, b, n) -> a[k] - b[k]` at the first difference `k`, or 0.
pub type CompareFn = unsafe fn(*const u8, *const u8, usize) -> i32;

/// One implementation family of the four routines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Variant {
    /// 64-byte ZMM vectors; needs AVX-512F, BW and VL (x86_64).
    Avx512 = 0,
    /// 32-byte YMM vectors; needs AVX2 (x86_64).
    Avx2 = 1,
    /// General-purpose registers and `rep movsb`/`rep stosb`; needs ERMS (x86_64). Touches no
    /// vector register.
    Erms = 2,
    /// Portable 64-bit words; runs everywhere.
    Generic = 3,
}

impl Variant {
    /// All variants, best first: the order the dispatch tries them in.
    pub const ALL: [Variant; 4] = [
        Variant::Avx512,
        Variant::Avx2,
        Variant::Erms,
        Variant::Generic,
    ];

    /// Short lower-case name (`avx512`, `avx2`, `erms`, `generic`), as in the benchmark ids.
    pub const fn name(self) -> &'static str {
        match self {
            Variant::Avx512 => "avx512",
            Variant::Avx2 => "avx2",
            Variant::Erms => "erms",
            Variant::Generic => "generic",
        }
    }

    /// The CPU features this variant needs.
    pub const fn required_features(self) -> Features {
        match self {
            Variant::Avx512 => Features::AVX512_COPY,
            Variant::Avx2 => Features::AVX2,
            Variant::Erms => Features::ERMS,
            Variant::Generic => Features::NONE,
        }
    }

    /// Width of the variant's vector in bytes (8 for the register-only variants).
    pub const fn vector_bytes(self) -> usize {
        match self {
            Variant::Avx512 => 64,
            Variant::Avx2 => 32,
            Variant::Erms | Variant::Generic => 8,
        }
    }

    /// Whether a CPU with `features` can run this variant (on other architectures than
    /// x86_64 only [`Variant::Generic`] exists).
    pub const fn is_supported_by(self, features: Features) -> bool {
        match self {
            Variant::Generic => true,
            _ => cfg!(target_arch = "x86_64") && features.contains(self.required_features()),
        }
    }

    /// The best variant a CPU with `features` supports.
    pub const fn best_for(features: Features) -> Variant {
        let mut i = 0;
        while i < Variant::ALL.len() {
            if Variant::ALL[i].is_supported_by(features) {
                return Variant::ALL[i];
            }
            i += 1;
        }
        Variant::Generic
    }

    /// This variant's routines, or `None` when the running CPU (per [`cpu::features`]) cannot
    /// execute them.
    pub fn routines(self) -> Option<Routines> {
        if self.is_supported_by(cpu::features()) {
            Some(self.table())
        } else {
            None
        }
    }

    /// The table, unchecked. Callers make sure the CPU supports the variant before calling
    /// through it.
    pub(crate) fn table(self) -> Routines {
        let (copy, set, compare): (CopyFn, SetFn, CompareFn) = match self {
            #[cfg(target_arch = "x86_64")]
            Variant::Avx512 => (
                x86::simd::avx512::memmove,
                x86::simd::avx512::memset,
                x86::simd::avx512::memcmp,
            ),
            #[cfg(target_arch = "x86_64")]
            Variant::Avx2 => (
                x86::simd::avx2::memmove,
                x86::simd::avx2::memset,
                x86::simd::avx2::memcmp,
            ),
            #[cfg(target_arch = "x86_64")]
            Variant::Erms => (x86::erms::memmove, x86::erms::memset, generic::memcmp),
            _ => (generic::memmove, generic::memset, generic::memcmp),
        };
        Routines {
            variant: self,
            memcpy: copy,
            memmove: copy,
            memset: set,
            memcmp: compare,
        }
    }
}

/// The four routines of one variant, obtainable only for a variant the CPU supports.
#[derive(Clone, Copy, Debug)]
pub struct Routines {
    variant: Variant,
    memcpy: CopyFn,
    memmove: CopyFn,
    memset: SetFn,
    memcmp: CompareFn,
}

impl Routines {
    /// Which variant these are.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// The raw `memcpy` pointer (same contract as [`Routines::memcpy`]).
    pub fn memcpy_fn(&self) -> CopyFn {
        self.memcpy
    }

    /// The raw `memmove` pointer.
    pub fn memmove_fn(&self) -> CopyFn {
        self.memmove
    }

    /// The raw `memset` pointer.
    pub fn memset_fn(&self) -> SetFn {
        self.memset
    }

    /// The raw `memcmp` pointer.
    pub fn memcmp_fn(&self) -> CompareFn {
        self.memcmp
    }

    /// Copies `n` bytes from `src` to `dst`; returns `dst`. Overlapping ranges are handled as
    /// by `memmove`.
    ///
    /// # Safety
    /// `src..src + n` valid for reads and `dst..dst + n` valid for writes.
    pub unsafe fn memcpy(&self, dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: this table exists only for a supported variant; pointers per caller.
        unsafe { (self.memcpy)(dst, src, n) }
    }

    /// Copies `n` bytes from `src` to `dst`, ranges may overlap; returns `dst`.
    ///
    /// # Safety
    /// As [`Routines::memcpy`].
    pub unsafe fn memmove(&self, dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: as in `memcpy`.
        unsafe { (self.memmove)(dst, src, n) }
    }

    /// Sets `n` bytes at `dst` to `byte`; returns `dst`.
    ///
    /// # Safety
    /// `dst..dst + n` valid for writes.
    pub unsafe fn memset(&self, dst: *mut u8, byte: u8, n: usize) -> *mut u8 {
        // SAFETY: as in `memcpy`.
        unsafe { (self.memset)(dst, byte, n) }
    }

    /// Compares `n` bytes: `a[k] - b[k]` (as unsigned bytes) at the first difference, or 0.
    ///
    /// # Safety
    /// `a..a + n` and `b..b + n` valid for reads.
    pub unsafe fn memcmp(&self, a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: as in `memcpy`.
        unsafe { (self.memcmp)(a, b, n) }
    }

    /// Copies `src` into `dst`; the lengths must be equal.
    pub fn copy(&self, dst: &mut [u8], src: &[u8]) -> Result<(), MemError> {
        copy_with(self.memcpy, dst, src)
    }

    /// Copies `buf[src]` to `buf[dest..]` (overlap allowed), like `<[u8]>::copy_within`.
    pub fn copy_within(
        &self,
        buf: &mut [u8],
        src: Range<usize>,
        dest: usize,
    ) -> Result<(), MemError> {
        copy_within_with(self.memmove, buf, src, dest)
    }

    /// Sets every byte of `dst` to `byte`.
    pub fn fill(&self, dst: &mut [u8], byte: u8) {
        fill_with(self.memset, dst, byte)
    }

    /// Lexicographic comparison, as `<[u8] as Ord>::cmp`.
    pub fn compare(&self, a: &[u8], b: &[u8]) -> Ordering {
        compare_with(self.memcmp, a, b)
    }
}

/// Why a slice operation refused its arguments (nothing was written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemError {
    /// `copy` needs equal lengths.
    LengthMismatch {
        /// Destination length.
        dst: usize,
        /// Source length.
        src: usize,
    },
    /// `copy_within`'s source range or destination does not fit in the buffer.
    OutOfBounds {
        /// The source range asked for.
        src: Range<usize>,
        /// The destination offset asked for.
        dest: usize,
        /// The buffer length.
        len: usize,
    },
}

impl core::fmt::Display for MemError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MemError::LengthMismatch { dst, src } => {
                write!(f, "copy: destination has {dst} bytes but source has {src}")
            }
            MemError::OutOfBounds { src, dest, len } => write!(
                f,
                "copy_within: source {}..{} or destination {dest} (+{} bytes) outside a buffer of {len} bytes",
                src.start,
                src.end,
                src.end.saturating_sub(src.start)
            ),
        }
    }
}

impl core::error::Error for MemError {}

pub(crate) fn copy_with(f: CopyFn, dst: &mut [u8], src: &[u8]) -> Result<(), MemError> {
    if dst.len() != src.len() {
        return Err(MemError::LengthMismatch {
            dst: dst.len(),
            src: src.len(),
        });
    }
    // SAFETY: both slices are valid for `len` bytes (reads / writes), and `f` is a routine of a
    // supported variant (the callers hold a checked table or the dispatch).
    unsafe { f(dst.as_mut_ptr(), src.as_ptr(), src.len()) };
    Ok(())
}

pub(crate) fn copy_within_with(
    f: CopyFn,
    buf: &mut [u8],
    src: Range<usize>,
    dest: usize,
) -> Result<(), MemError> {
    let len = buf.len();
    let fits =
        src.start <= src.end && src.end <= len && dest <= len && src.end - src.start <= len - dest;
    if !fits {
        return Err(MemError::OutOfBounds { src, dest, len });
    }
    let base = buf.as_mut_ptr();
    // SAFETY: `src` and `dest..dest + count` were checked to lie inside `buf`; the routine is a
    // memmove, so the overlap is fine; the variant is supported (as in `copy_with`).
    unsafe { f(base.add(dest), base.add(src.start), src.end - src.start) };
    Ok(())
}

pub(crate) fn fill_with(f: SetFn, dst: &mut [u8], byte: u8) {
    // SAFETY: the slice is valid for writes of its length; the variant is supported.
    unsafe { f(dst.as_mut_ptr(), byte, dst.len()) };
}

pub(crate) fn compare_with(f: CompareFn, a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    // SAFETY: both slices hold at least `n` bytes; the variant is supported.
    let c = unsafe { f(a.as_ptr(), b.as_ptr(), n) };
    c.cmp(&0).then(a.len().cmp(&b.len()))
}
