//! Random sequences of scheduler operations on four CPUs (two nodes, an SMT pair) against a
//! sequential model. Small deques and injector make every overflow path run.
//!
//! Checked after every step: a picked task is one that was queued, its affinity allows the
//! CPU, its priority is the highest among queued tasks this CPU may run, and `None` only when
//! no queued task may run there; per-level queued counts and node loads match the model. At
//! the end everything is drained: every task exits exactly once and every load is zero.

mod common;

use std::collections::BTreeMap;

use common::TestTask;
use proptest::prelude::*;
use veridian_sched::hosted::CpuSlots;
use veridian_sched::{
    CpuSet, ManualClock, NumaScheduler, Priority, SchedConfig, SchedError, Topology,
    TopologyBuilder,
};

const CPUS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    /// Spawn a task (placement by load) from a CPU.
    Spawn {
        from: usize,
        mask: u8,
        prio: usize,
    },
    /// Enqueue on a given CPU (may be refused for affinity).
    EnqueueOn {
        from: usize,
        target: usize,
        mask: u8,
        prio: usize,
    },
    Pick {
        cpu: usize,
    },
    Requeue {
        cpu: usize,
    },
    Block {
        cpu: usize,
    },
    Wake {
        from: usize,
        which: usize,
    },
    Exit {
        cpu: usize,
    },
    Tick,
}

/// Spawn, enqueue-on, pick, requeue, block, wake, exit and tick weighted 3:2:5:2:1:1:2:1:
/// the kind and every field drawn as a tuple of integers and mapped (the distribution of a
/// weighted `prop_oneof!`, which under Miri made generation the bulk of the run).
fn op() -> impl Strategy<Value = Op> {
    let cpu = 0..CPUS;
    (
        0u8..17,
        cpu.clone(),
        cpu,
        1u8..16,
        0..3usize,
        any::<usize>(),
    )
        .prop_map(|(kind, from, target, mask, prio, which)| match kind {
            0..=2 => Op::Spawn { from, mask, prio },
            3 | 4 => Op::EnqueueOn {
                from,
                target,
                mask,
                prio,
            },
            5..=9 => Op::Pick { cpu: from },
            10 | 11 => Op::Requeue { cpu: from },
            12 => Op::Block { cpu: from },
            13 => Op::Wake { from, which },
            14 | 15 => Op::Exit { cpu: from },
            _ => Op::Tick,
        })
}

/// The longest operation sequence of a case (a third of it under Miri, see the config below).
const MAX_STEPS: usize = if cfg!(miri) { 80 } else { 250 };

fn mask_set(mask: u8) -> CpuSet {
    CpuSet::from_cpus((0..CPUS).filter(|c| mask & (1 << c) != 0)).unwrap()
}

/// Two nodes of two CPUs, the first two an SMT pair, distance 20.
fn topology() -> Topology {
    let mut b = TopologyBuilder::new(2);
    b.cpu(0, 0)
        .core(0, 0)
        .cpu(1, 0)
        .core(1, 0)
        .cpu(2, 1)
        .cpu(3, 1)
        .uniform_remote(20);
    b.build().unwrap()
}

/// Small deques and injector (every overflow path runs), batches of three steals.
fn config() -> SchedConfig {
    SchedConfig {
        deque_capacity: 2,
        injector_capacity: 2,
        max_steal_batch: 3,
        ..SchedConfig::default()
    }
}

