//! Buffer pools: fixed-size buffers carved from one region of pages, registered once with a
//! back-end, handed out as [`PoolBuf`] handles that go back to the pool when dropped.
//!
//! # What it does
//! [`BufferPool::new`] asks the embedder's [`PageSource`] for one page-aligned region of
//! `count` buffers of `buffer_size` bytes (each buffer starting on a 64-byte boundary, on a
//! page boundary when the size is a multiple of the page size), zeroes it once, and keeps the
//! free buffers on a lock-free stack of indices. Because the region is one piece with a stable
//! address, a back-end registers it once ([`Backend::register_pool`](crate::Backend)): io_uring
//! pins it and skips the per-operation page mapping (`READ_FIXED`), and a kernel driver hands
//! the page source's [`device_address`](DmaSource::device_address)es to its device.
//!
//! Zero-copy receive: a read into a [`PoolBuf`] hands the *same* buffer, now filled, to the
//! caller ([`Completion::into_pool_buf`](crate::Completion::into_pool_buf)); nothing is copied
//! between the device and the caller, and dropping the handle recycles the buffer.
//!
//! # What it relies on
//! The [`PageSource`] contract (exclusive, writable pages until released), and for devices a
//! correct device address. The free stack needs 64-bit atomic compare-and-swap.
//!
//! # What it guarantees
//! - A buffer is owned by at most one [`PoolBuf`] at a time; every byte of it is initialised
//!   (the region is zeroed at creation and only ever written with bytes).
//! - Allocation and release are lock-free (safe to use from interrupt handlers) and never
//!   allocate memory; an exhausted pool answers [`IoError::PoolExhausted`], never blocks.
//! - The region goes back to the page source when the pool and every handle (and every
//!   back-end registration, which holds a pool reference) are gone.
//!
//! # Memory orderings (the free stack)
//! The stack head is one `AtomicU64`: a 32-bit index and a 32-bit tag that every successful
//! update increments, so a head that was popped and pushed back in between (ABA) no longer
//! compares equal (a false match needs exactly 2^32 updates between one thread's load and its
//! compare-and-swap). A release writes the buffer's `next` link (`Relaxed`), then installs the
//! buffer with a `Release` compare-and-swap; an allocation loads the head with `Acquire`, so
//! the releasing owner's accesses to the buffer (and its link) happen before the new owner's.
//! Reading `next` of a buffer that another thread pops concurrently is an atomic load of a
//! possibly stale value, and the tag makes the following compare-and-swap fail.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::error::IoError;

/// Page size the pool assumes for alignment (x86_64's base page).
pub const PAGE_SIZE: usize = 4096;

/// Alignment of every buffer inside a pool: a cache line, so buffers never share one.
const BUFFER_ALIGN: usize = 64;

/// Marks the empty stack.
const NIL: u32 = u32::MAX;

/// Where a buffer pool gets its memory: the workspace-wide embedder trait of
/// `veridian-embed`, re-exported (a kernel that also embeds veridian-alloc implements it once).
/// A pool asks for one region of whole pages at page alignment.
pub use veridian_embed::PageSource;

/// A [`PageSource`] whose memory a device can reach, and at which address: what a
/// [`BufferPool`] needs on top of the pages.
///
/// # Safety
/// An implementation must guarantee, besides [`PageSource`]'s contract, that:
/// - for a device back-end: the memory is DMA-able by that device, and
///   [`device_address`](Self::device_address) returns the address at which the device sees
///   the byte at `ptr`, contiguously for the whole chunk;
/// - all methods may be called from any CPU.
pub unsafe trait DmaSource: PageSource + Send + Sync {
    /// The address a device uses for the byte at `ptr` (inside a chunk of this source). For
    /// hosted memory and identity-mapped kernels this is the virtual address.
    fn device_address(&self, ptr: NonNull<u8>) -> u64;
}

/// Pages from the global allocator (`alloc`), aligned to at most [`PAGE_SIZE`].
///
/// For the loopback and hosted back-ends (io_uring registers any user memory). Not DMA-able:
/// [`device_address`](DmaSource::device_address) is the virtual address, which is only right
/// for devices that see virtual addresses.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeapPages;

