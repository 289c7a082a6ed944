//! TLB management for user address spaces: process-context identifiers (PCIDs), lazy
//! page-table switching and shootdown IPIs.
//!
//! What it does:
//! - [`init_cpu`] turns `CR4.PCIDE` on where the CPU has PCIDs. Each user address space then
//!   gets a PCID of its own ([`TlbState::new`], 1..4095; the kernel's tables use PCID 0), so
//!   switching between processes keeps their translations cached. `INVPCID` is not needed:
//!   a PCID that is not loaded is never flushed remotely, its generation is checked when it
//!   is loaded again. (QEMU 7.2's TCG offers no PCID on any CPU model, so under TCG the kernel
//!   runs this scheme with PCID 0 for every space: every load flushes.)
//! - **Lazy switching**: when a user thread leaves a CPU, its tables stay loaded there (the
//!   kernel half is the same in every space, so kernel threads and the scheduler run on them);
//!   the next user thread's [`activate`] replaces them. A space records the CPUs that have it
//!   in CR3 now (`loaded`).
//! - **Generations**: every change that removes or replaces a translation
//!   ([`TlbState::invalidate`]) bumps the space's generation; a CPU records the generation its
//!   TLB is current with for the space (`seen`). [`activate`] keeps the cached translations
//!   (`CR3` bit 63, no flush) only when the CPU saw the latest generation; otherwise it loads
//!   CR3 with a flush of the space's PCID. So a CPU that ran the process earlier and holds old
//!   translations under its PCID never uses them, without an IPI.
//! - **Shootdown IPIs**: [`TlbState::invalidate`] also interrupts the other CPUs that have the
//!   space loaded now (vector [`SHOOTDOWN_VECTOR`]): only those, which are a subset of the CPUs
//!   that ran the process. A CPU holding the space lazily switches to the kernel's tables; one
//!   running it flushes. The initiator waits for each acknowledgement, and while it waits it
//!   answers requests addressed to itself, so two CPUs shooting at each other with interrupts
//!   off cannot deadlock. [`TlbState::retire`] does the same before a space's tables are freed,
//!   so no CPU walks freed page tables (its CR3 or its paging-structure caches).
//! - The kernel's own tables are always loaded with a flush of PCID 0 ([`leave`]), so PCID 0
//!   never carries translations of a user space across a switch, also where PCIDs are off.
//!
//! What it relies on: a process's tables change only through its `AddressSpace`, which calls
//! [`TlbState::invalidate`] after every unmap or remap (with the space's lock held or not) and
//! [`TlbState::retire`] before freeing its tables; [`activate`] and [`leave`] run with
//! interrupts off.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use super::idt::{self, HandlerError, InterruptFrame};
use super::percpu::{self, MAX_CPUS, PerCpu};

/// The vector of the TLB-shootdown IPI.
pub const SHOOTDOWN_VECTOR: u8 = 0x22;

/// CR3 bit 63 with `CR4.PCIDE`: keep the cached translations of the PCID being loaded.
const CR3_NOFLUSH: u64 = 1 << 63;
/// CR4.PCIDE.
const CR4_PCIDE: u64 = 1 << 17;
/// PCIDs are 12 bits; 0 is the kernel's.
const PCID_COUNT: usize = 4096;
/// Invalidate page by page up to this many pages; flush the whole PCID above.
const INVLPG_MAX_PAGES: u64 = 32;

/// Every CPU that came up so far has PCIDs on (cleared for good by one that could not).
static PCID_ON: AtomicBool = AtomicBool::new(false);
/// Some CPU has been set up (the first one decides whether `PCID_ON` starts true).
static FIRST_DONE: AtomicBool = AtomicBool::new(false);
/// Allocated PCIDs, one bit each; bit 0 (the kernel's) is set from the start.
static PCIDS: [AtomicU64; PCID_COUNT / 64] = {
    let mut map = [const { AtomicU64::new(0) }; PCID_COUNT / 64];
    map[0] = AtomicU64::new(1);
    map
};
/// Shootdown IPIs sent, all CPUs.
static IPIS_SENT: AtomicU64 = AtomicU64::new(0);

