//! Performance hints on stable Rust: software prefetch and branch-likelihood hints.
//!
//! **What it does.**
//! - [`prefetch_read`] asks the CPU to bring the cache line holding `ptr` towards the core, at a
//!   chosen [`Locality`] (`prefetcht0`/`t1`/`t2`/`prefetchnta` on x86_64).
//! - [`prefetch_write`] does the same with intent to write (`prefetchw`, which fetches the line
//!   in the exclusive state so the later store needs no second coherence round trip) where the
//!   CPU has it (CPUID `0x8000_0001`:ECX.PRFCHW, detected once and cached), and a `prefetcht0`
//!   otherwise.
//! - [`likely`], [`unlikely`] and [`cold_path`]: `core::intrinsics::likely` is not stable, but
//!   `#[cold]` is. Calling a `#[cold]` function on one side of a branch tells LLVM that side is
//!   rarely taken: it lays the other side out as the fall-through path and moves the cold side
//!   out of the hot loop. `likely(b)` is `b`, with a call to the empty cold function on the
//!   `!b` side (and the reverse for `unlikely`). The cold side keeps a call to the empty
//!   function (a few cycles, paid only when that side runs); the hot side pays nothing.
//!
//! **What it relies on.** Nothing: a prefetch is a hint that never faults, not even for an
//! unmapped or null address, and never changes memory, so both functions are safe for any
//! pointer value. On other architectures, and under Miri (which cannot run inline assembly), they
//! compile to nothing.
//!
//! **What it guarantees.** No observable effect other than timing. The branch hints return
//! their argument unchanged.
//!
//! **Measured** (`cargo bench -p veridian-simd --bench btree -- hints`, see
//! `docs/benchmarks/simd.md`): `hints/prefetch/*` walks a 64 MiB table in a random order with
//! and without prefetching the element eight steps ahead; `hints/branch/*` runs a loop whose
//! rare error path is large, with and without [`unlikely`].
//!
//! ```
//! use veridian_simd::hint::{Locality, prefetch_read, unlikely};
//!
//! fn sum_checked(xs: &[u64]) -> Option<u64> {
//!     let mut s = 0u64;
//!     for (i, &x) in xs.iter().enumerate() {
//!         if let Some(next) = xs.get(i + 8) {
//!             prefetch_read(next, Locality::T0);
//!         }
//!         if unlikely(x == u64::MAX) {
//!             return None;
//!         }
//!         s = s.wrapping_add(x);
//!     }
//!     Some(s)
//! }
//! assert_eq!(sum_checked(&[1, 2, 3]), Some(6));
//! assert_eq!(sum_checked(&[1, u64::MAX]), None);
//! ```

/// How close to the core a prefetched line should go (the x86 `prefetch*` hints).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Locality {
    /// All cache levels (`prefetcht0`): data used again soon.
    T0,
    /// L2 and outward (`prefetcht1`).
    T1,
    /// L3 and outward (`prefetcht2`).
    T2,
    /// Non-temporal (`prefetchnta`): used once; minimise cache pollution.
    Nta,
}

/// Hints that the cache line holding `ptr` will be read soon.
///
/// Safe for any pointer, including dangling and null ones: a prefetch never faults.
#[inline(always)]
pub fn prefetch_read<T>(ptr: *const T, locality: Locality) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        let p = ptr.cast::<u8>();
        // SAFETY: prefetch instructions never fault, never write memory and never change
        // registers or flags; any address is allowed.
        unsafe {
            match locality {
                Locality::T0 => core::arch::asm!("prefetcht0 [{p}]", p = in(reg) p,
                    options(nostack, readonly, preserves_flags)),
                Locality::T1 => core::arch::asm!("prefetcht1 [{p}]", p = in(reg) p,
                    options(nostack, readonly, preserves_flags)),
                Locality::T2 => core::arch::asm!("prefetcht2 [{p}]", p = in(reg) p,
                    options(nostack, readonly, preserves_flags)),
                Locality::Nta => core::arch::asm!("prefetchnta [{p}]", p = in(reg) p,
                    options(nostack, readonly, preserves_flags)),
            }
        }
    }
    #[cfg(any(not(target_arch = "x86_64"), miri))]
    let _ = (ptr, locality);
}

/// Hints that the cache line holding `ptr` will be written soon (`prefetchw` where the CPU
/// has it, a read prefetch into all levels otherwise).
///
/// Safe for any pointer, including dangling and null ones: a prefetch never faults.
#[inline(always)]
pub fn prefetch_write<T>(ptr: *const T) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        if has_prefetchw() {
            let p = ptr.cast::<u8>();
            // SAFETY: as in `prefetch_read`; `prefetchw` is only executed when CPUID says the
            // CPU implements it.
            unsafe {
                core::arch::asm!("prefetchw [{p}]", p = in(reg) p,
                    options(nostack, readonly, preserves_flags));
            }
        } else {
            prefetch_read(ptr, Locality::T0);
        }
    }
    #[cfg(any(not(target_arch = "x86_64"), miri))]
    let _ = ptr;
}

/// Whether `prefetchw` is available (CPUID `0x8000_0001`:ECX bit 8), detected once.
///
/// The cached value is 0 (not yet detected), 1 (absent) or 2 (present). Relaxed is enough:
/// the value depends only on the CPU, so racing first calls store the same thing.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline]
pub fn has_prefetchw() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering};
    static PREFETCHW: AtomicU8 = AtomicU8::new(0);
    match PREFETCHW.load(Ordering::Relaxed) {
        0 => {
            let has = detect_prefetchw();
            PREFETCHW.store(if has { 2 } else { 1 }, Ordering::Relaxed);
            has
        }
        v => v == 2,
    }
}

/// Whether `prefetchw` is available: always `false` off x86_64.
#[cfg(any(not(target_arch = "x86_64"), miri))]
#[inline]
pub fn has_prefetchw() -> bool {
    false
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
#[cold]
fn detect_prefetchw() -> bool {
    raw_cpuid::CpuId::new()
        .get_extended_processor_and_feature_identifiers()
        .is_some_and(|f| f.has_prefetchw())
}

/// An empty function LLVM treats as rarely called: a call to it marks the enclosing branch as
/// the unlikely side. Call it at the start of an error path to get the same effect as
/// [`unlikely`] on the branch's condition.
#[cold]
#[inline(never)]
pub fn cold_path() {}

/// `b`, with the hint that it is usually `true`.
#[inline(always)]
pub fn likely(b: bool) -> bool {
    if !b {
        cold_path();
    }
    b
}

/// `b`, with the hint that it is usually `false`.
#[inline(always)]
pub fn unlikely(b: bool) -> bool {
    if b {
        cold_path();
    }
    b
}
