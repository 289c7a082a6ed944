//! [`Mutex`]: a `lock_api` mutex that carries a lock-class name for the lock validator.
//!
//! What it does: wraps `lock_api::Mutex<R, T>` for any raw lock `R` (so [`super::SpinLock`]
//! and [`super::IrqSpinLock`] are this type over the ticket lock and its interrupt-safe
//! version). Without the `lockdep` feature it is exactly that mutex (`#[repr(transparent)]`,
//! methods forwarding to it, the name discarded). With the feature, each blocking `lock` is
//! checked by [`crate::lockdep`] before the raw lock is taken and recorded after, each
//! successful `try_lock` recorded, and each guard's drop reports the release before the raw
//! unlock; the caller's location (`#[track_caller]`) is the call site in the reports.
//!
//! What it relies on: `R`'s mutual exclusion, which it neither adds to nor weakens.
//!
//! What it guarantees: what `lock_api::Mutex<R, T>` guarantees. The guard is never `Send`
//! (whatever `R::GuardMarker` says): the validator's record of a held lock belongs to the
//! context that took it.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use lock_api::RawMutex;

#[cfg(feature = "lockdep")]
use crate::lockdep;

/// A mutex on the raw lock `R` with a lock-class name for the lock validator
/// ([`crate::lockdep`]).
///
/// Without the `lockdep` feature this is a `lock_api::Mutex<R, T>` (`#[repr(transparent)]`,
/// the name discarded). With it, a blocking [`lock`](Mutex::lock) is checked before the raw
/// lock is taken and recorded as held after, a successful [`try_lock`](Mutex::try_lock) is
/// recorded, and the guard's drop reports the release before unlocking; the caller's location
/// (`#[track_caller]`) is the site named in reports. All mutexes with the same name are one
/// class.
///
/// ```
/// use veridian_sync::lock::SpinLock;
///
/// static COUNTER: SpinLock<u64> = SpinLock::new("counter", 0);
///
/// *COUNTER.lock() += 1;
/// assert_eq!(*COUNTER.lock(), 1);
/// ```
///
/// The guard is never `Send`, whatever `R` allows: the validator's record of a held lock
/// belongs to the context that took it.
///
/// ```compile_fail
/// use veridian_sync::lock::SpinLock;
///
/// fn send_elsewhere<T: Send>(_: T) {}
/// let shared = SpinLock::new("shared", 0u32);
/// send_elsewhere(shared.lock()); // error: the guard is not `Send`
/// ```
#[cfg_attr(not(feature = "lockdep"), repr(transparent))]
pub struct Mutex<R: RawMutex, T: ?Sized> {
    #[cfg(feature = "lockdep")]
    class: lockdep::ClassKey,
    inner: lock_api::Mutex<R, T>,
}

impl<R: RawMutex, T> Mutex<R, T> {
    /// An unlocked mutex holding `value`, of lock class `name` (all mutexes with the same name
    /// are one class for the validator; the name is discarded when the feature is off).
    #[inline]
    pub const fn new(name: &'static str, value: T) -> Self {
        #[cfg(not(feature = "lockdep"))]
        let _ = name;
        Self {
            #[cfg(feature = "lockdep")]
            class: lockdep::ClassKey::new(name),
            inner: lock_api::Mutex::new(value),
        }
    }

    /// Consumes the mutex and returns the value.
    #[inline]
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<R: RawMutex, T: ?Sized> Mutex<R, T> {
    /// Acquires the lock, waiting as `R` waits; the guard releases it on drop.
    #[inline]
    #[cfg_attr(feature = "lockdep", track_caller)]
    pub fn lock(&self) -> MutexGuard<'_, R, T> {
        #[cfg(feature = "lockdep")]
        let pending = lockdep::before_lock(&self.class, core::panic::Location::caller());
        let inner = self.inner.lock();
        MutexGuard {
            inner,
            #[cfg(feature = "lockdep")]
            held: lockdep::after_lock(pending),
            _not_send: PhantomData,
        }
    }

    /// Acquires the lock if `R` can without waiting.
    #[inline]
    #[cfg_attr(feature = "lockdep", track_caller)]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, R, T>> {
        let inner = self.inner.try_lock()?;
        Some(MutexGuard {
            inner,
            #[cfg(feature = "lockdep")]
            held: lockdep::after_try_lock(&self.class, core::panic::Location::caller()),
            _not_send: PhantomData,
        })
    }

    /// The value, through exclusive access to the mutex (no locking).
    #[inline]
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    /// Whether the lock is held (a snapshot that may be stale by the time it returns).
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// The lock-class name given to [`Mutex::new`]; `""` when the `lockdep` feature is off
    /// (the name is not stored then).
    #[inline]
    pub fn name(&self) -> &'static str {
        #[cfg(feature = "lockdep")]
        return self.class.name();
        #[cfg(not(feature = "lockdep"))]
        ""
    }
}

impl<R: RawMutex, T: ?Sized> fmt::Debug for Mutex<R, T> {
    /// Shows the name and whether the lock is held, never the value (that would need the lock).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("name", &self.name())
            .field("locked", &self.is_locked())
            .finish_non_exhaustive()
    }
}

/// Makes [`MutexGuard`] `!Send` without making it `!Sync`.
struct NotSend(#[allow(dead_code, reason = "a marker")] *const ());

// SAFETY: a zero-sized marker that is never constructed; it holds no data to share. Only its
// `!Send` matters.
unsafe impl Sync for NotSend {}

/// The guard of a [`Mutex`]: derefs to the value; releases the lock on drop.
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, R: RawMutex, T: ?Sized> {
    inner: lock_api::MutexGuard<'a, R, T>,
    /// The validator's record of this acquisition (`None` if not tracked).
    #[cfg(feature = "lockdep")]
    held: Option<lockdep::Held>,
    _not_send: PhantomData<NotSend>,
}

impl<R: RawMutex, T: ?Sized> Deref for MutexGuard<'_, R, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<R: RawMutex, T: ?Sized> DerefMut for MutexGuard<'_, R, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

#[cfg(feature = "lockdep")]
impl<R: RawMutex, T: ?Sized> Drop for MutexGuard<'_, R, T> {
    /// Reports the release, then (as `inner` drops) unlocks.
    #[inline]
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            lockdep::release(held);
        }
    }
}

impl<R: RawMutex, T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<R: RawMutex, T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
