//! The virtio drivers against a fake device in host memory: this test plays the device, reading
//! the rings the driver wrote and writing used-ring entries, including the nonsense a broken or
//! hostile device could write (queue size 0, a used index that jumps, a completion naming a
//! descriptor that holds nothing).

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use veridian_io::virtio::net::{HEADER_LEN, NetDevice, NetError};
use veridian_io::virtio::{BlkDevice, BlkError, Request, SetupError};
use veridian_io::{BufferPool, HeapPages};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Host memory as "DMA memory": the device address of a byte is its host address.
struct HostHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned memory owned until `dma_dealloc`, with its
// address as device address; `share` returns the buffer's own address (the fake device reads and
// writes the buffer in place), so `unshare` has nothing to copy back.
unsafe impl Hal for HostHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout = Layout::from_size_align(pages * 4096, 4096).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("host memory");
        (ptr.as_ptr() as PhysAddr, ptr)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let layout = Layout::from_size_align(pages * 4096, 4096).expect("layout");
        // SAFETY: allocated by `dma_alloc` with this layout (the caller's contract).
        unsafe { dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("non-null")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.cast::<u8>().as_ptr() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// Where the driver put one queue.
#[derive(Clone, Copy, Debug, Default)]
struct Queue {
    size: u16,
    desc: u64,
    used: u64,
    avail: u64,
    /// Available entries the device has taken.
    taken: u16,
}

#[derive(Debug, Default)]
struct Device {
    status: u32,
    queues: Vec<Queue>,
    notified: Vec<u16>,
}

/// A fake transport: features, configuration bytes and the largest queue size are fixed at
/// creation; the state is shared with the test, which plays the device.
#[derive(Clone)]
struct Fake {
    kind: DeviceType,
    features: u64,
    max_queue: u32,
    config: Vec<u8>,
    device: Arc<Mutex<Device>>,
}

const VERSION_1: u64 = 1 << 32;
const NET_MAC: u64 = 1 << 5;
const BLK_FLUSH: u64 = 1 << 9;

impl Fake {
    fn net(max_queue: u32) -> Self {
        let mut config = vec![0u8; 16];
        config[..6].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        config[6] = 1; // link up
        Self::new(
            DeviceType::Network,
            VERSION_1 | NET_MAC,
            max_queue,
            config,
            2,
        )
    }

    fn blk(max_queue: u32, sectors: u64) -> Self {
        let mut config = vec![0u8; 64];
        config[..8].copy_from_slice(&sectors.to_le_bytes());
        Self::new(
            DeviceType::Block,
            VERSION_1 | BLK_FLUSH,
            max_queue,
            config,
            1,
        )
    }

    fn new(
        kind: DeviceType,
        features: u64,
        max_queue: u32,
        config: Vec<u8>,
        queues: usize,
    ) -> Self {
        Self {
            kind,
            features,
            max_queue,
            config,
            device: Arc::new(Mutex::new(Device {
                queues: vec![Queue::default(); queues],
                ..Device::default()
            })),
        }
    }
}

impl Transport for Fake {
    fn device_type(&self) -> DeviceType {
        self.kind
    }
    fn read_device_features(&mut self) -> u64 {
        self.features
    }
    fn write_driver_features(&mut self, _driver_features: u64) {}
    fn max_queue_size(&mut self, _queue: u16) -> u32 {
        self.max_queue
    }
    fn notify(&mut self, queue: u16) {
        self.device.lock().unwrap().notified.push(queue);
    }
    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.device.lock().unwrap().status)
    }
    fn set_status(&mut self, status: DeviceStatus) {
        self.device.lock().unwrap().status = status.bits();
    }
    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}
    fn requires_legacy_layout(&self) -> bool {
        false
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        desc: PhysAddr,
        avail: PhysAddr,
        used: PhysAddr,
    ) {
        self.device.lock().unwrap().queues[usize::from(queue)] = Queue {
            size: size as u16,
            desc,
            avail,
            used,
            taken: 0,
        };
    }
    fn queue_unset(&mut self, queue: u16) {
        self.device.lock().unwrap().queues[usize::from(queue)] = Queue::default();
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.device.lock().unwrap().queues[usize::from(queue)].desc != 0
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::empty()
    }
    fn read_config_generation(&self) -> u32 {
        0
    }
    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        T::read_from_prefix(&self.config[offset..])
            .map(|(value, _)| value)
            .map_err(|_| virtio_drivers::Error::ConfigSpaceTooSmall)
    }
    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        _offset: usize,
        _value: T,
    ) -> virtio_drivers::Result<()> {
        Ok(())
    }
}

