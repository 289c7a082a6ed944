//! What a kernel supplies to veridian-perf's TSC clock: a reference clock in nanoseconds to
//! calibrate against. Here the 8254 PIT's channel 0 (1.193182 MHz), free-running.

use core::cell::Cell;

use veridian_perf::Clock;

/// The PIT's input clock, Hz.
const PIT_HZ: u64 = 1_193_182;

/// PIT channel 0 as a nanosecond clock: the 16-bit down-counter wraps every 54.9 ms, so
/// `now_ns` must be called more often than that (calibration spins on it).
pub struct Pit {
    /// Counter value at the last read.
    last: Cell<u16>,
    /// PIT ticks since `start`.
    ticks: Cell<u64>,
}

impl Pit {
    /// Programs channel 0 as a rate generator over the full 16-bit range (mode 2, reload 0 =
    /// 65536); interrupts stay off, so its IRQ 0 goes nowhere.
    pub fn start() -> Self {
        // SAFETY: the PIT's command and channel 0 data ports; nothing else uses the PIT.
        unsafe {
            crate::boot::outb(0x43, 0x34);
            crate::boot::outb(0x40, 0);
            crate::boot::outb(0x40, 0);
        }
        let pit = Self {
            last: Cell::new(0),
            ticks: Cell::new(0),
        };
        pit.last.set(read_counter());
        pit
    }
}

/// Latches and reads channel 0's counter.
fn read_counter() -> u16 {
    // SAFETY: latch command for channel 0, then its low and high byte.
    unsafe {
        crate::boot::outb(0x43, 0x00);
        u16::from_le_bytes([crate::boot::inb(0x40), crate::boot::inb(0x40)])
    }
}

impl Clock for Pit {
    fn now_ns(&self) -> u64 {
        let now = read_counter();
        // A down-counter: elapsed ticks are last - now, modulo the 65536-tick period.
        let elapsed = self.last.get().wrapping_sub(now);
        self.last.set(now);
        self.ticks.set(self.ticks.get() + u64::from(elapsed));
        (u128::from(self.ticks.get()) * 1_000_000_000 / u128::from(PIT_HZ)) as u64
    }
}
