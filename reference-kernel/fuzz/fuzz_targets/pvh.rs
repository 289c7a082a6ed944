//! PVH `hvm_start_info` parsing: the input is physical memory from 0x1000 on, the start_info at
//! its beginning (as QEMU lays it out), and every pointer in it is followed into that memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reference_kernel::BootInfo;
use reference_kernel_fuzz::{FakeMemory, check_boot_info};

const BASE: u64 = 0x1000;

fuzz_target!(|data: &[u8]| {
    let mem = FakeMemory::default().with(BASE, data);
    if let Ok(info) = BootInfo::from_pvh(BASE, &mem) {
        check_boot_info(&info);
    }
});
