//! virtio-blk through the `virtio-drivers` crate: its PCI transport and virtqueue (a
//! [`VirtQueue`] of [`QUEUE_SIZE`] entries), the kernel's [`KernelHal`] for DMA memory.
//!
//! [`init`] takes the first virtio block function `drivers::pci` found (vendor 0x1af4, device
//! 0x1001 transitional or 0x1042 modern) whose BARs passed the checks, builds the transport,
//! negotiates features (read-only, flush, virtio 1.0) and sets up the request queue. A device
//! the transport rejects (no modern capabilities, ...), whose request queue is smaller than
//! [`QUEUE_SIZE`] (queue size 0 included) or that reports capacity 0 is refused with a message;
//! the kernel goes on without a disk.
//!
//! Requests go in batches: [`batch`] places up to [`MAX_BATCH`] requests (read, write, flush) in
//! the queue, notifies the device once (unless it has suppressed notifications), then waits
//! until each has completed, in whatever order the device completes them. [`read`], [`write`]
//! and [`flush`] are batches of one. Where the device has MSI-X, entry 0 is routed to the
//! waiting CPU's local APIC on [`VECTOR`] and the waiter halts its CPU until the interrupt
//! (it keeps the device lock and its CPU meanwhile); otherwise, with interrupts off, or after
//! [`poll_only`], it polls the used ring. Each
//! request's header and status byte live in a heap slot (in the direct map), so with a data
//! buffer from the heap or from frames no bounce copy is made. A request past the end of the
//! disk is refused before it reaches the device. A batch not completed within
//! [`REQUEST_TIMEOUT_MS`], or a used-ring entry naming a request the batch did not submit,
//! resets the device and takes it out of service.

use alloc::boxed::Box;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use reference_kernel::pci::Bdf;
use spin::Once;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};
use virtio_drivers::transport::{DeviceStatus, Transport};

use super::pci;
use crate::arch::x86_64::idt::{self, InterruptFrame};
use crate::arch::x86_64::msix::{self, Table};
use crate::arch::x86_64::pci::ConfigAccess;
use crate::arch::x86_64::{apic, percpu};
use crate::mm::dma::KernelHal;
use crate::sync::PreemptLock;

/// Bytes in a sector.
pub const SECTOR_SIZE: usize = 512;

/// Entries in the request queue. A request takes three descriptors (header, data, status; a
/// flush two) as `virtio-drivers` is built without indirect descriptors, so [`MAX_BATCH`]
/// requests (96 descriptors) fit at once.
pub const QUEUE_SIZE: usize = 128;

/// The most requests one notification submits.
pub const MAX_BATCH: usize = 32;

/// The request queue's index.
const QUEUE: u16 = 0;

/// How long one batch may take before the device is declared dead.
const REQUEST_TIMEOUT_MS: u64 = 5_000;

/// Device feature bits the driver accepts (virtio 1.2, 5.2.3): read-only, flush, version 1.
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;
const F_VERSION_1: u64 = 1 << 32;

/// Request types (virtio 1.2, 5.2.6).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;

/// The status byte before the device writes it (not one of the device's values 0..=2).
const STATUS_UNSET: u8 = 0xff;

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

/// The vector of the request queue's MSI-X interrupt (free in the kernel's vector map: 0x20-0x24
/// timer, reschedule, shootdown, PMI, serial; 0x30 the test vector; 0x50.. user lines).
pub const VECTOR: u8 = 0x40;

/// The request queue's completion interrupt: MSI-X table entry 0, routed to the local APIC of
/// the CPU that last waited.
struct Irq {
    table: Table,
    apic_id: u32,
}

/// One request's header (`virtio_blk_req`: type, reserved, sector) and status byte.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    header: [u8; 16],
    status: [u8; 1],
}

/// An attached virtio block device.
///
/// Field order matters for drop: after [`Drop::drop`] unsets the queue, the transport (which
/// resets the device) is dropped before the queue's DMA memory is freed.
struct Disk {
    transport: PciTransport,
    queue: VirtQueue<KernelHal, QUEUE_SIZE>,
    /// Headers and status bytes, in heap memory the device reaches without a bounce.
    slots: Box<[Slot; MAX_BATCH]>,
    flush: bool,
    sectors: u64,
    read_only: bool,
    /// Completion by interrupt; `None`: polled.
    irq: Option<Irq>,
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.transport.queue_unset(QUEUE);
    }
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

