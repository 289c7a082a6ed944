//! Thread contexts: a kernel stack, the saved stack pointer and the vector state of a thread,
//! and the switches between a thread and its CPU's scheduler context.
//!
//! What it does: [`Context::new`] lays out a fresh [`KernelStack`] so that the first switch to
//! it calls the thread's entry function. A CPU's *scheduler context* (its idle loop, or the
//! bootstrap processor's boot context) runs a thread with [`Context::run`], which returns once
//! the thread switched back with [`switch_to_scheduler`] (yield, block, preemption) or
//! [`exit_to_scheduler`] (then `run` hands the thread's stack back). A thread can also switch
//! straight to another thread's context that it claimed ([`switch_direct`]: the IPC fast path
//! and the direct yield), in which case `run` returns when the last thread of that chain
//! switches back. The running context is recorded in the CPU's per-CPU block for the #NM
//! handler and for the thread's own switch.
//!
//! What it relies on: veridian-sched's `switch_stacks` (an inline `asm!` switch that keeps the
//! stack pointer, `rbp`, `rbx` and a resume address, and tells the compiler every other
//! register is clobbered, so what is live around it is saved by the caller's code); a stack
//! handed to [`Context::new`] is exclusively the context's.
//!
//! What it guarantees (so that `task/` needs no `unsafe`):
//! - a context runs on at most one CPU at a time: [`Context::run`] claims it (`on_cpu`) and waits
//!   while another CPU is still switching away from it (a thread woken before it finished
//!   blocking), and the saved stack pointer and vector state are handed over with
//!   `Release`/`Acquire` on that flag;
//! - an exited context never runs again, and its stack is handed back exactly once, after the
//!   switch away from it completed;
//! - `run` refuses to run from inside a thread (the scheduler context's saved stack pointer
//!   would be overwritten), and the switch functions do nothing outside a thread;
//! - a thread's interrupt nesting depth and preemption count travel with it: a thread preempted
//!   inside the timer handler resumes, possibly on another CPU, with its handler depth, and the
//!   scheduler context runs at depth zero.

use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use veridian_sched::arch::x86_64::{prepare_stack, switch_stacks};

use super::fpu::{self, ThreadFpu};
use super::percpu::{self, CpuGuard, PerCpu, SchedGuard};
use super::tlb::{self, TlbState};

/// A mapped kernel stack, owned by whoever holds this value.
#[derive(Debug)]
pub struct KernelStack {
    bottom: u64,
    top: u64,
}

impl KernelStack {
    /// Wraps the stack `[bottom, top)`.
    ///
    /// # Safety
    /// The range is mapped writable, `top` is 16-byte aligned, and nothing else uses the memory
    /// while the returned value (or whoever it is handed to) owns it.
    pub unsafe fn new(bottom: u64, top: u64) -> Self {
        Self { bottom, top }
    }

    /// Highest address (exclusive), 16-byte aligned.
    pub fn top(&self) -> u64 {
        self.top
    }
}

/// A user address space as the scheduler needs it: the page tables to load, with their TLB
/// state.
///
/// # Safety
/// [`UserSpace::tlb`] returns the same state for as long as the value lives; its root is the
/// physical address of a PML4 whose upper half maps the kernel exactly as the kernel's own
/// PML4 does, valid (its kernel half never changed) until the value is dropped, and the value
/// calls [`TlbState::retire`] before it frees the tables.
pub unsafe trait UserSpace: Send + Sync {
    /// The space's tables and TLB state.
    fn tlb(&self) -> &TlbState;

    /// Demand paging: maps the page of `addr` if the space backs it on first touch and the
    /// access (`error_code` as the CPU pushed it) is allowed; false otherwise. Called with
    /// interrupts off, from the page-fault handler of a thread running in the space.
    fn handle_fault(&self, addr: u64, error_code: u64) -> bool;
}

