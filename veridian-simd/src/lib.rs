//! # veridian-simd
//!
//! CPU feature detection without std (CPUID + XCR0) and memcpy/memmove/memset/memcmp with AVX-512, AVX2, ERMS and generic variants chosen once at run time.
//!
//! This crate is `#![no_std]` and builds alone for `x86_64-unknown-none`. What it needs from its
//! environment enters through traits the embedder implements: nothing beyond CPUID and XGETBV; a kernel that exports these routines as its `memcpy` must have enabled and must save the vector state. The `std` feature
//! supplies hosted implementations (a cross-check against `is_x86_feature_detected!`).
//!
//! **Status:** the crate is an empty shell in the workspace so that the build, the lints and the
//! `no_std` check cover it from the first commit. Its contents are specified in the project's
//! issue 5; nothing in it is usable yet, and nothing pretends to be.

#![no_std]

#[cfg(feature = "std")]
extern crate std;