/// One CPU's TLB bookkeeping, in its per-CPU block.
#[derive(Debug)]
pub struct CpuTlb {
    /// The user space whose tables are in CR3 (null: the kernel's).
    space: AtomicPtr<TlbState>,
    /// `space` is loaded lazily (no thread of it runs here).
    lazy: AtomicBool,
    /// `CR4.PCIDE` is on on this CPU.
    pcide: AtomicBool,
    /// Shootdown requests addressed to this CPU (a ticket counter) and the last one answered.
    requested: AtomicU64,
    answered: AtomicU64,
    /// Shootdown IPIs this CPU received.
    received: AtomicU64,
}

impl CpuTlb {
    /// Nothing loaded but the kernel's tables, PCIDs off, no requests.
    pub const fn new() -> Self {
        Self {
            space: AtomicPtr::new(core::ptr::null_mut()),
            lazy: AtomicBool::new(false),
            pcide: AtomicBool::new(false),
            requested: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }
}

impl Default for CpuTlb {
    fn default() -> Self {
        Self::new()
    }
}

/// A user address space's TLB state: its root, its PCID and who may cache it.
#[derive(Debug)]
pub struct TlbState {
    root: u64,
    /// 0 where PCIDs are off (every load then flushes).
    pcid: u16,
    /// Bumped by every invalidation; starts at 1 (a CPU's `seen` starts at 0: never loaded).
    generation: AtomicU64,
    /// CPUs with this space in CR3 now (bit = CPU index).
    loaded: AtomicU64,
    /// CPUs that ever loaded the space (bit = CPU index), for checks and reports.
    ran: AtomicU64,
    /// Per CPU: the generation its TLB is current with for this space.
    seen: [AtomicU64; MAX_CPUS],
}

/// Why a [`TlbState`] could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoPcid;

impl TlbState {
    /// The state of a new space whose PML4 is at `root` (4 KiB-aligned): a PCID of its own
    /// where PCIDs are on. Fails when all 4095 user PCIDs are taken (that many live spaces).
    pub fn new(root: u64) -> Result<Self, NoPcid> {
        let pcid = if PCID_ON.load(Ordering::Acquire) {
            allocate_pcid().ok_or(NoPcid)?
        } else {
            0
        };
        Ok(Self {
            root: root & !0xfff,
            pcid,
            generation: AtomicU64::new(1),
            loaded: AtomicU64::new(0),
            ran: AtomicU64::new(0),
            seen: [const { AtomicU64::new(0) }; MAX_CPUS],
        })
    }

    /// Physical address of the PML4.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The space's PCID (0 where PCIDs are off).
    pub fn pcid(&self) -> u16 {
        self.pcid
    }

    /// CPUs that have the space in CR3 now (bit = CPU index).
    pub fn loaded_on(&self) -> u64 {
        self.loaded.load(Ordering::SeqCst)
    }

    /// CPUs that ever loaded the space (bit = CPU index).
    pub fn ran_on(&self) -> u64 {
        self.ran.load(Ordering::Relaxed)
    }

    /// After translations of `[start, end)` were removed or replaced in the space's tables:
    /// makes every CPU stop using the old ones before the caller frees what they pointed at.
    /// This CPU invalidates them now if it has the space loaded (page by page for a short
    /// range, else the whole PCID); CPUs that cached them earlier flush when they load the
    /// space again (generation); CPUs that have it loaded now get a shootdown IPI, and this
    /// returns after all of them answered. Any interrupt state; may spin while other CPUs
    /// answer.
    pub fn invalidate(&self, start: u64, end: u64) {
        let me = percpu::CpuGuard::enter();
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let Some(cpu) = percpu::current() else {
            return;
        };
        let index = cpu.index as usize;
        let here = core::ptr::eq(cpu.tlb.space.load(Ordering::Relaxed), self);
        if here {
            let pages = end.saturating_sub(start) / 4096;
            if pages <= INVLPG_MAX_PAGES {
                let mut page = start & !0xfff;
                while page < end {
                    x86_64::instructions::tlb::flush(x86_64::VirtAddr::new_truncate(page));
                    page += 4096;
                }
            } else {
                // SAFETY: reloading the space's own tables (loaded here now), with a flush.
                unsafe { write_cr3(cpu, self.root, self.pcid, false) };
            }
            if index < MAX_CPUS {
                self.seen[index].store(generation, Ordering::Relaxed);
            }
        }
        let others =
            self.loaded.load(Ordering::SeqCst) & !(1u64.checked_shl(cpu.index).unwrap_or(0));
        drop(me);
        shoot(others);
    }

