//! The lock validator (`lockdep` feature) through the hosted environment: each kind of report
//! provoked and checked for its names and call sites, reported once, and the patterns that
//! must not be reported (locks at different interrupt depths, interrupt-safe locks, clean
//! nesting). Run with `cargo test -p veridian-sync --features lockdep`.
//!
//! The validator's state is process-wide and the tests run in parallel, so every test uses
//! lock names of its own (prefixed with the test's name) and looks only at reports naming them.
//! The class table's overflow is tested in `lockdep_classes.rs` (its own process).
#![cfg(all(feature = "lockdep", not(loom)))]

use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use lock_api::RawMutex;
use veridian_sync::hosted::lockdep::{
    self as hosted, FakeInterrupts, in_interrupt, reports_involving,
};
use veridian_sync::lock::{IrqSpinLock, Mutex, MutexGuard, SpinLock};
use veridian_sync::lockdep::{self, Dependency, MAX_HELD, Report, Site};

fn setup() {
    assert!(hosted::install(), "another environment was installed");
}

/// Locks `m` and returns the guard and the call site the validator sees.
#[track_caller]
fn take<R: RawMutex, T>(m: &Mutex<R, T>) -> (MutexGuard<'_, R, T>, Site) {
    (m.lock(), Location::caller())
}

/// The only report naming `name` (fails if there are none or several).
fn only_report(name: &str) -> Report {
    let reports = reports_involving(name);
    assert_eq!(reports.len(), 1, "reports naming {name:?}: {reports:#?}");
    reports[0]
}

fn assert_no_reports(names: &[&str]) {
    for name in names {
        let reports = reports_involving(name);
        assert!(
            reports.is_empty(),
            "unexpected reports naming {name:?}: {reports:#?}"
        );
    }
}

#[test]
fn abba_in_one_thread_is_reported_with_both_names_and_sites() {
    setup();
    static A: SpinLock<u32> = SpinLock::new("abba1.A", 0);
    static B: SpinLock<u32> = SpinLock::new("abba1.B", 0);

    let first_b_site;
    {
        let (_a, _) = take(&A);
        let (_b, site) = take(&B);
        first_b_site = site;
    }
    assert_no_reports(&["abba1.A", "abba1.B"]);
    let before = lockdep::reports();

    let (_b, b_site) = take(&B);
    let (_a, a_site) = take(&A);
    let report = only_report("abba1.A");
    assert!(lockdep::reports() > before);
    let Report::OrderInversion {
        lock,
        site,
        held,
        held_site,
        chain,
    } = report
    else {
        panic!("wrong report: {report:?}");
    };
    assert_eq!((lock, held), ("abba1.A", "abba1.B"));
    assert_eq!((site, held_site), (a_site, b_site));
    assert_eq!(chain.len(), 1);
    assert_eq!(
        chain.edges().copied().collect::<Vec<_>>(),
        [Dependency {
            held: "abba1.A",
            taken: "abba1.B",
            site: first_b_site,
        }]
    );
    assert_eq!(
        report.to_string(),
        format!(
            "lockdep: lock order inversion: \"abba1.A\" taken at {a_site} while holding \
             \"abba1.B\" (taken at {b_site}), but \"abba1.B\" was taken at {first_b_site} while \
             holding \"abba1.A\""
        )
    );
}

#[test]
fn abba_across_two_threads_is_reported() {
    setup();
    static A: SpinLock<u32> = SpinLock::new("abba2.A", 0);
    static B: SpinLock<u32> = SpinLock::new("abba2.B", 0);

    thread::spawn(|| {
        let _a = A.lock();
        let _b = B.lock();
    })
    .join()
    .unwrap();
    assert_no_reports(&["abba2.A"]);
    thread::spawn(|| {
        let _b = B.lock();
        let _a = A.lock();
    })
    .join()
    .unwrap();
    let report = only_report("abba2.A");
    assert!(
        matches!(
            report,
            Report::OrderInversion {
                lock: "abba2.A",
                held: "abba2.B",
                ..
            }
        ),
        "{report:?}"
    );
}

