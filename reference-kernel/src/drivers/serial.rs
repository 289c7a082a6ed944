//! 16550 UART driver (COM1, COM2), polled.
//!
//! Transmit waits for the transmit-holding register to empty (LSR bit 5); receive is not used yet
//! except by the loopback self-test. 115200 baud, 8 data bits, no parity, one stop bit, FIFOs on.

use x86_64::instructions::port::Port;

/// I/O base of COM1.
pub const COM1: u16 = 0x3F8;
/// I/O base of COM2.
pub const COM2: u16 = 0x2F8;

const DATA: u16 = 0;
const INT_ENABLE: u16 = 1;
const FIFO_CTRL: u16 = 2;
const LINE_CTRL: u16 = 3;
const MODEM_CTRL: u16 = 4;
const LINE_STATUS: u16 = 5;

const LSR_DATA_READY: u8 = 1 << 0;
const LSR_THR_EMPTY: u8 = 1 << 5;
const MCR_DTR_RTS_OUT2: u8 = 0x0B;
const MCR_LOOPBACK: u8 = 0x10;

/// Bounded wait for the transmitter, so a missing or wedged UART cannot hang the kernel.
const TX_SPIN_LIMIT: u32 = 100_000;

/// A 16550-compatible UART at an I/O port base.
#[derive(Debug)]
pub struct SerialPort {
    base: u16,
}

impl SerialPort {
    /// A port at `base`; nothing is touched until [`SerialPort::init`].
    ///
    /// # Safety
    /// `base` must be the I/O base of a 16550-compatible UART (or of nothing), and this must be
    /// the only driver that accesses it.
    pub const unsafe fn new(base: u16) -> Self {
        Self { base }
    }

    fn write_reg(&mut self, reg: u16, value: u8) {
        // SAFETY: by the contract of `new`, `base + reg` is a register of our UART.
        unsafe { Port::<u8>::new(self.base + reg).write(value) }
    }

    fn read_reg(&mut self, reg: u16) -> u8 {
        // SAFETY: by the contract of `new`, `base + reg` is a register of our UART.
        unsafe { Port::<u8>::new(self.base + reg).read() }
    }

    /// Programs 115200 8N1 with FIFOs, interrupts off.
    pub fn init(&mut self) {
        self.write_reg(INT_ENABLE, 0x00);
        self.write_reg(LINE_CTRL, 0x80); // DLAB on: divisor latch
        self.write_reg(DATA, 0x01); // divisor 1 = 115200 baud (low byte)
        self.write_reg(INT_ENABLE, 0x00); // divisor high byte
        self.write_reg(LINE_CTRL, 0x03); // 8N1, DLAB off
        self.write_reg(FIFO_CTRL, 0xC7); // enable + clear FIFOs, 14-byte threshold
        self.write_reg(MODEM_CTRL, MCR_DTR_RTS_OUT2);
    }

    /// Sends one byte (waits, bounded, for the transmitter).
    pub fn send(&mut self, byte: u8) {
        for _ in 0..TX_SPIN_LIMIT {
            if self.read_reg(LINE_STATUS) & LSR_THR_EMPTY != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        self.write_reg(DATA, byte);
    }

    /// Receives one byte if one is waiting.
    pub fn try_receive(&mut self) -> Option<u8> {
        (self.read_reg(LINE_STATUS) & LSR_DATA_READY != 0).then(|| self.read_reg(DATA))
    }

    /// Turns the "transmitter holding register empty" interrupt on or off (IER bit 1; every
    /// other interrupt source stays off). The interrupt handler acknowledges it by reading IIR.
    pub fn set_tx_empty_interrupt(&mut self, on: bool) {
        self.write_reg(INT_ENABLE, if on { 0x02 } else { 0x00 });
    }

    /// Sends `data` through the UART's internal loopback and returns how many bytes came back
    /// unchanged; the line is not driven meanwhile. Used as a driver self-test.
    pub fn loopback_test(&mut self, data: &[u8]) -> usize {
        while self.try_receive().is_some() {}
        self.write_reg(MODEM_CTRL, MCR_LOOPBACK | MCR_DTR_RTS_OUT2);
        let mut ok = 0;
        for &b in data {
            self.send(b);
            let mut got = None;
            for _ in 0..TX_SPIN_LIMIT {
                got = self.try_receive();
                if got.is_some() {
                    break;
                }
            }
            if got == Some(b) {
                ok += 1;
            }
        }
        self.write_reg(MODEM_CTRL, MCR_DTR_RTS_OUT2);
        ok
    }
}

impl SerialPort {
    /// Sends `bytes` as they are, with `\n` as `\r\n`.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.send(b'\r');
            }
            self.send(b);
        }
    }
}

impl core::fmt::Write for SerialPort {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}