// SAFETY: the global allocator returns exclusive, aligned, writable memory of the layout's
// size, and `release_chunk` frees it with the same layout (alignment is always `PAGE_SIZE`).
unsafe impl PageSource for HeapPages {
    fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
        if len == 0 || align > PAGE_SIZE {
            return None;
        }
        let layout = core::alloc::Layout::from_size_align(len, PAGE_SIZE).ok()?;
        // SAFETY: the layout has a non-zero size.
        NonNull::new(unsafe { alloc::alloc::alloc(layout) })
    }

    unsafe fn release_chunk(&self, ptr: NonNull<u8>, len: usize) {
        if let Ok(layout) = core::alloc::Layout::from_size_align(len, PAGE_SIZE) {
            // SAFETY: by the caller's contract `ptr` came from `allocate_chunk(len, _)`, which
            // allocated with exactly this layout.
            unsafe { alloc::alloc::dealloc(ptr.as_ptr(), layout) };
        }
    }
}

// SAFETY: the global allocator's memory is what hosted back-ends (io_uring, the loopback) use
// directly, at its virtual address; `HeapPages` is `Send + Sync` (no state).
unsafe impl DmaSource for HeapPages {
    fn device_address(&self, ptr: NonNull<u8>) -> u64 {
        ptr.as_ptr().expose_provenance() as u64
    }
}

/// Gives each pool a distinct id (back-ends and [`BatchedIo`](crate::BatchedIo) key their
/// registrations by it).
static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// The state shared by a pool's handles.
struct PoolShared {
    /// Distinct per pool.
    id: u64,
    /// Start of the region.
    base: NonNull<u8>,
    /// Length of the region (what goes back to the page source).
    region_len: usize,
    /// Usable bytes per buffer.
    buffer_size: usize,
    /// Distance between buffers.
    stride: usize,
    /// Number of buffers.
    count: u32,
    /// Free stack: `(tag << 32) | index` of the top buffer, index `NIL` when empty.
    head: AtomicU64,
    /// Per buffer: the index below it on the free stack.
    next: Box<[AtomicU32]>,
    /// Free buffers (a statistic).
    free: AtomicUsize,
    /// Where the region came from.
    source: Box<dyn DmaSource>,
}

// SAFETY: the region is plain bytes owned by the pool; which buffer belongs to whom is decided
// by the atomic free stack, and each buffer is accessed only through its one `PoolBuf`.
unsafe impl Send for PoolShared {}
// SAFETY: as above; shared access to `PoolShared` is the atomic stack and immutable fields.
unsafe impl Sync for PoolShared {}

impl Drop for PoolShared {
    fn drop(&mut self) {
        // SAFETY: the region came from this source with this length; no handle is left (each
        // holds an `Arc`), so nothing uses it any more.
        unsafe { self.source.release_chunk(self.base, self.region_len) };
    }
}

impl PoolShared {
    /// Pops a free buffer index.
    fn pop(&self) -> Option<u32> {
        // Acquire: the previous owner's accesses to the buffer and its `next` store happen
        // before ours (pairs with the `Release` in `push`).
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let index = head as u32;
            if index == NIL {
                return None;
            }
            // Relaxed: ordered by the `Acquire` load of `head`; a stale value (the buffer was
            // taken meanwhile) makes the tagged compare-and-swap below fail.
            let below = self.next[index as usize].load(Ordering::Relaxed);
            let new = (((head >> 32).wrapping_add(1)) << 32) | u64::from(below);
            // Acquire on success and failure: we use the buffer (success) or re-read the new
            // head's link (failure), both after the releaser's writes.
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => {
                    // Relaxed: a statistic.
                    self.free.fetch_sub(1, Ordering::Relaxed);
                    return Some(index);
                }
                Err(current) => head = current,
            }
        }
    }

    /// Pushes buffer `index` back.
    fn push(&self, index: u32) {
        // Relaxed: the `Release` compare-and-swap below publishes everything we need.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // Relaxed: published by the `Release` compare-and-swap.
            self.next[index as usize].store(head as u32, Ordering::Relaxed);
            let new = (((head >> 32).wrapping_add(1)) << 32) | u64::from(index);
            // Release: our accesses to the buffer and the link above happen before the next
            // owner's (its `Acquire` load of `head`).
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    // Relaxed: a statistic.
                    self.free.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(current) => head = current,
            }
        }
    }

    /// Start of buffer `index`.
    fn buffer_ptr(&self, index: u32) -> *mut u8 {
        // SAFETY: `index < count`, so the offset is inside the region.
        unsafe { self.base.as_ptr().add(index as usize * self.stride) }
    }
}

