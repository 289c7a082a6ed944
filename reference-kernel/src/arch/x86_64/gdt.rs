//! Global descriptor table and task-state segment of the bootstrap processor.
//!
//! Long mode ignores segment bases and limits for code and data, so the GDT holds the flat
//! kernel/user code and data descriptors the `SYSCALL`/`SYSRET` convention will need, and the
//! TSS, whose interrupt stack table gives the double-fault handler a known-good stack (so a
//! kernel stack overflow is reported instead of escalating to a triple fault).
//!
//! Application processors get their own copies when SMP start-up arrives (a per-CPU structure);
//! until then this is the one CPU's.

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

use super::context::KernelStack;

/// IST slot (1-based in the IDT, index 0 here) used by the double-fault handler.
pub const DOUBLE_FAULT_IST_INDEX: u16 = 0;
/// IST slot used by the NMI and machine-check handlers.
pub const NMI_IST_INDEX: u16 = 1;

const IST_STACK_SIZE: usize = 32 * 1024;

/// Page-aligned, so that its lowest page can be a guard page (see `mm::paging`).
#[repr(C, align(4096))]
struct IstStack([u8; IST_STACK_SIZE]);

static mut DOUBLE_FAULT_STACK: IstStack = IstStack([0; IST_STACK_SIZE]);
static mut NMI_STACK: IstStack = IstStack([0; IST_STACK_SIZE]);

/// Lowest address of the double-fault IST stack (its guard page once paging is up).
pub fn double_fault_stack_bottom() -> u64 {
    (&raw const DOUBLE_FAULT_STACK) as u64
}

/// Lowest address of the NMI/machine-check IST stack (its guard page once paging is up).
pub fn nmi_stack_bottom() -> u64 {
    (&raw const NMI_STACK) as u64
}

/// Selectors of the descriptors in the GDT.
#[derive(Debug, Clone, Copy)]
pub struct Selectors {
    /// 64-bit kernel code.
    pub kernel_code: SegmentSelector,
    /// Kernel data/stack.
    pub kernel_data: SegmentSelector,
    /// User data (placed before user code, as `SYSRET` requires).
    pub user_data: SegmentSelector,
    /// 64-bit user code.
    pub user_code: SegmentSelector,
    /// The task-state segment.
    pub tss: SegmentSelector,
}

/// The bootstrap processor's TSS. Written after the GDT refers to it: `rsp0` changes on every
/// switch to a user thread ([`set_kernel_stack`]), so it is only ever reached through raw
/// pointers.
struct BspTss(core::cell::UnsafeCell<TaskStateSegment>);
// SAFETY: only the bootstrap processor touches its TSS (through `PerCpu::tss`, interrupts off).
unsafe impl Sync for BspTss {}
static BSP_TSS: BspTss = BspTss(core::cell::UnsafeCell::new(TaskStateSegment::new()));
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

/// A GDT with this kernel's descriptors (flat kernel code/data, user data/code as `SYSRET`
/// wants them, `tss`), and their selectors. Every CPU's GDT has the same layout.
///
/// # Safety
/// `tss` points at a TSS that stays valid (and at this address) forever.
unsafe fn build(tss: *const TaskStateSegment) -> (GlobalDescriptorTable, Selectors) {
    let mut gdt = GlobalDescriptorTable::new();
    let kernel_code = gdt.append(Descriptor::kernel_code_segment());
    let kernel_data = gdt.append(Descriptor::kernel_data_segment());
    let user_data = gdt.append(Descriptor::user_data_segment());
    let user_code = gdt.append(Descriptor::user_code_segment());
    // SAFETY: the caller's contract: the TSS lives forever at `tss`.
    let tss = gdt.append(unsafe { Descriptor::tss_segment_unchecked(tss) });
    let selectors = Selectors {
        kernel_code,
        kernel_data,
        user_data,
        user_code,
        tss,
    };
    (gdt, selectors)
}

