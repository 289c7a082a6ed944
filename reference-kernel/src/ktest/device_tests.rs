//! Device tests: the PCI bus as enumerated at boot, and the virtio-blk disk xtask attaches
//! (`reference_kernel::testdisk` gives its contents). Without the disk the block tests skip.

#![deny(unsafe_code)]

use reference_kernel::pci::{Bdf, ConfigSpace};
use reference_kernel::testdisk::{self, SECTOR};

use crate::arch::x86_64::pci::ConfigAccess;
use crate::drivers::{pci, virtio_blk};
use crate::mm::frames::FrameBlock;

/// The host bridge at 00:00.0 is found, every function's BARs and capability list were read
/// without issue on QEMU's q35, and no two functions share an address.
pub fn pci_bus_enumerated() {
    let devices = pci::devices();
    assert!(pci::access().is_some(), "no PCI configuration access");
    let host = devices
        .iter()
        .find(|d| {
            d.function.bdf
                == Bdf {
                    bus: 0,
                    device: 0,
                    function: 0,
                }
        })
        .expect("no function at 00:00.0");
    assert_eq!(
        host.function.class[..2],
        [0x06, 0x00],
        "00:00.0 is not a host bridge"
    );
    for (i, d) in devices.iter().enumerate() {
        assert_eq!(d.function.issue, None, "{}", d.function.bdf);
        assert!(d.bars_usable(), "{}: a BAR was refused", d.function.bdf);
        assert!(
            devices[i + 1..]
                .iter()
                .all(|o| o.function.bdf != d.function.bdf),
            "{} listed twice",
            d.function.bdf
        );
        for bar in d.function.bars() {
            assert!(
                bar.size.is_power_of_two(),
                "{}: BAR{} size {:#x}",
                d.function.bdf,
                bar.index,
                bar.size
            );
            assert_eq!(
                bar.address % bar.size,
                0,
                "{}: BAR{} misaligned",
                d.function.bdf,
                bar.index
            );
        }
    }
}

/// ECAM and the legacy ports read the same identification registers for every function.
pub fn pci_ecam_and_ports_agree() {
    let Some(ecam @ ConfigAccess::Ecam { .. }) = pci::access() else {
        crate::ktest::skip("configuration space is reached through the ports only (no MCFG)");
        return;
    };
    let ports = ConfigAccess::ports().expect("no configuration ports on a PC chipset");
    for d in pci::devices() {
        for offset in [0x00, 0x08, 0x0c, 0x2c, 0x34] {
            let bdf = d.function.bdf;
            assert_eq!(
                ecam.read32(bdf, offset),
                ports.read32(bdf, offset),
                "{bdf} register {offset:#x}"
            );
        }
    }
    // An absent function reads all ones both ways.
    let absent = Bdf {
        bus: 0,
        device: 31,
        function: 7,
    };
    if pci::devices().iter().all(|d| d.function.bdf != absent) {
        assert_eq!(ecam.read32(absent, 0), u32::MAX);
        assert_eq!(ports.read32(absent, 0), u32::MAX);
    }
}

/// The disk, or a skip.
fn disk() -> Option<virtio_blk::DiskInfo> {
    let info = virtio_blk::info();
    if info.is_none() {
        crate::ktest::skip("no usable virtio-blk disk (xtask test attaches one)");
    }
    info
}

/// A 4 KiB DMA-able buffer (frames in the direct map: no bounce).
fn page() -> FrameBlock {
    FrameBlock::allocate(0).expect("a frame for the test buffer")
}

