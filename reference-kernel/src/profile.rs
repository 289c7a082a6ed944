//! The kernel's sampling profiler (`mode=profile`), built from veridian-perf's pieces.
//!
//! - **Sampling**: the local APIC timer interrupt of every CPU reaches [`on_sample`] through
//!   `arch::x86_64::sampling`'s hook (`arch/` never names this module). While the profiler is
//!   on, the timer is split ([`apic::split_tick`]) so that it interrupts [`SPLIT`] times per
//!   scheduler tick: `TICK_HZ * SPLIT` = 1000 samples per second per CPU in TSC-deadline mode (the
//!   scheduler still ticks at `TICK_HZ`); in periodic mode the rate stays at the tick's.
//! - **A sample** is veridian-perf's [`Sample`]: the TSC, the CPU, the interrupted thread's
//!   address-space tag (its process; 0 for kernel threads), the interrupted `rip` and, in
//!   kernel mode, the return addresses found by veridian-perf's frame-pointer walker, which
//!   reads only the interrupted kernel stack between the interrupted `rsp` and that stack's top
//!   (`sampling::StackWindow`). A ring-3 sample records the process, `rip`, and the user
//!   stack's return addresses, read one word at a time with `probe::read_user_u64` (a fault
//!   ends the walk; it never demand-pages from the interrupt).
//! - **PMU overflow sampling**, where the CPU has a usable PMU (never under QEMU TCG, which
//!   has none; veridian-perf's `Pmu::start_sampling`/`overflowed` are tested against its fake
//!   MSR back-end): [`start`] asks for it; each CPU arms its own cycle counter (every
//!   [`PMI_PERIOD`] cycles) and routes its performance-monitoring interrupt at its next timer
//!   interrupt, and from then on samples come from the PMI ([`on_pmi`]) instead of the timer
//!   (which is not split). [`stop`] disarms each CPU at its next timer interrupt. Without a
//!   PMU the timer samples, and the reason is printed once ([`report_pmu`]).
//! - **Per-CPU rings**: one veridian-perf [`SampleRing`] of [`RING_SAMPLES`] samples for each
//!   of the first [`PROFILED_CPUS`] CPUs (statics). A full ring drops the new sample and counts
//!   it; a CPU past the table counts its samples as [`Stats::beyond`]. The interrupt pushes
//!   through the ring's producer, held in a per-CPU [`IrqLock`] that only that CPU's interrupt
//!   takes (with `try_lock`; a busy lock would count in [`Stats::busy`]).
//! - **Output**: a drain thread moves samples into a [`Profile`] (veridian-perf's
//!   [`FoldedStacks`], raw addresses) every [`DRAIN_MS`] ms; at the end the folded stacks go to
//!   COM2, then `# process <pid> <program>` for each process started meanwhile, then the
//!   marker line [`END_MARKER`]. `cargo xtask profile` symbolises them.

#![deny(unsafe_code)]

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spin::Once;
use veridian_perf::profiler::Sample;
use veridian_perf::profiler::folded::FoldedStacks;
use veridian_perf::profiler::ring::{Consumer, Producer, SampleRing};
use veridian_perf::profiler::symbol::HexSymbolizer;

use crate::arch::x86_64::apic;
use crate::arch::x86_64::percpu;
use crate::arch::x86_64::probe::{self, FaultSafeMsr};
use crate::arch::x86_64::sampling::{self, Interrupted};
use crate::sync::{IrqLock, PreemptLock};
use veridian_perf::arch::NativeCpuid;
use veridian_perf::pmu::{Event, Pmu, PmuError, SamplingCounter};

/// CPUs with a sample ring (samples on others are counted in [`Stats::beyond`]).
pub const PROFILED_CPUS: usize = 8;
/// Samples per CPU ring (288 bytes each: 72 KiB per CPU).
pub const RING_SAMPLES: usize = 256;
/// Timer interrupts per scheduler tick while the profiler is on.
pub const SPLIT: u64 = 10;
/// How often the drain thread empties the rings (a ring holds 256 ms of samples at 1 kHz).
pub const DRAIN_MS: u64 = 20;
/// The last line of the folded output on COM2.
pub const END_MARKER: &str = "# veridian-profile end";

