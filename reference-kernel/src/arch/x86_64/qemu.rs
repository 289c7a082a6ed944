//! Leaving QEMU with a status through the `isa-debug-exit` device.
//!
//! xtask starts QEMU with `-device isa-debug-exit,iobase=0xf4,iosize=0x04`. Writing `v` to that
//! port makes QEMU exit with status `(v << 1) | 1`: [`ExitCode::Success`] gives 33 and
//! [`ExitCode::Failure`] 35, which xtask maps back to success and failure. On a machine without
//! the device the write is ignored and the CPU halts.

use x86_64::instructions::port::Port;

const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Status reported to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Everything the kernel was asked to do succeeded (QEMU exits with 33).
    Success = 0x10,
    /// Something failed (QEMU exits with 35).
    Failure = 0x11,
}

/// Ends the QEMU session with `code`; halts forever where there is no debug-exit device.
pub fn exit(code: ExitCode) -> ! {
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: port 0xf4 is the isa-debug-exit device under QEMU (xtask always adds it); on other
    // machines nothing decodes the port on a PC platform and the write has no effect.
    unsafe { port.write(code as u32) };
    super::halt_forever()
}
