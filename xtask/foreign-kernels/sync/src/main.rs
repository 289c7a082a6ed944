//! A foreign kernel using veridian-sync alone, with no heap: a ticket lock, an MCS lock and an
//! interrupt-safe lock as `static`s, a bounded MPMC queue with inline slots, and a seqlock.
//! The glue (`glue.rs`) is the interrupt flag `IrqMutex` saves and restores.

#![no_std]
#![no_main]

#[macro_use]
#[path = "../../boot/boot.rs"]
mod boot;
mod glue;

use glue::X86Interrupts;
use veridian_sync::lock::{IrqTicketMutex, McsMutex, TicketMutex};
use veridian_sync::mpmc::StaticArrayQueue;
use veridian_sync::seqlock::SeqLock;

static COUNTER: TicketMutex<u64> = TicketMutex::new(0);
static LOG: McsMutex<[u32; 4]> = McsMutex::new([0; 4]);
static TICKS: IrqTicketMutex<X86Interrupts, u64> = IrqTicketMutex::new(0);
static EVENTS: StaticArrayQueue<u32, 8> = StaticArrayQueue::new();
static TIME: SeqLock<[u64; 2]> = SeqLock::new([0, 0]);

pub fn kmain(_start_info: u64) {
    // Ticket lock: exclusive while held, free after.
    for _ in 0..1000 {
        *COUNTER.lock() += 1;
    }
    {
        let guard = COUNTER.lock();
        assert!(
            COUNTER.try_lock().is_none(),
            "a held ticket lock was taken again"
        );
        assert_eq!(*guard, 1000);
    }
    assert!(COUNTER.try_lock().is_some());
    println!("sync: TicketMutex: 1000 increments, try_lock refused while held");

    // MCS lock.
    {
        let mut log = LOG.lock();
        assert!(LOG.try_lock().is_none(), "a held MCS lock was taken again");
        log[0] = 7;
    }
    assert_eq!(LOG.lock()[0], 7);
    println!("sync: McsMutex: try_lock refused while held, value kept");

    // Interrupt-safe lock: IF clear while held, restored after.
    glue::enable_interrupts();
    assert!(glue::interrupts_enabled());
    {
        let mut ticks = TICKS.lock();
        assert!(
            !glue::interrupts_enabled(),
            "IrqMutex held with interrupts enabled"
        );
        *ticks += 1;
    }
    assert!(
        glue::interrupts_enabled(),
        "IrqMutex did not restore the interrupt flag"
    );
    let outer = <X86Interrupts as veridian_sync::InterruptControl>::disable();
    *TICKS.lock() += 1;
    assert!(
        !glue::interrupts_enabled(),
        "IrqMutex enabled interrupts it did not disable"
    );
    // SAFETY: `outer` came from the `disable` just above, restored once.
    unsafe { <X86Interrupts as veridian_sync::InterruptControl>::restore(outer) };
    assert!(glue::interrupts_enabled());
    assert_eq!(*TICKS.lock(), 2);
    println!("sync: IrqTicketMutex: interrupts off while held, the previous state restored");

    // Bounded queue: FIFO, full at capacity, empty after.
    for i in 0..8 {
        EVENTS.push(i).expect("queue full before its capacity");
    }
    assert_eq!(EVENTS.push(99), Err(99), "a full queue took a value");
    assert!(EVENTS.is_full());
    for i in 0..8 {
        assert_eq!(EVENTS.pop(), Some(i));
    }
    assert_eq!(EVENTS.pop(), None);
    for round in 0..100u32 {
        EVENTS.push(round).unwrap();
        assert_eq!(EVENTS.pop(), Some(round));
    }
    println!("sync: StaticArrayQueue: FIFO order, full at 8, 100 wrap-around rounds");

    // Seqlock: reads see whole writes.
    for i in 0..100 {
        TIME.write([i, i * 2]);
        let [a, b] = TIME.read();
        assert_eq!((a, b), (i, i * 2));
    }
    TIME.write_with(|v| v[0] += 1);
    assert_eq!(TIME.try_read(), Some([100, 198]));
    println!("sync: SeqLock: 100 writes read back whole, write_with in place");
}
