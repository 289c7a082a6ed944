//! Starting the application processors (APs): INIT-SIPI-SIPI with a real-mode trampoline below
//! 1 MiB.
//!
//! What it does: [`start_aps`] copies the trampoline (16-bit → 32-bit → 64-bit code, written in
//! `global_asm!` below) to physical [`TRAMPOLINE`] and builds a small page table for the APs' way
//! into long mode at [`AP_PML4`]: the kernel's higher half (PML4 slots 256..511 shared with the
//! kernel's tables) plus an identity map of the first 2 MiB, where the trampoline runs while
//! paging comes on. Then, one AP at a time, it fills the parameter block (stack, entry point,
//! per-CPU block), sends INIT, waits 10 ms, sends STARTUP (twice if the AP does not answer
//! within 200 µs, as the MP specification asks) and waits up to 100 ms for the AP to report in.
//!
//! Each AP, in [`ap_entry`]: loads the kernel's page tables (dropping the identity map), its own
//! GDT and TSS (own IST stacks), the shared IDT, its per-CPU block through GS, enables its vector
//! state and its local APIC timer, reports in, enables interrupts and idles with `hlt` (the
//! scheduler takes over in `task`).
//!
//! What it relies on: physical pages `0x8000..0xC000` are usable RAM (checked against the boot
//! memory map; the frame allocator never hands out the first MiB); the bootstrap processor's
//! APIC is up and calibrated ([`super::apic`]); only the bootstrap processor runs this, once.
//! The parameter block is written before the STARTUP IPI and read by the AP after it; an IPI is
//! a serialising event for the receiving CPU, and the AP's report (a `Release` store read with
//! `Acquire`) orders everything it did before it.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use alloc::boxed::Box;
use reference_kernel::BootInfo;
use reference_kernel::acpi::Platform;
use reference_kernel::bootinfo::MemoryKind;
use x86_64::registers::control::Cr3;
use x86_64::registers::model_specific::Efer;

use super::context::KernelStack;
use super::layout::PHYS_OFFSET;
use super::percpu::{self, MAX_CPUS, PerCpu};
use super::{apic, cpu, gdt, idt};

/// Physical address of the trampoline (STARTUP vector 0x08).
pub const TRAMPOLINE: u64 = 0x8000;
/// The APs' temporary PML4, PDPT and PD.
const AP_PML4: u64 = 0x9000;
const AP_PDPT: u64 = 0xA000;
const AP_PD: u64 = 0xB000;
/// Offset of the parameter block in the trampoline page (the code stays below it).
const PARAMS: u64 = 0xF00;
/// Kernel stack of each AP, in pages (plus a guard page).
const AP_STACK_PAGES: usize = 16;

/// The parameter block at `TRAMPOLINE + PARAMS`, read by the trampoline code.
#[repr(C)]
struct Params {
    /// 0xF00: CR3 for the way in (`AP_PML4`, below 4 GiB as 32-bit code needs).
    boot_cr3: u64,
    /// 0xF08: initial stack pointer (16-byte aligned).
    stack_top: u64,
    /// 0xF10: 64-bit entry point (`ap_entry`).
    entry: u64,
    /// 0xF18: its argument (a leaked `ApStart`).
    arg: u64,
    /// 0xF20: EFER bits to set (LME, and NXE when the bootstrap processor has it).
    efer_bits: u64,
}

/// What an AP needs and how it reports back.
struct ApStart {
    kernel_cr3: u64,
    percpu: *mut PerCpu,
    online: AtomicBool,
    /// [`WAITING`], then [`CLAIMED`] by the AP as the first thing it does in 64-bit code, or
    /// [`ABANDONED`] by the bootstrap processor when it gave up waiting: an AP that starts
    /// after that halts at once instead of running with a record the BSP no longer expects.
    state: AtomicU8,
    /// The AP's IST stacks (double fault, NMI), allocated by the bootstrap processor.
    ist: [Option<KernelStack>; 2],
}

const WAITING: u8 = 0;
const CLAIMED: u8 = 1;
const ABANDONED: u8 = 2;

