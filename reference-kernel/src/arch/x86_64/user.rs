//! Ring 3: the `SYSCALL`/`SYSRET` entry, the first entry of a thread into user mode, and
//! copies between kernel and user memory that survive bad user pointers.
//!
//! What it does:
//! - [`init_cpu`] (every CPU): `EFER.SCE`, `STAR` (kernel CS 0x08/SS 0x10, user SS 0x1b/CS
//!   0x23 from the GDT's layout), `LSTAR` = `syscall_entry`, `SFMASK` clearing IF, DF, TF and AC
//!   on entry, `KERNEL_GS_BASE` = 0 (the user's GS), and CR4.SMEP/SMAP where the CPU has them.
//! - `syscall_entry` (assembly): `swapgs`, saves the user `rsp` in the per-CPU block, switches
//!   to the running thread's kernel stack ([`set_user_stack`] keeps the per-CPU `kernel_rsp` and
//!   the TSS's `rsp0` on it), builds a [`SyscallFrame`], enables interrupts and calls entry
//!   `rax` of the process layer's system-call table directly (`-ENOSYS` past its end or before
//!   it is registered: [`set_syscall_table`]); on the way back, interrupts off, it returns with
//!   `SYSRET` only when the return address is in the user half (the `SYSRET` #GP-in-ring-0
//!   hazard of Intel CPUs needs a non-canonical one), and ends the process otherwise.
//! - [`enter_user`]: a thread's first jump to ring 3 (`IRETQ` with user selectors, IF set).
//! - [`copy_from_user`]/[`copy_to_user`]: the range is checked to lie in the user half, then
//!   copied with `rep movsb` inside `stac`/`clac` (with SMAP); a page fault on the copy
//!   instruction resumes at a fix-up that reports how much was left, so a bad pointer becomes
//!   an error instead of a kernel fault. Demand paging comes first: the page-fault path asks
//!   the address space before it takes the fix-up.
//!
//! Interrupt and exception entry from ring 3 (`idt.rs`) does `swapgs` when the interrupted
//! code segment has RPL 3, on the way in and out: in kernel mode GS always points at the
//! per-CPU block.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use x86_64::VirtAddr;
use x86_64::registers::control::{Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags, KernelGsBase, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;
use x86_64::structures::tss::TaskStateSegment;

use super::gdt;
use super::idt::InterruptFrame;
use super::percpu::{self, PerCpu};

/// End (exclusive) of user addresses: the lower canonical half.
pub const USER_END: u64 = crate::process_abi::layout::USER_END;

/// The registers of a system call, as `syscall_entry` saves them (lowest address first). The
/// handler reads the number and arguments and writes the result into `rax`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SyscallFrame {
    /// Arguments 1..=6 (`rdi rsi rdx r10 r8 r9`).
    pub args: [u64; 6],
    /// Number on entry, result on exit.
    pub rax: u64,
    /// Return address (`rcx` at `SYSCALL`).
    pub rip: u64,
    /// User flags (`r11` at `SYSCALL`).
    pub rflags: u64,
    /// User stack pointer.
    pub rsp: u64,
}

/// SMAP is on: user-memory copies bracket themselves with `stac`/`clac`.
#[unsafe(no_mangle)]
static VERIDIAN_SMAP_ON: AtomicBool = AtomicBool::new(false);

/// What [`init_cpu`] turned on, for the boot report.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserSupport {
    /// Supervisor-mode execution prevention.
    pub smep: bool,
    /// Supervisor-mode access prevention.
    pub smap: bool,
}

