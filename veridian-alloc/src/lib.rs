//! # veridian-alloc
//!
//! A size-class allocator for kernels: per-CPU magazines in front of slabs, slabs and large
//! blocks from a buddy allocator, the buddy allocator fed by the embedder's page source. The
//! buddy allocator also stands alone as a physical page-frame allocator with 2 MiB and 1 GiB
//! huge-page allocation.
//!
//! - [`Heap`]: `GlobalAlloc` and `allocator_api2::alloc::Allocator` (for `&Heap`), per-class
//!   statistics, realloc in place within a class. Out of memory is null / `AllocError`, never a
//!   panic.
//! - [`buddy::BuddyAllocator`], [`frame::FrameAllocator`]: binary buddy over memory regions;
//!   the frame allocator returns physical addresses through the embedder's direct map.
//! - [`pool::ObjectPool`]: a typed object cache (constructor, reset hook, RAII guards) with
//!   per-CPU magazines and a shared depot, over `&Heap` or any other allocator.
//! - [`env`](mod@env): the two embedder traits, [`PageSource`] and [`CpuLocal`].
//! - `hosted` (feature `std`): `mmap` pages and per-thread slots, so the same code runs on Linux
//!   (tests, benchmarks, or as a process's `#[global_allocator]`).
//!
//! ```ignore
//! use veridian_alloc::{Heap, hosted::{MmapPages, ThreadSlots}};
//! #[global_allocator]
//! static HEAP: Heap<MmapPages, ThreadSlots> = Heap::new(MmapPages, ThreadSlots);
//! ```
//!
//! `#![no_std]`; builds for `x86_64-unknown-none`. See the crate README for the design and the
//! measured results.

#![no_std]

#[cfg(feature = "std")]
extern crate std;

pub mod buddy;
pub mod env;
pub mod frame;
mod heap;
#[cfg(feature = "std")]
pub mod hosted;
mod pinned;
pub mod pool;
pub mod size_class;
mod slab;
#[cfg(all(test, feature = "std"))]
mod testing;

/// The `allocator-api2` crate this one implements `Allocator` for and takes allocators from
/// (`ObjectPool`'s `A`), re-exported so an embedder names the same version without adding it.
pub use allocator_api2;
pub use env::{CpuLocal, PageSource, SingleCpu};
pub use heap::{
    CHUNK_SIZE, CHUNKS_KEPT, ClassStats, DEFAULT_CPUS, EMPTY_SLABS_KEPT, Heap, HeapConfig,
    HeapStats, SLOT_BYTES,
};
/// The `lock_api` crate whose [`RawMutex`](lock_api::RawMutex) is [`Heap`]'s lock parameter,
/// re-exported so an embedder implements or names it without adding it at a matching version.
pub use lock_api;
pub use pinned::SpinLock;
pub use pool::{ObjectPool, PoolConfig, PoolStats, Pooled};
