//! The scheduler on deterministic single-threaded scenarios: placement, load counters (up and
//! down), priorities, round robin, steal order and classes, affinity, errors.

mod common;

use common::{TestTask, two_nodes};
use veridian_sched::hosted::CpuSlots;
use veridian_sched::sched::FAIRNESS_INTERVAL;
use veridian_sched::{
    CpuSet, ManualClock, NumaScheduler, Priority, SchedConfig, SchedError, TopologyBuilder,
};

type Sched<'c> = NumaScheduler<Box<TestTask>, &'c ManualClock>;

fn all() -> CpuSet {
    CpuSet::full(4).unwrap()
}

fn set(cpus: &[usize]) -> CpuSet {
    CpuSet::from_cpus(cpus.iter().copied()).unwrap()
}

#[test]
fn placement_picks_least_loaded_node_and_cpu_and_loads_go_down() {
    let clock = ManualClock::new();
    let s: Sched = NumaScheduler::new(two_nodes(2), &clock, SchedConfig::default());
    let slots = CpuSlots::new(4);
    let g0 = slots.claim(0).unwrap();
    let c0 = s.local(&g0).unwrap();

    let p = s.assign_thread(&all()).unwrap();
    assert_eq!((p.cpu, p.node, p.memory_node), (0, 0, 0));
    // Spawns alternate nodes and spread over CPUs.
    let mut placed = Vec::new();
    for id in 0..4 {
        placed.push(
            c0.spawn(TestTask::new(id, all(), Priority::Normal))
                .unwrap()
                .cpu,
        );
    }
    assert_eq!(placed, [0, 2, 1, 3]);
    assert_eq!((s.node_load(0), s.node_load(1)), (2, 2));
    // Affinity limits the candidates: node 1 only.
    let p = c0
        .spawn(TestTask::new(9, set(&[2, 3]), Priority::Normal))
        .unwrap();
    assert_eq!(p.node, 1);
    assert_eq!(s.memory_node(&set(&[3])).unwrap(), 1);
    assert_eq!(s.assign_thread(&set(&[7])), Err(SchedError::NoAllowedCpu));
    assert_eq!(s.node_load(1), 3);

    // Run everything to completion: loads return to zero.
    for cpu in 0..4 {
        let g = slots.claim(cpu);
        let g = match (cpu, g) {
            (0, _) => None,
            (_, g) => g,
        };
        let local = match &g {
            Some(g) => s.local(g).unwrap(),
            None => s.local(&g0).unwrap(),
        };
        while let Some(t) = local.pick_next() {
            assert!(t.affinity.contains(cpu));
            local.exit().unwrap();
        }
    }
    for cpu in 0..4 {
        assert_eq!(s.cpu_load(cpu), 0);
    }
    assert_eq!((s.node_load(0), s.node_load(1)), (0, 0));
    assert_eq!(s.queued(Priority::Normal), 0);
    // Node load per CPU: a 1-CPU node with 1 task is as loaded as a 3-CPU node with 3.
    let mut b = TopologyBuilder::new(2);
    b.cpu(0, 0).cpu(1, 0).cpu(2, 0).cpu(3, 1).uniform_remote(20);
    let s2: Sched = NumaScheduler::new(b.build().unwrap(), &clock, SchedConfig::default());
    let c = s2.local(&g0).unwrap();
    for id in 0..4 {
        c.spawn(TestTask::new(id, all(), Priority::Normal)).unwrap();
    }
    assert_eq!((s2.node_load(0), s2.node_load(1)), (3, 1));
}

#[test]
fn exit_block_and_requeue_without_a_running_task_are_errors() {
    let clock = ManualClock::new();
    let s: Sched = NumaScheduler::new(two_nodes(1), &clock, SchedConfig::default());
    let slots = CpuSlots::new(2);
    let g = slots.claim(0).unwrap();
    let c = s.local(&g).unwrap();
    assert_eq!(c.exit(), Err(SchedError::NothingRunning));
    assert_eq!(c.block(), Err(SchedError::NothingRunning));
    let e = c
        .requeue(TestTask::new(0, set(&[0]), Priority::Normal))
        .unwrap_err();
    assert_eq!(e.error, SchedError::NothingRunning);
    assert_eq!(e.task.id, 0);
    assert_eq!(s.cpu_load(0), 0);
    // Enqueue errors give the task back.
    let e = c
        .enqueue_on(1, TestTask::new(1, set(&[0]), Priority::Normal))
        .unwrap_err();
    assert_eq!(e.error, SchedError::CpuNotAllowed { cpu: 1 });
    let e = c
        .enqueue_on(
            5,
            TestTask::new(2, CpuSet::full(8).unwrap(), Priority::Normal),
        )
        .unwrap_err();
    assert_eq!(e.error, SchedError::CpuNotOnline { cpu: 5 });
    let e = c
        .spawn(TestTask::new(3, CpuSet::empty(), Priority::Normal))
        .unwrap_err();
    assert_eq!((e.error, e.task.id), (SchedError::NoAllowedCpu, 3));
    // A guard for a CPU that is not online.
    let other = CpuSlots::new(8);
    let g7 = other.claim(7).unwrap();
    assert_eq!(
        s.local(&g7).unwrap_err(),
        SchedError::CpuNotOnline { cpu: 7 }
    );
    // A claimed slot cannot be claimed twice.
    assert!(slots.claim(0).is_none());
    assert!(slots.claim(9).is_none());
}

