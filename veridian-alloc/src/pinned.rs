//! The rule for the heap's and the pool's internal locks: taken only under a `CpuLocal` guard.
//!
//! Every internal lock (the heap's buddy lock and shared-slot lock, the pool's depot and
//! shared-slot locks) is a [`PinnedMutex`], whose `lock` asks for a [`Pinned`] token. A token
//! borrows what [`CpuLocal::enter`](crate::CpuLocal::enter) returned, so it exists only while
//! the caller holds that guard (or was refused one: `enter` returned `None`, and there is no
//! guard to hold). The lock is therefore always released before the guard is dropped.
//!
//! Each lock is also held inside the embedder's lock section
//! ([`CpuLocal::lock_section`](crate::CpuLocal::lock_section), nothing by default), taken just
//! before the lock and ended just after it is released ([`SectionGuard`]).
//!
//! Why: a lock held with interrupts on can be interrupted, on the same CPU, by a handler that
//! allocates and spins on the same lock forever. In a kernel either the guard disables
//! interrupts (and with them preemption), or the guard only pins the thread (a preemption
//! count) and the lock section disables interrupts; either way an embedder gets an allocator
//! that interrupt handlers may use.
//!
//! The raw lock is any [`lock_api::RawMutex`] (the heap's `L` parameter, the embedder's choice;
//! [`SpinLock`] by default). The token is zero-sized: it costs nothing at run time. In this
//! crate's own unit tests each acquisition also reports to `crate::testing`, which checks that a
//! fake guard was held.

use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use lock_api::{Mutex, MutexGuard, RawMutex};

/// The default raw lock of the heap and the pool: `spin`'s test-and-set spin lock (no OS
/// needed). An embedder may pick any other [`lock_api::RawMutex`] (a ticket lock, a lock that
/// also counts contention, ...) through [`Heap`](crate::Heap)'s `L` parameter.
pub type SpinLock = spin::mutex::SpinMutex<()>;

/// Evidence that the current context holds what `CpuLocal::enter` returned, for `'g`.
#[derive(Clone, Copy)]
pub(crate) struct Pinned<'g>(PhantomData<&'g ()>);

impl<'g> Pinned<'g> {
    /// A token that lives no longer than `entered`, the value `CpuLocal::enter` returned: the
    /// guard inside it (if any) is held while the token exists.
    #[inline(always)]
    pub(crate) fn new<G>(entered: &'g Option<(usize, G)>) -> Self {
        let _ = entered;
        Self(PhantomData)
    }

    /// A token that lives no longer than `guard`, the guard `CpuLocal::enter_slot` returned.
    #[inline(always)]
    pub(crate) fn held<G>(guard: &'g G) -> Self {
        let _ = guard;
        Self(PhantomData)
    }
}

/// A lock that can only be locked with a [`Pinned`] token (or through `&mut`).
pub(crate) struct PinnedMutex<T, L: RawMutex = SpinLock>(Mutex<L, T>);

impl<T, L: RawMutex> PinnedMutex<T, L> {
    pub(crate) const fn new(value: T) -> Self {
        Self(Mutex::const_new(L::INIT, value))
    }

    /// Locks; the returned guard cannot outlive `'g`, the caller's `CpuLocal` guard. `section`
    /// is what [`CpuLocal::lock_section`](crate::CpuLocal::lock_section) returned just before:
    /// it is kept until after the lock is released.
    #[inline]
    pub(crate) fn lock<'a, 'g: 'a, S>(
        &'a self,
        pinned: Pinned<'g>,
        section: S,
    ) -> SectionGuard<MutexGuard<'a, L, T>, S> {
        let _ = pinned;
        #[cfg(all(test, feature = "std"))]
        crate::testing::on_internal_lock();
        SectionGuard::new(self.0.lock(), section)
    }

    /// The value, through exclusive access (no lock, no guard needed).
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.0.get_mut()
    }
}

/// A lock guard (or any value) together with the embedder's lock section: `inner` is dropped
/// first (fields drop in declaration order), so the lock is released inside the section.
pub(crate) struct SectionGuard<G, S> {
    inner: G,
    _section: S,
}

impl<G, S> SectionGuard<G, S> {
    /// `inner` held inside `section` (dropped before it).
    #[inline(always)]
    pub(crate) fn new(inner: G, section: S) -> Self {
        Self {
            inner,
            _section: section,
        }
    }
}

impl<G: Deref, S> Deref for SectionGuard<G, S> {
    type Target = G::Target;
    #[inline(always)]
    fn deref(&self) -> &G::Target {
        &self.inner
    }
}

impl<G: DerefMut, S> DerefMut for SectionGuard<G, S> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.inner
    }
}
