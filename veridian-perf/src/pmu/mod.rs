//! x86 performance counters: detection from CPUID, programming through [`MsrAccess`], groups
//! of counters started, stopped and read together, and `RDPMC` reads.
//!
//! **What it does.** [`detect`] decodes CPUID into a [`PmuInfo`] (vendor, layout, number and
//! width of the general-purpose and fixed counters, which of the four [`Event`]s exist).
//! [`Pmu::new`] adds a write/read-back probe of one counter, then hands out [`CounterGroup`]s:
//! each event gets a counter (Intel's fixed counters first, where they count the event), the
//! group is started and stopped as a whole, and [`Pmu::read`] / [`Pmu::read_rdpmc`] return one
//! [`GroupReading`].
//!
//! **What it relies on.** The [`Cpuid`] and [`MsrAccess`] implementations of the embedder, and
//! that nothing else programs the same counters while a group is open (the kernel owns the
//! PMU). All calls on one [`Pmu`] must happen on one CPU (one `Pmu` per CPU).
//!
//! **What it guarantees.** A CPU without a usable PMU (no leaf `0xA`, version 0, QEMU TCG, a
//! VM without a virtual PMU, a counter that does not hold a written value) gives
//! [`PmuError::NoPmu`]; CPUID values that cannot be true (zero-width or absurdly wide
//! counters, more counters than there are MSRs for) give [`PmuError::Malformed`]. No MSR is
//! touched before detection has succeeded, and only the MSRs of the detected layout are
//! touched after. Counts are masked to the counter width, so a reading is never garbage from
//! bits above the counter; use [`counter_delta`] for differences across a wrap.
//!
//! **Reading together.** With a global control MSR (Intel version ≥ 2, AMD PerfMonV2),
//! [`Pmu::read`] clears the group's global enable bits, reads every counter and sets them
//! again, so all values describe the same instant. Without one (Intel version 1, AMD legacy
//! and core extension) the counters are read one after another, and
//! [`GroupReading::simultaneous`] says so.

mod amd;
mod intel;

use core::fmt;

use crate::env::{Cpuid, MsrAccess, MsrError};

/// The events every back-end of this crate knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    /// Core cycles while not halted.
    Cycles,
    /// Instructions retired.
    Instructions,
    /// Last-level (Intel) / L2 (AMD) cache misses.
    CacheMisses,
    /// Mispredicted branches retired.
    BranchMisses,
}

impl Event {
    /// Every event, in declaration order.
    pub const ALL: [Event; 4] = [
        Event::Cycles,
        Event::Instructions,
        Event::CacheMisses,
        Event::BranchMisses,
    ];

