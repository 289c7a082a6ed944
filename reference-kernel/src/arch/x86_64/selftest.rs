//! Machine operations for the kernel's own tests that need instructions safe Rust cannot
//! express: software interrupts to vectors the tests own, the vector registers, a deliberate
//! page fault and a deliberate stack overflow. Each is safe to call (its preconditions are
//! checked or hold by construction), so the test list in `ktest` needs no `unsafe`: the
//! hardware `unsafe` stays under `arch/`.
//!
//! The kernel is compiled for `x86_64-unknown-none` (soft float, no SSE in compiled code), so
//! the compiler never keeps anything in a vector register: writing one here disturbs no
//! compiled code, and reading one back shows what the thread left there, or what an interrupt
//! or a switch failed to restore.

use super::context;
use super::percpu;
use super::recover::{self, Abort};

/// A vector reserved for tests: the kernel installs no handler for it; a test may (with
/// [`super::idt::set_handler`]) and raise it with [`xmm0_across_test_vector`] and its sibling. Handlers of software
/// interrupts send no EOI.
pub const TEST_VECTOR: u8 = 0x30;

/// A vector nothing ever installs a handler for (counted as unexpected).
pub const UNASSIGNED_VECTOR: u8 = 0xF1;

/// An address the kernel's page tables leave unmapped (PML4 slot 32, canonical).
pub const UNMAPPED: u64 = 0x0000_1000_0000_0000;

/// `int UNASSIGNED_VECTOR`: the unexpected-interrupt path, which counts and returns.
pub fn raise_unassigned_vector() {
    // SAFETY: the vector has a gate (every vector does) and no handler is ever installed for
    // it: the unexpected-vector path counts and returns.
    unsafe { core::arch::asm!("int {v}", v = const UNASSIGNED_VECTOR, options(nomem, nostack)) };
}

/// `int 0xff`, the local APIC's spurious vector, whose handler only counts (no EOI).
pub fn raise_spurious_vector() {
    // SAFETY: the spurious-vector handler counts and returns.
    unsafe {
        core::arch::asm!("int {v}", v = const super::apic::SPURIOUS_VECTOR, options(nomem, nostack))
    };
}

/// Reads [`UNMAPPED`] without a fix-up: the page fault is fatal for whatever runs this (a
/// thread ends, the test harness reports the test as failed). For checking that such faults
/// are reported.
pub fn fault_on_unmapped_read() {
    // SAFETY: the address is unmapped, so the read faults before it accesses anything; the
    // fault ends the caller through the kernel's fatal-exception path (a recovery point, or
    // the thread's end), never by returning garbage.
    let _ = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
}

/// Runs one SSE instruction (`pcmpeqd xmm0, xmm0`) and returns what xmm0 then held (all ones
/// if SSE works); xmm0 itself is restored.
pub fn all_ones_through_xmm0() -> [u64; 2] {
    let mut out = [0u64; 2];
    // SAFETY: SSE is enabled at boot (CR4.OSFXSR, checked by the caller's assertions through
    // `kernel::vector_state`); xmm0 is saved on the stack and restored; `out` is 16 bytes.
    unsafe {
        core::arch::asm!(
            "sub rsp, 16", "movdqu [rsp], xmm0",
            "pcmpeqd xmm0, xmm0", "movdqu [{out}], xmm0",
            "movdqu xmm0, [rsp]", "add rsp, 16",
            out = in(reg) out.as_mut_ptr(),
        )
    };
    out
}

/// As [`all_ones_through_xmm0`] with AVX's ymm0; `None` when AVX state is not enabled in XCR0.
pub fn all_ones_through_ymm0() -> Option<[u64; 4]> {
    use x86_64::registers::control::{Cr4, Cr4Flags};
    use x86_64::registers::xcontrol::{XCr0, XCr0Flags};
    // XCR0 exists only with CR4.OSXSAVE (`xgetbv` raises #UD otherwise).
    if !Cr4::read().contains(Cr4Flags::OSXSAVE)
        || !XCr0::read().contains(XCr0Flags::SSE | XCr0Flags::AVX)
    {
        return None;
    }
    let mut wide = [0u64; 4];
    // SAFETY: AVX state is enabled in XCR0 (checked above); ymm0 is saved and restored; `wide`
    // is 32 bytes.
    unsafe {
        core::arch::asm!(
            "sub rsp, 32", "vmovdqu [rsp], ymm0",
            "vpcmpeqd ymm0, ymm0, ymm0", "vmovdqu [{out}], ymm0",
            "vmovdqu ymm0, [rsp]", "add rsp, 32",
            out = in(reg) wide.as_mut_ptr(),
        )
    };
    Some(wide)
}

