//! Shared memory: a set of zeroed frames that several address spaces map (the memory of the
//! IPC channels).
//!
//! What it does: [`SharedMemory::new`] allocates the frames at once (4 KiB each, from the
//! calling CPU's NUMA node first) and zeroes them; address spaces map them with
//! [`AddressSpace::map_shared`](super::aspace::AddressSpace::map_shared), which keeps a
//! reference, so the frames go back to the frame allocator when the last handle and the last
//! mapping are gone. The frames are never part of an address space's own frame count.

use alloc::vec::Vec;

use super::frames::{self, FrameBlock};
use crate::process_abi::limits;

/// Why [`SharedMemory::new`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedError {
    /// A length of 0 or above [`limits::MAX_SHARED`].
    BadLength,
    /// Not enough free frames (nothing is kept).
    OutOfMemory,
}

/// A shared-memory object.
pub struct SharedMemory {
    /// Its frames (physical addresses), in order.
    frames: Vec<u64>,
}

impl SharedMemory {
    /// `len` bytes (rounded up to 4 KiB) of zeroed memory.
    pub fn new(len: u64) -> Result<Self, SharedError> {
        if len == 0 || len > limits::MAX_SHARED {
            return Err(SharedError::BadLength);
        }
        let pages = len.div_ceil(4096) as usize;
        let mut frames = Vec::new();
        frames
            .try_reserve_exact(pages)
            .map_err(|_| SharedError::OutOfMemory)?;
        let node = crate::arch::x86_64::percpu::current().map(|c| c.node as usize);
        for _ in 0..pages {
            let block = match node {
                Some(n) => FrameBlock::allocate_on(n, 0).or_else(|_| FrameBlock::allocate(0)),
                None => FrameBlock::allocate(0),
            };
            let Some(mut block) = block.ok() else {
                // Dropping `Self` frees the frames taken so far.
                drop(Self { frames });
                return Err(SharedError::OutOfMemory);
            };
            let Some(bytes) = block.bytes_mut() else {
                drop(Self { frames });
                return Err(SharedError::OutOfMemory);
            };
            bytes.fill(0);
            frames.push(block.into_raw());
        }
        Ok(Self { frames })
    }

    /// Its frames' physical addresses, in order.
    pub fn frames(&self) -> &[u64] {
        &self.frames
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.frames.len() as u64 * 4096
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        for &phys in &self.frames {
            // SAFETY: allocated in `new` (order 0) and ours alone now: every mapping holds a
            // reference, so none is left (and each was invalidated when it was removed).
            let _ = unsafe { frames::free(phys, 0) };
        }
    }
}
