//! Kernel threads on veridian-sched's per-CPU run queues.
//!
//! What it does:
//! - [`init`] builds a [`Topology`] from the CPUs that came online (their NUMA nodes and the
//!   ACPI distances) and one [`NumaScheduler`] for the machine.
//! - [`spawn`] creates a thread (its own kernel stack with a guard page, from the stack region
//!   of `mm::paging`, reused after exit), places it with the scheduler (least-loaded allowed
//!   node, then CPU) and queues it. [`JoinHandle::join`] waits for it and reports a panic or a
//!   fatal exception inside it: a faulting kernel thread is killed, not the kernel.
//! - Every CPU has a *scheduler context*: the application processors' boot stacks (in
//!   [`ap_idle`]) and, on the bootstrap processor, whatever calls [`run_until`]. It picks a
//!   thread, switches to it with veridian-sched's `switch_stacks`, and when the thread switches
//!   back, requeues it (yield, preemption), forgets it (blocked: a wait list holds it) or
//!   finishes it (exit). Idle CPUs halt until the next interrupt.
//! - Preemption: the local APIC tick calls [`on_tick`]; when the running thread's slice is
//!   used up (or a higher priority is queued) the thread switches out from inside the interrupt
//!   handler and resumes there later. Sleepers whose deadline passed are woken on every tick.
//! - Vector state: switched lazily. Entering a thread sets `CR0.TS`; the thread's first SSE/AVX
//!   instruction raises #NM, whose handler ([`fpu_trap`]) clears TS and restores the thread's
//!   XSAVE area (allocating it, in the initial state, the first time). A thread that used the
//!   vector registers in its slice has them saved with XSAVE when it switches out. Threads that
//!   never touch them cost nothing.
//!
//! Locking and interrupts: every scheduler operation runs with interrupts disabled on the
//! calling CPU (the [`CpuGuard`] of veridian-sched is [`SchedGuard`], made only then), so a
//! CPU's queues have one user at a time. A thread picked by one CPU may still be switching out
//! on another (it was woken before it finished blocking): `on_cpu` is cleared by the old CPU
//! after the switch (`Release`) and the new CPU waits for that (`Acquire`) before switching in.
//!
//! Wake-ups: a thread queued on another CPU that is not running a thread gets that CPU a
//! reschedule IPI (it may be halted). Not done yet: priority inheritance, thread-local storage.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use reference_kernel::acpi::Platform;
use spin::{Mutex, Once};
use veridian_sched::arch::x86_64::{prepare_stack, switch_stacks};
use veridian_sched::{
    Clock, CpuGuard, CpuSet, CpuStats, NumaScheduler, Priority, SchedConfig, Task, Topology,
    TopologyBuilder,
};
use x86_64::instructions::interrupts;

use crate::arch::x86_64::percpu::{self, MAX_CPUS};
use crate::mm::paging;

/// Pages of each thread's kernel stack (plus a guard page below).
pub const THREAD_STACK_PAGES: usize = 8;
/// Time slice in timer ticks (10 ms each).
pub const SLICE_TICKS: u64 = 2;

const REASON_YIELD: u8 = 0;
const REASON_BLOCK: u8 = 1;
const REASON_EXIT: u8 = 2;

/// How a thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadError {
    /// It panicked; the message.
    Panicked(String),
    /// It took a fatal CPU exception; the report.
    Faulted(String),
}

impl core::fmt::Display for ThreadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Panicked(m) => write!(f, "panicked: {m}"),
            Self::Faulted(m) => write!(f, "killed by {m}"),
        }
    }
}

/// Why [`spawn`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// [`init`] has not run.
    NotReady,
    /// No memory for the thread's stack.
    NoStack,
    /// The affinity allows no online CPU.
    NoAllowedCpu,
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotReady => write!(f, "the scheduler is not initialised"),
            Self::NoStack => write!(f, "no memory for a kernel stack"),
            Self::NoAllowedCpu => write!(f, "the affinity allows no online CPU"),
        }
    }
}

