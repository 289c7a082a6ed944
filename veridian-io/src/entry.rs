//! The entries that travel through the rings: [`Sqe`] (one operation to run) and [`Cqe`] (its
//! result), in the shape of io_uring's, so a back-end translates them field by field.
//!
//! An [`Sqe`] describes memory by address ([`Sqe::addr`], a buffer or an array of [`IoVec`]).
//! Building one is safe; *pushing* one into a submission ring is where the promise is made:
//! [`SubmissionProducer::push`](crate::ring::Producer::push) for `Sqe` is an ordinary safe push,
//! and it is the back-end's [`Backend::enter`](crate::Backend::enter) that is `unsafe`, with the
//! caller guaranteeing that every entry's memory stays valid (and, for reads, unaliased) until
//! its completion is posted. [`BatchedIo`](crate::BatchedIo) is the safe layer that keeps that
//! promise by owning the buffers until their completions arrive.

use bitflags::bitflags;

use crate::error::IoError;

/// What an [`Sqe`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Opcode {
    /// Nothing; completes with 0. Measures the queueing machinery itself.
    #[default]
    Nop = 0,
    /// `pread`: read up to `len` bytes at `offset` into `addr`.
    Read = 1,
    /// `pwrite`: write `len` bytes from `addr` at `offset`.
    Write = 2,
    /// `preadv`: scatter-read at `offset` into `len` [`IoVec`]s at `addr`.
    Readv = 3,
    /// `pwritev`: gather-write at `offset` from `len` [`IoVec`]s at `addr`.
    Writev = 4,
    /// `fsync` (or `fdatasync` with [`FsyncFlags::DATASYNC`] in `op_flags`).
    Fsync = 5,
}

bitflags! {
    /// Per-entry flags (io_uring's `IOSQE_*` plus the fixed-buffer choice, which io_uring
    /// encodes in the opcode).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct SqeFlags: u8 {
        /// `fd` is an index into the back-end's registered-file table, not a descriptor.
        const FIXED_FILE = 1 << 0;
        /// Do not start this entry before every earlier entry has completed.
        const DRAIN = 1 << 1;
        /// The next entry starts only after this one completes successfully (for reads and
        /// writes: transfers every byte asked for); otherwise the rest of the chain completes
        /// with [`IoError::Canceled`]. A chain ends at the first entry without `LINK` or at
        /// the end of a submission.
        const LINK = 1 << 2;
        /// `addr..addr+len` lies in the registered buffer `buf_index`
        /// ([`Backend::register_pool`](crate::Backend::register_pool)); back-ends that can
        /// use the registration (io_uring's `READ_FIXED`/`WRITE_FIXED`) skip mapping the
        /// buffer per operation. Only for `Read` and `Write`.
        const FIXED_BUFFER = 1 << 3;
    }
}

bitflags! {
    /// Flags for [`Opcode::Fsync`], in [`Sqe::op_flags`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct FsyncFlags: u32 {
        /// Only data (and the metadata needed to read it back), like `fdatasync`.
        const DATASYNC = 1 << 0;
    }
}

/// One scatter/gather element, laid out like `struct iovec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct IoVec {
    /// Start of the buffer.
    pub base: *mut u8,
    /// Length in bytes.
    pub len: usize,
}

// SAFETY: an `IoVec` is a description (address and length), like the `Sqe` that points to it;
// whoever dereferences it does so under the submission contract of `Backend::enter`.
unsafe impl Send for IoVec {}
// SAFETY: as above; sharing the description gives no access by itself.
unsafe impl Sync for IoVec {}

/// A submission-queue entry: one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Sqe {
    /// What to do.
    pub opcode: Opcode,
    /// [`SqeFlags`].
    pub flags: SqeFlags,
    /// Registered-buffer index, with [`SqeFlags::FIXED_BUFFER`].
    pub buf_index: u16,
    /// File descriptor, or registered-file index with [`SqeFlags::FIXED_FILE`].
    pub fd: i32,
    /// Byte offset in the file (at most `i64::MAX`; larger values complete with
    /// [`IoError::InvalidArgument`]: io_uring would read `u64::MAX` as "current position").
    pub offset: u64,
    /// Buffer address (`Read`/`Write`) or address of an [`IoVec`] array (`Readv`/`Writev`).
    pub addr: usize,
    /// Buffer length in bytes, or number of [`IoVec`]s.
    pub len: u32,
    /// Opcode-specific flags ([`FsyncFlags`] for `Fsync`).
    pub op_flags: u32,
    /// Copied unchanged into the completion.
    pub user_data: u64,
}