proptest! {
    // Under Miri, the cases `PROPTEST_CASES` asks for (`cargo xtask check-extra` sets 8;
    // proptest's default, 256, when unset) of fewer than `MAX_STEPS` steps: 8 cases of up to
    // 250 steps took 145 s there, so the 128 of a debug build would take about 40 minutes.
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { ProptestConfig::default().cases } else if cfg!(debug_assertions) { 128 } else { 1024 }, ..ProptestConfig::default() })]
    #[test]
    fn scheduler_matches_sequential_model(ops in proptest::collection::vec(op(), 1..MAX_STEPS)) {
        let clock = ManualClock::new();
        let s: NumaScheduler<Box<TestTask>, &ManualClock> = NumaScheduler::new(topology(), &clock, config());
        let slots = CpuSlots::new(CPUS);
        let guards: Vec<_> = (0..CPUS).map(|c| slots.claim(c).unwrap()).collect();
        let cpus: Vec<_> = guards.iter().map(|g| s.local(g).unwrap()).collect();

        // Model: queued tasks (id -> (affinity, level)), running per CPU, blocked.
        let mut queued: BTreeMap<usize, (CpuSet, usize)> = BTreeMap::new();
        let mut running: Vec<Option<Box<TestTask>>> = (0..CPUS).map(|_| None).collect();
        let mut blocked: Vec<Box<TestTask>> = Vec::new();
        let mut exited: Vec<usize> = Vec::new();
        let mut next_id = 0;

        let pick = |cpu: usize, queued: &mut BTreeMap<usize, (CpuSet, usize)>, running: &mut Vec<Option<Box<TestTask>>>| -> Result<(), TestCaseError> {
            let best = queued.values().filter(|(a, _)| a.contains(cpu)).map(|&(_, l)| l).min();
            let got = cpus[cpu].pick_next();
            match (best, got) {
                (None, None) => {}
                (Some(level), Some(t)) => {
                    prop_assert!(t.affinity.contains(cpu), "task {} on CPU {}", t.id, cpu);
                    prop_assert_eq!(t.priority as usize, level, "priority not respected");
                    prop_assert!(queued.remove(&t.id).is_some(), "task {} was not queued", t.id);
                    running[cpu] = Some(t);
                }
                (best, got) => prop_assert!(false, "CPU {}: model {:?}, scheduler {:?}", cpu, best, got.map(|t| t.id)),
            }
            Ok(())
        };

        for op in ops {
            match op {
                Op::Spawn { from, mask, prio } => {
                    let t = TestTask::new(next_id, mask_set(mask), Priority::ALL[prio]);
                    let p = cpus[from].spawn(t).unwrap();
                    prop_assert!(mask_set(mask).contains(p.cpu));
                    queued.insert(next_id, (mask_set(mask), prio));
                    next_id += 1;
                }
                Op::EnqueueOn { from, target, mask, prio } => {
                    let t = TestTask::new(next_id, mask_set(mask), Priority::ALL[prio]);
                    match cpus[from].enqueue_on(target, t) {
                        Ok(()) => {
                            queued.insert(next_id, (mask_set(mask), prio));
                        }
                        Err(e) => {
                            prop_assert!(!mask_set(mask).contains(target));
                            prop_assert_eq!(e.error, SchedError::CpuNotAllowed { cpu: target });
                        }
                    }
                    next_id += 1;
                }
                Op::Pick { cpu } => {
                    if running[cpu].is_none() {
                        pick(cpu, &mut queued, &mut running)?;
                    }
                }
                Op::Requeue { cpu } => match running[cpu].take() {
                    Some(t) => {
                        queued.insert(t.id, (t.affinity, t.priority as usize));
                        cpus[cpu].requeue(t).unwrap();
                    }
                    None => {
                        let e = cpus[cpu].requeue(TestTask::new(usize::MAX, mask_set(15), Priority::Normal)).unwrap_err();
                        prop_assert_eq!(e.error, SchedError::NothingRunning);
                    }
                },
                Op::Block { cpu } => match running[cpu].take() {
                    Some(t) => {
                        cpus[cpu].block().unwrap();
                        blocked.push(t);
                    }
                    None => prop_assert_eq!(cpus[cpu].block(), Err(SchedError::NothingRunning)),
                },
                Op::Wake { from, which } => {
                    if !blocked.is_empty() {
                        let t = blocked.swap_remove(which % blocked.len());
                        queued.insert(t.id, (t.affinity, t.priority as usize));
                        let p = cpus[from].wake(t).unwrap();
                        prop_assert!(queued.values().count() > 0 && p.cpu < CPUS);
                    }
                }
                Op::Exit { cpu } => match running[cpu].take() {
                    Some(t) => {
                        cpus[cpu].exit().unwrap();
                        exited.push(t.id);
                    }
                    None => prop_assert_eq!(cpus[cpu].exit(), Err(SchedError::NothingRunning)),
                },
                Op::Tick => clock.advance(1),
            }
            for (level, prio) in Priority::ALL.iter().enumerate() {
                let n = queued.values().filter(|&&(_, l)| l == level).count();
                prop_assert_eq!(s.queued(*prio), n);
            }
            for node in 0..2 {
                prop_assert_eq!(s.node_load(node), s.cpu_load(2 * node) + s.cpu_load(2 * node + 1));
            }
            let counted: usize = (0..CPUS).map(|c| s.cpu_load(c)).sum();
            let running_n = running.iter().filter(|r| r.is_some()).count();
            // Tasks in the injector belong to no CPU, so the CPU loads may count fewer.
            prop_assert!(counted <= queued.len() + running_n);
            prop_assert!(counted >= running_n);
        }

        // Drain: wake the blocked, run everything to exit.
        for t in blocked.drain(..) {
            queued.insert(t.id, (t.affinity, t.priority as usize));
            cpus[0].wake(t).unwrap();
        }
        for cpu in 0..CPUS {
            if let Some(t) = running[cpu].take() {
                cpus[cpu].exit().unwrap();
                exited.push(t.id);
            }
        }
        loop {
            let mut progress = false;
            for cpu in 0..CPUS {
                pick(cpu, &mut queued, &mut running)?;
                if let Some(t) = running[cpu].take() {
                    cpus[cpu].exit().unwrap();
                    exited.push(t.id);
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        prop_assert!(queued.is_empty(), "tasks never ran: {:?}", queued.keys().collect::<Vec<_>>());
        exited.sort_unstable();
        let before = exited.len();
        exited.dedup();
        prop_assert_eq!(before, exited.len(), "a task exited twice");
        for cpu in 0..CPUS {
            prop_assert_eq!(s.cpu_load(cpu), 0);
        }
        prop_assert_eq!((s.node_load(0), s.node_load(1)), (0, 0));
    }

    /// `switch_next` against `requeue` + `pick_next`: two schedulers get the same random
    /// operations (the model's `Requeue` is the yield); after every step both ran the same tasks
    /// on every CPU and have the same queued counts and loads. Small deques, an asymmetric
    /// affinity mix and all three levels make `switch_next` take its one-lock path and each of
    /// its fall-backs.
    #[test]
    fn switch_next_matches_requeue_then_pick_next(ops in proptest::collection::vec(op(), 1..MAX_STEPS)) {
        let clock = ManualClock::new();
        let fused: NumaScheduler<Box<TestTask>, &ManualClock> = NumaScheduler::new(topology(), &clock, config());
        let split: NumaScheduler<Box<TestTask>, &ManualClock> = NumaScheduler::new(topology(), &clock, config());
        let slots = CpuSlots::new(CPUS);
        let guards: Vec<_> = (0..CPUS).map(|c| slots.claim(c).unwrap()).collect();
        let (f, s): (Vec<_>, Vec<_>) = guards.iter().map(|g| (fused.local(g).unwrap(), split.local(g).unwrap())).unzip();
        let mut running: Vec<Option<(Box<TestTask>, Box<TestTask>)>> = (0..CPUS).map(|_| None).collect();
        let mut blocked: Vec<(Box<TestTask>, Box<TestTask>)> = Vec::new();
        let mut next_id = 0;
        let task = |id: usize, mask: u8, prio: usize| TestTask::new(id, mask_set(mask), Priority::ALL[prio]);
        for op in ops {
            match op {
                Op::Spawn { from, mask, prio } => {
                    let (a, b) = (f[from].spawn(task(next_id, mask, prio)).unwrap(), s[from].spawn(task(next_id, mask, prio)).unwrap());
                    prop_assert_eq!(a, b);
                    next_id += 1;
                }
                Op::EnqueueOn { from, target, mask, prio } => {
                    let (a, b) = (f[from].enqueue_on(target, task(next_id, mask, prio)), s[from].enqueue_on(target, task(next_id, mask, prio)));
                    prop_assert_eq!(a.is_ok(), b.is_ok());
                    next_id += 1;
                }
                Op::Pick { cpu } => {
                    if running[cpu].is_none() {
                        match (f[cpu].pick_next(), s[cpu].pick_next()) {
                            (Some(a), Some(b)) => {
                                prop_assert_eq!(a.id, b.id);
                                running[cpu] = Some((a, b));
                            }
                            (None, None) => {}
                            (a, b) => prop_assert!(false, "pick: {:?} / {:?}", a.map(|t| t.id), b.map(|t| t.id)),
                        }
                    }
                }
                Op::Requeue { cpu } => match running[cpu].take() {
                    Some((a, b)) => {
                        let a = f[cpu].switch_next(a).unwrap();
                        s[cpu].requeue(b).unwrap();
                        let b = s[cpu].pick_next();
                        match (a, b) {
                            (Some(a), Some(b)) => {
                                prop_assert_eq!(a.id, b.id);
                                running[cpu] = Some((a, b));
                            }
                            (None, None) => {}
                            (a, b) => prop_assert!(false, "yield: {:?} / {:?}", a.map(|t| t.id), b.map(|t| t.id)),
                        }
                    }
                    None => {
                        let e = f[cpu].switch_next(task(usize::MAX, 15, 1)).unwrap_err();
                        prop_assert_eq!(e.error, SchedError::NothingRunning);
                    }
                },
                Op::Block { cpu } => {
                    if let Some(pair) = running[cpu].take() {
                        f[cpu].block().unwrap();
                        s[cpu].block().unwrap();
                        blocked.push(pair);
                    }
                }
                Op::Wake { from, which } => {
                    if !blocked.is_empty() {
                        let (a, b) = blocked.swap_remove(which % blocked.len());
                        prop_assert_eq!(f[from].wake(a).unwrap(), s[from].wake(b).unwrap());
                    }
                }
                Op::Exit { cpu } => {
                    if running[cpu].take().is_some() {
                        f[cpu].exit().unwrap();
                        s[cpu].exit().unwrap();
                    }
                }
                Op::Tick => clock.advance(1),
            }
            for prio in Priority::ALL {
                prop_assert_eq!(fused.queued(prio), split.queued(prio));
            }
            for cpu in 0..CPUS {
                prop_assert_eq!(fused.cpu_load(cpu), split.cpu_load(cpu));
                prop_assert_eq!(f[cpu].should_preempt(), s[cpu].should_preempt());
            }
        }
    }
}