/// A kernel thread.
pub struct Thread {
    id: u64,
    name: &'static str,
    affinity: CpuSet,
    priority: Priority,
    /// Saved stack pointer while the thread is not running; written by `switch_stacks` on the
    /// CPU it ran on, read by the CPU that picks it next (ordered by `on_cpu` and the queues).
    rsp: UnsafeCell<usize>,
    stack_top: u64,
    entry: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Set while a CPU runs the thread or is still switching away from it.
    on_cpu: AtomicBool,
    /// Why it last switched to the scheduler context.
    reason: AtomicU8,
    exited: AtomicBool,
    outcome: Mutex<Option<Result<(), ThreadError>>>,
    joiners: Mutex<Vec<Arc<Thread>>>,
    /// Bit `i` set: ran on CPU `i` (CPUs below 64).
    ran_on: AtomicU64,
    /// Times it was switched to.
    runs: AtomicU64,
    /// XSAVE (or FXSAVE) area, allocated on first use of the vector registers.
    fpu: UnsafeCell<Option<FpuArea>>,
    /// The thread used the vector registers since it was last switched in.
    fpu_live: AtomicBool,
}

// SAFETY: the `UnsafeCell` fields are only touched by the CPU that runs the thread or is
// switching it in or out (`rsp`, `fpu`), which `on_cpu` makes exclusive (see the module
// documentation); everything else is atomic or behind a lock.
unsafe impl Sync for Thread {}
// SAFETY: as above; the entry closure is `Send`.
unsafe impl Send for Thread {}

impl Task for Thread {
    fn affinity(&self) -> &CpuSet {
        &self.affinity
    }
    fn priority(&self) -> Priority {
        self.priority
    }
}

impl Thread {
    /// The thread's id (unique, from 1).
    pub fn id(&self) -> u64 {
        self.id
    }
    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// The CPUs (below 64) it ran on, as a bit mask.
    pub fn ran_on(&self) -> u64 {
        self.ran_on.load(Ordering::Relaxed)
    }
    /// How many times it was switched to.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
}

/// Waits for a thread.
pub struct JoinHandle {
    thread: Arc<Thread>,
}

impl JoinHandle {
    /// The thread.
    pub fn thread(&self) -> &Thread {
        &self.thread
    }

    /// Waits until the thread ends; `Err` if it panicked or faulted. From a thread it blocks;
    /// from the bootstrap processor's boot context it runs threads until then. Joining again
    /// returns the same outcome at once.
    pub fn join(&self) -> Result<(), ThreadError> {
        let target = &self.thread;
        if current().is_some() {
            interrupts::disable();
            let mut joiners = target.joiners.lock();
            if !target.exited.load(Ordering::Acquire) {
                joiners.push(current_arc().expect("in a thread"));
                drop(joiners);
                switch_out(REASON_BLOCK);
            } else {
                drop(joiners);
            }
            interrupts::enable();
        } else {
            run_until(|| target.exited.load(Ordering::Acquire));
        }
        target
            .outcome
            .lock()
            .clone()
            .unwrap_or(Err(ThreadError::Faulted("no outcome recorded".into())))
    }
}

/// XSAVE/FXSAVE area, 64-byte aligned.
struct FpuArea {
    ptr: *mut u8,
    layout: core::alloc::Layout,
}

impl Drop for FpuArea {
    fn drop(&mut self) {
        // SAFETY: allocated in `FpuArea::new` with this layout.
        unsafe { alloc::alloc::dealloc(self.ptr, self.layout) };
    }
}

/// How the vector state is saved: XSAVE with the enabled components, or FXSAVE.
#[derive(Clone, Copy)]
struct FpuMode {
    xsave: bool,
    size: usize,
    mask: u64,
}

static FPU_MODE: Once<FpuMode> = Once::new();

fn fpu_mode() -> FpuMode {
    *FPU_MODE.call_once(|| {
        let cpuid = raw_cpuid::CpuId::new();
        let xsave = cpuid.get_feature_info().is_some_and(|f| f.has_xsave())
            && x86_64::registers::control::Cr4::read()
                .contains(x86_64::registers::control::Cr4Flags::OSXSAVE);
        if xsave {
            // SAFETY: CR4.OSXSAVE is set (checked), so `xgetbv` with ECX = 0 is allowed.
            let xcr0 = unsafe { core::arch::x86_64::_xgetbv(0) };
            let size = cpuid
                .get_extended_state_info()
                .map_or(4096, |s| s.xsave_area_size_enabled_features() as usize);
            FpuMode {
                xsave: true,
                size: size.max(576),
                mask: xcr0,
            }
        } else {
            FpuMode {
                xsave: false,
                size: 512,
                mask: 0,
            }
        }
    })
}

