//! Probing memory that may not be mapped, with an exception-table fixup.
//!
//! [`read_u64`] performs one load in an assembly routine whose faulting instruction address is
//! known. When that instruction page-faults, the dispatcher ([`fixup`]) moves RIP to the
//! routine's fixup label, which returns failure and the faulting address. This is the mechanism a
//! kernel uses to copy from user memory without trusting it; here it also lets tests prove that
//! page faults are delivered with the right CR2 and error code.
//!
//! The fault details are per CPU (in the per-CPU block): a probe and the fault it takes run on
//! one CPU with preemption disabled, so two CPUs probing at once never see each other's result.

use core::sync::atomic::{AtomicU64, Ordering};

use super::idt::InterruptFrame;
use super::percpu;

unsafe extern "C" {
    fn probe_read_u64(addr: u64) -> u64;
    static probe_read_insn: u8;
    static probe_read_fixup: u8;
}

/// What the last faulting probe on a CPU saw.
#[derive(Debug)]
pub struct ProbeState {
    address: AtomicU64,
    /// The error code, or `u64::MAX` while no fault was recorded.
    error: AtomicU64,
}

impl ProbeState {
    /// Nothing recorded.
    pub const fn new() -> Self {
        Self {
            address: AtomicU64::new(0),
            error: AtomicU64::new(u64::MAX),
        }
    }
}

/// A load that faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeFault {
    /// CR2: the address that faulted.
    pub address: u64,
    /// The page-fault error code.
    pub error_code: u64,
}

/// Reads the 8 bytes at `addr`, or reports the page fault the read caused.
///
/// The address must be canonical (a non-canonical one raises #GP, which is not a page fault and
/// is fatal): this function rejects a non-canonical address with a fault at that address and
/// error code `u64::MAX` without touching memory.
pub fn read_u64(addr: u64) -> Result<u64, ProbeFault> {
    let canonical = ((addr as i64) << 16 >> 16) as u64 == addr;
    if !canonical {
        return Err(ProbeFault {
            address: addr,
            error_code: u64::MAX,
        });
    }
    // The probe and its fault must happen on the CPU whose state is read afterwards.
    let _pinned = percpu::PreemptGuard::new();
    let Some(state) = percpu::current().map(|c| &c.probe) else {
        return Err(ProbeFault {
            address: addr,
            error_code: u64::MAX,
        });
    };
    state.address.store(0, Ordering::Relaxed);
    state.error.store(u64::MAX, Ordering::Relaxed);
    // SAFETY: the routine reads 8 bytes at a canonical address with a single `mov`; a page fault
    // on that instruction is turned into an error return by `fixup`, and a successful read of
    // mapped memory as an integer has no validity requirement. The value may be stale if memory
    // changes concurrently, which is inherent to probing.
    let value = unsafe { probe_read_u64(addr) };
    let error = state.error.load(Ordering::Relaxed);
    if error != u64::MAX {
        Err(ProbeFault {
            address: state.address.load(Ordering::Relaxed),
            error_code: error,
        })
    } else {
        Ok(value)
    }
}

/// Called by the dispatcher on a page fault: when it hit a probe instruction, records the fault,
/// redirects the frame to the fixup and returns true.
pub(super) fn fixup(frame: &mut InterruptFrame, cr2: u64) -> bool {
    if frame.rip == (&raw const probe_read_insn) as u64
        && let Some(cpu) = percpu::current()
    {
        cpu.probe.address.store(cr2, Ordering::Relaxed);
        cpu.probe.error.store(frame.error_code, Ordering::Relaxed);
        frame.rip = (&raw const probe_read_fixup) as u64;
        true
    } else {
        false
    }
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
"#
);
