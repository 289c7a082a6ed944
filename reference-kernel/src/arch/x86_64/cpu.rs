//! CPU identification and enabling of the x87/SSE/AVX register state.
//!
//! The kernel itself is compiled for `x86_64-unknown-none`, which does not use vector registers,
//! but the Veridian crates (veridian-simd above all) run vector code in the kernel. That needs
//! CR0.EM clear, CR0.MP and CR0.NE set, CR4.OSFXSR and CR4.OSXMMEXCPT set and, where the CPU has
//! XSAVE, CR4.OSXSAVE with XCR0 enabling every state component the kernel knows how to use and
//! the CPU supports (x87, SSE, AVX, and the three AVX-512 components together).
//! Saving that state on context switch is the scheduler's job (later).

use raw_cpuid::CpuId;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::xcontrol::{XCr0, XCr0Flags};

/// What [`enable_vector_state`] turned on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VectorState {
    /// SSE (always on x86_64).
    pub sse: bool,
    /// XSAVE enabled (CR4.OSXSAVE).
    pub xsave: bool,
    /// AVX state enabled in XCR0.
    pub avx: bool,
    /// AVX-512 state (opmask, ZMM_Hi256, Hi16_ZMM) enabled in XCR0.
    pub avx512: bool,
}

/// Enables the FPU/SSE state, and AVX/AVX-512 state via XCR0 when the CPU supports them.
pub fn enable_vector_state() -> VectorState {
    let cpuid = CpuId::new();
    let features = cpuid.get_feature_info();
    let mut state = VectorState {
        sse: true,
        ..VectorState::default()
    };

    let mut cr0 = Cr0::read();
    cr0.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
    cr0.insert(Cr0Flags::MONITOR_COPROCESSOR | Cr0Flags::NUMERIC_ERROR);
    // SAFETY: clearing EM/TS and setting MP/NE only changes how x87/SSE instructions are
    // handled (they execute natively and report errors as #MF); no memory mapping changes.
    unsafe { Cr0::write(cr0) };

    let mut cr4 = Cr4::read();
    cr4.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
    let has_xsave = features.as_ref().is_some_and(|f| f.has_xsave());
    if has_xsave {
        cr4.insert(Cr4Flags::OSXSAVE);
    }
    // SAFETY: these CR4 bits only enable FXSAVE/SSE, SIMD exceptions and XSAVE, which the CPU
    // reports as supported (SSE is architectural on x86_64, XSAVE checked above).
    unsafe { Cr4::write(cr4) };
    if !has_xsave {
        return state;
    }
    state.xsave = true;

    // Components the CPU can enable (CPUID.(EAX=0DH,ECX=0):EAX).
    let supported = cpuid
        .get_extended_state_info()
        .map(|s| {
            let mut f = XCr0Flags::X87 | XCr0Flags::SSE;
            if s.xcr0_supports_avx_256() {
                f |= XCr0Flags::AVX;
            }
            if s.xcr0_supports_avx512_opmask()
                && s.xcr0_supports_avx512_zmm_hi256()
                && s.xcr0_supports_avx512_zmm_hi16()
            {
                f |= XCr0Flags::OPMASK | XCr0Flags::ZMM_HI256 | XCr0Flags::HI16_ZMM;
            }
            f
        })
        .unwrap_or(XCr0Flags::X87 | XCr0Flags::SSE);
    let mut xcr0 = XCr0Flags::X87 | XCr0Flags::SSE;
    if supported.contains(XCr0Flags::AVX) && features.as_ref().is_some_and(|f| f.has_avx()) {
        xcr0 |= XCr0Flags::AVX;
        state.avx = true;
        let avx512 = XCr0Flags::OPMASK | XCr0Flags::ZMM_HI256 | XCr0Flags::HI16_ZMM;
        if supported.contains(avx512) {
            xcr0 |= avx512;
            state.avx512 = true;
        }
    }
    // SAFETY: every bit written is reported supported by CPUID leaf 0xD, x87 is set, and AVX-512
    // bits are only set together with AVX, as XSETBV requires (otherwise it raises #GP).
    unsafe { XCr0::write(xcr0) };
    state
}

