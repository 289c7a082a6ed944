//! The TSC as a clock: invariant-TSC check, calibration against a reference clock the embedder
//! provides, cycles→nanoseconds conversion that cannot overflow, serialised start/stop reads,
//! and the measured overhead of an empty timing loop.
//!
//! **What it relies on.** A reference [`Clock`] (the kernel: PIT, HPET or the ACPI PM timer;
//! hosted: `CLOCK_MONOTONIC`, `crate::hosted::MonotonicClock`) and a [`CycleCounter`] (the TSC,
//! [`Tsc`], or a fake in tests). The TSC is only a clock if it ticks at a constant rate in every
//! power state: [`invariant_tsc`] checks `CPUID 0x8000_0007:EDX[8]`, and [`TscClock::native`]
//! refuses a TSC without it.
//!
//! **What it guarantees.**
//! - [`calibrate`] starts and ends its window on an edge of the reference clock (the first read
//!   after the reference value changes), so a coarse reference costs no more than one of its
//!   ticks of error per window; it repeats the measurement and takes the median; it fails with
//!   an error (never loops forever) when either clock does not advance.
//! - [`CyclesToNs`] is Linux's `clocksource` mult/shift: `ns = cycles * mult >> shift` with a
//!   32-bit `mult` chosen as large as possible (relative error of the factor ≤ 2⁻³¹ for
//!   frequencies between 1 Hz and 10¹⁸ Hz), computed in 128 bits so no `u64` cycle count can
//!   overflow; a result above `u64::MAX` saturates.
//! - [`measure_overhead`] times an empty start/stop pair many times and keeps the minimum, the
//!   cost sel4bench subtracts from every measurement ([`TscClock::elapsed_ns`] does so, never
//!   going below zero).
//!
//! Start/stop reads: see [`crate::arch`] for why `lfence; rdtsc` opens and `rdtscp; lfence`
//! closes an interval.

use core::fmt;

use crate::env::Cpuid;

/// A monotonic clock in nanoseconds, here the reference the TSC is calibrated against: the
/// embedder trait of `veridian-embed`, re-exported (a kernel that also embeds veridian-sched or
/// veridian-io implements it once).
///
/// Must never go backwards; its resolution may be coarse (calibration aligns to its edges)
/// but it must advance while calibration spins on it.
pub use veridian_embed::Clock;

/// A free-running cycle counter with serialised interval reads.
pub trait CycleCounter {
    /// Reads the counter at the start of an interval (no earlier instruction still running).
    fn start(&self) -> u64;
    /// Reads the counter at the end of an interval (no later instruction started yet).
    fn stop(&self) -> u64;
}

/// What can go wrong setting up a clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockError {
    /// The CPU has no TSC or no `RDTSCP` (or this is not x86_64).
    NoTsc,
    /// The TSC's rate changes with power states (`CPUID 0x8000_0007:EDX[8]` clear).
    NotInvariant,
    /// The reference clock did not advance within the spin limit.
    ReferenceStalled,
    /// The cycle counter did not advance during a calibration window.
    CounterStalled,
    /// A frequency of 0 Hz, or a calibration window of 0 ns, was given.
    Zero,
}

impl fmt::Display for ClockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClockError::NoTsc => "no TSC with RDTSCP on this CPU",
            ClockError::NotInvariant => {
                "the TSC is not invariant (CPUID 0x80000007 EDX bit 8 clear)"
            }
            ClockError::ReferenceStalled => "the reference clock did not advance",
            ClockError::CounterStalled => "the cycle counter did not advance during calibration",
            ClockError::Zero => "zero frequency or zero calibration window",
        })
    }
}

/// Whether the TSC is invariant: `CPUID 0x8000_0007:EDX[8]` (with the extended leaf present).
pub fn invariant_tsc(cpuid: &impl Cpuid) -> bool {
    cpuid.cpuid(0x8000_0000, 0).eax >= 0x8000_0007
        && cpuid.cpuid(0x8000_0007, 0).edx & (1 << 8) != 0
}

