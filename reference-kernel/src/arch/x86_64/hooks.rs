//! How the architecture layer reaches the scheduler without naming it.
//!
//! `arch/` sits below `task/`: the timer tick, fatal exceptions in threads, the deferred switch
//! of [`super::percpu::preempt_enable`] and the application processors' idle loop all need the
//! scheduler, but `arch/` must not call up into it (no module cycle). The scheduler registers
//! its entry points here once at start-up ([`register`]), as Asterinas ostd's
//! `timer::register_callback`/`inject_scheduler` do; until then each hook does nothing (or, for
//! the idle loop, halts).

use spin::Once;

use super::idt::ExceptionInfo;
use super::user::{SyscallHandler, UserFault};

/// The scheduler's entry points.
pub struct SchedulerHooks {
    /// Called on every local APIC tick, after EOI, with interrupts off, in the tick handler (it
    /// may switch threads from there).
    pub tick: fn(),
    /// Called by `preempt_enable` when the count dropped to zero and a switch is due
    /// (interrupts on, not in a handler): yields the running thread.
    pub reschedule: fn(),
    /// Called by the exception dispatcher for a fatal exception: ends the running thread with
    /// this report and never returns; returns at once when the CPU was not running a thread.
    pub fatal_exception: fn(&ExceptionInfo),
    /// An application processor's idle loop once the scheduler runs (never returns).
    pub ap_idle: fn() -> !,
}

static HOOKS: Once<&'static SchedulerHooks> = Once::new();

/// Registers the scheduler's hooks (the first registration wins).
pub fn register(hooks: &'static SchedulerHooks) {
    HOOKS.call_once(|| hooks);
}

/// The timer tick's call into the scheduler.
pub fn tick() {
    if let Some(h) = HOOKS.get() {
        (h.tick)();
    }
}

/// The deferred switch of `preempt_enable`.
pub fn reschedule() {
    if let Some(h) = HOOKS.get() {
        (h.reschedule)();
    }
}

/// A fatal exception: ends the running thread if there is one (never returns then).
pub fn fatal_exception(info: &ExceptionInfo) {
    if let Some(h) = HOOKS.get() {
        (h.fatal_exception)(info);
    }
}

/// The application processors' idle loop: the scheduler's once it is registered.
pub fn ap_idle() -> ! {
    loop {
        if let Some(h) = HOOKS.get() {
            (h.ap_idle)();
        }
        x86_64::instructions::hlt();
    }
}

/// The process layer's entry points (user mode): system calls and ending a
/// process that faulted.
pub struct ProcessHooks {
    /// The system calls, indexed by number: `syscall_entry` calls entry `rax` directly
    /// (interrupts on, on the calling thread's kernel stack); it reads the arguments from the
    /// frame and writes the result into its `rax`. A number past the end gets `-ENOSYS`.
    pub syscalls: &'static [SyscallHandler],
    /// A fault that ends the running process (interrupts off): never returns when a user
    /// thread runs; returns at once otherwise.
    pub user_fault: fn(&UserFault),
    /// An interrupt on user interrupt line `line` (interrupt context, EOI sent): delivers it
    /// to whatever user program bound the line. Must not block.
    pub user_irq: fn(u8),
    /// The timer interrupted ring 3 and is about to return there (EOI sent, interrupts off):
    /// may end the running process (as `user_fault` does) instead of returning.
    pub user_interrupted: fn(),
}

static PROCESS_HOOKS: Once<&'static ProcessHooks> = Once::new();

/// Registers the process layer's hooks (the first registration wins) and publishes its
/// system-call table to `syscall_entry`.
pub fn register_process(hooks: &'static ProcessHooks) {
    let first = PROCESS_HOOKS.get().is_none();
    let hooks = *PROCESS_HOOKS.call_once(|| hooks);
    if first {
        super::user::set_syscall_table(hooks.syscalls);
    }
}

/// The timer is about to return to ring 3 (see [`ProcessHooks::user_interrupted`]).
pub fn user_interrupted() {
    if let Some(h) = PROCESS_HOOKS.get() {
        (h.user_interrupted)();
    }
}

/// Delivers an interrupt on user line `line` (nothing before the process layer registers).
pub fn user_irq(line: u8) {
    if let Some(h) = PROCESS_HOOKS.get() {
        (h.user_irq)(line);
    }
}

/// Ends the running process for `fault` (returns only when no process runs here).
pub fn user_fault(fault: &UserFault) {
    if let Some(h) = PROCESS_HOOKS.get() {
        (h.user_fault)(fault);
    }
}
