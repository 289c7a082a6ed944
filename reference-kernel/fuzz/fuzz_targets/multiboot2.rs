//! Multiboot2 information parsing: the input is physical memory from 0x10000 on, the MBI at its
//! beginning; the loader's magic is right (a wrong one is rejected before any read).
#![no_main]

use libfuzzer_sys::fuzz_target;
use reference_kernel::BootInfo;
use reference_kernel::bootinfo::multiboot2::MULTIBOOT2_MAGIC;
use reference_kernel_fuzz::{FakeMemory, check_boot_info};

const BASE: u64 = 0x1_0000;

fuzz_target!(|data: &[u8]| {
    let mem = FakeMemory::default().with(BASE, data);
    if let Ok(info) = BootInfo::from_multiboot2(MULTIBOOT2_MAGIC, BASE, &mem) {
        check_boot_info(&info);
    }
});
