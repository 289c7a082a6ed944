//! Interrupt descriptor table, entry stubs written in `global_asm!`, and the Rust dispatcher.
//!
//! Stable Rust has no `extern "x86-interrupt"`, so every one of the 256 vectors gets a 16-byte
//! assembly stub that pushes a dummy error code (for vectors where the CPU pushes none) and the
//! vector number, then jumps to a common routine that saves all general-purpose registers into an
//! [`InterruptFrame`] and calls [`interrupt_dispatch`]. The dispatcher:
//!
//! - resumes after `#BP` (breakpoint), counting it;
//! - calls the handler installed with [`set_handler`] for vectors 32..=255, and counts those that
//!   nothing has claimed (unexpected), never fatal;
//! - for an exception on a probe's instruction ([`super::probe`]) redirects to the probe's fix-up;
//! - for any other CPU exception prints its name, error code, RIP (and CR2 for page faults), then
//!   hands control to the innermost recovery point ([`super::recover`]) if one is armed (a
//!   kernel test or a `catch_fault` call), or ends the kernel with a failure status.
//!
//! Double faults run on their own IST stack, so a kernel stack overflow still gets reported.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::registers::control::Cr2;
use x86_64::structures::DescriptorTablePointer;

use super::{gdt, probe, recover};

/// Registers saved by the entry stubs, in stack order (lowest address first).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct InterruptFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Vector number pushed by the stub.
    pub vector: u64,
    /// Error code pushed by the CPU, or 0 pushed by the stub.
    pub error_code: u64,
    // Pushed by the CPU:
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Exception vectors.
pub mod vector {
    /// #DE
    pub const DIVIDE_ERROR: u8 = 0;
    /// #BP
    pub const BREAKPOINT: u8 = 3;
    /// #UD
    pub const INVALID_OPCODE: u8 = 6;
    /// #NM
    pub const DEVICE_NOT_AVAILABLE: u8 = 7;
    /// #DF
    pub const DOUBLE_FAULT: u8 = 8;
    /// #PF
    pub const PAGE_FAULT: u8 = 14;
    /// NMI
    pub const NMI: u8 = 2;
    /// #MC
    pub const MACHINE_CHECK: u8 = 18;
}

/// Name of a CPU exception vector (Intel SDM vol. 3, table 6-1).
pub fn exception_name(vector: u8) -> &'static str {
    match vector {
        0 => "divide error (#DE)",
        1 => "debug (#DB)",
        2 => "non-maskable interrupt (NMI)",
        3 => "breakpoint (#BP)",
        4 => "overflow (#OF)",
        5 => "BOUND range exceeded (#BR)",
        6 => "invalid opcode (#UD)",
        7 => "device not available (#NM)",
        8 => "double fault (#DF)",
        9 => "coprocessor segment overrun",
        10 => "invalid TSS (#TS)",
        11 => "segment not present (#NP)",
        12 => "stack-segment fault (#SS)",
        13 => "general protection (#GP)",
        14 => "page fault (#PF)",
        16 => "x87 floating-point error (#MF)",
        17 => "alignment check (#AC)",
        18 => "machine check (#MC)",
        19 => "SIMD floating-point exception (#XM)",
        20 => "virtualization exception (#VE)",
        21 => "control protection (#CP)",
        28 => "hypervisor injection (#HV)",
        29 => "VMM communication (#VC)",
        30 => "security exception (#SX)",
        15 | 22..=27 | 31 => "reserved exception",
        _ => "external interrupt",
    }
}

/// Handlers of vectors 32..=255, as `fn(&mut InterruptFrame)` addresses (0: none).
static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

/// An interrupt handler: runs with interrupts disabled, on the interrupted stack; must not
/// block, allocate or take locks that non-interrupt code holds with interrupts enabled. It
/// acknowledges its interrupt itself (EOI), if the source needs one.
pub type Handler = fn(&mut InterruptFrame);

/// Why [`set_handler`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerError {
    /// Vectors 0..=31 are CPU exceptions, handled by the dispatcher itself.
    Exception(u8),
    /// Another handler already owns the vector.
    Taken(u8),
}

impl core::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Exception(v) => write!(f, "vector {v} is a CPU exception"),
            Self::Taken(v) => write!(f, "vector {v} already has a handler"),
        }
    }
}

/// Installs `handler` for `vector` (32..=255), for every CPU.
pub fn set_handler(vector: u8, handler: Handler) -> Result<(), HandlerError> {
    if vector < 32 {
        return Err(HandlerError::Exception(vector));
    }
    // Release: a CPU that sees the pointer sees the handler's code (it is static anyway).
    HANDLERS[usize::from(vector)]
        .compare_exchange(0, handler as usize, Ordering::Release, Ordering::Relaxed)
        .map(|_| ())
        .map_err(|_| HandlerError::Taken(vector))
}

