//! A foreign kernel using veridian-sched alone: a NUMA `Topology` built in place and queried,
//! then a `NumaScheduler` on the one CPU running green threads (the crate's context switch) to
//! completion by priority. The glue (`glue.rs`) is the CPU guard, the thread type and its
//! stack switches; `bump.rs` is the heap the run queues need.

#![no_std]
#![no_main]

extern crate alloc;

#[macro_use]
#[path = "../../boot/boot.rs"]
mod boot;
#[path = "../../boot/bump.rs"]
mod bump;
mod glue;

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicUsize, Ordering};

use glue::{BootCpu, Stop, Thread};
use veridian_sched::sched::DEFAULT_SLICE_NS;
use veridian_sched::{
    ManualClock, NumaScheduler, Priority, SchedConfig, Topology, TopologyBuilder,
};

#[global_allocator]
static HEAP: bump::Bump = bump::Bump::new();

/// Thread ids in the order their slices ran.
static TRACE: [AtomicUsize; 64] = [const { AtomicUsize::new(usize::MAX) }; 64];
static TRACED: AtomicUsize = AtomicUsize::new(0);

/// Slices each thread runs (it yields in between).
const SLICES: usize = 3;

fn worker(me: &'static Thread) {
    for slice in 0..SLICES {
        TRACE[TRACED.fetch_add(1, Ordering::Relaxed)].store(me.id, Ordering::Relaxed);
        if slice + 1 < SLICES {
            me.yield_now();
        }
    }
}

pub fn kmain(_start_info: u64) {
    // Two nodes of two cores with two hyper-threads each, built in place (no 10 KiB builder
    // and 8 KiB topology by value on the stack).
    let mut builder = MaybeUninit::uninit();
    let builder = TopologyBuilder::init_in_place(&mut builder, 2);
    for cpu in 0..8 {
        builder.cpu(cpu, cpu / 4).core(cpu, (cpu / 2) as u32);
    }
    builder.distance(0, 1, 21).distance(1, 0, 21);
    let mut slot = MaybeUninit::uninit();
    let numa = builder.build_in_place(&mut slot).expect("a valid topology");
    assert_eq!((numa.cpu_count(), numa.node_count()), (8, 2));
    assert_eq!(numa.distance(0, 1), Some(21));
    let siblings = numa.smt_siblings(2).unwrap();
    assert!(
        siblings.contains(3) && siblings.count() == 1,
        "CPU 2's sibling is CPU 3"
    );
    let order: [usize; 7] =
        core::array::from_fn(|i| numa.nearby_cpus(5).unwrap().as_slice()[i] as usize);
    assert_eq!(
        order,
        [4, 6, 7, 0, 1, 2, 3],
        "sibling, same node, then the other node"
    );
    println!("sched: Topology 2 nodes x 4 CPUs: distances, SMT siblings, steal order {order:?}");

    // The scheduler for this machine: one CPU.
    let mut slot = MaybeUninit::uninit();
    let one_cpu = Topology::uniform_in_place(1, &mut slot).unwrap().clone();
    let clock = ManualClock::new();
    let scheduler: NumaScheduler<&'static Thread, &ManualClock> =
        NumaScheduler::new(one_cpu, &clock, SchedConfig::default());
    // SAFETY: the only guard, on the only CPU, with interrupts off.
    let guard = unsafe { BootCpu::new() };
    let cpu = scheduler.local(&guard).expect("CPU 0 is online");

    let threads = [
        Thread::spawn(0, Priority::Idle, worker),
        Thread::spawn(1, Priority::Normal, worker),
        Thread::spawn(2, Priority::Normal, worker),
        Thread::spawn(3, Priority::RealTime, worker),
        Thread::spawn(4, Priority::Normal, worker),
    ];
    for thread in threads {
        let placement = cpu.spawn(thread).map_err(|e| e.error).expect("spawn");
        assert_eq!(placement.cpu, 0);
    }
    assert_eq!(scheduler.cpu_load(0), 5);

    // The scheduler loop: run what pick_next gives until nothing is left.
    let mut exited = 0;
    while let Some(thread) = cpu.pick_next() {
        clock.advance(DEFAULT_SLICE_NS);
        match thread.run() {
            Stop::Yielded => cpu.requeue(thread).map_err(|e| e.error).expect("requeue"),
            Stop::Exited => {
                cpu.exit().expect("exit");
                exited += 1;
            }
        }
    }
    assert_eq!(exited, threads.len());
    assert_eq!(scheduler.cpu_load(0), 0);
    let runs = TRACED.load(Ordering::Relaxed);
    assert_eq!(runs, threads.len() * SLICES);
    let trace: [usize; 15] = core::array::from_fn(|i| TRACE[i].load(Ordering::Relaxed));
    println!("sched: 5 green threads ran to completion, slices by thread id: {trace:?}");
    assert_eq!(
        trace[..SLICES],
        [3; SLICES],
        "the real-time thread runs first"
    );
    assert_eq!(
        trace[runs - SLICES..],
        [0; SLICES],
        "the idle thread runs last"
    );
    for id in [1, 2, 4] {
        let slices = trace.iter().filter(|&&t| t == id).count();
        assert_eq!(slices, SLICES);
    }
    // Round robin among the normal threads: no thread runs two slices in a row while
    // another normal thread is waiting.
    let normal = &trace[SLICES..runs - SLICES];
    assert!(
        normal.windows(2).all(|w| w[0] != w[1]),
        "normal threads not interleaved: {normal:?}"
    );
    let stats = scheduler.stats(0);
    assert_eq!(
        (stats.picks, stats.exits),
        (runs as u64, threads.len() as u64)
    );
    println!(
        "sched: picks {}, exits {}, heap used {} KiB",
        stats.picks,
        stats.exits,
        HEAP.used() >> 10
    );
}
