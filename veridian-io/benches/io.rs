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
//!   `pread_loop` is `n` `pread` calls into one page-aligned buffer. Throughput is per read.
//!   `cargo xtask bench-ratios file_read_4k` prints ratios against `veridian`; `--ours
//!   veridian_read` gives the plain pair.
//! - `file_read_4k_direct/<impl>/<batch>`: the same five sides and reads on the same file opened
//!   `O_DIRECT`, so that every read goes to the block device: the file lies in
//!   `VERIDIAN_IO_DIRECT_DIR`, or else the temp dir. When that directory is on tmpfs/ramfs, or
//!   the file system refuses `O_DIRECT` (the open or an aligned probe read fails), the group
//!   prints `file_read_4k_direct: skipped: <reason>` and measures nothing (never buffered reads
//!   instead). Criterion's flat sampling with 20 samples (device reads are slow). After the
//!   group it prints how many reads it issued and how many the device completed meanwhile
//!   (from sysfs).

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main,
};
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

/// The benchmark file in `dir`: created once (kept for later runs, and shared by both file
/// groups when they use the same directory) and flushed to the disk when written here.
fn ensure_bench_file(dir: &Path) -> std::io::Result<PathBuf> {
    let len = file_len();
    let path = dir.join(format!("veridian-io-bench-{}m", len >> 20));
    let fresh = std::fs::metadata(&path)
        .map(|m| m.len() != len)
        .unwrap_or(true);
    if fresh {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let mut chunk = vec![0u8; 1 << 20];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..len >> 20 {
            for b in chunk.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            f.write_all(&chunk)?;
        }
        f.sync_all()?;
    }
    Ok(path)
}

/// The page-cache benchmark file: in the temp dir, read through once so it is in the page
/// cache.
fn bench_file() -> File {
    let path = ensure_bench_file(&std::env::temp_dir()).expect("create benchmark file");
    let mut f = File::open(&path).expect("open benchmark file");
    let mut sink = vec![0u8; 1 << 20];
    while f.read(&mut sink).expect("warm page cache") > 0 {}
    f
}

/// `ramfs`' `statfs` magic (the libc crate has `TMPFS_MAGIC` only).
const RAMFS_MAGIC: libc::c_long = 0x8584_58f6;

