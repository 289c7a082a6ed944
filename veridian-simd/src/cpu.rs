//! CPU feature detection from CPUID and XCR0, without `std`.
//!
//! **What it does.** [`detect_with`] reads the CPUID leaves for SSE2..SSE4.2, POPCNT, AVX, AVX2,
//! FMA, BMI1/2, AVX-512 (F, BW, VL, DQ, CD), ERMS (leaf 7 EBX bit 9) and FSRM (leaf 7 EDX bit 4),
//! the deterministic cache-parameter leaves (0x4 on Intel, 0x8000_001D on AMD) for the sizes the
//! copy thresholds are derived from, and XCR0 through XGETBV. [`features`] and [`cpu_info`] do
//! the same on the real CPU and cache the result.
//!
//! **What it relies on.** CPUID saying an instruction set exists is not enough to use it: the
//! operating system must also have enabled the matching register state in XCR0 (and so promised
//! to save it on a context switch). AVX and AVX2 need XCR0 bits 1 (SSE) and 2 (AVX); AVX-512 also
//! needs bits 5, 6 and 7 (opmask, upper halves of ZMM0-15, ZMM16-31). XGETBV itself exists only
//! when CPUID.1:ECX.OSXSAVE is set, so it is executed only then; without OSXSAVE no AVX feature is
//! reported. This is the same rule `is_x86_feature_detected!` applies (tested under `std`).
//!
//! **What it guarantees.** A feature bit in the [`Features`] returned by [`features`] means the
//! instructions run on this CPU right now, so code compiled with the matching
//! `#[target_feature]` may be called. A kernel that enables AVX in XCR0 *after* the first call
//! must call nothing here before that, because the result is cached (see [`features`]).
//!
//! The CPUID reads go through the [`CpuidSource`] trait so that the decoding can be tested on a
//! fake CPU (a source that claims AVX-512 but whose XCR0 lacks the opmask state, for example).
//! `raw-cpuid` does the leaf decoding and the Intel/AMD cache-leaf choice.

use core::sync::atomic::{AtomicU32, Ordering};

pub use veridian_embed::{Cpuid, CpuidResult};

/// Where CPUID and XCR0 values come from: the real CPU ([`NativeCpuid`]) or a fake for tests.
///
/// The CPUID half is the embedder trait [`Cpuid`] of `veridian-embed` (re-exported here; a
/// kernel that also embeds veridian-perf implements it once); this trait adds only XCR0.
///
/// A wrong implementation only produces a wrong [`CpuInfo`]; the crate's own dispatch never uses
/// a caller's source (it always reads the real CPU), so this trait is safe to implement.
pub trait CpuidSource: Cpuid {
    /// Reads XCR0 (XGETBV with ECX = 0). Called only when CPUID.1:ECX.OSXSAVE is set.
    fn xcr0(&self) -> u64;
}

/// The CPU this code runs on.
#[derive(Clone, Copy, Debug, Default)]
pub struct NativeCpuid;

