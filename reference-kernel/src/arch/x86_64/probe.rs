//! Probes: single instructions that may fault, recovered through an exception table.
//!
//! Each probe is a tiny assembly routine whose possibly-faulting instruction has a known address
//! (`probe_*_insn`) and a fix-up label (`probe_*_fixup`). When that instruction raises a CPU
//! exception, the dispatcher asks [`fixup`], which records the fault in the CPU's per-CPU block
//! and moves RIP to the fix-up, which returns; the probe then reports the fault. No frame is
//! abandoned and nothing is unwound. This is the mechanism a kernel uses to copy from user
//! memory without trusting it; here it also lets tests check that page faults, #UD and #DE are
//! delivered with the right vector, CR2 and error code.
//!
//! - [`read_u64`]: one load (page faults).
//! - [`read_user_u64`]: one load from the user half with user access allowed (SMAP), for the
//!   profiler's walk of an interrupted user stack: a fault ends it, never demand-pages.
//! - [`write_u8`]: one store (page faults; `unsafe`: a store that succeeds really writes).
//! - [`call`]: a call to an address that must not execute (instruction-fetch page faults).
//! - [`invalid_opcode`], [`divide_by_zero`]: `ud2` and a division by zero.
//! - [`read_msr`], [`write_msr`] (`unsafe`), [`read_pmc`]: `rdmsr`, `wrmsr`, `rdpmc` (#GP on
//!   a register the CPU does not have); [`FaultSafeMsr`] is veridian-perf's `MsrAccess` over
//!   them, so PMU detection reports "no PMU" instead of faulting.
//!
//! The fault details are per CPU (in the per-CPU block): a probe and the fault it takes run on
//! one CPU with preemption disabled, so two CPUs probing at once never see each other's result.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::idt::InterruptFrame;
use super::percpu;

unsafe extern "C" {
    fn probe_read_u64(addr: u64) -> u64;
    static probe_read_insn: u8;
    static probe_read_fixup: u8;
    fn probe_write_u8(addr: u64, value: u8);
    static probe_write_insn: u8;
    static probe_write_fixup: u8;
    fn probe_ud2();
    static probe_ud2_insn: u8;
    static probe_ud2_fixup: u8;
    fn probe_divide(dividend: u64, divisor: u64) -> u64;
    static probe_divide_insn: u8;
    static probe_divide_fixup: u8;
    fn probe_call(target: u64);
    static probe_call_fixup: u8;
    fn probe_rdmsr(msr: u32) -> u64;
    static probe_rdmsr_insn: u8;
    static probe_rdmsr_fixup: u8;
    fn probe_wrmsr(msr: u32, value: u64);
    static probe_wrmsr_insn: u8;
    static probe_wrmsr_fixup: u8;
    fn probe_read_user_u64(addr: u64) -> u64;
    static probe_read_user_insn: u8;
    static probe_read_user_fixup: u8;
    fn probe_rdpmc(index: u32) -> u64;
    static probe_rdpmc_insn: u8;
    static probe_rdpmc_fixup: u8;
}

/// What the last faulting probe on a CPU saw.
#[derive(Debug)]
pub struct ProbeState {
    faulted: AtomicBool,
    vector: AtomicU64,
    address: AtomicU64,
    error: AtomicU64,
    /// The target of a [`call`] probe in progress (0: none): a fetch fault there is the probe's.
    call_target: AtomicU64,
}

impl ProbeState {
    /// Nothing recorded.
    pub const fn new() -> Self {
        Self {
            faulted: AtomicBool::new(false),
            vector: AtomicU64::new(0),
            address: AtomicU64::new(0),
            error: AtomicU64::new(0),
            call_target: AtomicU64::new(0),
        }
    }
}

/// An exception a probe took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeFault {
    /// The exception vector (14 for a page fault).
    pub vector: u8,
    /// CR2 for a page fault (the address that faulted), else the faulting instruction.
    pub address: u64,
    /// The exception's error code (0 when it has none); `u64::MAX` for a read refused without
    /// touching memory (non-canonical address).
    pub error_code: u64,
}

fn canonical(addr: u64) -> bool {
    ((addr as i64) << 16 >> 16) as u64 == addr
}

