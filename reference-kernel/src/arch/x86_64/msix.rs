//! MSI-X for PCI functions: a table entry routed to a local APIC as a fixed, edge-triggered
//! interrupt, and 16-bit device-register access in memory BARs (for drivers that program
//! registers their transport crate does not expose).
//!
//! Only functions `drivers::pci` accepted reach here: their memory BARs lie in the direct map
//! and clear of RAM, which [`Table::locate`] and [`bar_read16`]/[`bar_write16`] check again
//! against the BAR and the direct map before any access.

use reference_kernel::pci::{BarKind, ConfigSpace, PciFunction};

use super::layout::phys_to_virt;
use super::pci::ConfigAccess;

/// The MSI-X capability's id.
const CAP_MSIX: u8 = 0x11;
/// Message control: MSI-X enable, function mask.
const ENABLE: u16 = 1 << 15;
const FUNCTION_MASK: u16 = 1 << 14;
/// The local APIC's message address window (Intel SDM vol. 3, 11.11.1).
const MSI_ADDRESS: u32 = 0xfee0_0000;

/// A function's MSI-X table.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    /// Configuration offset of the capability.
    cap: u8,
    /// Physical address of entry 0.
    phys: u64,
    /// Entries in the table.
    pub entries: u16,
}

impl Table {
    /// The MSI-X table of `f`, if it has one whose table lies inside a memory BAR in the direct
    /// map; otherwise why not.
    pub fn locate(access: &ConfigAccess, f: &PciFunction) -> Result<Self, &'static str> {
        let cap = f.capability(CAP_MSIX).ok_or("no MSI-X capability")?.offset;
        let control = access.read16(f.bdf, cap + 2);
        let entries = (control & 0x7ff) + 1;
        let table = access.read32(f.bdf, cap + 4);
        let bar = f.bars[(table & 7) as usize]
            .filter(|b| b.kind != BarKind::Io)
            .ok_or("the MSI-X table's BAR is not a memory BAR")?;
        let offset = u64::from(table & !7);
        let len = u64::from(entries) * 16;
        if offset.checked_add(len).is_none_or(|end| end > bar.size) {
            return Err("the MSI-X table reaches past its BAR");
        }
        let phys = bar.address + offset;
        phys_to_virt(phys, len).ok_or("the MSI-X table is outside the direct map")?;
        Ok(Self { cap, phys, entries })
    }

    /// Routes entry `entry` to the local APIC `apic_id` with `vector` (fixed delivery, edge,
    /// physical destination), unmasks it, enables MSI-X and disables the function's INTx pin.
    /// Entries other than `entry` keep their mask bits (set at reset).
    pub fn route(
        &self,
        access: &ConfigAccess,
        f: &PciFunction,
        entry: u16,
        apic_id: u32,
        vector: u8,
    ) -> Result<(), &'static str> {
        if entry >= self.entries {
            return Err("no such MSI-X table entry");
        }
        if apic_id > 0xff {
            return Err("APIC id above 255 (needs interrupt remapping)");
        }
        // Function mask on while the entry changes, then enable with the mask off.
        self.set_control(access, f, ENABLE | FUNCTION_MASK);
        self.write_entry(entry, apic_id, vector);
        let command = access.read32(f.bdf, 0x04);
        // Command register bit 10: INTx disable (keep the status half unchanged: writing its
        // ones would clear them).
        access.write32(f.bdf, 0x04, (command & 0xffff) | (1 << 10));
        self.set_control(access, f, ENABLE);
        Ok(())
    }

    /// Points entry `entry` (already routed by [`Table::route`]) at another local APIC, masked
    /// while its address changes.
    pub fn retarget(&self, entry: u16, apic_id: u32, vector: u8) -> Result<(), &'static str> {
        if entry >= self.entries || apic_id > 0xff {
            return Err("no such entry or APIC id above 255");
        }
        self.write_entry(entry, apic_id, vector);
        Ok(())
    }

    fn set_control(&self, access: &ConfigAccess, f: &PciFunction, control: u16) {
        let low = access.read32(f.bdf, self.cap) & 0xffff;
        let keep = u32::from(access.read16(f.bdf, self.cap + 2) & !(ENABLE | FUNCTION_MASK));
        access.write32(f.bdf, self.cap, low | (keep | u32::from(control)) << 16);
    }

    /// Masks the entry, writes address and data, unmasks it.
    fn write_entry(&self, entry: u16, apic_id: u32, vector: u8) {
        let base = self.phys + u64::from(entry) * 16;
        let words = [
            (12, 1),
            (0, MSI_ADDRESS | apic_id << 12),
            (4, 0),
            (8, u32::from(vector)),
            (12, 0),
        ];
        for (offset, value) in words {
            mmio_write32(base + offset, value);
        }
    }
}

/// The pointer to a device register of `len` bytes at `phys`, if it lies in the direct map and
/// is aligned.
fn register(phys: u64, len: u64) -> Option<u64> {
    phys_to_virt(phys, len).filter(|virt| virt % len == 0)
}

/// Writes a 32-bit device register (an MSI-X table word, located by [`Table::locate`]); false
/// where `phys` is outside the direct map or unaligned.
fn mmio_write32(phys: u64, value: u32) -> bool {
    let Some(virt) = register(phys, 4) else {
        return false;
    };
    // SAFETY: an aligned address in the direct map, inside a memory BAR of a function that
    // `drivers::pci` accepted (clear of RAM): a device register, not memory any Rust object
    // lives in.
    unsafe { (virt as *mut u32).write_volatile(value) };
    true
}

/// The physical address of `len` bytes at `offset` in memory BAR `bar` of `f`, if the BAR
/// holds them.
fn in_bar(f: &PciFunction, bar: u8, offset: u64, len: u64) -> Option<u64> {
    let bar = f.bars.get(usize::from(bar)).copied().flatten()?;
    if bar.kind == BarKind::Io || offset.checked_add(len)? > bar.size {
        return None;
    }
    Some(bar.address + offset)
}

/// Writes the 16-bit register at `offset` in memory BAR `bar` of `f` (a function
/// `drivers::pci` accepted: its memory BARs are clear of RAM); false where the BAR does not hold
/// it or it is outside the direct map or unaligned.
pub fn bar_write16(f: &PciFunction, bar: u8, offset: u64, value: u16) -> bool {
    let Some(virt) = in_bar(f, bar, offset, 2).and_then(|phys| register(phys, 2)) else {
        return false;
    };
    // SAFETY: as in `mmio_write32`.
    unsafe { (virt as *mut u16).write_volatile(value) };
    true
}

/// Reads the 16-bit register at `offset` in memory BAR `bar` of `f` (as [`bar_write16`]).
pub fn bar_read16(f: &PciFunction, bar: u8, offset: u64) -> Option<u16> {
    let virt = in_bar(f, bar, offset, 2).and_then(|phys| register(phys, 2))?;
    // SAFETY: as in `mmio_write32`.
    Some(unsafe { (virt as *const u16).read_volatile() })
}