/// How long the bootstrap processor waits for one AP to come up (a loaded host can hold a TCG
/// vCPU back for many milliseconds).
const AP_WAIT_US: u64 = 1_000_000;

/// Why [`start_aps`] could not start the APs at all.
#[derive(Debug)]
pub enum SmpError {
    /// The trampoline pages are not usable RAM.
    TrampolineNotRam,
    /// The trampoline code does not fit below the parameter block.
    TrampolineTooBig(usize),
    /// The local APIC is not up.
    NoApic,
}

impl core::fmt::Display for SmpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TrampolineNotRam => write!(
                f,
                "physical {TRAMPOLINE:#x}..{:#x} is not usable RAM",
                AP_PD + 0x1000
            ),
            Self::TrampolineTooBig(n) => write!(f, "trampoline is {n} bytes, over {PARAMS}"),
            Self::NoApic => write!(f, "the local APIC is not running"),
        }
    }
}

/// The outcome for the APs.
#[derive(Debug, Default, Clone, Copy)]
pub struct SmpReport {
    /// APs that reported in.
    pub started: u32,
    /// APs that did not answer (or could not be given a stack).
    pub failed: u32,
    /// Enabled CPUs beyond [`MAX_CPUS`], not started.
    pub skipped: u32,
}

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

fn phys_ptr<T>(phys: u64) -> *mut T {
    (PHYS_OFFSET + phys) as *mut T
}

fn delay_us(us: u64) {
    let hz = apic::info().map_or(1_000_000_000, |i| i.tsc_hz);
    let end = veridian_perf::arch::rdtsc() + hz / 1_000_000 * us;
    while veridian_perf::arch::rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Whether `[start, end)` lies inside one usable region of the memory map.
fn usable(info: &BootInfo, start: u64, end: u64) -> bool {
    info.memory_map()
        .iter()
        .any(|r| r.kind == MemoryKind::Usable && r.start <= start && end <= r.start + r.len)
}

/// Installs the trampoline and the APs' page table.
fn install_trampoline(info: &BootInfo) -> Result<(), SmpError> {
    if !usable(info, TRAMPOLINE, AP_PD + 0x1000) {
        return Err(SmpError::TrampolineNotRam);
    }
    let start = (&raw const ap_trampoline_start) as usize;
    let len = (&raw const ap_trampoline_end) as usize - start;
    if len as u64 > PARAMS {
        return Err(SmpError::TrampolineTooBig(len));
    }
    // SAFETY: the four pages at 0x8000..0xC000 are usable RAM (checked) that the frame
    // allocator never hands out (it skips the first MiB) and nothing else in the kernel uses;
    // the direct map covers them writable. The trampoline bytes are the kernel's own code.
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, phys_ptr(TRAMPOLINE), len);
        let pml4: *mut u64 = phys_ptr(AP_PML4);
        let pdpt: *mut u64 = phys_ptr(AP_PDPT);
        let pd: *mut u64 = phys_ptr(AP_PD);
        core::ptr::write_bytes(pml4, 0, 512);
        core::ptr::write_bytes(pdpt, 0, 512);
        core::ptr::write_bytes(pd, 0, 512);
        // Identity map of 0..2 MiB (present, writable, 2 MiB page) for the trampoline.
        pd.write(0x83);
        pdpt.write(AP_PD | 0x3);
        pml4.write(AP_PDPT | 0x3);
    }
    Ok(())
}

/// Copies the kernel's higher half (direct map, kernel stacks, kernel image) into the APs'
/// PML4. Called before each AP starts, after its stack was mapped (a new stack may have added a
/// PML4 entry).
fn sync_higher_half() {
    let (kernel_pml4, _) = Cr3::read();
    let kernel_pml4: *const u64 = phys_ptr(kernel_pml4.start_address().as_u64());
    let pml4: *mut u64 = phys_ptr(AP_PML4);
    // SAFETY: both tables are reached through the direct map; the APs' PML4 is ours (installed
    // by `install_trampoline`) and no AP is using it now (each is waited for in turn).
    unsafe {
        for i in 256..512 {
            pml4.add(i).write(kernel_pml4.add(i).read());
        }
    }
}