#[test]
fn priorities_are_strict_and_preemption_is_signalled() {
    let clock = ManualClock::new();
    let config = SchedConfig {
        slice_ns: [2, 5, 5],
        ..SchedConfig::default()
    };
    let s: Sched = NumaScheduler::new(two_nodes(1), &clock, config);
    let slots = CpuSlots::new(2);
    let g = slots.claim(0).unwrap();
    let c = s.local(&g).unwrap();
    c.enqueue_on(0, TestTask::new(0, all(), Priority::Idle))
        .unwrap();
    c.enqueue_on(0, TestTask::new(1, all(), Priority::Normal))
        .unwrap();
    let t = c.pick_next().unwrap();
    assert_eq!(t.id, 1);
    assert!(!c.should_preempt());
    clock.advance(4);
    assert!(!c.should_preempt());
    // A real-time task arrives here: the normal one should yield at once.
    c.enqueue_on(0, TestTask::new(2, set(&[0]), Priority::RealTime))
        .unwrap();
    assert!(c.should_preempt());
    c.requeue(t).unwrap();
    let t = c.pick_next().unwrap();
    assert_eq!(t.id, 2);
    assert!(!c.should_preempt());
    clock.advance(2); // real-time slice is 2 ns
    assert!(c.should_preempt());
    c.exit().unwrap();
    assert_eq!(c.pick_next().unwrap().id, 1);
    c.exit().unwrap();
    assert_eq!(c.pick_next().unwrap().id, 0);
    c.exit().unwrap();
    assert!(c.pick_next().is_none());
    assert!(!c.should_preempt());
}

/// Three tasks on one CPU, each requeued after its slice: over many rounds every task runs
/// the same number of times (round robin), whichever queue it sits in.
#[test]
fn round_robin_within_a_priority() {
    let clock = ManualClock::new();
    let s: Sched = NumaScheduler::new(two_nodes(1), &clock, SchedConfig::default());
    let slots = CpuSlots::new(2);
    let g = slots.claim(0).unwrap();
    let c = s.local(&g).unwrap();
    for id in 0..3 {
        c.enqueue_on(0, TestTask::new(id, all(), Priority::Normal))
            .unwrap();
    }
    let mut runs = [0usize; 3];
    for _ in 0..300 {
        let t = c.pick_next().unwrap();
        runs[t.id] += 1;
        c.requeue(t).unwrap();
    }
    assert_eq!(runs, [100, 100, 100]);
}

/// `switch_next` as the yield: three tasks on one CPU take turns (round robin), the yielding
/// task comes back when it is alone, and the loads and queued count stay those of one running
/// and two queued tasks.
#[test]
fn switch_next_round_robin_and_alone() {
    let clock = ManualClock::new();
    let s: Sched = NumaScheduler::new(two_nodes(1), &clock, SchedConfig::default());
    let slots = CpuSlots::new(2);
    let g = slots.claim(0).unwrap();
    let c = s.local(&g).unwrap();
    for id in 0..3 {
        c.enqueue_on(0, TestTask::new(id, set(&[0]), Priority::Normal))
            .unwrap();
    }
    let mut t = c.pick_next().unwrap();
    let mut runs = [0usize; 3];
    for _ in 0..300 {
        runs[t.id] += 1;
        t = c.switch_next(t).unwrap().unwrap();
        assert_eq!((s.cpu_load(0), s.queued(Priority::Normal)), (3, 2));
    }
    assert_eq!(runs, [100, 100, 100]);
    c.exit().unwrap();
    let u = c.pick_next().unwrap();
    c.exit().unwrap();
    let last = c.pick_next().unwrap();
    let id = last.id;
    let back = c.switch_next(last).unwrap().unwrap();
    assert_eq!(back.id, id);
    assert_eq!((s.cpu_load(0), s.queued(Priority::Normal)), (1, 0));
    assert_ne!(u.id, id);
    c.exit().unwrap();
    assert!(c.pick_next().is_none());
}

