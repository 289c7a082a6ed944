//! The kernel's virtual memory layout as the architecture layer sees it: where the direct map of
//! physical memory starts and how far it reaches, and which pages are stack guard pages.
//!
//! `mm::paging` builds the mappings and tells this module what it built ([`set_direct_map_end`],
//! [`set_guard_lookup`]); `arch/` code (APIC and I/O APIC registers, the AP trampoline, the
//! exception path's stack-overflow report) reads it here, so `arch/` never calls up into `mm/`.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Once;

/// Virtual address of physical address 0 in the direct map (PML4 slot 256, the start of the
/// higher half).
pub const PHYS_OFFSET: u64 = 0xffff_8000_0000_0000;

/// How far the direct map reaches (physical): 0 before `paging::init_early`, 4 GiB after it,
/// the RAM top once the kernel's own tables are loaded.
static DIRECT_MAP_END: AtomicU64 = AtomicU64::new(0);

/// Physical address of the kernel's own PML4 (0 before `paging::init` loaded it).
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);

/// Records the kernel's PML4 (by `mm::paging`, once it is loaded).
pub fn set_kernel_root(phys: u64) {
    KERNEL_ROOT.store(phys, Ordering::Release);
}

/// The kernel's PML4 (physical; 0 before `paging::init`). Processes' tables share its upper
/// half; kernel threads and scheduler contexts run on it.
pub fn kernel_root() -> u64 {
    KERNEL_ROOT.load(Ordering::Acquire)
}

/// Records how far the direct map reaches (by `mm::paging`, after it mapped that far).
pub fn set_direct_map_end(end: u64) {
    DIRECT_MAP_END.store(end, Ordering::Release);
}

/// How far the direct map reaches.
pub fn direct_map_end() -> u64 {
    DIRECT_MAP_END.load(Ordering::Acquire)
}

/// The virtual address of physical address `phys` in the direct map, if the map reaches
/// `[phys, phys + len)`.
pub fn phys_to_virt(phys: u64, len: u64) -> Option<u64> {
    let end = phys.checked_add(len)?;
    (end <= direct_map_end()).then(|| PHYS_OFFSET + phys)
}

/// Names the stack whose guard page holds an address (registered by `mm::paging`).
pub type GuardLookup = fn(u64) -> Option<&'static str>;

static GUARD_LOOKUP: Once<GuardLookup> = Once::new();

/// Registers the guard-page lookup (the first registration wins).
pub fn set_guard_lookup(lookup: GuardLookup) {
    GUARD_LOOKUP.call_once(|| lookup);
}

/// The stack whose guard page `addr` lies in, if any (a fault there is a stack overflow).
pub fn guard_page_stack(addr: u64) -> Option<&'static str> {
    GUARD_LOOKUP.get().and_then(|f| f(addr))
}

/// The mapped bounds `[bottom, top)` of the kernel stack holding an address (registered by
/// `mm::paging`): every byte in the range is mapped readable for as long as the kernel runs.
pub type StackLookup = fn(u64) -> Option<(u64, u64)>;

static STACK_LOOKUP: Once<StackLookup> = Once::new();

/// Registers the kernel-stack lookup (the first registration wins).
pub fn set_stack_lookup(lookup: StackLookup) {
    STACK_LOOKUP.call_once(|| lookup);
}

/// The mapped bounds `[bottom, top)` of the kernel stack containing `addr`, if `addr` is in
/// one the lookup knows (the bootstrap CPU's stack, the AP and thread stacks).
pub fn kernel_stack_bounds(addr: u64) -> Option<(u64, u64)> {
    STACK_LOOKUP.get().and_then(|f| f(addr))
}