/// One thread's machine state while it is not running.
pub struct Context {
    /// Saved stack pointer while suspended; written by `switch_stacks` on the CPU it ran on,
    /// read by the CPU that runs it next (ordered by `on_cpu`).
    rsp: UnsafeCell<usize>,
    /// The stack; taken back (once) after the thread exited.
    stack: UnsafeCell<Option<KernelStack>>,
    /// Set while a CPU runs the context or is still switching away from it.
    on_cpu: AtomicBool,
    /// The thread ended with `exit_to_scheduler`.
    exited: AtomicBool,
    /// Why it last switched out (written by the thread while its CPU holds `on_cpu`, read by
    /// that CPU's scheduler context before it releases `on_cpu`).
    blocked: AtomicBool,
    /// Interrupt nesting depth and preemption count the thread had when it switched out (the
    /// count as `PerCpu::swap_preempt_count` returned it: bit 31 stale, ignored when restored).
    irq_depth: AtomicU32,
    preempt_count: AtomicU32,
    fpu: ThreadFpu,
    /// The thread's user address space (none for a kernel thread); only touched by the thread
    /// itself ([`enter_address_space`], [`leave_address_space`]) while its CPU holds `on_cpu`.
    space: UnsafeCell<Option<Arc<dyn UserSpace>>>,
    /// The space's TLB state (null without a space): what `run` activates.
    user_tlb: AtomicPtr<TlbState>,
    /// The caller's tag for the space (the process id), published in the per-CPU block while
    /// the thread runs ([`current_tag`]); 0 without a space.
    tag: AtomicU64,
    /// Top of the kernel stack (for `rsp0` while a user thread runs).
    stack_top: u64,
}

/// What owns a thread context (the task layer's thread): a direct switch keeps the owner of
/// the context it switches to alive until that thread switches back to its scheduler.
pub trait OwnsContext: core::any::Any + Send + Sync {
    /// The context.
    fn context(&self) -> &Context;
}

// SAFETY: `rsp`, `stack` and `space` are only accessed by the CPU that holds `on_cpu` (in `run`
// and in the thread itself, which runs on that CPU while `run` waits in `switch_stacks`);
// `fpu` has the same protocol (see `ThreadFpu`); everything else is atomic.
unsafe impl Sync for Context {}
// SAFETY: as above; the stack and the FPU area are owned memory.
unsafe impl Send for Context {}

/// Why a thread switched back to its scheduler context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchReason {
    /// It stays runnable (yield, preemption): requeue it.
    Yield,
    /// It put itself on a wait list, whose waker queues it again.
    Block,
}

/// What [`Context::run`] did.
#[derive(Debug)]
pub enum RunOutcome {
    /// The thread switched back (yield, block, preemption), saying why; it can run again.
    Switched(SwitchReason),
    /// The thread exited; its stack, free for reuse.
    Exited(KernelStack),
    /// Not run: the context already exited, or the caller is itself a thread.
    NotRunnable,
}

extern "C" fn context_entry(arg: usize) -> ! {
    // SAFETY: `Context::new` passes the address of a `fn() -> !` as the argument.
    let entry = unsafe { core::mem::transmute::<usize, fn() -> !>(arg) };
    // A first run may come from a direct switch too (interrupts are still off here).
    if let Some(ctx) = percpu::current().and_then(running) {
        finish_switch_in(ctx);
    }
    x86_64::instructions::interrupts::enable();
    entry()
}

impl Context {
    /// A context whose first run calls `entry` (with interrupts enabled) on `stack`. Gives the
    /// stack back if it is too small for the first frame or there is no memory for the vector
    /// state area.
    pub fn new(stack: KernelStack, entry: fn() -> !) -> Result<Self, KernelStack> {
        let Some(fpu) = ThreadFpu::new() else {
            return Err(stack);
        };
        // SAFETY: the stack is ours (`KernelStack`'s contract) and unused until the first run.
        let rsp = unsafe {
            prepare_stack(
                stack.bottom as *mut u8,
                stack.top as *mut u8,
                context_entry,
                entry as usize,
            )
        };
        let stack_top = stack.top;
        match rsp {
            Some(rsp) => Ok(Self {
                rsp: UnsafeCell::new(rsp),
                stack: UnsafeCell::new(Some(stack)),
                on_cpu: AtomicBool::new(false),
                exited: AtomicBool::new(false),
                blocked: AtomicBool::new(false),
                irq_depth: AtomicU32::new(0),
                preempt_count: AtomicU32::new(0),
                fpu,
                space: UnsafeCell::new(None),
                user_tlb: AtomicPtr::new(core::ptr::null_mut()),
                tag: AtomicU64::new(0),
                stack_top,
            }),
            None => Err(stack),
        }
    }