    /// Before the space's tables are freed: every CPU that still has them in CR3 (lazily; no
    /// thread of the space may run any more) switches to the kernel's tables. Returns once
    /// none has them loaded.
    pub fn retire(&self) {
        {
            let _irq = percpu::CpuGuard::enter();
            if let Some(cpu) = percpu::current()
                && core::ptr::eq(cpu.tlb.space.load(Ordering::Relaxed), self)
            {
                leave(cpu);
            }
        }
        loop {
            let loaded = self.loaded.load(Ordering::SeqCst);
            if loaded == 0 {
                break;
            }
            shoot(loaded);
        }
    }
}

impl Drop for TlbState {
    fn drop(&mut self) {
        // `retire` ran (the space's owner calls it before freeing the tables); a CPU may still
        // cache translations tagged with the PCID, which its next owner's first load on that
        // CPU flushes (its `seen` starts at 0).
        if self.pcid != 0 {
            free_pcid(self.pcid);
        }
    }
}

fn allocate_pcid() -> Option<u16> {
    for (word_index, word) in PCIDS.iter().enumerate() {
        let mut bits = word.load(Ordering::Relaxed);
        while bits != u64::MAX {
            let bit = (!bits).trailing_zeros();
            match word.compare_exchange_weak(
                bits,
                bits | (1 << bit),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return u16::try_from(word_index * 64 + bit as usize).ok(),
                Err(now) => bits = now,
            }
        }
    }
    None
}

fn free_pcid(pcid: u16) {
    let pcid = usize::from(pcid);
    PCIDS[pcid / 64].fetch_and(!(1 << (pcid % 64)), Ordering::AcqRel);
}

/// Writes CR3 on `cpu` (this CPU): the PML4 at `root` with `pcid`, keeping that PCID's cached
/// translations when `keep` (and PCIDs are on here).
///
/// # Safety
/// `root` is a PML4 whose upper half maps the kernel as the kernel's own does; interrupts
/// are off; the caller updates this CPU's `CpuTlb` to match.
unsafe fn write_cr3(cpu: &PerCpu, root: u64, pcid: u16, keep: bool) {
    let pcide = cpu.tlb.pcide.load(Ordering::Relaxed);
    let mut value = root;
    if pcide {
        value |= u64::from(pcid) & 0xfff;
        if keep && pcid != 0 {
            value |= CR3_NOFLUSH;
        }
    }
    // SAFETY: the caller's contract; the kernel half is identical, so execution continues.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Sets this CPU up: `CR4.PCIDE` where the CPU has PCIDs (and the CPUs set up before it had
/// them too), the shootdown vector on the first call. Once per CPU, after its
/// per-CPU block is installed, with the kernel's tables (PCID 0) in CR3. Returns whether
/// PCIDs are on here.
pub fn init_cpu() -> Result<bool, HandlerError> {
    let cpuid = raw_cpuid::CpuId::new();
    let has_pcid = cpuid.get_feature_info().is_some_and(|f| f.has_pcid());
    let first = !FIRST_DONE.swap(true, Ordering::AcqRel);
    if first {
        idt::set_handler(SHOOTDOWN_VECTOR, shootdown_ipi)?;
        PCID_ON.store(has_pcid, Ordering::Release);
    } else if !has_pcid {
        // Spaces made from now on go without PCIDs; none exists yet while CPUs come up.
        PCID_ON.store(false, Ordering::Release);
    }
    let on = has_pcid && PCID_ON.load(Ordering::Acquire);
    if on {
        let cr4: u64;
        // SAFETY: reading CR4 has no side effects.
        unsafe {
            core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack, preserves_flags))
        };
        // SAFETY: the CPU has PCIDs (checked), runs in long mode, and CR3 holds the kernel's
        // tables with PCID bits 0 (the caller's contract), as setting PCIDE requires.
        unsafe {
            core::arch::asm!("mov cr4, {}", in(reg) cr4 | CR4_PCIDE, options(nostack, preserves_flags))
        };
        if let Some(cpu) = percpu::current() {
            cpu.tlb.pcide.store(true, Ordering::Relaxed);
        }
    }
    Ok(on)
}

