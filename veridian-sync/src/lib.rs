//! # veridian-sync
//!
//! Synchronisation primitives for kernels, lock-free where it pays and model-checked with loom:
//!
//! - `stack::TreiberStack`: lock-free stack on `crossbeam-epoch` with an explicit collector
//!   handle (no thread-local default in `no_std`). `alloc` feature.
//! - [`mpmc::Queue`]: bounded multi-producer multi-consumer queue (Vyukov sequence numbers),
//!   as `mpmc::ArrayQueue` (heap slots, `alloc` feature) or [`mpmc::StaticArrayQueue`]
//!   (inline slots, `const fn new`, usable as a `static`).
//! - [`spsc`]: the single-producer single-consumer ring core (cached counters, batch push/pop)
//!   with heap (`spsc::SpscRing`, `alloc` feature), inline static ([`spsc::StaticRing`]) and
//!   shared-memory ([`spsc::SharedRing`]) storage, and `spsc::OverflowProducer` (`alloc`);
//!   veridian-io's and veridian-perf's rings are built on it.
//! - [`seqlock::SeqLock`]: sequence lock for `Copy` data, sound in Rust's memory model.
//! - [`counter::ShardedCounter`]: one cache-padded slot per CPU, `get()` sums.
//! - [`lock`]: ticket and MCS locks (`lock_api` compatible), interrupt-safe variants, and the
//!   named [`lock::Mutex`] (`SpinLock`, `IrqSpinLock`) that the lock validator checks.
//! - [`lockdep`]: the lock validator (lock order, interrupt safety, recursion, locks held
//!   across a context switch), compiled in with the `lockdep` feature; no cost without it.
//! - [`CachePadded`]: re-exported from `crossbeam-utils`.
//!
//! What the primitives need from the environment (the CPU index, interrupt control) enters
//! through the traits in [`mod@env`]; the `std` feature supplies hosted versions in `hosted`.
//! `#![no_std]`; builds for `x86_64-unknown-none`. The `alloc` feature (on by default) adds the
//! structures that allocate; without it nothing in this crate needs a global allocator.

#![no_std]
// The docs describe the whole crate; without `alloc` their links to the heap-only items have
// no target (the default and all-features docs are checked with `-D warnings`).
#![cfg_attr(not(feature = "alloc"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(any(feature = "alloc", loom))]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod counter;
pub mod env;
#[cfg(feature = "std")]
pub mod hosted;
pub mod lock;
pub mod lockdep;
pub mod mpmc;
mod primitives;
pub mod seqlock;
pub mod spsc;
#[cfg(feature = "alloc")]
pub mod stack;

/// The `crossbeam-epoch` crate whose `Collector` and `LocalHandle` the Treiber stack takes,
/// re-exported so an embedder names the same version without adding it.
#[cfg(feature = "alloc")]
pub use crossbeam_epoch;
pub use crossbeam_utils::CachePadded;
pub use env::{CpuIndex, InterruptControl};
/// The `lock_api` crate whose `Mutex`, `MutexGuard` and `RawMutex` the locks are built on,
/// re-exported so an embedder names the same version without adding it.
pub use lock_api;
