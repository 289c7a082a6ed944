//! Boot entry: the Multiboot2 header, the PVH ELF note and the one trampoline from 32-bit
//! protected mode to long mode that both entries share.
//!
//! Both loaders enter in 32-bit protected mode with paging off, flat segments and interrupts
//! disabled:
//! - PVH (QEMU `-kernel`): at the address in the `XEN_ELFNOTE_PHYS32_ENTRY` note, `ebx` holding
//!   the physical address of `hvm_start_info`.
//! - Multiboot2 (GRUB): at the ELF entry point `_start32`, `eax` = `0x36d76289`, `ebx` holding
//!   the physical address of the Multiboot2 information structure.
//!
//! The trampoline checks that the CPU has long mode (and prints a message on COM1 and halts if
//! not), builds boot page tables that identity-map the first 4 GiB and map the first 2 GiB again
//! at `-2 GiB` (where the kernel is linked), enables PAE, long mode, NX (when present), write
//! protection and paging, loads a minimal 64-bit GDT and jumps to [`kernel_entry`] on the
//! bootstrap processor's stack with `(protocol, info_phys, magic)` as arguments.
//!
//! The boot page tables stay in use until the memory manager installs its own.
//!
//! [`kernel_entry`]: crate::kernel_entry

/// `protocol` argument of `kernel_entry` for a PVH boot.
pub const PROTOCOL_PVH: u32 = 1;
/// `protocol` argument of `kernel_entry` for a Multiboot2 boot.
pub const PROTOCOL_MULTIBOOT2: u32 = 2;

use core::sync::atomic::{AtomicU64, Ordering};

/// Size of the bootstrap processor's kernel stack.
pub const BSP_STACK_SIZE: usize = 256 * 1024;

/// Virtual base of the kernel image: physical address + this = linked address.
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;
/// Physical load address of the kernel image (`KERNEL_PHYS` in `linker.ld`).
pub const KERNEL_PHYS: u64 = 0x10_0000;

/// The bootstrap processor's stack (in `.bss`, so zeroed by the loader).
#[repr(C, align(4096))]
pub struct BootStack(pub [u8; BSP_STACK_SIZE]);

/// Stack the trampoline switches to before calling into Rust.
#[unsafe(no_mangle)]
pub static mut BSP_STACK: BootStack = BootStack([0; BSP_STACK_SIZE]);

/// The TSC read by the trampoline's shared 32-bit entry (`boot_common32`), before anything
/// else the kernel does: the start of `mode=bench`'s boot rows and of the `smp:` line's time.
/// The trampoline stores EDX:EAX of its `rdtsc` here through the static's physical address.
static ENTRY_TSC: AtomicU64 = AtomicU64::new(0);

/// The TSC at the trampoline's shared entry (see [`ENTRY_TSC`]); what the loader and the
/// firmware ran before it is not counted.
pub fn entry_tsc() -> u64 {
    ENTRY_TSC.load(Ordering::Relaxed)
}

core::arch::global_asm!(
    r#"
    .set MB2_MAGIC,      0xE85250D6
    .set MB2_ARCH_I386,  0

    .section .multiboot2_header, "a"
    .balign 8
mb2_header_start:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header_start
    .long 0x100000000 - (MB2_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header_start))
    /* information request tag (type 1): cmdline, memory map, ACPI RSDP (new, old). Optional
       flag clear: we need all of them, but GRUB provides them anyway. */
    .balign 8
mb2_info_req_start:
    .short 1
    .short 1                        /* optional: boot even if a tag cannot be supplied */
    .long mb2_info_req_end - mb2_info_req_start
    .long 1
    .long 6
    .long 15
    .long 14
mb2_info_req_end:
    /* end tag */
    .balign 8
    .short 0
    .short 0
    .long 8
mb2_header_end:

    /* PVH entry note: XEN_ELFNOTE_PHYS32_ENTRY (18). QEMU reads the descriptor as a
       native-width value, so it is a .quad, as in Linux. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4

    .section .boot.bss, "aw", @nobits
    .balign 4096
boot_pml4:      .skip 4096
boot_pdpt_low:  .skip 4096
boot_pdpt_high: .skip 4096
boot_pd:        .skip 4096 * 4      /* 4 GiB of 2 MiB pages */
boot_stack:     .skip 4096
boot_stack_top:

    .section .boot.rodata, "a"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF        /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00CF92000000FFFF        /* 0x10: data, DPL 0 */
boot_gdt_end:
    .balign 4
    .short 0
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt
boot_far_target:
    .long boot_long_mode
    .short 0x08
