//! The `syscall` instruction: number in `rax`, arguments in `rdi rsi rdx r10 r8 r9`, result in
//! `rax`; the CPU puts the return address in `rcx` and the flags in `r11`, so both are
//! clobbered (see [`crate::abi`]). The kernel runs the call on its own stack: the asm touches
//! no user stack (`nostack`). It is not `nomem`: the kernel reads and may write memory the
//! arguments point to, so the compiler must not keep such memory in registers across a call.
//!
//! These functions return the raw result word; [`crate::sys`] turns it into a `Result`.

use core::arch::asm;

/// `syscall` with no argument.
///
/// # Safety
/// The call must not break what the program relies on: for example [`crate::abi::nr::MUNMAP`]
/// of a region that references still point into.
#[inline(always)]
pub unsafe fn syscall0(nr: u64) -> u64 {
    let ret: u64;
    // SAFETY: the caller vouches for the call's effects (function contract); the asm follows
    // the ABI's register convention and names every register the kernel or CPU changes.
    unsafe {
        asm!("syscall", inlateout("rax") nr => ret, out("rcx") _, out("r11") _, options(nostack))
    };
    ret
}

/// `syscall` with one argument.
///
/// # Safety
/// As [`syscall0`]; pointer arguments must be what the call expects, or the call must be one
/// whose failure the caller wants (the kernel validates every argument).
#[inline(always)]
pub unsafe fn syscall1(nr: u64, a0: u64) -> u64 {
    let ret: u64;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr => ret, in("rdi") a0,
            out("rcx") _, out("r11") _,
            options(nostack)
        )
    };
    ret
}

/// `syscall` with two arguments.
///
/// # Safety
/// As [`syscall1`].
#[inline(always)]
pub unsafe fn syscall2(nr: u64, a0: u64, a1: u64) -> u64 {
    let ret: u64;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr => ret, in("rdi") a0, in("rsi") a1,
            out("rcx") _, out("r11") _,
            options(nostack)
        )
    };
    ret
}

/// `syscall` with three arguments.
///
/// # Safety
/// As [`syscall1`].
#[inline(always)]
pub unsafe fn syscall3(nr: u64, a0: u64, a1: u64, a2: u64) -> u64 {
    let ret: u64;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr => ret, in("rdi") a0, in("rsi") a1, in("rdx") a2,
            out("rcx") _, out("r11") _,
            options(nostack)
        )
    };
    ret
}

/// `syscall` with four arguments (the fourth in `r10`: `rcx` is taken by the CPU).
///
/// # Safety
/// As [`syscall1`].
#[inline(always)]
pub unsafe fn syscall4(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let ret: u64;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr => ret, in("rdi") a0, in("rsi") a1, in("rdx") a2, in("r10") a3,
            out("rcx") _, out("r11") _,
            options(nostack)
        )
    };
    ret
}

/// `syscall` with five arguments.
///
/// # Safety
/// As [`syscall1`].
#[inline(always)]
pub unsafe fn syscall5(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> u64 {
    let ret: u64;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr => ret, in("rdi") a0, in("rsi") a1, in("rdx") a2, in("r10") a3,
            in("r8") a4,
            out("rcx") _, out("r11") _,
            options(nostack)
        )
    };
    ret
}

/// `syscall` with six arguments.
///
/// # Safety
/// As [`syscall1`].
#[inline(always)]
pub unsafe fn syscall6(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> u64 {
    let ret: u64;
    // SAFETY: as in `syscall0`.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr => ret, in("rdi") a0, in("rsi") a1, in("rdx") a2, in("r10") a3,
            in("r8") a4, in("r9") a5,
            out("rcx") _, out("r11") _,
            options(nostack)
        )
    };
    ret
}

/// Any system call with all six argument registers set, its result as a signed word (a
/// negative value is `-errno`). For programs that pass arbitrary words on purpose: the
/// system-call fuzzer and the bad-pointer tests.
///
/// # Safety
/// As [`syscall1`]. In particular [`crate::abi::nr::MUNMAP`] with an address the program
/// uses, or [`crate::abi::nr::EXIT`], have effects the caller must want.
#[inline(always)]
pub unsafe fn raw_syscall(nr: u64, args: [u64; 6]) -> i64 {
    let [a0, a1, a2, a3, a4, a5] = args;
    // SAFETY: the caller's contract is this function's.
    unsafe { syscall6(nr, a0, a1, a2, a3, a4, a5) as i64 }
}
