//! What a kernel does before veridian-simd's vector variants may run: enable SSE (CR0, CR4)
//! and the XSAVE-managed state the CPU has (CR4.OSXSAVE, XCR0: x87, SSE, AVX and the AVX-512
//! components), before the first call (detection reads XCR0 once). This kernel never switches
//! context or takes an interrupt, so it saves no vector state; a real one saves it on every
//! switch (XSAVE/XRSTOR), or calls `force_variant(Variant::Erms)` instead.

use core::arch::x86_64::__cpuid_count;

/// XCR0 bits this kernel enables when the CPU supports them: x87, SSE, AVX, and AVX-512's
/// opmask, ZMM_Hi256 and Hi16_ZMM.
const WANTED_XCR0: u64 = 0b1110_0111;

/// Turns on SSE and, when CPUID.1:ECX.XSAVE is set, XSAVE with every wanted state component
/// the CPU supports. Returns the XCR0 written (0 without XSAVE).
pub fn enable_vector_state() -> u64 {
    // SAFETY: CR0.EM clear and CR0.MP set (SSE instructions execute, WAIT honours TS), CR4
    // OSFXSR and OSXMMEXCPT (SSE enabled, SIMD exceptions as #XM): the architectural set-up
    // for SSE, which every x86_64 CPU has. Only this CPU's control registers change.
    unsafe {
        core::arch::asm!(
            "mov rax, cr0", "and rax, ~(1 << 2)", "or rax, 1 << 1", "mov cr0, rax",
            "mov rax, cr4", "or rax, (1 << 9) | (1 << 10)", "mov cr4, rax",
            out("rax") _, options(nostack),
        );
    }
    let has_xsave = __cpuid_count(1, 0).ecx & (1 << 26) != 0;
    if !has_xsave {
        return 0;
    }
    // CPUID.(EAX=0xD, ECX=0):EDX:EAX is the set of XCR0 bits the CPU supports.
    let leaf = __cpuid_count(0xd, 0);
    let supported = u64::from(leaf.eax) | (u64::from(leaf.edx) << 32);
    let xcr0 = supported & WANTED_XCR0;
    // SAFETY: CPUID reports XSAVE, so CR4.OSXSAVE (bit 18) may be set; XCR0 gets only bits
    // the CPU supports, x87 and SSE included (required), and AVX-512's three bits only
    // together with AVX (the CPU supports all or none of them).
    unsafe {
        core::arch::asm!("mov rax, cr4", "or rax, 1 << 18", "mov cr4, rax", out("rax") _, options(nostack));
        core::arch::asm!(
            "xsetbv",
            in("ecx") 0, in("eax") xcr0 as u32, in("edx") (xcr0 >> 32) as u32,
            options(nostack),
        );
    }
    xcr0
}
