//! The x86_64 context switch: save what the ABI asks a call to preserve for the current thread,
//! store its stack pointer, and continue the next one.
//!
//! # The routine
//! [`switch_stacks`] (and [`switch_stacks_fp`], which also carries the floating-point control
//! words) is an `#[inline(always)]` function around one inline `asm!` block, in the style of
//! corosensei. The block declares every caller-saved register of the System V ABI clobbered
//! (`clobber_abi("sysv64")`: rax, rcx, rdx, rsi, rdi, r8–r11, the vector and x87 registers,
//! the flags) and r12–r15 as well, so the compiler keeps across the switch only the values that
//! are live at that call site, in the registers or stack slots it chooses; a function that
//! switches several times saves r12–r15 once in its prologue, not at every switch. rbx and rbp
//! cannot be named as clobbers (LLVM reserves them), so the block pushes and pops those two
//! itself.
//!
//! The block pushes rbp, rbx and the address of its own resume label, stores the stack pointer
//! through `save`, loads `next` into rsp, pops the other thread's resume address and *jumps*
//! there. Resuming a thread therefore lands in the middle of the `asm!` block it suspended in,
//! which pops rbx and rbp and falls through into the compiled code after it. There is no `ret`:
//! a `ret` to an address the matching `call` did not push defeats the return-stack predictor
//! (the old naked routine paid that misprediction on every switch); an indirect `jmp` from an
//! inlined switch site goes to the few places that site switches to, which the branch target
//! buffer predicts. Nothing else is touched: no memory but the two stacks and `*save`, no
//! segment register, no page table.
//!
//! # Frame layout
//! What a suspended thread's saved stack pointer points at, lowest address first:
//!
//! | offset | [`switch_stacks`] | [`switch_stacks_fp`] | new thread ([`prepare_stack`]) |
//! |-------:|---|---|---|
//! | 0      | resume address | resume address | start trampoline |
//! | 8      | rbx | MXCSR (u32), x87 control word (u16) | `entry` |
//! | 16     | rbp | rbx | `arg` |
//! | 24     |     | rbp | 0 (end of the frame chain) |
//!
//! The resume address says how to restore the rest, so the two routines and a new thread's
//! frame can be mixed freely: whoever switches to a stack pointer just pops the first word and
//! jumps to it.
//!
//! # FPU/SIMD state: the contract
//! The System V ABI makes the MXCSR *control* bits (rounding mode, exception masks, FTZ/DAZ)
//! and the x87 control word callee-saved; all vector and x87 data registers and the status
//! bits are caller-saved, so across a *call* to the routine no other FP state needs keeping
//! (the `asm!` block declares the vector registers clobbered, so the compiler keeps none live
//! across it).
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
//!   the x87 control word with `stmxcsr`/`fnstcw` and, on resume, gives the thread back its
//!   own values. `ldmxcsr` and `fldcw` are slow (microcoded) instructions, so the resume side
//!   compares the saved words with the current ones and loads only those that differ: the
//!   common case (nobody changed the rounding mode) pays two stores and two compares. It needs
//!   SSE enabled and `CR0.TS` clear. A new thread starts with the control words of the thread
//!   that first switches to it (as a new POSIX thread inherits its creator's environment).
//!
//! The direction flag is clear on entry and exit of any ABI-conforming function, so neither
//! routine saves it. Shadow stacks (CET) are not supported: the first switch to a new thread
//! jumps to a trampoline that no `call` reached, and resumes are jumps, not returns.

use core::arch::{asm, naked_asm};

/// Bytes [`prepare_stack`] writes below the (16-aligned) top of a new thread's stack.
pub const FRAME_SIZE: usize = 32;

/// The one switch both routines share: push rbp and rbx, run `$save_extra` (more state pushed
/// on the current stack), push the resume label, store rsp through `$save`, load `$next`, pop
/// the other thread's resume address and jump to it. At the resume label: run
/// `$restore_extra` (which pops what `$save_extra` pushed), pop rbx and rbp. `$value` travels
/// in rdx; the expression is the value received. rax and rcx are free inside (clobbered).
macro_rules! switch_asm {
    ($save:expr, $next:expr, $value:expr, [$($save_extra:literal),*], [$($restore_extra:literal),* $(,)?]) => {{
        let received: usize;
        asm!(
            "push rbp",
            "push rbx",
            $($save_extra,)*
            "lea rax, [rip + 2f]",
            "push rax",
            "mov [rdi], rsp",
            "mov rsp, rsi",
            "pop rax",
            "jmp rax",
            "2:",
            $($restore_extra,)*
            "pop rbx",
            "pop rbp",
            in("rdi") $save,
            in("rsi") $next,
            inlateout("rdx") $value => received,
            lateout("r12") _,
            lateout("r13") _,
            lateout("r14") _,
            lateout("r15") _,
            clobber_abi("sysv64"),
        );
        received
    }};
}

