//! An in-memory back-end: files are byte vectors, operations run when the doorbell rings.
//!
//! For tests of everything above the back-end (rings, batching, link chains, zero-copy
//! buffers) without a device or an operating system; `no_std`. It behaves like a file system
//! with `pread`/`pwrite` semantics: reads past the end are short (0 at or past the end),
//! writes past the end grow the file with zeros, a bad descriptor gives `EBADF`, an offset
//! above `i64::MAX` gives `EINVAL`. [`CompletionOrder::Reversed`] posts each doorbell's
//! completions last-first, the way a real device may, so callers are tested for matching by
//! `user_data` rather than by order; [`LoopbackBackend::set_hold_completions`] keeps
//! completions back until the caller waits, so operations stay in flight between doorbells.

use alloc::vec::Vec;

use crate::backend::{Backend, run_in_order};
use crate::entry::{Cqe, Opcode, Sqe, SqeFlags};
use crate::error::{IoError, errno};
use crate::pool::BufferPool;
use crate::ring::{Consumer, OverflowProducer};

/// Registered-file table size of the loopback back-end.
pub const LOOPBACK_FILE_SLOTS: usize = 64;

/// Registered-pool table size of the loopback back-end.
pub const LOOPBACK_POOL_SLOTS: usize = 16;

/// In which order a doorbell's completions are posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CompletionOrder {
    /// Submission order.
    #[default]
    InOrder,
    /// Last entry first.
    Reversed,
}

/// One in-memory file.
#[derive(Debug)]
struct LoopFile {
    /// The content.
    data: Vec<u8>,
    /// Whether writes are allowed (`EBADF` otherwise, like a file opened read-only).
    writable: bool,
}

/// The in-memory back-end. File descriptors are small integers it hands out.
#[derive(Debug, Default)]
pub struct LoopbackBackend {
    /// Files by descriptor; `None` once closed.
    files: Vec<Option<LoopFile>>,
    /// Registered files: descriptors by index.
    fixed: Vec<i32>,
    /// Registered pools (kept alive while registered).
    pools: Vec<BufferPool>,
    /// Completion order.
    order: CompletionOrder,
    /// Completions not yet posted (reordered, or held back).
    held: Vec<Cqe>,
    /// Post completions only when the caller waits (an asynchronous device).
    hold: bool,
    /// Doorbells rung (calls to `enter` that took entries).
    doorbells: u64,
}

impl LoopbackBackend {
    /// An empty back-end.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the completion order.
    pub fn set_completion_order(&mut self, order: CompletionOrder) {
        self.order = order;
    }

    /// Creates a file holding `data`; returns its descriptor.
    pub fn create_file(&mut self, data: Vec<u8>) -> i32 {
        self.add(LoopFile {
            data,
            writable: true,
        })
    }

    /// Creates a file that refuses writes (`EBADF`, like a descriptor opened read-only).
    pub fn create_read_only_file(&mut self, data: Vec<u8>) -> i32 {
        self.add(LoopFile {
            data,
            writable: false,
        })
    }

    /// Adds a file.
    fn add(&mut self, file: LoopFile) -> i32 {
        self.files.push(Some(file));
        (self.files.len() - 1) as i32
    }

    /// With `hold`, completions are posted only by an `enter` that waits (`wait > 0`), the way
    /// an asynchronous device finishes work after the doorbell: operations stay in flight
    /// between doorbells. The operations themselves still run at the doorbell.
    pub fn set_hold_completions(&mut self, hold: bool) {
        self.hold = hold;
    }

    /// The content of file `fd`.
    pub fn file(&self, fd: i32) -> Option<&[u8]> {
        self.get(fd).map(|f| f.data.as_slice())
    }

    /// Closes `fd`; later operations on it fail with `EBADF`.
    ///
    /// # Errors
    /// [`IoError::BadFd`] if it is not open.
    pub fn close(&mut self, fd: i32) -> Result<(), IoError> {
        let slot = usize::try_from(fd)
            .ok()
            .and_then(|i| self.files.get_mut(i))
            .ok_or(IoError::BadFd)?;
        slot.take().map(drop).ok_or(IoError::BadFd)
    }

    /// Doorbells rung so far (one per `enter` that took entries).
    pub fn doorbells(&self) -> u64 {
        self.doorbells
    }

    /// File `fd`, if open.
    fn get(&self, fd: i32) -> Option<&LoopFile> {
        self.files.get(usize::try_from(fd).ok()?)?.as_ref()
    }

    /// The descriptor an entry names (through the registered table for `FIXED_FILE`).
    fn resolve(&self, sqe: &Sqe) -> i32 {
        if sqe.flags.contains(SqeFlags::FIXED_FILE) {
            usize::try_from(sqe.fd)
                .ok()
                .and_then(|i| self.fixed.get(i).copied())
                .unwrap_or(-1)
        } else {
            sqe.fd
        }
    }