/// xorshift64, fixed seed: the same "random" sectors every run.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// 64 reads of 1..=8 sectors at pseudo-random offsets, checked byte for byte; then a read into
/// a heap buffer and one into a stack buffer (bounced by the HAL).
pub fn virtio_blk_reads_match_the_image() {
    let Some(info) = disk() else { return };
    assert!(
        pci::devices()
            .iter()
            .any(|d| d.function.bdf == info.bdf && d.function.vendor == 0x1af4),
        "the disk's function {} is not a virtio function found at boot",
        info.bdf
    );
    let mut block = page();
    let buf = block.bytes_mut().expect("frame in the direct map");
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..64 {
        let count = (next(&mut rng) % 8 + 1) as usize;
        let sector = next(&mut rng) % (info.sectors - count as u64 + 1);
        let bytes = &mut buf[..count * SECTOR];
        bytes.fill(0xee);
        virtio_blk::read(sector, bytes).unwrap_or_else(|e| panic!("read {sector}+{count}: {e}"));
        if let Some(at) = testdisk::first_mismatch(sector, bytes) {
            panic!("sector {sector}+{count}: byte {at} is {:#x}", bytes[at]);
        }
    }
    let mut heap = alloc::vec![0u8; 3 * SECTOR];
    virtio_blk::read(5, &mut heap).expect("read into a heap buffer");
    assert_eq!(testdisk::first_mismatch(5, &heap), None);
    let mut stack = [0u8; SECTOR];
    let last = info.sectors - 1;
    virtio_blk::read(last, &mut stack).expect("read into a stack buffer");
    assert_eq!(testdisk::first_mismatch(last, &stack), None);
}

/// Writes a different pattern over 8 sectors, reads it back, flushes, then writes the image's
/// pattern back (and checks it), so the other tests see the image unchanged.
pub fn virtio_blk_write_read_back_flush() {
    let Some(info) = disk() else { return };
    if info.read_only {
        crate::ktest::skip("the disk is read-only");
        return;
    }
    let sector = info.sectors / 2;
    let mut out = page();
    let mut back = page();
    let data = out.bytes_mut().expect("frame in the direct map");
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(13) ^ 0xa5;
    }
    virtio_blk::write(sector, data).expect("write");
    let read = back.bytes_mut().expect("frame in the direct map");
    virtio_blk::read(sector, read).expect("read back");
    assert!(read == data, "read back differs from what was written");
    virtio_blk::flush().expect("flush");
    testdisk::fill(sector, data);
    virtio_blk::write(sector, data).expect("restore");
    virtio_blk::flush().expect("flush after restore");
    read.fill(0);
    virtio_blk::read(sector, read).expect("read restored");
    assert_eq!(testdisk::first_mismatch(sector, read), None);
}

/// Requests past the end, and buffers that are not whole sectors, fail with an error; the
/// device still works afterwards.
pub fn virtio_blk_out_of_range_is_an_error() {
    let Some(info) = disk() else { return };
    let mut block = page();
    let buf = block.bytes_mut().expect("frame in the direct map");
    let end = info.sectors;
    for (sector, len) in [
        (end, SECTOR),
        (end - 1, 2 * SECTOR),
        (end + 1000, SECTOR),
        (u64::MAX, SECTOR),
    ] {
        let result = virtio_blk::read(sector, &mut buf[..len]);
        assert!(
            result.is_err(),
            "read of {len} bytes at sector {sector} of {end} succeeded"
        );
    }
    assert!(
        virtio_blk::write(end, &buf[..SECTOR]).is_err(),
        "write past the end succeeded"
    );
    assert_eq!(
        virtio_blk::read(0, &mut buf[..100]),
        Err(virtio_blk::BlkError::BadLength(100))
    );
    assert_eq!(
        virtio_blk::read(0, &mut buf[..0]),
        Err(virtio_blk::BlkError::BadLength(0))
    );
    virtio_blk::read(end - 1, &mut buf[..SECTOR]).expect("last sector after the errors");
    assert_eq!(testdisk::first_mismatch(end - 1, &buf[..SECTOR]), None);
}

/// Requests per thread and round in [`virtio_blk_batches_on_every_cpu`].
const BATCH: usize = virtio_blk::MAX_BATCH;

