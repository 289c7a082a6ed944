//! Vector (x87/SSE/AVX/AVX-512) register state: lazy switching between threads and saving the
//! interrupted state around interrupt and exception handlers.
//!
//! Threads: entering a thread sets `CR0.TS` ([`super::context`]); the thread's first vector
//! instruction raises #NM, whose handler ([`device_not_available`]) clears TS and loads the
//! thread's XSAVE (or FXSAVE) area. The area is allocated (in the initial state) when the thread
//! is created, never in the #NM handler: #NM can hit in the middle of a heap operation (the
//! kernel's `memcpy` is vector code), and allocating there re-entered the heap's per-CPU slot
//! that operation held, corrupting its magazine. A thread that
//! used the registers in its slice (`PerCpu::fpu_live`) has them saved when it switches out.
//! Threads that never touch them cost nothing.
//!
//! Handlers: the kernel's own `memcpy`/`memset` are veridian-simd's AVX2/AVX-512 code, so any
//! handler may change vector registers. The interrupt entry stub (`idt.rs`, assembly) saves the
//! interrupted registers into a [`SAVE_AREA`]-byte area on the interrupted stack *before* any
//! Rust code runs, as this module's [`vector_state_ready`] configured it (`SAVE_MODE`,
//! `SAVE_MASK`): no compiler-generated copy or `memset` of the area can happen first (a debug
//! build moves a by-value area with `memcpy`, which may itself be vector code), and the XSAVE
//! header bytes XRSTOR checks are zeroed by plain stores. The area travels with the stack, so a
//! thread preempted inside the timer handler gets its registers back from it when it resumes
//! there, on whatever CPU.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use spin::Once;
use x86_64::registers::control::{Cr0Flags, Cr4, Cr4Flags};

use super::percpu;

/// How the vector state is saved: XSAVE with the enabled components, or FXSAVE.
#[derive(Clone, Copy)]
struct FpuMode {
    xsave: bool,
    size: usize,
    mask: u64,
}

static FPU_MODE: Once<FpuMode> = Once::new();

fn fpu_mode() -> FpuMode {
    *FPU_MODE.call_once(|| {
        let cpuid = raw_cpuid::CpuId::new();
        let xsave = cpuid.get_feature_info().is_some_and(|f| f.has_xsave())
            && Cr4::read().contains(Cr4Flags::OSXSAVE);
        if xsave {
            // SAFETY: CR4.OSXSAVE is set (checked), so `xgetbv` with ECX = 0 is allowed.
            let xcr0 = unsafe { core::arch::x86_64::_xgetbv(0) };
            let size = cpuid
                .get_extended_state_info()
                .map_or(4096, |s| s.xsave_area_size_enabled_features() as usize);
            FpuMode {
                xsave: true,
                size: size.max(576),
                mask: xcr0,
            }
        } else {
            FpuMode {
                xsave: false,
                size: 512,
                mask: 0,
            }
        }
    })
}

/// How the interrupt entry stub saves the interrupted vector registers: 0 not at all (before
/// [`vector_state_ready`]: nothing uses them yet), 1 FXSAVE, 2 XSAVE with [`SAVE_MASK`].
/// Read by the assembly in `idt.rs`.
#[unsafe(no_mangle)]
pub static VERIDIAN_FPU_SAVE_MODE: AtomicU32 = AtomicU32::new(0);
/// The XSAVE component mask (XCR0), for the entry stub's XSAVE/XRSTOR.
#[unsafe(no_mangle)]
pub static VERIDIAN_FPU_SAVE_MASK: AtomicU64 = AtomicU64::new(0);

/// Fixes how vector state is saved (XSAVE with the XCR0 components, or FXSAVE), after
/// `cpu::enable_vector_state` on the bootstrap processor and before anything else runs.
pub fn vector_state_ready() {
    let mode = fpu_mode();
    if mode.size <= SAVE_AREA {
        VERIDIAN_FPU_SAVE_MASK.store(mode.mask, Ordering::Relaxed);
        VERIDIAN_FPU_SAVE_MODE.store(if mode.xsave { 2 } else { 1 }, Ordering::Release);
    } else {
        log::warn!(
            "vector state of {} bytes exceeds the interrupt save area; interrupt handlers must \
             not use vector registers",
            mode.size
        );
    }
}

fn set_ts() {
    // SAFETY: setting CR0.TS only makes the next x87/SSE/AVX instruction raise #NM, which
    // `device_not_available` handles; the other CR0 bits are written back as read (callers
    // have interrupts off, so nothing changes CR0 in between). `or` changes the flags, so
    // the asm does not claim to preserve them.
    unsafe {
        core::arch::asm!(
            "mov {tmp}, cr0",
            "or {tmp}, {ts}",
            "mov cr0, {tmp}",
            tmp = out(reg) _,
            ts = const Cr0Flags::TASK_SWITCHED.bits(),
            options(nostack),
        );
    }
}

fn clear_ts() {
    // SAFETY: `clts` only clears CR0.TS.
    unsafe { core::arch::asm!("clts", options(nostack, nomem, preserves_flags)) };
}

