//! The physical page-frame allocator.
//!
//! What it does: [`init`] plans the free RAM with [`plan_frames`] (usable regions of the boot
//! memory map minus the first MiB, the kernel image, the boot structures and the modules) and
//! hands each range to a veridian-alloc [`FrameAllocator`] (a buddy allocator whose free lists
//! live in the free memory itself, reached through the direct map at
//! [`PHYS_OFFSET`]). It runs in two steps because the direct map grows: [`init`] adds the RAM
//! below 4 GiB (what `paging::init_early` maps), and [`add_high`] the RAM above, once the
//! kernel's own tables map it. [`allocate`]/[`free`] serve naturally aligned blocks of
//! `4 KiB << order`, by physical address.
//!
//! What it relies on: the direct map covers every range handed over, writable; nothing but this
//! allocator touches the planned ranges. The first MiB stays out: it holds the BIOS data, and
//! the AP start-up trampoline will need a page below 1 MiB.
//!
//! NUMA: with an ACPI SRAT ([`set_numa`]), each node's RAM goes to its own buddy allocator;
//! [`allocate`] prefers the calling CPU's node and falls back to the others, [`allocate_on`]
//! asks for one node.
//!
//! Locking: one [`IrqLock`] per node (the heap refills from it with interrupts off, the
//! scheduler context may allocate, and a thread holding it must never be switched out). Order-0
//! frames go through a per-CPU cache of the CPU's own node first (touched only by its CPU with
//! interrupts off), which takes the node lock once per batch of 16 frames when it refills or
//! flushes, and once per free to check it (a double free stays an error).

use core::sync::atomic::{AtomicUsize, Ordering};
use reference_kernel::BootInfo;
use reference_kernel::acpi::Platform;
use reference_kernel::physmem::{FramePlan, PhysRange, plan_frames};
use veridian_alloc::buddy::BuddyError;
use veridian_alloc::frame::{FrameAllocator, FrameError};

use super::paging::PHYS_OFFSET;
use crate::arch::x86_64::boot;
use crate::arch::x86_64::percpu::{CpuGuard, MAX_CPUS};
use crate::sync::IrqLock;
use spin::Once;

/// What the direct map reaches before the kernel's own page tables exist
/// (`paging::init_early`).
const EARLY_LIMIT: u64 = 4 << 30;

/// The first MiB: BIOS data area, EBDA, option ROMs; later the AP trampoline's page.
const LOW_MEMORY: PhysRange = PhysRange {
    start: 0,
    end: 0x10_0000,
};

/// Most NUMA nodes with a frame allocator of their own (RAM of higher nodes goes to the last).
pub const MAX_NODES: usize = 8;

/// One buddy allocator per NUMA node.
static FRAMES: [IrqLock<FrameAllocator>; MAX_NODES] = [const {
    IrqLock::new(
        "mm::frames::FRAMES",
        match FrameAllocator::new(PHYS_OFFSET as usize) {
            Ok(frames) => frames,
            Err(_) => panic!("PHYS_OFFSET is 1 GiB-aligned"),
        },
    )
}; MAX_NODES];

/// Node memory ranges from the SRAT (`[start, end)`, node), set once by [`set_numa`] before
/// [`init`]; unset: one node. Read without a lock on every [`free`].
static NODE_RANGES: Once<NodeRanges> = Once::new();

/// `(start, end, node)` triples and how many are valid.
type NodeRanges = ([(u64, u64, usize); 64], usize);
/// Nodes that have frame allocators (1 without SRAT).
static NODES: AtomicUsize = AtomicUsize::new(1);

/// Remembers which physical ranges belong to which node (from the ACPI SRAT). Call before
/// [`init`]; without it every frame is on node 0.
pub fn set_numa(platform: &Platform) {
    let mut ranges: NodeRanges = ([(0, 0, 0); 64], 0);
    let mut n = 0;
    for m in platform.memory_ranges() {
        if n == ranges.0.len() {
            break;
        }
        ranges.0[n] = (m.base, m.end(), m.node.min(MAX_NODES - 1));
        n += 1;
    }
    ranges.1 = n;
    NODE_RANGES.call_once(|| ranges);
    NODES.store(platform.node_count().clamp(1, MAX_NODES), Ordering::Relaxed);
}

/// The node owning `phys`, and where that node's range ends (or where the next node's range
/// starts, for an address outside every range, which goes to node 0).
fn node_piece(phys: u64) -> (usize, u64) {
    let list = NODE_RANGES.get().map_or(&[][..], |r| &r.0[..r.1]);
    if let Some(&(_, end, node)) = list.iter().find(|r| r.0 <= phys && phys < r.1) {
        return (node, end);
    }
    let next = list.iter().map(|r| r.0).filter(|&b| b > phys).min();
    (0, next.unwrap_or(u64::MAX))
}

