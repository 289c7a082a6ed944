//! The PCI bus at boot: picks the configuration access (ECAM from the ACPI MCFG when the
//! direct map covers it, else the legacy ports), enumerates the bus with
//! `reference_kernel::pci::enumerate`, prints one line per function, checks every memory BAR
//! against the CPU's physical address width, the direct map and the RAM in the boot memory map,
//! and keeps the list for drivers ([`devices`]).
//!
//! Not done here: BAR assignment (firmware's addresses are used as they are), MSI/MSI-X,
//! segments other than the MCFG's first region's.

use alloc::vec::Vec;
use core::fmt::Write as _;

use reference_kernel::acpi::Mcfg;
use reference_kernel::bootinfo::BootInfo;
use reference_kernel::pci::{Bar, BarError, BarKind, PciFunction, check_bar, enumerate};
use spin::Once;

use crate::arch::x86_64::layout::phys_to_virt;
use crate::arch::x86_64::pci::ConfigAccess;

/// A function found at boot, with the result of its BAR checks.
#[derive(Clone, Copy, Debug)]
pub struct PciDevice {
    /// What enumeration read.
    pub function: PciFunction,
    /// Per BAR index: `true` when a memory BAR was refused (or an implemented BAR is unusable).
    pub refused_bars: [bool; 6],
}

impl PciDevice {
    /// Whether every memory BAR passed the checks (the device may be handed to a driver).
    pub fn bars_usable(&self) -> bool {
        !self.refused_bars.iter().any(|&r| r)
    }
}

struct Bus {
    access: ConfigAccess,
    devices: Vec<PciDevice>,
}

static BUS: Once<Option<Bus>> = Once::new();

/// The configuration access chosen at boot (`None` before [`init`] or with no PCI).
pub fn access() -> Option<ConfigAccess> {
    BUS.get().and_then(|b| b.as_ref()).map(|b| b.access)
}

/// The functions found at boot.
pub fn devices() -> &'static [PciDevice] {
    BUS.get()
        .and_then(|b| b.as_ref())
        .map_or(&[], |b| b.devices.as_slice())
}

/// The CPU's physical address width (CPUID 0x8000_0008), 36 bits where CPUID does not say.
fn phys_bits() -> u8 {
    raw_cpuid::CpuId::new()
        .get_processor_capacity_feature_info()
        .map_or(36, |i| i.physical_address_bits())
}

/// Why a memory BAR is not used: the portable checks, then the direct map.
fn bar_problem(bar: &Bar, bits: u8, info: &BootInfo) -> Option<BarRefusal> {
    if let Err(e) = check_bar(bar, bits, info.memory_map()) {
        return Some(BarRefusal::Check(e));
    }
    if bar.kind != BarKind::Io && phys_to_virt(bar.address, bar.size).is_none() {
        return Some(BarRefusal::Unmapped);
    }
    None
}

enum BarRefusal {
    Check(BarError),
    Unmapped,
}

impl core::fmt::Display for BarRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Check(e) => write!(f, "{e}"),
            Self::Unmapped => f.write_str("lies beyond the direct map"),
        }
    }
}

/// Enumerates the bus once and prints what it found. `mcfg` is the MCFG's parse result
/// (`Ok(None)` without one).
pub fn init(info: &BootInfo, mcfg: Result<Option<&Mcfg>, &dyn core::fmt::Display>) {
    BUS.call_once(|| {
        let access = choose_access(mcfg)?;
        let bits = phys_bits();
        let mut devices = Vec::new();
        let summary = enumerate(&access, access.buses(), |f| {
            let mut device = PciDevice {
                function: *f,
                refused_bars: [false; 6],
            };
            print_function(f);
            for bar in f.bars() {
                if let Some(why) = bar_problem(bar, bits, info) {
                    crate::println!("pci: {} BAR{} refused: {why}", f.bdf, bar.index);
                    device.refused_bars[usize::from(bar.index)] = true;
                }
            }
            if let Some(issue) = f.issue {
                crate::println!("pci: {} {issue}", f.bdf);
            }
            devices.push(device);
        });
        crate::println!(
            "  pci:      {} functions on {} bus{} via {}{}",
            summary.functions,
            summary.buses,
            if summary.buses == 1 { "" } else { "es" },
            access.describe(),
            if summary.skipped_bridges > 0 {
                " (bridges to buses already walked or out of range skipped)"
            } else {
                ""
            }
        );
        Some(Bus { access, devices })
    });
}

fn choose_access(mcfg: Result<Option<&Mcfg>, &dyn core::fmt::Display>) -> Option<ConfigAccess> {
    let why_not_ecam = match mcfg {
        Ok(Some(m)) => match m.region_for(0, 0) {
            Some(region) => match ConfigAccess::ecam(*region) {
                Ok(access) => return Some(access),
                Err(e) => alloc::format!("{e}"),
            },
            None => "the MCFG has no region for segment 0 bus 0".into(),
        },
        Ok(None) => "no ACPI MCFG".into(),
        Err(e) => alloc::format!("MCFG rejected: {e}"),
    };
    match ConfigAccess::ports() {
        Some(access) => {
            crate::println!("  pci:      {why_not_ecam}; using configuration ports 0xcf8/0xcfc");
            Some(access)
        }
        None => {
            crate::println!("  pci:      {why_not_ecam}, and no configuration ports: no PCI");
            None
        }
    }
}

/// `pci: 00:03.0 1af4:1001 class 01.00.00 bar0 io 0xc000+0x80 bar1 mem 0xfebd5000+0x1000 caps 11 09`.
fn print_function(f: &PciFunction) {
    let mut line = alloc::string::String::new();
    let _ = write!(
        line,
        "pci: {} {:04x}:{:04x} class {:02x}.{:02x}.{:02x}",
        f.bdf, f.vendor, f.device, f.class[0], f.class[1], f.class[2]
    );
    if let Some(bus) = f.secondary_bus {
        let _ = write!(line, " bridge to bus {bus:02x}");
    }
    for bar in f.bars() {
        let kind = match bar.kind {
            BarKind::Io => "io",
            BarKind::Memory32 => "mem",
            BarKind::Memory64 => "mem64",
        };
        let _ = write!(
            line,
            " bar{} {kind} {:#x}+{:#x}",
            bar.index, bar.address, bar.size
        );
    }
    if !f.capabilities().is_empty() {
        line.push_str(" caps");
        for c in f.capabilities() {
            let _ = write!(line, " {:02x}", c.id);
        }
    }
    crate::println!("{line}");
}