#[cfg(all(target_arch = "x86_64", not(miri)))]
impl Cpuid for NativeCpuid {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult {
        // CPUID exists on every x86_64 CPU; the intrinsic has no other precondition.
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        CpuidResult {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        }
    }
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
impl CpuidSource for NativeCpuid {
    fn xcr0(&self) -> u64 {
        let leaf1 = self.cpuid(1, 0);
        if leaf1.ecx & (1 << 27) == 0 {
            // No OSXSAVE: XGETBV would raise #UD. The OS manages no extended state.
            return 0;
        }
        // SAFETY: CPUID.1:ECX.OSXSAVE (bit 27) is set, checked just above, which means CR4.OSXSAVE
        // is on and XGETBV with ECX = 0 is a valid instruction at every privilege level.
        unsafe { xgetbv0() }
    }
}

/// XGETBV with ECX = 0.
///
/// # Safety
/// CR4.OSXSAVE must be set (CPUID.1:ECX.OSXSAVE reports it), or the instruction raises #UD.
#[cfg(all(target_arch = "x86_64", not(miri)))]
unsafe fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees XGETBV is enabled; it reads XCR0 into EDX:EAX, touches no
    // memory, no stack and no flags.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Not an x86 CPU, or Miri (which cannot execute CPUID or XGETBV): every leaf reads as zero,
/// which decodes to "no feature, no cache", so the portable variants run.
#[cfg(any(not(target_arch = "x86_64"), miri))]
impl Cpuid for NativeCpuid {
    fn cpuid(&self, _leaf: u32, _subleaf: u32) -> CpuidResult {
        CpuidResult::default()
    }
}

#[cfg(any(not(target_arch = "x86_64"), miri))]
impl CpuidSource for NativeCpuid {
    fn xcr0(&self) -> u64 {
        0
    }
}

/// A set of CPU features, each confirmed by CPUID *and* (for vector state) XCR0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Features(u32);

macro_rules! features {
    ($($(#[$doc:meta])* $name:ident = $bit:expr, $text:literal;)*) => {
        impl Features {
            $($(#[$doc])* pub const $name: Features = Features(1 << $bit);)*
            /// Every feature this type knows, with its lower-case name (the one
            /// `is_x86_feature_detected!` uses where it has one).
            pub const ALL: &'static [(Features, &'static str)] = &[$((Features::$name, $text)),*];
        }
    };
}

features! {
    /// SSE2 (baseline on x86_64).
    SSE2 = 0, "sse2";
    /// SSE3.
    SSE3 = 1, "sse3";
    /// SSSE3.
    SSSE3 = 2, "ssse3";
    /// SSE4.1.
    SSE4_1 = 3, "sse4.1";
    /// SSE4.2.
    SSE4_2 = 4, "sse4.2";
    /// POPCNT.
    POPCNT = 5, "popcnt";
    /// AVX, with XCR0 enabling SSE and AVX state.
    AVX = 6, "avx";
    /// AVX2, with XCR0 enabling SSE and AVX state.
    AVX2 = 7, "avx2";
    /// FMA3, with XCR0 enabling SSE and AVX state.
    FMA = 8, "fma";
    /// BMI1.
    BMI1 = 9, "bmi1";
    /// BMI2.
    BMI2 = 10, "bmi2";
    /// AVX-512 Foundation, with XCR0 enabling opmask and ZMM state.
    AVX512F = 11, "avx512f";
    /// AVX-512 byte and word instructions.
    AVX512BW = 12, "avx512bw";
    /// AVX-512 vector-length extensions (EVEX on XMM/YMM).
    AVX512VL = 13, "avx512vl";
    /// AVX-512 doubleword and quadword instructions.
    AVX512DQ = 14, "avx512dq";
    /// AVX-512 conflict detection.
    AVX512CD = 15, "avx512cd";
    /// Enhanced REP MOVSB/STOSB (fast string copies for medium and large sizes).
    ERMS = 16, "ermsb";
    /// Fast short REP MOVSB (cheap start-up for short copies).
    FSRM = 17, "fsrm";
    /// XSAVE enabled by the OS (CPUID.1:ECX.OSXSAVE): XGETBV is usable.
    OSXSAVE = 18, "osxsave";
}

impl Features {
    /// No feature.
    pub const NONE: Features = Features(0);
    /// The three AVX-512 subsets the AVX-512 routines need.
    pub const AVX512_COPY: Features =
        Features(Features::AVX512F.0 | Features::AVX512BW.0 | Features::AVX512VL.0);

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Builds a set from raw bits; bits no feature uses are dropped.
    pub const fn from_bits_truncate(bits: u32) -> Features {
        Features(bits & ((1 << 19) - 1))
    }

    /// `self ∪ other`, usable in constants.
    pub const fn union(self, other: Features) -> Features {
        Features(self.0 | other.0)
    }

    /// Whether every feature of `other` is in `self`.
    pub const fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of features in the set.
    pub const fn count(self) -> u32 {
        self.0.count_ones()
    }
}

impl core::ops::BitOr for Features {
    type Output = Features;
    fn bitor(self, rhs: Features) -> Features {
        self.union(rhs)
    }
}

impl core::ops::BitAnd for Features {
    type Output = Features;
    fn bitand(self, rhs: Features) -> Features {
        Features(self.0 & rhs.0)
    }
}

impl core::fmt::Debug for Features {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut set = f.debug_set();
        for (feature, name) in Features::ALL {
            if self.contains(*feature) {
                set.entry(name);
            }
        }
        set.finish()
    }
}

/// Data-cache sizes from the deterministic cache-parameter leaf. Zero where the CPU does not say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheInfo {
    /// L1 data cache, bytes.
    pub l1d: usize,
    /// L2 (unified) cache, bytes.
    pub l2: usize,
    /// L3 (unified) cache, bytes: the whole cache, not a per-core share.
    pub l3: usize,
    /// How many logical processors share the L3 (CPUID "maximum addressable IDs sharing this
    /// cache", an upper bound). At least 1.
    pub l3_sharing: usize,
    /// Cache line size in bytes (64 when the CPU does not say).
    pub line: usize,
}

/// Everything detected: features, caches and the raw XCR0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuInfo {
    /// Usable features (CPUID and XCR0 agree).
    pub features: Features,
    /// Cache sizes for the copy thresholds.
    pub caches: CacheInfo,
    /// XCR0 as read (0 without OSXSAVE).
    pub xcr0: u64,
}

