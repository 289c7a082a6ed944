//! AMD's core performance counters (AMD64 APM Vol. 2, "Performance Monitoring Counters", and
//! the PPRs of the Zen families).
//!
//! Layouts, as this crate uses them:
//! - legacy (K7 onwards, no CPUID bit): four counters, `PerfEvtSel0..3` at `0xC001_0000..=3`
//!   and `PerfCtr0..3` at `0xC001_0004..=7`;
//! - core extension (`CPUID 0x8000_0001:ECX[23]` PerfCtrExtCore): six counters, interleaved
//!   `PERF_CTL`/`PERF_CTR` pairs at `0xC001_0200 + 2x` / `0xC001_0201 + 2x`;
//! - PerfMonV2 (`CPUID 0x8000_0022:EAX[0]`): the counter count comes from
//!   `CPUID 0x8000_0022:EBX[3:0]` and `PerfCntrGlobalCtl` (`0xC000_0301`, bit `x` enables
//!   counter `x`) starts, stops and freezes a group together.
//!
//! Every AMD counter is 48 bits wide. There is no CPUID leaf that says the legacy counters
//! exist (a hypervisor may not emulate them), which is why `Pmu::new` probes a counter with a
//! write and a read-back before trusting the layout.

use super::Event;

/// Legacy `PerfEvtSel0`; counter `x` uses `0xC001_0000 + x`.
pub(crate) const LEGACY_EVTSEL0: u32 = 0xC001_0000;
/// Legacy `PerfCtr0`; counter `x` uses `0xC001_0004 + x`.
pub(crate) const LEGACY_CTR0: u32 = 0xC001_0004;
/// Core-extension `PERF_CTL0`; counter `x` uses `0xC001_0200 + 2x`, its count the next MSR.
pub(crate) const CORE_CTL0: u32 = 0xC001_0200;
/// PerfMonV2 `PerfCntrGlobalCtl`.
pub(crate) const GLOBAL_CTL: u32 = 0xC000_0301;
/// `PerfCntrGlobalStatusClr` (PerfMonV2): writing bit `x` clears counter `x`'s overflow bit.
pub(crate) const GLOBAL_STATUS_CLR: u32 = 0xC000_0302;

/// Counters in the legacy layout.
pub(crate) const LEGACY_COUNTERS: u8 = 4;
/// Counter pairs in the core-extension MSR block (`0xC001_0200..=0xC001_020B`); PerfMonV2
/// claiming more than the block holds is malformed.
pub(crate) const CORE_COUNTERS: u8 = 6;
/// Width of every AMD core counter.
pub(crate) const WIDTH: u8 = 48;

/// `PerfEvtSel` bits: count in ring 3, count in ring 0, enable.
pub(crate) const EVTSEL_USR: u64 = 1 << 16;
/// See [`EVTSEL_USR`].
pub(crate) const EVTSEL_OS: u64 = 1 << 17;
/// See [`EVTSEL_USR`].
pub(crate) const EVTSEL_EN: u64 = 1 << 22;
/// Event select: interrupt on overflow (APIC LVT performance-counter entry).
pub(crate) const EVTSEL_INT: u64 = 1 << 20;

/// The first family with the Zen event map (family 17h).
pub(crate) const ZEN_FAMILY: u32 = 0x17;

/// Event-select/umask encoding of `event` (12-bit event numbers put bits 11:8 at 35:32); the
/// same choices as Linux's `amd_perfmon_event_map` / `amd_zen1_perfmon_event_map`.
pub(crate) fn event_select(event: Event, family: u32) -> u64 {
    let zen = family >= ZEN_FAMILY;
    match event {
        // CPU clocks not halted.
        Event::Cycles => 0x76,
        // Retired instructions.
        Event::Instructions => 0xC0,
        // Zen: L2 cache miss from data-cache miss (0x64/0x09); earlier: L2 misses (0x7E/0x07).
        Event::CacheMisses => {
            if zen {
                0x0964
            } else {
                0x077E
            }
        }
        // Zen: retired branch mispredicted (0xC3); earlier: 0xC5.
        Event::BranchMisses => {
            if zen {
                0xC3
            } else {
                0xC5
            }
        }
    }
}