/// Prepares this CPU for ring 3: records its TSS, programs the `SYSCALL` MSRs, turns SMEP,
/// SMAP and PCIDs (`tlb::init_cpu`) on where the CPU has them. Once per CPU, after its per-CPU block and GDT are installed.
pub fn init_cpu(tss: *mut TaskStateSegment) -> UserSupport {
    if let Some(cpu) = percpu::current() {
        cpu.tss.store(tss, Ordering::Relaxed);
    }
    let sel = gdt::selectors().expect("gdt::init runs first");
    let features = raw_cpuid::CpuId::new().get_extended_feature_info();
    let smep = features.as_ref().is_some_and(|f| f.has_smep());
    let smap = features.as_ref().is_some_and(|f| f.has_smap());
    // SAFETY: SCE only makes `SYSCALL`/`SYSRET` usable; the MSR values below give `SYSCALL` the
    // kernel's code/stack selectors and an entry point that switches stacks before touching
    // memory through `rsp`; SFMASK clears IF (no interrupt before the stack switch), DF, TF and
    // AC. KERNEL_GS_BASE is the user's GS base while the kernel runs (0: unused by user code).
    // SMEP/SMAP only forbid the kernel to execute or touch user pages, which it never does
    // outside the `stac`/`clac` copies below.
    unsafe {
        Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
        Star::write(
            sel.user_code,
            sel.user_data,
            sel.kernel_code,
            sel.kernel_data,
        )
        .expect("the GDT's layout is the one SYSRET needs");
        LStar::write(VirtAddr::new(syscall_entry as *const () as u64));
        SFMask::write(
            RFlags::INTERRUPT_FLAG
                | RFlags::DIRECTION_FLAG
                | RFlags::TRAP_FLAG
                | RFlags::ALIGNMENT_CHECK,
        );
        KernelGsBase::write(VirtAddr::zero());
        Cr4::update(|f| {
            if smep {
                f.insert(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION);
            }
            if smap {
                f.insert(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION);
            }
        });
    }
    if smap {
        VERIDIAN_SMAP_ON.store(true, Ordering::Relaxed);
    }
    if let Err(e) = super::tlb::init_cpu() {
        log::error!("tlb: no shootdown vector: {e}");
    }
    UserSupport { smep, smap }
}

/// Makes `top` this CPU's kernel stack for entries from ring 3 (the TSS's `rsp0` and the
/// `SYSCALL` entry's stack). For the scheduler, before it runs a user thread whose kernel
/// stack ends at `top`; interrupts must be off (the caller's guard proves it).
pub(super) fn set_user_stack(cpu: &PerCpu, top: u64) {
    cpu.kernel_rsp.store(top, Ordering::Relaxed);
    let tss = cpu.tss.load(Ordering::Relaxed);
    if !tss.is_null() {
        // SAFETY: `tss` is this CPU's own TSS (stored by `init_cpu` on this CPU), and the
        // caller runs with interrupts off.
        unsafe { gdt::set_kernel_stack(tss, top) };
    }
}

/// Jumps to ring 3 at `entry` with `rsp` = `stack_top` and `rdi` = `arg`, interrupts on, all
/// other general registers zero. The running thread must have entered its address space
/// (`context::enter_address_space`); panics otherwise. Never returns: the thread comes back
/// into the kernel only through system calls, interrupts and exceptions, on its kernel stack
/// from the top, so the caller's frames are abandoned as with `context::exit_to_scheduler`
/// (nothing on them is dropped: keep nothing there that needs its destructor).
///
/// Whatever `entry` and `stack_top` are, the kernel is safe: the jump lands in ring 3, where a
/// bad address is the process's own fault.
pub fn enter_user(entry: u64, stack_top: u64, arg: u64) -> ! {
    assert!(
        super::context::has_address_space(),
        "enter_user outside a thread with a user address space"
    );
    let sel = gdt::selectors().expect("gdt::init runs first");
    let user_cs = u64::from(sel.user_code.0);
    let user_ss = u64::from(sel.user_data.0);
    let rflags = (RFlags::INTERRUPT_FLAG | RFlags::from_bits_truncate(0x2)).bits();
    // SAFETY: the thread runs on its address space (checked above) with its kernel stack as the
    // CPU's ring-0 stack; `iretq` with user selectors and IF set can only land in ring 3.
    // `swapgs` makes GS the user's (0) and parks the per-CPU pointer in KERNEL_GS_BASE, which
    // entry from ring 3 swaps back. Interrupts are off from the `cli` until `iretq` loads the
    // user flags, so no interrupt sees the swapped GS in kernel mode.
    unsafe {
        core::arch::asm!(
            "cli",
            "push {ss}",
            "push {rsp}",
            "push {rflags}",
            "push {cs}",
            "push {rip}",
            "xor eax, eax",
            "xor ebx, ebx",
            "xor ecx, ecx",
            "xor edx, edx",
            "xor esi, esi",
            "xor ebp, ebp",
            "xor r8d, r8d",
            "xor r9d, r9d",
            "xor r10d, r10d",
            "xor r11d, r11d",
            "xor r12d, r12d",
            "xor r13d, r13d",
            "xor r14d, r14d",
            "xor r15d, r15d",
            "swapgs",
            "iretq",
            ss = in(reg) user_ss,
            rsp = in(reg) stack_top,
            rflags = in(reg) rflags,
            cs = in(reg) user_cs,
            rip = in(reg) entry,
            in("rdi") arg,
            options(noreturn),
        );
    }
}

