//! virtio-net under `virtio-drivers` (feature `virtio`): [`NetDevice`], Ethernet frames sent and
//! received through one [`BufferPool`], and (feature `smoltcp`) a `smoltcp` [`Device`] over it.
//!
//! `virtio-drivers`' [`VirtIONetRaw`] does the device initialisation, the virtio-net header
//! and the two queues; this module owns the buffers. Every receive buffer is a [`PoolBuf`] of
//! the embedder's pool, handed to the device as it is (through the `Hal`: with a kernel's `Hal`
//! over its direct map, the pool's DMA memory goes to the device without a bounce), and a
//! received frame is handed out as that same buffer ([`RxFrame`]): nothing is copied between the
//! device and the caller, and dropping the frame returns the buffer to the pool, from where the
//! next [`NetDevice::receive`] posts it to the device again. Frames to send are built in a pool
//! buffer too ([`NetDevice::transmit_with`]), after the virtio-net header.
//!
//! A device that reports nonsense is taken out of service instead of trusted: a used-ring entry
//! naming a descriptor that holds no buffer of ours ([`NetError::BadCompletion`], for example
//! after its used index jumped), or a completion `virtio-drivers` rejects. The buffers it held
//! stay with the [`NetDevice`] until it is dropped (which unsets both queues first), so a device
//! that goes on writing cannot reach memory that was handed to someone else.
//!
//! [`Device`]: smoltcp::phy::Device

use alloc::vec::Vec;
use core::fmt;

use virtio_drivers::Hal;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::Transport;

use crate::pool::{BufferPool, PoolBuf};

/// The largest Ethernet frame the device is given or asked for: 1500 bytes of payload and the
/// 14-byte header (no VLAN tag, no FCS: the device adds and strips it).
pub const MAX_FRAME: usize = 1514;

/// Bytes of the virtio-net header in front of every frame (virtio 1.2, 5.1.6: `num_buffers`
/// included, which a version-1 device always has).
pub const HEADER_LEN: usize = 12;

/// The smallest pool buffer a [`NetDevice`] accepts: a header and a largest frame.
pub const MIN_BUFFER: usize = HEADER_LEN + MAX_FRAME;

/// Why the device could not be set up or used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// `virtio-drivers` refused to set up the device or a request.
    Device(virtio_drivers::Error),
    /// Pool buffers smaller than [`MIN_BUFFER`].
    BufferTooSmall(usize),
    /// The device's header length is not the version-1 one ([`HEADER_LEN`]).
    LegacyHeader(usize),
    /// Fewer pool buffers than the receive buffers asked for plus one to send with.
    PoolTooSmall {
        /// Buffers in the pool.
        count: usize,
        /// Receive buffers asked for.
        receive: usize,
    },
    /// No free pool buffer to send with (all are receiving, in flight or held by the caller).
    NoBuffer,
    /// The transmit queue is full.
    QueueFull,
    /// A frame longer than [`MAX_FRAME`].
    TooLong(usize),
    /// The device completed a descriptor that holds no buffer of ours; it was taken out of
    /// service.
    BadCompletion(u16),
    /// An earlier failure took the device out of service.
    Dead,
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(e) => write!(f, "device error: {e}"),
            Self::BufferTooSmall(n) => {
                write!(f, "pool buffers of {n} bytes; a frame needs {MIN_BUFFER}")
            }
            Self::LegacyHeader(n) => write!(
                f,
                "the device uses a {n}-byte virtio-net header (legacy); {HEADER_LEN} expected"
            ),
            Self::PoolTooSmall { count, receive } => write!(
                f,
                "a pool of {count} buffers cannot keep {receive} receiving and one to send"
            ),
            Self::NoBuffer => f.write_str("no free buffer in the pool"),
            Self::QueueFull => f.write_str("the transmit queue is full"),
            Self::TooLong(n) => write!(f, "a frame of {n} bytes is over {MAX_FRAME}"),
            Self::BadCompletion(id) => write!(
                f,
                "the device completed descriptor {id}, which holds no buffer; taken out of service"
            ),
            Self::Dead => f.write_str("the device was taken out of service"),
        }
    }
}

/// What the device has done since it was set up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames received (handed to the caller).
    pub rx_frames: u64,
    /// Bytes of those frames (without the virtio-net header).
    pub rx_bytes: u64,
    /// Receive completions whose length the buffer cannot hold (shorter than the virtio-net
    /// header or longer than the buffer): dropped, the buffer posted again.
    pub rx_bad_length: u64,
    /// Frames placed in the transmit queue.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames the `smoltcp` device could not send (no buffer or queue room after it offered a
    /// token, or longer than [`MAX_FRAME`]): dropped, as a link drops frames.
    pub tx_dropped: u64,
}