    /// The name `perf` uses for the event.
    pub const fn name(self) -> &'static str {
        match self {
            Event::Cycles => "cycles",
            Event::Instructions => "instructions",
            Event::CacheMisses => "cache-misses",
            Event::BranchMisses => "branch-misses",
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why detection found no usable PMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoPmuReason {
    /// The vendor string is neither Intel's nor AMD's (or Hygon's).
    UnknownVendor,
    /// Intel CPU whose maximum basic leaf is below `0xA`.
    NoPerfmonLeaf,
    /// `CPUID.0xA:EAX[7:0]` (the version) is 0: what QEMU TCG and VMs without a virtual PMU
    /// report.
    VersionZero,
    /// A counter did not keep a value written to it (or the MSR access failed): the MSRs are
    /// not there, whatever CPUID says.
    ProbeFailed {
        /// The counter MSR that was probed.
        msr: u32,
    },
}

/// CPUID values that cannot describe a real PMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// A PMU of this version must have general-purpose counters, and CPUID reported none.
    NoGeneralCounters,
    /// More general-purpose counters than the layout has MSRs for.
    TooManyGeneralCounters {
        /// What CPUID reported.
        reported: u8,
        /// How many MSRs the layout has.
        max: u8,
    },
    /// More fixed counters than `IA32_FIXED_CTR_CTRL` has fields for.
    TooManyFixedCounters {
        /// The highest fixed counter CPUID reported, plus one.
        reported: u8,
        /// How many fields there are.
        max: u8,
    },
    /// A general-purpose counter width outside 32..=64 bits.
    GeneralWidth(u8),
    /// A fixed counter width outside 32..=64 bits (with at least one fixed counter).
    FixedWidth(u8),
    /// AMD PerfMonV2 claimed without the core counter extension it builds on.
    PerfMonV2WithoutCoreExtension,
}

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmuError {
    /// The CPU has no usable PMU.
    NoPmu(NoPmuReason),
    /// CPUID describes a PMU that cannot exist.
    Malformed(Malformed),
    /// The PMU cannot count this event.
    EventUnavailable(Event),
    /// Every counter that can count this event is taken.
    NoFreeCounter(Event),
    /// A sampling period of 0 or above [`Pmu::max_period`].
    BadPeriod(u64),
    /// A group needs between 1 and [`MAX_GROUP`] events.
    BadGroupSize(usize),
    /// The group was not opened by this `Pmu` (or was closed already).
    ForeignGroup,
    /// An MSR access or `RDPMC` failed.
    Msr(MsrError),
}

impl From<MsrError> for PmuError {
    fn from(e: MsrError) -> Self {
        PmuError::Msr(e)
    }
}

impl fmt::Display for PmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PmuError::NoPmu(r) => match r {
                NoPmuReason::UnknownVendor => f.write_str("no PMU: unknown CPU vendor"),
                NoPmuReason::NoPerfmonLeaf => f.write_str("no PMU: CPUID has no leaf 0xA"),
                NoPmuReason::VersionZero => {
                    f.write_str("no PMU: CPUID leaf 0xA reports version 0 (emulator or VM without a virtual PMU)")
                }
                NoPmuReason::ProbeFailed { msr } => {
                    write!(f, "no PMU: counter MSR {msr:#x} did not hold a written value")
                }
            },
            PmuError::Malformed(m) => write!(f, "malformed PMU description in CPUID: {m:?}"),
            PmuError::EventUnavailable(e) => write!(f, "the PMU cannot count {e}"),
            PmuError::NoFreeCounter(e) => write!(f, "no free counter for {e}"),
            PmuError::BadGroupSize(n) => write!(f, "a group needs 1..={MAX_GROUP} events, not {n}"),
            PmuError::BadPeriod(p) => write!(f, "sampling period {p} is 0 or too large for the counter"),
            PmuError::ForeignGroup => f.write_str("the group does not belong to this PMU"),
            PmuError::Msr(e) => write!(f, "{e}"),
        }
    }
}

/// The counter hardware, as detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Intel architectural performance monitoring of the given version (1..=5; later versions
    /// are decoded as 5 and keep their number here).
    IntelArch {
        /// `CPUID.0xA:EAX[7:0]`.
        version: u8,
    },
    /// AMD legacy counters (`0xC001_0000..`).
    AmdLegacy,
    /// AMD core-extension counters (`0xC001_0200..`), no global control.
    AmdCore,
    /// AMD core-extension counters with PerfMonV2 global control.
    AmdPerfMonV2,
}

/// What [`detect`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmuInfo {
    /// The layout (and thus the MSRs) of the counters.
    pub layout: Layout,
    /// Number of general-purpose counters.
    pub general_counters: u8,
    /// Width in bits of the general-purpose counters.
    pub general_width: u8,
    /// Bit `i` set: fixed counter `i` exists (Intel only).
    pub fixed_mask: u32,
    /// Width in bits of the fixed counters (0 when there are none).
    pub fixed_width: u8,
    /// CPU family (AMD event encodings depend on it).
    pub family: u32,
    /// Bit per [`Event`]: countable at all.
    events: u8,
    /// Bit per [`Event`]: countable by a general-purpose counter.
    general_events: u8,
}

impl PmuInfo {
    /// Whether the PMU can count `event`.
    pub fn supports(&self, event: Event) -> bool {
        self.events & event.bit() != 0
    }

    /// Whether a global control MSR starts, stops and freezes counters together.
    pub fn has_global_ctrl(&self) -> bool {
        match self.layout {
            Layout::IntelArch { version } => version >= 2,
            Layout::AmdPerfMonV2 => true,
            Layout::AmdLegacy | Layout::AmdCore => false,
        }
    }
}

fn vendor_is(r: crate::env::CpuidResult, name: &[u8; 12]) -> bool {
    let mut v = [0u8; 12];
    v[0..4].copy_from_slice(&r.ebx.to_le_bytes());
    v[4..8].copy_from_slice(&r.edx.to_le_bytes());
    v[8..12].copy_from_slice(&r.ecx.to_le_bytes());
    &v == name
}

