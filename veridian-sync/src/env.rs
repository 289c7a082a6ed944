//! What the primitives need from their environment: the current CPU's index and control over
//! interrupts (or preemption).
//!
//! Both are traits the embedder implements; the `std` feature supplies hosted versions in
//! [`crate::hosted`].

/// The index of the CPU the caller runs on, for per-CPU sharding.
///
/// Used only to pick a shard, so a stale answer (the caller migrated right after asking) costs
/// contention, never correctness: the sharded structures stay correct with any index.
pub trait CpuIndex {
    /// Number of distinct indices; must not change.
    fn max_cpus(&self) -> usize;
    /// Index of the current CPU, `< max_cpus()` (larger values are reduced modulo `max_cpus`).
    fn current_cpu(&self) -> usize;
}

/// Disabling and restoring interrupts (or preemption) around a critical section, for locks that
/// interrupt handlers also take.
///
/// # Safety
/// After [`InterruptControl::disable`] returns, and until the matching
/// [`InterruptControl::restore`], no interrupt handler (or, for a preemption-only
/// implementation, no other task) may run on this CPU. `restore(state)` must bring back exactly
/// the state `disable` found, so nested sections compose.
pub unsafe trait InterruptControl {
    /// The state to restore (for example, whether interrupts were enabled).
    type State: Copy;
    /// Disables interrupts; returns the previous state.
    fn disable() -> Self::State;
    /// Restores the state returned by the matching `disable`.
    ///
    /// # Safety
    /// `state` comes from the matching `disable` on this CPU, and sections are restored in LIFO
    /// order.
    unsafe fn restore(state: Self::State);
}