/// What a failed send leaves: the filler, not called, or what it returned.
enum Leftover<F, R> {
    Fill(F),
    Built(R),
}

/// A received frame: the pool buffer the device wrote it into. Dropping it returns the buffer to
/// the pool.
pub struct RxFrame {
    buf: PoolBuf,
}

impl RxFrame {
    /// The Ethernet frame (destination MAC first), without the virtio-net header.
    pub fn frame(&self) -> &[u8] {
        &self.buf.as_slice()[HEADER_LEN..]
    }

    /// The buffer itself (header included), for a caller that keeps it.
    pub fn into_buf(self) -> PoolBuf {
        self.buf
    }
}

impl fmt::Debug for RxFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxFrame")
            .field("len", &self.frame().len())
            .finish()
    }
}

/// A virtio network device whose receive and transmit buffers come from one [`BufferPool`].
///
/// `Q` is the size of each queue (at most what the device offers; `virtio-drivers` refuses
/// more). The pool must be DMA memory as the embedder's `Hal` understands it (for example a pool
/// over a [`DmaSource`](crate::DmaSource) whose device addresses are what `Hal::share` returns
/// for the same memory).
///
/// Field order matters for drop: the driver (whose drop unsets both queues, so the device stops
/// using them) goes before the buffers it was given.
pub struct NetDevice<H: Hal, T: Transport, const Q: usize = 128> {
    raw: VirtIONetRaw<H, T, Q>,
    /// Receive buffers by descriptor (token).
    rx: Vec<Option<PoolBuf>>,
    /// Frames being sent by descriptor (token).
    tx: Vec<Option<PoolBuf>>,
    pool: BufferPool,
    /// Receive buffers to keep posted.
    receive: usize,
    posted: usize,
    /// Buffers the device may still hold that no slot could take (kept until drop).
    held: Vec<PoolBuf>,
    dead: bool,
    stats: NetStats,
}

impl<H: Hal, T: Transport, const Q: usize> NetDevice<H, T, Q> {
    /// Initialises the device (`virtio-drivers`: features MAC, status, event index, version 1)
    /// and posts `receive` buffers of `pool` (at most `Q`).
    ///
    /// # Errors
    /// [`NetError`]: the pool's buffers too small or too few, a legacy header, or what
    /// `virtio-drivers` reported (the transport is then dropped, which resets a PCI device).
    pub fn new(transport: T, pool: BufferPool, receive: usize) -> Result<Self, NetError> {
        if pool.buffer_size() < MIN_BUFFER {
            return Err(NetError::BufferTooSmall(pool.buffer_size()));
        }
        let receive = receive.min(Q);
        if pool.count() <= receive {
            return Err(NetError::PoolTooSmall {
                count: pool.count(),
                receive,
            });
        }
        let raw = VirtIONetRaw::<H, T, Q>::new(transport).map_err(NetError::Device)?;
        let mut header = [0u8; 32];
        let header_len = raw
            .fill_buffer_header(&mut header)
            .map_err(NetError::Device)?;
        if header_len != HEADER_LEN {
            return Err(NetError::LegacyHeader(header_len));
        }
        let mut dev = Self {
            raw,
            rx: (0..Q).map(|_| None).collect(),
            tx: (0..Q).map(|_| None).collect(),
            pool,
            receive,
            posted: 0,
            held: Vec::new(),
            dead: false,
            stats: NetStats::default(),
        };
        dev.raw.disable_interrupts();
        dev.refill()?;
        Ok(dev)
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.raw.mac_address()
    }

    /// The pool the buffers come from.
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// What the device has done so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Whether a failure took the device out of service.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Receive buffers the device holds now.
    pub fn posted(&self) -> usize {
        self.posted
    }

    /// Frames given to the device and not yet reclaimed.
    pub fn in_flight(&self) -> usize {
        self.tx.iter().filter(|b| b.is_some()).count()
    }

    /// Asks the device to interrupt when it uses a buffer of either queue (`true`), or not to.
    pub fn set_interrupts(&mut self, on: bool) {
        if on {
            self.raw.enable_interrupts();
        } else {
            self.raw.disable_interrupts();
        }
    }

    /// Acknowledges the device's interrupt (needed with a legacy INTx line; harmless with
    /// MSI-X).
    pub fn ack_interrupt(&mut self) {
        let _ = self.raw.ack_interrupt();
    }

    /// Whether a received frame waits in the used ring.
    pub fn can_receive(&self) -> bool {
        !self.dead && self.raw.poll_receive().is_some()
    }

