//! A run-time lock validator in the manner of Linux's lockdep, for kernels' test builds
//! (feature `lockdep`; without it every function here is an empty `#[inline(always)]` no-op and
//! the [`Mutex`](crate::lock::Mutex) wrapper is a plain `lock_api::Mutex`).
//!
//! # What it does
//! Every [`Mutex`](crate::lock::Mutex) carries a lock-class name; all locks with the same name
//! form one class (like Linux's one key per initialisation site). When a class is acquired,
//! the validator checks, and reports through [`LockdepEnv::report`]:
//!
//! - **order inversion**: taking `B` while holding `A` (in the same context, at the same
//!   interrupt depth) records the dependency `A -> B` with the site that took `B`; if the
//!   recorded dependencies already lead from `B` back to `A` (`B -> A`, or `B -> C -> A`, ...),
//!   two contexts following the two orders can deadlock: [`Report::OrderInversion`].
//!   Locks that an interrupt handler takes while the interrupted code holds others are not
//!   dependencies of those (the handler does not wait for the interrupted code);
//! - **interrupt-unsafe locks**: a class both taken in an interrupt handler
//!   (`interrupt_depth() > 0`) and held with interrupts enabled (checked right after the raw
//!   lock was taken, so an interrupt-safe lock, which disables interrupts first, never is):
//!   [`Report::IrqUnsafe`], whichever came first;
//! - **recursion**: a blocking acquisition of a class the context already holds at the same
//!   interrupt depth: [`Report::Recursive`] (a deadlock if it is the same spin lock);
//! - **locks held across a context switch**, when the embedder calls
//!   [`assert_no_locks_held`] on its switch path: [`Report::HeldAcrossSwitch`].
//!
//! The checks run *before* a blocking acquisition takes the raw lock, so a predicted deadlock is
//! reported before it happens. A successful `try_lock` is recorded as held (later acquisitions
//! depend on it) and its interrupt usage is checked, but, as in Linux, it adds no dependency
//! and is not checked for recursion: it cannot wait.
//!
//! # What it relies on
//! The embedder implements [`LockdepEnv`] (which held-lock stack to use, the interrupt depth and
//! flag, where reports go) and calls [`install`] once. Until then the validator does nothing.
//! Contexts (in a kernel, CPUs) must not hold a lock across a context switch; that is what
//! makes a per-CPU held-lock stack right, and what [`assert_no_locks_held`] checks.
//!
//! # What it guarantees
//! No allocation, no lock, no waiting: all state is in fixed-size `static` tables of atomics
//! ([`MAX_CLASSES`] classes, [`MAX_CONTEXTS`] contexts of [`MAX_HELD`] held locks each), so
//! the validator may run in interrupt handlers, and it never panics. A held-lock stack is
//! written only by its own context. When an interrupt handler (or a lock taken by
//! [`LockdepEnv::report`]) runs in the middle of the validator's own work on the same context,
//! its acquisition is simply not tracked. Each problem is reported once (inversions once per
//! pair of classes, the rest once per class); races between CPUs may delay a report, never
//! corrupt the tables. Capacity limits are reported once ([`Report::TooManyClasses`],
//! [`Report::TooManyHeld`]) and then the excess is not tracked.
//!
//! Not checked (Linux checks these): a lock that becomes "held with interrupts enabled" because
//! interrupts are enabled while it is held (only the state right after acquisition is seen);
//! dependencies between an interrupt-safe class and an interrupt-unsafe one (Linux's
//! "irq-safe -> irq-unsafe"); reader-writer locks. Releasing a lock in another context than
//! the one that took it (a lock held across a switch) clears its entry but cannot keep that
//! context's stack compact.
//!
//! # Cost
//! Feature off: none; [`Mutex`](crate::lock::Mutex) is `#[repr(transparent)]` over
//! `lock_api::Mutex`, its methods forward to it, and the functions here are empty. Feature on:
//! about 170 KiB of zeroed `.bss` (mostly the 128 × 128 table of edge sites; the held-lock
//! stacks take 34 KiB), a few atomic operations and calls into [`LockdepEnv`] per acquisition
//! and release, a scan of the context's held locks per blocking acquisition, a scan of the
//! class table the first time an instance is locked, and a graph search the first time each
//! dependency is seen.
//!

mod report;
#[cfg(feature = "lockdep")]
mod validator;

#[cfg(feature = "lockdep")]
pub(crate) use validator::{ClassKey, Held, after_lock, after_try_lock, before_lock, release};

#[cfg(all(feature = "lockdep", feature = "std"))]
pub(crate) use validator::forget_context;

pub use report::{Chain, Dependency, Report, Site};

/// Whether the validator is compiled in (the `lockdep` feature).
pub const ENABLED: bool = cfg!(feature = "lockdep");

/// Number of held-lock stacks: [`LockdepEnv::context`] values `>= MAX_CONTEXTS` are not
/// tracked. 64 covers the CPUs of the machines the reference kernel targets.
pub const MAX_CONTEXTS: usize = 64;

/// Number of lock classes (distinct names). A kernel has tens; 128 keeps the dependency
/// graph's per-edge site table at 128 KiB.
pub const MAX_CLASSES: usize = 128;

