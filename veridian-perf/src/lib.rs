//! # veridian-perf
//!
//! Measurement for kernels: x86 PMU counters (Intel architectural and AMD), a calibrated TSC clock, log-linear latency histograms and a sampling profiler with folded-stack (flame-graph) output.
//!
//! This crate is `#![no_std]` and builds alone for `x86_64-unknown-none`. What it needs from its
//! environment enters through traits the embedder implements: an MSR/CPUID access trait (so the PMU code is testable on a fake back-end) and a reference clock for TSC calibration. The `std` feature
//! supplies hosted implementations (a `perf_event_open` back-end and `CLOCK_MONOTONIC` as the reference clock).
//!
//! **Status:** the crate is an empty shell in the workspace so that the build, the lints and the
//! `no_std` check cover it from the first commit. Its contents are specified in the project's
//! issue 6; nothing in it is usable yet, and nothing pretends to be.

#![no_std]

#[cfg(feature = "std")]
extern crate std;
