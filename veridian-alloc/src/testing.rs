//! Fakes for this crate's unit tests: a `CpuLocal` whose guard "disables interrupts" (sets a
//! thread-local flag), a `PageSource` that checks the flag, a report of every internal lock
//! taken, and a layout check for the chunks `hosted::SystemPages` takes from the system
//! allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::System;
use std::sync::Mutex;
use std::vec::Vec;

use crate::env::{CpuLocal, PageSource};
use crate::hosted::SystemPages;

std::thread_local! {
    /// Set while a [`FakeCpu`] guard (or, for [`FakeCpu::pin_only`], its lock section) lives on
    /// this thread: "interrupts are off".
    static INTERRUPTS_OFF: Cell<bool> = const { Cell::new(false) };
    /// Set while a [`FakeCpu::pin_only`] guard lives on this thread: "preemption is off".
    static PINNED: Cell<bool> = const { Cell::new(false) };
    /// Internal locks taken on this thread, and those taken without the flag.
    static LOCKS: Cell<usize> = const { Cell::new(0) };
    static UNGUARDED_LOCKS: Cell<usize> = const { Cell::new(0) };
    /// `FakeCpu::enter` called while this thread already held a guard: two guards for one slot.
    static NESTED_ENTERS: Cell<usize> = const { Cell::new(0) };
}

/// Called by `PinnedMutex::lock` in unit tests.
pub(crate) fn on_internal_lock() {
    LOCKS.with(|c| c.set(c.get() + 1));
    if !interrupts_off() {
        UNGUARDED_LOCKS.with(|c| c.set(c.get() + 1));
    }
}

/// Whether a [`FakeCpu`] guard is held on this thread.
pub(crate) fn interrupts_off() -> bool {
    INTERRUPTS_OFF.with(Cell::get)
}

/// What happened on this thread since the last [`LockReport::take`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LockReport {
    /// Internal locks taken.
    pub locks: usize,
    /// Internal locks taken while no guard was held.
    pub unguarded: usize,
    /// Guards entered while one was already held.
    pub nested_enters: usize,
}

impl LockReport {
    /// The counts since the last call, which resets them.
    pub(crate) fn take() -> Self {
        Self {
            locks: LOCKS.with(|c| c.replace(0)),
            unguarded: UNGUARDED_LOCKS.with(|c| c.replace(0)),
            nested_enters: NESTED_ENTERS.with(|c| c.replace(0)),
        }
    }
}

/// A single-threaded `CpuLocal` whose guard sets [`interrupts_off`], as a kernel's guard
/// disables interrupts; `enter` always returns `slot` (or `None` when `slot` is `None`), and
/// counts its calls. Made with [`FakeCpu::pin_only`], the guard only "pins" (a separate flag,
/// as a kernel's preemption count) and [`CpuLocal::lock_section`] sets [`interrupts_off`]
/// instead.
pub(crate) struct FakeCpu {
    slot: Option<usize>,
    pin_only: bool,
    enters: AtomicUsize,
}

impl FakeCpu {
    pub(crate) const fn new(slot: Option<usize>) -> Self {
        Self {
            slot,
            pin_only: false,
            enters: AtomicUsize::new(0),
        }
    }

    /// A guard that only pins; the lock section "disables interrupts".
    pub(crate) const fn pin_only(slot: Option<usize>) -> Self {
        Self {
            slot,
            pin_only: true,
            enters: AtomicUsize::new(0),
        }
    }

    /// Calls of `enter` so far.
    pub(crate) fn enters(&self) -> usize {
        self.enters.load(Ordering::Relaxed)
    }
}

/// Restores the previous state of one flag on drop.
pub(crate) struct FakeGuard {
    flag: &'static std::thread::LocalKey<Cell<bool>>,
    was_set: bool,
    _not_send: PhantomData<*const ()>,
}

