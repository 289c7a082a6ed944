//! Local APIC (xAPIC through MMIO, x2APIC through MSRs when the CPU has it) and its timer,
//! calibrated against the PIT.
//!
//! What it does:
//! - [`init`] (bootstrap processor, interrupts off) enables the local APIC: x2APIC mode when
//!   CPUID.1:ECX[21] says the CPU has it, otherwise xAPIC with the registers reached through the
//!   direct map at the base in `IA32_APIC_BASE`; spurious-interrupt vector [`SPURIOUS_VECTOR`]
//!   (counted, never acknowledged, as the SDM requires); task priority 0.
//! - It calibrates the APIC timer (divide by 16) and the TSC against PIT channel 2 over
//!   [`CALIBRATION_MS`] ms (the PIT's 1.193182 MHz crystal is the reference every PC has), then
//!   starts a [`TICK_HZ`] Hz tick on vector [`TIMER_VECTOR`]: in TSC-deadline mode when
//!   CPUID.1:ECX[24] says the CPU has it (each tick re-arms `IA32_TSC_DEADLINE`), otherwise in
//!   periodic mode. The tick handler counts ticks and acknowledges (EOI); it allocates nothing
//!   and takes no lock.
//!
//! What it relies on: the legacy PICs are masked (`mask_legacy_pic`), the IDT is loaded, the
//! direct map covers the xAPIC page (it covers all of 0..4 GiB; MTRRs make that range
//! uncacheable on real machines, so the write-back direct map is not a caching hazard).
//! Under QEMU TCG without `-icount`, the PIT and the APIC timer both follow QEMU's virtual
//! clock, so the calibration is consistent; the TSC follows the host.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Once;
use veridian_perf::arch::rdtsc;
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

use super::idt::{self, InterruptFrame};

/// The tick's vector.
pub const TIMER_VECTOR: u8 = 0x20;
/// The spurious-interrupt vector (low four bits set, as older APICs require).
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// Tick rate.
pub const TICK_HZ: u64 = 100;
/// Calibration window.
pub const CALIBRATION_MS: u64 = 10;

const IA32_APIC_BASE: u32 = 0x1b;
const IA32_TSC_DEADLINE: u32 = 0x6e0;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

// Register offsets (xAPIC MMIO; x2APIC MSR = 0x800 + offset / 16).
const REG_ID: u32 = 0x20;
const REG_TPR: u32 = 0x80;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_LVT_TIMER: u32 = 0x320;
const REG_TIMER_INITIAL: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3e0;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
/// ICR delivery status (xAPIC): the IPI has not been accepted yet.
const ICR_PENDING: u32 = 1 << 12;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_ASSERT: u32 = 1 << 14;

const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
const LVT_TSC_DEADLINE: u32 = 2 << 17;
/// Divide configuration 0b0011: divide by 16.
const DIVIDE_BY_16: u32 = 0b0011;

/// PIT input clock, Hz.
const PIT_HZ: u64 = 1_193_182;

/// How the local APIC is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Memory-mapped registers at this virtual address.
    XApic(u64),
    /// MSRs 0x800..
    X2Apic,
}

/// How the tick is generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// `IA32_TSC_DEADLINE` re-armed on every tick.
    TscDeadline,
    /// The APIC timer's periodic mode.
    Periodic,
}

/// What [`init`] found and set up.
#[derive(Clone, Copy, Debug)]
pub struct ApicInfo {
    /// Register access.
    pub mode: Mode,
    /// This CPU's APIC id.
    pub id: u32,
    /// APIC timer ticks per second at divide-by-16.
    pub timer_hz: u64,
    /// TSC ticks per second.
    pub tsc_hz: u64,
    /// How the tick is generated.
    pub timer_mode: TimerMode,
}

/// Why [`init`] failed.
#[derive(Clone, Copy, Debug)]
pub enum ApicError {
    /// CPUID.1:EDX[9] is clear.
    NoApic,
    /// The xAPIC page is outside the direct map.
    Unmapped(u64),
    /// The PIT calibration measured no APIC timer or TSC progress.
    Calibration,
    /// A vector was already taken.
    Vector(idt::HandlerError),
}