type Ring = SampleRing<Sample, RING_SAMPLES>;

static RINGS: [Ring; PROFILED_CPUS] = [const { SampleRing::new() }; PROFILED_CPUS];
static PRODUCERS: [IrqLock<Option<Producer<'static, Sample, RING_SAMPLES>>>; PROFILED_CPUS] =
    [const { IrqLock::new("profile::PRODUCERS", None) }; PROFILED_CPUS];
static CONSUMERS: PreemptLock<alloc::vec::Vec<Consumer<'static, Sample, RING_SAMPLES>>> =
    PreemptLock::new("profile::CONSUMERS", alloc::vec::Vec::new());
static SET_UP: Once<()> = Once::new();
/// Processes started while the profiler was on: (process id, program name).
static PROCESSES: PreemptLock<alloc::vec::Vec<(u64, String)>> =
    PreemptLock::new("profile::PROCESSES", alloc::vec::Vec::new());
static ON: AtomicBool = AtomicBool::new(false);
static SAMPLES: AtomicU64 = AtomicU64::new(0);
static USER_SAMPLES: AtomicU64 = AtomicU64::new(0);
static UNWALKED: AtomicU64 = AtomicU64::new(0);
static BUSY: AtomicU64 = AtomicU64::new(0);
static BEYOND: AtomicU64 = AtomicU64::new(0);
/// TSC ticks spent in [`on_sample`] from its first `rdtsc` to its last (the walk and the push).
static COST: AtomicU64 = AtomicU64::new(0);

/// Cycles per PMU sample (1 ms at 2 GHz).
pub const PMI_PERIOD: u64 = 2_000_000;

/// Whether PMU overflow sampling is wanted (a PMU was detected when the profiler started).
static PMI_WANTED: AtomicBool = AtomicBool::new(false);
/// A CPU's PMU and its sampling counter.
type Armed = (Pmu<FaultSafeMsr>, SamplingCounter);

/// Each CPU's PMU and sampling counter while armed (touched by that CPU's interrupts only).
static PMI_CPUS: [IrqLock<Option<Armed>>; PROFILED_CPUS] =
    [const { IrqLock::new("profile::PMI_CPUS", None) }; PROFILED_CPUS];
/// PMU samples taken.
static PMI_SAMPLES: AtomicU64 = AtomicU64::new(0);

/// At a timer interrupt: arms this CPU's sampling counter if PMU sampling is wanted and it is
/// not armed yet, disarms it if it is no longer wanted. Whether this CPU samples by PMI now.
fn pmi_housekeeping(cpu: usize) -> bool {
    let Some(slot) = PMI_CPUS.get(cpu) else {
        return false;
    };
    let wanted = PMI_WANTED.load(Ordering::Relaxed);
    let mut armed = slot.lock();
    match (wanted, armed.is_some()) {
        (true, true) => true,
        (true, false) => {
            let Ok(mut pmu) = Pmu::new(FaultSafeMsr, &NativeCpuid) else {
                return false;
            };
            match pmu.start_sampling(Event::Cycles, PMI_PERIOD) {
                Ok(counter) if apic::route_pmi() => {
                    *armed = Some((pmu, counter));
                    true
                }
                Ok(counter) => {
                    let _ = pmu.stop_sampling(counter);
                    false
                }
                Err(_) => false,
            }
        }
        (false, true) => {
            if let Some((mut pmu, counter)) = armed.take() {
                let _ = pmu.stop_sampling(counter);
            }
            false
        }
        (false, false) => false,
    }
}

/// The PMU hook (performance-monitoring interrupt, interrupts off): one sample if this CPU's
/// sampling counter overflowed.
fn on_pmi(ctx: &Interrupted) {
    let cpu = percpu::cpu_index();
    let Some(slot) = PMI_CPUS.get(cpu) else {
        return;
    };
    let overflowed = slot
        .lock()
        .as_ref()
        .is_some_and(|(pmu, counter)| pmu.overflowed(counter) == Ok(true));
    if overflowed && ON.load(Ordering::Relaxed) {
        PMI_SAMPLES.fetch_add(1, Ordering::Relaxed);
        record(cpu, ctx);
    }
}

/// Splits the rings once and registers the sampling hooks.
fn set_up() {
    SET_UP.call_once(|| {
        let mut consumers = CONSUMERS.lock();
        for (ring, producer) in RINGS.iter().zip(&PRODUCERS) {
            let (p, c) = ring.split().expect("each ring is split once, here");
            *producer.lock() = Some(p);
            consumers.push(c);
        }
        drop(consumers);
        sampling::register(on_sample);
        sampling::register_pmi(on_pmi);
    });
}

/// The sampling hook (timer interrupt, interrupts off): one sample into this CPU's ring,
/// unless this CPU samples by PMU overflow.
fn on_sample(ctx: &Interrupted) {
    let cpu = percpu::cpu_index();
    if pmi_housekeeping(cpu) || !ON.load(Ordering::Relaxed) {
        return;
    }
    record(cpu, ctx);
}

/// Records one sample of `ctx` into CPU `cpu`'s ring.
fn record(cpu: usize, ctx: &Interrupted) {
    let Some(producer) = PRODUCERS.get(cpu) else {
        BEYOND.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let t0 = veridian_perf::arch::rdtsc();
    let mut sample = Sample::new(t0, cpu as u32, ctx.tag, ctx.ip);
    if ctx.user {
        USER_SAMPLES.fetch_add(1, Ordering::Relaxed);
        sample.walk_stack_with(ctx.fp as usize, |fp| {
            let fp = fp as u64;
            let next = probe::read_user_u64(fp)?;
            let ret = probe::read_user_u64(fp + 8)?;
            Some((next as usize, ret as usize))
        });
    } else if sample.walk_stack(ctx.fp as usize, &ctx.stack) == 0 {
        UNWALKED.fetch_add(1, Ordering::Relaxed);
    }
    SAMPLES.fetch_add(1, Ordering::Relaxed);
    match producer.try_lock() {
        Some(mut p) => {
            if let Some(p) = p.as_mut() {
                p.push(&sample);
            }
        }
        None => {
            BUSY.fetch_add(1, Ordering::Relaxed);
        }
    }
    let cost = veridian_perf::arch::rdtsc().wrapping_sub(t0);
    COST.fetch_add(cost, Ordering::Relaxed);
}

/// Records that process `pid` runs program `name` (kept only while the profiler is on), so that
/// its ring-3 samples can be symbolised from the right ELF.
pub fn note_process(pid: u64, name: &str) {
    if ON.load(Ordering::Acquire) {
        PROCESSES.lock().push((pid, name.into()));
    }
}

/// Turns sampling on (every CPU, from its next timer interrupt); returns the sampling rate per
/// CPU in Hz.
pub fn start() -> u64 {
    set_up();
    ON.store(true, Ordering::Release);
    if detect_pmu().is_ok() {
        // Each CPU arms its counter at its next timer interrupt. The rate is about the TSC
        // frequency over the period (core cycles run near the TSC's rate when not halted).
        PMI_WANTED.store(true, Ordering::Release);
        return apic::info().map_or(1000, |i| (i.tsc_hz / PMI_PERIOD).max(1));
    }
    apic::split_tick(SPLIT)
}

/// Turns sampling off and the timer back to one interrupt per tick (CPUs sampling by PMU
/// disarm at their next timer interrupt).
pub fn stop() {
    ON.store(false, Ordering::Release);
    PMI_WANTED.store(false, Ordering::Release);
    apic::split_tick(1);
}

/// Samples taken from PMU overflow interrupts since boot.
pub fn pmi_samples() -> u64 {
    PMI_SAMPLES.load(Ordering::Relaxed)
}

/// The profiler's counters since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Samples taken (pushed or dropped).
    pub samples: u64,
    /// Of those, in ring 3.
    pub user: u64,
    /// Kernel samples whose stack walk found no frame (outside a known kernel stack, or a null
    /// frame pointer).
    pub unwalked: u64,
    /// Samples dropped because their CPU's ring was full.
    pub dropped: u64,
    /// Samples dropped because the ring's producer was busy (never expected).
    pub busy: u64,
    /// Samples of CPUs past [`PROFILED_CPUS`] (not recorded).
    pub beyond: u64,
    /// TSC ticks spent building and pushing samples (not counting the interrupt's entry and
    /// exit, nor the timer interrupts the split adds).
    pub cost_tsc: u64,
}

/// The counters now.
pub fn stats() -> Stats {
    Stats {
        samples: SAMPLES.load(Ordering::Relaxed),
        user: USER_SAMPLES.load(Ordering::Relaxed),
        unwalked: UNWALKED.load(Ordering::Relaxed),
        dropped: RINGS.iter().map(Ring::dropped).sum(),
        busy: BUSY.load(Ordering::Relaxed),
        beyond: BEYOND.load(Ordering::Relaxed),
        cost_tsc: COST.load(Ordering::Relaxed),
    }
}

/// Takes every waiting sample out of the rings, ring by ring (`f(ring index, sample)`, oldest
/// first within a ring); returns how many.
pub fn drain_each(mut f: impl FnMut(usize, Sample)) -> usize {
    set_up();
    let mut consumers = CONSUMERS.lock();
    let mut n = 0;
    for (i, c) in consumers.iter_mut().enumerate() {
        n += c.drain(|s| f(i, s));
    }
    n
}

/// Collected samples: kernel stacks folded by veridian-perf, ring-3 samples counted per
/// process and instruction pointer.
#[derive(Debug, Default)]
pub struct Profile {
    kernel: FoldedStacks,
    /// Per process tag.
    user: BTreeMap<u64, FoldedStacks>,
}

/// Writes through to `out`, starting every line with `prefix`.
struct Prefixed<'a, W: fmt::Write> {
    out: &'a mut W,
    prefix: &'a str,
    line_start: bool,
}

