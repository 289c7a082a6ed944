//! virtio-blk under `virtio-drivers` (feature `virtio`): [`BlkDevice`], batches of up to
//! [`MAX_BATCH`] requests with one notification, and [`VirtioBlkBackend`], a [`Backend`] over it.
//!
//! The embedder supplies what is particular to its kernel: the `virtio-drivers`
//! [`Hal`] (DMA memory, device addresses of the buffers it is handed), the
//! [`Transport`] (PCI or MMIO, found however it finds devices), and how to wait while the device
//! works (spin, or sleep until its interrupt: the closure passed to [`BlkDevice::batch`] and to
//! [`VirtioBlkBackend::new`]). The crate's queue code is `virtio-drivers`' [`VirtQueue`]; the
//! device initialisation and the request layout (virtio 1.2, 5.2) are here.
//!
//! Zero copy: a request's data buffer goes to the device as it is, shared through the `Hal`
//! (with the kernel's `Hal` a buffer in DMA-able memory is its physical address, no bounce).
//! [`BufferPool`] regions from a [`DmaSource`](crate::DmaSource) over DMA memory are such
//! buffers, so a read into a pool buffer ([`BatchedIo`](crate::BatchedIo) with
//! [`IoBuf::Pool`](crate::IoBuf)) lands where the caller takes it from.

pub mod net;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::borrow::BorrowMut;
use core::fmt;
use core::marker::PhantomData;

use virtio_drivers::Hal;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceStatus, Transport};

use crate::backend::Backend;
use crate::entry::{Cqe, Opcode, Sqe, SqeFlags};
use crate::error::errno;
use crate::pool::BufferPool;
use crate::ring::{Consumer, OverflowProducer};

/// Bytes in a sector.
pub const SECTOR_SIZE: usize = 512;

/// Entries in the request queue. A request takes three descriptors (header, data, status; a
/// flush two: `virtio-drivers` without its `alloc` feature has no indirect descriptors), so
/// [`MAX_BATCH`] requests (96 descriptors) fit at once.
pub const QUEUE_SIZE: usize = 128;

/// The most requests one notification submits.
pub const MAX_BATCH: usize = 32;

/// The request queue's index.
const QUEUE: u16 = 0;

/// Device feature bits accepted (virtio 1.2, 5.2.3 and 6): read-only, flush, version 1.
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;
const F_VERSION_1: u64 = 1 << 32;

/// Request types (virtio 1.2, 5.2.6).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;

/// The status byte before the device writes it (not one of the device's values 0..=2).
const STATUS_UNSET: u8 = 0xff;

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
    /// Fewer result places than requests were passed to [`BlkDevice::batch`].
    NoRoomForResults,
    /// The device reported an error, or `virtio-drivers` refused the request.
    Device(virtio_drivers::Error),
    /// The wait gave up before the batch completed; the device was reset and taken out of
    /// service.
    Timeout,
    /// The device completed a descriptor no request of the batch used; it was reset and taken
    /// out of service.
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
            Self::Timeout => {
                f.write_str("no completion in time; device reset and taken out of service")
            }
            Self::BadCompletion(id) => write!(
                f,
                "the device completed descriptor {id}, which no request of the batch used; \
                 device reset and taken out of service"
            ),
            Self::NotRun => f.write_str("not run: the device was taken out of service"),
        }
    }
}

impl BlkError {
    /// The negated errno a [`Cqe`] carries for this error.
    pub const fn errno(&self) -> i32 {
        match self {
            Self::BadLength(_) | Self::OutOfRange { .. } | Self::NoRoomForResults => -errno::EINVAL,
            Self::ReadOnly => -errno::EPERM,
            Self::NoDisk => -errno::EBADF,
            Self::Device(virtio_drivers::Error::Unsupported) => -errno::EOPNOTSUPP,
            Self::NotRun => -errno::ECANCELED,
            Self::Device(_) | Self::Timeout | Self::BadCompletion(_) => -errno::EIO,
        }
    }
}