/// What [`init`] did, for the boot report.
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameReport {
    /// Bytes handed to the allocator (after its own bitmaps).
    pub managed_bytes: u64,
    /// Ranges handed over.
    pub ranges: usize,
    /// Ranges the allocator refused (too small for its bitmaps, and so on).
    pub refused_ranges: usize,
    /// Usable RAM beyond the direct map (not addressable yet).
    pub above_limit_bytes: u64,
    /// Usable RAM held by the kernel image, boot structures, modules and the first MiB.
    pub reserved_bytes: u64,
}

static REPORT: IrqLock<FrameReport> = IrqLock::new(
    "mm::frames::REPORT",
    FrameReport {
        managed_bytes: 0,
        ranges: 0,
        refused_ranges: 0,
        above_limit_bytes: 0,
        reserved_bytes: 0,
    },
);

unsafe extern "C" {
    /// End of the kernel image (linker script), virtual, in the higher half.
    static __kernel_end: u8;
}

/// The physical ranges nothing else may use: first MiB, kernel image, boot data, modules.
fn reserved_ranges(info: &BootInfo, out: &mut [PhysRange; 48]) -> usize {
    let kernel_end_virt = core::ptr::addr_of!(__kernel_end) as u64;
    let kernel = PhysRange {
        start: boot::KERNEL_PHYS,
        end: kernel_end_virt - boot::KERNEL_VMA,
    };
    let mut n = 0;
    let mut add = |r: PhysRange| {
        if let Some(slot) = out.get_mut(n) {
            *slot = r;
            n += 1;
        }
    };
    add(LOW_MEMORY);
    add(kernel);
    for r in info.boot_data() {
        add(PhysRange::from_len(r.start, r.len));
    }
    for m in info.modules() {
        add(PhysRange {
            start: m.start,
            end: m.end,
        });
    }
    n.min(out.len())
}

/// Hands the planned ranges to the allocator, counting into `report`.
fn add_plan(plan: &FramePlan, report: &mut FrameReport) {
    if plan.dropped_bytes > 0 {
        log::warn!(
            "frames: {} KiB of free RAM left out (more fragments than the plan holds)",
            plan.dropped_bytes >> 10
        );
    }
    for range in plan.ranges() {
        // Split the range where NUMA node ranges begin and end.
        let mut start = range.start;
        while start < range.end {
            let (node, node_end) = node_piece(start);
            let end = range.end.min(node_end);
            // SAFETY: the plan holds only usable RAM below the direct map's current end (mapped
            // writable at PHYS_OFFSET), outside the kernel image, the boot structures, the
            // modules and the first MiB, so nothing else uses it; each piece is handed over
            // once (pieces are disjoint, and the two steps plan disjoint parts) and never
            // taken back.
            match unsafe { FRAMES[node].lock().add_range(start, end - start) } {
                Ok(bytes) => {
                    report.managed_bytes += bytes;
                    report.ranges += 1;
                }
                Err(e) => {
                    report.refused_ranges += 1;
                    log::warn!("frames: [{start:#x}, {end:#x}) on node {node} refused: {e}");
                }
            }
            start = end;
        }
    }
}

/// Plans the free RAM below 4 GiB and gives it to the frame allocator. Once, on the bootstrap
/// processor, after `paging::init_early`.
pub fn init(info: &BootInfo) {
    let mut reserved = [PhysRange::default(); 48];
    let n = reserved_ranges(info, &mut reserved);
    let plan = plan_frames(info.memory_map(), &reserved[..n], EARLY_LIMIT);
    let mut report = FrameReport {
        above_limit_bytes: plan.above_limit_bytes,
        reserved_bytes: plan.reserved_bytes,
        ..FrameReport::default()
    };
    add_plan(&plan, &mut report);
    *REPORT.lock() = report;
}

/// Adds the free RAM in `[4 GiB, direct_map_end)`, once the kernel's page tables map it.
pub fn add_high(info: &BootInfo, direct_map_end: u64) {
    let mut reserved = [PhysRange::default(); 48];
    let mut n = reserved_ranges(info, &mut reserved);
    if n == reserved.len() {
        n -= 1;
    }
    reserved[n] = PhysRange {
        start: 0,
        end: EARLY_LIMIT,
    };
    let plan = plan_frames(info.memory_map(), &reserved[..=n], direct_map_end);
    let mut report = *REPORT.lock();
    report.above_limit_bytes = plan.above_limit_bytes;
    add_plan(&plan, &mut report);
    *REPORT.lock() = report;
}

/// What [`init`] did (all zero before it ran).
pub fn report() -> FrameReport {
    *REPORT.lock()
}