/// Saves the current thread's rbx, rbp and resume address on its stack (the compiler saves the
/// other callee-saved registers it needs, see the module docs), stores its stack pointer in
/// `*save`, and continues the thread whose stack pointer is `next`. Returns when some thread
/// switches back to the stack pointer stored in `*save`.
///
/// [`switch_stacks_with`] also hands a word to the thread it continues.
///
/// # Safety
/// - `save` is valid for an 8-byte write.
/// - `next` is a stack pointer saved by one of this module's switches (through its `save`)
///   whose thread has not been resumed since, or one returned by [`prepare_stack`] and not
///   used before; its stack memory is valid and not used by anything else.
/// - Everything the suspended thread borrowed stays valid until it is resumed: the caller
///   treats the switch like a call that may run arbitrary code.
#[inline(always)]
pub unsafe fn switch_stacks(save: *mut usize, next: usize) {
    // SAFETY: the caller's contract, which is `switch_stacks_with`'s.
    unsafe { switch_stacks_with(save, next, 0) };
}

/// [`switch_stacks`] that passes `value` to the thread it continues (in a register, no memory
/// traffic): that thread's pending `switch_stacks_with` returns it. Returns the value sent by
/// whichever thread switches back to this one (0 from [`switch_stacks`]). The value sent with
/// the first switch to a new thread ([`prepare_stack`]) is dropped.
///
/// # Safety
/// As for [`switch_stacks`].
#[inline(always)]
pub unsafe fn switch_stacks_with(save: *mut usize, next: usize, value: usize) -> usize {
    // SAFETY: the caller's contract: `save` is writable and `next` is a suspended (or fresh)
    // thread's stack pointer whose first word is a resume address (or the start trampoline).
    // The block leaves rsp, rbx and rbp as it found them when it is resumed, and declares
    // every other register it or the resumed code may change clobbered.
    unsafe { switch_asm!(save, next, value, [], []) }
}

/// [`switch_stacks`] that also saves MXCSR and the x87 control word of the current thread and
/// gives them back when it resumes (see "FPU/SIMD state" in the module docs).
///
/// # Safety
/// As for [`switch_stacks`]; in addition SSE is enabled and `CR0.TS` is clear (always true in
/// a hosted process) on the CPU that runs it and on the one that resumes it.
#[inline(always)]
pub unsafe fn switch_stacks_fp(save: *mut usize, next: usize) {
    // SAFETY: the caller's contract, which is `switch_stacks_fp_with`'s.
    unsafe { switch_stacks_fp_with(save, next, 0) };
}

/// [`switch_stacks_fp`] that passes a word as [`switch_stacks_with`] does.
///
/// # Safety
/// As for [`switch_stacks_fp`].
#[inline(always)]
pub unsafe fn switch_stacks_fp_with(save: *mut usize, next: usize, value: usize) -> usize {
    // SAFETY: as in `switch_stacks_with`; the FP control slot is ours (pushed by the block),
    // and the words loaded back are the ones `stmxcsr`/`fnstcw` stored, so they are valid.
    unsafe {
        switch_asm!(
            save,
            next,
            value,
            ["sub rsp, 8", "stmxcsr [rsp]", "fnstcw [rsp + 4]"],
            [
                // Load back only what differs: `ldmxcsr`/`fldcw` are microcoded and slow.
                "mov eax, [rsp]",
                "movzx ecx, word ptr [rsp + 4]",
                "stmxcsr [rsp]",
                "fnstcw [rsp + 4]",
                "cmp eax, [rsp]",
                "je 3f",
                "mov [rsp], eax",
                "ldmxcsr [rsp]",
                "3:",
                "cmp cx, [rsp + 4]",
                "je 4f",
                "mov [rsp + 4], cx",
                "fldcw [rsp + 4]",
                "4:",
                "add rsp, 8",
            ]
        )
    }
}

/// Where a new thread starts: the first switch to a [`prepare_stack`] frame pops this address
/// and jumps here with rsp pointing at `entry` (then `arg`); rsp + 8 is 16-byte aligned, so
/// after `add rsp, 8` the `call` gives `entry` the alignment the ABI promises a function
/// (rsp + 8 aligned at its first instruction). rbp is cleared to end the frame-pointer chain.
/// No FP/SIMD instruction: kernel threads start here with `CR0.TS` set.
#[unsafe(naked)]
unsafe extern "C" fn thread_start() -> ! {
    naked_asm!(
        "mov rax, [rsp]",
        "mov rdi, [rsp + 8]",
        "add rsp, 8",
        "xor ebp, ebp",
        "call rax",
        "ud2"
    )
}

/// Lays out a first frame at the top of a fresh stack so that switching to the returned stack
/// pointer calls `entry(arg)` on that stack. `entry` must never return (it ends by switching
/// away for the last time); if it does, the thread executes `ud2`.
///
/// Returns `None` if the stack is too small for the frame (less than [`FRAME_SIZE`] bytes
/// after aligning `top` down to 16).
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
    let sp = top.checked_sub(FRAME_SIZE)?;
    if sp < bottom as usize {
        return None;
    }
    let words = sp as *mut u64;
    let frame: [u64; FRAME_SIZE / 8] = [
        thread_start as *const () as u64, // "resume address" of a new thread
        entry as *const () as u64,
        arg as u64,
        0, // padding: keeps `sp` 16-byte aligned
    ];
    for (i, word) in frame.iter().enumerate() {
        // SAFETY: `sp..sp + FRAME_SIZE == top - FRAME_SIZE..top` lies inside `bottom..top`
        // (checked above), which the caller gives us to write; `sp` is 16-aligned.
        unsafe { words.add(i).write(*word) };
    }
    Some(sp)
}
