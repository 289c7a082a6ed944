//! Recovery points: run a function and get control back if it panics or takes a fatal CPU
//! exception, instead of losing the kernel.
//!
//! The kernel has no unwinding (`panic = "abort"`), so recovery is a non-local return in the
//! style of `setjmp`/`longjmp`, restricted to one shape that keeps it sound to reason about:
//! [`catch`] saves the callee-saved registers and the stack pointer of its own frame, calls the
//! function on the same stack and returns `Ok` normally. When the panic handler or the exception
//! dispatcher calls [`abort`], the innermost saved context is restored and `catch` returns `Err`
//! with what happened. The frames of the aborted function are abandoned: **their destructors do
//! not run** and whatever they had borrowed or locked stays so. The kernel uses this for its
//! test harness (a failing test must not stop the suite) and for tests that expect a fault;
//! it is not a general error-handling mechanism.
//!
//! Recovery points nest (a test may itself catch an expected fault). They are per CPU: each
//! CPU's stack of them lives in its per-CPU block, and the panic handler and the exception path
//! consult only the stack of the CPU they run on, so a panic on one CPU never resumes onto a
//! recovery point another CPU armed. [`catch`] is `unsafe`: its caller promises that `f` does
//! not migrate to another CPU (it is not run by a thread that blocks, yields or can be
//! preempted inside `f`; the kernel's test harness runs on the bootstrap processor's boot
//! context, which never migrates) and accepts that an aborted `f`'s destructors do not run.
//! Tests that expect a fault at a known instruction use the exception-table fix-ups of
//! [`super::probe`] instead.

use core::fmt::Write;

use super::idt::ExceptionInfo;

/// Maximum nesting of recovery points.
const MAX_DEPTH: usize = 4;
/// Longest panic message kept for the recovery point (longer ones are cut, marked with `...`).
pub const MESSAGE_CAPACITY: usize = 256;

/// Why a function run under [`catch`] did not return.
///
/// The panic message is carried inline (there may be no heap); an `Abort` is produced at most
/// once per recovery, so its size does not matter.
#[derive(Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "no heap to box into; produced once per recovery"
)]
pub enum Abort {
    /// It panicked; the formatted message and location.
    Panic(Message),
    /// It took a CPU exception that no handler resolves.
    Exception(ExceptionInfo),
}

impl core::fmt::Display for Abort {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Abort::Panic(m) => write!(f, "panicked: {}", m.as_str()),
            Abort::Exception(e) => write!(f, "CPU exception: {e}"),
        }
    }
}

impl core::fmt::Debug for Abort {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

/// A fixed-capacity, truncating text buffer (no heap is needed to report a panic).
#[derive(Clone)]
pub struct Message {
    buf: [u8; MESSAGE_CAPACITY],
    len: usize,
}

impl Message {
    /// An empty message.
    pub const fn new() -> Self {
        Self {
            buf: [0; MESSAGE_CAPACITY],
            len: 0,
        }
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        // Only whole `&str` pieces (or whole chars of them) are ever copied in.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("<invalid utf-8>")
    }
}

impl Default for Message {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for Message {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            let mut tmp = [0u8; 4];
            let encoded = c.encode_utf8(&mut tmp);
            if self.len + encoded.len() > MESSAGE_CAPACITY - 3 {
                if !self.as_str().ends_with("...") {
                    self.buf[self.len..self.len + 3].copy_from_slice(b"...");
                    self.len += 3;
                }
                return Ok(());
            }
            self.buf[self.len..self.len + encoded.len()].copy_from_slice(encoded.as_bytes());
            self.len += encoded.len();
        }
        Ok(())
    }
}

/// Callee-saved state of a `catch` frame; layout shared with the assembly below.
#[repr(C)]
#[derive(Clone, Copy)]
struct JumpBuffer {
    rbx: u64,
    rbp: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    rsp: u64,
    rip: u64,
}

const EMPTY_BUFFER: JumpBuffer = JumpBuffer {
    rbx: 0,
    rbp: 0,
    r12: 0,
    r13: 0,
    r14: 0,
    r15: 0,
    rsp: 0,
    rip: 0,
};