    pub(super) fn fpu(&self) -> &ThreadFpu {
        &self.fpu
    }

    /// Runs the thread on this CPU until it switches back. For a scheduler context (not a
    /// thread), which proves with `guard` that interrupts are off on this CPU.
    pub fn run(&self, guard: &SchedGuard) -> (RunOutcome, Option<Arc<dyn OwnsContext>>) {
        let Some(cpu) = guard.block() else {
            return (RunOutcome::NotRunnable, None);
        };
        if !cpu.context.load(Ordering::Relaxed).is_null() {
            return (RunOutcome::NotRunnable, None);
        }
        // The thread may still be switching out on the CPU that last ran it.
        while self
            .on_cpu
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        if self.exited.load(Ordering::Acquire) {
            self.on_cpu.store(false, Ordering::Release);
            return (RunOutcome::NotRunnable, None);
        }
        // The scheduler context's own vector registers are not the thread's (an interrupt
        // taken here with TS clear set the flag on its way out).
        cpu.fpu_live.store(false, Ordering::Relaxed);
        self.switch_in(cpu);
        // SAFETY: we hold `on_cpu`, so the saved stack pointer is final and ours to use.
        let next = unsafe { *self.rsp.get() };
        // SAFETY: `next` is the thread's stack pointer from `prepare_stack` or from its last
        // switch out (it has not resumed since: we hold `on_cpu`); its stack is the context's
        // own. The scheduler context's stack pointer goes to this CPU's block, where the
        // thread's switch finds it; this frame stays valid (the scheduler context never
        // migrates and waits here).
        unsafe { switch_stacks(cpu.sched_rsp.as_ptr(), next) };
        // Back in this CPU's scheduler context. The thread that switched back is the one this
        // CPU runs now: `self`, or one that `self` (or a thread after it) switched to directly,
        // whose owner the per-CPU block holds (handed to the caller with the outcome).
        // SAFETY: only this CPU touches its `direct` slot, with interrupts off (`guard`).
        let direct = unsafe { &mut *cpu.direct.get() };
        let owner = if direct.is_some() {
            direct.take()
        } else {
            None
        };
        let back = cpu.context.load(Ordering::Relaxed);
        // SAFETY: `back` is the context that just switched back on this CPU: `self` (borrowed
        // by the caller) or the context of `owner`, which we hold.
        let ctx = unsafe { &*back };
        // A user thread's tables stay loaded lazily (the kernel half is the same everywhere):
        // the next user thread replaces them, a shootdown or their retirement switches the
        // CPU to the kernel's tables (`tlb`).
        tlb::set_lazy(cpu);
        cpu.current_tag.store(0, Ordering::Relaxed);
        fpu::switch_back();
        cpu.context.store(core::ptr::null_mut(), Ordering::Relaxed);
        let outcome = if ctx.exited.load(Ordering::Relaxed) {
            // SAFETY: we hold `on_cpu` and the thread will never run again (`exited`), so
            // nothing else touches the stack slot; the switch away from the stack completed.
            match unsafe { (*ctx.stack.get()).take() } {
                Some(stack) => RunOutcome::Exited(stack),
                None => RunOutcome::NotRunnable,
            }
        } else if ctx.blocked.load(Ordering::Relaxed) {
            RunOutcome::Switched(SwitchReason::Block)
        } else {
            RunOutcome::Switched(SwitchReason::Yield)
        };
        // Release: the saved stack pointer and vector state are complete before another CPU
        // may run the thread.
        ctx.on_cpu.store(false, Ordering::Release);
        (outcome, owner)
    }

    /// Makes this context the one `cpu` runs (its `on_cpu` is held): per-CPU pointer, lazy
    /// vector state, address space, tag. Interrupts off.
    #[inline(always)]
    fn switch_in(&self, cpu: &PerCpu) {
        cpu.context
            .store(core::ptr::from_ref(self).cast_mut(), Ordering::Relaxed);
        // `fpu_live` is false here: the callers clear it (`run`; `switch_direct` through
        // `save_out`, with interrupts off since).
        debug_assert!(!cpu.fpu_live.load(Ordering::Relaxed));
        fpu::switch_in();
        let space = self.user_tlb.load(Ordering::Acquire);
        cpu.current_tag
            .store(self.tag.load(Ordering::Relaxed), Ordering::Relaxed);
        // A kernel thread runs on whatever tables are loaded: lazily, if a user thread's (its
        // callers mark them lazy first).
        if !space.is_null() {
            super::user::set_user_stack(cpu, self.stack_top);
            // SAFETY: `space` is the TLB state of the `UserSpace` held in `self.space`
            // (`enter_address_space`), alive while it is held, and the thread cannot drop it
            // while it is switched out; its owner retires it (waiting for this CPU to load
            // other tables) before freeing it. Interrupts are off (the caller's contract).
            unsafe { tlb::activate(cpu, &*space) };
        }
    }