/// Puts `value` in the low half of xmm0.
pub fn set_xmm0(value: u64) {
    // SAFETY: writes xmm0 only (SSE is enabled at boot; compiled code keeps nothing there).
    unsafe { core::arch::asm!("movq xmm0, {}", in(reg) value, options(nomem, nostack)) };
}

/// The low half of xmm0.
pub fn xmm0() -> u64 {
    let value: u64;
    // SAFETY: reads xmm0 only.
    unsafe { core::arch::asm!("movq {}, xmm0", out(reg) value, options(nomem, nostack)) };
    value
}

/// Sets xmm0..xmm3 to `value`, raises [`TEST_VECTOR`], and returns the xor of the four
/// registers afterwards with `value` (0 when the interrupt left all four alone).
pub fn xmm0_3_across_test_vector(value: u64) -> u64 {
    let seen: u64;
    // SAFETY: only xmm0..xmm3 and the named general registers are used; the software
    // interrupt returns (the vector's handler is a test's, which sends no EOI, or the
    // unexpected-vector counter).
    unsafe {
        core::arch::asm!(
            "movq xmm0, {v}",
            "movq xmm1, {v}",
            "movq xmm2, {v}",
            "movq xmm3, {v}",
            "int {vector}",
            "movq {a}, xmm0",
            "movq {b}, xmm1",
            "xor {a}, {b}",
            "movq {b}, xmm2",
            "xor {a}, {b}",
            "movq {b}, xmm3",
            "xor {a}, {b}",
            v = in(reg) value,
            vector = const TEST_VECTOR,
            a = out(reg) seen,
            b = out(reg) _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
        );
    }
    // Four equal values xor to 0; a changed register leaves a non-zero result unless two
    // changed alike, which `xmm0_across_test_vector` catches for xmm0.
    seen
}

/// Sets xmm0 to `value`, raises [`TEST_VECTOR`], and returns xmm0 afterwards.
pub fn xmm0_across_test_vector(value: u64) -> u64 {
    let seen: u64;
    // SAFETY: as for `xmm0_3_across_test_vector`, with one register.
    unsafe {
        core::arch::asm!(
            "movq xmm0, {v}",
            "int {vector}",
            "movq {a}, xmm0",
            v = in(reg) value,
            vector = const TEST_VECTOR,
            a = out(reg) seen,
            out("xmm0") _,
        );
    }
    seen
}

/// Recurses without bound on the calling stack, with interrupts off, until the guard page
/// below the stack stops it; returns how the recovery point saw the end (a stack overflow
/// report, through the double-fault IST stack). `None` when called from a thread: a thread's
/// overflow ends the thread instead, and there is no recovery point for it here.
pub fn overflow_this_stack() -> Option<Result<(), Abort>> {
    if context::in_thread() || percpu::current().is_none() {
        return None;
    }
    // Interrupts off during the recursion: a timer tick arriving with almost no stack left
    // would overflow inside the tick handler, which then never re-arms the timer or sends EOI
    // (the bootstrap processor lost its tick, and `apic_timer_ticks` hung, in one GRUB run).
    let was_enabled = x86_64::instructions::interrupts::are_enabled();
    x86_64::instructions::interrupts::disable();
    // SAFETY: the caller is not a thread (checked above), so `f` runs on this CPU from start
    // to end (no switch can happen: interrupts are off and `recurse` never yields); the
    // aborted frames own only plain arrays, nothing locked or pinned.
    let outcome = unsafe {
        recover::catch(|| {
            core::hint::black_box(recurse(0));
        })
    };
    if was_enabled {
        x86_64::instructions::interrupts::enable();
    }
    Some(outcome)
}

/// Recursion without a bound (each frame keeps a 512-byte array alive): it only ends at the
/// guard page below the stack, for the stack-overflow tests.
#[inline(never)]
pub fn recurse(depth: u64) -> u64 {
    let mut buf = [depth; 64];
    // Keep the frame alive and the recursion non-tail; `black_box` hides from the compiler that
    // the depth bound is never reached.
    core::hint::black_box(&mut buf);
    if depth == core::hint::black_box(u64::MAX) {
        return 0;
    }
    recurse(depth + 1).wrapping_add(buf[7])
}