impl FpuArea {
    fn new() -> Option<Self> {
        let layout = core::alloc::Layout::from_size_align(fpu_mode().size, 64).ok()?;
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return None;
        }
        // The legacy region's x87 control word (offset 0) and MXCSR (offset 24) get their
        // reset values (all exceptions masked); everything else zero. With XSAVE, XSTATE_BV = 0
        // puts the registers in their initial state, but MXCSR is still loaded from the area.
        // SAFETY: the area is at least 512 bytes, freshly allocated, ours.
        unsafe {
            ptr.cast::<u16>().write(0x037f);
            ptr.add(24).cast::<u32>().write(0x1f80);
        }
        Some(Self { ptr, layout })
    }

    /// Saves the vector registers here.
    fn save(&self) {
        clear_ts();
        // SAFETY: the area is 64-byte aligned and as large as the CPU's save area for the
        // enabled components (CPUID leaf 0xD); TS was just cleared.
        unsafe { save_to(self.ptr) };
    }

    /// Loads the vector registers from here (a fresh area loads the initial state).
    fn restore(&self) {
        clear_ts();
        // SAFETY: as in `save`; the area holds what `new` wrote (initial state) or what `save`
        // wrote.
        unsafe { restore_from(self.ptr) };
    }
}

/// Set once the vector state is enabled on the bootstrap processor (`vector_state_ready`);
/// until then interrupt entry saves nothing (nothing uses the vector registers yet).
static VECTOR_SAVE_READY: AtomicBool = AtomicBool::new(false);

/// Fixes how vector state is saved (XSAVE with the XCR0 components, or FXSAVE), after
/// `cpu::enable_vector_state` on the bootstrap processor and before anything else runs.
pub fn vector_state_ready() {
    let mode = fpu_mode();
    if mode.size <= SAVE_AREA {
        VECTOR_SAVE_READY.store(true, Ordering::Release);
    } else {
        log::warn!(
            "vector state of {} bytes exceeds the interrupt save area; interrupt handlers must \
             not use vector registers",
            mode.size
        );
    }
}

/// Bytes of the on-stack save area of [`VectorSave`].
const SAVE_AREA: usize = 4096;

#[repr(C, align(64))]
struct SaveArea(core::mem::MaybeUninit<[u8; SAVE_AREA]>);

/// Keeps the interrupted context's vector registers across an interrupt or exception handler,
/// which may itself use them (the kernel's `memcpy` is veridian-simd's AVX2/AVX-512 code).
///
/// Entry clears CR0.TS and saves the registers with XSAVE (or FXSAVE) into an area on the
/// interrupted stack; exit restores them and puts TS back. The area travels with the stack, so
/// a thread preempted inside the timer handler gets its registers back from it when it resumes
/// there, on whatever CPU. If TS was clear at entry (the running thread's registers were live),
/// exit marks the thread's registers live again so its next switch-out saves them.
pub struct VectorSave {
    area: SaveArea,
    ts_was_set: bool,
    active: bool,
}

impl VectorSave {
    /// Saves the vector registers (a no-op before [`vector_state_ready`]). Not for #NM, whose
    /// handler hands the registers to the running thread.
    #[inline]
    pub fn enter() -> Self {
        let mut save = Self {
            area: SaveArea(core::mem::MaybeUninit::uninit()),
            ts_was_set: false,
            active: VECTOR_SAVE_READY.load(Ordering::Acquire),
        };
        if save.active {
            save.ts_was_set = x86_64::registers::control::Cr0::read()
                .contains(x86_64::registers::control::Cr0Flags::TASK_SWITCHED);
            clear_ts();
            let ptr = save.area.0.as_mut_ptr().cast::<u8>();
            // SAFETY: TS is clear; the area is 64-byte aligned and `SAVE_AREA` bytes, at least
            // the save-area size (checked by `vector_state_ready`); XSAVE/FXSAVE write only it.
            // XSAVE leaves the XSAVE header's XCOMP_BV and reserved bytes (512..576) as they
            // were, and XRSTOR faults unless they are zero: zero them first.
            unsafe {
                core::ptr::write_bytes(ptr.add(512), 0, 64);
                save_to(ptr);
            }
        }
        save
    }
}