/// Why a block request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkError {
    /// No disk attached (or it was taken out of service).
    NoDisk,
    /// The buffer is empty or not a whole number of sectors.
    BadLength(usize),
    /// The request reaches past the last sector (or the sector number overflows).
    OutOfRange {
        /// First sector asked for.
        sector: u64,
        /// Sectors asked for.
        count: u64,
    },
    /// A write to a read-only disk.
    ReadOnly,
    /// Fewer result places than requests were passed to [`batch`].
    NoRoomForResults,
    /// The device reported an error, or `virtio-drivers` refused the request.
    Device(virtio_drivers::Error),
    /// The device did not complete the batch in time; it was reset and taken out of service.
    Timeout,
    /// The device completed a request the batch did not submit; it was reset and taken out of
    /// service.
    BadCompletion(u16),
    /// The request was not run because an earlier failure took the device out of service.
    NotRun,
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDisk => f.write_str("no virtio block device"),
            Self::BadLength(len) => write!(f, "buffer of {len} bytes is not whole sectors"),
            Self::OutOfRange { sector, count } => {
                write!(f, "sectors {sector}+{count} reach past the end of the disk")
            }
            Self::ReadOnly => f.write_str("the disk is read-only"),
            Self::NoRoomForResults => f.write_str("fewer results than requests"),
            Self::Device(e) => write!(f, "device error: {e}"),
            Self::Timeout => write!(
                f,
                "no completion in {REQUEST_TIMEOUT_MS} ms; device reset and taken out of service"
            ),
            Self::BadCompletion(id) => write!(
                f,
                "the device completed descriptor {id}, which no request of the batch used; \
                 device reset and taken out of service"
            ),
            Self::NotRun => f.write_str("not run: the device was taken out of service"),
        }
    }
}

/// One block request of a [`batch`].
pub enum Request<'a> {
    /// Reads `buf.len() / 512` sectors starting at `sector` into `buf`.
    Read {
        /// First sector.
        sector: u64,
        /// Whole sectors.
        buf: &'a mut [u8],
    },
    /// Writes `buf` (whole sectors) starting at `sector`.
    Write {
        /// First sector.
        sector: u64,
        /// Whole sectors.
        buf: &'a [u8],
    },
    /// Makes what was written before durable (completes at once where the device does not
    /// offer flush).
    Flush,
}

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
        disk.queue.set_dev_notify(interrupts);
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
    let candidates = pci::devices()
        .iter()
        .filter(|d| d.function.vendor == 0x1af4 && matches!(d.function.device, 0x1001 | 0x1042));
    for device in candidates {
        let f = &device.function;
        if !device.bars_usable() || f.issue.is_some() {
            crate::println!(
                "  virtio:   blk {} refused: its BARs or capability list failed the checks",
                f.bdf
            );
            continue;
        }
        let df = DeviceFunction {
            bus: f.bdf.bus,
            device: f.bdf.device,
            function: f.bdf.function,
        };
        let mut root = PciRoot::new(access);
        let transport = match PciTransport::new::<KernelHal, _>(&mut root, df) {
            Ok(t) => t,
            Err(e) => {
                crate::println!(
                    "  virtio:   blk {} refused by the PCI transport: {e}",
                    f.bdf
                );
                continue;
            }
        };
        match set_up(transport, &access, f) {
            Ok(disk) => {
                let info = DiskInfo {
                    bdf: f.bdf,
                    sectors: disk.sectors,
                    read_only: disk.read_only,
                };
                INFO.call_once(|| info);
                crate::println!(
                    "  virtio:   blk {}: {} sectors ({} MiB){}, queue of {QUEUE_SIZE}, batches of up \
                     to {MAX_BATCH}, {}",
                    f.bdf,
                    disk.sectors,
                    (disk.sectors * SECTOR_SIZE as u64) >> 20,
                    if disk.read_only { ", read-only" } else { "" },
                    if disk.irq.is_some() {
                        "completions by MSI-X interrupt (vector 0x40)"
                    } else {
                        "polled completions"
                    }
                );
                return Some(disk);
            }
            // Dropping the transport (inside `set_up`) reset the device.
            Err(why) => crate::println!("  virtio:   blk {} refused: {why}", f.bdf),
        }
    }
    None
}

