//! The hosted back-ends on real files in a temporary directory, every test run on both the
//! io_uring back-end and the `pread`/`pwrite` fallback: batched writes and reads at random
//! offsets verified byte for byte against a shadow copy, short reads at the end of a file,
//! errors mapped to clear `IoError`s, link chains, vectored I/O, registered files and the
//! zero-copy receive into registered pool buffers.
//!
//! If this system refuses io_uring (a seccomp filter, `kernel.io_uring_disabled`), the
//! io_uring variants say so on standard error and stop; the fallback variants still run.

#![cfg(not(loom))]

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use veridian_io::hosted::{HostedBackend, HostedMode};
use veridian_io::{
    Backend, BatchedIo, BufferPool, Cqe, HeapPages, IoBuf, IoError, Op, Sqe, SqeFlags, ring,
};

/// A file in the temp dir, removed on drop.
struct TempFile {
    path: PathBuf,
    file: File,
}

impl TempFile {
    fn new(content: &[u8]) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "veridian-io-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        file.write_all(content).unwrap();
        Self { path, file }
    }

    fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    fn read_only(&self) -> File {
        File::open(&self.path).unwrap()
    }

    fn content(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// xorshift64*: deterministic test data and offsets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The back-end under test, or `None` (with a message) where io_uring is refused.
fn backend(mode: HostedMode) -> Option<HostedBackend> {
    match HostedBackend::with_mode(32, mode) {
        Ok(b) => {
            assert_eq!(b.is_fallback(), mode == HostedMode::Fallback);
            Some(b)
        }
        Err(e) if mode == HostedMode::IoUring => {
            eprintln!("io_uring refused on this system ({e}): io_uring variant not run");
            None
        }
        Err(e) => panic!("fallback back-end failed: {e}"),
    }
}

fn random_batched_writes_and_reads(mode: HostedMode) {
    let Some(backend) = backend(mode) else { return };
    const LEN: usize = 1 << 20;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut shadow = rng.bytes(LEN);
    let file = TempFile::new(&shadow);
    let mut io = BatchedIo::new(backend, 32).unwrap();
    let pool = BufferPool::new(HeapPages, 8192, 16).unwrap();
    io.register_pool(&pool).unwrap();
    for round in 0..4 {
        // A batch of non-overlapping random writes (one 64 KiB stripe each), then one doorbell.
        let mut ops = 0;
        for stripe in 0..16u64 {
            let len = 1 + rng.below(8192) as usize;
            let off = (stripe * 65536 + rng.below(65536 - len as u64)) as usize;
            let data = rng.bytes(len);
            shadow[off..off + len].copy_from_slice(&data);
            let buf: IoBuf = if stripe % 2 == 0 {
                data.into()
            } else {
                let mut b = pool.alloc().unwrap();
                b.fill_from(&data).unwrap();
                b.into()
            };
            io.push(Op::write(file.fd(), off as u64, buf).user_data(stripe))
                .unwrap();
            ops += 1;
        }
        io.submit_and_wait(ops).unwrap();
        for c in io.completions() {
            assert!(
                c.result().is_ok_and(|n| n == c.data().len()),
                "round {round}: {c:?}"
            );
        }
        // Random reads, some into pool buffers, verified against the shadow.
        let mut expected = Vec::new();
        for i in 0..32u64 {
            let len = 1 + rng.below(8192) as usize;
            let off = rng.below((LEN - len) as u64) as usize;
            if i % 2 == 0 {
                io.push(Op::read(file.fd(), off as u64, vec![0; len]).user_data(i))
                    .unwrap();
                expected.push((i, off, len));
            } else {
                io.receive(file.fd(), off as u64, &pool, i).unwrap();
                expected.push((i, off, 8192.min(LEN - off)));
            }
        }
        io.submit_and_wait(32).unwrap();
        io.wait_all().unwrap();
        for (ud, off, len) in expected {
            let c = io.take(ud).unwrap();
            assert_eq!(c.result(), Ok(len), "read {ud}");
            assert!(
                c.data() == &shadow[off..off + len],
                "read {ud} at {off} differs"
            );
        }
    }
    assert_eq!(file.content(), shadow);
    assert_eq!(pool.available(), pool.count());
}

fn short_reads_at_end_of_file(mode: HostedMode) {
    let Some(backend) = backend(mode) else { return };
    let content = Rng(7).bytes(10_000);
    let file = TempFile::new(&content);
    let mut io = BatchedIo::new(backend, 8).unwrap();
    io.push(Op::read(file.fd(), 8_000, vec![0; 4096]).user_data(1))
        .unwrap();
    io.push(Op::read(file.fd(), 10_000, vec![0; 4096]).user_data(2))
        .unwrap();
    io.push(Op::read(file.fd(), 1 << 40, vec![0; 4096]).user_data(3))
        .unwrap();
    io.push(
        Op::readv(
            file.fd(),
            9_000,
            vec![vec![0; 600].into(), vec![0; 600].into()],
        )
        .user_data(4),
    )
    .unwrap();
    io.wait_all().unwrap();
    let c = io.take(1).unwrap();
    assert_eq!(c.result(), Ok(2000));
    assert_eq!(c.data(), &content[8000..]);
    assert_eq!(io.take(2).unwrap().result(), Ok(0));
    // An offset past the end is not an error: an empty read.
    let c = io.take(3).unwrap();
    assert_eq!(c.result(), Ok(0));
    assert!(c.data().is_empty());
    let c = io.take(4).unwrap();
    assert_eq!(c.result(), Ok(1000));
    let bufs = c.into_bufs();
    assert_eq!(bufs[0].as_slice(), &content[9000..9600]);
    assert_eq!(bufs[1].as_slice(), &content[9600..]);
}

fn errors_are_clear(mode: HostedMode) {
    let Some(backend) = backend(mode) else { return };
    let file = TempFile::new(b"read only");
    let ro = file.read_only();
    let dir = File::open(std::env::temp_dir()).unwrap();
    let mut io = BatchedIo::new(backend, 8).unwrap();
    io.push(Op::read(-1, 0, vec![0; 8]).user_data(1)).unwrap();
    io.push(Op::read(999_999, 0, vec![0; 8]).user_data(2))
        .unwrap();
    io.push(Op::write(ro.as_raw_fd(), 0, vec![1; 8]).user_data(3))
        .unwrap();
    io.push(Op::read(dir.as_raw_fd(), 0, vec![0; 8]).user_data(4))
        .unwrap();
    io.push(Op::fsync(999_999).user_data(5)).unwrap();
    io.wait_all().unwrap();
    assert_eq!(io.take(1).unwrap().result(), Err(IoError::BadFd));
    assert_eq!(io.take(2).unwrap().result(), Err(IoError::BadFd));
    assert_eq!(io.take(3).unwrap().result(), Err(IoError::BadFd));
    assert_eq!(io.take(4).unwrap().result(), Err(IoError::IsDirectory));
    assert_eq!(io.take(5).unwrap().result(), Err(IoError::BadFd));
    // Refused before reaching the kernel, buffer returned.
    let r = io
        .push(Op::read(file.fd(), u64::MAX, vec![0; 8]))
        .unwrap_err();
    assert_eq!(r.error, IoError::InvalidArgument);
    assert_eq!(file.content(), b"read only");
}

fn raw_entries_link_and_validation(mode: HostedMode) {
    let Some(mut backend) = backend(mode) else {
        return;
    };
    let file = TempFile::new(&[5u8; 100]);
    let (mut sq_tx, mut sq_rx) = ring::channel::<Sqe>(8).unwrap();
    let (cq_tx, mut cq_rx) = ring::channel::<Cqe>(16).unwrap();
    let mut cq_tx = ring::OverflowProducer::new(cq_tx);
    let mut a = [0u8; 10];
    let mut b = [0u8; 10];
    let link = SqeFlags::LINK;
    // Chain 1: a good read, then an invalid offset, then a nop: read runs, the invalid entry
    // fails, the nop is canceled.
    sq_tx
        .push(Sqe::read(file.fd(), a.as_mut_ptr(), 10, 0, 1).with_flags(link))
        .unwrap();
    sq_tx
        .push(Sqe::read(file.fd(), b.as_mut_ptr(), 10, u64::MAX, 2).with_flags(link))
        .unwrap();
    sq_tx.push(Sqe::nop(3)).unwrap();
    // Chain 2: a short read (at offset 95) cancels the write linked to it.
    sq_tx
        .push(Sqe::read(file.fd(), b.as_mut_ptr(), 10, 95, 4).with_flags(link))
        .unwrap();
    sq_tx
        .push(Sqe::write(file.fd(), a.as_ptr(), 10, 0, 5))
        .unwrap();
    // SAFETY: `a` and `b` outlive the call, which waits for all five completions.
    unsafe { backend.enter(&mut sq_rx, &mut cq_tx, 5) }.unwrap();
    let mut got = std::collections::HashMap::new();
    while got.len() < 5 {
        cq_rx.pop_batch(usize::MAX, |c| {
            got.insert(c.user_data, c.result());
        });
        if got.len() < 5 {
            // SAFETY: as above.
            unsafe { backend.enter(&mut sq_rx, &mut cq_tx, 1) }.unwrap();
        }
    }
    assert_eq!(got[&1], Ok(10));
    assert_eq!(got[&2], Err(IoError::InvalidArgument));
    assert_eq!(got[&3], Err(IoError::Canceled));
    assert_eq!(got[&4], Ok(5));
    assert_eq!(got[&5], Err(IoError::Canceled));
    assert_eq!(a, [5; 10]);
    assert_eq!(backend.outstanding(), 0);
}

fn registered_files_vectored_and_sync(mode: HostedMode) {
    let Some(backend) = backend(mode) else { return };
    let file = TempFile::new(&[]);
    let mut io = BatchedIo::new(backend, 4).unwrap();
    let fixed = io.register_file(file.fd()).unwrap();
    assert_eq!(io.register_file(-1).unwrap_err(), IoError::BadFd);
    let pool = BufferPool::new(HeapPages, 4096, 4).unwrap();
    io.register_pool(&pool).unwrap();
    let mut p = pool.alloc().unwrap();
    p.fill_from(b"pool-").unwrap();
    io.push(
        Op::writev(
            fixed,
            0,
            vec![
                b"hello ".to_vec().into(),
                p.into(),
                b"world".to_vec().into(),
            ],
        )
        .user_data(1)
        .link(),
    )
    .unwrap();
    io.push(Op::fdatasync(fixed).user_data(2).link()).unwrap();
    io.push(Op::fsync(fixed).user_data(3)).unwrap();
    // More operations than the 4-entry submission ring: pushed in several doorbells.
    for i in 0..6u64 {
        io.push(Op::nop().user_data(10 + i)).unwrap();
    }
    io.wait_all().unwrap();
    assert_eq!(io.take(1).unwrap().result(), Ok(16));
    assert_eq!(io.take(2).unwrap().result(), Ok(0));
    assert_eq!(io.take(3).unwrap().result(), Ok(0));
    for i in 0..6u64 {
        assert_eq!(io.take(10 + i).unwrap().result(), Ok(0));
    }
    assert_eq!(file.content(), b"hello pool-world");
    // Zero-copy receive through the registered file into registered buffers.
    for i in 0..4u64 {
        io.receive(fixed, i * 4, &pool, 100 + i).unwrap();
    }
    io.wait_all().unwrap();
    let bufs: Vec<_> = (0..4u64)
        .map(|i| io.take(100 + i).unwrap().into_pool_buf().unwrap())
        .collect();
    assert_eq!(bufs[0].as_slice(), b"hello pool-world");
    assert_eq!(bufs[3].as_slice(), &b"hello pool-world"[12..]);
    assert_eq!(pool.available(), 0);
    drop(bufs);
    assert_eq!(pool.available(), 4);
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod io_uring {
            use super::*;
            $(#[test] fn $test() { super::$test(HostedMode::IoUring) })*
        }
        mod fallback {
            use super::*;
            $(#[test] fn $test() { super::$test(HostedMode::Fallback) })*
        }
    };
}

on_both_backends!(
    random_batched_writes_and_reads,
    short_reads_at_end_of_file,
    errors_are_clear,
    raw_entries_link_and_validation,
    registered_files_vectored_and_sync,
);

#[test]
fn auto_mode_picks_io_uring_or_reports_why_not() {
    let b = HostedBackend::new(8).unwrap();
    if b.is_fallback() {
        // Either forced through the environment, or refused with a reason.
        let forced = std::env::var(veridian_io::hosted::FORCE_FALLBACK_ENV).as_deref() == Ok("1");
        assert!(forced || b.fallback_reason().is_some());
    } else {
        assert_eq!(b.name(), "io_uring");
        assert!(b.fallback_reason().is_none());
    }
    assert_eq!(HostedBackend::new(0).unwrap_err(), IoError::InvalidArgument);
}