/// One descriptor chain the driver made available: (address, length, device-writable) of each
/// descriptor, and the head's index.
type Chain = (u16, Vec<(u64, u32, bool)>);

impl Fake {
    fn queue(&self, q: u16) -> Queue {
        self.device.lock().unwrap().queues[usize::from(q)]
    }

    /// The next chain the driver made available on queue `q`, if any (the device's side of the
    /// split ring, virtio 1.2, 2.7).
    fn take(&self, q: u16) -> Option<Chain> {
        let mut device = self.device.lock().unwrap();
        let queue = &mut device.queues[usize::from(q)];
        // SAFETY: the driver's avail ring lives in `HostHal` memory at `avail` (flags, idx,
        // ring), valid while the queue is set; this test is the only device.
        let idx = unsafe { ((queue.avail + 2) as *const u16).read_volatile() };
        if idx == queue.taken {
            return None;
        }
        let slot = u64::from(queue.taken % queue.size);
        // SAFETY: as above, `slot` is inside the ring of `size` entries.
        let head = unsafe { ((queue.avail + 4 + 2 * slot) as *const u16).read_volatile() };
        queue.taken = queue.taken.wrapping_add(1);
        let mut chain = Vec::new();
        let mut index = head;
        loop {
            let at = queue.desc + 16 * u64::from(index);
            // SAFETY: descriptor `index` (< size) of the driver's table, 16 bytes each.
            let (addr, len, flags, next) = unsafe {
                (
                    (at as *const u64).read_volatile(),
                    ((at + 8) as *const u32).read_volatile(),
                    ((at + 12) as *const u16).read_volatile(),
                    ((at + 14) as *const u16).read_volatile(),
                )
            };
            chain.push((addr, len, flags & 2 != 0));
            if flags & 1 == 0 {
                break;
            }
            index = next;
        }
        Some((head, chain))
    }

    /// Writes used-ring entry `(id, len)` on queue `q` and moves the used index by `advance`
    /// (1 for an honest device).
    fn complete(&self, q: u16, id: u32, len: u32, advance: u16) {
        let queue = self.queue(q);
        // SAFETY: the device's used ring lives in `HostHal` memory at `used` (flags, idx, ring of
        // 8-byte entries), valid while the queue is set.
        unsafe {
            let idx_at = (queue.used + 2) as *mut u16;
            let idx = idx_at.read_volatile();
            let entry = queue.used + 4 + 8 * u64::from(idx % queue.size);
            (entry as *mut u32).write_volatile(id);
            ((entry + 4) as *mut u32).write_volatile(len);
            idx_at.write_volatile(idx.wrapping_add(advance));
        }
    }
}

fn pool(count: usize) -> BufferPool {
    BufferPool::new(HeapPages, 2048, count).expect("pool")
}

#[test]
fn net_refuses_a_queue_of_size_zero_and_small_buffers() {
    let e = NetDevice::<HostHal, Fake, 16>::new(Fake::net(0), pool(32), 8).err();
    assert!(matches!(e, Some(NetError::Device(_))), "{e:?}");
    let small = BufferPool::new(HeapPages, 1024, 32).expect("pool");
    let e = NetDevice::<HostHal, Fake, 16>::new(Fake::net(16), small, 8).err();
    assert_eq!(e, Some(NetError::BufferTooSmall(1024)));
    let e = NetDevice::<HostHal, Fake, 16>::new(Fake::net(16), pool(8), 8).err();
    assert_eq!(
        e,
        Some(NetError::PoolTooSmall {
            count: 8,
            receive: 8
        })
    );
}