impl<W: fmt::Write> fmt::Write for Prefixed<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for piece in s.split_inclusive('\n') {
            if self.line_start {
                self.out.write_str(self.prefix)?;
            }
            self.out.write_str(piece)?;
            self.line_start = piece.ends_with('\n');
        }
        Ok(())
    }
}

/// The lowest kernel (higher-half) address: samples below it were taken in ring 3.
const HIGHER_HALF: u64 = 0xffff_8000_0000_0000;

impl Profile {
    /// Nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one sample.
    pub fn add(&mut self, s: &Sample) {
        if s.ip >= HIGHER_HALF {
            self.kernel.add(s);
        } else {
            self.user.entry(s.thread).or_default().add(s);
        }
    }

    /// Moves every waiting sample into this profile; returns how many.
    pub fn drain(&mut self) -> usize {
        drain_each(|_, s| self.add(&s))
    }

    /// Samples counted.
    pub fn total(&self) -> u64 {
        self.kernel.total() + self.user.values().map(FoldedStacks::total).sum::<u64>()
    }

    /// Writes the folded stacks, raw addresses, one line per distinct stack: kernel stacks as
    /// `0xroot;...;0xleaf count`, ring-3 stacks as `user:<process tag>;0xroot;...;0xleaf count`
    /// (return addresses minus one, as veridian-perf's folded writer does).
    pub fn write_folded(&self, out: &mut impl fmt::Write) -> fmt::Result {
        self.kernel.write(&HexSymbolizer, out)?;
        for (tag, stacks) in &self.user {
            let prefix = alloc::format!("user:{tag};");
            let mut out = Prefixed {
                out: &mut *out,
                prefix: &prefix,
                line_start: true,
            };
            stacks.write(&HexSymbolizer, &mut out)?;
        }
        Ok(())
    }
}

