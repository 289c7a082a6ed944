//! PCI configuration-space access: ECAM (PCI Express memory-mapped configuration, from the ACPI
//! MCFG) through the direct map, or the legacy configuration mechanism #1 (ports 0xCF8/0xCFC).
//!
//! [`ConfigAccess`] implements both the kernel's portable [`ConfigSpace`] (used by
//! `reference_kernel::pci::enumerate`) and `virtio-drivers`' `ConfigurationAccess` (used by its
//! PCI transport), so both read the same registers the same way.
//!
//! Caching: the direct map is write-back in the page tables; the firmware's MTRRs make the MMIO
//! hole (where ECAM and BARs live on PCs) uncacheable, and PAT write-back under an uncacheable
//! MTRR is uncacheable, so these accesses reach the device. (Under QEMU TCG caching does not
//! apply.) Accesses are 32-bit volatile loads and stores at dword-aligned offsets.

use core::ops::RangeInclusive;

use reference_kernel::acpi::EcamRegion;
use reference_kernel::pci::{Bdf, ConfigSpace};
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};
use x86_64::instructions::port::Port;

use super::layout;
use crate::sync::IrqLock;

/// Configuration address port of mechanism #1.
const CONFIG_ADDRESS: u16 = 0xcf8;
/// Configuration data port of mechanism #1.
const CONFIG_DATA: u16 = 0xcfc;

/// The address/data port pair is one shared register pair: one access at a time, interrupts
/// off so a handler on this CPU cannot interleave its own access.
static PORT_LOCK: IrqLock<()> = IrqLock::new("arch::pci::PORT_LOCK", ());

/// How configuration space is reached.
#[derive(Clone, Copy, Debug)]
pub enum ConfigAccess {
    /// ECAM: `virt` is the direct-map address of the region's bus 0 (whether or not the region
    /// decodes bus 0; only its buses are accessed).
    Ecam {
        /// The MCFG region.
        region: EcamRegion,
        /// Virtual address of the region's base (bus 0).
        virt: u64,
    },
    /// Mechanism #1 through ports 0xCF8/0xCFC (buses 0..=255, offsets below 256).
    Ports,
}

/// Why an ECAM region cannot be used.
#[derive(Clone, Copy, Debug)]
pub struct EcamUnmapped {
    /// The region's physical range.
    pub range: (u64, u64),
    /// How far the direct map reaches.
    pub direct_map_end: u64,
}

impl core::fmt::Display for EcamUnmapped {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "ECAM {:#x}..{:#x} lies beyond the direct map (ends at {:#x})",
            self.range.0, self.range.1, self.direct_map_end
        )
    }
}

impl ConfigAccess {
    /// ECAM access to `region`, if the direct map covers all of it.
    pub fn ecam(region: EcamRegion) -> Result<Self, EcamUnmapped> {
        let (start, end) = region.phys_range();
        let unmapped = EcamUnmapped {
            range: (start, end),
            direct_map_end: layout::direct_map_end(),
        };
        layout::phys_to_virt(start, end - start).ok_or(unmapped)?;
        Ok(Self::Ecam {
            region,
            // In the direct map (checked above for the decoded part), so no overflow.
            virt: layout::PHYS_OFFSET + region.base,
        })
    }

    /// Mechanism #1, if the chipset answers on port 0xCF8 (the enable bit written there reads
    /// back, as Linux's `pci_check_type1` tests).
    pub fn ports() -> Option<Self> {
        let _guard = PORT_LOCK.lock();
        let mut address = Port::<u32>::new(CONFIG_ADDRESS);
        // SAFETY: 0xCF8 is the PCI configuration-address register on PC chipsets; the original
        // value is written back, and the lock keeps other configuration accesses out meanwhile.
        let present = unsafe {
            let saved = address.read();
            address.write(0x8000_0000);
            let read = address.read();
            address.write(saved);
            read == 0x8000_0000
        };
        present.then_some(Self::Ports)
    }

    /// The buses this access reaches.
    pub fn buses(&self) -> RangeInclusive<u8> {
        match self {
            Self::Ecam { region, .. } => region.first_bus..=region.last_bus,
            Self::Ports => 0..=255,
        }
    }

    /// Short name for the boot log.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Ecam { .. } => "ECAM",
            Self::Ports => "ports 0xcf8/0xcfc",
        }
    }

    /// Virtual address of the dword at `offset` of `bdf` in the ECAM window, if decoded.
    fn ecam_ptr(region: &EcamRegion, virt: u64, bdf: Bdf, offset: u8) -> Option<*mut u32> {
        let phys = region.config_address(bdf.bus, bdf.device, bdf.function)?;
        Some((virt + (phys - region.base) + u64::from(offset & !3)) as *mut u32)
    }

    fn port_address(bdf: Bdf, offset: u8) -> Option<u32> {
        (bdf.device < 32 && bdf.function < 8).then(|| {
            0x8000_0000
                | (u32::from(bdf.bus) << 16)
                | (u32::from(bdf.device) << 11)
                | (u32::from(bdf.function) << 8)
                | u32::from(offset & !3)
        })
    }
}

impl ConfigSpace for ConfigAccess {
    fn read32(&self, bdf: Bdf, offset: u8) -> u32 {
        match self {
            Self::Ecam { region, virt } => match Self::ecam_ptr(region, *virt, bdf, offset) {
                // SAFETY: `ecam` checked the direct map covers the region's buses, and
                // `config_address` only returns addresses of those buses; the pointer is
                // dword-aligned (ECAM base 1 MiB-aligned, offset masked). Configuration reads
                // have no side effects on memory the kernel owns.
                Some(ptr) => unsafe { ptr.read_volatile() },
                None => u32::MAX,
            },
            Self::Ports => match Self::port_address(bdf, offset) {
                Some(address) => {
                    let _guard = PORT_LOCK.lock();
                    // SAFETY: mechanism #1's register pair (probed by `ports`); the lock makes
                    // the address write and the data read one access.
                    unsafe {
                        Port::<u32>::new(CONFIG_ADDRESS).write(address);
                        Port::<u32>::new(CONFIG_DATA).read()
                    }
                }
                None => u32::MAX,
            },
        }
    }

    fn write32(&self, bdf: Bdf, offset: u8, value: u32) {
        match self {
            Self::Ecam { region, virt } => {
                if let Some(ptr) = Self::ecam_ptr(region, *virt, bdf, offset) {
                    // SAFETY: as in `read32`; configuration space is device registers, not
                    // memory the kernel owns, so a write changes no Rust object.
                    unsafe { ptr.write_volatile(value) }
                }
            }
            Self::Ports => {
                if let Some(address) = Self::port_address(bdf, offset) {
                    let _guard = PORT_LOCK.lock();
                    // SAFETY: as in `read32`.
                    unsafe {
                        Port::<u32>::new(CONFIG_ADDRESS).write(address);
                        Port::<u32>::new(CONFIG_DATA).write(value);
                    }
                }
            }
        }
    }
}

fn bdf_of(df: DeviceFunction) -> Bdf {
    Bdf {
        bus: df.bus,
        device: df.device,
        function: df.function,
    }
}

impl ConfigurationAccess for ConfigAccess {
    fn read_word(&self, device_function: DeviceFunction, register_offset: u8) -> u32 {
        self.read32(bdf_of(device_function), register_offset)
    }

    fn write_word(&mut self, device_function: DeviceFunction, register_offset: u8, data: u32) {
        self.write32(bdf_of(device_function), register_offset, data);
    }

    unsafe fn unsafe_clone(&self) -> Self {
        *self
    }
}