/// The handler installed for `vector`, if any.
fn handler(vector: u8) -> Option<Handler> {
    match HANDLERS[usize::from(vector)].load(Ordering::Acquire) {
        0 => None,
        // SAFETY: non-zero values are only ever stored by `set_handler`, from a `Handler`.
        f => Some(unsafe { core::mem::transmute::<usize, Handler>(f) }),
    }
}

static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);
static UNEXPECTED: AtomicU64 = AtomicU64::new(0);
static LAST_UNEXPECTED_VECTOR: AtomicU64 = AtomicU64::new(0);

/// Number of `#BP` exceptions handled and resumed.
pub fn breakpoint_count() -> u64 {
    BREAKPOINTS.load(Ordering::Relaxed)
}

/// Number of interrupts on vectors 32..=255 that no handler claimed, and the last such vector.
pub fn unexpected_interrupts() -> (u64, u8) {
    (
        UNEXPECTED.load(Ordering::Relaxed),
        LAST_UNEXPECTED_VECTOR.load(Ordering::Relaxed) as u8,
    )
}

/// What a fatal exception looked like; kept for the recovery point that catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceptionInfo {
    /// Vector number (0..=31).
    pub vector: u8,
    /// Error code (0 when the exception has none).
    pub error_code: u64,
    /// Faulting instruction.
    pub rip: u64,
    /// CR2 at the time of the exception (meaningful for page faults and double faults).
    pub cr2: u64,
    /// The stack whose guard page CR2 points into, for a page or double fault: a kernel stack
    /// overflow.
    pub stack_overflow: Option<&'static str>,
}

impl core::fmt::Display for ExceptionInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} at rip={:#x}, error code={:#x}",
            exception_name(self.vector),
            self.rip,
            self.error_code
        )?;
        if self.vector == vector::PAGE_FAULT {
            write!(
                f,
                ", cr2={:#x} ({})",
                self.cr2,
                PageFaultCause(self.error_code)
            )?;
        }
        if let Some(stack) = self.stack_overflow {
            write!(
                f,
                ": kernel stack overflow ({stack} stack, guard page at cr2={:#x})",
                self.cr2
            )?;
        }
        Ok(())
    }
}

/// Decodes a page-fault error code.
struct PageFaultCause(u64);

impl core::fmt::Display for PageFaultCause {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let e = self.0;
        let present = if e & 1 != 0 {
            "protection violation"
        } else {
            "not present"
        };
        let access = if e & 0x10 != 0 {
            "instruction fetch"
        } else if e & 2 != 0 {
            "write"
        } else {
            "read"
        };
        let mode = if e & 4 != 0 { "user" } else { "kernel" };
        write!(f, "{present}, {access}, {mode} mode")?;
        if e & 8 != 0 {
            write!(f, ", reserved bit set")?;
        }
        Ok(())
    }
}

/// Called by the common stub with the saved registers (and, except for #NM, the interrupted
/// vector registers already saved by the stub, which also counts this CPU's interrupt depth,
/// `PerCpu::irq_depth`); may change the registers (the stub restores them with `iretq`).
#[unsafe(no_mangle)]
extern "C" fn interrupt_dispatch(frame: &mut InterruptFrame) {
    dispatch(frame);
}

fn dispatch(frame: &mut InterruptFrame) {
    let vector = frame.vector as u8;
    match vector {
        vector::BREAKPOINT => {
            BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
            log::debug!("breakpoint at {:#x}, resuming", frame.rip.wrapping_sub(1));
        }
        vector::DEVICE_NOT_AVAILABLE if super::fpu::device_not_available() => {}
        0..=31 => exception(frame),
        _ => match handler(vector) {
            Some(h) => h(frame),
            None => {
                UNEXPECTED.fetch_add(1, Ordering::Relaxed);
                LAST_UNEXPECTED_VECTOR.store(u64::from(vector), Ordering::Relaxed);
                log::warn!("unexpected interrupt on vector {vector} (counted, ignored)");
            }
        },
    }
}

/// CPU exceptions other than #BP and a handled #NM.
fn exception(frame: &mut InterruptFrame) {
    let vector = frame.vector as u8;
    let cr2 = Cr2::read_raw();
    let from_user = super::user::from_user(frame);
    // Demand paging: a fault on a user address, from user mode or from a kernel copy to or
    // from user memory (nowhere else does the kernel touch user addresses).
    if vector == vector::PAGE_FAULT
        && cr2 < super::user::USER_END
        && (from_user || super::user::in_user_copy(frame))
        && super::context::fault_in_current_space(cr2, frame.error_code)
    {
        return;
    }
    // A bad pointer in a user copy, or an exception a probe expects (each instruction is in
    // an exception table).
    if super::user::fixup(frame) || probe::fixup(frame, cr2) {
        return;
    }
    if from_user {
        let info = exception_info(frame, cr2);
        // Ends the process (never returns when a user thread runs, which one must).
        super::hooks::user_fault(&super::user::UserFault::Exception(info));
    }
    fatal_exception(frame);
}

