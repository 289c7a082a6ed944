//! Console output: [`print!`](crate::print!) and [`println!`](crate::println!) format into a
//! buffer on the stack and write it to fd 1 when it fills and at the end, each write at most
//! [`MAX_WRITE`](crate::abi::limits::MAX_WRITE) bytes. A line shorter than the buffer goes out
//! in one `write`, so lines of processes that print at once do not interleave.

use core::fmt::{self, Write};

use crate::sys;

/// The console's file descriptor.
pub const STDOUT: u64 = 1;

/// Bytes formatted before a flush (well under `MAX_WRITE`, small for the 256 KiB stack).
const BUFFER: usize = 512;

/// A formatting buffer that writes itself to [`STDOUT`] when full and when flushed.
struct Console {
    buf: [u8; BUFFER],
    len: usize,
}

impl Console {
    /// Writes out what is buffered. A write error drops the rest: there is nowhere to report it.
    fn flush(&mut self) {
        let mut done = 0;
        while done < self.len {
            match sys::write(STDOUT, &self.buf[done..self.len]) {
                Ok(n) if n > 0 => done += n as usize,
                _ => break,
            }
        }
        self.len = 0;
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s.as_bytes();
        while !rest.is_empty() {
            if self.len == BUFFER {
                self.flush();
            }
            let n = rest.len().min(BUFFER - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&rest[..n]);
            self.len += n;
            rest = &rest[n..];
        }
        Ok(())
    }
}

/// Formats `args` to the console (what the macros call).
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let mut console = Console {
        buf: [0; BUFFER],
        len: 0,
    };
    // `write_str` never fails; a `Display` impl that fails just ends the output early.
    let _ = console.write_fmt(args);
    console.flush();
}

/// Prints to the console (fd 1), like `std::print!`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::print::_print(::core::format_args!($($arg)*))
    };
}

/// Prints to the console (fd 1) with a newline, like `std::println!`; the line goes out in one
/// `write` when it fits the runtime's buffer (512 bytes).
#[macro_export]
macro_rules! println {
    () => {
        $crate::print!("\n")
    };
    ($($arg:tt)*) => {
        $crate::print::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}