/// Device initialisation (virtio 1.2, 3.1.1): reset, acknowledge, negotiate features, read the
/// capacity, set up the request queue, driver ready.
fn set_up(
    mut transport: PciTransport,
    access: &ConfigAccess,
    f: &reference_kernel::pci::PciFunction,
) -> Result<Disk, alloc::string::String> {
    use alloc::format;
    // `VirtQueue::new` would refuse these too, with a bare "Invalid parameter".
    let offered = transport.max_queue_size(QUEUE);
    if offered < QUEUE_SIZE as u32 {
        return Err(format!(
            "it offers a request queue of {offered} entries, the driver needs {QUEUE_SIZE}"
        ));
    }
    transport.set_status(DeviceStatus::empty());
    transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
    let features = transport.read_device_features() & (F_RO | F_FLUSH | F_VERSION_1);
    transport.write_driver_features(features);
    transport
        .set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK);
    if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
        return Err(format!("it did not accept the features {features:#x}"));
    }
    transport.set_guest_page_size(4096);
    let sectors = transport
        .read_consistent(|| {
            let low = transport.read_config_space::<u32>(0)?;
            let high = transport.read_config_space::<u32>(4)?;
            Ok(u64::from(low) | u64::from(high) << 32)
        })
        .map_err(|e| format!("its capacity could not be read: {e}"))?;
    if sectors == 0 {
        return Err("it reports capacity 0".into());
    }
    let mut queue = VirtQueue::new(&mut transport, QUEUE, false, false)
        .map_err(|e| format!("its request queue could not be set up: {e}"))?;
    let irq = match route_interrupt(access, f) {
        Ok(irq) => Some(irq),
        Err(why) => {
            crate::println!(
                "  virtio:   blk {}: no completion interrupt ({why}); polling",
                f.bdf
            );
            None
        }
    };
    // Polled: ask the device not to interrupt.
    queue.set_dev_notify(irq.is_some());
    transport.finish_init();
    Ok(Disk {
        transport,
        queue,
        slots: Box::new(
            [Slot {
                header: [0; 16],
                status: [STATUS_UNSET],
            }; MAX_BATCH],
        ),
        flush: features & F_FLUSH != 0,
        sectors,
        read_only: features & F_RO != 0,
        irq,
    })
}

/// Routes the request queue's interrupt: MSI-X entry 0 to this CPU's local APIC with
/// [`VECTOR`], and the queue's MSI-X vector (in the virtio common configuration, which
/// `virtio-drivers`' transport does not expose) set to entry 0 and read back.
fn route_interrupt(
    access: &ConfigAccess,
    f: &reference_kernel::pci::PciFunction,
) -> Result<Irq, &'static str> {
    use reference_kernel::pci::ConfigSpace;
    // The virtio common configuration: vendor capability (0x09) of type 1 (virtio 1.2, 4.1.4).
    let (bar, offset) = f
        .capabilities()
        .iter()
        .filter(|c| c.id == 0x09 && access.read8(f.bdf, c.offset + 3) == 1)
        .map(|c| {
            (
                access.read8(f.bdf, c.offset + 4),
                u64::from(access.read32(f.bdf, c.offset + 8)),
            )
        })
        .next()
        .ok_or("no virtio common configuration capability")?;
    let table = Table::locate(access, f)?;
    let apic_id = percpu::current().ok_or("no per-CPU block")?.apic_id;
    idt::set_handler(VECTOR, completion_interrupt).map_err(|_| "vector 0x40 is taken")?;
    table.route(access, f, 0, apic_id, VECTOR)?;
    // queue_select (0x16) = 0, queue_msix_vector (0x1a) = entry 0.
    if !msix::bar_write16(f, bar, offset + 0x16, QUEUE)
        || !msix::bar_write16(f, bar, offset + 0x1a, 0)
        || msix::bar_read16(f, bar, offset + 0x1a) != Some(0)
    {
        return Err("the device did not take MSI-X entry 0 for its queue");
    }
    Ok(Irq { table, apic_id })
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