/// One block request of a batch.
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

/// What [`BlkDevice::new`] refused, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// The request queue is smaller than [`QUEUE_SIZE`] (0 included).
    QueueTooSmall(u32),
    /// The device did not accept the features (the bits offered).
    Features(u64),
    /// Capacity 0.
    Empty,
    /// What `virtio-drivers` reported reading the configuration or setting up the queue.
    Driver(virtio_drivers::Error),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QueueTooSmall(n) => write!(
                f,
                "it offers a request queue of {n} entries, the driver needs {QUEUE_SIZE}"
            ),
            Self::Features(bits) => write!(f, "it did not accept the features {bits:#x}"),
            Self::Empty => f.write_str("it reports capacity 0"),
            Self::Driver(e) => write!(f, "{e}"),
        }
    }
}

/// One request's header (`virtio_blk_req`: type, reserved, sector) and status byte.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    header: [u8; 16],
    status: [u8; 1],
}

/// A virtio block device: its transport, its request queue and the requests' headers.
///
/// Field order matters for drop: after [`Drop::drop`] unsets the queue, the transport (whose
/// drop resets the device, as `virtio-drivers`' PCI transport does) goes before the queue's DMA
/// memory is freed.
pub struct BlkDevice<H: Hal, T: Transport> {
    transport: T,
    queue: VirtQueue<H, QUEUE_SIZE>,
    /// Headers and status bytes, in heap memory (shared with the device through the `Hal`).
    slots: Box<[Slot; MAX_BATCH]>,
    flush: bool,
    sectors: u64,
    read_only: bool,
    /// Reset after a failed batch: every request fails with [`BlkError::NoDisk`].
    dead: bool,
    notifications: u64,
    completed: u64,
}

impl<H: Hal, T: Transport> Drop for BlkDevice<H, T> {
    fn drop(&mut self) {
        self.transport.queue_unset(QUEUE);
    }
}