fn family(cpuid: &impl Cpuid) -> u32 {
    let eax = cpuid.cpuid(1, 0).eax;
    let base = (eax >> 8) & 0xF;
    if base == 0xF {
        base + ((eax >> 20) & 0xFF)
    } else {
        base
    }
}

fn width_ok(w: u8) -> bool {
    (intel::MIN_WIDTH..=intel::MAX_WIDTH).contains(&w)
}

/// Decodes the PMU from CPUID. Touches no MSR.
pub fn detect(cpuid: &impl Cpuid) -> Result<PmuInfo, PmuError> {
    let leaf0 = cpuid.cpuid(0, 0);
    if vendor_is(leaf0, b"GenuineIntel") {
        detect_intel(cpuid, leaf0.eax)
    } else if vendor_is(leaf0, b"AuthenticAMD") || vendor_is(leaf0, b"HygonGenuine") {
        detect_amd(cpuid)
    } else {
        Err(PmuError::NoPmu(NoPmuReason::UnknownVendor))
    }
}

fn detect_intel(cpuid: &impl Cpuid, max_leaf: u32) -> Result<PmuInfo, PmuError> {
    if max_leaf < 0xA {
        return Err(PmuError::NoPmu(NoPmuReason::NoPerfmonLeaf));
    }
    let a = cpuid.cpuid(0xA, 0);
    let version = (a.eax & 0xFF) as u8;
    if version == 0 {
        return Err(PmuError::NoPmu(NoPmuReason::VersionZero));
    }
    let general = ((a.eax >> 8) & 0xFF) as u8;
    let general_width = ((a.eax >> 16) & 0xFF) as u8;
    let ebx_len = a.eax >> 24;
    if general == 0 {
        return Err(PmuError::Malformed(Malformed::NoGeneralCounters));
    }
    if general > intel::MAX_GENERAL {
        return Err(PmuError::Malformed(Malformed::TooManyGeneralCounters {
            reported: general,
            max: intel::MAX_GENERAL,
        }));
    }
    if !width_ok(general_width) {
        return Err(PmuError::Malformed(Malformed::GeneralWidth(general_width)));
    }
    let (fixed_mask, fixed_width) = if version >= 2 {
        let count = a.edx & 0x1F;
        let width = ((a.edx >> 5) & 0xFF) as u8;
        if count > u32::from(intel::MAX_FIXED) {
            return Err(PmuError::Malformed(Malformed::TooManyFixedCounters {
                reported: count as u8,
                max: intel::MAX_FIXED,
            }));
        }
        let mut mask = (1u32 << count) - 1;
        if version >= 5 {
            mask |= a.ecx;
        }
        let highest = 32 - mask.leading_zeros();
        if highest > u32::from(intel::MAX_FIXED) {
            return Err(PmuError::Malformed(Malformed::TooManyFixedCounters {
                reported: highest as u8,
                max: intel::MAX_FIXED,
            }));
        }
        if mask != 0 && !width_ok(width) {
            return Err(PmuError::Malformed(Malformed::FixedWidth(width)));
        }
        (mask, if mask != 0 { width } else { 0 })
    } else {
        (0, 0)
    };
    let mut events = 0;
    let mut general_events = 0;
    for e in Event::ALL {
        let (bit, _) = intel::arch_event(e);
        let general_ok = bit < ebx_len && a.ebx & (1 << bit) == 0;
        let fixed_ok = intel::fixed_counter_for(e).is_some_and(|i| fixed_mask & (1 << i) != 0);
        if general_ok {
            general_events |= e.bit();
        }
        if general_ok || fixed_ok {
            events |= e.bit();
        }
    }
    Ok(PmuInfo {
        layout: Layout::IntelArch { version },
        general_counters: general,
        general_width,
        fixed_mask,
        fixed_width,
        family: family(cpuid),
        events,
        general_events,
    })
}

