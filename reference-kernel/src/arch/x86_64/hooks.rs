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
