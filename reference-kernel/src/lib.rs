//! Portable parts of the Veridian reference kernel.
//!
//! Everything here is plain Rust with no hardware access, so it is tested on the host
//! (`cargo test -p reference-kernel`) as well as used by the kernel image in `main.rs`.
//!
//! * [`acpi`]: validated parsing of the ACPI tables the kernel needs (RSDP, RSDT/XSDT, MADT,
//!   SRAT, SLIT) into a [`acpi::Platform`]: CPUs, NUMA nodes, memory per node, distances.
//! * [`bootinfo`]: validated parsing of the PVH and Multiboot2 boot information into a
//!   [`BootInfo`].
//! * [`cmdline`]: key/value and flag lookup in the kernel command line ([`CmdLine`]).
//! * [`elf`]: validated ELF64 parsing of static user programs into a [`elf::Program`]: entry
//!   point and loadable segments (inside the user range, W^X, non-overlapping).
//! * [`pci`]: PCI enumeration over a configuration-space trait ([`pci::enumerate`]): functions,
//!   BARs sized by the write-ones method, bounded capability walks, BAR checks against the
//!   memory map ([`pci::check_bar`]).
//! * [`physmem`]: which physical pages the frame allocator may manage ([`physmem::plan_frames`]).
//! * [`process_abi`]: the system-call ABI shared with user programs
//!   (`reference-kernel/user/rt/src/abi.rs`).
//! * [`syscall_args`]: the system calls' argument checks that need only the registers.
//! * [`testdisk`]: the known contents of the test disk image xtask attaches.

#![no_std]

#[cfg(test)]
extern crate std;

pub mod acpi;
pub mod bootinfo;
pub mod cmdline;
pub mod elf;
pub mod pci;
pub mod physmem;
#[path = "../user/rt/src/abi.rs"]
pub mod process_abi;
pub mod syscall_args;
pub mod testdisk;

pub use bootinfo::{
    BootInfo, BootInfoError, BootProtocol, CmdlineFixups, MAX_CMDLINE, MAX_MEMORY_REGIONS,
    MAX_MODULES, MemoryKind, MemoryRegion, Module, PhysMemory,
};
pub use cmdline::CmdLine;
