//! Ticket, MCS and interrupt-safe locks: mutual exclusion under contention, `try_lock`
//! semantics, FIFO order of the ticket lock, and the interrupt discipline of `IrqMutex` checked
//! against a fake `InterruptControl`.
// The real-thread tests; the loom models are in `loom_*.rs`.
#![cfg(not(loom))]

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::thread;
use std::time::Duration;

use veridian_sync::InterruptControl;
use veridian_sync::hosted::NoInterrupts;
use veridian_sync::lock::{
    IrqMcsMutex, IrqMutex, IrqTicketMutex, McsMutex, RawMcsLock, RawTicketLock, TicketMutex,
};
use veridian_sync::lock_api::{GuardNoSend, Mutex, RawMutex};

mod common;
use common::scaled;

/// `threads` threads each increment a plain (non-atomic) counter `per_thread` times under the
/// lock, with a read-yield-write that makes a lost update likely if exclusion fails, and check
/// that nobody else is ever inside.
fn check_mutual_exclusion<R>(threads: usize, per_thread: usize)
where
    R: RawMutex + Send + Sync + 'static,
{
    struct Shared<R: RawMutex> {
        counter: Mutex<R, u64>,
        inside: AtomicUsize,
    }
    let shared = Arc::new(Shared::<R> {
        counter: Mutex::new(0),
        inside: AtomicUsize::new(0),
    });
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let shared = shared.clone();
            thread::spawn(move || {
                for i in 0..per_thread {
                    let mut guard = shared.counter.lock();
                    assert_eq!(
                        shared.inside.fetch_add(1, Ordering::Relaxed),
                        0,
                        "two holders"
                    );
                    let value = *guard;
                    if i % 64 == 0 {
                        thread::yield_now();
                    }
                    *guard = std::hint::black_box(value) + 1;
                    shared.inside.fetch_sub(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(*shared.counter.lock(), (threads * per_thread) as u64);
}

#[test]
fn ticket_mutual_exclusion() {
    check_mutual_exclusion::<RawTicketLock>(4, scaled(20_000));
}

#[test]
fn mcs_mutual_exclusion() {
    check_mutual_exclusion::<RawMcsLock>(4, scaled(20_000));
}

#[test]
fn mcs_mutual_exclusion_many_threads() {
    // More threads than CPUs: deep queues, preempted waiters.
    check_mutual_exclusion::<RawMcsLock>(8, scaled(10_000));
}

#[test]
fn irq_locks_mutual_exclusion() {
    check_mutual_exclusion::<veridian_sync::lock::RawIrqLock<RawTicketLock, NoInterrupts>>(
        4,
        scaled(10_000),
    );
    check_mutual_exclusion::<veridian_sync::lock::RawIrqLock<RawMcsLock, NoInterrupts>>(
        4,
        scaled(10_000),
    );
}

fn check_try_lock<R: RawMutex + Send + Sync + 'static>() {
    let mutex = Arc::new(Mutex::<R, u32>::new(1));
    assert!(!mutex.is_locked());
    {
        let guard = mutex.try_lock().expect("free lock");
        assert_eq!(*guard, 1);
        assert!(mutex.is_locked());
        assert!(
            mutex.try_lock().is_none(),
            "try_lock succeeded on a held lock"
        );
        let other = mutex.clone();
        assert!(
            thread::spawn(move || other.try_lock().is_none())
                .join()
                .unwrap()
        );
    }
    assert!(!mutex.is_locked());
    *mutex.lock() += 1;
    assert_eq!(*mutex.try_lock().unwrap(), 2);
    // While another thread waits in `lock`, `try_lock` must still fail, and the waiter must
    // get the lock afterwards.
    let guard = mutex.lock();
    let waiter = {
        let mutex = mutex.clone();
        thread::spawn(move || *mutex.lock() += 10)
    };
    thread::sleep(Duration::from_millis(if cfg!(miri) { 1 } else { 20 }));
    assert!(mutex.try_lock().is_none());
    drop(guard);
    waiter.join().unwrap();
    assert_eq!(*mutex.lock(), 12);
    assert!(!mutex.is_locked());
}

#[test]
fn ticket_try_lock() {
    check_try_lock::<RawTicketLock>();
}

#[test]
fn mcs_try_lock() {
    check_try_lock::<RawMcsLock>();
}

#[test]
fn ticket_lock_serves_waiters_in_ticket_order() {
    let waiters = if cfg!(miri) { 3 } else { 6 };
    let lock = Arc::new(RawTicketLock::new());
    let order = Arc::new(StdMutex::new(Vec::new()));
    lock.lock();
    assert_eq!(lock.queued(), 1);
    let handles: Vec<_> = (0..waiters)
        .map(|id| {
            let (lock2, order) = (lock.clone(), order.clone());
            let handle = thread::spawn(move || {
                lock2.lock();
                order.lock().unwrap().push(id);
                // SAFETY: we hold the lock (acquired just above).
                unsafe { lock2.unlock() };
            });
            // Spawn the next waiter only once this one has taken its ticket.
            while lock.queued() != id + 2 {
                thread::yield_now();
            }
            handle
        })
        .collect();
    assert!(!lock.try_lock());
    // SAFETY: the main thread took the lock above.
    unsafe { lock.unlock() };
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..waiters).collect::<Vec<_>>());
    assert!(!lock.is_locked());
}

#[test]
fn forgotten_guard_leaves_lock_held_even_after_a_move() {
    // The MCS lock marks "held" in its lock word and holds no pointer to itself, so moving a lock
    // whose guard was forgotten leaves nothing dangling (Miri checks this).
    let mcs = McsMutex::new(5u8);
    std::mem::forget(mcs.lock());
    let moved = Box::new(mcs);
    assert!(moved.is_locked());
    assert!(moved.try_lock().is_none());
    // SAFETY: the lock is held by the forgotten guard, whose critical section is over.
    unsafe { moved.force_unlock() };
    assert_eq!(*moved.lock(), 5);

    let ticket = TicketMutex::new(5u8);
    std::mem::forget(ticket.lock());
    let moved = Box::new(ticket);
    assert!(moved.try_lock().is_none());
}

#[test]
fn statics_and_exclusive_access() {
    static TICKET: TicketMutex<u32> = TicketMutex::new(0);
    static MCS: McsMutex<u32> = McsMutex::new(0);
    static IRQ: IrqTicketMutex<NoInterrupts, u32> = IrqTicketMutex::new(0);
    *TICKET.lock() += 1;
    *MCS.lock() += 2;
    *IRQ.lock() += 3;
    assert_eq!((*TICKET.lock(), *MCS.lock(), *IRQ.lock()), (1, 2, 3));
    let mut local = McsMutex::new(vec![1]);
    local.get_mut().push(2);
    assert_eq!(local.into_inner(), [1, 2]);
}

// ---- Interrupt-safe locks against a fake interrupt controller ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Disable,
    Restore(bool),
    Lock,
    Unlock,
}

