//! Per-CPU data, reached through the GS segment base.
//!
//! What it does: every CPU owns one [`PerCpu`] block (the bootstrap processor's is a static, each
//! application processor's comes from the heap and is never freed). [`install`] writes the
//! block's address to `IA32_GS_BASE`; [`current`] reads `gs:[0]`, where the block stores its own
//! address, so finding this CPU's data costs one load and needs no lock.
//!
//! What it relies on: the kernel never runs user code yet, so nothing executes `swapgs` and
//! GS always holds the kernel's base; each CPU calls [`install`] once, before anything asks for
//! [`current`] on it.
//!
//! What it guarantees: [`current`] returns the block of the CPU the caller runs on at the time
//! of the call. A thread that can migrate must disable preemption (or interrupts) while it
//! relies on that, which is what [`CpuGuard`] and [`PreemptGuard`] do.
//!
//! Preemption count: [`preempt_disable`]/[`preempt_enable`] change this CPU's count with one
//! `gs`-relative instruction each (so a thread cannot migrate between finding the block and
//! changing it). While it is non-zero the timer tick does not switch threads; it records that
//! a switch is due instead (a bit folded into the count word, [`NO_RESCHED`]), and the
//! [`preempt_enable`] that brings the count back to zero performs the deferred switch (through the hook the scheduler registered in
//! [`super::hooks`]), as Linux's `preempt_enable` does.

use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use x86_64::registers::model_specific::GsBase;

/// Most CPUs the kernel brings up.
pub const MAX_CPUS: usize = 64;

/// One CPU's data.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct PerCpu {
    /// This block's own address (`gs:[0]`).
    self_ptr: u64,
    /// Dense CPU index, 0 for the bootstrap processor.
    pub index: u32,
    /// Local APIC id.
    pub apic_id: u32,
    /// NUMA node (0 without SRAT).
    pub node: u32,
    /// Timer ticks seen by this CPU.
    pub ticks: AtomicU64,
    /// Timer interrupts seen by this CPU (more than `ticks` while `apic::split_tick` splits
    /// the tick for the profiler).
    pub timer_interrupts: AtomicU64,
    /// The tick split this CPU's periodic timer is programmed for (`apic`).
    pub timer_split: AtomicU64,
    /// Preemption-disable depth in bits 0..31 and, in bit 31, [`NO_RESCHED`]: set while no
    /// switch is pending, cleared when the tick wanted to switch threads while preemption was
    /// disabled (see the module documentation). Changed only by this CPU, through
    /// `gs`-relative instructions (or, for bit 31, an atomic operation on its own block).
    preempt_count: AtomicU32,
    /// Interrupt and exception nesting depth (0: not in a handler), with the kernel heap's
    /// slot pointer that follows it. Maintained by the dispatcher; saved and restored with the
    /// thread when a handler switches threads.
    pub irq_depth: IrqDepth,
    /// Saved stack pointer of this CPU's scheduler context (`task`), while a thread runs.
    pub sched_rsp: AtomicUsize,
    /// Threads this CPU ran (picks), for the report.
    pub switches: AtomicU64,
    /// The thread context running on this CPU (`context::Context`), or null.
    pub(super) context: AtomicPtr<super::context::Context>,
    /// The running thread's vector registers are live in the CPU (it used them since it was
    /// switched in), so switching it out must save them.
    pub(super) fpu_live: AtomicBool,
    /// This CPU's recovery points (`recover`); only this CPU touches them, with interrupts off.
    pub(super) recovery: UnsafeCell<super::recover::RecoveryStack>,
    /// What the last faulting probe on this CPU saw (`probe`).
    pub(super) probe: super::probe::ProbeState,
    /// Kernel stack top of the user thread running here: where `SYSCALL` entry switches to
    /// (`user`), and what the TSS's `rsp0` holds.
    pub(super) kernel_rsp: AtomicU64,
    /// The user stack pointer while `SYSCALL` entry switches stacks (scratch).
    pub(super) user_rsp: AtomicU64,
    /// This CPU's TSS (for `rsp0`), set by `user::init_cpu`.
    pub(super) tss: AtomicPtr<x86_64::structures::tss::TaskStateSegment>,
    /// The running thread's address-space tag (`context::current_tag`).
    pub(super) current_tag: AtomicU64,
    /// Which user tables are loaded here, and shootdown requests (`tlb`).
    pub(super) tlb: super::tlb::CpuTlb,
    /// The owner of the context running here after a direct switch (`context::switch_direct`),
    /// until it switches back to the scheduler; only this CPU touches it, interrupts off.
    pub(super) direct: UnsafeCell<Option<alloc::sync::Arc<dyn super::context::OwnsContext>>>,
    /// The owner a later direct switch replaced, kept until that switch completed.
    pub(super) retiring: UnsafeCell<Option<alloc::sync::Arc<dyn super::context::OwnsContext>>>,
    /// The context a direct switch left, whose `on_cpu` the resumed thread releases.
    pub(super) handed_over: AtomicPtr<super::context::Context>,
}

