//! The Linux io_uring back-end.
//!
//! Each [`Backend::enter`] moves the queued [`Sqe`]s into the kernel's submission ring
//! (translated field by field), makes one `io_uring_enter` system call that submits them and,
//! when asked, waits, then moves every kernel completion into the caller's completion ring.
//! Registered files are a sparse kernel file table; a registered pool is one kernel registered
//! buffer spanning the pool's region, so a read or write into any of its buffers is a
//! `READ_FIXED`/`WRITE_FIXED` that skips the per-operation page mapping.
//!
//! Entries that fail [`Sqe::validate`] never reach the kernel (io_uring would read an offset of
//! `u64::MAX` as "the current file position"): they complete at once with `EINVAL`, the rest
//! of their link chain completes with `ECANCELED`, and the chain's earlier entries run as an
//! ended chain, which is what the kernel does when a chain member fails.

use std::vec::Vec;

use io_uring::{IoUring, opcode, squeue, types};

use crate::backend::Backend;
use crate::entry::{Cqe, FsyncFlags, Opcode, Sqe, SqeFlags};
use crate::error::{IoError, errno};
use crate::pool::BufferPool;
use crate::ring::{Consumer, OverflowProducer};

/// io_uring's largest submission ring.
pub(crate) const MAX_ENTRIES: u32 = 32768;

/// Registered-file table size.
pub(crate) const FILE_SLOTS: u32 = 64;

/// Most pools registered at once (each one kernel registered buffer).
pub(crate) const POOL_SLOTS: usize = 16;

/// A kernel io_uring instance behind the [`Backend`] trait.
pub struct IoUringBackend {
    /// The kernel ring.
    ring: IoUring,
    /// Entries submitted whose completion has not been moved out yet.
    outstanding: usize,
    /// Registered files by index (`-1`: free); empty until the first registration.
    files: Vec<i32>,
    /// Registered pools, in kernel registered-buffer order.
    pools: Vec<BufferPool>,
    /// Translated entries of the current doorbell.
    scratch: Vec<squeue::Entry>,
}

impl core::fmt::Debug for IoUringBackend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IoUringBackend")
            .field("sq_entries", &self.ring.params().sq_entries())
            .field("cq_entries", &self.ring.params().cq_entries())
            .field("outstanding", &self.outstanding)
            .field(
                "registered_files",
                &self.files.iter().filter(|&&f| f >= 0).count(),
            )
            .field("registered_pools", &self.pools.len())
            .finish()
    }
}

impl IoUringBackend {
    /// Sets up a kernel ring of `entries` submission slots (rounded up to a power of two by
    /// the kernel; the completion ring is twice that).
    ///
    /// # Errors
    /// [`IoError::InvalidArgument`] for 0 or more than 32768 entries; what the kernel says when
    /// it refuses io_uring (`ENOSYS`: not built in; `EPERM`: disabled by sysctl or seccomp;
    /// `ENOMEM`: locked-memory limit).
    pub fn new(entries: u32) -> Result<Self, IoError> {
        if entries == 0 || entries > MAX_ENTRIES {
            return Err(IoError::InvalidArgument);
        }
        let ring = IoUring::new(entries)?;
        Ok(Self {
            ring,
            outstanding: 0,
            files: Vec::new(),
            pools: Vec::new(),
            scratch: Vec::with_capacity(entries as usize),
        })
    }

    /// Moves every kernel completion into `cq`; returns how many.
    fn reap(&mut self, cq: &mut OverflowProducer<Cqe>) -> usize {
        let mut n = 0;
        for cqe in self.ring.completion() {
            cq.push(Cqe::new(cqe.user_data(), cqe.result()));
            n += 1;
        }
        self.outstanding -= n.min(self.outstanding);
        n
    }
}

