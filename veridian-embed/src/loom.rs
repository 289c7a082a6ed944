//! The atomics and the cell that the model-checked code of the Veridian crates uses: `core`'s
//! normally, [loom](https://docs.rs/loom)'s when the build sets `--cfg loom` (as their loom
//! model checks do), so that the models check the real code.
//!
//! One facade for veridian-sync, -io, -perf and -sched (each imports what it needs from here);
//! not an embedder trait, and nothing an embedder needs to name. Without `cfg(loom)` it is
//! `core` re-exported plus [`UnsafeCell`], a `#[repr(transparent)]` wrapper of
//! `core::cell::UnsafeCell` with loom's closure-based interface (`with`, `with_mut`), which
//! under loom is loom's own cell so that the model sees every access to shared non-atomic
//! data. `cfg(loom)` is set for every crate of a build at once (`RUSTFLAGS="--cfg loom"`), so
//! this crate and its users always agree on which types these are.

#[cfg(loom)]
pub use ::loom::cell::UnsafeCell;
#[cfg(loom)]
pub use ::loom::hint::spin_loop;
#[cfg(loom)]
pub use ::loom::sync::atomic::{
    AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering, fence,
};

#[cfg(not(loom))]
pub use core::hint::spin_loop;
#[cfg(not(loom))]
pub use core::sync::atomic::{
    AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering, fence,
};

/// `core::cell::UnsafeCell` with loom's access interface (loom's `UnsafeCell` under
/// `cfg(loom)`).
#[cfg(not(loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct UnsafeCell<T: ?Sized>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

#[cfg(not(loom))]
impl<T: ?Sized> UnsafeCell<T> {
    /// Runs `f` with a shared raw pointer to the contents (creating it is safe; reading
    /// through it is the caller's `unsafe`, under the same rules as
    /// `core::cell::UnsafeCell::get`).
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a mutable raw pointer to the contents (as [`UnsafeCell::with`], for
    /// writes).
    #[inline(always)]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
