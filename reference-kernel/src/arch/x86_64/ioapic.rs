//! The I/O APIC: routes the serial port's interrupt (ISA IRQ 4) to the bootstrap processor.
//!
//! What it does: [`init`] finds the I/O APIC that serves the GSI the MADT maps IRQ 4 to
//! (interrupt source overrides applied, with their polarity and trigger mode; ISA defaults are
//! edge-triggered, active high), masks every redirection entry of every I/O APIC, and routes
//! that one GSI to [`SERIAL_VECTOR`] on the bootstrap processor. The UART interrupt handler
//! reads the UART's interrupt identification register (which acknowledges "transmitter empty"
//! interrupts), drains received bytes into a counter, and sends the local APIC EOI.
//!
//! What it relies on: the MADT (from `acpi`), the direct map covering the I/O APIC registers
//! (below 4 GiB, as on every PC), the local APIC up ([`super::apic`]).

use core::sync::atomic::{AtomicU64, Ordering};

use reference_kernel::acpi::{Madt, Polarity, TriggerMode};
use x86_64::instructions::port::Port;

use super::apic;
use super::idt::{self, InterruptFrame};
use crate::drivers::serial::COM1;

/// Vector of the serial port's interrupt.
pub const SERIAL_VECTOR: u8 = 0x24;
/// The serial port's ISA IRQ.
const SERIAL_IRQ: u8 = 4;

static SERIAL_INTERRUPTS: AtomicU64 = AtomicU64::new(0);
static RECEIVED: AtomicU64 = AtomicU64::new(0);

/// Why [`init`] did not route the interrupt.
#[derive(Debug, Clone, Copy)]
pub enum IoApicError {
    /// No I/O APIC handles the serial port's GSI.
    NoIoApic(u32),
    /// The registers are outside the direct map.
    Unmapped(u32),
    /// The vector is taken.
    Vector(idt::HandlerError),
}

impl core::fmt::Display for IoApicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoIoApic(gsi) => write!(f, "no I/O APIC handles GSI {gsi}"),
            Self::Unmapped(a) => write!(f, "I/O APIC registers at {a:#x} are not mapped"),
            Self::Vector(e) => write!(f, "{e}"),
        }
    }
}

/// One I/O APIC's registers.
struct Regs(u64);

impl Regs {
    fn read(&self, reg: u32) -> u32 {
        // SAFETY: `self.0` is the direct-map address of an I/O APIC's register window (checked
        // in `init`): IOREGSEL at +0, IOWIN at +0x10; only the bootstrap processor programs it,
        // during boot.
        unsafe {
            core::ptr::write_volatile(self.0 as *mut u32, reg);
            core::ptr::read_volatile((self.0 + 0x10) as *const u32)
        }
    }

    fn write(&self, reg: u32, value: u32) {
        // SAFETY: as in `read`.
        unsafe {
            core::ptr::write_volatile(self.0 as *mut u32, reg);
            core::ptr::write_volatile((self.0 + 0x10) as *mut u32, value);
        }
    }

    /// Number of redirection entries.
    fn entries(&self) -> u32 {
        ((self.read(0x01) >> 16) & 0xff) + 1
    }

    fn set_entry(&self, index: u32, low: u32, high: u32) {
        // Mask first, then the destination, then the low word (which may unmask).
        self.write(0x10 + 2 * index, 1 << 16);
        self.write(0x11 + 2 * index, high);
        self.write(0x10 + 2 * index, low);
    }
}

fn serial_interrupt(_frame: &mut InterruptFrame) {
    SERIAL_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
    let mut iir = Port::<u8>::new(COM1 + 2);
    let mut lsr = Port::<u8>::new(COM1 + 5);
    let mut data = Port::<u8>::new(COM1);
    // SAFETY: reading the UART's IIR acknowledges a "transmitter empty" interrupt; reading
    // LSR and the data register drains received bytes. No other state changes; the console
    // writes only THR/LSR, and a byte read here was meant for this kernel's input anyway.
    unsafe {
        let _ = iir.read();
        while lsr.read() & 1 != 0 {
            let _ = data.read();
            RECEIVED.fetch_add(1, Ordering::Relaxed);
        }
    }
    apic::eoi();
}

/// Interrupts taken from the serial port.
pub fn serial_interrupts() -> u64 {
    SERIAL_INTERRUPTS.load(Ordering::Relaxed)
}

/// Routes the serial port's interrupt to this (the bootstrap) processor; returns the GSI.
pub fn init(madt: &Madt) -> Result<u32, IoApicError> {
    let bsp = apic::info().map_or(0, |a| a.id);
    let (gsi, flags) = madt.isa_irq_to_gsi(SERIAL_IRQ);
    let mut target = None;
    for io in madt.io_apics() {
        let regs = Regs(
            super::layout::phys_to_virt(u64::from(io.address), 0x20)
                .ok_or(IoApicError::Unmapped(io.address))?,
        );
        let entries = regs.entries();
        for i in 0..entries {
            regs.set_entry(i, 1 << 16, 0);
        }
        if gsi >= io.gsi_base && gsi < io.gsi_base + entries {
            target = Some((regs, gsi - io.gsi_base));
        }
    }
    let (regs, index) = target.ok_or(IoApicError::NoIoApic(gsi))?;
    idt::set_handler(SERIAL_VECTOR, serial_interrupt).map_err(IoApicError::Vector)?;
    let override_flags = reference_kernel::acpi::InterruptOverride {
        bus: 0,
        source: SERIAL_IRQ,
        gsi,
        flags,
    };
    let mut low = u32::from(SERIAL_VECTOR); // fixed delivery, physical destination
    if override_flags.polarity() == Polarity::ActiveLow {
        low |= 1 << 13;
    }
    if override_flags.trigger_mode() == TriggerMode::Level {
        low |= 1 << 15;
    }
    regs.set_entry(index, low, bsp << 24);
    Ok(gsi)
}