/// Whether the CPU has a TSC (`CPUID 1:EDX[4]`) and `RDTSCP` (`CPUID 0x8000_0001:EDX[27]`).
pub fn has_tsc_and_rdtscp(cpuid: &impl Cpuid) -> bool {
    cpuid.cpuid(1, 0).edx & (1 << 4) != 0
        && cpuid.cpuid(0x8000_0000, 0).eax >= 0x8000_0001
        && cpuid.cpuid(0x8000_0001, 0).edx & (1 << 27) != 0
}

const NS_PER_SEC: u64 = 1_000_000_000;

/// Cycles→nanoseconds as a fixed-point factor: `ns = cycles * mult >> shift`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CyclesToNs {
    mult: u32,
    shift: u32,
}

impl CyclesToNs {
    /// The factor for a counter ticking at `hz`, with the largest `shift` whose `mult` still
    /// fits 32 bits (the most precise factor of that form).
    pub fn from_hz(hz: u64) -> Result<Self, ClockError> {
        if hz == 0 {
            return Err(ClockError::Zero);
        }
        let hz = u128::from(hz);
        let mut best = None;
        for shift in 0..64u32 {
            // Rounded to nearest: (1e9 << shift + hz/2) / hz; no overflow, 1e9 < 2^30.
            let mult = ((u128::from(NS_PER_SEC) << shift) + hz / 2) / hz;
            if mult > u128::from(u32::MAX) {
                break;
            }
            if mult != 0 {
                best = Some(Self {
                    mult: mult as u32,
                    shift,
                });
            }
        }
        // hz <= u64::MAX < 1e9 << 63 / 2, so shift 63 gives mult >= 1: `best` is always set.
        best.ok_or(ClockError::Zero)
    }

    /// Converts a cycle count to nanoseconds (saturating at `u64::MAX`).
    #[inline]
    pub fn to_ns(&self, cycles: u64) -> u64 {
        let ns = (u128::from(cycles) * u128::from(self.mult)) >> self.shift;
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// The multiplier.
    pub fn mult(&self) -> u32 {
        self.mult
    }

    /// The shift.
    pub fn shift(&self) -> u32 {
        self.shift
    }
}

/// Settings for [`calibrate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CalibrationConfig {
    /// Length of one measurement window on the reference clock.
    pub window_ns: u64,
    /// Windows measured; the median frequency is kept (at least 1, at most 15).
    pub rounds: u32,
    /// Reads of the reference clock after which it counts as stalled (per wait).
    pub max_spins: u64,
}

impl Default for CalibrationConfig {
    /// 10 ms windows, 3 rounds (30 ms in all), stall after 2³⁰ reads of the reference.
    fn default() -> Self {
        Self {
            window_ns: 10_000_000,
            rounds: 3,
            max_spins: 1 << 30,
        }
    }
}

/// Waits for the reference clock to change value; returns the new value.
fn next_edge(reference: &impl Clock, max_spins: u64) -> Result<u64, ClockError> {
    let first = reference.now_ns();
    for _ in 0..max_spins {
        let t = reference.now_ns();
        if t != first {
            return Ok(t);
        }
        core::hint::spin_loop();
    }
    Err(ClockError::ReferenceStalled)
}

/// Measures the counter's frequency in Hz against `reference` (module docs: edge-aligned
/// windows, median of `rounds`).
pub fn calibrate(
    reference: &impl Clock,
    counter: &impl CycleCounter,
    config: CalibrationConfig,
) -> Result<u64, ClockError> {
    if config.window_ns == 0 {
        return Err(ClockError::Zero);
    }
    let rounds = config.rounds.clamp(1, 15) as usize;
    let mut results = [0u64; 15];
    for slot in results.iter_mut().take(rounds) {
        let t0 = next_edge(reference, config.max_spins)?;
        let c0 = counter.start();
        let mut spins = 0u64;
        let (t1, c1) = loop {
            let t = reference.now_ns();
            if t.saturating_sub(t0) >= config.window_ns {
                break (t, counter.stop());
            }
            spins += 1;
            if spins > config.max_spins {
                return Err(ClockError::ReferenceStalled);
            }
            core::hint::spin_loop();
        };
        if c1 <= c0 {
            return Err(ClockError::CounterStalled);
        }
        let hz = u128::from(c1 - c0) * u128::from(NS_PER_SEC) / u128::from(t1 - t0);
        *slot = u64::try_from(hz).unwrap_or(u64::MAX);
    }
    let measured = &mut results[..rounds];
    measured.sort_unstable();
    let hz = measured[rounds / 2];
    if hz == 0 {
        return Err(ClockError::CounterStalled);
    }
    Ok(hz)
}

