//! [`Errno`]: a system call's error code, as the typed wrappers in [`crate::sys`] return it.

use core::fmt;

use crate::abi::errno;

/// An error code from [`crate::abi::errno`] (the positive number; the kernel returns it
/// negated). A value the ABI does not define is kept as it came, so that a caller can see and
/// report it ([`Errno::name`] is then `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Errno(pub i64);

impl Errno {
    /// No such program.
    pub const ENOENT: Errno = Errno(errno::ENOENT);
    /// No such process, or not a child of the caller.
    pub const ESRCH: Errno = Errno(errno::ESRCH);
    /// Interrupted wait (the process is being killed).
    pub const EINTR: Errno = Errno(errno::EINTR);
    /// Bad file descriptor.
    pub const EBADF: Errno = Errno(errno::EBADF);
    /// Out of memory.
    pub const ENOMEM: Errno = Errno(errno::ENOMEM);
    /// Busy.
    pub const EBUSY: Errno = Errno(errno::EBUSY);
    /// A pointer argument is not readable/writable user memory.
    pub const EFAULT: Errno = Errno(errno::EFAULT);
    /// An argument is out of range.
    pub const EINVAL: Errno = Errno(errno::EINVAL);
    /// Too many handles.
    pub const EMFILE: Errno = Errno(errno::EMFILE);
    /// The other side of an IPC endpoint is gone.
    pub const EPIPE: Errno = Errno(errno::EPIPE);
    /// Unknown system-call number.
    pub const ENOSYS: Errno = Errno(errno::ENOSYS);

    /// Every code the ABI defines, in ascending order.
    pub const ALL: [Errno; 11] = [
        Errno::ENOENT,
        Errno::ESRCH,
        Errno::EINTR,
        Errno::EBADF,
        Errno::ENOMEM,
        Errno::EBUSY,
        Errno::EFAULT,
        Errno::EINVAL,
        Errno::EMFILE,
        Errno::EPIPE,
        Errno::ENOSYS,
    ];

    /// The error a raw system-call result stands for: `Some` for a negative result (any
    /// negative value, defined by the ABI or not), `None` for a value.
    pub const fn from_result(ret: u64) -> Option<Errno> {
        let signed = ret as i64;
        if signed < 0 {
            // `wrapping_neg`: `i64::MIN` stays negative and so is never a defined code.
            Some(Errno(signed.wrapping_neg()))
        } else {
            None
        }
    }

    /// The code's symbolic name, or `None` if the ABI does not define it.
    pub const fn name(self) -> Option<&'static str> {
        match self.0 {
            errno::ENOENT => Some("ENOENT"),
            errno::ESRCH => Some("ESRCH"),
            errno::EINTR => Some("EINTR"),
            errno::EBADF => Some("EBADF"),
            errno::ENOMEM => Some("ENOMEM"),
            errno::EBUSY => Some("EBUSY"),
            errno::EFAULT => Some("EFAULT"),
            errno::EINVAL => Some("EINVAL"),
            errno::EMFILE => Some("EMFILE"),
            errno::EPIPE => Some("EPIPE"),
            errno::ENOSYS => Some("ENOSYS"),
            _ => None,
        }
    }

    /// Whether the ABI defines this code.
    pub const fn is_defined(self) -> bool {
        self.name().is_some()
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "errno {}", self.0),
        }
    }
}