// SAFETY: every field other CPUs may read is atomic or immutable after `install`; `recovery`,
// `direct` and `retiring` are only touched by the CPU that owns the block (interrupts off),
// never through another CPU's block.
unsafe impl Sync for PerCpu {}

impl PerCpu {
    /// A block for CPU `index` with APIC id `apic_id` on `node`.
    pub const fn new(index: u32, apic_id: u32, node: u32) -> Self {
        Self {
            self_ptr: 0,
            index,
            apic_id,
            node,
            ticks: AtomicU64::new(0),
            timer_interrupts: AtomicU64::new(0),
            timer_split: AtomicU64::new(1),
            irq_depth: IrqDepth::new(),
            sched_rsp: AtomicUsize::new(0),
            switches: AtomicU64::new(0),
            preempt_count: AtomicU32::new(NO_RESCHED),
            context: AtomicPtr::new(core::ptr::null_mut()),
            fpu_live: AtomicBool::new(false),
            recovery: UnsafeCell::new(super::recover::RecoveryStack::new()),
            probe: super::probe::ProbeState::new(),
            kernel_rsp: AtomicU64::new(0),
            user_rsp: AtomicU64::new(0),
            tss: AtomicPtr::new(core::ptr::null_mut()),
            current_tag: AtomicU64::new(0),
            tlb: super::tlb::CpuTlb::new(),
            direct: UnsafeCell::new(None),
            retiring: UnsafeCell::new(None),
            handed_over: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// This CPU's preemption count.
    pub fn preempt_count(&self) -> u32 {
        self.preempt_count.load(Ordering::Relaxed) & !NO_RESCHED
    }

    /// Asks for a switch at the next preemption point (the tick found preemption disabled).
    /// Only on this CPU's own block.
    pub fn set_need_resched(&self) {
        self.preempt_count.fetch_and(!NO_RESCHED, Ordering::Relaxed);
    }

    /// Takes the pending switch request. Only on this CPU's own block.
    pub fn take_need_resched(&self) -> bool {
        self.preempt_count.fetch_or(NO_RESCHED, Ordering::Relaxed) & NO_RESCHED == 0
    }

    /// Whether a switch is pending (the tick asked for one while preemption was disabled).
    fn need_resched(&self) -> bool {
        self.preempt_count.load(Ordering::Relaxed) & NO_RESCHED == 0
    }

    /// Replaces the preemption count with `count` (its bit 31 ignored) and no switch pending, for
    /// the scheduler's switch, which carries a thread's count with it (a pending switch is
    /// the one being made, or one the next tick asks for again). Returns the previous word:
    /// the count in bits 0..31 (bit 31 is stale; passing the word back here ignores it). Only
    /// on this CPU's own block, with interrupts off.
    pub(super) fn swap_preempt_count(&self, count: u32) -> u32 {
        self.preempt_count
            .swap(count | NO_RESCHED, Ordering::Relaxed)
    }
}

/// A CPU's interrupt nesting depth and the kernel heap's slot pointer for the context running
/// on it, kept together so that one cannot change without the other. The rule: `heap_slot` is
/// null or the CPU's thread slot (`heap_thread_slot`, set by the heap through
/// [`init_heap_slot`]), and null whenever the depth is not zero (then the heap finds the
/// handler's slot on its slow path; a null pointer at depth zero only sends one thread
/// operation there, which sets it again). The interrupt entry stub (`idt`) nulls it on entry
/// and puts the thread slot back when the depth returns to zero; the methods below, with
/// which the thread switch (`context`) and `recover` carry a depth between threads and CPUs,
/// null it when they set a non-zero depth. Only this CPU changes its own fields.
#[repr(C)]
#[derive(Debug)]
pub struct IrqDepth {
    depth: AtomicU32,
    heap_slot: AtomicPtr<u8>,
    heap_thread_slot: AtomicPtr<u8>,
}

impl IrqDepth {
    const fn new() -> Self {
        Self {
            depth: AtomicU32::new(0),
            heap_slot: AtomicPtr::new(core::ptr::null_mut()),
            heap_thread_slot: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The depth.
    #[inline(always)]
    pub fn load(&self, order: Ordering) -> u32 {
        self.depth.load(order)
    }

    /// Sets the depth (and keeps the heap slot pointer's rule). Only on this CPU's own block.
    #[inline(always)]
    pub fn store(&self, depth: u32, order: Ordering) {
        self.depth.store(depth, order);
        self.follow(depth);
    }

    /// Sets the depth (and keeps the heap slot pointer's rule); returns the previous depth.
    /// Only on this CPU's own block.
    #[inline(always)]
    pub fn swap(&self, depth: u32, order: Ordering) -> u32 {
        let old = self.depth.swap(depth, order);
        self.follow(depth);
        old
    }

    /// Nulls `heap_slot` after a non-zero depth was set. (A depth of zero keeps the pointer:
    /// null and the thread slot are both right there. An interrupt between the two stores
    /// returns to the non-zero depth with the pointer null.)
    #[inline(always)]
    fn follow(&self, depth: u32) {
        if depth != 0 {
            self.heap_slot
                .store(core::ptr::null_mut(), Ordering::Relaxed);
        }
    }
}

/// `gs`-relative offset of the interrupt depth (for the entry stub).
pub(super) const IRQ_DEPTH_OFFSET: usize =
    core::mem::offset_of!(PerCpu, irq_depth) + core::mem::offset_of!(IrqDepth, depth);
/// `gs`-relative offset of the heap slot pointer (for the entry stub).
pub(super) const HEAP_SLOT_OFFSET: usize =
    core::mem::offset_of!(PerCpu, irq_depth) + core::mem::offset_of!(IrqDepth, heap_slot);
/// `gs`-relative offset of the thread's heap slot (for the entry stub).
pub(super) const HEAP_THREAD_SLOT_OFFSET: usize =
    core::mem::offset_of!(PerCpu, irq_depth) + core::mem::offset_of!(IrqDepth, heap_thread_slot);

/// The kernel heap's slot pointer for the running context: this CPU's thread slot in thread
/// context once [`init_heap_slot`] set it, null in a handler (and before). One `gs`-relative
/// load. Read it with preemption disabled: it names this CPU's slot.
#[inline(always)]
pub fn heap_slot() -> *mut u8 {
    let ptr: *mut u8;
    // SAFETY: GS points at this CPU's installed `PerCpu` (as for `current`); the load has no
    // side effects.
    unsafe {
        core::arch::asm!(
            "mov {}, gs:[{offset}]",
            out(reg) ptr,
            offset = const HEAP_SLOT_OFFSET,
            options(nostack, readonly, preserves_flags),
        );
    }
    ptr
}

/// Records `slot` as this CPU's thread heap slot (the heap calls it once per CPU, from thread
/// context with preemption disabled, on its slow path) and, as the depth is zero, makes it the
/// current one. Returns false, changing nothing, when called inside a handler.
///
/// # Safety
/// `slot` is the kernel heap's slot pointer (`Heap::slot_ptr`) of this CPU's thread slot, and
/// the caller has preemption disabled (so "this CPU" stays the same): the heap's fast paths use
/// whatever this stores as the calling thread's exclusive slot.
pub unsafe fn init_heap_slot(slot: *mut u8) -> bool {
    let Some(cpu) = current() else { return false };
    if cpu.irq_depth.load(Ordering::Relaxed) != 0 {
        return false;
    }
    cpu.irq_depth
        .heap_thread_slot
        .store(slot, Ordering::Relaxed);
    // An interrupt from here on finds the thread slot set and puts it back when it returns;
    // the depth is zero again when this runs.
    cpu.irq_depth.heap_slot.store(slot, Ordering::Relaxed);
    true
}

/// Bit 31 of `PerCpu::preempt_count`, set while no switch is pending (inverted, as Linux's
/// `PREEMPT_NEED_RESCHED`): the whole word is zero exactly when the count is zero and a switch
/// is pending, so [`preempt_enable`] finds both with the flags of its one decrement.
const NO_RESCHED: u32 = 1 << 31;

const PREEMPT_OFFSET: usize = core::mem::offset_of!(PerCpu, preempt_count);

/// Disables preemption on this CPU (nests). Interrupts still arrive; the tick only records that
/// a switch is due.
#[inline(always)]
pub fn preempt_disable() {
    // SAFETY: GS points at this CPU's installed block (see `current`); the instruction
    // increments its `preempt_count` (an `AtomicU32`, only ever changed by this CPU through
    // single instructions like this one, so an interrupt cannot split the update).
    unsafe {
        core::arch::asm!("inc dword ptr gs:[{off}]", off = const PREEMPT_OFFSET,
            options(nostack, preserves_flags));
    }
    // Keep the critical section's memory accesses after the increment (compiler ordering is
    // enough: the count is only read by this CPU).
    core::sync::atomic::compiler_fence(Ordering::Acquire);
}

/// Enables preemption again; when the count reaches zero, interrupts are on, the caller is not
/// an interrupt handler and the tick asked for a switch meanwhile, switches now (through the
/// scheduler's registered hook). Two instructions when no switch is pending: the decrement
/// and a branch on its zero flag (the pending-switch bit is folded into the count, see
/// [`NO_RESCHED`]).
#[inline(always)]
pub fn preempt_enable() {
    core::sync::atomic::compiler_fence(Ordering::Release);
    // SAFETY: as in `preempt_disable`; the word reaches zero only when the count does and a
    // switch is pending, and then the branch goes to the label.
    unsafe {
        core::arch::asm!("dec dword ptr gs:[{off}]", "jz {pending}", off = const PREEMPT_OFFSET,
            pending = label { preempt_point() }, options(nostack));
    }
}

/// Performs a switch the tick deferred, if the caller may switch now.
#[cold]
#[inline(never)]
fn preempt_point() {
    let Some(cpu) = current() else { return };
    if cpu.need_resched()
        && cpu.irq_depth.load(Ordering::Relaxed) == 0
        && x86_64::instructions::interrupts::are_enabled()
    {
        super::hooks::reschedule();
    }
}

/// Keeps the caller on its CPU by disabling preemption (not interrupts); enables it on drop.
#[derive(Debug)]
pub struct PreemptGuard {
    _not_send: core::marker::PhantomData<*const ()>,
}

impl PreemptGuard {
    /// Disables preemption until the guard is dropped.
    #[inline(always)]
    pub fn new() -> Self {
        preempt_disable();
        Self {
            _not_send: core::marker::PhantomData,
        }
    }
}

impl Default for PreemptGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PreemptGuard {
    #[inline(always)]
    fn drop(&mut self) {
        preempt_enable();
    }
}

/// Every installed block, by CPU index.
static CPUS: [AtomicPtr<PerCpu>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];

/// Points this CPU's GS base at `block` and registers it under its index. Call once per CPU,
/// early. A block whose index is `MAX_CPUS` or more is installed but not registered.
pub fn install(block: &'static mut PerCpu) {
    block.self_ptr = core::ptr::from_mut(block) as u64;
    GsBase::write(x86_64::VirtAddr::new(block.self_ptr));
    if let Some(slot) = CPUS.get(block.index as usize) {
        // Release: whoever finds the block sees its initialised fields.
        slot.store(core::ptr::from_mut(block), Ordering::Release);
    }
}

/// The block of CPU `index`, if that CPU is online.
pub fn cpu(index: usize) -> Option<&'static PerCpu> {
    let ptr = CPUS.get(index)?.load(Ordering::Acquire);
    // SAFETY: non-null entries are installed `'static` blocks (see `install`).
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

/// The bootstrap processor's first block, installed at the very start of `kernel_entry` (so GS
/// is valid from the first instruction that can ask), replaced once its APIC id and node are
/// known.
static mut EARLY_BSP: PerCpu = PerCpu::new(0, 0, 0);

/// Installs [`EARLY_BSP`] on the bootstrap processor. Call once, first thing in `kernel_entry`.
pub fn install_early_bsp() {
    let block = &raw mut EARLY_BSP;
    // SAFETY: the only reference ever made to `EARLY_BSP`, once, at entry, before anything else
    // runs; `install` keeps it for the life of the kernel (it is later replaced, never freed).
    install(unsafe { &mut *block });
}

/// This CPU's block. Every CPU installs one before it runs any code that asks (the bootstrap
/// processor [`EARLY_BSP`] first thing, each AP first thing in its entry), so this is one
/// `gs`-relative load with no check (no MSR read). Always `Some`; the `Option` keeps callers
/// honest should a CPU ever run code before its install.
#[inline]
pub fn current() -> Option<&'static PerCpu> {
    let ptr: u64;
    // SAFETY: GS points at an installed `PerCpu` (see above: installed before any caller can
    // run on this CPU), whose first field is its own address; the load has no side effects.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) ptr, options(nostack, readonly, preserves_flags));
    }
    // SAFETY: the blocks are `'static` (a static or leaked) and only shared references are
    // handed out after `install`; the fields others change are atomics.
    (ptr != 0).then(|| unsafe { &*(ptr as *const PerCpu) })
}

/// This CPU's index: one `gs`-relative load (the block is installed before any caller runs,
/// see [`current`]).
#[inline]
pub fn cpu_index() -> usize {
    let index: u32;
    // SAFETY: GS points at this CPU's installed `PerCpu` (as for `current`); `index` is set
    // before `install` and never changes, and the load has no side effects.
    unsafe {
        core::arch::asm!(
            "mov {:e}, gs:[{offset}]",
            out(reg) index,
            offset = const core::mem::offset_of!(PerCpu, index),
            options(nostack, readonly, preserves_flags),
        );
    }
    index as usize
}

/// Whether the caller runs inside an interrupt or exception handler on this CPU (its
/// `irq_depth` is non-zero): one `gs`-relative load. The answer stays right if the caller is
/// interrupted or migrates: a handler that interrupts it returns with the depth as it was, and
/// a thread takes its depth along when a handler switches it out (`context`).
#[inline(always)]
pub fn in_handler() -> bool {
    let depth: u32;
    // SAFETY: GS points at this CPU's installed `PerCpu` (as for `current`); the load has no
    // side effects.
    unsafe {
        core::arch::asm!(
            "mov {:e}, gs:[{offset}]",
            out(reg) depth,
            offset = const IRQ_DEPTH_OFFSET,
            options(nostack, readonly, preserves_flags),
        );
    }
    depth != 0
}

/// Keeps the caller on its CPU by disabling interrupts (there is no preemption without the
/// timer interrupt); restores the previous interrupt state on drop.
#[derive(Debug)]
pub struct CpuGuard {
    was_enabled: bool,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl CpuGuard {
    /// Disables interrupts and returns the guard with this CPU's index.
    pub fn enter() -> (usize, Self) {
        let was_enabled = x86_64::instructions::interrupts::are_enabled();
        x86_64::instructions::interrupts::disable();
        (
            cpu_index(),
            Self {
                was_enabled,
                _not_send: core::marker::PhantomData,
            },
        )
    }
}

impl Drop for CpuGuard {
    fn drop(&mut self) {
        if self.was_enabled {
            x86_64::instructions::interrupts::enable();
        }
    }
}

/// veridian-sched's CPU guard: interrupts off on the CPU it names, until dropped.
pub struct SchedGuard {
    cpu: usize,
    block: Option<&'static PerCpu>,
    _irq: CpuGuard,
}

impl SchedGuard {
    /// Disables interrupts (restored on drop) and names this CPU.
    pub fn new() -> Self {
        let (_, irq) = CpuGuard::enter();
        let block = current();
        Self {
            cpu: block.map_or(0, |c| c.index as usize),
            block,
            _irq: irq,
        }
    }

    /// This CPU's per-CPU block (always there once the CPU installed it).
    pub fn block(&self) -> Option<&'static PerCpu> {
        self.block
    }
}

impl Default for SchedGuard {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: the guard holds a `CpuGuard`, so interrupts stay disabled on its CPU for as long as
// it lives: no interrupt handler and no preemption (there is none without the timer interrupt)
// uses the same CPU's queues meanwhile. It names the CPU it was made on and is not `Send`
// (`CpuGuard` holds a raw-pointer marker), so it cannot name another CPU.
unsafe impl veridian_sched::CpuGuard for SchedGuard {
    fn cpu(&self) -> usize {
        self.cpu
    }
}

/// One slot per CPU naming an `Arc<T>`, each changed only by its own CPU with interrupts off
/// (the scheduler keeps each CPU's running thread here, for as long as it runs it). Reading this
/// CPU's entry takes one reference-count increment. No lock.
pub struct CpuSlots<T> {
    slots: [AtomicPtr<T>; MAX_CPUS],
}

// SAFETY: the slots hold `Arc<T>` references that any CPU may end up dropping or cloning, so
// `T` must be `Send + Sync` (as for `Arc<T>: Send + Sync`).
unsafe impl<T: Send + Sync> Sync for CpuSlots<T> {}

impl<T> CpuSlots<T> {
    /// All slots empty.
    pub const fn new() -> Self {
        Self {
            slots: [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS],
        }
    }

    /// Runs `f` with `value` in the guard's CPU slot, then puts back what was there. The slot
    /// borrows `value` (no reference count changes), so the scheduler's switch costs two plain
    /// atomic stores.
    pub fn with<R>(&self, guard: &SchedGuard, value: &Arc<T>, f: impl FnOnce() -> R) -> R {
        let Some(slot) = self.slots.get(guard.cpu) else {
            return f();
        };
        let previous = slot.swap(Arc::as_ptr(value).cast_mut(), Ordering::Release);
        let result = f();
        slot.store(previous, Ordering::Release);
        result
    }

    /// Points the guard's CPU slot at `value` (no reference count changes) inside an enclosing
    /// [`CpuSlots::with`] frame, which puts its own value back when it ends: for a direct
    /// switch to another thread, whose `Arc` the caller keeps alive until that frame ends (the
    /// per-CPU `direct` slot does).
    pub fn replace(&self, guard: &SchedGuard, value: &Arc<T>) {
        if let Some(slot) = self.slots.get(guard.cpu) {
            slot.store(Arc::as_ptr(value).cast_mut(), Ordering::Release);
        }
    }

    /// A new reference to what the guard's CPU slot holds.
    pub fn get(&self, guard: &SchedGuard) -> Option<Arc<T>> {
        let ptr = self.slots.get(guard.cpu)?.load(Ordering::Acquire);
        if ptr.is_null() {
            return None;
        }
        // SAFETY: a non-null entry points into an `Arc` that a `with` frame on this CPU borrows
        // while it runs, or one `replace` put there that is kept alive until that frame ends
        // (or that an abandoned `with` frame leaked, so it is never freed). Only
        // this CPU changes its slot, and the guard keeps interrupts off here, so that frame
        // cannot finish between the load and the increment.
        unsafe {
            Arc::increment_strong_count(ptr);
            Some(Arc::from_raw(ptr))
        }
    }

    /// Whether CPU `cpu`'s slot is empty (a racy snapshot, for wake-up decisions).
    pub fn is_empty(&self, cpu: usize) -> bool {
        self.slots
            .get(cpu)
            .is_none_or(|s| s.load(Ordering::Relaxed).is_null())
    }
}

impl<T> Default for CpuSlots<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// How many CPUs have installed per-CPU data (the bootstrap processor counts once set up).
pub static ONLINE: AtomicU32 = AtomicU32::new(0);

/// Number of CPUs online.
pub fn online() -> u32 {
    ONLINE.load(Ordering::Acquire)
}