/// Runs `probe` on this CPU with preemption off and returns the fault it took, if any.
fn probing<R>(probe: impl FnOnce(&ProbeState) -> R) -> (R, Option<ProbeFault>) {
    // The probe and its fault must happen on the CPU whose state is read afterwards.
    let _pinned = percpu::PreemptGuard::new();
    let state = &percpu::current()
        .expect("per-CPU data is installed before anything runs")
        .probe;
    state.faulted.store(false, Ordering::Relaxed);
    let result = probe(state);
    let fault = state.faulted.load(Ordering::Relaxed).then(|| ProbeFault {
        vector: state.vector.load(Ordering::Relaxed) as u8,
        address: state.address.load(Ordering::Relaxed),
        error_code: state.error.load(Ordering::Relaxed),
    });
    (result, fault)
}

/// Reads the 8 bytes at `addr`, or reports the page fault the read caused.
///
/// The address must be canonical (a non-canonical one raises #GP, which is not a page fault and
/// is fatal): this function rejects a non-canonical address with a fault at that address and
/// error code `u64::MAX` without touching memory.
pub fn read_u64(addr: u64) -> Result<u64, ProbeFault> {
    if !canonical(addr) {
        return Err(ProbeFault {
            vector: super::idt::vector::PAGE_FAULT,
            address: addr,
            error_code: u64::MAX,
        });
    }
    // SAFETY: the routine reads 8 bytes at a canonical address with a single `mov`; a fault on
    // that instruction is turned into a return by `fixup`, and a successful read of mapped
    // memory as an integer has no validity requirement. The value may be stale if memory
    // changes concurrently, which is inherent to probing.
    let (value, fault) = probing(|_| unsafe { probe_read_u64(addr) });
    fault.map_or(Ok(value), Err)
}

/// Reads the 8 bytes at user address `addr` (8-byte aligned, in the user half), or `None` when
/// the read faults. Unlike `user::copy_from_user`, a fault here is never resolved by demand
/// paging (the dispatcher only pages in for user mode and the user-copy instruction): this is
/// for interrupt handlers (the sampling profiler), which must not allocate or take the address
/// space's locks. Reads through the current page tables (the interrupted process's).
pub fn read_user_u64(addr: u64) -> Option<u64> {
    if !addr.is_multiple_of(8) || !super::user::user_range(addr, 8) {
        return None;
    }
    // SAFETY: one 8-byte load from the user half (checked above), so no kernel memory and no
    // MMIO is read through it; SMAP is lifted for that instruction only (and restored by the
    // fix-up when it faults); a page fault on it is turned into a return by `fixup`. Any bit
    // pattern is a valid `u64`.
    let (value, fault) = probing(|_| unsafe { probe_read_user_u64(addr) });
    if fault.is_some() { None } else { Some(value) }
}

/// Writes `value` to the byte at `addr`, or reports the fault the write caused.
///
/// # Safety
/// If the write succeeds it really happens: `addr` must be memory that may be written (or that
/// the caller expects to fault, knowing what a successful write would break). A non-canonical
/// address raises #GP, which the probe also recovers.
pub unsafe fn write_u8(addr: u64, value: u8) -> Result<(), ProbeFault> {
    // SAFETY: the caller's contract covers the store; a fault on it is turned into a return by
    // `fixup`.
    let ((), fault) = probing(|_| unsafe { probe_write_u8(addr, value) });
    fault.map_or(Ok(()), Err)
}

/// Calls `target`, expecting the instruction fetch to fault (a no-execute or unmapped page);
/// reports that fault. Returns `Ok` if the code at `target` ran and returned.
///
/// # Safety
/// If `target` is executable, the code there runs: it must be a function taking no arguments
/// that returns (for example a `ret` instruction).
pub unsafe fn call(target: u64) -> Result<(), ProbeFault> {
    let ((), fault) = probing(|state| {
        state.call_target.store(target, Ordering::Relaxed);
        // SAFETY: the caller's contract covers running the target; a fetch fault at `target`
        // is turned into a return from `probe_call` by `fixup`.
        unsafe { probe_call(target) };
        state.call_target.store(0, Ordering::Relaxed);
    });
    fault.map_or(Ok(()), Err)
}

