//! # veridian-perf
//!
//! Measurement for kernels, the crate behind the project's first principle ("measure, don't
//! guess"):
//!
//! - [`pmu`]: x86 performance counters. Intel's architectural PMU (CPUID leaf `0xA`, versions
//!   1–5: general-purpose and fixed counters, `IA32_PERF_GLOBAL_CTRL`) and AMD's `PerfCtr`
//!   (legacy `0xC001_0000..`, core extension `0xC001_0200..`, PerfMonV2 global control),
//!   programmed through the [`env::MsrAccess`] and [`env::Cpuid`] traits; counter groups read
//!   together; `RDPMC` reads. No PMU (QEMU TCG, most cloud VMs) is detected and reported as an
//!   error, never as garbage counts.
//! - [`clock`]: the TSC as a clock: invariant-TSC check, calibration against an embedder's
//!   reference clock, overflow-free cycles→ns conversion (fixed-point mult/shift), serialised
//!   start/stop reads and the measured overhead of an empty timing loop (as sel4bench does).
//! - [`histogram`]: a log-linear latency histogram in a fixed array (no allocation), with
//!   min/median/p99/p99.9/max and a documented relative error bound.
//! - [`profiler`]: a sampling profiler: fixed-size samples (timestamp, CPU, IP, frame-pointer
//!   stack, thread) into a lock-free SPSC ring written from interrupt context, a frame-pointer
//!   walker guarded by the embedder's "is this readable" check, an adaptive sampling rate with an
//!   overhead budget, a symbolisation hook and folded-stack output for `inferno`/`flamegraph.pl`.
//! - `linux` (feature `std`): `perf_event_open` counter groups; `hosted`: hosted
//!   implementations of the embedder traits (`CLOCK_MONOTONIC`, `sched_getcpu`).
//!
//! What the crate needs from its environment enters through the traits in [`mod@env`]; it reaches
//! no global facility of any kernel. `#![no_std]`; builds alone for `x86_64-unknown-none`.
//! Architecture-specific instructions live in [`arch`], which has a portable fallback (other
//! targets compile; the TSC/PMU entry points then report "unsupported").
//!
//! Features: `alloc` (folded-stack aggregation), `std` (implies `alloc`; Linux back-ends).

#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod arch;
pub mod clock;
pub mod env;
pub mod histogram;
#[cfg(feature = "std")]
pub mod hosted;
#[cfg(feature = "std")]
pub mod linux;
pub mod pmu;
mod primitives;
pub mod profiler;

pub use clock::{Clock, CyclesToNs, TscClock};
pub use env::{AddressCheck, CpuIndex, Cpuid, CpuidResult, MsrAccess};
pub use histogram::Histogram;
pub use pmu::{Event, Pmu, PmuError};
