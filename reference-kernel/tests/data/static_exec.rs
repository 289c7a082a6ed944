//! Source of `static_exec.elf`, the linker-produced fixture that `tests/elf.rs` parses.
//!
//! Not part of any crate; rebuild the fixture (from `reference-kernel/tests/data/`) with
//!
//! ```text
//! rustc --edition 2024 --target x86_64-unknown-none -C opt-level=s -C panic=abort \
//!     -C relocation-model=static -C strip=symbols -C link-arg=--image-base=0x400000 \
//!     -C link-arg=--build-id=none -o static_exec.elf static_exec.rs
//! ```
//!
//! which links with the `rust-lld` that ships with rustc: a static, non-PIE `ET_EXEC` whose
//! `PT_LOAD` segments are read-only data (with the ELF and program headers), text (R+X),
//! data (R+W) and bss, starting at `PROGRAM_BASE` (0x40_0000).

#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicU64, Ordering};

/// Initialised data: lands in `.data` (a writable segment with file bytes).
static mut GREETING: [u8; 24] = *b"veridian elf fixture ok\n";
/// Zero-initialised: lands in `.bss` (memory size beyond the file size).
static COUNTER: AtomicU64 = AtomicU64::new(0);
/// Read-only data: lands in `.rodata`.
static TABLE: [u32; 8] = [2, 3, 5, 7, 11, 13, 17, 19];

/// The entry point (`e_entry`).
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    loop {
        // SAFETY: single-threaded fixture; nothing else touches GREETING.
        let greeting = unsafe { &mut *addr_of_mut!(GREETING) };
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) as usize;
        greeting[n % greeting.len()] ^= TABLE[n % TABLE.len()] as u8;
        // SAFETY: reading our own static through a valid pointer.
        core::hint::black_box(unsafe { core::ptr::read_volatile(addr_of!(GREETING)) });
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