/// A user pointer range was not readable/writable user memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadUserPointer;

/// Whether `[addr, addr + len)` lies in the user half (an empty range at any user address, or
/// at `USER_END`, is fine).
pub fn user_range(addr: u64, len: usize) -> bool {
    reference_kernel::syscall_args::user_range(addr, len as u64)
}

unsafe extern "C" {
    /// Copies `len` bytes from `src` to `dst` (`rep movsb`); returns the bytes left when a page
    /// fault stopped it (0: all copied).
    fn veridian_user_copy(dst: *mut u8, src: *const u8, len: usize) -> usize;
    static veridian_user_copy_insn: u8;
    static veridian_user_copy_fixup: u8;
}

/// Copies `dst.len()` bytes of user memory at `src` into `dst`.
pub fn copy_from_user(dst: &mut [u8], src: u64) -> Result<(), BadUserPointer> {
    if !user_range(src, dst.len()) {
        return Err(BadUserPointer);
    }
    // SAFETY: `dst` is a kernel buffer we own; `src..src + len` is in the user half (checked),
    // so the copy touches no kernel memory through it; an unmapped or forbidden user page
    // faults on the copy instruction, whose fix-up ends the copy.
    let left = unsafe { veridian_user_copy(dst.as_mut_ptr(), src as *const u8, dst.len()) };
    if left == 0 {
        Ok(())
    } else {
        Err(BadUserPointer)
    }
}

/// Copies `src` into user memory at `dst`.
pub fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), BadUserPointer> {
    if !user_range(dst, src.len()) {
        return Err(BadUserPointer);
    }
    // SAFETY: as `copy_from_user`, the other way round: only user-half addresses are written
    // (a read-only or unmapped user page faults on the copy instruction and ends the copy).
    let left = unsafe { veridian_user_copy(dst as *mut u8, src.as_ptr(), src.len()) };
    if left == 0 {
        Ok(())
    } else {
        Err(BadUserPointer)
    }
}

/// The user-copy fix-up: a page fault on the copy instruction resumes after it, with the
/// remaining count in `rcx`. For the exception dispatcher.
pub(super) fn fixup(frame: &mut InterruptFrame) -> bool {
    if frame.vector as u8 != super::idt::vector::PAGE_FAULT || !in_user_copy(frame) {
        return false;
    }
    frame.rip = (&raw const veridian_user_copy_fixup) as u64;
    true
}

/// Whether an exception interrupted the user-copy instruction.
pub(super) fn in_user_copy(frame: &InterruptFrame) -> bool {
    frame.rip == (&raw const veridian_user_copy_insn) as u64
}

/// Whether an exception frame interrupted user mode.
pub(super) fn from_user(frame: &InterruptFrame) -> bool {
    frame.cs & 3 == 3
}

unsafe extern "C" {
    fn syscall_entry();
}

/// Called by `syscall_entry` (interrupts off) when the saved return address is not a user-half
/// address: the process is ended (the registered hook never returns for a user thread).
#[unsafe(no_mangle)]
extern "C" fn veridian_syscall_bad_return(frame: &mut SyscallFrame) -> ! {
    super::hooks::user_fault(&UserFault::BadReturn { rip: frame.rip });
    // Not a thread (impossible: only threads run user code): nothing to return to.
    panic!(
        "system call return to {:#x} outside the user half",
        frame.rip
    );
}

