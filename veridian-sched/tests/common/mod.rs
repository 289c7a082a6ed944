//! Shared test fixtures: a task type and topologies.

#![allow(dead_code, reason = "each test file uses a subset")]

use veridian_sched::{CpuSet, Priority, Task, Topology, TopologyBuilder};

/// A task as the tests see it.
#[derive(Debug)]
pub struct TestTask {
    pub id: usize,
    pub affinity: CpuSet,
    pub priority: Priority,
    /// Times it was run (the simulation requeues some tasks once).
    pub runs: usize,
}

impl TestTask {
    pub fn new(id: usize, affinity: CpuSet, priority: Priority) -> Box<Self> {
        Box::new(Self {
            id,
            affinity,
            priority,
            runs: 0,
        })
    }
}

impl Task for TestTask {
    fn affinity(&self) -> &CpuSet {
        &self.affinity
    }
    fn priority(&self) -> Priority {
        self.priority
    }
}

/// Two nodes of `per_node` CPUs each (node 0: CPUs `0..per_node`), distance 20, no SMT.
pub fn two_nodes(per_node: usize) -> Topology {
    let mut b = TopologyBuilder::new(2);
    for cpu in 0..2 * per_node {
        b.cpu(cpu, cpu / per_node);
    }
    b.uniform_remote(20);
    b.build().unwrap()
}
