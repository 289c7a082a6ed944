//! The x86_64 context switch: save the callee-saved registers and the stack pointer of the
//! current thread, load those of the next one.
//!
//! # The routine
//! [`switch_stacks`] (and [`switch_stacks_fp`], which also carries the floating-point control
//! words) is a naked `extern "C"` function, so the compiler treats it as an ordinary call: it
//! has already spilled every caller-saved register (rax, rcx, rdx, rsi, rdi, r8–r11, all
//! xmm/ymm/zmm, the flags) around it. The routine pushes the callee-saved registers of the
//! System V ABI (rbp, rbx, r12–r15) on the current stack, stores the stack pointer through
//! `save`, loads `next` into rsp, pops the other thread's registers and returns *on the other
//! stack*, into whatever call of the routine that thread was suspended in (or into the start
//! trampoline of a new thread, see [`prepare_stack`]). Nothing else is touched: no memory but
//! the two stacks and `*save`, no segment register, no page table.
//!
//! # Frame layout
//! Both routines use the same 64-byte frame, lowest address (the saved rsp) first:
//!
//! | offset | content                                                          |
//! |-------:|------------------------------------------------------------------|
//! | 0      | MXCSR (u32) and x87 control word (u16) (`switch_stacks_fp` only; reserved otherwise) |
//! | 8      | r15                                                              |
//! | 16     | r14                                                              |
//! | 24     | r13                                                              |
//! | 32     | r12                                                              |
//! | 40     | rbx                                                              |
//! | 48     | rbp                                                              |
//! | 56     | return address                                                   |
//!
//! # FPU/SIMD state: the contract
//! The System V ABI makes the MXCSR *control* bits (rounding mode, exception masks, FTZ/DAZ)
//! and the x87 control word callee-saved; all vector and x87 data registers and the status
//! bits are caller-saved, so across a *call* to the routine no other FP state needs keeping.
//! - **Kernel threads switching among themselves** use [`switch_stacks`], which touches no
//!   FP/SIMD state at all. It never executes an SSE or x87 instruction, so it is safe with
//!   `CR0.TS` set (lazy FPU switching) or with SSE not enabled in `CR4`. Kernel code on
//!   `x86_64-unknown-none` is built soft-float and never changes MXCSR or the x87 control word.
//! - **User threads' FP/SIMD state** (their whole register file, including MXCSR) is the
//!   kernel's business: it saves it with `XSAVE`/`XSAVEOPT` (or `FXSAVE`) into the thread's
//!   save area on the way out of user mode when the thread has used it (eagerly, or lazily on
//!   the first `#NM` after setting `CR0.TS`) and restores it with `XRSTOR` before returning to
//!   user mode. That happens outside this routine.
//! - **Hosted green threads** (and any embedder whose threads run ordinary compiled code that
//!   may change the rounding mode) use [`switch_stacks_fp`], which additionally saves MXCSR and
//!   the x87 control word with `stmxcsr`/`fnstcw` and restores the next thread's with
//!   `ldmxcsr`/`fldcw`, as the ABI requires of a callee. It needs SSE enabled and `CR0.TS`
//!   clear.
//!
//! The direction flag is clear on entry and exit of any ABI-conforming function, so neither
//! routine saves it. Shadow stacks (CET) are not supported: the first switch to a new thread
//! returns to an address that no `call` pushed.

use core::arch::naked_asm;

/// Size of the frame the routines push (see "Frame layout").
pub const FRAME_SIZE: usize = 64;

/// MXCSR after reset with every exception masked, and the x87 control word after `fninit`:
/// what a new thread starts with under [`switch_stacks_fp`].
pub const INITIAL_MXCSR: u32 = 0x1F80;
/// See [`INITIAL_MXCSR`].
pub const INITIAL_X87_CW: u16 = 0x037F;