/// COM2 as a `fmt::Write`.
struct Second;

impl fmt::Write for Second {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        crate::console::write_second(format_args!("{s}"));
        Ok(())
    }
}

/// `mode=profile`: runs `workload` (`bench`, `threads` or `user:<program>`) with the sampler
/// on, then writes the folded stacks to COM2 and a summary to the console. Returns whether the
/// workload ran as asked and samples were collected.
pub fn run(workload: &str) -> bool {
    crate::console::init_second();
    report_pmu();
    let collected = Arc::new(PreemptLock::new("profile::collected", Profile::new()));
    let done = Arc::new(AtomicBool::new(false));
    let Ok(cpus) = veridian_sched::CpuSet::single(0) else {
        crate::println!("profile: no CPU set for the drain thread");
        return false;
    };
    // Discard what an earlier session left.
    drain_each(|_, _| {});
    PROCESSES.lock().clear();
    let before = stats();
    let hz = start();
    let drainer = {
        let (collected, done) = (collected.clone(), done.clone());
        crate::task::spawn(
            "profile-drain",
            cpus,
            veridian_sched::Priority::Normal,
            move || {
                while !done.load(Ordering::Acquire) {
                    collected.lock().drain();
                    crate::task::sleep_ms(DRAIN_MS);
                }
            },
        )
    };
    let source = if PMI_WANTED.load(Ordering::Relaxed) {
        alloc::format!("cycle-counter overflow every {PMI_PERIOD} cycles")
    } else {
        alloc::format!("the APIC timer split {SPLIT}x")
    };
    crate::println!("profile: sampling every CPU at {hz} Hz ({source}), workload {workload}");
    let pmi_before = pmi_samples();
    let ran = run_workload(workload);
    stop();
    if PMI_WANTED.load(Ordering::Relaxed) || pmi_samples() != pmi_before {
        crate::println!(
            "profile: {} samples from PMU overflow",
            pmi_samples() - pmi_before
        );
    }
    done.store(true, Ordering::Release);
    let joined = drainer.is_ok_and(|d| d.join().is_ok());
    let mut profile = collected.lock();
    profile.drain();
    let after = stats();
    let mut out = Second;
    let _ = profile.write_folded(&mut out);
    for (pid, name) in core::mem::take(&mut *PROCESSES.lock()) {
        crate::console::write_second(format_args!("# process {pid} {name}\n"));
    }
    crate::console::write_second(format_args!("{END_MARKER} samples={}\n", profile.total()));
    crate::println!(
        "profile: {} samples collected ({} taken, {} in ring 3, {} kernel samples without a \
         stack, {} dropped (ring full), {} dropped (busy), {} on CPUs past {PROFILED_CPUS}), \
         {} TSC per sample on average (walk and push); folded stacks on COM2",
        profile.total(),
        after.samples - before.samples,
        after.user - before.user,
        after.unwalked - before.unwalked,
        after.dropped - before.dropped,
        after.busy - before.busy,
        after.beyond - before.beyond,
        (after.cost_tsc - before.cost_tsc) / (after.samples - before.samples).max(1),
    );
    ran && joined && profile.total() > 0
}