#[test]
fn net_receives_in_place_and_reposts_the_buffer() {
    let fake = Fake::net(16);
    let pool = pool(32);
    let (base, len) = pool.region();
    let mut dev = NetDevice::<HostHal, Fake, 16>::new(fake.clone(), pool, 8).expect("device");
    assert_eq!(dev.mac(), [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    assert_eq!(dev.posted(), 8);
    assert!(dev.receive().expect("receive").is_none());
    // The device writes a frame into the first receive buffer.
    let (head, chain) = fake.take(0).expect("a posted receive buffer");
    let (addr, cap, writable) = chain[0];
    assert!(writable && cap as usize >= HEADER_LEN + 1514);
    let frame: Vec<u8> = (0..60u8).collect();
    // SAFETY: the driver gave the device this buffer of `cap` bytes to write.
    unsafe {
        std::ptr::write_bytes(addr as *mut u8, 0, HEADER_LEN);
        std::ptr::copy_nonoverlapping(frame.as_ptr(), (addr as *mut u8).add(HEADER_LEN), 60);
    }
    fake.complete(0, u32::from(head), (HEADER_LEN + 60) as u32, 1);
    let got = dev.receive().expect("receive").expect("a frame");
    assert_eq!(got.frame(), &frame[..]);
    // Zero copy: the frame is read where the device wrote it, inside the pool's region.
    let at = got.frame().as_ptr() as usize;
    assert_eq!(at, addr as usize + HEADER_LEN);
    assert!(at >= base.as_ptr() as usize && at < base.as_ptr() as usize + len);
    assert_eq!(dev.posted(), 7);
    drop(got);
    // The next look posts a buffer again.
    assert!(dev.receive().expect("receive").is_none());
    assert_eq!(dev.posted(), 8);
    assert_eq!(dev.pool().available(), 32 - 8);
    assert_eq!(dev.stats().rx_frames, 1);
}

#[test]
fn net_sends_from_the_pool_and_takes_buffers_back() {
    let fake = Fake::net(16);
    let mut dev = NetDevice::<HostHal, Fake, 16>::new(fake.clone(), pool(32), 8).expect("device");
    dev.transmit(&[0xab; 100]).expect("send");
    assert_eq!(dev.in_flight(), 1);
    assert_eq!(dev.pool().available(), 32 - 8 - 1);
    let (head, chain) = fake.take(1).expect("a frame to send");
    let (addr, len, writable) = chain[0];
    assert!(!writable);
    assert_eq!(len as usize, HEADER_LEN + 100);
    // SAFETY: the driver gave the device this buffer of `len` bytes to read.
    let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) };
    assert!(bytes[..HEADER_LEN].iter().all(|&b| b == 0));
    assert!(bytes[HEADER_LEN..].iter().all(|&b| b == 0xab));
    fake.complete(1, u32::from(head), 0, 1);
    dev.reclaim().expect("reclaim");
    assert_eq!(dev.in_flight(), 0);
    assert_eq!(dev.pool().available(), 32 - 8);
    assert_eq!(dev.transmit(&[0; 1515]), Err(NetError::TooLong(1515)));
}

#[test]
fn net_device_whose_used_index_jumps_is_taken_out_of_service() {
    let fake = Fake::net(16);
    let mut dev = NetDevice::<HostHal, Fake, 16>::new(fake.clone(), pool(32), 8).expect("device");
    // The device moves the used index by 5 and names descriptor 13, which holds no buffer (8
    // receive buffers take descriptors 0..8).
    fake.complete(0, 13, 64, 5);
    assert_eq!(dev.receive().err(), Some(NetError::BadCompletion(13)));
    assert!(dev.is_dead());
    assert_eq!(dev.receive().err(), Some(NetError::Dead));
    assert_eq!(dev.transmit(&[1; 60]), Err(NetError::Dead));
    // The buffers the device was given stay with the driver until it is dropped.
    assert_eq!(dev.pool().available(), 32 - 8);
    let pool = dev.pool().clone();
    drop(dev);
    assert_eq!(pool.available(), 32);
}

#[test]
fn net_completion_longer_than_the_buffer_is_dropped() {
    let fake = Fake::net(16);
    let mut dev = NetDevice::<HostHal, Fake, 16>::new(fake.clone(), pool(32), 8).expect("device");
    let (head, _) = fake.take(0).expect("posted");
    fake.complete(0, u32::from(head), 9000, 1);
    // Dropped and counted; the buffer goes back to the pool and is posted again.
    assert!(dev.receive().expect("receive").is_none());
    assert_eq!(dev.stats().rx_frames, 0);
    assert_eq!(dev.stats().rx_bad_length, 1);
    assert!(dev.receive().expect("receive").is_none());
    assert_eq!(dev.posted(), 8);
}