/// One thread per online CPU, pinned, each running rounds of batches of [`BATCH`] requests:
/// reads of 1..=8 sectors at pseudo-random offsets in the shared upper three quarters of the
/// disk; writes of a pattern of its own over 1..=8 sectors in each of 32 slots of its own part
/// of the first quarter, read back in a batch and checked byte for byte; then the image's pattern
/// written back in a batch, a flush, and a check. Every request completes exactly once, and the
/// device gets at most one notification per batch.
pub fn virtio_blk_batches_on_every_cpu() {
    use alloc::vec::Vec;
    let Some(info) = disk() else { return };
    if info.read_only {
        crate::ktest::skip("the disk is read-only");
        return;
    }
    const ROUNDS: u64 = 4;
    let cpus = crate::arch::x86_64::percpu::online() as u64;
    let quarter = info.sectors / 4;
    // Each thread's part of the first quarter: 32 slots of 8 sectors.
    let part = quarter / cpus;
    assert!(
        part >= (BATCH * 8) as u64,
        "disk too small: {} sectors for {cpus} CPUs",
        info.sectors
    );
    let (notified, completed) = (virtio_blk::notifications(), virtio_blk::completed());
    let mut handles = Vec::new();
    for cpu in 0..cpus {
        let affinity = veridian_sched::CpuSet::single(cpu as usize).expect("a CPU set");
        let handle = crate::task::spawn(
            "blk-batch",
            affinity,
            veridian_sched::Priority::Normal,
            move || batch_rounds(cpu, cpu * part, quarter, info.sectors, ROUNDS),
        )
        .expect("spawn");
        handles.push(handle);
    }
    for h in handles {
        h.join().expect("batch thread ends normally");
    }
    // Per thread and round: reads, writes, read-back, restore (a batch each), a flush, a check.
    let batches = cpus * ROUNDS * 6;
    let requests = cpus * ROUNDS * (4 * BATCH as u64 + 1 + BATCH as u64);
    let notified = virtio_blk::notifications() - notified;
    let completed = virtio_blk::completed() - completed;
    crate::println!(
        "note: {cpus} CPUs, {batches} batches, {requests} requests, {notified} notifications"
    );
    assert_eq!(completed, requests, "requests completed");
    assert!(
        notified <= batches,
        "{notified} notifications for {batches} batches"
    );
}

/// Reads `spans` (first sector, sector count) into successive 4 KiB pieces of `into` as one
/// batch; every request must succeed.
fn read_spans(into: &mut [u8], spans: &[(u64, usize)], cpu: u64) {
    let mut results = [Ok(()); BATCH];
    let mut requests: alloc::vec::Vec<virtio_blk::Request<'_>> = into
        .chunks_mut(8 * SECTOR)
        .zip(spans)
        .map(|(buf, &(sector, count))| virtio_blk::Request::Read {
            sector,
            buf: &mut buf[..count * SECTOR],
        })
        .collect();
    virtio_blk::batch(&mut requests, &mut results).expect("read batch");
    assert!(results.iter().all(Result::is_ok), "cpu {cpu}: {results:?}");
}

/// Writes successive 4 KiB pieces of `from` to `spans` as one batch; every request must succeed.
fn write_spans(from: &[u8], spans: &[(u64, usize)], cpu: u64) {
    let mut results = [Ok(()); BATCH];
    let mut requests: alloc::vec::Vec<virtio_blk::Request<'_>> = from
        .chunks(8 * SECTOR)
        .zip(spans)
        .map(|(buf, &(sector, count))| virtio_blk::Request::Write {
            sector,
            buf: &buf[..count * SECTOR],
        })
        .collect();
    virtio_blk::batch(&mut requests, &mut results).expect("write batch");
    assert!(results.iter().all(Result::is_ok), "cpu {cpu}: {results:?}");
}

