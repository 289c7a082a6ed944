//! x86 string instructions (`rep movsb`, `rep stosb`) and cache hints, through inline assembly.
//!
//! **Relies on** the direction flag being clear on entry, which the x86_64 System V ABI (and
//! every kernel entry path that follows it) guarantees; the instructions then copy or fill
//! byte by byte forwards, so `rep movsb` is also a correct `memmove` when `dst < src`. They use
//! only general-purpose registers: no vector state is touched.
//!
//! On other architectures the same names are portable forward loops (the crate only takes the
//! string-instruction paths on x86_64, but the shared algorithm code must compile everywhere).

/// Copies `n` bytes forwards, one byte at a time architecturally (`rep movsb`; with ERMS the
/// CPU moves whole lines internally).
///
/// # Safety
/// `src..src + n` readable, `dst..dst + n` writable; `dst` not inside `src + 1..src + n`.
#[inline(always)]
pub(crate) unsafe fn rep_movsb(dst: *mut u8, src: *const u8, n: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller guarantees the ranges; RCX/RDI/RSI are declared clobbered; DF is clear
    // per the ABI; the instruction touches no stack and no flags.
    unsafe {
        core::arch::asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _,
            inout("rsi") src => _, options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: the caller guarantees the ranges; forward byte order as `rep movsb`.
    unsafe {
        let mut i = 0;
        while i < n {
            *dst.add(i) = *src.add(i);
            i += 1;
        }
    }
}

/// Fills `n` bytes with `byte` (`rep stosb`).
///
/// # Safety
/// `dst..dst + n` writable.
#[inline(always)]
pub(crate) unsafe fn rep_stosb(dst: *mut u8, byte: u8, n: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller guarantees the range; RCX/RDI clobbered, AL read; DF clear per the ABI.
    unsafe {
        core::arch::asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _,
            in("al") byte, options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: the caller guarantees the range.
    unsafe {
        let mut i = 0;
        while i < n {
            *dst.add(i) = byte;
            i += 1;
        }
    }
}

/// Hints the CPU to fetch the line at `p` into all cache levels. Never faults, whatever `p`.
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is a hint: it raises no exception for any address, writes nothing,
    // and exists on every x86_64 CPU (SSE is baseline there, and it needs no vector register).
    unsafe {
        core::arch::asm!("prefetcht0 [{}]", in(reg) p, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
