//! Run-time dispatch: one static atomic function pointer per routine, resolved on first use.
//!
//! **What it does** (the `memchr` crate's pattern). Each of `MEMCPY`, `MEMMOVE`, `MEMSET` and
//! `MEMCMP` starts out pointing at a `detect_*` function with the routine's signature. The first
//! call lands there; it detects the CPU, derives the thresholds from its caches, stores the best
//! variant's four routines into the four pointers and finishes the call through the chosen one.
//! Every later call is one atomic load and one indirect call: no lock, no branch on features.
//!
//! **Orderings.** All loads and stores are `Relaxed`. A pointer's value is all a caller needs:
//! the code it points at is immutable, and the only other shared data the routines read (the
//! thresholds) is correct in every state it can be observed in (see `thresholds`). Two threads
//! racing through the first call both detect the same CPU and store the same pointers.
//!
//! **No recursion.** Before detecting, `resolve` stores the generic routines (plain
//! general-purpose-register code) into all four pointers. So if anything inside detection calls
//! `memcpy` (for example `raw-cpuid` code compiled into a call to the `memcpy` symbol, which this
//! crate may export), that call goes to the generic routine instead of back into detection.
//! A caller racing with the first call may get the generic routine for that one call: correct,
//! only slower.

use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use super::thresholds::{Thresholds, init_from_cpu};
use super::{CompareFn, CopyFn, Routines, SetFn, Variant};
use crate::cpu::{self, Features};

/// Type-erased function pointer, as stored in the statics.
type Erased = *mut ();

static MEMCPY: AtomicPtr<()> = AtomicPtr::new(detect_memcpy as CopyFn as Erased);
static MEMMOVE: AtomicPtr<()> = AtomicPtr::new(detect_memmove as CopyFn as Erased);
static MEMSET: AtomicPtr<()> = AtomicPtr::new(detect_memset as SetFn as Erased);
static MEMCMP: AtomicPtr<()> = AtomicPtr::new(detect_memcmp as CompareFn as Erased);
/// The installed variant (`Variant as u8`), or `UNRESOLVED`.
static SELECTED: AtomicU8 = AtomicU8::new(UNRESOLVED);
const UNRESOLVED: u8 = u8::MAX;

fn install(r: &Routines) {
    MEMCPY.store(r.memcpy as Erased, Ordering::Relaxed);
    MEMMOVE.store(r.memmove as Erased, Ordering::Relaxed);
    MEMSET.store(r.memset as Erased, Ordering::Relaxed);
    MEMCMP.store(r.memcmp as Erased, Ordering::Relaxed);
    SELECTED.store(r.variant as u8, Ordering::Relaxed);
}

/// Detects the CPU, sets the thresholds, installs and returns the best routines.
fn resolve() -> Routines {
    // Recursion guard first (see the module documentation).
    install(&Variant::Generic.table());
    let info = cpu::cpu_info();
    let variant = Variant::best_for(info.features);
    init_from_cpu(thresholds_for(&info, variant));
    let table = variant.table();
    install(&table);
    table
}

/// The thresholds for `variant` on `info`; without ERMS the string instructions are never
/// chosen (they are correct everywhere, but slow without it).
fn thresholds_for(info: &cpu::CpuInfo, variant: Variant) -> Thresholds {
    let mut t = Thresholds::for_cpu(info, variant.vector_bytes());
    if !info.features.contains(Features::ERMS) {
        t.rep_movsb = usize::MAX;
        t.rep_stosb = usize::MAX;
    }
    t
}

/// First-call target of `MEMCPY`.
///
/// # Safety
/// As [`memcpy`].
unsafe fn detect_memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    let r = resolve();
    // SAFETY: forwarded caller contract; `resolve` returns a supported variant.
    unsafe { (r.memcpy)(dst, src, n) }
}

/// First-call target of `MEMMOVE`.
///
/// # Safety
/// As [`memmove`].
unsafe fn detect_memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    let r = resolve();
    // SAFETY: as in `detect_memcpy`.
    unsafe { (r.memmove)(dst, src, n) }
}

/// First-call target of `MEMSET`.
///
/// # Safety
/// As [`memset`].
unsafe fn detect_memset(dst: *mut u8, byte: u8, n: usize) -> *mut u8 {
    let r = resolve();
    // SAFETY: as in `detect_memcpy`.
    unsafe { (r.memset)(dst, byte, n) }
}

