//! The embedder seams: what this crate needs from its environment, as traits.
//!
//! A kernel implements these with its own machinery (CPUID and `rdmsr`/`wrmsr` with an exception
//! fix-up, the CPU index from its per-CPU area, its page tables for the readability check); tests
//! implement them with fakes (a table of CPUID answers, a map of MSRs); the `std` feature has
//! hosted versions in `crate::hosted`. The reference clock used for TSC calibration is
//! [`crate::clock::Clock`], next to the code that uses it.
//!
//! What each implementation must guarantee is written on the trait. Only [`AddressCheck`] is an
//! `unsafe trait`: the frame-pointer walker dereferences every address it approves, so a wrong
//! answer there breaks memory safety. MSR access is dangerous to *call*, not to implement, so its
//! methods are `unsafe fn` and the PMU code states at each call why the MSR is one it may touch.

use core::fmt;

/// Executes `CPUID` (or answers as it would): the embedder trait of `veridian-embed`,
/// re-exported with its result type (a kernel that also embeds veridian-simd implements it
/// once; `veridian_simd::cpu::CpuidSource` adds XCR0 on top).
///
/// This crate reads leaves `0`, `1`, `0xA` (Intel's architectural PMU), `0x8000_0000`,
/// `0x8000_0001` and `0x8000_0007` (invariant TSC), `0x8000_0022` (AMD's PerfMonV2), and checks
/// the maximum leaf before trusting any of them. A test answers from a table:
///
/// ```
/// use veridian_perf::env::{Cpuid, CpuidResult};
///
/// /// A CPU that reports nothing beyond leaf 0 and no vendor: no PMU, no invariant TSC.
/// struct Bare;
///
/// impl Cpuid for Bare {
///     fn cpuid(&self, _leaf: u32, _subleaf: u32) -> CpuidResult {
///         CpuidResult::default()
///     }
/// }
///
/// assert!(!veridian_perf::clock::invariant_tsc(&Bare));
/// assert!(veridian_perf::pmu::detect(&Bare).is_err());
/// ```
pub use veridian_embed::{Cpuid, CpuidResult};

/// An MSR access or `RDPMC` that the back-end refused or that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrError {
    /// The MSR number (or, for `RDPMC`, the `ECX` value) that failed.
    pub register: u32,
}

impl fmt::Display for MsrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "access to MSR/PMC {:#x} faulted or was refused",
            self.register
        )
    }
}

/// Reads and writes model-specific registers and performance counters of the current CPU.
///
/// The PMU code ([`crate::pmu`]) only touches performance-monitoring MSRs whose existence CPUID
/// reported (and, before using them, checks with a write/read-back probe that they hold what is
/// written). All calls for one [`crate::pmu::Pmu`] must reach the same CPU: the embedder keeps
/// the caller on one CPU (its CPU guard) or creates one `Pmu` per CPU.
///
/// An implementation that can recover from the `#GP` a missing MSR raises (an exception fix-up
/// table, a hypervisor that reports errors) should return [`MsrError`] instead; the native
/// back-end [`crate::arch::NativeMsr`] cannot and faults.
pub trait MsrAccess {
    /// Returns the value of MSR `msr`.
    ///
    /// # Safety
    /// The MSR must exist on this CPU (or the implementation must turn the fault into
    /// `Err`), and reading it must have no side effect the rest of the system relies on.
    unsafe fn read_msr(&self, msr: u32) -> Result<u64, MsrError>;

    /// Writes `value` to MSR `msr`.
    ///
    /// # Safety
    /// As for [`MsrAccess::read_msr`], and the write must not break an invariant of the rest
    /// of the system (for this crate: only performance-monitoring MSRs that nothing else is
    /// using at the time).
    unsafe fn write_msr(&self, msr: u32, value: u64) -> Result<(), MsrError>;

    /// Executes `RDPMC` with `ECX = index` (Intel: bit 30 selects the fixed counters).
    ///
    /// # Safety
    /// The counter must exist, and `RDPMC` must be permitted at the caller's privilege level
    /// (`CR4.PCE` outside ring 0), or the implementation must turn the fault into `Err`.
    unsafe fn read_pmc(&self, index: u32) -> Result<u64, MsrError>;
}

/// Tells whether memory may be read, for the frame-pointer walker.
///
/// # Safety
/// When [`AddressCheck::is_readable`] returns `true` for `(addr, len)`, reading `len` bytes at
/// `addr` must not fault and must not have side effects (no MMIO) for as long as the walk that
/// asked lasts (in interrupt context: until the handler returns). Returning `false` is always
/// safe; it only shortens the stack.
pub unsafe trait AddressCheck {
    /// Whether `len` bytes starting at `addr` are mapped and readable now.
    fn is_readable(&self, addr: usize, len: usize) -> bool;
}

/// The index of the CPU the caller runs on, for samples and per-CPU data: the workspace-wide
/// embedder trait of `veridian-embed`, re-exported (a kernel that also embeds veridian-sync
/// implements it once).
///
/// A stale answer (the caller migrated just after asking) only mislabels a sample; nothing in
/// this crate relies on it for safety. A sample records the index as a `u32` (`u32::MAX` for
/// an index that does not fit).
///
/// A `no_std` kernel implements it over its per-CPU data; the index here comes from an atomic
/// that stands for the kernel's per-CPU block (a kernel reads it with one `gs`-relative load):
///
/// ```
/// use core::sync::atomic::{AtomicUsize, Ordering};
/// use veridian_perf::env::CpuIndex;
///
/// /// Stand-in for the per-CPU block's index field.
/// static THIS_CPU: AtomicUsize = AtomicUsize::new(0);
///
/// struct KernelCpus;
///
/// impl CpuIndex for KernelCpus {
///     fn max_cpus(&self) -> usize {
///         64
///     }
///     fn current_cpu(&self) -> usize {
///         THIS_CPU.load(Ordering::Relaxed)
///     }
/// }
///
/// THIS_CPU.store(3, Ordering::Relaxed);
/// assert_eq!(KernelCpus.current_cpu(), 3);
/// ```
pub use veridian_embed::CpuIndex;
