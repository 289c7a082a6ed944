//! # veridian-sched
//!
//! Scheduling building blocks for kernels:
//!
//! - [`Topology`]: NUMA nodes, their CPUs, SMT siblings and the SLIT distance matrix, built by
//!   hand ([`TopologyBuilder`]) or from SRAT/SLIT data the kernel parsed
//!   ([`Topology::from_firmware`]), validated; [`Topology::nearby_cpus`] gives the steal order.
//! - [`CpuSet`]: a fixed-capacity affinity mask ([`MAX_CPUS`] = 256 CPUs, 32 bytes).
//! - [`deque`]: a bounded Chase–Lev work-stealing deque with the orderings of Lê et al. (2013),
//!   model-checked with loom.
//! - [`NumaScheduler`] (module [`sched`]): per-CPU run queues with three priority levels and
//!   round robin within a level, a global injector for overflow, work stealing in
//!   `nearby_cpus` order that never hands a CPU a task its affinity excludes, least-loaded
//!   placement ([`NumaScheduler::assign_thread`]) with per-CPU and per-node load counters and a
//!   memory-node hint.
//! - [`arch::x86_64`]: the context switch (callee-saved registers and rsp, naked functions) and
//!   the first frame of a new thread; the FP/SIMD contract is in that module.
//!
//! What the crate needs from its environment enters through the traits in [`env`](mod@env): a
//! [`CpuGuard`] that makes the caller the owner of one CPU's run queues, and a [`Clock`] for
//! time slices. The `std` feature supplies hosted versions in `hosted` (exclusive CPU slots
//! for OS threads, a monotonic clock) and green threads on mmap-allocated stacks with guard
//! pages, so that the context switch can be tested and measured natively.
//!
//! `#![no_std]`. The `alloc` feature (on by default) adds the deque and the scheduler, whose
//! queues live on the heap; without it [`Topology`], [`CpuSet`], the embedder traits and the
//! context switch need no global allocator. Builds for `x86_64-unknown-none`.

#![no_std]
// The docs describe the whole crate; without `alloc` their links to the heap-only items have
// no target (the default and all-features docs are checked with `-D warnings`).
#![cfg_attr(not(feature = "alloc"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod arch;
pub mod cpuset;
#[cfg(feature = "alloc")]
pub mod deque;
pub mod env;
#[cfg(all(feature = "alloc", not(loom)))]
mod fifo;
#[cfg(all(feature = "std", not(loom)))]
pub mod hosted;
#[cfg(feature = "alloc")]
mod primitives;
#[cfg(all(feature = "alloc", not(loom)))]
pub mod sched;
pub mod topology;

pub use cpuset::{CpuOutOfRange, CpuSet, MAX_CPUS};
pub use env::{Clock, CpuGuard, ManualClock};
#[cfg(all(feature = "alloc", not(loom)))]
pub use sched::{
    CpuStats, EnqueueError, LocalCpu, NumaScheduler, Placement, Priority, SchedConfig, SchedError,
    Task,
};
pub use topology::{
    CpuAffinity, CpuList, DistanceTable, MAX_NODES, Symmetry, Topology, TopologyBuilder,
    TopologyError,
};