    /// Posts free pool buffers until `receive` are with the device (stops quietly when the pool
    /// is empty: the frames the caller holds come back later).
    fn refill(&mut self) -> Result<(), NetError> {
        while self.posted < self.receive {
            let Some(mut buf) = self.pool.alloc() else {
                return Ok(());
            };
            // SAFETY: the buffer stays in `self.rx` (never touched) until the device returns it
            // and `receive_complete` is called with the same slice; if the device never does,
            // the driver is dropped (queues unset) before `self.rx`.
            let token = match unsafe { self.raw.receive_begin(buf.whole_mut()) } {
                Ok(token) => token,
                Err(virtio_drivers::Error::QueueFull) => return Ok(()),
                Err(e) => return Err(NetError::Device(e)),
            };
            match self.rx.get_mut(usize::from(token)) {
                Some(slot @ None) => *slot = Some(buf),
                _ => {
                    self.held.push(buf);
                    return Err(self.fail(NetError::BadCompletion(token)));
                }
            }
            self.posted += 1;
        }
        Ok(())
    }

    fn fail(&mut self, e: NetError) -> NetError {
        self.dead = true;
        e
    }

    /// The next received frame, or `None` when none waits. Reposts free pool buffers first.
    ///
    /// # Errors
    /// [`NetError::Dead`] after a failure; [`NetError::BadCompletion`] or
    /// [`NetError::Device`] when the device completes a descriptor that holds no receive buffer
    /// (the device is then out of service).
    pub fn receive(&mut self) -> Result<Option<RxFrame>, NetError> {
        if self.dead {
            return Err(NetError::Dead);
        }
        self.refill()?;
        loop {
            let Some(token) = self.raw.poll_receive() else {
                return Ok(None);
            };
            let Some(mut buf) = self.rx.get_mut(usize::from(token)).and_then(Option::take) else {
                return Err(self.fail(NetError::BadCompletion(token)));
            };
            self.posted -= 1;
            // SAFETY: `buf` is the buffer posted with this token, passed as the same slice.
            let done = unsafe { self.raw.receive_complete(token, buf.whole_mut()) };
            match done {
                Ok((header, len)) => {
                    // `virtio-drivers` checked `header + len` against the buffer it was given.
                    if buf.set_len(header + len).is_err() || header != HEADER_LEN {
                        self.stats.rx_bad_length += 1;
                        continue;
                    }
                    self.stats.rx_frames += 1;
                    self.stats.rx_bytes += len as u64;
                    return Ok(Some(RxFrame { buf }));
                }
                // A completion shorter than the header: nothing to hand out (the buffer goes
                // back to the pool and is posted again).
                Err(virtio_drivers::Error::IoError) => self.stats.rx_bad_length += 1,
                Err(e) => return Err(self.fail(NetError::Device(e))),
            }
        }
    }

    /// Takes back the buffers of frames the device has sent (they return to the pool).
    ///
    /// # Errors
    /// As [`receive`](Self::receive), for the transmit queue.
    pub fn reclaim(&mut self) -> Result<(), NetError> {
        if self.dead {
            return Err(NetError::Dead);
        }
        while let Some(token) = self.raw.poll_transmit() {
            let Some(buf) = self.tx.get_mut(usize::from(token)).and_then(Option::take) else {
                return Err(self.fail(NetError::BadCompletion(token)));
            };
            // SAFETY: `buf` is the buffer sent with this token, passed as the same slice.
            if let Err(e) = unsafe { self.raw.transmit_complete(token, buf.as_slice()) } {
                return Err(self.fail(NetError::Device(e)));
            }
        }
        Ok(())
    }

    /// Whether [`transmit_with`](Self::transmit_with) would find a buffer and queue room now
    /// (after reclaiming what the device has sent).
    pub fn can_transmit(&mut self) -> bool {
        self.reclaim().is_ok() && self.raw.can_send() && self.pool.available() > 0
    }

    /// Sends a frame of `len` bytes that `fill` writes into a pool buffer (after the virtio-net
    /// header, which is filled here), without waiting for the device; returns what `fill`
    /// returned. The buffer comes back to the pool at a later [`reclaim`](Self::reclaim) (every
    /// send reclaims first).
    ///
    /// # Errors
    /// [`NetError::TooLong`], [`NetError::NoBuffer`], [`NetError::QueueFull`] (nothing sent,
    /// `fill` not called), or as [`reclaim`](Self::reclaim).
    pub fn transmit_with<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, NetError> {
        self.send(len, fill).map_err(|(e, _)| e)
    }