/// New wake-ups keep arriving on the deque; a task waiting in the FIFO is still picked within
/// 2 × FAIRNESS_INTERVAL picks.
#[test]
fn oldest_task_is_not_starved_by_wakeups() {
    let clock = ManualClock::new();
    let s: Sched = NumaScheduler::new(two_nodes(1), &clock, SchedConfig::default());
    let slots = CpuSlots::new(2);
    let g = slots.claim(0).unwrap();
    let c = s.local(&g).unwrap();
    c.enqueue_on(0, TestTask::new(0, all(), Priority::Normal))
        .unwrap();
    let t = c.pick_next().unwrap();
    c.requeue(t).unwrap(); // task 0 now waits at the FIFO head
    let mut next_id = 1;
    let mut picks = 0;
    loop {
        // A stream of fresh wake-ups on the deque (LIFO: always the newest first).
        c.wake(TestTask::new(next_id, all(), Priority::Normal))
            .unwrap();
        next_id += 1;
        let t = c.pick_next().unwrap();
        picks += 1;
        c.exit().unwrap();
        if t.id == 0 {
            break;
        }
        assert!(picks <= 2 * FAIRNESS_INTERVAL as usize, "task 0 starved");
    }
    // The oldest wake-up in the deque is not starved either: two wake-ups per pick make the
    // deque grow, and LIFO pops alone would never reach its top.
    let sentinel = next_id;
    c.wake(TestTask::new(sentinel, all(), Priority::Normal))
        .unwrap();
    next_id += 1;
    let mut picks = 0;
    loop {
        for _ in 0..2 {
            c.wake(TestTask::new(next_id, all(), Priority::Normal))
                .unwrap();
            next_id += 1;
        }
        let t = c.pick_next().unwrap();
        picks += 1;
        c.exit().unwrap();
        if t.id == sentinel {
            break;
        }
        assert!(
            picks <= 2 * FAIRNESS_INTERVAL as usize,
            "oldest deque task starved"
        );
    }
}

/// An idle CPU steals half of its nearest busy victim's queue, counts the class, and never
/// takes a task that excludes it.
#[test]
fn steals_nearest_first_half_and_respect_affinity() {
    let clock = ManualClock::new();
    let mut b = TopologyBuilder::new(2);
    // Node 0: CPUs 0,1 (SMT pair) and 2; node 1: CPU 3.
    b.cpu(0, 0)
        .core(0, 0)
        .cpu(1, 0)
        .core(1, 0)
        .cpu(2, 0)
        .cpu(3, 1)
        .uniform_remote(20);
    let s: Sched = NumaScheduler::new(b.build().unwrap(), &clock, SchedConfig::default());
    let slots = CpuSlots::new(4);
    let g: Vec<_> = (0..4).map(|c| slots.claim(c).unwrap()).collect();
    let c: Vec<_> = g.iter().map(|g| s.local(g).unwrap()).collect();

    // CPU 3 (remote) and CPU 1 (sibling of 0) both have work; CPU 0 steals from its sibling.
    for id in 0..8 {
        c[1].enqueue_on(1, TestTask::new(id, all(), Priority::Normal))
            .unwrap();
    }
    c[3].enqueue_on(3, TestTask::new(100, all(), Priority::Normal))
        .unwrap();
    let t = c[0].pick_next().unwrap();
    assert_eq!(t.id, 0, "the oldest task of the victim");
    let st = s.stats(0);
    assert_eq!(
        (
            st.steals_sibling,
            st.steals_same_node,
            st.steals_remote_node
        ),
        (1, 0, 0)
    );
    assert_eq!(st.tasks_stolen, 4, "half of 8");
    assert_eq!((s.cpu_load(0), s.cpu_load(1)), (4, 4));
    c[0].exit().unwrap();

    // CPU 2 steals from the same node (CPU 1 or 0) before the remote CPU 3.
    let _ = c[2].pick_next().unwrap();
    assert_eq!(s.stats(2).steals_same_node, 1);
    c[2].exit().unwrap();

    // Tasks pinned to CPU 1 are never stolen by 0 or 2; node-0 tasks never by 3.
    while c[1].pick_next().is_some() {
        c[1].exit().unwrap();
    }
    while c[0].pick_next().is_some() {
        c[0].exit().unwrap();
    }
    while c[2].pick_next().is_some() {
        c[2].exit().unwrap();
    }
    for id in 200..204 {
        c[1].enqueue_on(1, TestTask::new(id, set(&[1]), Priority::Normal))
            .unwrap();
    }
    for id in 300..304 {
        c[1].enqueue_on(1, TestTask::new(id, set(&[0, 1, 2]), Priority::Normal))
            .unwrap();
    }
    for cpu in [0, 2] {
        while let Some(t) = c[cpu].pick_next() {
            assert!(
                t.id >= 300 && t.affinity.contains(cpu),
                "CPU {cpu} got {}",
                t.id
            );
            c[cpu].exit().unwrap();
        }
    }
    // Node 0's draining CPUs also stole CPU 3's only task (remote) once node 0 ran dry: one
    // remote steal in all.
    assert_eq!(
        (0..4).map(|c| s.stats(c).steals_remote_node).sum::<u64>(),
        1
    );
    // CPU 3 finds nothing it may run (tasks pinned to CPU 1 remain).
    assert!(c[3].pick_next().is_none());
    let mut left = Vec::new();
    while let Some(t) = c[1].pick_next() {
        left.push(t.id);
        c[1].exit().unwrap();
    }
    left.sort_unstable();
    assert_eq!(left, [200, 201, 202, 203]);
    for cpu in 0..4 {
        assert_eq!(s.cpu_load(cpu), 0);
    }
}

