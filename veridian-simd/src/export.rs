//! `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp` as unmangled C symbols (feature
//! `export-mem-symbols`), for a kernel that wants these routines to be *its* memory functions:
//! the ones the compiler calls for struct copies, slice copies and `[0; N]` initialisation.
//!
//! **Precondition (the embedder's promise).** The dispatch may select the AVX2 or AVX-512
//! variant, so from the first call on, every context that calls one of these symbols must be
//! able to use the vector registers: the kernel has set CR4.OSFXSR and CR4.OSXSAVE, enabled the
//! state in XCR0 (SSE|AVX, plus opmask|ZMM_Hi256|Hi16_ZMM for AVX-512) **before** the first
//! call (detection reads XCR0 once), and saves and restores that state on every context switch
//! and around every interrupt or exception handler that may copy memory (with XSAVE/XRSTOR, or
//! by never copying in such handlers). A kernel that cannot promise this in some context calls
//! `force_variant(Variant::Erms)` (general-purpose registers and string instructions only)
//! before that context can run.
//!
//! **No recursion.** These functions call the dispatch, whose routines are written with explicit
//! loads, stores, intrinsics and `rep movsb`; the crate is `#![no_builtins]`, so the compiler
//! never turns one of its loops into a call to `memcpy`/`memset`; and the first call installs the
//! generic routines before it runs the detection (see `mem::dispatch`).
//!
//! On a target whose `compiler_builtins` also provides these symbols (`x86_64-unknown-none`),
//! those are weak, so these strong definitions win at link time.

/// C `memcpy`: copies `n` bytes, returns `dst` (overlap handled as by `memmove`).
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable; the vector-state precondition of the
/// module documentation.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: forwarded caller contract.
    unsafe { crate::mem::dispatch::memcpy(dst, src, n) }
}

/// C `memmove`.
///
/// # Safety
/// As [`memcpy`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: forwarded caller contract.
    unsafe { crate::mem::dispatch::memmove(dst, src, n) }
}

/// C `memset`: the low byte of `c` in `n` bytes, returns `dst`.
///
/// # Safety
/// `dst..dst + n` writable; the vector-state precondition.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: forwarded caller contract.
    unsafe { crate::mem::dispatch::memset(dst, c as u8, n) }
}

/// C `memcmp`.
///
/// # Safety
/// `a..a + n`, `b..b + n` readable; the vector-state precondition.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded caller contract.
    unsafe { crate::mem::dispatch::memcmp(a, b, n) }
}

/// `bcmp` (zero iff equal), which LLVM emits for equality tests of byte ranges.
///
/// # Safety
/// As [`memcmp`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded caller contract.
    unsafe { crate::mem::dispatch::memcmp(a, b, n) }
}
