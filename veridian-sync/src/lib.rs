//! # veridian-sync
//!
//! Lock-free and locking synchronisation primitives for kernels: Treiber stack on crossbeam-epoch, bounded MPMC queue, SPSC ring, seqlock, sharded per-CPU counter, ticket and MCS locks with interrupt-safe variants.
//!
//! This crate is `#![no_std]` and builds alone for `x86_64-unknown-none`. What it needs from its
//! environment enters through traits the embedder implements: a CPU-index trait for sharded counters and an interrupt/preemption guard trait for interrupt-safe locks. The `std` feature
//! supplies hosted implementations (a thread-local CPU index and a no-op interrupt guard).
//!
//! **Status:** the crate is an empty shell in the workspace so that the build, the lints and the
//! `no_std` check cover it from the first commit. Its contents are specified in the project's
//! issue 4; nothing in it is usable yet, and nothing pretends to be.

#![no_std]

#[cfg(feature = "std")]
extern crate std;
