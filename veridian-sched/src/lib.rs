//! # veridian-sched
//!
//! Scheduling building blocks: NUMA topology with a distance matrix, CPU affinity sets, per-CPU run queues with nearest-first work stealing, load-based placement and the x86_64 context-switch routine.
//!
//! This crate is `#![no_std]` and builds alone for `x86_64-unknown-none`. What it needs from its
//! environment enters through traits the embedder implements: the topology (built by hand or from ACPI SRAT/SLIT data the kernel parses) and a CPU-guard trait. The `std` feature
//! supplies hosted implementations (green threads on mmap-allocated stacks with guard pages, so the context switch can be measured natively).
//!
//! **Status:** the crate is an empty shell in the workspace so that the build, the lints and the
//! `no_std` check cover it from the first commit. Its contents are specified in the project's
//! issue 7; nothing in it is usable yet, and nothing pretends to be.

#![no_std]

#[cfg(feature = "std")]
extern crate std;