fn detect_amd(cpuid: &impl Cpuid) -> Result<PmuInfo, PmuError> {
    let max_ext = cpuid.cpuid(0x8000_0000, 0).eax;
    let core_ext = max_ext >= 0x8000_0001 && cpuid.cpuid(0x8000_0001, 0).ecx & (1 << 23) != 0;
    let v2 = if max_ext >= 0x8000_0022 {
        let l = cpuid.cpuid(0x8000_0022, 0);
        (l.eax & 1 != 0).then_some((l.ebx & 0xF) as u8)
    } else {
        None
    };
    let (layout, general) = match (core_ext, v2) {
        (_, Some(n)) => {
            if !core_ext {
                return Err(PmuError::Malformed(
                    Malformed::PerfMonV2WithoutCoreExtension,
                ));
            }
            if n == 0 {
                return Err(PmuError::Malformed(Malformed::NoGeneralCounters));
            }
            if n > amd::CORE_COUNTERS {
                return Err(PmuError::Malformed(Malformed::TooManyGeneralCounters {
                    reported: n,
                    max: amd::CORE_COUNTERS,
                }));
            }
            (Layout::AmdPerfMonV2, n)
        }
        (true, None) => (Layout::AmdCore, amd::CORE_COUNTERS),
        (false, None) => (Layout::AmdLegacy, amd::LEGACY_COUNTERS),
    };
    Ok(PmuInfo {
        layout,
        general_counters: general,
        general_width: amd::WIDTH,
        fixed_mask: 0,
        fixed_width: 0,
        family: family(cpuid),
        // Every AMD layout counts all four events with general-purpose counters.
        events: ALL_EVENTS,
        general_events: ALL_EVENTS,
    })
}

const ALL_EVENTS: u8 = (1 << Event::ALL.len()) - 1;

/// The most events one group holds (and one [`GroupReading`] reports).
pub const MAX_GROUP: usize = 8;

/// One hardware counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// General-purpose counter `i`.
    General(u8),
    /// Intel fixed counter `i`.
    Fixed(u8),
}

/// Counters assigned to a set of events by [`Pmu::open_group`]. Plain data: pass it back to
/// the `Pmu` that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterGroup {
    len: u8,
    events: [Event; MAX_GROUP],
    counters: [Counter; MAX_GROUP],
}

impl CounterGroup {
    /// The events and the counters they got, in the order they were requested.
    pub fn slots(&self) -> impl Iterator<Item = (Event, Counter)> + '_ {
        let n = usize::from(self.len);
        self.events[..n]
            .iter()
            .copied()
            .zip(self.counters[..n].iter().copied())
    }

    fn masks(&self) -> (u32, u32) {
        self.slots().fold((0, 0), |(g, f), (_, c)| match c {
            Counter::General(i) => (g | 1 << i, f),
            Counter::Fixed(i) => (g, f | 1 << i),
        })
    }
}

/// The values of a group's counters, read by one [`Pmu::read`] or [`Pmu::read_rdpmc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupReading {
    len: u8,
    events: [Event; MAX_GROUP],
    values: [u64; MAX_GROUP],
    simultaneous: bool,
}

impl GroupReading {
    /// `(event, count)` in the group's order.
    pub fn iter(&self) -> impl Iterator<Item = (Event, u64)> + '_ {
        let n = usize::from(self.len);
        self.events[..n]
            .iter()
            .copied()
            .zip(self.values[..n].iter().copied())
    }

    /// The count of the first slot that counts `event`.
    pub fn get(&self, event: Event) -> Option<u64> {
        self.iter().find(|&(e, _)| e == event).map(|(_, v)| v)
    }

    /// Whether the counters were frozen while they were read (see the module docs).
    pub fn simultaneous(&self) -> bool {
        self.simultaneous
    }
}

/// `end - start` for a counter `width` bits wide that may have wrapped once in between.
pub fn counter_delta(start: u64, end: u64, width: u8) -> u64 {
    let mask = if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    end.wrapping_sub(start) & mask
}

/// A detected, probed PMU and the counters handed out from it.
#[derive(Debug)]
pub struct Pmu<M: MsrAccess> {
    msr: M,
    info: PmuInfo,
    used_general: u32,
    used_fixed: u32,
}

/// The value the probe writes: bits in both halves, within the narrowest legal counter.
const PROBE_VALUE: u64 = 0x5A5A_A5A5;

impl<M: MsrAccess> Pmu<M> {
    /// Detects the PMU from `cpuid`, then probes it through `msr`.
    pub fn new(msr: M, cpuid: &impl Cpuid) -> Result<Self, PmuError> {
        let info = detect(cpuid)?;
        Self::with_info(msr, info)
    }

