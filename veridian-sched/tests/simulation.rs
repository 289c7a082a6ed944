//! Hosted simulation: four OS threads act as the CPUs of a two-node topology (two CPUs per
//! node) and run 100 000 tasks.
//!
//! All tasks are queued before the CPUs start (half on CPU 0, half on CPU 2, one per node), half
//! of them restricted to their node, a tenth real-time (node-restricted too); a third are
//! requeued once after their first run. Asserted: every task runs to exit exactly once, always
//! on a CPU its affinity allows; steals happened; all load and queued counters are back to
//! zero.
//!
//! Steals prefer the same node: while fewer than a quarter of the tasks have exited, neither
//! node can have run out of its own 50 000 tasks, so every steal until then must be a same-node
//! steal (a thief goes remote only when its node has nothing it may run). The remote steal
//! count at that point is snapshotted and must be 0. Over the whole run, remote steals do
//! happen once the faster node (the OS decides which) runs dry; they are counted and printed.

mod common;

use std::sync::Barrier;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::thread;

use common::{TestTask, two_nodes};
use veridian_sched::hosted::{CpuSlots, MonotonicClock};
use veridian_sched::{CpuSet, NumaScheduler, Priority, SchedConfig};

const TASKS: usize = 100_000;
const CPUS: usize = 4;

#[test]
fn hundred_thousand_tasks_on_two_nodes() {
    let topology = two_nodes(2);
    let s: NumaScheduler<Box<TestTask>, MonotonicClock> =
        NumaScheduler::new(topology, MonotonicClock::new(), SchedConfig::default());
    let slots = CpuSlots::new(CPUS);
    let exits: Vec<AtomicU8> = (0..TASKS).map(|_| AtomicU8::new(0)).collect();
    let done = AtomicUsize::new(0);
    let violations = AtomicUsize::new(0);
    let start = Barrier::new(CPUS);
    let early_remote = AtomicU64::new(u64::MAX);

    thread::scope(|scope| {
        for cpu in 0..CPUS {
            let (s, slots, exits, done, violations, start, early_remote) = (
                &s,
                &slots,
                &exits,
                &done,
                &violations,
                &start,
                &early_remote,
            );
            scope.spawn(move || {
                let guard = slots.claim(cpu).unwrap();
                let local = s.local(&guard).unwrap();
                let node = cpu / 2;
                if cpu % 2 == 0 {
                    let everywhere = CpuSet::full(CPUS).unwrap();
                    let own_node = s.topology().node_cpus(node);
                    for id in (node..TASKS).step_by(2) {
                        let affinity = if id % 4 < 2 || id % 10 == 0 {
                            own_node
                        } else {
                            everywhere
                        };
                        let priority = if id % 10 == 0 {
                            Priority::RealTime
                        } else {
                            Priority::Normal
                        };
                        local.wake(TestTask::new(id, affinity, priority)).unwrap();
                    }
                }
                start.wait();
                loop {
                    match local.pick_next() {
                        Some(mut t) => {
                            if !t.affinity.contains(cpu) {
                                violations.fetch_add(1, Ordering::Relaxed);
                            }
                            t.runs += 1;
                            if t.id % 3 == 0 && t.runs == 1 {
                                local.requeue(t).unwrap();
                            } else {
                                exits[t.id].fetch_add(1, Ordering::Relaxed);
                                local.exit().unwrap();
                                if done.fetch_add(1, Ordering::Relaxed) == TASKS / 4 - 1 {
                                    let remote: u64 =
                                        (0..CPUS).map(|c| s.stats(c).steals_remote_node).sum();
                                    early_remote.store(remote, Ordering::Relaxed);
                                }
                            }
                        }
                        None if done.load(Ordering::Relaxed) == TASKS => break,
                        None => thread::yield_now(),
                    }
                }
            });
        }
    });

    assert_eq!(violations.load(Ordering::Relaxed), 0, "affinity violated");
    for (id, e) in exits.iter().enumerate() {
        assert_eq!(e.load(Ordering::Relaxed), 1, "task {id}");
    }
    let stats: Vec<_> = (0..CPUS).map(|c| s.stats(c)).collect();
    let local_steals: u64 = stats
        .iter()
        .map(|s| s.steals_sibling + s.steals_same_node)
        .sum();
    let remote_steals: u64 = stats.iter().map(|s| s.steals_remote_node).sum();
    let exits_counted: u64 = stats.iter().map(|s| s.exits).sum();
    println!("steals: same node {local_steals}, remote node {remote_steals}; {stats:#?}");
    assert_eq!(exits_counted, TASKS as u64);
    assert!(
        local_steals > 0,
        "no steals: the idle CPUs 1 and 3 must have stolen"
    );
    assert_eq!(
        early_remote.load(Ordering::Relaxed),
        0,
        "a remote steal happened while the thief's own node still had work"
    );
    for cpu in 0..CPUS {
        assert_eq!(s.cpu_load(cpu), 0, "CPU {cpu} load");
    }
    assert_eq!((s.node_load(0), s.node_load(1)), (0, 0));
    for p in Priority::ALL {
        assert_eq!(s.queued(p), 0);
    }
}