/// Executes `ud2` and reports the #UD it raises (`None` if it did not).
pub fn invalid_opcode() -> Option<ProbeFault> {
    // SAFETY: `ud2` only raises #UD, which `fixup` turns into a return.
    probing(|_| unsafe { probe_ud2() }).1
}

/// Divides 1 by 0 and reports the #DE it raises (`None` if it did not).
pub fn divide_by_zero() -> Option<ProbeFault> {
    // SAFETY: a `div` by zero only raises #DE, which `fixup` turns into a return.
    probing(|_| unsafe { probe_divide(1, core::hint::black_box(0)) }).1
}

/// Reads MSR `msr`, or reports the #GP raised by an MSR this CPU does not have.
pub fn read_msr(msr: u32) -> Result<u64, ProbeFault> {
    // SAFETY: `rdmsr` of a missing MSR raises #GP, which `fixup` turns into a return; reading
    // an existing MSR has no side effect for the MSRs the kernel reads this way (performance
    // monitoring, read by veridian-perf's detection and counter groups).
    let (value, fault) = probing(|_| unsafe { probe_rdmsr(msr) });
    fault.map_or(Ok(value), Err)
}

/// Writes `value` to MSR `msr`, or reports the #GP it raised.
///
/// # Safety
/// A write that succeeds really happens: `msr` must be a register whose new value breaks no
/// invariant of the kernel (performance-monitoring MSRs nothing else uses).
pub unsafe fn write_msr(msr: u32, value: u64) -> Result<(), ProbeFault> {
    // SAFETY: the caller's contract covers the write; a #GP is turned into a return by `fixup`.
    let ((), fault) = probing(|_| unsafe { probe_wrmsr(msr, value) });
    fault.map_or(Ok(()), Err)
}

/// Executes `rdpmc` with `ECX = index`, or reports the #GP it raised.
pub fn read_pmc(index: u32) -> Result<u64, ProbeFault> {
    // SAFETY: `rdpmc` only reads a counter; a missing one raises #GP, turned into a return by
    // `fixup`.
    let (value, fault) = probing(|_| unsafe { probe_rdpmc(index) });
    fault.map_or(Ok(value), Err)
}

/// veridian-perf's `MsrAccess` through the probes: a faulting access is an `Err`, never a
/// kernel fault. Keep the caller on one CPU while one `Pmu` uses it.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultSafeMsr;

impl veridian_perf::env::MsrAccess for FaultSafeMsr {
    unsafe fn read_msr(&self, msr: u32) -> Result<u64, veridian_perf::env::MsrError> {
        read_msr(msr).map_err(|_| veridian_perf::env::MsrError { register: msr })
    }

    unsafe fn write_msr(&self, msr: u32, value: u64) -> Result<(), veridian_perf::env::MsrError> {
        // SAFETY: the trait's contract (veridian-perf writes only the detected PMU's MSRs,
        // which nothing else in the kernel uses) is `write_msr`'s.
        unsafe { write_msr(msr, value) }.map_err(|_| veridian_perf::env::MsrError { register: msr })
    }

    unsafe fn read_pmc(&self, index: u32) -> Result<u64, veridian_perf::env::MsrError> {
        read_pmc(index).map_err(|_| veridian_perf::env::MsrError { register: index })
    }
}

