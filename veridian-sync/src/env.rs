//! What the primitives need from their environment: the current CPU's index and control over
//! interrupts (or preemption).
//!
//! Both are traits the embedder implements; the `std` feature supplies hosted versions in
//! `hosted`.

/// The index of the CPU the caller runs on, for per-CPU sharding: the workspace-wide embedder
/// trait of `veridian-embed`, re-exported (a kernel that also embeds veridian-perf implements
/// it once).
///
/// Used only to pick a shard, so a stale answer (the caller migrated right after asking) costs
/// contention, never correctness: the sharded structures stay correct with any index (larger
/// values than `max_cpus()` are reduced modulo `max_cpus`).
pub use veridian_embed::CpuIndex;

/// Disabling and restoring interrupts (or preemption) around a critical section, for locks that
/// interrupt handlers also take.
///
/// # Safety
/// After [`InterruptControl::disable`] returns, and until the matching
/// [`InterruptControl::restore`], no interrupt handler (or, for a preemption-only
/// implementation, no other task) may run on this CPU. `restore(state)` brings back exactly
/// the state `disable` found, so sections restored innermost first compose.
///
/// Implementations must also stay memory-safe when sections are restored out of order
/// (two interrupt-safe guards dropped in the order they were taken: safe code can do that). The
/// result may then be the wrong interrupt state for a while (on too early, or off until the next
/// restore), never undefined behaviour; a saved flag (`pushf`/`popf`) or a depth counter both
/// qualify.
///
/// # Example: a `no_std` embedder
///
/// A kernel that masks interrupts in software (its interrupt entry path only records an
/// interrupt while the mask is set, and runs the handler when the mask is cleared) implements
/// the trait with one flag per CPU; this one has one CPU. Only `core` is used.
///
/// ```
/// use core::sync::atomic::{AtomicBool, Ordering};
///
/// use veridian_sync::InterruptControl;
/// use veridian_sync::lock::IrqTicketMutex;
///
/// /// Set while handlers must not run; the interrupt entry path reads it.
/// static MASKED: AtomicBool = AtomicBool::new(false);
///
/// struct SoftMask;
///
/// // SAFETY: while `MASKED` is set the entry path runs no handler on this (only) CPU.
/// // `restore` puts back exactly the value `disable` found, so nested sections compose, and
/// // restoring out of order leaves a wrong mask for a while, never undefined behaviour.
/// unsafe impl InterruptControl for SoftMask {
///     type State = bool;
///
///     fn disable() -> bool {
///         // Acquire: the critical section's accesses stay after the mask is set.
///         MASKED.swap(true, Ordering::Acquire)
///     }
///
///     unsafe fn restore(was_masked: bool) {
///         // Release: the critical section's accesses stay before the mask is cleared.
///         MASKED.store(was_masked, Ordering::Release);
///     }
/// }
///
/// /// State shared with the timer handler: a lock that masks interrupts while held.
/// static TICKS: IrqTicketMutex<SoftMask, u64> = IrqTicketMutex::new(0);
///
/// {
///     let mut ticks = TICKS.lock();
///     assert!(MASKED.load(Ordering::Relaxed), "masked while the lock is held");
///     *ticks += 1;
/// }
/// assert!(!MASKED.load(Ordering::Relaxed), "the previous state is back");
///
/// // Taken with interrupts already masked (as in a handler), it leaves them masked.
/// let outer = SoftMask::disable();
/// *TICKS.lock() += 1;
/// assert!(MASKED.load(Ordering::Relaxed));
/// // SAFETY: `outer` came from the `disable` above and is restored once.
/// unsafe { SoftMask::restore(outer) };
/// assert_eq!(*TICKS.lock(), 2);
/// ```
pub unsafe trait InterruptControl {
    /// The state to restore (for example, whether interrupts were enabled).
    type State: Copy;
    /// Disables interrupts; returns the previous state.
    fn disable() -> Self::State;
    /// Restores the state returned by a `disable`.
    ///
    /// # Safety
    /// `state` was returned by a `disable` on this CPU, and is restored once. Sections should be
    /// restored innermost first (otherwise the interrupt state is wrong for a while; see the
    /// trait's safety section, which keeps that memory-safe).
    unsafe fn restore(state: Self::State);
}
