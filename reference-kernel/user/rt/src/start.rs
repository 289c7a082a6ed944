//! Process entry and panics.
//!
//! The kernel starts a process at its ELF entry point, `_start`, with `rsp` 16-byte aligned at
//! the top of the stack and the spawn argument in `rdi` ([`crate::abi`]). `_start` clears `rbp`
//! (the end of the frame-pointer chain), aligns `rsp` down to 16 bytes (the kernel's promise,
//! kept here even if it were broken) and `call`s [`start`]: the pushed return address leaves
//! `rsp + 8` 16-byte aligned at `start`'s first instruction, as the SysV ABI expects of every
//! function entry. `start` calls the program's `main` (named by [`entry!`](crate::entry)) and
//! exits with its result; nothing returns to `_start`, which would fault on `ud2`.

use core::panic::PanicInfo;

use crate::abi::PANICKED;
use crate::{println, sys};

// The entry symbol (`ENTRY(_start)` in the programs' linker script). Plain `global_asm!`
// rather than a function: it runs before there is a Rust frame, with the kernel's register
// state.
core::arch::global_asm!(
    ".pushsection .text._start, \"ax\", @progbits",
    ".globl _start",
    ".type _start, @function",
    "_start:",
    "    xor ebp, ebp",
    "    and rsp, -16",
    "    call {start}",
    "    ud2",
    ".size _start, . - _start",
    ".popsection",
    start = sym start,
);

unsafe extern "C" {
    /// The program's entry, defined by [`entry!`](crate::entry) in the program's crate.
    fn __veridian_user_main(arg: u64) -> i64;
}

/// Runs the program: `main(arg)`, then `exit` with its result.
extern "C" fn start(arg: u64) -> ! {
    // SAFETY: `entry!` defines `__veridian_user_main` with exactly this signature (a program
    // without `entry!` fails to link); it is a safe Rust function behind the symbol.
    let code = unsafe { __veridian_user_main(arg) };
    sys::exit(code)
}

/// Names the program's `main(arg: u64) -> i64`: the runtime calls it with the spawn argument
/// and exits with what it returns. Write it once per program, at the crate root:
///
/// ```ignore
/// fn main(arg: u64) -> i64 { 0 }
/// veridian_user_rt::entry!(main);
/// ```
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// The symbol the runtime's `_start` calls (see `veridian_user_rt::entry!`).
        #[unsafe(no_mangle)]
        pub extern "C" fn __veridian_user_main(arg: u64) -> i64 {
            let main: fn(u64) -> i64 = $main;
            main(arg)
        }
    };
}

/// Prints `panic: <message> at <file>:<line>` and exits with [`PANICKED`].
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    match info.location() {
        Some(at) => println!("panic: {} at {}:{}", info.message(), at.file(), at.line()),
        None => println!("panic: {}", info.message()),
    }
    sys::exit(PANICKED)
}