impl core::fmt::Display for ApicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoApic => write!(f, "the CPU reports no local APIC"),
            Self::Unmapped(p) => write!(f, "xAPIC registers at {p:#x} are not in the direct map"),
            Self::Calibration => write!(f, "PIT calibration saw no timer progress"),
            Self::Vector(e) => write!(f, "{e}"),
        }
    }
}

static INFO: Once<ApicInfo> = Once::new();
static TICKS: AtomicU64 = AtomicU64::new(0);
static SPURIOUS: AtomicU64 = AtomicU64::new(0);
/// TSC ticks per timer tick, for TSC-deadline re-arming (0 in periodic mode).
static TSC_PER_TICK: AtomicU64 = AtomicU64::new(0);

// Register access: in xAPIC mode `base` is the direct-map address of this CPU's xAPIC page
// (checked in `init`) and `reg` one of the architectural, 16-byte aligned register offsets; in
// x2APIC mode (enabled in `init`) 0x800 + reg/16 is that register's MSR.
fn read(mode: Mode, reg: u32) -> u32 {
    let xapic_addr = |base: u64| (base + u64::from(reg)) as *const u32;
    match mode {
        Mode::XApic(base) => {
            // SAFETY: an aligned architectural register in the mapped xAPIC page (see above).
            unsafe { core::ptr::read_volatile(xapic_addr(base)) }
        }
        Mode::X2Apic => {
            // SAFETY: the register's MSR in x2APIC mode (see above); reading has no side effect.
            unsafe { Msr::new(0x800 + (reg >> 4)).read() as u32 }
        }
    }
}

fn write(mode: Mode, reg: u32, value: u32) {
    let xapic_addr = |base: u64| (base + u64::from(reg)) as *mut u32;
    match mode {
        Mode::XApic(base) => {
            // SAFETY: as in `read`; callers write the values the SDM defines for the register.
            unsafe { core::ptr::write_volatile(xapic_addr(base), value) }
        }
        Mode::X2Apic => {
            // SAFETY: as in `read`; callers write the values the SDM defines for the register.
            unsafe { Msr::new(0x800 + (reg >> 4)).write(u64::from(value)) }
        }
    }
}

/// Acknowledges the interrupt being handled.
pub fn eoi() {
    if let Some(info) = INFO.get() {
        write(info.mode, REG_EOI, 0);
    }
}

fn tick(frame: &mut InterruptFrame) {
    // The profiler first: it sees the interrupted context before the scheduler may leave it.
    super::sampling::sample(frame);
    let per_tick = TSC_PER_TICK.load(Ordering::Relaxed);
    let split = TICK_SPLIT.load(Ordering::Relaxed).max(1);
    if per_tick != 0 {
        // SAFETY: TSC-deadline mode is on (per_tick is only set then); this arms the next
        // interrupt.
        unsafe { Msr::new(IA32_TSC_DEADLINE).write(rdtsc() + (per_tick / split).max(1)) };
    }
    // With the tick split, only every `split`-th interrupt of a CPU is a scheduler tick.
    let is_tick = match super::percpu::current() {
        Some(cpu) => {
            // Periodic mode: this CPU reloads its own count when the split changed.
            if per_tick == 0
                && cpu.timer_split.swap(split, Ordering::Relaxed) != split
                && let Some(info) = INFO.get()
            {
                write(info.mode, REG_TIMER_INITIAL, periodic_count(info, split));
            }
            cpu.timer_interrupts.fetch_add(1, Ordering::Relaxed) % split == split - 1
        }
        None => true,
    };
    // Acknowledge before the scheduler runs: it may switch to another thread here, and this
    // thread may resume on another CPU.
    eoi();
    if is_tick {
        TICKS.fetch_add(1, Ordering::Relaxed);
        if let Some(cpu) = super::percpu::current() {
            cpu.ticks.fetch_add(1, Ordering::Relaxed);
        }
        super::hooks::tick();
    }
    // Back to ring 3 from here: the process layer may end the process instead (a kill).
    if frame.cs & 3 == 3 {
        super::hooks::user_interrupted();
    }
}

/// The periodic timer's initial count for `split` interrupts per tick.
fn periodic_count(info: &ApicInfo, split: u64) -> u32 {
    (info.timer_hz / TICK_HZ / split).clamp(1, u64::from(u32::MAX)) as u32
}