/// Whether user spaces get PCIDs (every CPU set up so far has them on).
pub fn pcids_on() -> bool {
    PCID_ON.load(Ordering::Acquire)
}

/// Loads `space` on this CPU for a thread of it that runs here now: nothing when it is loaded
/// and current already, CR3 without a flush when this CPU's TLB saw its latest generation,
/// with a flush of its PCID otherwise.
///
/// # Safety
/// `space` stays alive until this CPU loads other tables ([`activate`], [`leave`]: its owner's
/// [`TlbState::retire`] waits for that); `cpu` is this CPU's block; interrupts are off.
pub unsafe fn activate(cpu: &PerCpu, space: &TlbState) {
    let tlb = &cpu.tlb;
    let index = cpu.index as usize;
    tlb.lazy.store(false, Ordering::Relaxed);
    let prev = tlb.space.load(Ordering::Relaxed);
    let same = core::ptr::eq(prev, space);
    if !same && index < MAX_CPUS {
        let bit = 1u64 << index;
        // SeqCst, before reading the generation: an invalidation either sees this CPU in
        // `loaded` (and interrupts it) or bumped the generation before it is read below.
        space.loaded.fetch_or(bit, Ordering::SeqCst);
        if space.ran.load(Ordering::Relaxed) & bit == 0 {
            space.ran.fetch_or(bit, Ordering::Relaxed);
        }
    }
    let generation = space.generation.load(Ordering::SeqCst);
    let seen = space
        .seen
        .get(index)
        .map_or(0, |s| s.load(Ordering::Relaxed));
    if same && seen == generation {
        return;
    }
    // SAFETY: the caller's contract (a live space with the kernel's upper half), interrupts off.
    unsafe { write_cr3(cpu, space.root, space.pcid, seen == generation) };
    if let Some(s) = space.seen.get(index) {
        s.store(generation, Ordering::Relaxed);
    }
    tlb.space
        .store(core::ptr::from_ref(space).cast_mut(), Ordering::Relaxed);
    if !prev.is_null() && !same {
        // SAFETY: `prev` is alive: its owner's `retire` waits until this CPU clears its bit.
        unsafe { (*prev).loaded.fetch_and(!(1u64 << index), Ordering::SeqCst) };
    }
}

/// Marks the space loaded on this CPU as loaded lazily (its thread left the CPU): a shootdown
/// then switches the CPU to the kernel's tables instead of flushing. Interrupts off.
pub fn set_lazy(cpu: &PerCpu) {
    if !cpu.tlb.space.load(Ordering::Relaxed).is_null() {
        cpu.tlb.lazy.store(true, Ordering::Relaxed);
    }
}

/// Loads the kernel's tables on this CPU (PCID 0, flushed) and takes the CPU out of the space
/// it had loaded. Interrupts off.
pub fn leave(cpu: &PerCpu) {
    let tlb = &cpu.tlb;
    let prev = tlb.space.swap(core::ptr::null_mut(), Ordering::Relaxed);
    tlb.lazy.store(false, Ordering::Relaxed);
    if prev.is_null() {
        return;
    }
    // SAFETY: the kernel's own PML4 maps everything the kernel uses; interrupts are off (the
    // caller's contract) and the per-CPU state was updated above.
    unsafe { write_cr3(cpu, super::layout::kernel_root(), 0, false) };
    if let Some(bit) = 1u64.checked_shl(cpu.index) {
        // SAFETY: `prev` is alive: its owner's `retire` waits until this CPU clears its bit.
        unsafe { (*prev).loaded.fetch_and(!bit, Ordering::SeqCst) };
    }
}