    /// Runs one (validated) entry; returns bytes or a negated errno.
    ///
    /// # Safety
    /// The entry's memory is valid as `Backend::enter` requires.
    unsafe fn exec(&mut self, sqe: &Sqe) -> i32 {
        if sqe.opcode == Opcode::Nop {
            return 0;
        }
        let fd = self.resolve(sqe);
        let Some(file) = usize::try_from(fd)
            .ok()
            .and_then(|i| self.files.get_mut(i))
            .and_then(Option::as_mut)
        else {
            return -errno::EBADF;
        };
        let offset = sqe.offset as usize;
        let single;
        let pieces: &[crate::IoVec] = match sqe.opcode {
            Opcode::Read | Opcode::Write => {
                // Entries carry addresses as integers (as io_uring's do); `Sqe`'s constructors
                // exposed the buffer's provenance.
                single = [crate::IoVec {
                    base: core::ptr::with_exposed_provenance_mut(sqe.addr),
                    len: sqe.len as usize,
                }];
                &single
            }
            // SAFETY: `len` valid iovecs at `addr` (the caller's contract).
            Opcode::Readv | Opcode::Writev => unsafe {
                core::slice::from_raw_parts(
                    core::ptr::with_exposed_provenance::<crate::IoVec>(sqe.addr),
                    sqe.len as usize,
                )
            },
            Opcode::Fsync | Opcode::Nop => return 0,
        };
        let total: usize = pieces.iter().map(|p| p.len).sum();
        if total > i32::MAX as usize {
            return -errno::EINVAL;
        }
        let mut done = 0;
        match sqe.opcode {
            Opcode::Read | Opcode::Readv => {
                for piece in pieces {
                    let start = offset.saturating_add(done).min(file.data.len());
                    let n = piece.len.min(file.data.len() - start);
                    // SAFETY: `piece` is writable memory of `piece.len >= n` bytes that nobody
                    // else accesses (the caller's contract); the source is our own vector.
                    unsafe {
                        core::ptr::copy_nonoverlapping(file.data.as_ptr().add(start), piece.base, n)
                    };
                    done += n;
                    if n < piece.len {
                        break;
                    }
                }
            }
            _ => {
                if !file.writable {
                    return -errno::EBADF;
                }
                let Some(end) = offset.checked_add(total) else {
                    return -errno::EFBIG;
                };
                if end > file.data.len() {
                    if end > isize::MAX as usize / 2 {
                        return -errno::EFBIG;
                    }
                    file.data.resize(end, 0);
                }
                for piece in pieces {
                    // SAFETY: `piece` is readable memory of `piece.len` bytes (the caller's
                    // contract); the destination range is inside our vector (resized above).
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            piece.base,
                            file.data.as_mut_ptr().add(offset + done),
                            piece.len,
                        )
                    };
                    done += piece.len;
                }
            }
        }
        done as i32
    }
}

// SAFETY: `exec` touches only the memory an entry describes (reads into it for reads, copies
// from it for writes), synchronously, before the completion is pushed; every taken entry gets
// exactly one completion, through the never-dropping `OverflowProducer`.
unsafe impl Backend for LoopbackBackend {
    fn name(&self) -> &'static str {
        "loopback"
    }

    unsafe fn enter(
        &mut self,
        sq: &mut Consumer<Sqe>,
        cq: &mut OverflowProducer<Cqe>,
        wait: usize,
    ) -> Result<usize, IoError> {
        cq.flush();
        // Run everything queued, collecting the completions in a private ring first (to
        // reorder or hold them).
        let (tx, mut rx) = crate::ring::channel::<Cqe>(sq.len().max(1))?;
        let mut tx = OverflowProducer::new(tx);
        // SAFETY: forwarded contract, which `exec` relies on.
        let taken = unsafe { run_in_order(sq, &mut tx, |sqe| self.exec(sqe)) };
        tx.flush();
        let first_new = self.held.len();
        rx.pop_batch(usize::MAX, |c| self.held.push(c));
        if self.order == CompletionOrder::Reversed {
            self.held[first_new..].reverse();
        }
        if !self.hold || wait > 0 {
            for c in self.held.drain(..) {
                cq.push(c);
            }
        }
        if taken > 0 {
            self.doorbells += 1;
        }
        Ok(taken)
    }

    fn outstanding(&self) -> usize {
        self.held.len()
    }

    fn register_file(&mut self, fd: i32) -> Result<u32, IoError> {
        if self.get(fd).is_none() {
            return Err(IoError::BadFd);
        }
        if self.fixed.len() >= LOOPBACK_FILE_SLOTS {
            return Err(IoError::TooManyRegistrations);
        }
        self.fixed.push(fd);
        Ok((self.fixed.len() - 1) as u32)
    }

    fn register_pool(&mut self, pool: &BufferPool) -> Result<u16, IoError> {
        if let Some(i) = self.pools.iter().position(|p| p.id() == pool.id()) {
            return Ok(i as u16);
        }
        if self.pools.len() >= LOOPBACK_POOL_SLOTS {
            return Err(IoError::TooManyRegistrations);
        }
        self.pools.push(pool.clone());
        Ok((self.pools.len() - 1) as u16)
    }
}
