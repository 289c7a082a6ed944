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
//!   thread, runs it ([`Context::run`]), and when the thread switches back, requeues it (yield,
//!   preemption), forgets it (blocked: a wait list holds it) or finishes it (exit: its stack
//!   goes back to the free list). Idle CPUs halt until the next interrupt.
//! - Yield ([`yield_now`]): when another thread this CPU may run is queued, the yielding thread
//!   switches to it directly (`yield_direct`: veridian-sched's `switch_next` requeues it and
//!   picks the next thread in one step, `context::switch_direct` switches stacks once), not
//!   through the scheduler context.
//! - Preemption: the local APIC tick calls [`on_tick`] (through the hook registered by
//!   [`init`]); when the running thread's slice is used up (or a higher priority is queued) the
//!   thread switches out from inside the interrupt handler and resumes there later. Sleepers
//!   whose deadline passed are woken on every tick.
//! - Vector state: switched lazily by `arch::x86_64::fpu` (CR0.TS and #NM); threads that never
//!   touch the vector registers cost nothing.
//!
//! Locking and interrupts (docs/architecture.md, "Locking"): every scheduler operation runs
//! with interrupts disabled on the calling CPU (veridian-sched's `CpuGuard` is
//! [`SchedGuard`], which holds them off), so a CPU's queues have one user at a time. State that
//! the scheduler context or the tick also touches (stack free list, sleepers, a thread's
//! joiners and outcome) is behind [`IrqLock`]s. Blocking (join, sleep) keeps interrupts off
//! from queueing itself on a wait list until the switch, and restores the caller's interrupt
//! flag afterwards. A thread picked by one CPU may still be switching out on another (it was
//! woken before it finished blocking): `arch::x86_64::context` waits for that.
//!
//! Preemption: the tick does not switch a thread whose CPU has a non-zero preemption count (a
//! [`PreemptLock`](crate::sync::PreemptLock) is held); it sets `need_resched`, and the
//! `preempt_enable` that brings the count to zero calls [`reschedule`] (registered as a hook).
//!
//! Wake-ups: a thread queued on another CPU that is not running a thread gets that CPU a
//! reschedule IPI (it may be halted). Not done yet: priority inheritance, thread-local storage.
//!
//! This module has no `unsafe`: stacks, switches and vector state are `arch::x86_64::context`'s.

#![deny(unsafe_code)]

pub mod process;
mod syscall;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use reference_kernel::acpi::Platform;
use spin::Once;
use veridian_sched::{
    Clock, CpuGuard as _, CpuSet, CpuStats, NumaScheduler, Priority, SchedConfig, Task, Topology,
    TopologyBuilder,
};

use crate::arch::x86_64::context::{self, Context, KernelStack, RunOutcome, SwitchReason};
use crate::arch::x86_64::hooks::{self, SchedulerHooks};
use crate::arch::x86_64::idt::ExceptionInfo;
use crate::arch::x86_64::percpu::{self, CpuGuard, CpuSlots, MAX_CPUS, SchedGuard};
use crate::mm::paging;
use crate::sync::IrqLock;

/// Pages of each thread's kernel stack (plus a guard page below).
pub const THREAD_STACK_PAGES: usize = 8;
/// Time slice in timer ticks (10 ms each).
pub const SLICE_TICKS: u64 = 2;
/// Nanoseconds per scheduler tick, the step of [`TickClock`].
const TICK_NS: u64 = 1_000_000_000 / crate::arch::x86_64::apic::TICK_HZ;

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
    /// Stack, saved registers and vector state.
    context: Context,
    entry: IrqLock<Option<Box<dyn FnOnce() + Send>>>,
    exited: AtomicBool,
    outcome: IrqLock<Option<Result<(), ThreadError>>>,
    joiners: IrqLock<Vec<Arc<Thread>>>,
    /// Bit `i` set: ran on CPU `i` (CPUs below 64).
    ran_on: AtomicU64,
    /// Times it was switched to.
    runs: AtomicU64,
    /// The CPU it last ran on (for the direct switch, which stays on one CPU).
    last_cpu: AtomicU64,
    /// The process it runs in ring 3 (none for a kernel thread).
    process: Option<Arc<process::Process>>,
}

