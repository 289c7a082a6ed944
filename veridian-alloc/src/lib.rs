//! # veridian-alloc
//!
//! Size-class kernel allocator: slabs for small and medium classes, a buddy allocator for large blocks and page frames, per-CPU magazines in front, 2 MiB / 1 GiB huge pages.
//!
//! This crate is `#![no_std]` and builds alone for `x86_64-unknown-none`. What it needs from its
//! environment enters through traits the embedder implements: a page-source trait (where slab and buddy memory comes from) and a CPU-guard trait (the current CPU index, with preemption held off while a per-CPU cache is touched). The `std` feature
//! supplies hosted implementations (mmap-backed pages and a thread-local CPU index).
//!
//! **Status:** the crate is an empty shell in the workspace so that the build, the lints and the
//! `no_std` check cover it from the first commit. Its contents are specified in the project's
//! issue 3; nothing in it is usable yet, and nothing pretends to be.

#![no_std]

#[cfg(feature = "std")]
extern crate std;
