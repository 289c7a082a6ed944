//! A hosted [`LockdepEnv`] for tests: one held-lock context per thread, a fake interrupt depth
//! and interrupt flag per thread that tests set, and reports collected in memory.
//!
//! - [`install`] installs [`HostedLockdepEnv`] (idempotent; every test may call it).
//! - Each thread gets a context slot `< MAX_CONTEXTS` at its first lock and gives it back when
//!   it exits (forgetting any lock it still held); while all slots are taken, further threads
//!   are not tracked.
//! - [`set_interrupt_depth`], [`set_interrupts_enabled`] and [`in_interrupt`] play the
//!   interrupt state of the calling thread; [`FakeInterrupts`] is an [`InterruptControl`] that
//!   clears and restores the fake flag, so an [`IrqSpinLock`](crate::lock::IrqSpinLock) over it
//!   behaves like a kernel's interrupt-safe lock. A new thread starts in task context with
//!   interrupts enabled.
//! - Reports go to a process-wide list ([`reports`], [`reports_involving`]) and, after
//!   [`set_print(true)`](set_print), to standard error.
//!
//! The validator's state is process-wide: tests running in parallel should use lock names of
//! their own and look only at the reports that involve them.

use core::sync::atomic::{AtomicBool, Ordering};
use std::cell::Cell;
use std::sync::{Mutex as StdMutex, Once, PoisonError};
use std::vec::Vec;

use crate::env::InterruptControl;
use crate::lockdep::{self, LockdepEnv, MAX_CONTEXTS, Report};

/// The context slots in use.
static SLOTS: [AtomicBool; MAX_CONTEXTS] = [const { AtomicBool::new(false) }; MAX_CONTEXTS];

/// Reports received so far.
static REPORTS: StdMutex<Vec<Report>> = StdMutex::new(Vec::new());

/// Whether reports are also printed.
static PRINT: AtomicBool = AtomicBool::new(false);

/// A thread's context slot, given back when the thread exits.
struct Slot(usize);

impl Slot {
    fn claim() -> Self {
        // Relaxed: the flag only hands out distinct indices; the validator orders its own
        // per-context state.
        let index = SLOTS
            .iter()
            .position(|slot| {
                slot.compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            })
            .unwrap_or(usize::MAX);
        Slot(index)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(slot) = SLOTS.get(self.0) {
            #[cfg(feature = "lockdep")]
            lockdep::forget_context(self.0);
            slot.store(false, Ordering::Relaxed);
        }
    }
}

std::thread_local! {
    static CONTEXT: Slot = Slot::claim();
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    static ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// The hosted environment: per-thread contexts, fake interrupt state, reports kept in memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostedLockdepEnv;

impl LockdepEnv for HostedLockdepEnv {
    fn context(&self) -> usize {
        // While the thread is exiting (its slot already given back): not tracked.
        CONTEXT.try_with(|slot| slot.0).unwrap_or(usize::MAX)
    }

    fn interrupt_depth(&self) -> u32 {
        interrupt_depth()
    }

    fn interrupts_enabled(&self) -> bool {
        interrupts_enabled()
    }

    fn report(&self, report: &Report) {
        if PRINT.load(Ordering::Relaxed) {
            std::eprintln!("{report}");
        }
        REPORTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(*report);
    }
}

static ENV: HostedLockdepEnv = HostedLockdepEnv;

/// Installs [`HostedLockdepEnv`] unless an environment is already installed; returns whether
/// the hosted one is active now (always `false` without the `lockdep` feature).
pub fn install() -> bool {
    static ONCE: Once = Once::new();
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    // `Once`: concurrent callers (parallel tests) wait for the first one's answer.
    ONCE.call_once(|| INSTALLED.store(lockdep::install(&ENV), Ordering::Relaxed));
    INSTALLED.load(Ordering::Relaxed)
}

/// Sets the calling thread's fake interrupt depth (0: task context).
pub fn set_interrupt_depth(depth: u32) {
    DEPTH.with(|d| d.set(depth));
}

/// The calling thread's fake interrupt depth.
pub fn interrupt_depth() -> u32 {
    DEPTH.try_with(Cell::get).unwrap_or(0)
}

/// Sets the calling thread's fake interrupt flag.
pub fn set_interrupts_enabled(enabled: bool) {
    ENABLED.with(|e| e.set(enabled));
}

/// The calling thread's fake interrupt flag.
pub fn interrupts_enabled() -> bool {
    ENABLED.try_with(Cell::get).unwrap_or(false)
}

/// Runs `f` as an interrupt handler would run: interrupt depth one higher and interrupts
/// disabled (as on handler entry), both restored afterwards.
pub fn in_interrupt<T>(f: impl FnOnce() -> T) -> T {
    /// Puts the interrupted state back, also if `f` panics.
    struct Restore(u32, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            set_interrupt_depth(self.0);
            set_interrupts_enabled(self.1);
        }
    }
    let _restore = Restore(interrupt_depth(), interrupts_enabled());
    set_interrupt_depth(interrupt_depth() + 1);
    set_interrupts_enabled(false);
    f()
}

/// Every report received so far (all threads, all tests).
pub fn reports() -> Vec<Report> {
    REPORTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// The reports received so far that name the lock class `name`.
pub fn reports_involving(name: &str) -> Vec<Report> {
    REPORTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|report| report.involves(name))
        .copied()
        .collect()
}

/// Whether reports are also printed to standard error (off by default).
pub fn set_print(print: bool) {
    PRINT.store(print, Ordering::Relaxed);
}

/// An [`InterruptControl`] over the calling thread's fake interrupt flag: `disable` clears it
/// and returns the previous value, `restore` puts that back (like `pushf; cli` / `popf`).
#[derive(Debug, Clone, Copy, Default)]
pub struct FakeInterrupts;

// SAFETY: no real interrupt handler runs in a hosted process; the "interrupts" are the calling
// thread's flag, which `disable` clears and `restore` sets back to exactly what `disable`
// found, in any order without undefined behaviour (it is a `Cell<bool>`).
unsafe impl InterruptControl for FakeInterrupts {
    type State = bool;

    fn disable() -> bool {
        ENABLED.try_with(|e| e.replace(false)).unwrap_or(false)
    }

    unsafe fn restore(state: bool) {
        let _ = ENABLED.try_with(|e| e.set(state));
    }
}
