//! `BatchedIo` and the buffer pool on the in-memory loopback back-end: one doorbell per batch,
//! completions matched by user data (also when the back-end reverses their order), short
//! reads, link chains, back-pressure, clear errors, zero-copy receive, registered files.

#![cfg(not(loom))]

use veridian_io::{
    Backend, BatchedIo, BufferPool, CompletionOrder, Cqe, Fd, HeapPages, IoBuf, IoError,
    LoopbackBackend, Op, Sqe, SqeFlags, ring,
};

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}

fn setup(order: CompletionOrder) -> (BatchedIo<LoopbackBackend>, i32, Vec<u8>) {
    let mut backend = LoopbackBackend::new();
    backend.set_completion_order(order);
    let data = pattern(10_000);
    let fd = backend.create_file(data.clone());
    (BatchedIo::new(backend, 16).unwrap(), fd, data)
}

#[test]
fn batch_reads_one_doorbell_matched_by_user_data() {
    for order in [CompletionOrder::InOrder, CompletionOrder::Reversed] {
        let (mut io, fd, data) = setup(order);
        let offsets = [0usize, 17, 4096, 9_000, 9_990, 12_000];
        for (i, &off) in offsets.iter().enumerate() {
            io.push(Op::read(fd, off as u64, vec![0; 100]).user_data(i as u64 + 100))
                .unwrap();
        }
        assert_eq!(io.submit_and_wait(offsets.len()).unwrap(), offsets.len());
        assert_eq!(io.backend().doorbells(), 1);
        assert_eq!(io.in_flight(), 0);
        // Take them in an order unrelated to completion order.
        for (i, &off) in offsets.iter().enumerate().rev() {
            let c = io.take(i as u64 + 100).unwrap();
            let end = (off + 100).min(data.len()).max(off.min(data.len()));
            let expect = &data[off.min(data.len())..end];
            assert_eq!(c.result(), Ok(expect.len()), "offset {off}");
            assert_eq!(c.data(), expect);
        }
        assert!(io.take(100).is_none());
    }
}

#[test]
fn writes_then_reads_back_and_vectored() {
    let (mut io, fd, _) = setup(CompletionOrder::Reversed);
    io.push(Op::write(fd, 20_000, b"abc".to_vec()).user_data(1).link())
        .unwrap();
    io.push(
        Op::writev(
            fd,
            20_003,
            vec![b"de".to_vec().into(), b"fgh".to_vec().into()],
        )
        .user_data(2)
        .link(),
    )
    .unwrap();
    io.push(Op::fsync(fd).user_data(3)).unwrap();
    io.wait_all().unwrap();
    assert_eq!(io.take(1).unwrap().result(), Ok(3));
    assert_eq!(io.take(2).unwrap().result(), Ok(5));
    assert_eq!(io.take(3).unwrap().result(), Ok(0));
    let file = io.backend().file(fd).unwrap();
    assert_eq!(file.len(), 20_008);
    assert_eq!(&file[20_000..], b"abcdefgh");
    assert!(
        file[10_000..20_000].iter().all(|&b| b == 0),
        "hole is zeroed"
    );

    io.push(Op::readv(fd, 20_001, vec![vec![0; 4].into(), vec![0; 10].into()]).user_data(4))
        .unwrap();
    let c = io.wait_for(4).unwrap();
    assert_eq!(c.result(), Ok(7));
    let bufs = c.into_bufs();
    assert_eq!(bufs[0].as_slice(), b"bcde");
    assert_eq!(bufs[1].as_slice(), b"fgh"); // truncated to what was read
}