/// The `O_DIRECT` benchmark file: the same file as [`bench_file`]'s, in
/// `VERIDIAN_IO_DIRECT_DIR` or else the temp dir, opened `O_DIRECT`, with the path of its block
/// device's `stat` file in sysfs when there is one. `Err` says why the group cannot run: the
/// directory is on a memory file system (tmpfs accepts `O_DIRECT` since Linux 6.6 but has no
/// device), the open or an aligned probe read is refused (`EINVAL` where the file system does
/// not support `O_DIRECT`), or the file cannot be created.
fn direct_file() -> Result<(File, Option<PathBuf>), String> {
    let dir = std::env::var_os("VERIDIAN_IO_DIRECT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{}: NUL in the path", dir.display()))?;
    // SAFETY: all-zero bytes are a valid `statfs` (plain integers).
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_dir` is a NUL-terminated path and `fs` a writable `statfs`.
    if unsafe { libc::statfs(c_dir.as_ptr(), &mut fs) } != 0 {
        return Err(format!(
            "statfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    let magic = fs.f_type;
    if magic == libc::TMPFS_MAGIC || magic == RAMFS_MAGIC {
        return Err(format!(
            "{} is on a memory file system (statfs type {magic:#x}), no device behind it; \
             set VERIDIAN_IO_DIRECT_DIR to a directory on a disk",
            dir.display()
        ));
    }
    let path = ensure_bench_file(&dir)
        .map_err(|e| format!("create {}: {e}", dir.join("veridian-io-bench-*m").display()))?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .map_err(|e| format!("open {} with O_DIRECT: {e}", path.display()))?;
    let mut probe = Box::new(Page([0; 4096]));
    // SAFETY: `probe` is 4096 writable bytes; the descriptor is open.
    let r = unsafe { libc::pread(file.as_raw_fd(), probe.0.as_mut_ptr().cast(), 4096, 0) };
    if r != 4096 {
        return Err(format!(
            "O_DIRECT probe read of {}: {}",
            path.display(),
            if r < 0 {
                std::io::Error::last_os_error().to_string()
            } else {
                format!("{r} bytes instead of 4096")
            }
        ));
    }
    let dev = file.metadata().map_err(|e| e.to_string())?.dev();
    let stat = PathBuf::from(format!(
        "/sys/dev/block/{}:{}/stat",
        libc::major(dev),
        libc::minor(dev)
    ));
    Ok((file, stat.exists().then_some(stat)))
}

/// Reads completed by a block device: the first field of its sysfs `stat`.
fn device_reads(stat: &Path) -> Option<u64> {
    std::fs::read_to_string(stat)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn file_read_4k(c: &mut Criterion) {
    let file = bench_file();
    let mut group = c.benchmark_group("file_read_4k");
    file_reads(&mut group, file.as_raw_fd());
    group.finish();
}

fn file_read_4k_direct(c: &mut Criterion) {
    let (file, stat) = match direct_file() {
        Ok(f) => f,
        Err(reason) => {
            eprintln!("file_read_4k_direct: skipped: {reason}");
            return;
        }
    };
    let before = stat.as_deref().and_then(device_reads);
    let mut group = c.benchmark_group("file_read_4k_direct");
    // A device read takes tens of microseconds: a batch of 128 `pread`s is milliseconds, too
    // long for criterion's default 100 samples of linearly growing iteration counts.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    let issued = file_reads(&mut group, file.as_raw_fd());
    group.finish();
    let after = stat.as_deref().and_then(device_reads);
    if issued > 0 {
        match (before, after) {
            (Some(b), Some(a)) => eprintln!(
                "file_read_4k_direct: {issued} reads issued, the device ({}) completed {} \
                 reads meanwhile (other processes' included)",
                stat.as_deref().unwrap_or(Path::new("?")).display(),
                a - b
            ),
            _ => eprintln!(
                "file_read_4k_direct: {issued} reads issued (no device read counter found)"
            ),
        }
    }
}

/// The file groups' benchmarks on `fd` (see the module documentation); returns how many reads
/// the benchmarks that ran issued, warm-up included.
fn file_reads(group: &mut BenchmarkGroup<'_, WallTime>, fd: i32) -> u64 {
    const BATCHES: [usize; 4] = [1, 8, 32, 128];
    const BLOCK: usize = 4096;
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
    let mut issued = 0u64;

    // Ours: BatchedIo over io_uring, registered pool, buffers recycled through completions.
    let pool = BufferPool::new(HeapPages, BLOCK, 128).unwrap();
    let mut io = BatchedIo::new(IoUringBackend::new(128).unwrap(), 128).unwrap();
    io.register_pool(&pool).unwrap();
    let mut free: Vec<PoolBuf> = (0..128).map(|_| pool.alloc().unwrap()).collect();
    // Ours with plain `Read` entries: a second pool, never registered with this back-end.
    let plain_pool = BufferPool::new(HeapPages, BLOCK, 128).unwrap();
    let mut plain_io = BatchedIo::new(IoUringBackend::new(128).unwrap(), 128).unwrap();
    let mut plain_free: Vec<PoolBuf> = (0..128).map(|_| plain_pool.alloc().unwrap()).collect();
    // Every side reads into page-aligned buffers (O_DIRECT needs at least the device's
    // logical block size).
    assert!(
        free.iter()
            .chain(&plain_free)
            .all(|b| b.as_ptr().addr() % BLOCK == 0)
    );
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
    let mut pread_buf = Box::new(Page([0; BLOCK]));

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
        issued += k as u64;

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
        issued += k as u64;

        let mut k = 0usize;
        group.bench_function(BenchmarkId::new("pread_loop", n), |b| {
            b.iter(|| {
                for i in 0..n {
                    let off = offsets[(k + i) % offsets.len()];
                    // SAFETY: `pread_buf` is BLOCK writable bytes; `fd` is open.
                    let r = unsafe {
                        libc::pread(fd, pread_buf.0.as_mut_ptr().cast(), BLOCK, off as i64)
                    };
                    assert_eq!(r, BLOCK as isize);
                }
                k += n;
                black_box(&pread_buf);
            })
        });
        issued += k as u64;

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
        issued += k as u64;

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
        issued += k as u64;
    }
    issued
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

criterion_group!(benches, ring_nop, file_read_4k, file_read_4k_direct);
criterion_main!(benches);
