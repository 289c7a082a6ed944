//! The kernel's locks: veridian-sync spin locks bound to this CPU's interrupt flag or
//! preemption count, and the kernel's side of veridian-sync's lock validator.
//!
//! The discipline (docs/architecture.md, "Locking"):
//! - [`IrqLock`] for state that interrupt handlers or a scheduler context also touch: interrupts
//!   are disabled before the lock is taken and the saved flag is restored after it is released
//!   (never blindly enabled).
//! - [`PreemptLock`] for state only threads touch: preemption is disabled while it is held (a
//!   holder cannot be switched out, so nobody spins on a lock whose holder does not run), and
//!   interrupts stay on. Never taken in an interrupt handler (the validator reports that).
//! - A lock is never held across a context switch (the switch asks the validator).
//!
//! Both are `veridian_sync::lock::Mutex` (a ticket lock inside), so every acquisition is seen
//! by the validator when the kernel is built with veridian-sync's `lockdep` feature.

use veridian_sync::InterruptControl;
use veridian_sync::lock::{Mutex, RawIrqLock, RawTicketLock};

use super::percpu;

/// Interrupt control through RFLAGS.IF on this CPU.
pub struct Interrupts;

// SAFETY: `disable` clears IF and returns whether it was set; until `restore` no interrupt
// handler runs on this CPU (NMI and machine checks aside, which take no locks). `restore` sets
// IF only if it was set before, so nested sections restored innermost first come back out in
// the state they found; restored out of order the flag is merely wrong for a while.
unsafe impl InterruptControl for Interrupts {
    type State = bool;

    #[inline]
    fn disable() -> bool {
        let was = x86_64::instructions::interrupts::are_enabled();
        x86_64::instructions::interrupts::disable();
        was
    }

    #[inline]
    unsafe fn restore(was_enabled: bool) {
        if was_enabled {
            x86_64::instructions::interrupts::enable();
        }
    }
}

/// Preemption control through this CPU's preemption count.
pub struct Preemption;

// SAFETY: between `disable` and `restore` this CPU's preemption count is non-zero, so the tick
// does not switch threads and no other thread runs on this CPU (the contract of a
// preemption-only implementation). The count is a depth, so out-of-order restores stay
// memory-safe.
unsafe impl InterruptControl for Preemption {
    type State = ();

    #[inline]
    fn disable() {
        percpu::preempt_disable();
    }

    #[inline]
    unsafe fn restore(_: ()) {
        percpu::preempt_enable();
    }
}

/// A spin lock whose holder runs with interrupts disabled.
pub type IrqLock<T> = Mutex<RawIrqLock<RawTicketLock, Interrupts>, T>;
/// A spin lock whose holder cannot be preempted (interrupts stay on).
pub type PreemptLock<T> = Mutex<RawIrqLock<RawTicketLock, Preemption>, T>;

/// The kernel's side of veridian-sync's lock validator: one held-lock stack per CPU (kernel
/// locks are never held across a switch), the dispatcher's nesting depth, and reports on the
/// console.
struct KernelLockdep;

impl veridian_sync::lockdep::LockdepEnv for KernelLockdep {
    fn context(&self) -> usize {
        percpu::cpu_index()
    }

    fn interrupt_depth(&self) -> u32 {
        percpu::current().map_or(0, |c| {
            c.irq_depth.load(core::sync::atomic::Ordering::Relaxed)
        })
    }

    fn interrupts_enabled(&self) -> bool {
        x86_64::instructions::interrupts::are_enabled()
    }

    fn report(&self, report: &veridian_sync::lockdep::Report) {
        crate::console::force_write(format_args!("{report}\n"));
    }

    /// Interrupts off: no preemption, no migration while the validator reads this CPU's
    /// held-lock stack.
    fn pin(&self) -> u64 {
        u64::from(Interrupts::disable())
    }

    fn unpin(&self, state: u64) {
        // SAFETY: `state` is what `pin` returned on this CPU (the validator pairs them), and
        // the section opened there is the innermost one.
        unsafe { Interrupts::restore(state != 0) };
    }
}

/// Turns the validator on (it does nothing unless veridian-sync's `lockdep` feature is on).
pub fn init_lockdep() {
    static ENV: KernelLockdep = KernelLockdep;
    veridian_sync::lockdep::install(&ENV);
}