#[test]
fn blk_refuses_queue_size_zero_and_an_empty_disk() {
    let e = BlkDevice::<HostHal, Fake>::new(Fake::blk(0, 64)).err();
    assert_eq!(e, Some(SetupError::QueueTooSmall(0)));
    let e = BlkDevice::<HostHal, Fake>::new(Fake::blk(128, 0)).err();
    assert_eq!(e, Some(SetupError::Empty));
}

#[test]
fn blk_device_whose_used_index_jumps_is_reset_and_out_of_service() {
    let fake = Fake::blk(128, 64);
    let mut dev = BlkDevice::<HostHal, Fake>::new(fake.clone()).expect("device");
    let mut buf = vec![0u8; 512];
    let mut results = [Err(BlkError::NotRun)];
    let mut looked = 0;
    let outcome = dev.batch(
        &mut [Request::Read {
            sector: 3,
            buf: &mut buf,
        }],
        &mut results,
        |_ready| {
            looked += 1;
            if looked == 1 {
                // The device takes the request and reports a descriptor it was never given,
                // moving the used index by 3.
                assert!(fake.take(0).is_some());
                fake.complete(0, 100, 512, 3);
            }
            looked < 100
        },
    );
    assert!(
        matches!(outcome, Err(BlkError::BadCompletion(100))),
        "{outcome:?}"
    );
    assert!(dev.is_dead());
    assert_eq!(
        fake.device.lock().unwrap().status,
        0,
        "the device was reset"
    );
    let again = dev.batch(
        &mut [Request::Read {
            sector: 3,
            buf: &mut buf,
        }],
        &mut results,
        |_| true,
    );
    assert!(again.is_err());
}

#[test]
fn blk_read_past_the_end_never_reaches_the_device() {
    let fake = Fake::blk(128, 64);
    let mut dev = BlkDevice::<HostHal, Fake>::new(fake.clone()).expect("device");
    let mut buf = vec![0u8; 1024];
    let mut results = [Ok(())];
    let _ = dev.batch(
        &mut [Request::Read {
            sector: 63,
            buf: &mut buf,
        }],
        &mut results,
        |_| false,
    );
    assert_eq!(
        results[0],
        Err(BlkError::OutOfRange {
            sector: 63,
            count: 2
        })
    );
    assert!(fake.take(0).is_none(), "the device saw the request");
}

/// smoltcp over the device: an ARP request for the interface's address, written by the fake
/// device into a receive buffer, is answered through the transmit queue.
#[cfg(feature = "smoltcp")]
#[test]
fn smoltcp_answers_arp_through_the_device() {
    use smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
    use smoltcp::time::Instant;
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

    let fake = Fake::net(16);
    let mut dev = NetDevice::<HostHal, Fake, 16>::new(fake.clone(), pool(32), 8).expect("device");
    let mac = dev.mac();
    let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    let mut iface = Interface::new(config, &mut dev, Instant::from_millis(0));
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(Ipv4Address::new(10, 0, 2, 15).into(), 24))
            .expect("room for an address");
    });
    let mut storage: [SocketStorage<'_>; 1] = Default::default();
    let mut sockets = SocketSet::new(&mut storage[..]);
    let peer = [0x02, 0, 0, 0, 0, 9];
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&peer);
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&peer);
    frame.extend_from_slice(&[10, 0, 2, 2]);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&[10, 0, 2, 15]);
    let (head, chain) = fake.take(0).expect("posted");
    // SAFETY: the driver gave the device this buffer to write (at least 1526 bytes).
    unsafe {
        std::ptr::write_bytes(chain[0].0 as *mut u8, 0, HEADER_LEN);
        std::ptr::copy_nonoverlapping(
            frame.as_ptr(),
            (chain[0].0 as *mut u8).add(HEADER_LEN),
            frame.len(),
        );
    }
    fake.complete(0, u32::from(head), (HEADER_LEN + frame.len()) as u32, 1);
    iface.poll(Instant::from_millis(1), &mut dev, &mut sockets);
    let (_, sent) = fake.take(1).expect("an ARP reply");
    // SAFETY: the driver gave the device this buffer to read.
    let reply = unsafe { std::slice::from_raw_parts(sent[0].0 as *const u8, sent[0].1 as usize) };
    let reply = &reply[HEADER_LEN..];
    assert_eq!(&reply[..6], &peer);
    assert_eq!(&reply[12..14], &[0x08, 0x06]);
    assert_eq!(&reply[20..22], &[0, 2], "an ARP reply");
    assert_eq!(&reply[22..28], &mac);
}
