//! # veridian-simd
//!
//! CPU feature detection without `std` (CPUID + XCR0) and `memcpy`/`memmove`/`memset`/`memcmp`
//! with AVX-512, AVX2, ERMS and generic variants, chosen once at run time.
//!
//! - [`cpu`]: feature detection ([`cpu::features`], [`cpu::cpu_info`], a [`cpu::CpuidSource`]
//!   trait for fake CPUs in tests).
//! - The routines: raw-pointer functions ([`memcpy`], [`memmove`], [`memset`], [`memcmp`]) and
//!   slice functions ([`copy`], [`copy_within`], [`fill`], [`compare`]) through the dispatch;
//!   each [`Variant`]'s own [`Routines`] (handed out only when the CPU supports it).
//! - The size strategy (glibc's) and its [`Thresholds`], derived from the cache sizes.
//! - [`CpuOptimizer`] / [`Dispatcher`]: pick the best of a caller's own implementations.
//! - Feature `alloc`: `btree::CacheBTree`, an ordered map with cache-line nodes, SIMD
//!   in-node search for integer keys (dispatched like the routines) and prefetch on descent.
//! - [`hint`]: `prefetch_read`/`prefetch_write` with locality levels, and `likely`/`unlikely`
//!   branch hints built on `#[cold]` (stable Rust).
//! - Feature `export-mem-symbols`: the routines as the C symbols `memcpy`, `memmove`, `memset`,
//!   `memcmp`, `bcmp` (module `export`), for kernels, with the precondition documented there:
//!   the vector state must be enabled in XCR0 before the first call and saved on every switch.
//!
//! **What it relies on**: nothing of the embedder beyond the CPU itself (CPUID, XGETBV, and, for
//! the vector variants, an OS that enabled and saves the vector state, which XCR0 reports).
//! The crate is `#![no_builtins]`: the compiler never rewrites a loop in it into a call to
//! `memcpy`/`memset`, so the routines can *be* those symbols without recursing. The AVX2 and
//! AVX-512 routines are inline assembly, because the soft-float kernel target cannot hold a
//! vector value in Rust code at all (see `mem::x86::vasm`).
//!
//! **What it guarantees**: each routine writes exactly `dst..dst + n` and reads only inside its
//! source ranges, handles overlap in both directions (`memcpy` included), and the slice
//! functions refuse bad lengths or ranges with a [`MemError`] instead of panicking.

#![no_std]
#![no_builtins]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "alloc")]
pub mod btree;
pub mod cpu;
pub mod hint;
mod mem;
mod optimizer;

#[cfg(feature = "export-mem-symbols")]
pub mod export;
#[cfg(feature = "std")]
pub mod hosted;

use core::cmp::Ordering;
use core::ops::Range;

#[cfg(feature = "alloc")]
pub use btree::CacheBTree;
pub use cpu::Features;
pub use mem::dispatch::{
    Unsupported, force_variant, memcmp, memcpy, memmove, memset, selected_variant,
};
pub use mem::thresholds::{Thresholds, set_thresholds, thresholds};
pub use mem::{CompareFn, CopyFn, MemError, Routines, SetFn, Variant};
pub use optimizer::{Candidate, CpuOptimizer, Dispatcher, RegistryFull};

/// Copies `src` into `dst` with the dispatched `memcpy`; the lengths must be equal.
pub fn copy(dst: &mut [u8], src: &[u8]) -> Result<(), MemError> {
    mem::copy_with(memcpy, dst, src)
}

/// Copies `buf[src]` to `buf[dest..]` with the dispatched `memmove`, like
/// `<[u8]>::copy_within`, but returns an error instead of panicking on a bad range.
pub fn copy_within(buf: &mut [u8], src: Range<usize>, dest: usize) -> Result<(), MemError> {
    mem::copy_within_with(memmove, buf, src, dest)
}

/// Sets every byte of `dst` to `byte` with the dispatched `memset`.
pub fn fill(dst: &mut [u8], byte: u8) {
    mem::fill_with(memset, dst, byte)
}

/// Lexicographic comparison with the dispatched `memcmp` (same result as `<[u8]>::cmp`).
pub fn compare(a: &[u8], b: &[u8]) -> Ordering {
    mem::compare_with(memcmp, a, b)
}

/// Whether `a == b`, with the dispatched `memcmp`.
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && compare(a, b) == Ordering::Equal
}

/// The routines the dispatch uses now (detecting the CPU first if needed).
pub fn routines() -> Routines {
    selected_variant().table()
}
