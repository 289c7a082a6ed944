//! Interrupt-safe locks: any raw lock wrapped so that its holder runs with interrupts (or
//! preemption) off.
//!
//! What it does: [`RawIrqLock<R, I>`] is a `lock_api::RawMutex` around any raw lock `R`. Locking
//! first calls [`InterruptControl::disable`] (`I`), then takes `R`, then stores the previous
//! interrupt state inside the lock; unlocking releases `R` first and then restores that state.
//! So a [`super::IrqMutex`] guard keeps interrupts off from before the acquisition until after
//! the release, and restores exactly the state it found: nested guards (an interrupt-safe lock
//! taken while another is held, or while interrupts were already off) come back out in the
//! right state when dropped innermost first, as scoped guards are.
//!
//! Why this order: interrupts must be off *before* taking the lock, or an interrupt arriving
//! between the acquisition and the `disable` could run a handler that spins on the same lock on
//! the same CPU, forever. They must come back on only *after* the release, for the same reason.
//!
//! What it relies on: the embedder's [`InterruptControl`] contract (no handler runs on this CPU
//! between `disable` and `restore`), and guards released in the reverse order of acquisition.
//! Scoped guards do that; a program that drops two interrupt-safe guards out of order restores
//! the outer section's state while the inner lock is still held (interrupts may come back on
//! while a lock is held: a deadlock hazard if a handler takes that lock). That is a logic error,
//! not undefined behaviour: [`InterruptControl`]'s safety contract requires implementations to
//! stay memory-safe under out-of-order restores.
//!
//! The guards are not `Send` (`GuardNoSend`): the state must be restored on the CPU (thread)
//! that saved it.
//!
//! ```compile_fail
//! use veridian_sync::hosted::NoInterrupts;
//! use veridian_sync::lock::IrqTicketMutex;
//!
//! fn send_elsewhere<T: Send>(_: T) {}
//! let shared = IrqTicketMutex::<NoInterrupts, u32>::new(0);
//! send_elsewhere(shared.lock()); // error: the guard is not `Send`
//! ```
//!
//! What it guarantees: everything `R` guarantees, plus: while the guard lives, no interrupt
//! handler runs on the holder's CPU.

use core::fmt;
use core::marker::PhantomData;
use core::mem::MaybeUninit;

use lock_api::RawMutex;

use crate::env::InterruptControl;
use crate::primitives::UnsafeCell;

/// A raw lock `R` whose holder runs with interrupts disabled through `I`.
///
/// ```
/// use veridian_sync::hosted::NoInterrupts;
/// use veridian_sync::lock::IrqTicketMutex;
///
/// // In a kernel, `I` is the embedder's `InterruptControl` (cli/sti, or a preemption count).
/// let shared = IrqTicketMutex::<NoInterrupts, u32>::new(0);
/// *shared.lock() += 1;
/// ```
pub struct RawIrqLock<R, I: InterruptControl> {
    inner: R,
    /// The interrupt state the current holder found; written after each acquisition, read
    /// before each release, by the holder only.
    saved: UnsafeCell<MaybeUninit<I::State>>,
    _control: PhantomData<fn() -> I>,
}

// SAFETY: `saved` is the only field not already `Sync`; it is accessed only by the holder of
// `inner` (see `lock`, `try_lock`, `unlock`), so accesses never race: `inner`'s acquisition
// orders them after the previous holder's. The state may be saved by one thread and restored
// by another only through `unlock` called by whoever holds the lock, so it must be `Send`.
unsafe impl<R: Sync, I: InterruptControl> Sync for RawIrqLock<R, I> where I::State: Send {}

impl<R: RawMutex, I: InterruptControl> RawIrqLock<R, I> {
    /// Records the interrupt state found by the holder's `disable`.
    ///
    /// # Safety
    /// The caller holds `inner`.
    #[inline]
    unsafe fn save(&self, state: I::State) {
        // SAFETY: only the holder of `inner` touches `saved` (caller's guarantee), and the
        // acquisition ordered us after the previous holder's accesses.
        self.saved
            .with_mut(|saved| unsafe { (*saved).write(state) });
    }
}

// SAFETY: mutual exclusion is `R`'s (this wrapper calls `R::lock`/`R::try_lock`/`R::unlock` in
// matching pairs and adds nothing that could admit a second holder).
unsafe impl<R: RawMutex, I: InterruptControl> RawMutex for RawIrqLock<R, I> {
    #[allow(
        clippy::declare_interior_mutable_const,
        reason = "lock_api's initialiser pattern"
    )]
    const INIT: Self = Self {
        inner: R::INIT,
        saved: UnsafeCell::new(MaybeUninit::uninit()),
        _control: PhantomData,
    };
    /// The saved interrupt state belongs to the CPU that saved it.
    type GuardMarker = lock_api::GuardNoSend;

    #[inline]
    fn lock(&self) {
        let state = I::disable();
        self.inner.lock();
        // SAFETY: we hold `inner` now.
        unsafe { self.save(state) };
    }

    #[inline]
    fn try_lock(&self) -> bool {
        let state = I::disable();
        if self.inner.try_lock() {
            // SAFETY: we hold `inner` now.
            unsafe { self.save(state) };
            true
        } else {
            // SAFETY: `state` is what the `disable` just above returned, on this CPU, and no
            // section was opened since.
            unsafe { I::restore(state) };
            false
        }
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock (`RawMutex::unlock` contract), so `save` ran for
        // this acquisition and nobody else touches `saved` until we release `inner`.
        let state = self.saved.with(|saved| unsafe { (*saved).assume_init() });
        // SAFETY: the caller holds the lock.
        unsafe { self.inner.unlock() };
        // SAFETY: `state` is what the holder's `disable` returned (guards are `!Send`, so this
        // is the same CPU), restored once; out-of-order drops are memory-safe by the trait's
        // contract (module documentation).
        unsafe { I::restore(state) };
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }
}

impl<R: fmt::Debug, I: InterruptControl> fmt::Debug for RawIrqLock<R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawIrqLock")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}
