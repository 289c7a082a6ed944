//! Hosted (Linux) back-ends, behind the `std` feature.
//!
//! - [`IoUringBackend`]: the rings' entries go to a kernel io_uring, one `io_uring_enter` per
//!   doorbell; registered files and registered buffers (pools) are kernel registrations.
//! - [`PreadBackend`]: the same operations with plain `pread`/`pwrite`/`preadv`/`pwritev`/
//!   `fsync`, one system call per operation, for systems that refuse io_uring (seccomp
//!   filters in containers, `kernel.io_uring_disabled`, old kernels).
//! - [`HostedBackend`]: picks io_uring, and falls back to `pread` when io_uring setup is
//!   refused: detected once per back-end creation, reported once per process on standard
//!   error, and readable afterwards ([`HostedBackend::fallback_reason`]). Setting the
//!   environment variable `VERIDIAN_IO_FORCE_FALLBACK=1`, or [`HostedMode::Fallback`], forces
//!   the fallback (tests run every check on both).
//! - [`send_file`]: zero-copy file-to-socket transfer with `splice` through a pipe.

mod fallback;
mod send_file;
mod uring;

use std::boxed::Box;
use std::sync::Once;

pub use fallback::PreadBackend;
pub use send_file::{Splicer, send_file};
pub use uring::IoUringBackend;

use crate::backend::Backend;
use crate::entry::{Cqe, Sqe};
use crate::error::IoError;
use crate::pool::BufferPool;
use crate::ring::{Consumer, OverflowProducer};

/// Environment variable that forces [`HostedBackend::new`] onto the fallback when set to `1`.
pub const FORCE_FALLBACK_ENV: &str = "VERIDIAN_IO_FORCE_FALLBACK";

/// Which hosted back-end to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HostedMode {
    /// io_uring, or the fallback when io_uring is refused (or [`FORCE_FALLBACK_ENV`] is `1`).
    #[default]
    Auto,
    /// io_uring only: creation fails if io_uring is refused.
    IoUring,
    /// The `pread`/`pwrite` fallback, always.
    Fallback,
}

/// io_uring where the system allows it, `pread`/`pwrite` where it does not.
#[derive(Debug)]
pub enum HostedBackend {
    /// The io_uring back-end (boxed: it is much larger than the fallback).
    IoUring(Box<IoUringBackend>),
    /// The fallback, and why it was chosen (`None` when forced).
    Fallback(PreadBackend, Option<IoError>),
}

/// Reports the fallback once per process.
static REPORT: Once = Once::new();

impl HostedBackend {
    /// [`HostedMode::Auto`] with a ring of `entries` submission slots.
    ///
    /// # Errors
    /// [`IoError::InvalidArgument`] if `entries` is 0 or above 32768 (io_uring's limit).
    pub fn new(entries: u32) -> Result<Self, IoError> {
        Self::with_mode(entries, HostedMode::Auto)
    }

    /// The back-end `mode` asks for.
    ///
    /// # Errors
    /// [`IoError::InvalidArgument`] for a bad `entries`; with [`HostedMode::IoUring`], the
    /// reason io_uring was refused.
    pub fn with_mode(entries: u32, mode: HostedMode) -> Result<Self, IoError> {
        if entries == 0 || entries > uring::MAX_ENTRIES {
            return Err(IoError::InvalidArgument);
        }
        let forced = std::env::var(FORCE_FALLBACK_ENV).is_ok_and(|v| v == "1");
        match mode {
            HostedMode::Fallback => Ok(Self::Fallback(PreadBackend::new(), None)),
            HostedMode::Auto if forced => Ok(Self::Fallback(PreadBackend::new(), None)),
            HostedMode::IoUring => IoUringBackend::new(entries).map(|b| Self::IoUring(Box::new(b))),
            HostedMode::Auto => match IoUringBackend::new(entries) {
                Ok(b) => Ok(Self::IoUring(Box::new(b))),
                Err(e) => {
                    REPORT.call_once(|| {
                        std::eprintln!(
                            "veridian-io: io_uring refused ({e}); using the pread/pwrite fallback"
                        );
                    });
                    Ok(Self::Fallback(PreadBackend::new(), Some(e)))
                }
            },
        }
    }

    /// Whether this is the fallback.
    pub fn is_fallback(&self) -> bool {
        matches!(self, Self::Fallback(..))
    }

    /// Why io_uring was refused, when the fallback was chosen automatically.
    pub fn fallback_reason(&self) -> Option<IoError> {
        match self {
            Self::Fallback(_, reason) => *reason,
            Self::IoUring(_) => None,
        }
    }
}

// SAFETY: delegates every method to a back-end that upholds the contract.
unsafe impl Backend for HostedBackend {
    fn name(&self) -> &'static str {
        match self {
            Self::IoUring(b) => b.name(),
            Self::Fallback(b, _) => b.name(),
        }
    }

    unsafe fn enter(
        &mut self,
        sq: &mut Consumer<Sqe>,
        cq: &mut OverflowProducer<Cqe>,
        wait: usize,
    ) -> Result<usize, IoError> {
        // SAFETY: forwarded contract.
        unsafe {
            match self {
                Self::IoUring(b) => b.enter(sq, cq, wait),
                Self::Fallback(b, _) => b.enter(sq, cq, wait),
            }
        }
    }

    fn outstanding(&self) -> usize {
        match self {
            Self::IoUring(b) => b.outstanding(),
            Self::Fallback(b, _) => b.outstanding(),
        }
    }

    fn register_file(&mut self, fd: i32) -> Result<u32, IoError> {
        match self {
            Self::IoUring(b) => b.register_file(fd),
            Self::Fallback(b, _) => b.register_file(fd),
        }
    }

    fn register_pool(&mut self, pool: &BufferPool) -> Result<u16, IoError> {
        match self {
            Self::IoUring(b) => b.register_pool(pool),
            Self::Fallback(b, _) => b.register_pool(pool),
        }
    }
}

/// The errno of the last failed libc call.
pub(crate) fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(crate::error::errno::EIO)
}
