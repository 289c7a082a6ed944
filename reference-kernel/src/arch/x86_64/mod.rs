//! x86_64-specific code: boot trampoline, descriptor tables, exception entry, CPU set-up.
//!
//! The kernel's hardware `unsafe` lives under `arch/` (and memory management's in `mm/`, port
//! I/O in `drivers/`); `task/`, `ktest/` and `bench.rs` deny `unsafe_code` and call the safe
//! functions here (`selftest` holds the machine operations the kernel's tests need).

pub mod apic;
pub mod boot;
pub mod context;
pub mod cpu;
pub mod fpu;
pub mod gdt;
pub mod hooks;
pub mod idt;
pub mod ioapic;
pub mod irq;
pub mod layout;
pub mod lock;
pub mod msix;
pub mod pci;
pub mod percpu;
pub mod probe;
pub mod qemu;
pub mod recover;
pub mod sampling;
pub mod selftest;
pub mod smp;
pub mod tlb;
pub mod user;

/// Halts the CPU forever with interrupts disabled.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Masks every line of the two legacy 8259 PICs, so none of their interrupts arrive on vectors
/// that overlap CPU exceptions. (The kernel uses the local and I/O APIC instead.)
pub fn mask_legacy_pic() {
    use x86_64::instructions::port::Port;
    let mut master = Port::<u8>::new(0x21);
    let mut slave = Port::<u8>::new(0xA1);
    // SAFETY: 0x21/0xA1 are the 8259 interrupt-mask registers on every PC-compatible platform;
    // writing 0xFF masks all lines and has no other effect.
    unsafe {
        master.write(0xFF);
        slave.write(0xFF);
    }
}