/// Vendor, brand and the features the banner reports.
pub struct CpuSummary {
    vendor: [u8; 12],
    vendor_len: usize,
    brand: [u8; 48],
    brand_len: usize,
    /// Family, model, stepping (display values).
    pub family_model_stepping: (u32, u32, u32),
    features: [&'static str; 24],
    feature_count: usize,
}

impl CpuSummary {
    /// Reads CPUID.
    pub fn read() -> Self {
        let cpuid = CpuId::new();
        let mut s = CpuSummary {
            vendor: [0; 12],
            vendor_len: 0,
            brand: [0; 48],
            brand_len: 0,
            family_model_stepping: (0, 0, 0),
            features: [""; 24],
            feature_count: 0,
        };
        if let Some(v) = cpuid.get_vendor_info() {
            let b = v.as_str().as_bytes();
            let n = b.len().min(12);
            s.vendor[..n].copy_from_slice(&b[..n]);
            s.vendor_len = n;
        }
        if let Some(b) = cpuid.get_processor_brand_string() {
            let b = b.as_str().trim().as_bytes();
            let n = b.len().min(48);
            s.brand[..n].copy_from_slice(&b[..n]);
            s.brand_len = n;
        }
        let mut add = |present: bool, name: &'static str| {
            if present && s.feature_count < s.features.len() {
                s.features[s.feature_count] = name;
                s.feature_count += 1;
            }
        };
        if let Some(f) = cpuid.get_feature_info() {
            s.family_model_stepping = (
                u32::from(f.family_id()),
                u32::from(f.model_id()),
                u32::from(f.stepping_id()),
            );
            add(f.has_sse42(), "sse4.2");
            add(f.has_popcnt(), "popcnt");
            add(f.has_xsave(), "xsave");
            add(f.has_avx(), "avx");
            add(f.has_x2apic(), "x2apic");
            add(f.has_tsc_deadline(), "tsc-deadline");
            add(f.has_rdrand(), "rdrand");
            add(f.has_pcid(), "pcid");
        }
        if let Some(e) = cpuid.get_extended_feature_info() {
            add(e.has_avx2(), "avx2");
            add(e.has_bmi2(), "bmi2");
            add(e.has_rep_movsb_stosb(), "erms");
            add(e.has_fsgsbase(), "fsgsbase");
            add(e.has_avx512f(), "avx512f");
            add(e.has_avx512bw(), "avx512bw");
            add(e.has_avx512vl(), "avx512vl");
            add(e.has_smep(), "smep");
            add(e.has_smap(), "smap");
            add(e.has_invpcid(), "invpcid");
            // FSRM is CPUID.(EAX=7,ECX=0):EDX[4]; raw-cpuid has no accessor for it.
            add(
                core::arch::x86_64::__cpuid_count(7, 0).edx & (1 << 4) != 0,
                "fsrm",
            );
        }
        if let Some(e) = cpuid.get_extended_processor_and_feature_identifiers() {
            add(e.has_1gib_pages(), "pdpe1gb");
            add(e.has_execute_disable(), "nx");
            add(e.has_rdtscp(), "rdtscp");
        }
        if let Some(p) = cpuid.get_advanced_power_mgmt_info() {
            add(p.has_invariant_tsc(), "invariant-tsc");
        }
        s
    }

    /// CPU vendor string ("GenuineIntel", "AuthenticAMD", ...).
    pub fn vendor(&self) -> &str {
        core::str::from_utf8(&self.vendor[..self.vendor_len]).unwrap_or("?")
    }

    /// Processor brand string, or "" when CPUID has none.
    pub fn brand(&self) -> &str {
        core::str::from_utf8(&self.brand[..self.brand_len]).unwrap_or("?")
    }

    /// Names of the notable features present.
    pub fn features(&self) -> &[&'static str] {
        &self.features[..self.feature_count]
    }
}
