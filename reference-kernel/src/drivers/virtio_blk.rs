//! virtio-blk: veridian-io's [`BlkDevice`] (feature `virtio`: `virtio-drivers`' PCI transport
//! and virtqueue, batches with one notification) with the kernel's [`KernelHal`] for DMA
//! memory, MSI-X for completions, and one lock around the device.
//!
//! [`init`] takes the first virtio block function `drivers::pci` found (vendor 0x1af4, device
//! 0x1001 transitional or 0x1042 modern) whose BARs passed the checks, builds the transport and
//! the device. A device the transport rejects (no modern capabilities, ...), whose request
//! queue is smaller than [`QUEUE_SIZE`] (queue size 0 included), that does not accept the
//! features or that reports capacity 0 is refused with a message; the kernel goes on without a
//! disk.
//!
//! Requests go in batches: [`batch`] places up to [`MAX_BATCH`] requests (read, write, flush) in
//! the queue, notifies the device once (unless it has suppressed notifications), then waits
//! until each has completed, in whatever order the device completes them. [`read`], [`write`]
//! and [`flush`] are batches of one. Where the device has MSI-X, entry 0 is routed to the
//! waiting CPU's local APIC on [`VECTOR`] and the waiter halts its CPU until the interrupt
//! (it keeps the device lock and its CPU meanwhile); otherwise, with interrupts off, or after
//! [`poll_only`], it polls the used ring. A data buffer from the heap or from frames goes to
//! the device without a copy. A batch not completed within [`REQUEST_TIMEOUT_MS`], or a
//! used-ring entry naming a request the batch did not submit, resets the device and takes it
//! out of service.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use reference_kernel::pci::Bdf;
use spin::Once;
use veridian_io::BatchedIo;
use veridian_io::virtio::{BlkDevice, VirtioBlkBackend};
pub use veridian_io::virtio::{BlkError, MAX_BATCH, QUEUE_SIZE, Request, SECTOR_SIZE};
use virtio_drivers::transport::pci::PciTransport;

use super::pci;
use super::virtio::{self, QueueIrq};
use crate::arch::x86_64::apic;
use crate::arch::x86_64::idt::InterruptFrame;
use crate::mm::dma::KernelHal;
use crate::sync::PreemptLock;

/// How long one batch may take before the device is declared dead.
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;

/// The vector of the request queue's MSI-X interrupt (free in the kernel's vector map: 0x20-0x24
/// timer, reschedule, shootdown, PMI, serial; 0x30 the test vector; 0x50.. user lines).
pub const VECTOR: u8 = 0x40;

/// Notifications sent to the device since boot (one per batch at most).
static NOTIFICATIONS: AtomicU64 = AtomicU64::new(0);
/// Requests the device completed since boot.
static COMPLETED: AtomicU64 = AtomicU64::new(0);
/// Looks at the used ring that found nothing new, since boot.
static EMPTY_POLLS: AtomicU64 = AtomicU64::new(0);
/// Completion interrupts taken since boot.
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);
/// Times a waiter halted its CPU until an interrupt, since boot.
static SLEEPS: AtomicU64 = AtomicU64::new(0);
/// Waiters poll even where the interrupt is routed (the benchmarks: under `-icount` a halted
/// CPU's TSC runs on with host time, so sleeping would count time, not instructions).
static POLL_ONLY: AtomicBool = AtomicBool::new(false);

/// An attached virtio block device.
struct Disk {
    dev: BlkDevice<KernelHal, PciTransport>,
    /// Completion by interrupt (MSI-X entry 0, aimed at the CPU that last waited); `None`:
    /// polled.
    irq: Option<QueueIrq>,
}

/// Facts about the attached disk.
#[derive(Clone, Copy, Debug)]
pub struct DiskInfo {
    /// Where it sits on the bus.
    pub bdf: Bdf,
    /// Size in 512-byte sectors.
    pub sectors: u64,
    /// The device refuses writes.
    pub read_only: bool,
}

static DISK: Once<PreemptLock<Option<Disk>>> = Once::new();
static INFO: Once<DiskInfo> = Once::new();

/// Notifications sent to the device since boot.
pub fn notifications() -> u64 {
    NOTIFICATIONS.load(Ordering::Relaxed)
}

/// Requests the device completed since boot.
pub fn completed() -> u64 {
    COMPLETED.load(Ordering::Relaxed)
}

/// Looks at the used ring that found nothing new since boot (time spent waiting for the device).
pub fn empty_polls() -> u64 {
    EMPTY_POLLS.load(Ordering::Relaxed)
}

/// Completion interrupts taken since boot.
pub fn interrupts() -> u64 {
    INTERRUPTS.load(Ordering::Relaxed)
}

