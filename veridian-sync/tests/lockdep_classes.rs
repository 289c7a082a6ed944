//! The lock validator's class table filling up: one `TooManyClasses` report, no panic, the
//! locks keep working, and the classes registered before still are checked. In a file (so a
//! process) of its own, because a full table would starve the other tests of classes.
//! Run with `cargo test -p veridian-sync --features lockdep`.
#![cfg(all(feature = "lockdep", not(loom)))]

use veridian_sync::hosted::lockdep::{self as hosted, reports, reports_involving};
use veridian_sync::lock::SpinLock;
use veridian_sync::lockdep::{self, MAX_CLASSES, Report};

#[test]
fn full_class_table_is_reported_once_and_does_not_panic() {
    assert!(hosted::install());
    static A: SpinLock<()> = SpinLock::new("full.A", ());
    static B: SpinLock<()> = SpinLock::new("full.B", ());
    {
        let _a = A.lock();
        let _b = B.lock();
    }
    let locks: Vec<SpinLock<usize>> = (0..MAX_CLASSES + 10)
        .map(|i| SpinLock::new(String::leak(format!("full.class{i}")), i))
        .collect();
    for _ in 0..2 {
        for (i, lock) in locks.iter().enumerate() {
            let mut guard = lock.lock();
            assert_eq!(*guard, i);
            *guard = i;
            drop(lock.try_lock());
        }
    }
    let all = reports();
    assert_eq!(all.len(), 1, "{all:#?}");
    // Two classes were registered before, so the (MAX_CLASSES - 2)-th new one is the first
    // that does not fit.
    let first_out = format!("full.class{}", MAX_CLASSES - 2);
    assert!(
        matches!(all[0], Report::TooManyClasses { lock, .. } if lock == first_out),
        "{all:#?}"
    );
    assert_eq!(lockdep::held_count(), 0);
    // Untracked locks hold no entry; the classes that fit are still checked.
    let _g = locks[MAX_CLASSES + 5].lock();
    assert_eq!(lockdep::held_count(), 0);
    let _b = B.lock();
    let _a = A.lock();
    assert!(matches!(
        reports_involving("full.A")[..],
        [Report::OrderInversion {
            lock: "full.A",
            held: "full.B",
            ..
        }]
    ));
}