impl Task for Thread {
    fn affinity(&self) -> &CpuSet {
        &self.affinity
    }
    fn priority(&self) -> Priority {
        self.priority
    }
}

impl context::OwnsContext for Thread {
    fn context(&self) -> &Context {
        &self.context
    }
}

impl Thread {
    /// Counts that this thread starts running on `cpu` (its `ran_on` bit, `runs`, and the
    /// switches of that CPU's per-CPU block); the caller records `last_cpu` where it changes.
    #[inline(always)]
    fn count_run(&self, cpu: usize, block: Option<&crate::arch::x86_64::percpu::PerCpu>) {
        if cpu < 64 {
            self.ran_on.fetch_or(1 << cpu, Ordering::Relaxed);
        }
        self.runs.fetch_add(1, Ordering::Relaxed);
        if let Some(block) = block {
            block.switches.fetch_add(1, Ordering::Relaxed);
        }
    }

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
    placed_on: usize,
}

impl JoinHandle {
    /// The thread.
    pub fn thread(&self) -> &Thread {
        &self.thread
    }

    /// The CPU the scheduler placed the thread on when it was spawned.
    pub fn placed_on(&self) -> usize {
        self.placed_on
    }

    /// Waits until the thread ends; `Err` if it panicked or faulted. From a thread it blocks;
    /// from the bootstrap processor's boot context it runs threads until then. Joining again
    /// returns the same outcome at once. The caller's interrupt flag is as it was afterwards.
    pub fn join(&self) -> Result<(), ThreadError> {
        let target = &self.thread;
        if let Some(me) = current() {
            // Interrupts stay off from joining the wait list until the switch, so no tick can
            // requeue this thread while a waker may already have queued it.
            let irq = CpuGuard::enter();
            let mut joiners = target.joiners.lock();
            if !target.exited.load(Ordering::Acquire) {
                joiners.push(me);
                drop(joiners);
                context::switch_to_scheduler(SwitchReason::Block);
            } else {
                drop(joiners);
                drop(me);
            }
            drop(irq);
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

/// This CPU's timer ticks, as nanoseconds (`TICK_NS` per tick): the scheduler's slice of
/// `SLICE_TICKS * TICK_NS` therefore ends on the same tick as a slice of `SLICE_TICKS` ticks.
pub struct TickClock;

impl Clock for TickClock {
    fn now_ns(&self) -> u64 {
        // A plain multiply: `cargo xtask bench` counted sched_yield_round_trip at 807
        // instructions with it, as with the tick clock before, and at 823 with
        // `saturating_mul`. It overflows only after 2^64 ns (584 years of ticks).
        crate::arch::x86_64::apic::local_ticks() * TICK_NS
    }
}

type Sched = NumaScheduler<Arc<Thread>, TickClock>;

static SCHED: Once<Sched> = Once::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Stacks of exited threads, for reuse (pushed by scheduler contexts, popped by `spawn`).
static STACKS: IrqLock<Vec<KernelStack>> = IrqLock::new("task::STACKS", Vec::new());
/// Sleeping threads and their TSC deadlines (the tick wakes them).
static SLEEPERS: IrqLock<Vec<(u64, Arc<Thread>)>> = IrqLock::new("task::SLEEPERS", Vec::new());
/// The thread each CPU runs (set by its scheduler context around `Context::run`).
static CURRENT: CpuSlots<Thread> = CpuSlots::new();

static HOOKS: SchedulerHooks = SchedulerHooks {
    tick: on_tick,
    reschedule,
    fatal_exception,
    ap_idle,
};

/// Builds the topology from the online CPUs, starts the scheduler and registers its hooks
/// (tick, deferred preemption, fatal exceptions, the APs' idle loop). Once, on the bootstrap
/// processor, after the application processors are up.
pub fn init(platform: Option<&Platform>) -> Result<(), veridian_sched::TopologyError> {
    let online = percpu::online() as usize;
    let nodes = platform.map_or(1, |p| p.node_count().max(1));
    let mut builder = TopologyBuilder::new(nodes);
    // ACPI allows an asymmetric SLIT (and the parser accepts it): steal order then follows the
    // distance as seen from the thief's node.
    builder.symmetry(veridian_sched::Symmetry::AllowAsymmetric);
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
        slice_ns: [SLICE_TICKS * TICK_NS; 3],
        ..SchedConfig::default()
    };
    SCHED.call_once(|| NumaScheduler::new(topology, TickClock, config));
    hooks::register(&HOOKS);
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

/// The running thread, if the caller is one (a new reference: it stays valid however long the
/// caller keeps it).
pub fn current() -> Option<Arc<Thread>> {
    let guard = SchedGuard::new();
    CURRENT.get(&guard)
}

/// Creates a thread running `f` and queues it where [`NumaScheduler::assign_thread`] says.
pub fn spawn(
    name: &'static str,
    affinity: CpuSet,
    priority: Priority,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle, SpawnError> {
    spawn_for(name, affinity, priority, None, f)
}

/// Every online CPU, as an affinity.
pub fn all_online_cpus() -> Option<CpuSet> {
    CpuSet::full(percpu::online() as usize).ok()
}

/// [`spawn`] for a thread that belongs to `process` (if any).
fn spawn_for(
    name: &'static str,
    affinity: CpuSet,
    priority: Priority,
    process: Option<Arc<process::Process>>,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle, SpawnError> {
    let sched = SCHED.get().ok_or(SpawnError::NotReady)?;
    let reused = STACKS.lock().pop();
    let stack = match reused {
        Some(stack) => stack,
        None => paging::alloc_kernel_stack(THREAD_STACK_PAGES).map_err(|_| SpawnError::NoStack)?,
    };
    let context = match Context::new(stack, thread_main) {
        Ok(c) => c,
        Err(stack) => {
            STACKS.lock().push(stack);
            return Err(SpawnError::NoStack);
        }
    };
    let thread = Arc::new(Thread {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        name,
        affinity,
        priority,
        context,
        entry: IrqLock::new("task::Thread::entry", Some(Box::new(f))),
        exited: AtomicBool::new(false),
        outcome: IrqLock::new("task::Thread::outcome", None),
        joiners: IrqLock::new("task::Thread::joiners", Vec::new()),
        ran_on: AtomicU64::new(0),
        runs: AtomicU64::new(0),
        last_cpu: AtomicU64::new(u64::MAX),
        process,
    });
    let handle = thread.clone();
    let guard = SchedGuard::new();
    let local = sched.local(&guard).map_err(|_| SpawnError::NotReady)?;
    let placed = local.spawn(thread).map_err(|_| SpawnError::NoAllowedCpu)?;
    kick(placed.cpu);
    Ok(JoinHandle {
        thread: handle,
        placed_on: placed.cpu,
    })
}

/// Direct switches (`switch_to`) since boot.
static DIRECT_SWITCHES: AtomicU64 = AtomicU64::new(0);

/// How many direct switches (`switch_to`) happened since boot.
pub fn direct_switches() -> u64 {
    DIRECT_SWITCHES.load(Ordering::Relaxed)
}

/// The IPC fast path's switch: the calling thread blocks and `next` (blocked, woken by the
/// caller, which owns that right) runs on this CPU at once, without a run-queue operation or a
/// pass through the scheduler context (one stack switch). Returns once the caller runs again
/// (woken as any blocked thread). `Err(next)`, doing nothing, when that is not possible now:
/// outside a thread, `next` last ran on another CPU (or its affinity excludes this one), or it
/// is still switching out; the caller then wakes `next` and blocks the usual way. The caller keeps
/// interrupts off from publishing itself to its wakers until this call.
pub fn switch_to(next: Arc<Thread>) -> Result<(), Arc<Thread>> {
    let Some(sched) = SCHED.get() else {
        return Err(next);
    };
    let guard = SchedGuard::new();
    if !context::in_thread() {
        return Err(next);
    }
    let Ok(local) = sched.local(&guard) else {
        return Err(next);
    };
    let cpu = guard.cpu();
    // Only where `next` ran last: its cache is here, and the two do not migrate.
    if next.last_cpu.load(Ordering::Relaxed) != cpu as u64 || !next.context.try_claim() {
        return Err(next);
    }
    if local.hand_off(&next).is_err() {
        next.context.unclaim();
        return Err(next);
    }
    next.count_run(cpu, guard.block());
    CURRENT.replace(&guard, &next);
    DIRECT_SWITCHES.fetch_add(1, Ordering::Relaxed);
    context::switch_direct(&guard, next);
    drop(guard);
    Ok(())
}

/// Makes `t`, which blocked (`switch_to_scheduler(Block)`), runnable again on a CPU its
/// affinity allows, and wakes that CPU. Any context; a thread woken before it finished
/// blocking runs once its switch completed.
pub fn wake(t: Arc<Thread>) {
    let Some(sched) = SCHED.get() else {
        return;
    };
    let guard = SchedGuard::new();
    let Ok(local) = sched.local(&guard) else {
        return;
    };
    match local.wake(t) {
        Ok(p) => kick(p.cpu),
        Err(e) => log::error!("task: waking a thread failed: {e}"),
    }
}

/// Wakes CPU `cpu` with a reschedule IPI if it is not the caller's (it may be halted).
fn kick(cpu: usize) {
    if cpu != percpu::cpu_index()
        && let Some(block) = percpu::cpu(cpu)
        && CURRENT.is_empty(cpu)
    {
        crate::arch::x86_64::apic::send_reschedule(block.apic_id);
    }
}

/// The first code of every thread (entered with interrupts on).
fn thread_main() -> ! {
    // The `Arc` is dropped at the end of the statement: an exiting thread holds none.
    let f = current().and_then(|t| t.entry.lock().take());
    if let Some(f) = f {
        f();
    }
    finish(Ok(()));
    unreachable!("thread_main runs only in a thread");
}

/// Ends the running thread with `outcome`; returns only if the caller is not a thread.
fn finish(outcome: Result<(), ThreadError>) {
    let Some(t) = current() else {
        return;
    };
    if let Some(p) = &t.process {
        process::thread_ending(p, &outcome);
    }
    *t.outcome.lock() = Some(outcome);
    // No reference of ours may stay on a stack that is never resumed.
    drop(t);
    context::exit_to_scheduler();
}

/// Ends the running thread because it panicked (called by the panic handler). Returns only if
/// the caller is not a thread.
pub fn exit_panicked(message: &str) {
    let Some(t) = current() else {
        return;
    };
    let mut s = String::new();
    let _ = write!(s, "thread {} `{}`: {message}", t.id(), t.name());
    drop(t);
    finish(Err(ThreadError::Panicked(s)));
}

/// The exception dispatcher's hook: ends the running thread because of a fatal CPU exception.
/// Returns only if the caller is not a thread.
fn fatal_exception(info: &ExceptionInfo) {
    let Some(t) = current() else {
        return;
    };
    let mut s = String::new();
    let _ = write!(s, "thread {} `{}`: {info}", t.id(), t.name());
    drop(t);
    finish(Err(ThreadError::Faulted(s)));
}

/// Gives up the CPU; the thread stays runnable. When another thread this CPU may run is
/// queued, the switch goes straight to it (`yield_direct`); otherwise (or outside a thread)
/// through the scheduler context as before.
pub fn yield_now() {
    if !yield_direct() {
        context::switch_to_scheduler(SwitchReason::Yield);
    }
}

/// The direct yield: requeues the running thread and picks the next one in one step
/// (veridian-sched's `switch_next`) and switches to it without the scheduler context (one
/// stack switch, as `switch_to`). The caller is then in the run queue as a thread woken early
/// is: a CPU that picks it waits (`Context::run`) or gives way (`try_claim`) until its switch
/// away completed. Returns false, doing nothing, outside a thread (or before [`init`]) and
/// when the scheduler refuses the requeue (the ordinary path then reports it); true once the
/// caller runs again, or at once when it is the only thread this CPU may run (it goes on with
/// a fresh slice, as after a pass through the scheduler context).
fn yield_direct() -> bool {
    let Some(sched) = SCHED.get() else {
        return false;
    };
    let guard = SchedGuard::new();
    let Some(me) = CURRENT.get(&guard) else {
        return false;
    };
    let Ok(local) = sched.local(&guard) else {
        return false;
    };
    let me_ptr = Arc::as_ptr(&me);
    let next = match local.switch_next(me) {
        Ok(Some(next)) => next,
        Ok(None) => {
            // Requeued on another CPU (its affinity excludes this one; a thread's affinity does
            // not change today, so this is defensive), nothing left here: the scheduler context
            // takes over, with nothing running (`block` finds none).
            context::switch_to_scheduler(SwitchReason::Block);
            return true;
        }
        Err(_) => return false,
    };
    if core::ptr::eq(Arc::as_ptr(&next), me_ptr) {
        return true;
    }
    if !next.context.try_claim() {
        yield_claim_failed(sched, &guard, next);
        return true;
    }
    let cpu = guard.cpu();
    next.count_run(cpu, guard.block());
    next.last_cpu.store(cpu as u64, Ordering::Relaxed);
    CURRENT.replace(&guard, &next);
    context::switch_direct(&guard, next);
    drop(guard);
    true
}

/// The direct yield picked `next`, which is still switching out on another CPU (woken before
/// its switch away completed). Spinning here for it could wait in a circle (that CPU may be
/// yielding to the caller, which is queued already), so `next` is queued again and the caller
/// switches to the scheduler context, which releases the caller first and then waits for
/// whichever thread it picks. The caller is queued: for the scheduler context it blocked
/// (`block` finds nothing running after this `requeue` and changes nothing).
#[cold]
#[inline(never)]
fn yield_claim_failed(sched: &Sched, guard: &SchedGuard, next: Arc<Thread>) {
    // The handle is made again here (the caller made it already): the caller need not keep
    // its handle in memory for this call.
    let requeued = match sched.local(guard) {
        Ok(local) => local.requeue(next).map_err(|e| e.error),
        Err(e) => Err(e),
    };
    if let Err(e) = requeued {
        log::error!("task: requeue failed: {e}; thread lost");
    }
    context::switch_to_scheduler(SwitchReason::Block);
}

/// The deferred preemption of `preempt_enable` (a hook): the tick found the slice used up
/// while preemption was disabled.
fn reschedule() {
    if let Some(cpu) = percpu::current() {
        cpu.take_need_resched();
    }
    yield_now();
}

/// Sleeps at least `ms` milliseconds (a thread blocks; the boot context runs threads). The
/// caller's interrupt flag is as it was afterwards.
pub fn sleep_ms(ms: u64) {
    let hz = crate::arch::x86_64::apic::info().map_or(1_000_000_000, |i| i.tsc_hz);
    let deadline = veridian_perf::arch::rdtsc() + hz / 1000 * ms;
    if let Some(me) = current() {
        // As in `join`: interrupts off from the wait list to the switch.
        let irq = CpuGuard::enter();
        SLEEPERS.lock().push((deadline, me));
        context::switch_to_scheduler(SwitchReason::Block);
        drop(irq);
    } else {
        run_until(|| veridian_perf::arch::rdtsc() >= deadline);
    }
}

/// Runs threads on this CPU, one after another, until `done()` holds (checked after each
/// thread switched back) or nothing this CPU may run is queued. For a scheduler context, with
/// interrupts off (they stay off here; the threads run with their own interrupt flag, so
/// interrupts pending meanwhile are taken as soon as the next thread runs). Returns whether
/// it ran any thread.
///
/// The guard and the scheduler's CPU handle are taken once for the whole run of threads, not
/// per switch: a yield between two threads costs one pick and two stack switches.
fn run_threads(mut done: impl FnMut() -> bool) -> bool {
    let Some(sched) = SCHED.get() else {
        return false;
    };
    let guard = SchedGuard::new();
    let Ok(local) = sched.local(&guard) else {
        return false;
    };
    let cpu = guard.cpu();
    let block = guard.block();
    let mut ran = false;
    while let Some(t) = local.pick_next() {
        ran = true;
        t.count_run(cpu, block);
        t.last_cpu.store(cpu as u64, Ordering::Relaxed);
        let (outcome, direct) = CURRENT.with(&guard, &t, || t.context.run(&guard));
        // The thread that switched back: `t`, or one a direct switch ran after it (`switch_to`).
        let t = match direct {
            Some(owner) => adopt(owner, t),
            None => t,
        };
        match outcome {
            RunOutcome::Switched(SwitchReason::Block) => {
                // Nothing running (an error, ignored) when the thread was queued already: a
                // direct yield that could not switch (`yield_direct`).
                let _ = local.block();
            }
            RunOutcome::Switched(SwitchReason::Yield) => {
                if let Err(e) = local.requeue(t) {
                    log::error!("task: requeue failed: {e}; thread lost");
                }
            }
            RunOutcome::Exited(stack) => {
                let _ = local.exit();
                t.exited.store(true, Ordering::Release);
                STACKS.lock().push(stack);
                let joiners = core::mem::take(&mut *t.joiners.lock());
                for j in joiners {
                    match local.wake(j) {
                        Ok(p) => kick(p.cpu),
                        Err(e) => log::error!("task: waking a joiner failed: {e}"),
                    }
                }
            }
            RunOutcome::NotRunnable => {
                log::error!("task: thread {} picked but not runnable", t.id());
                let _ = local.exit();
            }
        }
        if done() {
            break;
        }
    }
    ran
}

/// The thread a direct switch ran (its owner, as `Context::run` hands it back); `t` if it is
/// not a thread (impossible: only `switch_to` switches directly).
#[cold]
#[inline(never)]
fn adopt(owner: Arc<dyn context::OwnsContext>, t: Arc<Thread>) -> Arc<Thread> {
    let owner: Arc<dyn core::any::Any + Send + Sync> = owner;
    owner.downcast::<Thread>().unwrap_or_else(|_| {
        log::error!("task: a direct switch ran a context that is no thread's");
        t
    })
}

/// Runs threads on the calling CPU's boot context until `done()` holds; halts when there is
/// nothing to run. For the bootstrap processor's boot context (not from a thread). The
/// caller's interrupt flag is as it was afterwards.
pub fn run_until(mut done: impl FnMut() -> bool) {
    let was_enabled = x86_64::instructions::interrupts::are_enabled();
    while !done() {
        x86_64::instructions::interrupts::disable();
        if !run_threads(&mut done) {
            x86_64::instructions::interrupts::enable_and_hlt();
        }
        x86_64::instructions::interrupts::enable();
    }
    if !was_enabled {
        x86_64::instructions::interrupts::disable();
    }
}

/// The application processors' idle loop (a hook): run threads when there are any, halt
/// otherwise.
fn ap_idle() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        if !run_threads(|| false) {
            x86_64::instructions::interrupts::enable_and_hlt();
        }
    }
}

/// The tick hook (after EOI, interrupts disabled): wakes expired sleepers and preempts the
/// running thread when its slice is used up, unless preemption is disabled on this CPU (then
/// the switch waits for `preempt_enable`).
fn on_tick() {
    let Some(sched) = SCHED.get() else {
        return;
    };
    let now = veridian_perf::arch::rdtsc();
    let mut due: Vec<Arc<Thread>> = Vec::new();
    {
        let mut sleepers = SLEEPERS.lock();
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
    if context::in_thread() && local.should_preempt() {
        let Some(cpu) = percpu::current() else {
            return;
        };
        if cpu.preempt_count() != 0 {
            cpu.set_need_resched();
            return;
        }
        cpu.take_need_resched();
        drop(guard);
        context::switch_to_scheduler(SwitchReason::Yield);
    }
}
