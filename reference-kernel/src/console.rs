//! The kernel console: COM1 behind a lock (and COM2 for bulk data), `print!`/`println!`, and a `log` back-end with levels.
//!
//! The lock is an [`IrqLock`]: taken with interrupts disabled (an interrupt handler may print). The panic and
//! exception paths must still be able to print when the lock is held by the code that failed,
//! so [`force_write`] bypasses a lock it cannot get after a bounded wait.

use core::fmt::Write;

use crate::drivers::serial::{COM1, COM2, SerialPort};
use crate::sync::IrqLock;
use log::{LevelFilter, Log, Metadata, Record};

// SAFETY: COM1 is the PC's first UART; this static is the only driver of it.
static SERIAL: IrqLock<SerialPort> =
    IrqLock::new("console::SERIAL", unsafe { SerialPort::new(COM1) });

// SAFETY: COM2 is the PC's second UART; this static is the only driver of it.
static SECOND: IrqLock<SerialPort> =
    IrqLock::new("console::SECOND", unsafe { SerialPort::new(COM2) });

/// Initialises the second UART (COM2), which carries bulk data (the profiler's folded stacks)
/// so the console stays readable. Without a COM2 the bytes go nowhere.
pub fn init_second() {
    SECOND.lock().init();
}

/// Writes formatted text to the second UART (COM2).
pub fn write_second(args: core::fmt::Arguments<'_>) {
    let _ = SECOND.lock().write_fmt(args);
}

/// Initialises the UART. Call first thing at boot.
pub fn init() {
    SERIAL.lock().init();
}

/// Writes formatted text to the console (used by `print!`).
pub fn write_fmt(args: core::fmt::Arguments<'_>) {
    let _ = SERIAL.lock().write_fmt(args);
}

/// Writes raw bytes (a user program's output) to the console.
pub fn write_bytes(bytes: &[u8]) {
    SERIAL.lock().write_bytes(bytes);
}

/// Writes even if the console lock is held (by code that panicked or faulted): waits a bounded
/// time for the lock, then writes through a second handle to the same UART.
pub fn force_write(args: core::fmt::Arguments<'_>) {
    for _ in 0..1_000_000 {
        if let Some(mut port) = SERIAL.try_lock() {
            let _ = port.write_fmt(args);
            return;
        }
        core::hint::spin_loop();
    }
    // SAFETY: the lock holder is stuck (it is the code being reported on); interleaving bytes
    // with it is the worst outcome, and the UART registers tolerate any access order.
    let mut port = unsafe { SerialPort::new(COM1) };
    let _ = port.write_fmt(args);
}

/// Runs `f` with exclusive access to the UART (for driver self-tests).
pub fn with_serial<R>(f: impl FnOnce(&mut SerialPort) -> R) -> R {
    f(&mut SERIAL.lock())
}

/// Prints to the kernel console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the kernel console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

struct SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            crate::println!("[{:<5}] {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: SerialLogger = SerialLogger;

/// Installs the serial logger at `level`.
pub fn init_logger(level: LevelFilter) {
    // `set_logger` fails only if a logger is already installed, which then stays in place.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Parses a `log=` command-line value.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    match s {
        "off" => Some(LevelFilter::Off),
        "error" => Some(LevelFilter::Error),
        "warn" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}