    /// Uses an already detected layout; probes general-purpose counter 0 (writes a value with
    /// its event select disabled, reads it back, restores the old value).
    pub fn with_info(msr: M, info: PmuInfo) -> Result<Self, PmuError> {
        let pmu = Self {
            msr,
            info,
            used_general: 0,
            used_fixed: 0,
        };
        let ctr = pmu.general_ctr_msr(0);
        let sel = pmu.general_sel_msr(0);
        let probe_failed = PmuError::NoPmu(NoPmuReason::ProbeFailed { msr: ctr });
        // SAFETY: counter 0 and its select exist in the detected layout (detection
        // succeeded; if CPUID lied, a fault-catching back-end returns Err, reported as "no
        // PMU"). The embedder owns the PMU, so no one else uses counter 0; its select is only
        // read, and its count is restored below.
        let probe = unsafe {
            (|| {
                let old_sel = pmu.msr.read_msr(sel)?;
                let old = pmu.msr.read_msr(ctr)?;
                pmu.msr.write_msr(ctr, PROBE_VALUE)?;
                let back = pmu.msr.read_msr(ctr)?;
                pmu.msr.write_msr(ctr, old)?;
                Ok::<_, MsrError>((old_sel, back))
            })()
        };
        let (old_sel, back) = probe.map_err(|_| probe_failed)?;
        // A counter that is running (someone left it enabled) may have moved on; accept any
        // value at or above the probe then.
        let running = old_sel & pmu.sel_enable_bit() != 0;
        let mask = pmu.general_mask();
        let held = back & mask == PROBE_VALUE || (running && back & mask > PROBE_VALUE);
        if !held {
            return Err(probe_failed);
        }
        Ok(pmu)
    }

    /// What detection found.
    pub fn info(&self) -> &PmuInfo {
        &self.info
    }

    /// The MSR back-end.
    pub fn msr(&self) -> &M {
        &self.msr
    }

    /// Gives the MSR back-end back (open groups are abandoned, not stopped).
    pub fn into_inner(self) -> M {
        self.msr
    }

    fn is_intel(&self) -> bool {
        matches!(self.info.layout, Layout::IntelArch { .. })
    }

    fn general_mask(&self) -> u64 {
        width_mask(self.info.general_width)
    }

    fn sel_enable_bit(&self) -> u64 {
        if self.is_intel() {
            intel::EVTSEL_EN
        } else {
            amd::EVTSEL_EN
        }
    }

    fn general_sel_msr(&self, i: u8) -> u32 {
        let i = u32::from(i);
        match self.info.layout {
            Layout::IntelArch { .. } => intel::PERFEVTSEL0 + i,
            Layout::AmdLegacy => amd::LEGACY_EVTSEL0 + i,
            Layout::AmdCore | Layout::AmdPerfMonV2 => amd::CORE_CTL0 + 2 * i,
        }
    }

    fn general_ctr_msr(&self, i: u8) -> u32 {
        let i = u32::from(i);
        match self.info.layout {
            Layout::IntelArch { .. } => intel::PMC0 + i,
            Layout::AmdLegacy => amd::LEGACY_CTR0 + i,
            Layout::AmdCore | Layout::AmdPerfMonV2 => amd::CORE_CTL0 + 2 * i + 1,
        }
    }

    fn counter_msr(&self, c: Counter) -> u32 {
        match c {
            Counter::General(i) => self.general_ctr_msr(i),
            Counter::Fixed(i) => intel::FIXED_CTR0 + u32::from(i),
        }
    }

    fn counter_width(&self, c: Counter) -> u8 {
        match c {
            Counter::General(_) => self.info.general_width,
            Counter::Fixed(_) => self.info.fixed_width,
        }
    }

    fn event_select(&self, e: Event) -> u64 {
        if self.is_intel() {
            intel::arch_event(e).1 | intel::EVTSEL_USR | intel::EVTSEL_OS | intel::EVTSEL_EN
        } else {
            amd::event_select(e, self.info.family)
                | amd::EVTSEL_USR
                | amd::EVTSEL_OS
                | amd::EVTSEL_EN
        }
    }