/// Saves the current thread's callee-saved registers on its stack, stores its stack pointer in
/// `*save`, and continues the thread whose stack pointer is `next`. Returns when some thread
/// switches back to the stack pointer stored in `*save`.
///
/// # Safety
/// - `save` is valid for an 8-byte write.
/// - `next` is a stack pointer saved by `switch_stacks`/`switch_stacks_fp` (through its `save`)
///   whose thread has not been resumed since, or one returned by [`prepare_stack`] and not
///   used before; its stack memory is valid and not used by anything else.
/// - Everything the suspended thread borrowed stays valid until it is resumed: the caller
///   treats the switch like a call that may run arbitrary code.
#[unsafe(naked)]
pub unsafe extern "C" fn switch_stacks(save: *mut usize, next: usize) {
    naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "sub rsp, 8",
        "mov [rdi], rsp",
        "mov rsp, rsi",
        "add rsp, 8",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    )
}

/// [`switch_stacks`] that also saves MXCSR and the x87 control word of the current thread and
/// restores those of the next (see "FPU/SIMD state" in the module docs).
///
/// # Safety
/// As for [`switch_stacks`]; in addition SSE is enabled and `CR0.TS` is clear (always true in
/// a hosted process), and the next frame's FP control slot holds valid values (it does when it
/// was saved by this routine or written by [`prepare_stack`]).
#[unsafe(naked)]
pub unsafe extern "C" fn switch_stacks_fp(save: *mut usize, next: usize) {
    naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "sub rsp, 8",
        "stmxcsr [rsp]",
        "fnstcw [rsp + 4]",
        "mov [rdi], rsp",
        "mov rsp, rsi",
        "ldmxcsr [rsp]",
        "fldcw [rsp + 4]",
        "add rsp, 8",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    )
}

/// Where a new thread starts: [`prepare_stack`] puts `entry` in rbx and `arg` in r12; the
/// first switch to the thread "returns" here with rsp 16-byte aligned, and the `call` gives
/// `entry` the alignment the ABI promises a function (rsp + 8 aligned).
#[unsafe(naked)]
unsafe extern "C" fn thread_start() -> ! {
    naked_asm!("mov rdi, r12", "call rbx", "ud2")
}

/// Lays out a first frame at the top of a fresh stack so that switching to the returned stack
/// pointer calls `entry(arg)` on that stack. `entry` must never return (it ends by switching
/// away for the last time); if it does, the thread executes `ud2`.
///
/// Returns `None` if the stack is too small for the frame (less than [`FRAME_SIZE`] + 16
/// bytes after aligning `top` down to 16).
///
/// # Safety
/// `bottom..top` is writable memory not used by anything else, and stays so while the thread
/// runs.
pub unsafe fn prepare_stack(
    bottom: *mut u8,
    top: *mut u8,
    entry: extern "C" fn(usize) -> !,
    arg: usize,
) -> Option<usize> {
    let top = (top as usize) & !15;
    let sp = top.checked_sub(FRAME_SIZE + 16)?;
    if sp < bottom as usize {
        return None;
    }
    let words = sp as *mut u64;
    let fp_control = u64::from(INITIAL_MXCSR) | (u64::from(INITIAL_X87_CW) << 32);
    let frame: [u64; 10] = [
        fp_control,
        0,                                // r15
        0,                                // r14
        0,                                // r13
        arg as u64,                       // r12
        entry as *const () as u64,        // rbx
        0,                                // rbp (end of the frame-pointer chain)
        thread_start as *const () as u64, // return address
        0,                                // after `ret`: rsp = top - 16, 16-byte aligned
        0,                                // fake return address of `thread_start` for unwinders
    ];
    for (i, word) in frame.iter().enumerate() {
        // SAFETY: `sp..sp + 80 == top - 80..top` lies inside `bottom..top` (checked above;
        // FRAME_SIZE + 16 = 80), which the caller gives us to write; `sp` is 16-aligned.
        unsafe { words.add(i).write(*word) };
    }
    Some(sp)
}