/// Why the kernel ends a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserFault {
    /// A CPU exception in user mode.
    Exception(super::idt::ExceptionInfo),
    /// A system call whose return address is outside the user half.
    BadReturn {
        /// The saved return address.
        rip: u64,
    },
}

impl core::fmt::Display for UserFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Exception(info) => write!(f, "{info}"),
            Self::BadReturn { rip } => {
                write!(
                    f,
                    "system call return address {rip:#x} outside the user half"
                )
            }
        }
    }
}

/// A system call's handler: reads the arguments from the frame, writes the result into its
/// `rax`. Called by `syscall_entry` with interrupts on, on the thread's kernel stack.
pub type SyscallHandler = extern "C" fn(&mut SyscallFrame);

/// The system-call table `syscall_entry` indexes (null until registered) and its length
/// (written before the pointer, so an entry that sees the pointer sees the length).
#[unsafe(no_mangle)]
static VERIDIAN_SYSCALL_TABLE: AtomicPtr<SyscallHandler> = AtomicPtr::new(core::ptr::null_mut());
#[unsafe(no_mangle)]
static VERIDIAN_SYSCALL_COUNT: AtomicU64 = AtomicU64::new(0);

/// Publishes the system-call table (once, before the first process runs; `hooks` does it).
pub(super) fn set_syscall_table(table: &'static [SyscallHandler]) {
    VERIDIAN_SYSCALL_COUNT.store(table.len() as u64, Ordering::Release);
    VERIDIAN_SYSCALL_TABLE.store(table.as_ptr().cast_mut(), Ordering::Release);
}

core::arch::global_asm!(
    r#"
    .section .text.user, "ax"
    .global veridian_user_copy
    .global veridian_user_copy_insn
    .global veridian_user_copy_fixup
veridian_user_copy:
    mov rcx, rdx
    test byte ptr [rip + VERIDIAN_SMAP_ON], 1
    jz 1f
    stac
1:
veridian_user_copy_insn:
    rep movsb
veridian_user_copy_fixup:
    test byte ptr [rip + VERIDIAN_SMAP_ON], 1
    jz 2f
    clac
2:
    mov rax, rcx
    ret

    .global syscall_entry
syscall_entry:
    swapgs
    mov gs:[{user_rsp}], rsp
    mov rsp, gs:[{kernel_rsp}]
    /* SyscallFrame, highest field first */
    push qword ptr gs:[{user_rsp}]
    push r11
    push rcx
    push rax
    push r9
    push r8
    push r10
    push rdx
    push rsi
    push rdi
    mov rdi, rsp
    sti
    /* Entry rax of the table (published with its length before the pointer: x86 keeps
       these two loads in order), or -ENOSYS. */
    mov rcx, [rip + VERIDIAN_SYSCALL_TABLE]
    test rcx, rcx
    jz 4f
    cmp rax, [rip + VERIDIAN_SYSCALL_COUNT]
    jae 4f
    call [rcx + rax * 8]
5:
    cli
    /* SYSRET to a non-canonical rcx raises #GP in ring 0 on Intel CPUs, with the user rsp
       already loaded. The kernel never maps the top page of the user half, so the address
       after a SYSCALL is always below it; should the saved return address be anything else,
       the process is ended instead of returned to. */
    mov rax, [rsp + 56]
    shr rax, 47
    jnz 3f
    pop rdi
    pop rsi
    pop rdx
    pop r10
    pop r8
    pop r9
    pop rax
    pop rcx
    pop r11
    pop rsp
    swapgs
    sysretq
3:
    mov rdi, rsp
    call veridian_syscall_bad_return
    ud2
4:
    mov qword ptr [rsp + {rax}], -{enosys}
    jmp 5b
"#,
    user_rsp = const core::mem::offset_of!(PerCpu, user_rsp),
    kernel_rsp = const core::mem::offset_of!(PerCpu, kernel_rsp),
    rax = const core::mem::offset_of!(SyscallFrame, rax),
    enosys = const crate::process_abi::errno::ENOSYS,
);
