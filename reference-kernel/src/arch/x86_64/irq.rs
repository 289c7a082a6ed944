//! User interrupt lines: vectors [`FIRST_VECTOR`]`..+`[`LINES`] whose interrupts the process
//! layer delivers to user programs (as notification signals, through the `user_irq` hook).
//!
//! What it does: [`init`] installs one handler per line; each acknowledges its interrupt
//! (local APIC EOI) and calls the hook with the line number. [`raise`] sends a line's vector
//! to the calling CPU as a fixed self-IPI: how the kernel's tests fire a line. An I/O APIC pin
//! routed to a line's vector would be served the same way (edge-triggered only: the handler
//! does not mask a level-triggered source); no device is routed to a line yet.

use core::sync::atomic::{AtomicU64, Ordering};

use super::apic;
use super::hooks;
use super::idt::{self, HandlerError, InterruptFrame};

/// Vector of line 0.
pub const FIRST_VECTOR: u8 = 0x50;
/// Number of lines (the ABI's `limits::USER_IRQ_LINES`).
pub const LINES: u8 = crate::process_abi::limits::USER_IRQ_LINES as u8;

/// Interrupts taken on user lines since boot (all lines).
static TAKEN: AtomicU64 = AtomicU64::new(0);

fn line_interrupt<const LINE: u8>(_frame: &mut InterruptFrame) {
    TAKEN.fetch_add(1, Ordering::Relaxed);
    apic::eoi();
    hooks::user_irq(LINE);
}

/// The handlers, by line.
const HANDLERS: [idt::Handler; LINES as usize] = [
    line_interrupt::<0>,
    line_interrupt::<1>,
    line_interrupt::<2>,
    line_interrupt::<3>,
    line_interrupt::<4>,
    line_interrupt::<5>,
    line_interrupt::<6>,
    line_interrupt::<7>,
];

/// Installs the lines' handlers (once, at boot, after the IDT).
pub fn init() -> Result<(), HandlerError> {
    for (line, handler) in HANDLERS.iter().enumerate() {
        idt::set_handler(FIRST_VECTOR + line as u8, *handler)?;
    }
    Ok(())
}

/// Raises user line `line` on the calling CPU (a self-IPI with its vector); false for a line
/// out of range or before the local APIC is up.
pub fn raise(line: u8) -> bool {
    if line >= LINES {
        return false;
    }
    if apic::info().is_none() {
        return false;
    }
    let Some(cpu) = super::percpu::current() else {
        return false;
    };
    apic::send_fixed(cpu.apic_id, FIRST_VECTOR + line);
    true
}

/// Interrupts taken on user lines since boot.
pub fn taken() -> u64 {
    TAKEN.load(Ordering::Relaxed)
}
