//! What the virtio drivers share: finding a device's PCI transport and routing its queues'
//! MSI-X interrupt to a CPU's local APIC.

use reference_kernel::pci::{ConfigSpace, PciFunction};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};

use super::pci;
use crate::arch::x86_64::idt::{self, Handler};
use crate::arch::x86_64::msix::{self, Table};
use crate::arch::x86_64::pci::ConfigAccess;
use crate::arch::x86_64::percpu;
use crate::mm::dma::KernelHal;

/// PCI command register bits: memory space decoding, bus mastering.
const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_BUS_MASTER: u32 = 1 << 2;

/// A device's queue interrupt: one MSI-X table entry, routed to the local APIC of a CPU.
pub struct QueueIrq {
    table: Table,
    entry: u16,
    vector: u8,
    apic_id: u32,
}

impl QueueIrq {
    /// Points the interrupt at the CPU running this (if it pointed elsewhere); `false` if that
    /// CPU cannot be reached (no per-CPU block, APIC id above 255).
    pub fn aim_here(&mut self) -> bool {
        let Some(here) = percpu::current().map(|c| c.apic_id) else {
            return false;
        };
        if here != self.apic_id {
            if self.table.retarget(self.entry, here, self.vector).is_err() {
                return false;
            }
            self.apic_id = here;
        }
        true
    }
}

/// The PCI functions of vendor 0x1af4 with one of `ids` whose BARs and capability list passed
/// enumeration's checks, with memory decoding and bus mastering turned on, each with a transport
/// `virtio-drivers` accepted; what it refused is printed (`kind` names the device in the
/// message).
pub fn transports(
    kind: &'static str,
    ids: &'static [u16],
) -> impl Iterator<Item = (&'static PciFunction, PciTransport)> {
    let access = pci::access();
    pci::devices()
        .iter()
        .filter(move |d| access.is_some() && d.function.vendor == 0x1af4)
        .filter(move |d| ids.contains(&d.function.device))
        .filter_map(move |device| {
            let f = &device.function;
            if !device.bars_usable() || f.issue.is_some() {
                crate::println!(
                    "  virtio:   {kind} {} refused: its BARs or capability list failed the checks",
                    f.bdf
                );
                return None;
            }
            // Memory decoding and bus mastering on (firmware leaves them off for devices it did
            // not use itself; without bus mastering the device cannot reach its queues, and QEMU
            // clears DRIVER_OK when the command register is written with it off). The status
            // half is written as zeros (writing its ones would clear them).
            let access = access?;
            let command = access.read32(f.bdf, 0x04) & 0xffff;
            access.write32(f.bdf, 0x04, command | COMMAND_MEMORY | COMMAND_BUS_MASTER);
            let df = DeviceFunction {
                bus: f.bdf.bus,
                device: f.bdf.device,
                function: f.bdf.function,
            };
            let mut root = PciRoot::new(access);
            match PciTransport::new::<KernelHal, _>(&mut root, df) {
                Ok(t) => Some((f, t)),
                Err(e) => {
                    crate::println!(
                        "  virtio:   {kind} {} refused by the PCI transport: {e}",
                        f.bdf
                    );
                    None
                }
            }
        })
}

/// Routes the interrupt of each queue in `queues`: MSI-X entry `entry` to this CPU's local
/// APIC with `vector` (whose handler becomes `handler`), and each queue's MSI-X vector (in the
/// virtio common configuration, which `virtio-drivers`' transport does not expose) set to
/// `entry` and read back.
pub fn route_queues(
    access: &ConfigAccess,
    f: &PciFunction,
    queues: &[u16],
    entry: u16,
    vector: u8,
    handler: Handler,
) -> Result<QueueIrq, &'static str> {
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
    idt::set_handler(vector, handler).map_err(|_| "the interrupt vector is taken")?;
    table.route(access, f, entry, apic_id, vector)?;
    for &queue in queues {
        // queue_select (0x16) = queue, queue_msix_vector (0x1a) = entry.
        if !msix::bar_write16(f, bar, offset + 0x16, queue)
            || !msix::bar_write16(f, bar, offset + 0x1a, entry)
            || msix::bar_read16(f, bar, offset + 0x1a) != Some(entry)
        {
            return Err("the device did not take the MSI-X entry for a queue");
        }
    }
    Ok(QueueIrq {
        table,
        entry,
        vector,
        apic_id,
    })
}
