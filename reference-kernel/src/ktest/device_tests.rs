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
