//! Buffer pool: bad sizes refused, exhaustion reported, buffers recycled on drop, each buffer
//! owned once under concurrent allocation and release, region released to the page source.

#![cfg(not(loom))]

use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use veridian_io::pool::PAGE_SIZE;
use veridian_io::{BufferPool, DmaSource, HeapPages, IoError, PageSource};

#[test]
fn bad_arguments_and_exhaustion() {
    assert_eq!(
        BufferPool::new(HeapPages, 0, 4).unwrap_err(),
        IoError::InvalidArgument
    );
    assert_eq!(
        BufferPool::new(HeapPages, 4096, 0).unwrap_err(),
        IoError::InvalidArgument
    );
    assert_eq!(
        BufferPool::new(HeapPages, usize::MAX / 2, 4).unwrap_err(),
        IoError::InvalidArgument
    );
    assert_eq!(
        BufferPool::new(HeapPages, 1 << 30, 1 << 20).unwrap_err(),
        IoError::NoMemory
    );
    let pool = BufferPool::new(HeapPages, 100, 3).unwrap();
    let bufs: Vec<_> = (0..3).map(|_| pool.try_alloc().unwrap()).collect();
    assert_eq!(pool.try_alloc().unwrap_err(), IoError::PoolExhausted);
    let addrs: HashSet<usize> = bufs.iter().map(|b| b.as_ptr() as usize).collect();
    assert_eq!(addrs.len(), 3);
    for b in &bufs {
        assert_eq!(
            b.as_ptr() as usize % 64,
            0,
            "buffers are cache-line aligned"
        );
        assert_eq!(b.capacity(), 100);
        assert!(b.is_empty());
    }
    drop(bufs);
    assert_eq!(pool.available(), 3);
}

#[test]
fn content_and_lengths() {
    let pool = BufferPool::new(HeapPages, 8, 1).unwrap();
    let mut b = pool.alloc().unwrap();
    assert_eq!(
        b.fill_from(b"123456789").unwrap_err(),
        IoError::BufferTooLarge
    );
    b.fill_from(b"abc").unwrap();
    assert_eq!(b.as_slice(), b"abc");
    assert_eq!(b.set_len(9).unwrap_err(), IoError::InvalidArgument);
    b.set_len(8).unwrap();
    assert_eq!(b.as_slice(), b"abc\0\0\0\0\0");
    b.as_mut_slice()[7] = b'z';
    assert_eq!(b.whole_mut()[7], b'z');
    assert_eq!(b.device_address(), b.as_ptr() as u64);
}

/// A page source that counts what it hands out and gets back.
struct Counting(Arc<AtomicUsize>);

// SAFETY: forwards to `HeapPages`, which upholds the contract.
unsafe impl PageSource for Counting {
    fn allocate_chunk(&self, len: usize, align: usize) -> Option<NonNull<u8>> {
        assert_eq!(len % PAGE_SIZE, 0);
        self.0.fetch_add(1, Ordering::Relaxed);
        HeapPages.allocate_chunk(len, align)
    }

    unsafe fn release_chunk(&self, ptr: NonNull<u8>, len: usize) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { HeapPages.release_chunk(ptr, len) }
    }
}

// SAFETY: hosted memory; the made-up device address only has to be consistent.
unsafe impl DmaSource for Counting {
    fn device_address(&self, ptr: NonNull<u8>) -> u64 {
        ptr.as_ptr() as u64 + 0x1000_0000
    }
}

#[test]
fn region_released_after_last_handle() {
    let live = Arc::new(AtomicUsize::new(0));
    let pool = BufferPool::new(Counting(live.clone()), 4096, 4).unwrap();
    assert_eq!(live.load(Ordering::Relaxed), 1);
    let b = pool.alloc().unwrap();
    assert_eq!(b.device_address(), b.as_ptr() as u64 + 0x1000_0000);
    assert_eq!(b.as_ptr() as usize % PAGE_SIZE, 0);
    drop(pool);
    assert_eq!(live.load(Ordering::Relaxed), 1, "a handle keeps the region");
    drop(b);
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

/// Threads allocate, stamp, check and release buffers: a buffer is never owned twice.
#[test]
fn concurrent_alloc_free_never_shares_a_buffer() {
    const ROUNDS: usize = if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    };
    let pool = BufferPool::new(HeapPages, 64, 8).unwrap();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    let Some(mut b) = pool.alloc() else {
                        std::thread::yield_now();
                        continue;
                    };
                    let stamp = [t, i as u8, (i >> 8) as u8, 0xAA];
                    b.fill_from(&stamp).unwrap();
                    std::hint::spin_loop();
                    assert_eq!(b.as_slice(), &stamp, "buffer shared between owners");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(pool.available(), 8);
}
