//! virtio-net: veridian-io's [`NetDevice`] (feature `virtio`: `virtio-drivers`' PCI transport
//! and queues, receive and transmit buffers from one [`BufferPool`] of frames) with the kernel's
//! [`KernelHal`], and MSI-X for both queues.
//!
//! [`init`] attaches up to [`MAX_NICS`] virtio network functions (vendor 0x1af4, device 0x1000
//! transitional or 0x1041 modern) in bus order. Each gets a pool of [`POOL_BUFFERS`] buffers of
//! [`BUFFER_SIZE`] bytes in frames (DMA memory: a frame's device address is its physical
//! address), [`RECEIVE_BUFFERS`] of them posted to the device; frames arrive in those buffers
//! and are handed on without a copy. A device the transport or `NetDevice` refuses is reported
//! and skipped; the kernel goes on without it.
//!
//! Interrupts: both queues of NIC `i` use MSI-X entry 0, routed to the CPU that takes the NIC
//! ([`take`]) on vector [`VECTOR_BASE`]` + i`; the handler only counts (the owner halts until
//! an interrupt and then looks at the queues). A device without MSI-X is polled.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use reference_kernel::pci::Bdf;
use spin::Once;
use veridian_io::BufferPool;
use veridian_io::virtio::net::{MIN_BUFFER, NetDevice};
use virtio_drivers::transport::pci::PciTransport;

use super::pci;
use super::virtio::{self, QueueIrq};
use crate::arch::x86_64::apic;
use crate::arch::x86_64::idt::InterruptFrame;
use crate::mm::dma::KernelHal;
use crate::mm::heap::FramePages;
use crate::sync::PreemptLock;

/// Network devices attached at most.
pub const MAX_NICS: usize = 2;

/// Entries of each queue.
pub const QUEUE_SIZE: usize = 128;

/// Bytes of each pool buffer: a virtio-net header and a largest frame, rounded up to half a
/// page (two buffers per frame, none crossing a page).
pub const BUFFER_SIZE: usize = 2048;
const _: () = assert!(BUFFER_SIZE >= MIN_BUFFER);

/// Buffers in each NIC's pool (512 KiB).
pub const POOL_BUFFERS: usize = 256;

/// Buffers kept posted to the receive queue.
pub const RECEIVE_BUFFERS: usize = QUEUE_SIZE;

/// The vector of NIC 0's queue interrupt; NIC `i` uses `VECTOR_BASE + i` (free in the kernel's
/// vector map: 0x40 is virtio-blk's).
pub const VECTOR_BASE: u8 = 0x41;

/// The device type the kernel drives.
pub type Device = NetDevice<KernelHal, PciTransport, QUEUE_SIZE>;

/// An attached network device.
pub struct Nic {
    /// Where it sits on the bus.
    pub bdf: Bdf,
    /// Its index among the attached NICs (bus order).
    pub index: usize,
    /// The device and its buffers.
    pub dev: Device,
    /// Its queue interrupt, if MSI-X could be routed.
    irq: Option<QueueIrq>,
}

impl Nic {
    /// Routes the queue interrupt to this CPU and asks the device for interrupts; `false`
    /// (interrupts off at the device) if there is no routed interrupt or this CPU cannot be
    /// reached, so the owner must poll.
    pub fn interrupts_here(&mut self) -> bool {
        let on = self.irq.as_mut().is_some_and(QueueIrq::aim_here);
        self.dev.set_interrupts(on);
        on
    }
}

static NICS: Once<Vec<PreemptLock<Option<Nic>>>> = Once::new();
static INTERRUPTS: [AtomicU64; MAX_NICS] = [const { AtomicU64::new(0) }; MAX_NICS];

fn interrupt<const I: usize>(_frame: &mut InterruptFrame) {
    INTERRUPTS[I].fetch_add(1, Ordering::Relaxed);
    // The owner wakes from `hlt` by the interrupt itself and looks at the queues.
    apic::eoi();
}

const HANDLERS: [crate::arch::x86_64::idt::Handler; MAX_NICS] = [interrupt::<0>, interrupt::<1>];

/// Queue interrupts NIC `index` has taken since boot.
pub fn interrupts(index: usize) -> u64 {
    INTERRUPTS
        .get(index)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Attaches the usable virtio network devices; prints what happened.
pub fn init() {
    NICS.call_once(|| {
        attach()
            .into_iter()
            .map(|n| PreemptLock::new("drivers::virtio_net::NIC", Some(n)))
            .collect()
    });
}

/// Network devices attached at boot (some may be taken by their owner now).
pub fn count() -> usize {
    NICS.get().map_or(0, Vec::len)
}

/// Takes NIC `index` for the caller's exclusive use (`None` if there is none or someone else
/// has it); [`give_back`] returns it.
pub fn take(index: usize) -> Option<Nic> {
    NICS.get()?.get(index)?.lock().take()
}

/// Returns a NIC taken with [`take`]; its interrupts are turned off at the device.
pub fn give_back(mut nic: Nic) {
    nic.dev.set_interrupts(false);
    if let Some(slot) = NICS.get().and_then(|n| n.get(nic.index)) {
        *slot.lock() = Some(nic);
    }
}

fn attach() -> Vec<Nic> {
    let mut nics = Vec::new();
    let Some(access) = pci::access() else {
        return nics;
    };
    for (f, transport) in virtio::transports("net", &[0x1000, 0x1041]) {
        if nics.len() == MAX_NICS {
            crate::println!(
                "  virtio:   net {} not used: {MAX_NICS} NICs at most",
                f.bdf
            );
            continue;
        }
        let index = nics.len();
        let pool = match BufferPool::new(FramePages, BUFFER_SIZE, POOL_BUFFERS) {
            Ok(pool) => pool,
            Err(e) => {
                crate::println!("  virtio:   net {} not used: no buffer pool ({e})", f.bdf);
                continue;
            }
        };
        // On refusal the transport was dropped, which reset the device.
        let dev = match Device::new(transport, pool, RECEIVE_BUFFERS) {
            Ok(dev) => dev,
            Err(why) => {
                crate::println!("  virtio:   net {} refused: {why}", f.bdf);
                continue;
            }
        };
        let vector = VECTOR_BASE + index as u8;
        let irq = match virtio::route_queues(&access, f, &[0, 1], 0, vector, HANDLERS[index]) {
            Ok(irq) => Some(irq),
            Err(why) => {
                crate::println!(
                    "  virtio:   net {}: no queue interrupt ({why}); polling",
                    f.bdf
                );
                None
            }
        };
        let mac = dev.mac();
        crate::println!(
            "  virtio:   net {} (nic {index}): MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, \
             queues of {QUEUE_SIZE}, {} of {POOL_BUFFERS} pool buffers receiving, {}",
            f.bdf,
            mac[0],
            mac[1],
            mac[2],
            mac[3],
            mac[4],
            mac[5],
            dev.posted(),
            if irq.is_some() {
                "MSI-X interrupts"
            } else {
                "polled"
            }
        );
        nics.push(Nic {
            bdf: f.bdf,
            index,
            dev,
            irq,
        });
    }
    nics
}
