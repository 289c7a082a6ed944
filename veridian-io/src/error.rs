//! Errors: one enum for what the operating system or device reports (errno values) and for
//! what this crate itself refuses (full rings, exhausted pools, bad arguments).
//!
//! Completion entries carry results the io_uring way: a non-negative byte count, or a negated
//! Linux errno. [`IoError::from_errno`] maps the errno values an I/O path can produce to named
//! variants, and keeps any other value in [`IoError::Os`], so no information is lost;
//! [`IoError::errno`] maps back. The numbers are Linux's (the same on every Linux
//! architecture for these values); a kernel that is not Linux reports its device errors with
//! these numbers too, so that callers see one vocabulary.

use core::fmt;

/// Linux errno values used by this crate (from `asm-generic/errno-base.h` and `errno.h`).
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// No such file or directory.
    pub const ENOENT: i32 = 2;
    /// Interrupted system call.
    pub const EINTR: i32 = 4;
    /// I/O error.
    pub const EIO: i32 = 5;
    /// Bad file descriptor.
    pub const EBADF: i32 = 9;
    /// Try again.
    pub const EAGAIN: i32 = 11;
    /// Out of memory.
    pub const ENOMEM: i32 = 12;
    /// Permission denied.
    pub const EACCES: i32 = 13;
    /// Bad address.
    pub const EFAULT: i32 = 14;
    /// Device or resource busy.
    pub const EBUSY: i32 = 16;
    /// Is a directory.
    pub const EISDIR: i32 = 21;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// File too large.
    pub const EFBIG: i32 = 27;
    /// No space left on device.
    pub const ENOSPC: i32 = 28;
    /// Illegal seek.
    pub const ESPIPE: i32 = 29;
    /// Broken pipe.
    pub const EPIPE: i32 = 32;
    /// Function not implemented.
    pub const ENOSYS: i32 = 38;
    /// Operation not supported.
    pub const EOPNOTSUPP: i32 = 95;
    /// Operation canceled.
    pub const ECANCELED: i32 = 125;
}

/// What went wrong with an I/O operation or a request to this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoError {
    /// `EBADF`: the file descriptor (or registered-file index) does not name an open file, or
    /// the file is not open for this kind of access.
    BadFd,
    /// `EINVAL`: an argument was rejected (for example an offset above `i64::MAX`, a zero ring
    /// capacity, or an operation the file does not support in this form).
    InvalidArgument,
    /// `ENOENT`: no such file.
    NotFound,
    /// `EPERM`/`EACCES`: not allowed.
    PermissionDenied,
    /// `EINTR`: interrupted before anything was transferred.
    Interrupted,
    /// `EAGAIN`: would block; try again.
    WouldBlock,
    /// `ENOMEM`: out of memory (also: the page source refused pages for a buffer pool).
    NoMemory,
    /// `EFAULT`: a buffer address was not accessible.
    Fault,
    /// `EBUSY`: the resource is busy (for example re-registering while operations are in
    /// flight).
    Busy,
    /// `EISDIR`: the file is a directory.
    IsDirectory,
    /// `EFBIG`: the file would grow past its limit.
    FileTooLarge,
    /// `ENOSPC`: no space left on the device.
    NoSpace,
    /// `ESPIPE`: the file cannot be accessed at an offset (a pipe or socket).
    IllegalSeek,
    /// `EPIPE`: the reading end is closed.
    BrokenPipe,
    /// `ENOSYS`/`EOPNOTSUPP`: the back-end or the file does not support the operation.
    Unsupported,
    /// `ECANCELED`: the operation was not run, because an earlier operation of its link chain
    /// failed or came up short.
    Canceled,
    /// `EIO`: the device reported an error.
    Device,
    /// Any other errno value (positive).
    Os(i32),
    /// The submission ring (or the batch's completion budget) is full: complete some operations
    /// first (back-pressure, nothing was queued).
    QueueFull,
    /// Every buffer of the pool is in use.
    PoolExhausted,
    /// A registration table (registered files or buffer pools) is full.
    TooManyRegistrations,
    /// A buffer is larger than one operation can describe (more than `u32::MAX` bytes, or more
    /// iovecs than a vectored operation takes).
    BufferTooLarge,
}