/// The report of an exception at `frame` (`cr2` as read on entry).
fn exception_info(frame: &InterruptFrame, cr2: u64) -> ExceptionInfo {
    let vector = frame.vector as u8;
    let cr2 = if matches!(vector, vector::PAGE_FAULT | vector::DOUBLE_FAULT) {
        cr2
    } else {
        0
    };
    ExceptionInfo {
        vector,
        error_code: frame.error_code,
        rip: frame.rip,
        cr2,
        stack_overflow: matches!(vector, vector::PAGE_FAULT | vector::DOUBLE_FAULT)
            .then(|| super::layout::guard_page_stack(cr2))
            .flatten(),
    }
}

fn fatal_exception(frame: &InterruptFrame) {
    let info = exception_info(frame, Cr2::read_raw());
    crate::println!("CPU EXCEPTION: {info}");
    crate::println!(
        "  rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}",
        frame.rax,
        frame.rbx,
        frame.rcx,
        frame.rdx
    );
    crate::println!(
        "  rsi={:#018x} rdi={:#018x} rbp={:#018x} rsp={:#018x}",
        frame.rsi,
        frame.rdi,
        frame.rbp,
        frame.rsp
    );
    crate::println!(
        "  cs={:#x} ss={:#x} rflags={:#x}",
        frame.cs,
        frame.ss,
        frame.rflags
    );
    if info.vector == vector::DOUBLE_FAULT && info.stack_overflow.is_none() {
        crate::println!("  (double fault: the kernel stack may have overflowed)");
    }
    // A fault in a kernel thread kills the thread, not the kernel (the scheduler's hook returns
    // only if the CPU was not running a thread).
    super::hooks::fatal_exception(&info);
    recover::abort(recover::Abort::Exception(info));
}