    /// Claims this context for a direct switch: true if it is switched out (not running or
    /// switching out anywhere) and has not exited. The claim holds `on_cpu` until
    /// [`switch_direct`] runs it, or [`Context::unclaim`]. (Every resume point, the first
    /// entry included, runs `finish_switch_in`, which a direct switch relies on.)
    pub fn try_claim(&self) -> bool {
        if self
            .on_cpu
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        if self.exited.load(Ordering::Acquire) {
            self.on_cpu.store(false, Ordering::Release);
            return false;
        }
        true
    }

    /// Gives up a claim that will not be used.
    pub fn unclaim(&self) {
        self.on_cpu.store(false, Ordering::Release);
    }
}

/// After a thread resumed from one of its switch calls: releases the context that switched to
/// it directly (if any; its switch away is complete now), drops that context's owner reference
/// the switch kept, and brings the thread's interrupt depth and preemption count to this CPU.
#[inline(always)]
fn finish_switch_in(ctx: &Context) {
    let Some(cpu) = percpu::current() else {
        return;
    };
    cpu.irq_depth
        .store(ctx.irq_depth.load(Ordering::Relaxed), Ordering::Relaxed);
    cpu.swap_preempt_count(ctx.preempt_count.load(Ordering::Relaxed));
    let left = cpu.handed_over.load(Ordering::Relaxed);
    if !left.is_null() {
        finish_direct(cpu, left);
    }
}

/// The rest of [`finish_switch_in`] after a direct switch from `left`.
#[inline(always)]
fn finish_direct(cpu: &PerCpu, left: *mut Context) {
    cpu.handed_over
        .store(core::ptr::null_mut(), Ordering::Relaxed);
    // SAFETY: `left` switched to this thread directly, and its owner is kept alive in the
    // `retiring` slot until here; its saved state is complete.
    unsafe { (*left).on_cpu.store(false, Ordering::Release) };
    // SAFETY: only this CPU touches its `retiring` slot, with interrupts off (the caller holds
    // a `CpuGuard`).
    drop(unsafe { (*cpu.retiring.get()).take() });
}

/// Saves the running thread's state before it switches away (depth, count, vector
/// registers, why). Interrupts off.
#[inline(always)]
fn save_out(cpu: &PerCpu, ctx: &Context, why: Option<SwitchReason>) {
    veridian_sync::lockdep::assert_no_locks_held();
    ctx.irq_depth
        .store(cpu.irq_depth.swap(0, Ordering::Relaxed), Ordering::Relaxed);
    ctx.preempt_count
        .store(cpu.swap_preempt_count(0), Ordering::Relaxed);
    if cpu.fpu_live.swap(false, Ordering::Relaxed) {
        // SAFETY: this CPU runs the context, interrupts are off.
        unsafe { ctx.fpu.save() };
    }
    match why {
        None => ctx.exited.store(true, Ordering::Relaxed),
        Some(why) => ctx
            .blocked
            .store(why == SwitchReason::Block, Ordering::Relaxed),
    }
}

