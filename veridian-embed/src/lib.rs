//! # veridian-embed
//!
//! The traits a kernel implements once to embed any of the Veridian component crates, defined
//! in one place so that a kernel using two crates does not implement the same concept twice.
//! No code besides the traits and the [`loom`] facade, no dependencies (loom under `cfg(loom)`
//! only), no allocation; each component crate re-exports the traits it uses
//! (`veridian_alloc::PageSource` *is* [`PageSource`]), so an embedder never needs to name this
//! crate.
//!
//! | trait | used by |
//! |---|---|
//! | [`PageSource`] | veridian-alloc (the heap's chunks and direct blocks), veridian-io (buffer pool memory; its `DmaSource` adds the device address) |
//! | [`CpuIndex`] | veridian-sync (`ShardedCounter`), veridian-perf (the sampler's CPU field) |
//! | [`Clock`] | veridian-io (`BatchProcessor`'s time bound), veridian-perf (the reference the TSC is calibrated against), veridian-sched (time slices) |
//! | [`Cpuid`] (answers as [`CpuidResult`]) | veridian-perf (PMU detection, invariant-TSC check), veridian-simd (feature detection; its `CpuidSource` adds `xcr0`) |
//!
//! Besides the traits, [`loom`]: the one switch between `core`'s atomics and loom's for the
//! crates' model checks (veridian-sync, -io, -perf, -sched).
//!
//! `#![no_std]`, builds for any target.

#![no_std]

pub mod loom;

use core::ptr::NonNull;

/// A source of large, aligned pieces of memory (a kernel: blocks of its frame allocator seen
/// through its direct map).
///
/// Each user states in its own documentation what it asks for (veridian-alloc: chunks aligned
/// to their power-of-two size and page-aligned direct blocks; veridian-io: buffer regions); a
/// source may refuse any request it cannot serve by returning `None`.
///
/// # Safety
/// Implementations must guarantee:
/// - a chunk returned by [`PageSource::allocate_chunk`] is `len` bytes, aligned to `align`,
///   readable and writable, and used by nothing else until it is given back with
///   [`PageSource::release_chunk`];
/// - both methods may be called from any CPU (users serialise their own calls, not with other
///   users of the same source).
///
/// # Example
///
/// A source carving chunks from a static arena, front to back (released chunks are not reused
/// in this sketch):
///
/// ```
/// use core::ptr::NonNull;
/// use core::sync::atomic::{AtomicUsize, Ordering};
/// use veridian_embed::PageSource;
///
/// #[repr(C, align(4096))]
/// struct Memory([u8; 64 * 1024]);
/// static mut MEMORY: Memory = Memory([0; 64 * 1024]);
///
/// struct Arena {
///     used: AtomicUsize,
/// }
///
/// // SAFETY: each chunk is a distinct, aligned, writable part of `MEMORY`, handed out once
/// // (the compare-exchange claims it), and nothing else uses `MEMORY`.
/// unsafe impl PageSource for Arena {
///     fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
///         if !align.is_power_of_two() || align > 4096 {
///             return None; // the arena itself is only 4 KiB-aligned
///         }
///         let base = (&raw mut MEMORY).cast::<u8>();
///         let mut used = self.used.load(Ordering::Relaxed);
///         loop {
///             let start = used.checked_next_multiple_of(align)?;
///             let end = start.checked_add(len)?;
///             if end > 64 * 1024 {
///                 return None;
///             }
///             match self.used.compare_exchange(used, end, Ordering::AcqRel, Ordering::Relaxed) {
///                 // SAFETY: `start + len <= 64 KiB`: inside `MEMORY`.
///                 Ok(_) => return NonNull::new(unsafe { base.add(start) }),
///                 Err(now) => used = now,
///             }
///         }
///     }
///
///     unsafe fn release_chunk(&self, _chunk: NonNull<u8>, _len: usize) {}
/// }
///
/// let arena = Arena { used: AtomicUsize::new(0) };
/// let chunk = arena.allocate_chunk(8192, 4096).unwrap();
/// assert_eq!(chunk.as_ptr() as usize % 4096, 0);
/// assert!(arena.allocate_chunk(1 << 20, 4096).is_none());
/// ```
pub unsafe trait PageSource {
    /// Returns a chunk of exactly `len` bytes aligned to `align` (a power of two), or `None`
    /// when no memory is left or the source cannot serve the request. Must not panic.
    fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>>;

    /// Gives a chunk back.
    ///
    /// # Safety
    /// `ptr` and `len` are exactly a chunk this source returned and not yet released, and no
    /// reference into it is used afterwards.
    unsafe fn release_chunk(&self, ptr: NonNull<u8>, len: usize);
}

// SAFETY: a shared reference forwards to the source itself, which upholds the contract.
unsafe impl<T: PageSource + ?Sized> PageSource for &T {
    fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
        (**self).allocate_chunk(len, align)
    }

    unsafe fn release_chunk(&self, ptr: NonNull<u8>, len: usize) {
        // SAFETY: forwarded contract.
        unsafe { (**self).release_chunk(ptr, len) }
    }
}