/// One CPU's recovery points (kept in its per-CPU block).
pub struct RecoveryStack {
    buffers: [JumpBuffer; MAX_DEPTH],
    depth: usize,
    reason: Option<Abort>,
}

impl RecoveryStack {
    /// No recovery point armed.
    pub const fn new() -> Self {
        Self {
            buffers: [EMPTY_BUFFER; MAX_DEPTH],
            depth: 0,
            reason: None,
        }
    }
}

/// Gives the recovery stack of the running CPU.
///
/// # Safety
/// Interrupts are disabled (so no handler can abort into a half-armed point and the caller
/// cannot migrate), and the returned reference is not held across a call that may re-enter
/// this module.
unsafe fn recovery() -> &'static mut RecoveryStack {
    let cpu = super::percpu::current().expect("per-CPU data is installed before anything runs");
    // SAFETY: the stack in this CPU's block is only touched by this CPU (never through another
    // CPU's block), with interrupts off; by the caller's contract there is no overlapping
    // reference.
    unsafe { &mut *cpu.recovery.get() }
}

unsafe extern "C" {
    /// Saves the context into `buf`, calls `f(arg)`, returns 0; returns 1 when resumed by
    /// `recover_resume`.
    fn recover_call(f: extern "C" fn(*mut u8), arg: *mut u8, buf: *mut JumpBuffer) -> u64;
    /// Restores the context saved in `buf`, making its `recover_call` return 1.
    fn recover_resume(buf: *const JumpBuffer) -> !;
}

/// The closure `catch` runs, and whether to run it with interrupts enabled.
struct Call<F> {
    f: Option<F>,
    interrupts: bool,
}

extern "C" fn call_closure<F: FnOnce()>(arg: *mut u8) {
    // SAFETY: `catch` passes a pointer to a `Call<F>` that lives in its frame for the duration
    // of this call, and nothing else touches it meanwhile.
    let call = unsafe { &mut *(arg as *mut Call<F>) };
    if let Some(f) = call.f.take() {
        if call.interrupts {
            x86_64::instructions::interrupts::enable();
        }
        f();
        x86_64::instructions::interrupts::disable();
    }
}

/// Runs `f`; returns `Err` with the reason if it panicked or took a fatal exception.
///
/// Interrupts may be on: interrupt handlers never arm recovery points, so the recovery stack
/// is still this CPU's alone, and an exception inside a handler aborts the handler together
/// with `f` (handlers run on the interrupted stack). The interrupt flag is restored to its state
/// at entry when `f` is aborted (exception handlers run with it clear). Returns
/// `Err(Abort::Panic)` with a message saying so when recovery points are nested deeper than the
/// supported depth.
///
/// # Safety
/// - `f` runs on the calling CPU from start to end: the caller is not a thread, or `f` neither
///   blocks nor yields and runs with preemption off (otherwise an abort on another CPU would
///   not find this point, or would resume onto this stack from there).
/// - When `f` is aborted its frames are abandoned: their destructors do not run, so whatever
///   they locked stays locked and whatever they pinned is never dropped. The caller accepts
///   that; `f` must not pin anything whose memory is reused without its destructor running.
#[allow(
    clippy::result_large_err,
    reason = "see `Abort`: no heap, produced once per recovery"
)]
pub unsafe fn catch<F: FnOnce()>(f: F) -> Result<(), Abort> {
    let interrupts_were_on = x86_64::instructions::interrupts::are_enabled();
    x86_64::instructions::interrupts::disable();
    let result = catch_with_interrupts_off(f, interrupts_were_on);
    if interrupts_were_on {
        x86_64::instructions::interrupts::enable();
    }
    result
}

