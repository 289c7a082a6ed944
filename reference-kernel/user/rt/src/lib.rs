//! The runtime of the reference kernel's user programs (ring 3, `x86_64-unknown-none`).
//!
//! - [`abi`]: the system-call ABI, the same file the kernel includes.
//! - [`raw`]: the `syscall` instruction with 0 to 6 arguments, and [`raw::raw_syscall`] for
//!   programs that pass arbitrary words on purpose (the fuzzer, the bad-pointer tests).
//! - [`sys`]: one safe, typed function per system call, returning `Result<_, Errno>`.
//! - [`print!`] / [`println!`]: formatted output to the console (fd 1).
//! - [`entry!`]: names a program's `main(arg: u64) -> i64`; the runtime's `_start` calls it with
//!   the spawn argument and exits with its result. A panic prints `panic: <message>` and exits
//!   with [`abi::PANICKED`].
//! - [`tsc`]: serialised time-stamp-counter reads for user-side benchmarks.
//! - [`checks::Failures`]: counts a test program's failed checks for its exit code.
//! - [`channel::Channel`]: a shared-memory channel to another process (veridian-io rings).
//!
//! A program is `#![no_std] #![no_main]`, depends on this crate and says
//! `veridian_user_rt::entry!(main);`.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub mod abi;
pub mod channel;
pub mod checks;
pub mod errno;
pub mod print;
pub mod raw;
mod start;
pub mod sys;
pub mod tsc;

pub use errno::Errno;