/// Switches from the running thread straight to `owner`'s context, which the caller claimed
/// ([`Context::try_claim`]), without the scheduler context: the caller is left blocked (as
/// after `switch_to_scheduler(Block)`; whoever wakes it, or the run queue it put itself on,
/// runs it again) and `owner`'s thread resumes from its last switch. This CPU keeps `owner`
/// alive until its thread switches back to the scheduler, whose `Context::run` hands it over.
/// Returns when the caller runs again (possibly on another CPU); false, doing nothing, outside
/// a thread (the claim is given up). `guard` keeps interrupts off on this CPU (the caller took
/// it before its wakers, or the run queue, could see it) and names its per-CPU block.
#[inline(always)]
pub fn switch_direct(guard: &SchedGuard, owner: Arc<dyn OwnsContext>) -> bool {
    let Some(cpu) = guard.block() else {
        owner.context().unclaim();
        return false;
    };
    let Some(me) = running(cpu) else {
        owner.context().unclaim();
        return false;
    };
    save_out(cpu, me, Some(SwitchReason::Block));
    let next: *const Context = owner.context();
    // SAFETY: `next` is `owner`'s context, which the `direct` slot keeps alive from here on.
    let next = unsafe { &*next };
    // The caller's tables (if a user thread's) stay loaded lazily unless `next` loads its own.
    tlb::set_lazy(cpu);
    next.switch_in(cpu);
    cpu.handed_over
        .store(core::ptr::from_ref(me).cast_mut(), Ordering::Relaxed);
    // SAFETY: only this CPU touches its `direct` and `retiring` slots, with interrupts off.
    // The owner the slot held before (a thread switched to directly earlier, now `me`) is
    // kept until `me`'s switch away is complete (`finish_switch_in` on the other side).
    // `retiring` is empty here: only this function fills it, and the thread it switches to
    // empties it when it resumes (`finish_direct`), before it can run this again; so it is
    // written without dropping what it held (nothing).
    unsafe {
        let previous = (*cpu.direct.get()).replace(owner);
        debug_assert!((*cpu.retiring.get()).is_none());
        cpu.retiring.get().write(previous);
    }
    // SAFETY: we hold `next.on_cpu` (the claim), so its saved stack pointer is final: a frame
    // of its last switch out or its first entry; `me.rsp` is the running thread's save slot. Both
    // stacks are valid; the owner of `next` is kept alive by this CPU's `direct` slot.
    unsafe { switch_stacks(me.rsp.get(), *next.rsp.get()) };
    finish_switch_in(me);
    true
}

/// The running thread's context (null outside a thread), with interrupts off.
fn running(cpu: &PerCpu) -> Option<&Context> {
    let ctx = cpu.context.load(Ordering::Relaxed);
    // SAFETY: a non-null `context` is the context this CPU runs now, the caller's own; `run`
    // keeps it alive (it borrows it) while it runs.
    (!ctx.is_null()).then(|| unsafe { &*ctx })
}

/// The running thread enters `space`: its tables are loaded now and whenever the thread runs
/// again, and its kernel stack becomes the one entries from ring 3 use; `tag` (non-zero: the
/// process id) is what [`current_tag`] returns while the thread runs. Returns false (and does
/// nothing) outside a thread or when the thread has a space already.
pub fn enter_address_space(space: Arc<dyn UserSpace>, tag: u64) -> bool {
    let _irq = CpuGuard::enter();
    let Some(cpu) = percpu::current() else {
        return false;
    };
    let Some(ctx) = running(cpu) else {
        return false;
    };
    // SAFETY: only the running thread touches its own `space`, with interrupts off (so no
    // switch can interleave), and `run` reads `user_tlb` only while the thread is switched out.
    let slot = unsafe { &mut *ctx.space.get() };
    if slot.is_some() {
        return false;
    }
    let state: *const TlbState = space.tlb();
    *slot = Some(space);
    ctx.user_tlb.store(state.cast_mut(), Ordering::Release);
    ctx.tag.store(tag, Ordering::Relaxed);
    cpu.current_tag.store(tag, Ordering::Relaxed);
    super::user::set_user_stack(cpu, ctx.stack_top);
    // SAFETY: `state` belongs to the space `slot` holds now (alive while held; retired by its
    // owner before it frees the tables, which waits for this CPU to load other tables);
    // interrupts are off.
    unsafe { tlb::activate(cpu, &*state) };
    true
}

/// The running thread leaves its user address space for good (before the space is torn down):
/// the kernel's tables are loaded and the scheduler no longer loads the space for it. Returns
/// the space (none outside a thread or without one).
pub fn leave_address_space() -> Option<Arc<dyn UserSpace>> {
    leave(true)
}

/// As [`leave_address_space`], but the space's tables stay loaded on this CPU (lazily, as after
/// a switch) until another space is loaded here or the space is retired: no CR3 write now.
pub fn leave_address_space_lazily() -> Option<Arc<dyn UserSpace>> {
    leave(false)
}