impl Drop for VectorSave {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        clear_ts();
        let ptr = self.area.0.as_ptr().cast::<u8>();
        // SAFETY: the area was filled by `save_to` in `enter` (same mode), TS is clear.
        unsafe { restore_from(ptr) };
        if self.ts_was_set {
            set_ts();
        } else if let Some(t) = current() {
            t.fpu_live.store(true, Ordering::Relaxed);
        }
    }
}

/// XSAVE/FXSAVE of the current registers into `ptr`.
///
/// # Safety
/// `ptr` is 64-byte aligned, writable for the save-area size; CR0.TS is clear.
unsafe fn save_to(ptr: *mut u8) {
    let mode = fpu_mode();
    // SAFETY: the caller's contract.
    unsafe {
        if mode.xsave {
            core::arch::asm!("xsave64 [{}]", in(reg) ptr, in("eax") mode.mask as u32,
                in("edx") (mode.mask >> 32) as u32, options(nostack));
        } else {
            core::arch::asm!("fxsave64 [{}]", in(reg) ptr, options(nostack));
        }
    }
}

/// XRSTOR/FXRSTOR from `ptr`.
///
/// # Safety
/// `ptr` holds a valid save area of the current mode (written by `save_to`, or zeroed: the
/// initial state), 64-byte aligned; CR0.TS is clear.
unsafe fn restore_from(ptr: *const u8) {
    let mode = fpu_mode();
    // SAFETY: the caller's contract.
    unsafe {
        if mode.xsave {
            core::arch::asm!("xrstor64 [{}]", in(reg) ptr, in("eax") mode.mask as u32,
                in("edx") (mode.mask >> 32) as u32, options(nostack));
        } else {
            core::arch::asm!("fxrstor64 [{}]", in(reg) ptr, options(nostack));
        }
    }
}

fn set_ts() {
    // SAFETY: setting CR0.TS only makes the next x87/SSE/AVX instruction raise #NM, which
    // `fpu_trap` handles.
    unsafe {
        x86_64::registers::control::Cr0::update(|f| {
            f.insert(x86_64::registers::control::Cr0Flags::TASK_SWITCHED)
        })
    };
}

fn clear_ts() {
    // SAFETY: `clts` only clears CR0.TS.
    unsafe { core::arch::asm!("clts", options(nostack, nomem)) };
}

