//! Kernel tests of `mm` that must break or bypass a safe interface on purpose: freeing what was
//! never allocated (the frame allocator's checks), writing to read-only and jumping into
//! non-executable pages (the page tables' permissions). They live here, beside the `unsafe`
//! interfaces they exercise, so the test list in `ktest` needs no `unsafe`; `ktest` registers
//! them.

use crate::arch::x86_64::boot;
use crate::arch::x86_64::idt::vector;
use crate::arch::x86_64::probe::{self, ProbeFault};

use super::frames;

/// Freeing what was never allocated is an error, not corruption.
pub fn frames_reject_bad_free() {
    let before = frames::free_bytes();
    let phys = frames::allocate(0).expect("frames available");
    // These calls break `free`'s contract on purpose: the buddy allocator documents that it
    // checks every free (misaligned, outside its regions, already free) and refuses it before
    // touching memory, and this test holds it to that.
    // SAFETY: see above; a misaligned address is rejected before any access.
    let misaligned = unsafe { frames::free(phys + 8, 0) };
    assert!(misaligned.is_err(), "misaligned free");
    // SAFETY: see above; the first MiB is outside every managed region.
    let unmanaged = unsafe { frames::free(0x1000, 0) };
    assert!(unmanaged.is_err(), "free in the first MiB");
    // SAFETY: `phys` is our block, freed once here.
    unsafe { frames::free(phys, 0) }.expect("valid free");
    // SAFETY: see above: a double free must be detected and refused.
    assert!(unsafe { frames::free(phys, 0) }.is_err(), "double free");
    assert_eq!(frames::free_bytes(), before);
}

/// Expects a probe to have taken a page fault at `addr` whose error code has `bits` set.
fn expect_page_fault(addr: u64, bits: u64, outcome: Result<(), ProbeFault>) {
    let fault = outcome.expect_err("the access succeeded");
    assert_eq!(fault.vector, vector::PAGE_FAULT, "{fault:?}");
    assert_eq!(fault.address, addr, "CR2: {fault:?}");
    assert_eq!(fault.error_code & bits, bits, "error code: {fault:?}");
}

static RODATA_WORD: u64 = 0x0123_4567_89ab_cdef;

/// A write to `.rodata` faults (present + write error code) and leaves the value alone.
pub fn paging_rodata_read_only() {
    let addr = (&raw const RODATA_WORD) as u64;
    // Error code bits: present (0) and write (1).
    // SAFETY: deliberately writes to a read-only page: the write faults before it happens and
    // the probe recovers, so nothing is modified (if the page were writable, one byte of a
    // test-only static would change, which the assertion below reports).
    expect_page_fault(addr, 0b11, unsafe { probe::write_u8(addr, 0) });
    assert_eq!(
        probe::read_u64(addr),
        Ok(0x0123_4567_89ab_cdef),
        "read-only value changed"
    );
}

/// A write to `.text` faults.
pub fn paging_text_not_writable() {
    let addr = paging_text_not_writable as *const () as u64;
    let byte = probe::read_u64(addr).expect("text is readable") as u8;
    // SAFETY: deliberately writes to a code page: the write faults before it happens and the
    // probe recovers. The byte written is this function's own first byte, rewritten with the
    // value it has (read just above), so a wrongly writable text page changes nothing.
    expect_page_fault(addr, 0b11, unsafe { probe::write_u8(addr, byte) });
}

/// Jumping into `.data` faults with the instruction-fetch bit (NX).
pub fn paging_data_not_executable() {
    if !raw_cpuid::CpuId::new()
        .get_extended_processor_and_feature_identifiers()
        .is_some_and(|f| f.has_execute_disable())
    {
        crate::println!("note: CPU has no NX; skipping the execute check");
        return;
    }
    static mut RET: [u8; 16] = [0xc3; 16];
    let addr = (&raw const RET) as u64;
    // Error code bits: present (0) and instruction fetch (4).
    // SAFETY: the target holds `ret` instructions, so if the page were executable the call
    // would simply return (and the assertion report it); on a no-execute page the fetch faults
    // and the probe recovers.
    expect_page_fault(addr, 0b1_0001, unsafe { probe::call(addr) });
}

/// The direct map shows the same bytes as the kernel image's own mapping.
pub fn paging_direct_map_matches_frames() {
    let virt = (&raw const RODATA_WORD) as u64;
    let phys = virt - boot::KERNEL_VMA;
    let direct = super::paging::phys_to_virt(phys, 8).expect("image in the direct map");
    assert_eq!(probe::read_u64(direct), Ok(RODATA_WORD));
}
