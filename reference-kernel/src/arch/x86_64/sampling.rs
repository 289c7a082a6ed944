//! What the sampling profiler sees of an interrupted context, and the hook it is reached by.
//!
//! The local APIC timer handler ([`super::apic`]) builds an [`Interrupted`] from the saved
//! registers and calls the sampler registered here ([`register`]); `arch/` never names the
//! profiler (it lives above, in `crate::profile`). For a kernel-mode sample [`Interrupted`]
//! carries a [`StackWindow`]: the part of the interrupted kernel stack between the interrupted
//! `rsp` and the top of that stack, as `mm::paging` mapped it ([`super::layout`]), which is
//! what veridian-perf's frame-pointer walker may read. For a user-mode sample the window is
//! empty (user memory is not read here).

use spin::Once;
use veridian_perf::env::AddressCheck;

use super::idt::InterruptFrame;

/// The interrupted context of one sample.
#[derive(Debug, Clone, Copy)]
pub struct Interrupted {
    /// The interrupted instruction pointer.
    pub ip: u64,
    /// The interrupted frame pointer (`rbp`).
    pub fp: u64,
    /// Whether the CPU was in ring 3.
    pub user: bool,
    /// The address-space tag of the running thread (its process; 0 for kernel threads).
    pub tag: u64,
    /// What the walker may read of the interrupted kernel stack.
    pub stack: StackWindow,
}

impl Interrupted {
    fn from_frame(frame: &InterruptFrame) -> Self {
        let user = frame.cs & 3 == 3;
        let stack = if user {
            StackWindow::EMPTY
        } else {
            match super::layout::kernel_stack_bounds(frame.rsp) {
                Some((_, top)) => StackWindow {
                    low: frame.rsp,
                    high: top,
                },
                None => StackWindow::EMPTY,
            }
        };
        Self {
            ip: frame.rip,
            fp: frame.rbp,
            user,
            tag: super::context::current_tag(),
            stack,
        }
    }
}

/// A readable window `[low, high)` of a kernel stack (empty: nothing may be read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackWindow {
    low: u64,
    high: u64,
}

impl StackWindow {
    /// Nothing readable.
    pub const EMPTY: Self = Self { low: 0, high: 0 };
}

// SAFETY: a non-empty window is only built by `Interrupted::from_frame` from the interrupted
// `rsp` and the top of the mapped kernel stack containing it (`layout::kernel_stack_bounds`:
// kernel stacks are never unmapped), so every byte of `[low, high)` is mapped, readable and
// plain memory. The interrupted code is stopped while the sampler (in the same interrupt
// handler, interrupts off) walks it; other CPUs do not run on this stack meanwhile.
unsafe impl AddressCheck for StackWindow {
    fn is_readable(&self, addr: usize, len: usize) -> bool {
        let addr = addr as u64;
        let Some(end) = addr.checked_add(len as u64) else {
            return false;
        };
        len > 0 && addr >= self.low && end <= self.high
    }
}

/// The profiler's entry point: called from the local APIC timer interrupt (interrupts off, on
/// the interrupted stack or the thread's kernel stack, before the scheduler's tick). It must
/// not block, allocate or take a lock that code with interrupts enabled holds.
pub type SampleHook = fn(&Interrupted);

static HOOK: Once<SampleHook> = Once::new();

/// Registers the sampler (the first registration wins; the profiler turns itself on and off).
pub fn register(hook: SampleHook) {
    HOOK.call_once(|| hook);
}

static PMI_HOOK: Once<SampleHook> = Once::new();

/// Registers the handler of performance-monitoring interrupts (a counter armed for sampling
/// overflowed; the first registration wins).
pub fn register_pmi(hook: SampleHook) {
    PMI_HOOK.call_once(|| hook);
}

/// Calls the registered PMU sampler, if any, for the context a PMI interrupted.
pub(super) fn sample_pmi(frame: &InterruptFrame) {
    if let Some(hook) = PMI_HOOK.get() {
        hook(&Interrupted::from_frame(frame));
    }
}

/// Calls the registered sampler, if any, for the context `frame` interrupted.
pub(super) fn sample(frame: &InterruptFrame) {
    if let Some(hook) = HOOK.get() {
        hook(&Interrupted::from_frame(frame));
    }
}
