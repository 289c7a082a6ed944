//! Side-by-side benchmarks (see docs/benchmarks/io.md for results and the command).
//!
//! - `ring_nop/<impl>/1`: one push and one pop of a 40-byte nop entry through an empty
//!   single-threaded queue: our SPSC ring vs `crossbeam_queue::ArrayQueue` and `rtrb`.
//! - `file_read_4k/<impl>/<batch>`: `batch` reads of 4 KiB at random 4 KiB-aligned offsets of
//!   a 256 MiB file in the page cache, one `submit_and_wait` per batch on every io_uring side
//!   (rings of 128 entries, default set-up), in two like-for-like pairs:
//!   - registered buffers: `veridian` is our `BatchedIo` over the io_uring back-end with the
//!     buffer pool registered (`ReadFixed` entries into one registered region); `io_uring_crate_fixed`
//!     is the `io-uring` crate used directly with `ReadFixed` entries into one registered,
//!     page-aligned region of 128 × 4 KiB (`register_buffers` once, before measuring);
//!   - plain reads: `veridian_read` is the same `BatchedIo` on a second back-end where the pool
//!     is not registered (plain `Read` entries); `io_uring_crate` uses plain `Read` entries into
//!     the same kind of page-aligned buffers.
//!
//!   `pread_loop` is `n` `pread` calls. Throughput is per read. `cargo xtask bench-ratios
//!   file_read_4k` prints ratios against `veridian`; `--ours veridian_read` gives the plain pair.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use veridian_io::hosted::IoUringBackend;
use veridian_io::{BatchedIo, BufferPool, HeapPages, Op, PoolBuf, Sqe};

fn ring_nop(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_nop");
    group.throughput(Throughput::Elements(1));
    let entry = Sqe::nop(7);

    let (mut tx, mut rx) = veridian_io::ring::channel::<Sqe>(256).unwrap();
    group.bench_function(BenchmarkId::new("veridian", 1), |b| {
        b.iter(|| {
            let _ = tx.push(black_box(entry));
            black_box(rx.pop())
        })
    });

    let queue = crossbeam_queue::ArrayQueue::<Sqe>::new(256);
    group.bench_function(BenchmarkId::new("crossbeam_arrayqueue", 1), |b| {
        b.iter(|| {
            let _ = queue.push(black_box(entry));
            black_box(queue.pop())
        })
    });

    let (mut ptx, mut prx) = rtrb::RingBuffer::<Sqe>::new(256);
    group.bench_function(BenchmarkId::new("rtrb", 1), |b| {
        b.iter(|| {
            let _ = ptx.push(black_box(entry));
            black_box(prx.pop().ok())
        })
    });
    group.finish();
}

