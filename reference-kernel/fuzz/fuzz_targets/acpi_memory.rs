//! ACPI and MP table discovery in a fake physical memory, as the kernel does it at boot: find
//! the RSDP (EBDA, then 0xE0000..0x100000), follow RSDT/XSDT to the MADT, SRAT and SLIT and
//! build the `Platform`; independently look for an MP floating pointer and its table.
//!
//! Input: a 16-byte header (`u32` address of chunk A, `u16` length of chunk A, two unused
//! bytes, `u64` address of chunk B), then chunk A, then chunk B (the rest). Chunk A is meant for
//! the BIOS area (RSDP, MP floating pointer), chunk B for the tables high in RAM.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reference_kernel::acpi::{Platform, find_rsdp, mptable};
use reference_kernel_fuzz::{FakeMemory, check_platform, take};

fuzz_target!(|data: &[u8]| {
    let (head, rest) = take::<16>(data);
    let addr_a = u64::from(u32::from_le_bytes(head[0..4].try_into().unwrap()));
    let len_a = usize::from(u16::from_le_bytes([head[4], head[5]])).min(rest.len());
    let addr_b = u64::from_le_bytes(head[8..16].try_into().unwrap());
    let (a, b) = rest.split_at(len_a);
    let mem = FakeMemory::default().with(addr_a, a).with(addr_b, b);
    if let Ok(rsdp) = find_rsdp(&mem)
        && let Ok(platform) = Platform::from_rsdp(&mem, rsdp.phys())
    {
        check_platform(&platform);
    }
    if let Ok(platform) = mptable::find_mp_platform(&mem) {
        check_platform(&platform);
    }
});