/// A pool of fixed-size buffers; cloning gives another handle to the same pool.
#[derive(Clone)]
pub struct BufferPool {
    /// The pool.
    shared: Arc<PoolShared>,
}

impl BufferPool {
    /// Creates a pool of `count` buffers of `buffer_size` bytes each from `source`.
    ///
    /// # Errors
    /// [`IoError::InvalidArgument`] if either is 0, `count >= u32::MAX`, or a buffer is larger
    /// than `u32::MAX` bytes (one operation could not describe it); [`IoError::NoMemory`] if
    /// the region size overflows or the page source refuses it.
    pub fn new(
        source: impl DmaSource + 'static,
        buffer_size: usize,
        count: usize,
    ) -> Result<Self, IoError> {
        if buffer_size == 0
            || count == 0
            || count >= NIL as usize
            || buffer_size > u32::MAX as usize
        {
            return Err(IoError::InvalidArgument);
        }
        let stride = buffer_size
            .checked_next_multiple_of(BUFFER_ALIGN)
            .ok_or(IoError::NoMemory)?;
        let region_len = stride
            .checked_mul(count)
            .and_then(|l| l.checked_next_multiple_of(PAGE_SIZE))
            .filter(|&l| l <= isize::MAX as usize)
            .ok_or(IoError::NoMemory)?;
        let base = source
            .allocate_chunk(region_len, PAGE_SIZE)
            .ok_or(IoError::NoMemory)?;
        // SAFETY: the source gave us `region_len` writable bytes for our exclusive use.
        unsafe { base.as_ptr().write_bytes(0, region_len) };
        let count32 = count as u32;
        // Initial stack: 0 on top, then 1, 2, ..., so buffers are handed out in address order.
        let next: Box<[AtomicU32]> = (0..count32)
            .map(|i| AtomicU32::new(if i + 1 == count32 { NIL } else { i + 1 }))
            .collect();
        Ok(Self {
            shared: Arc::new(PoolShared {
                // Relaxed: only uniqueness matters.
                id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
                base,
                region_len,
                buffer_size,
                stride,
                count: count32,
                head: AtomicU64::new(0),
                next,
                free: AtomicUsize::new(count),
                source: Box::new(source),
            }),
        })
    }

    /// Takes a free buffer (empty: [`PoolBuf::len`] is 0), or `None` when all are in use.
    pub fn alloc(&self) -> Option<PoolBuf> {
        let index = self.shared.pop()?;
        Some(PoolBuf {
            pool: Arc::clone(&self.shared),
            index,
            filled: 0,
        })
    }

    /// [`alloc`](Self::alloc) with an error for the exhausted pool.
    ///
    /// # Errors
    /// [`IoError::PoolExhausted`] when every buffer is in use.
    pub fn try_alloc(&self) -> Result<PoolBuf, IoError> {
        self.alloc().ok_or(IoError::PoolExhausted)
    }

    /// This pool's id (distinct among the pools of the process).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// Usable bytes per buffer.
    pub fn buffer_size(&self) -> usize {
        self.shared.buffer_size
    }

    /// Number of buffers.
    pub fn count(&self) -> usize {
        self.shared.count as usize
    }