    /// [`transmit_with`](Self::transmit_with), giving back on failure `fill` if it was not
    /// called, or what it returned if the frame was built but not sent.
    fn send<R, F: FnOnce(&mut [u8]) -> R>(
        &mut self,
        len: usize,
        fill: F,
    ) -> Result<R, (NetError, Leftover<F, R>)> {
        if len > MAX_FRAME {
            return Err((NetError::TooLong(len), Leftover::Fill(fill)));
        }
        if let Err(e) = self.reclaim() {
            return Err((e, Leftover::Fill(fill)));
        }
        if !self.raw.can_send() {
            return Err((NetError::QueueFull, Leftover::Fill(fill)));
        }
        let Some(mut buf) = self.pool.alloc() else {
            return Err((NetError::NoBuffer, Leftover::Fill(fill)));
        };
        if buf.set_len(HEADER_LEN + len).is_err() {
            return Err((NetError::TooLong(len), Leftover::Fill(fill)));
        }
        let whole = buf.as_mut_slice();
        whole[..HEADER_LEN].fill(0);
        let out = fill(&mut whole[HEADER_LEN..]);
        // SAFETY: the buffer stays in `self.tx` (or `self.held`), never touched, until the
        // device returns it and `transmit_complete` is called with the same slice; the driver
        // goes first on drop.
        let token = match unsafe { self.raw.transmit_begin(buf.as_slice()) } {
            Ok(token) => token,
            Err(virtio_drivers::Error::QueueFull) => {
                return Err((NetError::QueueFull, Leftover::Built(out)));
            }
            Err(e) => return Err((NetError::Device(e), Leftover::Built(out))),
        };
        match self.tx.get_mut(usize::from(token)) {
            Some(slot @ None) => *slot = Some(buf),
            _ => {
                self.held.push(buf);
                return Err((
                    self.fail(NetError::BadCompletion(token)),
                    Leftover::Built(out),
                ));
            }
        }
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += len as u64;
        Ok(out)
    }

    /// Sends `frame` (copied into a pool buffer); see [`transmit_with`](Self::transmit_with).
    ///
    /// # Errors
    /// As [`transmit_with`](Self::transmit_with).
    pub fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        self.transmit_with(frame.len(), |out| out.copy_from_slice(frame))
    }
}

#[cfg(feature = "smoltcp")]
mod phy {
    use smoltcp::phy::{self, DeviceCapabilities, Medium};
    use smoltcp::time::Instant;

    use super::{Leftover, MAX_FRAME, NetDevice, RxFrame};
    use virtio_drivers::Hal;
    use virtio_drivers::transport::Transport;

    /// Sends one frame through the device that offered it.
    pub struct TxToken<'a, H: Hal, T: Transport, const Q: usize> {
        dev: &'a mut NetDevice<H, T, Q>,
    }

    impl phy::RxToken for RxFrame {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            // The stack reads the frame where the device wrote it.
            f(self.frame())
        }
    }

    impl<H: Hal, T: Transport, const Q: usize> phy::TxToken for TxToken<'_, H, T, Q> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            // The token was offered only with a buffer and queue room, and the stack builds no
            // frame over the MTU it was told; if the send fails anyway the frame is dropped, as
            // a link drops a frame (built in a scratch buffer if it was not built yet).
            match self.dev.send(len, f) {
                Ok(r) => r,
                Err((_, leftover)) => {
                    self.dev.stats.tx_dropped += 1;
                    match leftover {
                        Leftover::Built(r) => r,
                        Leftover::Fill(f) => f(&mut alloc::vec![0u8; len]),
                    }
                }
            }
        }
    }

    impl<H: Hal, T: Transport, const Q: usize> phy::Device for NetDevice<H, T, Q> {
        type RxToken<'a>
            = RxFrame
        where
            Self: 'a;
        type TxToken<'a>
            = TxToken<'a, H, T, Q>
        where
            Self: 'a;

        fn receive(&mut self, _now: Instant) -> Option<(RxFrame, TxToken<'_, H, T, Q>)> {
            // Only when an answer could be sent too: the stack may answer the frame at once.
            if !self.can_transmit() {
                return None;
            }
            let frame = self.receive().ok().flatten()?;
            Some((frame, TxToken { dev: self }))
        }

        fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_, H, T, Q>> {
            self.can_transmit().then_some(TxToken { dev: self })
        }

        fn capabilities(&self) -> DeviceCapabilities {
            let mut caps = DeviceCapabilities::default();
            caps.medium = Medium::Ethernet;
            caps.max_transmission_unit = MAX_FRAME;
            caps.max_burst_size = Some(self.receive.max(1));
            // No checksum offload is negotiated: the stack computes and checks every checksum
            // (the default `Checksum::Both` for each protocol).
            caps
        }
    }
}

#[cfg(feature = "smoltcp")]
pub use phy::TxToken;