#[test]
fn link_chain_canceled_after_short_read_or_error() {
    let (mut io, fd, _) = setup(CompletionOrder::InOrder);
    // A short read (at the end of the file) breaks the chain.
    io.push(Op::read(fd, 9_950, vec![0; 100]).user_data(1).link())
        .unwrap();
    io.push(Op::write(fd, 0, b"XX".to_vec()).user_data(2).link())
        .unwrap();
    io.push(Op::nop().user_data(3)).unwrap();
    // A new chain after the end of the canceled one runs normally.
    io.push(Op::read(fd, 0, vec![0; 2]).user_data(4)).unwrap();
    io.wait_all().unwrap();
    assert_eq!(io.take(1).unwrap().result(), Ok(50));
    assert_eq!(io.take(2).unwrap().result(), Err(IoError::Canceled));
    assert_eq!(io.take(3).unwrap().result(), Err(IoError::Canceled));
    assert_eq!(io.take(4).unwrap().data(), &pattern(2)[..]);
    assert_eq!(
        &io.backend().file(fd).unwrap()[..2],
        &pattern(2)[..],
        "write canceled"
    );

    // An error (bad descriptor) breaks the chain too.
    io.push(Op::read(999, 0, vec![0; 4]).user_data(5).link())
        .unwrap();
    io.push(Op::nop().user_data(6)).unwrap();
    io.wait_all().unwrap();
    assert_eq!(io.take(5).unwrap().result(), Err(IoError::BadFd));
    assert_eq!(io.take(6).unwrap().result(), Err(IoError::Canceled));
}

#[test]
fn clear_errors() {
    let mut backend = LoopbackBackend::new();
    let ro = backend.create_read_only_file(pattern(10));
    let mut io = BatchedIo::new(backend, 4).unwrap();
    // Offset past the end: a 0-byte read, not an error.
    io.push(Op::read(ro, 1_000_000, vec![0; 8]).user_data(1))
        .unwrap();
    // Write to a read-only file, unknown descriptor, negative descriptor.
    io.push(Op::write(ro, 0, vec![1]).user_data(2)).unwrap();
    io.push(Op::read(77, 0, vec![0; 8]).user_data(3)).unwrap();
    io.push(Op::fsync(-1).user_data(4)).unwrap();
    io.wait_all().unwrap();
    let c = io.take(1).unwrap();
    assert_eq!(c.result(), Ok(0));
    assert!(c.data().is_empty());
    assert_eq!(io.take(2).unwrap().result(), Err(IoError::BadFd));
    assert_eq!(io.take(3).unwrap().result(), Err(IoError::BadFd));
    assert_eq!(io.take(4).unwrap().result(), Err(IoError::BadFd));

    // Refused at push, operation (and buffer) given back.
    let r = io
        .push(Op::read(ro, u64::MAX, vec![9; 3]).user_data(5))
        .unwrap_err();
    assert_eq!(r.error, IoError::InvalidArgument);
    assert_eq!(r.op.into_bufs()[0].as_slice(), &[9, 9, 9]);
    let r = io
        .push(Op::readv(
            ro,
            0,
            (0..1025).map(|_| IoBuf::from(vec![0u8; 1])).collect(),
        ))
        .unwrap_err();
    assert_eq!(r.error, IoError::BufferTooLarge);
    assert_eq!(io.wait_for(12345).unwrap_err(), IoError::InvalidArgument);
    assert_eq!(io.in_flight(), 0);
}

#[test]
fn back_pressure_instead_of_overflow() {
    let mut backend = LoopbackBackend::new();
    backend.set_hold_completions(true);
    let fd = backend.create_file(pattern(100));
    let mut io = BatchedIo::new(backend, 16).unwrap();
    let capacity = io.capacity();
    assert_eq!(capacity, 32); // completion ring: twice the 16-entry submission ring
    for i in 0..capacity {
        io.push(Op::read(fd, i as u64, vec![0; 1]).user_data(i as u64))
            .unwrap();
    }
    // The submission ring (16) filled up on the way and was submitted to make room.
    assert_eq!(io.backend().doorbells(), 1);
    assert_eq!(io.in_flight(), capacity);
    let r = io.push(Op::nop().user_data(999)).unwrap_err();
    assert_eq!(r.error, IoError::QueueFull);
    io.wait_all().unwrap();
    let mut seen: Vec<u64> = io.completions().map(|c| c.user_data()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..capacity as u64).collect::<Vec<_>>());
    io.push(Op::nop().user_data(999)).unwrap();
    assert_eq!(io.wait_for(999).unwrap().result(), Ok(0));
}