fn run_workload(workload: &str) -> bool {
    match workload {
        "bench" => crate::bench::run_all(),
        "threads" => crate::kernel::demo_threads(),
        other => match other.strip_prefix("user:") {
            Some(program) => match crate::task::process::spawn_on(program, 0, 0, None) {
                Ok(child) => {
                    let code = child.wait();
                    crate::println!("profile: {program} exited with {code}");
                    code == 0
                }
                Err(e) => {
                    crate::println!("profile: cannot start {program}: {e}");
                    false
                }
            },
            None => {
                crate::println!(
                    "profile: unknown workload {other:?} (expected bench, threads or user:<program>)"
                );
                false
            }
        },
    }
}

/// This CPU's PMU, if it has a usable one: veridian-perf's CPUID decoding and its write/read-back
/// probe of a counter, through MSR accesses that turn a #GP into an error
/// (`probe::FaultSafeMsr`), so an emulator's missing or inert counters give "no PMU: ...".
/// The caller must stay on this CPU while it uses the result (the boot context does).
pub fn detect_pmu() -> Result<Pmu<FaultSafeMsr>, PmuError> {
    // One CPU for the whole detection (the probe writes and reads one CPU's counter).
    let _pinned = percpu::PreemptGuard::new();
    Pmu::new(FaultSafeMsr, &NativeCpuid)
}

/// Prints, once, whether a PMU was detected and that sampling uses the APIC timer.
pub fn report_pmu() {
    static REPORTED: Once<()> = Once::new();
    REPORTED.call_once(|| match detect_pmu() {
        Ok(pmu) => crate::println!(
            "pmu: {:?}, {} general counters of {} bits; the profiler samples on cycle-counter \
             overflow (every {PMI_PERIOD} cycles)",
            pmu.info().layout,
            pmu.info().general_counters,
            pmu.info().general_width
        ),
        Err(e) => crate::println!("pmu: {e}; sampling on the APIC timer"),
    });
}
