//! # veridian-io
//!
//! Submission/completion rings in the io_uring style, batched operations, buffer pools and
//! zero-copy buffer handles, behind a [`Backend`] trait.
//!
//! | module | what it holds |
//! |---|---|
//! | [`ring`] | SPSC rings (veridian-sync's ring core, re-exported): [`ring::Producer`]/[`ring::Consumer`] (back-pressure when full) over heap ([`ring::Ring`]) inline static ([`ring::StaticRing`]) or shared-memory ([`ring::SharedRing`]: `repr(C)`, no pointers, zeroed memory is an empty ring) slots, [`ring::OverflowProducer`] (completions never dropped) |
//! | [`entry`] | [`Sqe`]/[`Cqe`], the entries the rings carry, and their flags |
//! | [`error`] | [`IoError`]: errno values and this crate's own refusals |
//! | [`pool`] | [`PageSource`] (the embedder's pages, shared with veridian-alloc through `veridian-embed`) and [`DmaSource`] (their device addresses), [`BufferPool`], [`PoolBuf`] |
//! | [`backend`] | the [`Backend`] trait |
//! | [`batch`] | [`BatchedIo`]: typed [`Op`]s, one doorbell per batch, [`Completion`]s by user data |
//! | [`batch_processor`] | [`BatchProcessor`]: items collected and handed to a processor on size, time ([`Clock`]), `flush` and drop |
//! | [`loopback`] | [`LoopbackBackend`]: in-memory files, for tests (`no_std`) |
//! | `hosted` (feature `std`) | Linux io_uring back-end, `pread`/`pwrite` fallback, splice `send_file` |
//!
//! This crate is `#![no_std]` and builds alone for `x86_64-unknown-none`. With default
//! features it needs `alloc`; with `default-features = false` (no `alloc` feature) it needs no
//! allocator at all and offers the ring ([`ring::StaticRing`], [`ring::Producer`],
//! [`ring::Consumer`]), the entries ([`Sqe`], [`Cqe`]) and [`IoError`]. What it needs from its
//! environment enters through traits the embedder implements: [`Backend`] (the kernel drives
//! virtio devices with it) and [`PageSource`] + [`DmaSource`] for DMA-able buffer memory (feature
//! `alloc`).

#![no_std]
// The docs describe the whole crate; without `alloc` their links to the heap-only items have
// no target (the default and all-features docs are checked with `-D warnings`).
#![cfg_attr(not(feature = "alloc"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "alloc")]
pub mod backend;
#[cfg(feature = "alloc")]
pub mod batch;
#[cfg(feature = "alloc")]
pub mod batch_processor;
pub mod entry;
pub mod error;
#[cfg(feature = "alloc")]
pub mod loopback;
#[cfg(feature = "alloc")]
pub mod pool;
pub mod ring;
#[cfg(feature = "virtio")]
pub mod virtio;

#[cfg(feature = "std")]
pub mod hosted;

#[cfg(feature = "alloc")]
pub use backend::Backend;
#[cfg(feature = "alloc")]
pub use batch::{BatchedIo, Completion, Fd, IoBuf, Op, Rejected};
#[cfg(feature = "alloc")]
pub use batch_processor::{BatchProcessor, Clock};
pub use entry::{Cqe, FsyncFlags, IoVec, Opcode, Sqe, SqeFlags};
pub use error::IoError;
#[cfg(feature = "alloc")]
pub use loopback::{CompletionOrder, LoopbackBackend};
#[cfg(feature = "alloc")]
pub use pool::{BufferPool, DmaSource, HeapPages, PageSource, PoolBuf};