/// First-call target of `MEMCMP`.
///
/// # Safety
/// As [`memcmp`].
unsafe fn detect_memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let r = resolve();
    // SAFETY: as in `detect_memcpy`.
    unsafe { (r.memcmp)(a, b, n) }
}

/// Copies `n` bytes from `src` to `dst` with the dispatched routine; returns `dst`. Overlap is
/// handled as by [`memmove`].
///
/// # Safety
/// `src..src + n` valid for reads, `dst..dst + n` valid for writes. If the vector variants can
/// be selected, the vector state must be usable in the calling context (see the crate docs).
#[inline]
pub unsafe fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    let p = MEMCPY.load(Ordering::Relaxed);
    // SAFETY: `MEMCPY` only ever holds `CopyFn` values erased by `install` or its initialiser,
    // each a supported variant's routine or the detector.
    let f = unsafe { core::mem::transmute::<Erased, CopyFn>(p) };
    // SAFETY: forwarded caller contract.
    unsafe { f(dst, src, n) }
}

/// Copies `n` bytes from `src` to `dst`; the ranges may overlap. Returns `dst`.
///
/// # Safety
/// As [`memcpy`].
#[inline]
pub unsafe fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    let p = MEMMOVE.load(Ordering::Relaxed);
    // SAFETY: as in `memcpy`, for `MEMMOVE`.
    let f = unsafe { core::mem::transmute::<Erased, CopyFn>(p) };
    // SAFETY: forwarded caller contract.
    unsafe { f(dst, src, n) }
}

/// Sets `n` bytes at `dst` to `byte`; returns `dst`.
///
/// # Safety
/// `dst..dst + n` valid for writes; vector state as in [`memcpy`].
#[inline]
pub unsafe fn memset(dst: *mut u8, byte: u8, n: usize) -> *mut u8 {
    let p = MEMSET.load(Ordering::Relaxed);
    // SAFETY: `MEMSET` only ever holds `SetFn` values (see `memcpy`).
    let f = unsafe { core::mem::transmute::<Erased, SetFn>(p) };
    // SAFETY: forwarded caller contract.
    unsafe { f(dst, byte, n) }
}

/// Compares `n` bytes: `a[k] - b[k]` (as unsigned bytes) at the first difference `k`, or 0.
///
/// # Safety
/// `a..a + n` and `b..b + n` valid for reads; vector state as in [`memcpy`].
#[inline]
pub unsafe fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let p = MEMCMP.load(Ordering::Relaxed);
    // SAFETY: `MEMCMP` only ever holds `CompareFn` values (see `memcpy`).
    let f = unsafe { core::mem::transmute::<Erased, CompareFn>(p) };
    // SAFETY: forwarded caller contract.
    unsafe { f(a, b, n) }
}

/// The variant the dispatch uses (detecting the CPU first if no call has yet).
pub fn selected_variant() -> Variant {
    match SELECTED.load(Ordering::Relaxed) {
        0 => Variant::Avx512,
        1 => Variant::Avx2,
        2 => Variant::Erms,
        3 => Variant::Generic,
        _ => resolve().variant,
    }
}

/// The variant's routines could not be installed: the CPU lacks these features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// The variant asked for.
    pub variant: Variant,
    /// The features it needs that the CPU lacks.
    pub missing: Features,
}

impl core::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "variant {} needs CPU features {:?}",
            self.variant.name(),
            self.missing
        )
    }
}

impl core::error::Error for Unsupported {}

/// Makes the dispatch use `variant` from now on (for example [`Variant::Erms`] in a kernel
/// that does not save vector state in some context), instead of the detected best one.
/// Thresholds are derived from the CPU for that variant unless [`crate::set_thresholds`] set
/// them. Calls already in flight finish with the previous routine.
pub fn force_variant(variant: Variant) -> Result<(), Unsupported> {
    let info = cpu::cpu_info();
    if !variant.is_supported_by(info.features) {
        let need = variant.required_features();
        return Err(Unsupported {
            variant,
            missing: Features::from_bits_truncate(need.bits() & !info.features.bits()),
        });
    }
    init_from_cpu(thresholds_for(&info, variant));
    install(&variant.table());
    Ok(())
}