thread_local! {
    /// This thread's (fake CPU's) interrupt flag.
    static ENABLED: Cell<bool> = const { Cell::new(true) };
    /// What happened on this thread, in order.
    static LOG: RefCell<Vec<Event>> = const { RefCell::new(Vec::new()) };
}

fn enabled() -> bool {
    ENABLED.with(Cell::get)
}

fn take_log() -> Vec<Event> {
    LOG.with(|log| std::mem::take(&mut *log.borrow_mut()))
}

fn log(event: Event) {
    LOG.with(|log| log.borrow_mut().push(event));
}

/// A fake CPU interrupt flag per thread, like `pushf; cli` / `popf`.
struct FakeIrq;

// SAFETY: test double: "interrupts" are a thread-local flag that nothing but this type reads;
// `restore` puts back exactly the flag `disable` returned.
unsafe impl InterruptControl for FakeIrq {
    type State = bool;

    fn disable() -> bool {
        log(Event::Disable);
        ENABLED.with(|flag| flag.replace(false))
    }

    unsafe fn restore(state: bool) {
        log(Event::Restore(state));
        ENABLED.with(|flag| flag.set(state));
    }
}

/// A ticket lock that logs its acquisitions and releases on the calling thread.
struct LoggingLock(RawTicketLock);

// SAFETY: delegates to `RawTicketLock`, whose exclusion it inherits.
unsafe impl RawMutex for LoggingLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = LoggingLock(RawTicketLock::new());
    type GuardMarker = GuardNoSend;

    fn lock(&self) {
        self.0.lock();
        log(Event::Lock);
    }

    fn try_lock(&self) -> bool {
        let locked = self.0.try_lock();
        if locked {
            log(Event::Lock);
        }
        locked
    }

    unsafe fn unlock(&self) {
        log(Event::Unlock);
        // SAFETY: forwarded contract: the caller holds the lock.
        unsafe { self.0.unlock() };
    }
}

