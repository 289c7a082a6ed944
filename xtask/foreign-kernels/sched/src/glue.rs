//! What a kernel supplies to veridian-sched: a `CpuGuard` for its one CPU, a `Clock`, and
//! threads (a task type the scheduler queues, stacks, and the switches in and out of them,
//! made with the crate's own context switch). A heap for the run queues: `bump.rs`.

use core::cell::{Cell, UnsafeCell};

use veridian_sched::arch::x86_64::{prepare_stack, switch_stacks};
use veridian_sched::{CpuGuard, CpuSet, Priority, Task};

/// Ownership of CPU 0's run queues.
pub struct BootCpu(());

impl BootCpu {
    /// # Safety
    /// Only one `BootCpu` is in use at a time: one CPU, interrupts off, no other context.
    pub unsafe fn new() -> Self {
        Self(())
    }
}

// SAFETY: `BootCpu::new`'s contract: a single guard for CPU 0 on the only CPU.
unsafe impl CpuGuard for BootCpu {
    fn cpu(&self) -> usize {
        0
    }
}

/// Why a thread came back to the scheduler loop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stop {
    Yielded,
    Exited,
}

/// A kernel thread: what the scheduler reads (affinity, priority) and what the switch needs.
pub struct Thread {
    pub id: usize,
    affinity: CpuSet,
    priority: Priority,
    /// Saved stack pointer while the thread is not running.
    sp: UnsafeCell<usize>,
    /// Set by the thread before it switches back.
    stop: Cell<Stop>,
    body: fn(&'static Thread),
}

// SAFETY: one CPU; a thread's cells are touched only by the thread itself and by the
// scheduler loop while the thread is switched out, never at the same time.
unsafe impl Sync for Thread {}

impl Task for Thread {
    fn affinity(&self) -> &CpuSet {
        &self.affinity
    }
    fn priority(&self) -> Priority {
        self.priority
    }
}

/// The scheduler loop's saved stack pointer while a thread runs.
struct SchedulerSp(UnsafeCell<usize>);
// SAFETY: one CPU; written only by the switch into a thread, read by the switch back.
unsafe impl Sync for SchedulerSp {}
static SCHEDULER_SP: SchedulerSp = SchedulerSp(UnsafeCell::new(0));

/// Bytes of each thread's stack (from the heap).
const STACK_SIZE: usize = 16 * 1024;

impl Thread {
    /// A thread that will run `body`, on CPU 0, with a fresh stack.
    pub fn spawn(id: usize, priority: Priority, body: fn(&'static Thread)) -> &'static Thread {
        let stack = alloc::vec![0u8; STACK_SIZE].leak();
        let thread: &'static Thread = alloc::boxed::Box::leak(alloc::boxed::Box::new(Thread {
            id,
            affinity: CpuSet::single(0).expect("CPU 0"),
            priority,
            sp: UnsafeCell::new(0),
            stop: Cell::new(Stop::Yielded),
            body,
        }));
        let range = stack.as_mut_ptr_range();
        // SAFETY: the leaked stack is ours alone, for ever.
        let sp = unsafe {
            prepare_stack(
                range.start,
                range.end,
                thread_main,
                thread as *const Thread as usize,
            )
        };
        // SAFETY: nothing runs on the thread yet.
        unsafe { *thread.sp.get() = sp.expect("a 16 KiB stack holds the first frame") };
        thread
    }

    /// Runs the thread until it yields or exits (called by the scheduler loop).
    pub fn run(&'static self) -> Stop {
        // SAFETY: the thread is switched out (its `sp` is a saved or fresh stack pointer) and
        // the loop's own stack pointer goes to `SCHEDULER_SP`, where the thread switches back.
        unsafe { switch_stacks(SCHEDULER_SP.0.get(), *self.sp.get()) };
        self.stop.get()
    }

    /// Called on the thread: back to the scheduler loop until it is picked again.
    pub fn yield_now(&self) {
        self.stop.set(Stop::Yielded);
        // SAFETY: the loop is suspended in `run` with its stack pointer in `SCHEDULER_SP`;
        // ours goes to `self.sp` for the next `run`.
        unsafe { switch_stacks(self.sp.get(), *SCHEDULER_SP.0.get()) };
    }
}

/// First code on a new thread: the body, then exit (never resumed after that).
extern "C" fn thread_main(arg: usize) -> ! {
    // SAFETY: `arg` is the `&'static Thread` given to `prepare_stack`.
    let thread: &'static Thread = unsafe { &*(arg as *const Thread) };
    (thread.body)(thread);
    thread.stop.set(Stop::Exited);
    let mut dead = 0;
    // SAFETY: as in `yield_now`; the loop never switches back to this stack.
    unsafe { switch_stacks(&mut dead, *SCHEDULER_SP.0.get()) };
    unreachable!("an exited thread was resumed");
}
