//! # veridian-io
//!
//! Submission/completion rings in the io_uring style, batched operations, buffer pools and
//! zero-copy buffer handles, behind a [`Backend`] trait.
//!
//! | module | what it holds |
//! |---|---|
//! | [`ring`] | SPSC rings: [`ring::Producer`]/[`ring::Consumer`] (back-pressure when full), [`ring::OverflowProducer`] (completions never dropped) |
//! | [`entry`] | [`Sqe`]/[`Cqe`], the entries the rings carry, and their flags |
//! | [`error`] | [`IoError`]: errno values and this crate's own refusals |
//! | [`pool`] | [`PageSource`] (the embedder's pages), [`BufferPool`], [`PoolBuf`] |
//! | [`backend`] | the [`Backend`] trait |
//! | [`batch`] | [`BatchedIo`]: typed [`Op`]s, one doorbell per batch, [`Completion`]s by user data |
//! | [`batch_processor`] | [`BatchProcessor`]: items collected and handed to a processor on size, time ([`Clock`]), `flush` and drop |
//! | [`loopback`] | [`LoopbackBackend`]: in-memory files, for tests (`no_std`) |
//! | `hosted` (feature `std`) | Linux io_uring back-end, `pread`/`pwrite` fallback, splice `send_file` |
//!
//! This crate is `#![no_std]` (with `alloc`) and builds alone for `x86_64-unknown-none`. What
//! it needs from its environment enters through traits the embedder implements: [`Backend`]
//! (the kernel drives virtio devices with it) and [`PageSource`] for DMA-able buffer memory.

#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod backend;
pub mod batch;
pub mod batch_processor;
pub mod entry;
pub mod error;
pub mod loopback;
pub mod pool;
mod primitives;
pub mod ring;

#[cfg(feature = "std")]
pub mod hosted;

pub use backend::Backend;
pub use batch::{BatchedIo, Completion, Fd, IoBuf, Op, Rejected};
pub use batch_processor::{BatchProcessor, Clock};
pub use entry::{Cqe, FsyncFlags, IoVec, Opcode, Sqe, SqeFlags};
pub use error::IoError;
pub use loopback::{CompletionOrder, LoopbackBackend};
pub use pool::{BufferPool, HeapPages, PageSource, PoolBuf};