/// Timer interrupts per scheduler tick ([`split_tick`]).
static TICK_SPLIT: AtomicU64 = AtomicU64::new(1);

/// Makes the timer interrupt `parts` times per scheduler tick on every CPU (from each CPU's
/// next interrupt on), so that the profiler, which samples on every timer interrupt, samples at
/// `TICK_HZ * parts` Hz while the scheduler still ticks at [`TICK_HZ`]; `1` undoes it. In
/// TSC-deadline mode each interrupt arms the next deadline with the new period; in periodic
/// mode each CPU reloads its initial count at its next interrupt. Returns the interrupt rate in
/// Hz asked for (`TICK_HZ` without a timer).
pub fn split_tick(parts: u64) -> u64 {
    if INFO.get().is_none() {
        return TICK_HZ;
    }
    let parts = parts.clamp(1, 1000);
    TICK_SPLIT.store(parts, Ordering::Relaxed);
    TICK_HZ * parts
}

/// The local APIC's LVT performance-counter entry.
const REG_LVT_PMC: u32 = 0x340;
/// Vector of the performance-monitoring interrupt (a counter armed for sampling overflowed).
pub const PMI_VECTOR: u8 = 0x23;

/// Routes this CPU's performance-monitoring interrupt to [`PMI_VECTOR`] (fixed delivery); the
/// handler passes it to `sampling`'s PMU hook. False before the local APIC is up or when the
/// vector is taken by something else.
pub fn route_pmi() -> bool {
    static INSTALLED: spin::Once<bool> = spin::Once::new();
    let Some(info) = INFO.get() else {
        return false;
    };
    if !*INSTALLED.call_once(|| idt::set_handler(PMI_VECTOR, pmi).is_ok()) {
        return false;
    }
    write(info.mode, REG_LVT_PMC, u32::from(PMI_VECTOR));
    true
}

fn pmi(frame: &mut InterruptFrame) {
    super::sampling::sample_pmi(frame);
    // The CPU masks the entry when it delivers a PMI: unmask it for the next one.
    if let Some(info) = INFO.get() {
        write(info.mode, REG_LVT_PMC, u32::from(PMI_VECTOR));
    }
    eoi();
}

fn spurious(_frame: &mut InterruptFrame) {
    // No EOI for spurious interrupts (SDM vol. 3, 11.9).
    SPURIOUS.fetch_add(1, Ordering::Relaxed);
}

/// Ticks since the timer started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// This CPU's timer ticks (its per-CPU `ticks`): one `gs`-relative load, for the scheduler's
/// clock on every pick.
#[inline(always)]
pub fn local_ticks() -> u64 {
    let ticks: u64;
    // SAFETY: GS points at this CPU's installed per-CPU block from the first instruction that
    // can ask (`percpu::current`); `ticks` is an aligned `AtomicU64`, so the one load reads a
    // whole value (a relaxed read), and it has no side effects.
    unsafe {
        core::arch::asm!(
            "mov {}, gs:[{off}]",
            out(reg) ticks,
            off = const core::mem::offset_of!(super::percpu::PerCpu, ticks),
            options(nostack, readonly, preserves_flags),
        );
    }
    ticks
}

/// Spurious interrupts seen.
pub fn spurious_count() -> u64 {
    SPURIOUS.load(Ordering::Relaxed)
}

/// What [`init`] set up, if it ran and succeeded.
pub fn info() -> Option<ApicInfo> {
    INFO.get().copied()
}

/// Sends an inter-processor interrupt with ICR low word `low` to APIC id `dest`, waiting
/// (bounded) for the xAPIC to accept it.
fn send_ipi(dest: u32, low: u32) {
    let Some(info) = INFO.get() else {
        return;
    };
    match info.mode {
        Mode::X2Apic => {
            // In x2APIC mode the ICR is one 64-bit MSR (0x830), destination in the high half.
            // SAFETY: x2APIC mode is on; writing the ICR sends the IPI and nothing else.
            unsafe { Msr::new(0x830).write((u64::from(dest) << 32) | u64::from(low)) };
        }
        Mode::XApic(_) => {
            write(info.mode, REG_ICR_HIGH, dest << 24);
            write(info.mode, REG_ICR_LOW, low);
            let t0 = rdtsc();
            while read(info.mode, REG_ICR_LOW) & ICR_PENDING != 0 && rdtsc() - t0 < 1 << 30 {
                core::hint::spin_loop();
            }
        }
    }
}