/// The kernel entry for a validated `sqe`.
fn translate(sqe: &Sqe) -> squeue::Entry {
    let addr = core::ptr::with_exposed_provenance_mut::<u8>(sqe.addr);
    let fixed_buffer = sqe.flags.contains(SqeFlags::FIXED_BUFFER);
    // The opcode builders take either a descriptor or a registered-file index.
    macro_rules! with_target {
        (|$fd:ident| $build:expr) => {
            if sqe.flags.contains(SqeFlags::FIXED_FILE) {
                let $fd = types::Fixed(sqe.fd as u32);
                $build
            } else {
                let $fd = types::Fd(sqe.fd);
                $build
            }
        };
    }
    let entry = match sqe.opcode {
        Opcode::Nop => opcode::Nop::new().build(),
        Opcode::Read if fixed_buffer => {
            with_target!(
                |fd| opcode::ReadFixed::new(fd, addr, sqe.len, sqe.buf_index)
                    .offset(sqe.offset)
                    .build()
            )
        }
        Opcode::Read => {
            with_target!(|fd| opcode::Read::new(fd, addr, sqe.len)
                .offset(sqe.offset)
                .build())
        }
        Opcode::Write if fixed_buffer => {
            with_target!(
                |fd| opcode::WriteFixed::new(fd, addr, sqe.len, sqe.buf_index)
                    .offset(sqe.offset)
                    .build()
            )
        }
        Opcode::Write => {
            with_target!(|fd| opcode::Write::new(fd, addr, sqe.len)
                .offset(sqe.offset)
                .build())
        }
        Opcode::Readv => with_target!(|fd| opcode::Readv::new(fd, addr.cast(), sqe.len)
            .offset(sqe.offset)
            .build()),
        Opcode::Writev => with_target!(|fd| opcode::Writev::new(fd, addr.cast(), sqe.len)
            .offset(sqe.offset)
            .build()),
        Opcode::Fsync => {
            let flags = if FsyncFlags::from_bits_retain(sqe.op_flags).contains(FsyncFlags::DATASYNC)
            {
                types::FsyncFlags::DATASYNC
            } else {
                types::FsyncFlags::empty()
            };
            with_target!(|fd| opcode::Fsync::new(fd).flags(flags).build())
        }
    };
    entry.flags(link_flags(sqe.flags)).user_data(sqe.user_data)
}

/// The kernel's chain flags for ours (`FIXED_FILE` is set by the builders).
fn link_flags(flags: SqeFlags) -> squeue::Flags {
    let mut out = squeue::Flags::empty();
    if flags.contains(SqeFlags::LINK) {
        out |= squeue::Flags::IO_LINK;
    }
    if flags.contains(SqeFlags::DRAIN) {
        out |= squeue::Flags::IO_DRAIN;
    }
    out
}

// SAFETY: the kernel accesses exactly the memory each entry describes (the translation keeps
// address, length, iovec count and registered-buffer index), and posts one completion per
// submitted entry after its last access; `reap` moves each into the never-dropping
// `OverflowProducer`. Entries completed without reaching the kernel are never accessed.
unsafe impl Backend for IoUringBackend {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    unsafe fn enter(
        &mut self,
        sq: &mut Consumer<Sqe>,
        cq: &mut OverflowProducer<Cqe>,
        wait: usize,
    ) -> Result<usize, IoError> {
        cq.flush();
        // Completions already in the kernel ring count toward the wait.
        let mut posted = self.reap(cq);
        let mut taken = 0;
        loop {
            // Room in the kernel submission ring (all earlier entries were submitted).
            let room = {
                let ksq = self.ring.submission();
                ksq.capacity() - ksq.len()
            };
            self.scratch.clear();
            let mut cancel_chain = false;
            // The last entry translated in this doorbell, as we received it.
            let mut last: Option<Sqe> = None;
            let scratch = &mut self.scratch;
            let n = sq.pop_batch(room, |sqe| {
                let linked = sqe.flags.contains(SqeFlags::LINK);
                if cancel_chain || sqe.validate().is_err() {
                    let res = if cancel_chain {
                        -errno::ECANCELED
                    } else {
                        -errno::EINVAL
                    };
                    cq.push(Cqe::new(sqe.user_data, res));
                    posted += 1;
                    // An earlier entry linked to this one now ends its chain.
                    if !cancel_chain
                        && let Some(prev) = last.as_mut()
                        && prev.flags.contains(SqeFlags::LINK)
                        && let Some(entry) = scratch.last_mut()
                    {
                        prev.flags.remove(SqeFlags::LINK);
                        *entry = translate(prev);
                    }
                    last = None;
                    cancel_chain = linked;
                } else {
                    scratch.push(translate(&sqe));
                    last = Some(sqe);
                }
            });
            taken += n;
            if n == 0 {
                break;
            }
            // SAFETY: the caller guarantees every entry's memory stays valid until its
            // completion is posted; `room` made space for all of them.
            let pushed = unsafe { self.ring.submission().push_multiple(&self.scratch) };
            debug_assert!(pushed.is_ok(), "kernel submission ring has room");
            self.outstanding += self.scratch.len();
            if sq.is_empty() {
                break;
            }
            // More queued than the kernel ring holds: submit this part now.
            submit(&mut self.ring, 0)?;
        }
        let want = wait.saturating_sub(posted).min(self.outstanding);
        let pending_submit = !self.ring.submission().is_empty();
        if want > 0 || pending_submit {
            let mut want = want;
            loop {
                match submit(&mut self.ring, want) {
                    Ok(()) => break,
                    Err(IoError::Busy | IoError::WouldBlock | IoError::Interrupted) => {
                        // The kernel's completion backlog is full or we were interrupted:
                        // move completions out, then try again for what is still wanted.
                        let got = self.reap(cq);
                        want = want.saturating_sub(got).min(self.outstanding);
                        if got == 0 && want == 0 && self.ring.submission().is_empty() {
                            break;
                        }
                    }
                    Err(e) => {
                        self.reap(cq);
                        return Err(e);
                    }
                }
            }
        }
        self.reap(cq);
        Ok(taken)
    }

