//! [`BatchedIo`]: the safe layer over the rings. Queue many typed operations, ring the
//! back-end's doorbell once, collect completions by user data.
//!
//! # What it does
//! An [`Op`] names an operation (nop, read, write, readv, writev, fsync) with its file, offset,
//! buffers, user data and chain flags ([`Op::link`], [`Op::drain`]). [`BatchedIo::push`] turns
//! it into an [`Sqe`] in the submission ring and keeps the buffers in an in-flight slot;
//! [`BatchedIo::submit`] (or [`submit_and_wait`](BatchedIo::submit_and_wait)) calls
//! [`Backend::enter`] once for everything queued: one `io_uring_enter` system call, one
//! doorbell. Completions come back as [`Completion`]s that carry the user data, the result and
//! the buffers, in the order the back-end finished them; [`BatchedIo::take`] and
//! [`BatchedIo::wait_for`] pick one by user data.
//!
//! Buffers are owned: a `Vec<u8>` or a pool buffer ([`IoBuf`]) moves into the operation and
//! comes back in its completion. After a read, the buffer holds exactly the bytes read (a
//! `Vec` is truncated to them, a [`PoolBuf`]'s length is set to them): the zero-copy receive
//! path is a read into a pool buffer whose completion hands the same, filled buffer to the
//! caller ([`BatchedIo::receive`], [`Completion::into_pool_buf`]). A pool registered with
//! [`BatchedIo::register_pool`] is read and written with fixed-buffer operations.
//!
//! # What it relies on
//! The [`Backend`] contract (exactly one completion per entry, no access to the memory after
//! it). Buffer addresses are stable while the buffers sit in their slot: a `Vec`'s heap block
//! and a pool buffer do not move when their owner moves.
//!
//! # What it guarantees
//! - Safety without `unsafe` for the caller: a buffer is unreachable to the caller from
//!   [`push`](BatchedIo::push) until its completion, and dropping a `BatchedIo` waits for every
//!   operation in flight (if the back-end fails while waiting, the buffers still in flight are
//!   leaked, never freed under the device's feet).
//! - Back-pressure, no overflow: at most [`capacity`](BatchedIo::capacity) operations are
//!   queued or in flight (the completion ring's size), so the completion ring never needs its
//!   overflow list; beyond that, `push` refuses with [`IoError::QueueFull`] and gives the
//!   operation back.
//! - Bad input is refused at `push` with a clear error and the operation back: an offset above
//!   `i64::MAX` ([`IoError::InvalidArgument`]), a buffer over `u32::MAX` bytes or more than
//!   [`MAX_IOVECS`] buffers ([`IoError::BufferTooLarge`]).
//! - User data is the caller's: it is returned unchanged and need not be unique (the
//!   lookups then find the oldest completion with that value).

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use crate::backend::Backend;
use crate::entry::{Cqe, FsyncFlags, IoVec, Sqe, SqeFlags};
use crate::error::IoError;
use crate::pool::{BufferPool, PoolBuf};
use crate::ring::{self, Consumer, OverflowProducer, Producer};

/// Most buffers one vectored operation takes (Linux's `IOV_MAX`).
pub const MAX_IOVECS: usize = 1024;

/// A file for an operation: a descriptor, or an index in the back-end's registered-file table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fd {
    /// A file descriptor (or a loopback file).
    Raw(i32),
    /// A registered file ([`BatchedIo::register_file`]).
    Fixed(u32),
}

impl From<i32> for Fd {
    fn from(fd: i32) -> Self {
        Fd::Raw(fd)
    }
}

/// A buffer an operation owns while it is in flight.
#[derive(Debug)]
pub enum IoBuf {
    /// A heap vector: a read fills `len()` bytes at most, a write sends all of it.
    Vec(Vec<u8>),
    /// A pool buffer: a read fills up to its capacity, a write sends its content.
    Pool(PoolBuf),
}

impl From<Vec<u8>> for IoBuf {
    fn from(v: Vec<u8>) -> Self {
        IoBuf::Vec(v)
    }
}

impl From<PoolBuf> for IoBuf {
    fn from(b: PoolBuf) -> Self {
        IoBuf::Pool(b)
    }
}