/// The vector of the "reschedule" IPI: wakes a halted CPU so it looks at its run queues.
pub const RESCHEDULE_VECTOR: u8 = 0x21;

fn reschedule(_frame: &mut InterruptFrame) {
    // Waking the CPU from `hlt` is all it takes: its idle loop looks at the queues next.
    eoi();
}

/// Sends the reschedule IPI (fixed delivery) to APIC id `dest`.
pub fn send_reschedule(dest: u32) {
    send_fixed(dest, RESCHEDULE_VECTOR);
}

/// Sends an IPI with `vector` (fixed delivery) to APIC id `dest`.
pub fn send_fixed(dest: u32, vector: u8) {
    send_ipi(dest, ICR_ASSERT | u32::from(vector));
}

/// Sends INIT (assert, edge) to APIC id `dest`.
pub fn send_init(dest: u32) {
    send_ipi(dest, ICR_INIT | ICR_ASSERT);
}

/// Sends STARTUP with `vector` (the trampoline's page number) to APIC id `dest`.
pub fn send_startup(dest: u32, vector: u8) {
    send_ipi(dest, ICR_STARTUP | ICR_ASSERT | u32::from(vector));
}

/// Enables an application processor's local APIC in the bootstrap processor's mode and starts
/// its tick with the bootstrap processor's calibration (the timers of one machine share their
/// clock).
pub fn init_ap() -> Result<(), ApicError> {
    let info = INFO.get().ok_or(ApicError::NoApic)?;
    let mut base_msr = Msr::new(IA32_APIC_BASE);
    // IA32_APIC_BASE exists: this CPU has an APIC (the firmware listed it in the MADT, and the
    // bootstrap processor's checks passed on the same machine).
    // SAFETY: setting the enable bit (and the x2APIC one, as on the BSP) keeps the base.
    unsafe {
        let base = base_msr.read();
        let bits = match info.mode {
            Mode::X2Apic => APIC_BASE_ENABLE | APIC_BASE_X2APIC,
            Mode::XApic(_) => APIC_BASE_ENABLE,
        };
        base_msr.write(base | bits);
    }
    write(info.mode, REG_TPR, 0);
    write(info.mode, REG_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    start_timer(info);
    Ok(())
}

/// Starts this CPU's tick per `info`.
fn start_timer(info: &ApicInfo) {
    let mode = info.mode;
    match info.timer_mode {
        TimerMode::TscDeadline => {
            let per_tick = (info.tsc_hz / TICK_HZ).max(1);
            TSC_PER_TICK.store(per_tick, Ordering::Relaxed);
            write(
                mode,
                REG_LVT_TIMER,
                u32::from(TIMER_VECTOR) | LVT_TSC_DEADLINE,
            );
            // SDM 11.5.4.1: a write to the LVT must be ordered before the deadline write.
            core::sync::atomic::fence(Ordering::SeqCst);
            // SAFETY: TSC-deadline mode was just selected; arming the first deadline.
            unsafe { Msr::new(IA32_TSC_DEADLINE).write(rdtsc() + per_tick) };
        }
        TimerMode::Periodic => {
            write(mode, REG_TIMER_DIVIDE, DIVIDE_BY_16);
            write(mode, REG_LVT_TIMER, u32::from(TIMER_VECTOR) | LVT_PERIODIC);
            let split = TICK_SPLIT.load(Ordering::Relaxed).max(1);
            if let Some(cpu) = super::percpu::current() {
                cpu.timer_split.store(split, Ordering::Relaxed);
            }
            write(mode, REG_TIMER_INITIAL, periodic_count(info, split));
        }
    }
}

/// Runs PIT channel 2 once for `ms` milliseconds (mode 0, gate from port 0x61) and returns the
/// APIC timer and TSC progress over that window.
fn calibrate(mode: Mode, ms: u64) -> (u64, u64) {
    let count = (PIT_HZ * ms / 1000) as u16;
    let mut ctrl = Port::<u8>::new(0x61);
    let mut cmd = Port::<u8>::new(0x43);
    let mut ch2 = Port::<u8>::new(0x42);
    // Ports 0x61 (gate/speaker), 0x43 (PIT command) and 0x42 (channel 2 data) are the PC's PIT;
    // channel 2 drives only the speaker, which stays off (bit 1 clear).
    // SAFETY: nothing else in this kernel uses PIT channel 2 or the speaker gate.
    unsafe {
        let gate = ctrl.read();
        ctrl.write((gate & !0b10) & !0b1); // gate low, speaker off
        cmd.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        ch2.write(count as u8);
        ch2.write((count >> 8) as u8);
        write(mode, REG_TIMER_DIVIDE, DIVIDE_BY_16);
        write(mode, REG_LVT_TIMER, LVT_MASKED);
        write(mode, REG_TIMER_INITIAL, u32::MAX);
        let tsc0 = rdtsc();
        ctrl.write((gate & !0b10) | 0b1); // gate high: counting starts
        // OUT2 (bit 5) goes high when the count reaches zero. Bound the wait so a missing PIT
        // cannot hang the boot: 2^32 TSC ticks is over a second on any machine.
        while ctrl.read() & 0x20 == 0 && rdtsc() - tsc0 < 1 << 32 {
            core::hint::spin_loop();
        }
        let tsc1 = rdtsc();
        let apic_left = read(mode, REG_TIMER_CURRENT);
        write(mode, REG_TIMER_INITIAL, 0);
        ctrl.write(gate & !0b1);
        (u64::from(u32::MAX - apic_left), tsc1 - tsc0)
    }
}

/// Enables this CPU's local APIC, calibrates its timer and starts the tick (see the module
/// documentation). Bootstrap processor, interrupts disabled; call once.
pub fn init() -> Result<ApicInfo, ApicError> {
    if let Some(info) = INFO.get() {
        return Ok(*info);
    }
    let cpuid = raw_cpuid::CpuId::new();
    let features = cpuid.get_feature_info().ok_or(ApicError::NoApic)?;
    if !features.has_apic() {
        return Err(ApicError::NoApic);
    }
    let mut base_msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (checked above).
    let base = unsafe { base_msr.read() };
    let mode = if features.has_x2apic() {
        // SAFETY: the CPU has x2APIC (checked); both bits set is the architectural way in.
        unsafe { base_msr.write(base | APIC_BASE_ENABLE | APIC_BASE_X2APIC) };
        Mode::X2Apic
    } else {
        let phys = base & 0x000f_ffff_ffff_f000;
        let virt = super::layout::phys_to_virt(phys, 4096).ok_or(ApicError::Unmapped(phys))?;
        // SAFETY: setting the global enable bit, keeping the base, enables the xAPIC.
        unsafe { base_msr.write(base | APIC_BASE_ENABLE) };
        Mode::XApic(virt)
    };
    idt::set_handler(SPURIOUS_VECTOR, spurious).map_err(ApicError::Vector)?;
    idt::set_handler(TIMER_VECTOR, tick).map_err(ApicError::Vector)?;
    idt::set_handler(RESCHEDULE_VECTOR, reschedule).map_err(ApicError::Vector)?;
    write(mode, REG_TPR, 0);
    write(mode, REG_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    let id = match mode {
        Mode::X2Apic => read(mode, REG_ID),
        Mode::XApic(_) => read(mode, REG_ID) >> 24,
    };

    let (apic_ticks, tsc_ticks) = calibrate(mode, CALIBRATION_MS);
    if apic_ticks == 0 || tsc_ticks == 0 {
        return Err(ApicError::Calibration);
    }
    let timer_hz = apic_ticks * 1000 / CALIBRATION_MS;
    let tsc_hz = tsc_ticks * 1000 / CALIBRATION_MS;
    let timer_mode = if features.has_tsc_deadline() {
        TimerMode::TscDeadline
    } else {
        TimerMode::Periodic
    };
    let info = *INFO.call_once(|| ApicInfo {
        mode,
        id,
        timer_hz,
        tsc_hz,
        timer_mode,
    });
    start_timer(&info);
    Ok(info)
}