#[repr(C)]
#[derive(Clone, Copy)]
struct GateDescriptor {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl GateDescriptor {
    const MISSING: Self = Self {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attr: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    /// A present interrupt gate (IF cleared on entry); `ist` is 0 or a 1-based IST slot.
    fn interrupt_gate(handler: u64, selector: u16, ist: u8, dpl: u8) -> Self {
        Self {
            offset_low: handler as u16,
            selector,
            ist,
            type_attr: 0x80 | (dpl << 5) | 0xE,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([GateDescriptor; 256]);

static mut IDT: Idt = Idt([GateDescriptor::MISSING; 256]);

unsafe extern "C" {
    /// First of 256 entry stubs, 16 bytes apart (defined in the `global_asm!` below).
    static isr_stubs: [u8; 256 * 16];
}

/// Fills the IDT with the 256 stubs and loads it. Call once on each CPU after [`gdt::init`].
pub fn init() {
    let selector = gdt::selectors()
        .expect("gdt::init runs before idt::init")
        .kernel_code
        .0;
    let base = (&raw const isr_stubs) as u64;
    let idt = &raw mut IDT;
    // SAFETY: only this function writes IDT, on the bootstrap processor before interrupts are
    // enabled, so no other reference to it exists while it is filled.
    let idt = unsafe { &mut *idt };
    for (v, gate) in idt.0.iter_mut().enumerate() {
        let ist = match v as u8 {
            vector::DOUBLE_FAULT => gdt::DOUBLE_FAULT_IST_INDEX as u8 + 1,
            vector::NMI | vector::MACHINE_CHECK => gdt::NMI_IST_INDEX as u8 + 1,
            _ => 0,
        };
        // #BP may be raised with `int3` from user mode later; everything else is kernel-only.
        let dpl = if v as u8 == vector::BREAKPOINT { 3 } else { 0 };
        *gate = GateDescriptor::interrupt_gate(base + 16 * v as u64, selector, ist, dpl);
    }
    load();
}

/// Loads the IDT built by [`init`] on this CPU (application processors share it).
pub fn load() {
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::from_ptr(&raw const IDT),
    };
    // SAFETY: the table is a `static` (valid forever), filled by `init` on the bootstrap
    // processor before any AP starts, with gates that point at the stubs below, which save state
    // and call `interrupt_dispatch` per the InterruptFrame layout.
    unsafe { lidt(&pointer) };
}

core::arch::global_asm!(
    r#"
    .section .text.isr, "ax"
    .balign 16
    .global isr_stubs
isr_stubs:
    .set isr_vec, 0
    .rept 256
    .balign 16
    .if (isr_vec == 8) || (isr_vec == 10) || (isr_vec == 11) || (isr_vec == 12) || (isr_vec == 13) || (isr_vec == 14) || (isr_vec == 17) || (isr_vec == 21) || (isr_vec == 29) || (isr_vec == 30)
    .else
    push 0
    .endif
    push isr_vec
    jmp isr_common
    .set isr_vec, isr_vec + 1
    .endr

isr_common:
    /* From ring 3 (the interrupted CS, above vector and error code, has RPL 3): GS is the
       user's; make it the per-CPU block's before anything reads it. */
    test byte ptr [rsp + 24], 3
    jz 1f
    swapgs
1:
    /* With SMAP, handlers never run with user access allowed (an exception in a user copy
       arrives with RFLAGS.AC set; `iretq` restores it for the copy). */
    test byte ptr [rip + VERIDIAN_SMAP_ON], 1
    jz 1f
    clac
1:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    cld
    /* rbx = the InterruptFrame; r12 = what was saved: bit 0 vector registers, bit 1 CR0.TS
       was set. Both are callee-saved, so they survive the call (also across a thread switch
       inside the handler). */
    mov rbx, rsp
    xor r12d, r12d
    and rsp, -64
    sub rsp, {area}
    /* Save the interrupted vector registers before any Rust code runs (which may use them):
       not for #NM (its handler hands the registers to the running thread), not before the
       kernel set the save mode. */
    cmp qword ptr [rbx + 120], 7
    je 2f
    mov eax, dword ptr [rip + {mode}]
    test eax, eax
    jz 2f
    mov rcx, cr0
    test ecx, 8
    jz 3f
    or r12d, 2
3:
    clts
    or r12d, 1
    cmp eax, 2
    jne 4f
    /* The XSAVE header (bytes 512..576): XSAVE writes only the XSTATE_BV bits it saves, and
       XRSTOR faults on stray XSTATE_BV bits or non-zero XCOMP_BV/reserved bytes. */
    mov qword ptr [rsp + 512], 0
    mov qword ptr [rsp + 520], 0
    mov qword ptr [rsp + 528], 0
    mov qword ptr [rsp + 536], 0
    mov qword ptr [rsp + 544], 0
    mov qword ptr [rsp + 552], 0
    mov qword ptr [rsp + 560], 0
    mov qword ptr [rsp + 568], 0
    mov eax, dword ptr [rip + {mask}]
    mov edx, dword ptr [rip + {mask} + 4]
    xsave64 [rsp]
    jmp 2f
4:
    fxsave64 [rsp]
2:
    /* One interrupt level deeper on this CPU (read by the lock validator). A handler that
       switches threads takes its depth along (`context`), so the decrement below happens on
       whatever CPU the thread resumes on: GS is read again there. Only this CPU changes its
       count, with single instructions, so no lock prefix is needed. */
    inc dword ptr gs:[{depth}]
    /* The kernel heap's slot pointer follows the depth (`percpu::IrqDepth`): null in a
       handler, the CPU's thread slot back at depth zero. */
    mov qword ptr gs:[{heap_slot}], 0
    mov rdi, rbx
    call interrupt_dispatch
    dec dword ptr gs:[{depth}]
    jnz 10f
    mov rax, qword ptr gs:[{heap_thread_slot}]
    mov qword ptr gs:[{heap_slot}], rax
10:
    test r12d, 1
    jz 5f
    clts
    cmp dword ptr [rip + {mode}], 2
    jne 6f
    mov eax, dword ptr [rip + {mask}]
    mov edx, dword ptr [rip + {mask} + 4]
    xrstor64 [rsp]
    jmp 7f
6:
    fxrstor64 [rsp]
7:
    test r12d, 2
    jz 8f
    mov rax, cr0
    or rax, 8
    mov cr0, rax
    jmp 5f
8:
    /* TS was clear: the running thread's registers were live, and are again. */
    mov byte ptr gs:[{live}], 1
5:
    mov rsp, rbx
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    /* Back to ring 3: give the user its GS again. */
    test byte ptr [rsp + 8], 3
    jz 9f
    swapgs
9:
    iretq
"#,
    area = const super::fpu::SAVE_AREA,
    mode = sym super::fpu::VERIDIAN_FPU_SAVE_MODE,
    mask = sym super::fpu::VERIDIAN_FPU_SAVE_MASK,
    live = const core::mem::offset_of!(super::percpu::PerCpu, fpu_live),
    depth = const super::percpu::IRQ_DEPTH_OFFSET,
    heap_slot = const super::percpu::HEAP_SLOT_OFFSET,
    heap_thread_slot = const super::percpu::HEAP_THREAD_SLOT_OFFSET,
);