impl IoBuf {
    /// The content.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            IoBuf::Vec(v) => v,
            IoBuf::Pool(b) => b.as_slice(),
        }
    }

    /// Bytes of content.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there is no content.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vector, if this is one.
    pub fn into_vec(self) -> Option<Vec<u8>> {
        match self {
            IoBuf::Vec(v) => Some(v),
            IoBuf::Pool(_) => None,
        }
    }

    /// The pool buffer, if this is one.
    pub fn into_pool_buf(self) -> Option<PoolBuf> {
        match self {
            IoBuf::Pool(b) => Some(b),
            IoBuf::Vec(_) => None,
        }
    }

    /// Where a read puts its bytes: start and room.
    fn read_target(&mut self) -> (*mut u8, usize) {
        match self {
            IoBuf::Vec(v) => (v.as_mut_ptr(), v.len()),
            IoBuf::Pool(b) => (b.as_mut_ptr(), b.capacity()),
        }
    }

    /// Where a write takes its bytes from: start and length.
    fn write_source(&self) -> (*const u8, usize) {
        let s = self.as_slice();
        (s.as_ptr(), s.len())
    }

    /// After a read of `n` bytes into this buffer: make them the content.
    fn set_read_len(&mut self, n: usize) {
        match self {
            IoBuf::Vec(v) => v.truncate(n),
            IoBuf::Pool(b) => {
                // `n` is at most the capacity the read was given, so this cannot fail.
                let _ = b.set_len(n.min(b.capacity()));
            }
        }
    }
}

/// What an operation does.
#[derive(Debug)]
enum OpKind {
    /// Nothing.
    Nop,
    /// Read at an offset into one buffer.
    Read { fd: Fd, offset: u64, buf: IoBuf },
    /// Write one buffer at an offset.
    Write { fd: Fd, offset: u64, buf: IoBuf },
    /// Read at an offset into several buffers in order.
    Readv {
        fd: Fd,
        offset: u64,
        bufs: Vec<IoBuf>,
    },
    /// Write several buffers in order at an offset.
    Writev {
        fd: Fd,
        offset: u64,
        bufs: Vec<IoBuf>,
    },
    /// Flush a file.
    Fsync { fd: Fd, datasync: bool },
}

/// A typed operation, built with the constructors and the chainable modifiers.
///
/// ```
/// use veridian_io::{Fd, Op};
/// let op = Op::read(Fd::Raw(3), 4096, vec![0; 512]).user_data(7).link();
/// assert_eq!(op.get_user_data(), 7);
/// ```
#[derive(Debug)]
pub struct Op {
    /// What to do.
    kind: OpKind,
    /// Returned in the completion.
    user_data: u64,
    /// `LINK`/`DRAIN`.
    flags: SqeFlags,
}

impl Op {
    /// Builds an operation with user data 0 and no flags.
    fn new(kind: OpKind) -> Self {
        Self {
            kind,
            user_data: 0,
            flags: SqeFlags::empty(),
        }
    }

    /// Does nothing; completes with `Ok(0)`.
    pub fn nop() -> Self {
        Self::new(OpKind::Nop)
    }

    /// Reads at `offset` of `fd` into `buf` (up to its length for a `Vec`, its capacity for a
    /// pool buffer). The completion returns the buffer holding exactly the bytes read.
    pub fn read(fd: impl Into<Fd>, offset: u64, buf: impl Into<IoBuf>) -> Self {
        Self::new(OpKind::Read {
            fd: fd.into(),
            offset,
            buf: buf.into(),
        })
    }

    /// Writes the content of `buf` at `offset` of `fd`.
    pub fn write(fd: impl Into<Fd>, offset: u64, buf: impl Into<IoBuf>) -> Self {
        Self::new(OpKind::Write {
            fd: fd.into(),
            offset,
            buf: buf.into(),
        })
    }

    /// Reads at `offset` of `fd` into `bufs`, filling each before the next.
    pub fn readv(fd: impl Into<Fd>, offset: u64, bufs: Vec<IoBuf>) -> Self {
        Self::new(OpKind::Readv {
            fd: fd.into(),
            offset,
            bufs,
        })
    }