/// The index of the CPU the caller runs on, for per-CPU sharding and labelling.
///
/// A stale answer (the caller migrated right after asking) must cost its users at most
/// contention or a mislabelled record, never correctness: no user relies on it for safety
/// (where exclusivity matters, the crates take a guard instead: veridian-alloc's `CpuLocal`,
/// veridian-sched's `CpuGuard`).
///
/// ```
/// use core::sync::atomic::{AtomicUsize, Ordering};
/// use veridian_embed::CpuIndex;
///
/// /// Stand-in for the per-CPU block's index field (a kernel: one `gs`-relative load).
/// static THIS_CPU: AtomicUsize = AtomicUsize::new(0);
///
/// struct KernelCpus;
///
/// impl CpuIndex for KernelCpus {
///     fn max_cpus(&self) -> usize {
///         8
///     }
///     fn current_cpu(&self) -> usize {
///         THIS_CPU.load(Ordering::Relaxed)
///     }
/// }
///
/// THIS_CPU.store(3, Ordering::Relaxed);
/// assert_eq!(KernelCpus.current_cpu(), 3);
/// ```
pub trait CpuIndex {
    /// Number of distinct indices; must not change.
    fn max_cpus(&self) -> usize;
    /// Index of the current CPU, `< max_cpus()` (users reduce larger values modulo
    /// `max_cpus()` or treat them as unknown).
    fn current_cpu(&self) -> usize;
}

/// The four registers one `CPUID` query returns; a plain struct, so the trait and its fakes
/// build on every target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuidResult {
    /// `EAX`.
    pub eax: u32,
    /// `EBX`.
    pub ebx: u32,
    /// `ECX`.
    pub ecx: u32,
    /// `EDX`.
    pub edx: u32,
}

/// Executes `CPUID` (or answers as it would): the real CPU, a hypervisor's filtered view, or a
/// table of answers in tests.
///
/// Implementations answer for the CPU the caller runs on (on real hardware every CPU gives the
/// same answers for the leaves the users read). Leaves above the maximum the CPU reports (leaf
/// `0` / `0x8000_0000`) may return anything: users check the maximum leaf before trusting a
/// leaf, as the SDM requires. A wrong answer produces wrong detection results, never undefined
/// behaviour in the users (their dispatch to special instructions reads the real CPU), so the
/// trait is safe to implement.
///
/// On x86_64 a kernel forwards to the instruction:
///
/// ```
/// use veridian_embed::{Cpuid, CpuidResult};
///
/// struct KernelCpuid;
///
/// impl Cpuid for KernelCpuid {
///     #[cfg(all(target_arch = "x86_64", not(miri)))]
///     fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult {
///         let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
///         CpuidResult { eax: r.eax, ebx: r.ebx, ecx: r.ecx, edx: r.edx }
///     }
///
///     // Not x86, or Miri (which cannot execute CPUID): every leaf reads as zero.
///     #[cfg(any(not(target_arch = "x86_64"), miri))]
///     fn cpuid(&self, _leaf: u32, _subleaf: u32) -> CpuidResult {
///         CpuidResult::default()
///     }
/// }
///
/// // Leaf 0: EAX is the highest standard leaf (at least 1 on any x86_64 CPU).
/// let max_leaf = KernelCpuid.cpuid(0, 0).eax;
/// assert!(cfg!(any(not(target_arch = "x86_64"), miri)) || max_leaf >= 1);
/// ```
pub trait Cpuid {
    /// Returns `CPUID(leaf, subleaf)` (`leaf` in `EAX`, `subleaf` in `ECX`).
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult;
}

impl<T: Cpuid + ?Sized> Cpuid for &T {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult {
        (**self).cpuid(leaf, subleaf)
    }
}

/// A monotonic clock in nanoseconds: the kernel's TSC, HPET or timer-tick count scaled to
/// nanoseconds.
///
/// [`Clock::now_ns`] must never decrease (veridian-io and veridian-sched read a backwards step
/// as no time passing). The origin is arbitrary and fixed. The resolution may be coarse (a tick
/// counter advances in steps of the tick length); the users then see time in those steps: a
/// veridian-sched slice ends at the first reading at least its length after it began, and
/// veridian-perf's calibration aligns to the clock's edges and needs the clock to advance while
/// it spins.
///
/// A kernel with a periodic timer interrupt counts ticks and scales them:
///
/// ```
/// use core::sync::atomic::{AtomicU64, Ordering};
/// use veridian_embed::Clock;
///
/// const TICK_HZ: u64 = 100;
/// /// Incremented by the timer interrupt handler.
/// static TICKS: AtomicU64 = AtomicU64::new(0);
///
/// struct TickClock;
///
/// impl Clock for TickClock {
///     fn now_ns(&self) -> u64 {
///         TICKS.load(Ordering::Relaxed).saturating_mul(1_000_000_000 / TICK_HZ)
///     }
/// }
///
/// TICKS.store(3, Ordering::Relaxed);
/// assert_eq!(TickClock.now_ns(), 30_000_000); // 3 ticks of 10 ms
/// ```
pub trait Clock {
    /// Nanoseconds since an arbitrary, fixed origin. Must never decrease.
    fn now_ns(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
}