/// Order-0 frames each CPU keeps for itself (see [`CpuCache`]).
const CACHE_FRAMES: usize = 32;
/// Frames moved between a CPU's cache and its node's buddy allocator at once.
const CACHE_BATCH: usize = 16;

/// A CPU's cache of free order-0 frames of its own node, in front of the buddy allocator: an
/// allocation and a free are then an array pop/push instead of splitting a large block down to
/// 4 KiB and merging it back up (18 levels each way on a fresh node). The buddy allocator
/// counts cached frames as allocated; [`free_bytes`] adds them back. Refills and flushes move
/// [`CACHE_BATCH`] frames under one acquisition of the node lock.
///
/// A frame freed into the cache is checked as the buddy allocator checks a free (aligned,
/// managed, not free there) and is refused if the cache holds it already, so a double free is
/// still an error.
struct CpuCache {
    frames: [u64; CACHE_FRAMES],
    len: usize,
}

/// One cache per CPU slot.
struct CpuCaches([core::cell::UnsafeCell<CpuCache>; MAX_CPUS]);

// SAFETY: slot `i` is only touched by CPU `i` (its index read under `CpuGuard`, so with
// interrupts off: no interrupt handler or other thread on that CPU runs meanwhile, and the
// caller cannot migrate).
unsafe impl Sync for CpuCaches {}