    /// Writes the contents of `bufs`, in order, at `offset` of `fd`.
    pub fn writev(fd: impl Into<Fd>, offset: u64, bufs: Vec<IoBuf>) -> Self {
        Self::new(OpKind::Writev {
            fd: fd.into(),
            offset,
            bufs,
        })
    }

    /// Flushes `fd` to stable storage (`fsync`).
    pub fn fsync(fd: impl Into<Fd>) -> Self {
        Self::new(OpKind::Fsync {
            fd: fd.into(),
            datasync: false,
        })
    }

    /// Flushes the data of `fd` (`fdatasync`).
    pub fn fdatasync(fd: impl Into<Fd>) -> Self {
        Self::new(OpKind::Fsync {
            fd: fd.into(),
            datasync: true,
        })
    }

    /// Sets the user data returned in the completion.
    pub fn user_data(mut self, user_data: u64) -> Self {
        self.user_data = user_data;
        self
    }

    /// The user data.
    pub fn get_user_data(&self) -> u64 {
        self.user_data
    }

    /// Links the next operation pushed to this one: it starts only after this one succeeds
    /// (reads and writes: in full), and is canceled otherwise ([`SqeFlags::LINK`]).
    pub fn link(mut self) -> Self {
        self.flags |= SqeFlags::LINK;
        self
    }

    /// Starts this operation only after every earlier one has completed ([`SqeFlags::DRAIN`]).
    pub fn drain(mut self) -> Self {
        self.flags |= SqeFlags::DRAIN;
        self
    }

    /// Gives the operation's buffers back (for an operation that will not be pushed).
    pub fn into_bufs(self) -> Vec<IoBuf> {
        match self.kind {
            OpKind::Read { buf, .. } | OpKind::Write { buf, .. } => alloc::vec![buf],
            OpKind::Readv { bufs, .. } | OpKind::Writev { bufs, .. } => bufs,
            OpKind::Nop | OpKind::Fsync { .. } => Vec::new(),
        }
    }
}

/// An operation [`BatchedIo::push`] refused, with the reason; the operation (and so its
/// buffers) comes back.
#[derive(Debug)]
pub struct Rejected {
    /// Why.
    pub error: IoError,
    /// The operation, unchanged.
    pub op: Op,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "operation refused: {}", self.error)
    }
}

impl core::error::Error for Rejected {}

/// The buffers of an operation in flight or completed.
#[derive(Debug, Default)]
enum Buffers {
    /// Nop and fsync.
    #[default]
    None,
    /// Read and write.
    One(IoBuf),
    /// Readv and writev.
    Many(Vec<IoBuf>),
}

impl Buffers {
    /// The buffers as a slice.
    fn as_slice(&self) -> &[IoBuf] {
        match self {
            Buffers::None => &[],
            Buffers::One(b) => core::slice::from_ref(b),
            Buffers::Many(v) => v,
        }
    }

    /// The buffers as a mutable slice.
    fn as_mut_slice(&mut self) -> &mut [IoBuf] {
        match self {
            Buffers::None => &mut [],
            Buffers::One(b) => core::slice::from_mut(b),
            Buffers::Many(v) => v,
        }
    }
}

/// The result of one operation, with its buffers.
#[derive(Debug)]
pub struct Completion {
    /// The operation's user data.
    user_data: u64,
    /// Bytes transferred, or the error.
    result: Result<usize, IoError>,
    /// The operation's buffers.
    buffers: Buffers,
}

impl Completion {
    /// The operation's user data.
    pub fn user_data(&self) -> u64 {
        self.user_data
    }

    /// Bytes transferred (0 for nop and fsync; fewer than asked for a read at the end of a
    /// file), or the error.
    pub fn result(&self) -> Result<usize, IoError> {
        self.result
    }

    /// The buffers (none for nop and fsync, one for read and write).
    pub fn bufs(&self) -> &[IoBuf] {
        self.buffers.as_slice()
    }

    /// The first buffer's content (empty for nop and fsync).
    pub fn data(&self) -> &[u8] {
        self.bufs().first().map_or(&[], IoBuf::as_slice)
    }

