//! What a kernel supplies to veridian-sync: the interrupt flag, for `IrqMutex` (and, here, a
//! CPU with interrupts on and nothing that can interrupt it, so the flag can be watched).

use veridian_sync::InterruptControl;

/// The x86_64 interrupt flag: `disable` saves RFLAGS and clears IF, `restore` sets IF back
/// only if it was set.
pub struct X86Interrupts;

// SAFETY: `disable` returns whether IF was set and clears it; `restore` sets IF only if it was
// set when the matching `disable` ran, so nested sections leave the flag as they found it.
unsafe impl InterruptControl for X86Interrupts {
    type State = bool;

    fn disable() -> bool {
        let was_enabled = interrupts_enabled();
        // SAFETY: `cli` only masks maskable interrupts on this CPU.
        unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
        was_enabled
    }

    unsafe fn restore(was_enabled: bool) {
        if was_enabled {
            // SAFETY: IF was set before the matching `disable`; see `enable_interrupts` for
            // why nothing arrives.
            unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
        }
    }
}

/// Whether RFLAGS.IF is set.
pub fn interrupts_enabled() -> bool {
    let flags: u64;
    // SAFETY: reads RFLAGS through the stack; no other effect.
    unsafe {
        core::arch::asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags))
    };
    flags & (1 << 9) != 0
}

/// Masks every line of both 8259 PICs, then sets IF: the firmware's timer can no longer
/// interrupt (there is no IDT to take it), and IF is the flag `IrqMutex` saves and restores.
pub fn enable_interrupts() {
    // SAFETY: the PICs' data ports (interrupt mask registers); the local APIC timer is off
    // after reset, so with both PICs masked no maskable interrupt is delivered, and `sti`
    // only sets IF.
    unsafe {
        crate::boot::outb(0x21, 0xff);
        crate::boot::outb(0xa1, 0xff);
        core::arch::asm!("sti", options(nomem, nostack));
    }
}