#[test]
fn three_lock_cycle_is_reported_with_the_whole_chain() {
    setup();
    static A: SpinLock<()> = SpinLock::new("cycle3.A", ());
    static B: SpinLock<()> = SpinLock::new("cycle3.B", ());
    static C: SpinLock<()> = SpinLock::new("cycle3.C", ());

    let ab_site = {
        let _a = A.lock();
        take(&B).1
    };
    let bc_site = {
        let _b = B.lock();
        take(&C).1
    };
    assert_no_reports(&["cycle3.A", "cycle3.B", "cycle3.C"]);
    let (_c, c_site) = take(&C);
    let (_a, a_site) = take(&A);
    let report = only_report("cycle3.A");
    let Report::OrderInversion {
        lock,
        site,
        held,
        held_site,
        chain,
    } = report
    else {
        panic!("wrong report: {report:?}");
    };
    assert_eq!(
        (lock, site, held, held_site),
        ("cycle3.A", a_site, "cycle3.C", c_site)
    );
    assert_eq!(
        chain.edges().copied().collect::<Vec<_>>(),
        [
            Dependency {
                held: "cycle3.A",
                taken: "cycle3.B",
                site: ab_site,
            },
            Dependency {
                held: "cycle3.B",
                taken: "cycle3.C",
                site: bc_site,
            },
        ]
    );
    let text = report.to_string();
    assert!(
        text.contains(&format!(
            "\"cycle3.B\" was taken at {ab_site} while holding \"cycle3.A\""
        )) && text.contains(&format!(
            "\"cycle3.C\" was taken at {bc_site} while holding \"cycle3.B\""
        )),
        "{text}"
    );
}

#[test]
fn plain_lock_taken_in_handler_after_being_held_with_interrupts_on_is_reported() {
    setup();
    static X: SpinLock<u32> = SpinLock::new("irq1.X", 0);

    assert!(hosted::interrupts_enabled());
    let enabled_site = take(&X).1;
    assert_no_reports(&["irq1.X"]);
    let irq_site = in_interrupt(|| take(&X).1);
    let report = only_report("irq1.X");
    assert_eq!(
        report,
        Report::IrqUnsafe {
            lock: "irq1.X",
            irq_site,
            enabled_site,
        }
    );
    assert_eq!(
        report.to_string(),
        format!(
            "lockdep: interrupt-unsafe lock \"irq1.X\" taken in an interrupt handler at \
             {irq_site}; it is held with interrupts enabled at {enabled_site}"
        )
    );
}

#[test]
fn plain_lock_held_with_interrupts_on_after_being_taken_in_handler_is_reported() {
    setup();
    static X: SpinLock<u32> = SpinLock::new("irq2.X", 0);

    let irq_site = in_interrupt(|| take(&X).1);
    // Taken with interrupts off: still fine.
    hosted::set_interrupts_enabled(false);
    drop(X.lock());
    hosted::set_interrupts_enabled(true);
    assert_no_reports(&["irq2.X"]);
    let enabled_site = take(&X).1;
    assert_eq!(
        only_report("irq2.X"),
        Report::IrqUnsafe {
            lock: "irq2.X",
            irq_site,
            enabled_site,
        }
    );
}

#[test]
fn try_lock_in_handler_counts_as_interrupt_use() {
    setup();
    static X: SpinLock<u32> = SpinLock::new("irq3.X", 0);

    in_interrupt(|| drop(X.try_lock().unwrap()));
    drop(X.lock());
    assert!(matches!(only_report("irq3.X"), Report::IrqUnsafe { .. }));
}

#[test]
fn interrupt_safe_lock_is_never_reported_for_the_same_pattern() {
    setup();
    static Y: IrqSpinLock<FakeInterrupts, u32> = IrqSpinLock::new("irqsafe.Y", 0);

    assert!(hosted::interrupts_enabled());
    {
        let mut guard = Y.lock();
        assert!(!hosted::interrupts_enabled(), "interrupts on while held");
        *guard += 1;
    }
    assert!(hosted::interrupts_enabled(), "interrupt flag not restored");
    in_interrupt(|| *Y.lock() += 1);
    drop(Y.try_lock().unwrap());
    in_interrupt(|| drop(Y.try_lock().unwrap()));
    assert_eq!(*Y.lock(), 2);
    assert_no_reports(&["irqsafe.Y"]);
}

#[test]
fn recursive_acquisition_of_a_class_is_reported() {
    setup();
    // Two instances of one class: the second `lock` would deadlock if it were the same lock.
    let first = SpinLock::new("rec.R", 1);
    let second = SpinLock::new("rec.R", 2);

    let (_g1, held_site) = take(&first);
    assert_no_reports(&["rec.R"]);
    let (_g2, site) = take(&second);
    assert_eq!(
        only_report("rec.R"),
        Report::Recursive {
            lock: "rec.R",
            site,
            held_site,
        }
    );
    // The same instance again cannot be taken without waiting, and `try_lock` says so.
    assert!(first.try_lock().is_none());
}

