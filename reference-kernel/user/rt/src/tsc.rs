//! Serialised time-stamp-counter reads for benchmarks, as veridian-perf's `Tsc` does them:
//! [`start`] is `lfence; rdtsc` (waits for earlier instructions before reading), [`stop`] is
//! `rdtscp; lfence` (reads after earlier instructions, and later ones wait for the read).
//! Ring 3 may execute `rdtsc`/`rdtscp` as long as the kernel leaves `CR4.TSD` clear.
//!
//! Neither asm block is `nomem`: each is a compiler barrier on purpose, so the timed code
//! stays between the two reads.

use core::arch::asm;

/// Start-of-interval read: `lfence; rdtsc`.
#[inline(always)]
pub fn start() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: LFENCE and RDTSC have no memory operands and write only EAX/EDX.
    unsafe {
        asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// End-of-interval read: `rdtscp; lfence` (`IA32_TSC_AUX`, in ECX, is dropped).
#[inline(always)]
pub fn stop() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: RDTSCP and LFENCE have no memory operands and write only EAX/EDX/ECX.
    unsafe {
        asm!(
            "rdtscp", "lfence",
            out("eax") lo, out("edx") hi, out("ecx") _,
            options(nostack, preserves_flags)
        )
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The cost of an empty timed interval: the smallest `stop() - start()` of `runs` tries (0 for
/// no tries). Benchmarks subtract it from each sample.
pub fn overhead(runs: u32) -> u64 {
    let mut best = u64::MAX;
    for _ in 0..runs {
        let a = start();
        let b = stop();
        best = best.min(b.wrapping_sub(a));
    }
    if runs == 0 { 0 } else { best }
}