    /// Assigns counters to `events` (1..=[`MAX_GROUP`], repeats allowed). Intel's fixed
    /// counters are used where one counts the event; general-purpose counters otherwise.
    /// Counters stay reserved until [`Pmu::close_group`].
    pub fn open_group(&mut self, events: &[Event]) -> Result<CounterGroup, PmuError> {
        if events.is_empty() || events.len() > MAX_GROUP {
            return Err(PmuError::BadGroupSize(events.len()));
        }
        let mut group = CounterGroup {
            len: 0,
            events: [Event::Cycles; MAX_GROUP],
            counters: [Counter::General(0); MAX_GROUP],
        };
        let mut used_general = self.used_general;
        let mut used_fixed = self.used_fixed;
        for (slot, &e) in events.iter().enumerate() {
            if !self.info.supports(e) {
                return Err(PmuError::EventUnavailable(e));
            }
            let fixed = intel::fixed_counter_for(e)
                .filter(|&i| self.is_intel() && self.info.fixed_mask & !used_fixed & (1 << i) != 0);
            let counter = if let Some(i) = fixed {
                used_fixed |= 1 << i;
                Counter::Fixed(i)
            } else if self.info.general_event_ok(e) {
                let free = !used_general & ((1u32 << self.info.general_counters) - 1);
                if free == 0 {
                    return Err(PmuError::NoFreeCounter(e));
                }
                let i = free.trailing_zeros() as u8;
                used_general |= 1 << i;
                Counter::General(i)
            } else {
                return Err(PmuError::NoFreeCounter(e));
            };
            group.events[slot] = e;
            group.counters[slot] = counter;
            group.len += 1;
        }
        self.used_general = used_general;
        self.used_fixed = used_fixed;
        Ok(group)
    }

    fn check_owned(&self, group: &CounterGroup) -> Result<(u32, u32), PmuError> {
        let (g, f) = group.masks();
        if g & !self.used_general != 0 || f & !self.used_fixed != 0 {
            return Err(PmuError::ForeignGroup);
        }
        Ok((g, f))
    }

    /// Stops the group and frees its counters.
    pub fn close_group(&mut self, group: CounterGroup) -> Result<(), PmuError> {
        let (g, f) = self.check_owned(&group)?;
        self.stop(&group)?;
        self.used_general &= !g;
        self.used_fixed &= !f;
        Ok(())
    }

    fn global_ctrl_msr(&self) -> Option<u32> {
        match self.info.layout {
            Layout::IntelArch { version } if version >= 2 => Some(intel::PERF_GLOBAL_CTRL),
            Layout::AmdPerfMonV2 => Some(amd::GLOBAL_CTL),
            _ => None,
        }
    }

    fn global_bits(&self, g: u32, f: u32) -> u64 {
        u64::from(g)
            | if self.is_intel() {
                u64::from(f) << 32
            } else {
                0
            }
    }

    /// Zeroes the group's counters, programs them and starts them (together, where a global
    /// control MSR exists).
    pub fn start(&mut self, group: &CounterGroup) -> Result<(), PmuError> {
        let (g, f) = self.check_owned(group)?;
        let global = self.global_ctrl_msr();
        let bits = self.global_bits(g, f);
        // SAFETY: every MSR here is a global control, event-select, fixed-control or counter
        // MSR of the detected layout, probed in `with_info`; the counters are reserved for
        // this group, so no one else's configuration changes.
        unsafe {
            if let Some(msr) = global {
                let cur = self.msr.read_msr(msr)?;
                self.msr.write_msr(msr, cur & !bits)?;
            }
            let mut fixed_ctrl = None;
            for (e, c) in group.slots() {
                self.msr.write_msr(self.counter_msr(c), 0)?;
                match c {
                    Counter::General(i) => self
                        .msr
                        .write_msr(self.general_sel_msr(i), self.event_select(e))?,
                    Counter::Fixed(i) => {
                        let cur = match fixed_ctrl {
                            Some(v) => v,
                            None => self.msr.read_msr(intel::FIXED_CTR_CTRL)?,
                        };
                        let shift = 4 * u32::from(i);
                        fixed_ctrl =
                            Some((cur & !(0xF << shift)) | intel::FIXED_FIELD_OS_USR << shift);
                    }
                }
            }
            if let Some(v) = fixed_ctrl {
                self.msr.write_msr(intel::FIXED_CTR_CTRL, v)?;
            }
            if let Some(msr) = global {
                let cur = self.msr.read_msr(msr)?;
                self.msr.write_msr(msr, cur | bits)?;
            }
        }
        Ok(())
    }