impl Sqe {
    /// A no-op.
    pub const fn nop(user_data: u64) -> Self {
        Self {
            opcode: Opcode::Nop,
            flags: SqeFlags::empty(),
            buf_index: 0,
            fd: -1,
            offset: 0,
            addr: 0,
            len: 0,
            op_flags: 0,
            user_data,
        }
    }

    /// Read `len` bytes at `offset` of `fd` into `buf`.
    pub fn read(fd: i32, buf: *mut u8, len: u32, offset: u64, user_data: u64) -> Self {
        Self {
            opcode: Opcode::Read,
            fd,
            addr: buf.expose_provenance(),
            len,
            offset,
            ..Self::nop(user_data)
        }
    }

    /// Write `len` bytes from `buf` at `offset` of `fd`.
    pub fn write(fd: i32, buf: *const u8, len: u32, offset: u64, user_data: u64) -> Self {
        Self {
            opcode: Opcode::Write,
            fd,
            addr: buf.expose_provenance(),
            len,
            offset,
            ..Self::nop(user_data)
        }
    }

    /// Scatter-read at `offset` of `fd` into the `count` iovecs at `iovecs`.
    pub fn readv(fd: i32, iovecs: *const IoVec, count: u32, offset: u64, user_data: u64) -> Self {
        Self {
            opcode: Opcode::Readv,
            fd,
            addr: iovecs.expose_provenance(),
            len: count,
            offset,
            ..Self::nop(user_data)
        }
    }

    /// Gather-write at `offset` of `fd` from the `count` iovecs at `iovecs`.
    pub fn writev(fd: i32, iovecs: *const IoVec, count: u32, offset: u64, user_data: u64) -> Self {
        Self {
            opcode: Opcode::Writev,
            ..Self::readv(fd, iovecs, count, offset, user_data)
        }
    }

    /// Flush `fd` to stable storage.
    pub const fn fsync(fd: i32, flags: FsyncFlags, user_data: u64) -> Self {
        Self {
            opcode: Opcode::Fsync,
            fd,
            op_flags: flags.bits(),
            ..Self::nop(user_data)
        }
    }

    /// This entry with `flags` added.
    pub const fn with_flags(mut self, flags: SqeFlags) -> Self {
        self.flags = self.flags.union(flags);
        self
    }

    /// This entry marked as using registered buffer `index`.
    pub const fn with_buf_index(mut self, index: u16) -> Self {
        self.flags = self.flags.union(SqeFlags::FIXED_BUFFER);
        self.buf_index = index;
        self
    }

    /// Checks what every back-end checks before running the entry: the offset fits `i64`, and
    /// a fixed buffer is only used with `Read`/`Write`.
    pub fn validate(&self) -> Result<(), IoError> {
        if self.offset > i64::MAX as u64 {
            return Err(IoError::InvalidArgument);
        }
        if self.flags.contains(SqeFlags::FIXED_BUFFER)
            && !matches!(self.opcode, Opcode::Read | Opcode::Write)
        {
            return Err(IoError::InvalidArgument);
        }
        Ok(())
    }
}

/// A completion-queue entry: the result of one [`Sqe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Cqe {
    /// The `user_data` of the entry this completes.
    pub user_data: u64,
    /// Bytes transferred (`>= 0`) or a negated errno.
    pub res: i32,
    /// Reserved for back-end specific flags (0 from the back-ends of this crate).
    pub flags: u32,
}

impl Cqe {
    /// A completion for `user_data` with result `res`.
    pub const fn new(user_data: u64, res: i32) -> Self {
        Self {
            user_data,
            res,
            flags: 0,
        }
    }

    /// The result decoded: bytes transferred, or the error.
    pub const fn result(&self) -> Result<u32, IoError> {
        IoError::result(self.res)
    }
}