/// XSAVE/FXSAVE of the current registers into a thread's area at `ptr`.
///
/// # Safety
/// `ptr` is 64-byte aligned, writable for the save-area size, and its XSAVE header's
/// XCOMP_BV and reserved bytes are zero (a thread's area is allocated zeroed and XSAVE never
/// writes them); CR0.TS is clear.
unsafe fn save_to(ptr: *mut u8) {
    let mode = fpu_mode();
    // SAFETY: the caller's contract.
    unsafe {
        if mode.xsave {
            core::arch::asm!("xsave64 [{}]", in(reg) ptr, in("eax") mode.mask as u32,
                in("edx") (mode.mask >> 32) as u32, options(nostack, preserves_flags));
        } else {
            core::arch::asm!("fxsave64 [{}]", in(reg) ptr, options(nostack, preserves_flags));
        }
    }
}

/// XRSTOR/FXRSTOR from `ptr`.
///
/// # Safety
/// `ptr` holds a valid save area of the current mode (written by `save_to`, or the initial
/// state written by `FpuArea::new`), 64-byte aligned; CR0.TS is clear.
unsafe fn restore_from(ptr: *const u8) {
    let mode = fpu_mode();
    // SAFETY: the caller's contract.
    unsafe {
        if mode.xsave {
            core::arch::asm!("xrstor64 [{}]", in(reg) ptr, in("eax") mode.mask as u32,
                in("edx") (mode.mask >> 32) as u32, options(nostack, preserves_flags));
        } else {
            core::arch::asm!("fxrstor64 [{}]", in(reg) ptr, options(nostack, preserves_flags));
        }
    }
}

/// A thread's XSAVE/FXSAVE area, 64-byte aligned, allocated on first use.
struct FpuArea {
    ptr: *mut u8,
    layout: core::alloc::Layout,
}

impl FpuArea {
    fn new() -> Option<Self> {
        let layout = core::alloc::Layout::from_size_align(fpu_mode().size, 64).ok()?;
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return None;
        }
        // The legacy region's x87 control word (offset 0) and MXCSR (offset 24) get their reset
        // values (all exceptions masked); everything else zero. With XSAVE, XSTATE_BV = 0 puts
        // the registers in their initial state, but MXCSR is still loaded from the area.
        // SAFETY: the area is at least 512 bytes, freshly allocated, ours.
        unsafe {
            ptr.cast::<u16>().write(0x037f);
            ptr.add(24).cast::<u32>().write(0x1f80);
        }
        Some(Self { ptr, layout })
    }
}

impl Drop for FpuArea {
    fn drop(&mut self) {
        // SAFETY: allocated in `FpuArea::new` with this layout.
        unsafe { alloc::alloc::dealloc(self.ptr, self.layout) };
    }
}

/// A thread's saved vector registers (part of its `context::Context`).
pub struct ThreadFpu {
    /// Touched only by the CPU running the thread, with interrupts off (#NM, switch-out).
    area: UnsafeCell<FpuArea>,
}

// SAFETY: `area` is only accessed by the CPU that runs the thread or is switching it out
// (`context::Context`'s `on_cpu` protocol makes that one CPU at a time), with interrupts off.
unsafe impl Sync for ThreadFpu {}
// SAFETY: the area is plain heap memory owned by this value.
unsafe impl Send for ThreadFpu {}

impl ThreadFpu {
    /// An area in the initial vector state; `None` when there is no memory for it.
    pub fn new() -> Option<Self> {
        Some(Self {
            area: UnsafeCell::new(FpuArea::new()?),
        })
    }

    /// Saves the CPU's vector registers here.
    ///
    /// # Safety
    /// The caller is the CPU running (or switching out) the thread that owns `self`, with
    /// interrupts off.
    pub(super) unsafe fn save(&self) {
        // SAFETY: the caller's contract makes this the only access to `area`.
        let a = unsafe { &*self.area.get() };
        clear_ts();
        // SAFETY: the area is 64-byte aligned, as large as the CPU's save area for the enabled
        // components, its header's reserved bytes zero; TS was just cleared.
        unsafe { save_to(a.ptr) };
    }

    /// Loads the thread's registers. Allocates nothing.
    ///
    /// # Safety
    /// As for [`ThreadFpu::save`].
    unsafe fn load(&self) {
        // SAFETY: the caller's contract makes this the only access to `area`.
        let a = unsafe { &*self.area.get() };
        clear_ts();
        // SAFETY: the area holds the initial state or what `save` wrote; TS is clear.
        unsafe { restore_from(a.ptr) };
    }
}

/// Marks a thread's registers as not loaded: the next vector instruction traps (#NM).
pub(super) fn switch_in() {
    set_ts();
}

/// Back in a scheduler context: it keeps no vector state across switches (every vector register
/// is caller-saved around the switch call), so TS can be clear.
pub(super) fn switch_back() {
    clear_ts();
}

/// The #NM (device not available) handler: gives the running thread its vector state. Always
/// handles the trap (returns true); allocates nothing.
pub fn device_not_available() -> bool {
    clear_ts();
    let Some(cpu) = percpu::current() else {
        return true;
    };
    let ctx = cpu.context.load(Ordering::Relaxed);
    if ctx.is_null() {
        // The scheduler context or the boot context used a vector instruction: clearing TS is
        // enough (see `switch_back`).
        return true;
    }
    // SAFETY: a non-null `context` is the context this CPU runs now (set by `Context::run`
    // for exactly as long as it runs), so it is alive and ours; #NM runs with interrupts off.
    unsafe { (*ctx).fpu().load() };
    cpu.fpu_live.store(true, Ordering::Relaxed);
    true
}

/// Bytes of the on-stack save area the interrupt entry stub reserves (`idt.rs`).
pub const SAVE_AREA: usize = 4096;