/// XCR0 bits 1 and 2: SSE and AVX (YMM upper halves) state.
pub const XCR0_AVX_STATE: u64 = 0b110;
/// XCR0 bits 5, 6, 7: opmask, ZMM0-15 upper halves, ZMM16-31.
pub const XCR0_AVX512_STATE: u64 = 0b1110_0000;

/// Adapts a [`CpuidSource`] to `raw-cpuid`'s reader trait.
#[cfg(target_arch = "x86_64")]
struct Reader<'a, S: CpuidSource>(&'a S);

#[cfg(target_arch = "x86_64")]
impl<S: CpuidSource> Clone for Reader<'_, S> {
    fn clone(&self) -> Self {
        Reader(self.0)
    }
}

#[cfg(target_arch = "x86_64")]
impl<S: CpuidSource> raw_cpuid::CpuIdReader for Reader<'_, S> {
    fn cpuid2(&self, eax: u32, ecx: u32) -> raw_cpuid::CpuIdResult {
        let r = self.0.cpuid(eax, ecx);
        raw_cpuid::CpuIdResult {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        }
    }
}

/// Reads and decodes everything from `source` (nothing is cached).
pub fn detect_with<S: CpuidSource>(source: &S) -> CpuInfo {
    #[cfg(target_arch = "x86_64")]
    {
        detect_x86(source)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = source;
        CpuInfo::default()
    }
}

