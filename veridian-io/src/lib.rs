//! # veridian-io
//!
//! Submission/completion rings in the io_uring style, batched operations, buffer pools and zero-copy buffer handles, behind a `Backend` trait.
//!
//! This crate is `#![no_std]` and builds alone for `x86_64-unknown-none`. What it needs from its
//! environment enters through traits the embedder implements: a `Backend` trait (the kernel drives virtio devices with it) and a page-source trait for DMA-able buffers. The `std` feature
//! supplies hosted implementations (a Linux io_uring backend with a plain pread/pwrite fallback).
//!
//! **Status:** the crate is an empty shell in the workspace so that the build, the lints and the
//! `no_std` check cover it from the first commit. Its contents are specified in the project's
//! issue 8; nothing in it is usable yet, and nothing pretends to be.

#![no_std]

#[cfg(feature = "std")]
extern crate std;