/// Answers this CPU's pending shootdown request, if any: leaves a lazily loaded space, or
/// flushes a space in use whose generation moved. Interrupts off.
fn answer(cpu: &PerCpu) {
    let tlb = &cpu.tlb;
    let requested = tlb.requested.load(Ordering::Acquire);
    if requested == tlb.answered.load(Ordering::Relaxed) {
        return;
    }
    let space = tlb.space.load(Ordering::Relaxed);
    if !space.is_null() {
        if tlb.lazy.load(Ordering::Relaxed) {
            leave(cpu);
        } else {
            // SAFETY: the space a thread runs on here now: alive (the thread holds it).
            let space = unsafe { &*space };
            let generation = space.generation.load(Ordering::SeqCst);
            if let Some(seen) = space.seen.get(cpu.index as usize)
                && seen.load(Ordering::Relaxed) != generation
            {
                // SAFETY: reloading the tables loaded here now, with a flush; interrupts off.
                unsafe { write_cr3(cpu, space.root, space.pcid, false) };
                seen.store(generation, Ordering::Relaxed);
            }
        }
    }
    tlb.answered.store(requested, Ordering::Release);
}

fn shootdown_ipi(_frame: &mut InterruptFrame) {
    if let Some(cpu) = percpu::current() {
        cpu.tlb.received.fetch_add(1, Ordering::Relaxed);
        answer(cpu);
    }
    super::apic::eoi();
}

/// Sends a shootdown request to each CPU in `targets` (bit = CPU index) and waits until each
/// answered, answering requests to this CPU meanwhile.
fn shoot(targets: u64) {
    if targets == 0 {
        return;
    }
    let mut tickets = [0u64; MAX_CPUS];
    let mut bits = targets;
    while bits != 0 {
        let index = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        let Some(cpu) = percpu::cpu(index) else {
            continue;
        };
        tickets[index] = cpu.tlb.requested.fetch_add(1, Ordering::AcqRel) + 1;
        IPIS_SENT.fetch_add(1, Ordering::Relaxed);
        super::apic::send_fixed(cpu.apic_id, SHOOTDOWN_VECTOR);
    }
    let start = veridian_perf::arch::rdtsc();
    let mut bits = targets;
    while bits != 0 {
        let index = bits.trailing_zeros() as usize;
        let done = percpu::cpu(index)
            .is_none_or(|cpu| cpu.tlb.answered.load(Ordering::Acquire) >= tickets[index]);
        if done {
            bits &= bits - 1;
            continue;
        }
        {
            let _irq = percpu::CpuGuard::enter();
            if let Some(me) = percpu::current() {
                answer(me);
            }
        }
        if veridian_perf::arch::rdtsc().wrapping_sub(start) > 1 << 38 {
            panic!("TLB shootdown: CPU {index} did not answer");
        }
        core::hint::spin_loop();
    }
}

/// Shootdown counters, for tests and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlbStats {
    /// Shootdown IPIs sent by all CPUs.
    pub sent: u64,
}

/// Shootdown IPIs sent so far (all CPUs).
pub fn stats() -> TlbStats {
    TlbStats {
        sent: IPIS_SENT.load(Ordering::Relaxed),
    }
}

/// Shootdown IPIs CPU `index` received so far (`None` for a CPU that is not up).
pub fn received(index: usize) -> Option<u64> {
    percpu::cpu(index).map(|c| c.tlb.received.load(Ordering::Relaxed))
}

/// Whether CPU `index` has user tables loaded now (lazily or in use).
pub fn has_user_tables(index: usize) -> Option<bool> {
    percpu::cpu(index).map(|c| !c.tlb.space.load(Ordering::Relaxed).is_null())
}