    /// Takes the buffers.
    pub fn into_bufs(self) -> Vec<IoBuf> {
        match self.buffers {
            Buffers::None => Vec::new(),
            Buffers::One(b) => alloc::vec![b],
            Buffers::Many(v) => v,
        }
    }

    /// Takes the single buffer of a read or write.
    pub fn into_buf(self) -> Option<IoBuf> {
        match self.buffers {
            Buffers::One(b) => Some(b),
            _ => None,
        }
    }

    /// Takes the pool buffer of a read or write into a pool buffer: after a read, the
    /// zero-copy receive result, filled with the bytes read.
    pub fn into_pool_buf(self) -> Option<PoolBuf> {
        self.into_buf()?.into_pool_buf()
    }

    /// Takes the vector of a read or write into a `Vec`.
    pub fn into_vec(self) -> Option<Vec<u8>> {
        self.into_buf()?.into_vec()
    }
}

/// An operation's state between push and completion.
#[derive(Debug, Default)]
struct Slot {
    /// In use.
    active: bool,
    /// The operation reads into its buffers (their lengths are set on completion).
    reads: bool,
    /// The caller's user data.
    user_data: u64,
    /// The buffers, owned until completion.
    buffers: Buffers,
    /// The iovec array of a vectored operation (reused between operations).
    iovecs: Vec<IoVec>,
}

/// Queues operations, submits them with one doorbell, collects their completions.
///
/// ```
/// use veridian_io::{BatchedIo, LoopbackBackend, Op};
/// let mut backend = LoopbackBackend::new();
/// let fd = backend.create_file(b"hello, rings".to_vec());
/// let mut io = BatchedIo::new(backend, 8).unwrap();
/// io.push(Op::read(fd, 0, vec![0; 5]).user_data(1)).unwrap();
/// io.push(Op::read(fd, 7, vec![0; 64]).user_data(2)).unwrap();
/// io.submit_and_wait(2).unwrap(); // one doorbell for both
/// assert_eq!(io.take(2).unwrap().data(), b"rings"); // short read at the end of the file
/// assert_eq!(io.take(1).unwrap().data(), b"hello");
/// ```
pub struct BatchedIo<B: Backend> {
    /// Runs the operations.
    backend: B,
    /// Our end of the submission ring.
    sq_tx: Producer<Sqe>,
    /// The back-end's end of the submission ring.
    sq_rx: Consumer<Sqe>,
    /// The back-end's end of the completion ring.
    cq_tx: OverflowProducer<Cqe>,
    /// Our end of the completion ring.
    cq_rx: Consumer<Cqe>,
    /// In-flight state by slot index (the entries' `user_data`).
    slots: Vec<Slot>,
    /// Free slot indices.
    free: Vec<u32>,
    /// Slots in use: queued or in flight.
    active: usize,
    /// Most slots in use at once: the completion ring's capacity.
    budget: usize,
    /// Completions not yet taken by the caller.
    ready: VecDeque<Completion>,
    /// Registered pools: (pool id, registered-buffer index).
    pools: Vec<(u64, u16)>,
}

impl<B: Backend> BatchedIo<B> {
    /// A batch layer over `backend` with a submission ring of at least `entries` slots and a
    /// completion ring twice that size (io_uring's default), which bounds the operations in
    /// flight.
    ///
    /// # Errors
    /// [`IoError::InvalidArgument`] if `entries` is 0 or too large for a ring.
    pub fn new(backend: B, entries: usize) -> Result<Self, IoError> {
        let (sq_tx, sq_rx) = ring::channel(entries)?;
        let cq_entries = sq_tx
            .capacity()
            .checked_mul(2)
            .ok_or(IoError::InvalidArgument)?;
        let (cq_tx, cq_rx) = ring::channel(cq_entries)?;
        let budget = cq_rx.capacity();
        Ok(Self {
            backend,
            sq_tx,
            sq_rx,
            cq_tx: OverflowProducer::new(cq_tx),
            cq_rx,
            slots: Vec::new(),
            free: Vec::new(),
            active: 0,
            budget,
            ready: VecDeque::new(),
            pools: Vec::new(),
        })
    }

    /// The back-end.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Most operations queued or in flight at once.
    pub fn capacity(&self) -> usize {
        self.budget
    }

