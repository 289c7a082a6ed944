//! # veridian-benches
//!
//! Cross-crate, real-program benchmarks of the Veridian crates against the libraries people use
//! today (see this package's README):
//!
//! - [`workloads`]: allocator workloads in the style of mimalloc-bench (larson, an
//!   xmalloc-like producer/consumer, cache-scratch, a serde_json parser workload and a
//!   compiler-like workload), run by one binary per global allocator (`alloc-veridian`,
//!   `alloc-glibc`, `alloc-mimalloc`, `alloc-jemalloc`);
//! - [`runner`]: the `bench-programs` runner that times those binaries as whole processes;
//! - [`executor`]: a fork-join executor composed from veridian-sched, veridian-sync and
//!   veridian-alloc, measured against `rayon` by `benches/executor.rs`.

pub mod executor;
pub mod runner;
pub mod workloads;