fn leave(load_kernel_tables: bool) -> Option<Arc<dyn UserSpace>> {
    let _irq = CpuGuard::enter();
    let cpu = percpu::current()?;
    let ctx = running(cpu)?;
    ctx.user_tlb.store(core::ptr::null_mut(), Ordering::Release);
    ctx.tag.store(0, Ordering::Relaxed);
    cpu.current_tag.store(0, Ordering::Relaxed);
    if load_kernel_tables {
        tlb::leave(cpu);
    } else {
        tlb::set_lazy(cpu);
    }
    // SAFETY: as in `enter_address_space`: the running thread's own slot, interrupts off.
    unsafe { (*ctx.space.get()).take() }
}

/// Demand paging in the running thread's address space (the page-fault path: interrupts
/// off): false outside a thread, without a space, or when the space does not back `addr`.
pub fn fault_in_current_space(addr: u64, error_code: u64) -> bool {
    let _irq = CpuGuard::enter();
    let Some(ctx) = percpu::current().and_then(running) else {
        return false;
    };
    // SAFETY: only the running thread touches its own `space` slot, and this is that thread
    // (its fault handler, on its CPU, interrupts off): the space stays alive for the call.
    unsafe { (*ctx.space.get()).as_ref() }.is_some_and(|s| s.handle_fault(addr, error_code))
}

/// The tag of the running thread's address space (the process id), 0 when the CPU runs no
/// thread with a space: one `gs`-relative load, for the system-call fast paths.
#[inline]
pub fn current_tag() -> u64 {
    let tag: u64;
    // SAFETY: GS points at this CPU's installed per-CPU block (see `percpu::current`); the
    // field is only written by this CPU, and a thread that migrates reads its new CPU's copy,
    // which `run` set for it before switching to it.
    unsafe {
        core::arch::asm!(
            "mov {}, gs:[{off}]",
            out(reg) tag,
            off = const core::mem::offset_of!(PerCpu, current_tag),
            options(nostack, readonly, preserves_flags),
        );
    }
    tag
}

/// Whether the caller is a thread with a user address space.
pub fn has_address_space() -> bool {
    let _irq = CpuGuard::enter();
    percpu::current()
        .and_then(running)
        .is_some_and(|ctx| !ctx.user_tlb.load(Ordering::Relaxed).is_null())
}

/// Whether the caller is a thread (a context runs on this CPU).
pub fn in_thread() -> bool {
    percpu::current().is_some_and(|c| !c.context.load(Ordering::Relaxed).is_null())
}

/// Switches from the running thread to this CPU's scheduler context, which sees `why` in
/// [`Context::run`]'s outcome; returns when the thread is run again (possibly on another CPU),
/// with the interrupt flag as it was. Does nothing outside a thread.
///
/// A thread that blocks must have put itself on its wait list with interrupts off, and keep
/// them off until this call: a waker on another CPU may queue it at once, and that CPU's
/// `run` waits until this switch completed.
pub fn switch_to_scheduler(why: SwitchReason) {
    switch_out(Some(why));
}

/// Ends the running thread: switches to the scheduler context for the last time, which gets
/// the stack back from [`Context::run`]. Returns only if the caller is not a thread.
pub fn exit_to_scheduler() {
    switch_out(None);
}

fn switch_out(why: Option<SwitchReason>) {
    let irq = CpuGuard::enter();
    let Some(cpu) = percpu::current() else {
        return;
    };
    let ctx = cpu.context.load(Ordering::Relaxed);
    if ctx.is_null() {
        return;
    }
    // SAFETY: a non-null `context` is the context this CPU runs now, which is the caller's
    // own; `run` keeps it alive (it borrows it) until the switch below returns to it.
    let ctx = unsafe { &*ctx };
    save_out(cpu, ctx, why);
    let next = cpu.sched_rsp.load(Ordering::Relaxed);
    // SAFETY: `ctx.rsp` is the running thread's save slot (only this CPU touches it while it
    // holds `on_cpu`); `next` is this CPU's scheduler context, suspended in `Context::run`'s
    // switch, whose stack is valid. Everything this thread borrows stays valid while it is
    // suspended (its frames are not touched until it is resumed, or never, after an exit).
    unsafe { switch_stacks(ctx.rsp.get(), next) };
    // Resumed, possibly on another CPU, by its scheduler or by a direct switch.
    finish_switch_in(ctx);
    drop(irq);
}