/// The cost of an empty timing interval: the minimum of `runs` back-to-back `start`/`stop`
/// pairs (0 when `runs` is 0).
pub fn measure_overhead(counter: &impl CycleCounter, runs: u32) -> u64 {
    let mut best = u64::MAX;
    for _ in 0..runs {
        let a = counter.start();
        let b = counter.stop();
        best = best.min(b.wrapping_sub(a));
    }
    if runs == 0 { 0 } else { best }
}

/// The TSC of the CPU the caller runs on, with serialised reads.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Tsc;

#[cfg(target_arch = "x86_64")]
impl CycleCounter for Tsc {
    #[inline(always)]
    fn start(&self) -> u64 {
        crate::arch::rdtsc_start()
    }

    #[inline(always)]
    fn stop(&self) -> u64 {
        crate::arch::rdtscp_stop().0
    }
}

/// A calibrated clock over a cycle counter: frequency, conversion and loop overhead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscClock {
    hz: u64,
    conversion: CyclesToNs,
    overhead: u64,
}

/// Start/stop pairs [`TscClock::native`] times to find the loop overhead.
pub const OVERHEAD_RUNS: u32 = 10_000;

impl TscClock {
    /// Checks the TSC (present, `RDTSCP`, invariant), calibrates it against `reference` and
    /// measures the start/stop overhead. Requires `CR4.TSD` clear (or ring 0).
    pub fn native(
        cpuid: &impl Cpuid,
        reference: &impl Clock,
        config: CalibrationConfig,
    ) -> Result<Self, ClockError> {
        if !cfg!(target_arch = "x86_64") || !has_tsc_and_rdtscp(cpuid) {
            return Err(ClockError::NoTsc);
        }
        if !invariant_tsc(cpuid) {
            return Err(ClockError::NotInvariant);
        }
        #[cfg(target_arch = "x86_64")]
        {
            Self::calibrated(reference, &Tsc, config)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (reference, config);
            Err(ClockError::NoTsc)
        }
    }

    /// Calibrates any cycle counter against `reference` and measures its overhead.
    pub fn calibrated(
        reference: &impl Clock,
        counter: &impl CycleCounter,
        config: CalibrationConfig,
    ) -> Result<Self, ClockError> {
        let hz = calibrate(reference, counter, config)?;
        Self::from_parts(hz, measure_overhead(counter, OVERHEAD_RUNS))
    }

    /// A clock from a known frequency (CPUID leaf `0x15`, a hypervisor leaf, an earlier
    /// calibration) and overhead in cycles.
    pub fn from_parts(hz: u64, overhead_cycles: u64) -> Result<Self, ClockError> {
        Ok(Self {
            hz,
            conversion: CyclesToNs::from_hz(hz)?,
            overhead: overhead_cycles,
        })
    }

    /// The counter frequency in Hz.
    pub fn hz(&self) -> u64 {
        self.hz
    }

    /// The conversion factor.
    pub fn conversion(&self) -> CyclesToNs {
        self.conversion
    }

    /// The measured cost of an empty start/stop pair, in cycles.
    pub fn overhead_cycles(&self) -> u64 {
        self.overhead
    }

    /// Cycles to nanoseconds.
    #[inline]
    pub fn cycles_to_ns(&self, cycles: u64) -> u64 {
        self.conversion.to_ns(cycles)
    }

    /// Cycles between a `start` and a `stop` read, less the loop overhead (never below 0).
    #[inline]
    pub fn elapsed_cycles(&self, start: u64, stop: u64) -> u64 {
        stop.wrapping_sub(start).saturating_sub(self.overhead)
    }

    /// [`TscClock::elapsed_cycles`] in nanoseconds.
    #[inline]
    pub fn elapsed_ns(&self, start: u64, stop: u64) -> u64 {
        self.cycles_to_ns(self.elapsed_cycles(start, stop))
    }
}
