//! A foreign kernel using veridian-io alone: `BatchedIo` over the in-memory loopback back-end
//! (one doorbell per batch, completions matched by user data in reversed order, errors,
//! back-pressure, vectored and linked operations, a zero-copy read into a registered buffer
//! pool). The crate needs a heap for its rings and buffers and brings none: the glue is the
//! bump allocator `bump.rs` as `#[global_allocator]`.

#![no_std]
#![no_main]

extern crate alloc;

#[macro_use]
#[path = "../../boot/boot.rs"]
mod boot;
#[path = "../../boot/bump.rs"]
mod bump;

use alloc::vec;
use alloc::vec::Vec;

use veridian_io::{
    BatchedIo, BufferPool, CompletionOrder, HeapPages, IoError, LoopbackBackend, Op,
};

#[global_allocator]
static HEAP: bump::Bump = bump::Bump::new();

pub fn kmain(_start_info: u64) {
    let mut backend = LoopbackBackend::new();
    // Completions come back last-first, as a device may post them: matched by user data.
    backend.set_completion_order(CompletionOrder::Reversed);
    let fd = backend.create_file(b"hello, rings".to_vec());
    let read_only = backend.create_read_only_file(b"fixed".to_vec());
    let mut io = BatchedIo::new(backend, 8).expect("a ring of 8");
    assert_eq!(
        io.capacity(),
        16,
        "the completion ring is twice the submission ring"
    );

    // One batch, one doorbell: a write that grows the file, a read, fsync, a refused write,
    // a read of a closed descriptor number, a nop.
    io.push(Op::write(fd, 12, b" and batches".to_vec()).user_data(1))
        .unwrap();
    io.push(Op::read(fd, 0, vec![0; 5]).user_data(2)).unwrap();
    io.push(Op::fsync(fd).user_data(3)).unwrap();
    io.push(Op::write(read_only, 0, b"no".to_vec()).user_data(4))
        .unwrap();
    io.push(Op::read(99, 0, vec![0; 4]).user_data(5)).unwrap();
    io.push(Op::nop().user_data(6)).unwrap();
    assert_eq!(io.submit_and_wait(6), Ok(6));
    assert_eq!(io.backend().doorbells(), 1, "one doorbell for the batch");
    let first = io.next_completion().unwrap().user_data();
    assert_eq!(first, 6, "reversed order: the last entry completes first");
    assert_eq!(io.take(1).unwrap().result(), Ok(12));
    assert_eq!(io.take(2).unwrap().data(), b"hello");
    assert_eq!(io.take(3).unwrap().result(), Ok(0));
    assert_eq!(io.take(4).unwrap().result(), Err(IoError::BadFd));
    assert_eq!(io.take(5).unwrap().result(), Err(IoError::BadFd));
    assert_eq!(
        io.backend().file(fd),
        Some(&b"hello, rings and batches"[..])
    );
    println!("io: 6 operations in one doorbell, completions matched by user data, EBADF reported");

    // Back-pressure: never more in flight than the completion ring holds. This back-end
    // holds completions back until the caller waits (an asynchronous device).
    let mut slow = LoopbackBackend::new();
    slow.set_hold_completions(true);
    let mut held = BatchedIo::new(slow, 8).unwrap();
    for i in 0..16 {
        held.push(Op::nop().user_data(100 + i)).unwrap();
    }
    assert_eq!(held.in_flight(), 16);
    assert_eq!(
        held.backend().doorbells(),
        1,
        "a full submission ring is submitted to make room"
    );
    let rejected = held.push(Op::nop().user_data(999)).unwrap_err();
    assert_eq!(rejected.error, IoError::QueueFull);
    assert_eq!(
        rejected.op.get_user_data(),
        999,
        "the refused operation comes back"
    );
    held.wait_all().unwrap();
    assert_eq!(held.completions().count(), 16);
    println!(
        "io: 16 operations queued or in flight, the 17th refused with QueueFull and handed back"
    );

    // Vectored I/O and a linked chain (the read runs after the write it is linked to).
    let parts = vec![b"abc".to_vec().into(), b"defg".to_vec().into()];
    io.push(Op::writev(fd, 0, parts).link().user_data(10))
        .unwrap();
    let halves = vec![vec![0u8; 2].into(), vec![0u8; 5].into()];
    io.push(Op::readv(fd, 0, halves).user_data(11)).unwrap();
    io.submit_and_wait(2).unwrap();
    assert_eq!(io.wait_for(10).unwrap().result(), Ok(7));
    let read = io.wait_for(11).unwrap();
    assert_eq!(read.result(), Ok(7));
    let bufs: Vec<Vec<u8>> = read
        .into_bufs()
        .into_iter()
        .filter_map(|b| b.into_vec())
        .collect();
    assert_eq!(bufs, [b"ab".to_vec(), b"cdefg".to_vec()]);
    println!("io: writev linked to readv: 7 bytes out and back in two buffers each");

    // Zero-copy receive into a registered pool (its memory from the heap, `HeapPages`).
    let pool = BufferPool::new(HeapPages, 4096, 4).expect("a pool of 4 x 4 KiB");
    io.register_pool(&pool).expect("register the pool");
    io.receive(fd, 3, &pool, 20).unwrap();
    assert_eq!(pool.available(), 3);
    let buf = io
        .wait_for(20)
        .unwrap()
        .into_pool_buf()
        .expect("a pool buffer");
    assert_eq!(buf.as_slice(), b"defgrings and batches");
    drop(buf);
    assert_eq!(pool.available(), 4, "the buffer went back to its pool");
    println!("io: zero-copy receive into a registered pool buffer, returned on drop");

    drop(io);
    println!("io: heap used {} KiB", HEAP.used() >> 10);
}
