//! Shared test helpers: a page source that records what it hands out and can be limited.

#![allow(dead_code)]

use std::ptr::NonNull;
use std::sync::Mutex;

use veridian_alloc::PageSource;
use veridian_alloc::hosted::MmapPages;

/// `MmapPages` that records live chunks and refuses to exceed a byte limit.
pub struct RecordingPages {
    /// Live chunks: (start, len).
    pub chunks: Mutex<Vec<(usize, usize)>>,
    /// Most bytes out at once.
    pub limit: usize,
    /// Every request, granted or not: (len, align).
    pub asked: Mutex<Vec<(usize, usize)>>,
}

impl RecordingPages {
    /// A source that hands out at most `limit` bytes at once.
    pub const fn new(limit: usize) -> Self {
        Self {
            chunks: Mutex::new(Vec::new()),
            limit,
            asked: Mutex::new(Vec::new()),
        }
    }

    /// The requests so far: (len, align).
    pub fn asked(&self) -> Vec<(usize, usize)> {
        self.asked.lock().unwrap().clone()
    }

    /// Bytes currently handed out.
    pub fn live_bytes(&self) -> usize {
        self.chunks.lock().unwrap().iter().map(|c| c.1).sum()
    }

    /// Whether `[ptr, ptr+len)` lies inside one live chunk.
    pub fn contains(&self, ptr: usize, len: usize) -> bool {
        self.chunks
            .lock()
            .unwrap()
            .iter()
            .any(|&(s, l)| ptr >= s && ptr + len <= s + l)
    }
}

// SAFETY: forwards to MmapPages, which upholds the contract; the bookkeeping is behind a Mutex.
unsafe impl PageSource for RecordingPages {
    fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
        self.asked.lock().unwrap().push((len, align));
        let mut chunks = self.chunks.lock().unwrap();
        let live: usize = chunks.iter().map(|c| c.1).sum();
        if live + len > self.limit {
            return None;
        }
        let p = MmapPages.allocate_chunk(len, align)?;
        chunks.push((p.as_ptr() as usize, len));
        Some(p)
    }

    unsafe fn release_chunk(&self, ptr: NonNull<u8>, len: usize) {
        let mut chunks = self.chunks.lock().unwrap();
        let i = chunks
            .iter()
            .position(|&c| c == (ptr.as_ptr() as usize, len))
            .expect("released a chunk that was never handed out");
        chunks.swap_remove(i);
        // SAFETY: forwarded contract.
        unsafe { MmapPages.release_chunk(ptr, len) };
    }
}
pub mod heap_model;