    /// Stops the group's counters (together, where a global control MSR exists); the counts
    /// stay readable.
    pub fn stop(&mut self, group: &CounterGroup) -> Result<(), PmuError> {
        let (g, f) = self.check_owned(group)?;
        // SAFETY: as in `start`: MSRs of the detected layout, counters reserved for the group.
        unsafe {
            if let Some(msr) = self.global_ctrl_msr() {
                let cur = self.msr.read_msr(msr)?;
                self.msr.write_msr(msr, cur & !self.global_bits(g, f))?;
            }
            for (_, c) in group.slots() {
                if let Counter::General(i) = c {
                    let sel = self.general_sel_msr(i);
                    let cur = self.msr.read_msr(sel)?;
                    self.msr.write_msr(sel, cur & !self.sel_enable_bit())?;
                }
            }
            if f != 0 {
                let mut v = self.msr.read_msr(intel::FIXED_CTR_CTRL)?;
                for i in 0..intel::MAX_FIXED {
                    if f & (1 << i) != 0 {
                        v &= !(0xF << (4 * u32::from(i)));
                    }
                }
                self.msr.write_msr(intel::FIXED_CTR_CTRL, v)?;
            }
        }
        Ok(())
    }

    fn read_with(
        &self,
        group: &CounterGroup,
        mut read_one: impl FnMut(&Self, Counter) -> Result<u64, MsrError>,
    ) -> Result<GroupReading, PmuError> {
        let (g, f) = self.check_owned(group)?;
        let global = self.global_ctrl_msr();
        let bits = self.global_bits(g, f);
        let mut out = GroupReading {
            len: group.len,
            events: group.events,
            values: [0; MAX_GROUP],
            simultaneous: global.is_some(),
        };
        let saved = match global {
            // SAFETY: the global control MSR of the detected layout; only this group's bits
            // are cleared, and restored below.
            Some(msr) => unsafe {
                let cur = self.msr.read_msr(msr)?;
                self.msr.write_msr(msr, cur & !bits)?;
                Some((msr, cur))
            },
            None => None,
        };
        let mut result = Ok(());
        for (slot, (_, c)) in group.slots().enumerate() {
            match read_one(self, c) {
                Ok(v) => out.values[slot] = v & width_mask(self.counter_width(c)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if let Some((msr, cur)) = saved {
            // SAFETY: as above; restores the saved value.
            unsafe { self.msr.write_msr(msr, cur)? };
        }
        result?;
        Ok(out)
    }

    /// Reads the group's counters through their MSRs (frozen together where possible).
    pub fn read(&self, group: &CounterGroup) -> Result<GroupReading, PmuError> {
        self.read_with(group, |pmu, c| {
            // SAFETY: a counter MSR of the detected layout, reserved for this group.
            unsafe { pmu.msr.read_msr(pmu.counter_msr(c)) }
        })
    }

    /// Reads the group's counters with `RDPMC` (Intel fixed counters with `ECX` bit 30).
    pub fn read_rdpmc(&self, group: &CounterGroup) -> Result<GroupReading, PmuError> {
        self.read_with(group, |pmu, c| {
            let index = match c {
                Counter::General(i) => u32::from(i),
                Counter::Fixed(i) => intel::RDPMC_FIXED | u32::from(i),
            };
            // SAFETY: a counter of the detected layout; RDPMC permission is the embedder's
            // (`MsrAccess::read_pmc` contract).
            unsafe { pmu.msr.read_pmc(index) }
        })
    }
}

/// A general-purpose counter programmed for overflow sampling by [`Pmu::start_sampling`]:
/// it starts at `-period` and raises the performance-monitoring interrupt when it wraps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplingCounter {
    event: Event,
    index: u8,
    period: u64,
}

impl SamplingCounter {
    /// The event counted.
    pub fn event(&self) -> Event {
        self.event
    }

    /// The general-purpose counter used.
    pub fn counter(&self) -> Counter {
        Counter::General(self.index)
    }

    /// Events per sample.
    pub fn period(&self) -> u64 {
        self.period
    }
}

impl<M: MsrAccess> Pmu<M> {
    /// The largest sampling period: the counter must start with its top bit set (so that the
    /// wrap is seen as that bit clearing), and Intel's legacy counter MSRs sign-extend a write
    /// from bit 31.
    pub fn max_period(&self) -> u64 {
        let top = 1u64 << (self.info.general_width - 1);
        if self.is_intel() {
            top.min(1 << 31) - 1
        } else {
            top - 1
        }
    }

    /// Programs a free general-purpose counter to count `event` and interrupt every `period`
    /// events (1..=[`Pmu::max_period`]; anything else is [`PmuError::BadPeriod`]). The
    /// embedder routes the local APIC's performance-counter LVT entry to its handler, which
    /// calls [`Pmu::overflowed`] and records a sample when it says so.
    pub fn start_sampling(
        &mut self,
        event: Event,
        period: u64,
    ) -> Result<SamplingCounter, PmuError> {
        if period == 0 || period > self.max_period() {
            return Err(PmuError::BadPeriod(period));
        }
        if !self.info.supports(event) || !self.info.general_event_ok(event) {
            return Err(PmuError::EventUnavailable(event));
        }
        let free = !self.used_general & ((1u32 << self.info.general_counters) - 1);
        if free == 0 {
            return Err(PmuError::NoFreeCounter(event));
        }
        let index = free.trailing_zeros() as u8;
        let counter = SamplingCounter {
            event,
            index,
            period,
        };
        let int = if self.is_intel() {
            intel::EVTSEL_INT
        } else {
            amd::EVTSEL_INT
        };
        // SAFETY: a free general-purpose counter of the detected layout (probed in
        // `with_info`) and the global control MSR where the layout has one.
        unsafe {
            self.msr.write_msr(self.general_sel_msr(index), 0)?;
            self.arm(&counter)?;
            self.msr
                .write_msr(self.general_sel_msr(index), self.event_select(event) | int)?;
            if let Some(msr) = self.global_ctrl_msr() {
                let cur = self.msr.read_msr(msr)?;
                self.msr.write_msr(msr, cur | 1 << index)?;
            }
        }
        self.used_general |= 1 << index;
        Ok(counter)
    }

    /// Loads `-period` into the sampling counter.
    ///
    /// # Safety
    /// `counter` was programmed by [`Pmu::start_sampling`] on this PMU.
    unsafe fn arm(&self, counter: &SamplingCounter) -> Result<(), PmuError> {
        let start = counter.period.wrapping_neg() & self.general_mask();
        // SAFETY: the caller's contract: a counter MSR of the detected layout.
        unsafe {
            self.msr
                .write_msr(self.general_ctr_msr(counter.index), start)
        }?;
        Ok(())
    }

    /// For the performance-monitoring interrupt handler: whether `counter` overflowed since
    /// it was last armed; if so it is armed again (`-period`) and its overflow status bit
    /// cleared where the layout has one. The embedder then records the sample and unmasks the
    /// LVT entry (the CPU masks it on delivery).
    pub fn overflowed(&self, counter: &SamplingCounter) -> Result<bool, PmuError> {
        let owned = self.used_general & (1 << counter.index) != 0;
        if !owned {
            return Err(PmuError::ForeignGroup);
        }
        let top = 1u64 << (self.info.general_width - 1);
        // SAFETY: a counter MSR of the detected layout, reserved for `counter`.
        let value = unsafe { self.msr.read_msr(self.general_ctr_msr(counter.index)) }?;
        if value & top != 0 {
            // Still counting up towards the wrap: not this counter's interrupt.
            return Ok(false);
        }
        // SAFETY: as above; the status-clear MSRs exist where the layout has global control.
        unsafe {
            self.arm(counter)?;
            match self.info.layout {
                Layout::IntelArch { version } if version >= 2 => self
                    .msr
                    .write_msr(intel::PERF_GLOBAL_OVF_CTRL, 1 << counter.index)?,
                Layout::AmdPerfMonV2 => self
                    .msr
                    .write_msr(amd::GLOBAL_STATUS_CLR, 1 << counter.index)?,
                _ => {}
            }
        }
        Ok(true)
    }

    /// Stops the sampling counter and frees it.
    pub fn stop_sampling(&mut self, counter: SamplingCounter) -> Result<(), PmuError> {
        if self.used_general & (1 << counter.index) == 0 {
            return Err(PmuError::ForeignGroup);
        }
        // SAFETY: MSRs of the detected layout for a counter this PMU reserved.
        unsafe {
            if let Some(msr) = self.global_ctrl_msr() {
                let cur = self.msr.read_msr(msr)?;
                self.msr.write_msr(msr, cur & !(1 << counter.index))?;
            }
            self.msr.write_msr(self.general_sel_msr(counter.index), 0)?;
        }
        self.used_general &= !(1 << counter.index);
        Ok(())
    }
}

impl PmuInfo {
    /// Whether a general-purpose counter can count `e` (Intel: CPUID.0xA:EBX does not mask
    /// the architectural event).
    fn general_event_ok(&self, e: Event) -> bool {
        self.general_events & e.bit() != 0
    }
}

fn width_mask(width: u8) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    }
}