/// The #NM (device not available) handler: gives the running thread its vector state. Returns
/// false when #NM is not the lazy-switch trap (no thread, or no memory for its area).
pub fn fpu_trap() -> bool {
    clear_ts();
    let Some(t) = current() else {
        // The scheduler context or the boot context used a vector instruction: they keep no
        // vector state across switches (all vector registers are caller-saved around the
        // switch call), so clearing TS is enough.
        return true;
    };
    // SAFETY: `fpu` is only touched by the CPU running the thread (this one, interrupts off).
    let area = unsafe { &mut *t.fpu.get() };
    if area.is_none() {
        *area = FpuArea::new();
    }
    match area {
        Some(a) => {
            a.restore();
            t.fpu_live.store(true, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

/// veridian-sched's CPU guard: made only with interrupts disabled, for the CPU it runs on.
pub struct SchedGuard(usize);

impl SchedGuard {
    fn new() -> Self {
        debug_assert!(!interrupts::are_enabled());
        Self(percpu::cpu_index())
    }
}

// SAFETY: a guard exists only while interrupts are disabled on its CPU (see `new`), so no
// interrupt handler and no other thread uses the same CPU's queues meanwhile; it names the CPU
// it was made on and is not `Send` (it holds no `Send` promise: a plain usize wrapper used
// only locally with interrupts off).
unsafe impl CpuGuard for SchedGuard {
    fn cpu(&self) -> usize {
        self.0
    }
}

/// Time slices in this CPU's timer ticks.
pub struct TickClock;

impl Clock for TickClock {
    fn now(&self) -> u64 {
        percpu::current().map_or(0, |c| c.ticks.load(Ordering::Relaxed))
    }
}

type Sched = NumaScheduler<Arc<Thread>, TickClock>;

static SCHED: Once<Sched> = Once::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static STACKS: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static SLEEPERS: Mutex<Vec<(u64, Arc<Thread>)>> = Mutex::new(Vec::new());

/// Builds the topology from the online CPUs and starts the scheduler. Once, on the bootstrap
/// processor, after the application processors are up.
pub fn init(platform: Option<&Platform>) -> Result<(), veridian_sched::TopologyError> {
    let online = percpu::online() as usize;
    let nodes = platform.map_or(1, |p| p.node_count().max(1));
    let mut builder = TopologyBuilder::new(nodes);
    for i in 0..online.min(MAX_CPUS) {
        let node = percpu::cpu(i).map_or(0, |c| c.node as usize);
        builder.cpu(i, node.min(nodes - 1));
    }
    if let Some(p) = platform {
        for a in 0..nodes {
            for b in 0..nodes {
                if a != b {
                    builder.distance(a, b, p.distance(a, b).unwrap_or(20));
                }
            }
        }
    }
    let topology: Topology = builder.build()?;
    let config = SchedConfig {
        slice_ticks: [SLICE_TICKS; 3],
        ..SchedConfig::default()
    };
    SCHED.call_once(|| NumaScheduler::new(topology, TickClock, config));
    Ok(())
}

/// The scheduler (after [`init`]).
pub fn scheduler() -> Option<&'static Sched> {
    SCHED.get()
}

/// Per-CPU scheduling counters.
pub fn stats(cpu: usize) -> Option<CpuStats> {
    SCHED.get().map(|s| s.stats(cpu))
}

/// The running thread, if the caller is one.
pub fn current() -> Option<&'static Thread> {
    let ptr = percpu::current()?.current.load(Ordering::Relaxed);
    // SAFETY: a non-null `current` is a strong reference (from `Arc::into_raw`) the scheduler
    // context holds while the thread runs on this CPU, i.e. for as long as this caller, which
    // is that thread, can use it.
    (!ptr.is_null()).then(|| unsafe { &*(ptr as *const Thread) })
}

fn current_arc() -> Option<Arc<Thread>> {
    let ptr = percpu::current()?.current.load(Ordering::Relaxed) as *const Thread;
    if ptr.is_null() {
        return None;
    }
    // SAFETY: as in `current`; the count is incremented before making a second `Arc`.
    unsafe {
        Arc::increment_strong_count(ptr);
        Some(Arc::from_raw(ptr))
    }
}

/// Creates a thread running `f` and queues it where [`NumaScheduler::assign_thread`] says.
pub fn spawn(
    name: &'static str,
    affinity: CpuSet,
    priority: Priority,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle, SpawnError> {
    let sched = SCHED.get().ok_or(SpawnError::NotReady)?;
    let stack_top = match STACKS.lock().pop() {
        Some(top) => top,
        None => paging::alloc_kernel_stack(THREAD_STACK_PAGES).map_err(|_| SpawnError::NoStack)?,
    };
    let thread = Arc::new(Thread {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        name,
        affinity,
        priority,
        rsp: UnsafeCell::new(0),
        stack_top,
        entry: Mutex::new(Some(Box::new(f))),
        on_cpu: AtomicBool::new(false),
        reason: AtomicU8::new(REASON_YIELD),
        exited: AtomicBool::new(false),
        outcome: Mutex::new(None),
        joiners: Mutex::new(Vec::new()),
        ran_on: AtomicU64::new(0),
        runs: AtomicU64::new(0),
        fpu: UnsafeCell::new(None),
        fpu_live: AtomicBool::new(false),
    });
    let bottom = (stack_top - THREAD_STACK_PAGES as u64 * 4096) as *mut u8;
    // SAFETY: `bottom..stack_top` is this thread's stack (mapped writable, ours alone: fresh
    // or returned by an exited thread); `thread_main` takes the thread pointer, which stays
    // valid because the scheduler context holds a strong reference while the thread runs.
    let rsp = unsafe {
        prepare_stack(
            bottom,
            stack_top as *mut u8,
            thread_main,
            Arc::as_ptr(&thread) as usize,
        )
    }
    .ok_or(SpawnError::NoStack)?;
    // SAFETY: the thread is not queued yet; nobody else sees `rsp`.
    unsafe { *thread.rsp.get() = rsp };
    let handle = JoinHandle {
        thread: thread.clone(),
    };
    let result = interrupts::without_interrupts(|| {
        let guard = SchedGuard::new();
        let local = sched.local(&guard).map_err(|_| SpawnError::NotReady)?;
        local
            .spawn(thread)
            .map(|p| kick(p.cpu))
            .map_err(|_| SpawnError::NoAllowedCpu)
    });
    result.map(|()| handle)
}

/// Wakes CPU `cpu` with a reschedule IPI if it is not the caller's (it may be halted).
fn kick(cpu: usize) {
    if cpu != percpu::cpu_index()
        && let Some(block) = percpu::cpu(cpu)
        && block.current.load(Ordering::Relaxed).is_null()
    {
        crate::arch::x86_64::apic::send_reschedule(block.apic_id);
    }
}

/// The first code of every thread.
extern "C" fn thread_main(arg: usize) -> ! {
    // SAFETY: `arg` is the thread's `Arc` pointer; the scheduler context holds a strong
    // reference while the thread runs (see `spawn`).
    let t = unsafe { &*(arg as *const Thread) };
    interrupts::enable();
    let f = t.entry.lock().take();
    if let Some(f) = f {
        f();
    }
    finish(Ok(()))
}

/// Ends the running thread with `outcome`; never returns.
fn finish(outcome: Result<(), ThreadError>) -> ! {
    if let Some(t) = current() {
        *t.outcome.lock() = Some(outcome);
    }
    switch_out(REASON_EXIT);
    unreachable!("an exited thread was resumed");
}

/// Ends the running thread because it panicked (called by the panic handler). Returns only if
/// the caller is not a thread.
pub fn exit_panicked(message: &str) {
    if let Some(t) = current() {
        let mut s = String::new();
        let _ = write!(s, "thread {} `{}`: {message}", t.id(), t.name());
        finish(Err(ThreadError::Panicked(s)));
    }
}

/// Ends the running thread because of a fatal CPU exception. Returns only if the caller is not
/// a thread.
pub fn exit_faulted(report: core::fmt::Arguments<'_>) {
    if let Some(t) = current() {
        let mut s = String::new();
        let _ = write!(s, "thread {} `{}`: ", t.id(), t.name());
        let _ = s.write_fmt(report);
        finish(Err(ThreadError::Faulted(s)));
    }
}

/// Gives up the CPU; the thread stays runnable.
pub fn yield_now() {
    if current().is_some() {
        switch_out(REASON_YIELD);
    }
}

/// Sleeps at least `ms` milliseconds (a thread blocks; the boot context runs threads).
pub fn sleep_ms(ms: u64) {
    let hz = crate::arch::x86_64::apic::info().map_or(1_000_000_000, |i| i.tsc_hz);
    let deadline = veridian_perf::arch::rdtsc() + hz / 1000 * ms;
    if current().is_some() {
        interrupts::disable();
        SLEEPERS
            .lock()
            .push((deadline, current_arc().expect("in a thread")));
        switch_out(REASON_BLOCK);
        interrupts::enable();
    } else {
        run_until(|| veridian_perf::arch::rdtsc() >= deadline);
    }
}

/// Switches from the running thread to this CPU's scheduler context, which handles `reason`.
/// Returns when the thread is picked again (possibly on another CPU), with the interrupt flag
/// as it was.
fn switch_out(reason: u8) {
    let was_enabled = interrupts::are_enabled();
    interrupts::disable();
    let cpu = percpu::current().expect("per-CPU data");
    let Some(t) = current() else {
        if was_enabled {
            interrupts::enable();
        }
        return;
    };
    t.reason.store(reason, Ordering::Relaxed);
    if t.fpu_live.swap(false, Ordering::Relaxed) {
        // SAFETY: only the CPU running the thread touches `fpu`.
        if let Some(area) = unsafe { &*t.fpu.get() } {
            area.save();
        }
    }
    let next = cpu.sched_rsp.load(Ordering::Relaxed);
    // SAFETY: `t.rsp` is the running thread's save slot (only this CPU touches it now);
    // `next` is this CPU's scheduler context, suspended in `run_one`'s switch, whose stack is
    // valid. Everything this thread borrows stays valid while it is suspended.
    unsafe { switch_stacks(t.rsp.get(), next) };
    if was_enabled {
        interrupts::enable();
    }
}

/// Picks and runs one thread on this CPU until it switches back. Interrupts must be disabled.
/// Returns false when nothing could be run.
fn run_one() -> bool {
    let Some(sched) = SCHED.get() else {
        return false;
    };
    let guard = SchedGuard::new();
    let Ok(local) = sched.local(&guard) else {
        return false;
    };
    let Some(t) = local.pick_next() else {
        return false;
    };
    // The thread may still be switching out on the CPU that last ran it.
    while t.on_cpu.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    t.on_cpu.store(true, Ordering::Relaxed);
    let cpu = percpu::current().expect("per-CPU data");
    if cpu.index < 64 {
        t.ran_on.fetch_or(1 << cpu.index, Ordering::Relaxed);
    }
    t.runs.fetch_add(1, Ordering::Relaxed);
    cpu.switches.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the thread is not running anywhere (on_cpu was clear), so its saved rsp is final.
    let next = unsafe { *t.rsp.get() };
    cpu.current
        .store(Arc::into_raw(t) as *mut u8, Ordering::Relaxed);
    set_ts();
    // SAFETY: `next` is the thread's saved stack pointer (from `prepare_stack` or its last
    // `switch_out`); the scheduler context's own rsp is saved in this CPU's block, where the
    // thread's `switch_out` finds it.
    unsafe { switch_stacks(cpu.sched_rsp.as_ptr(), next) };
    // Back in the scheduler context of this CPU (it never migrates).
    clear_ts();
    let ptr = cpu.current.swap(core::ptr::null_mut(), Ordering::Relaxed) as *const Thread;
    // SAFETY: the reference stored above with `Arc::into_raw`.
    let t = unsafe { Arc::from_raw(ptr) };
    let reason = t.reason.load(Ordering::Relaxed);
    // Release: the thread's saved rsp and FPU area are complete before another CPU may
    // switch to it.
    t.on_cpu.store(false, Ordering::Release);
    match reason {
        REASON_YIELD => {
            if let Err(e) = local.requeue(t) {
                log::error!("task: requeue failed: {e}; thread lost");
            }
        }
        REASON_BLOCK => {
            let _ = local.block();
        }
        _ => {
            let _ = local.exit();
            t.exited.store(true, Ordering::Release);
            STACKS.lock().push(t.stack_top);
            let joiners = core::mem::take(&mut *t.joiners.lock());
            for j in joiners {
                match local.wake(j) {
                    Ok(p) => kick(p.cpu),
                    Err(e) => log::error!("task: waking a joiner failed: {e}"),
                }
            }
        }
    }
    true
}

/// Runs threads on the calling CPU's boot context until `done()` holds; halts when there is
/// nothing to run. For the bootstrap processor's boot context (not from a thread).
pub fn run_until(mut done: impl FnMut() -> bool) {
    let was_enabled = interrupts::are_enabled();
    while !done() {
        interrupts::disable();
        if !run_one() {
            interrupts::enable_and_hlt();
        }
        interrupts::enable();
    }
    if !was_enabled {
        interrupts::disable();
    }
}

/// The application processors' idle loop: run threads when there are any, halt otherwise.
pub fn ap_idle() -> ! {
    loop {
        interrupts::disable();
        if !run_one() {
            interrupts::enable_and_hlt();
        }
    }
}

/// Called on every local APIC tick (after EOI, interrupts disabled): wakes expired sleepers
/// and preempts the running thread when its slice is used up.
pub fn on_tick() {
    let Some(sched) = SCHED.get() else {
        return;
    };
    let now = veridian_perf::arch::rdtsc();
    let mut due: Vec<Arc<Thread>> = Vec::new();
    if let Some(mut sleepers) = SLEEPERS.try_lock() {
        let mut i = 0;
        while i < sleepers.len() {
            if sleepers[i].0 <= now {
                due.push(sleepers.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
    }
    let guard = SchedGuard::new();
    let Ok(local) = sched.local(&guard) else {
        return;
    };
    for t in due {
        match local.wake(t) {
            Ok(p) => kick(p.cpu),
            Err(e) => log::error!("task: waking a sleeper failed: {e}"),
        }
    }
    if current().is_some() && local.should_preempt() {
        switch_out(REASON_YIELD);
    }
}