    /// Buffers free now (a snapshot).
    pub fn available(&self) -> usize {
        // Relaxed: a statistic.
        self.shared.free.load(Ordering::Relaxed)
    }

    /// The whole region `(start, length)`: what a back-end registers.
    pub fn region(&self) -> (NonNull<u8>, usize) {
        (self.shared.base, self.shared.region_len)
    }

    /// The device address of the region's first byte (see [`DmaSource::device_address`]).
    pub fn device_address(&self) -> u64 {
        self.shared.source.device_address(self.shared.base)
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("id", &self.id())
            .field("buffer_size", &self.buffer_size())
            .field("count", &self.count())
            .field("available", &self.available())
            .finish()
    }
}

/// One buffer of a [`BufferPool`], owned exclusively; goes back to the pool when dropped.
///
/// It has a capacity ([`BufferPool::buffer_size`]) and a filled length ([`len`](Self::len)):
/// a read fills it from the start and sets the length to the bytes read; a write sends the
/// filled bytes.
pub struct PoolBuf {
    /// The pool (kept alive by this handle).
    pool: Arc<PoolShared>,
    /// Which buffer.
    index: u32,
    /// Bytes of content, `<= capacity`.
    filled: usize,
}

// SAFETY: the handle owns its buffer exclusively (the free stack hands each index out once);
// moving it to another thread moves that ownership, like a `Vec<u8>`.
unsafe impl Send for PoolBuf {}
// SAFETY: `&PoolBuf` only gives `&[u8]` access to the owned bytes.
unsafe impl Sync for PoolBuf {}

impl PoolBuf {
    /// Index of the buffer in its pool.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Id of the pool this buffer belongs to.
    pub fn pool_id(&self) -> u64 {
        self.pool.id
    }

    /// Usable bytes.
    pub fn capacity(&self) -> usize {
        self.pool.buffer_size
    }

    /// Bytes of content.
    pub fn len(&self) -> usize {
        self.filled
    }

    /// Whether there is no content.
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Sets the content length (the bytes stay as they are).
    ///
    /// # Errors
    /// [`IoError::InvalidArgument`] if `len` exceeds the capacity.
    pub fn set_len(&mut self, len: usize) -> Result<(), IoError> {
        if len > self.capacity() {
            return Err(IoError::InvalidArgument);
        }
        self.filled = len;
        Ok(())
    }

    /// Copies `data` to the start of the buffer and makes it the content.
    ///
    /// # Errors
    /// [`IoError::BufferTooLarge`] if `data` is longer than the capacity (nothing is copied).
    pub fn fill_from(&mut self, data: &[u8]) -> Result<(), IoError> {
        if data.len() > self.capacity() {
            return Err(IoError::BufferTooLarge);
        }
        self.whole_mut()[..data.len()].copy_from_slice(data);
        self.filled = data.len();
        Ok(())
    }

    /// The content.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the buffer is ours, initialised (zeroed at pool creation, only ever written
        // with bytes), and `filled <= capacity`.
        unsafe { core::slice::from_raw_parts(self.as_ptr(), self.filled) }
    }

    /// The content, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let filled = self.filled;
        &mut self.whole_mut()[..filled]
    }

    /// The whole buffer, whatever the content length.
    pub fn whole_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, for the whole capacity; `&mut self` makes it exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.as_mut_ptr(), self.capacity()) }
    }

    /// Start of the buffer.
    pub fn as_ptr(&self) -> *const u8 {
        self.pool.buffer_ptr(self.index)
    }

    /// Start of the buffer, for writing.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.pool.buffer_ptr(self.index)
    }

    /// The device address of the buffer's first byte.
    pub fn device_address(&self) -> u64 {
        let offset = self.index as u64 * self.pool.stride as u64;
        self.pool.source.device_address(self.pool.base) + offset
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        self.pool.push(self.index);
    }
}

impl fmt::Debug for PoolBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuf")
            .field("pool", &self.pool.id)
            .field("index", &self.index)
            .field("len", &self.filled)
            .field("capacity", &self.capacity())
            .finish()
    }
}