/// What one thread of [`virtio_blk_batches_on_every_cpu`] does; `base` is the first sector of
/// its own part, reads go to `[shared, sectors)`.
fn batch_rounds(cpu: u64, base: u64, shared: u64, sectors: u64, rounds: u64) {
    // 32 pages for data, 32 for read-back, in frames (no bounce).
    let mut data_block = FrameBlock::allocate(5).expect("128 KiB of frames");
    let mut back_block = FrameBlock::allocate(5).expect("128 KiB of frames");
    let data = data_block.bytes_mut().expect("frames in the direct map");
    let back = back_block.bytes_mut().expect("frames in the direct map");
    let mut rng = 0x2545_f491_4f6c_dd1d ^ (cpu + 1).wrapping_mul(0x9e37_79b9);
    let mut spans = [(0u64, 0usize); BATCH];
    for round in 0..rounds {
        // Reads at random offsets of the shared part.
        for span in &mut spans {
            let count = (next(&mut rng) % 8 + 1) as usize;
            *span = (shared + next(&mut rng) % (sectors - shared - 8), count);
        }
        back.fill(0xee);
        read_spans(back, &spans, cpu);
        for (chunk, &(sector, count)) in back.chunks(8 * SECTOR).zip(&spans) {
            if let Some(at) = testdisk::first_mismatch(sector, &chunk[..count * SECTOR]) {
                panic!("cpu {cpu} round {round}: sector {sector}+{count} byte {at}");
            }
        }
        // Writes of this thread's pattern into its 32 slots, read back.
        for (slot, (chunk, span)) in data.chunks_mut(8 * SECTOR).zip(&mut spans).enumerate() {
            let count = (next(&mut rng) % 8 + 1) as usize;
            *span = (base + slot as u64 * 8, count);
            for (i, b) in chunk.iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(7) ^ (cpu as u8) ^ (round as u8).wrapping_mul(31);
            }
        }
        write_spans(data, &spans, cpu);
        back.fill(0);
        read_spans(back, &spans, cpu);
        for ((written, read), &(sector, count)) in data
            .chunks(8 * SECTOR)
            .zip(back.chunks(8 * SECTOR))
            .zip(&spans)
        {
            let n = count * SECTOR;
            assert!(
                written[..n] == read[..n],
                "cpu {cpu} round {round}: sectors {sector}+{count} read back differ"
            );
        }
        // The image's pattern back, a flush, and a check.
        for (chunk, &(sector, _)) in data.chunks_mut(8 * SECTOR).zip(&spans) {
            testdisk::fill(sector, chunk);
        }
        write_spans(data, &spans, cpu);
        virtio_blk::flush().expect("flush");
        back.fill(0);
        read_spans(back, &spans, cpu);
        for (chunk, &(sector, count)) in back.chunks(8 * SECTOR).zip(&spans) {
            let n = count * SECTOR;
            assert_eq!(
                testdisk::first_mismatch(sector, &chunk[..n]),
                None,
                "cpu {cpu}"
            );
        }
    }
}

/// A batch mixing good requests with refused ones completes the good ones and reports each
/// refusal in its own place; too few result places is refused before anything runs.
pub fn virtio_blk_batch_reports_each_request() {
    use virtio_blk::{BlkError, Request};
    let Some(info) = disk() else { return };
    let mut block = page();
    let buf = block.bytes_mut().expect("frame in the direct map");
    let (a, rest) = buf.split_at_mut(SECTOR);
    let (b, rest) = rest.split_at_mut(SECTOR);
    let (c, d) = rest.split_at_mut(100);
    let end = info.sectors;
    let mut requests = [
        Request::Read { sector: 7, buf: a },
        Request::Read {
            sector: end,
            buf: b,
        },
        Request::Read { sector: 9, buf: c },
        Request::Read {
            sector: end - 1,
            buf: &mut d[..SECTOR],
        },
    ];
    let mut results = [Ok(()); 4];
    assert_eq!(
        virtio_blk::batch(&mut requests, &mut results[..3]),
        Err(BlkError::NoRoomForResults)
    );
    virtio_blk::batch(&mut requests, &mut results).expect("batch");
    assert_eq!(
        results,
        [
            Ok(()),
            Err(BlkError::OutOfRange {
                sector: end,
                count: 1
            }),
            Err(BlkError::BadLength(100)),
            Ok(())
        ]
    );
    assert_eq!(testdisk::first_mismatch(7, &buf[..SECTOR]), None);
    let last = &buf[2 * SECTOR + 100..3 * SECTOR + 100];
    assert_eq!(testdisk::first_mismatch(end - 1, last), None);
}