/// Times a waiter halted its CPU until an interrupt since boot.
pub fn sleeps() -> u64 {
    SLEEPS.load(Ordering::Relaxed)
}

/// Makes waiters poll the used ring (`true`) even where the completion interrupt is routed,
/// and asks the device not to interrupt; or (`false`, the default) interrupts and sleeping
/// waiters again where the interrupt is routed.
pub fn poll_only(on: bool) {
    let Some(lock) = DISK.get() else { return };
    let mut guard = lock.lock();
    POLL_ONLY.store(on, Ordering::Relaxed);
    if let Some(disk) = guard.as_mut() {
        let interrupts = !on && disk.irq.is_some();
        disk.dev.set_interrupts(interrupts);
    }
}

/// Whether completions arrive by interrupt (MSI-X) rather than by polling alone.
pub fn interrupt_driven() -> bool {
    DISK.get()
        .is_some_and(|d| d.lock().as_ref().is_some_and(|d| d.irq.is_some()))
}

fn completion_interrupt(_frame: &mut InterruptFrame) {
    INTERRUPTS.fetch_add(1, Ordering::Relaxed);
    // The waiter wakes from `hlt` by the interrupt itself and looks at the used ring.
    apic::eoi();
}

/// Attaches the first usable virtio block device; prints what happened.
pub fn init() {
    DISK.call_once(|| PreemptLock::new("drivers::virtio_blk::DISK", attach()));
}

/// The attached disk, if any.
pub fn info() -> Option<DiskInfo> {
    if DISK.get().is_some_and(|d| d.lock().is_some()) {
        INFO.get().copied()
    } else {
        None
    }
}

fn attach() -> Option<Disk> {
    let access = pci::access()?;
    for (f, transport) in virtio::transports("blk", &[0x1001, 0x1042]) {
        // On refusal the transport was dropped, which reset the device.
        let mut dev = match BlkDevice::<KernelHal, _>::new(transport) {
            Ok(dev) => dev,
            Err(why) => {
                crate::println!("  virtio:   blk {} refused: {why}", f.bdf);
                continue;
            }
        };
        let irq = match virtio::route_queues(&access, f, &[0], 0, VECTOR, completion_interrupt) {
            Ok(irq) => Some(irq),
            Err(why) => {
                crate::println!(
                    "  virtio:   blk {}: no completion interrupt ({why}); polling",
                    f.bdf
                );
                None
            }
        };
        dev.set_interrupts(irq.is_some());
        let info = DiskInfo {
            bdf: f.bdf,
            sectors: dev.sectors(),
            read_only: dev.read_only(),
        };
        INFO.call_once(|| info);
        crate::println!(
            "  virtio:   blk {}: {} sectors ({} MiB){}, queue of {QUEUE_SIZE}, batches of up to \
             {MAX_BATCH}, {}",
            f.bdf,
            info.sectors,
            (info.sectors * SECTOR_SIZE as u64) >> 20,
            if info.read_only { ", read-only" } else { "" },
            if irq.is_some() {
                "completions by MSI-X interrupt (vector 0x40)"
            } else {
                "polled completions"
            }
        );
        return Some(Disk { dev, irq });
    }
    None
}

/// The disk as a veridian-io back-end, lent by [`with_backend`]; its wait is [`waiter`]'s.
pub type LentBackend<'a> = VirtioBlkBackend<
    KernelHal,
    PciTransport,
    &'a mut BlkDevice<KernelHal, PciTransport>,
    &'a mut dyn FnMut(&dyn Fn() -> bool) -> bool,
>;

