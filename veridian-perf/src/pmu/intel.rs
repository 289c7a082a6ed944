//! Intel's architectural performance-monitoring unit (SDM Vol. 3B, chapter "Performance
//! Monitoring", and CPUID leaf `0xA`).
//!
//! Versions, as this crate uses them:
//! - 1: general-purpose counters only (`IA32_PERFEVTSELx` at `0x186 + x`, `IA32_PMCx` at
//!   `0xC1 + x`), each enabled by its own `EN` bit; no global control, so a group is started,
//!   stopped and read one counter after another.
//! - 2–4: adds fixed-function counters (`IA32_FIXED_CTRx` at `0x309 + x`, configured four bits
//!   each in `IA32_FIXED_CTR_CTRL` `0x38D`; count in `CPUID.0xA:EDX[4:0]`, width in
//!   `EDX[12:5]`) and `IA32_PERF_GLOBAL_CTRL` (`0x38F`: bit `x` enables PMCx, bit `32 + x`
//!   FIXED_CTRx), which lets a group start, stop and freeze together. (3 adds AnyThread, 4 the
//!   status-reset MSRs: neither changes what this crate programs.)
//! - 5: `CPUID.0xA:ECX` is a bitmap of the fixed counters that exist, in addition to the count
//!   in `EDX` ("counter *i* is supported if `ECX[i]` or `EDX[4:0] > i`").
//!
//! Later versions are supersets and are decoded as version 5.

use super::Event;

/// `IA32_PERFEVTSEL0`; counter `x` uses `0x186 + x`.
pub(crate) const PERFEVTSEL0: u32 = 0x186;
/// `IA32_PMC0`; counter `x` uses `0xC1 + x`.
pub(crate) const PMC0: u32 = 0xC1;
/// `IA32_FIXED_CTR0`; fixed counter `x` uses `0x309 + x`.
pub(crate) const FIXED_CTR0: u32 = 0x309;
/// `IA32_FIXED_CTR_CTRL`: four bits per fixed counter.
pub(crate) const FIXED_CTR_CTRL: u32 = 0x38D;
/// `IA32_PERF_GLOBAL_CTRL`: bit `x` enables PMCx, bit `32 + x` FIXED_CTRx.
pub(crate) const PERF_GLOBAL_CTRL: u32 = 0x38F;
/// `IA32_PERF_GLOBAL_OVF_CTRL`: writing bit `i` clears overflow bit `i` (version 2 and later).
pub(crate) const PERF_GLOBAL_OVF_CTRL: u32 = 0x390;

/// The general-purpose counters have eight MSR pairs in the architectural range
/// (`0x186..=0x18D`, `0xC1..=0xC8`); the next MSR after them is something else, so CPUID
/// claiming more is malformed.
pub(crate) const MAX_GENERAL: u8 = 8;
/// `IA32_FIXED_CTR_CTRL` has sixteen 4-bit fields and `IA32_PERF_GLOBAL_CTRL` sixteen fixed
/// enable bits (32..=47): no more fixed counters can exist.
pub(crate) const MAX_FIXED: u8 = 16;
/// The SDM guarantees at least 32 bits per counter (writes to `IA32_PMCx` sign-extend bit 31);
/// no counter is wider than the 64-bit MSR holding it.
pub(crate) const MIN_WIDTH: u8 = 32;
/// See [`MIN_WIDTH`].
pub(crate) const MAX_WIDTH: u8 = 64;

/// `IA32_PERFEVTSELx` bits: count in ring 3 (`USR`), count in rings 0–2 (`OS`), enable (`EN`).
pub(crate) const EVTSEL_USR: u64 = 1 << 16;
/// See [`EVTSEL_USR`].
pub(crate) const EVTSEL_OS: u64 = 1 << 17;
/// See [`EVTSEL_USR`].
pub(crate) const EVTSEL_EN: u64 = 1 << 22;
/// Event select: raise the performance-monitoring interrupt (local APIC LVT) on overflow.
pub(crate) const EVTSEL_INT: u64 = 1 << 20;
/// A fixed counter's 4-bit field: bit 0 counts in ring 0, bit 1 in ring 3.
pub(crate) const FIXED_FIELD_OS_USR: u64 = 0b0011;
/// `RDPMC` selects the fixed counters with `ECX` bit 30.
pub(crate) const RDPMC_FIXED: u32 = 1 << 30;

/// The bit of `CPUID.0xA:EBX` that says an architectural event is *not* available, and its
/// event-select/umask encoding (SDM table "UMask and Event Select Encodings for Pre-Defined
/// Architectural Performance Events").
pub(crate) fn arch_event(event: Event) -> (u32, u64) {
    match event {
        // UnHalted Core Cycles: event 0x3C, umask 0x00.
        Event::Cycles => (0, 0x3C),
        // Instructions Retired: event 0xC0, umask 0x00.
        Event::Instructions => (1, 0xC0),
        // LLC Misses: event 0x2E, umask 0x41.
        Event::CacheMisses => (4, 0x412E),
        // Branch Misses Retired: event 0xC5, umask 0x00.
        Event::BranchMisses => (6, 0xC5),
    }
}

/// The fixed counter that counts `event`, if any: FIXED_CTR0 is INST_RETIRED.ANY, FIXED_CTR1
/// CPU_CLK_UNHALTED.THREAD (same as the architectural cycles event).
pub(crate) fn fixed_counter_for(event: Event) -> Option<u8> {
    match event {
        Event::Instructions => Some(0),
        Event::Cycles => Some(1),
        Event::CacheMisses | Event::BranchMisses => None,
    }
}
