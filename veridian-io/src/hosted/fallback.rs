//! The `pread`/`pwrite` back-end: one system call per operation, in submission order.

use std::vec::Vec;

use crate::backend::{Backend, run_in_order};
use crate::entry::{Cqe, FsyncFlags, Opcode, Sqe, SqeFlags};
use crate::error::{IoError, errno};
use crate::pool::BufferPool;
use crate::ring::{Consumer, OverflowProducer};

use super::last_errno;

/// Registered-file table size (the same as the io_uring back-end's).
const FILE_SLOTS: usize = super::uring::FILE_SLOTS as usize;

/// Runs operations synchronously with plain system calls. Every operation has completed when
/// [`Backend::enter`] returns, so `DRAIN` holds trivially and link chains are applied in
/// order; registered buffers are accepted and used as ordinary memory.
#[derive(Debug, Default)]
pub struct PreadBackend {
    /// Registered files.
    files: Vec<i32>,
    /// Registered pools (kept alive while registered, like the io_uring back-end does).
    pools: Vec<BufferPool>,
}

impl PreadBackend {
    /// A new fallback back-end.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs one validated entry; returns bytes or a negated errno.
    ///
    /// # Safety
    /// The entry's memory is valid as `Backend::enter` requires.
    unsafe fn exec(&self, sqe: &Sqe) -> i32 {
        let fd = if sqe.flags.contains(SqeFlags::FIXED_FILE) {
            match usize::try_from(sqe.fd).ok().and_then(|i| self.files.get(i)) {
                Some(&fd) => fd,
                None => return -errno::EBADF,
            }
        } else {
            sqe.fd
        };
        let offset = sqe.offset as libc::off_t;
        let addr = core::ptr::with_exposed_provenance_mut::<u8>(sqe.addr);
        loop {
            // SAFETY: (every arm) the caller guarantees `addr..addr+len` (or `len` iovecs at
            // `addr`, laid out like `struct iovec`) valid for the access; the kernel checks
            // `fd`.
            let r: isize = unsafe {
                match sqe.opcode {
                    Opcode::Nop => 0,
                    Opcode::Read => libc::pread(fd, addr.cast(), sqe.len as usize, offset),
                    Opcode::Write => libc::pwrite(fd, addr.cast(), sqe.len as usize, offset),
                    Opcode::Readv => libc::preadv(fd, addr.cast(), sqe.len as libc::c_int, offset),
                    Opcode::Writev => {
                        libc::pwritev(fd, addr.cast(), sqe.len as libc::c_int, offset)
                    }
                    Opcode::Fsync => {
                        if FsyncFlags::from_bits_retain(sqe.op_flags).contains(FsyncFlags::DATASYNC)
                        {
                            libc::fdatasync(fd) as isize
                        } else {
                            libc::fsync(fd) as isize
                        }
                    }
                }
            };
            if r >= 0 {
                // The kernel caps one transfer at `MAX_RW_COUNT` (< 2^31).
                return r.min(i32::MAX as isize) as i32;
            }
            let e = last_errno();
            if e != errno::EINTR {
                return -e;
            }
        }
    }
}

// SAFETY: each entry runs synchronously through a system call confined to the memory it
// describes, before its completion is pushed through the never-dropping `OverflowProducer`;
// one completion per entry.
unsafe impl Backend for PreadBackend {
    fn name(&self) -> &'static str {
        "pread"
    }

    unsafe fn enter(
        &mut self,
        sq: &mut Consumer<Sqe>,
        cq: &mut OverflowProducer<Cqe>,
        _wait: usize,
    ) -> Result<usize, IoError> {
        cq.flush();
        // SAFETY: forwarded contract, which `exec` relies on.
        Ok(unsafe { run_in_order(sq, cq, |sqe| self.exec(sqe)) })
    }

    fn outstanding(&self) -> usize {
        0
    }

    fn register_file(&mut self, fd: i32) -> Result<u32, IoError> {
        // SAFETY: F_GETFD only queries the descriptor table.
        if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(IoError::BadFd);
        }
        if self.files.len() >= FILE_SLOTS {
            return Err(IoError::TooManyRegistrations);
        }
        self.files.push(fd);
        Ok((self.files.len() - 1) as u32)
    }

    fn register_pool(&mut self, pool: &BufferPool) -> Result<u16, IoError> {
        if let Some(i) = self.pools.iter().position(|p| p.id() == pool.id()) {
            return Ok(i as u16);
        }
        if self.pools.len() >= super::uring::POOL_SLOTS {
            return Err(IoError::TooManyRegistrations);
        }
        self.pools.push(pool.clone());
        Ok((self.pools.len() - 1) as u16)
    }
}
