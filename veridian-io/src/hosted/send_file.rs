//! Zero-copy file-to-socket transfer: `splice` from the file into a pipe, then from the pipe
//! into the socket. The data moves as page references inside the kernel; it is never copied
//! into user memory.
//!
//! Needs a blocking socket (a non-blocking one may answer [`IoError::WouldBlock`] mid-way).
//! [`Splicer`] keeps its pipe between transfers; [`send_file`] makes one per call.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use crate::error::{IoError, errno};

use super::last_errno;

/// Bytes moved per `splice` pair: the default pipe capacity (16 pages).
const CHUNK: usize = 64 * 1024;

/// A pipe for splicing, reused across transfers.
#[derive(Debug)]
pub struct Splicer {
    /// The pipe's read end.
    read: OwnedFd,
    /// The pipe's write end.
    write: OwnedFd,
}

impl Splicer {
    /// Creates the pipe.
    ///
    /// # Errors
    /// What `pipe2` reports (for example the descriptor limit).
    pub fn new() -> Result<Self, IoError> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors `pipe2` writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(IoError::from_errno(last_errno()));
        }
        // SAFETY: `pipe2` succeeded, so both are fresh descriptors that we alone own.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Self { read, write })
    }

    /// Sends up to `len` bytes of `file` starting at `offset` to `socket`; returns the bytes
    /// sent, fewer than `len` only when the file ends first. The file's own position is not
    /// used or moved.
    ///
    /// # Errors
    /// [`IoError::InvalidArgument`] for an offset above `i64::MAX`, else what `splice`
    /// reports (for example [`IoError::BrokenPipe`] when the peer closed, or
    /// [`IoError::InvalidArgument`] for a file that cannot be spliced). Bytes already sent stay
    /// sent; bytes in the pipe are discarded.
    pub fn send_file(
        &mut self,
        file: &impl AsFd,
        socket: &impl AsFd,
        offset: u64,
        len: usize,
    ) -> Result<usize, IoError> {
        let Ok(mut off) = libc::loff_t::try_from(offset) else {
            return Err(IoError::InvalidArgument);
        };
        let (file, socket) = (file.as_fd().as_raw_fd(), socket.as_fd().as_raw_fd());
        let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_MORE;
        let mut sent = 0;
        while sent < len {
            let want = (len - sent).min(CHUNK);
            // SAFETY: `off` is a valid `loff_t` the call updates; the descriptors are the
            // caller's file, our pipe's write end.
            let n = unsafe {
                libc::splice(
                    file,
                    &mut off,
                    self.write.as_raw_fd(),
                    core::ptr::null_mut(),
                    want,
                    flags,
                )
            };
            if n < 0 {
                let e = last_errno();
                if e == errno::EINTR {
                    continue;
                }
                return Err(self.discard(IoError::from_errno(e)));
            }
            if n == 0 {
                break; // end of file
            }
            let mut in_pipe = n as usize;
            while in_pipe > 0 {
                // SAFETY: our pipe's read end to the caller's socket, no offsets.
                let m = unsafe {
                    libc::splice(
                        self.read.as_raw_fd(),
                        core::ptr::null_mut(),
                        socket,
                        core::ptr::null_mut(),
                        in_pipe,
                        flags,
                    )
                };
                if m < 0 {
                    let e = last_errno();
                    if e == errno::EINTR {
                        continue;
                    }
                    return Err(self.discard(IoError::from_errno(e)));
                }
                if m == 0 {
                    return Err(self.discard(IoError::BrokenPipe));
                }
                in_pipe -= m as usize;
                sent += m as usize;
            }
        }
        Ok(sent)
    }

    /// Empties the pipe after a failed transfer (by replacing it), so the next transfer starts
    /// clean; returns `error`.
    fn discard(&mut self, error: IoError) -> IoError {
        if let Ok(fresh) = Self::new() {
            *self = fresh;
        }
        error
    }
}

/// Sends up to `len` bytes of `file` from `offset` to `socket` with `splice` through a fresh
/// pipe (see [`Splicer::send_file`]); returns the bytes sent.
///
/// # Errors
/// As [`Splicer::send_file`], plus what creating the pipe reports.
pub fn send_file(
    file: &impl AsFd,
    socket: &impl AsFd,
    offset: u64,
    len: usize,
) -> Result<usize, IoError> {
    Splicer::new()?.send_file(file, socket, offset, len)
}
