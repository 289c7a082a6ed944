//! virtio-blk through the `virtio-drivers` crate: its PCI transport and virtqueue, the kernel's
//! [`KernelHal`] for DMA memory.
//!
//! [`init`] takes the first virtio block function `drivers::pci` found (vendor 0x1af4, device
//! 0x1001 transitional or 0x1042 modern) whose BARs passed the checks, builds the transport and
//! the device, and keeps it behind a lock. A device the transport or the driver rejects (no
//! modern capabilities, a queue smaller than the driver's 16 entries, queue size 0, ...) or one
//! reporting capacity 0 is refused with a message; the kernel goes on without a disk.
//!
//! One request at a time, completion by polling the used ring (no interrupts, no MSI-X in this
//! pass): [`read`] and [`write`] submit one request for whole sectors and wait for it, with a
//! time limit; a device that does not answer in time is reset and taken out of service. The
//! request header and status byte live in heap memory (in the direct map), so with a data buffer
//! from the heap or from frames no bounce copy is made; [`flush`] uses `virtio-drivers`' blocking
//! call, whose header sits on the stack (bounced by the HAL) and whose wait has no time limit.

use alloc::boxed::Box;
use core::fmt;

use reference_kernel::pci::Bdf;
use spin::Once;
use virtio_drivers::device::blk::{BlkReq, BlkResp, SECTOR_SIZE, VirtIOBlk};
use virtio_drivers::transport::Transport;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};

use super::pci;
use crate::mm::dma::KernelHal;
use crate::sync::PreemptLock;

/// The queue size `virtio-drivers`' block driver uses (its `QUEUE_SIZE`, not exported).
const DRIVER_QUEUE_SIZE: u16 = 16;

/// How long one request may take before the device is declared dead.
const REQUEST_TIMEOUT_MS: u64 = 5_000;

/// An attached virtio block device.
struct Disk {
    blk: VirtIOBlk<KernelHal, PciTransport>,
    /// Request header and status, in heap memory the device reaches without a bounce.
    req: Box<BlkReq>,
    resp: Box<BlkResp>,
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
    /// The device reported an error (for example a sector past the end).
    Device(virtio_drivers::Error),
    /// The device did not complete the request in time; it was reset and taken out of service.
    Timeout,
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDisk => f.write_str("no virtio block device"),
            Self::BadLength(len) => write!(f, "buffer of {len} bytes is not whole sectors"),
            Self::Device(e) => write!(f, "device error: {e}"),
            Self::Timeout => write!(
                f,
                "no completion in {REQUEST_TIMEOUT_MS} ms; device reset and taken out of service"
            ),
        }
    }
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
        let mut transport = match PciTransport::new::<KernelHal, _>(&mut root, df) {
            Ok(t) => t,
            Err(e) => {
                crate::println!(
                    "  virtio:   blk {} refused by the PCI transport: {e}",
                    f.bdf
                );
                continue;
            }
        };
        // `virtio-drivers` would refuse these too, with a bare "Invalid parameter".
        let queue = transport.max_queue_size(0);
        if queue < u32::from(DRIVER_QUEUE_SIZE) {
            crate::println!(
                "  virtio:   blk {} refused: it offers a request queue of {queue} entries, the driver needs {DRIVER_QUEUE_SIZE}",
                f.bdf
            );
            continue;
        }
        let blk = match VirtIOBlk::<KernelHal, _>::new(transport) {
            Ok(b) => b,
            Err(e) => {
                crate::println!("  virtio:   blk {} refused: {e}", f.bdf);
                continue;
            }
        };
        let sectors = blk.capacity();
        if sectors == 0 {
            crate::println!("  virtio:   blk {} refused: it reports capacity 0", f.bdf);
            continue;
        }
        let info = DiskInfo {
            bdf: f.bdf,
            sectors,
            read_only: blk.readonly(),
        };
        INFO.call_once(|| info);
        crate::println!(
            "  virtio:   blk {}: {} sectors ({} MiB){}, queue of {}, polled completions",
            f.bdf,
            sectors,
            (sectors * SECTOR_SIZE as u64) >> 20,
            if info.read_only { ", read-only" } else { "" },
            blk.virt_queue_size()
        );
        return Some(Disk {
            blk,
            req: Box::default(),
            resp: Box::default(),
        });
    }
    None
}

/// Reads `buf.len() / 512` sectors starting at `sector` into `buf`.
pub fn read(sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
    request(sector, Op::Read(buf))
}

/// Writes `buf` (whole sectors) starting at `sector`.
pub fn write(sector: u64, buf: &[u8]) -> Result<(), BlkError> {
    request(sector, Op::Write(buf))
}

/// Asks the device to make written data durable (a no-op where it does not offer flush).
pub fn flush() -> Result<(), BlkError> {
    let mut guard = DISK.get().ok_or(BlkError::NoDisk)?.lock();
    let disk = guard.as_mut().ok_or(BlkError::NoDisk)?;
    disk.blk.flush().map_err(BlkError::Device)
}

enum Op<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

fn request(sector: u64, mut op: Op<'_>) -> Result<(), BlkError> {
    let len = match &op {
        Op::Read(b) => b.len(),
        Op::Write(b) => b.len(),
    };
    // `virtio-drivers` asserts these; refuse them here instead.
    if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
        return Err(BlkError::BadLength(len));
    }
    let block =
        usize::try_from(sector).map_err(|_| BlkError::Device(virtio_drivers::Error::IoError))?;
    let mut guard = DISK.get().ok_or(BlkError::NoDisk)?.lock();
    let disk = guard.as_mut().ok_or(BlkError::NoDisk)?;
    let Disk { blk, req, resp } = disk;
    // SAFETY: `req`, `resp` and the buffer stay borrowed here, untouched, until the same
    // request is completed below or the device is reset (dropping it stops its DMA) — the
    // lock keeps every other request out meanwhile.
    let token = unsafe {
        match &mut op {
            Op::Read(b) => blk.read_blocks_nb(block, req, b, resp),
            Op::Write(b) => blk.write_blocks_nb(block, req, b, resp),
        }
    }
    .map_err(BlkError::Device)?;
    let hz = crate::arch::x86_64::apic::info().map_or(1_000_000_000, |i| i.tsc_hz.max(1));
    let deadline = veridian_perf::arch::rdtsc().saturating_add(hz / 1000 * REQUEST_TIMEOUT_MS);
    let mut completed = true;
    while blk.peek_used() != Some(token) {
        if veridian_perf::arch::rdtsc() > deadline {
            completed = false;
            break;
        }
        core::hint::spin_loop();
    }
    if !completed {
        // Dropping the driver unsets the queue and resets the device, which then no longer
        // touches the buffers.
        *guard = None;
        crate::println!("virtio: blk request for sector {sector} timed out; device reset");
        return Err(BlkError::Timeout);
    }
    // SAFETY: the same token and buffers as the submission above.
    unsafe {
        match &mut op {
            Op::Read(b) => blk.complete_read_blocks(token, req, b, resp),
            Op::Write(b) => blk.complete_write_blocks(token, req, b, resp),
        }
    }
    .map_err(BlkError::Device)
}
