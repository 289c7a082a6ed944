//! The boot stub every foreign-kernel example includes (`#[macro_use] #[path =
//! "../../boot/boot.rs"] mod boot;`): what any x86_64 kernel needs before it can call a crate,
//! and nothing that belongs to one crate.
//!
//! - A PVH ELF note (`XEN_ELFNOTE_PHYS32_ENTRY`), so QEMU's `-kernel` loads the ELF and enters
//!   [`pvh_start32`] in 32-bit protected mode, paging off, `ebx` = the physical address of the
//!   `hvm_start_info` structure.
//! - 32-bit code that identity-maps the first GiB with 2 MiB pages, enables PAE and long mode,
//!   loads a three-entry GDT and jumps to 64-bit code, which calls [`boot_entry`] on a 256 KiB
//!   stack with the start-info address as its argument.
//! - COM1 (0x3f8) output ([`print!`], [`println!`]), port I/O ([`outb`], [`inb`]), the result
//!   through QEMU's `isa-debug-exit` device at 0xf4 ([`exit`]): the example's `kmain` returning
//!   is success (0x10, QEMU status 33), a panic is failure (0x11, QEMU status 35), printed
//!   first as one line, `KERNEL PANIC: <message> at <file:line:column>` (the prefix xtask's
//!   kernel-log reader reports).
//!
//! Interrupts stay disabled throughout (no IDT is loaded).

#![allow(dead_code)]

use core::fmt::{self, Write};

/// Prints to COM1.
macro_rules! print {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::boot::Serial, format_args!($($arg)*));
    }};
}

/// Prints a line to COM1.
macro_rules! println {
    ($($arg:tt)*) => {{
        print!($($arg)*);
        print!("\n");
    }};
}

/// Bytes of the boot stack (in `.bss`).
const STACK_SIZE: usize = 256 * 1024;

core::arch::global_asm!(
    r#"
    /* PVH entry note: type 18 (XEN_ELFNOTE_PHYS32_ENTRY), name "Xen", the 32-bit entry. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4096
boot_stack: .skip {stack_size}
boot_stack_top:

    .section .rodata.boot, "a"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF        /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF        /* 0x10: data */
boot_gdt_ptr:
    .short 23
    .long boot_gdt
boot_far_target:
    .long boot_long_mode
    .short 0x08

    .section .boot.text, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov esp, offset boot_stack_top
    mov ebp, ebx                    /* hvm_start_info, kept for boot_entry */

    /* Clear the three table pages, then PML4[0] -> PDPT, PDPT[0] -> PD. */
    mov edi, offset boot_pml4
    mov ecx, 3 * 1024
    xor eax, eax
    rep stosd
    mov eax, offset boot_pdpt
    or eax, 3
    mov dword ptr [boot_pml4], eax
    mov eax, offset boot_pd
    or eax, 3
    mov dword ptr [boot_pdpt], eax

    /* PD: 512 x 2 MiB, present + writable + page size: 0 .. 1 GiB identity. */
    xor ecx, ecx
1:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov dword ptr [boot_pd + ecx * 8], eax
    inc ecx
    cmp ecx, 512
    jne 1b

    mov eax, offset boot_pml4
    mov cr3, eax
    mov eax, cr4
    or eax, 1 << 5                  /* PAE */
    mov cr4, eax
    mov ecx, 0xC0000080             /* EFER */
    rdmsr
    or eax, 1 << 8                  /* LME */
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | 1           /* PG, PE */
    mov cr0, eax
    lgdt [boot_gdt_ptr]
    jmp fword ptr [boot_far_target]

    .code64
boot_long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov rsp, offset boot_stack_top
    mov edi, ebp                    /* argument: hvm_start_info (zero-extended) */
    xor ebp, ebp
    call {entry}
2:
    hlt
    jmp 2b
"#,
    stack_size = const STACK_SIZE,
    entry = sym boot_entry,
);

/// Called by the 64-bit stub: runs the example's `kmain` and reports success when it returns.
extern "C" fn boot_entry(start_info: u64) -> ! {
    serial_init();
    println!("foreign kernel {}: booted", env!("CARGO_PKG_NAME"));
    crate::kmain(start_info);
    println!("foreign kernel: kmain returned, exiting with success");
    exit(Exit::Success)
}

/// Writes `value` to I/O port `port`.
///
/// # Safety
/// Writing the port must not break memory safety (a device that DMAs, a port the code relies
/// on elsewhere).
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller's contract; `out` touches no memory.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

/// Reads I/O port `port`.
///
/// # Safety
/// As for [`outb`]: the read must have no effect the rest of the kernel relies on not happening.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller's contract; `in` touches no memory.
    unsafe {
        core::arch::asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    };
    value
}

/// COM1.
const COM1: u16 = 0x3f8;

/// 115200 baud, 8N1, FIFO on, interrupts off.
fn serial_init() {
    for (offset, value) in [
        (1, 0x00),
        (3, 0x80),
        (0, 0x01),
        (1, 0x00),
        (3, 0x03),
        (2, 0xc7),
    ] {
        // SAFETY: COM1's registers; nothing else in the example uses the port.
        unsafe { outb(COM1 + offset, value) };
    }
}

/// The serial port as a `fmt::Write` sink.
pub struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            // SAFETY: reading COM1's line status register has no side effect; writing its
            // data register sends a byte.
            unsafe {
                while inb(COM1 + 5) & 0x20 == 0 {
                    core::hint::spin_loop();
                }
                outb(COM1, byte);
            }
        }
        Ok(())
    }
}

/// What the example reports through `isa-debug-exit`.
#[derive(Clone, Copy)]
pub enum Exit {
    /// Every check passed (QEMU exits with status 33).
    Success = 0x10,
    /// A check failed (QEMU exits with status 35).
    Failure = 0x11,
}

/// Ends the run: QEMU exits with status `(code << 1) | 1`.
pub fn exit(code: Exit) -> ! {
    // SAFETY: port 0xf4 is QEMU's isa-debug-exit device (`-device isa-debug-exit,iobase=0xf4`);
    // writing it ends the virtual machine.
    unsafe { outb(0xf4, code as u8) };
    // Without the device (another machine), stop here.
    loop {
        // SAFETY: interrupts are disabled; `hlt` only stops the CPU.
        unsafe { core::arch::asm!("hlt", options(nomem, nostack)) };
    }
}

/// Writes through to COM1 with line breaks turned into `; `, so a panic is one line.
struct OneLine;

impl Write for OneLine {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for (i, line) in s.split('\n').enumerate() {
            if i > 0 {
                Serial.write_str("; ")?;
            }
            Serial.write_str(line)?;
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = write!(OneLine, "KERNEL PANIC: {}", info.message());
    if let Some(location) = info.location() {
        let _ = write!(OneLine, " at {location}");
    }
    print!("\n");
    exit(Exit::Failure)
}