/// [`catch`] with interrupts disabled; `f` runs with them enabled if `interrupts`.
#[allow(
    clippy::result_large_err,
    reason = "see `Abort`: no heap, produced once per recovery"
)]
fn catch_with_interrupts_off<F: FnOnce()>(f: F, interrupts: bool) -> Result<(), Abort> {
    // SAFETY: the recovery stack is only touched by this CPU, here with interrupts off; the
    // reference is not held across the call of `f`.
    let depth = unsafe { recovery() }.depth;
    if depth == MAX_DEPTH {
        let mut m = Message::new();
        let _ = write!(m, "recovery points nested deeper than {MAX_DEPTH}");
        return Err(Abort::Panic(m));
    }
    let mut slot = Call {
        f: Some(f),
        interrupts,
    };
    // SAFETY: as above; we take a raw pointer to our buffer, which stays in this CPU's block.
    let buf = unsafe { &raw mut recovery().buffers[depth] };
    // SAFETY: as above.
    unsafe { recovery() }.depth = depth + 1;
    // An abort leaves the handler (or the preemption-disabled section) it came from without
    // its epilogue: put this CPU's interrupt depth and preemption count back as they are now.
    let cpu = super::percpu::current().expect("per-CPU data is installed before anything runs");
    let irq_depth = cpu.irq_depth.load(core::sync::atomic::Ordering::Relaxed);
    let preempt_count = cpu.preempt_count();
    // SAFETY: `buf` points at a live JumpBuffer in this CPU's block; `call_closure::<F>` matches the
    // argument, a pointer to `slot`, which lives until `recover_call` returns. If `f` is aborted,
    // `recover_resume` restores exactly the callee-saved registers and stack pointer that
    // `recover_call` saved on entry, so this frame continues as if the call returned 1
    // (with interrupts off: `abort` runs in exception context or after `call_closure`'s
    // epilogue could not run, and `catch` restores the flag).
    let aborted = unsafe { recover_call(call_closure::<F>, (&raw mut slot).cast(), buf) };
    // SAFETY: as above.
    let stack = unsafe { recovery() };
    stack.depth = depth;
    if aborted == 0 {
        Ok(())
    } else {
        cpu.irq_depth
            .store(irq_depth, core::sync::atomic::Ordering::Relaxed);
        cpu.swap_preempt_count(preempt_count);
        Err(stack
            .reason
            .take()
            .unwrap_or_else(|| Abort::Panic(Message::new())))
    }
}

/// Whether a recovery point is armed on this CPU.
pub fn armed() -> bool {
    let _irq = super::percpu::CpuGuard::enter();
    // SAFETY: interrupts are off (the guard); the reference is dropped at once.
    unsafe { recovery() }.depth > 0
}

/// Transfers control to the innermost recovery point with `reason`; if none is armed, reports
/// the failure and ends the kernel.
pub fn abort(reason: Abort) -> ! {
    // A panic may abort with interrupts on; the recovery bookkeeping runs with them off.
    x86_64::instructions::interrupts::disable();
    // SAFETY: interrupts are off (above); the stack is this CPU's, and the reference is not used
    // after the jump.
    let stack = unsafe { recovery() };
    if stack.depth == 0 {
        crate::console::force_write(format_args!("KERNEL PANIC: {reason}\n"));
        super::qemu::exit(super::qemu::ExitCode::Failure);
    }
    stack.reason = Some(reason);
    let buf = &raw const stack.buffers[stack.depth - 1];
    // SAFETY: `buf` was filled by the `recover_call` of a `catch` frame that is still live (its
    // depth slot is in use, and `catch` releases the slot only after `recover_call` returns).
    unsafe { recover_resume(buf) }
}

core::arch::global_asm!(
    r#"
    .section .text.recover, "ax"
    .global recover_call
recover_call:
    /* rdi = f, rsi = arg, rdx = buf */
    mov [rdx + 0], rbx
    mov [rdx + 8], rbp
    mov [rdx + 16], r12
    mov [rdx + 24], r13
    mov [rdx + 32], r14
    mov [rdx + 40], r15
    lea rax, [rsp + 8]
    mov [rdx + 48], rax         /* rsp after our return */
    mov rax, [rsp]
    mov [rdx + 56], rax         /* our return address */
    mov rax, rdi
    mov rdi, rsi
    sub rsp, 8                  /* keep the 16-byte call alignment */
    call rax
    add rsp, 8
    xor eax, eax
    ret

    .global recover_resume
recover_resume:
    /* rdi = buf */
    mov rbx, [rdi + 0]
    mov rbp, [rdi + 8]
    mov r12, [rdi + 16]
    mov r13, [rdi + 24]
    mov r14, [rdi + 32]
    mov r15, [rdi + 40]
    mov rsp, [rdi + 48]
    mov eax, 1
    jmp qword ptr [rdi + 56]
"#
);