/// Runs `requests`, [`MAX_BATCH`] at a time with one notification for each group, and writes
/// each request's outcome to the same place in `results`. The requests of a group may complete
/// in any order; a write and a read of the same sectors in one group are not ordered.
///
/// # Errors
/// [`BlkError::NoRoomForResults`] when `results` is shorter than `requests` (nothing runs),
/// [`BlkError::NoDisk`], or a failure that took the device out of service
/// ([`BlkError::Timeout`], [`BlkError::BadCompletion`]); requests it left unfinished carry the
/// same error, those not started [`BlkError::NotRun`].
pub fn batch(
    requests: &mut [Request<'_>],
    results: &mut [Result<(), BlkError>],
) -> Result<(), BlkError> {
    if results.len() < requests.len() {
        return Err(BlkError::NoRoomForResults);
    }
    results.fill(Err(BlkError::NotRun));
    let lock = DISK.get().ok_or(BlkError::NoDisk)?;
    for (group, outcome) in requests
        .chunks_mut(MAX_BATCH)
        .zip(results.chunks_mut(MAX_BATCH))
    {
        let mut guard = lock.lock();
        let disk = guard.as_mut().ok_or(BlkError::NoDisk)?;
        if let Err(e) = disk.run(group, outcome) {
            // Dropping the disk unsets the queue and resets the device, which then no longer
            // touches the buffers of the unfinished requests.
            *guard = None;
            crate::println!("virtio: blk {e}");
            return Err(e);
        }
    }
    Ok(())
}

impl Disk {
    /// Submits `group` (at most [`MAX_BATCH`]) with one notification and polls until each has
    /// completed. On `Err` the device must be reset before the buffers are touched again.
    fn run(
        &mut self,
        group: &mut [Request<'_>],
        outcome: &mut [Result<(), BlkError>],
    ) -> Result<(), BlkError> {
        let Self {
            transport,
            queue,
            slots,
            irq,
            ..
        } = self;
        // Sleep until the interrupt where interrupts are on (never enabled blindly here) and
        // the entry points at this CPU (the lock keeps the thread here until the batch ends).
        let sleep = match irq {
            Some(irq)
                if x86_64::instructions::interrupts::are_enabled()
                    && !POLL_ONLY.load(Ordering::Relaxed) =>
            {
                let here = percpu::current().map(|c| c.apic_id);
                match here {
                    Some(id) if id == irq.apic_id => true,
                    Some(id) => {
                        let moved = irq.table.retarget(0, id, VECTOR).is_ok();
                        if moved {
                            irq.apic_id = id;
                        }
                        moved
                    }
                    None => false,
                }
            }
            _ => false,
        };
        let mut tokens = [None::<u16>; MAX_BATCH];
        let mut pending = 0usize;
        for (i, request) in group.iter_mut().enumerate() {
            let header = match check(request, self.sectors, self.read_only, self.flush) {
                Ok(Some(header)) => header,
                Ok(None) => {
                    outcome[i] = Ok(());
                    continue;
                }
                Err(e) => {
                    outcome[i] = Err(e);
                    continue;
                }
            };
            let slot = &mut slots[i];
            slot.header = header;
            slot.status = [STATUS_UNSET];
            // SAFETY: the slot and the request's buffer are not touched again until the same
            // token is popped below or the caller resets the device (dropping it stops its
            // DMA); the lock keeps every other batch out of the slots meanwhile.
            let added = with_buffers(slot, request, |inputs, outputs| unsafe {
                queue.add(inputs, outputs)
            });
            match added {
                Ok(token) => {
                    tokens[i] = Some(token);
                    pending += 1;
                }
                Err(e) => outcome[i] = Err(BlkError::Device(e)),
            }
        }
        if pending > 0 && queue.should_notify() {
            transport.notify(QUEUE);
            NOTIFICATIONS.fetch_add(1, Ordering::Relaxed);
        }
        let hz = crate::arch::x86_64::apic::info().map_or(1_000_000_000, |i| i.tsc_hz.max(1));
        let deadline = veridian_perf::arch::rdtsc().saturating_add(hz / 1000 * REQUEST_TIMEOUT_MS);
        while pending > 0 {
            let failure = match queue.peek_used() {
                None if veridian_perf::arch::rdtsc() > deadline => Some(BlkError::Timeout),
                None if sleep => {
                    use x86_64::instructions::interrupts;
                    // Interrupts off between the look and `hlt`: `sti; hlt` then sleeps
                    // without missing an interrupt that arrived after the look.
                    interrupts::disable();
                    if queue.can_pop() {
                        interrupts::enable();
                    } else {
                        SLEEPS.fetch_add(1, Ordering::Relaxed);
                        interrupts::enable_and_hlt();
                    }
                    continue;
                }
                None => {
                    EMPTY_POLLS.fetch_add(1, Ordering::Relaxed);
                    core::hint::spin_loop();
                    continue;
                }
                Some(token) => match tokens.iter().position(|t| *t == Some(token)) {
                    None => Some(BlkError::BadCompletion(token)),
                    Some(i) => {
                        tokens[i] = None;
                        pending -= 1;
                        let slot = &mut slots[i];
                        // SAFETY: the same token and buffers as `add` above.
                        let popped = with_buffers(slot, &mut group[i], |inputs, outputs| unsafe {
                            queue.pop_used(token, inputs, outputs)
                        });
                        COMPLETED.fetch_add(1, Ordering::Relaxed);
                        outcome[i] = match popped {
                            Err(e) => Err(BlkError::Device(e)),
                            Ok(_) => status(slot.status[0]),
                        };
                        None
                    }
                },
            };
            if let Some(e) = failure {
                for (i, t) in tokens.iter().enumerate() {
                    if t.is_some() {
                        outcome[i] = Err(e);
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

/// The request's header, `None` for a flush the device does not need, or why it cannot run.
fn check(
    request: &Request<'_>,
    sectors: u64,
    read_only: bool,
    flush: bool,
) -> Result<Option<[u8; 16]>, BlkError> {
    let (kind, sector, len) = match request {
        Request::Read { sector, buf } => (T_IN, *sector, buf.len()),
        Request::Write { .. } if read_only => return Err(BlkError::ReadOnly),
        Request::Write { sector, buf } => (T_OUT, *sector, buf.len()),
        Request::Flush => return Ok(flush.then(|| header(T_FLUSH, 0))),
    };
    if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
        return Err(BlkError::BadLength(len));
    }
    let count = (len / SECTOR_SIZE) as u64;
    if sector.checked_add(count).is_none_or(|end| end > sectors) {
        return Err(BlkError::OutOfRange { sector, count });
    }
    Ok(Some(header(kind, sector)))
}

/// `virtio_blk_req`'s header: type, reserved, sector, little-endian.
fn header(kind: u32, sector: u64) -> [u8; 16] {
    let mut h = [0; 16];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}

/// The device's status byte as a result (virtio 1.2, 5.2.6: 0 OK, 1 IOERR, 2 UNSUPP).
fn status(byte: u8) -> Result<(), BlkError> {
    match byte {
        0 => Ok(()),
        2 => Err(BlkError::Device(virtio_drivers::Error::Unsupported)),
        _ => Err(BlkError::Device(virtio_drivers::Error::IoError)),
    }
}

/// Calls `f` with the request's device-readable buffers (header, written data) and
/// device-writable ones (read data, status), the same slices for `add` and `pop_used`.
fn with_buffers<R>(
    slot: &mut Slot,
    request: &mut Request<'_>,
    f: impl for<'b> FnOnce(&'b [&'b [u8]], &'b mut [&'b mut [u8]]) -> R,
) -> R {
    let Slot { header, status } = slot;
    match request {
        Request::Read { buf, .. } => f(&[&header[..]], &mut [&mut **buf, &mut status[..]]),
        Request::Write { buf, .. } => f(&[&header[..], buf], &mut [&mut status[..]]),
        Request::Flush => f(&[&header[..]], &mut [&mut status[..]]),
    }
}