/// File size: 256 MiB, unless `VERIDIAN_IO_BENCH_MIB` asks for less (small `/tmp`).
fn file_len() -> u64 {
    std::env::var("VERIDIAN_IO_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(256)
        << 20
}

/// The benchmark file: created once in the temp dir (kept for later runs), then read through
/// once so it is in the page cache.
fn bench_file() -> (PathBuf, File) {
    let len = file_len();
    let path = std::env::temp_dir().join(format!("veridian-io-bench-{}m", len >> 20));
    let fresh = std::fs::metadata(&path)
        .map(|m| m.len() != len)
        .unwrap_or(true);
    if fresh {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create benchmark file");
        let mut chunk = vec![0u8; 1 << 20];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..len >> 20 {
            for b in chunk.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            f.write_all(&chunk).expect("write benchmark file");
        }
    }
    let mut f = File::open(&path).expect("open benchmark file");
    let mut sink = vec![0u8; 1 << 20];
    while f.read(&mut sink).expect("warm page cache") > 0 {}
    (path, f)
}

fn file_read_4k(c: &mut Criterion) {
    const BATCHES: [usize; 4] = [1, 8, 32, 128];
    const BLOCK: usize = 4096;
    let (_path, file) = bench_file();
    let fd = file.as_raw_fd();
    let blocks = file_len() / BLOCK as u64;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let offsets: Vec<u64> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % blocks) * BLOCK as u64
        })
        .collect();
    let mut group = c.benchmark_group("file_read_4k");

    // Ours: BatchedIo over io_uring, registered pool, buffers recycled through completions.
    let pool = BufferPool::new(HeapPages, BLOCK, 128).unwrap();
    let mut io = BatchedIo::new(IoUringBackend::new(128).unwrap(), 128).unwrap();
    io.register_pool(&pool).unwrap();
    let mut free: Vec<PoolBuf> = (0..128).map(|_| pool.alloc().unwrap()).collect();
    // Ours with plain `Read` entries: a second pool, never registered with this back-end.
    let plain_pool = BufferPool::new(HeapPages, BLOCK, 128).unwrap();
    let mut plain_io = BatchedIo::new(IoUringBackend::new(128).unwrap(), 128).unwrap();
    let mut plain_free: Vec<PoolBuf> = (0..128).map(|_| plain_pool.alloc().unwrap()).collect();
    // The raw io-uring crate, plain `Read`.
    let mut ring = io_uring::IoUring::new(128).unwrap();
    let mut raw_bufs: Vec<Page> = (0..128).map(|_| Page([0; BLOCK])).collect();
    // The raw io-uring crate, `ReadFixed` into one registered region (as our pool is one).
    // The buffers are declared before the ring, so the ring (and its registration) is dropped
    // first.
    let mut fixed_bufs: Vec<Page> = (0..128).map(|_| Page([0; BLOCK])).collect();
    let mut fixed_ring = io_uring::IoUring::new(128).unwrap();
    let region = libc::iovec {
        iov_base: fixed_bufs.as_mut_ptr().cast(),
        iov_len: fixed_bufs.len() * BLOCK,
    };
    // SAFETY: the region is `fixed_bufs`' heap storage, which is never moved, resized or freed
    // while `fixed_ring` (declared after it, so dropped before it) is alive, as
    // `register_buffers` requires.
    unsafe { fixed_ring.submitter().register_buffers(&[region]).unwrap() };
    let mut pread_buf = vec![0u8; BLOCK];

    for n in BATCHES {
        group.throughput(Throughput::Elements(n as u64));
        let mut k = 0usize;
        group.bench_function(BenchmarkId::new("veridian", n), |b| {
            b.iter(|| {
                for i in 0..n {
                    let buf = free.pop().unwrap();
                    let off = offsets[(k + i) % offsets.len()];
                    io.push(Op::read(fd, off, buf).user_data(i as u64)).unwrap();
                }
                k += n;
                io.submit_and_wait(n).unwrap();
                for c in io.completions() {
                    assert_eq!(c.result(), Ok(BLOCK));
                    free.push(c.into_pool_buf().unwrap());
                }
            })
        });

        let mut k = 0usize;
        group.bench_function(BenchmarkId::new("veridian_read", n), |b| {
            b.iter(|| {
                for i in 0..n {
                    let buf = plain_free.pop().unwrap();
                    let off = offsets[(k + i) % offsets.len()];
                    plain_io
                        .push(Op::read(fd, off, buf).user_data(i as u64))
                        .unwrap();
                }
                k += n;
                plain_io.submit_and_wait(n).unwrap();
                for c in plain_io.completions() {
                    assert_eq!(c.result(), Ok(BLOCK));
                    plain_free.push(c.into_pool_buf().unwrap());
                }
            })
        });

        let mut k = 0usize;
        group.bench_function(BenchmarkId::new("pread_loop", n), |b| {
            b.iter(|| {
                for i in 0..n {
                    let off = offsets[(k + i) % offsets.len()];
                    // SAFETY: `pread_buf` is BLOCK writable bytes; `fd` is open.
                    let r = unsafe {
                        libc::pread(fd, pread_buf.as_mut_ptr().cast(), BLOCK, off as i64)
                    };
                    assert_eq!(r, BLOCK as isize);
                }
                k += n;
                black_box(&pread_buf);
            })
        });

        let mut k = 0usize;
        group.bench_function(BenchmarkId::new("io_uring_crate", n), |b| {
            b.iter(|| {
                raw_uring_batch(&mut ring, &mut raw_bufs, &offsets, &mut k, n, |buf, off| {
                    io_uring::opcode::Read::new(io_uring::types::Fd(fd), buf, BLOCK as u32)
                        .offset(off)
                        .build()
                })
            })
        });

        let mut k = 0usize;
        group.bench_function(BenchmarkId::new("io_uring_crate_fixed", n), |b| {
            b.iter(|| {
                // Every buffer lies inside registered buffer 0.
                raw_uring_batch(
                    &mut fixed_ring,
                    &mut fixed_bufs,
                    &offsets,
                    &mut k,
                    n,
                    |buf, off| {
                        io_uring::opcode::ReadFixed::new(
                            io_uring::types::Fd(fd),
                            buf,
                            BLOCK as u32,
                            0,
                        )
                        .offset(off)
                        .build()
                    },
                )
            })
        });
    }
    group.finish();
}

/// One batch of the raw `io-uring` crate: `n` reads built by `entry(buffer, offset)` into the
/// first `n` of `bufs`, at the next `n` offsets from `*k`, one `submit_and_wait`, every
/// completion checked.
fn raw_uring_batch(
    ring: &mut io_uring::IoUring,
    bufs: &mut [Page],
    offsets: &[u64],
    k: &mut usize,
    n: usize,
    entry: impl Fn(*mut u8, u64) -> io_uring::squeue::Entry,
) {
    {
        let mut sq = ring.submission();
        for (i, buf) in bufs.iter_mut().take(n).enumerate() {
            let e =
                entry(buf.0.as_mut_ptr(), offsets[(*k + i) % offsets.len()]).user_data(i as u64);
            // SAFETY: each buffer is used by one entry at a time and outlives it (we wait for
            // every completion below); for `ReadFixed` the caller's buffers lie inside the
            // ring's registered buffer the entry names.
            unsafe { sq.push(&e).unwrap() };
        }
    }
    *k += n;
    ring.submit_and_wait(n).unwrap();
    let mut done = 0;
    for cqe in ring.completion() {
        assert_eq!(cqe.result(), size_of::<Page>() as i32);
        done += 1;
    }
    assert_eq!(done, n);
}

/// One page-aligned 4 KiB buffer (the alignment of our pool's buffers).
#[repr(C, align(4096))]
struct Page([u8; 4096]);

criterion_group!(benches, ring_nop, file_read_4k);
criterion_main!(benches);