/// With MSI-X (QEMU's virtio-blk-pci has it), completions arrive by interrupt: four batches of
/// 32 reads, checked byte for byte, take completion interrupts on vector
/// [`virtio_blk::VECTOR`], and the waiter halts (or finds the completion there) instead of
/// polling (no empty poll counted).
pub fn virtio_blk_completions_by_interrupt() {
    let Some(info) = disk() else { return };
    if !virtio_blk::interrupt_driven() {
        crate::ktest::skip("the disk has no MSI-X interrupt: completions are polled");
        return;
    }
    assert!(
        x86_64::instructions::interrupts::are_enabled(),
        "test threads run with interrupts on"
    );
    let (taken, sleeps, polls) = (
        virtio_blk::interrupts(),
        virtio_blk::sleeps(),
        virtio_blk::empty_polls(),
    );
    let mut block = FrameBlock::allocate(5).expect("128 KiB of frames");
    let bufs = block.bytes_mut().expect("frames in the direct map");
    let mut rng = 0x1234_5678_9abc_def1u64;
    let mut spans = [(0u64, 0usize); BATCH];
    for _ in 0..4 {
        for span in &mut spans {
            let count = (next(&mut rng) % 8 + 1) as usize;
            *span = (next(&mut rng) % (info.sectors - 8), count);
        }
        bufs.fill(0xee);
        read_spans(bufs, &spans, 0);
        for (chunk, &(sector, count)) in bufs.chunks(8 * SECTOR).zip(&spans) {
            assert_eq!(
                testdisk::first_mismatch(sector, &chunk[..count * SECTOR]),
                None,
                "sector {sector}+{count}"
            );
        }
    }
    let taken = virtio_blk::interrupts() - taken;
    let sleeps = virtio_blk::sleeps() - sleeps;
    let polls = virtio_blk::empty_polls() - polls;
    crate::println!("note: 4 batches: {taken} interrupts, {sleeps} sleeps, {polls} empty polls");
    // Whether the waiter halts depends on timing (on one CPU the completion often arrives
    // between its look at the used ring and `hlt`, and it goes on at once): reported, not
    // required. Without the interrupt, `taken` stays 0 (each wait would end at a timer tick).
    assert!(taken >= 1, "no completion interrupt in 4 batches");
    assert_eq!(polls, 0, "the waiter polled");
}