impl<H: Hal, T: Transport> BlkDevice<H, T> {
    /// Initialises the device (virtio 1.2, 3.1.1): reset, acknowledge, negotiate features
    /// (read-only, flush, version 1), read the capacity, set up the request queue, driver ready.
    /// Device interrupts start off ([`set_interrupts`](Self::set_interrupts)).
    ///
    /// # Errors
    /// [`SetupError`]; the transport is dropped (which resets a PCI device).
    pub fn new(mut transport: T) -> Result<Self, SetupError> {
        let offered = transport.max_queue_size(QUEUE);
        if offered < QUEUE_SIZE as u32 {
            return Err(SetupError::QueueTooSmall(offered));
        }
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let features = transport.read_device_features() & (F_RO | F_FLUSH | F_VERSION_1);
        transport.write_driver_features(features);
        transport.set_status(
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK,
        );
        if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
            return Err(SetupError::Features(features));
        }
        transport.set_guest_page_size(4096);
        let sectors = transport
            .read_consistent(|| {
                let low = transport.read_config_space::<u32>(0)?;
                let high = transport.read_config_space::<u32>(4)?;
                Ok(u64::from(low) | u64::from(high) << 32)
            })
            .map_err(SetupError::Driver)?;
        if sectors == 0 {
            return Err(SetupError::Empty);
        }
        let mut queue =
            VirtQueue::new(&mut transport, QUEUE, false, false).map_err(SetupError::Driver)?;
        queue.set_dev_notify(false);
        transport.finish_init();
        Ok(Self {
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
            dead: false,
            notifications: 0,
            completed: 0,
        })
    }

    /// Size in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether the device refuses writes.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether a failed batch reset the device (every request now fails).
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Notifications sent to the device.
    pub fn notifications(&self) -> u64 {
        self.notifications
    }

    /// Requests the device completed.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Asks the device to interrupt after it uses buffers (`true`) or not to.
    pub fn set_interrupts(&mut self, on: bool) {
        self.queue.set_dev_notify(on);
    }

    /// Acknowledges the device's interrupt (the ISR read; MSI-X needs none).
    pub fn ack_interrupt(&mut self) {
        let _ = self.transport.ack_interrupt();
    }

    /// Runs `requests`, [`MAX_BATCH`] at a time with one notification for each group (none
    /// where the device has suppressed notifications), each outcome in the same place of
    /// `results`. The requests of a group may complete in any order: a write and a read of the
    /// same sectors in one group are not ordered. While nothing new is in the used ring, `wait`
    /// is called (spin, or sleep until the device's interrupt) with a probe that says whether
    /// something is there now (to look again with interrupts off before sleeping); it returns
    /// `false` to give up.
    ///
    /// # Errors
    /// [`BlkError::NoRoomForResults`] when `results` is shorter than `requests` (nothing
    /// runs), [`BlkError::NoDisk`] after a reset, or the failure that made this call reset the
    /// device ([`BlkError::Timeout`], [`BlkError::BadCompletion`]); requests it left
    /// unfinished carry the same error, those not started [`BlkError::NotRun`]. After a reset
    /// the device no longer touches any buffer.
    pub fn batch(
        &mut self,
        requests: &mut [Request<'_>],
        results: &mut [Result<(), BlkError>],
        mut wait: impl FnMut(&dyn Fn() -> bool) -> bool,
    ) -> Result<(), BlkError> {
        if results.len() < requests.len() {
            return Err(BlkError::NoRoomForResults);
        }
        results.fill(Err(BlkError::NotRun));
        for (group, outcome) in requests
            .chunks_mut(MAX_BATCH)
            .zip(results.chunks_mut(MAX_BATCH))
        {
            if self.dead {
                return Err(BlkError::NoDisk);
            }
            if let Err(e) = self.group(group, outcome, &mut wait) {
                // Reset: the device stops using the queue and the buffers of the unfinished
                // requests; the queue's memory stays allocated until the device is dropped.
                self.transport.queue_unset(QUEUE);
                self.transport.set_status(DeviceStatus::empty());
                self.dead = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// One group of at most [`MAX_BATCH`]. On `Err` the device must be reset before the
    /// buffers are touched again.
    fn group(
        &mut self,
        group: &mut [Request<'_>],
        outcome: &mut [Result<(), BlkError>],
        wait: &mut impl FnMut(&dyn Fn() -> bool) -> bool,
    ) -> Result<(), BlkError> {
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
            let slot = &mut self.slots[i];
            slot.header = header;
            slot.status = [STATUS_UNSET];
            let queue = &mut self.queue;
            // SAFETY: the slot and the request's buffer are not touched again until the same
            // token is popped below or the device is reset (`batch` does so on `Err`), and
            // `&mut self` keeps every other batch out of the slots meanwhile.
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
        if pending > 0 && self.queue.should_notify() {
            self.transport.notify(QUEUE);
            self.notifications += 1;
        }
        while pending > 0 {
            let Some(token) = self.queue.peek_used() else {
                let queue = &self.queue;
                if wait(&|| queue.can_pop()) {
                    continue;
                }
                return Err(fail(&tokens, outcome, BlkError::Timeout));
            };
            let Some(i) = tokens.iter().position(|t| *t == Some(token)) else {
                return Err(fail(&tokens, outcome, BlkError::BadCompletion(token)));
            };
            tokens[i] = None;
            pending -= 1;
            let slot = &mut self.slots[i];
            let queue = &mut self.queue;
            // SAFETY: the same token and buffers as `add` above.
            let popped = with_buffers(slot, &mut group[i], |inputs, outputs| unsafe {
                queue.pop_used(token, inputs, outputs)
            });
            self.completed += 1;
            outcome[i] = match popped {
                Err(e) => Err(BlkError::Device(e)),
                Ok(_) => status(slot.status[0]),
            };
        }
        Ok(())
    }
}

/// Marks the requests still in flight with `e`; returns `e`.
fn fail(
    tokens: &[Option<u16>; MAX_BATCH],
    outcome: &mut [Result<(), BlkError>],
    e: BlkError,
) -> BlkError {
    for (slot, token) in outcome.iter_mut().zip(tokens) {
        if token.is_some() {
            *slot = Err(e);
        }
    }
    e
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
/// device-writable ones (read data, status): the same slices for `add` and `pop_used`.
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

/// The file descriptor (and registered-file index) that names the disk in entries for
/// [`VirtioBlkBackend`].
pub const DISK_FD: i32 = 0;

/// Registered pools a [`VirtioBlkBackend`] keeps.
const POOL_SLOTS: usize = 16;

/// How one entry runs on the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Completes without the device, with this result.
    Now(i32),
    /// A read or write of `len` bytes at `addr`, starting at `sector`.
    Io {
        write: bool,
        sector: u64,
        addr: usize,
        len: u32,
    },
    /// A flush.
    Flush,
}

/// What entry `sqe` asks of the disk. Byte offsets and lengths must be whole sectors;
/// vectored operations are not offered.
fn plan(sqe: &Sqe) -> Plan {
    if sqe.validate().is_err() {
        return Plan::Now(-errno::EINVAL);
    }
    if sqe.opcode == Opcode::Nop {
        return Plan::Now(0);
    }
    // Not registered or registered: the disk is descriptor 0 and registered file 0.
    if sqe.fd != DISK_FD {
        return Plan::Now(-errno::EBADF);
    }
    let write = match sqe.opcode {
        Opcode::Fsync => return Plan::Flush,
        Opcode::Readv | Opcode::Writev => return Plan::Now(-errno::EOPNOTSUPP),
        Opcode::Read => false,
        Opcode::Write => true,
        Opcode::Nop => return Plan::Now(0),
    };
    let sector_size = SECTOR_SIZE as u64;
    if sqe.len == 0
        || !u64::from(sqe.len).is_multiple_of(sector_size)
        || !sqe.offset.is_multiple_of(sector_size)
    {
        return Plan::Now(-errno::EINVAL);
    }
    if sqe.addr == 0 {
        return Plan::Now(-errno::EFAULT);
    }
    Plan::Io {
        write,
        sector: sqe.offset / sector_size,
        addr: sqe.addr,
        len: sqe.len,
    }
}

/// The end of the group that starts at `start`: at most [`MAX_BATCH`] entries, and an entry
/// after one with [`SqeFlags::LINK`], or one with [`SqeFlags::DRAIN`], starts a new group (a
/// group's requests run concurrently, so ordering waits for the group before).
fn group_end(sqes: &[Sqe], start: usize) -> usize {
    let mut end = start + 1;
    while end < sqes.len()
        && end - start < MAX_BATCH
        && !sqes[end - 1].flags.contains(SqeFlags::LINK)
        && !sqes[end].flags.contains(SqeFlags::DRAIN)
    {
        end += 1;
    }
    end.min(sqes.len())
}

/// A [`Backend`] over a [`BlkDevice`]: entries on [`DISK_FD`] (`Read`, `Write` with byte
/// offsets and lengths in whole sectors, `Fsync` as a flush, `Nop`) go to the device in groups
/// of up to [`MAX_BATCH`] with one notification each.
///
/// [`enter`](Backend::enter) completes every entry it takes before it returns (waiting with the
/// embedder's `wait`, as [`BlkDevice::batch`] does), so [`outstanding`](Backend::outstanding)
/// is always 0. `LINK` and `DRAIN` hold: a linked entry and a draining one start a new group,
/// and after a failed linked entry the rest of its chain completes with `-ECANCELED`.
/// `Readv`/`Writev` complete with `-EOPNOTSUPP`, other descriptors with `-EBADF`, unaligned
/// offsets or lengths with `-EINVAL`, requests past the end with `-EINVAL`, writes to a
/// read-only disk with `-EPERM`, device errors with `-EIO`.
///
/// `D` is the device or a mutable borrow of it (`&mut BlkDevice<H, T>`: an embedder that keeps
/// its device elsewhere lends it for as long as the back-end lives).
pub struct VirtioBlkBackend<H: Hal, T: Transport, D, W>
where
    D: BorrowMut<BlkDevice<H, T>>,
    W: FnMut(&dyn Fn() -> bool) -> bool,
{
    device: D,
    wait: W,
    pools: Vec<BufferPool>,
    /// Entries taken by the current `enter` (kept for its allocation).
    taken: Vec<Sqe>,
    device_type: PhantomData<fn() -> (H, T)>,
}

impl<H: Hal, T: Transport, D, W> VirtioBlkBackend<H, T, D, W>
where
    D: BorrowMut<BlkDevice<H, T>>,
    W: FnMut(&dyn Fn() -> bool) -> bool,
{
    /// A back-end over `device`; `wait` is called while the device works, as by
    /// [`BlkDevice::batch`] (spin, or sleep until its interrupt), and returns `false` to give up
    /// (the device is then reset and every later entry fails).
    pub fn new(device: D, wait: W) -> Self {
        Self {
            device,
            wait,
            pools: Vec::new(),
            taken: Vec::new(),
            device_type: PhantomData,
        }
    }

    /// The device.
    pub fn device(&self) -> &BlkDevice<H, T> {
        self.device.borrow()
    }

    /// The device, to turn interrupts on or acknowledge them.
    pub fn device_mut(&mut self) -> &mut BlkDevice<H, T> {
        self.device.borrow_mut()
    }

    /// Runs `self.taken[start..end]` as one group; results into `res`.
    ///
    /// # Safety
    /// As [`Backend::enter`] for the entries of the group.
    unsafe fn run_group(&mut self, start: usize, end: usize, cancel_first: bool, res: &mut [i32]) {
        let mut requests: Vec<Request<'_>> = Vec::with_capacity(end - start);
        let mut places = [0usize; MAX_BATCH];
        for (k, sqe) in self.taken[start..end].iter().enumerate() {
            if k == 0 && cancel_first {
                res[k] = -errno::ECANCELED;
                continue;
            }
            let request = match plan(sqe) {
                Plan::Now(r) => {
                    res[k] = r;
                    continue;
                }
                Plan::Flush => Request::Flush,
                Plan::Io {
                    write: false,
                    sector,
                    addr,
                    len,
                } => Request::Read {
                    sector,
                    // SAFETY: the caller guarantees the entry's `len` bytes at `addr` are
                    // valid, and for reads accessed by nobody else, until its completion.
                    buf: unsafe {
                        core::slice::from_raw_parts_mut(
                            core::ptr::with_exposed_provenance_mut(addr),
                            len as usize,
                        )
                    },
                },
                Plan::Io {
                    write: true,
                    sector,
                    addr,
                    len,
                } => Request::Write {
                    sector,
                    // SAFETY: as above, readable.
                    buf: unsafe {
                        core::slice::from_raw_parts(
                            core::ptr::with_exposed_provenance(addr),
                            len as usize,
                        )
                    },
                },
            };
            places[requests.len()] = k;
            requests.push(request);
        }
        let mut results = [Err(BlkError::NotRun); MAX_BATCH];
        // Per-request outcomes land in `results`; the call's own error is among them.
        let count = requests.len();
        let _ =
            self.device
                .borrow_mut()
                .batch(&mut requests, &mut results[..count], &mut self.wait);
        for (n, request) in requests.iter().enumerate() {
            let k = places[n];
            res[k] = match (results[n], request) {
                (Err(e), _) => e.errno(),
                (Ok(()), Request::Flush) => 0,
                (Ok(()), Request::Read { buf, .. }) => buf.len() as i32,
                (Ok(()), Request::Write { buf, .. }) => buf.len() as i32,
            };
        }
    }
}

// SAFETY: `enter` turns each entry into at most one request whose buffer is exactly the
// entry's `addr..addr + len` (written for reads, read for writes), runs it to completion (or
// resets the device, which then stops touching it) inside `BlkDevice::batch`, and only then
// pushes the entry's one completion through the `OverflowProducer`.
unsafe impl<H: Hal, T: Transport, D, W> Backend for VirtioBlkBackend<H, T, D, W>
where
    D: BorrowMut<BlkDevice<H, T>>,
    W: FnMut(&dyn Fn() -> bool) -> bool,
{
    fn name(&self) -> &'static str {
        "virtio-blk"
    }

    unsafe fn enter(
        &mut self,
        sq: &mut Consumer<Sqe>,
        cq: &mut OverflowProducer<Cqe>,
        _wait: usize,
    ) -> Result<usize, crate::IoError> {
        let mut taken = core::mem::take(&mut self.taken);
        taken.clear();
        sq.pop_batch(usize::MAX, |sqe| taken.push(sqe));
        self.taken = taken;
        let mut chain_failed = false;
        let mut start = 0;
        while start < self.taken.len() {
            let end = group_end(&self.taken, start);
            let mut res = [0i32; MAX_BATCH];
            // SAFETY: the caller's contract for every entry in `sq`.
            unsafe { self.run_group(start, end, chain_failed, &mut res) };
            for (sqe, r) in self.taken[start..end].iter().zip(res) {
                cq.push(Cqe::new(sqe.user_data, r));
            }
            let last = &self.taken[end - 1];
            chain_failed = last.flags.contains(SqeFlags::LINK) && {
                let r = res[end - 1 - start];
                r < 0
                    || (matches!(last.opcode, Opcode::Read | Opcode::Write) && r as u32 != last.len)
            };
            start = end;
        }
        Ok(self.taken.len())
    }

    fn outstanding(&self) -> usize {
        0
    }

    fn register_file(&mut self, fd: i32) -> Result<u32, crate::IoError> {
        if fd == DISK_FD {
            Ok(DISK_FD as u32)
        } else {
            Err(crate::IoError::BadFd)
        }
    }

    fn register_pool(&mut self, pool: &BufferPool) -> Result<u16, crate::IoError> {
        if let Some(i) = self.pools.iter().position(|p| p.id() == pool.id()) {
            return Ok(i as u16);
        }
        if self.pools.len() >= POOL_SLOTS {
            return Err(crate::IoError::TooManyRegistrations);
        }
        self.pools.push(pool.clone());
        Ok((self.pools.len() - 1) as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FsyncFlags;

    fn read(len: u32, offset: u64) -> Sqe {
        Sqe::read(DISK_FD, 0x1000 as *mut u8, len, offset, 7)
    }

    #[test]
    fn entries_become_sector_requests_or_errors() {
        assert_eq!(
            plan(&read(4096, 8192)),
            Plan::Io {
                write: false,
                sector: 16,
                addr: 0x1000,
                len: 4096
            }
        );
        let write = Sqe::write(DISK_FD, 0x2000 as *const u8, 512, 512, 1);
        assert!(matches!(
            plan(&write),
            Plan::Io {
                write: true,
                sector: 1,
                ..
            }
        ));
        assert_eq!(plan(&Sqe::nop(3)), Plan::Now(0));
        assert_eq!(
            plan(&Sqe::fsync(DISK_FD, FsyncFlags::empty(), 4)),
            Plan::Flush
        );
        assert_eq!(plan(&read(100, 0)), Plan::Now(-errno::EINVAL));
        assert_eq!(plan(&read(0, 0)), Plan::Now(-errno::EINVAL));
        assert_eq!(plan(&read(512, 100)), Plan::Now(-errno::EINVAL));
        assert_eq!(plan(&read(512, u64::MAX - 511)), Plan::Now(-errno::EINVAL));
        assert_eq!(
            plan(&Sqe::read(3, 0x1000 as *mut u8, 512, 0, 0)),
            Plan::Now(-errno::EBADF)
        );
        assert_eq!(
            plan(&Sqe::read(DISK_FD, core::ptr::null_mut(), 512, 0, 0)),
            Plan::Now(-errno::EFAULT)
        );
        assert_eq!(
            plan(&Sqe::readv(DISK_FD, core::ptr::null(), 1, 0, 0)),
            Plan::Now(-errno::EOPNOTSUPP)
        );
    }

    #[test]
    fn groups_end_at_32_entries_after_links_and_before_drains() {
        let plain: Vec<Sqe> = (0..70).map(|i| read(512, i * 512)).collect();
        assert_eq!(group_end(&plain, 0), 32);
        assert_eq!(group_end(&plain, 32), 64);
        assert_eq!(group_end(&plain, 64), 70);
        let mut linked = plain[..5].to_vec();
        linked[1] = linked[1].with_flags(SqeFlags::LINK);
        linked[3] = linked[3].with_flags(SqeFlags::DRAIN);
        assert_eq!(group_end(&linked, 0), 2, "a linked entry ends its group");
        assert_eq!(group_end(&linked, 2), 3, "a draining entry starts a group");
        assert_eq!(group_end(&linked, 3), 5);
    }

    #[test]
    fn requests_are_checked_against_the_disk() {
        let mut buf = [0u8; 1024];
        let (sectors, ro, flush) = (100, false, true);
        let req = Request::Read {
            sector: 98,
            buf: &mut buf,
        };
        assert_eq!(check(&req, sectors, ro, flush), Ok(Some(header(T_IN, 98))));
        let req = Request::Read {
            sector: 99,
            buf: &mut buf,
        };
        assert_eq!(
            check(&req, sectors, ro, flush),
            Err(BlkError::OutOfRange {
                sector: 99,
                count: 2
            })
        );
        let req = Request::Read {
            sector: u64::MAX,
            buf: &mut buf[..512],
        };
        assert!(matches!(
            check(&req, sectors, ro, flush),
            Err(BlkError::OutOfRange { .. })
        ));
        let req = Request::Write {
            sector: 0,
            buf: &buf[..512],
        };
        assert_eq!(check(&req, sectors, true, flush), Err(BlkError::ReadOnly));
        assert_eq!(
            check(
                &Request::Write {
                    sector: 0,
                    buf: &buf[..511]
                },
                sectors,
                ro,
                flush
            ),
            Err(BlkError::BadLength(511))
        );
        assert_eq!(check(&Request::Flush, sectors, ro, false), Ok(None));
        assert_eq!(
            check(&Request::Flush, sectors, ro, true),
            Ok(Some(header(T_FLUSH, 0)))
        );
    }

    #[test]
    fn header_is_virtio_blk_req_little_endian() {
        assert_eq!(
            header(T_OUT, 0x0102_0304_0506_0708),
            [1, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
    }

    #[test]
    fn status_bytes_and_errors_map_to_results_and_errnos() {
        assert_eq!(status(0), Ok(()));
        assert_eq!(
            status(1),
            Err(BlkError::Device(virtio_drivers::Error::IoError))
        );
        assert_eq!(
            status(2),
            Err(BlkError::Device(virtio_drivers::Error::Unsupported))
        );
        assert_eq!(
            status(STATUS_UNSET),
            Err(BlkError::Device(virtio_drivers::Error::IoError))
        );
        assert_eq!(BlkError::BadLength(3).errno(), -errno::EINVAL);
        assert_eq!(BlkError::ReadOnly.errno(), -errno::EPERM);
        assert_eq!(BlkError::Timeout.errno(), -errno::EIO);
        assert_eq!(BlkError::NotRun.errno(), -errno::ECANCELED);
    }
}