/// Deque overflow goes to the injector (any CPU takes from it) and then to the FIFO.
#[test]
fn overflow_to_injector_and_fifo() {
    let clock = ManualClock::new();
    let config = SchedConfig {
        deque_capacity: 2,
        injector_capacity: 2,
        ..SchedConfig::default()
    };
    let s: Sched = NumaScheduler::new(two_nodes(1), &clock, config);
    let slots = CpuSlots::new(2);
    let (g0, g1) = (slots.claim(0).unwrap(), slots.claim(1).unwrap());
    let (c0, c1) = (s.local(&g0).unwrap(), s.local(&g1).unwrap());
    for id in 0..7 {
        c0.enqueue_on(0, TestTask::new(id, all(), Priority::Normal))
            .unwrap();
    }
    // 2 in the deque, 2 in the injector (not counted on any CPU), 3 in the FIFO.
    assert_eq!(s.cpu_load(0), 5);
    assert_eq!(s.queued(Priority::Normal), 7);
    let t = c1.pick_next().unwrap();
    assert_eq!(s.stats(1).from_injector, 1);
    assert!(t.id == 2 || t.id == 3);
    c1.exit().unwrap();
    let mut seen = vec![t.id];
    while let Some(t) = c0.pick_next().or_else(|| c1.pick_next()) {
        seen.push(t.id);
        // Exit on whichever CPU has it running.
        if c0.exit().is_err() {
            c1.exit().unwrap();
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..7).collect::<Vec<_>>());
    assert_eq!(
        (s.cpu_load(0), s.cpu_load(1), s.queued(Priority::Normal)),
        (0, 0, 0)
    );
}

/// `hand_off`: the running task blocks and a blocked one runs in its place without a queue
/// operation; the load stays the same, and the new task can then block, requeue or exit.
#[test]
fn hand_off_keeps_the_load_and_needs_a_running_task_and_an_allowed_cpu() {
    let clock = ManualClock::new();
    let s: Sched = NumaScheduler::new(two_nodes(2), &clock, SchedConfig::default());
    let slots = CpuSlots::new(4);
    let g = slots.claim(0).unwrap();
    let c = s.local(&g).unwrap();
    let blocked = TestTask::new(7, set(&[0, 1]), Priority::Normal);
    let elsewhere = TestTask::new(8, set(&[2]), Priority::Normal);
    assert_eq!(c.hand_off(&blocked), Err(SchedError::NothingRunning));
    c.enqueue_on(0, TestTask::new(1, set(&[0]), Priority::Normal))
        .unwrap();
    let running = c.pick_next().unwrap();
    assert_eq!(running.id, 1);
    assert_eq!(s.cpu_load(0), 1);
    assert_eq!(c.hand_off(&elsewhere), Err(SchedError::NoAllowedCpu));
    assert_eq!(c.hand_off(&blocked), Ok(()));
    // Task 1 blocked, task 7 runs: one task counted here, none queued.
    assert_eq!(s.cpu_load(0), 1);
    assert_eq!(s.queued(Priority::Normal), 0);
    // The task handed to runs like a picked one: it can be requeued, then picked and end.
    c.requeue(blocked).unwrap();
    assert_eq!(c.pick_next().map(|t| t.id), Some(7));
    c.exit().unwrap();
    assert_eq!(s.cpu_load(0), 0);
    assert!(c.pick_next().is_none());
}