    fn outstanding(&self) -> usize {
        self.outstanding
    }

    fn register_file(&mut self, fd: i32) -> Result<u32, IoError> {
        if fd < 0 {
            return Err(IoError::BadFd);
        }
        let submitter = self.ring.submitter();
        if self.files.is_empty() {
            submitter.register_files_sparse(FILE_SLOTS)?;
            self.files = std::vec![-1; FILE_SLOTS as usize];
        }
        let index = self
            .files
            .iter()
            .position(|&f| f < 0)
            .ok_or(IoError::TooManyRegistrations)?;
        submitter.register_files_update(index as u32, &[fd])?;
        self.files[index] = fd;
        Ok(index as u32)
    }

    fn register_pool(&mut self, pool: &BufferPool) -> Result<u16, IoError> {
        if let Some(i) = self.pools.iter().position(|p| p.id() == pool.id()) {
            return Ok(i as u16);
        }
        if self.pools.len() >= POOL_SLOTS {
            return Err(IoError::TooManyRegistrations);
        }
        if !self.pools.is_empty() && self.outstanding > 0 {
            // Registered buffers are replaced as a whole; not under operations in flight.
            return Err(IoError::Busy);
        }
        let submitter = self.ring.submitter();
        let iovecs = |pools: &[BufferPool]| -> Vec<libc::iovec> {
            pools
                .iter()
                .map(|p| {
                    let (base, len) = p.region();
                    libc::iovec {
                        iov_base: base.as_ptr().cast(),
                        iov_len: len,
                    }
                })
                .collect()
        };
        if !self.pools.is_empty() {
            submitter.unregister_buffers()?;
        }
        let mut all = self.pools.clone();
        all.push(pool.clone());
        // SAFETY: each iovec is a pool's whole region, which stays allocated while the pool is
        // registered: `self.pools` holds a reference to every registered pool until the ring
        // is dropped (the kernel drops its registration with the ring).
        match unsafe { submitter.register_buffers(&iovecs(&all)) } {
            Ok(()) => {
                self.pools = all;
                Ok((self.pools.len() - 1) as u16)
            }
            Err(e) => {
                if !self.pools.is_empty() {
                    // SAFETY: as above, for the pools registered before.
                    let _ = unsafe { submitter.register_buffers(&iovecs(&self.pools)) };
                }
                Err(e.into())
            }
        }
    }
}

/// One `io_uring_enter`: submits what is in the kernel submission ring and waits for `want`
/// completions.
fn submit(ring: &mut IoUring, want: usize) -> Result<(), IoError> {
    match ring.submit_and_wait(want) {
        Ok(_) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