    /// Operations queued or in flight (pushed, completion not yet collected).
    pub fn in_flight(&self) -> usize {
        self.active
    }

    /// Completions collected and not yet taken.
    pub fn ready(&self) -> usize {
        self.ready.len()
    }

    /// Registers `fd` with the back-end; returns the [`Fd`] to use in operations.
    ///
    /// # Errors
    /// What the back-end reports ([`Backend::register_file`]).
    pub fn register_file(&mut self, fd: i32) -> Result<Fd, IoError> {
        self.backend.register_file(fd).map(Fd::Fixed)
    }

    /// Registers `pool` with the back-end: reads and writes into its buffers then use
    /// fixed-buffer operations. Registering a pool twice is harmless.
    ///
    /// # Errors
    /// What the back-end reports ([`Backend::register_pool`]); operations on the pool's
    /// buffers still work then, without the registration.
    pub fn register_pool(&mut self, pool: &BufferPool) -> Result<u16, IoError> {
        if let Some(&(_, index)) = self.pools.iter().find(|(id, _)| *id == pool.id()) {
            return Ok(index);
        }
        let index = self.backend.register_pool(pool)?;
        self.pools.push((pool.id(), index));
        Ok(index)
    }

    /// Queues `op`. Nothing reaches the back-end before [`submit`](Self::submit), except
    /// when the submission ring is full: then the queued operations are submitted (one
    /// doorbell) to make room.
    ///
    /// # Errors
    /// The operation comes back in [`Rejected`] with [`IoError::QueueFull`] when
    /// [`capacity`](Self::capacity) operations are queued or in flight, with
    /// [`IoError::InvalidArgument`] for an offset above `i64::MAX` or a registered-file index
    /// above `i32::MAX`, with [`IoError::BufferTooLarge`] for a buffer over `u32::MAX` bytes or
    /// more than [`MAX_IOVECS`] buffers, or with the back-end's error if submitting to make
    /// room failed.
    pub fn push(&mut self, op: Op) -> Result<(), Rejected> {
        if self.active >= self.budget {
            return Err(Rejected {
                error: IoError::QueueFull,
                op,
            });
        }
        if let Err(error) = check(&op) {
            return Err(Rejected { error, op });
        }
        if self.sq_tx.free() == 0
            && let Err(error) = self.enter(0)
        {
            return Err(Rejected { error, op });
        }
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        let ud = u64::from(index);
        let Op {
            kind,
            user_data,
            flags,
        } = op;
        slot.user_data = user_data;
        slot.reads = matches!(kind, OpKind::Read { .. } | OpKind::Readv { .. });
        let sqe = match kind {
            OpKind::Nop => {
                slot.buffers = Buffers::None;
                Sqe::nop(ud)
            }
            OpKind::Fsync { fd, datasync } => {
                slot.buffers = Buffers::None;
                let f = if datasync {
                    FsyncFlags::DATASYNC
                } else {
                    FsyncFlags::empty()
                };
                with_fd(Sqe::fsync(0, f, ud), fd)
            }
            OpKind::Read { fd, offset, buf } | OpKind::Write { fd, offset, buf } => {
                let reads = slot.reads;
                slot.buffers = Buffers::One(buf);
                let Buffers::One(buf) = &mut slot.buffers else {
                    unreachable!("just stored")
                };
                let mut sqe = if reads {
                    let (ptr, len) = buf.read_target();
                    Sqe::read(0, ptr, len as u32, offset, ud)
                } else {
                    let (ptr, len) = buf.write_source();
                    Sqe::write(0, ptr, len as u32, offset, ud)
                };
                if let IoBuf::Pool(p) = buf
                    && let Some(&(_, index)) = self.pools.iter().find(|(id, _)| *id == p.pool_id())
                {
                    sqe = sqe.with_buf_index(index);
                }
                with_fd(sqe, fd)
            }
            OpKind::Readv { fd, offset, bufs } | OpKind::Writev { fd, offset, bufs } => {
                let reads = slot.reads;
                slot.buffers = Buffers::Many(bufs);
                slot.iovecs.clear();
                for buf in slot.buffers.as_mut_slice() {
                    let (base, len) = if reads {
                        buf.read_target()
                    } else {
                        let (p, l) = buf.write_source();
                        (p.cast_mut(), l)
                    };
                    slot.iovecs.push(IoVec { base, len });
                }
                let (ptr, n) = (slot.iovecs.as_ptr(), slot.iovecs.len() as u32);
                let sqe = if reads {
                    Sqe::readv(0, ptr, n, offset, ud)
                } else {
                    Sqe::writev(0, ptr, n, offset, ud)
                };
                with_fd(sqe, fd)
            }
        };
        slot.active = true;
        self.active += 1;
        let pushed = self.sq_tx.push(sqe.with_flags(flags));
        // `free()` was non-zero above (or made so by `enter`), and only we push.
        debug_assert!(pushed.is_ok(), "submission ring has room");
        Ok(())
    }