static CACHES: CpuCaches = CpuCaches(
    [const {
        core::cell::UnsafeCell::new(CpuCache {
            frames: [0; CACHE_FRAMES],
            len: 0,
        })
    }; MAX_CPUS],
);
/// Frames held by all caches (for [`free_bytes`]).
static CACHED: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` with the calling CPU's cache and its node; `None` before per-CPU data exists or for
/// a CPU without a slot.
fn with_cache<R>(f: impl FnOnce(&mut CpuCache, usize) -> R) -> Option<R> {
    let (_, _irq) = CpuGuard::enter();
    let cpu = crate::arch::x86_64::percpu::current()?;
    let nodes = NODES.load(Ordering::Relaxed);
    let node = cpu.node as usize % nodes;
    let slot = CACHES.0.get(cpu.index as usize)?;
    // SAFETY: this CPU's own slot, interrupts off (see `CpuCaches`); the borrow ends before
    // the guard is dropped.
    Some(f(unsafe { &mut *slot.get() }, node))
}

/// An order-0 frame from the calling CPU's cache, refilled from its node when empty.
fn allocate_cached() -> Option<u64> {
    with_cache(|cache, node| {
        if cache.len == 0 {
            let mut frames = FRAMES[node].lock();
            while cache.len < CACHE_BATCH {
                let Ok(phys) = frames.allocate(0) else {
                    break;
                };
                cache.frames[cache.len] = phys;
                cache.len += 1;
                CACHED.fetch_add(1, Ordering::Relaxed);
            }
        }
        if cache.len == 0 {
            return None;
        }
        cache.len -= 1;
        CACHED.fetch_sub(1, Ordering::Relaxed);
        Some(cache.frames[cache.len])
    })
    .flatten()
}

/// Frees an order-0 frame of the calling CPU's node into its cache (flushing half the cache
/// to the node when full). `None`: not for the cache (another node's frame, no per-CPU data).
///
/// # Safety
/// As [`free`].
unsafe fn free_cached(phys: u64, frame_node: usize) -> Option<Result<(), FrameError>> {
    with_cache(|cache, node| {
        if node != frame_node {
            return None;
        }
        if cache.frames[..cache.len].contains(&phys) {
            return Some(Err(FrameError::Buddy(BuddyError::DoubleFree {
                addr: phys as usize,
                order: 0,
            })));
        }
        let mut frames = FRAMES[node].lock();
        if !phys.is_multiple_of(4096) || !frames.owns(phys) || frames.is_free(phys, 0) {
            // Misaligned, unmanaged or free already: the buddy allocator refuses it (changing
            // nothing) and names the error.
            // SAFETY: as just checked, this free is refused before any change.
            return Some(unsafe { frames.free(phys, 0) });
        }
        if cache.len == CACHE_FRAMES {
            while cache.len > CACHE_FRAMES - CACHE_BATCH {
                cache.len -= 1;
                CACHED.fetch_sub(1, Ordering::Relaxed);
                // SAFETY: a frame the cache held: allocated from this allocator, owned by
                // the cache, used by nobody.
                let _ = unsafe { frames.free(cache.frames[cache.len], 0) };
            }
        }
        cache.frames[cache.len] = phys;
        cache.len += 1;
        CACHED.fetch_add(1, Ordering::Relaxed);
        Some(Ok(()))
    })
    .flatten()
}

/// A naturally aligned block of `4 KiB << order`; its physical address (in the direct map at
/// `PHYS_OFFSET + phys`). From the calling CPU's NUMA node when it has one free, otherwise
/// from the other nodes in order. Order 0 comes from the CPU's cache first.
pub fn allocate(order: usize) -> Result<u64, FrameError> {
    if order == 0
        && let Some(phys) = allocate_cached()
    {
        return Ok(phys);
    }
    let nodes = NODES.load(Ordering::Relaxed);
    let home = crate::arch::x86_64::percpu::current().map_or(0, |c| c.node as usize) % nodes;
    let mut last = Err(FrameError::Buddy(BuddyError::OutOfMemory { order }));
    for i in 0..nodes {
        last = FRAMES[(home + i) % nodes].lock().allocate(order);
        if last.is_ok() {
            return last;
        }
    }
    last
}

/// A block from NUMA node `node` only.
pub fn allocate_on(node: usize, order: usize) -> Result<u64, FrameError> {
    match FRAMES.get(node) {
        Some(frames) if node < NODES.load(Ordering::Relaxed) => frames.lock().allocate(order),
        _ => Err(FrameError::Buddy(BuddyError::OutOfMemory { order })),
    }
}

/// The node whose allocator manages `phys`, if any.
pub fn node_of(phys: u64) -> Option<usize> {
    (0..NODES.load(Ordering::Relaxed)).find(|&n| FRAMES[n].lock().owns(phys))
}

/// Free bytes on each node in its buddy allocator (nodes beyond the count are 0; frames in
/// the CPUs' caches are not counted here, see [`free_bytes`]).
pub fn free_bytes_per_node() -> [usize; MAX_NODES] {
    core::array::from_fn(|n| FRAMES[n].lock().free_bytes())
}

/// Gives back a block from [`allocate`].
///
/// # Safety
/// `phys` and `order` are exactly a block [`allocate`] returned and not yet freed, and nothing
/// uses its memory afterwards.
pub unsafe fn free(phys: u64, order: usize) -> Result<(), FrameError> {
    // The allocator `add_plan` gave this address to (one lock-free lookup, instead of asking
    // each node's allocator under its lock).
    let (node, _) = node_piece(phys);
    if order == 0
        // SAFETY: forwarded contract.
        && let Some(result) = unsafe { free_cached(phys, node) }
    {
        return result;
    }
    // SAFETY: the caller's contract is `FrameAllocator::free`'s; the block belongs to the
    // allocator `add_plan` handed its address to (blocks never span allocators), and an
    // address no allocator manages is refused by the one asked.
    unsafe { FRAMES[node].lock().free(phys, order) }
}

/// An allocated block of frames, given back when dropped: the safe way to hold frames for
/// code that does not hand them on (tests, benchmarks, scratch buffers).
#[derive(Debug)]
pub struct FrameBlock {
    phys: u64,
    order: usize,
}

impl FrameBlock {
    /// A block of `4 KiB << order` as [`allocate`] chooses it.
    pub fn allocate(order: usize) -> Result<Self, FrameError> {
        allocate(order).map(|phys| Self { phys, order })
    }

    /// A block from NUMA node `node` only (see [`allocate_on`]).
    pub fn allocate_on(node: usize, order: usize) -> Result<Self, FrameError> {
        allocate_on(node, order).map(|phys| Self { phys, order })
    }

    /// Physical address (naturally aligned to the block size).
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// Gives up ownership: the caller frees the block (`phys`, this order) with [`free`].
    pub fn into_raw(self) -> u64 {
        let phys = self.phys;
        core::mem::forget(self);
        phys
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        4096 << self.order
    }

    /// The block's memory through the direct map; `None` if the block lies above it.
    pub fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        let virt = crate::arch::x86_64::layout::phys_to_virt(self.phys, self.size() as u64)?;
        // SAFETY: the block is exclusively ours (allocated, not freed while `self` lives), the
        // direct map covers it writable (checked above), and the borrow of `self` keeps the
        // slice from outliving the block or aliasing another borrow of it.
        Some(unsafe { core::slice::from_raw_parts_mut(virt as *mut u8, self.size()) })
    }
}

impl Drop for FrameBlock {
    fn drop(&mut self) {
        // SAFETY: the block came from `allocate`/`allocate_on` with this order, it is freed only
        // here, and no borrow of its memory outlives `self`.
        if let Err(e) = unsafe { free(self.phys, self.order) } {
            log::error!(
                "frames: freeing an owned block {:#x} failed: {e}",
                self.phys
            );
        }
    }
}

/// Free bytes now, all nodes (the CPUs' cached frames included: they are free for use).
pub fn free_bytes() -> usize {
    FRAMES.iter().map(|f| f.lock().free_bytes()).sum::<usize>()
        + CACHED.load(Ordering::Relaxed) * 4096
}