/// Starts every enabled CPU of `platform` other than this one. Returns what happened; CPUs that
/// do not answer are reported, not fatal.
///
/// `alloc_stack(pages)` maps a kernel stack of that many pages (above a guard page); the
/// caller (`mm`) supplies it, so this module does not reach up into memory management.
pub fn start_aps(
    info: &BootInfo,
    platform: &Platform,
    alloc_stack: fn(usize) -> Option<KernelStack>,
) -> Result<SmpReport, SmpError> {
    let bsp = apic::info().ok_or(SmpError::NoApic)?;
    install_trampoline(info)?;
    let mut report = SmpReport::default();
    let mut next_index = 1u32;
    let efer_bits = {
        let efer = Efer::read();
        (1 << 8) | (efer.bits() & (1 << 11))
    };
    let (kernel_pml4, _) = Cr3::read();
    for cpu in platform.enabled_cpus() {
        if cpu.apic_id == bsp.id {
            continue;
        }
        if next_index as usize >= MAX_CPUS {
            report.skipped += 1;
            continue;
        }
        let Some(stack_top) = alloc_stack(AP_STACK_PAGES).map(|s| s.top()) else {
            log::warn!("smp: no stack for APIC id {}", cpu.apic_id);
            report.failed += 1;
            continue;
        };
        let percpu = Box::leak(Box::new(PerCpu::new(
            next_index,
            cpu.apic_id,
            cpu.node as u32,
        )));
        let start = Box::leak(Box::new(ApStart {
            kernel_cr3: kernel_pml4.start_address().as_u64(),
            percpu,
            online: AtomicBool::new(false),
            state: AtomicU8::new(WAITING),
            ist: [
                alloc_stack(super::gdt::IST_STACK_PAGES),
                alloc_stack(super::gdt::IST_STACK_PAGES),
            ],
        }));
        sync_higher_half();
        let params = Params {
            boot_cr3: AP_PML4,
            stack_top,
            entry: ap_entry as *const () as u64,
            arg: core::ptr::from_mut(start) as u64,
            efer_bits,
        };
        // SAFETY: the parameter block lies in the trampoline page (installed above, ours), no
        // AP is running the trampoline now (each AP is waited for before the next starts).
        unsafe { core::ptr::write_volatile(phys_ptr(TRAMPOLINE + PARAMS), params) };
        core::sync::atomic::fence(Ordering::SeqCst);

        apic::send_init(cpu.apic_id);
        delay_us(10_000);
        let vector = (TRAMPOLINE >> 12) as u8;
        apic::send_startup(cpu.apic_id, vector);
        let mut waited = 0;
        let mut second_sent = false;
        while !start.online.load(Ordering::Acquire) && waited < AP_WAIT_US {
            delay_us(100);
            waited += 100;
            if waited >= 200 && !second_sent {
                apic::send_startup(cpu.apic_id, vector);
                second_sent = true;
            }
        }
        // Give up on it only if it has not claimed its record; once it has, it is running
        // kernel code and comes online (wait for that).
        let abandoned = start
            .state
            .compare_exchange(WAITING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if abandoned {
            // Park it (INIT: wait-for-SIPI), so that it cannot run the trampoline with the next
            // AP's parameters; should it get to 64-bit code first, it sees ABANDONED and halts.
            apic::send_init(cpu.apic_id);
            delay_us(10_000);
        } else {
            while !start.online.load(Ordering::Acquire) {
                core::hint::spin_loop();
            }
        }
        if start.online.load(Ordering::Acquire) {
            report.started += 1;
            next_index += 1;
        } else {
            log::warn!("smp: APIC id {} did not start", cpu.apic_id);
            report.failed += 1;
        }
    }
    Ok(report)
}

/// The 64-bit entry of every AP, on its own stack, with the APs' boot page table loaded.
extern "C" fn ap_entry(arg: u64) -> ! {
    // SAFETY: `arg` is the `ApStart` leaked by `start_aps` for this AP, alive forever; the
    // bootstrap processor only reads `online` from now on.
    let start = unsafe { &*(arg as *const ApStart) };
    // SAFETY: the record's per-CPU block was leaked for it and is only read here.
    let expected = unsafe { (*start.percpu).apic_id };
    // CPUID leaf 1: the initial APIC id (8 bits) of the CPU running this.
    let mine = core::arch::x86_64::__cpuid(1).ebx >> 24;
    if expected <= 0xff && mine != expected {
        // Another AP's record (this one started late, after the bootstrap processor moved on).
        super::halt_forever();
    }
    if start
        .state
        .compare_exchange(WAITING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // The bootstrap processor gave up on this CPU (and may be starting another with the
        // trampoline's parameters): stay out of the way.
        super::halt_forever();
    }
    // SAFETY: the kernel's PML4 maps everything this code touches (its image, its stack in the
    // kernel-stack region, the direct map) exactly as the APs' boot table's upper half does.
    unsafe {
        Cr3::write(
            x86_64::structures::paging::PhysFrame::containing_address(x86_64::PhysAddr::new(
                start.kernel_cr3,
            )),
            x86_64::registers::control::Cr3Flags::empty(),
        );
        x86_64::registers::control::Cr4::update(|f| {
            f.insert(x86_64::registers::control::Cr4Flags::PAGE_GLOBAL)
        });
    }
    // Per-CPU data first: the heap (used by `gdt::init_ap`) keys its per-CPU caches on it.
    // SAFETY: the block was leaked for this AP alone; nobody else holds a reference to it.
    percpu::install(unsafe { &mut *start.percpu });
    // Vector state before anything can call the kernel's memcpy (veridian-simd, AVX2 when the
    // bootstrap processor chose it).
    cpu::enable_vector_state();
    let tss = gdt::init_ap(&start.ist);
    idt::load();
    super::user::init_cpu(tss);
    let timer = apic::init_ap();
    percpu::ONLINE.fetch_add(1, Ordering::AcqRel);
    start.online.store(true, Ordering::Release);
    if let Err(e) = timer {
        log::warn!("cpu {}: {e}", percpu::cpu_index());
    }
    x86_64::instructions::interrupts::enable();
    super::hooks::ap_idle()
}

core::arch::global_asm!(
    r#"
    .section .text.ap_trampoline, "ax"
    .global ap_trampoline_start
    .global ap_trampoline_end
    .code16
ap_trampoline_start:
    cli
    cld
    xor ax, ax
    mov ds, ax
    /* lgdt [0x8000 + ap_gdtr offset] (0F 01 /2, 16-bit absolute address) */
    .byte 0x0f, 0x01, 0x16
    .word 0x8000 + (ap_gdtr - ap_trampoline_start)
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    /* far jump to 32-bit code: jmp 0x08:(0x8000 + ap_pm32 offset) */
    .byte 0x66, 0xea
    .long 0x8000 + (ap_pm32 - ap_trampoline_start)
    .word 0x08

    .code32
ap_pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov eax, cr4
    or eax, 1 << 5
    mov cr4, eax
    mov eax, dword ptr [0x8000 + 0xF00]
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, dword ptr [0x8000 + 0xF20]
    wrmsr
    mov eax, cr0
    or eax, 0x80010001
    mov cr0, eax
    /* far jump to 64-bit code: jmp 0x18:(0x8000 + ap_lm64 offset) */
    .byte 0xea
    .long 0x8000 + (ap_lm64 - ap_trampoline_start)
    .word 0x18

    .code64
ap_lm64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, qword ptr [0x8000 + 0xF08]
    mov rdi, qword ptr [0x8000 + 0xF18]
    mov rax, qword ptr [0x8000 + 0xF10]
    xor ebp, ebp
    call rax
2:
    cli
    hlt
    jmp 2b

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF    /* 0x08: 32-bit code */
    .quad 0x00CF92000000FFFF    /* 0x10: data */
    .quad 0x00AF9A000000FFFF    /* 0x18: 64-bit code */
ap_gdtr:
    .word 4 * 8 - 1
    .long 0x8000 + (ap_gdt - ap_trampoline_start)
ap_trampoline_end:
    .code64
    .text
"#
);