#[cfg(target_arch = "x86_64")]
fn detect_x86<S: CpuidSource>(source: &S) -> CpuInfo {
    let cpuid = raw_cpuid::CpuId::with_cpuid_reader(Reader(source));
    let mut f = Features::NONE;
    fn set(f: &mut Features, cond: bool, feature: Features) {
        if cond {
            *f = *f | feature;
        }
    }

    let mut xcr0 = 0;
    if let Some(fi) = cpuid.get_feature_info() {
        set(&mut f, fi.has_sse2(), Features::SSE2);
        set(&mut f, fi.has_sse3(), Features::SSE3);
        set(&mut f, fi.has_ssse3(), Features::SSSE3);
        set(&mut f, fi.has_sse41(), Features::SSE4_1);
        set(&mut f, fi.has_sse42(), Features::SSE4_2);
        set(&mut f, fi.has_popcnt(), Features::POPCNT);
        if fi.has_oxsave() {
            set(&mut f, true, Features::OSXSAVE);
            xcr0 = source.xcr0();
        }
        let avx_state = xcr0 & XCR0_AVX_STATE == XCR0_AVX_STATE;
        set(&mut f, fi.has_avx() && avx_state, Features::AVX);
        set(&mut f, fi.has_fma() && avx_state, Features::FMA);
    }
    let avx_state = f.contains(Features::AVX);
    let avx512_state = avx_state && xcr0 & XCR0_AVX512_STATE == XCR0_AVX512_STATE;
    if let Some(ef) = cpuid.get_extended_feature_info() {
        set(&mut f, ef.has_avx2() && avx_state, Features::AVX2);
        set(&mut f, ef.has_bmi1(), Features::BMI1);
        set(&mut f, ef.has_bmi2(), Features::BMI2);
        set(&mut f, ef.has_rep_movsb_stosb(), Features::ERMS);
        set(&mut f, ef.has_avx512f() && avx512_state, Features::AVX512F);
        let f512 = ef.has_avx512f() && avx512_state;
        set(&mut f, f512 && ef.has_avx512bw(), Features::AVX512BW);
        set(&mut f, f512 && ef.has_avx512vl(), Features::AVX512VL);
        set(&mut f, f512 && ef.has_avx512dq(), Features::AVX512DQ);
        set(&mut f, f512 && ef.has_avx512cd(), Features::AVX512CD);
        // FSRM is leaf 7.0 EDX bit 4, which raw-cpuid 11 does not name; leaf 7 exists (the
        // extended-feature leaf was just decoded from it).
        set(
            &mut f,
            source.cpuid(7, 0).edx & (1 << 4) != 0,
            Features::FSRM,
        );
    }

    let mut caches = CacheInfo {
        line: 64,
        l3_sharing: 1,
        ..CacheInfo::default()
    };
    if let Some(params) = cpuid.get_cache_parameters() {
        for p in params {
            use raw_cpuid::CacheType;
            if !matches!(p.cache_type(), CacheType::Data | CacheType::Unified) {
                continue;
            }
            let size = p.associativity()
                * p.physical_line_partitions()
                * p.coherency_line_size()
                * p.sets();
            match p.level() {
                1 => {
                    caches.l1d = size;
                    caches.line = p.coherency_line_size().max(1);
                }
                2 => caches.l2 = size,
                3 => {
                    caches.l3 = size;
                    caches.l3_sharing = p.max_cores_for_cache().max(1);
                }
                _ => {}
            }
        }
    }
    if caches.l3 == 0 {
        // Older AMD parts without leaf 0x8000_001D: leaf 0x8000_0006 gives L2 and L3 sizes.
        if let Some(info) = cpuid.get_l2_l3_cache_and_tlb_info() {
            caches.l2 = caches.l2.max(usize::from(info.l2cache_size()) * 1024);
            caches.l3 = usize::from(info.l3cache_size()) * 512 * 1024;
        }
    }

    CpuInfo {
        features: f,
        caches,
        xcr0,
    }
}

/// Cached feature bits; bit 31 set means "detected".
static FEATURES: AtomicU32 = AtomicU32::new(0);
const DETECTED: u32 = 1 << 31;

/// Detects the real CPU's features once and returns them (later calls: one atomic load).
///
/// Relaxed ordering suffices: the value is a pure function of the CPU, two racing first calls
/// store the same bits, and nothing else is published with it.
pub fn features() -> Features {
    let cached = FEATURES.load(Ordering::Relaxed);
    if cached & DETECTED != 0 {
        return Features::from_bits_truncate(cached);
    }
    cpu_info().features
}

/// Reads the real CPU (features, caches, XCR0) and refreshes the cache behind [`features`].
///
/// Not cached itself: CPUID traps to the hypervisor in a virtual machine (microseconds per
/// leaf), so call it once, at set-up; the dispatch calls it once per process or kernel.
pub fn cpu_info() -> CpuInfo {
    let info = detect_with(&NativeCpuid);
    FEATURES.store(info.features.bits() | DETECTED, Ordering::Relaxed);
    info
}