/// Lends the disk to `f` as a [`BatchedIo`] over a [`VirtioBlkBackend`] with a submission ring
/// of `entries`, holding the device lock meanwhile (other block requests wait). The back-end
/// waits as [`batch`] does: halted until the completion interrupt where it can, polling
/// otherwise, and gives up after [`REQUEST_TIMEOUT_MS`] without progress of the batch it waits
/// for (the device is then reset and dropped, as by [`batch`]). `None` without a disk or if
/// the ring cannot be made.
pub fn with_backend<R>(
    entries: usize,
    f: impl FnOnce(&mut BatchedIo<LentBackend<'_>>) -> R,
) -> Option<R> {
    let mut guard = DISK.get()?.lock();
    let disk = guard.as_mut()?;
    let sleep = disk.irq.as_mut().is_some_and(aim_at_this_cpu);
    let (notified, completed) = (disk.dev.notifications(), disk.dev.completed());
    let mut wait = waiter(sleep, true);
    let backend: LentBackend<'_> = VirtioBlkBackend::new(&mut disk.dev, &mut wait);
    let result = BatchedIo::new(backend, entries)
        .ok()
        .map(|mut io| f(&mut io));
    NOTIFICATIONS.fetch_add(disk.dev.notifications() - notified, Ordering::Relaxed);
    COMPLETED.fetch_add(disk.dev.completed() - completed, Ordering::Relaxed);
    if disk.dev.is_dead() {
        *guard = None;
        crate::println!("virtio: blk taken out of service while lent to veridian-io");
    }
    result
}

/// The wait of a batch: `false` (give up) once [`REQUEST_TIMEOUT_MS`] have passed since it
/// first waited, or, with `per_progress`, since it last saw a completion ready (a waiter that
/// lives across many batches); otherwise, with `sleep`, halts until an interrupt unless
/// `ready()` already holds, else one spin (without `per_progress` a polling waiter does not look
/// at `ready()` itself: the benchmarks count its loop).
fn waiter(sleep: bool, per_progress: bool) -> impl FnMut(&dyn Fn() -> bool) -> bool {
    let hz = apic::info().map_or(1_000_000_000, |i| i.tsc_hz.max(1));
    let mut deadline = None;
    move |ready: &dyn Fn() -> bool| {
        let now = veridian_perf::arch::rdtsc();
        let limit = *deadline.get_or_insert(now.saturating_add(hz / 1000 * REQUEST_TIMEOUT_MS));
        if now > limit {
            return false;
        }
        if sleep {
            use x86_64::instructions::interrupts;
            // Interrupts off between the look and `hlt`: `sti; hlt` then sleeps without
            // missing an interrupt that arrived after the look (the device's completion, or
            // the next timer tick).
            interrupts::disable();
            if ready() {
                interrupts::enable();
                if per_progress {
                    deadline = None;
                }
            } else {
                SLEEPS.fetch_add(1, Ordering::Relaxed);
                interrupts::enable_and_hlt();
            }
        } else {
            EMPTY_POLLS.fetch_add(1, Ordering::Relaxed);
            core::hint::spin_loop();
            if per_progress && ready() {
                deadline = None;
            }
        }
        true
    }
}

/// Reads `buf.len() / 512` sectors starting at `sector` into `buf` (a batch of one).
pub fn read(sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
    one(Request::Read { sector, buf })
}

/// Writes `buf` (whole sectors) starting at `sector` (a batch of one).
pub fn write(sector: u64, buf: &[u8]) -> Result<(), BlkError> {
    one(Request::Write { sector, buf })
}

/// Asks the device to make written data durable (a no-op where it does not offer flush).
pub fn flush() -> Result<(), BlkError> {
    one(Request::Flush)
}

fn one(request: Request<'_>) -> Result<(), BlkError> {
    let mut result = [Err(BlkError::NotRun)];
    batch(&mut [request], &mut result)?;
    result[0]
}

/// Runs `requests` on the disk ([`BlkDevice::batch`]: [`MAX_BATCH`] at a time with one
/// notification for each group, each outcome in the same place of `results`), waiting for
/// completions by interrupt where it can, within [`REQUEST_TIMEOUT_MS`].
///
/// # Errors
/// As [`BlkDevice::batch`]; a failure that reset the device also takes it out of service.
pub fn batch(
    requests: &mut [Request<'_>],
    results: &mut [Result<(), BlkError>],
) -> Result<(), BlkError> {
    let lock = DISK.get().ok_or(BlkError::NoDisk)?;
    let mut guard = lock.lock();
    let disk = guard.as_mut().ok_or(BlkError::NoDisk)?;
    let sleep = disk.irq.as_mut().is_some_and(aim_at_this_cpu);
    let (notified, completed) = (disk.dev.notifications(), disk.dev.completed());
    let outcome = disk.dev.batch(requests, results, waiter(sleep, false));
    NOTIFICATIONS.fetch_add(disk.dev.notifications() - notified, Ordering::Relaxed);
    COMPLETED.fetch_add(disk.dev.completed() - completed, Ordering::Relaxed);
    if let Err(e) = outcome
        && disk.dev.is_dead()
    {
        // The device was reset; dropping it unsets the queue and frees its memory.
        *guard = None;
        crate::println!("virtio: blk {e}");
    }
    outcome
}

/// Whether a waiter on this CPU can sleep until the interrupt: interrupts are on (never
/// enabled blindly here), [`poll_only`] is off, and the MSI-X entry points at this CPU (moved
/// here if it pointed elsewhere; the lock keeps the thread here until the batch ends).
fn aim_at_this_cpu(irq: &mut QueueIrq) -> bool {
    x86_64::instructions::interrupts::are_enabled()
        && !POLL_ONLY.load(Ordering::Relaxed)
        && irq.aim_here()
}
