//! The [`Backend`] trait: what runs the operations of a submission ring and posts their
//! completions, plus the in-order executor shared by the synchronous back-ends.
//!
//! A back-end is the consumer of a submission ring and the producer of a completion ring.
//! [`Backend::enter`] is the doorbell: it takes what is queued (one io_uring `enter` system
//! call, one virtqueue notification, ...), and collects completions. The kernel drives virtio
//! devices through this trait; the `std` feature drives Linux io_uring, or `pread`/`pwrite`
//! where io_uring is refused; [`LoopbackBackend`](crate::LoopbackBackend) runs on in-memory
//! files everywhere.

use crate::entry::{Cqe, Opcode, Sqe, SqeFlags};
use crate::error::errno;
use crate::pool::BufferPool;
use crate::ring::{Consumer, OverflowProducer};

/// Runs operations described by [`Sqe`]s and posts one [`Cqe`] for each.
///
/// # Safety
/// An implementation must guarantee that, for each entry it takes from the submission ring:
/// - it accesses only the memory the entry describes (`addr..addr + len` for `Read`/`Write`,
///   the `len` [`IoVec`](crate::IoVec)s at `addr` and the buffers they describe for
///   `Readv`/`Writev`), writes only for reads and only reads for writes;
/// - it stops accessing that memory before it posts the entry's completion, and posts exactly
///   one completion with the entry's `user_data`;
/// - a completion it cannot place in the ring goes to the [`OverflowProducer`]'s list (which
///   never drops), so completions are never lost.
///
/// Callers ([`BatchedIo`](crate::BatchedIo) among them) free or reuse an operation's buffers
/// as soon as its completion arrives, so breaking these rules corrupts memory.
pub unsafe trait Backend {
    /// A short name for messages ("io_uring", "pread", "loopback", ...).
    fn name(&self) -> &'static str;

    /// Takes the entries queued in `sq` (all of them, unless the device is out of room) and
    /// starts them with one doorbell, then posts completions to `cq`: at least
    /// `min(wait, outstanding)` of them, where `outstanding` is the number of entries taken
    /// (in this call or earlier) whose completion is not yet posted, plus any others already
    /// finished. Returns the number of entries taken in this call.
    ///
    /// # Errors
    /// What the doorbell or the wait reported (for example [`Interrupted`] is retried inside,
    /// a refused system call is returned). Entries taken before an error still get their
    /// completions on a later call.
    ///
    /// # Safety
    /// Every entry in `sq` must describe memory that stays valid (allocated, and for reads
    /// not accessed by anyone else) until its completion is posted, and file descriptors that
    /// stay open until then.
    ///
    /// [`Interrupted`]: crate::IoError::Interrupted
    unsafe fn enter(
        &mut self,
        sq: &mut Consumer<Sqe>,
        cq: &mut OverflowProducer<Cqe>,
        wait: usize,
    ) -> Result<usize, crate::IoError>;

    /// Entries taken whose completion is not posted yet.
    fn outstanding(&self) -> usize;

    /// Registers file descriptor `fd`, returning the index to use with
    /// [`SqeFlags::FIXED_FILE`]. The descriptor must stay open while registered.
    ///
    /// # Errors
    /// [`BadFd`](crate::IoError::BadFd) for a descriptor that is not open,
    /// [`TooManyRegistrations`](crate::IoError::TooManyRegistrations) when the table is full.
    fn register_file(&mut self, fd: i32) -> Result<u32, crate::IoError>;

    /// Registers a pool's region, returning the index to use with
    /// [`SqeFlags::FIXED_BUFFER`]. The back-end keeps a reference to the pool, so the region
    /// stays allocated while registered.
    ///
    /// # Errors
    /// [`TooManyRegistrations`](crate::IoError::TooManyRegistrations), or what the device
    /// reports ([`Busy`](crate::IoError::Busy) while operations are in flight on back-ends
    /// that must re-register everything).
    fn register_pool(&mut self, pool: &BufferPool) -> Result<u16, crate::IoError>;
}

/// The bytes an entry asks to transfer (`None` for entries that transfer nothing).
///
/// # Safety
/// For `Readv`/`Writev` the entry's `addr` points to `len` readable [`IoVec`](crate::IoVec)s.
pub(crate) unsafe fn requested_len(sqe: &Sqe) -> Option<u64> {
    match sqe.opcode {
        Opcode::Read | Opcode::Write => Some(u64::from(sqe.len)),
        Opcode::Readv | Opcode::Writev => {
            if sqe.len == 0 {
                return Some(0);
            }
            // SAFETY: the caller guarantees `len` readable iovecs at `addr`.
            let iovecs = unsafe {
                core::slice::from_raw_parts(
                    core::ptr::with_exposed_provenance::<crate::IoVec>(sqe.addr),
                    sqe.len as usize,
                )
            };
            Some(iovecs.iter().map(|v| v.len as u64).sum())
        }
        Opcode::Nop | Opcode::Fsync => None,
    }
}

/// Runs the queued entries one after the other with `exec` (which returns a byte count or a
/// negated errno) and posts their completions, applying the link rule: after an entry with
/// [`SqeFlags::LINK`] fails or transfers less than asked, the rest of its chain completes with
/// `-ECANCELED`. Entries that fail [`Sqe::validate`] complete with `-EINVAL` without running.
/// `DRAIN` needs nothing: every earlier entry has completed when an entry starts. Returns the
/// number of entries taken.
///
/// # Safety
/// As [`Backend::enter`]; `exec` relies on it.
pub(crate) unsafe fn run_in_order(
    sq: &mut Consumer<Sqe>,
    cq: &mut OverflowProducer<Cqe>,
    mut exec: impl FnMut(&Sqe) -> i32,
) -> usize {
    let mut chain_failed = false;
    let mut taken = 0;
    sq.pop_batch(usize::MAX, |sqe| {
        let res = if chain_failed {
            -errno::ECANCELED
        } else if sqe.validate().is_err() {
            -errno::EINVAL
        } else {
            exec(&sqe)
        };
        if sqe.flags.contains(SqeFlags::LINK) {
            // SAFETY: the entry's iovec array is valid (caller's contract).
            let short =
                res >= 0 && unsafe { requested_len(&sqe) }.is_some_and(|n| (res as u64) < n);
            chain_failed |= res < 0 || short;
        } else {
            chain_failed = false;
        }
        cq.push(Cqe::new(sqe.user_data, res));
        taken += 1;
    });
    taken
}
