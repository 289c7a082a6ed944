//! The named [`Mutex`](veridian_sync::lock::Mutex) (`SpinLock`, `IrqSpinLock`) with or without
//! the `lockdep` feature: mutual exclusion, `try_lock`, the plain accessors, statics; and,
//! without the feature, that it is exactly a `lock_api::Mutex` in size and does no validation.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use veridian_sync::hosted::NoInterrupts;
use veridian_sync::hosted::lockdep::FakeInterrupts;
use veridian_sync::lock::{IrqSpinLock, SpinLock};

#[test]
fn spin_lock_excludes() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 20_000;
    static COUNTER: SpinLock<usize> = SpinLock::new("mutex.counter", 0);
    static INSIDE: AtomicBool = AtomicBool::new(false);

    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            thread::spawn(|| {
                for _ in 0..PER_THREAD {
                    let mut guard = COUNTER.lock();
                    assert!(!INSIDE.swap(true, Ordering::Relaxed), "two holders");
                    let value = *guard;
                    thread::yield_now();
                    *guard = value + 1;
                    INSIDE.store(false, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*COUNTER.lock(), THREADS * PER_THREAD);
}

#[test]
fn try_lock_and_accessors() {
    let mut lock = SpinLock::new("mutex.accessors", vec![1]);
    assert!(!lock.is_locked());
    {
        let mut guard = lock.try_lock().unwrap();
        guard.push(2);
        assert!(lock.is_locked());
        assert!(lock.try_lock().is_none());
        assert_eq!(format!("{guard:?}"), "[1, 2]");
    }
    assert!(!lock.is_locked());
    lock.get_mut().push(3);
    if cfg!(feature = "lockdep") {
        assert_eq!(lock.name(), "mutex.accessors");
    } else {
        assert_eq!(lock.name(), "");
    }
    assert!(format!("{lock:?}").contains("locked: false"));
    assert_eq!(lock.into_inner(), [1, 2, 3]);
}

#[test]
fn irq_spin_lock_keeps_interrupts_off_while_held() {
    static SHARED: IrqSpinLock<FakeInterrupts, u32> = IrqSpinLock::new("mutex.irq", 0);
    static PLAIN: IrqSpinLock<NoInterrupts, u32> = IrqSpinLock::new("mutex.irq_plain", 0);

    assert!(veridian_sync::hosted::lockdep::interrupts_enabled());
    {
        let mut guard = SHARED.lock();
        assert!(!veridian_sync::hosted::lockdep::interrupts_enabled());
        *guard += 1;
    }
    assert!(veridian_sync::hosted::lockdep::interrupts_enabled());
    *PLAIN.lock() += 1;
    assert_eq!((*SHARED.lock(), *PLAIN.lock()), (1, 1));
}

#[test]
fn guard_is_sync_when_the_value_is() {
    fn is_sync<T: Sync>(_: &T) {}
    let lock = SpinLock::new("mutex.sync", 0u32);
    let guard = lock.lock();
    is_sync(&guard);
    thread::scope(|s| {
        s.spawn(|| assert_eq!(*guard, 0));
    });
}

#[cfg(not(feature = "lockdep"))]
#[test]
fn without_the_feature_it_is_a_plain_lock_api_mutex() {
    use std::mem::size_of;
    use veridian_sync::lock::{RawTicketLock, TicketMutex, TicketMutexGuard};
    use veridian_sync::lockdep;

    assert_eq!(size_of::<SpinLock<u64>>(), size_of::<TicketMutex<u64>>());
    assert_eq!(size_of::<SpinLock<()>>(), size_of::<RawTicketLock>());
    assert_eq!(
        size_of::<veridian_sync::lock::SpinLockGuard<'static, u64>>(),
        size_of::<TicketMutexGuard<'static, u64>>()
    );
    const { assert!(!lockdep::ENABLED) };
    assert!(!veridian_sync::hosted::lockdep::install());
    let a = SpinLock::new("plain.A", ());
    let b = SpinLock::new("plain.B", ());
    {
        let _a = a.lock();
        let _b = b.lock();
        assert_eq!(lockdep::held_count(), 0);
    }
    let _b = b.lock();
    let _a = a.lock();
    lockdep::assert_no_locks_held();
    assert_eq!(lockdep::reports(), 0);
    assert!(veridian_sync::hosted::lockdep::reports().is_empty());
}