/// veridian-io over the disk: a `BatchedIo` on a `VirtioBlkBackend` receives 48 random 4 KiB
/// blocks into a `BufferPool` of frames (the device writes the pool buffers themselves; each
/// completion hands its buffer over, checked byte for byte), writes pool buffers, flushes and
/// reads them back, then restores the image; 48 reads take two notifications (groups of 32 and
/// 16), the whole test at most 6; every pool buffer is back in the pool afterwards; where the
/// completion interrupt is routed, the back-end waited for interrupts and never polled.
pub fn virtio_blk_veridian_io_backend() {
    use veridian_io::{BufferPool, Op};
    let Some(info) = disk() else { return };
    if info.read_only {
        crate::ktest::skip("the disk is read-only");
        return;
    }
    let pool = BufferPool::new(crate::mm::heap::FramePages, 4096, 64).expect("pool of frames");
    let blocks = info.sectors / 8;
    let (region, len) = pool.region();
    let region = region.as_ptr() as usize..region.as_ptr() as usize + len;
    let notified = virtio_blk::notifications();
    let (polls, interrupts) = (virtio_blk::empty_polls(), virtio_blk::interrupts());
    let by_interrupt =
        virtio_blk::interrupt_driven() && x86_64::instructions::interrupts::are_enabled();
    let fd = veridian_io::virtio::DISK_FD;
    virtio_blk::with_backend(64, |io| {
        let mut rng = 0x0bad_cafe_f00d_d00du64;
        let mut offsets = alloc::vec::Vec::new();
        for i in 0..48u64 {
            let offset = (next(&mut rng) % blocks) * 4096;
            offsets.push(offset);
            io.receive(fd, offset, &pool, i).expect("receive");
        }
        io.submit_and_wait(48).expect("submit");
        for (i, &offset) in offsets.iter().enumerate() {
            let done = io.take(i as u64).expect("a completion per read");
            assert_eq!(done.result(), Ok(4096), "read {i}");
            let buf = done.into_pool_buf().expect("the pool buffer comes back");
            assert!(
                region.contains(&(buf.as_ptr() as usize)),
                "the data is in the pool's region"
            );
            assert_eq!(
                testdisk::first_mismatch(offset / SECTOR as u64, buf.as_slice()),
                None,
                "block at {offset}"
            );
        }
        // Writes from pool buffers in the second quarter of the disk (no other test writes
        // there), a flush draining them, a read back.
        let base = info.sectors / 4 * SECTOR as u64;
        for i in 0..8u64 {
            let mut buf = pool.try_alloc().expect("a pool buffer");
            buf.set_len(4096).expect("length");
            for (k, b) in buf.as_mut_slice().iter_mut().enumerate() {
                *b = (k as u8) ^ (i as u8).wrapping_mul(29);
            }
            io.push(Op::write(fd, base + i * 4096, buf).user_data(100 + i))
                .expect("write");
        }
        io.push(Op::fsync(fd).drain().user_data(200))
            .expect("fsync");
        io.wait_all().expect("writes");
        for i in 0..8u64 {
            assert_eq!(io.take(100 + i).expect("write").result(), Ok(4096));
        }
        assert_eq!(io.take(200).expect("fsync").result(), Ok(0));
        for i in 0..8u64 {
            io.receive(fd, base + i * 4096, &pool, 300 + i)
                .expect("receive");
        }
        io.wait_all().expect("read back");
        for i in 0..8u64 {
            let buf = io
                .take(300 + i)
                .expect("read back")
                .into_pool_buf()
                .expect("buffer");
            for (k, b) in buf.as_slice().iter().enumerate() {
                assert_eq!(
                    *b,
                    (k as u8) ^ (i as u8).wrapping_mul(29),
                    "block {i} byte {k}"
                );
            }
        }
        // The image's pattern back (heap buffers: in the direct map, no bounce either).
        for i in 0..8u64 {
            let mut data = alloc::vec![0u8; 4096];
            testdisk::fill((base + i * 4096) / SECTOR as u64, &mut data);
            io.push(Op::write(fd, base + i * 4096, data).user_data(400 + i))
                .expect("restore");
        }
        io.wait_all().expect("restore");
        for i in 0..8u64 {
            assert_eq!(io.take(400 + i).expect("restore").result(), Ok(4096));
        }
    })
    .expect("the disk lent as a back-end");
    let notified = virtio_blk::notifications() - notified;
    crate::println!("note: 64 operations and a flush, {notified} notifications");
    assert!(
        (1..=6).contains(&notified),
        "{notified} notifications for 6 groups"
    );
    assert_eq!(pool.available(), pool.count(), "pool buffers leaked");
    // Where the disk has its interrupt, the lent back-end waits for it instead of polling.
    let (polls, interrupts) = (
        virtio_blk::empty_polls() - polls,
        virtio_blk::interrupts() - interrupts,
    );
    crate::println!("note: lent back-end: {interrupts} completion interrupts, {polls} empty polls");
    if by_interrupt {
        assert_eq!(
            polls, 0,
            "the lent back-end polled although the interrupt is routed"
        );
        assert!(interrupts > 0, "no completion interrupt while lent");
    }
}