#[test]
fn irq_mutex_disables_before_acquiring_and_restores_after_releasing() {
    let mutex = IrqMutex::<LoggingLock, FakeIrq, u32>::new(0);
    take_log();
    assert!(enabled());
    {
        let mut guard = mutex.lock();
        assert!(!enabled(), "interrupts on while the lock is held");
        *guard += 1;
    }
    assert!(enabled(), "previous state not restored");
    assert_eq!(
        take_log(),
        [
            Event::Disable,
            Event::Lock,
            Event::Unlock,
            Event::Restore(true)
        ]
    );

    let guard = mutex.try_lock().unwrap();
    assert!(!enabled());
    drop(guard);
    assert!(enabled());
    assert_eq!(
        take_log(),
        [
            Event::Disable,
            Event::Lock,
            Event::Unlock,
            Event::Restore(true)
        ]
    );
}

#[test]
fn irq_mutex_nesting_restores_each_level() {
    let outer = IrqTicketMutex::<FakeIrq, u32>::new(0);
    let inner = IrqMcsMutex::<FakeIrq, u32>::new(0);
    assert!(enabled());
    {
        let _a = outer.lock();
        assert!(!enabled());
        {
            let _b = inner.lock();
            assert!(!enabled());
        }
        assert!(
            !enabled(),
            "inner guard re-enabled interrupts inside the outer section"
        );
    }
    assert!(enabled());

    // A section entered with interrupts already off leaves them off.
    ENABLED.with(|flag| flag.set(false));
    {
        let _a = outer.lock();
        assert!(!enabled());
    }
    assert!(
        !enabled(),
        "guard enabled interrupts that were off before it"
    );
    ENABLED.with(|flag| flag.set(true));
    take_log();
}

#[test]
fn irq_mutex_failed_try_lock_restores_state() {
    let mutex = Arc::new(IrqMutex::<LoggingLock, FakeIrq, u32>::new(0));
    let guard = mutex.lock();
    let other = mutex.clone();
    thread::spawn(move || {
        take_log();
        assert!(other.try_lock().is_none());
        assert!(enabled(), "failed try_lock left interrupts off");
        assert_eq!(take_log(), [Event::Disable, Event::Restore(true)]);
    })
    .join()
    .unwrap();
    drop(guard);
    assert!(enabled());
    take_log();
}

#[test]
fn irq_mutex_contended_keeps_each_threads_state() {
    // Each thread's flag is off exactly while it holds the lock, and back on afterwards.
    let mutex = Arc::new(IrqTicketMutex::<FakeIrq, u64>::new(0));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let mutex = mutex.clone();
            thread::spawn(move || {
                for _ in 0..scaled(20_000) {
                    let mut guard = mutex.lock();
                    assert!(!enabled());
                    *guard += 1;
                    drop(guard);
                    assert!(enabled());
                    take_log();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(*mutex.lock(), 3 * scaled(20_000) as u64);
}
