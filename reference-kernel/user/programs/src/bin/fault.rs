//! `fault <n>`: faults in user mode in the way `n` selects; the kernel should kill the process
//! (its parent's `wait` returns `KILLED`) and go on. Each case, with the exception the kernel
//! sees:
//!
//! | n | what                                       | exception, error code         |
//! |---|--------------------------------------------|-------------------------------|
//! | 0 | read of address 0                          | #PF (14), err 0x4 (U, read, not present), CR2 = 0 |
//! | 1 | write to its own `.rodata`                 | #PF (14), err 0x7 (U, W, present), CR2 in the R-- segment |
//! | 2 | load from a non-canonical address          | #GP (13), err 0               |
//! | 3 | `ud2`                                      | #UD (6), no error code        |
//! | 4 | `div` by zero                              | #DE (0), no error code        |
//! | 5 | unbounded recursion into the stack guard   | #PF (14), err 0x6 (U, W, not present), CR2 just below the stack |
//! | 6 | jump into a writable static                | #PF (14), err 0x15 (U, I/D, present; needs NX), CR2 = the static |
//! | 7 | `hlt` (privileged)                         | #GP (13), err 0               |
//!
//! If the selected fault does not happen, it prints `fault <n> did not fault` and exits with 1;
//! an unknown `n` prints a message and exits with 2.

#![no_std]
#![no_main]

use core::arch::asm;
use core::hint::black_box;

use veridian_user_rt::println;

/// A read-only byte (in the R-- segment) for case 1.
static READ_ONLY: u8 = 0x5a;

/// Writable bytes (in the RW- segment) for case 6: `ret` opcodes, so that if the page were
/// executable the jump would come back (and the program would report that it did not fault).
static mut WRITABLE_CODE: [u8; 16] = [0xc3; 16];

fn main(arg: u64) -> i64 {
    println!("fault {arg}: {}", what(arg));
    match arg {
        0 => read_null(),
        1 => write_rodata(),
        2 => non_canonical_load(),
        3 => undefined_instruction(),
        4 => divide_by_zero(),
        5 => {
            let depth = recurse(black_box(0));
            println!("recursion returned after {depth} frames");
        }
        6 => execute_data(),
        7 => privileged_instruction(),
        _ => {
            println!("fault: unknown case {arg} (0..=7)");
            return 2;
        }
    }
    println!("fault {arg} did not fault");
    1
}

fn what(arg: u64) -> &'static str {
    match arg {
        0 => "read of address 0 (#PF)",
        1 => "write to .rodata (#PF)",
        2 => "non-canonical load (#GP)",
        3 => "ud2 (#UD)",
        4 => "divide by zero (#DE)",
        5 => "stack overflow into the guard page (#PF)",
        6 => "execute a writable data page (#PF, NX)",
        7 => "hlt in ring 3 (#GP)",
        _ => "unknown",
    }
}

/// Loads 8 bytes from `addr` in inline asm: the compiler sees no Rust dereference (and no
/// debug-build null check turns the fault into a panic).
fn load(addr: u64) {
    // SAFETY: used only with addresses that fault (null, non-canonical): the kernel ends the
    // process before the loaded value exists. The asm reads memory and writes one register.
    unsafe {
        asm!(
            "mov {tmp}, qword ptr [{addr}]",
            addr = in(reg) addr, tmp = out(reg) _,
            options(nostack, readonly, preserves_flags)
        )
    };
}

fn read_null() {
    load(black_box(0));
}

fn write_rodata() {
    let p = black_box((&raw const READ_ONLY).cast_mut());
    // SAFETY: deliberately unsound: the page is mapped read-only, so the write faults and the
    // process ends before anything observes the static changed.
    unsafe { p.write_volatile(0) };
}

fn non_canonical_load() {
    // Bit 63 set, bits 47..62 clear: not canonical, so #GP (not #PF) before any translation.
    load(black_box(0x8000_0000_0000_0000));
}

fn undefined_instruction() {
    // SAFETY: `ud2` raises #UD; the kernel ends the process. It has no other effect.
    unsafe { asm!("ud2", options(nomem, nostack)) };
}

fn divide_by_zero() {
    let divisor: u64 = black_box(0);
    // SAFETY: `div` with a zero divisor raises #DE (inline asm, so Rust's own zero check, which
    // would panic instead, is not in the way). Only RAX/RDX change.
    unsafe {
        asm!(
            "div {d}",
            d = in(reg) divisor,
            inlateout("rax") 1u64 => _,
            inlateout("rdx") 0u64 => _,
            options(nomem, nostack)
        )
    };
}

/// Recursion the compiler cannot turn into a loop: each frame keeps a 512-byte buffer alive
/// across the call, so the stack grows by at least that much per level until the guard page.
#[expect(unconditional_recursion, reason = "the stack overflow is the point")]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 512];
    frame[0] = depth as u8;
    black_box(&mut frame);
    let below = recurse(black_box(depth + 1));
    black_box(&frame);
    below + 1
}

fn execute_data() {
    let code = black_box((&raw mut WRITABLE_CODE).cast::<u8>());
    // SAFETY: deliberately faulting: the page is writable and therefore not executable
    // (NX), so the call raises #PF at its target. Were it executable, the `ret` bytes there
    // would return at once with no other effect (all registers are declared clobbered).
    unsafe { asm!("call {code}", code = in(reg) code, clobber_abi("C")) };
}

fn privileged_instruction() {
    // SAFETY: `hlt` at CPL 3 raises #GP(0); it never halts.
    unsafe { asm!("hlt", options(nomem, nostack)) };
}

veridian_user_rt::entry!(main);