#[test]
fn try_lock_adds_no_dependency_and_no_recursion() {
    setup();
    static A: SpinLock<()> = SpinLock::new("trylock.A", ());
    static B: SpinLock<()> = SpinLock::new("trylock.B", ());
    let a2 = SpinLock::new("trylock.A", ());

    {
        let _a = A.lock();
        let _b = B.lock();
        let _a2 = a2.try_lock().unwrap(); // same class, but cannot deadlock
    }
    {
        let _b = B.lock();
        let _a = A.try_lock().unwrap(); // the other order, but cannot deadlock
    }
    assert_no_reports(&["trylock.A", "trylock.B"]);
    // A try-locked lock is held: what is taken under it depends on it.
    let _b = B.try_lock().unwrap();
    let _a = A.lock();
    assert!(matches!(
        only_report("trylock.A"),
        Report::OrderInversion {
            lock: "trylock.A",
            held: "trylock.B",
            ..
        }
    ));
}

/// Checks for held locks as a context switch would; returns the site the validator sees.
#[track_caller]
fn switch() -> Site {
    lockdep::assert_no_locks_held();
    Location::caller()
}

#[test]
fn lock_held_across_a_switch_is_reported() {
    setup();
    static H: SpinLock<u32> = SpinLock::new("switch.H", 0);
    static I: IrqSpinLock<FakeInterrupts, u32> = IrqSpinLock::new("switch.I", 0);

    lockdep::assert_no_locks_held();
    let (guard, held_site) = take(&H);
    let expected_switch_site = switch();
    drop(guard);
    let report = only_report("switch.H");
    let Report::HeldAcrossSwitch {
        lock,
        held_site: reported_held_site,
        switch_site,
    } = report
    else {
        panic!("wrong report: {report:?}");
    };
    assert_eq!(
        (lock, reported_held_site, switch_site),
        ("switch.H", held_site, expected_switch_site)
    );
    assert!(
        report
            .to_string()
            .contains("held across a context switch at"),
        "{report}"
    );
    // A lock held by an interrupt handler is not the switching task's.
    in_interrupt(|| {
        let _i = I.lock();
        lockdep::assert_no_locks_held();
    });
    assert_no_reports(&["switch.I"]);
}

#[test]
fn locks_at_different_interrupt_depths_are_not_dependencies() {
    setup();
    static P: SpinLock<u32> = SpinLock::new("depth.P", 0);
    static Q: IrqSpinLock<FakeInterrupts, u32> = IrqSpinLock::new("depth.Q", 0);

    // Task holds P; an interrupt arrives and its handler takes Q: no P -> Q.
    {
        let _p = P.lock();
        in_interrupt(|| *Q.lock() += 1);
    }
    // Task takes Q, then P: Q -> P, which would close a cycle had P -> Q been recorded.
    {
        let _q = Q.lock();
        let _p = P.lock();
    }
    // A handler holding Q is interrupted by one that takes R: no Q -> R ...
    static R: IrqSpinLock<FakeInterrupts, u32> = IrqSpinLock::new("depth.R", 0);
    in_interrupt(|| {
        let _q = Q.lock();
        in_interrupt(|| *R.lock() += 1);
    });
    // ... so R -> Q closes no cycle either.
    {
        let _r = R.lock();
        let _q = Q.lock();
    }
    assert_no_reports(&["depth.P", "depth.Q", "depth.R"]);
}

#[test]
fn each_problem_is_reported_once() {
    setup();
    static A: SpinLock<()> = SpinLock::new("once.A", ());
    static B: SpinLock<()> = SpinLock::new("once.B", ());
    static X: SpinLock<()> = SpinLock::new("once.X", ());
    let r1 = SpinLock::new("once.R", ());
    let r2 = SpinLock::new("once.R", ());

    for _ in 0..3 {
        {
            let _a = A.lock();
            let _b = B.lock();
        }
        {
            let _b = B.lock();
            let _a = A.lock();
        }
        drop(X.lock());
        in_interrupt(|| drop(X.lock()));
        let _g1 = r1.lock();
        let _g2 = r2.lock();
        lockdep::assert_no_locks_held();
    }
    assert_eq!(reports_involving("once.A").len(), 1);
    assert_eq!(reports_involving("once.X").len(), 1);
    let r = reports_involving("once.R");
    assert_eq!(r.len(), 2, "{r:#?}"); // recursion, held across the switch
    assert!(r.iter().any(|r| matches!(r, Report::Recursive { .. })));
    assert!(
        r.iter()
            .any(|r| matches!(r, Report::HeldAcrossSwitch { .. }))
    );
}