no_long_mode_msg:
    .asciz "Veridian: this CPU has no long mode (x86_64); halting.\r\n"

    .section .boot.text, "ax"
    .code32

    /* Multiboot2 entry (the ELF entry point). */
    .global _start32
_start32:
    cli
    cld
    mov edi, 2                      /* PROTOCOL_MULTIBOOT2 */
    mov esi, ebx
    mov edx, eax
    jmp boot_common32

    /* PVH entry (from the ELF note). */
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov edi, 1                      /* PROTOCOL_PVH */
    mov esi, ebx
    xor edx, edx

boot_common32:
    mov esp, offset boot_stack_top
    push edx
    push esi
    push edi

    /* The TSC at entry (boot rows of mode=bench), into ENTRY_TSC through its physical address
       (linked at KERNEL_VMA + physical; paging is off). RDTSC works in protected mode. */
    rdtsc
    mov dword ptr [{entry_tsc} - {kernel_vma}], eax
    mov dword ptr [{entry_tsc} - {kernel_vma} + 4], edx

    /* Long mode present? CPUID 0x80000001 EDX bit 29. */
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb boot_no_long_mode
    mov eax, 0x80000001
    cpuid
    test edx, 1 << 29
    jz boot_no_long_mode
    mov ebp, edx                    /* keep: bit 20 = NX */

    /* Clear the boot page tables (the loaders zero .bss, but do not rely on it). */
    mov edi, offset boot_pml4
    mov ecx, (4096 * 7) / 4
    xor eax, eax
    rep stosd

    /* PD: 2048 entries of 2 MiB, present + writable + page size. */
    mov edi, offset boot_pd
    mov eax, 0x83
    mov ecx, 2048
1:
    mov dword ptr [edi], eax
    mov dword ptr [edi + 4], 0
    add eax, 0x200000
    add edi, 8
    dec ecx
    jnz 1b

    /* PDPT low: 4 x 1 GiB -> the 4 PD pages (identity map of 0..4 GiB). */
    mov edi, offset boot_pdpt_low
    mov eax, offset boot_pd
    or eax, 3
    mov dword ptr [edi], eax
    add eax, 4096
    mov dword ptr [edi + 8], eax
    add eax, 4096
    mov dword ptr [edi + 16], eax
    add eax, 4096
    mov dword ptr [edi + 24], eax

    /* PDPT high: entries 510 and 511 (-2 GiB .. 0) -> physical 0 .. 2 GiB. */
    mov edi, offset boot_pdpt_high
    mov eax, offset boot_pd
    or eax, 3
    mov dword ptr [edi + 510 * 8], eax
    add eax, 4096
    mov dword ptr [edi + 511 * 8], eax

    /* PML4: entry 0 (identity) and entry 511 (higher half). */
    mov edi, offset boot_pml4
    mov eax, offset boot_pdpt_low
    or eax, 3
    mov dword ptr [edi], eax
    mov eax, offset boot_pdpt_high
    or eax, 3
    mov dword ptr [edi + 511 * 8], eax

    mov eax, offset boot_pml4
    mov cr3, eax

    /* CR4.PAE */
    mov eax, cr4
    or eax, 1 << 5
    mov cr4, eax

    /* EFER.LME, and EFER.NXE when the CPU has NX. */
    mov ecx, 0xC0000080
    rdmsr
    or eax, 1 << 8
    test ebp, 1 << 20
    jz 2f
    or eax, 1 << 11
2:
    wrmsr

    /* CR0.PG | CR0.WP | CR0.PE */
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16) | 1
    mov cr0, eax

    lgdt [boot_gdt_ptr]
    pop edi
    pop esi
    pop edx
    jmp fword ptr [boot_far_target]

boot_no_long_mode:
    mov esi, offset no_long_mode_msg
3:
    mov al, byte ptr [esi]
    test al, al
    jz 4f
    mov dx, 0x3F8
    out dx, al
    inc esi
    jmp 3b
4:
    hlt
    jmp 4b

    .code64
boot_long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    /* The upper halves of registers are undefined after the mode switch. */
    mov edi, edi
    mov esi, esi
    mov edx, edx
    movabs rax, offset BSP_STACK
    add rax, {stack_size}
    mov rsp, rax
    xor ebp, ebp
    movabs rax, offset kernel_entry
    call rax
5:
    cli
    hlt
    jmp 5b
"#,
    stack_size = const BSP_STACK_SIZE,
    entry_tsc = sym ENTRY_TSC,
    kernel_vma = const KERNEL_VMA,
);
