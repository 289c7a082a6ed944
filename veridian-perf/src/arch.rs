//! The x86_64 instructions this crate needs: `CPUID`, serialised `RDTSC`/`RDTSCP`, `RDMSR`,
//! `WRMSR`, `RDPMC`, and reading the frame pointer. Everything else in the crate is portable.
//!
//! On other architectures [`NativeCpuid`] answers zeros (so detection reports "no PMU" and "no
//! invariant TSC") and the TSC reads do not exist; [`crate::clock::TscClock::native`] then
//! returns an error.
//!
//! Serialisation, following Intel's "How to Benchmark Code Execution Times" (Paoloni, 2010) as
//! sel4bench does: the *start* read is `lfence; rdtsc` (`LFENCE` waits for every earlier
//! instruction to complete locally, so the read cannot happen before the code in front of it
//! has finished), and the *stop* read is `rdtscp; lfence` (`RDTSCP` waits for every earlier
//! instruction; the `LFENCE` after it keeps later instructions from starting before the read).
//! The `asm!` blocks deliberately omit `nomem`: they are compiler barriers too, so the compiler
//! cannot move the measured code's memory accesses across a timestamp.

use crate::env::{Cpuid, CpuidResult};
#[cfg(target_arch = "x86_64")]
use crate::env::{MsrAccess, MsrError};

/// The `CPUID` instruction of the CPU the caller runs on.
#[derive(Clone, Copy, Debug, Default)]
pub struct NativeCpuid;

impl Cpuid for NativeCpuid {
    #[cfg(target_arch = "x86_64")]
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult {
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        CpuidResult {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn cpuid(&self, _leaf: u32, _subleaf: u32) -> CpuidResult {
        CpuidResult::default()
    }
}

/// `RDTSC` with no ordering: as cheap as the TSC gets, for timestamps that need no fence.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: RDTSC reads the time-stamp counter; it has no memory operands and touches only
    // EAX/EDX. (With CR4.TSD set it faults outside ring 0; every OS this crate targets leaves
    // it clear, and `TscClock::native` documents the requirement.)
    unsafe {
        core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Start-of-interval read: `lfence; rdtsc`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn rdtsc_start() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: LFENCE and RDTSC have no memory operands and touch only EAX/EDX (see `rdtsc`).
    // No `nomem`: the block is a compiler barrier on purpose (module docs).
    unsafe {
        core::arch::asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// End-of-interval read: `rdtscp; lfence`. Returns the counter and `IA32_TSC_AUX` (the CPU
/// number on Linux), which tells whether the thread migrated between start and stop.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn rdtscp_stop() -> (u64, u32) {
    let lo: u32;
    let hi: u32;
    let aux: u32;
    // SAFETY: RDTSCP and LFENCE have no memory operands and touch only EAX/EDX/ECX. RDTSCP
    // exists on every x86_64 CPU this crate supports (`TscClock::native` checks CPUID for it).
    unsafe {
        core::arch::asm!(
            "rdtscp", "lfence",
            out("eax") lo, out("edx") hi, out("ecx") aux,
            options(nostack, preserves_flags)
        )
    };
    ((u64::from(hi) << 32) | u64::from(lo), aux)
}

/// The current frame pointer (`RBP`), the start of a frame-pointer walk of the caller's
/// stack. Meaningful only in code built with frame pointers (`-C force-frame-pointers=yes`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn frame_pointer() -> usize {
    let rbp: usize;
    // SAFETY: copies RBP into another register; no memory access, no flags.
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags))
    };
    rbp
}

/// `RDMSR`/`WRMSR`/`RDPMC` executed directly, for ring 0.
///
/// It cannot catch the `#GP` a missing MSR raises, so it never returns `Err`; a kernel that
/// may run where the PMU MSRs are absent although CPUID claims them should implement
/// [`MsrAccess`] over its exception fix-up instead.
#[cfg(target_arch = "x86_64")]
#[derive(Debug)]
pub struct NativeMsr {
    _private: (),
}

#[cfg(target_arch = "x86_64")]
impl NativeMsr {
    /// Creates the back-end.
    ///
    /// # Safety
    /// The caller must run in ring 0 (RDMSR/WRMSR fault elsewhere), and everything that uses
    /// this value must keep to the [`MsrAccess`] contract.
    pub unsafe fn new() -> Self {
        Self { _private: () }
    }
}

#[cfg(target_arch = "x86_64")]
impl MsrAccess for NativeMsr {
    unsafe fn read_msr(&self, msr: u32) -> Result<u64, MsrError> {
        let lo: u32;
        let hi: u32;
        // SAFETY: ring 0 (constructor contract) and an existing, side-effect-free MSR (caller's
        // contract); RDMSR touches only ECX/EDX/EAX.
        unsafe {
            core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
        };
        Ok((u64::from(hi) << 32) | u64::from(lo))
    }

    unsafe fn write_msr(&self, msr: u32, value: u64) -> Result<(), MsrError> {
        // Truncation intended: WRMSR takes the value split into EDX:EAX.
        let lo = value as u32;
        let hi = (value >> 32) as u32;
        // SAFETY: ring 0 (constructor contract); the caller guarantees the MSR exists and the
        // write breaks no invariant. No `nomem`: a PMU MSR write is ordered with the code
        // around it, like the timestamp reads.
        unsafe {
            core::arch::asm!("wrmsr", in("ecx") msr, in("eax") lo, in("edx") hi, options(nostack, preserves_flags))
        };
        Ok(())
    }

    unsafe fn read_pmc(&self, index: u32) -> Result<u64, MsrError> {
        let lo: u32;
        let hi: u32;
        // SAFETY: the caller guarantees the counter exists and RDPMC is permitted here.
        unsafe {
            core::arch::asm!("rdpmc", in("ecx") index, out("eax") lo, out("edx") hi, options(nostack, preserves_flags))
        };
        Ok((u64::from(hi) << 32) | u64::from(lo))
    }
}