#[test]
fn clean_nesting_reports_nothing() {
    setup();
    // A kernel-like hierarchy: process table -> process -> address space, with the run queue
    // (interrupt-safe) innermost, also taken by the timer handler.
    static TABLE: SpinLock<u32> = SpinLock::new("clean.table", 0);
    static RUNQ: IrqSpinLock<FakeInterrupts, u32> = IrqSpinLock::new("clean.runq", 0);
    let procs: Arc<Vec<SpinLock<u32>>> =
        Arc::new((0..4).map(|_| SpinLock::new("clean.proc", 0)).collect());
    let spaces: Arc<Vec<SpinLock<u32>>> =
        Arc::new((0..4).map(|_| SpinLock::new("clean.space", 0)).collect());

    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (procs, spaces) = (Arc::clone(&procs), Arc::clone(&spaces));
            thread::spawn(move || {
                for i in 0..200 {
                    let n = (t + i) % 4;
                    {
                        let _table = TABLE.lock();
                        let mut p = procs[n].lock();
                        *p += 1;
                        let mut s = spaces[n].lock();
                        *s += 1;
                        *RUNQ.lock() += 1;
                    }
                    {
                        let _p = procs[n].lock();
                        assert_eq!(lockdep::held_count(), 1);
                        in_interrupt(|| *RUNQ.lock() += 1);
                        let _s = spaces[n].lock();
                        assert_eq!(lockdep::held_count(), 2);
                    }
                    // Out of order release.
                    let table = TABLE.lock();
                    let p = procs[n].lock();
                    drop(table);
                    drop(p);
                    assert_eq!(lockdep::held_count(), 0);
                    lockdep::assert_no_locks_held();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(*RUNQ.lock(), 4 * 200 * 2);
    assert_no_reports(&["clean.table", "clean.runq", "clean.proc", "clean.space"]);
}

#[test]
fn held_count_follows_out_of_order_releases() {
    setup();
    let a = SpinLock::new("count.A", ());
    let b = SpinLock::new("count.B", ());
    let c = SpinLock::new("count.C", ());
    assert_eq!(lockdep::held_count(), 0);
    let ga = a.lock();
    let gb = b.lock();
    let gc = c.try_lock().unwrap();
    assert_eq!(lockdep::held_count(), 3);
    drop(gb);
    assert_eq!(lockdep::held_count(), 2);
    drop(ga);
    assert_eq!(lockdep::held_count(), 1);
    let gb = b.lock();
    assert_eq!(lockdep::held_count(), 2);
    drop(gc);
    drop(gb);
    assert_eq!(lockdep::held_count(), 0);
    assert_no_reports(&["count.A", "count.B", "count.C"]);
}

#[test]
fn too_many_held_locks_is_reported_once_and_does_not_panic() {
    setup();
    let locks: Vec<SpinLock<usize>> = (0..MAX_HELD + 3)
        .map(|i| SpinLock::new("overflow.L", i))
        .collect();
    // `try_lock`: one class, nested, without a recursion report.
    let guards: Vec<_> = locks.iter().map(|l| l.try_lock().unwrap()).collect();
    assert_eq!(lockdep::held_count(), MAX_HELD);
    let reports = reports_involving("overflow.L");
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert!(matches!(
        reports[0],
        Report::TooManyHeld {
            lock: "overflow.L",
            ..
        }
    ));
    assert!(guards.iter().enumerate().all(|(i, g)| **g == i));
    drop(guards);
    assert_eq!(lockdep::held_count(), 0);
}

#[test]
fn mutex_still_excludes_with_the_validator_on() {
    setup();
    const THREADS: usize = 8;
    const PER_THREAD: usize = 20_000;
    static COUNTER: SpinLock<usize> = SpinLock::new("exclusion.counter", 0);
    static INSIDE: AtomicBool = AtomicBool::new(false);

    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            thread::spawn(|| {
                for i in 0..PER_THREAD {
                    let mut guard = if i % 3 == 0 {
                        loop {
                            if let Some(g) = COUNTER.try_lock() {
                                break g;
                            }
                            std::hint::spin_loop();
                        }
                    } else {
                        COUNTER.lock()
                    };
                    assert!(!INSIDE.swap(true, Ordering::Relaxed), "two holders");
                    let value = *guard;
                    std::hint::black_box(());
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
    assert_no_reports(&["exclusion.counter"]);
}