#[test]
fn raw_sqe_offset_above_i64_max_fails_cleanly() {
    let mut backend = LoopbackBackend::new();
    let fd = backend.create_file(pattern(16));
    let (mut sq_tx, mut sq_rx) = ring::channel::<Sqe>(8).unwrap();
    let (cq_tx, mut cq_rx) = ring::channel::<Cqe>(1).unwrap();
    let mut cq_tx = ring::OverflowProducer::new(cq_tx);
    let mut buf = [0u8; 4];
    sq_tx
        .push(Sqe::read(fd, buf.as_mut_ptr(), 4, u64::MAX, 1).with_flags(SqeFlags::LINK))
        .unwrap();
    sq_tx.push(Sqe::nop(2)).unwrap();
    sq_tx.push(Sqe::nop(3)).unwrap();
    // SAFETY: `buf` outlives the call, which completes everything synchronously.
    let taken = unsafe { backend.enter(&mut sq_rx, &mut cq_tx, 3) }.unwrap();
    assert_eq!(taken, 3);
    // Capacity-1 completion ring: two completions wait in the overflow list, none lost.
    assert_eq!(cq_rx.overflow_pending(), 2);
    let mut got = Vec::new();
    while got.len() < 3 {
        cq_rx.pop_batch(usize::MAX, |c| got.push((c.user_data, c.result())));
        cq_tx.flush();
    }
    assert_eq!(
        got,
        [
            (1, Err(IoError::InvalidArgument)),
            (2, Err(IoError::Canceled)),
            (3, Ok(0))
        ]
    );
}

#[test]
fn zero_copy_receive_and_registered_file() {
    let (mut io, fd, data) = setup(CompletionOrder::Reversed);
    let pool = BufferPool::new(HeapPages, 512, 4).unwrap();
    assert_eq!(io.register_pool(&pool).unwrap(), 0);
    assert_eq!(io.register_pool(&pool).unwrap(), 0);
    let fixed = io.register_file(fd).unwrap();
    assert_eq!(fixed, Fd::Fixed(0));
    assert_eq!(io.register_file(55).unwrap_err(), IoError::BadFd);
    for i in 0..4u64 {
        io.receive(fixed, i * 1000, &pool, i).unwrap();
    }
    assert_eq!(pool.available(), 0);
    assert_eq!(
        io.receive(fd, 0, &pool, 9).unwrap_err(),
        IoError::PoolExhausted
    );
    io.submit_and_wait(4).unwrap();
    let mut held = Vec::new();
    for i in 0..4u64 {
        let buf = io.take(i).unwrap().into_pool_buf().unwrap();
        let off = i as usize * 1000;
        assert_eq!(buf.as_slice(), &data[off..off + 512]);
        held.push(buf);
    }
    assert_eq!(pool.available(), 0);
    // Write one buffer back from the pool, then drop them all: they return to the pool.
    let mut out = held.pop().unwrap();
    out.fill_from(b"zero-copy").unwrap();
    io.push(Op::write(fd, 0, out).user_data(7)).unwrap();
    let c = io.wait_for(7).unwrap();
    assert_eq!(c.result(), Ok(9));
    drop(c);
    drop(held);
    assert_eq!(pool.available(), 4);
    assert_eq!(&io.backend().file(fd).unwrap()[..9], b"zero-copy");
}

#[test]
fn dropping_batched_io_completes_in_flight_work() {
    let pool = BufferPool::new(HeapPages, 64, 2).unwrap();
    {
        let mut backend = LoopbackBackend::new();
        let fd = backend.create_file(pattern(100));
        let mut io = BatchedIo::new(backend, 2).unwrap();
        io.receive(fd, 0, &pool, 1).unwrap();
        io.receive(fd, 64, &pool, 2).unwrap();
        assert_eq!(pool.available(), 0);
    }
    assert_eq!(pool.available(), 2);
}