/// Called by the dispatcher for CPU exceptions: when one hit a probe's instruction (or the
/// target of a [`call`] probe), records it, redirects the frame to the probe's fix-up and
/// returns true.
pub(super) fn fixup(frame: &mut InterruptFrame, cr2: u64) -> bool {
    let Some(cpu) = percpu::current() else {
        return false;
    };
    let table = [
        (&raw const probe_read_insn, &raw const probe_read_fixup),
        (&raw const probe_write_insn, &raw const probe_write_fixup),
        (&raw const probe_ud2_insn, &raw const probe_ud2_fixup),
        (&raw const probe_divide_insn, &raw const probe_divide_fixup),
        (&raw const probe_rdmsr_insn, &raw const probe_rdmsr_fixup),
        (&raw const probe_wrmsr_insn, &raw const probe_wrmsr_fixup),
        (&raw const probe_rdpmc_insn, &raw const probe_rdpmc_fixup),
        (
            &raw const probe_read_user_insn,
            &raw const probe_read_user_fixup,
        ),
    ];
    let vector = frame.vector as u8;
    let page_fault = vector == super::idt::vector::PAGE_FAULT;
    let target = cpu.probe.call_target.load(Ordering::Relaxed);
    let resume = if let Some(&(_, fix)) = table.iter().find(|(insn, _)| frame.rip == *insn as u64) {
        fix as u64
    } else if page_fault && target != 0 && frame.rip == target {
        // The fetch at the call's target faulted: return to `probe_call` as `ret` would
        // (pop the return address the `call` pushed), at its fix-up.
        frame.rsp += 8;
        (&raw const probe_call_fixup) as u64
    } else {
        return false;
    };
    cpu.probe.vector.store(u64::from(vector), Ordering::Relaxed);
    cpu.probe
        .address
        .store(if page_fault { cr2 } else { frame.rip }, Ordering::Relaxed);
    cpu.probe.error.store(frame.error_code, Ordering::Relaxed);
    cpu.probe.faulted.store(true, Ordering::Relaxed);
    frame.rip = resume;
    true
}

core::arch::global_asm!(
    r#"
    .section .text.probe, "ax"
    .global probe_read_u64
    .global probe_read_insn
    .global probe_read_fixup
probe_read_u64:
probe_read_insn:
    mov rax, qword ptr [rdi]
    ret
probe_read_fixup:
    xor eax, eax
    ret

    .global probe_write_u8
    .global probe_write_insn
    .global probe_write_fixup
probe_write_u8:
probe_write_insn:
    mov byte ptr [rdi], sil
probe_write_fixup:
    ret

    .global probe_ud2
    .global probe_ud2_insn
    .global probe_ud2_fixup
probe_ud2:
probe_ud2_insn:
    ud2
probe_ud2_fixup:
    ret

    .global probe_divide
    .global probe_divide_insn
    .global probe_divide_fixup
probe_divide:
    mov rax, rdi
    xor edx, edx
probe_divide_insn:
    div rsi
    ret
probe_divide_fixup:
    xor eax, eax
    ret

    .global probe_call
    .global probe_call_fixup
probe_call:
    sub rsp, 8
    call rdi
probe_call_fixup:
    add rsp, 8
    ret

    .global probe_rdmsr
    .global probe_rdmsr_insn
    .global probe_rdmsr_fixup
probe_rdmsr:
    mov ecx, edi
probe_rdmsr_insn:
    rdmsr
    shl rdx, 32
    or rax, rdx
    ret
probe_rdmsr_fixup:
    xor eax, eax
    ret

    .global probe_wrmsr
    .global probe_wrmsr_insn
    .global probe_wrmsr_fixup
probe_wrmsr:
    mov ecx, edi
    mov eax, esi
    mov rdx, rsi
    shr rdx, 32
probe_wrmsr_insn:
    wrmsr
probe_wrmsr_fixup:
    ret

    .global probe_read_user_u64
    .global probe_read_user_insn
    .global probe_read_user_fixup
probe_read_user_u64:
    test byte ptr [rip + VERIDIAN_SMAP_ON], 1
    jz 1f
    stac
1:
probe_read_user_insn:
    mov rax, qword ptr [rdi]
    test byte ptr [rip + VERIDIAN_SMAP_ON], 1
    jz 2f
    clac
2:
    ret
probe_read_user_fixup:
    /* The exception returned here with the interrupted RFLAGS, AC included. */
    test byte ptr [rip + VERIDIAN_SMAP_ON], 1
    jz 3f
    clac
3:
    xor eax, eax
    ret

    .global probe_rdpmc
    .global probe_rdpmc_insn
    .global probe_rdpmc_fixup
probe_rdpmc:
    mov ecx, edi
probe_rdpmc_insn:
    rdpmc
    shl rdx, 32
    or rax, rdx
    ret
probe_rdpmc_fixup:
    xor eax, eax
    ret
"#
);