impl IoError {
    /// The error for errno value `errno` (positive, as in `errno`; a negative value is taken
    /// as negated, the way completion entries carry it).
    pub const fn from_errno(errno: i32) -> Self {
        use errno::*;
        let e = if errno < 0 {
            errno.wrapping_neg()
        } else {
            errno
        };
        match e {
            EBADF => Self::BadFd,
            EINVAL => Self::InvalidArgument,
            ENOENT => Self::NotFound,
            EPERM | EACCES => Self::PermissionDenied,
            EINTR => Self::Interrupted,
            EAGAIN => Self::WouldBlock,
            ENOMEM => Self::NoMemory,
            EFAULT => Self::Fault,
            EBUSY => Self::Busy,
            EISDIR => Self::IsDirectory,
            EFBIG => Self::FileTooLarge,
            ENOSPC => Self::NoSpace,
            ESPIPE => Self::IllegalSeek,
            EPIPE => Self::BrokenPipe,
            ENOSYS | EOPNOTSUPP => Self::Unsupported,
            ECANCELED => Self::Canceled,
            EIO => Self::Device,
            other => Self::Os(other),
        }
    }

    /// The errno value for this error (positive), or `None` for the errors this crate raises
    /// itself ([`QueueFull`](Self::QueueFull) and the following ones). `PermissionDenied`
    /// maps to `EACCES`, `Unsupported` to `EOPNOTSUPP`.
    pub const fn errno(self) -> Option<i32> {
        use errno::*;
        Some(match self {
            Self::BadFd => EBADF,
            Self::InvalidArgument => EINVAL,
            Self::NotFound => ENOENT,
            Self::PermissionDenied => EACCES,
            Self::Interrupted => EINTR,
            Self::WouldBlock => EAGAIN,
            Self::NoMemory => ENOMEM,
            Self::Fault => EFAULT,
            Self::Busy => EBUSY,
            Self::IsDirectory => EISDIR,
            Self::FileTooLarge => EFBIG,
            Self::NoSpace => ENOSPC,
            Self::IllegalSeek => ESPIPE,
            Self::BrokenPipe => EPIPE,
            Self::Unsupported => EOPNOTSUPP,
            Self::Canceled => ECANCELED,
            Self::Device => EIO,
            Self::Os(e) => e,
            Self::QueueFull
            | Self::PoolExhausted
            | Self::TooManyRegistrations
            | Self::BufferTooLarge => return None,
        })
    }

    /// Decodes a completion result: `>= 0` is a byte count, `< 0` a negated errno.
    pub const fn result(res: i32) -> Result<u32, IoError> {
        if res >= 0 {
            Ok(res as u32)
        } else {
            Err(Self::from_errno(res))
        }
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::BadFd => "bad file descriptor (EBADF)",
            Self::InvalidArgument => "invalid argument (EINVAL)",
            Self::NotFound => "no such file (ENOENT)",
            Self::PermissionDenied => "permission denied (EPERM/EACCES)",
            Self::Interrupted => "interrupted (EINTR)",
            Self::WouldBlock => "operation would block (EAGAIN)",
            Self::NoMemory => "out of memory (ENOMEM)",
            Self::Fault => "bad buffer address (EFAULT)",
            Self::Busy => "resource busy (EBUSY)",
            Self::IsDirectory => "is a directory (EISDIR)",
            Self::FileTooLarge => "file too large (EFBIG)",
            Self::NoSpace => "no space left on device (ENOSPC)",
            Self::IllegalSeek => "file cannot be accessed at an offset (ESPIPE)",
            Self::BrokenPipe => "broken pipe (EPIPE)",
            Self::Unsupported => "operation not supported (ENOSYS/EOPNOTSUPP)",
            Self::Canceled => "canceled: an earlier operation of its link chain failed (ECANCELED)",
            Self::Device => "device I/O error (EIO)",
            Self::Os(e) => return write!(f, "operating system error {e}"),
            Self::QueueFull => "submission queue full: complete some operations first",
            Self::PoolExhausted => "every buffer of the pool is in use",
            Self::TooManyRegistrations => "registration table full",
            Self::BufferTooLarge => "buffer too large for one operation",
        };
        f.write_str(text)
    }
}

impl core::error::Error for IoError {}

#[cfg(feature = "std")]
impl From<IoError> for std::io::Error {
    fn from(e: IoError) -> Self {
        match e.errno() {
            Some(errno) => std::io::Error::from_raw_os_error(errno),
            None => std::io::Error::other(e),
        }
    }
}

#[cfg(feature = "std")]
impl From<std::io::Error> for IoError {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => IoError::from_errno(errno),
            None => IoError::Device,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_round_trip() {
        for e in 1..200 {
            let err = IoError::from_errno(e);
            let back = err.errno().unwrap();
            assert_eq!(IoError::from_errno(back), err, "errno {e}");
            assert_eq!(IoError::from_errno(-e), err);
        }
        assert_eq!(IoError::result(-errno::EBADF), Err(IoError::BadFd));
        assert_eq!(IoError::result(4096), Ok(4096));
        assert_eq!(IoError::QueueFull.errno(), None);
    }
}
