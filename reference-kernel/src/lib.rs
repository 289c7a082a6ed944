//! Portable parts of the Veridian reference kernel.
//!
//! Everything here is plain Rust with no hardware access, so it is tested on the host
//! (`cargo test -p reference-kernel`) as well as used by the kernel image in `main.rs`.

#![no_std]

#[cfg(test)]
extern crate std;