impl FakeGuard {
    /// Sets `flag`; counts a nested enter when `nested_check` and it was already set.
    fn set(flag: &'static std::thread::LocalKey<Cell<bool>>, nested_check: bool) -> Self {
        let was_set = flag.with(|c| c.replace(true));
        if was_set && nested_check {
            NESTED_ENTERS.with(|c| c.set(c.get() + 1));
        }
        Self {
            flag,
            was_set,
            _not_send: PhantomData,
        }
    }
}

impl Drop for FakeGuard {
    fn drop(&mut self) {
        self.flag.with(|c| c.set(self.was_set));
    }
}

// SAFETY: used by one thread at a time in the tests (each test builds its own); a nested
// `enter` on that thread (two guards for the one slot) is counted and reported as a failure.
unsafe impl CpuLocal for FakeCpu {
    type Guard = FakeGuard;

    fn max_slots(&self) -> usize {
        self.slot.map_or(0, |s| s + 1)
    }

    fn enter(&self) -> Option<(usize, FakeGuard)> {
        self.enters.fetch_add(1, Ordering::Relaxed);
        let slot = self.slot?;
        let flag = if self.pin_only {
            &PINNED
        } else {
            &INTERRUPTS_OFF
        };
        Some((slot, FakeGuard::set(flag, true)))
    }

    fn lock_section(&self) -> impl Sized {
        self.pin_only
            .then(|| FakeGuard::set(&INTERRUPTS_OFF, false))
    }
}

/// `SystemPages` that counts its calls, and the calls made while no [`FakeCpu`] guard was held.
#[derive(Default)]
pub(crate) struct CheckedPages {
    pub calls: AtomicUsize,
    pub unguarded_calls: AtomicUsize,
}

impl CheckedPages {
    fn check(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !interrupts_off() {
            self.unguarded_calls.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: forwards to `SystemPages`, which upholds the contract.
unsafe impl PageSource for CheckedPages {
    fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
        self.check();
        SystemPages.allocate_chunk(len, align)
    }

    unsafe fn release_chunk(&self, ptr: NonNull<u8>, len: usize) {
        self.check();
        // SAFETY: forwarded contract.
        unsafe { SystemPages.release_chunk(ptr, len) }
    }
}

/// Layouts of the system allocations `SystemPages` holds (address, layout), and the frees whose
/// layout differed from the allocation's (address, allocated with, freed with).
static LIVE_CHUNKS: Mutex<Vec<(usize, Layout)>> = Mutex::new(Vec::new());
static BAD_FREES: Mutex<Vec<(usize, Layout, Layout)>> = Mutex::new(Vec::new());

/// `std::alloc::System` for `SystemPages` in unit tests: records every layout and checks that
/// each block is freed with the layout it was allocated with (`GlobalAlloc`'s contract, which
/// neither glibc nor Miri checks for the system allocator). A wrong free is recorded, and the
/// block is freed with its real layout.
pub(crate) struct CheckedSystem;

// SAFETY: forwards to `System`, which upholds `GlobalAlloc`'s contract; the bookkeeping does
// not touch the blocks, and a block is always freed with the layout `System` allocated it with.
unsafe impl GlobalAlloc for CheckedSystem {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_CHUNKS.lock().unwrap().push((ptr as usize, layout));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let actual = {
            let mut live = LIVE_CHUNKS.lock().unwrap();
            let at = live
                .iter()
                .position(|&(p, _)| p == ptr as usize)
                .expect("SystemPages freed a block it never allocated");
            live.swap_remove(at).1
        };
        if actual != layout {
            BAD_FREES
                .lock()
                .unwrap()
                .push((ptr as usize, actual, layout));
        }
        // SAFETY: `ptr` was allocated by `System` with `actual` and is given up by the caller.
        unsafe { System.dealloc(ptr, actual) };
    }
}

/// Frees of the block at `addr` made with a layout other than its allocation's.
pub(crate) fn bad_frees_at(addr: usize) -> Vec<(usize, Layout, Layout)> {
    BAD_FREES
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|f| f.0 == addr)
        .collect()
}