/// Locks one context may hold at once (interrupt handlers' included). Linux allows 48; kernel
/// paths rarely nest more than a handful.
pub const MAX_HELD: usize = 32;

/// Dependencies kept in a reported [`Chain`] (longer cycles are truncated in the report).
pub const MAX_CHAIN: usize = 8;

/// What the validator needs from its environment. Implemented by the embedder.
///
/// All methods may be called from any context, including interrupt handlers, and must not
/// block. They should not take [`Mutex`](crate::lock::Mutex)es (if they do, those acquisitions
/// are not tracked).
///
/// # Example
/// A kernel's implementation, sketched with stand-ins for its per-CPU data:
///
/// ```
/// use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
/// use veridian_sync::lockdep::{self, LockdepEnv, Report};
///
/// // Stand-ins for the kernel's per-CPU state (GS-relative in a real kernel).
/// fn current_cpu() -> usize { 0 }
/// static IRQ_DEPTH: [AtomicU32; 1] = [AtomicU32::new(0)];  // ++ on interrupt entry
/// static IF_FLAG: AtomicBool = AtomicBool::new(true);      // rflags.IF
///
/// struct KernelLockdep;
///
/// impl LockdepEnv for KernelLockdep {
///     fn context(&self) -> usize {
///         current_cpu() // kernel locks are never held across a context switch
///     }
///     fn interrupt_depth(&self) -> u32 {
///         IRQ_DEPTH[current_cpu()].load(Ordering::Relaxed)
///     }
///     fn interrupts_enabled(&self) -> bool {
///         IF_FLAG.load(Ordering::Relaxed)
///     }
///     fn report(&self, report: &Report) {
///         // A kernel writes to its serial port (without a tracked lock) or panics.
///         eprintln!("{report}");
///     }
/// }
///
/// static ENV: KernelLockdep = KernelLockdep;
///
/// lockdep::install(&ENV); // early in boot, before the first lock
/// ```
pub trait LockdepEnv: Sync {
    /// Which held-lock stack the caller uses, `< MAX_CONTEXTS` (others are not tracked).
    ///
    /// In a kernel, the CPU index (kernel locks are never held across a context switch, and
    /// an interrupt handler runs on the interrupted code's CPU, whose locks it must see);
    /// hosted, a per-thread index. It must not change while the caller holds tracked locks.
    fn context(&self) -> usize;

    /// 0 in task context; the nesting depth of interrupt handlers (1 in a handler, 2 in a
    /// handler that interrupted a handler, ...).
    fn interrupt_depth(&self) -> u32;

    /// Whether the current CPU's interrupts are enabled right now.
    fn interrupts_enabled(&self) -> bool;

    /// Called once per distinct problem, in the context that found it (with the lock about
    /// to be taken not yet taken, if the problem predicts a deadlock).
    fn report(&self, report: &Report);

    /// Keeps the caller in its context until [`LockdepEnv::unpin`] (a kernel: interrupts off,
    /// so the task can be neither preempted nor migrated to another CPU while the validator
    /// reads that CPU's held-lock stack); returns what `unpin` needs. The validator brackets
    /// each of its checks with the pair. The default does nothing, which is right where a
    /// context cannot change under the caller (hosted threads).
    fn pin(&self) -> u64 {
        0
    }

    /// Ends [`LockdepEnv::pin`], given what it returned.
    fn unpin(&self, state: u64) {
        let _ = state;
    }
}

/// Installs the environment and starts validating. Only the first call takes effect: it
/// returns `true`; later calls are ignored and return `false` (so does every call when the
/// `lockdep` feature is off).
///
/// Call it before the first lock is taken, or locks taken before it are not tracked
/// (releasing them is fine).
#[cfg(feature = "lockdep")]
pub fn install(env: &'static dyn LockdepEnv) -> bool {
    validator::install(env)
}

/// Installs the environment and starts validating (feature off: does nothing, returns `false`).
#[cfg(not(feature = "lockdep"))]
#[inline(always)]
pub fn install(env: &'static dyn LockdepEnv) -> bool {
    let _ = env;
    false
}

/// Number of reports made so far (0 when the feature is off).
#[cfg(feature = "lockdep")]
pub fn reports() -> u64 {
    validator::reports()
}

/// Number of reports made so far (0 when the feature is off).
#[cfg(not(feature = "lockdep"))]
#[inline(always)]
pub fn reports() -> u64 {
    0
}

/// Number of tracked locks the current context holds, interrupt handlers' included (0 when the
/// feature is off or nothing is installed).
#[cfg(feature = "lockdep")]
pub fn held_count() -> usize {
    validator::held_count()
}

/// Number of tracked locks the current context holds (0 when the feature is off).
#[cfg(not(feature = "lockdep"))]
#[inline(always)]
pub fn held_count() -> usize {
    0
}

/// For the embedder's context switch: reports [`Report::HeldAcrossSwitch`] for each lock the
/// current context holds at interrupt depth 0 (once per class). The caller's location is the
/// switch site.
#[cfg(feature = "lockdep")]
#[track_caller]
pub fn assert_no_locks_held() {
    validator::assert_no_locks_held(core::panic::Location::caller());
}

/// For the embedder's context switch (feature off: does nothing).
#[cfg(not(feature = "lockdep"))]
#[inline(always)]
pub fn assert_no_locks_held() {}