/// Loads `gdt` on this CPU and reloads CS, SS, DS, ES and the task register from `selectors`.
fn load(gdt: &'static GlobalDescriptorTable, selectors: &Selectors) {
    gdt.load();
    // The code/data descriptors are the flat 64-bit ones this kernel already runs on, so
    // reloading them does not change how any address is translated; the TSS is this CPU's.
    // SAFETY: the selectors index descriptors of `gdt`, just loaded and valid forever.
    unsafe {
        CS::set_reg(selectors.kernel_code);
        SS::set_reg(selectors.kernel_data);
        DS::set_reg(selectors.kernel_data);
        ES::set_reg(selectors.kernel_data);
        load_tss(selectors.tss);
    }
}

/// Builds and loads the bootstrap processor's GDT and TSS, and reloads every segment register.
/// Returns the TSS (for the per-CPU block's `rsp0` updates).
pub fn init() -> *mut TaskStateSegment {
    let tss = BSP_TSS.0.get();
    let (gdt, selectors) = GDT.call_once(|| {
        // SAFETY: first and only initialisation, on the bootstrap processor before interrupts
        // are on and before the TSS is loaded: nothing else reads or writes it meanwhile.
        unsafe {
            (*tss).interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] =
                VirtAddr::from_ptr(&raw const DOUBLE_FAULT_STACK) + IST_STACK_SIZE as u64;
            (*tss).interrupt_stack_table[NMI_IST_INDEX as usize] =
                VirtAddr::from_ptr(&raw const NMI_STACK) + IST_STACK_SIZE as u64;
        }
        // SAFETY: `BSP_TSS` is a static.
        unsafe { build(tss) }
    });
    load(gdt, selectors);
    tss
}

/// Points the current CPU's TSS `rsp0` at `top`: the stack the CPU switches to when an
/// interrupt or exception arrives in user mode.
///
/// # Safety
/// `tss` is this CPU's TSS (from [`init`] or [`init_ap`]) and interrupts are off.
pub unsafe fn set_kernel_stack(tss: *mut TaskStateSegment, top: u64) {
    // SAFETY: the caller's contract: this CPU's TSS, nothing else writes it meanwhile (the CPU
    // itself only reads `rsp0` on a privilege change, which cannot happen with interrupts off
    // in kernel mode).
    unsafe { (*tss).privilege_stack_table[0] = VirtAddr::new(top) };
}

/// Pages of each IST stack of an application processor (for whoever allocates them).
pub const IST_STACK_PAGES: usize = IST_STACK_SIZE / 4096;

/// Builds and loads a GDT and TSS for an application processor, with IST stacks of its own:
/// `ist` (double fault, NMI/machine check), allocated by the caller in the kernel-stack region
/// above guard pages and never freed; where one is missing, a heap stack without a guard page
/// (still usable). Same layout as [`init`]'s, so [`selectors`] holds for every CPU. Returns the
/// AP's TSS.
pub fn init_ap(ist: &'static [Option<KernelStack>; 2]) -> *mut TaskStateSegment {
    use alloc::boxed::Box;
    let ist_top = |stack: &Option<KernelStack>| match stack {
        Some(s) => VirtAddr::new(s.top()),
        None => {
            // SAFETY: an all-zero byte array is a valid `IstStack`.
            let zeroed = unsafe { Box::<IstStack>::new_zeroed().assume_init() };
            let stack: &'static mut IstStack = Box::leak(zeroed);
            VirtAddr::from_ptr(stack) + IST_STACK_SIZE as u64
        }
    };
    let mut tss = TaskStateSegment::new();
    tss.interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] = ist_top(&ist[0]);
    tss.interrupt_stack_table[NMI_IST_INDEX as usize] = ist_top(&ist[1]);
    let tss: *mut TaskStateSegment = Box::leak(Box::new(tss));
    // SAFETY: leaked: valid forever at this address.
    let (gdt, selectors) = unsafe { build(tss) };
    load(Box::leak(Box::new(gdt)), &selectors);
    tss
}

/// The selectors of the loaded GDT (after [`init`]).
pub fn selectors() -> Option<Selectors> {
    GDT.get().map(|(_, s)| *s)
}