    /// Zero-copy receive: takes a buffer from `pool` and queues a read of up to its capacity at
    /// `offset` of `fd`; the completion hands the filled buffer over
    /// ([`Completion::into_pool_buf`]).
    ///
    /// # Errors
    /// [`IoError::PoolExhausted`] when the pool has no free buffer, else as
    /// [`push`](Self::push) (the buffer then goes back to the pool).
    pub fn receive(
        &mut self,
        fd: impl Into<Fd>,
        offset: u64,
        pool: &BufferPool,
        user_data: u64,
    ) -> Result<(), IoError> {
        let buf = pool.try_alloc()?;
        self.push(Op::read(fd, offset, buf).user_data(user_data))
            .map_err(|r| r.error)
    }

    /// Rings the doorbell once for everything queued, and collects whatever has completed.
    /// Returns the number of operations submitted.
    ///
    /// # Errors
    /// What the back-end reports; completions of operations it took still arrive later.
    pub fn submit(&mut self) -> Result<usize, IoError> {
        self.enter(0)
    }

    /// [`submit`](Self::submit), then waits until at least `n` operations (at most those in
    /// flight) have completed in this call.
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
    pub fn submit_and_wait(&mut self, n: usize) -> Result<usize, IoError> {
        self.enter(n)
    }

    /// Submits everything and waits for every operation in flight to complete.
    ///
    /// # Errors
    /// What the back-end reports, or [`IoError::WouldBlock`] if the back-end makes no progress.
    pub fn wait_all(&mut self) -> Result<(), IoError> {
        while self.active > 0 {
            let before = self.active;
            let taken = self.enter(self.active)?;
            if taken == 0 && self.active == before {
                return Err(IoError::WouldBlock);
            }
        }
        Ok(())
    }

    /// Removes and returns the oldest collected completion with `user_data`.
    pub fn take(&mut self, user_data: u64) -> Option<Completion> {
        let position = self.ready.iter().position(|c| c.user_data == user_data)?;
        self.ready.remove(position)
    }

    /// Removes and returns the oldest collected completion.
    pub fn next_completion(&mut self) -> Option<Completion> {
        self.ready.pop_front()
    }

    /// Removes and yields every collected completion, oldest first.
    pub fn completions(&mut self) -> impl Iterator<Item = Completion> + '_ {
        self.ready.drain(..)
    }

    /// Submits if needed and waits until the operation with `user_data` completes; returns its
    /// completion.
    ///
    /// # Errors
    /// [`IoError::InvalidArgument`] if no operation with `user_data` is queued, in flight or
    /// collected; else what the back-end reports.
    pub fn wait_for(&mut self, user_data: u64) -> Result<Completion, IoError> {
        loop {
            if let Some(c) = self.take(user_data) {
                return Ok(c);
            }
            if !self
                .slots
                .iter()
                .any(|s| s.active && s.user_data == user_data)
            {
                return Err(IoError::InvalidArgument);
            }
            let before = self.active;
            let taken = self.enter(1)?;
            if taken == 0 && self.active == before {
                return Err(IoError::WouldBlock);
            }
        }
    }

    /// One doorbell, then collect.
    fn enter(&mut self, wait: usize) -> Result<usize, IoError> {
        // SAFETY: every entry in the submission ring was built by `push` from buffers (and an
        // iovec array) owned by an active slot; a slot keeps them, unmoved on the heap, until
        // `collect` sees the entry's completion, and `Drop` waits for every active slot.
        let result = unsafe { self.backend.enter(&mut self.sq_rx, &mut self.cq_tx, wait) };
        self.collect();
        result
    }

    /// Moves completions from the completion ring into `ready`, freeing their slots.
    fn collect(&mut self) {
        loop {
            let slots = &mut self.slots;
            let free = &mut self.free;
            let ready = &mut self.ready;
            let active = &mut self.active;
            self.cq_rx.pop_batch(usize::MAX, |cqe| {
                let Some(slot) = usize::try_from(cqe.user_data)
                    .ok()
                    .and_then(|i| slots.get_mut(i))
                    .filter(|s| s.active)
                else {
                    // Not one of ours: a back-end breaking its contract. Nothing to free.
                    debug_assert!(false, "completion for an unknown slot {}", cqe.user_data);
                    return;
                };
                let result = cqe.result().map(|n| n as usize);
                let mut buffers = core::mem::take(&mut slot.buffers);
                // After a successful read the buffers hold exactly the bytes read; after a
                // failed one they are returned as they were.
                if slot.reads
                    && let Ok(mut left) = result
                {
                    for buf in buffers.as_mut_slice() {
                        let room = buf.read_target().1;
                        buf.set_read_len(left.min(room));
                        left -= left.min(room);
                    }
                }
                slot.active = false;
                free.push(cqe.user_data as u32);
                *active -= 1;
                ready.push_back(Completion {
                    user_data: slot.user_data,
                    result,
                    buffers,
                });
            });
            // Entries the back-end had to park in the overflow list (never with our budget,
            // but the list is the guarantee): move them in and collect them too.
            if self.cq_tx.flush() == 0 && self.cq_rx.is_empty() {
                break;
            }
        }
    }
}

impl<B: Backend> Drop for BatchedIo<B> {
    fn drop(&mut self) {
        if self.wait_all().is_err() {
            // The back-end may still access the buffers of the operations in flight: leak
            // them rather than free memory a device might write.
            for slot in self.slots.iter_mut().filter(|s| s.active) {
                core::mem::forget(core::mem::take(&mut slot.buffers));
                core::mem::forget(core::mem::take(&mut slot.iovecs));
            }
        }
    }
}

impl<B: Backend> fmt::Debug for BatchedIo<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchedIo")
            .field("backend", &self.backend.name())
            .field("in_flight", &self.active)
            .field("ready", &self.ready.len())
            .field("capacity", &self.budget)
            .finish_non_exhaustive()
    }
}

/// Checks what `push` refuses.
fn check(op: &Op) -> Result<(), IoError> {
    let (fd, offset, bufs): (Option<Fd>, u64, &[IoBuf]) = match &op.kind {
        OpKind::Nop => (None, 0, &[]),
        OpKind::Fsync { fd, .. } => (Some(*fd), 0, &[]),
        OpKind::Read { fd, offset, buf } | OpKind::Write { fd, offset, buf } => {
            (Some(*fd), *offset, core::slice::from_ref(buf))
        }
        OpKind::Readv { fd, offset, bufs } | OpKind::Writev { fd, offset, bufs } => {
            if bufs.len() > MAX_IOVECS {
                return Err(IoError::BufferTooLarge);
            }
            (Some(*fd), *offset, bufs)
        }
    };
    if offset > i64::MAX as u64 {
        return Err(IoError::InvalidArgument);
    }
    if let Some(Fd::Fixed(i)) = fd
        && i > i32::MAX as u32
    {
        return Err(IoError::InvalidArgument);
    }
    for buf in bufs {
        let room = match buf {
            IoBuf::Vec(v) => v.len(),
            IoBuf::Pool(b) => b.capacity(),
        };
        if room > u32::MAX as usize {
            return Err(IoError::BufferTooLarge);
        }
    }
    Ok(())
}

/// `sqe` aimed at `fd`.
fn with_fd(mut sqe: Sqe, fd: Fd) -> Sqe {
    match fd {
        Fd::Raw(fd) => sqe.fd = fd,
        Fd::Fixed(index) => {
            sqe.fd = index as i32;
            sqe.flags |= SqeFlags::FIXED_FILE;
        }
    }
    sqe
}
